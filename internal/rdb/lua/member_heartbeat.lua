-- member_heartbeat: keep a consumer in its group's live set and list the live ones.
-- KEYS[1]  the group's members (sorted set, score = expiry in ms, Redis time)   {tag0}:m:<group>
-- ARGV[1]  consumer name   ARGV[2] time to live in ms ("0" = leave: remove it)
-- Returns the live consumer names (expired ones are removed first).
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ms)
if ARGV[2] == '0' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ms + tonumber(ARGV[2]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[2]) * 4)
end
return redis.call('ZRANGE', KEYS[1], 0, -1)
