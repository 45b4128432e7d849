#!/usr/bin/env bash
# `make run`: the local control plane, the CRDs, the operator (in the background) and the
# samples, then `kubectl get grafanaclusters,workerpools -A` until every sample cluster is
# Consistent and Available. `make stop` (or `e2e/run.sh stop`) ends it all.
#
# With the real node (the default), the Loki sample runs there as real pods: its gateway
# is the nginx image built here and its workers are the contract worker (a test double of
# Loki's run-time contract, src/bin/contract-worker.rs), so a request through the gateway
# really reaches a worker. The other samples run on the simulated (kwok) nodes.
#
# The samples' buckets are real: an S3 server (moto, e2e/storage-servers.sh) listens on
# loopback with buckets mimir, loki and tempo, the samples are pointed at it, and the
# operator's storage probe checks them there before any worker starts.
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
RUN_DIR=$REPO_ROOT/.state/operator
NAMESPACE=${LGTM_DEMO_NAMESPACE:-lgtm-demo}
TIMEOUT=${LGTM_RUN_TIMEOUT:-300}
REAL_NODE=${LGTM_REAL_NODE:-1}

log() { printf '%s\n' "run.sh: $*" >&2; }

stop() {
	if [[ -f $RUN_DIR/pid ]] && kill -0 "$(cat "$RUN_DIR/pid")" 2>/dev/null; then
		kill "$(cat "$RUN_DIR/pid")" && log "operator stopped"
	fi
	if [[ -f $RUN_DIR/s3.pid ]] && kill -0 "$(cat "$RUN_DIR/s3.pid")" 2>/dev/null; then
		kill "$(cat "$RUN_DIR/s3.pid")" && log "S3 server stopped"
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
	crd/grafanaclusters.lgtm.coordinated.dev crd/workerpools.lgtm.coordinated.dev crd/tenants.lgtm.coordinated.dev >/dev/null

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

log "starting an S3 server on loopback for the samples' buckets"
PYTHON=$("$REPO_ROOT/e2e/storage-servers.sh" python)
if [[ -f $RUN_DIR/s3.pid ]] && kill -0 "$(cat "$RUN_DIR/s3.pid")" 2>/dev/null; then
	kill "$(cat "$RUN_DIR/s3.pid")"
fi
"$PYTHON" -m moto.server -H 127.0.0.1 -p 0 >"$RUN_DIR/s3.log" 2>&1 &
echo $! >"$RUN_DIR/s3.pid"
for _ in $(seq 100); do
	S3_PORT=$(sed -n 's|.*Running on http://127.0.0.1:\([0-9]*\).*|\1|p' "$RUN_DIR/s3.log" | head -n1)
	[[ -n $S3_PORT ]] && break
	sleep 0.1
done
[[ -n ${S3_PORT:-} ]] || { log "the S3 server did not start; see $RUN_DIR/s3.log"; exit 1; }
for bucket in mimir loki tempo; do
	curl -fsS -X PUT "http://127.0.0.1:$S3_PORT/$bucket" >/dev/null
done
log "S3 server on http://127.0.0.1:$S3_PORT (pid $(cat "$RUN_DIR/s3.pid"), log $RUN_DIR/s3.log)"

log "applying the samples to namespace $NAMESPACE"
kubectl create namespace "$NAMESPACE" --dry-run=client -o yaml | kubectl apply -f - >/dev/null
SAMPLES=$RUN_DIR/samples
mkdir -p "$SAMPLES"
for f in "$REPO_ROOT"/deploy/samples/*.yaml; do
	sed "s|endpoint: minio.minio.svc:9000|endpoint: http://127.0.0.1:$S3_PORT|" "$f" >"$SAMPLES/$(basename "$f")"
done
if ((REAL_NODE)); then
	log "building the contract worker image for Loki and loading it into the real node"
	cargo build --quiet --manifest-path "$REPO_ROOT/Cargo.toml" --bin contract-worker
	# Tagged with the Loki version the operator runs: a cluster's image is a repository.
	LOKI_VERSION=$("$REPO_ROOT/target/debug/lgtm-operator" render -f "$SAMPLES/s3-credentials.yaml" \
		-f "$SAMPLES/loki-monolithic.yaml" | awk '/image: grafana\/loki:/ { sub(/.*:/, ""); print; exit }')
	"$REPO_ROOT/e2e/images.sh" contract-worker "$REPO_ROOT/target/debug/contract-worker" loki \
		"$RUN_DIR/contract-worker-loki.tar" "lgtm.local/contract-worker-loki:$LOKI_VERSION" 2>/dev/null
	"$REPO_ROOT/e2e/cluster.sh" load-image "$RUN_DIR/contract-worker-loki.tar" 2>/dev/null
	for f in "$SAMPLES"/*.yaml; do
		[[ $f == */loki-monolithic.yaml ]] || kubectl apply -n "$NAMESPACE" -f "$f" >/dev/null
	done
	# The Loki sample, placed on the real node (its nodeSelector, toleration and
	# StorageClass; see e2e/README.md, "The real node").
	PLACEMENT="nodeSelector: {lgtm.coordinated.dev/real-node: 'true'}
    tolerations: [{key: lgtm.coordinated.dev/real-node, operator: Exists, effect: NoSchedule}]"
	kubectl apply -n "$NAMESPACE" -f - >/dev/null <<YAML
apiVersion: lgtm.coordinated.dev/v1alpha1
kind: GrafanaCluster
metadata: {name: logs}
spec:
  product: loki
  image: lgtm.local/contract-worker-loki
  storage: {s3: {endpoint: "http://127.0.0.1:$S3_PORT", bucket: loki, credentialsSecret: {name: s3-credentials}}}
  retention: 14d
  gateway:
    image: $("$REPO_ROOT/e2e/images.sh" ref gateway)
    exporterImage: $("$REPO_ROOT/e2e/images.sh" ref exporter)
    $PLACEMENT
---
apiVersion: lgtm.coordinated.dev/v1alpha1
kind: WorkerPool
metadata: {name: logs-all}
spec:
  clusterRef: logs
  replicas: 1
  roles: {loki: {all: true}}
  storage: {size: 1Gi, storageClassName: real-node-local}
  ${PLACEMENT//$'\n'    /$'\n'  }
YAML
else
	kubectl apply -n "$NAMESPACE" -f "$SAMPLES/" >/dev/null
fi

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
EOT
if ((REAL_NODE)); then
	echo
	kubectl rollout status -n "$NAMESPACE" deployment/logs-gateway --timeout=120s >/dev/null
	kubectl get pods -n "$NAMESPACE" -o wide -l app.kubernetes.io/instance=logs
	GATEWAY_IP=$(kubectl get service logs-gateway -n "$NAMESPACE" -o jsonpath='{.spec.clusterIP}')
	cat <<EOT

The Loki sample runs as real pods on the real node (its workers are contract workers).
Ask its gateway; the answer names the worker pod and roles that served it:
  curl http://$GATEWAY_IP:3100/loki/api/v1/labels
EOT
fi
echo "Stop everything with: make stop"
