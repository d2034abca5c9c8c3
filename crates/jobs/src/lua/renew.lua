-- Renews a consumer's hold on a pending entry (resets its idle time) if it still holds
-- it. KEYS[1]: the stream; KEYS[2]: the job record. ARGV: group, consumer, entry id.
-- Returns {1 held / 0 lost, record}.
local pending = redis.call('XPENDING', KEYS[1], ARGV[1], ARGV[3], ARGV[3], 1)
if #pending == 0 or pending[1][2] ~= ARGV[2] then
  return {0, redis.call('GET', KEYS[2])}
end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return {1, redis.call('GET', KEYS[2])}
