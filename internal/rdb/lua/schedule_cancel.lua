-- schedule_cancel: cancel a delayed event that has not been moved to the stream yet.
-- KEYS[1]  the partition's delay schedule (sorted set)   {tag}:delay
-- KEYS[2]  the delayed events' payloads (hash)            {tag}:delay:d
-- ARGV[1]  event id
-- Returns 1 when the event was scheduled and is now cancelled, 0 when it was not scheduled
-- (unknown id, cancelled before, or already delivered).
local n = redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
return n
