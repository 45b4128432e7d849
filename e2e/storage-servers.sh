#!/usr/bin/env bash
# The storage servers of the storage-probe tests, cached outside the repository and
# keyed by what pins them:
# - moto's S3 server and Azure's blob SDK from PyPI, in a virtualenv
#   (e2e/tools/storage/requirements.txt);
# - Azurite from npm (e2e/tools/azurite/package.json).
#
#   e2e/storage-servers.sh python    install when missing; print the virtualenv's python,
#                                    which runs moto as `python -m moto.server`
#   e2e/storage-servers.sh azurite   install when missing; print Azurite's blob server
set -euo pipefail

REPO_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
REQUIREMENTS=$REPO_ROOT/e2e/tools/storage/requirements.txt
PACKAGE=$REPO_ROOT/e2e/tools/azurite/package.json
CACHE=${LGTM_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lgtm-operator}
KEY=$(sha256sum "$REQUIREMENTS" | cut -c1-12)
VENV=$CACHE/tools/storage-python-$KEY
AZURITE=$CACHE/tools/azurite-$(sha256sum "$PACKAGE" | cut -c1-12)

log() { printf '%s\n' "storage-servers.sh: $*" >&2; }

ensure() {
	[[ -x $VENV/bin/python ]] && return
	mkdir -p "$CACHE/tools"
	exec 9>"$CACHE/tools/.storage-python.lock"
	flock 9
	[[ -x $VENV/bin/python ]] && return
	local started=$SECONDS
	log "installing moto and azure-storage-blob into $VENV …"
	rm -rf "$VENV.partial"
	python3 -m venv "$VENV.partial"
	"$VENV.partial/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
	# Moved whole once complete: `python -m` finds the packages from pyvenv.cfg beside
	# the interpreter, wherever the directory is (the scripts' shebangs would not).
	mv "$VENV.partial" "$VENV"
	log "installed in $((SECONDS - started))s"
}

ensure_azurite() {
	[[ -x $AZURITE/node_modules/.bin/azurite-blob ]] && return
	mkdir -p "$CACHE/tools"
	exec 8>"$CACHE/tools/.azurite.lock"
	flock 8
	[[ -x $AZURITE/node_modules/.bin/azurite-blob ]] && return
	local started=$SECONDS
	log "installing Azurite into $AZURITE …"
	rm -rf "$AZURITE.partial"
	mkdir -p "$AZURITE.partial"
	cp "$PACKAGE" "$AZURITE.partial/package.json"
	(cd "$AZURITE.partial" && npm install --silent --no-audit --no-fund >&2)
	mv "$AZURITE.partial" "$AZURITE"
	log "installed Azurite in $((SECONDS - started))s"
}

case ${1:-} in
python)
	ensure
	echo "$VENV/bin/python"
	;;
azurite)
	ensure_azurite
	echo "$AZURITE/node_modules/.bin/azurite-blob"
	;;
*)
	echo "usage: $0 python|azurite" >&2
	exit 2
	;;
esac
