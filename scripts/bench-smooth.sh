#!/usr/bin/env bash
# Smooth at the origin (issue 9, acceptance 7): 10,000 visitors within 30 s, let in
# at 200 a second, each making three 5 ms requests at the origin. Baseline in the
# same run: the same origin with visitors arriving evenly at 200 a second straight
# at it (no queue: the smoothest stream this load generator makes). Pairs are
# interleaved. A third run per pair goes through a waitroom that gives the origin
# at most 20 requests at once (config/bench-smooth-capped.toml, origin.max_in_flight).
#   scripts/bench-smooth.sh [PAIRS] [USERS] [SECONDS]   (defaults: 3 10000 30)
# Release builds, each part a process of its own (origin-stub, waitroom with
# config/bench-smooth.toml, loadtest). Prints the origin's largest number of
# requests in flight for each run; reports in target/bench/smooth/.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
users=${2:-10000}
over=${3:-30}
out=target/bench/smooth
mkdir -p "$out"
cargo build --release -q -p waitroom -p origin-stub -p loadtest
bin=target/release
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
rm -rf target/bench-smooth-state
"$bin/origin-stub" --listen 127.0.0.1:18092 --capacity 200 --service-time-ms 5 >"$out/origin.log" 2>&1 &
pids+=($!)
RUST_LOG=warn "$bin/waitroom" --config config/bench-smooth.toml >"$out/waitroom.log" 2>&1 &
pids+=($!)
rm -rf target/bench-smooth-capped-state
RUST_LOG=warn "$bin/waitroom" --config config/bench-smooth-capped.toml >"$out/waitroom-capped.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:18091/readyz >/dev/null && curl -sf http://127.0.0.1:18094/readyz >/dev/null &&
    curl -sf http://127.0.0.1:18092/__stats >/dev/null && break
  sleep 0.2
done
summary() {
  python3 - "$1" "$2" <<'PY'
import json, sys
s = json.load(open(sys.argv[2]))
o = s["origin"]
print(f"{sys.argv[1]:>9}: arrivals {s['arrivals']}, lost {s['lost']}, "
      f"origin max in flight {o['max_in_flight']}, origin latency p50 {o['latency_ms']['p50']} ms "
      f"p99 {o['latency_ms']['p99']} ms, arrival lag p99 {s['arrival_lag_ms']['p99']:.1f} ms")
PY
}
for pair in $(seq "$pairs"); do
  # Straight at the origin, evenly at 200 a second.
  "$bin/loadtest" spike --target http://127.0.0.1:18092 \
    --users $((over * 200)) --over "$over" --profile uniform --report "$out/direct-$pair" \
    >"$out/direct-$pair.log" 2>&1
  summary direct "$out/direct-$pair/summary.json"
  # The crowd through waitroom (a fresh line each time: the room is emptied first).
  WAITROOM_ADMIN_TOKEN=bench-admin-token "$bin/loadtest" spike \
    --target http://127.0.0.1:18090 --origin http://127.0.0.1:18092 --admin http://127.0.0.1:18091 \
    --users "$users" --over "$over" --profile uniform --spread-addresses --report "$out/waitroom-$pair" \
    >"$out/waitroom-$pair.log" 2>&1
  summary waitroom "$out/waitroom-$pair/summary.json"
  # The same crowd through the waitroom that gives the origin at most 20 at once.
  WAITROOM_ADMIN_TOKEN=bench-admin-token "$bin/loadtest" spike \
    --target http://127.0.0.1:18093 --origin http://127.0.0.1:18092 --admin http://127.0.0.1:18094 \
    --users "$users" --over "$over" --profile uniform --spread-addresses --report "$out/capped-$pair" \
    >"$out/capped-$pair.log" 2>&1
  summary capped "$out/capped-$pair/summary.json"
done
