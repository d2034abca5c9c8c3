//! Who is in the cluster: workers' leases and load, in this process or in Redis.
//!
//! One small trait, two backends, one conformance suite ([`conformance::run_all`]).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use polaroid_proto::v1::{WorkerInfo, WorkerLoad};
use polaroid_store::now_unix_ms;
use redis::AsyncCommands;

/// Why the membership records could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MembershipError {
    #[error("redis: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a membership record in redis is corrupt: {0}")]
    Corrupt(String),
}

pub type MembershipResult<T> = Result<T, MembershipError>;

/// A worker's membership record.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub worker_id: String,
    pub address: String,
    pub load: WorkerLoad,
    pub lease_expires_unix_ms: u64,
}

impl Member {
    pub fn to_info(&self) -> WorkerInfo {
        WorkerInfo {
            worker_id: self.worker_id.clone(),
            address: self.address.clone(),
            load: Some(self.load),
            lease_expires_unix_ms: self.lease_expires_unix_ms,
        }
    }
}

/// Where membership records live.
#[async_trait::async_trait]
pub trait Membership: Send + Sync + 'static {
    /// Adds `worker_id` or renews its lease until `lease` from now, with its latest load.
    async fn renew(
        &self,
        worker_id: &str,
        address: &str,
        load: WorkerLoad,
        lease: Duration,
    ) -> MembershipResult<()>;

    /// Removes a worker at once (it is draining). Removing an absent worker is not an error.
    async fn leave(&self, worker_id: &str) -> MembershipResult<()>;

    /// Workers whose lease has not expired, sorted by id.
    async fn live(&self) -> MembershipResult<Vec<Member>>;
}

fn lease_end(lease: Duration) -> u64 {
    now_unix_ms().saturating_add(u64::try_from(lease.as_millis()).unwrap_or(u64::MAX))
}

/// Membership in this process: for a lone coordinator (and standalone).
#[derive(Default)]
pub struct MemoryMembership {
    members: Mutex<HashMap<String, Member>>,
}

#[async_trait::async_trait]
impl Membership for MemoryMembership {
    async fn renew(
        &self,
        worker_id: &str,
        address: &str,
        load: WorkerLoad,
        lease: Duration,
    ) -> MembershipResult<()> {
        let member = Member {
            worker_id: worker_id.to_owned(),
            address: address.to_owned(),
            load,
            lease_expires_unix_ms: lease_end(lease),
        };
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.insert(worker_id.to_owned(), member);
        Ok(())
    }

    async fn leave(&self, worker_id: &str) -> MembershipResult<()> {
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.remove(worker_id);
        Ok(())
    }

    async fn live(&self) -> MembershipResult<Vec<Member>> {
        let now = now_unix_ms();
        let mut members = self.members.lock().unwrap_or_else(|p| p.into_inner());
        members.retain(|_, m| m.lease_expires_unix_ms > now);
        let mut live: Vec<Member> = members.values().cloned().collect();
        live.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(live)
    }
}

/// Membership in Redis, shared by every coordinator replica: a sorted set of worker ids
/// scored by lease expiry (`<prefix>:workers`) and one record per worker
/// (`<prefix>:worker:<id>`, JSON, expiring with its lease).
pub struct RedisMembership {
    connection: redis::aio::ConnectionManager,
    prefix: String,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredMember {
    address: String,
    in_flight_calls: u64,
    cache_bytes: u64,
    cpu_cores: f64,
    memory_bytes: u64,
    jobs_running: u64,
    lease_expires_unix_ms: u64,
}

impl RedisMembership {
    pub async fn connect(url: &str, prefix: &str) -> MembershipResult<Self> {
        let client = redis::Client::open(url)?;
        let connection = redis::aio::ConnectionManager::new(client).await?;
        Ok(Self {
            connection,
            prefix: prefix.to_owned(),
        })
    }

    fn set_key(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    fn member_key(&self, worker_id: &str) -> String {
        format!("{}:worker:{worker_id}", self.prefix)
    }

    /// Milliseconds since the epoch by Redis's clock: every coordinator reads leases by the
    /// same clock, so one whose own clock is off cannot expire the others' workers.
    async fn now_ms(&self) -> MembershipResult<u64> {
        let mut connection = self.connection.clone();
        let (secs, micros): (u64, u64) = redis::cmd("TIME").query_async(&mut connection).await?;
        Ok(secs * 1000 + micros / 1000)
    }
}

#[async_trait::async_trait]
impl Membership for RedisMembership {
    async fn renew(
        &self,
        worker_id: &str,
        address: &str,
        load: WorkerLoad,
        lease: Duration,
    ) -> MembershipResult<()> {
        let lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        let expires = self.now_ms().await?.saturating_add(lease_ms);
        let record = StoredMember {
            address: address.to_owned(),
            in_flight_calls: load.in_flight_calls,
            cache_bytes: load.cache_bytes,
            cpu_cores: load.cpu_cores,
            memory_bytes: load.memory_bytes,
            jobs_running: load.jobs_running,
            lease_expires_unix_ms: expires,
        };
        let json =
            serde_json::to_string(&record).map_err(|e| MembershipError::Corrupt(e.to_string()))?;
        let mut connection = self.connection.clone();
        // One transaction: a reader never sees the id without its record.
        redis::pipe()
            .atomic()
            .pset_ex(self.member_key(worker_id), json, lease_ms)
            .zadd(self.set_key(), worker_id, expires)
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn leave(&self, worker_id: &str) -> MembershipResult<()> {
        let mut connection = self.connection.clone();
        redis::pipe()
            .atomic()
            .del(self.member_key(worker_id))
            .zrem(self.set_key(), worker_id)
            .query_async::<()>(&mut connection)
            .await?;
        Ok(())
    }

    async fn live(&self) -> MembershipResult<Vec<Member>> {
        let now = self.now_ms().await?;
        let mut connection = self.connection.clone();
        // Expired ids are pruned by whichever coordinator reads first.
        let _: () = connection.zrembyscore(self.set_key(), 0, now).await?;
        let ids: Vec<String> = connection
            .zrangebyscore(self.set_key(), format!("({now}"), "+inf")
            .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let keys: Vec<String> = ids.iter().map(|id| self.member_key(id)).collect();
        let records: Vec<Option<String>> = connection.mget(&keys).await?;
        let mut live = Vec::with_capacity(ids.len());
        for (worker_id, record) in ids.into_iter().zip(records) {
            // A record that expired between the two reads: the worker is gone.
            let Some(json) = record else { continue };
            let stored: StoredMember = serde_json::from_str(&json)
                .map_err(|e| MembershipError::Corrupt(format!("{worker_id}: {e}")))?;
            if stored.lease_expires_unix_ms <= now {
                continue;
            }
            live.push(Member {
                worker_id,
                address: stored.address,
                load: WorkerLoad {
                    in_flight_calls: stored.in_flight_calls,
                    cache_bytes: stored.cache_bytes,
                    cpu_cores: stored.cpu_cores,
                    memory_bytes: stored.memory_bytes,
                    jobs_running: stored.jobs_running,
                },
                lease_expires_unix_ms: stored.lease_expires_unix_ms,
            });
        }
        live.sort_by(|a, b| a.worker_id.cmp(&b.worker_id));
        Ok(live)
    }
}

/// The behaviour every [`Membership`] backend must have. Backends' tests call
/// [`conformance::run_all`] on a fresh, empty instance.
pub mod conformance {
    use super::*;

    fn load(in_flight_calls: u64) -> WorkerLoad {
        WorkerLoad {
            in_flight_calls,
            cache_bytes: 1 << 20,
            cpu_cores: 0.5,
            memory_bytes: 1 << 30,
            jobs_running: 0,
        }
    }

    fn ids(members: &[Member]) -> Vec<&str> {
        members.iter().map(|m| m.worker_id.as_str()).collect()
    }

    pub async fn run_all(membership: &dyn Membership) {
        empty_has_no_one(membership).await;
        renew_registers_and_updates(membership).await;
        leave_removes_and_is_idempotent(membership).await;
        expired_leases_drop_out(membership).await;
    }

    async fn empty_has_no_one(membership: &dyn Membership) {
        assert!(membership.live().await.expect("live").is_empty());
    }

    async fn renew_registers_and_updates(membership: &dyn Membership) {
        let lease = Duration::from_secs(30);
        membership
            .renew("w-b", "127.0.0.1:2", load(1), lease)
            .await
            .expect("renew");
        membership
            .renew("w-a", "127.0.0.1:1", load(2), lease)
            .await
            .expect("renew");
        membership
            .renew("w-b", "127.0.0.1:3", load(7), lease)
            .await
            .expect("renew again");
        let live = membership.live().await.expect("live");
        assert_eq!(ids(&live), ["w-a", "w-b"], "sorted, each once");
        assert_eq!(live[1].address, "127.0.0.1:3", "the latest report wins");
        assert_eq!(live[1].load, load(7));
        assert!(live[0].lease_expires_unix_ms > now_unix_ms() + 20_000);
    }

    async fn leave_removes_and_is_idempotent(membership: &dyn Membership) {
        membership.leave("w-a").await.expect("leave");
        membership.leave("w-a").await.expect("leave twice");
        membership
            .leave("never-there")
            .await
            .expect("leave unknown");
        assert_eq!(ids(&membership.live().await.expect("live")), ["w-b"]);
        membership.leave("w-b").await.expect("leave");
    }

    async fn expired_leases_drop_out(membership: &dyn Membership) {
        membership
            .renew(
                "w-short",
                "127.0.0.1:4",
                load(0),
                Duration::from_millis(150),
            )
            .await
            .expect("renew");
        membership
            .renew("w-long", "127.0.0.1:5", load(0), Duration::from_secs(30))
            .await
            .expect("renew");
        assert_eq!(
            ids(&membership.live().await.expect("live")),
            ["w-long", "w-short"]
        );
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            let live = membership.live().await.expect("live");
            if ids(&live) == ["w-long"] {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "an expired lease stayed live"
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        // Renewing after expiry registers again.
        membership
            .renew("w-short", "127.0.0.1:4", load(0), Duration::from_secs(30))
            .await
            .expect("renew");
        assert_eq!(
            ids(&membership.live().await.expect("live")),
            ["w-long", "w-short"]
        );
        membership.leave("w-short").await.expect("leave");
        membership.leave("w-long").await.expect("leave");
    }

    #[cfg(test)]
    mod tests {
        #[tokio::test]
        async fn memory_membership_conforms() {
            super::run_all(&super::MemoryMembership::default()).await;
        }
    }
}
