-- decide.lua: decides every hit of one request atomically. Twin of algorithm.go and decideAll in decide.go:
-- the same float arithmetic in the same order, so the Redis and memory backends agree. Keep them in step.
--
-- One call decides one or more requests, one after another (a pipeline of concurrent requests shares a call);
-- each request is all-or-nothing on its own and sees the writes of the requests before it.
-- ARGV[1]    number of requests R; then per request: its number of hits n, then 6 per hit: algorithm
--            (1 fixed, 2 sliding, 3 token bucket), limit, window µs, burst, cost,
--            mode (0 normal, 1 shadow: never blocks, 2 quota: blocks only when every quota hit is over)
-- KEYS       the storage keys of every hit of every request, in order (a hash: w = window index,
--            a = count / current count / TAT, b = previous count / emission interval µs)
-- returns    per request: allowed (0|1), then per hit: fits (0|1), remaining, reset µs, retry µs
--
-- Time is Redis TIME. Phase 1 evaluates the hits in order on each key's tentative state (a key listed twice
-- accumulates); the request is allowed when every non-shadow hit fits. Phase 2 runs only then and writes each
-- changed key once, with its expiry set here (PEXPIREAT at the window's natural end, never later).

local floor, ceil, max, min = math.floor, math.ceil, math.max, math.min
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

-- each evaluator returns: fits, remaining, reset, retry, next w, next a, next b, expireAt (µs), del
local function fixed(limit, window, c, w, a, exists)
  local i = floor(now / window)
  local n = 0
  if exists and w == i then n = a end
  local e = (i + 1) * window
  local reset = e - now
  if c < 0 then
    local n2 = max(0, n + c)
    return true, max(0, limit - n2), reset, 0, i, n2, 0, e, false
  end
  if n + c <= limit then
    return true, limit - n - c, reset, 0, i, n + c, 0, e, false
  end
  return false, max(0, limit - n), reset, e - now
end

local function sreset(e, window, curr)
  if curr > 0 then return e - now + window end
  return e - now
end

local function sliding(limit, window, c, w, a, b, exists)
  local i = floor(now / window)
  local start = i * window
  local e = start + window
  local curr, prev = 0, 0
  if exists then
    if w == i then
      curr, prev = a, b
    elseif w == i - 1 then
      prev = a
    end
  end
  local elapsed = now - start
  local weight = (window - elapsed) / window
  local est = prev * weight + curr
  if c < 0 then
    local curr2 = max(0, curr + c)
    return true, max(0, floor(limit - (prev * weight + curr2))), sreset(e, window, curr2), 0, i, curr2, prev, e + window, false
  end
  if est + c <= limit then
    return true, max(0, floor(limit - est - c)), sreset(e, window, curr + c), 0, i, curr + c, prev, e + window, false
  end
  local need = limit - c
  local retry
  if need < 0 then
    retry = e - now + window
  elseif need - curr >= 0 and prev > 0 then
    retry = (window - elapsed) - (need - curr) * window / prev
  elseif curr <= need then
    retry = e - now
  else
    retry = e - now + window - need * window / curr
  end
  return false, max(0, floor(limit - est)), sreset(e, window, curr), max(1, retry)
end

local function bucket(limit, window, burst, c, a, b, exists)
  if limit == 0 then
    if c > 0 then return false, 0, window, window end
    return true, 0, 0, 0, 0, 0, 0, 0, true
  end
  if burst == 0 then burst = limit end
  local tt = window / limit
  local tau = tt * burst
  local eps = min(1, tt / 2)
  local tat = now
  if exists and a > now then
    tat = a
    -- b is the emission interval the state was written with: convert the debt after a limit change
    if b > 0 and b ~= tt then tat = now + (tat - now) / b * tt end
  end
  local function rem(at)
    return min(burst, max(0, floor((tau - (at - now) + eps) / tt)))
  end
  if c < 0 then
    local tat2 = max(now, tat + c * tt)
    return true, rem(tat2), tat2 - now, 0, 0, tat2, tt, tat2, tat2 <= now
  end
  local nxt = tat + c * tt
  if nxt - now <= tau + eps then
    return true, rem(nxt), nxt - now, 0, 0, nxt, tt, nxt, nxt <= now
  end
  return false, rem(tat), tat - now, nxt - now - tau
end

local function evaluate(alg, limit, window, burst, c, w, a, b, exists)
  if alg == 2 then return sliding(limit, window, c, w, a, b, exists) end
  if alg == 3 then return bucket(limit, window, burst, c, a, b, exists) end
  return fixed(limit, window, c, w, a, exists)
end

-- decide appends the answer of the request whose hits are KEYS[k+1..k+n], ARGV[g+1..g+6n] to out.
local function decide(k, g, n, out)
  local stored = {}  -- key -> {w, a, b, exists} as loaded
  local pending = {} -- key -> {w, a, b, expireAt, del}: tentative value to write
  local base = #out + 1
  out[base] = 1
  local allowed = true
  local quotas, quotaFits = 0, 0

  for i = 1, n do
    local key = KEYS[k + i]
    local s = stored[key]
    if not s then
      local v = redis.call('HMGET', key, 'w', 'a', 'b')
      if v[2] then
        s = {tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0, true}
      else
        s = {0, 0, 0, false}
      end
      stored[key] = s
    end
    local w, a, b, exists = s[1], s[2], s[3], s[4]
    local p = pending[key]
    if p then w, a, b, exists = p[1], p[2], p[3], not p[5] end
    local o = g + (i - 1) * 6
    local alg, limit, window, burst = tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]), tonumber(ARGV[o + 4])
    local c, mode = tonumber(ARGV[o + 5]), ARGV[o + 6]
    if mode == '2' then quotas = quotas + 1 end
    local fits, remaining, reset, retry, nw, na, nb, exp, del = evaluate(alg, limit, window, burst, c, w, a, b, exists)
    if fits then
      if c ~= 0 then pending[key] = {nw, na, nb, exp, del} end
      if mode == '2' then quotaFits = quotaFits + 1 end
      out[#out + 1] = 1
    else
      if mode == '0' then allowed = false end
      out[#out + 1] = 0
    end
    out[#out + 1] = remaining
    out[#out + 1] = ceil(reset)
    out[#out + 1] = ceil(retry)
  end

  if quotas > 0 and quotaFits == 0 then allowed = false end

  if not allowed then
    -- Nothing is written; report what is left on the stored state.
    out[base] = 0
    for i = 1, n do
      local s = stored[KEYS[k + i]]
      local o = g + (i - 1) * 6
      local _, remaining, reset = evaluate(tonumber(ARGV[o + 1]), tonumber(ARGV[o + 2]), tonumber(ARGV[o + 3]),
        tonumber(ARGV[o + 4]), 0, s[1], s[2], s[3], s[4])
      out[base + (i - 1) * 4 + 2] = remaining
      out[base + (i - 1) * 4 + 3] = ceil(reset)
    end
    return
  end

  for i = 1, n do
    local key = KEYS[k + i]
    local p = pending[key]
    if p then
      pending[key] = nil -- write each key once
      if p[5] or p[4] <= now then
        redis.call('DEL', key)
      else
        redis.call('HSET', key, 'w', p[1], 'a', p[2], 'b', p[3])
        redis.call('PEXPIREAT', key, ceil(p[4] / 1000))
      end
    end
  end
end

local out = {}
local k, g = 0, 1
for _ = 1, tonumber(ARGV[1]) do
  local n = tonumber(ARGV[g + 1])
  g = g + 1
  decide(k, g, n, out)
  k, g = k + n, g + 6 * n
end
return out
