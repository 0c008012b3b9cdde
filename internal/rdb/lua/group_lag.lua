-- group_lag: count the entries of a stream after a group's last delivered position (its true
-- lag), without trusting Redis's own lag figure (which trims and failovers leave wrong). It
-- counts from both ends at once, a page at a time, so the cost follows the smaller side.
-- KEYS[1]  the stream
-- ARGV[1]  the group's last delivered position    ARGV[2] most entries to look at
-- Returns {lag, 1} when counted, {-1, 0} when ARGV[2] entries were looked at (about half from each
-- end) without reaching an end of the count: the caller falls back to an estimate.
local len = redis.call('XLEN', KEYS[1])
if len == 0 then return {0, 1} end
local last = ARGV[1]
local cap = tonumber(ARGV[2])
local page = 1000
local after, before = 0, 0
local acur, bcur = '(' .. last, '-'
if last == '0-0' or last == '0' then return {len, 1} end
local function split(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  return tonumber(ms), tonumber(seq)
end
-- Fast path: the group has read up to the newest entry.
local top = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
local tm, ts = split(top[1][1])
local lm, ls = split(last)
if lm and (tm < lm or (tm == lm and ts <= ls)) then return {0, 1} end
while after + before < cap do
  local r = redis.call('XRANGE', KEYS[1], acur, '+', 'COUNT', page)
  after = after + #r
  if #r < page then return {after, 1} end
  acur = '(' .. r[#r][1]
  r = redis.call('XRANGE', KEYS[1], bcur, last, 'COUNT', page)
  before = before + #r
  if #r < page then return {len - before, 1} end
  bcur = '(' .. r[#r][1]
end
return {-1, 0}
