#!/usr/bin/env bash
# Local Kubernetes control plane for the tests and `make run`: etcd, kube-apiserver,
# kube-controller-manager, kube-scheduler and kwok (simulated nodes), compiled from the Go
# modules pinned under e2e/tools/ and started on loopback, plus one real node (containerd
# and a kubelet, e2e/node.sh) unless LGTM_REAL_NODE=0. See e2e/README.md.
#
# Usage: e2e/cluster.sh build [all|TOOL...] | up | down | status | kubeconfig | tool-path TOOL
#        | load-image ARCHIVE
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TOOLS_DIR=$REPO_ROOT/e2e/tools
CACHE_DIR=${LGTM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lgtm-operator}
BIN_CACHE=$CACHE_DIR/bin
STATE_DIR=${LGTM_STATE_DIR:-$REPO_ROOT/.state/cluster}

# Fixed, uncommon loopback ports (below the ephemeral range, outside the NodePort range).
ETCD_PORT=${LGTM_ETCD_PORT:-21379}
ETCD_PEER_PORT=${LGTM_ETCD_PEER_PORT:-21380}
APISERVER_PORT=${LGTM_APISERVER_PORT:-26443}
KCM_PORT=${LGTM_KCM_PORT:-21257}
SCHEDULER_PORT=${LGTM_SCHEDULER_PORT:-21259}
KWOK_PORT=${LGTM_KWOK_PORT:-21080}
READY_TIMEOUT=${LGTM_READY_TIMEOUT:-120}

SERVICE_CIDR=10.96.0.0/16
POD_CIDR=10.244.0.0/16
NODE_COUNT=3
CONTROL_PLANE=(etcd kube-apiserver kube-controller-manager kube-scheduler kwok)
ALL_TOOLS=("${CONTROL_PLANE[@]}" kubelet kube-proxy coredns local-path-provisioner helm chainsaw metrics-server)

BUILD_PID='' BUILD_TMP='' LOCK_FD=''
on_exit() {
	if [[ -n $BUILD_PID ]]; then kill "$BUILD_PID" 2>/dev/null || true; fi
	if [[ -n $BUILD_TMP ]]; then rm -rf "$BUILD_TMP"; fi
}
trap on_exit EXIT
trap 'exit 130' INT TERM

log() { printf '%s\n' "cluster.sh: $*" >&2; }
die() {
	log "error: $*"
	exit 1
}

duration() { # seconds -> "4m29s"
	local s=$1
	if ((s >= 60)); then printf '%dm%02ds' $((s / 60)) $((s % 60)); else printf '%ds' "$s"; fi
}

# ---------------------------------------------------------------------------------------
# Tools: which Go module pins each one, which package builds it, and how it is stamped.
# ---------------------------------------------------------------------------------------

# tool_spec TOOL -> "<tools dir> <module whose version keys the cache> <package to build>"
tool_spec() {
	case $1 in
	kube-apiserver | kube-controller-manager | kube-scheduler | kubelet | kube-proxy)
		echo "kubernetes k8s.io/kubernetes k8s.io/kubernetes/cmd/$1" ;;
	etcd) echo "kubernetes go.etcd.io/etcd/server/v3 go.etcd.io/etcd/server/v3" ;;
	kwok) echo "kwok sigs.k8s.io/kwok sigs.k8s.io/kwok/cmd/kwok" ;;
	coredns) echo "coredns github.com/coredns/coredns github.com/coredns/coredns" ;;
	local-path-provisioner) echo "local-path-provisioner github.com/rancher/local-path-provisioner github.com/rancher/local-path-provisioner" ;;
	helm) echo "helm helm.sh/helm/v3 helm.sh/helm/v3/cmd/helm" ;;
	chainsaw) echo "chainsaw github.com/kyverno/chainsaw github.com/kyverno/chainsaw" ;;
	metrics-server) echo "metrics-server sigs.k8s.io/metrics-server sigs.k8s.io/metrics-server/cmd/metrics-server" ;;
	*) die "unknown tool '$1' (known: ${ALL_TOOLS[*]})" ;;
	esac
}

# mod_version DIR MODULE: the version DIR/go.mod requires (go.mod is the single source of
# truth; read without running go so that `up` stays fast when everything is built).
mod_version() {
	local v
	v=$(awk -v m="$2" '
		$1 == "require" && $2 == m && $3 ~ /^v/ { print $3; exit }
		$1 == m && $2 ~ /^v/ { print $2; exit }' "$TOOLS_DIR/$1/go.mod")
	[[ -n $v ]] || die "no version of $2 in e2e/tools/$1/go.mod"
	echo "$v"
}

tool_version() {
	local dir mod pkg
	read -r dir mod pkg <<<"$(tool_spec "$1")"
	mod_version "$dir" "$mod"
}

tool_path() { echo "$BIN_CACHE/$1-$(tool_version "$1")/$1"; }

# Version stamps the upstream release builds set, so that /version, `helm version` and
# friends report the pinned release rather than "v0.0.0-master".
tool_ldflags() {
	local v=$2 flags="-s -w" p minor
	case $1 in
	kube-* | kubelet)
		minor=${v#v*.}
		minor=${minor%%.*}
		for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
			flags+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
		done
		;;
	kwok) flags+=" -X sigs.k8s.io/kwok/pkg/consts.Version=${v#v}" ;;
	helm) flags+=" -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean" ;;
	chainsaw) flags+=" -X github.com/kyverno/chainsaw/pkg/version.BuildVersion=$v" ;;
	esac
	echo "$flags"
}

# tool_workdir TOOL TMPDIR: the Go module directory to build TOOL in; normally its
# e2e/tools/ module. When the pinned release needs a compatibility shim for the installed Go,
# a temporary copy of that module is prepared under TMPDIR instead (Go refuses -overlay for
# files in the module cache). Nothing upstream is copied into the repo.
tool_workdir() {
	local tool=$1 tmp=$2 dir src
	read -r dir _ <<<"$(tool_spec "$tool")"
	case $tool in
	chainsaw)
		# chainsaw drives testing.MainStart with its own testDeps; Go 1.25 added ModulePath()
		# to that interface and chainsaw v0.2.12 lacks it ("does not implement testing.testDeps
		# (missing method ModulePath)"). Add it the way Go's own matchStringOnly does.
		src=$(cd "$TOOLS_DIR/$dir" && GOWORK=off go mod download github.com/kyverno/chainsaw &&
			GOWORK=off go list -m -f '{{.Dir}}' github.com/kyverno/chainsaw)
		if [[ -d $src/pkg/runner/internal ]] &&
			! grep -qs 'ModulePath()' "$src"/pkg/runner/internal/*.go &&
			grep -qs 'ModulePath()' "$(go env GOROOT)/src/testing/testing.go"; then
			log "  (chainsaw lacks TestDeps.ModulePath that Go $(go env GOVERSION) needs: building a patched copy)"
			mkdir -p "$tmp/mod"
			cp "$TOOLS_DIR/$dir/go.mod" "$TOOLS_DIR/$dir/go.sum" "$tmp/mod/"
			cp -R "$src" "$tmp/mod/chainsaw"
			chmod -R u+w "$tmp/mod/chainsaw"
			printf '%s\n' 'package internal' '' '// ModulePath is required by testing.MainStart since Go 1.25.' \
				'func (*TestDeps) ModulePath() string { return "" }' >"$tmp/mod/chainsaw/pkg/runner/internal/modulepath.go"
			(cd "$tmp/mod" && GOWORK=off go mod edit -replace github.com/kyverno/chainsaw=./chainsaw)
			echo "$tmp/mod"
			return 0
		fi
		;;
	esac
	echo "$TOOLS_DIR/$dir"
}

# usable PATH: an executable ELF file. A cached binary cut short (a cache restored in part)
# would otherwise be run by the shell as an empty script, exit 0 and leave no log.
usable() {
	[[ -x $1 && -s $1 && $(head -c 4 "$1" | od -An -c | tr -d ' ') == '177ELF' ]]
}

# build_one TOOL: build into a temporary directory next to the cache, then rename into
# place, so an interrupted build never leaves a half-written binary where `up` looks.
build_one() {
	local tool=$1 dir mod pkg version dest tmp pid start elapsed
	read -r dir mod pkg <<<"$(tool_spec "$tool")"
	version=$(mod_version "$dir" "$mod")
	dest="$BIN_CACHE/$tool-$version/$tool"
	usable "$dest" && return 0
	command -v go >/dev/null || die "go is needed to build $tool (see e2e/README.md)"
	mkdir -p "$BIN_CACHE"
	tmp=$(mktemp -d "$BIN_CACHE/.build-$tool.XXXXXX")
	log "building $tool $version …"
	start=$SECONDS
	local workdir
	workdir=$(tool_workdir "$tool" "$tmp") || die "preparing the build of $tool failed"
	(cd "$workdir" && exec env GOWORK=off go build -ldflags "$(tool_ldflags "$tool" "$version")" -o "$tmp/$tool" "$pkg") \
		>"$tmp/build.log" 2>&1 &
	pid=$!
	BUILD_PID=$pid BUILD_TMP=$tmp
	local next=60
	while kill -0 "$pid" 2>/dev/null; do
		sleep 1
		elapsed=$((SECONDS - start))
		if ((elapsed >= next)); then
			log "  … still building $tool ($(duration "$elapsed"))"
			next=$((next + 60))
		fi
	done
	if ! wait "$pid"; then
		BUILD_PID='' BUILD_TMP=''

		tail -n 40 "$tmp/build.log" >&2
		rm -rf "$tmp"
		die "building $tool $version failed (output above)"
	fi
	mkdir -p "${dest%/*}"
	mv -f "$tmp/$tool" "$dest"
	rm -rf "$tmp"
	BUILD_PID='' BUILD_TMP=''
	log "built $tool $version in $(duration $((SECONDS - start)))"
}

# build TOOL...: builds are serialised by a lock in the cache, so parallel callers wait for
# one build instead of compiling the same thing twice.
build() {
	local tool missing=()
	for tool in "$@"; do usable "$(tool_path "$tool")" || missing+=("$tool"); done
	((${#missing[@]})) || return 0
	mkdir -p "$CACHE_DIR"
	exec {build_fd}>"$CACHE_DIR/.build.lock"
	flock "$build_fd"
	local start=$SECONDS
	for tool in "${missing[@]}"; do build_one "$tool"; done
	log "build finished in $(duration $((SECONDS - start)))"
	exec {build_fd}>&-
}

cmd_build() {
	if (($# == 0)); then
		build "${CONTROL_PLANE[@]}"
	elif [[ $1 == all ]]; then
		build "${ALL_TOOLS[@]}"
	else
		build "$@"
	fi
}

# ---------------------------------------------------------------------------------------
# State: everything a running control plane owns lives under $STATE_DIR.
# ---------------------------------------------------------------------------------------
PKI=$STATE_DIR/pki
RUN=$STATE_DIR/run
LOGS=$STATE_DIR/logs
KUBECONFIG_PATH=$STATE_DIR/kubeconfig
APISERVER_URL=https://127.0.0.1:$APISERVER_PORT
# shellcheck source=e2e/node.sh
source "$REPO_ROOT/e2e/node.sh"

# lock: one cluster.sh at a time per state dir (parallel test binaries all call `up`). The
# lock file sits beside the state dir so that `down` can remove the state dir while holding it.
lock() {
	mkdir -p "${STATE_DIR%/*}"
	exec {LOCK_FD}>"$STATE_DIR.lock"
	if ! flock -n "$LOCK_FD"; then
		log "waiting for another cluster.sh holding $STATE_DIR.lock …"
		flock "$LOCK_FD"
	fi
}

need() {
	local c
	for c in "$@"; do command -v "$c" >/dev/null || die "'$c' is needed but not installed"; done
}

# pid_of NAME: the recorded PID if that process is still alive and still runs NAME.
pid_of() {
	local f=$RUN/$1.pid pid exe
	[[ -f $f ]] || return 1
	pid=$(<"$f")
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -r /proc/$pid/cmdline ]] || return 1
	# The binary it runs: a zombie has none. While exec replaces the image, the command
	# line reads empty for a moment, so it is only the fallback.
	exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
	exe=${exe% (deleted)}
	if [[ ${exe##*/} != "$1" ]]; then
		# Right after `start`, setsid may not have exec'd the binary yet: look past it.
		exe=$(tr '\0' '\n' <"/proc/$pid/cmdline" | awk '$0 !~ /(^|\/)setsid$/ { print; exit }')
		[[ ${exe##*/} == "$1" ]] || return 1
	fi
	echo "$pid"
}

# ended_how PID: sets ENDED_HOW to how a process this shell started ended ("exited with
# status 1", "was killed by signal KILL"). Not a $(…): a subshell cannot wait for it. A
# process started by an earlier run cannot be asked.
ended_how() {
	local status=0
	wait "$1" 2>/dev/null || status=$?
	if ! [[ -v STARTED_PIDS[$1] ]]; then
		ENDED_HOW=exited
	elif ((status > 128)); then
		ENDED_HOW="was killed by signal $(kill -l $((status - 128)) 2>/dev/null || echo $((status - 128)))"
	else
		ENDED_HOW="exited with status $status"
	fi
}

# kernel_kills: the kernel's last out-of-memory kills, when its log is readable.
kernel_kills() {
	dmesg 2>/dev/null | grep -iE 'out of memory|oom-kill|killed process' | tail -n 3 | sed 's/^/    /' >&2 || true
}

show_log() { # NAME: point at the log and show its end
	local f=$LOGS/$1.log
	log "last lines of $f:"
	if [[ -f $f ]]; then tail -n 25 "$f" | sed 's/^/    /' >&2; fi
}

fail_component() { # NAME MESSAGE
	show_log "$1"
	die "$2; read $LOGS/$1.log (stop everything with: e2e/cluster.sh down)"
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# refresh NAME: after kube-apiserver was started again under running clients, stop NAME
# so that `start` runs it afresh. Measured here: the controller manager and kwok took from
# one to over three minutes to trust a restarted API server again (their watches were
# refused as forbidden until RBAC filled, then backed off), so pods stayed unready and
# StatefulSet status stale. The operator is not one of them: tests see its own recovery.
APISERVER_STARTED=''
# What `start` knows of the processes it ran in this invocation: their PIDs (for their exit
# status), their arguments and log size at start (for one retry of a silent exit).
declare -A STARTED_PIDS=() START_ARGS=() LOG_SIZE_AT_START=() RESTARTED=()
refresh() {
	local name=$1 pid
	[[ -n $APISERVER_STARTED ]] || return 0
	pid=$(pid_of "$name") || return 0
	log "restarting $name (pid $pid) for the restarted kube-apiserver"
	kill -TERM "$pid" 2>/dev/null || true
	local i
	for ((i = 0; i < 100; i++)); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -KILL "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
}

# healthy NAME: whether a running component answers its health check.
healthy() {
	case $1 in
	etcd) etcd_healthy ;;
	kube-apiserver) apiserver_ready ;;
	kube-controller-manager) component_healthy "$KCM_PORT" ;;
	kube-scheduler) component_healthy "$SCHEDULER_PORT" ;;
	kwok) [[ $(curl -sS --max-time 5 "http://127.0.0.1:$KWOK_PORT/healthz") == ok ]] ;;
	# The real node's (e2e/node.sh): without these, `up` beside a running node waited for
	# a health it could never see, and failed.
	containerd) containerd_healthy ;;
	coredns) coredns_answers ;;
	kubelet) kubelet_healthy ;;
	kube-proxy) kube_proxy_healthy ;;
	local-path-provisioner) pid_of local-path-provisioner >/dev/null ;;
	metrics-server) metrics_server_answers ;;
	*) return 1 ;;
	esac
}

# settle NAME: a recorded process that is alive but unhealthy may be shutting down (after
# SIGTERM, kube-apiserver drains for about a minute) or still starting. Wait until it is
# healthy or gone, so that `up` restarts it in one go instead of failing on the old one.
settle() {
	local name=$1 pid start=$SECONDS
	pid=$(pid_of "$name") || return 0
	healthy "$name" 2>/dev/null && return 0
	log "$name (pid $pid) is running but not healthy: waiting until it is, or until it exits"
	while pid_of "$name" >/dev/null; do
		healthy "$name" 2>/dev/null && return 0
		((SECONDS - start < READY_TIMEOUT)) || fail_component "$name" "$name (pid $pid) neither became healthy nor exited within ${READY_TIMEOUT}s"
		sleep 0.5
	done
	log "$name (pid $pid) exited after $(duration $((SECONDS - start))); starting it again"
}

# start NAME PORT ARGS...: run NAME from the tool cache detached (own session, no terminal,
# no inherited lock or pipes), output appended to its log, PID recorded. A running,
# healthy NAME is left alone; a dying one is waited for first.
start() {
	local name=$1 port=$2 bin pid
	shift 2
	settle "$name"
	if pid=$(pid_of "$name"); then
		log "$name already running (pid $pid)"
		return 0
	fi
	# A process that just exited may still be releasing its port for a moment.
	local i
	for ((i = 0; i < 20; i++)); do
		[[ -z $port ]] || port_free "$port" && break
		sleep 0.25
	done
	[[ -z $port ]] || port_free "$port" || die "port $port for $name is in use by a process that $STATE_DIR did not record; stop it, or pick other ports with the LGTM_*_PORT variables (see e2e/README.md)"
	[[ $name == kube-apiserver ]] && APISERVER_STARTED=1
	case $name in
	containerd) bin=$(command -v containerd) ;; # Debian's, not built here
	*) bin=$(tool_path "$name") ;;
	esac
	mkdir -p "$RUN" "$LOGS"
	printf '\n==== %s cluster.sh starting %s\n' "$(date -u +%FT%TZ)" "$name" >>"$LOGS/$name.log"
	LOG_SIZE_AT_START[$name]=$(stat -c %s "$LOGS/$name.log")
	START_ARGS[$name]=$(printf '%q ' "$port" "$@")
	setsid "$bin" "$@" </dev/null >>"$LOGS/$name.log" 2>&1 {LOCK_FD}>&- &
	pid=$!
	STARTED_PIDS[$pid]=$name
	echo "$pid" >"$RUN/$name.pid"
	# Until it execs, the background job is a copy of this shell (then setsid): wait for
	# the binary, or pid_of would call a process that is still starting dead.
	local want
	want=$(readlink -f "$bin")
	for ((i = 0; i < 200; i++)); do
		[[ $(readlink "/proc/$pid/exe" 2>/dev/null) == "$want" || ! -e /proc/$pid ]] && break
		sleep 0.05
	done
	log "started $name (pid $pid, port $port, log $LOGS/$name.log)"
}

# silent_since_start NAME: whether NAME wrote nothing to its log since `start` ran it.
silent_since_start() {
	[[ -v LOG_SIZE_AT_START[$1] && $(stat -c %s "$LOGS/$1.log") == "${LOG_SIZE_AT_START[$1]}" ]]
}

# wait_until NAME WHAT CMD...: poll CMD until it succeeds; fail naming NAME's log when the
# process dies or READY_TIMEOUT passes.
wait_until() {
	local name=$1 what=$2 start=$SECONDS
	shift 2
	until "$@" >/dev/null 2>&1; do
		if ! pid_of "$name" >/dev/null; then
			local pid how
			pid=$(<"$RUN/$name.pid")
			ended_how "$pid"
			how=$ENDED_HOW
			# Once (seen in CI): kube-apiserver gone within a second of its start, its log
			# empty, so nothing to learn from and likely not its own fault. A second start
			# shows whether it is; a component that said anything fails at once.
			if silent_since_start "$name" && ! [[ -v RESTARTED[$name] ]] && [[ -v START_ARGS[$name] ]]; then
				RESTARTED[$name]=1
				log "$name (pid $pid) $how before writing anything to its log; starting it once more"
				kernel_kills
				eval "start $(printf '%q' "$name") ${START_ARGS[$name]}"
				start=$SECONDS
				continue
			fi
			kernel_kills
			fail_component "$name" "$name (pid $pid) $how while waiting until $what"
		fi
		((SECONDS - start < READY_TIMEOUT)) || fail_component "$name" "timed out after ${READY_TIMEOUT}s waiting until $what"
		sleep 0.5
	done
	log "$what ($(duration $((SECONDS - start))))"
}

admin_curl() {
	curl -fsS --max-time 5 --cacert "$PKI/ca.crt" --cert "$PKI/admin.crt" --key "$PKI/admin.key" "$APISERVER_URL$1"
}
etcd_healthy() { curl -fsS --max-time 5 "http://127.0.0.1:$ETCD_PORT/health" | grep -q '"health":"true"'; }
apiserver_ready() { [[ $(admin_curl /readyz 2>/dev/null) == ok ]]; }
component_healthy() { [[ $(curl -ksS --max-time 5 "https://127.0.0.1:$1/healthz") == ok ]]; }
kctl() { kubectl --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# ---------------------------------------------------------------------------------------
# PKI and kubeconfigs (openssl; EC P-256 keys, RSA for the ServiceAccount token signer).
# ---------------------------------------------------------------------------------------

new_key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$PKI/$1.key" 2>/dev/null; }

make_ca() { # NAME CN
	new_key "$1"
	openssl req -x509 -new -key "$PKI/$1.key" -subj "/CN=$2" -days 3650 -sha256 \
		-addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign,digitalSignature" \
		-out "$PKI/$1.crt"
}

# issue NAME SUBJECT EXTENSIONS [CA]: key + certificate signed by CA (default: the cluster CA).
issue() {
	local name=$1 subject=$2 ext=$3 ca=${4:-ca}
	new_key "$name"
	openssl req -new -key "$PKI/$name.key" -subj "$subject" -out "$PKI/$name.csr"
	openssl x509 -req -in "$PKI/$name.csr" -CA "$PKI/$ca.crt" -CAkey "$PKI/$ca.key" -set_serial "0x$(openssl rand -hex 16)" \
		-days 365 -sha256 -extfile <(printf '%s\n' "$ext") -out "$PKI/$name.crt" 2>/dev/null
	rm -f "$PKI/$name.csr"
}

# The address the API server advertises (the `kubernetes` Service's endpoint): the node's
# own with the real node, whose pods reach it through that Service; else loopback.
apiserver_address() { if ((REAL_NODE)); then node_ip; else echo 127.0.0.1; fi; }

apiserver_cert() {
	local extra=''
	[[ $(apiserver_address) == 127.0.0.1 ]] || extra=",IP:$(apiserver_address)"
	issue apiserver "/CN=kube-apiserver" "basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth
subjectAltName=IP:127.0.0.1,IP:${SERVICE_CIDR%.0/*}.1$extra,DNS:localhost,DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local"
	apiserver_address >"$PKI/.apiserver-address"
}

gen_pki() {
	if [[ -f $PKI/.complete ]]; then
		# A state made without the real node (or on another address) gets a new serving
		# certificate naming the address pods now reach the API server on.
		[[ $(cat "$PKI/.apiserver-address" 2>/dev/null) == "$(apiserver_address)" ]] || apiserver_cert
		return 0
	fi
	log "generating certificates and keys in $PKI"
	rm -rf "$PKI"
	mkdir -p "$PKI"
	chmod 700 "$PKI"
	local client="basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature,keyEncipherment
extendedKeyUsage=clientAuth"
	make_ca ca lgtm-operator-local-ca
	apiserver_cert
	issue admin "/O=system:masters/CN=kubernetes-admin" "$client"
	issue kube-controller-manager "/CN=system:kube-controller-manager" "$client"
	issue kube-scheduler "/CN=system:kube-scheduler" "$client"
	issue kwok "/O=system:masters/CN=kwok-controller" "$client"
	# The aggregation layer's front proxy has a CA of its own, as kubeadm sets it up; the
	# controller manager and scheduler read it to authenticate delegated requests.
	make_ca front-proxy-ca lgtm-operator-local-front-proxy-ca
	issue front-proxy-client "/CN=front-proxy-client" "$client" front-proxy-ca
	openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$PKI/sa.key" 2>/dev/null
	openssl pkey -in "$PKI/sa.key" -pubout -out "$PKI/sa.pub"
	touch "$PKI/.complete"
}

write_kubeconfig() { # FILE CERT-NAME USER
	local file=$1 cert=$2 user=$3
	cat >"$file.tmp" <<KUBECONFIG
apiVersion: v1
kind: Config
clusters:
- name: lgtm-local
  cluster:
    server: $APISERVER_URL
    certificate-authority-data: $(base64 -w0 "$PKI/ca.crt")
users:
- name: $user
  user:
    client-certificate-data: $(base64 -w0 "$PKI/$cert.crt")
    client-key-data: $(base64 -w0 "$PKI/$cert.key")
contexts:
- name: lgtm-local
  context:
    cluster: lgtm-local
    user: $user
current-context: lgtm-local
KUBECONFIG
	chmod 600 "$file.tmp"
	mv -f "$file.tmp" "$file"
}

write_kubeconfigs() {
	write_kubeconfig "$KUBECONFIG_PATH" admin kubernetes-admin
	write_kubeconfig "$STATE_DIR/kube-controller-manager.kubeconfig" kube-controller-manager system:kube-controller-manager
	write_kubeconfig "$STATE_DIR/kube-scheduler.kubeconfig" kube-scheduler system:kube-scheduler
	write_kubeconfig "$STATE_DIR/kwok.kubeconfig" kwok kwok-controller
}

# kwok's stages are assembled from the pinned kwok module in the Go module cache: the
# defaults kwokctl uses (node-initialize, node-heartbeat-with-lease, pod ready/complete/delete)
# plus its volume stages, so PersistentVolumeClaims of the kwok-volume class get Bound.
KWOK_STAGES=(
	node/fast/node-initialize.yaml
	node/heartbeat-with-lease/node-heartbeat-with-lease.yaml
	pod/fast/pod-ready.yaml
	pod/fast/pod-complete.yaml
	pod/fast/pod-delete.yaml
	volume/fast/pvc-provision.yaml
	volume/fast/pv-bind.yaml
	volume/fast/pvc-delete.yaml
	volume/fast/pv-delete.yaml
)
kwok_module_dir() {
	local dir
	dir=$(cd "$TOOLS_DIR/kwok" && GOWORK=off go mod download sigs.k8s.io/kwok && GOWORK=off go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) ||
		die "cannot locate the sigs.k8s.io/kwok module source (go mod download failed)"
	[[ -d $dir/kustomize/stage ]] || die "no kustomize/stage in the kwok module at '$dir'"
	echo "$dir"
}

write_kwok_config() {
	[[ -f $STATE_DIR/kwok-stages.yaml && -f $STATE_DIR/storage-class.yaml ]] && return 0
	local dir f
	dir=$(kwok_module_dir)
	for f in "${KWOK_STAGES[@]}" volume/fast/storage-class.yaml; do
		[[ -f $dir/kustomize/stage/$f ]] || die "kwok stage $f is missing in $dir"
	done
	for f in "${KWOK_STAGES[@]}"; do
		echo "# sigs.k8s.io/kwok@$(tool_version kwok) kustomize/stage/$f"
		cat "$dir/kustomize/stage/$f"
		echo "---"
	done >"$STATE_DIR/kwok-stages.yaml.tmp"
	mv -f "$STATE_DIR/kwok-stages.yaml.tmp" "$STATE_DIR/kwok-stages.yaml"
	cat "$dir/kustomize/stage/volume/fast/storage-class.yaml" >"$STATE_DIR/storage-class.yaml"
}

# Simulated nodes (kwok manages every Node): one per zone, with room for plenty of pods and
# a /24 of the pod CIDR each, from which kwok gives pods their IPs. (Set here rather than by
# the controller manager's node IPAM, which races with kwok's first status updates.)
nodes_manifest() {
	local i name zone zones=(zone-a zone-b zone-c) version
	version=$(tool_version kube-apiserver)
	for ((i = 0; i < NODE_COUNT; i++)); do
		name=kwok-node-$i zone=${zones[i % 3]}
		cat <<NODE
---
apiVersion: v1
kind: Node
metadata:
  name: $name
  annotations:
    kwok.x-k8s.io/node: fake
    node.alpha.kubernetes.io/ttl: "0"
  labels:
    type: kwok
    kubernetes.io/arch: amd64
    kubernetes.io/os: linux
    kubernetes.io/hostname: $name
    topology.kubernetes.io/region: local
    topology.kubernetes.io/zone: $zone
spec:
  podCIDR: ${POD_CIDR%.0.0/*}.$i.0/24
  podCIDRs: [${POD_CIDR%.0.0/*}.$i.0/24]
status:
  allocatable: {cpu: "1000", memory: 4Ti, pods: "1000", ephemeral-storage: 16Ti}
  capacity: {cpu: "1000", memory: 4Ti, pods: "1000", ephemeral-storage: 16Ti}
  nodeInfo:
    architecture: amd64
    operatingSystem: linux
    kubeletVersion: $version
    kubeProxyVersion: $version
NODE
	done
}

all_running() {
	local c
	for c in "${CONTROL_PLANE[@]}" $(node_components); do pid_of "$c" >/dev/null || return 1; done
}

nodes_ready() {
	local n
	n=$(kctl get nodes -l type=kwok -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' | grep -c '^True$')
	((n >= NODE_COUNT))
}

# ---------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------

cmd_up() {
	need openssl curl kubectl flock setsid base64
	local t0=$SECONDS
	lock
	if all_running && apiserver_ready; then
		log "already running (state in $STATE_DIR)"
		echo "export KUBECONFIG=$KUBECONFIG_PATH"
		return 0
	fi
	build "${CONTROL_PLANE[@]}"
	mkdir -p "$STATE_DIR" "$RUN" "$LOGS"
	gen_pki
	write_kubeconfigs
	write_kwok_config

	start etcd "$ETCD_PORT" \
		--name=lgtm-local --data-dir="$STATE_DIR/etcd" \
		--listen-client-urls="http://127.0.0.1:$ETCD_PORT" --advertise-client-urls="http://127.0.0.1:$ETCD_PORT" \
		--listen-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" --initial-advertise-peer-urls="http://127.0.0.1:$ETCD_PEER_PORT" \
		--initial-cluster="lgtm-local=http://127.0.0.1:$ETCD_PEER_PORT" \
		--unsafe-no-fsync --log-level=warn
	wait_until etcd "etcd is healthy" etcd_healthy

	# With the real node the API server also listens on the node's address and publishes it
	# as the `kubernetes` Service's endpoint, which pods (the operator in-cluster) reach
	# through kube-proxy. Without it, --endpoint-reconciler-type=none: the reconciler would
	# publish 127.0.0.1, which Endpoints validation rejects (loopback) every 10s.
	# --enable-aggregator-routing: an aggregated API (metrics-server) is reached at its
	# endpoint rather than through its Service's ClusterIP and kube-proxy; through the
	# ClusterIP, the availability check once got 404 for minutes from something else that
	# answered there (never pinned down), which made the autoscaling test flaky.
	local bind=127.0.0.1 reconciler=none
	if ((REAL_NODE)); then bind=0.0.0.0 reconciler=lease; fi
	start kube-apiserver "$APISERVER_PORT" \
		--etcd-servers="http://127.0.0.1:$ETCD_PORT" \
		--bind-address="$bind" --secure-port="$APISERVER_PORT" --advertise-address="$(apiserver_address)" \
		--tls-cert-file="$PKI/apiserver.crt" --tls-private-key-file="$PKI/apiserver.key" \
		--client-ca-file="$PKI/ca.crt" \
		--service-account-issuer=https://kubernetes.default.svc.cluster.local \
		--service-account-key-file="$PKI/sa.pub" --service-account-signing-key-file="$PKI/sa.key" \
		--service-cluster-ip-range="$SERVICE_CIDR" \
		--requestheader-client-ca-file="$PKI/front-proxy-ca.crt" --requestheader-allowed-names=front-proxy-client \
		--requestheader-username-headers=X-Remote-User --requestheader-group-headers=X-Remote-Group \
		--requestheader-extra-headers-prefix=X-Remote-Extra- \
		--proxy-client-cert-file="$PKI/front-proxy-client.crt" --proxy-client-key-file="$PKI/front-proxy-client.key" \
		--enable-aggregator-routing=true \
		--authorization-mode=Node,RBAC \
		--enable-admission-plugins=NodeRestriction \
		--allow-privileged=true --profiling=false \
		--endpoint-reconciler-type="$reconciler" --kubelet-preferred-address-types=InternalIP,Hostname
	wait_until kube-apiserver "kube-apiserver /readyz is ok" apiserver_ready

	# --kube-api-qps/--kube-api-burst: the defaults (20/30) queued the EndpointSlices of
	# a test's Services behind another test's 850 for most of a minute, so a gateway's
	# DNS knew no worker yet.
	# --node-monitor-grace-period: a simulated node goes NotReady only when kwok is gone
	# for 5 minutes. With the default 50 s, an API-server restart (a minute of draining in
	# the fault tests) let the node lifecycle controller mark the nodes NotReady and set
	# every pod's Ready condition to False, which kwok never sets back: a StatefulSet then
	# stayed below its ready replicas for good. Real kubelets would report again.
	refresh kube-controller-manager
	start kube-controller-manager "$KCM_PORT" \
		--kubeconfig="$STATE_DIR/kube-controller-manager.kubeconfig" \
		--authentication-kubeconfig="$STATE_DIR/kube-controller-manager.kubeconfig" \
		--authorization-kubeconfig="$STATE_DIR/kube-controller-manager.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port="$KCM_PORT" --leader-elect=false \
		--use-service-account-credentials=true \
		--root-ca-file="$PKI/ca.crt" --service-account-private-key-file="$PKI/sa.key" \
		--cluster-signing-cert-file="$PKI/ca.crt" --cluster-signing-key-file="$PKI/ca.key" \
		--controllers='*,bootstrapsigner,tokencleaner' --profiling=false \
		--node-monitor-grace-period=5m --kube-api-qps=100 --kube-api-burst=200
	wait_until kube-controller-manager "kube-controller-manager /healthz is ok" component_healthy "$KCM_PORT"

	refresh kube-scheduler
	start kube-scheduler "$SCHEDULER_PORT" \
		--kubeconfig="$STATE_DIR/kube-scheduler.kubeconfig" \
		--authentication-kubeconfig="$STATE_DIR/kube-scheduler.kubeconfig" \
		--authorization-kubeconfig="$STATE_DIR/kube-scheduler.kubeconfig" \
		--bind-address=127.0.0.1 --secure-port="$SCHEDULER_PORT" --leader-elect=false --profiling=false
	wait_until kube-scheduler "kube-scheduler /healthz is ok" component_healthy "$SCHEDULER_PORT"

	refresh kwok
	start kwok "$KWOK_PORT" \
		--kubeconfig="$STATE_DIR/kwok.kubeconfig" --config="$STATE_DIR/kwok-stages.yaml" \
		--manage-nodes-with-label-selector=type=kwok --cidr="$POD_CIDR" --node-ip=127.0.0.1 \
		--node-lease-duration-seconds=40 --server-address="127.0.0.1:$KWOK_PORT"

	kctl apply -f "$STATE_DIR/storage-class.yaml" >/dev/null ||
		die "could not create the kwok-volume StorageClass (see $LOGS/kube-apiserver.log)"
	nodes_manifest | kctl apply -f - >/dev/null ||
		die "could not create the kwok nodes (see $LOGS/kube-apiserver.log)"
	wait_until kwok "$NODE_COUNT kwok nodes are Ready" nodes_ready
	wait_until kube-controller-manager "the default ServiceAccount exists" kctl get serviceaccount default -n default
	node_up

	log "control plane is up in $(duration $((SECONDS - t0))) (state in $STATE_DIR, logs in $LOGS)"
	echo "export KUBECONFIG=$KUBECONFIG_PATH"
}

cmd_down() {
	lock
	if [[ ! -d $STATE_DIR ]]; then
		log "nothing to stop ($STATE_DIR does not exist)"
		return 0
	fi
	node_down
	local i name pid pids=() names=()
	for ((i = ${#CONTROL_PLANE[@]} - 1; i >= 0; i--)); do
		name=${CONTROL_PLANE[i]}
		if pid=$(pid_of "$name"); then
			kill -TERM "$pid" 2>/dev/null || true
			pids+=("$pid")
			names+=("$name")
		fi
	done
	local deadline=$((SECONDS + 15))
	for i in "${!pids[@]}"; do
		while kill -0 "${pids[i]}" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
		if kill -0 "${pids[i]}" 2>/dev/null; then
			log "${names[i]} (pid ${pids[i]}) is still running after TERM; sending KILL"
			kill -KILL "${pids[i]}" 2>/dev/null || true
		fi
		log "stopped ${names[i]} (pid ${pids[i]})"
	done
	rm -rf "$STATE_DIR"
	log "removed $STATE_DIR"
}

# cmd_stop NAME [SIGNAL]: stop one component as a fault would (TERM: a graceful stop, up
# to a minute for kube-apiserver; KILL: a crash) and wait until it is gone. `up` starts it
# again. For the fault tests and for trying recovery by hand.
cmd_stop() {
	(($# >= 1 && $# <= 2)) || die "usage: e2e/cluster.sh stop COMPONENT [TERM|KILL] (one of: ${CONTROL_PLANE[*]})"
	local name=$1 signal=${2:-TERM} pid start=$SECONDS
	[[ $signal == TERM || $signal == KILL ]] || die "signal must be TERM or KILL, not $signal"
	pid=$(pid_of "$name") || die "$name is not running"
	kill "-$signal" "$pid"
	while kill -0 "$pid" 2>/dev/null; do
		((SECONDS - start < 120)) || die "$name (pid $pid) still runs 120s after $signal"
		sleep 0.2
	done
	log "stopped $name (pid $pid) with $signal in $(duration $((SECONDS - start)))"
}

# cmd_compact: compact etcd's history up to its current revision (through etcd's JSON
# gateway), so that no watch can resume from an older resource version: the next one that
# reaches etcd gets 410 Gone. Prints the revision.
cmd_compact() {
	local revision
	revision=$(curl -fsS --max-time 5 -X POST "http://127.0.0.1:$ETCD_PORT/v3/kv/range" -d '{"key":"AA=="}' |
		sed -n 's/.*"revision":"\([0-9]*\)".*/\1/p')
	[[ -n $revision ]] || die "cannot read etcd's revision"
	curl -fsS --max-time 30 -X POST "http://127.0.0.1:$ETCD_PORT/v3/kv/compaction" \
		-d "{\"revision\":\"$revision\",\"physical\":true}" >/dev/null || die "etcd compaction to $revision failed"
	log "compacted etcd to revision $revision"
	echo "$revision"
}

# cmd_load_image ARCHIVE: import a docker-archive into the real node's containerd, so that
# pods there can run it with imagePullPolicy: Never (no registry here).
cmd_load_image() {
	(($# == 1)) || die "usage: e2e/cluster.sh load-image ARCHIVE"
	((REAL_NODE)) || die "there is no real node (LGTM_REAL_NODE=0)"
	containerd_healthy || die "the real node's containerd is not running (e2e/cluster.sh up)"
	ctr --address "$CONTAINERD_SOCK" -n k8s.io images import "$1" >/dev/null || die "ctr images import $1 failed"
	log "loaded $1 into the real node"
}

cmd_status() {
	local c pid ok=0
	for c in "${CONTROL_PLANE[@]}" $(node_components); do
		if pid=$(pid_of "$c"); then
			log "$c: running (pid $pid)"
		else
			log "$c: not running"
			ok=1
		fi
	done
	if [[ -f $PKI/admin.crt ]] && apiserver_ready; then
		log "kube-apiserver /readyz: ok ($APISERVER_URL)"
		kctl get nodes -L topology.kubernetes.io/zone >&2 || ok=1
	else
		log "kube-apiserver /readyz: not ok"
		ok=1
	fi
	return "$ok"
}

cmd_tool_path() {
	(($# == 1)) || die "usage: e2e/cluster.sh tool-path TOOL (one of: ${ALL_TOOLS[*]})"
	tool_spec "$1" >/dev/null
	build "$1"
	tool_path "$1"
}

usage() {
	cat <<USAGE
Usage: e2e/cluster.sh COMMAND

  build [all|TOOL...]  build missing tools into $BIN_CACHE
                       (default: the control plane; 'all' adds helm and chainsaw)
  up                   build if needed, start the control plane, print 'export KUBECONFIG=...'
  down                 stop every process that 'up' started and remove $STATE_DIR
  status               show the processes and nodes; exit 0 when up and ready
  kubeconfig           print the admin kubeconfig path
  stop NAME [TERM|KILL]
                       stop one component and wait until it is gone ('up' restarts it)
  compact              compact etcd to its current revision (old watches then get 410)
  load-image ARCHIVE   import a docker-archive into the real node's containerd
  metrics-server       build and start metrics-server for the real node, serve the metrics
                       API through the aggregator (for HorizontalPodAutoscalers); idempotent
  tool-path TOOL       build TOOL if missing and print its path (${ALL_TOOLS[*]})

Environment: LGTM_CACHE_DIR, LGTM_STATE_DIR, LGTM_READY_TIMEOUT (seconds), LGTM_ETCD_PORT,
LGTM_ETCD_PEER_PORT, LGTM_APISERVER_PORT, LGTM_KCM_PORT, LGTM_SCHEDULER_PORT, LGTM_KWOK_PORT.
USAGE
}

main() {
	local cmd=${1:-help}
	shift || true
	case $cmd in
	build) cmd_build "$@" ;;
	up) cmd_up ;;
	down) cmd_down ;;
	status) cmd_status ;;
	kubeconfig) echo "$KUBECONFIG_PATH" ;;
	stop) cmd_stop "$@" ;;
	compact) cmd_compact ;;
	load-image) cmd_load_image "$@" ;;
	metrics-server) cmd_metrics_server ;;
	tool-path) cmd_tool_path "$@" ;;
	help | -h | --help) usage ;;
	*)
		usage >&2
		exit 2
		;;
	esac
}

main "$@"
