#!/usr/bin/env bash
# Builds what the local node runs (devstack/wfclock_devstack/node.py), pinned and cached like the
# control plane, into a folder outside the repository; does nothing for a part already there:
#
#   packages  runc and podman from Debian's packages, when missing
#   kubelet   kubelet and kube-scheduler, k8s.io/kubernetes $KUBERNETES_VERSION
#   containerd containerd, containerd-shim-runc-v2 and ctr, $CONTAINERD_VERSION
#   cni       the CNI reference plugins bridge, host-local and loopback, $CNI_PLUGINS_VERSION
#   pause     the pod sandbox image: Kubernetes' pause.c, static, in a FROM scratch image archive
#   probe     the node test's image (tests/node/probe): a static Go program, FROM scratch
#
# Prints the folder last. No image registry is used: images are archives that the node imports.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/build-control-plane.sh
source "$here/build-control-plane.sh"

node_bin="$cache/bin/node-k8s-$KUBERNETES_VERSION-containerd-$CONTAINERD_VERSION-cni-$CNI_PLUGINS_VERSION"
mkdir -p "$node_bin"

log() { printf '[build-node] %s\n' "$*" >&2; }

as_root=()
[ "$(id -u)" -eq 0 ] || as_root=(sudo)

build_packages() {
  local missing=()
  command -v runc >/dev/null || missing+=(runc)
  command -v podman >/dev/null || missing+=(podman)
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]} from Debian's packages"
  "${as_root[@]}" apt-get update -qq
  "${as_root[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# kubelet and kube-scheduler come from the control plane's one Go build (build-control-plane.sh).
build_kubelet() {
  build_stack
  for b in kubelet kube-scheduler; do
    [ -x "$node_bin/$b" ] || ln -sfn "$bin/$b" "$node_bin/$b"
  done
}

build_containerd() {
  local missing=()
  for b in containerd containerd-shim-runc-v2 ctr; do
    [ -x "$node_bin/$b" ] || missing+=("$b")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local start=$SECONDS pkg=github.com/containerd/containerd/v2
  log "building containerd $CONTAINERD_VERSION"
  # The flags and tags of containerd's own Makefile (the shim builds without gRPC).
  local ldflags="-s -w -X $pkg/version.Version=$CONTAINERD_VERSION -X $pkg/version.Package=$pkg"
  GOBIN="$node_bin" go install -trimpath -tags urfave_cli_no_docs -ldflags "$ldflags" \
    "$pkg/cmd/containerd@$CONTAINERD_VERSION" "$pkg/cmd/ctr@$CONTAINERD_VERSION"
  GOBIN="$node_bin" go install -trimpath -tags "urfave_cli_no_docs no_grpc" -ldflags "$ldflags" \
    "$pkg/cmd/containerd-shim-runc-v2@$CONTAINERD_VERSION"
  log "built containerd in $((SECONDS - start)) s"
}

build_cni() {
  local mod=github.com/containernetworking/plugins missing=()
  for p in main/bridge ipam/host-local main/loopback; do
    [ -x "$node_bin/cni/$(basename "$p")" ] || missing+=("$mod/plugins/$p@$CNI_PLUGINS_VERSION")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local start=$SECONDS
  log "building the CNI plugins $CNI_PLUGINS_VERSION"
  GOBIN="$node_bin/cni" go install -trimpath \
    -ldflags "-s -w -X $mod/pkg/utils/buildversion.BuildVersion=$CNI_PLUGINS_VERSION" "${missing[@]}"
  log "built the CNI plugins in $((SECONDS - start)) s"
}

# podman with wfclock's settings (scripts/containers.conf: runc, cgroupfs, ulimits; docs/image.md),
# never the machine's. Only `build` (FROM scratch and COPY: nothing runs) and `save` are used.
podman_() {
  CONTAINERS_CONF="$here/containers.conf" podman "$@"
}

# Builds a FROM scratch image of one static program and saves it as a docker-archive.
# Usage: image_archive ARCHIVE NAME PROGRAM USER
image_archive() {
  local archive=$1 name=$2 program=$3 user=$4 context
  context=$(mktemp -d)
  cp "$program" "$context/$(basename "$program")"
  printf 'FROM scratch\nCOPY %s /%s\nUSER %s\nENTRYPOINT ["/%s"]\n' \
    "$(basename "$program")" "$(basename "$program")" "$user" "$(basename "$program")" \
    >"$context/Containerfile"
  podman_ build --quiet --no-cache -t "$name" -f "$context/Containerfile" "$context" >/dev/null
  podman_ save --quiet --format docker-archive -o "$archive.part" "$name"
  podman_ rmi --force "$name" >/dev/null
  mv "$archive.part" "$archive"
  rm -rf "$context"
}

build_pause() {
  [ -f "$node_bin/pause.tar" ] && return 0
  build_packages
  local start=$SECONDS src
  log "building the pause image $PAUSE_VERSION from k8s.io/kubernetes $KUBERNETES_VERSION"
  src=$(go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" |
    sed -n 's/^\s*"Dir": "\(.*\)",$/\1/p')/build/pause/linux/pause.c
  local out
  out=$(mktemp -d)
  # As build/pause/Makefile compiles it.
  gcc -Os -Wall -Werror -static -DVERSION="v$PAUSE_VERSION-$KUBERNETES_VERSION" -o "$out/pause" "$src"
  image_archive "$node_bin/pause.tar" "localhost/wfclock/pause:$PAUSE_VERSION" "$out/pause" 65535:65535
  rm -rf "$out"
  log "built the pause image in $((SECONDS - start)) s"
}

# The node test's container: a static Go program (pinned in its go.mod) as uid 65532.
build_probe() {
  local src="$here/../tests/node/probe" sum
  sum=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha1sum | cut -c1-12)
  [ -f "$node_bin/probe-$sum.tar" ] && { ln -sf "probe-$sum.tar" "$node_bin/probe.tar"; return 0; }
  build_packages
  log "building the node test's probe image"
  local out
  out=$(mktemp -d)
  (cd "$src" && go build -trimpath -ldflags "-s -w" -o "$out/probe" .)
  image_archive "$node_bin/probe-$sum.tar" "localhost/wfclock/node-probe:$sum" "$out/probe" 65532:65532
  rm -rf "$out"
  find "$node_bin" -maxdepth 1 -name 'probe-*.tar' ! -name "probe-$sum.tar" -delete
  ln -sf "probe-$sum.tar" "$node_bin/probe.tar"
}

want=${*:-packages kubelet containerd cni pause probe}
for what in $want; do "build_$what"; done
echo "$node_bin"
