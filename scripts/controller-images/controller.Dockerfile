# The image of a Sandbox family's own controller for the kind e2e suite, made where no container
# registry answers (scripts/controller-images.sh): the controller's static binary, built by
# `scripts/provision.sh controllers` from the upstream sources, on the userland its upstream image gives
# it (a non-root user 65532 with a home, a /tmp), taken from the local Debian base as the project's own
# Dockerfile takes its runtime tree. Upstream bases these images on alpine (OpenKruise agents) and on
# distroless static (agent-sandbox, through ko); neither can be pulled here, and a static Go binary needs
# no more than this, so the image stays small to load into the kind node on every run.
ARG BASE
FROM ${BASE} AS base
RUN set -eu; r=/runtime; \
    mkdir -p $r/etc $r/tmp $r/home/nonroot; \
    chmod 1777 $r/tmp; \
    chown 65532:65532 $r/home/nonroot; \
    printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' > $r/etc/passwd; \
    printf 'root:x:0:\nnonroot:x:65532:\n' > $r/etc/group

FROM scratch
COPY --from=base /runtime /
COPY manager /manager
ENV HOME=/home/nonroot
USER 65532:65532
ENTRYPOINT ["/manager"]
