# Local stand-in for Envoy Gateway's image (scripts/gateway-images.sh), made where no container registry
# answers: the envoy-gateway binary `scripts/provision.sh envoy-gateway` builds from the Go module, laid
# out as the upstream image lays it out (distroless, /usr/local/bin/envoy-gateway as the entrypoint, a
# /var/lib/eg owned by the non-root user 65532). The one binary is the control plane, its certgen job
# and the proxies' shutdown manager, as upstream. The userland (passwd, group, /tmp) comes from the
# local Debian base, as the project's own Dockerfile takes its runtime tree.
ARG BASE
FROM ${BASE} AS base
RUN set -eu; r=/runtime; \
    mkdir -p $r/etc $r/tmp $r/home/nonroot $r/var/lib/eg $r/usr/local/bin; \
    chmod 1777 $r/tmp; \
    chown 65532:65532 $r/home/nonroot $r/var/lib/eg; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > $r/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > $r/etc/group

FROM scratch
COPY --from=base /runtime /
COPY envoy-gateway /usr/local/bin/envoy-gateway
ENV PATH=/usr/local/bin HOME=/home/nonroot
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/envoy-gateway"]
