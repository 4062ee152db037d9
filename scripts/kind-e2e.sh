#!/usr/bin/env bash
# The end-to-end smoke on kind, for users with Docker: build the image, load it into a kind
# cluster, install the chart with a Postgres, publish a one-time and a recurring schedule and
# check that each fire started exactly one run.
#
# This project's CI machine has no Docker, so this path is NOT run by `make test` or CI there; the
# local control plane (real kube-apiserver and kube-controller-manager) covers the same
# behaviour there, and the image itself is built with podman (scripts/build-image.sh). Needs: docker, kind, kubectl, helm.
set -euo pipefail
cd "$(dirname "$0")/.."

cluster=${KIND_CLUSTER:-wfclock}
image=wfclock:kind-e2e
for tool in docker kind kubectl helm; do
  command -v "$tool" >/dev/null || { echo "kind-e2e needs $tool on PATH" >&2; exit 2; }
done

step() { printf '\n== %s\n' "$*"; }

step "image"
docker build -t "$image" .

step "cluster"
kind get clusters | grep -qx "$cluster" || kind create cluster --name "$cluster" --wait 120s
kind load docker-image "$image" --name "$cluster"

step "postgres and chart"
kubectl create namespace wfclock-system --dry-run=client -o yaml | kubectl apply -f -
kubectl apply -f deploy/kind/postgres.yaml
kubectl -n wfclock-system rollout status deploy/postgres --timeout=180s
helm upgrade --install wfclock charts/wfclock -n wfclock-system \
  --set image.repository=wfclock --set image.tag=kind-e2e --set image.pullPolicy=Never \
  --set minimumIntervalMinutes=1 --wait --timeout 5m

step "schedules"
kubectl apply -f examples/gitops/tenant-namespace.yaml
run_at=$(date -u -d '+40 seconds' +%Y-%m-%dT%H:%M:%SZ)
sed "s/RUN_AT/$run_at/; s/tenant: demo/tenant: acme/" examples/demo-schedules.yaml | kubectl -n acme apply -f -

step "waiting for both fires"
for _ in $(seq 1 60); do
  phase=$(kubectl -n acme get wfs in-20-seconds -o jsonpath='{.status.phase}')
  last=$(kubectl -n acme get wfs every-minute -o jsonpath='{.status.lastFireAt}')
  [ "$phase" = Completed ] && [ -n "$last" ] && break
  sleep 5
done
kubectl -n acme get wfs

runs() {
  kubectl -n wfclock-system exec deploy/postgres -- psql -U postgres -d wfclock -tAc \
    "SELECT count(*) FROM workflow_runs WHERE trigger_type = '$1'"
}
one_time=$(runs schedule)
[ "$one_time" = 1 ] || { echo "expected 1 one-time run, got $one_time" >&2; exit 1; }
duplicates=$(kubectl -n wfclock-system exec deploy/postgres -- psql -U postgres -d wfclock -tAc \
  "SELECT count(*) FROM (SELECT trigger_fire_key FROM workflow_runs GROUP BY 1 HAVING count(*) > 1) d")
[ "$duplicates" = 0 ] || { echo "duplicate runs for a fire" >&2; exit 1; }
echo "kind e2e OK: one-time fired once, recurring fired ($(runs recurring) runs), no duplicates"
