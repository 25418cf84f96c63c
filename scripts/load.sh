#!/usr/bin/env bash
# The adapter's overhead under load. Target: a granted request through AuthLayer has at least
# 0.9 x the throughput of the same route without it.
#
# One server process (adapters/tower/examples/load_server.rs: axum on tokio's current-thread
# runtime) pinned to one core serves the same trivial handler as /plain (no layer),
# /plain-headers (no layer, the five rate-limit fields as fixed strings), /noop (a
# layer that does nothing, for axum's own cost of layering a route), /auth
# (AuthLayer over 1,000 keys with the spec's quota and a clock that opens a new window every 60
# requests, so every request is granted with the spec's header values), /auth-huge (the same
# with a quota of 4,294,967,295 a minute: ten-digit header values) and /auth401 (AuthLayer,
# every request a well-formed unknown key, refused after hashing it). wrk, pinned to the other core, loads each
# route in turn with the same Authorization field, in interleaved rounds (the order reversed
# every other round, so drift cancels), and the script prints the ratios of the medians as rows
# of the README's table.
#
#   bash scripts/load.sh                           # 3 rounds of 10 s per route, about 3 minutes
#   ROUNDS=5 DURATION=20s CONNECTIONS=64 bash scripts/load.sh
#   ROTATE=1 bash scripts/load.sh                  # cycle through 16 keys (a slower client)
#   SERVER_CPU=0 CLIENT_CPU=1 bash scripts/load.sh # the cores (the defaults)
#
# Needs wrk (installed with apt-get when missing and run as root), taskset and python3.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CONNECTIONS=${CONNECTIONS:-32}
SERVER_CPU=${SERVER_CPU:-0}
CLIENT_CPU=${CLIENT_CPU:-1}
ROTATE=${ROTATE:-0}
ROUTES=${ROUTES:-plain plain-headers noop auth auth-huge auth401}

fail() {
    echo "load.sh: $*" >&2
    exit 1
}

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "==> installing wrk"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null
    fi
    command -v wrk >/dev/null 2>&1 || fail "wrk is missing: install it (apt-get install wrk)"
fi
command -v taskset >/dev/null 2>&1 || fail "taskset is missing (package util-linux)"
command -v python3 >/dev/null 2>&1 || fail "python3 is missing"
[ "$(nproc --all)" -ge 2 ] || fail "needs two CPUs: the server and wrk run on different cores"
for route in plain auth; do
    case " $ROUTES " in
    *" $route "*) ;;
    *) fail "ROUTES must include plain and auth" ;;
    esac
done

echo "==> building the server (release)"
cargo build --release --quiet -p sitequest-auth-tower --example load_server
target_dir=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
server="$target_dir/release/examples/load_server"

work=$(mktemp -d)
pid=""
cleanup() {
    if [ -n "$pid" ]; then
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# taskset execs the server, so $! is the server's own pid.
taskset -c "$SERVER_CPU" "$server" --keys-out "$work/keys" >"$work/server.out" 2>"$work/server.err" &
pid=$!
url=""
for _ in $(seq 600); do
    url=$(sed -n 's/^listening on //p' "$work/server.out")
    [ -n "$url" ] && break
    kill -0 "$pid" 2>/dev/null || { cat "$work/server.err" >&2; fail "the server exited"; }
    sleep 0.1
done
[ -n "$url" ] || fail "the server did not start within 60 s"
echo "==> server on $url (core $SERVER_CPU), wrk on core $CLIENT_CPU: -t1 -c$CONNECTIONS -d$DURATION"

hz=$(getconf CLK_TCK)
# CPU time of the server process (all its threads), in clock ticks.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$pid/stat"
}

# One wrk run against a route; prints "requests/s server-CPU-% non-2xx-count".
load() {
    local route=$1 duration=$2 auth=valid out c0 c1 t0 t1 rps non2xx errors
    [ "$route" = auth401 ] && auth=unknown
    c0=$(cpu_ticks)
    t0=$(date +%s.%N)
    out=$(KEYS_FILE="$work/keys" AUTH="$auth" ROTATE="$ROTATE" \
        taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNECTIONS" -d"$duration" -s scripts/load.lua "$url/$route")
    t1=$(date +%s.%N)
    c1=$(cpu_ticks)
    rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
    non2xx=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' <<<"$out")
    errors=$(grep 'Socket errors:' <<<"$out" || true)
    [ -n "$rps" ] || { echo "$out" >&2; fail "no Requests/sec in wrk's output for /$route"; }
    [ -z "$errors" ] || echo "    /$route: $errors" >&2
    if [ "$route" = auth401 ]; then
        [ -n "$non2xx" ] || fail "/auth401 answered 2xx: the key was not refused"
    else
        [ -z "$non2xx" ] || fail "/$route answered $non2xx non-2xx responses: not every request was granted"
    fi
    echo "$rps $(python3 -c "print(round(($c1 - $c0) / $hz / ($t1 - $t0) * 100))") ${non2xx:-0}"
}

echo "==> warm-up ($WARMUP per route, not counted)"
for route in $ROUTES; do
    load "$route" "$WARMUP" >/dev/null
done

results="$work/results"
: >"$results"
read -r -a forward <<<"$ROUTES"
backward=()
for route in "${forward[@]}"; do
    backward=("$route" "${backward[@]}")
done
for round in $(seq "$ROUNDS"); do
    if [ $((round % 2)) -eq 1 ]; then
        order=("${forward[@]}")
    else
        order=("${backward[@]}")
    fi
    for route in "${order[@]}"; do
        line=$(load "$route" "$DURATION")
        echo "    round $round /$route: $line (requests/s, server CPU %, non-2xx)"
        echo "$round $route $line" >>"$results"
    done
done

python3 - "$results" <<'PY'
import statistics
import sys

runs = {}
for line in open(sys.argv[1]):
    rnd, route, rps, cpu, _ = line.split()
    runs.setdefault(route, {})[int(rnd)] = (float(rps), float(cpu))

def median_rps(route):
    return statistics.median(r for r, _ in runs[route].values())

def paired(route, base="plain"):
    # Per-round ratio against the base of the same round, then the median: drift between rounds
    # (the machine is shared) cancels.
    return statistics.median(runs[route][n][0] / runs[base][n][0] for n in runs[route])

rows = [("granted request through AuthLayer / same route without it, requests/s", "auth", "plain", 0.9)]
if "auth-huge" in runs:
    rows.append(("granted request, ten-digit header values (quota 4,294,967,295/min) / same route without it, requests/s", "auth-huge", "plain", None))
if "plain-headers" in runs:
    rows.append(("no layer, the five rate-limit fields sent as fixed strings / same route without them, requests/s", "plain-headers", "plain", None))
    rows.append(("granted request through AuthLayer / same route sending the same five headers as fixed strings, requests/s", "auth", "plain-headers", None))
if "noop" in runs:
    rows.append(("granted request through AuthLayer / same route with a do-nothing layer, requests/s", "auth", "noop", None))
if "auth401" in runs:
    rows.append(("refused request (401, unknown key) through AuthLayer / route without it, requests/s", "auth401", "plain", None))

print()
print("| figure | measured | target | met |")
print("|---|---|---|---|")
for name, route, base, target in rows:
    value = paired(route, base)
    if target is None:
        print(f"| {name} | {value:.2f} | (none) | |")
    else:
        ok = value >= target
        print(f"| {name} | {value:.2f} | >= {target} | {'yes' if ok else 'no'} |")
print()
print(f"each figure is the median over {len(runs['plain'])} rounds of the ratio within a round; "
      "ratio of the medians instead:",
      ", ".join(f"/{r} {median_rps(r) / median_rps('plain'):.3f}" for r in runs if r != "plain"))
for route in runs:
    rps = [r for r, _ in runs[route].values()]
    cpu = [c for _, c in runs[route].values()]
    print(f"/{route}: median {median_rps(route):,.0f} requests/s (min {min(rps):,.0f}, max {max(rps):,.0f}), "
          f"server CPU {statistics.median(cpu):.0f} %")
plain_cpu = statistics.median(c for _, c in runs["plain"].values())
if plain_cpu < 90:
    print(f"warning: the server used {plain_cpu:.0f} % of its core on /plain, so wrk, not the server, "
          "set the pace and the ratio understates the layer's cost: raise CONNECTIONS, or check "
          "that nothing else runs on the cores", file=sys.stderr)
PY
