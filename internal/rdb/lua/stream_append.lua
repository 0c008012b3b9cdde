-- stream_append: append a batch of events to one partition, idempotently.
-- KEYS[1]  the partition stream                       {tag}:s
-- KEYS[2]  this producer's state on the partition     {tag}:p:<producer>
-- ARGV[1]  batch sequence: an integer, larger for every new batch of the producer
-- ARGV[2]  MAXLEN ~ retention (0 = none)
-- ARGV[3]  MINID ~ retention ("" = none)
-- ARGV[4]  dedupe window in ms for caller-set ids
-- ARGV[5]  dedupe key prefix                         {tag}:id:
-- ARGV[6]  producer state TTL in ms
-- ARGV[7]  number of events n; then per event: dedupe id ("" = none), field count m, m field/values
-- Returns {"ok"|"replay", pos1, ..., posn}. "replay": this sequence was applied before and the
-- positions are those of that first append. A position starting with "=" is the earlier append
-- of the same dedupe id. Error "HERALD_STALE ..." when the sequence is older than the last one.
local seq = tonumber(ARGV[1])
local st = redis.call('GET', KEYS[2])
if st then
  local sep = string.find(st, '|', 1, true)
  local last = tonumber(string.sub(st, 1, sep - 1))
  if seq == last then
    local out = {'replay'}
    for p in string.gmatch(string.sub(st, sep + 1), '[^,]+') do out[#out + 1] = p end
    return out
  elseif seq < last then
    return redis.error_reply('HERALD_STALE batch sequence ' .. seq .. ' is older than ' .. last)
  end
end
local maxlen = tonumber(ARGV[2])
local window = ARGV[4]
local prefix = ARGV[5]
local out = {'ok'}
local i = 8
for _ = 1, tonumber(ARGV[7]) do
  local did = ARGV[i]
  local m = tonumber(ARGV[i + 1])
  local pos = false
  if did ~= '' then
    pos = redis.call('GET', prefix .. did)
    if pos then pos = '=' .. pos end
  end
  if not pos then
    if maxlen > 0 then
      pos = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 2, i + 1 + m))
    else
      pos = redis.call('XADD', KEYS[1], '*', unpack(ARGV, i + 2, i + 1 + m))
    end
    if did ~= '' then redis.call('SET', prefix .. did, pos, 'PX', window) end
  end
  out[#out + 1] = pos
  i = i + 2 + m
end
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3]) end
redis.call('SET', KEYS[2], seq .. '|' .. table.concat(out, ',', 2), 'PX', ARGV[6])
return out
