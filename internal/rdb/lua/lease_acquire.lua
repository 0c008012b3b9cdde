-- lease_acquire: take a free partition lease of a group; record the tenure in the lease log.
-- KEYS[1]  the lease (string, PX)                       {tag}:l:<group>
-- KEYS[2]  the lease token counter (string)             {tag}:lt:<group>
-- KEYS[3]  the lease log (list, newest first, capped)   {tag}:ll:<group>
-- ARGV[1]  consumer name   ARGV[2] instance id (random per subscription)
-- ARGV[3]  lease time in ms    ARGV[4] log entries kept
-- The lease value is "<token> <acquired ms> <consumer> <instance>"; tokens grow by one per tenure.
-- Returns {1, value} when taken, {0, current value} when another holds it.
local cur = redis.call('GET', KEYS[1])
if cur then return {0, cur} end
local tok = redis.call('INCR', KEYS[2])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = tok .. ' ' .. ms .. ' ' .. ARGV[1] .. ' ' .. ARGV[2]
redis.call('SET', KEYS[1], v, 'PX', ARGV[3])
redis.call('LPUSH', KEYS[3], 'acquire ' .. v)
redis.call('LTRIM', KEYS[3], 0, tonumber(ARGV[4]) - 1)
return {1, v}
