#!/usr/bin/env bash
# Makes the images of the Sandbox families' own controllers that the kind e2e suite runs in its cluster:
# OpenKruise agents' agent-sandbox-controller and agent-sandbox's agent-sandbox-controller, from the
# binaries `scripts/provision.sh controllers` builds, with scripts/controller-images/controller.Dockerfile
# on the local Debian base (the image the project's Dockerfile builds FROM: `scripts/provision.sh images`
# makes it). No registry is needed.
#
#   scripts/controller-images.sh ref     prints both image references, space-separated (cheap)
#   scripts/controller-images.sh build   makes sure the engine has both: already there, else built
#
# The tags carry the controllers' versions and a hash of this recipe, so a new version or recipe makes
# new images (older tags are removed). Building one takes a few seconds (a copy of a cached binary), so
# no image archive is kept. Called by `scripts/provision.sh kind` (build) and `env` (ref).
#
# Needs: OPENKRUISE_AGENTS_COMMIT, AGENT_SANDBOX_VERSION, OPENKRUISE_DIR, AGENT_SANDBOX_DIR (set by provision.sh).
set -euo pipefail

: "${OPENKRUISE_AGENTS_COMMIT:?}" "${AGENT_SANDBOX_VERSION:?}" "${OPENKRUISE_DIR:?}" "${AGENT_SANDBOX_DIR:?}"
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipe="$here/scripts/controller-images/controller.Dockerfile"
log() { echo "controller-images: $*" >&2; }

hash=$(cat "$here/scripts/controller-images.sh" "$recipe" | sha256sum | cut -c1-12)
openkruise_image="sandbox-extproc/openkruise-agents-controller:$OPENKRUISE_AGENTS_COMMIT-$hash"
agent_sandbox_image="sandbox-extproc/agent-sandbox-controller:v$AGENT_SANDBOX_VERSION-$hash"

build() { # <image> <binary>
  local image=$1 binary=$2 base ctx out started=$SECONDS
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  [ -x "$binary" ] || { log "$binary is missing: run scripts/provision.sh controllers"; return 1; }
  base=$(sed -n 's/^FROM \([^ ]*\) AS build$/\1/p' "$here/Dockerfile")
  docker image inspect "$base" >/dev/null 2>&1 || { log "the Debian base $base is missing: run scripts/provision.sh images"; return 1; }
  ctx=$(mktemp -d)
  cp "$binary" "$ctx/manager"
  if ! out=$(DOCKER_BUILDKIT=0 docker build --quiet --file "$recipe" --build-arg "BASE=$base" --tag "$image" "$ctx" 2>&1); then
    rm -rf "$ctx"
    echo "$out" >&2
    log "building $image failed"
    return 1
  fi
  rm -rf "$ctx"
  # Earlier versions' and recipes' images of this controller.
  docker images --format '{{.Repository}}:{{.Tag}}' "${image%%:*}" | grep -vxF "$image" | xargs -r docker rmi >/dev/null 2>&1 || true
  log "built $image in $((SECONDS - started)) s"
}

case "${1:-}" in
  ref) echo "$openkruise_image $agent_sandbox_image" ;;
  build)
    build "$openkruise_image" "$OPENKRUISE_DIR/bin/agent-sandbox-controller"
    build "$agent_sandbox_image" "$AGENT_SANDBOX_DIR/bin/agent-sandbox-controller"
    ;;
  *) echo "usage: scripts/controller-images.sh ref|build" >&2; exit 2 ;;
esac
