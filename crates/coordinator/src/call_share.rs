//! Tenants' calls in flight shared between coordinators through Redis, so that a tenant's
//! `concurrent_calls` quota holds across every coordinator of the cluster, not per process.
//!
//! Each coordinator publishes its own counts every `interval` (a hash per coordinator,
//! expiring with it) and reads the others' sum in the same script; it admits a call when
//! its own calls plus the others' last published ones are under the limit. A burst spread
//! over several coordinators within one interval can still overshoot by what the others
//! admitted since they last published; counting every call in Redis would cost a round
//! trip on every call.

use std::collections::HashMap;
use std::time::Duration;

use polaroid_proto::retry::RetryPolicy;
use polaroid_server::TenantCalls;
use redis::Script;

/// Waits for a Redis that is not there yet.
const REDIS_AWAY: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    first_backoff: Duration::from_millis(200),
    max_backoff: Duration::from_secs(5),
    min_jitter: 0.5,
};

/// Publishes this coordinator's counts and returns every other live coordinator's sum.
/// KEYS[1]: the set of coordinators scored by expiry. ARGV: own id, time to live (ms),
/// the hash key prefix, then tenant, count pairs.
const SHARE_SCRIPT: &str = r#"
local own, ttl, prefix = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + ttl, own)
local mine = prefix .. own
redis.call('DEL', mine)
if #ARGV > 3 then
  redis.call('HSET', mine, unpack(ARGV, 4))
  redis.call('PEXPIRE', mine, ttl)
end
local totals = {}
for _, id in ipairs(redis.call('ZRANGE', KEYS[1], 0, -1)) do
  if id ~= own then
    local fields = redis.call('HGETALL', prefix .. id)
    for i = 1, #fields, 2 do
      totals[fields[i]] = (totals[fields[i]] or 0) + tonumber(fields[i + 1])
    end
  end
end
local reply = {}
for tenant, count in pairs(totals) do
  reply[#reply + 1] = tenant
  reply[#reply + 1] = tostring(count)
end
return reply
"#;

/// Shares `calls` with the other coordinators on `redis_url` every `interval`, until the
/// task is aborted. While Redis is away this coordinator counts its own calls alone.
pub async fn share_every(
    calls: TenantCalls,
    redis_url: String,
    prefix: String,
    interval: Duration,
) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(redis_url.as_str())?;
    // Redis may come up after this coordinator: keep trying, counting alone meanwhile.
    let mut failures = 0;
    let mut connection = loop {
        match redis::aio::ConnectionManager::new(client.clone()).await {
            Ok(connection) => break connection,
            Err(e) => {
                failures += 1;
                let pause = REDIS_AWAY.backoff(failures);
                tracing::warn!(error = %e, ?pause, "cannot reach Redis to share calls in flight");
                tokio::time::sleep(pause).await;
            }
        }
    };
    let own = format!("{:016x}", rand::random::<u64>());
    let script = Script::new(SHARE_SCRIPT);
    let registry = format!("{prefix}:quota:coordinators");
    let hashes = format!("{prefix}:quota:calls:");
    // Ten intervals: a coordinator that stalls briefly does not drop out of the sum.
    let ttl_ms = u64::try_from((interval * 10).as_millis()).unwrap_or(u64::MAX);
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let mut invocation = script.key(&registry);
        invocation.arg(&own).arg(ttl_ms).arg(&hashes);
        for (tenant, count) in calls.in_flight() {
            invocation.arg(tenant).arg(count);
        }
        match invocation
            .invoke_async::<Vec<String>>(&mut connection)
            .await
        {
            Ok(reply) => calls.set_elsewhere(totals(&reply)),
            Err(e) => {
                // Stale counts of others could refuse a tenant for as long as Redis is
                // away: count this coordinator's calls alone until it is back.
                calls.set_elsewhere(HashMap::new());
                tracing::warn!(error = %e, "sharing calls in flight failed");
            }
        }
    }
}

fn totals(reply: &[String]) -> HashMap<String, u32> {
    reply
        .chunks_exact(2)
        .filter_map(|pair| Some((pair[0].clone(), pair[1].parse().ok()?)))
        .collect()
}
