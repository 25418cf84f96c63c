#!/usr/bin/env bash
# Runs the hot-path benches in a short mode and prints the ratio table of the README's
# performance section, computed from criterion's medians of this one run.
#   bash benches/report.sh            # short mode (about 2 minutes after the build)
#   MEASURE=10 bash benches/report.sh # longer measurement per bench, in seconds
#   LOAD=1 bash benches/report.sh     # and the adapter's load test (scripts/load.sh, needs wrk)
set -euo pipefail
cd "$(dirname "$0")/.."
MEASURE=${MEASURE:-3}
rm -rf target/criterion
cargo bench --bench hot_path -- --warm-up-time 1 --measurement-time "$MEASURE" --noplot
cargo bench --bench memory | tee target/memory.txt
python3 - <<'PY'
import json, pathlib, re

medians = {}
for bench in pathlib.Path("target/criterion").glob("**/new/benchmark.json"):
    meta = json.loads(bench.read_text())
    est = json.loads((bench.parent / "estimates.json").read_text())
    medians[meta["full_id"]] = est["median"]["point_estimate"]

def m(name):
    return medians[name]

mem = pathlib.Path("target/memory.txt").read_text()
per_record = float(re.search(r"([\d.]+) bytes per record", mem).group(1))
per_entry = float(re.search(r"([\d.]+) bytes per entry", mem).group(1))

FORGED = [
    "near_valid_bad_last_char",
    "near_valid_uppercase_last_char",
    "near_valid_non_utf8_last_byte",
    "near_valid_one_byte_long",
    "near_valid_one_byte_short",
    "near_valid_tab_after_scheme",
    "near_valid_test_prefix",
    "forged_mix",
]

rows = [
    ("authorize, 1,000 keys / SHA-256 of 32 bytes", m("authorize/authorize/1000") / m("authorize/sha256_32_bytes"), "<=", 1.3),
    ("authorize, 1,000,000 keys / SHA-256 of 32 bytes", m("authorize/authorize/1000000") / m("authorize/sha256_32_bytes"), "<=", 2.0),
    ("authorize, 1,000 keys / reference design, 1,000 keys", m("reference/core/1000") / m("reference/reference/1000"), "<=", 1.1),
    ("authorize, 1,000,000 keys / reference design, 1,000,000 keys", m("reference/core/1000000") / m("reference/reference/1000000"), "<=", 1.4),
] + [
    (f"(what stands in the way) reference{extra}, {n:,} keys / reference design", m(f"reference/reference{extra}/{n}") / m(f"reference/reference/{n}"), None, None)
    for n in (1000, 1000000)
    for extra in ("+shard_lock",)
] + [
    (f"(what stands in the way) authorize, {n:,} keys / reference+shard_lock", m(f"reference/core/{n}") / m(f"reference/reference+shard_lock/{n}"), None, None)
    for n in (1000, 1000000)
] + [
    ("limiter hot key / governor check_key hot key", m("limiter/ours/hot_key") / m("limiter/governor/hot_key"), "<=", 0.4),
    ("limiter 1,000,000 keys / governor check_key 1,000,000 keys", m("limiter/ours/1M_keys") / m("limiter/governor/1M_keys"), "<=", 0.4),
    ("malformed header rejection / SHA-256 of 32 bytes", m("reject/malformed_header") / m("reject/sha256_32_bytes"), "<=", 0.25),
] + [
    (f"forged header, {name.removeprefix('near_valid_').replace('_', ' ')} / SHA-256 of 32 bytes", m(f"reject/{name}") / m("reject/sha256_32_bytes"), "<=", 0.25)
    for name in FORGED
] + [
    ("address quota: AddressLimiter::check / SHA-256 of 32 bytes", m("address/limiter_check") / m("address/sha256_32_bytes"), "<=", 0.25),
    ("address quota: counted refusal (malformed header) with an address / SHA-256", m("address/malformed_with_address") / m("address/sha256_32_bytes"), "<=", 0.3),
    ("address quota: unknown key with an address / SHA-256", m("address/unknown_key_with_address") / m("address/sha256_32_bytes"), "<=", 2.0),
    ("(for comparison) malformed header without an address / SHA-256", m("address/malformed_without_address") / m("address/sha256_32_bytes"), None, None),
    ("(for comparison) unknown key without an address / SHA-256", m("address/unknown_key_without_address") / m("address/sha256_32_bytes"), None, None),
] + [
    ("2-thread / 1-thread authorize throughput on distinct keys", m("parallel/authorize_threads/1") / m("parallel/authorize_threads/2"), None, None),
    ("2-thread / 1-thread SHA-256 throughput (the machine's own scaling)", m("parallel/sha256_threads/1") / m("parallel/sha256_threads/2"), None, None),
    ("memory per stored key record (name bytes excluded), bytes", per_record, "<=", 128),
    ("memory per active limiter entry, bytes", per_entry, "<=", 48),
]
print()
print("| figure | measured | target | met |")
print("|---|---|---|---|")
for name, value, op, target in rows:
    if op is None:
        print(f"| {name} | {value:.2f} | (reported) | |")
        continue
    ok = value <= target if op == "<=" else value >= target
    print(f"| {name} | {value:.2f} | {op} {target} | {'yes' if ok else 'no'} |")
print()
print("medians (ns):")
for k in sorted(medians):
    print(f"  {k}: {medians[k]:.1f}")
PY
if [ "${LOAD:-0}" = 1 ]; then
    bash scripts/load.sh
fi
