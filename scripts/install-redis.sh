#!/usr/bin/env bash
# Makes sure `redis-server` is on PATH, installing Debian's package if it is missing (needs root,
# as on CI machines). Fails loudly if it cannot.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh
if ! command -v redis-server >/dev/null 2>&1; then
    need "command -v redis-server" redis-server
    # The tests start their own servers; the packaged service is not needed.
    (service redis-server stop || true) >/dev/null 2>&1
fi
