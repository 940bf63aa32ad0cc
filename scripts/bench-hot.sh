#!/usr/bin/env bash
# The hot paths against nginx doing the same job (issue 12), side by side in one run.
#   scripts/bench-hot.sh [PAIRS] [SECONDS] [CONNECTIONS]   (defaults: 3 10 64)
#   BENCH_PATHS="forwarded poll" scripts/bench-hot.sh ...     (only these paths)
#   WAITROOM_BIN=DIR scripts/bench-hot.sh ...                (another build of waitroom)
# A fast static origin (nginx, 1 worker, a 1 KiB page) behind both:
#   forwarded  an admitted visitor's request      vs nginx proxy_pass, keep-alive upstream,
#                                                    setting X-Forwarded-For/-Proto/-Host as waitroom does
#   poll       a queued visitor's status poll     vs nginx `return 200` with the same JSON
#   newcomer   place + signed token + queue page  vs nginx static page of that size + Set-Cookie
# waitroom (release build, memory mode, per-client and per-session limits off) and the
# baseline nginx (2 workers: waitroom's runtime has a thread per core) run at the same
# time; wrk -t2 runs alternate A/B per pair. Prints the median requests a second, p99
# and CPU per request (the server's user+system time over the requests it answered) of
# each, and the ratio waitroom / nginx. Logs and configs in target/bench/hot/.
set -euo pipefail
cd "$(dirname "$0")/.."
pairs=${1:-3}
secs=${2:-10}
conns=${3:-64}
paths=${BENCH_PATHS:-forwarded poll newcomer}
out=$PWD/target/bench/hot
rm -rf "$out" && mkdir -p "$out/www" "$out/state"
. scripts/lib/bench.sh
need bench-hot nginx wrk curl
for port in 18310 18311 18320; do
  # A waitroom left running there would hand its line (and whoever holds its
  # capacity) over to this one: the admitted visitor below would be queued.
  if curl -s -o /dev/null "http://127.0.0.1:$port/"; then
    echo "bench-hot: something already listens on 127.0.0.1:$port; stop it first" >&2
    exit 1
  fi
done
cargo build --release -q -p waitroom
bin=${WAITROOM_BIN:-target/release}
pids=()
cleanup() {
  [ -f "$out/origin.pid" ] && kill "$(cat "$out/origin.pid")" 2>/dev/null || true
  [ -f "$out/baseline.pid" ] && kill "$(cat "$out/baseline.pid")" 2>/dev/null || true
  kill "${pids[@]}" 2>/dev/null || true
  # Gone before the next run starts: a waitroom still draining would hand it its line.
  wait "${pids[@]}" 2>/dev/null || true
}
trap cleanup EXIT

head -c 1024 /dev/zero | tr '\0' 'x' >"$out/www/index.html"
nginx_conf origin 1 18300 "location / { root $out/www; }"

cat >"$out/waitroom.toml" <<TOML
[listen]
public = "127.0.0.1:18310"
admin = "127.0.0.1:18311"
[origin]
url = "http://127.0.0.1:18300"
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
RUST_LOG=warn "$bin/waitroom" --config "$out/waitroom.toml" >"$out/waitroom.log" 2>&1 &
pids+=($!)
wr_pid=$!
wait_ready http://127.0.0.1:18311/readyz

# The one admitted visitor (capacity 1), then a queued one behind them.
admitted=$(waitroom_cookie http://127.0.0.1:18310/ "$out/admitted.html")
queued=$(waitroom_cookie http://127.0.0.1:18310/ "$out/queued.html")
curl -s -H "cookie: waitroom=$queued" http://127.0.0.1:18310/_waitroom/status >"$out/status.json"
grep -q '^xxxxxxxx' "$out/admitted.html" || { echo "bench-hot: the first visitor was not let in" >&2; exit 1; }
grep -q '"state":"queued"' "$out/status.json" || { echo "bench-hot: no queued visitor: $(cat "$out/status.json")" >&2; exit 1; }
page_bytes=$(curl -s http://127.0.0.1:18310/ | wc -c)
head -c "$page_bytes" /dev/zero | tr '\0' 'y' >"$out/www/newcomer.html"
json=$(cat "$out/status.json")
nginx_conf baseline 2 18320 "
    location = /_waitroom/status { default_type application/json; return 200 '$json'; }
    location = /newcomer { root $out/www; try_files /newcomer.html =404;
      add_header Set-Cookie 'waitroom=eyJhbGciOiJFZERTQSJ9.placeholder; Path=/; Max-Age=3600; HttpOnly; SameSite=Lax'; }
    location / { proxy_pass http://origin_pool; proxy_http_version 1.1; proxy_set_header Connection '';
      proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
      proxy_set_header X-Forwarded-Proto \$scheme; proxy_set_header X-Forwarded-Host \$http_host; }" \
  "upstream origin_pool { server 127.0.0.1:18300; keepalive 64; }"
sleep 0.5

nginx_pids() { echo "$(cat "$out/baseline.pid") $(pgrep -P "$(cat "$out/baseline.pid")" | tr '\n' ' ')"; }

run() { # label url cookie pids...
  local label=$1 url=$2 cookie=$3; shift 3
  local before after
  before=$(cpu "$@")
  if [ -n "$cookie" ]; then
    wrk -t2 -c"$conns" -d"${secs}s" --latency -H "cookie: waitroom=$cookie" "$url" >"$out/$label.txt"
  else
    wrk -t2 -c"$conns" -d"${secs}s" --latency "$url" >"$out/$label.txt"
  fi
  after=$(cpu "$@")
  echo "cpu_ticks $((after - before))" >>"$out/$label.txt"
}

for pair in $(seq "$pairs"); do
  for path in $paths; do
    case $path in
      # nginx is sent the same request, the cookie too (it passes it on to the origin).
      forwarded) wr=(/ "$admitted"); ng=(/ "$admitted") ;;
      poll) wr=(/_waitroom/status "$queued"); ng=(/_waitroom/status "$queued") ;;
      newcomer) wr=(/ ""); ng=(/newcomer "") ;;
    esac
    run "waitroom-$path-$pair" "http://127.0.0.1:18310${wr[0]}" "${wr[1]}" "$wr_pid"
    # shellcheck disable=SC2046
    run "nginx-$path-$pair" "http://127.0.0.1:18320${ng[0]}" "${ng[1]}" $(nginx_pids)
  done
done

python3 - "$out" "$pairs" "$(getconf CLK_TCK)" "$conns" "$paths" <<'PY'
import re, statistics, sys
out, pairs, tck, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
def read(name):
    t = open(f"{out}/{name}.txt").read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
    total = int(re.search(r"(\d+) requests in", t).group(1))
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", t)
    p99 = float(p99.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[p99.group(2)]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
    cpu_us = int(re.search(r"cpu_ticks (\d+)", t).group(1)) / tck / max(total, 1) * 1e6
    return rps, p99, cpu_us, int(bad.group(1)) if bad else 0
print(f"wrk -t2 -c{conns}, median of {pairs} interleaved pairs; load average now: {open('/proc/loadavg').read().split()[0]}")
print(f"| path | waitroom req/s | p99 ms | CPU µs/req | nginx req/s | p99 ms | CPU µs/req | ratio req/s | ratio CPU | pair by pair |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
for path in sys.argv[5].split():
    w = [read(f"waitroom-{path}-{i}") for i in range(1, pairs + 1)]
    n = [read(f"nginx-{path}-{i}") for i in range(1, pairs + 1)]
    med = lambda xs, k: statistics.median(x[k] for x in xs)
    bad = sum(x[3] for x in w + n)
    print(f"| {path} | {med(w,0):,.0f} | {med(w,1):.1f} | {med(w,2):.0f} | {med(n,0):,.0f} | {med(n,1):.1f} | {med(n,2):.0f} "
          f"| {med(w,0)/med(n,0):.2f} | {med(w,2)/max(med(n,2),0.001):.1f}× "
          f"| {' '.join(f'{a[0]/b[0]:.2f}' for a, b in zip(w, n))} |" + (f" ({bad} non-2xx!)" if bad else ""))
PY
