# Shared by the test scripts (sourced, not run): Debian packages installed when missing, and
# Python virtual environments with one pinned package.

# need CHECK PACKAGE...: runs the shell command CHECK; when it fails, installs the Debian
# PACKAGEs with apt (which needs root, as on CI machines), failing loudly when it cannot.
need() {
    local check=$1
    shift
    if bash -c "$check" >/dev/null 2>&1; then
        return 0
    fi
    echo "installing $*"
    if [ "$(id -u)" -ne 0 ]; then
        echo "$* missing, and installing needs root: apt-get install -y $*" >&2
        exit 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "$@"
    bash -c "$check" >/dev/null 2>&1 || { echo "$* installed, but '$check' still fails" >&2; exit 1; }
}

# The official MCP Python SDK the tests drive the server with (test-mcp.sh, test-dashboard.sh).
MCP_SDK_VERSION=2.3.0

# venv DIR PACKAGE VERSION [PACKAGE VERSION...]: makes DIR a virtual environment holding each
# PACKAGE==VERSION (kept when it already does).
venv() {
    local dir=$1
    shift
    need "python3 -c 'import venv, ensurepip'" python3 python3-venv
    local check="import importlib.metadata as m" pins=()
    while [ $# -gt 0 ]; do
        check+="; assert m.version('$1') == '$2'"
        pins+=("$1==$2")
        shift 2
    done
    if ! "$dir/bin/python" -c "$check" >/dev/null 2>&1; then
        rm -rf "$dir"
        python3 -m venv "$dir"
        "$dir/bin/pip" install -q "${pins[@]}"
    fi
}
