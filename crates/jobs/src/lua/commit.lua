-- Compare-and-set of one job record, with the queue changes that go with the change,
-- all or nothing. KEYS[1]: the record. ARGV: see `CommitArgs` in redis_queue.rs.
local expected, record = ARGV[1], ARGV[2]
local id, events_key, event = ARGV[3], ARGV[4], ARGV[5]
local old_index, new_index, all_index = ARGV[6], ARGV[7], ARGV[8]
local group, ack_stream, ack_entry = ARGV[9], ARGV[10], ARGV[11]
local delayed, requeue_member, requeue_ms = ARGV[12], ARGV[13], ARGV[14]
local dead, attempts, err = ARGV[15], ARGV[16], ARGV[17]
local enqueue, retention, idem_key = ARGV[18], tonumber(ARGV[19]), ARGV[20]
local owned_stream, owned_entry, owner = ARGV[21], ARGV[22], ARGV[23]
-- The tenant's own indexes (the tenant never changes, so old and new share it).
local tenant, tenant_old_index, tenant_new_index, tenant_all = ARGV[24], ARGV[25], ARGV[26], ARGV[27]
-- The idempotency key as written before tenants (only for the legacy tenant): checked on
-- submit and expired with the job, never written.
local legacy_idem = ARGV[28]
-- Finished jobs by when they expire, and the key bases their index entries are under.
local finished, finished_member, index_base, tenant_base = ARGV[29], ARGV[30], ARGV[31], ARGV[32]
-- On submit, the tenant's quota of jobs queued, running or retrying (0: none).
local max_active = tonumber(ARGV[33])

-- Checks first: nothing is written unless everything will be.
if owned_stream ~= '' then
  -- Starting an attempt from an entry this consumer no longer holds (another worker's
  -- outcome acknowledged it meanwhile) would run a job nobody can finish.
  local pending = redis.call('XPENDING', owned_stream, group, owned_entry, owned_entry, 1)
  if #pending == 0 or pending[1][2] ~= owner then return 'stale' end
end
if expected == '' then
  for _, key in ipairs({idem_key, legacy_idem}) do
    if key ~= '' then
      local existing = redis.call('GET', key)
      if existing then return 'exists:' .. existing end
    end
  end
end
if expected == '' and max_active > 0 then
  -- Counted in the same script as the submission, so concurrent submissions on any
  -- coordinator cannot overshoot the quota together.
  local active = 0
  for _, state in ipairs({'queued', 'running', 'retrying'}) do
    active = active + redis.call('ZCARD', tenant_base .. tenant .. ':index:' .. state)
  end
  if active >= max_active then return 'quota:' .. active end
end
local current = redis.call('GET', KEYS[1])
if expected == '' then
  if current then return 'conflict' end
elseif current ~= expected then
  return 'conflict'
end

redis.call('SET', KEYS[1], record)
if event ~= '' then
  redis.call('XADD', events_key, 'MAXLEN', '~', 1000, '*', 'e', event)
end
if old_index ~= new_index then
  if old_index ~= '' then redis.call('ZREM', old_index, id) end
  redis.call('ZADD', new_index, 0, id)
end
if all_index ~= '' then redis.call('ZADD', all_index, 0, id) end
if tenant_old_index ~= '' and tenant_old_index ~= tenant_new_index then
  redis.call('ZREM', tenant_old_index, id)
end
-- Added on every change, not only at submit, so a record from before tenants joins its
-- tenant's listing when it next changes.
redis.call('ZADD', tenant_new_index, 0, id)
redis.call('ZADD', tenant_all, 0, id)
if ack_stream ~= '' then
  redis.call('XACK', ack_stream, group, ack_entry)
  redis.call('XDEL', ack_stream, ack_entry)
end
if requeue_member ~= '' then
  local now = redis.call('TIME')
  local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  redis.call('ZADD', delayed, now_ms + tonumber(requeue_ms), requeue_member)
end
if dead ~= '' then
  redis.call('XADD', dead, 'MAXLEN', '~', 100000, '*', 'job', id, 'attempts', attempts, 'error', err, 'tenant', tenant)
end
if enqueue ~= '' then
  redis.call('XADD', enqueue, '*', 'job', id)
end
if idem_key ~= '' and expected == '' then
  redis.call('SET', idem_key, id)
end
local clock = redis.call('TIME')
local now_ms = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
if retention > 0 then
  redis.call('PEXPIRE', KEYS[1], retention)
  redis.call('PEXPIRE', events_key, retention)
  if idem_key ~= '' then redis.call('PEXPIRE', idem_key, retention) end
  if legacy_idem ~= '' and redis.call('GET', legacy_idem) == id then
    redis.call('PEXPIRE', legacy_idem, retention)
  end
  redis.call('ZADD', finished, now_ms + retention, finished_member)
end
-- The index entries of jobs whose records expired: a few per commit, which keeps up with
-- the one each finishing job adds, whether or not anyone lists.
for _, member in ipairs(redis.call('ZRANGEBYSCORE', finished, '-inf', now_ms, 'LIMIT', 0, 100)) do
  local job, state, owner = string.match(member, '^([^:]+):([^:]+):(.+)$')
  if job then
    redis.call('ZREM', index_base .. 'all', job)
    redis.call('ZREM', index_base .. state, job)
    redis.call('ZREM', tenant_base .. owner .. ':index:all', job)
    redis.call('ZREM', tenant_base .. owner .. ':index:' .. state, job)
  end
  redis.call('ZREM', finished, member)
end
return 'ok'
