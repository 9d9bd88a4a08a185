#!/usr/bin/env bash
# Runs the provisioned kind (scripts/provision.sh kind) with this project's node image and cluster
# configuration, on any host with a Docker engine:
#   scripts/kind.sh create cluster --name NAME [--config FILE] ...   (any kind command works)
# `kind create cluster` gets --image (the image scripts/kind-node-image.sh built; SBX_KIND_IMAGE
# overrides it, e.g. with a stock kindest/node where a registry is reachable) and --config
# (scripts/kind-node/cluster.yaml) unless given. Where the engine refuses `docker run --privileged`,
# kind runs with scripts/kind-docker/docker first on its PATH (see that file for why and what it changes).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
eval "$("$here/scripts/provision.sh" env)"
kind=$SBX_KIND
image=${SBX_KIND_IMAGE:-$SBX_KIND_NODE_IMAGE}
[ -x "$kind" ] || { echo "kind.sh: $kind is missing: run scripts/provision.sh kind" >&2; exit 1; }

args=("$@")
if [ "${1:-}" = create ] && [ "${2:-}" = cluster ]; then
  case " $* " in *" --image "* | *" --image="*) ;; *) args+=(--image "$image") ;; esac
  case " $* " in *" --config "* | *" --config="*) ;; *) args+=(--config "$here/scripts/kind-node/cluster.yaml") ;; esac
fi

# One probe per engine, remembered for the engine's lifetime (its ID and start time). It needs the node
# image; `kind delete` and the like work without it (they never run a privileged container).
probe_key=$(docker info --format '{{.ID}}' 2>/dev/null | tr -c 'A-Za-z0-9\n' _)-$(stat -c %Y /var/run/docker.pid 2>/dev/null || echo 0)
probe_file=${TMPDIR:-/tmp}/sandbox-extproc-privileged-$probe_key
if [ ! -f "$probe_file" ] && docker image inspect "$image" >/dev/null 2>&1; then
  if docker run --rm --privileged --entrypoint true "$image" >/dev/null 2>&1; then echo yes >"$probe_file"; else echo no >"$probe_file"; fi
fi
if [ "$(cat "$probe_file" 2>/dev/null)" != yes ]; then
  SBX_REAL_DOCKER=$(command -v docker)
  export SBX_REAL_DOCKER
  PATH="$here/scripts/kind-docker:$PATH"
fi
exec "$kind" "${args[@]}"
