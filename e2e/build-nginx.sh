#!/usr/bin/env bash
# Builds a recent open-source nginx (1.28.0) from its source, which the Go module proxy
# serves as a pseudo-version of github.com/nginx/nginx, into the tool cache. The gateway
# tests run against it as well as against Debian's nginx 1.22, so the rendered config is
# checked at both ends of what the project supports (and nginx >= 1.23 behaviour, such as
# joining repeated headers, is tested for real). Prints the binary's path.
set -euo pipefail

# nginx 1.28.0 (src/core/nginx.h of this commit).
MODULE=github.com/nginx/nginx
VERSION=v0.0.0-20250423114854-481d28cb4e04
NGINX=1.28.0
CACHE_DIR=${LGTM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lgtm-operator}
BIN=$CACHE_DIR/bin/nginx-$NGINX/nginx

log() { printf '%s\n' "build-nginx.sh: $*" >&2; }

if [[ -x $BIN ]]; then
	echo "$BIN"
	exit 0
fi

missing=()
for pkg in libpcre2-dev zlib1g-dev libssl-dev; do
	dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if ((${#missing[@]})); then
	log "installing ${missing[*]} (Debian)"
	if [[ ! -d /var/lib/apt/lists/partial ]] || [[ -z $(ls /var/lib/apt/lists/*_Packages 2>/dev/null) ]]; then
		apt-get update -qq >&2
	fi
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

log "fetching nginx $NGINX source ($MODULE@$VERSION)"
src=$(GOFLAGS=-mod=mod go mod download -json "$MODULE@$VERSION" | awk -F'"' '/"Dir":/ {print $4}')
[[ -d $src ]] || {
	log "error: the Go module proxy did not give $MODULE@$VERSION"
	exit 1
}
grep -q "NGINX_VERSION      \"$NGINX\"" "$src/src/core/nginx.h" || {
	log "error: $MODULE@$VERSION is not nginx $NGINX"
	exit 1
}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -r "$src/." "$work/" && chmod -R u+w "$work"
log "building nginx $NGINX"
start=$SECONDS
(
	cd "$work"
	# Module zips keep no file modes: run the configure script through sh.
	sh auto/configure --prefix=/tmp/lgtm-nginx --with-http_ssl_module --with-http_v2_module \
		--with-http_stub_status_module >"$work/configure.log" 2>&1 ||
		{ tail -20 "$work/configure.log" >&2; exit 1; }
	make -j"$(nproc)" >"$work/make.log" 2>&1 || { tail -20 "$work/make.log" >&2; exit 1; }
)
mkdir -p "$(dirname "$BIN")"
cp "$work/objs/nginx" "$BIN.tmp" && mv "$BIN.tmp" "$BIN"
log "built nginx $NGINX in $((SECONDS - start))s"
echo "$BIN"
