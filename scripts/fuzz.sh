#!/usr/bin/env bash
# Runs every fuzz target for a bounded time and fails on any crash, hang or leak.
#   bash scripts/fuzz.sh            # 45 seconds per target (what CI runs)
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh
#   FUZZ_SECONDS=600 bash scripts/fuzz.sh authorize limiter_diff   # some targets only
# Needs the nightly toolchain (`rustup run nightly`); installs cargo-fuzz if it is absent.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

CARGO_FUZZ_VERSION=0.13.1
SECONDS_PER_TARGET=${FUZZ_SECONDS:-45}

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: installing the nightly toolchain"
    rustup toolchain install nightly --profile minimal
fi
if ! cargo fuzz --version 2>/dev/null | grep -q "$CARGO_FUZZ_VERSION"; then
    echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi

cargo +nightly fuzz build
for t in "${targets[@]}"; do
    # New inputs go to a scratch corpus; the committed seeds are read only.
    work="target/corpus/$t"
    mkdir -p "$work"
    echo "==> fuzz $t for ${SECONDS_PER_TARGET}s"
    cargo +nightly fuzz run "$t" "$work" "corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=10 -rss_limit_mb=2048 -max_len=4096 \
        -print_final_stats=1 2>&1 | grep -v -E '^#[0-9]+\s+(NEW|REDUCE|pulse)' | tail -n 40
done
echo "fuzz: all targets ran clean"
