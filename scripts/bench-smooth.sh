#!/usr/bin/env bash
# Smooth at the origin: 10,000 visitors within 30 s, let in at 200 a second, each
# making three 5 ms requests at the origin (issue 9, acceptance 7).
#   scripts/bench-smooth.sh [USERS] [SECONDS]   (defaults: 10000 30)
# Release builds, each part a process of its own (origin-stub, waitroom with
# config/bench-smooth.toml, loadtest); writes target/bench/smooth/{summary.json,report.html}
# and prints the origin's largest number of requests in flight.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-10000}
over=${2:-30}
out=target/bench/smooth
mkdir -p "$out"
rm -rf target/bench-smooth-state
cargo build --release -q -p waitroom -p origin-stub -p loadtest
bin=target/release
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
"$bin/origin-stub" --listen 127.0.0.1:18092 --capacity 200 --service-time-ms 5 >"$out/origin.log" 2>&1 &
pids+=($!)
RUST_LOG=warn "$bin/waitroom" --config config/bench-smooth.toml >"$out/waitroom.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:18091/readyz >/dev/null && curl -sf http://127.0.0.1:18092/__stats >/dev/null && break
  sleep 0.2
done
WAITROOM_ADMIN_TOKEN=bench-admin-token "$bin/loadtest" spike \
  --target http://127.0.0.1:18090 --origin http://127.0.0.1:18092 --admin http://127.0.0.1:18091 \
  --users "$users" --over "$over" --profile uniform --report "$out" >"$out/loadtest.log" 2>&1
python3 - "$out/summary.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
run = next(iter(s.values())) if "origin" not in s else s
o = run["origin"]
print(f"arrivals {run['arrivals']}, lost {run['lost']}, admitted {run['admission_rate_per_s']:.1f}/s, "
      f"origin max in flight {o['max_in_flight']}, latency p50 {o['latency_ms']['p50']} ms p99 {o['latency_ms']['p99']} ms")
PY
