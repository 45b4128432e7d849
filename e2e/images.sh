#!/usr/bin/env bash
# Container images for the real node, built without Docker or a registry: each is an OCI
# layout made with umoci (Debian), turned into a docker-archive with skopeo (Debian) and
# imported into the node's containerd. Cached under ~/.cache/lgtm-operator/images, keyed by
# what goes into them (this script included). ADR 8 says why these tools.
#
# Usage: e2e/images.sh build | import CONTAINERD_SOCKET | ref NAME
#   pause    the sandbox image: a static pause binary built here from e2e/images/pause.c
#   busybox  Debian's static busybox, for tests that need a shell and an HTTP server
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
CACHE_DIR=${LGTM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lgtm-operator}
IMAGE_CACHE=$CACHE_DIR/images
IMAGES=(pause busybox)

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
	*) die "unknown image '$1' (known: ${IMAGES[*]})" ;;
	esac
}

# key NAME: what the image is made of, short: its tag and cache key.
key() {
	case $1 in
	pause) cat "$REPO_ROOT/e2e/images/pause.c" "${BASH_SOURCE[0]}" | sha256sum | cut -c1-12 ;;
	busybox) { dpkg-query -W -f '${Version}' busybox-static; cat "${BASH_SOURCE[0]}"; } | sha256sum | cut -c1-12 ;;
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
	esac
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
*) die "usage: e2e/images.sh build | import CONTAINERD_SOCKET | ref NAME" ;;
esac
