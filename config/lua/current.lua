-- current.lua: the newest limits revision in one round trip.
-- KEYS[1] = {config}:version; ARGV[1] = revision key prefix ({config}:rev:), same hash slot.
-- Returns the revision JSON, or false when nothing is stored.
local v = redis.call('GET', KEYS[1])
if not v then
  return false
end
return redis.call('GET', ARGV[1] .. v)
