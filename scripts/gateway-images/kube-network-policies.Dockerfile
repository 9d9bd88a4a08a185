# kube-network-policies for the Envoy Gateway e2e suite (scripts/gateway-images.sh): the static binary
# `scripts/provision.sh envoy-gateway` builds from the Go module, at /bin/netpol as its upstream image
# has it (its manifest runs `/bin/netpol ...`; distroless static upstream, here from scratch: a static Go
# binary talking netlink needs nothing else).
FROM scratch
COPY kube-network-policies /bin/netpol
CMD ["/bin/netpol"]
