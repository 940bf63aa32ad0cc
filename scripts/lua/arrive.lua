-- wrk script: every request is a newcomer; the cookie each one is given is kept,
-- one per line, in a file of this thread's own under the directory given.
--   wrk ... -s scripts/lua/arrive.lua URL -- DIR
local threads = 0
function setup(thread)
  thread:set("id", threads)
  threads = threads + 1
end
local out
function init(args)
  out = io.open(args[1] .. "/cookies-" .. id .. ".txt", "w")
  out:setvbuf("line")
end
function response(status, headers, body)
  local c = headers["set-cookie"] or headers["Set-Cookie"]
  local token = c and c:match("waitroom=([^;]+)")
  if token then out:write(token, "\n") end
end
