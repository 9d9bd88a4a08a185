#!/usr/bin/env bash
# The README's quick start: provisions what is missing (Node 24, Envoy, kube-apiserver, etcd, helm, the
# Sandbox families' own controllers with kwok and kube-controller-manager; a
# Docker engine and base images for the tests; cached outside the repo), installs dependencies, then
# runs `npm run <command>`: demo, test, bench, ...
set -euo pipefail
cd "$(dirname "$0")/.."
command=${1:-demo}
shift || true
scripts/provision.sh node envoy controlplane controllers helm
# promtool checks the chart's alert rules in the integration suite; h2spec checks the gRPC port's HTTP/2;
# the OpenTelemetry Collector receives the tracing test's spans.
case "$command" in test | test:integration) scripts/provision.sh promtool h2spec otelcol ;; esac
# syft lists the image's packages and crane serves the release path's registry (container suites).
case "$command" in test | test:containers) scripts/provision.sh syft crane ;; esac
# The benchmark and the chaos suite also drive load with vegeta, h2load and ghz.
case "$command" in bench | test:chaos) scripts/provision.sh load ;; soak) scripts/provision.sh plot ;; esac
# The container suites need a Docker engine (started here if none runs and one can; they skip, saying
# why, where none can) and the base images the Dockerfile and the chart name. An engine started for
# this command is stopped when it ends, however it ends; one that was running is left alone.
stop_engine=''
case "$command" in
  test | test:containers | test:e2e)
    if ! docker version >/dev/null 2>&1; then
      stop_engine=yes
      trap 'scripts/provision.sh docker-stop' EXIT
    fi
    scripts/provision.sh docker images
    ;;
esac
# The e2e suite needs kind, its node image and the Sandbox controllers' images, which need a Docker engine
# (without one it skips).
# agent-sandbox's own SDK suites run there too, against the chart (their suites, SDK and runtime image).
case "$command" in test:e2e) if docker version >/dev/null 2>&1; then scripts/provision.sh kind agent-sandbox-sdk; fi ;; esac
eval "$(scripts/provision.sh env)"
if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
# exec would skip the trap that stops an engine started here.
if [ -n "$stop_engine" ]; then
  npm run "$command" -- "$@"
  exit
fi
exec npm run "$command" -- "$@"
