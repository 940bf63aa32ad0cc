-- The line of one waiting room in Redis: the semantics of admission/line.rs, each
-- operation one atomic script. Every key shares the room's hash tag (Redis Cluster).
--
-- KEYS: 1 meta (hash: next, head, tat, since, retn, line_id; beat, sil, silend,
-- silbefore: the clock of presence, see below; fenced: how often the line was found
-- gone back in time, restored_below), 2 settings (hash: rate,
-- max, paused, closed, opens: Unix ms or 0, held: Unix ms or 0), 3 live (zset seq→seq: waiting, not departed), 4 dl (zset: deadline of
-- each waiting place), 5 called (zset: claim-by of called places), 6 sess (zset:
-- lapse time of sessions), 7 claimed (bitmap), 8 ret (zset: returned lane, by order),
-- 9 retdl (zset: deadlines in the returned lane), 10 out (hash: second → admissions),
-- 11 cslot (zset: when a called place that came back too soon may claim), 12 marks
-- (zset: where the head was when, member head, score ms; as Line::head_marks), 13
-- lapsed (zset: sessions that lapsed, by when, kept for return_grace; as Line::lapsed).
-- ARGV: 1 op, 2 the caller's time (ms) or '' for Redis's own (TIME: one clock for
-- every instance), 3 session_ms, 4 abandon_min_ms, 5 burst (0: default), 6 line id,
-- 7-9 initial rate, max, flags (paused, queue_all, passthrough, lottery as bits 0-3),
-- 10 the highest place the caller has seen, 11-12
-- initial closed, opens, 13 the time (ms, Redis's clock) after which the caller
-- has given up on this call, or '': a call that runs later (Redis was hung, the
-- call waited in its connection) changes nothing; 14 return_grace_ms, 15 the
-- returned lane's share of the calls (per mille); from 16 the operation's own.
-- Numbers go back as strings
-- (Lua would truncate them); settings go back as six: rate, max, paused, closed, opens,
-- held.
--
-- A line that vanished (Redis restarted empty) is answered 'lost': the caller then
-- restores it ('restore') from what it knows, and asks again. The line comes back
-- with the same id, the operator's settings as the caller last saw them, the places
-- that were waiting (every one, in their order: the caller's view lists them all up
-- to 4096; beyond, every place between the head and the end is put back), the
-- called places and the returned lane, and its numbering moved past every place
-- handed out (the caller's high-water mark plus a margin for places other instances
-- handed out since its view): nobody is let in ahead of them, and visitors coming
-- back with their tokens find their places again.

local meta, set, live, dl, called, sess, claimed, ret, retdl, out, cslot, marks, lapsed =
  KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8], KEYS[9], KEYS[10],
  KEYS[11], KEYS[12], KEYS[13]
local op = ARGV[1]
local now = tonumber(ARGV[2])
if not now then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local valid_until = tonumber(ARGV[13])
if valid_until and now > valid_until then
  return { 'stale' }
end
-- `now` on the clock of presence (as Line::heard): Redis's time less every silence
-- (set once the line is known to exist, below). Deadlines, sessions, calls waiting
-- to be claimed, the returned lane and the head's marks run on it; the outflow,
-- claim slots and the settings' times on Redis's time.
local heard = now
-- When the last silence ended, and the silence before it (for deadlines told
-- before it, see 'flush').
local silence_ended, silence_before = 0, 0
-- Time `t` (Redis's clock) on the clock of presence, as the silence is now (as
-- Line::heard).
local function heard_at(t) return t - (now - heard) end
local session_ms = tonumber(ARGV[3])
local abandon_min = tonumber(ARGV[4])
local burst_cfg = tonumber(ARGV[5])
local RESTART_MARGIN = 10000
local return_grace = tonumber(ARGV[14]) or 300000
local share = math.max(1, math.min(1000, tonumber(ARGV[15]) or 1000))

local function num(v, default)
  if v then return tonumber(v) end
  return default
end

local function m(field, default)
  return num(redis.call('HGET', meta, field), default)
end

local function fmt(x) return string.format('%.0f', x) end

local function settings()
  local s = redis.call('HMGET', set, 'rate', 'max', 'paused', 'closed', 'opens', 'held', 'qall',
    'pass', 'lot', 'pat')
  return tonumber(s[1]) or 0, tonumber(s[2]) or 0, s[3] == '1', s[4] == '1', tonumber(s[5]) or 0,
    tonumber(s[6]) or 0, s[7] == '1', s[8] == '1', s[9] == '1', tonumber(s[10]) or 0
end

-- The settings as answers carry them (ten strings, see admission/line.rs Settings
-- and store/view.rs settings_at; the last, when it was paused, 0 when not known).
local function settings_out(list)
  local rate, max, paused, closed, opens, held, qall, pass, lot, pat = settings()
  for _, v in ipairs({ tostring(rate), tostring(max), paused and '1' or '0', closed and '1' or '0',
                       fmt(opens), fmt(held), qall and '1' or '0', pass and '1' or '0',
                       lot and '1' or '0', fmt(paused and pat or 0) }) do
    list[#list + 1] = v
  end
  return list
end

-- The outflow in force: a tenth of the rate right after a hold for the origin, all
-- of it RAMP_MS later (as Settings::per_minute_at).
local RAMP_MS = 10000
local function rate_at(rate, held)
  if held > 0 and now >= held and now - held < RAMP_MS then
    return math.max(1, math.floor(rate * (0.1 + 0.9 * (now - held) / RAMP_MS)))
  end
  return rate
end

-- `deadline`, or later for a place of a lottery's pre-queue (as Line::lottery_floor):
-- it does not depart before its holder after the draw had time to poll.
local function lottery_floor(seq, deadline)
  local _, _, _, _, opens, _, _, _, lot = settings()
  if lot and opens > 0 and now < opens then return math.max(deadline, heard_at(opens) + abandon_min) end
  local draw = redis.call('HGET', meta, 'draw')
  if draw then
    local o, a, b = string.match(draw, '^(%d+):(%d+):(%d+)$')
    local s = tonumber(seq)
    o, a, b = tonumber(o), tonumber(a), tonumber(b)
    if o and s >= a and s <= b and now < o + abandon_min then
      return math.max(deadline, heard_at(o) + abandon_min)
    end
  end
  return deadline
end

local function active()
  return redis.call('ZCARD', sess) + redis.call('ZCARD', called)
end

local function queue_length()
  return redis.call('ZCARD', live) + redis.call('ZCARD', ret)
end

-- GCRA in microseconds, as admission/gcra.rs.
local function gcra(rate)
  if rate <= 0 then return nil, nil end
  local t = math.floor(60000000 / rate)
  local burst = burst_cfg
  if burst <= 0 then burst = math.max(2, math.ceil(rate / 600)) end
  return t, t * (burst - 1)
end

local function conforms(rate)
  local t, tau = gcra(rate)
  if not t then return false end
  return m('tat', 0) <= now * 1000 + tau
end

local function passthrough()
  return redis.call('HGET', set, 'pass') == '1'
end

-- Uses up one admission of the outflow limit (none in passthrough, as Line::consume).
local function consume(rate)
  if passthrough() then return end
  local t = gcra(rate)
  if t then redis.call('HSET', meta, 'tat', fmt(math.max(m('tat', 0), now * 1000) + t)) end
end

local function current_rate()
  local rate, _, _, _, _, held = settings()
  return rate_at(rate, held)
end

-- Claims are spaced at the outflow too (as Line::claim): a called place whose
-- holder comes back too soon after others gets the next free slot. Returns nil
-- when it may claim now, or the ms until its slot.
local function claim(seq)
  if passthrough() then return nil end
  local at = redis.call('ZSCORE', cslot, seq)
  if at then
    at = tonumber(at)
    if now < at then return at - now end
    return nil
  end
  -- With a burst of CLAIM_BURST (2), as Line::claim_rate.
  local t = gcra(current_rate())
  if not t then return nil end
  local tau = t
  local ctat = m('ctat', 0)
  if ctat <= now * 1000 + tau then
    redis.call('HSET', meta, 'ctat', fmt(math.max(ctat, now * 1000) + t))
    return nil
  end
  local slot = math.max(now, math.ceil((ctat - tau) / 1000))
  redis.call('HSET', meta, 'ctat', fmt(math.max(ctat, slot * 1000) + t))
  redis.call('ZADD', cslot, slot, seq)
  local claim_by = tonumber(redis.call('ZSCORE', called, seq)) or 0
  redis.call('ZADD', called, math.max(claim_by, heard_at(slot) + abandon_min), seq)
  return slot - now
end

local function may_admit()
  local rate, max, paused, closed, opens, held, _, pass = settings()
  rate = rate_at(rate, held)
  return (not paused) and (not closed) and now >= opens and now >= held
    and (pass or (active() < max and conforms(rate))), rate
end

-- The measured outflow, as admission/outflow.rs: admissions per second over the
-- whole seconds (at most 60) since the line formed; nil below 5 s of history.
local function record()
  local sec = math.floor(now / 1000)
  redis.call('HINCRBY', out, sec, 1)
  local old = {}
  for s = sec - 70, sec - 61 do old[#old + 1] = s end
  redis.call('HDEL', out, unpack(old))
end

local function line_present(present)
  local since = redis.call('HGET', meta, 'since')
  if present and not since then
    redis.call('HSET', meta, 'since', math.floor(now / 1000))
  elseif (not present) and since then
    redis.call('HDEL', meta, 'since')
  end
end

local function measured()
  local since = m('since', nil)
  if not since then return '' end
  local sec = math.floor(now / 1000)
  local span = math.min(sec - since, 60)
  if span < 5 then return '' end
  local fields = {}
  for s = sec - span, sec - 1 do fields[#fields + 1] = s end
  local total = 0
  for _, c in ipairs(redis.call('HMGET', out, unpack(fields))) do total = total + num(c, 0) end
  return tostring(total / span)
end

local function touch(sid)
  local lapses = redis.call('ZSCORE', sess, sid)
  if lapses and tonumber(lapses) > heard then
    redis.call('ZADD', sess, heard + session_ms, sid)
    return true
  end
  if lapses then
    redis.call('ZREM', sess, sid)
    redis.call('ZADD', lapsed, lapses, sid)
    return false
  end
  -- A session from before the line was lost: it was admitted, it stays admitted.
  if redis.call('GETBIT', claimed, sid) == 0 and tonumber(sid) < m('restored_below', 0) then
    redis.call('SETBIT', claimed, sid, 1)
    redis.call('ZADD', sess, heard + session_ms, sid)
    return true
  end
  return false
end

local function open_session(sid)
  redis.call('SETBIT', claimed, sid, 1)
  redis.call('ZADD', sess, heard + session_ms, sid)
end

-- Called place `seq` claims its admission (as Line::claim_called): admitted, or
-- told when its slot comes.
local function claim_called(seq)
  local later = claim(seq)
  if later then return { 'later', fmt(later) } end
  redis.call('ZREM', called, seq)
  redis.call('ZREM', cslot, seq)
  open_session(seq)
  return { 'admitted' }
end

-- Notices departures, drops lapsed sessions and unclaimed calls.
local function sweep()
  local gone = redis.call('ZRANGEBYSCORE', dl, '-inf', heard, 'LIMIT', 0, 5000)
  for _, seq in ipairs(gone) do
    redis.call('ZREM', live, seq)
    redis.call('ZREM', dl, seq)
  end
  local gone_sessions = redis.call('ZRANGEBYSCORE', sess, '-inf', heard, 'WITHSCORES', 'LIMIT', 0, 5000)
  for i = 1, #gone_sessions, 2 do
    redis.call('ZADD', lapsed, gone_sessions[i + 1], gone_sessions[i])
  end
  redis.call('ZREMRANGEBYSCORE', sess, '-inf', heard)
  redis.call('ZREMRANGEBYSCORE', lapsed, '-inf', '(' .. (heard - return_grace))
  redis.call('ZREMRANGEBYSCORE', called, '-inf', heard)
  redis.call('ZREMRANGEBYSCORE', cslot, '-inf', '(' .. (now - abandon_min))
  for _, seq in ipairs(redis.call('ZRANGEBYSCORE', retdl, '-inf', heard, 'LIMIT', 0, 5000)) do
    redis.call('ZREM', ret, seq)
    redis.call('ZREM', retdl, seq)
  end
end

-- Notes where the head is (one mark a second at most), forgetting marks older than
-- needed to tell return_grace ago (as Line::mark_head).
local function mark_head(head)
  local last = redis.call('ZREVRANGE', marks, 0, 0, 'WITHSCORES')
  if #last == 0 or (tonumber(last[1]) ~= head and heard >= tonumber(last[2]) + 1000) then
    redis.call('ZADD', marks, heard, fmt(head))
  end
  local old = redis.call('ZREVRANGEBYSCORE', marks, heard - return_grace, '-inf', 'WITHSCORES',
    'LIMIT', 0, 1)
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', marks, '-inf', '(' .. old[2]) end
end

-- Where the head was at `t`, as far as the marks tell (as Line::head_at).
local function head_at(t)
  local r = redis.call('ZREVRANGEBYSCORE', marks, t, '-inf', 'LIMIT', 0, 1)
  if #r == 0 then return 0 end
  return tonumber(r[1])
end

local function pump()
  sweep()
  local head = m('head', 1)
  local called_n, passed = 0, 0
  local called_list = {}
  -- At most CALLS_PER_ROUND a round (only passthrough comes near it), as Line::pump.
  while called_n < 2000 do
    local ok, rate = may_admit()
    if not ok then break end
    -- The returned lane at its share of the calls while the main line waits
    -- (as Line::next_candidate): first, then its credit is spent and earned back.
    local seq, deadline
    local credit = m('rcredit', 0)
    local l = redis.call('ZRANGE', live, 0, 0)
    local r = {}
    if credit >= 0 or #l == 0 then r = redis.call('ZRANGE', ret, 0, 0) end
    if #r > 0 then
      seq = r[1]
      deadline = num(redis.call('ZSCORE', retdl, seq), heard)
      redis.call('ZREM', ret, seq)
      redis.call('ZREM', retdl, seq)
      if #l > 0 then
        redis.call('HSET', meta, 'rcredit', fmt(math.max(-1000, credit - (1000 - share))))
      end
    else
      if #l == 0 then break end
      seq = l[1]
      deadline = num(redis.call('ZSCORE', dl, seq), heard)
      redis.call('ZREM', live, seq)
      redis.call('ZREM', dl, seq)
      local s = tonumber(seq)
      passed = passed + (s - head)
      head = s + 1
      redis.call('HSET', meta, 'rcredit', fmt(math.min(0, credit + share)))
    end
    consume(rate)
    record()
    redis.call('ZADD', called, math.max(deadline, heard + abandon_min), seq)
    called_n = called_n + 1
    called_list[#called_list + 1] = seq
  end
  -- Departed places at the head are passed over.
  local l = redis.call('ZRANGE', live, 0, 0)
  local new_head = m('next', 1)
  if #l > 0 then new_head = tonumber(l[1]) end
  if new_head > head then
    passed = passed + (new_head - head)
    head = new_head
  end
  redis.call('HSET', meta, 'head', fmt(head))
  line_present(queue_length() > 0)
  mark_head(head)
  return { tostring(called_n), tostring(passed), table.concat(called_list, ',') }
end

local function waiting(position)
  return settings_out({ 'waiting', tostring(position), measured(), tostring(active()) })
end

-- Positions with the returned lane at its share of the calls (as
-- line::main_position and line::returned_position).
local function main_position(seq)
  local before = redis.call('ZCOUNT', live, '-inf', '(' .. seq)
  local returned = redis.call('ZCARD', ret)
  if share < 1000 then
    returned = math.min(returned, math.ceil((before + 1) * share / (1000 - share)))
  end
  return before + 1 + returned
end

local function returned_position(index)
  return index + 1 + math.min(redis.call('ZCARD', live), math.floor(index * (1000 - share) / share))
end

redis.call('HSETNX', set, 'rate', ARGV[7])
redis.call('HSETNX', set, 'max', ARGV[8])
-- ARGV[9]: paused, queue_all, passthrough and lottery as bits 0 to 3.
local flags = tonumber(ARGV[9]) or 0
local function bit(n) return tostring(math.floor(flags / 2 ^ n) % 2) end
redis.call('HSETNX', set, 'paused', bit(0))
redis.call('HSETNX', set, 'qall', bit(1))
redis.call('HSETNX', set, 'pass', bit(2))
redis.call('HSETNX', set, 'lot', bit(3))
redis.call('HSETNX', set, 'closed', ARGV[11])
redis.call('HSETNX', set, 'opens', ARGV[12])
-- Puts `seqs` (strings) into zset `key` with score `score(seq)`, a few thousand at a
-- time (Lua's stack limits one call's arguments).
local function zadd_all(key, seqs, score)
  for i = 1, #seqs, 2000 do
    local args = {}
    for j = i, math.min(i + 1999, #seqs) do
      args[#args + 1] = score(seqs[j])
      args[#args + 1] = seqs[j]
    end
    redis.call('ZADD', key, unpack(args))
  end
end

-- ARGV from 16: grace (ms), the caller's next and head, whether its live list is
-- every waiting place ('1') or a sample ('0'), then three counted lists: live,
-- called, returned.
local function restore()
  local grace, next, head, exact = tonumber(ARGV[16]), tonumber(ARGV[17]), tonumber(ARGV[18]),
    ARGV[19] == '1'
  local lists, i = {}, 20
  for k = 1, 3 do
    local n = tonumber(ARGV[i])
    lists[k] = { unpack(ARGV, i + 1, i + n) }
    i = i + n + 1
  end
  local live_seqs, called_seqs, ret_seqs = lists[1], lists[2], lists[3]
  if not exact then
    live_seqs = {}
    local called_set = {}
    for _, c in ipairs(called_seqs) do called_set[c] = true end
    for seq = head, next - 1 do
      local s = fmt(seq)
      if not called_set[s] then live_seqs[#live_seqs + 1] = s end
    end
  end
  local top = math.max(next, tonumber(ARGV[10]) + 1) + RESTART_MARGIN
  redis.call('HSET', meta, 'next', fmt(top), 'head', fmt(head), 'line_id', ARGV[6],
    'restored_below', fmt(top))
  zadd_all(live, live_seqs, function(seq) return seq end)
  zadd_all(dl, live_seqs, function() return heard + grace end)
  zadd_all(called, called_seqs, function() return heard + grace end)
  for k, seq in ipairs(ret_seqs) do
    redis.call('ZADD', ret, k, seq)
    redis.call('ZADD', retdl, heard + grace, seq)
  end
  redis.call('HSET', meta, 'retn', #ret_seqs)
  if #live_seqs + #ret_seqs > 0 then line_present(true) end
  return #live_seqs
end

if redis.call('EXISTS', meta) == 0 then
  if op == 'init' then
    redis.call('HSET', meta, 'next', 1, 'head', 1, 'line_id', ARGV[6])
  elseif op == 'restore' then
    return { 'restored', tostring(restore()) }
  else
    return { 'lost' }
  end
elseif op == 'restore' then
  return { 'ok' }
end

-- The line's heartbeat (as Line::at): pump rounds come every 50 ms from each
-- instance; an operation more than QUIET ms after the last round (or the last
-- silence) ends a silence (Redis frozen, every instance down or cut off), whose
-- length past QUIET is added to 'sil', so that no deadline runs out on evidence
-- the line could not have had.
do
  local QUIET = 1000
  local b = redis.call('HMGET', meta, 'beat', 'sil', 'silend', 'silbefore')
  local beat, sil = tonumber(b[1]) or 0, tonumber(b[2]) or 0
  silence_ended, silence_before = tonumber(b[3]) or 0, tonumber(b[4]) or 0
  if beat ~= 0 and now > beat + QUIET then
    silence_ended, silence_before = now, sil
    local excused = now - beat - QUIET
    sil = sil + excused
    -- What was owed to the outflow and the claim slots given out, from the last
    -- round on, move later with it (as Line::at): nobody could claim or be called
    -- meanwhile, and they must not all come at once when it ends. A slot already
    -- due and unused is given up: its holder claims anew, spaced like everyone.
    for _, f in ipairs({ 'tat', 'ctat' }) do
      local owed = m(f, 0)
      if owed > beat * 1000 then redis.call('HSET', meta, f, fmt(owed + excused * 1000)) end
    end
    redis.call('ZREMRANGEBYSCORE', cslot, '-inf', fmt(beat))
    local slots = redis.call('ZRANGEBYSCORE', cslot, '(' .. fmt(beat), '+inf', 'WITHSCORES')
    for i = 1, #slots, 2 do
      redis.call('ZADD', cslot, fmt(tonumber(slots[i + 1]) + excused), slots[i])
    end
    redis.call('HSET', meta, 'sil', fmt(sil), 'beat', fmt(now), 'silend', fmt(now),
      'silbefore', fmt(silence_before))
  elseif op == 'pump' then
    redis.call('HSET', meta, 'beat', fmt(now))
  end
  heard = now - sil
end

-- At the first operation from a scheduled opening on, the pre-queue is settled: for
-- a lottery its range is recorded as the opening's draw ('opens:first:last', empty
-- as 'opens:1:0'), once, and kept whatever the settings say later (as
-- Line::record_draw); either way a later opening starts a new pre-queue.
local function record_draw()
  local _, _, _, _, opens, _, _, _, lot = settings()
  if opens == 0 or now < opens then return end
  local draw = redis.call('HGET', meta, 'draw')
  if draw and tonumber(string.match(draw, '^(%d+):')) == opens then return end
  local first, last = redis.call('HGET', meta, 'pq_first'), redis.call('HGET', meta, 'pq_last')
  redis.call('HDEL', meta, 'pq_first', 'pq_last')
  if lot then
    redis.call('HSET', meta, 'draw', fmt(opens) .. ':' .. (first or '1') .. ':' .. (last or '0'))
  end
end

-- Fencing against a store that went back in time (a failover to a replica that
-- lagged, a restore from an older snapshot): the caller has seen places (ARGV[10]:
-- its own, and every view's numbering) that this line never handed out. Before
-- anything is issued, the numbering moves past them and a margin for what other
-- instances handed out meanwhile, and admissions below it that the line does not
-- know are taken on their signed tokens (see touch): no number is handed out
-- twice, no admitted visitor is sent back, and a place it never knew is put back
-- where it stands when its holder polls (see 'poll').
if op ~= 'init' then
  local seen = tonumber(ARGV[10]) or 0
  if seen >= m('next', 1) then
    local top = seen + 1 + RESTART_MARGIN
    redis.call('HSET', meta, 'next', fmt(top), 'restored_below',
      fmt(math.max(top, m('restored_below', 0))))
    redis.call('HINCRBY', meta, 'fenced', 1)
  end
  record_draw()
end

if op == 'init' then
  return { redis.call('HGET', meta, 'line_id'), fmt(now) }
elseif op == 'pump' then
  return pump()
elseif op == 'arrive' then
  pump()
  local seq = redis.call('HINCRBY', meta, 'next', 1) - 1
  local _, _, _, _, _, _, qall, pass = settings()
  -- 'kept': a place kept in arrival order, counted nowhere until its holder checks
  -- in (as Line::arrive_kept): never admitted at once, not live, no deadline.
  local kept = ARGV[16] == 'kept'
  if (pass or not (qall or kept)) and queue_length() == 0 and m('head', 1) == seq and may_admit() then
    local _, rate = may_admit()
    redis.call('HSET', meta, 'head', fmt(seq + 1))
    consume(rate)
    -- They reach the origin now, as a claim would.
    local t = gcra(rate)
    if t and not pass then
      redis.call('HSET', meta, 'ctat', fmt(math.max(m('ctat', 0), now * 1000) + t))
    end
    open_session(seq)
    return { 'admitted', tostring(seq) }
  end
  if not kept then
    redis.call('ZADD', live, seq, seq)
    redis.call('ZADD', dl, lottery_floor(seq, heard + abandon_min), seq)
  end
  redis.call('HINCRBY', meta, 'issued', 1)
  local _, _, _, _, opens = settings()
  if now < opens then
    -- The pre-queue: the places taken before the scheduled opening.
    if not redis.call('HGET', meta, 'pq_first') then redis.call('HSET', meta, 'pq_first', seq) end
    redis.call('HSET', meta, 'pq_last', seq)
  end
  if not kept then line_present(true) end
  return settings_out({ 'queued', tostring(seq), tostring(main_position(seq)), measured(),
                       tostring(active()) })
elseif op == 'poll' then
  local seq = tonumber(ARGV[16])
  if seq == 0 or seq >= m('next', 1) then return { 'unknown' } end
  if redis.call('GETBIT', claimed, seq) == 1 then
    if touch(seq) then return { 'admitted' } end
    -- Back after their session lapsed (see 'rejoin'): in the returned lane.
    if not redis.call('ZSCORE', called, seq) and not redis.call('ZSCORE', ret, seq) then
      return { 'ended' }
    end
  end
  if redis.call('ZSCORE', called, seq) then return claim_called(seq) end
  if seq >= m('head', 1) then
    if not redis.call('ZSCORE', live, seq) then redis.call('ZADD', live, seq, seq) end
    redis.call('ZADD', dl, 'GT', lottery_floor(seq, heard + abandon_min), seq)
    return waiting(main_position(seq))
  end
  if not redis.call('ZSCORE', ret, seq) then
    -- Passed over longer ago than the grace: a new place for them.
    if seq < head_at(heard - return_grace) then return { 'ended' } end
    redis.call('ZADD', ret, redis.call('HINCRBY', meta, 'retn', 1), seq)
  end
  redis.call('ZADD', retdl, 'GT', heard + abandon_min, seq)
  return waiting(returned_position(redis.call('ZRANK', ret, seq)))
elseif op == 'rejoin' then
  -- The holder of session ARGV[16] comes back (as Line::rejoin): admitted while it is
  -- alive; lapsed within return_grace, first in line in the returned lane.
  local sid = tonumber(ARGV[16])
  if sid == 0 or sid >= m('next', 1) or sid >= m('head', 1) then return { 'unknown' } end
  if touch(sid) then return { 'admitted' } end
  local at = redis.call('ZSCORE', lapsed, sid)
  if at then
    redis.call('ZREM', lapsed, sid)
    if tonumber(at) + return_grace > heard and not redis.call('ZSCORE', called, sid)
        and not redis.call('ZSCORE', ret, sid) then
      redis.call('ZADD', ret, redis.call('HINCRBY', meta, 'retn', 1), sid)
    end
  end
  if redis.call('ZSCORE', called, sid) then return claim_called(sid) end
  if redis.call('ZSCORE', ret, sid) then
    redis.call('ZADD', retdl, 'GT', heard + abandon_min, sid)
    return waiting(returned_position(redis.call('ZRANK', ret, sid)))
  end
  return { 'ended' }
elseif op == 'flush' then
  -- Batched from polls and requests answered locally: ARGV[16] = n deadline triples
  -- (seq, ms since it was told, ms ahead of that), then session renewal pairs (sid,
  -- ms from now). A deadline told before the last silence is counted from the
  -- clock of presence as it was then: the silence does not eat into it.
  local n = tonumber(ARGV[16])
  local head = m('head', 1)
  for i = 17, 16 + 3 * n, 3 do
    local seq = ARGV[i]
    local told = now - tonumber(ARGV[i + 1])
    local told_heard = heard_at(told)
    if told < silence_ended then told_heard = told - silence_before end
    local deadline = lottery_floor(seq, told_heard + tonumber(ARGV[i + 2]))
    if redis.call('ZSCORE', live, seq) then
      redis.call('ZADD', dl, deadline, seq)
    elseif redis.call('ZSCORE', ret, seq) then
      redis.call('ZADD', retdl, deadline, seq)
    elseif tonumber(seq) >= head and not redis.call('ZSCORE', called, seq)
        and redis.call('GETBIT', claimed, seq) == 0 then
      -- Departed and back before their place was reached: it is theirs again.
      redis.call('ZADD', live, seq, seq)
      redis.call('ZADD', dl, deadline, seq)
    end
  end
  for i = 17 + 3 * n, #ARGV, 2 do
    redis.call('ZADD', sess, 'XX', 'GT', heard + tonumber(ARGV[i + 1]), ARGV[i])
  end
  return { 'ok' }
elseif op == 'view' then
  -- What an instance needs to answer polls by itself for a moment: the head, the
  -- settings, the outflow, the called places, the returned lane, and the live
  -- places (all of them, or every `stride`-th when there are more than 4096).
  local card = redis.call('ZCARD', live)
  local stride = math.max(1, math.ceil(card / 4096))
  local sample
  if stride == 1 then
    sample = redis.call('ZRANGE', live, 0, -1)
  else
    sample = {}
    for i = 0, card - 1, stride do sample[#sample + 1] = redis.call('ZRANGE', live, i, i)[1] end
  end
  return settings_out({ tostring(m('head', 1)), tostring(m('next', 1)), measured(), tostring(card),
           tostring(stride), table.concat(sample, ','),
           table.concat(redis.call('ZRANGE', called, 0, -1), ','),
           table.concat(redis.call('ZRANGE', ret, 0, 999), ','), tostring(active()), fmt(now) })
elseif op == 'touch' then
  return { touch(ARGV[16]) and '1' or '0' }
elseif op == 'end' then
  -- The origin ends session ARGV[16]: its slot is free at once; marked claimed, so a
  -- restored line never takes it for a session from before.
  local lapses = redis.call('ZSCORE', sess, ARGV[16])
  redis.call('ZREM', sess, ARGV[16])
  redis.call('SETBIT', claimed, ARGV[16], 1)
  return { (lapses and tonumber(lapses) > heard) and '1' or '0' }
elseif op == 'snapshot' then
  sweep()
  return settings_out({ tostring(queue_length()), tostring(active()),
           tostring(redis.call('ZCARD', called)), tostring(m('issued', 0)), measured(),
           tostring(m('pq_first', 0)), tostring(m('pq_last', 0)),
           redis.call('HGET', meta, 'draw') or '' })
elseif op == 'settings' then
  local before, _, was_paused, _, _, held = settings()
  local fields = { 'rate', 'max', 'paused', 'closed', 'opens', 'qall', 'pass', 'lot' }
  for i, f in ipairs(fields) do
    if ARGV[15 + i] ~= '' then redis.call('HSET', set, f, ARGV[15 + i]) end
  end
  -- When it was paused (as Line::update): kept while paused, gone when not.
  local _, _, paused = settings()
  if paused and not was_paused then
    redis.call('HSET', set, 'pat', fmt(now))
  elseif not paused then
    redis.call('HDEL', set, 'pat')
  end
  -- A new rate applies at once: what is owed to the outflow limit is re-spaced at
  -- the new rate (as Gcra::rescale).
  local old_t = gcra(rate_at(before, held))
  local new_t = gcra(rate_at(settings(), held))
  local tat = m('tat', 0)
  if old_t and new_t and old_t ~= new_t and tat > now * 1000 then
    redis.call('HSET', meta, 'tat', fmt(now * 1000 + math.floor((tat - now * 1000) * new_t / old_t)))
  end
  -- Claims likewise: what they owe and the slots already given out.
  local ctat = m('ctat', 0)
  if old_t and new_t and old_t ~= new_t then
    if ctat > now * 1000 then
      redis.call('HSET', meta, 'ctat',
        fmt(now * 1000 + math.floor((ctat - now * 1000) * new_t / old_t)))
    end
    local slots = redis.call('ZRANGEBYSCORE', cslot, '(' .. fmt(now), '+inf', 'WITHSCORES')
    for i = 1, #slots, 2 do
      local at = now + math.floor((tonumber(slots[i + 1]) - now) * new_t / old_t)
      redis.call('ZADD', cslot, fmt(at), slots[i])
      -- A slot moved later keeps its place called until then.
      redis.call('ZADD', called, 'XX', 'GT', fmt(heard_at(at) + abandon_min), slots[i])
    end
  end
  return settings_out({})
elseif op == 'hold' then
  -- An instance's circuit breaker holds the line for ARGV[16] ms from now (the later
  -- hold wins).
  local _, _, _, _, _, held = settings()
  redis.call('HSET', set, 'held', fmt(math.max(held, now + tonumber(ARGV[16]))))
  return settings_out({})
end
return redis.error_reply('unknown operation ' .. tostring(op))
