#!/bin/sh
# As the upstream Envoy image: arguments that start with a flag are Envoy's (`-c envoy.yaml ...`).
set -e
if [ "${1#-}" != "$1" ]; then
  set -- envoy "$@"
fi
exec "$@"
