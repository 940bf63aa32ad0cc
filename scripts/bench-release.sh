#!/usr/bin/env bash
# What `waitroom-command: release` does to the wait when capacity binds: the same
# spike through waitroom (config/bench-capacity.toml: 500 sessions of 20 s) against
# origin-stub without and with --release-after-register, one run after the other.
#   scripts/bench-release.sh [USERS] [SECONDS]   (defaults: 3000 30)
# Writes target/bench/release/{plain,release}/summary.json and prints a table.
set -euo pipefail
cd "$(dirname "$0")/.."
users=${1:-3000}
over=${2:-30}
out=target/bench/release
mkdir -p "$out"
cargo build --release -q -p waitroom -p origin-stub -p loadtest
bin=target/release
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait "${pids[@]}" 2>/dev/null || true; pids=(); }
trap cleanup EXIT
run() {
  local name=$1
  shift
  rm -rf target/bench-state-capacity
  "$bin/origin-stub" --listen 127.0.0.1:18082 --capacity 50 --service-time-ms 50 "$@" >"$out/origin-$name.log" 2>&1 &
  pids+=($!)
  RUST_LOG=warn "$bin/waitroom" --config config/bench-capacity.toml >"$out/waitroom-$name.log" 2>&1 &
  pids+=($!)
  for _ in $(seq 50); do
    curl -sf http://127.0.0.1:18081/readyz >/dev/null && curl -sf http://127.0.0.1:18082/__stats >/dev/null && break
    sleep 0.2
  done
  WAITROOM_ADMIN_TOKEN=bench-admin-token "$bin/loadtest" spike \
    --target http://127.0.0.1:18080 --origin http://127.0.0.1:18082 --admin http://127.0.0.1:18081 \
    --users "$users" --over "$over" --profile spike --spread-addresses --report "$out/$name" >"$out/loadtest-$name.log" 2>&1
  cleanup
}
run plain
run release --release-after-register
python3 - "$out" <<'PY'
import json, sys
out = sys.argv[1]
rows = [("origin-stub", "plain", "with --release-after-register")]
s = {n: json.load(open(f"{out}/{n}/summary.json")) for n in ("plain", "release")}
def get(d, *path):
    for p in path:
        d = d.get(p) if isinstance(d, dict) else None
    return d
for label, path in [
    ("registrations completed", ("registrations_completed",)),
    ("lost", ("lost",)),
    ("wait p50 (s)", ("queue_wait_s", "p50")),
    ("wait p90 (s)", ("queue_wait_s", "p90")),
    ("wait max (s)", ("queue_wait_s", "max")),
    ("admissions a second", ("admission_rate_per_s",)),
    ("run length (s)", ("duration_s",)),
]:
    a, b = get(s["plain"], *path), get(s["release"], *path)
    fmt = lambda v: f"{v:,.1f}" if isinstance(v, float) else str(v)
    rows.append((label, fmt(a), fmt(b)))
for r in rows:
    print(f"| {r[0]} | {r[1]} | {r[2]} |")
PY
