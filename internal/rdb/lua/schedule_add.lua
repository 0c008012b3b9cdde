-- schedule_add: schedule delayed events on one partition.
-- KEYS[1]  the partition's delay schedule (sorted set)   {tag}:delay
-- KEYS[2]  the delayed events' payloads (hash)            {tag}:delay:d
-- ARGV[1]  number of events n; then per event: event id, due time in unix ms,
--          field count m, m field/values (the stream entry's fields, '$FieldID' first).
-- An event id already scheduled is left as it is (scheduling is idempotent by id).
-- Returns per event 1 (scheduled) or 0 (already scheduled under this id).
local n = tonumber(ARGV[1])
local out = {}
local i = 2
for k = 1, n do
  local id, due, m = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('ZADD', KEYS[1], 'NX', due, id) == 1 then
    local f = {}
    for j = 1, m do f[j] = ARGV[i + 2 + j] end
    redis.call('HSET', KEYS[2], id, cjson.encode(f))
    out[k] = 1
  else
    out[k] = 0
  end
  i = i + 3 + m
end
return out
