#!/usr/bin/env bash
# End-to-end: install the Helm chart into the local control plane, run the operator with
# the chart's own ServiceAccount (so the chart's RBAC is what it gets), run the chainsaw
# scenarios, and check the RBAC grants no more than the operator needs.
#
# There is no container runtime here, so the chart's Deployment runs on a simulated node;
# the operator binary itself runs on this machine, authenticated as that Deployment's
# ServiceAccount with a token from the TokenRequest API.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$REPO_ROOT/.state/e2e
RELEASE=lgtm
SYSTEM_NS=lgtm-e2e-system
WATCHED_NS=lgtm-e2e
OPERATOR_PORT=${LGTM_E2E_PORT:-28081}

log() { printf '%s\n' "e2e.sh: $*" >&2; }
fail() {
	log "FAILED: $*"
	exit 1
}

"$REPO_ROOT/e2e/cluster.sh" up >/dev/null
KUBECONFIG=$("$REPO_ROOT/e2e/cluster.sh" kubeconfig)
export KUBECONFIG
HELM=$("$REPO_ROOT/e2e/cluster.sh" tool-path helm)
CHAINSAW=$("$REPO_ROOT/e2e/cluster.sh" tool-path chainsaw)
rm -rf "$WORK" && mkdir -p "$WORK"

OPERATOR_PID=''
cleanup() {
	# Stop the operator before its RBAC goes, or its last reconciles are refused.
	if [[ -n $OPERATOR_PID ]]; then
		kill "$OPERATOR_PID" 2>/dev/null || true
		# A clean stop gives the lease up at once; never wait on one that hangs.
		for _ in $(seq 1 50); do kill -0 "$OPERATOR_PID" 2>/dev/null || break; sleep 0.2; done
		kill -9 "$OPERATOR_PID" 2>/dev/null || true
		wait "$OPERATOR_PID" 2>/dev/null || true
	fi
	"$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true
	kubectl delete namespace "$WATCHED_NS" "$SYSTEM_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	kubectl delete -f "$REPO_ROOT/e2e/prometheusrule-crd.yaml" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT

log "installing the chart (watching namespace $WATCHED_NS)"
# Start clean: whatever an earlier run left must be gone before it is reused.
"$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true
kubectl delete namespace "$SYSTEM_NS" "$WATCHED_NS" --ignore-not-found --timeout=120s >/dev/null
for ns in "$SYSTEM_NS" "$WATCHED_NS"; do
	kubectl create namespace "$ns" >/dev/null
done
"$HELM" upgrade --install "$RELEASE" "$REPO_ROOT/charts/lgtm-operator" -n "$SYSTEM_NS" \
	--set watchNamespace="$WATCHED_NS" --wait --timeout 120s >/dev/null
# Helm installs CRDs only when they are missing: on a control plane an earlier run left
# up, upgrade them as the README tells users to.
kubectl apply --server-side --force-conflicts -f "$REPO_ROOT/charts/lgtm-operator/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
	crd/grafanaclusters.lgtm.coordinated.dev crd/workerpools.lgtm.coordinated.dev >/dev/null

# With PrometheusRules served, alert rules take that form (the alert-rules scenario).
kubectl apply --server-side -f "$REPO_ROOT/e2e/prometheusrule-crd.yaml" >/dev/null
kubectl wait --for=condition=Established --timeout=60s crd/prometheusrules.monitoring.coreos.com >/dev/null

SA=$RELEASE-lgtm-operator
SUBJECT=system:serviceaccount:$SYSTEM_NS:$SA

log "checking the chart grants no more than needed"
must() { [[ $(kubectl auth can-i "$@" --as="$SUBJECT") == yes ]] || fail "the chart does not grant: $*"; }
must_not() {
	if [[ $(kubectl auth can-i "$@" --as="$SUBJECT" 2>/dev/null || true) == yes ]]; then fail "the chart grants more than needed: $*"; fi
}
must patch statefulsets.apps -n "$WATCHED_NS"
must create prometheusrules.monitoring.coreos.com -n "$WATCHED_NS"
must patch leases.coordination.k8s.io -n "$SYSTEM_NS"
must_not patch leases.coordination.k8s.io -n kube-system
must patch grafanaclusters.lgtm.coordinated.dev --subresource=status -n "$WATCHED_NS"
must get secrets -n "$WATCHED_NS"
must_not create secrets -n "$WATCHED_NS"
must_not delete secrets -n "$WATCHED_NS"
must_not create pods -n "$WATCHED_NS"
must_not get secrets -n kube-system
must_not get statefulsets.apps -n default
must_not patch grafanaclusters.lgtm.coordinated.dev -n "$WATCHED_NS"
must_not create customresourcedefinitions.apiextensions.k8s.io

log "running the operator as $SUBJECT"
TOKEN=$(kubectl create token "$SA" -n "$SYSTEM_NS" --duration=2h)
SERVER=$(kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.server}')
kubectl config view --raw --minify -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$WORK/ca.crt"
OPERATOR_KUBECONFIG=$WORK/operator.kubeconfig
KUBECONFIG=$OPERATOR_KUBECONFIG kubectl config set-cluster e2e --server="$SERVER" --certificate-authority="$WORK/ca.crt" --embed-certs >/dev/null
KUBECONFIG=$OPERATOR_KUBECONFIG kubectl config set-credentials operator --token="$TOKEN" >/dev/null
KUBECONFIG=$OPERATOR_KUBECONFIG kubectl config set-context e2e --cluster=e2e --user=operator >/dev/null
KUBECONFIG=$OPERATOR_KUBECONFIG kubectl config use-context e2e >/dev/null

cargo build --quiet --manifest-path "$REPO_ROOT/Cargo.toml" --bin lgtm-operator
KUBECONFIG=$OPERATOR_KUBECONFIG RUST_LOG=info,kube=warn "$REPO_ROOT/target/debug/lgtm-operator" run \
	--namespace "$WATCHED_NS" --listen "127.0.0.1:$OPERATOR_PORT" --log-format json \
	--leader-elect --lease-namespace "$SYSTEM_NS" >"$WORK/operator.log" 2>&1 &
OPERATOR_PID=$!
# /readyz is also true for a standby still waiting for the lease, for a few milliseconds
# here: wait for the leader's own word that its caches synced.
for _ in $(seq 1 60); do
	grep -q 'watch caches synced' "$WORK/operator.log" && break
	kill -0 "$OPERATOR_PID" 2>/dev/null || fail "the operator exited; see $WORK/operator.log"
	sleep 1
done
grep -q 'watch caches synced' "$WORK/operator.log" || fail "the operator's caches did not sync; see $WORK/operator.log"
curl -fs "http://127.0.0.1:$OPERATOR_PORT/readyz" >/dev/null || fail "the operator leads but is not ready; see $WORK/operator.log"

log "running the scenarios"
status=0
"$CHAINSAW" test "$REPO_ROOT/e2e/scenarios" --config "$REPO_ROOT/e2e/chainsaw.yaml" \
	--report-path "$WORK" --no-color || status=$?

# The operator must never have been refused anything.
if grep -qiE 'forbidden|"code":403' "$WORK/operator.log"; then
	grep -iE 'forbidden|"code":403' "$WORK/operator.log" | head -5 >&2
	fail "the operator was refused something with the chart's RBAC; see $WORK/operator.log"
fi
failures=$(curl -fs "http://127.0.0.1:$OPERATOR_PORT/metrics" | awk '/^lgtm_operator_reconcile_failures_total/ {s += $2} END {print s + 0}')
log "reconcile failures during the scenarios: $failures"
((status == 0)) || fail "chainsaw scenarios failed (report in $WORK)"
log "ok: chart installed, scenarios passed, RBAC sufficient and no wider than needed"
