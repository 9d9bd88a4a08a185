#!/usr/bin/env bash
# Makes what agent-sandbox's own SDK end-to-end suites need (test/e2e/agent-sandbox-sdk.test.ts runs them
# in kind against the chart), cached by version; no container registry is needed:
#   - a work tree with their suites and the clients they build, copied from the Go module v$AGENT_SANDBOX_VERSION
#     (read-only in the module cache): test/e2e/clients/{python,typescript}, the Python client's router
#     and gateway manifests, the TypeScript client; with the TypeScript suite's node_modules (npm ci with
#     their lockfiles; the client built by its own `prepare`);
#   - a Python venv with PyPI k8s-agent-sandbox==$SDK_VERSION (the SDK their Python suite imports), pytest
#     and PyYAML;
#   - their Go client's own example (clients/go/examples/basic, go install from the module): its default
#     connection is the tunnel that lists sandbox-router-svc's EndpointSlices and port-forwards to port
#     8080 of a ready pod;
#   - the image their SandboxTemplates name, python-runtime-sandbox, from the module's
#     examples/python-runtime-sandbox (main.py) on the local Debian base with Debian's python3 and the
#     wheels of its API server's hash-pinned requirements (fastapi, uvicorn, python-multipart and what
#     they need); the data-science packages its requirements.txt also pins (pandas, scikit-learn,
#     lightgbm: "for the ML agent's tasks") are left out: main.py does not import them, the suites do not
#     use them, and they would make the image ten times larger.
#
#   scripts/agent-sandbox-sdk.sh ref     prints the work tree, the venv, the runtime image and the Go example (cheap)
#   scripts/agent-sandbox-sdk.sh build   makes them where missing (the image needs a Docker engine)
#
# Needs: AGENT_SANDBOX_VERSION, CACHE (set by provision.sh); go, python3, npm, docker.
set -euo pipefail

: "${AGENT_SANDBOX_VERSION:?}" "${CACHE:?}"
SDK_VERSION=1.0.8
PYTEST_VERSION=9.2.0
PYYAML_VERSION=6.0.3
here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipe="$here/scripts/agent-sandbox-sdk/python-runtime.Dockerfile"
log() { echo "agent-sandbox-sdk: $*" >&2; }

hash=$(cat "$here/scripts/agent-sandbox-sdk.sh" "$recipe" | sha256sum | cut -c1-12)
dir="$CACHE/agent-sandbox-sdk-v$AGENT_SANDBOX_VERSION-$SDK_VERSION-$hash"
image="kind.local/python-runtime-sandbox:v$AGENT_SANDBOX_VERSION-$hash"

module_dir() {
  go mod download -json "sigs.k8s.io/agent-sandbox@v$AGENT_SANDBOX_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

build_tree() {
  [ -f "$dir/tree/.done" ] && return 0
  local module started=$SECONDS
  module=$(module_dir)
  rm -rf "$dir/tree" && mkdir -p "$dir/tree"
  (cd "$module" && cp -r --parents \
    test/__init__.py test/e2e/__init__.py test/e2e/clients/__init__.py test/e2e/clients/python test/e2e/clients/typescript \
    clients/python/agentic-sandbox-client/sandbox-router clients/python/agentic-sandbox-client/gateway-kind \
    clients/typescript/agentic-sandbox-client examples/python-runtime-sandbox "$dir/tree/")
  chmod -R u+w "$dir/tree"
  log "their TypeScript client and suite: npm ci with their lockfiles"
  (cd "$dir/tree/clients/typescript/agentic-sandbox-client" && npm ci --no-audit --no-fund --loglevel=error >&2)
  (cd "$dir/tree/test/e2e/clients/typescript" && npm ci --no-audit --no-fund --loglevel=error >&2)
  touch "$dir/tree/.done"
  log "work tree ready in $((SECONDS - started)) s"
}

build_venv() {
  [ -x "$dir/venv/bin/pytest" ] && return 0
  log "Python venv: k8s-agent-sandbox==$SDK_VERSION, pytest==$PYTEST_VERSION, PyYAML==$PYYAML_VERSION (PyPI)"
  rm -rf "$dir/venv"
  python3 -m venv "$dir/venv"
  "$dir/venv/bin/pip" install --quiet --disable-pip-version-check \
    "k8s-agent-sandbox==$SDK_VERSION" "pytest==$PYTEST_VERSION" "PyYAML==$PYYAML_VERSION" >&2
}

build_image() {
  docker image inspect "$image" >/dev/null 2>&1 && return 0
  local base ctx out started=$SECONDS py
  base=$(sed -n 's/^FROM \([^ ]*\) AS build$/\1/p' "$here/Dockerfile")
  docker image inspect "$base" >/dev/null 2>&1 || { log "the Debian base $base is missing: run scripts/provision.sh images"; return 1; }
  ctx=$(mktemp -d)
  cp "$dir/tree/examples/python-runtime-sandbox/main.py" "$ctx/"
  # The API server's part of their hash-pinned requirements: its packages and what they need.
  python3 - "$dir/tree/examples/python-runtime-sandbox/requirements.txt" >"$ctx/requirements.txt" <<'EOF'
import re, sys
keep = {'annotated-doc', 'annotated-types', 'anyio', 'click', 'fastapi', 'h11', 'idna', 'pydantic', 'pydantic-core',
        'python-multipart', 'starlette', 'typing-extensions', 'typing-inspection', 'uvicorn'}
current = None
for line in open(sys.argv[1]):
    m = re.match(r'^([A-Za-z0-9_.-]+)==', line)
    if m:
        current = m.group(1).lower()
    if current in keep and not line.lstrip().startswith('#'):
        print(line.rstrip('\n'))
EOF
  # The wheels for the image's Python (Debian bookworm's 3.11), hashes checked, fetched on the host.
  py=3.11
  python3 -m pip download --quiet --disable-pip-version-check --require-hashes --only-binary=:all: \
    --python-version "$py" --platform manylinux2014_x86_64 -r "$ctx/requirements.txt" -d "$ctx/wheels" >&2
  if ! out=$(DOCKER_BUILDKIT=0 docker build --quiet --file "$recipe" --build-arg "BASE=$base" --tag "$image" "$ctx" 2>&1); then
    rm -rf "$ctx"
    echo "$out" >&2
    log "building $image failed"
    return 1
  fi
  rm -rf "$ctx"
  docker images --format '{{.Repository}}:{{.Tag}}' "${image%%:*}" | grep -vxF "$image" | xargs -r docker rmi >/dev/null 2>&1 || true
  log "built $image in $((SECONDS - started)) s"
}

build_go_example() {
  [ -x "$dir/bin/basic" ] && return 0
  log "their Go client's example clients/go/examples/basic (go install)"
  CGO_ENABLED=0 GOBIN="$dir/bin" go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/agent-sandbox/clients/go/examples/basic@v$AGENT_SANDBOX_VERSION" >&2
}

case "${1:-}" in
  ref) echo "$dir/tree $dir/venv $image $dir/bin/basic" ;;
  build)
    build_tree
    build_venv
    build_go_example
    if docker version >/dev/null 2>&1; then build_image; else log "no Docker engine: $image not made (the e2e suite skips)"; fi
    # Earlier versions' and recipes' work trees.
    for old in "$CACHE"/agent-sandbox-sdk-v*; do [ "$old" = "$dir" ] || rm -rf "$old"; done
    ;;
  *) echo "usage: scripts/agent-sandbox-sdk.sh ref|build" >&2; exit 2 ;;
esac
