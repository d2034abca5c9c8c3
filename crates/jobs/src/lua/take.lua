-- Picks the next queue entry for a consumer and delivers it, in one step:
--   1. retries whose backoff is over go back to their stream;
--   2. an entry whose worker went quiet past the visibility timeout is reclaimed;
--   3. else the waiting entry that is most urgent once aged is read with the group.
-- KEYS[1..3]: the streams, most urgent first; KEYS[4]: the delayed set.
-- ARGV: group, consumer, visibility timeout (ms), aging per level (ms), record key prefix.
-- Returns {priority, entry id, job id, record} or, when there is nothing,
-- {0, last id of each stream (3), earliest delayed due time or ''}.
local group, consumer = ARGV[1], ARGV[2]
local visibility, aging, record_prefix = ARGV[3], tonumber(ARGV[4]), ARGV[5]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

local function found(priority, entry)
  local fields, job = entry[2], ''
  for i = 1, #fields, 2 do
    if fields[i] == 'job' then job = fields[i + 1] end
  end
  return {priority, entry[1], job, redis.call('GET', record_prefix .. job)}
end

local due = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  local priority = tonumber(string.sub(member, 1, sep - 1))
  redis.call('XADD', KEYS[priority], '*', 'job', string.sub(member, sep + 1))
  redis.call('ZREM', KEYS[4], member)
end

for priority = 1, 3 do
  local stale = redis.call('XPENDING', KEYS[priority], group, 'IDLE', visibility, '-', '+', 1)
  if #stale > 0 then
    local claimed = redis.call('XCLAIM', KEYS[priority], group, consumer, visibility, stale[1][1])
    if #claimed > 0 and claimed[1] then return found(priority, claimed[1]) end
    -- The entry was deleted under its pending record: forget it.
    redis.call('XACK', KEYS[priority], group, stale[1][1])
  end
end

local best, best_score = nil, nil
for priority = 1, 3 do
  local delivered = '0-0'
  for _, info in ipairs(redis.call('XINFO', 'GROUPS', KEYS[priority])) do
    local name, last
    for i = 1, #info, 2 do
      if info[i] == 'name' then name = info[i + 1] end
      if info[i] == 'last-delivered-id' then last = info[i + 1] end
    end
    if name == group then delivered = last end
  end
  local head = redis.call('XRANGE', KEYS[priority], '(' .. delivered, '+', 'COUNT', 1)
  if #head > 0 then
    local enqueued = tonumber(string.match(head[1][1], '^(%d+)'))
    local score = (now - enqueued) + (3 - priority) * aging
    if best_score == nil or score > best_score then
      best, best_score = priority, score
    end
  end
end
if best then
  local read = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', 1, 'STREAMS', KEYS[best], '>')
  if read and read[1] and #read[1][2] > 0 then return found(best, read[1][2][1]) end
end

local tails = {}
for priority = 1, 3 do
  local last = redis.call('XREVRANGE', KEYS[priority], '+', '-', 'COUNT', 1)
  tails[priority] = (#last > 0) and last[1][1] or '0-0'
end
local next_due = redis.call('ZRANGE', KEYS[4], 0, 0, 'WITHSCORES')
return {0, tails[1], tails[2], tails[3], next_due[2] or ''}
