-- wrk script: status polls by the visitors whose cookies are in FILE, each thread
-- taking its share and going round it, each connection pausing DELAY ms between
-- polls (the rate is connections / (DELAY + latency)).
--   wrk ... -s scripts/lua/poll.lua URL -- FILE THREADS DELAY
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local cookies, i, pause = {}, 0, 0
function init(args)
  local k, n = 0, tonumber(args[2])
  pause = tonumber(args[3])
  for line in io.lines(args[1]) do
    if k % n == id then cookies[#cookies + 1] = "waitroom=" .. line end
    k = k + 1
  end
end
function request()
  i = i % #cookies + 1
  return wrk.format("GET", "/_waitroom/status", { Cookie = cookies[i] })
end
function delay()
  return pause
end
