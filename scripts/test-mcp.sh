#!/usr/bin/env bash
# The MCP endpoint against a client we did not write: the official Python SDK (`mcp` on PyPI,
# pinned below) in a virtual environment this script makes, driving a freshly built demo server.
# Installs python3-venv with apt when it is missing (needs root, as on CI machines); fails loudly
# when Python, the SDK or the server cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."

MCP_SDK_VERSION=2.3.0
target_dir=${CARGO_TARGET_DIR:-target}
venv="$target_dir/mcp-venv"

if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "installing python3-venv"
    if [ "$(id -u)" -ne 0 ]; then
        echo "python3-venv is missing and installing it needs root: apt-get install -y python3-venv" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q python3 python3-venv
fi
if ! "$venv/bin/python" -c "import mcp, importlib.metadata as m; assert m.version('mcp') == '$MCP_SDK_VERSION'" >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "mcp==$MCP_SDK_VERSION"
fi
"$venv/bin/python" -c "import importlib.metadata as m; print('mcp SDK', m.version('mcp'))"

cargo build -q -p sitequest-demo
"$venv/bin/python" adapters/demo/tests/mcp/test_mcp.py "$target_dir/debug/sitequest-demo"
