#!/usr/bin/env bash
# The S3 server of the storage-probe tests: moto's server from PyPI, in a virtualenv
# cached outside the repository and keyed by e2e/tools/moto/requirements.txt.
#
#   e2e/s3-server.sh python    install when missing; print the virtualenv's python, which
#                              runs the server as `python -m moto.server`
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS=$REPO_ROOT/e2e/tools/moto/requirements.txt
CACHE=${LGTM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lgtm-operator}
KEY=$(sha256sum "$REQUIREMENTS" | cut -c1-12)
VENV=$CACHE/tools/moto-$KEY

log() { printf '%s\n' "s3-server.sh: $*" >&2; }

ensure() {
	[[ -x $VENV/bin/python ]] && return
	mkdir -p "$CACHE/tools"
	exec 9>"$CACHE/tools/.moto.lock"
	flock 9
	[[ -x $VENV/bin/python ]] && return
	local started=$SECONDS
	log "installing moto into $VENV …"
	rm -rf "$VENV.partial"
	python3 -m venv "$VENV.partial"
	"$VENV.partial/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
	# Moved whole once complete: `python -m` finds the packages from pyvenv.cfg beside
	# the interpreter, wherever the directory is (the scripts' shebangs would not).
	mv "$VENV.partial" "$VENV"
	log "installed moto in $((SECONDS - started))s"
}

case ${1:-} in
python)
	ensure
	echo "$VENV/bin/python"
	;;
*)
	echo "usage: $0 python" >&2
	exit 2
	;;
esac
