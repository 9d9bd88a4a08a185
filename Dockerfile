# sandbox-extproc: built with the dev toolchain; the runtime image holds only what runs, laid out as
# distroless images are: the Debian packages Node links against (libc6, libgcc-s1, libstdc++6 and their
# base files), each with its dpkg status entry in /var/lib/dpkg/status.d/ and its copyright, so that
# scanners (Trivy, Grype, syft) see them, their versions and their CVEs; /etc/os-release from base-files;
# the Node binary; the bundle (self-contained) and proto/. No shell, no npm, no package manager, no
# node_modules. Runs as 65532 and writes nothing, so a read-only root filesystem is fine; SIGTERM drains
# in-flight streams (see --shutdown-grace). Any architecture Debian and Node build for: nothing here
# names one (docs/release.md builds linux/amd64 and linux/arm64).

FROM node:24-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY proto ./proto
COPY src ./src
COPY scripts/build.ts ./scripts/
# The commit stamped into the bundle (--version, sandbox_extproc_build_info); docs/release.md passes it.
ARG COMMIT=unknown
RUN BUILD_COMMIT=$COMMIT npm run build
# The runtime tree. Packages are whole (every file dpkg lists, from this Debian's own database), never
# libraries picked by hand: what a scanner reads in status.d is exactly what is there. The build fails
# if Node links a library no listed package owns.
ENV RUNTIME_PACKAGES="base-files libc6 libgcc-s1 gcc-12-base libstdc++6"
RUN set -eu; r=/runtime; \
    mkdir -p $r/usr/local/bin $r/app $r/etc $r/tmp $r/home/nonroot $r/var/lib/dpkg/status.d; \
    chmod 1777 $r/tmp; \
    # Debian's merged /usr: /bin, /lib, /lib64, /sbin are links into /usr, as in the build image.
    for top in /bin /lib /lib32 /lib64 /libx32 /sbin; do [ ! -L "$top" ] || cp -a "$top" "$r/"; done; \
    for pkg in $RUNTIME_PACKAGES; do \
      dpkg-query --status "$pkg" > "$r/var/lib/dpkg/status.d/$pkg"; \
      md5=$(ls /var/lib/dpkg/info/"$pkg".md5sums /var/lib/dpkg/info/"$pkg":*.md5sums 2>/dev/null | head -n1); \
      [ -z "$md5" ] || cp "$md5" "$r/var/lib/dpkg/status.d/$pkg.md5sums"; \
      dpkg-query --listfiles "$pkg" | while read -r f; do \
        if [ -d "$f" ] && [ ! -L "$f" ]; then mkdir -p "$r$(readlink -f "$f")"; \
        elif [ -e "$f" ] || [ -L "$f" ]; then \
          d=$(readlink -f "$(dirname "$f")"); mkdir -p "$r$d"; cp -a "$f" "$r$d/"; \
        fi; \
      done; \
    done; \
    for lib in $(ldd /usr/local/bin/node | grep -o '/[^ ]*'); do \
      owner=$(dpkg-query --search "$(readlink -f "$lib")" 2>/dev/null | cut -d: -f1 | head -n1) || owner=''; \
      [ -z "$owner" ] && owner=$(dpkg-query --search "$lib" | cut -d: -f1 | head -n1); \
      case " $RUNTIME_PACKAGES " in *" ${owner%%:*} "*) ;; *) echo "node links $lib from ${owner:-no package}, not in RUNTIME_PACKAGES" >&2; exit 1 ;; esac; \
    done; \
    cp /usr/local/bin/node $r/usr/local/bin/; \
    cp /etc/nsswitch.conf $r/etc/; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > $r/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > $r/etc/group; \
    chown 65532:65532 $r/home/nonroot; \
    cp -r dist proto $r/app/

FROM scratch
COPY --from=build /runtime /
ARG VERSION=0.1.0
ARG COMMIT=unknown
LABEL org.opencontainers.image.title=sandbox-extproc \
      org.opencontainers.image.description="Envoy ext_proc service that routes HTTP traffic to Kubernetes sandboxes and wakes paused ones" \
      org.opencontainers.image.licenses=Apache-2.0 \
      org.opencontainers.image.version=$VERSION \
      org.opencontainers.image.revision=$COMMIT \
      org.opencontainers.image.base.name=debian:bookworm
ENV PATH=/usr/local/bin NODE_ENV=production HOME=/home/nonroot
WORKDIR /app
# 65532: the conventional "nonroot" uid, matching the Helm chart's securityContext.
USER 65532:65532
EXPOSE 9002 9003
# Node is PID 1 and handles SIGTERM itself (graceful drain).
# Semi-spaces capped at 8 MB: ~30 MB less RSS at 100k routes, same throughput (docs/benchmarks.md).
# No --enable-source-maps: it costs ~100 MB of RSS, and the unminified bundle reads fine in stack traces
# (set NODE_OPTIONS=--enable-source-maps to map them back to src/ while debugging).
ENTRYPOINT ["node", "--max-semi-space-size=8", "dist/sandbox-extproc.mjs"]
