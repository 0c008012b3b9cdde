-- lease_release: give a lease up (after the holder stopped handling its partition).
-- KEYS[1]  the lease          {tag}:l:<group>
-- KEYS[2]  the lease log      {tag}:ll:<group>
-- ARGV[1]  the holder's lease value    ARGV[2] log entries kept
-- Returns 1 when released, 0 when the holder no longer held it.
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('DEL', KEYS[1])
local t = redis.call('TIME')
local ms = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('LPUSH', KEYS[2], 'release ' .. ms .. ' ' .. ARGV[1])
redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[2]) - 1)
return 1
