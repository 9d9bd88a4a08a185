#!/usr/bin/env bash
# Makes sure the Docker engine has the images the project's Dockerfile builds FROM and the Helm chart
# runs, under exactly the names those files give. Called by `scripts/provision.sh images`.
#
# For each name: an image pulled from a registry (it has a repo digest) is used as is; else our local
# stand-in with the current recipe key (label io.sandbox-extproc.local-build); else a pull is tried;
# else the stand-in is loaded from the cache (a `docker save` tarball); else it is built from Debian's
# packages (mmdebstrap) and the tools scripts/provision.sh provisions (recipes in scripts/base-images/),
# then saved to the cache. The key hashes the versions and the recipe, so a change rebuilds.
#
# Needs: NODE_VERSION, NPM_VERSION, ENVOY_VERSION, NODE_BIN, ENVOY_BIN (set by provision.sh).
set -euo pipefail

: "${NODE_VERSION:?}" "${NPM_VERSION:?}" "${ENVOY_VERSION:?}" "${NODE_BIN:?}" "${ENVOY_BIN:?}"
DEBIAN_SUITE=bookworm
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipes="$here/scripts/base-images"
cache=${SBX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-extproc}/images
mkdir -p "$cache"
log() { echo "base-images: $*" >&2; }
LABEL=io.sandbox-extproc.local-build

# The names, read from the files that use them.
node_image=$(sed -n 's/^FROM \([^ ]*\) AS build$/\1/p' "$here/Dockerfile")
envoy_image=$(awk '/^envoy:/{e=1} e&&/repository:/{r=$2} e&&/tag:/{print r":"$2; exit}' "$here/charts/sandbox-extproc/values.yaml" | tr -d "'\"")
[ -n "$node_image" ] || { log "no 'FROM <image> AS build' line in the Dockerfile"; exit 1; }
[ -n "$envoy_image" ] || { log "no envoy.image.repository/tag in charts/sandbox-extproc/values.yaml"; exit 1; }
# The stand-ins carry the provisioned versions: refuse names that promise others.
case "$node_image" in node:${NODE_VERSION%%.*}-$DEBIAN_SUITE-slim) ;; *)
  log "the Dockerfile names $node_image, but the provisioned Node is $NODE_VERSION on $DEBIAN_SUITE"; exit 1 ;;
esac
case "$envoy_image" in *:v$ENVOY_VERSION) ;; *)
  log "the chart names $envoy_image, but the provisioned Envoy is $ENVOY_VERSION"; exit 1 ;;
esac

recipe_key() { # <what> <versions...>
  { echo "$DEBIAN_SUITE $*"; cat "$here/scripts/base-images.sh" "$recipes"/*; } | sha256sum | cut -c1-12
}
# The CA bundle this machine's npm trusts: where TLS to the npm registry is intercepted, npm inside
# `docker build` must trust the same roots. The stand-in carries it as NODE_EXTRA_CA_CERTS (the
# project's own image is FROM scratch and carries nothing of it).
ca_bundle=${NODE_EXTRA_CA_CERTS:-$(npm config get cafile 2>/dev/null || true)}
case "$ca_bundle" in '' | null | undefined) ca_bundle=/etc/ssl/certs/ca-certificates.crt ;; esac
[ -f "$ca_bundle" ] || { log "no CA bundle at $ca_bundle (set NODE_EXTRA_CA_CERTS)"; exit 1; }
node_key=$(recipe_key node "$NODE_VERSION" "$NPM_VERSION" "$(sha256sum <"$ca_bundle")")
envoy_key=$(recipe_key envoy "$ENVOY_VERSION")

work=''
base=''
cleanup() {
  [ -z "$base" ] || docker rmi "$base" >/dev/null 2>&1 || true
  [ -z "$work" ] || rm -rf "$work"
}
trap cleanup EXIT

# Debian's minimal root filesystem, trimmed as Debian's slim images are, imported as a private base.
debian_base() {
  [ -z "$base" ] || return 0
  work=$(mktemp -d)
  log "Debian $DEBIAN_SUITE root filesystem (mmdebstrap)"
  command -v mmdebstrap >/dev/null || apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends mmdebstrap >/dev/null; }
  local exclude=()
  for path in man doc info locale lintian groff; do exclude+=(--dpkgopt="path-exclude=/usr/share/$path/*"); done
  mmdebstrap --quiet --variant=minbase "${exclude[@]}" --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    "$DEBIAN_SUITE" "$work/rootfs.tar"
  base="sandbox-extproc/debian-base:$DEBIAN_SUITE-$$"
  docker import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" --change 'CMD ["bash"]' \
    "$work/rootfs.tar" "$base" >/dev/null
  rm "$work/rootfs.tar"
}

build_node() {
  local ctx="$work/node"
  mkdir -p "$ctx"
  cp "$NODE_BIN" "$ctx/node"
  (cd "$work" && npm pack --silent "npm@$NPM_VERSION" >/dev/null && tar -xzf "npm-$NPM_VERSION.tgz" && mv package "$ctx/npm")
  cp "$recipes/node-entrypoint.sh" "$ctx/"
  cp "$ca_bundle" "$ctx/extra-ca-certificates.crt"
  docker_build "$1" "$2" "$recipes/node.Dockerfile" "$ctx" --build-arg "NODE_VERSION=$NODE_VERSION" --build-arg "NPM_VERSION=$NPM_VERSION"
}

build_envoy() {
  local ctx="$work/envoy"
  mkdir -p "$ctx"
  cp "$ENVOY_BIN" "$ctx/envoy"
  cp "$recipes/envoy-entrypoint.sh" "$ctx/"
  docker_build "$1" "$2" "$recipes/envoy.Dockerfile" "$ctx" --build-arg "ENVOY_VERSION=$ENVOY_VERSION"
}

docker_build() { # <image> <key> <dockerfile> <context> <args...>
  local image=$1 key=$2 file=$3 ctx=$4 out; shift 4
  # The classic builder: BuildKit would need the buildx plugin and, for some Dockerfiles, a registry.
  if ! out=$(DOCKER_BUILDKIT=0 docker build --file "$file" --build-arg "BASE=$base" \
    --label "$LABEL=$key" \
    --label "org.opencontainers.image.description=Local stand-in for $image, built offline by scripts/base-images.sh; not the upstream image" \
    --tag "$image" "$@" "$ctx" 2>&1); then
    echo "$out" >&2
    log "building the stand-in for $image failed"
    return 1
  fi
}

ensure() { # <image> <key> <builder>
  local image=$1 key=$2 builder=$3
  local tarball="$cache/${image//[\/:]/-}-$key.tar"
  local found
  found=$(docker image inspect --format "{{len .RepoDigests}} {{index .Config.Labels \"$LABEL\"}}" "$image" 2>/dev/null || true)
  case "$found" in
    '' | '0 '*) ;;
    *) log "$image: pulled from a registry, used as is"; return 0 ;;
  esac
  if [ "$found" = "0 $key" ]; then return 0; fi
  if docker pull --quiet "$image" >/dev/null 2>&1; then
    log "$image: pulled"
    return 0
  fi
  if [ -f "$tarball" ]; then
    log "$image cannot be pulled: loading the local stand-in from $tarball"
    docker load --quiet --input "$tarball" >/dev/null
    return 0
  fi
  log "$image cannot be pulled: building a local stand-in"
  local started=$SECONDS
  debian_base
  "$builder" "$image" "$key"
  rm -f "$cache/${image//[\/:]/-}"-*.tar
  docker save --output "$tarball.partial" "$image" && mv "$tarball.partial" "$tarball"
  log "$image: built and cached in $((SECONDS - started)) s"
}

ensure "$node_image" "$node_key" build_node
ensure "$envoy_image" "$envoy_key" build_envoy
