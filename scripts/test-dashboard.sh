#!/usr/bin/env bash
# The dashboard in a real browser: Debian's headless Chromium and its WebDriver (chromium,
# chromium-driver; installed with apt when missing, which needs root as on CI machines), driven by
# Selenium (pinned below) from a virtual environment this script makes, against a freshly built
# demo server; then OAuth for MCP clients end to end, the official MCP Python SDK's OAuth client
# (pinned in lib.sh) with the person's approval given in the same browser. Screenshots of each step go to $target/dashboard-screenshots. Fails loudly when the
# browser cannot be installed or started.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SELENIUM_VERSION=4.51.0
target_dir=${CARGO_TARGET_DIR:-target}
venv="$target_dir/dashboard-venv"
shots="$target_dir/dashboard-screenshots"

need "command -v chromium && command -v chromedriver" chromium chromium-driver
chromium --version 2>/dev/null
venv "$venv" selenium "$SELENIUM_VERSION" mcp "$MCP_SDK_VERSION"

cargo build -q -p sitequest-demo
rm -rf "$shots"
CHROMIUM="$(command -v chromium)" CHROMEDRIVER="$(command -v chromedriver)" \
    "$venv/bin/python" adapters/demo/tests/dashboard/test_dashboard.py "$target_dir/debug/sitequest-demo" "$shots"
CHROMIUM="$(command -v chromium)" CHROMEDRIVER="$(command -v chromedriver)" \
    "$venv/bin/python" adapters/demo/tests/dashboard/test_oauth.py "$target_dir/debug/sitequest-demo" "$shots"
echo "screenshots in $shots"
