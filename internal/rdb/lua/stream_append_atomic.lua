-- stream_append_atomic: append one batch spanning several partitions, all or nothing
-- (standalone Redis only: the keys are in different cluster slots).
-- KEYS     per partition: the stream, then the batch's state key   {tag}:s, {tag}:p:<batch id>
-- ARGV[1]  MAXLEN ~ retention (0 = none)      ARGV[2] MINID ~ retention ("" = none)
-- ARGV[3]  dedupe window w in ms              ARGV[4] state TTL in ms
--          (dedupe ids: hashes per time bucket, as in stream_append.lua)
-- ARGV[5]  number of partitions k; then per partition: dedupe key prefix, event count n,
--          and per event: dedupe id ("" = none), field count m, m field/values
-- Returns {"ok"|"replay", positions...} in the order of the partitions and their events;
-- "=" before a position marks an earlier append of the same dedupe id.
-- Every stream key is checked before anything is written, so a refusal writes nothing.
local k = tonumber(ARGV[5])
local st = redis.call('GET', KEYS[2])
if st then
  local out = {'replay'}
  for p in string.gmatch(st, '[^,]+') do out[#out + 1] = p end
  return out
end
for j = 1, k do
  local t = redis.call('TYPE', KEYS[2 * j - 1])['ok']
  if t ~= 'stream' and t ~= 'none' then
    return redis.error_reply('WRONGTYPE key ' .. KEYS[2 * j - 1] .. ' holds a ' .. t .. ', not a stream; nothing was written')
  end
end
local maxlen = tonumber(ARGV[1])
local out = {'ok'}
local t = redis.call('TIME')
local w = tonumber(ARGV[3])
local b = math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / w)
local cur, prev, expires = string.format('%d', b), string.format('%d', b - 1), string.format('%d', (b + 2) * w)
local i = 6
for j = 1, k do
  local stream = KEYS[2 * j - 1]
  local prefix = ARGV[i]
  local n = tonumber(ARGV[i + 1])
  i = i + 2
  for _ = 1, n do
    local did = ARGV[i]
    local m = tonumber(ARGV[i + 1])
    local pos = false
    if did ~= '' then
      pos = redis.call('HGET', prefix .. cur, did) or redis.call('HGET', prefix .. prev, did)
      if pos then pos = '=' .. pos end
    end
    if not pos then
      if maxlen > 0 then
        pos = redis.call('XADD', stream, 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 2, i + 1 + m))
      else
        pos = redis.call('XADD', stream, '*', unpack(ARGV, i + 2, i + 1 + m))
      end
      if did ~= '' then
        redis.call('HSET', prefix .. cur, did, pos)
        redis.call('PEXPIREAT', prefix .. cur, expires)
      end
    end
    out[#out + 1] = pos
    i = i + 2 + m
  end
  if ARGV[2] ~= '' then redis.call('XTRIM', stream, 'MINID', '~', ARGV[2]) end
end
redis.call('SET', KEYS[2], table.concat(out, ',', 2), 'PX', ARGV[4])
return out
