#!/usr/bin/env bash
# The dashboard in a real browser: Debian's headless Chromium and its WebDriver (chromium,
# chromium-driver; installed with apt when missing, which needs root as on CI machines), driven by
# Selenium (pinned below) from a virtual environment this script makes, against a freshly built
# demo server. Screenshots of each step go to $target/dashboard-screenshots. Fails loudly when the
# browser cannot be installed or started.
set -euo pipefail
cd "$(dirname "$0")/.."

SELENIUM_VERSION=4.51.0
target_dir=${CARGO_TARGET_DIR:-target}
venv="$target_dir/dashboard-venv"
shots="$target_dir/dashboard-screenshots"

if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "installing chromium and chromium-driver"
    if [ "$(id -u)" -ne 0 ]; then
        echo "chromium and chromium-driver are missing and installing them needs root: apt-get install -y chromium chromium-driver" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q chromium chromium-driver
fi
chromium --version
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
if ! "$venv/bin/python" -c "import importlib.metadata as m; assert m.version('selenium') == '$SELENIUM_VERSION'" >/dev/null 2>&1; then
    rm -rf "$venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q "selenium==$SELENIUM_VERSION"
fi

cargo build -q -p sitequest-demo
rm -rf "$shots"
CHROMIUM="$(command -v chromium)" CHROMEDRIVER="$(command -v chromedriver)" \
    "$venv/bin/python" adapters/demo/tests/dashboard/test_dashboard.py "$target_dir/debug/sitequest-demo" "$shots"
echo "screenshots in $shots"
