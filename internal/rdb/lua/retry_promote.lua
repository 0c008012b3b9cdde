-- retry_promote: move retries that are due from a group's schedule to its retry stream,
-- where the group's consumers read them beside the partition stream.
-- KEYS[1]  the group's retry schedule (sorted set)   {tag}:z:<group>
-- KEYS[2]  the group's retry stream                  {tag}:r:<group>
-- ARGV[1]  now in ms     ARGV[2] most entries to move
-- Returns {moved, next due time in ms or -1 when the schedule is empty}.
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[2])
for _, m in ipairs(due) do
  redis.call('XADD', KEYS[2], '*', unpack(cjson.decode(m)))
  redis.call('ZREM', KEYS[1], m)
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1} end
return {#due, tonumber(nxt[2])}
