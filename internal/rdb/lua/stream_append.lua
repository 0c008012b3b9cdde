-- stream_append: append a batch of events to one partition, idempotently and in order.
-- KEYS[1]  the partition stream                       {tag}:s
-- KEYS[2]  this producer's state on the partition     {tag}:p:<producer>  (string)
-- ARGV[1]  batch sequence: the producer numbers its batches for the partition 1, 2, 3, ...
-- ARGV[2]  MAXLEN ~ retention (0 = none)
-- ARGV[3]  MINID ~ retention ("" = none)
-- ARGV[4]  dedupe window w in ms for caller-set ids
-- ARGV[5]  dedupe key prefix                         {tag}:id:
--          Dedupe ids live in hashes per time bucket, {tag}:id:<floor(now/w)>, field = id,
--          value = position; a batch looks its ids up in the current and the previous bucket
--          (one HMGET each) and records the new ones with one HSET. A bucket expires when
--          it can no longer be the previous one, so an id is remembered for w to 2w.
-- ARGV[6]  producer state TTL in ms
-- ARGV[7]  confirmed: every batch of the producer up to this sequence is settled
--          (appended, or given up by the producer)
-- ARGV[8]  number of events n
-- ARGV[9]  layout of the events that follow:
--          "g" general: per event dedupe id ("" = none), field count m, m field/values;
--          "s" short, for batches without dedupe ids whose events hold only the fields
--          i (event id) and d (data): per event the two values. Fewer arguments per event
--          is the cheapest part of this script to save (docs/design.md, "The append");
--          "u" the same, every event deduplicated by its id (field i).
-- The state is "<last sequence appended>|<its positions, comma-separated>": one batch of a
-- producer is in flight per partition, so the last batch is the only one a retry can repeat.
-- Returns {"ok"|"replay", pos1, ..., posn}. "replay": this sequence was appended before and the
-- positions are those of that first append. A position starting with "=" is the earlier append
-- of the same dedupe id. Errors: "HERALD_GAP ..." when an earlier batch of the producer has not
-- landed yet (retry: batches are applied in sequence order); "HERALD_STALE ..." when the
-- sequence is older than the last one (it was appended, or given up, before).
local seq = tonumber(ARGV[1])
local last = 0
local st = redis.call('GET', KEYS[2])
local sep
if st then
  sep = string.find(st, '|', 1, true)
  last = tonumber(string.sub(st, 1, sep - 1))
end
if seq <= last then
  if seq < last then
    return redis.error_reply('HERALD_STALE batch sequence ' .. seq .. ' is older than the last one (' .. last .. ')')
  end
  local out = {'replay'}
  for p in string.gmatch(string.sub(st, sep + 1), '[^,]+') do out[#out + 1] = p end
  return out
end
if math.max(last, tonumber(ARGV[7])) < seq - 1 then
  return redis.error_reply('HERALD_GAP batch sequence ' .. seq .. ' waits for ' .. (last + 1))
end
local maxlen = tonumber(ARGV[2])
local n = tonumber(ARGV[8])
local layout = ARGV[9]
local out = {'ok'}
local xadd
if maxlen > 0 then
  xadd = function(...) return redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', ...) end
else
  xadd = function(...) return redis.call('XADD', KEYS[1], '*', ...) end
end
if layout == 's' then -- the common case, without a function call per event
  local i = 10
  if maxlen > 0 then
    for k = 2, n + 1 do
      out[k] = redis.call('XADD', KEYS[1], 'MAXLEN', '~', maxlen, '*', '$FieldID', ARGV[i], '$FieldData', ARGV[i + 1])
      i = i + 2
    end
  else
    for k = 2, n + 1 do
      out[k] = redis.call('XADD', KEYS[1], '*', '$FieldID', ARGV[i], '$FieldData', ARGV[i + 1])
      i = i + 2
    end
  end
else
  -- Look every dedupe id of the batch up at once.
  local dids, known, fresh, bucket, expires = {}, {}, {}, nil, nil
  local i = 10
  for _ = 1, n do
    if layout == 'u' then
      dids[#dids + 1] = ARGV[i]
      i = i + 2
    else
      if ARGV[i] ~= '' then dids[#dids + 1] = ARGV[i] end
      i = i + 2 + tonumber(ARGV[i + 1])
    end
  end
  if #dids > 0 then
    local t = redis.call('TIME')
    local w = tonumber(ARGV[4])
    local b = math.floor((tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)) / w)
    bucket = ARGV[5] .. string.format('%d', b)
    expires = string.format('%d', (b + 2) * w)
    for _, key in ipairs({bucket, ARGV[5] .. string.format('%d', b - 1)}) do
      local vals = redis.call('HMGET', key, unpack(dids))
      for j = 1, #dids do
        if vals[j] and not known[dids[j]] then known[dids[j]] = vals[j] end
      end
    end
  end
  i = 10
  for k = 2, n + 1 do
    local did, pos
    if layout == 'u' then
      did = ARGV[i]
      pos = known[did]
      if pos then pos = '=' .. pos else pos = xadd('$FieldID', did, '$FieldData', ARGV[i + 1]) end
      i = i + 2
    else
      did = ARGV[i]
      local m = tonumber(ARGV[i + 1])
      if did ~= '' then pos = known[did] end
      if pos then pos = '=' .. pos else pos = xadd(unpack(ARGV, i + 2, i + 1 + m)) end
      i = i + 2 + m
    end
    if did ~= '' and not known[did] then
      known[did] = pos
      fresh[#fresh + 1] = did
      fresh[#fresh + 1] = pos
    end
    out[k] = pos
  end
  if #fresh > 0 then
    redis.call('HSET', bucket, unpack(fresh))
    redis.call('PEXPIREAT', bucket, expires)
  end
end
if ARGV[3] ~= '' then redis.call('XTRIM', KEYS[1], 'MINID', '~', ARGV[3]) end
redis.call('SET', KEYS[2], seq .. '|' .. table.concat(out, ',', 2), 'PX', ARGV[6])
return out
