-- lease_renew: extend a lease its holder still holds.
-- KEYS[1]  the lease          {tag}:l:<group>
-- ARGV[1]  the holder's lease value    ARGV[2] lease time in ms
-- Returns 1 when renewed, 0 when the lease expired or another consumer holds it.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
