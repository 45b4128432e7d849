#!/usr/bin/env bash
# Makes sure Debian's nginx is installed: the gateway tests (tests/gateway_nginx.rs) run
# the rendered nginx.conf with it. Idempotent; quiet when nginx is already there. Prints
# the version either way (nginx itself writes it to stderr).
set -euo pipefail

if ! command -v nginx >/dev/null 2>&1 && [ ! -x /usr/sbin/nginx ]; then
    sudo=""
    if [ "$(id -u)" -ne 0 ]; then
        command -v sudo >/dev/null 2>&1 || {
            echo "ensure-nginx: nginx is missing and installing it needs root (or sudo)" >&2
            exit 1
        }
        sudo="sudo"
    fi
    # The package would start a system nginx on port 80 where a service manager allows it;
    # the tests start their own, so forbid service starts while installing.
    created_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee /usr/sbin/policy-rc.d >/dev/null
        $sudo chmod 755 /usr/sbin/policy-rc.d
        created_policy=1
        trap '$sudo rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    echo "ensure-nginx: installing Debian's nginx" >&2
    $sudo apt-get update -qq
    # `nginx` carries the binary with the modules the gateway uses (ssl, http2, grpc,
    # stub_status); the recommended extras are not needed.
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends nginx >/dev/null
    if [ -n "$created_policy" ]; then
        $sudo rm -f /usr/sbin/policy-rc.d
        trap - EXIT
    fi
fi

# Debian installs nginx in /usr/sbin, which is not on every user's PATH.
nginx_bin="$(command -v nginx 2>/dev/null || echo /usr/sbin/nginx)"
"$nginx_bin" -v 2>&1
