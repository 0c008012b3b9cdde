-- delivery_release: a handler handed an event back unhandled (ErrRelease) in an unordered
-- subscription; ack it and append it to the group's retry stream at once, where any consumer of
-- the group reads it, keeping its attempt number (a release is not an attempt).
-- KEYS[1]  the stream the entry was read from (partition stream or the group's retry stream)
-- KEYS[2]  the group's retry stream                {tag}:r:<group>
-- ARGV[1]  group     ARGV[2] entry position
-- ARGV[3]  original position in the partition stream (an origin field in the entry wins)
-- ARGV[4]  "1" to delete the entry from KEYS[1] (retry streams), else "0"
-- Returns "released", or "gone" (the entry was trimmed away or handled elsewhere: nothing to hand back).
local r = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[4] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
if #r == 0 or acked == 0 then return 'gone' end
local f = r[1][2]
local keep = {}
local timed = false
local origin = ARGV[3]
for j = 1, #f, 2 do
  local name = f[j]
  if name == '$FieldOrigin' then
    origin = f[j + 1]
  else
    keep[#keep + 1] = name
    keep[#keep + 1] = f[j + 1]
    if name == '$FieldTime' then timed = true end
  end
end
if not timed then
  local ms = string.match(origin, '^(%d+)')
  if ms then
    keep[#keep + 1] = '$FieldTime'
    keep[#keep + 1] = ms .. '000'
  end
end
keep[#keep + 1] = '$FieldOrigin'; keep[#keep + 1] = origin
redis.call('XADD', KEYS[2], '*', unpack(keep))
return 'released'
