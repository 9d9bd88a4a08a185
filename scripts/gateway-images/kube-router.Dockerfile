# kube-router's NetworkPolicy controller for the Envoy Gateway e2e suite (scripts/gateway-images.sh):
# the binary `scripts/provision.sh envoy-gateway` builds from the Go module, on a Debian root filesystem
# with the two tools it drives, iptables (its nf_tables variant, Debian's default) and ipset, as its
# upstream image carries them on Alpine.
ARG BASE
FROM ${BASE}
COPY kube-router /usr/local/bin/kube-router
ENTRYPOINT ["/usr/local/bin/kube-router"]
