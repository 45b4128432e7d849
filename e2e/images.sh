#!/usr/bin/env bash
# Container images for the real node, built without Docker or a registry: each is an OCI
# layout made with umoci (Debian), turned into a docker-archive with skopeo (Debian) and
# imported into the node's containerd. Cached under ~/.cache/lgtm-operator/images, keyed by
# what goes into them (this script included). ADR 8 says why these tools.
#
# Usage: e2e/images.sh build | import CONTAINERD_SOCKET | ref NAME
#        e2e/images.sh operator BINARY oci-archive|docker-archive OUT REF
#        e2e/images.sh contract-worker BINARY mimir|loki|tempo OUT REF
#   pause    the sandbox image: a static pause binary built here from e2e/images/pause.c
#   busybox  Debian's static busybox, for tests that need a shell and an HTTP server
#   gateway  Debian's nginx with the libraries it links, and busybox's sh and awk for the
#            gateway's start script: the gateway as the operator renders it
#   exporter Debian's prometheus-nginx-exporter (0.11: the Go module proxy here refuses
#            github.com/nginx/nginx-prometheus-exporter, so it cannot be built from source)
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${LGTM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lgtm-operator}
IMAGE_CACHE=$CACHE_DIR/images
IMAGES=(pause busybox gateway exporter)

log() { printf '%s\n' "images.sh: $*" >&2; }
die() {
	log "$*"
	exit 1
}

# ref NAME: the image reference pods and containerd use.
ref() {
	case $1 in
	pause) echo "lgtm.local/pause:$(key pause)" ;;
	busybox) echo "lgtm.local/busybox:$(key busybox)" ;;
	gateway) echo "lgtm.local/gateway:$(key gateway)" ;;
	exporter) echo "lgtm.local/nginx-exporter:$(key exporter)" ;;
	*) die "unknown image '$1' (known: ${IMAGES[*]})" ;;
	esac
}

# key NAME: what the image is made of, short: its tag and cache key.
key() {
	case $1 in
	pause) cat "$REPO_ROOT/e2e/images/pause.c" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12 ;;
	busybox) { dpkg-query -W -f '${Version}' busybox-static; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12 ;;
	gateway) { dpkg-query -W -f '${Version}' nginx busybox-static; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12 ;;
	exporter) { dpkg-query -W -f '${Version}' prometheus-nginx-exporter; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12 ;;
	esac
}

# rootfs NAME DIR: fill DIR with the image's files; prints the entrypoint.
rootfs() {
	local name=$1 dir=$2
	case $name in
	pause)
		gcc -Os -static -o "$dir/pause" "$REPO_ROOT/e2e/images/pause.c" || die "cannot build pause (gcc -static)"
		echo /pause
		;;
	busybox)
		mkdir -p "$dir/bin" "$dir/tmp" "$dir/etc"
		cp /bin/busybox "$dir/bin/busybox"
		local applet
		for applet in sh httpd echo cat sleep ls wget nc mkdir hostname env nslookup awk; do ln -s busybox "$dir/bin/$applet"; done
		echo /bin/sh
		;;
	gateway)
		mkdir -p "$dir/bin" "$dir/usr/sbin" "$dir/tmp" "$dir/etc/nginx" "$dir/var/log/nginx"
		cp /bin/busybox "$dir/bin/busybox"
		local applet
		for applet in sh awk mkdir cat echo; do ln -s busybox "$dir/bin/$applet"; done
		binary_with_libraries /usr/sbin/nginx "$dir"
		echo /bin/sh
		;;
	exporter)
		binary_with_libraries /usr/bin/prometheus-nginx-exporter "$dir"
		echo /usr/bin/prometheus-nginx-exporter
		;;
	esac
}

# operator BINARY FORMAT OUT REF: the operator image — BINARY at /usr/local/bin with the
# libraries it links, CA certificates and a passwd entry for its user — as the Dockerfile
# builds it (distroless cc, nonroot 65532), written to OUT as FORMAT (oci-archive for
# `make image`, docker-archive for the real node's containerd), tagged REF.
cmd_operator() {
	binary_image "$1" lgtm-operator "$2" "$3" "$4" --config.cmd run --config.user 65532:65532
}

# contract-worker BINARY PRODUCT OUT REF: the contract worker (src/bin/contract-worker.rs),
# a test double of PRODUCT's workers, as a docker-archive for the real node. The product's
# pods run it with the arguments the operator renders for the product; the image says
# which product it plays.
cmd_contract_worker() {
	binary_image "$1" contract-worker docker-archive "$3" "$4" \
		--config.env "LGTM_CONTRACT_PRODUCT=$2" --config.user 10001:10001
}

# binary_image BINARY NAME FORMAT OUT REF [umoci config flags]: BINARY at
# /usr/local/bin/NAME (its entrypoint) with the libraries it links, CA certificates and
# passwd entries, written to OUT as FORMAT, tagged REF.
binary_image() {
	local binary=$1 name=$2 format=$3 out=$4 ref=$5 tmp
	shift 5
	[[ $format == oci-archive || $format == docker-archive ]] || die "format: oci-archive or docker-archive"
	for tool in umoci skopeo; do command -v "$tool" >/dev/null || die "'$tool' is needed to build images"; done
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"; trap - RETURN' RETURN
	umoci init --layout "$tmp/layout"
	umoci new --image "$tmp/layout:$name"
	umoci unpack --image "$tmp/layout:$name" "$tmp/bundle" >/dev/null
	local root=$tmp/bundle/rootfs
	mkdir -p "$root/usr/local/bin" "$root/etc/ssl/certs" "$root/tmp"
	binary=$(readlink -f "$binary")
	binary_with_libraries "$binary" "$root"
	if [[ $binary != "/usr/local/bin/$name" ]]; then
		mv "$root$binary" "$root/usr/local/bin/$name"
	fi
	# A debug build carries ~150 MB of debug info; the image needs none of it.
	strip --strip-debug "$root/usr/local/bin/$name"
	cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
	printf 'root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$root/etc/passwd"
	printf 'root:x:0:\nnonroot:x:65532:\n' >"$root/etc/group"
	umoci repack --image "$tmp/layout:$name" "$tmp/bundle"
	umoci config --image "$tmp/layout:$name" --config.entrypoint "/usr/local/bin/$name" \
		--config.workingdir / --architecture amd64 --os linux "$@"
	mkdir -p "$(dirname "$out")"
	rm -f "$out"
	skopeo copy -q "oci:$tmp/layout:$name" "$format:$out:$ref"
	log "wrote $ref to $out ($format)"
}

# binary_with_libraries BINARY DIR: BINARY and every shared library it loads (ldd), at the
# same paths under DIR.
binary_with_libraries() {
	local binary=$1 dir=$2 lib
	[[ -x $binary ]] || die "$binary is missing (its Debian package is installed by e2e/node.sh)"
	mkdir -p "$dir${binary%/*}"
	cp "$binary" "$dir$binary"
	for lib in $(ldd "$binary" | awk '$2 == "=>" && $3 ~ /^\// { print $3 } $1 ~ /^\// { print $1 }'); do
		mkdir -p "$dir${lib%/*}"
		cp -L "$lib" "$dir$lib"
	done
}

# build_one NAME: the docker-archive of NAME in the cache (built when missing).
build_one() {
	local name=$1 archive tmp entrypoint
	archive="$IMAGE_CACHE/$name-$(key "$name").tar"
	if [[ ! -f $archive ]]; then
		for tool in umoci skopeo gcc; do command -v "$tool" >/dev/null || die "'$tool' is needed to build images"; done
		mkdir -p "$IMAGE_CACHE"
		tmp=$(mktemp -d "$IMAGE_CACHE/.build-$name.XXXXXX")
		trap 'rm -rf "$tmp"' RETURN
		umoci init --layout "$tmp/layout"
		umoci new --image "$tmp/layout:$name"
		umoci unpack --image "$tmp/layout:$name" "$tmp/bundle" >/dev/null
		entrypoint=$(rootfs "$name" "$tmp/bundle/rootfs")
		umoci repack --image "$tmp/layout:$name" "$tmp/bundle"
		umoci config --image "$tmp/layout:$name" --config.entrypoint "$entrypoint" --config.user 65535:65535 \
			--config.env PATH=/usr/sbin:/usr/bin:/bin \
			--config.workingdir / --architecture amd64 --os linux
		skopeo copy -q "oci:$tmp/layout:$name" "docker-archive:$tmp/$name.tar:$(ref "$name")"
		mv -f "$tmp/$name.tar" "$archive"
		log "built $(ref "$name") ($archive)"
	fi
	echo "$archive"
}

cmd_import() {
	local socket=$1 name archive
	for name in "${IMAGES[@]}"; do
		archive=$(build_one "$name")
		if ! ctr --address "$socket" -n k8s.io images ls -q | grep -qx "$(ref "$name")"; then
			ctr --address "$socket" -n k8s.io images import --no-unpack=false "$archive" >/dev/null ||
				die "ctr images import $archive failed"
			log "imported $(ref "$name")"
		fi
	done
}

case ${1:-} in
build) for name in "${IMAGES[@]}"; do build_one "$name" >/dev/null; done ;;
import) cmd_import "${2:?usage: e2e/images.sh import CONTAINERD_SOCKET}" ;;
ref) ref "${2:?usage: e2e/images.sh ref NAME}" ;;
operator) (($# == 5)) || die "usage: e2e/images.sh operator BINARY oci-archive|docker-archive OUT REF"
	cmd_operator "$2" "$3" "$4" "$5" ;;
contract-worker) (($# == 5)) || die "usage: e2e/images.sh contract-worker BINARY mimir|loki|tempo OUT REF"
	cmd_contract_worker "$2" "$3" "$4" "$5" ;;
*) die "usage: e2e/images.sh build | import CONTAINERD_SOCKET | ref NAME | operator BINARY FORMAT OUT REF | contract-worker BINARY PRODUCT OUT REF" ;;
esac
