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

use polaroid_server::TenantCalls;
use redis::Script;

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
/// task is aborted. Redis being away leaves the last known counts in place.
pub async fn share_every(
    calls: TenantCalls,
    redis_url: String,
    prefix: String,
    interval: Duration,
) -> Result<(), redis::RedisError> {
    let client = redis::Client::open(redis_url.as_str())?;
    let mut connection = redis::aio::ConnectionManager::new(client).await?;
    let own = format!("{:016x}", rand::random::<u64>());
    let script = Script::new(SHARE_SCRIPT);
    let registry = format!("{prefix}:quota:coordinators");
    let hashes = format!("{prefix}:quota:calls:");
    // Three intervals: one late publication does not make a coordinator's calls vanish.
    let ttl_ms = u64::try_from((interval * 3).as_millis()).unwrap_or(u64::MAX);
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
            Err(e) => tracing::warn!(error = %e, "sharing calls in flight failed"),
        }
    }
}

fn totals(reply: &[String]) -> HashMap<String, u32> {
    reply
        .chunks_exact(2)
        .filter_map(|pair| Some((pair[0].clone(), pair[1].parse().ok()?)))
        .collect()
}
