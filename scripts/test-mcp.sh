#!/usr/bin/env bash
# The MCP endpoint against a client we did not write: the official Python SDK (`mcp` on PyPI,
# pinned in lib.sh) in a virtual environment this script makes, driving a freshly built demo server.
# Installs python3-venv with apt when it is missing (needs root, as on CI machines); fails loudly
# when Python, the SDK or the server cannot be had.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

target_dir=${CARGO_TARGET_DIR:-target}
venv="$target_dir/mcp-venv"

venv "$venv" mcp "$MCP_SDK_VERSION"
"$venv/bin/python" -c "import importlib.metadata as m; print('mcp SDK', m.version('mcp'))"

cargo build -q -p sitequest-demo
"$venv/bin/python" adapters/demo/tests/mcp/test_mcp.py "$target_dir/debug/sitequest-demo"
