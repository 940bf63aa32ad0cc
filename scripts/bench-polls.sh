#!/usr/bin/env bash
# Status polls in Redis mode against memory mode, and Redis commands per poll.
#   scripts/bench-polls.sh [VISITORS] [SECONDS] [ROUNDS]   (defaults: 2000 15 2)
# Starts origin-stub, a redis-server of its own, waitroom in memory mode and in Redis
# mode (release builds), pauses both so that VISITORS wait in each line, then has wrk
# poll /_waitroom/status with their cookies, alternating memory and Redis ROUNDS
# times. Redis commands are read from INFO commandstats around each Redis round.
set -euo pipefail
cd "$(dirname "$0")/.."
visitors=${1:-2000}
seconds=${2:-15}
rounds=${3:-2}
out=target/bench/polls
mkdir -p "$out"
command -v wrk >/dev/null || { echo "bench-polls: wrk is needed (apt-get install wrk)" >&2; exit 1; }
cargo build --release -q -p waitroom -p origin-stub
bin=target/release
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; }
trap cleanup EXIT

redis-server --port 16390 --bind 127.0.0.1 --save "" --appendonly no >"$out/redis.log" 2>&1 &
pids+=($!)
"$bin/origin-stub" --listen 127.0.0.1:16392 >"$out/origin.log" 2>&1 &
pids+=($!)
for mode in memory redis; do
  if [ $mode = memory ]; then port=16380; store="state_dir = \"$out/state\""; else port=16384; store=$'kind = "redis"\nurl = "redis://127.0.0.1:16390"\nroom = "bench"'; fi
  rm -rf "$out/state" && mkdir -p "$out/state"
  cat >"$out/$mode.toml" <<TOML
[listen]
public = "127.0.0.1:$port"
admin  = "127.0.0.1:$((port + 1))"
[origin]
url = "http://127.0.0.1:16392"
[admission]
new_users_per_minute = 600
[store]
$store
[admin]
token = "bench-admin-token"
[clients]
places_per_minute = 0   # wrk asks from one address for many newcomers
TOML
  RUST_LOG=warn "$bin/waitroom" --config "$out/$mode.toml" >"$out/$mode.log" 2>&1 &
  pids+=($!)
done
for port in 16381 16385; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/readyz" >/dev/null && break; sleep 0.1; done
  curl -sf -X PATCH -H "Authorization: Bearer bench-admin-token" -d '{"paused": true}' "http://127.0.0.1:$port/admin/settings" >/dev/null
done
# VISITORS places in each line; their cookies for wrk.
for port in 16380 16384; do
  : >"$out/cookies-$port.txt"
  for _ in $(seq "$visitors"); do
    curl -s -o /dev/null -D - "http://127.0.0.1:$port/" | sed -n 's/^set-cookie: waitroom=\([^;]*\).*/\1/p' >>"$out/cookies-$port.txt"
  done
done
cat >"$out/polls.lua" <<'LUA'
local cookies = {}
local n = 0
function init(args)
  for line in io.lines(args[1]) do cookies[#cookies + 1] = line end
end
function request()
  n = n + 1
  local c = cookies[(n % #cookies) + 1]
  return wrk.format("GET", "/_waitroom/status", { ["Cookie"] = "waitroom=" .. c, ["Accept"] = "application/json" })
end
LUA
commands() { redis-cli -p 16390 info commandstats | awk -F'[=,:]' '/^cmdstat_/ {sum += $3} END {print sum}'; }
evalshas() { redis-cli -p 16390 info commandstats | awk -F'[=,:]' '/^cmdstat_evalsha:/ {print $3} END {}'; }
echo "mode,round,polls_per_s,polls,redis_calls,redis_commands,calls_per_poll,commands_per_poll" | tee "$out/results.csv"
for round in $(seq "$rounds"); do
  for mode in memory redis; do
    port=16380; [ $mode = redis ] && port=16384
    c0=$(commands); e0=$(evalshas); e0=${e0:-0}
    wrk -t2 -c64 -d"${seconds}s" -s "$out/polls.lua" "http://127.0.0.1:$port" -- "$out/cookies-$port.txt" >"$out/wrk-$mode-$round.txt"
    c1=$(commands); e1=$(evalshas); e1=${e1:-0}
    polls=$(awk '/requests in/ {print $1}' "$out/wrk-$mode-$round.txt")
    rate=$(awk '/Requests\/sec/ {print $2}' "$out/wrk-$mode-$round.txt")
    if [ $mode = redis ]; then
      calls=$((e1 - e0)); cmds=$((c1 - c0))
      echo "$mode,$round,$rate,$polls,$calls,$cmds,$(awk "BEGIN {printf \"%.4f\", $calls / $polls}"),$(awk "BEGIN {printf \"%.4f\", $cmds / $polls}")" | tee -a "$out/results.csv"
    else
      echo "$mode,$round,$rate,$polls,,,," | tee -a "$out/results.csv"
    fi
  done
done
grep -h "Non-2xx\|Socket errors" "$out"/wrk-*.txt || echo "no errors and no non-2xx answers"
