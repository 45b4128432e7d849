# shellcheck shell=bash
# The real node: containerd, runc and CNI plugins from Debian, a kubelet built from the
# pinned k8s.io/kubernetes, kube-proxy (iptables) for ClusterIP Services, CoreDNS and the
# local-path provisioner built from their modules, beside the kwok nodes. Sourced by
# e2e/cluster.sh, whose helpers
# (start, pid_of, issue, build, kctl…) it uses. See e2e/README.md, "The real node".
#
# Pods land here only when they ask: the node is tainted lgtm.coordinated.dev/real-node
# (NoSchedule) and labelled lgtm.coordinated.dev/real-node=true, so a pod needs both the
# toleration and the nodeSelector. Everything else keeps landing on the kwok nodes.

REAL_NODE=${LGTM_REAL_NODE:-1}
REAL_NODE_NAME=real-node
REAL_NODE_LABEL=lgtm.coordinated.dev/real-node
KUBELET_PORT=${LGTM_KUBELET_PORT:-21250}
KUBELET_HEALTHZ_PORT=${LGTM_KUBELET_HEALTHZ_PORT:-21248}
KUBE_PROXY_HEALTHZ_PORT=${LGTM_KUBE_PROXY_HEALTHZ_PORT:-21256}
KUBE_PROXY_METRICS_PORT=${LGTM_KUBE_PROXY_METRICS_PORT:-21249}
# Worker PVCs on the real node name this StorageClass (it is not the default: PVCs of pods
# on the kwok nodes stay as they were). Its volumes are directories under $NODE_DIR/volumes.
REAL_NODE_STORAGE_CLASS=real-node-local
# A /24 outside the kwok nodes' ranges (10.244.0-2.0/24), on a bridge of its own.
REAL_NODE_POD_CIDR=10.244.200.0/24
NODE_DIR=$STATE_DIR/node
CONTAINERD_SOCK=$NODE_DIR/containerd/containerd.sock
# The Debian packages the node runs on, and the image tools (e2e/images.sh).
NODE_PACKAGES=(containerd runc containernetworking-plugins iptables umoci skopeo busybox-static nginx prometheus-nginx-exporter)
CNI_BIN_DIR=/usr/lib/cni
PAUSE_IMAGE=$("$REPO_ROOT/e2e/images.sh" ref pause)

node_components() { ((REAL_NODE)) && echo containerd coredns kubelet kube-proxy local-path-provisioner; }

# The Debian packages, installed when missing (the node needs root: containers, mounts,
# network namespaces).
ensure_node_packages() {
	local missing=() p
	for p in "${NODE_PACKAGES[@]}"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
	((${#missing[@]})) || return 0
	[[ $(id -u) == 0 ]] || die "the real node needs root and the Debian packages ${missing[*]} (or set LGTM_REAL_NODE=0)"
	log "installing Debian packages for the real node: ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >"$LOGS/apt.log" 2>&1 ||
		{ apt-get update -qq >>"$LOGS/apt.log" 2>&1 &&
			DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >>"$LOGS/apt.log" 2>&1; } ||
		die "apt-get install ${missing[*]} failed (see $LOGS/apt.log)"
}

write_node_config() {
	mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni" "$NODE_DIR/kubelet"
	[[ -f $PKI/node.crt ]] || issue node "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
	write_kubeconfig "$NODE_DIR/kubelet.kubeconfig" node "system:node:$REAL_NODE_NAME"
	# Cluster DNS for the real node's pods: CoreDNS as a process on the node's address
	# (the kubelet's clusterDNS), answering cluster.local from the API server. It runs on
	# the host rather than as a pod behind a ClusterIP, since no kube-proxy routes those.
	cat >"$NODE_DIR/Corefile" <<COREFILE
cluster.local:53 in-addr.arpa:53 ip6.arpa:53 {
    bind $(node_ip)
    errors
    kubernetes cluster.local in-addr.arpa ip6.arpa {
        kubeconfig $KUBECONFIG_PATH lgtm-local
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
    }
    cache 5
}
.:53 {
    bind $(node_ip)
    errors
    forward . /etc/resolv.conf
}
COREFILE
	# restrict_oom_score_adj: this machine lacks CAP_SYS_RESOURCE, so runc cannot lower a
	# sandbox's oom_score_adj and every sandbox failed ("can't get final child's PID from
	# pipe") until containerd was told not to try.
	cat >"$NODE_DIR/containerd/config.toml" <<TOML
version = 2
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$CONTAINERD_SOCK"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "$PAUSE_IMAGE"
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$CNI_BIN_DIR"
    conf_dir = "$NODE_DIR/cni"
TOML
	cat >"$NODE_DIR/cni/10-lgtm.conflist" <<JSON
{"cniVersion": "0.4.0", "name": "lgtm", "plugins": [
  {"type": "bridge", "bridge": "lgtm0", "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$REAL_NODE_POD_CIDR"}]], "routes": [{"dst": "0.0.0.0/0"}]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "loopback"}]}
JSON
	# The kubelet API (logs, exec) listens on the node's own address only (Kubernetes
	# refuses a loopback node IP), open to callers there: a local test cluster.
	cat >"$NODE_DIR/kubelet.yaml" <<YAML
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $(node_ip)
port: $KUBELET_PORT
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
readOnlyPort: 0
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$CONTAINERD_SOCK
failSwapOn: false
clusterDomain: cluster.local
clusterDNS: [$(node_ip)]
registerWithTaints:
- {key: $REAL_NODE_LABEL, value: "true", effect: NoSchedule}
enforceNodeAllocatable: []
evictionHard: {}
localStorageCapacityIsolation: false
makeIPTablesUtilChains: false
YAML
}

# The local-path provisioner's objects: its namespace, the helper pods' ServiceAccount,
# the scripts its helper pods run (mkdir/rm of a volume's directory) and the StorageClass.
# The helper pods run as root from the local busybox image, on the real node.
storage_objects() {
	cat <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: local-path-storage}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: local-path-provisioner-service-account, namespace: local-path-storage}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: local-path-config, namespace: local-path-storage}
data:
  setup: |-
    #!/bin/sh
    set -eu
    mkdir -m 0777 -p "\$VOL_DIR"
  teardown: |-
    #!/bin/sh
    set -eu
    rm -rf "\$VOL_DIR"
---
apiVersion: storage.k8s.io/v1
kind: StorageClass
metadata: {name: $REAL_NODE_STORAGE_CLASS}
provisioner: rancher.io/local-path
volumeBindingMode: WaitForFirstConsumer
reclaimPolicy: Delete
YAML
}

write_storage_config() {
	mkdir -p "$NODE_DIR/volumes"
	printf '{"nodePathMap": [{"node": "DEFAULT_PATH_FOR_NON_LISTED_NODES", "paths": ["%s"]}]}\n' \
		"$NODE_DIR/volumes" >"$NODE_DIR/local-path.json"
	cat >"$NODE_DIR/helper-pod.yaml" <<YAML
apiVersion: v1
kind: Pod
metadata: {name: helper-pod}
spec:
  automountServiceAccountToken: false
  tolerations: [{key: $REAL_NODE_LABEL, operator: Exists, effect: NoSchedule}]
  securityContext: {runAsUser: 0}
  containers:
  - name: helper-pod
    image: $("$REPO_ROOT/e2e/images.sh" ref busybox)
    imagePullPolicy: Never
YAML
}

kube_proxy_healthy() { curl -sS --max-time 5 "http://127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT/healthz" | grep -q lastUpdated; }
# The kubernetes Service answers through its ClusterIP: kube-proxy's rules are in place.
cluster_ip_routed() { curl -sk --max-time 2 -o /dev/null "https://10.96.0.1/readyz"; }

# The machine's first IPv4 address that is not loopback: the node's InternalIP.
node_ip() {
	local ip
	ip=$(hostname -I 2>/dev/null | tr ' ' '\n' | grep -m1 -E '^[0-9]+\.' || true)
	[[ -n $ip ]] || die "the real node needs a non-loopback IPv4 address (hostname -I shows none)"
	echo "$ip"
}

coredns_answers() { busybox nslookup kubernetes.default.svc.cluster.local "$(node_ip)" 2>/dev/null | grep -q '10\.96\.0\.1'; }

kubelet_healthy() { [[ $(curl -sS --max-time 5 "http://127.0.0.1:$KUBELET_HEALTHZ_PORT/healthz") == ok ]]; }
containerd_healthy() { ctr --address "$CONTAINERD_SOCK" version >/dev/null 2>&1; }
real_node_ready() {
	[[ $(kctl get node "$REAL_NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}

node_up() {
	((REAL_NODE)) || return 0
	ensure_node_packages
	build kubelet
	write_node_config
	echo 1 >/proc/sys/net/ipv4/ip_forward 2>/dev/null || true
	start containerd "" --config "$NODE_DIR/containerd/config.toml"
	wait_until containerd "containerd answers" containerd_healthy
	"$REPO_ROOT/e2e/images.sh" import "$CONTAINERD_SOCK" || die "the node's images could not be built or imported"
	build coredns
	start coredns "" -conf "$NODE_DIR/Corefile"
	wait_until coredns "CoreDNS answers for cluster.local" coredns_answers
	start kubelet "$KUBELET_PORT" \
		--config="$NODE_DIR/kubelet.yaml" --kubeconfig="$NODE_DIR/kubelet.kubeconfig" \
		--hostname-override="$REAL_NODE_NAME" --node-ip="$(node_ip)" \
		--node-labels="type=real,$REAL_NODE_LABEL=true" \
		--root-dir="$NODE_DIR/kubelet" --cert-dir="$NODE_DIR/kubelet/pki"
	wait_until kubelet "kubelet /healthz is ok" kubelet_healthy
	wait_until kubelet "node $REAL_NODE_NAME is Ready" real_node_ready
	# Bridged pod traffic must pass iptables for kube-proxy's DNAT to see it.
	echo 1 >/proc/sys/net/bridge/bridge-nf-call-iptables 2>/dev/null || true
	build kube-proxy local-path-provisioner
	start kube-proxy "$KUBE_PROXY_HEALTHZ_PORT" \
		--kubeconfig="$KUBECONFIG_PATH" --hostname-override="$REAL_NODE_NAME" \
		--proxy-mode=iptables --cluster-cidr="$POD_CIDR" \
		--healthz-bind-address="127.0.0.1:$KUBE_PROXY_HEALTHZ_PORT" \
		--metrics-bind-address="127.0.0.1:$KUBE_PROXY_METRICS_PORT" \
		--conntrack-max-per-core=0 --conntrack-tcp-timeout-established=0 \
		--conntrack-tcp-timeout-close-wait=0
	wait_until kube-proxy "kube-proxy routes ClusterIPs" cluster_ip_routed
	write_storage_config
	storage_objects | kctl apply -f - >/dev/null || die "cannot create the local-path provisioner's objects"
	start local-path-provisioner "" --debug start --kubeconfig="$KUBECONFIG_PATH" \
		--namespace=local-path-storage --config="$NODE_DIR/local-path.json" \
		--helper-pod-file="$NODE_DIR/helper-pod.yaml"
}

# node_down: the kubelet and containerd stop; the node's containers and their mounts go
# with them (kubelet leaves pods running when it stops).
node_down() {
	local pid
	local c
	for c in metrics-server local-path-provisioner kube-proxy kubelet; do
		if pid=$(pid_of "$c"); then kill -TERM "$pid" 2>/dev/null || true; fi
	done
	if containerd_healthy; then
		for c in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks ls -q 2>/dev/null); do
			ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks kill -s KILL "$c" >/dev/null 2>&1 || true
		done
		sleep 1
		for c in $(ctr --address "$CONTAINERD_SOCK" -n k8s.io containers ls -q 2>/dev/null); do
			ctr --address "$CONTAINERD_SOCK" -n k8s.io tasks delete -f "$c" >/dev/null 2>&1 || true
			ctr --address "$CONTAINERD_SOCK" -n k8s.io containers delete "$c" >/dev/null 2>&1 || true
		done
	fi
	if pid=$(pid_of coredns); then kill -TERM "$pid" 2>/dev/null || true; fi
	if pid=$(pid_of containerd); then kill -TERM "$pid" 2>/dev/null || true; fi
	local i
	for ((i = 0; i < 50; i++)); do
		for c in local-path-provisioner kube-proxy kubelet containerd coredns; do
			pid_of "$c" >/dev/null && continue 2
		done
		break
		sleep 0.2
	done
	# Mounts under the node's directory (pod volumes, sandboxes' shm, overlay rootfs).
	if [[ -d $NODE_DIR ]]; then
		awk -v d="$NODE_DIR" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r |
			while read -r m; do umount -l "$m" 2>/dev/null || true; done
	fi
	ip link delete lgtm0 2>/dev/null || true
	# kube-proxy's iptables rules outlive it; a later node must not route by stale ones.
	if [[ -x $(tool_path kube-proxy) ]]; then "$(tool_path kube-proxy)" --cleanup >/dev/null 2>&1 || true; fi
}

# ---------------------------------------------------------------------------------------
# metrics-server: the metrics API (metrics.k8s.io) for HorizontalPodAutoscalers, fed by
# the real node's kubelet. Started on demand (`e2e/cluster.sh metrics-server`), as a
# process of this machine like the node's other components; the API server reaches it at
# the node's address through an APIService (with --enable-aggregator-routing).
# ---------------------------------------------------------------------------------------
METRICS_SERVER_PORT=${LGTM_METRICS_SERVER_PORT:-21443}

metrics_server_objects() {
	cat <<YAML
apiVersion: v1
kind: Service
metadata: {name: metrics-server, namespace: kube-system}
spec:
  ports: [{name: https, port: 443, targetPort: $METRICS_SERVER_PORT, protocol: TCP}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: metrics-server, namespace: kube-system}
subsets:
  - addresses: [{ip: $(node_ip)}]
    ports: [{name: https, port: $METRICS_SERVER_PORT, protocol: TCP}]
---
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata: {name: v1beta1.metrics.k8s.io}
spec:
  group: metrics.k8s.io
  version: v1beta1
  service: {name: metrics-server, namespace: kube-system, port: 443}
  # metrics-server serves a self-signed certificate here.
  insecureSkipTLSVerify: true
  groupPriorityMinimum: 100
  versionPriority: 100
YAML
}

metrics_api_serves() { kctl get --raw "/apis/metrics.k8s.io/v1beta1/nodes/$REAL_NODE_NAME" >/dev/null 2>&1; }
metrics_server_answers() { curl -ksS --max-time 2 -o /dev/null "https://$(node_ip):$METRICS_SERVER_PORT/livez"; }

cmd_metrics_server() {
	((REAL_NODE)) || die "there is no real node (LGTM_REAL_NODE=0): metrics-server reads the real node's kubelet"
	apiserver_ready || die "the control plane is not up (e2e/cluster.sh up)"
	lock
	build metrics-server
	# Only the real node has a kubelet to read; the kwok nodes are left out.
	start metrics-server "$METRICS_SERVER_PORT" \
		--secure-port="$METRICS_SERVER_PORT" --bind-address=0.0.0.0 \
		--cert-dir="$STATE_DIR/metrics-server" \
		--kubeconfig="$KUBECONFIG_PATH" --authentication-kubeconfig="$KUBECONFIG_PATH" \
		--authorization-kubeconfig="$KUBECONFIG_PATH" \
		--kubelet-insecure-tls --kubelet-preferred-address-types=InternalIP --kubelet-port="$KUBELET_PORT" \
		--node-selector="$REAL_NODE_LABEL=true" \
		--metric-resolution=10s --kubelet-request-timeout=5s
	wait_until metrics-server "metrics-server answers on $(node_ip):$METRICS_SERVER_PORT" metrics_server_answers
	# Registered only once it answers, so that the aggregator's first check succeeds.
	metrics_server_objects | kctl apply -f - >/dev/null 2>&1 ||
		die "could not register the metrics API (see $LOGS/kube-apiserver.log)"
	wait_until metrics-server "the metrics API serves node $REAL_NODE_NAME" metrics_api_serves
	log "metrics API served by metrics-server (pid $(pid_of metrics-server))"
}

