#!/usr/bin/env bash
# Makes sure `redis-server` is on PATH, installing Debian's package if it is missing (needs root,
# as on CI machines). Fails loudly if it cannot.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
echo "installing redis-server"
if [ "$(id -u)" -ne 0 ]; then
    echo "redis-server is missing and installing it needs root: apt-get install -y redis-server" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q redis-server
# The tests start their own servers; the packaged service is not needed.
(service redis-server stop || true) >/dev/null 2>&1
command -v redis-server >/dev/null
