-- delivery_fail: a handler failed; ack the entry and schedule a retry for this group only,
-- or move it to the partition's dead-letter stream, atomically.
-- KEYS[1]  the stream the entry was read from (partition stream or the group's retry stream)
-- KEYS[2]  the group's retry schedule (sorted set, score = due time ms)   {tag}:z:<group>
-- KEYS[3]  the partition's dead-letter stream                              {tag}:dlq
-- ARGV[1]  group            ARGV[2] entry position      ARGV[3] next attempt number
-- ARGV[4]  due time in ms, or 0 to dead-letter now       ARGV[5] error text
-- ARGV[6]  original position in the partition stream     ARGV[7] now in ms
-- ARGV[8]  "1" to delete the entry from KEYS[1] (retry streams), else "0"
-- ARGV[9]  dead-letter MAXLEN ~ (0 = none)                ARGV[10] attempts made so far
-- The event keeps its time: an entry without tm gets tm from ARGV[6] (its original position).
-- Returns "scheduled", "dead", "gone" (the entry was trimmed away while pending: acked and
-- dropped), or "settled" (no longer pending: another consumer handled it; nothing is done).
local r = redis.call('XRANGE', KEYS[1], ARGV[2], ARGV[2])
local acked = redis.call('XACK', KEYS[1], ARGV[1], ARGV[2])
if ARGV[8] == '1' then redis.call('XDEL', KEYS[1], ARGV[2]) end
if acked == 0 then return 'settled' end
if #r == 0 then return 'gone' end
local f = r[1][2]
local keep = {}
local timed = false
for j = 1, #f, 2 do
  local name = f[j]
  if name ~= '$FieldAttempt' and name ~= '$FieldOrigin' and string.sub(name, 1, #'$DeadPrefix') ~= '$DeadPrefix' then
    keep[#keep + 1] = name
    keep[#keep + 1] = f[j + 1]
    if name == '$FieldTime' then timed = true end
  end
end
-- An event without tm takes its time from its position: keep the original one
-- (ms of the original position, in microseconds) before it moves to another stream.
if not timed then
  local ms = string.match(ARGV[6], '^(%d+)')
  if ms then
    keep[#keep + 1] = '$FieldTime'
    keep[#keep + 1] = ms .. '000'
  end
end
if ARGV[4] == '0' then
  local n = #keep
  keep[n + 1] = '$FieldDeadGroup';    keep[n + 2] = ARGV[1]
  keep[n + 3] = '$FieldDeadError';    keep[n + 4] = ARGV[5]
  keep[n + 5] = '$FieldDeadAttempt'; keep[n + 6] = ARGV[10]
  keep[n + 7] = '$FieldDeadPos';      keep[n + 8] = ARGV[6]
  keep[n + 9] = '$FieldDeadTime';     keep[n + 10] = ARGV[7]
  if tonumber(ARGV[9]) > 0 then
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[9], '*', unpack(keep))
  else
    redis.call('XADD', KEYS[3], '*', unpack(keep))
  end
  return 'dead'
end
local n = #keep
keep[n + 1] = '$FieldAttempt'; keep[n + 2] = ARGV[3]
keep[n + 3] = '$FieldOrigin'; keep[n + 4] = ARGV[6]
redis.call('ZADD', KEYS[2], ARGV[4], cjson.encode(keep))
return 'scheduled'
