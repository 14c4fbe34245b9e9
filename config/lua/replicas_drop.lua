-- replicas_drop.lua: delete stale replica entries unless they were reported again since they were read.
-- KEYS[1] = {config}:replicas (hash); ARGV = field1, value1, field2, value2, ...
-- Returns the number of fields deleted.
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == ARGV[i + 1] then
    n = n + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end
return n
