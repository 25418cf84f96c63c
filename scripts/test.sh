#!/usr/bin/env bash
# The whole test suite: formatting, lints, every test of the workspace (doctests included).
# Run from anywhere; needs a Rust toolchain and installs the rest (redis-server, cargo-fuzz).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all --check
cargo fmt --manifest-path fuzz/Cargo.toml --check

step "cargo clippy --all-targets -- -D warnings"
cargo clippy --workspace --all-targets --all-features -- -D warnings
# What hosts without the optional features build: the core alone, the tower layer without axum.
cargo clippy -p sitequest-auth --all-targets --no-default-features -- -D warnings
cargo clippy -p sitequest-auth-tower --no-default-features -- -D warnings

step "cargo doc (every intra-doc link resolves)"
RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links" cargo doc --workspace --no-deps --all-features --quiet
RUSTDOCFLAGS="-D rustdoc::broken_intra_doc_links" cargo doc -p sitequest-auth --no-deps --quiet

step "backends depend on core only (no axum or tower in the Redis backend)"
if cargo tree -p sitequest-auth-redis -e normal --prefix none | grep -E '^(axum|tower|sitequest-auth-tower) '; then
    echo "sitequest-auth-redis must depend on sitequest-auth alone, not on an HTTP adapter" >&2
    exit 1
fi
step "the secret scanning crate is sans-IO: no runtime, no HTTP framework"
if cargo tree -p sitequest-auth-secret-scanning -e normal --prefix none | grep -E '^(tokio|axum|axum-core|tower|actix-web|hyper|sitequest-auth-tower) '; then
    echo "sitequest-auth-secret-scanning must not depend on a runtime or an HTTP framework" >&2
    exit 1
fi
step "each framework adapter depends on core, not on another adapter"
if cargo tree -p sitequest-auth-actix -e normal --prefix none | grep -E '^(axum|axum-core|tower|sitequest-auth-tower) '; then
    echo "sitequest-auth-actix must not depend on the tower adapter or axum" >&2
    exit 1
fi
if cargo tree -p sitequest-auth-tower -e normal --prefix none | grep -E '^(actix-web|sitequest-auth-actix) '; then
    echo "sitequest-auth-tower must not depend on the actix adapter" >&2
    exit 1
fi

step "redis-server for the Redis backend's tests"
bash scripts/install-redis.sh
redis-server --version

step "cargo test"
cargo test --workspace --all-features

step "the MCP endpoint with the official Python SDK"
bash scripts/test-mcp.sh

step "the dashboard in a real browser (headless Chromium over WebDriver)"
bash scripts/test-dashboard.sh

step "cargo test (core, default features)"
cargo test -p sitequest-auth --no-default-features

step "cargo bench --no-run (the benches compile; they are not timed here)"
cargo bench --workspace --no-run

step "fuzz every target for ${FUZZ_SECONDS:-45}s"
bash scripts/fuzz.sh

echo
echo "all checks passed"
