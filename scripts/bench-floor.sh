#!/usr/bin/env bash
# How far hyper can carry the admitted visitor's path (issue 12): four proxies in front
# of the same fast static origin (nginx, 1 worker, a 1 KiB page), run in turn, A/B/C/D
# per round:
#   nginx      proxy_pass, keep-alive upstream, 2 workers (the baseline)
#   rawfloor   a hand-written HTTP/1 relay with no admission (bench/floor)
#   hyperfloor hyper's server and pooled client with no admission (bench/floor)
#   waitroom   an admitted visitor's requests (release build, memory mode, limits off)
#   scripts/bench-floor.sh [ROUNDS] [SECONDS] [CONNECTIONS]   (defaults: 3 8 64)
# Prints the median requests a second, p99 and CPU per request of each and the ratio to
# nginx. Logs and configs in target/bench/floor/.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-8}
conns=${3:-64}
out=$PWD/target/bench/floor
rm -rf "$out" && mkdir -p "$out/www" "$out/state"
. scripts/lib/bench.sh
need bench-floor nginx wrk curl
cargo build --release -q -p waitroom
cargo build --release -q --manifest-path bench/floor/Cargo.toml --target-dir target/floor
pids=()
cleanup() {
  for f in origin baseline; do [ -f "$out/$f.pid" ] && kill "$(cat "$out/$f.pid")" 2>/dev/null; done
  kill "${pids[@]}" 2>/dev/null || true
}
trap cleanup EXIT

head -c 1024 /dev/zero | tr '\0' 'x' >"$out/www/index.html"
nginx_conf origin 1 18400 "location / { root $out/www; }"
nginx_conf baseline 2 18401 \
  "location / { proxy_pass http://origin_pool; proxy_http_version 1.1; proxy_set_header Connection ''; }" \
  "upstream origin_pool { server 127.0.0.1:18400; keepalive 64; }"
target/floor/release/rawfloor 127.0.0.1:18402 127.0.0.1:18400 & pids+=($!); raw=$!
target/floor/release/hyperfloor 127.0.0.1:18403 127.0.0.1:18400 & pids+=($!); hyp=$!
cat >"$out/waitroom.toml" <<TOML
[listen]
public = "127.0.0.1:18404"
admin = "127.0.0.1:18405"
[origin]
url = "http://127.0.0.1:18400"
[admission]
new_users_per_minute = 6000000
max_active_users = 1
session_duration = "1h"
[store]
state_dir = "$out/state"
[admin]
token = "bench-admin-token"
[clients]
places_per_minute = 0
[limits]
session_requests_per_second = 0
TOML
RUST_LOG=warn target/release/waitroom --config "$out/waitroom.toml" >"$out/waitroom.log" 2>&1 & pids+=($!); wr=$!
wait_ready http://127.0.0.1:18405/readyz
cookie=$(waitroom_cookie http://127.0.0.1:18404/)
[ -n "$cookie" ] || { echo "bench-floor: waitroom gave no cookie" >&2; exit 1; }

run() { # label port pids...
  local label=$1 port=$2; shift 2
  local before; before=$(cpu "$@")
  # Every proxy gets the same request, the admitted visitor's cookie included.
  wrk -t2 -c"$conns" -d"${secs}s" --latency -H "cookie: waitroom=$cookie" "http://127.0.0.1:$port/" >"$out/$label.txt"
  echo "cpu_ticks $(( $(cpu "$@") - before ))" >>"$out/$label.txt"
}
for round in $(seq "$rounds"); do
  # shellcheck disable=SC2046
  run "nginx-$round" 18401 $(cat "$out/baseline.pid") $(pgrep -P "$(cat "$out/baseline.pid")" | tr '\n' ' ')
  run "rawfloor-$round" 18402 "$raw"
  run "hyperfloor-$round" 18403 "$hyp"
  run "waitroom-$round" 18404 "$wr"
done

python3 - "$out" "$rounds" "$(getconf CLK_TCK)" "$conns" <<'PY'
import re, statistics, sys
out, rounds, tck, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def read(name):
    t = open(f"{out}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    total = int(re.search(r"(\d+) requests in", t).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
    p99 = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    cpu = int(re.search(r"cpu_ticks (\d+)", t).group(1)) / tck / max(total, 1) * 1e6
    return rps, p99, cpu, int(bad.group(1)) if bad else 0
rows = {n: [read(f"{n}-{i}") for i in range(1, rounds + 1)] for n in ["nginx", "rawfloor", "hyperfloor", "waitroom"]}
med = lambda n, k: statistics.median(x[k] for x in rows[n])
print(f"wrk -t2 -c{conns}, median of {rounds} rounds; load average now: {open('/proc/loadavg').read().split()[0]}")
print("| proxy | req/s | p99 ms | CPU µs/req | ratio req/s | ratio CPU |")
print("|---|---:|---:|---:|---:|---:|")
for n in rows:
    bad = sum(x[3] for x in rows[n])
    print(f"| {n} | {med(n,0):,.0f} | {med(n,1):.1f} | {med(n,2):.0f} | {med(n,0)/med('nginx',0):.2f} | {med(n,2)/max(med('nginx',2),0.001):.1f}× |"
          + (f" ({bad} non-2xx!)" if bad else ""))
PY
