-- deadletter_redrive: move one dead letter back to its group's retry stream, attempts reset.
-- KEYS[1]  the partition's dead-letter stream   {tag}:dlq
-- KEYS[2]  the group's retry stream             {tag}:r:<group>
-- ARGV[1]  dead-letter position
-- Returns 1 when moved, 0 when the dead letter no longer exists.
local r = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #r == 0 then return 0 end
local f = r[1][2]
local keep = {}
local origin = ''
for j = 1, #f, 2 do
  local name = f[j]
  if name == '$FieldDeadPos' then origin = f[j + 1] end
  if name ~= '$FieldAttempt' and name ~= '$FieldOrigin' and string.sub(name, 1, #'$DeadPrefix') ~= '$DeadPrefix' then
    keep[#keep + 1] = name
    keep[#keep + 1] = f[j + 1]
  end
end
keep[#keep + 1] = '$FieldAttempt'; keep[#keep + 1] = '1'
keep[#keep + 1] = '$FieldOrigin'; keep[#keep + 1] = origin
redis.call('XADD', KEYS[2], '*', unpack(keep))
redis.call('XDEL', KEYS[1], ARGV[1])
return 1
