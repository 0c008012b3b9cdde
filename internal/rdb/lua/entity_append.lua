-- entity_append: append events to an entity's stream if it is at the expected version.
-- The version is the number of events appended; event v is stored at stream id 0-v.
-- KEYS[1]  the entity stream      <ns>:entity:{<name>}
-- ARGV[1]  expected version (0 = the stream must be empty)
-- ARGV[2]  number of events n; then per event: field count m, m field/values
-- Returns {1, new version} on success, {0, current version} on a conflict (nothing written).
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local version = 0
if #last > 0 then
  version = tonumber(string.match(last[1][1], '^0%-(%d+)$') or '-1')
end
if version ~= tonumber(ARGV[1]) then return {0, version} end
-- Every event's field count is checked before the first XADD: a script is
-- not rolled back, and unpack refuses more than ~8,000 values.
local i = 3
for _ = 1, tonumber(ARGV[2]) do
  local m = tonumber(ARGV[i])
  if m > 7900 then return redis.error_reply('ERR an event has ' .. m .. ' field strings; at most 7900') end
  i = i + 1 + m
end
i = 3
for _ = 1, tonumber(ARGV[2]) do
  local m = tonumber(ARGV[i])
  version = version + 1
  redis.call('XADD', KEYS[1], '0-' .. version, unpack(ARGV, i + 1, i + m))
  i = i + 1 + m
end
return {1, version}
