//! The production queue on Redis Streams: one stream per priority read by a consumer
//! group of workers, a sorted set of retries waiting out their backoff, a dead-letter
//! stream, and job records (protobuf) with their event streams.
//!
//! Every change of a record is a compare-and-set in one Lua script together with the
//! queue changes that go with it, so a crash between the two cannot happen. Keys, under
//! the configured prefix `P` (one Redis, not Redis Cluster), with `T` a tenant:
//!
//! | key | what |
//! |---|---|
//! | `P:jobs:q:{high,normal,low}` | the streams; entries carry `job` = id |
//! | `P:jobs:delayed` | retries, scored by when they are due (Redis's clock) |
//! | `P:jobs:dead` | the dead-letter stream: `job`, `attempts`, `error`, `tenant` |
//! | `P:job:ID`, `P:job:ID:events` | a job's record and its events |
//! | `P:jobs:index:{all,STATE}` | every tenant's job ids by state, for admins' listings (scores 0, ids sort by time) |
//! | `P:jobs:t:T:index:{all,STATE}` | the same for tenant `T` alone |
//! | `P:jobs:t:T:idem:KEY` | the job of `T` an idempotency key created |
//! | `P:jobs:finished` | `ID:STATE:T` of finished jobs, scored by when their records expire, so that their index entries go with them |
//! | `P:jobs:tenancy` | set once the records from before tenants are in `default`'s indexes |
//!
//! A tenant name has no `:` ([`crate::valid_tenant`]), so `P:jobs:t:T:` names one tenant
//! whatever the idempotency key after it holds; the keys from before tenants
//! (`P:jobs:idem:KEY`) are outside `P:jobs:t:`, are read for the legacy tenant only, and
//! are never written.

use std::time::Duration;

use polaroid_proto::v1::{Job, JobEvent, JobPriority, JobProgress, JobResult, JobSpec, JobState};
use prost::Message;
use redis::aio::ConnectionManager;
use redis::{Script, Value};
use tokio::sync::Mutex;

use crate::lifecycle::{self, PRIORITIES, Transition, is_terminal, priority_name, state_name};
use crate::{
    DeadLetter, EntryRef, EventBatch, FailureOutcome, JobPage, JobQueue, LEGACY_TENANT, Lease,
    LeaseStatus, QueueError, QueueResult, QueueSettings, StreamDepth, checked_tenant, valid_tenant,
    with_tenant,
};

const GROUP: &str = "workers";
/// Compare-and-set attempts before an update gives up (only contention makes it retry).
const UPDATE_ATTEMPTS: usize = 32;
/// The longest a worker blocks on the streams before looking at retries and stale entries.
const MAX_BLOCK: Duration = Duration::from_millis(250);
/// Ids (or entries) read per round trip when walking an index or a stream.
const CHUNK: usize = 1000;

pub struct RedisQueue {
    settings: QueueSettings,
    prefix: String,
    connection: ConnectionManager,
    /// Blocking reads get their own connection, so they never hold up other commands.
    blocking: Mutex<ConnectionManager>,
    commit: Script,
    take: Script,
    renew: Script,
}

/// What the take script found.
enum Taken {
    Entry {
        priority: JobPriority,
        entry: String,
        job_id: String,
        record: Option<Vec<u8>>,
    },
    Nothing {
        tails: [String; 3],
        next_due_ms: Option<u64>,
    },
}

impl RedisQueue {
    /// Connects to `url` and makes sure the streams and the consumer group exist.
    pub async fn connect(url: &str, prefix: &str, settings: QueueSettings) -> QueueResult<Self> {
        let client = redis::Client::open(url)?;
        let connection = ConnectionManager::new(client.clone()).await?;
        let blocking_config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(2)));
        let blocking = ConnectionManager::new_with_config(client, blocking_config).await?;
        let queue = Self {
            settings,
            prefix: prefix.to_owned(),
            connection,
            blocking: Mutex::new(blocking),
            commit: Script::new(include_str!("lua/commit.lua")),
            take: Script::new(include_str!("lua/take.lua")),
            renew: Script::new(include_str!("lua/renew.lua")),
        };
        queue.create_groups().await?;
        queue.index_untenanted_records().await?;
        Ok(queue)
    }

    /// Adds the records written before jobs had tenants to the legacy tenant's indexes,
    /// once per Redis (they were only in the global ones). Every process may do it at once:
    /// it only adds. A record that changes later is (re)indexed by the change itself.
    async fn index_untenanted_records(&self) -> QueueResult<()> {
        let mut connection = self.connection.clone();
        let marker = format!("{}:jobs:tenancy", self.prefix);
        let done: bool = redis::cmd("EXISTS")
            .arg(&marker)
            .query_async(&mut connection)
            .await?;
        if done {
            return Ok(());
        }
        let mut after = "-".to_owned();
        loop {
            let ids: Vec<String> = redis::cmd("ZRANGEBYLEX")
                .arg(self.index_key(None))
                .arg(&after)
                .arg("+")
                .arg("LIMIT")
                .arg(0)
                .arg(CHUNK)
                .query_async(&mut connection)
                .await?;
            let Some(last) = ids.last() else { break };
            after = format!("({last}");
            let keys: Vec<String> = ids.iter().map(|id| self.record_key(id)).collect();
            let records: Vec<Option<Vec<u8>>> = redis::cmd("MGET")
                .arg(keys)
                .query_async(&mut connection)
                .await?;
            let mut pipe = redis::pipe();
            let mut untenanted = 0;
            for (id, record) in ids.iter().zip(records) {
                // Decoded as stored: an empty tenant is what marks a record from before.
                let Some(job) = record.and_then(|bytes| Job::decode(bytes.as_slice()).ok()) else {
                    continue;
                };
                if job.tenant.is_empty() {
                    untenanted += 1;
                    for state in [None, Some(job.state())] {
                        pipe.cmd("ZADD")
                            .arg(self.tenant_index_key(LEGACY_TENANT, state))
                            .arg(0)
                            .arg(id)
                            .ignore();
                    }
                }
            }
            if untenanted > 0 {
                let _: () = pipe.query_async(&mut connection).await?;
            }
        }
        let _: () = redis::cmd("SET")
            .arg(&marker)
            .arg(1)
            .query_async(&mut connection)
            .await?;
        Ok(())
    }

    async fn create_groups(&self) -> QueueResult<()> {
        let mut connection = self.connection.clone();
        for priority in PRIORITIES {
            let created: redis::RedisResult<()> = redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(self.stream(priority))
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM")
                .query_async(&mut connection)
                .await;
            match created {
                Err(e) if e.code() == Some("BUSYGROUP") => {}
                other => other?,
            }
        }
        Ok(())
    }

    fn stream(&self, priority: JobPriority) -> String {
        format!("{}:jobs:q:{}", self.prefix, priority_name(priority))
    }

    fn record_key(&self, id: &str) -> String {
        format!("{}:job:{id}", self.prefix)
    }

    fn events_key(&self, id: &str) -> String {
        format!("{}:job:{id}:events", self.prefix)
    }

    fn index_key(&self, state: Option<JobState>) -> String {
        let name = state.map_or("all", state_name);
        format!("{}:jobs:index:{name}", self.prefix)
    }

    /// Tenant `T`'s keys are under `P:jobs:t:T:`.
    fn tenant_base(&self) -> String {
        format!("{}:jobs:t:", self.prefix)
    }

    fn tenant_index_key(&self, tenant: &str, state: Option<JobState>) -> String {
        let name = state.map_or("all", state_name);
        format!("{}{tenant}:index:{name}", self.tenant_base())
    }

    fn idempotency_key(&self, tenant: &str, key: &str) -> String {
        format!("{}{tenant}:idem:{key}", self.tenant_base())
    }

    /// Where an idempotency key of the legacy tenant was kept before tenants.
    fn legacy_idempotency_key(&self, tenant: &str, key: &str) -> String {
        if tenant == LEGACY_TENANT && !key.is_empty() {
            format!("{}:jobs:idem:{key}", self.prefix)
        } else {
            String::new()
        }
    }

    fn finished_key(&self) -> String {
        format!("{}:jobs:finished", self.prefix)
    }

    fn delayed_key(&self) -> String {
        format!("{}:jobs:delayed", self.prefix)
    }

    fn dead_key(&self) -> String {
        format!("{}:jobs:dead", self.prefix)
    }

    async fn record(&self, id: &str) -> QueueResult<Option<(Vec<u8>, Job)>> {
        let bytes: Option<Vec<u8>> = redis::cmd("GET")
            .arg(self.record_key(id))
            .query_async(&mut self.connection.clone())
            .await?;
        bytes
            .map(|bytes| {
                let job = decode_job(&bytes)?;
                Ok((bytes, job))
            })
            .transpose()
    }

    /// Writes `transition` if the record is still `expected` (empty: absent). Returns
    /// `Ok(None)` on a conflict, or the id of the job an idempotency key already names.
    async fn commit(
        &self,
        expected: &[u8],
        old_state: Option<JobState>,
        transition: &Transition,
        entry: Option<&EntryRef>,
        submission: Option<Submission>,
        owned_by: Option<&str>,
    ) -> QueueResult<CommitReply> {
        let submit = submission.is_some();
        let job = &transition.job;
        // Records are only written with a checked tenant; this keeps a damaged one out of
        // the keys the script builds from it.
        if !valid_tenant(&job.tenant) {
            return Err(QueueError::Corrupt(format!(
                "job {} has the tenant `{}`",
                job.id, job.tenant
            )));
        }
        let spec = job.spec.clone().unwrap_or_default();
        let event = transition
            .event
            .as_ref()
            .map(Message::encode_to_vec)
            .unwrap_or_default();
        let ack = entry.filter(|_| transition.acknowledge);
        let requeue_member = transition
            .requeue_after
            .map(|_| format!("{}:{}", priority_index(spec.priority()), job.id))
            .unwrap_or_default();
        let retention_ms = if is_terminal(job.state()) {
            millis(self.settings.retention).max(1)
        } else {
            0
        };
        let tenant = job.tenant.as_str();
        let reply: String = self
            .commit
            .key(self.record_key(&job.id))
            .arg(expected)
            .arg(job.encode_to_vec())
            .arg(&job.id)
            .arg(self.events_key(&job.id))
            .arg(event)
            .arg(
                old_state
                    .map(|s| self.index_key(Some(s)))
                    .unwrap_or_default(),
            )
            .arg(self.index_key(Some(job.state())))
            .arg(if submit {
                self.index_key(None)
            } else {
                String::new()
            })
            .arg(GROUP)
            .arg(ack.map(|e| self.stream(e.priority)).unwrap_or_default())
            .arg(ack.map(|e| e.id.clone()).unwrap_or_default())
            .arg(self.delayed_key())
            .arg(requeue_member)
            .arg(transition.requeue_after.map_or(0, millis))
            .arg(if transition.dead_letter {
                self.dead_key()
            } else {
                String::new()
            })
            .arg(job.attempts)
            .arg(&job.error)
            .arg(if submit {
                self.stream(spec.priority())
            } else {
                String::new()
            })
            .arg(retention_ms)
            .arg(if spec.idempotency_key.is_empty() {
                String::new()
            } else {
                self.idempotency_key(tenant, &spec.idempotency_key)
            })
            .arg(
                entry
                    .filter(|_| owned_by.is_some())
                    .map(|e| self.stream(e.priority))
                    .unwrap_or_default(),
            )
            .arg(entry.map(|e| e.id.clone()).unwrap_or_default())
            .arg(owned_by.unwrap_or_default())
            .arg(tenant)
            .arg(
                old_state
                    .map(|s| self.tenant_index_key(tenant, Some(s)))
                    .unwrap_or_default(),
            )
            .arg(self.tenant_index_key(tenant, Some(job.state())))
            .arg(self.tenant_index_key(tenant, None))
            .arg(self.legacy_idempotency_key(tenant, &spec.idempotency_key))
            .arg(self.finished_key())
            .arg(format!("{}:{}:{tenant}", job.id, state_name(job.state())))
            .arg(format!("{}:jobs:index:", self.prefix))
            .arg(self.tenant_base())
            .arg(submission.map_or(0, |s| s.max_active))
            .invoke_async(&mut self.connection.clone())
            .await?;
        Ok(match reply.as_str() {
            "ok" => CommitReply::Done,
            "conflict" => CommitReply::Conflict,
            "stale" => CommitReply::Stale,
            other => match (other.strip_prefix("exists:"), other.strip_prefix("quota:")) {
                (Some(id), _) => CommitReply::Exists(id.to_owned()),
                (_, Some(active)) => CommitReply::OverQuota(active.parse().unwrap_or(0)),
                _ => return Err(QueueError::Corrupt(format!("commit replied `{other}`"))),
            },
        })
    }

    /// Applies `change` to the current record of `id` until the compare-and-set holds.
    async fn update(
        &self,
        id: &str,
        entry: Option<&EntryRef>,
        missing: impl Fn() -> QueueError,
        mut change: impl FnMut(&Job) -> QueueResult<Option<Transition>>,
    ) -> QueueResult<(Job, Option<Transition>)> {
        for _ in 0..UPDATE_ATTEMPTS {
            let (bytes, job) = self.record(id).await?.ok_or_else(&missing)?;
            let Some(transition) = change(&job)? else {
                return Ok((job, None));
            };
            match self
                .commit(&bytes, Some(job.state()), &transition, entry, None, None)
                .await?
            {
                CommitReply::Done => return Ok((transition.job.clone(), Some(transition))),
                CommitReply::Conflict
                | CommitReply::Stale
                | CommitReply::Exists(_)
                | CommitReply::OverQuota(_) => continue,
            }
        }
        Err(QueueError::Contended(id.to_owned()))
    }

    async fn update_lease(
        &self,
        lease: &Lease,
        change: impl FnMut(&Job) -> QueueResult<Option<Transition>>,
    ) -> QueueResult<(Job, Option<Transition>)> {
        let id = lease.job.id.clone();
        self.update(
            &lease.job.id,
            Some(&lease.entry),
            || QueueError::LeaseLost(id.clone()),
            change,
        )
        .await
    }

    async fn take_once(&self, consumer: &str) -> QueueResult<Taken> {
        let mut invocation = self.take.prepare_invoke();
        for priority in PRIORITIES {
            invocation.key(self.stream(priority));
        }
        invocation
            .key(self.delayed_key())
            .arg(GROUP)
            .arg(consumer)
            .arg(millis(self.settings.visibility_timeout))
            .arg(millis(self.settings.priority_aging))
            .arg(format!("{}:job:", self.prefix));
        let reply: Value = match invocation.invoke_async(&mut self.connection.clone()).await {
            Err(e) if e.code() == Some("NOGROUP") => {
                // Redis lost the group (restarted without persistence): make it again.
                self.create_groups().await?;
                invocation
                    .invoke_async(&mut self.connection.clone())
                    .await?
            }
            other => other?,
        };
        parse_taken(reply)
    }

    /// Acknowledges and deletes an entry that will never run.
    async fn drop_entry(&self, entry: &EntryRef) -> QueueResult<()> {
        let stream = self.stream(entry.priority);
        let _: () = redis::pipe()
            .cmd("XACK")
            .arg(&stream)
            .arg(GROUP)
            .arg(&entry.id)
            .ignore()
            .cmd("XDEL")
            .arg(&stream)
            .arg(&entry.id)
            .ignore()
            .query_async(&mut self.connection.clone())
            .await?;
        Ok(())
    }

    /// Each stream's length and pending count, and the delayed set's members.
    async fn depth_once(&self) -> redis::RedisResult<Vec<Value>> {
        let mut pipe = redis::pipe();
        for priority in PRIORITIES {
            pipe.cmd("XLEN").arg(self.stream(priority));
            pipe.cmd("XPENDING").arg(self.stream(priority)).arg(GROUP);
        }
        pipe.cmd("ZRANGE").arg(self.delayed_key()).arg(0).arg(-1);
        pipe.query_async(&mut self.connection.clone()).await
    }

    /// Blocks until something is appended after `tails`, or `wait` passes.
    async fn wait_for_entries(&self, tails: &[String; 3], wait: Duration) -> QueueResult<()> {
        let mut command = redis::cmd("XREAD");
        command
            .arg("COUNT")
            .arg(1)
            .arg("BLOCK")
            .arg(millis(wait).max(1));
        command.arg("STREAMS");
        for priority in PRIORITIES {
            command.arg(self.stream(priority));
        }
        command.arg(tails.as_slice());
        let mut connection = self.blocking.lock().await;
        let _: Value = command.query_async(&mut *connection).await?;
        Ok(())
    }
}

enum CommitReply {
    Done,
    Conflict,
    /// The entry is no longer this consumer's.
    Stale,
    Exists(String),
    /// The tenant has this many active jobs, its quota.
    OverQuota(u64),
}

/// A commit that records a new job, and the tenant's quota of active jobs (0: none).
#[derive(Debug, Clone, Copy)]
struct Submission {
    max_active: u32,
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// 1-based position of a priority among the streams (the take script's numbering).
fn priority_index(priority: JobPriority) -> usize {
    lifecycle::priority_rank(priority) + 1
}

/// Whether `text` is a stream entry id (`<ms>-<seq>`).
fn is_stream_id(text: &str) -> bool {
    text.split_once('-').is_some_and(|(ms, seq)| {
        [ms, seq].iter().all(|part| {
            !part.is_empty() && part.len() <= 20 && part.bytes().all(|b| b.is_ascii_digit())
        })
    })
}

/// A stored record as reported (with its tenant filled in when it predates tenants).
fn decode_job(bytes: &[u8]) -> QueueResult<Job> {
    Job::decode(bytes)
        .map(with_tenant)
        .map_err(|e| QueueError::Corrupt(format!("job record: {e}")))
}

fn text(value: &Value) -> QueueResult<String> {
    match value {
        Value::BulkString(bytes) => String::from_utf8(bytes.clone())
            .map_err(|e| QueueError::Corrupt(format!("not text: {e}"))),
        Value::SimpleString(s) => Ok(s.clone()),
        Value::Int(n) => Ok(n.to_string()),
        other => Err(QueueError::Corrupt(format!("expected text, got {other:?}"))),
    }
}

fn parse_taken(reply: Value) -> QueueResult<Taken> {
    let corrupt = |what: &str| QueueError::Corrupt(format!("take replied {what}"));
    let Value::Array(items) = reply else {
        return Err(corrupt("something other than an array"));
    };
    let Some(Value::Int(first)) = items.first() else {
        return Err(corrupt("without a priority"));
    };
    if *first == 0 {
        let tail = |i: usize| items.get(i).map(text).transpose();
        let tails = [
            tail(1)?.unwrap_or_else(|| "0-0".into()),
            tail(2)?.unwrap_or_else(|| "0-0".into()),
            tail(3)?.unwrap_or_else(|| "0-0".into()),
        ];
        let next_due_ms = tail(4)?
            .and_then(|t| t.parse::<f64>().ok())
            .map(|t| t as u64);
        return Ok(Taken::Nothing { tails, next_due_ms });
    }
    let priority = usize::try_from(*first)
        .ok()
        .and_then(|i| PRIORITIES.get(i.wrapping_sub(1)))
        .copied()
        .ok_or_else(|| corrupt("an unknown priority"))?;
    let entry = text(items.get(1).ok_or_else(|| corrupt("without an entry"))?)?;
    let job_id = text(items.get(2).ok_or_else(|| corrupt("without a job"))?)?;
    let record = match items.get(3) {
        Some(Value::BulkString(bytes)) => Some(bytes.clone()),
        _ => None,
    };
    Ok(Taken::Entry {
        priority,
        entry,
        job_id,
        record,
    })
}

/// A stream entry's field/value pairs.
type Fields = Vec<(String, Vec<u8>)>;

/// Entries of an XRANGE reply: (id, fields).
fn stream_entries(reply: Value) -> QueueResult<Vec<(String, Fields)>> {
    let Value::Array(entries) = reply else {
        return Ok(Vec::new());
    };
    entries
        .into_iter()
        .map(|entry| {
            let Value::Array(mut parts) = entry else {
                return Err(QueueError::Corrupt("stream entry is not an array".into()));
            };
            let fields = match parts.pop() {
                Some(Value::Array(fields)) => fields,
                _ => return Err(QueueError::Corrupt("stream entry has no fields".into())),
            };
            let id = text(parts.first().unwrap_or(&Value::Nil))?;
            let mut pairs = Vec::with_capacity(fields.len() / 2);
            for pair in fields.chunks(2) {
                if let [name, Value::BulkString(value)] = pair {
                    pairs.push((text(name)?, value.clone()));
                }
            }
            Ok((id, pairs))
        })
        .collect()
}

fn field<'a>(fields: &'a [(String, Vec<u8>)], name: &str) -> Option<&'a [u8]> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_slice())
}

#[async_trait::async_trait]
impl JobQueue for RedisQueue {
    async fn submit(
        &self,
        id: &str,
        tenant: &str,
        spec: JobSpec,
        max_active: Option<u32>,
    ) -> QueueResult<(Job, bool)> {
        let tenant = checked_tenant(tenant)?;
        let transition = lifecycle::submitted(id, tenant, spec, &self.settings);
        match self
            .commit(
                &[],
                None,
                &transition,
                None,
                Some(Submission {
                    max_active: max_active.unwrap_or(0),
                }),
                None,
            )
            .await?
        {
            CommitReply::OverQuota(active) => Err(QueueError::QuotaExceeded {
                tenant: tenant.to_owned(),
                active,
                limit: max_active.unwrap_or_default(),
            }),
            CommitReply::Done => Ok((transition.job, true)),
            CommitReply::Exists(existing) => {
                let (_, job) = self
                    .record(&existing)
                    .await?
                    .ok_or_else(|| QueueError::NotFound(existing.clone()))?;
                Ok((job, false))
            }
            CommitReply::Conflict | CommitReply::Stale => {
                Err(QueueError::Corrupt(format!("job id {id} is taken already")))
            }
        }
    }

    async fn get(&self, id: &str) -> QueueResult<Option<Job>> {
        Ok(self.record(id).await?.map(|(_, job)| job))
    }

    async fn find(&self, tenant: &str, idempotency_key: &str) -> QueueResult<Option<Job>> {
        let tenant = checked_tenant(tenant)?;
        if idempotency_key.is_empty() {
            return Ok(None);
        }
        let mut connection = self.connection.clone();
        let mut id: Option<String> = redis::cmd("GET")
            .arg(self.idempotency_key(tenant, idempotency_key))
            .query_async(&mut connection)
            .await?;
        let legacy = self.legacy_idempotency_key(tenant, idempotency_key);
        if id.is_none() && !legacy.is_empty() {
            id = redis::cmd("GET")
                .arg(legacy)
                .query_async(&mut connection)
                .await?;
        }
        match id {
            Some(id) => Ok(self.get(&id).await?.filter(|job| job.tenant == tenant)),
            None => Ok(None),
        }
    }

    async fn list(
        &self,
        tenant: Option<&str>,
        state: Option<JobState>,
        page_size: usize,
        page_token: &str,
    ) -> QueueResult<JobPage> {
        let tenant = tenant.map(checked_tenant).transpose()?;
        if !page_token.is_empty() && !crate::valid_job_id(page_token) {
            return Err(QueueError::InvalidPageToken(page_token.to_owned()));
        }
        // A tenant's own index: its listing never walks other tenants' jobs.
        let index = match tenant {
            Some(tenant) => self.tenant_index_key(tenant, state),
            None => self.index_key(state),
        };
        let mut connection = self.connection.clone();
        let mut jobs = Vec::with_capacity(page_size);
        let mut after = page_token.to_owned();
        let page_size = page_size.max(1);
        loop {
            let max = if after.is_empty() {
                "+".to_owned()
            } else {
                format!("({after}")
            };
            // One more than needed, to know whether another page follows.
            let ids: Vec<String> = redis::cmd("ZREVRANGEBYLEX")
                .arg(&index)
                .arg(max)
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(page_size + 1 - jobs.len())
                .query_async(&mut connection)
                .await?;
            let exhausted = ids.len() < page_size + 1 - jobs.len();
            for id in ids {
                after.clone_from(&id);
                match self.record(&id).await? {
                    // Still in that state: index moves and records change together.
                    Some((_, job))
                        if state.is_none_or(|s| job.state() == s)
                            && tenant.is_none_or(|t| job.tenant == t) =>
                    {
                        if jobs.len() == page_size {
                            return Ok(JobPage {
                                next_page_token: jobs
                                    .last()
                                    .map(|j: &Job| j.id.clone())
                                    .unwrap_or_default(),
                                jobs,
                            });
                        }
                        jobs.push(job);
                    }
                    Some(_) => {}
                    // Expired after its retention: drop it from the index.
                    None => {
                        let _: () = redis::cmd("ZREM")
                            .arg(&index)
                            .arg(&id)
                            .query_async(&mut connection)
                            .await?;
                    }
                }
            }
            if exhausted {
                return Ok(JobPage {
                    jobs,
                    next_page_token: String::new(),
                });
            }
        }
    }

    async fn cancel(&self, id: &str) -> QueueResult<Job> {
        let (job, _) = self
            .update(
                id,
                None,
                || QueueError::NotFound(id.to_owned()),
                |job| Ok(lifecycle::cancel_requested(job)),
            )
            .await?;
        Ok(job)
    }

    async fn events(&self, id: &str, cursor: &str) -> QueueResult<EventBatch> {
        let start = if cursor.is_empty() {
            "-".to_owned()
        } else if is_stream_id(cursor) {
            format!("({cursor}")
        } else {
            return Err(QueueError::InvalidPageToken(cursor.to_owned()));
        };
        let reply: Value = redis::cmd("XRANGE")
            .arg(self.events_key(id))
            .arg(start)
            .arg("+")
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut self.connection.clone())
            .await?;
        let mut batch = EventBatch {
            events: Vec::new(),
            next: cursor.to_owned(),
        };
        for (entry, fields) in stream_entries(reply)? {
            if let Some(bytes) = field(&fields, "e") {
                batch.events.push(
                    JobEvent::decode(bytes)
                        .map_err(|e| QueueError::Corrupt(format!("job event: {e}")))?,
                );
            }
            batch.next = entry;
        }
        Ok(batch)
    }

    async fn take(&self, consumer: &str, wait: Duration) -> QueueResult<Option<Lease>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match self.take_once(consumer).await? {
                Taken::Entry {
                    priority,
                    entry,
                    job_id,
                    record,
                } => {
                    let entry = EntryRef {
                        priority,
                        id: entry,
                    };
                    let Some(mut expected) = record else {
                        // The record expired or was never written: nothing to run.
                        self.drop_entry(&entry).await?;
                        tracing::warn!(job = %job_id, "dropped a queue entry whose job record is gone");
                        continue;
                    };
                    for _ in 0..UPDATE_ATTEMPTS {
                        let job = match decode_job(&expected) {
                            Ok(job) => job,
                            Err(e) => {
                                // Unreadable: retrying it would only fail again.
                                self.drop_entry(&entry).await?;
                                tracing::error!(job = %job_id, error = %e, "dropped a queue entry whose job record is corrupt");
                                break;
                            }
                        };
                        let transition = lifecycle::taken(&job, consumer);
                        match self
                            .commit(
                                &expected,
                                Some(job.state()),
                                &transition,
                                Some(&entry),
                                None,
                                Some(consumer),
                            )
                            .await?
                        {
                            CommitReply::Done => {
                                if transition.job.state() == JobState::Running {
                                    return Ok(Some(Lease {
                                        attempt: transition.job.attempts,
                                        consumer: consumer.to_owned(),
                                        entry,
                                        job: transition.job,
                                    }));
                                }
                                break;
                            }
                            // Acknowledged under us by the attempt it was taken from.
                            CommitReply::Stale => break,
                            CommitReply::Conflict
                            | CommitReply::Exists(_)
                            | CommitReply::OverQuota(_) => match self.record(&job_id).await? {
                                Some((bytes, _)) => expected = bytes,
                                None => break,
                            },
                        }
                    }
                }
                Taken::Nothing { tails, next_due_ms } => {
                    let now = tokio::time::Instant::now();
                    if now >= deadline {
                        return Ok(None);
                    }
                    let mut block = (deadline - now).min(MAX_BLOCK);
                    if let Some(due) = next_due_ms {
                        let until_due =
                            Duration::from_millis(due.saturating_sub(lifecycle::now_unix_ms()));
                        block = block.min(until_due.max(Duration::from_millis(1)));
                    }
                    self.wait_for_entries(&tails, block).await?;
                }
            }
        }
    }

    async fn depth(&self) -> QueueResult<Vec<StreamDepth>> {
        let replies = match self.depth_once().await {
            Err(e) if e.code() == Some("NOGROUP") => {
                self.create_groups().await?;
                self.depth_once().await?
            }
            other => other?,
        };
        let bad = |what: &str| QueueError::Corrupt(format!("depth: unexpected {what} reply"));
        let mut replies = replies.into_iter();
        let mut next = |what: &str| replies.next().ok_or_else(|| bad(what));
        let mut depths = Vec::with_capacity(PRIORITIES.len());
        for priority in PRIORITIES {
            let length: u64 = redis::from_redis_value(next("XLEN")?).map_err(|_| bad("XLEN"))?;
            // The summary form: [count, smallest id, greatest id, consumers].
            let pending: Vec<Value> =
                redis::from_redis_value(next("XPENDING")?).map_err(|_| bad("XPENDING"))?;
            let taken: u64 = match pending.into_iter().next() {
                Some(count) => redis::from_redis_value(count).map_err(|_| bad("XPENDING"))?,
                None => 0,
            };
            depths.push(StreamDepth {
                priority,
                // Finished entries are deleted, so the stream holds what waits and what
                // is taken (a pending record can outlive its deleted entry briefly).
                waiting: length.saturating_sub(taken),
                taken,
                delayed: 0,
            });
        }
        let delayed: Vec<String> =
            redis::from_redis_value(next("ZRANGE")?).map_err(|_| bad("ZRANGE"))?;
        for member in delayed {
            // Members are `<1-based priority>:<job id>`, as the take script reads them.
            let rank = member
                .split_once(':')
                .and_then(|(index, _)| index.parse::<usize>().ok())
                .and_then(|index| index.checked_sub(1))
                .filter(|rank| *rank < depths.len());
            if let Some(rank) = rank {
                depths[rank].delayed += 1;
            }
        }
        Ok(depths)
    }

    async fn renew(
        &self,
        lease: &Lease,
        progress: Option<JobProgress>,
    ) -> QueueResult<LeaseStatus> {
        let (held, record): (i64, Option<Vec<u8>>) = self
            .renew
            .key(self.stream(lease.entry.priority))
            .key(self.record_key(&lease.job.id))
            .arg(GROUP)
            .arg(&lease.consumer)
            .arg(&lease.entry.id)
            .invoke_async(&mut self.connection.clone())
            .await?;
        let job = record.as_deref().map(decode_job).transpose()?;
        let Some(job) = job.filter(|job| held == 1 && lifecycle::check_lease(job, lease).is_ok())
        else {
            return Ok(LeaseStatus::Lost);
        };
        if let Some(progress) = progress {
            match self
                .update_lease(lease, |job| {
                    lifecycle::progressed(job, lease, progress, None).map(Some)
                })
                .await
            {
                Err(QueueError::LeaseLost(_)) => return Ok(LeaseStatus::Lost),
                other => {
                    other?;
                }
            }
        }
        Ok(LeaseStatus::Held {
            cancel_requested: job.cancel_requested,
        })
    }

    async fn progress(&self, lease: &Lease, progress: JobProgress, rows: bool) -> QueueResult<()> {
        let kind = lifecycle::progress_kind(rows);
        self.update_lease(lease, |job| {
            lifecycle::progressed(job, lease, progress, Some(kind)).map(Some)
        })
        .await?;
        Ok(())
    }

    async fn succeed(&self, lease: &Lease, result: JobResult) -> QueueResult<Job> {
        let (job, _) = self
            .update_lease(lease, |job| {
                lifecycle::succeeded(job, lease, result.clone()).map(Some)
            })
            .await?;
        Ok(job)
    }

    async fn fail(&self, lease: &Lease, error: &str) -> QueueResult<FailureOutcome> {
        let (_, transition) = self
            .update_lease(lease, |job| {
                lifecycle::failed(job, lease, error, &self.settings).map(Some)
            })
            .await?;
        transition
            .as_ref()
            .map(FailureOutcome::of)
            .ok_or_else(|| QueueError::LeaseLost(lease.job.id.clone()))
    }

    async fn cancelled(&self, lease: &Lease) -> QueueResult<Job> {
        let (job, _) = self
            .update_lease(lease, |job| lifecycle::stopped(job, lease).map(Some))
            .await?;
        Ok(job)
    }

    async fn dead_letters(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> QueueResult<Vec<DeadLetter>> {
        let tenant = tenant.map(checked_tenant).transpose()?;
        let limit = limit.max(1);
        let mut connection = self.connection.clone();
        let mut dead = Vec::new();
        let mut after = "-".to_owned();
        // One stream for every tenant (it is capped at about 100 000 entries, and read by
        // operators rather than on any request's path): a tenant's are picked out of it.
        loop {
            let reply: Value = redis::cmd("XRANGE")
                .arg(self.dead_key())
                .arg(&after)
                .arg("+")
                .arg("COUNT")
                .arg(if tenant.is_some() { CHUNK } else { limit })
                .query_async(&mut connection)
                .await?;
            let entries = stream_entries(reply)?;
            let Some((last, _)) = entries.last() else {
                return Ok(dead);
            };
            after = format!("({last}");
            for (_, fields) in entries {
                let text = |name: &str| {
                    String::from_utf8_lossy(field(&fields, name).unwrap_or_default()).into_owned()
                };
                let letter = DeadLetter {
                    job_id: text("job"),
                    // An entry from before tenants has none.
                    tenant: Some(text("tenant"))
                        .filter(|t| !t.is_empty())
                        .unwrap_or_else(|| LEGACY_TENANT.to_owned()),
                    attempts: text("attempts").parse().unwrap_or(0),
                    error: text("error"),
                };
                if tenant.is_none_or(|t| letter.tenant == t) {
                    dead.push(letter);
                    if dead.len() == limit {
                        return Ok(dead);
                    }
                }
            }
        }
    }
}
