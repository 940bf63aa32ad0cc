#!/usr/bin/env bash
# The launch-night spike, straight at the origin and through waitroom, side by side.
#   scripts/bench-compare.sh [USERS] [SECONDS] [PROFILE]   (defaults: 25000 60 spike)
# Starts origin-stub and waitroom (release builds, config/bench.toml), runs
# `loadtest compare`, writes target/bench/compare/{summary.json,report.html}.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-25000}
over=${2:-60}
profile=${3:-spike}
out=target/bench/compare
mkdir -p "$out"
cargo build --release -q -p waitroom -p origin-stub -p loadtest
bin=target/release
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT
"$bin/origin-stub" --listen 127.0.0.1:18082 --capacity 50 --service-time-ms 50 >"$out/origin.log" 2>&1 &
pids+=($!)
RUST_LOG=warn "$bin/waitroom" --config config/bench.toml >"$out/waitroom.log" 2>&1 &
pids+=($!)
for _ in $(seq 50); do
  curl -sf http://127.0.0.1:18081/readyz >/dev/null && curl -sf http://127.0.0.1:18082/__stats >/dev/null && break
  sleep 0.2
done
echo "command: loadtest compare --origin http://127.0.0.1:18082 --proxy http://127.0.0.1:18080 --admin http://127.0.0.1:18081 --users $users --over $over --profile $profile --spread-addresses --report $out"
WAITROOM_ADMIN_TOKEN=bench-admin-token "$bin/loadtest" compare \
  --origin http://127.0.0.1:18082 --proxy http://127.0.0.1:18080 --admin http://127.0.0.1:18081 \
  --users "$users" --over "$over" --profile "$profile" --spread-addresses --report "$out"
