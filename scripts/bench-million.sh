#!/usr/bin/env bash
# A million queued visitors (issue 12): resident memory as the line grows and while
# everyone polls, and a poll at the back against one at the front.
#   scripts/bench-million.sh [VISITORS] [POLL_MINUTES] [POLL_INTERVAL_S]
#   (defaults: 1000000 10 120)
# waitroom (release build, memory mode, nobody let in, the per-client limits off)
# is filled by wrk with VISITORS newcomers, keeping their cookies; then every
# visitor polls /_waitroom/status once per POLL_INTERVAL_S for POLL_MINUTES, and the
# process's resident memory (VmRSS) is read every 30 s, and its highest (VmHWM) over
# the arrivals and over the polling is printed. Last, the status poll of the
# first and of the last in line are timed against each other (wrk -c16, A/B/A/B).
# Logs, cookies and the samples in target/bench/million/.
set -euo pipefail
cd "$(dirname "$0")/.."
visitors=${1:-1000000}
minutes=${2:-10}
interval=${3:-120}
out=$PWD/target/bench/million
rm -rf "$out" && mkdir -p "$out/state" "$out/cookies"
. scripts/lib/bench.sh
need bench-million wrk curl
cargo build --release -q -p waitroom
cat >"$out/waitroom.toml" <<TOML
[listen]
public = "127.0.0.1:18510"
admin = "127.0.0.1:18511"
[origin]
url = "http://127.0.0.1:18512"
[admission]
new_users_per_minute = 1
max_active_users = 1
session_duration = "1h"
[queue]
poll_max = "${interval}s"
abandon_after_polls = 10
[store]
state_dir = "$out/state"
[admin]
token = "bench-admin-token"
[clients]
places_per_minute = 0
[limits]
session_requests_per_second = 0
TOML
RUST_LOG=warn target/release/waitroom --config "$out/waitroom.toml" >"$out/waitroom.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
wait_ready http://127.0.0.1:18511/readyz
rss() { awk '/^VmRSS/ {print $2}' "/proc/$pid/status"; }
# The highest resident memory since the start or since the last reset_peak: what
# a 30-s sample misses (a save of the line builds a second one for a moment).
peak() { awk '/^VmHWM/ {print $2}' "/proc/$pid/status"; }
reset_peak() { echo 5 >"/proc/$pid/clear_refs"; }
issued() { curl -s -H "authorization: Bearer bench-admin-token" http://127.0.0.1:18511/admin/state | python3 -c 'import json,sys; print(json.load(sys.stdin)["places_issued"])'; }
echo "start: rss_kib=$(rss)" | tee "$out/samples.txt"

# Arrivals until VISITORS places are out.
# Each of wrk's two threads stops once it holds half of them: the line is then
# VISITORS long, and a few more (one request under way per connection at most).
wrk -t2 -c64 -d3600s -s scripts/lua/arrive.lua http://127.0.0.1:18510/ -- "$out/cookies" $(((visitors + 1) / 2)) >"$out/arrive.txt" 2>&1 &
wrk_pid=$!
started=$SECONDS
while [ "$(issued)" -lt "$visitors" ] && kill -0 $wrk_pid 2>/dev/null; do sleep 0.5; done
# wrk itself runs out its time unless told to stop.
kill -INT $wrk_pid 2>/dev/null || true
wait $wrk_pid || true
awk -v n="$visitors" 'NR <= n' "$out"/cookies/cookies-*.txt >"$out/cookies.txt"
have=$(wc -l <"$out/cookies.txt")
echo "arrived: places_issued=$(issued) cookies=$have seconds=$((SECONDS - started)) rss_kib=$(rss) peak_kib=$(peak)" | tee -a "$out/samples.txt"
reset_peak

# Everyone polls at the interval: connections / (delay + latency) = visitors / interval.
conns=100
delay=$(python3 -c "print(max(1, int($conns * $interval * 1000 / $have)))")
wrk -t2 -c$conns -d$((minutes * 60))s --latency -s scripts/lua/poll.lua http://127.0.0.1:18510/ -- "$out/cookies.txt" 2 "$delay" >"$out/poll.txt" 2>&1 &
wrk_pid=$!
for i in $(seq $((minutes * 2))); do
  sleep 30
  echo "polling $((i * 30))s: rss_kib=$(rss)" | tee -a "$out/samples.txt"
done
wait $wrk_pid || true
echo "polling: peak_kib=$(peak) (the highest while polling)" | tee -a "$out/samples.txt"
grep -E "Requests/sec|requests in|Non-2xx|99%" "$out/poll.txt" | tee -a "$out/samples.txt"

# The first and the last in line, one after the other, twice.
front=$(head -1 "$out/cookies.txt")
back=$(tail -1 "$out/cookies.txt")
for round in 1 2; do
  for who in front back; do
    c=$front; [ $who = back ] && c=$back
    wrk -t2 -c16 -d5s --latency -H "cookie: waitroom=$c" http://127.0.0.1:18510/_waitroom/status >"$out/$who-$round.txt"
    echo "$who $round: $(grep Requests/sec "$out/$who-$round.txt") p99 $(awk '/ 99%/ {print $2}' "$out/$who-$round.txt") position $(curl -s -H "cookie: waitroom=$c" http://127.0.0.1:18510/_waitroom/status | python3 -c 'import json,sys; print(json.load(sys.stdin)["position"])')" | tee -a "$out/samples.txt"
  done
done
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/samples.txt"
