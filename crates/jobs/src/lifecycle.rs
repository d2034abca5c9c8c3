//! The rules of a job's life, as pure functions from a record to the next record, the
//! event to publish and what to do with the queue entry. Every backend applies them
//! atomically (compare-and-set on the record), so they hold across processes.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use polaroid_proto::v1::{
    Job, JobEvent, JobEventKind, JobPriority, JobProgress, JobResult, JobSpec, JobState,
};

use crate::{Lease, QueueError, QueueResult, QueueSettings};

pub fn now_unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// Whether a job in `state` is over.
pub fn is_terminal(state: JobState) -> bool {
    matches!(
        state,
        JobState::Succeeded | JobState::Failed | JobState::Cancelled
    )
}

/// The lowercase name of a state, as keys and the CLI spell it.
pub fn state_name(state: JobState) -> &'static str {
    match state {
        JobState::Unspecified => "unspecified",
        JobState::Queued => "queued",
        JobState::Running => "running",
        JobState::Retrying => "retrying",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Cancelled => "cancelled",
    }
}

pub fn priority_name(priority: JobPriority) -> &'static str {
    match priority {
        JobPriority::High => "high",
        JobPriority::Normal => "normal",
        JobPriority::Low => "low",
    }
}

/// Priorities from the most urgent.
pub const PRIORITIES: [JobPriority; 3] = [JobPriority::High, JobPriority::Normal, JobPriority::Low];

/// A priority's place in [`PRIORITIES`] (0: the most urgent).
pub fn priority_rank(priority: JobPriority) -> usize {
    PRIORITIES.iter().position(|p| *p == priority).unwrap_or(1)
}

fn max_attempts(job: &Job) -> u32 {
    job.spec.as_ref().map_or(1, |s| s.max_attempts.max(1))
}

/// A change to apply atomically: the new record, what to publish, and what becomes of
/// the queue entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub job: Job,
    pub event: Option<JobEvent>,
    /// Acknowledge (and delete) the entry the attempt came from.
    pub acknowledge: bool,
    /// Queue the job again after this delay.
    pub requeue_after: Option<Duration>,
    /// Append the job to the dead-letter stream.
    pub dead_letter: bool,
}

impl Transition {
    fn new(job: Job, event: JobEvent) -> Self {
        Self {
            job,
            event: Some(event),
            acknowledge: false,
            requeue_after: None,
            dead_letter: false,
        }
    }

    fn acknowledged(mut self) -> Self {
        self.acknowledge = true;
        self
    }

    fn dead_lettered(mut self) -> Self {
        self.dead_letter = true;
        self
    }
}

/// The job ended in `state`; the event says so (`error` for a failure).
fn ended(job: &Job, state: JobState, kind: JobEventKind, error: Option<&str>) -> Transition {
    let mut next = job.clone();
    next.state = state as i32;
    next.finished_unix_ms = now_unix_ms();
    if let Some(error) = error {
        next.error = error.to_owned();
    }
    let event = JobEvent {
        error: error.unwrap_or_default().to_owned(),
        ..event(&next, kind)
    };
    Transition::new(next, event).acknowledged()
}

fn cancelled(job: &Job) -> Transition {
    ended(job, JobState::Cancelled, JobEventKind::Cancelled, None)
}

fn event(job: &Job, kind: JobEventKind) -> JobEvent {
    JobEvent {
        job_id: job.id.clone(),
        unix_ms: now_unix_ms(),
        kind: kind as i32,
        state: job.state,
        worker: job.worker.clone(),
        attempt: job.attempts,
        progress: job.progress,
        ..JobEvent::default()
    }
}

/// A new job's record (of `tenant`, for good) and its first event.
pub fn submitted(
    id: &str,
    tenant: &str,
    mut spec: JobSpec,
    settings: &QueueSettings,
) -> Transition {
    if spec.max_attempts == 0 {
        spec.max_attempts = settings.default_max_attempts.max(1);
    }
    let steps_total = spec
        .plan
        .as_ref()
        .map_or(0, |p| u32::try_from(p.steps.len()).unwrap_or(u32::MAX));
    let job = Job {
        id: id.to_owned(),
        tenant: tenant.to_owned(),
        spec: Some(spec),
        state: JobState::Queued as i32,
        submitted_unix_ms: now_unix_ms(),
        progress: Some(JobProgress {
            steps_done: 0,
            steps_total,
            rows_written: 0,
        }),
        ..Job::default()
    };
    let queued = event(&job, JobEventKind::Queued);
    Transition::new(job, queued)
}

/// What taking a job's entry off the queue does.
pub fn taken(job: &Job, consumer: &str) -> Transition {
    let max_attempts = max_attempts(job);
    if is_terminal(job.state()) {
        // Finished while waiting (cancelled) or already recorded: the entry is stale.
        return Transition {
            job: job.clone(),
            event: None,
            acknowledge: true,
            requeue_after: None,
            dead_letter: false,
        };
    }
    if job.cancel_requested {
        return cancelled(job);
    }
    if job.attempts >= max_attempts {
        // Its worker died during the last attempt.
        let error = format!(
            "attempt {} of {max_attempts} was lost with its worker ({}); no attempts left",
            job.attempts, job.worker
        );
        return ended(job, JobState::Failed, JobEventKind::Failed, Some(&error)).dead_lettered();
    }
    let mut next = job.clone();
    next.state = JobState::Running as i32;
    next.attempts += 1;
    next.worker = consumer.to_owned();
    next.started_unix_ms = now_unix_ms();
    if let Some(progress) = next.progress.as_mut() {
        progress.steps_done = 0;
        progress.rows_written = 0;
    }
    let started = event(&next, JobEventKind::Started);
    Transition::new(next, started)
}

/// Checks that `lease` is the job's current attempt.
pub fn check_lease(job: &Job, lease: &Lease) -> QueueResult<()> {
    if job.state() == JobState::Running
        && job.attempts == lease.attempt
        && job.worker == lease.consumer
    {
        Ok(())
    } else {
        Err(QueueError::LeaseLost(job.id.clone()))
    }
}

/// Progress of the running attempt; an event when `publish`.
/// The event of a progress report: rows written, or a step done.
pub fn progress_kind(rows: bool) -> JobEventKind {
    if rows {
        JobEventKind::RowsWritten
    } else {
        JobEventKind::Step
    }
}

pub fn progressed(
    job: &Job,
    lease: &Lease,
    progress: JobProgress,
    kind: Option<JobEventKind>,
) -> QueueResult<Transition> {
    check_lease(job, lease)?;
    let mut next = job.clone();
    next.progress = Some(progress);
    let event = kind.map(|kind| event(&next, kind));
    Ok(Transition {
        job: next,
        event,
        acknowledge: false,
        requeue_after: None,
        dead_letter: false,
    })
}

pub fn succeeded(job: &Job, lease: &Lease, result: JobResult) -> QueueResult<Transition> {
    check_lease(job, lease)?;
    let mut next = job.clone();
    next.state = JobState::Succeeded as i32;
    next.finished_unix_ms = now_unix_ms();
    next.error.clear();
    next.result = Some(result.clone());
    let succeeded = JobEvent {
        result: Some(result),
        ..event(&next, JobEventKind::Succeeded)
    };
    Ok(Transition::new(next, succeeded).acknowledged())
}

/// The delay before retry `attempt + 1`: exponential in the attempts made, capped, with
/// jitter (between half and all of it) so that failed jobs do not retry in lockstep.
pub fn backoff(settings: &QueueSettings, attempts: u32) -> Duration {
    polaroid_proto::retry::RetryPolicy {
        max_attempts: u32::MAX,
        first_backoff: settings.retry_backoff,
        max_backoff: settings.retry_backoff_max,
        min_jitter: 0.5,
    }
    .backoff(attempts.max(1))
}

pub fn failed(
    job: &Job,
    lease: &Lease,
    error: &str,
    settings: &QueueSettings,
) -> QueueResult<Transition> {
    check_lease(job, lease)?;
    if job.cancel_requested {
        return Ok(cancelled(job));
    }
    if job.attempts >= max_attempts(job) {
        return Ok(ended(job, JobState::Failed, JobEventKind::Failed, Some(error)).dead_lettered());
    }
    let mut next = job.clone();
    next.error = error.to_owned();
    let delay = backoff(settings, job.attempts);
    next.state = JobState::Retrying as i32;
    let retrying = JobEvent {
        error: error.to_owned(),
        retry_in_ms: u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        ..event(&next, JobEventKind::Retrying)
    };
    let mut transition = Transition::new(next, retrying).acknowledged();
    transition.requeue_after = Some(delay);
    Ok(transition)
}

/// The worker stopped the attempt on a cancellation.
pub fn stopped(job: &Job, lease: &Lease) -> QueueResult<Transition> {
    check_lease(job, lease)?;
    Ok(cancelled(job))
}

/// A client's cancellation: `None` when the job is over already (nothing changes).
pub fn cancel_requested(job: &Job) -> Option<Transition> {
    if is_terminal(job.state()) || job.cancel_requested {
        return None;
    }
    let mut next = job.clone();
    next.cancel_requested = true;
    if job.state() == JobState::Running {
        let requested = event(&next, JobEventKind::CancelRequested);
        return Some(Transition::new(next, requested));
    }
    // Waiting: cancelled now; its entry is dropped when a worker next meets it (there is
    // no entry to acknowledge here).
    let mut transition = cancelled(&next);
    transition.acknowledge = false;
    Some(transition)
}
