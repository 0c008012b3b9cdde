-- retention_trim: retention that respects consumer groups, and the count of what hard caps
-- took from groups, on one partition stream.
-- KEYS[1]  the partition stream                            {tag}:s
-- KEYS[2]  losses of the stream's groups (hash)             {tag}:lost
--          p:<group>  pending entries of the group whose payload a cap trimmed (counted once)
--          u:<group>  entries a cap trimmed before the group read them (the most ever seen)
--          w:<group>  first stream id when the group's pending entries were last counted
-- ARGV[1]  "1": trim the entries every group has acknowledged (XTRIM MINID, exact), "0": count only
-- A group's boundary is its oldest pending id, or the id after its last-delivered id when
-- nothing is pending; the stream is trimmed below the smallest boundary of all groups. A stream
-- without groups is not trimmed. Unread losses come from the group's lag (Redis 7: entries-added
-- minus entries-read, which keeps counting entries trimmed unread): lag - XLEN while the group's
-- last-delivered id is before the first entry. Returns {trimmed}.
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local function parse(id)
  local d = string.find(id, '-', 1, true)
  if not d then return tonumber(id), 0 end
  return tonumber(string.sub(id, 1, d - 1)), tonumber(string.sub(id, d + 1))
end
local function less(a, b)
  local am, as = parse(a)
  local bm, bs = parse(b)
  if am ~= bm then return am < bm end
  return as < bs
end
local function after(id)
  local m, s = parse(id)
  if s >= 9007199254740992 then return string.format('%.0f', m + 1) .. '-0' end
  return string.format('%.0f', m) .. '-' .. string.format('%.0f', s + 1)
end
local function before(id)
  local m, s = parse(id)
  if s > 0 then return string.format('%.0f', m) .. '-' .. string.format('%.0f', s - 1) end
  if m == 0 then return nil end
  return string.format('%.0f', m - 1) .. '-18446744073709551615'
end
local gs = redis.call('XINFO', 'GROUPS', KEYS[1])
if #gs == 0 then return {0} end
local xlen = redis.call('XLEN', KEYS[1])
local fe = redis.call('XRANGE', KEYS[1], '-', '+', 'COUNT', 1)
local first = nil
if #fe > 0 then first = fe[1][1] end
local minb = nil
for _, g in ipairs(gs) do
  local f = {}
  for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
  local name, last = f['name'], f['last-delivered-id']
  local b = after(last)
  if tonumber(f['pending']) > 0 then
    local sum = redis.call('XPENDING', KEYS[1], name)
    b = sum[2]
    -- pending entries below the first entry lost their payload to a cap: count each once
    local w = redis.call('HGET', KEYS[2], 'w:' .. name) or '0-0'
    if first and less(w, first) then
      local e = before(first)
      if e then
        local n = #redis.call('XPENDING', KEYS[1], name, w, e, 100000)
        if n > 0 then redis.call('HINCRBY', KEYS[2], 'p:' .. name, n) end
      end
      redis.call('HSET', KEYS[2], 'w:' .. name, first)
    end
  end
  local lag = f['lag']
  if lag and (first == nil or less(last, first)) then
    local u = tonumber(lag) - xlen
    local old = tonumber(redis.call('HGET', KEYS[2], 'u:' .. name) or '0')
    if u > old then redis.call('HSET', KEYS[2], 'u:' .. name, u) end
  end
  if minb == nil or less(b, minb) then minb = b end
end
if ARGV[1] ~= '1' or minb == nil then return {0} end
return {redis.call('XTRIM', KEYS[1], 'MINID', minb)}
