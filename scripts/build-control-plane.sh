#!/usr/bin/env bash
# Builds the pinned control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
# kubectl, helm, and in the same build the node's kubelet and kube-scheduler) with the Go toolchain
# from the Go module proxy, into a cache folder outside the repository. Does nothing for a binary
# that is already there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/versions.env
source "$here/versions.env"

cache=${WFCLOCK_CACHE:-$HOME/.cache/wfclock}
bin="$cache/bin/stack-k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
mkdir -p "$bin"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
export GOPATH=${GOPATH:-$cache/gopath} GOCACHE=${GOCACHE:-$cache/gocache}

log() { printf '[build-control-plane] %s\n' "$*" >&2; }

staging_modules=(
  api apiextensions-apiserver apimachinery apiserver cli-runtime client-go cloud-provider
  cluster-bootstrap code-generator component-base component-helpers controller-manager cri-api
  cri-client cri-streaming csi-translation-lib dynamic-resource-allocation endpointslice
  externaljwt kms kube-aggregator kube-controller-manager kube-proxy kube-scheduler kubectl
  kubelet metrics mount-utils pod-security-admission sample-apiserver sample-cli-plugin
  sample-controller streaming
)

# Every Go program of the stack but containerd and the CNI plugins comes from one wrapper module
# and one `go build`: etcd, helm and the Kubernetes binaries of the control plane and of the node
# resolve to one module graph (every staging module replaced by its published version, since
# k8s.io/kubernetes refuses `go install`), so the packages they share (client-go, apimachinery,
# gRPC, protobuf, OpenTelemetry, ...) compile once. helm is the release built against this
# Kubernetes minor (docs/decisions.md). containerd builds apart: it needs the next minor's CRI.
stack_binaries=(etcd kube-apiserver kube-controller-manager kubectl kubelet kube-scheduler helm)

stack_package() {
  case $1 in
    etcd) echo "go.etcd.io/etcd/server/v3@$ETCD_VERSION" ;;
    helm) echo "helm.sh/helm/v3/cmd/helm@$HELM_VERSION" ;;
    *) echo "k8s.io/kubernetes/cmd/$1@$KUBERNETES_VERSION" ;;
  esac
}

stack_missing() {
  local b
  for b in "${stack_binaries[@]}"; do
    [ -x "$bin/$b" ] || echo "$b"
  done
}

# Builds each of stack_binaries that is not in $bin yet; does nothing when all are there. Two
# builds at once (parallel test runs on a fresh machine) take turns on the wrapper module.
build_stack() {
  [ -z "$(stack_missing)" ] && return 0
  local lock
  mkdir -p "$cache/src"
  exec {lock}>"$cache/src/${bin##*/}.lock"
  flock "$lock"
  local missing=()
  mapfile -t missing < <(stack_missing)
  if [ ${#missing[@]} -eq 0 ]; then
    exec {lock}>&-
    return 0
  fi
  local start=$SECONDS mod="$cache/src/${bin##*/}" all=() pkgs=() b
  log "building ${missing[*]} (Kubernetes $KUBERNETES_VERSION, etcd $ETCD_VERSION, helm $HELM_VERSION)"
  for b in "${stack_binaries[@]}"; do all+=("$(stack_package "$b")"); done
  for b in "${missing[@]}"; do pkgs+=("$(stack_package "$b")"); done
  local out
  out=$(mktemp -d "$bin/.build-XXXXXX")
  (
    mkdir -p "$mod" && cd "$mod"
    [ -f go.mod ] || go mod init wfclock.local/stack-build >/dev/null 2>&1
    for m in "${staging_modules[@]}"; do
      go mod edit -replace="k8s.io/$m=k8s.io/$m@$KUBERNETES_STAGING_VERSION"
    done
    # Always the whole set, so the module graph is the same whichever binaries are missing.
    go get "${all[@]}"
    local minor flags
    minor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)
    flags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
    flags+=" -X k8s.io/component-base/version.gitMajor=1"
    flags+=" -X k8s.io/component-base/version.gitMinor=$minor"
    flags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
    # As helm's own Makefile does: the default Kubernetes version of `helm template` and lint
    # follows the client-go it is built with (without it, helm says v1.20).
    flags+=" -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
    for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
      flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
    done
    go build -trimpath -ldflags "$flags" -o "$out/" "${pkgs[@]%@*}"
  ) || {
    rm -rf "$out"
    exec {lock}>&-
    return 1
  }
  # go names go.etcd.io/etcd/server/v3's program after the element before the major version.
  [ ! -e "$out/server" ] || mv "$out/server" "$out/etcd"
  for b in "${missing[@]}"; do mv "$out/$b" "$bin/$b"; done
  rm -rf "$out"
  exec {lock}>&-
  log "built ${missing[*]} in $((SECONDS - start)) s"
}

# The names scripts/build-node.sh, the Makefile and the tests ask for; one build makes them all.
build_etcd() { build_stack; }
build_kubernetes() { build_stack; }
build_helm() { build_stack; }

# The robfig/cron reference program for the fire-time parity test (version pinned in its go.mod).
build_cronref() {
  local src="$here/../tests/reference/cronref"
  local sum
  sum=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha1sum | cut -c1-12)
  [ -x "$cache/bin/cronref-$sum" ] && { ln -sf "cronref-$sum" "$cache/bin/cronref"; return 0; }
  log "building the robfig/cron reference program"
  (cd "$src" && go build -trimpath -o "$cache/bin/cronref-$sum" .)
  ln -sf "cronref-$sum" "$cache/bin/cronref"
}

# Sourced by scripts/build-node.sh for its functions; run, it builds what it is asked for.
if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  want=${*:-etcd kubernetes helm cronref}
  for what in $want; do "build_$what"; done
  echo "$bin"
fi
