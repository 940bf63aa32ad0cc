-- wrk script: every request is a newcomer; the cookie each one is given is kept,
-- one per line, in a file of this thread's own under the directory given; with
-- EACH, a thread stops once it holds that many (so a line of exactly so many is
-- measured, give or take the requests under way, one per connection at most).
--   wrk ... -s scripts/lua/arrive.lua URL -- DIR [EACH]
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local out, each
local kept = 0
function init(args)
  out = io.open(args[1] .. "/cookies-" .. id .. ".txt", "w")
  out:setvbuf("line")
  each = tonumber(args[2])
end
function response(status, headers, body)
  local c = headers["set-cookie"] or headers["Set-Cookie"]
  local token = c and c:match("waitroom=([^;]+)")
  if token then
    out:write(token, "\n")
    kept = kept + 1
    if each and kept >= each then wrk.thread:stop() end
  end
end
