-- put.lua: store a new limits revision if the current version is the expected one (compare-and-set).
-- KEYS[1] = {config}:version (integer), KEYS[2] = {config}:history (list of versions, newest first)
-- ARGV[1] = expected current version (decimal string; "0" when nothing is stored)
-- ARGV[2] = the revision's JSON members other than "version" and "created_at" (without braces)
-- ARGV[3] = revisions kept (history length)
-- ARGV[4] = revision key prefix ({config}:rev:), the version number is appended; same hash slot as KEYS
-- ARGV[5] = pub/sub channel that carries the new version number
-- Returns {0, current} on a version conflict, {1, revision JSON} when stored.
local cur = redis.call('GET', KEYS[1]) or '0'
if cur ~= ARGV[1] then
  return {0, cur}
end
local n = redis.call('INCR', KEYS[1])
local vs = string.format('%d', n)

-- CreatedAt is the Redis server's clock, formatted as RFC 3339 in UTC with microseconds.
local t = redis.call('TIME')
local sec, usec = tonumber(t[1]), tonumber(t[2])
local days = math.floor(sec / 86400)
local rem = sec - days * 86400
-- civil_from_days (H. Hinnant), valid for dates after 1970.
local z = days + 719468
local era = math.floor(z / 146097)
local doe = z - era * 146097
local yoe = math.floor((doe - math.floor(doe / 1460) + math.floor(doe / 36524) - math.floor(doe / 146096)) / 365)
local doy = doe - (365 * yoe + math.floor(yoe / 4) - math.floor(yoe / 100))
local mp = math.floor((5 * doy + 2) / 153)
local d = doy - math.floor((153 * mp + 2) / 5) + 1
local m = mp < 10 and mp + 3 or mp - 9
local y = yoe + era * 400
if m <= 2 then y = y + 1 end
local ts = string.format('%04d-%02d-%02dT%02d:%02d:%02d.%06dZ', y, m, d,
  math.floor(rem / 3600), math.floor((rem % 3600) / 60), rem % 60, usec)

local body = '{"version":"' .. vs .. '",' .. ARGV[2] .. ',"created_at":"' .. ts .. '"}'
redis.call('SET', ARGV[4] .. vs, body)
redis.call('LPUSH', KEYS[2], vs)
local keep = tonumber(ARGV[3])
local old = redis.call('LRANGE', KEYS[2], keep, -1)
for _, v in ipairs(old) do
  redis.call('DEL', ARGV[4] .. v)
end
redis.call('LTRIM', KEYS[2], 0, keep - 1)
redis.call('PUBLISH', ARGV[5], vs)
return {1, body}
