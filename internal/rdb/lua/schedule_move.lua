-- schedule_move: move the partition's delayed events that are due to its stream, in due
-- order (ties by event id). One script, so two clients moving at once cannot both move an
-- event: whichever runs first moves it, the other finds it gone.
-- KEYS[1]  the partition's delay schedule (sorted set)   {tag}:delay
-- KEYS[2]  the delayed events' payloads (hash)            {tag}:delay:d
-- KEYS[3]  the partition stream                           {tag}:s
-- ARGV[1]  most events to move     ARGV[2] MAXLEN ~ of the stream (0 = none)
-- ARGV[3]  MINID ~ of the stream after a move ("" = none: the topic has no MaxAge)
-- Due is judged by the server's clock (TIME), so that movers on machines whose clocks
-- disagree still move nothing early by Redis's time.
-- Returns {moved, due time of the next event in ms or -1 when none is left, the server's
-- time in ms} (a mover waits next - now by its own clock: the clocks may disagree).
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, ARGV[1])
local maxlen = tonumber(ARGV[2])
for _, id in ipairs(due) do
  local f = redis.call('HGET', KEYS[2], id)
  if f then
    if maxlen > 0 then
      redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', unpack(cjson.decode(f)))
    else
      redis.call('XADD', KEYS[3], '*', unpack(cjson.decode(f)))
    end
  end
  redis.call('ZREM', KEYS[1], id)
  redis.call('HDEL', KEYS[2], id)
end
if #due > 0 and ARGV[3] and ARGV[3] ~= '' then
  redis.call('XTRIM', KEYS[3], 'MINID', '~', ARGV[3])
end
local nxt = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #nxt == 0 then return {#due, -1, now} end
return {#due, tonumber(nxt[2]), now}
