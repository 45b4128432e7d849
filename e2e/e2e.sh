#!/usr/bin/env bash
# End-to-end: install the Helm chart into the local control plane, run the operator with
# the chart's own ServiceAccount (so the chart's RBAC is what it gets), run the chainsaw
# scenarios, and check the RBAC grants no more than the operator needs.
#
# With the real node (the default), the chart's Deployment runs the operator image (built
# here from the test binary, as `make image` packs it) as a real pod there: its probes,
# securityContext, in-cluster config and ServiceAccount token are the chart's. With
# LGTM_REAL_NODE=0 the Deployment runs on a simulated node and the binary runs on this
# machine instead, authenticated as that ServiceAccount with a TokenRequest token.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
WORK=$REPO_ROOT/.state/e2e
RELEASE=lgtm
SYSTEM_NS=lgtm-e2e-system
WATCHED_NS=lgtm-e2e
OPERATOR_PORT=${LGTM_E2E_PORT:-28081}
REAL_NODE=${LGTM_REAL_NODE:-1}
OPERATOR_IMAGE=lgtm.local/lgtm-operator:e2e

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
	if ((REAL_NODE)); then operator_logs >"$WORK/operator.log" 2>/dev/null || true; fi
	"$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true
	kubectl delete namespace "$WATCHED_NS" "$SYSTEM_NS" --ignore-not-found --wait=false >/dev/null 2>&1 || true
	kubectl delete -f "$REPO_ROOT/e2e/prometheusrule-crd.yaml" --ignore-not-found --wait=false >/dev/null 2>&1 || true
}
trap cleanup EXIT
operator_logs() { kubectl logs -n "$SYSTEM_NS" "deploy/$RELEASE-lgtm-operator" --all-containers; }

IN_CLUSTER=()
if ((REAL_NODE)); then
	log "building the operator image and loading it into the real node"
	cargo build --quiet --manifest-path "$REPO_ROOT/Cargo.toml" --bin lgtm-operator
	"$REPO_ROOT/e2e/images.sh" operator "$REPO_ROOT/target/debug/lgtm-operator" docker-archive \
		"$WORK/operator.tar" "$OPERATOR_IMAGE" 2>/dev/null
	"$REPO_ROOT/e2e/cluster.sh" load-image "$WORK/operator.tar" 2>/dev/null
	IN_CLUSTER=(--set "image.repository=${OPERATOR_IMAGE%:*}" --set "image.tag=${OPERATOR_IMAGE##*:}"
		--set image.pullPolicy=Never
		--set-json 'nodeSelector={"lgtm.coordinated.dev/real-node":"true"}'
		--set-json 'tolerations=[{"key":"lgtm.coordinated.dev/real-node","operator":"Exists","effect":"NoSchedule"}]')
fi

log "installing the chart (watching namespace $WATCHED_NS)"
# Start clean: whatever an earlier run left must be gone before it is reused.
"$HELM" uninstall "$RELEASE" -n "$SYSTEM_NS" >/dev/null 2>&1 || true
kubectl delete namespace "$SYSTEM_NS" "$WATCHED_NS" --ignore-not-found --timeout=120s >/dev/null
for ns in "$SYSTEM_NS" "$WATCHED_NS"; do
	kubectl create namespace "$ns" >/dev/null
done
"$HELM" upgrade --install "$RELEASE" "$REPO_ROOT/charts/lgtm-operator" -n "$SYSTEM_NS" \
	--set watchNamespace="$WATCHED_NS" "${IN_CLUSTER[@]}" --wait --timeout 120s >/dev/null ||
	fail "helm install did not become ready: $(kubectl get pods -n "$SYSTEM_NS" -o wide 2>&1; operator_logs 2>&1 | tail -20)"
# Helm installs CRDs only when they are missing: on a control plane an earlier run left
# up, upgrade them as the README tells users to.
kubectl apply --server-side --force-conflicts -f "$REPO_ROOT/charts/lgtm-operator/crds/" >/dev/null
kubectl wait --for=condition=Established --timeout=60s \
	crd/grafanaclusters.lgtm.coordinated.dev crd/workerpools.lgtm.coordinated.dev crd/tenants.lgtm.coordinated.dev >/dev/null

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
# The gateway's auth Secret of a multi-tenant cluster.
must create secrets -n "$WATCHED_NS"
must_not create secrets -n kube-system
must patch tenants.lgtm.coordinated.dev --subresource=status -n "$WATCHED_NS"
must_not patch tenants.lgtm.coordinated.dev -n "$WATCHED_NS"
must_not create pods -n "$WATCHED_NS"
must delete pods -n "$WATCHED_NS"
must get persistentvolumeclaims -n "$WATCHED_NS"
must_not delete persistentvolumeclaims -n "$WATCHED_NS"
must patch workerpools.lgtm.coordinated.dev --subresource=status -n "$WATCHED_NS"
must_not get secrets -n kube-system
must_not get statefulsets.apps -n default
must_not patch grafanaclusters.lgtm.coordinated.dev -n "$WATCHED_NS"
must_not create customresourcedefinitions.apiextensions.k8s.io

# The metrics endpoint of the operator, wherever it runs.
METRICS_URL=http://127.0.0.1:$OPERATOR_PORT/metrics
if ((REAL_NODE)); then
	log "the operator runs in-cluster as $SUBJECT: $(kubectl get pods -n "$SYSTEM_NS" -o wide --no-headers | awk '{print $1, $3, "on", $7}')"
	for _ in $(seq 1 60); do
		operator_logs 2>/dev/null | grep -q 'watch caches synced' && break
		sleep 1
	done
	operator_logs | grep -q 'watch caches synced' || fail "the in-cluster operator's caches did not sync: $(operator_logs | tail -20)"
	POD_IP=$(kubectl get pods -n "$SYSTEM_NS" -l app.kubernetes.io/name=lgtm-operator -o jsonpath='{.items[0].status.podIP}')
	METRICS_URL=http://$POD_IP:$(kubectl get deploy -n "$SYSTEM_NS" "$RELEASE-lgtm-operator" -o jsonpath='{.spec.template.spec.containers[0].ports[0].containerPort}')/metrics
else
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
fi

log "running the scenarios"
status=0
"$CHAINSAW" test "$REPO_ROOT/e2e/scenarios" --config "$REPO_ROOT/e2e/chainsaw.yaml" \
	--report-path "$WORK" --no-color || status=$?

# The operator must never have been refused anything.
if ((REAL_NODE)); then operator_logs >"$WORK/operator.log"; fi
if grep -qiE 'forbidden|"code":403' "$WORK/operator.log"; then
	grep -iE 'forbidden|"code":403' "$WORK/operator.log" | head -5 >&2
	fail "the operator was refused something with the chart's RBAC; see $WORK/operator.log"
fi
failures=$(curl -fs "$METRICS_URL" | awk '/^lgtm_operator_reconcile_failures_total/ {s += $2} END {print s + 0}')
log "reconcile failures during the scenarios: $failures"
((status == 0)) || fail "chainsaw scenarios failed (report in $WORK)"
log "ok: chart installed, scenarios passed, RBAC sufficient and no wider than needed"
