-- topic_create: create a topic's metadata hash unless it exists.
-- KEYS[1]  the topic's metadata hash   <ns>:topic:<name>
-- ARGV     field/value pairs of the new topic
-- Returns the stored field/value pairs (the existing ones when the topic already existed)
-- and, as the last element, "created" or "exists".
if redis.call('EXISTS', KEYS[1]) == 1 then
  local r = redis.call('HGETALL', KEYS[1])
  r[#r + 1] = 'exists'
  return r
end
redis.call('HSET', KEYS[1], unpack(ARGV))
local r = {unpack(ARGV)}
r[#r + 1] = 'created'
return r
