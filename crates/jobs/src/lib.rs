//! Batch-job queues: one small trait ([`JobQueue`]), an embedded backend for
//! `polaroid standalone` ([`MemoryQueue`]) and the production one on Redis Streams
//! ([`RedisQueue`]), with one conformance suite ([`conformance`]) both pass.
//!
//! The rules of a job's life (what an attempt, a failure or a cancellation does to its
//! record) live once, in [`lifecycle`]; a backend only stores records atomically and moves
//! queue entries.
//!
//! Every job belongs to a tenant (`Job.tenant`, set at submit from the caller, never
//! changed). Records, listings, idempotency keys and dead letters are namespaced by it: a
//! tenant's `find` and `list` never show another's jobs, and two tenants using the same
//! idempotency key get two jobs. `get` and `events` take a bare job id; the caller compares
//! `Job.tenant` with its own and answers a mismatch exactly as an unknown id. Records written
//! before jobs had tenants are reported as [`LEGACY_TENANT`]'s.

pub mod conformance;
pub mod lifecycle;
mod memory;
mod redis_queue;

use std::time::Duration;

use polaroid_proto::v1::{Job, JobEvent, JobPriority, JobProgress, JobResult, JobSpec, JobState};

pub use memory::MemoryQueue;
pub use redis_queue::RedisQueue;

/// Why a queue operation failed.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("the job queue is unreachable: {0}")]
    Redis(#[from] redis::RedisError),
    #[error("a job record is corrupt: {0}")]
    Corrupt(String),
    #[error("job {0} not found")]
    NotFound(String),
    /// The lease's attempt is over: the job was reclaimed by another worker (this one
    /// went quiet past the visibility timeout) or finished otherwise.
    #[error("job {0}: this worker no longer holds it")]
    LeaseLost(String),
    #[error("invalid page token `{0}`")]
    InvalidPageToken(String),
    #[error("job {0} kept changing under the update; giving up")]
    Contended(String),
    #[error("invalid tenant name `{0}`: 1 to 64 of A-Z a-z 0-9 . _ -")]
    InvalidTenant(String),
    /// The tenant has its quota of jobs queued, running or waiting to retry.
    #[error(
        "quota active_jobs of tenant {tenant:?}: {active} in use of its limit of {limit} \
         (jobs queued, running or waiting to retry); retry when some finish, or ask the operator for a higher quota"
    )]
    QuotaExceeded {
        tenant: String,
        active: u64,
        limit: u32,
    },
}

pub type QueueResult<T> = Result<T, QueueError>;

/// How a queue treats its jobs. The same for every backend.
#[derive(Debug, Clone)]
pub struct QueueSettings {
    /// An attempt whose worker has not renewed its lease for this long is taken by another.
    pub visibility_timeout: Duration,
    /// The first retry waits about this long; each later one twice as long as the last.
    pub retry_backoff: Duration,
    pub retry_backoff_max: Duration,
    /// A queued job gains one priority level per this much waiting, so low ones still run.
    pub priority_aging: Duration,
    /// Finished jobs (and their events) are kept this long.
    pub retention: Duration,
    /// Used when a spec leaves `max_attempts` at 0.
    pub default_max_attempts: u32,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_secs(1),
            retry_backoff_max: Duration::from_secs(60),
            priority_aging: Duration::from_secs(60),
            retention: Duration::from_secs(7 * 24 * 3600),
            default_max_attempts: 3,
        }
    }
}

/// A worker's hold on one attempt of a job, from [`JobQueue::take`] until it reports the
/// outcome.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The job as it was when the attempt started (state running).
    pub job: Job,
    pub consumer: String,
    pub attempt: u32,
    /// The queue entry, acknowledged when the attempt's outcome is recorded.
    pub entry: EntryRef,
}

/// Where a job's queue entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryRef {
    pub priority: JobPriority,
    pub id: String,
}

/// What a renewal learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseStatus {
    Held { cancel_requested: bool },
    Lost,
}

/// The outcome of a failed attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureOutcome {
    /// Another attempt is queued after this delay.
    Retrying { after: Duration },
    /// That was the last attempt: the job failed and went to the dead-letter stream.
    DeadLettered,
    /// The job had been cancelled meanwhile: it is cancelled, not retried.
    Cancelled,
}

impl FailureOutcome {
    fn of(transition: &lifecycle::Transition) -> Self {
        match transition.requeue_after {
            Some(after) => Self::Retrying { after },
            None if transition.dead_letter => Self::DeadLettered,
            None => Self::Cancelled,
        }
    }
}

/// A job that went to the dead-letter stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub job_id: String,
    /// The job's tenant ([`LEGACY_TENANT`] for a job from before tenants).
    pub tenant: String,
    pub attempts: u32,
    pub error: String,
}

/// The work in one priority's stream, for operators and autoscalers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamDepth {
    pub priority: JobPriority,
    /// Entries no worker has taken yet.
    pub waiting: u64,
    /// Entries taken and not yet finished: attempts running, or held by a worker that
    /// died until their visibility timeout passes.
    pub taken: u64,
    /// Retries waiting out their backoff, to join the stream when due.
    pub delayed: u64,
}

/// One page of a listing, newest job first.
#[derive(Debug, Clone, Default)]
pub struct JobPage {
    pub jobs: Vec<Job>,
    /// Empty when this was the last page.
    pub next_page_token: String,
}

/// Events of a job from a cursor on; pass `next` back to read what follows.
#[derive(Debug, Clone, Default)]
pub struct EventBatch {
    pub events: Vec<JobEvent>,
    pub next: String,
}

/// Where jobs wait, and where their records live.
#[async_trait::async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Records and enqueues a new job of `tenant` under `id`, unless the spec's idempotency
    /// key names an existing job of the same tenant: then that job is returned with `false`.
    /// A `tenant` that is not [`valid_tenant`] is [`QueueError::InvalidTenant`]. With
    /// `max_active`, a tenant that has that many jobs queued, running or retrying already
    /// gets [`QueueError::QuotaExceeded`], decided atomically with the submission.
    async fn submit(
        &self,
        id: &str,
        tenant: &str,
        spec: JobSpec,
        max_active: Option<u32>,
    ) -> QueueResult<(Job, bool)>;

    /// Any tenant's job by id; `Job.tenant` says whose it is.
    async fn get(&self, id: &str) -> QueueResult<Option<Job>>;

    /// The job of `tenant` an idempotency key submitted, while it is kept.
    async fn find(&self, tenant: &str, idempotency_key: &str) -> QueueResult<Option<Job>>;

    /// Jobs of `tenant` (`None`: every tenant's, for admins) in `state` (all when `None`),
    /// newest first, `page_size` at a time.
    async fn list(
        &self,
        tenant: Option<&str>,
        state: Option<JobState>,
        page_size: usize,
        page_token: &str,
    ) -> QueueResult<JobPage>;

    /// Cancels a job: a waiting one at once, a running one by flagging it for its worker.
    /// A finished job is returned unchanged.
    async fn cancel(&self, id: &str) -> QueueResult<Job>;

    /// Events recorded after `cursor` (empty: from the start).
    async fn events(&self, id: &str, cursor: &str) -> QueueResult<EventBatch>;

    /// Starts an attempt of the most urgent waiting job for `consumer`, waiting up to
    /// `wait` for one to arrive.
    async fn take(&self, consumer: &str, wait: Duration) -> QueueResult<Option<Lease>>;

    /// Keeps the attempt from being reclaimed, records progress, and tells whether the job
    /// is to be cancelled.
    async fn renew(&self, lease: &Lease, progress: Option<JobProgress>)
    -> QueueResult<LeaseStatus>;

    /// Records a step of progress as an event.
    async fn progress(&self, lease: &Lease, progress: JobProgress, rows: bool) -> QueueResult<()>;

    /// The attempt succeeded: records the result, then acknowledges the entry.
    async fn succeed(&self, lease: &Lease, result: JobResult) -> QueueResult<Job>;

    /// The attempt failed: schedules a retry, or dead-letters the job after its last attempt.
    async fn fail(&self, lease: &Lease, error: &str) -> QueueResult<FailureOutcome>;

    /// The worker stopped the attempt because the job was cancelled.
    async fn cancelled(&self, lease: &Lease) -> QueueResult<Job>;

    /// The dead-letter stream of `tenant` (`None`: every tenant's), oldest first.
    async fn dead_letters(
        &self,
        tenant: Option<&str>,
        limit: usize,
    ) -> QueueResult<Vec<DeadLetter>>;

    /// How much work each priority's stream holds now, most urgent first.
    async fn depth(&self) -> QueueResult<Vec<StreamDepth>>;
}

/// The Redis queue at `url`, or none when `url` is empty (no batch jobs).
pub async fn connect(
    url: &str,
    prefix: &str,
    settings: QueueSettings,
) -> QueueResult<Option<std::sync::Arc<dyn JobQueue>>> {
    if url.is_empty() {
        return Ok(None);
    }
    Ok(Some(std::sync::Arc::new(
        RedisQueue::connect(url, prefix, settings).await?,
    )))
}

/// The page size a listing uses: 100 by default, at most 1000.
pub fn page_size(requested: u32) -> usize {
    match requested {
        0 => 100,
        n => n.min(1000) as usize,
    }
}

/// A new job id: the submission time in milliseconds then 64 random bits, in hex, so that
/// ids sort by submission.
pub fn new_job_id() -> String {
    format!(
        "{:012x}{:016x}",
        lifecycle::now_unix_ms(),
        rand::random::<u64>()
    )
}

/// Whether `id` looks like a job id (28 lowercase hex digits), so that nothing else reaches
/// a key.
pub fn valid_job_id(id: &str) -> bool {
    id.len() == 28 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The tenant of jobs recorded before jobs had tenants.
pub use polaroid_proto::tenant::DEFAULT_TENANT as LEGACY_TENANT;
/// Whether a name can be a tenant (the rule every crate shares).
pub use polaroid_proto::tenant::valid_tenant_name as valid_tenant;

/// `tenant`, or [`QueueError::InvalidTenant`].
pub(crate) fn checked_tenant(tenant: &str) -> QueueResult<&str> {
    if valid_tenant(tenant) {
        Ok(tenant)
    } else {
        Err(QueueError::InvalidTenant(tenant.to_owned()))
    }
}

/// A record as reported: one written before jobs had tenants is [`LEGACY_TENANT`]'s.
pub(crate) fn with_tenant(mut job: Job) -> Job {
    if job.tenant.is_empty() {
        job.tenant = LEGACY_TENANT.to_owned();
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenant_names_are_checked() {
        for good in ["default", "analytics", "a", "A.b_c-9", &"x".repeat(64)] {
            assert!(valid_tenant(good), "{good}");
        }
        for bad in [
            "",
            "a:b",
            "a/b",
            "a b",
            "\u{e9}t\u{e9}",
            "a*",
            &"x".repeat(65),
        ] {
            assert!(!valid_tenant(bad), "{bad}");
        }
    }
}
