#!/usr/bin/env bash
# `make run`: the local control plane, the CRDs, the operator (in the background) and the
# samples, then `kubectl get grafanaclusters,workerpools -A` until every sample cluster is
# Consistent and Available. `make stop` (or `e2e/run.sh stop`) ends it all.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=$REPO_ROOT/.state/operator
NAMESPACE=${LGTM_DEMO_NAMESPACE:-lgtm-demo}
TIMEOUT=${LGTM_RUN_TIMEOUT:-300}

log() { printf '%s\n' "run.sh: $*" >&2; }

stop() {
	if [[ -f $RUN_DIR/pid ]] && kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null; then
		kill "$(cat "$RUN_DIR/pid")" && log "operator stopped"
	fi
	rm -rf "$RUN_DIR"
	"$REPO_ROOT/e2e/cluster.sh" down
}

if [[ ${1:-} == stop ]]; then
	stop
	exit 0
fi

"$REPO_ROOT/e2e/cluster.sh" up >/dev/null
KUBECONFIG=$("$REPO_ROOT/e2e/cluster.sh" kubeconfig)
export KUBECONFIG

log "installing the CRDs"
kubectl apply --server-side -f "$REPO_ROOT/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
	crd/grafanaclusters.lgtm.coordinated.dev crd/workerpools.lgtm.coordinated.dev >/dev/null

log "building the operator"
# It watches only the demo namespace, so the tests' own operators never meet it.
cargo build --quiet --manifest-path "$REPO_ROOT/Cargo.toml" --bin lgtm-operator
mkdir -p "$RUN_DIR"
if [[ -f $RUN_DIR/pid ]] && kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null; then
	kill "$(cat "$RUN_DIR/pid")"
fi
"$REPO_ROOT/target/debug/lgtm-operator" run --namespace "$NAMESPACE" --listen 127.0.0.1:28080 >"$RUN_DIR/operator.log" 2>&1 &
echo $! >"$RUN_DIR/pid"
log "operator running (pid $(cat "$RUN_DIR/pid"), log $RUN_DIR/operator.log, metrics http://127.0.0.1:28080/metrics)"

log "applying the samples to namespace $NAMESPACE"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl apply -n "$NAMESPACE" -f "$REPO_ROOT/deploy/samples/" >/dev/null

# Every sample cluster Consistent and Available?
settled() {
	local states
	states=$(kubectl get grafanaclusters -n "$NAMESPACE" -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Consistent")].status}{.status.conditions[?(@.type=="Available")].status}{"\n"}{end}')
	[[ -n $states ]] && ! grep -qv '^TrueTrue$' <<<"$states"
}

start=$SECONDS
until settled; do
	if ((SECONDS - start > TIMEOUT)); then
		kubectl get grafanaclusters,workerpools -A
		log "the samples did not become Consistent and Available in ${TIMEOUT}s; see $RUN_DIR/operator.log"
		exit 1
	fi
	clear 2>/dev/null || true
	kubectl get grafanaclusters,workerpools -A
	sleep 2
done
clear 2>/dev/null || true
kubectl get grafanaclusters,workerpools -A
cat <<EOT

Every sample cluster is Consistent and Available (after $((SECONDS - start))s).
  export KUBECONFIG=$KUBECONFIG
  kubectl get lgtm -n $NAMESPACE            # both kinds
  kubectl describe grafanacluster metrics -n $NAMESPACE
Stop everything with: make stop
EOT
