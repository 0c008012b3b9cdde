-- consumer_forget: remove a consumer from a group, but only while it holds nothing.
-- KEYS[1]  a partition stream or a group's retry stream
-- ARGV[1]  group       ARGV[2] consumer
-- Returns 1 when the consumer was deleted, 0 when it holds pending entries (kept).
-- Checked and deleted in one script, so no read can slip in between and lose entries
-- (XGROUP DELCONSUMER drops a consumer's pending entries).
local p = redis.call('XPENDING', KEYS[1], ARGV[1], '-', '+', 1, ARGV[2])
if #p > 0 then return 0 end
redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], ARGV[2])
return 1
