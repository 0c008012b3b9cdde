-- group_seek: move a consumer group on one partition stream, dropping (acknowledging) its
-- pending entries before the new point, so that nothing earlier is delivered again.
-- KEYS[1]  the partition stream                           {tag}:s
-- ARGV[1]  group     ARGV[2] the new last-delivered id: "<ms>-<seq>", or "$" for the end
-- ARGV[3]  "1" when ARGV[2] is "$" (the end), else "0"
-- The group's next read (XREADGROUP >) starts after the new id. Pending entries with an id up
-- to it are acknowledged; those after it stay pending (and are delivered again by the read).
-- Returns {dropped, the group's last-delivered id}. Error NOGROUP when the group is missing.
local last = ARGV[2]
if ARGV[3] == '1' then
  local e = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
  if #e > 0 then last = e[1][1] else last = '0-0' end
end
redis.call('XGROUP', 'SETID', KEYS[1], ARGV[1], ARGV[2])
local dropped = 0
while true do
  local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', last, 1000)
  if #p == 0 then break end
  local ids = {}
  for i, e in ipairs(p) do ids[i] = e[1] end
  dropped = dropped + redis.call('XACK', KEYS[1], ARGV[1], unpack(ids))
  if #p < 1000 then break end
end
return {dropped, last}
