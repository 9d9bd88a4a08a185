#!/usr/bin/env bash
# Makes the images the Envoy Gateway e2e suite (test/e2e/envoy-gateway.test.ts) runs in its kind cluster,
# from the binaries `scripts/provision.sh envoy-gateway` builds (no registry is needed):
# - Envoy Gateway's image, under the name its Helm chart gives it (envoyproxy/gateway:v<version>), so the
#   chart installs as released. As scripts/base-images.sh does for the chart's Envoy: an image of that
#   name pulled from a registry (it has a repo digest) is used as is; else the local stand-in, labelled
#   io.sandbox-extproc.local-build with the recipe key, is (re)built when its key differs.
# - kube-router (its NetworkPolicy controller enforces the chart's NetworkPolicy in kind), as
#   sandbox-extproc/kube-router:v<version>-<recipe hash>, on a Debian root filesystem with iptables and
#   ipset (mmdebstrap, Debian's packages); that step takes a minute, so the image is kept as an archive
#   in the image cache and loaded from there next time. The suite puts that name in its DaemonSet.
#
#   scripts/gateway-images.sh ref     prints both image references, space-separated (cheap)
#   scripts/gateway-images.sh build   makes sure the engine has both
#
# Envoy Gateway's takes seconds (a copy of a cached binary onto the local Debian base, the image the
# project's Dockerfile builds FROM: `scripts/provision.sh images` makes it), so no archive is kept of it.
#
# Needs: ENVOY_GATEWAY_VERSION, KUBE_ROUTER_VERSION, ENVOY_GATEWAY_DIR, KUBE_ROUTER_DIR (set by provision.sh).
set -euo pipefail

: "${ENVOY_GATEWAY_VERSION:?}" "${KUBE_ROUTER_VERSION:?}" "${ENVOY_GATEWAY_DIR:?}" "${KUBE_ROUTER_DIR:?}"
DEBIAN_SUITE=bookworm
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipes="$here/scripts/gateway-images"
cache=${SBX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-extproc}/images
log() { echo "gateway-images: $*" >&2; }
LABEL=io.sandbox-extproc.local-build

key() { cat "$here/scripts/gateway-images.sh" "$recipes/$1.Dockerfile" | sha256sum | cut -c1-12; }
gateway_image="envoyproxy/gateway:v$ENVOY_GATEWAY_VERSION"
gateway_key="$ENVOY_GATEWAY_VERSION-$(key envoy-gateway)"
router_image="sandbox-extproc/kube-router:v$KUBE_ROUTER_VERSION-$(key kube-router)"

build() { # <image> <key> <recipe> <binary> <name in the context> <base image>
  local image=$1 key=$2 recipe=$3 binary=$4 name=$5 base=$6 ctx out started=$SECONDS
  [ -x "$binary" ] || { log "$binary is missing: run scripts/provision.sh envoy-gateway"; return 1; }
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
    '' | '0 '*)
      local base
      base=$(sed -n 's/^FROM \([^ ]*\) AS build$/\1/p' "$here/Dockerfile")
      docker image inspect "$base" >/dev/null 2>&1 || { log "the Debian base $base is missing: run scripts/provision.sh images"; return 1; }
      build "$gateway_image" "$gateway_key" envoy-gateway "$ENVOY_GATEWAY_DIR/bin/envoy-gateway" envoy-gateway "$base"
      ;;
    *) log "$gateway_image: pulled from a registry, used as is" ;;
  esac
}

ensure_router() {
  docker image inspect "$router_image" >/dev/null 2>&1 && return 0
  local tarball="$cache/${router_image//[\/:]/-}.tar" work base
  mkdir -p "$cache"
  if [ -f "$tarball" ]; then
    docker load --quiet --input "$tarball" >/dev/null
    return 0
  fi
  work=$(mktemp -d)
  base="sandbox-extproc/kube-router-base:$$"
  log "Debian $DEBIAN_SUITE with iptables and ipset for kube-router (mmdebstrap)"
  local exclude=() path
  for path in man doc info locale lintian groff; do exclude+=(--dpkgopt="path-exclude=/usr/share/$path/*"); done
  mmdebstrap --quiet --variant=minbase --include=iptables,ipset "${exclude[@]}" "$DEBIAN_SUITE" "$work/rootfs.tar"
  docker import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" "$work/rootfs.tar" "$base" >/dev/null
  rm -rf "$work"
  build "$router_image" "$KUBE_ROUTER_VERSION" kube-router "$KUBE_ROUTER_DIR/bin/kube-router" kube-router "$base" || { docker rmi "$base" >/dev/null 2>&1; return 1; }
  docker rmi "$base" >/dev/null 2>&1 || true
  # Earlier recipes' images and archives.
  docker images --format '{{.Repository}}:{{.Tag}}' "${router_image%%:*}" | grep -vxF "$router_image" | xargs -r docker rmi >/dev/null 2>&1 || true
  rm -f "$cache"/sandbox-extproc-kube-router-*.tar
  docker save --output "$tarball.partial" "$router_image" && mv "$tarball.partial" "$tarball"
}

case "${1:-}" in
  ref) echo "$gateway_image $router_image" ;;
  build)
    ensure_gateway
    ensure_router
    ;;
  *) echo "usage: scripts/gateway-images.sh ref|build" >&2; exit 2 ;;
esac
