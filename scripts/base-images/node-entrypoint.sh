#!/bin/sh
# As the upstream Node image: a first argument that is a flag, or not a command on PATH, is run by node.
set -e
if [ "${1#-}" != "$1" ] || [ -z "$(command -v "$1" || true)" ]; then
  set -- node "$@"
fi
exec "$@"
