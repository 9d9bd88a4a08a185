#!/usr/bin/env bash
# Builds a kind node image without any container registry: kind's own node images live in one, and
# `kind build node-image` fetches from several. Everything here comes from Debian's packages and the Go
# module proxy; docs/kind-node-image.md says what is in the image and why.
#
#   scripts/kind-node-image.sh ref     prints the image reference (cheap: hashes this recipe)
#   scripts/kind-node-image.sh build   makes sure the engine has the image: already there, else loaded
#                                      from the cache (a `docker save` tarball), else kind's stock image
#                                      if a registry serves it, else built and cached
#
# The Go binaries are cached by version, the image by version and by a hash of its recipe (this script
# and scripts/kind-node/), under ~/.cache/sandbox-extproc. Called by `scripts/provision.sh kind`.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-1.35.4}
KIND_VERSION=${KIND_VERSION:-0.32.0}
# The versions kubeadm 1.35 deploys (cmd/kubeadm/app/constants); etcd is the one k8s.io/kubernetes 1.35
# pins in its go.mod (test/controlplane/tools builds it), one patch below kubeadm's default, so
# scripts/kind-node/cluster.yaml sets kubeadm's etcd imageTag to match.
COREDNS_VERSION=1.13.1
PAUSE_VERSION=3.10.1
ETCD_IMAGE_TAG=3.6.5-0
DEBIAN_SUITE=bookworm

here=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
recipe="$here/scripts/kind-node"
cache=${SBX_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/sandbox-extproc}
log() { echo "kind-node-image: $*" >&2; }

recipe_hash() {
  {
    echo "$KUBE_VERSION $KIND_VERSION $COREDNS_VERSION $PAUSE_VERSION $ETCD_IMAGE_TAG $DEBIAN_SUITE"
    cat "$here/scripts/kind-node-image.sh"
    find "$recipe" -type f | LC_ALL=C sort | xargs cat
  } | sha256sum | cut -c1-12
}

tag="v$KUBE_VERSION-$(recipe_hash)"
image="sandbox-extproc/kind-node:$tag"
image_dir="$cache/kind-node-$tag"
bin_dir="$cache/kind-node-bin-$KUBE_VERSION-coredns$COREDNS_VERSION"
kube_dir="$cache/kube-$KUBE_VERSION"

# kubelet, kubeadm, kubectl and the control plane, all from the wrapper module that already builds
# kube-apiserver (so they share its Go build cache), with the version stamped in.
build_binaries() {
  [ -x "$bin_dir/bin/coredns" ] && return 0
  local minor=${KUBE_VERSION#*.}; minor=${minor%%.*}
  local ld="-s -w -X k8s.io/component-base/version.gitVersion=v$KUBE_VERSION"
  ld="$ld -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$minor"
  ld="$ld -X k8s.io/component-base/version.gitTreeState=clean"
  rm -rf "$bin_dir.partial" && mkdir -p "$bin_dir.partial/bin"
  local c started
  for c in kubelet kubeadm kubectl kube-controller-manager kube-scheduler kube-proxy; do
    started=$(date +%s)
    (cd "$here/test/controlplane/tools" &&
      CGO_ENABLED=0 nice go build -trimpath -ldflags "$ld" -o "$bin_dir.partial/bin/$c" "k8s.io/kubernetes/cmd/$c")
    log "built $c ($(($(date +%s) - started)) s)"
  done
  # CoreDNS's module has no replace directives: `go install` builds the release as published.
  started=$(date +%s)
  CGO_ENABLED=0 GOBIN="$bin_dir.partial/bin" nice go install -trimpath -ldflags "-s -w" "github.com/coredns/coredns@v$COREDNS_VERSION"
  log "built coredns ($(($(date +%s) - started)) s)"
  # pause: the static C program from the same k8s.io/kubernetes module, built as its Makefile does.
  local src; src=$(cd "$here/test/controlplane/tools" && go list -m -f '{{.Dir}}' k8s.io/kubernetes)/build/pause/linux/pause.c
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION" -o "$bin_dir.partial/bin/pause" "$src"
  strip "$bin_dir.partial/bin/pause"
  "$bin_dir.partial/bin/kubeadm" version -o short | grep -qx "v$KUBE_VERSION"
  mv "$bin_dir.partial" "$bin_dir"
}

# A one-binary image FROM scratch, saved as a docker archive under the name kubeadm expects.
binary_image() {
  local name=$1 binary=$2 path=$3 out=$4; shift 4
  local root; root=$(mktemp -d "$work/img.XXXX")
  install -D -m 0755 "$binary" "$root$path"
  tar -C "$root" -c . | docker import "$@" --change "ENV PATH=/usr/local/bin:/usr/bin:/bin" - "$name" >/dev/null
  docker save -o "$out" "$name"
  docker rmi "$name" >/dev/null
}

build_image() {
  [ -x "$kube_dir/bin/kube-apiserver" ] && [ -x "$kube_dir/bin/etcd" ] ||
    { log "missing $kube_dir: run scripts/provision.sh controlplane first"; exit 1; }
  build_binaries
  local kind_src; kind_src=$(go mod download -json "sigs.k8s.io/kind@v$KIND_VERSION" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
  [ -d "$kind_src/images/base/files" ] || { log "kind module has no images/base/files ($kind_src)"; exit 1; }
  work=$(mktemp -d /var/tmp/kind-node-build.XXXXXX)
  builder="kind-node-build-$$"
  trap 'docker rm -f "$builder" >/dev/null 2>&1 || true; docker rmi "$image-base" "$image-preloaded" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
  mkdir -p "$work/images"

  log "component images (kube-apiserver, controller-manager, scheduler, kube-proxy, etcd, coredns, pause)"
  local reg=registry.k8s.io k=v$KUBE_VERSION c
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    local bin="$bin_dir/bin/$c"; [ "$c" = kube-apiserver ] && bin="$kube_dir/bin/$c"
    binary_image "$reg/$c:$k" "$bin" "/usr/local/bin/$c" "$work/images/$c.tar" --change "ENTRYPOINT [\"/usr/local/bin/$c\"]"
  done
  binary_image "$reg/etcd:$ETCD_IMAGE_TAG" "$kube_dir/bin/etcd" /usr/local/bin/etcd "$work/images/etcd.tar" \
    --change 'ENTRYPOINT ["/usr/local/bin/etcd"]'
  binary_image "$reg/coredns/coredns:v$COREDNS_VERSION" "$bin_dir/bin/coredns" /coredns "$work/images/coredns.tar" \
    --change 'ENTRYPOINT ["/coredns"]'
  binary_image "$reg/pause:$PAUSE_VERSION" "$bin_dir/bin/pause" /pause "$work/images/pause.tar" \
    --change 'ENTRYPOINT ["/pause"]' --change 'USER 65535:65535'
  # kube-proxy runs nft (nftables mode, see cluster.yaml) and the CNI installer a shell and ip: one
  # small Debian userland image under both names.
  mmdebstrap --quiet --variant=minbase --include=nftables,iptables,conntrack,iproute2 "$DEBIAN_SUITE" "$work/userland" >/dev/null
  install -D -m 0755 "$bin_dir/bin/kube-proxy" "$work/userland/usr/local/bin/kube-proxy"
  rm -rf "$work/userland"/var/cache/apt/* "$work/userland"/var/lib/apt/lists/* "$work/userland"/usr/share/{doc,man,locale}
  tar -C "$work/userland" -c . | docker import --change "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" - "$reg/kube-proxy:$k" >/dev/null
  docker tag "$reg/kube-proxy:$k" "sandbox-extproc/kind-cni-installer:$tag"
  docker save -o "$work/images/kube-proxy.tar" "$reg/kube-proxy:$k" "sandbox-extproc/kind-cni-installer:$tag"
  docker rmi "$reg/kube-proxy:$k" "sandbox-extproc/kind-cni-installer:$tag" >/dev/null

  log "node rootfs (Debian $DEBIAN_SUITE: systemd, containerd, runc, CNI plugins) with kind's base files"
  local files="$kind_src/images/base/files"
  mmdebstrap --quiet --variant=minbase \
    --include=systemd,dbus,containerd,runc,containernetworking-plugins,iptables,nftables,conntrack,iproute2,ethtool,util-linux,mount,kmod,libseccomp2,pigz,bash,ca-certificates,curl,jq,procps,socat,ebtables \
    "$DEBIAN_SUITE" "$work/rootfs" >/dev/null
  local r="$work/rootfs"
  # The layout of kind's base image Dockerfile: its files with its modes, its unit pruning.
  install -m 0755 "$files"/usr/local/bin/* "$r/usr/local/bin/"
  mkdir -p "$r/kind/bin" "$r/kind/manifests" "$r/etc/kubernetes/manifests" "$r/etc/containerd" "$r/etc/systemd/system/kubelet.service.d"
  install -m 0755 "$files"/kind/bin/* "$r/kind/bin/"
  install -m 0644 "$files/etc/crictl.yaml" "$r/etc/"
  install -m 0644 "$files"/etc/containerd/* "$r/etc/containerd/"
  install -m 0644 "$files"/etc/default/* "$r/etc/default/"
  install -m 0644 "$files"/etc/sysctl.d/* "$r/etc/sysctl.d/"
  install -m 0644 "$files"/etc/systemd/system/*.service "$files"/etc/systemd/system/*.slice "$r/etc/systemd/system/"
  install -m 0644 "$files"/etc/systemd/system/kubelet.service.d/* "$r/etc/systemd/system/kubelet.service.d/"
  # Debian installs the CNI plugins in /usr/lib/cni; containerd looks in /opt/cni/bin.
  mkdir -p "$r/opt/cni" && ln -s /usr/lib/cni "$r/opt/cni/bin"
  # Debian installs containerd in /usr/bin; kind's unit expects its own build in /usr/local/bin.
  sed -i 's|^ExecStart=/usr/local/bin/containerd|ExecStart=/usr/bin/containerd|' "$r/etc/systemd/system/containerd.service"
  # The pause image kubeadm 1.35 names (kind's config still names 3.10).
  sed -i "s|sandbox_image = \"registry.k8s.io/pause:[^\"]*\"|sandbox_image = \"registry.k8s.io/pause:$PAUSE_VERSION\"|" "$r/etc/containerd/config.toml"
  grep -q "pause:$PAUSE_VERSION" "$r/etc/containerd/config.toml"
  find "$r/lib/systemd/system/sysinit.target.wants/" -name systemd-tmpfiles-setup.service -delete
  rm -f "$r"/lib/systemd/system/multi-user.target.wants/* "$r"/etc/systemd/system/*.wants/* \
    "$r"/lib/systemd/system/local-fs.target.wants/* "$r"/lib/systemd/system/sockets.target.wants/*udev* \
    "$r"/lib/systemd/system/sockets.target.wants/*initctl* "$r"/lib/systemd/system/basic.target.wants/*
  echo "ReadKMsg=no" >>"$r/etc/systemd/journald.conf"
  ln -sf /usr/lib/systemd/systemd "$r/sbin/init"
  chroot "$r" systemctl enable kubelet.service containerd.service undo-mount-hacks.service >/dev/null 2>&1
  chroot "$r" systemctl mask systemd-binfmt.service >/dev/null 2>&1
  # runc's default spec with kind's createContainer hook, and no rlimits (raising them needs
  # CAP_SYS_RESOURCE, which a node without --privileged lacks).
  chroot "$r" ctr oci spec |
    jq '.hooks.createContainer[.hooks.createContainer| length] |= . + {"path": "/kind/bin/mount-product-files.sh"}' |
    jq 'del(.process.rlimits)' >"$r/etc/containerd/cri-base.json"
  # Kubernetes itself, and what `kind create cluster` reads from the node.
  install -m 0755 "$bin_dir/bin/kubelet" "$bin_dir/bin/kubeadm" "$bin_dir/bin/kubectl" "$r/usr/bin/"
  printf 'v%s' "$KUBE_VERSION" >"$r/kind/version"
  sed "s|@CNI_INSTALLER_IMAGE@|sandbox-extproc/kind-cni-installer:$tag|" "$recipe/default-cni.yaml" >"$r/kind/manifests/default-cni.yaml"
  install -m 0755 "$recipe/node-entrypoint" "$r/usr/local/bin/sandbox-extproc-node-entrypoint"
  rm -rf "$r"/var/cache/apt/* "$r"/var/lib/apt/lists/* "$r"/var/log/* "$r"/usr/share/{doc,man,locale}
  tar -C "$r" -c . | docker import --change 'ENV container=docker' - "$image-base" >/dev/null
  rm -rf "$r"

  log "preloading the component images into the node's containerd (k8s.io namespace)"
  docker run -d --name "$builder" --entrypoint sleep --security-opt seccomp=unconfined "$image-base" infinity >/dev/null
  docker cp "$work/images" "$builder:/kind/images"
  # As kind's own builder does: import into the content store without unpacking (no mounts needed);
  # containerd unpacks on first use. Pinned, so the kubelet's image GC never removes them.
  docker exec "$builder" bash -ec '
    containerd >/tmp/containerd.log 2>&1 &
    for i in $(seq 1 100); do ctr version >/dev/null 2>&1 && break; [ "$i" = 100 ] && exit 1; sleep 0.1; done
    for f in /kind/images/*.tar; do
      ctr --namespace=k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests "$f" >/dev/null
    done
    kill %1; wait %1 || true
    rm -rf /kind/images /tmp/containerd.log /run/containerd'
  docker commit "$builder" "$image-preloaded" >/dev/null
  # Metadata `docker commit` cannot set (STOPSIGNAL: systemd stops on SIGRTMIN+3, not SIGTERM); a build
  # with no context and no RUN adds no layer.
  printf '%s\n' "FROM $image-preloaded" 'STOPSIGNAL SIGRTMIN+3' 'ENV container=docker' \
    "LABEL io.sandbox-extproc.kind-node=$tag" \
    'ENTRYPOINT ["/usr/local/bin/sandbox-extproc-node-entrypoint", "/usr/local/bin/entrypoint", "/sbin/init"]' \
    'CMD []' | DOCKER_BUILDKIT=0 docker build --quiet -t "$image" - >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; exit 1; }
  rm -rf "$image_dir.partial" && mkdir -p "$image_dir.partial"
  docker save -o "$image_dir.partial/image.tar" "$image"
  mv "$image_dir.partial" "$image_dir"
  log "built $image"
  # Earlier recipes' images are 1.1 GB each: drop them (an image a cluster still runs on stays).
  local old
  for old in "$cache"/kind-node-v*; do [ "$old" = "$image_dir" ] || rm -rf "$old"; done
  docker images --format '{{.Repository}}:{{.Tag}}' sandbox-extproc/kind-node | grep -vxF "$image" |
    xargs -r docker rmi >/dev/null 2>&1 || true
}

case "${1:-}" in
  ref) echo "$image" ;;
  build)
    if docker image inspect "$image" >/dev/null 2>&1; then exit 0; fi
    if [ -f "$image_dir/image.tar" ]; then
      log "loading $image from $image_dir"
      docker load -i "$image_dir/image.tar" >/dev/null
      exit 0
    fi
    # Where a registry is reachable, kind's stock image for this version saves the build (it works with
    # scripts/kind-node/cluster.yaml too); SBX_KIND_BUILD_NODE=1 builds regardless.
    if [ "${SBX_KIND_BUILD_NODE:-}" != 1 ] &&
      timeout 300 docker pull "kindest/node:v$KUBE_VERSION" >/dev/null 2>&1; then
      log "using the stock kindest/node:v$KUBE_VERSION as $image"
      docker tag "kindest/node:v$KUBE_VERSION" "$image"
      exit 0
    fi
    log "building $image (the first build takes a while: Go builds and two Debian bootstraps)"
    build_image
    ;;
  *) echo "usage: scripts/kind-node-image.sh ref|build" >&2; exit 2 ;;
esac
