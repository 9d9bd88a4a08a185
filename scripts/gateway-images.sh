#!/usr/bin/env bash
# Makes the images the Envoy Gateway e2e suite (test/e2e/envoy-gateway.test.ts) runs in its kind cluster,
# from the binaries `scripts/provision.sh envoy-gateway` builds (no registry is needed):
# - Envoy Gateway's image, under the name its Helm chart gives it (envoyproxy/gateway:v<version>), so the
#   chart installs as released. As scripts/base-images.sh does for the chart's Envoy: an image of that
#   name pulled from a registry (it has a repo digest) is used as is; else the local stand-in, labelled
#   io.sandbox-extproc.local-build with the recipe key, is (re)built when its key differs.
# - kube-network-policies (the NetworkPolicy enforcer), as sandbox-extproc/kube-network-policies:
#   v<version>-<recipe hash>; the suite puts that name in its manifest.
#
#   scripts/gateway-images.sh ref     prints both image references, space-separated (cheap)
#   scripts/gateway-images.sh build   makes sure the engine has both
#
# Building one takes seconds (a copy of a cached binary onto the local Debian base, the image the
# project's Dockerfile builds FROM: `scripts/provision.sh images` makes it), so no archive is kept.
#
# Needs: ENVOY_GATEWAY_VERSION, KUBE_NETWORK_POLICIES_VERSION, ENVOY_GATEWAY_DIR, NETPOL_DIR (set by provision.sh).
set -euo pipefail

: "${ENVOY_GATEWAY_VERSION:?}" "${KUBE_NETWORK_POLICIES_VERSION:?}" "${ENVOY_GATEWAY_DIR:?}" "${NETPOL_DIR:?}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipes="$here/scripts/gateway-images"
log() { echo "gateway-images: $*" >&2; }
LABEL=io.sandbox-extproc.local-build

key() { cat "$here/scripts/gateway-images.sh" "$recipes/$1.Dockerfile" | sha256sum | cut -c1-12; }
gateway_image="envoyproxy/gateway:v$ENVOY_GATEWAY_VERSION"
gateway_key="$ENVOY_GATEWAY_VERSION-$(key envoy-gateway)"
netpol_image="sandbox-extproc/kube-network-policies:v$KUBE_NETWORK_POLICIES_VERSION-$(key kube-network-policies)"

build() { # <image> <key> <recipe> <binary> <name in the context>
  local image=$1 key=$2 recipe=$3 binary=$4 name=$5 base ctx out started=$SECONDS
  [ -x "$binary" ] || { log "$binary is missing: run scripts/provision.sh envoy-gateway"; return 1; }
  base=$(sed -n 's/^FROM \([^ ]*\) AS build$/\1/p' "$here/Dockerfile")
  docker image inspect "$base" >/dev/null 2>&1 || { log "the Debian base $base is missing: run scripts/provision.sh images"; return 1; }
  ctx=$(mktemp -d)
  cp "$binary" "$ctx/$name"
  # The classic builder: BuildKit would need the buildx plugin.
  if ! out=$(DOCKER_BUILDKIT=0 docker build --quiet --file "$recipes/$recipe.Dockerfile" --build-arg "BASE=$base" \
    --label "$LABEL=$key" --tag "$image" "$ctx" 2>&1); then
    rm -rf "$ctx"
    echo "$out" >&2
    log "building $image failed"
    return 1
  fi
  rm -rf "$ctx"
  log "built $image in $((SECONDS - started)) s"
}

ensure_gateway() {
  local found
  found=$(docker image inspect --format "{{len .RepoDigests}} {{index .Config.Labels \"$LABEL\"}}" "$gateway_image" 2>/dev/null || true)
  case "$found" in
    "0 $gateway_key") return 0 ;;
    '' | '0 '*) build "$gateway_image" "$gateway_key" envoy-gateway "$ENVOY_GATEWAY_DIR/bin/envoy-gateway" envoy-gateway ;;
    *) log "$gateway_image: pulled from a registry, used as is" ;;
  esac
}

ensure_netpol() {
  docker image inspect "$netpol_image" >/dev/null 2>&1 && return 0
  build "$netpol_image" "$KUBE_NETWORK_POLICIES_VERSION" kube-network-policies "$NETPOL_DIR/bin/kube-network-policies" kube-network-policies
  # Earlier recipes' images.
  docker images --format '{{.Repository}}:{{.Tag}}' "${netpol_image%%:*}" | grep -vxF "$netpol_image" | xargs -r docker rmi >/dev/null 2>&1 || true
}

case "${1:-}" in
  ref) echo "$gateway_image $netpol_image" ;;
  build)
    ensure_gateway
    ensure_netpol
    ;;
  *) echo "usage: scripts/gateway-images.sh ref|build" >&2; exit 2 ;;
esac
