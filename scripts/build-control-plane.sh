#!/usr/bin/env bash
# Builds the pinned control-plane binaries (etcd, kube-apiserver, kube-controller-manager,
# kubectl, helm) with the Go toolchain from the Go module proxy, into a cache folder outside the
# repository. Does nothing for a binary that is already there.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/versions.env
source "$here/versions.env"

cache=${WFCLOCK_CACHE:-$HOME/.cache/wfclock}
bin="$cache/bin/k8s-$KUBERNETES_VERSION-etcd-$ETCD_VERSION-helm-$HELM_VERSION"
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

# Builds k8s.io/kubernetes/cmd/<name> at the pinned version into OUT_DIR for each NAME that is not
# there yet, in one `go build` so shared packages compile once. A throwaway wrapper module replaces
# every staging module with its published version (k8s.io/kubernetes refuses `go install`).
# Usage: go_build_kubernetes OUT_DIR NAME...
go_build_kubernetes() {
  local out=$1 missing=()
  shift
  for b in "$@"; do
    [ -x "$out/$b" ] || missing+=("$b")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local start=$SECONDS mod="$cache/src/k8s-$KUBERNETES_VERSION"
  log "building ${missing[*]} $KUBERNETES_VERSION"
  mkdir -p "$mod" "$out"
  (
    cd "$mod"
    [ -f go.mod ] || go mod init wfclock.local/k8s-build >/dev/null 2>&1
    for m in "${staging_modules[@]}"; do
      go mod edit -replace="k8s.io/$m=k8s.io/$m@$KUBERNETES_STAGING_VERSION"
    done
    local pkgs=()
    for b in "${missing[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$b"); done
    go get "${pkgs[@]/%/@$KUBERNETES_VERSION}"
    local ldflags="-s -w -X k8s.io/component-base/version.gitVersion=$KUBERNETES_VERSION"
    ldflags+=" -X k8s.io/component-base/version.gitMajor=1"
    ldflags+=" -X k8s.io/component-base/version.gitMinor=$(echo "$KUBERNETES_VERSION" | cut -d. -f2)"
    ldflags+=" -X k8s.io/client-go/pkg/version.gitVersion=$KUBERNETES_VERSION"
    go build -trimpath -ldflags "$ldflags" -o "$out/" "${pkgs[@]}"
  )
  log "built ${missing[*]} in $((SECONDS - start)) s"
}

build_kubernetes() {
  go_build_kubernetes "$bin" kube-apiserver kube-controller-manager kubectl
}

build_etcd() {
  [ -x "$bin/etcd" ] && return 0
  local start=$SECONDS mod="$cache/src/etcd-$ETCD_VERSION"
  log "building etcd $ETCD_VERSION"
  mkdir -p "$mod" && cd "$mod"
  [ -f go.mod ] || go mod init wfclock.local/etcd-build >/dev/null 2>&1
  go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$bin/etcd" go.etcd.io/etcd/server/v3
  log "built etcd in $((SECONDS - start)) s"
}

build_helm() {
  [ -x "$bin/helm" ] && return 0
  local start=$SECONDS
  log "building helm $HELM_VERSION"
  # As helm's own Makefile does: the default Kubernetes version for `helm template` and lint
  # follows the client-go that helm is built with.
  local minor
  minor=$(go mod download -json "helm.sh/helm/v3@$HELM_VERSION" >/dev/null &&
    sed -n 's#^\s*k8s.io/client-go v0\.\([0-9]*\)\..*#\1#p' \
      "$GOPATH/pkg/mod/helm.sh/helm/v3@$HELM_VERSION/go.mod")
  local flags="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  for pkg in helm.sh/helm/v3/pkg/lint/rules helm.sh/helm/v3/pkg/chartutil; do
    flags+=" -X $pkg.k8sVersionMajor=1 -X $pkg.k8sVersionMinor=$minor"
  done
  GOBIN="$bin" go install -trimpath -ldflags "$flags" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
  log "built helm in $((SECONDS - start)) s"
}

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
