-- schedule_list: list delayed events of one partition in due order.
-- KEYS[1]  the partition's delay schedule (sorted set)   {tag}:delay
-- KEYS[2]  the delayed events' payloads (hash)            {tag}:delay:d
-- ARGV[1]  offset     ARGV[2] most events to return
-- ARGV[3]  one event id to look up instead ("" = list)
-- Returns {total, id1, due1, {fields1...}, id2, ...}; total is the schedule's size.
local total = redis.call('ZCARD', KEYS[1])
local ids
if ARGV[3] ~= '' then
  ids = {}
  local s = redis.call('ZSCORE', KEYS[1], ARGV[3])
  if s then ids = {ARGV[3], s} end
else
  ids = redis.call('ZRANGE', KEYS[1], ARGV[1], tonumber(ARGV[1]) + tonumber(ARGV[2]) - 1, 'WITHSCORES')
end
local out = {total}
for i = 1, #ids, 2 do
  local f = redis.call('HGET', KEYS[2], ids[i])
  out[#out + 1] = ids[i]
  out[#out + 1] = ids[i + 1]
  if f then out[#out + 1] = cjson.decode(f) else out[#out + 1] = {} end
end
return out
