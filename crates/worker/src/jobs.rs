//! Batch jobs on a worker: checks a job's plan without running it (for the coordinator's
//! `SubmitJob`), and runs jobs taken from the queue: plan steps on the engine, the sink
//! written atomically, progress and cancellation checked between steps and while writing.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use polaroid_jobs::{FailureOutcome, JobQueue, Lease, LeaseStatus, QueueError};
use polaroid_proto::retry::RetryPolicy;
use polaroid_proto::v1::job_validation_service_server::JobValidationService;
use polaroid_proto::v1::{
    self as pb, JobPlan, JobProgress, JobResult, JobSinkFormat, JobSpec, job_input, plan_step::Op,
};
use polaroid_store::{AffinityKey, TenantId};
use polars::prelude::SchemaRef;
use tokio::sync::{Notify, Semaphore, watch};
use tonic::{Request, Response, Status};

use crate::engine::{Engine, Node, SinkFormat, schema_fields};
use crate::error::{EngineError, EngineResult};
use polaroid_proto::excerpt;

/// Taking jobs while the queue is away: retried for as long as the worker runs, at most
/// every 3.2 s once it has been away a while.
const QUEUE_AWAY: RetryPolicy = RetryPolicy {
    max_attempts: u32::MAX,
    first_backoff: Duration::from_millis(200),
    max_backoff: Duration::from_millis(3200),
    min_jitter: 0.5,
};

/// Recording an attempt's outcome: nine attempts over about 20 s; past them the attempt
/// is retried by another worker after the visibility timeout.
const RECORD_OUTCOME: RetryPolicy = RetryPolicy {
    max_attempts: 9,
    first_backoff: Duration::from_millis(100),
    max_backoff: Duration::from_secs(5),
    min_jitter: 0.5,
};

/// The most steps a job's plan may have.
const MAX_STEPS: usize = 10_000;
/// The most attempts a job may ask for.
const MAX_ATTEMPTS: u32 = 100;
const MAX_IDEMPOTENCY_KEY_BYTES: usize = 256;

/// How many inputs an operation takes.
fn arity(op: &Op) -> usize {
    match op {
        Op::ReadParquet(_)
        | Op::ReadCsv(_)
        | Op::ReadCsvV0(_)
        | Op::ReadIpc(_)
        | Op::ReadJson(_)
        | Op::ReadRestApi(_)
        | Op::ReadRestApiV0(_)
        | Op::Upload(_) => 0,
        Op::Join(_) | Op::JoinV0(_) | Op::Cross(_) | Op::AsofJoin(_) | Op::AsofJoinV0(_) => 2,
        Op::Sql(sql) => sql.tables.len(),
        _ => 1,
    }
}

/// The checks that need no data: shape of the spec, inputs, sink. Returns the plan.
pub fn check_spec(spec: &JobSpec) -> EngineResult<&JobPlan> {
    let plan = spec
        .plan
        .as_ref()
        .filter(|p| !p.steps.is_empty())
        .ok_or_else(|| EngineError::invalid("a job needs a plan with at least one step"))?;
    if plan.steps.len() > MAX_STEPS {
        return Err(EngineError::invalid(format!(
            "a job's plan has at most {MAX_STEPS} steps, got {}",
            plan.steps.len()
        )));
    }
    if pb::JobPriority::try_from(spec.priority).is_err() {
        return Err(EngineError::invalid(format!(
            "unknown priority {}",
            spec.priority
        )));
    }
    if spec.max_attempts > MAX_ATTEMPTS {
        return Err(EngineError::invalid(format!(
            "max_attempts is at most {MAX_ATTEMPTS}, got {}",
            spec.max_attempts
        )));
    }
    if spec.idempotency_key.len() > MAX_IDEMPOTENCY_KEY_BYTES {
        return Err(EngineError::invalid(format!(
            "idempotency_key is at most {MAX_IDEMPOTENCY_KEY_BYTES} bytes"
        )));
    }
    let sink = spec
        .sink
        .as_ref()
        .filter(|s| !s.path.is_empty() || s.keep_handle);
    let sink = sink
        .ok_or_else(|| EngineError::invalid("a job needs a sink: a path, keep_handle, or both"))?;
    if !sink.path.is_empty() {
        sink_format(sink)?;
    }
    for (index, step) in plan.steps.iter().enumerate() {
        let op = step_op(index, step)?;
        if let Op::Sql(sql) = op
            && sql.tables.values().any(|handle| !handle.is_empty())
        {
            return Err(EngineError::invalid(format!(
                "step {index} (sql): leave the tables' handles empty and list the tables as inputs, in name order"
            )));
        }
        let expected = arity(op);
        if step.inputs.len() != expected {
            return Err(EngineError::invalid(format!(
                "step {index} ({}) takes {expected} input(s), got {}",
                crate::engine::op_name(op),
                step.inputs.len()
            )));
        }
        for input in &step.inputs {
            match &input.input {
                Some(job_input::Input::Step(earlier)) if (*earlier as usize) < index => {}
                Some(job_input::Input::Step(earlier)) => {
                    return Err(EngineError::invalid(format!(
                        "step {index} reads step {earlier}, which does not come before it"
                    )));
                }
                Some(job_input::Input::Handle(handle)) if !handle.is_empty() => {}
                _ => {
                    return Err(EngineError::invalid(format!(
                        "step {index} has an empty input: give a handle or an earlier step"
                    )));
                }
            }
        }
    }
    Ok(plan)
}

fn step_op(index: usize, step: &pb::JobStep) -> EngineResult<&Op> {
    step.step
        .as_ref()
        .and_then(|s| s.op.as_ref())
        .ok_or_else(|| EngineError::invalid(format!("step {index} has no operation")))
}

/// The sink's file format: the one given, else the path's extension.
pub fn sink_format(sink: &pb::JobSink) -> EngineResult<SinkFormat> {
    let format = match sink.format() {
        JobSinkFormat::Unspecified => {
            let extension = std::path::Path::new(&sink.path)
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            match extension.as_str() {
                "parquet" | "pq" => JobSinkFormat::Parquet,
                "csv" => JobSinkFormat::Csv,
                "arrow" | "ipc" | "feather" => JobSinkFormat::Ipc,
                _ => {
                    return Err(EngineError::invalid(format!(
                        "cannot tell the format of sink `{}`: set format, or use a .parquet, .csv or .arrow path",
                        excerpt(&sink.path)
                    )));
                }
            }
        }
        given => given,
    };
    Ok(match format {
        JobSinkFormat::Csv => SinkFormat::Csv {
            separator: None,
            include_header: true,
        },
        JobSinkFormat::Ipc => SinkFormat::Ipc { compression: None },
        JobSinkFormat::Parquet | JobSinkFormat::Unspecified => SinkFormat::Parquet {
            compression: None,
            row_group_size: None,
        },
    })
}

/// What a running attempt does between two steps: stop if cancelled, publish progress.
struct BetweenSteps<'a> {
    queue: &'a dyn JobQueue,
    lease: &'a Lease,
    attempt: &'a Attempt,
    steps_total: u32,
}

impl BetweenSteps<'_> {
    async fn done(&self, steps: usize) -> EngineResult<()> {
        self.attempt.check()?;
        self.attempt
            .steps_done
            .store(steps as u32, Ordering::Relaxed);
        let progress = self.attempt.progress(self.steps_total);
        if let Err(e) = self.queue.progress(self.lease, progress, false).await {
            tracing::debug!(error = %e, "progress not recorded");
        }
        Ok(())
    }
}

/// A job's plan built step by step over its input handles, nothing recorded, and the
/// affinity of its first input handle. A run passes `between` to be told of each step.
async fn build_plan(
    engine: &Engine,
    tenant: TenantId,
    plan: &JobPlan,
    between: Option<&BetweenSteps<'_>>,
) -> EngineResult<(Arc<Node>, Option<AffinityKey>)> {
    let mut nodes: Vec<Arc<Node>> = Vec::with_capacity(plan.steps.len());
    let mut affinity = None;
    for (index, step) in plan.steps.iter().enumerate() {
        let mut inputs = Vec::with_capacity(step.inputs.len());
        for input in &step.inputs {
            inputs.push(match &input.input {
                Some(job_input::Input::Step(earlier)) => nodes
                    .get(*earlier as usize)
                    .cloned()
                    .ok_or_else(|| in_step(index, EngineError::invalid("reads a later step")))?,
                Some(job_input::Input::Handle(handle)) => {
                    let (handle, node) = engine.resolve(tenant, handle).await?;
                    affinity.get_or_insert(handle.affinity());
                    node
                }
                None => unreachable_input()?,
            });
        }
        let node = engine
            .job_step(tenant, step_op(index, step)?.clone(), inputs)
            .await
            .map_err(|e| in_step(index, e))?;
        nodes.push(node);
        if let Some(between) = between {
            between.done(index + 1).await?;
        }
    }
    let last = nodes
        .pop()
        .ok_or_else(|| EngineError::invalid("a job needs at least one step"))?;
    Ok((last, affinity))
}

/// Checks a whole job: the spec, then every step built over its inputs (paths inside
/// the data roots, columns, types, expressions), and the sink's path. Returns the schema
/// of the result.
pub async fn validate(
    engine: &Engine,
    tenant: TenantId,
    spec: &JobSpec,
) -> EngineResult<SchemaRef> {
    let plan = check_spec(spec)?;
    let (last, _) = build_plan(engine, tenant, plan, None).await?;
    if let Some(sink) = spec.sink.as_ref().filter(|s| !s.path.is_empty()) {
        engine.check_write_path(tenant, &sink.path)?;
    }
    Ok(last.schema.clone())
}

fn unreachable_input<T>() -> EngineResult<T> {
    Err(EngineError::invalid("a job step has an empty input"))
}

/// Says which step an error came from, keeping its kind.
fn in_step(index: usize, error: EngineError) -> EngineError {
    match error {
        EngineError::InvalidArgument(message) => {
            EngineError::InvalidArgument(format!("step {index}: {message}"))
        }
        other => other,
    }
}

/// `JobValidationService`, for coordinators.
pub struct JobValidationServer {
    engine: Arc<Engine>,
}

impl JobValidationServer {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

#[tonic::async_trait]
impl JobValidationService for JobValidationServer {
    async fn validate_job(
        &self,
        request: Request<pb::ValidateJobRequest>,
    ) -> Result<Response<pb::ValidateJobResponse>, Status> {
        // Validated as the caller the coordinator forwarded, so that input handles
        // resolve in the submitter's tenant.
        let tenant = crate::service::tenant(&request)?;
        let spec = request.into_inner().spec.unwrap_or_default();
        let schema = validate(&self.engine, tenant, &spec)
            .await
            .map_err(crate::service::status)?;
        Ok(Response::new(pb::ValidateJobResponse {
            schema: schema_fields(&schema),
        }))
    }
}

/// What a running attempt shares with its lease keeper.
#[derive(Default)]
struct Attempt {
    cancelled: AtomicBool,
    lost: AtomicBool,
    stopped: Notify,
    steps_done: AtomicU32,
    rows_written: AtomicU64,
}

impl Attempt {
    fn check(&self) -> EngineResult<()> {
        if self.cancelled.load(Ordering::Relaxed) || self.lost.load(Ordering::Relaxed) {
            Err(EngineError::Cancelled)
        } else {
            Ok(())
        }
    }

    fn progress(&self, steps_total: u32) -> JobProgress {
        JobProgress {
            steps_done: self.steps_done.load(Ordering::Relaxed),
            steps_total,
            rows_written: self.rows_written.load(Ordering::Relaxed),
        }
    }
}

/// Takes jobs from the queue and runs them, `slots` at a time.
pub struct JobRunner {
    engine: Arc<Engine>,
    queue: Arc<dyn JobQueue>,
    consumer: String,
    slots: usize,
    renew_every: Duration,
    default_timeout: Duration,
    running: Arc<AtomicU32>,
}

/// How long a cancelled attempt may take to wind down before it is abandoned.
const CANCEL_GRACE: Duration = Duration::from_millis(500);

impl JobRunner {
    pub fn new(
        engine: Arc<Engine>,
        queue: Arc<dyn JobQueue>,
        consumer: String,
        slots: usize,
        visibility_timeout: Duration,
        default_timeout: Duration,
    ) -> Self {
        Self {
            engine,
            queue,
            consumer,
            slots,
            // Several renewals per timeout, and often enough that a cancellation is seen
            // within about half a second.
            renew_every: (visibility_timeout / 4).min(Duration::from_millis(500)),
            default_timeout,
            running: Arc::new(AtomicU32::new(0)),
        }
    }

    /// Jobs running now, for load reports.
    pub fn running(&self) -> Arc<AtomicU32> {
        self.running.clone()
    }

    /// Takes and runs jobs until `stop` turns true, then waits up to `drain` for the
    /// attempts still running to end. Attempts running past it are abandoned with the
    /// process; the queue gives them to another worker after the visibility timeout.
    pub async fn run(self: Arc<Self>, stop: watch::Receiver<bool>, drain: Duration) {
        let slots = Arc::new(Semaphore::new(self.slots.max(1)));
        self.clone().take_until(slots.clone(), stop).await;
        if drain.is_zero() {
            return;
        }
        // Every slot free again: each attempt holds one from before it starts until it
        // has recorded its outcome (its `running` count starts a little later).
        let all = u32::try_from(self.slots.max(1)).unwrap_or(u32::MAX);
        let idle = slots.available_permits() == self.slots.max(1);
        if !idle {
            tracing::info!(?drain, "waiting for running jobs to end");
        }
        match tokio::time::timeout(drain, slots.acquire_many(all)).await {
            Ok(_) if idle => {}
            Ok(_) => tracing::info!("running jobs ended"),
            Err(_) => tracing::warn!(
                running = self.running.load(Ordering::Relaxed),
                "jobs still running after job_drain_secs are left to another worker"
            ),
        }
    }

    /// Takes and starts jobs, each on a slot, until `stop` turns true.
    async fn take_until(self: Arc<Self>, slots: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
        let mut failures = 0u32;
        while !*stop.borrow() {
            let permit = tokio::select! {
                permit = slots.clone().acquire_owned() => match permit {
                    Ok(permit) => permit,
                    Err(_) => return,
                },
                _ = stop.changed() => return,
            };
            let taken = tokio::select! {
                taken = self.queue.take(&self.consumer, Duration::from_secs(1)) => taken,
                _ = stop.changed() => return,
            };
            match taken {
                Ok(Some(lease)) => {
                    failures = 0;
                    let runner = self.clone();
                    tokio::spawn(async move {
                        runner.attempt(lease).await;
                        drop(permit);
                    });
                }
                Ok(None) => {}
                Err(e) => {
                    // Redis away (restarting): keep trying, without hammering it.
                    failures = failures.saturating_add(1);
                    let delay = QUEUE_AWAY.backoff(failures);
                    tracing::warn!(error = %e, ?delay, "taking a job failed");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }

    /// Runs one attempt of a job and records how it ended.
    async fn attempt(&self, lease: Lease) {
        let job_id = lease.job.id.clone();
        let spec = lease.job.spec.clone().unwrap_or_default();
        let steps_total = spec.plan.as_ref().map_or(0, |p| p.steps.len() as u32);
        tracing::info!(job = %job_id, attempt = lease.attempt, "job started");
        let started = std::time::Instant::now();
        let running = self.running.fetch_add(1, Ordering::Relaxed) + 1;
        metrics::gauge!("polaroid_jobs_running").set(f64::from(running));
        metrics::counter!("polaroid_jobs_started_total").increment(1);
        let finished = |outcome: &'static str| {
            metrics::counter!("polaroid_jobs_finished_total", "outcome" => outcome).increment(1);
            metrics::histogram!("polaroid_job_attempt_duration_seconds", "outcome" => outcome)
                .record(started.elapsed().as_secs_f64());
        };
        let attempt = Arc::new(Attempt::default());
        let keeper = tokio::spawn(keep_lease(
            self.queue.clone(),
            lease.clone(),
            attempt.clone(),
            steps_total,
            self.renew_every,
        ));
        let timeout = match spec.timeout_ms {
            0 => self.default_timeout,
            ms => Duration::from_millis(ms),
        };
        let work = tokio::time::timeout(timeout, self.execute(&lease, &spec, &attempt));
        tokio::pin!(work);
        let outcome = tokio::select! {
            outcome = &mut work => Some(outcome),
            _ = attempt.stopped.notified() => {
                // Let the work see the flag and clean up; a sink already committed wins.
                tokio::time::timeout(CANCEL_GRACE, &mut work).await.ok()
            }
        };
        keeper.abort();
        let running = self
            .running
            .fetch_sub(1, Ordering::Relaxed)
            .saturating_sub(1);
        metrics::gauge!("polaroid_jobs_running").set(f64::from(running));
        if attempt.lost.load(Ordering::Relaxed) {
            tracing::warn!(job = %job_id, "lost the job to another worker; its result is dropped");
            return;
        }
        let recorded = match outcome {
            Some(Ok(Ok(result))) => {
                finished("succeeded");
                self.record(|| self.queue.succeed(&lease, result.clone()))
                    .await
                    .map(|_| ())
            }
            Some(Ok(Err(EngineError::Cancelled))) | None => {
                finished("cancelled");
                self.record(|| self.queue.cancelled(&lease))
                    .await
                    .map(|_| ())
            }
            Some(outcome) => {
                attempt.cancelled.store(true, Ordering::Relaxed);
                let error = match outcome {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("timed out after {timeout:?}"),
                };
                let failed = self.record(|| self.queue.fail(&lease, &error)).await;
                if let Ok(outcome) = &failed {
                    let label = match outcome {
                        FailureOutcome::Retrying { .. } => "retrying",
                        FailureOutcome::DeadLettered => "failed",
                        FailureOutcome::Cancelled => "cancelled",
                    };
                    finished(label);
                }
                tracing::info!(job = %job_id, %error, ?failed, "job attempt failed");
                failed.map(|_| ())
            }
        };
        if let Err(e) = recorded {
            tracing::warn!(job = %job_id, error = %e, "could not record the attempt's outcome; it will be retried after the visibility timeout");
        }
    }

    /// Records an outcome, retrying while the queue is unreachable.
    async fn record<T, F, Fut>(&self, mut write: F) -> Result<T, QueueError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, QueueError>>,
    {
        let mut attempt = 1;
        loop {
            match (write().await, RECORD_OUTCOME.pause(attempt + 1)) {
                (Err(QueueError::Redis(e)), Some(pause)) => {
                    tracing::warn!(error = %e, ?pause, "the job queue is unreachable; retrying");
                    tokio::time::sleep(pause).await;
                    attempt += 1;
                }
                (outcome, _) => return outcome,
            }
        }
    }

    /// The job's steps, then its sink.
    async fn execute(
        &self,
        lease: &Lease,
        spec: &JobSpec,
        attempt: &Arc<Attempt>,
    ) -> EngineResult<JobResult> {
        let plan = check_spec(spec)?;
        let between = BetweenSteps {
            queue: &*self.queue,
            lease,
            attempt,
            steps_total: plan.steps.len() as u32,
        };
        let (last, affinity) =
            build_plan(&self.engine, job_tenant(&lease.job), plan, Some(&between)).await?;
        let sink = spec.sink.clone().unwrap_or_default();
        let mut result = JobResult::default();
        // The handle first: a handle nobody was told of is harmless if the job is then
        // cancelled (it expires), a file is not. Once the file is renamed into place,
        // nothing checks for cancellation any more: the job has succeeded.
        if sink.keep_handle {
            attempt.check()?;
            let (handle, rows) = self.engine.keep_node(&last, affinity).await?;
            result.handle = handle.to_string();
            result.rows = rows;
        }
        if !sink.path.is_empty() {
            let format = sink_format(&sink)?;
            let watcher = attempt.clone();
            let rows = self
                .engine
                .write_node(
                    &last,
                    &sink.path,
                    format,
                    false,
                    Box::new(move |rows| {
                        watcher.rows_written.store(rows as u64, Ordering::Relaxed);
                        watcher.check()
                    }),
                )
                .await?;
            result.path = sink.path.clone();
            result.rows = rows as u64;
        }
        Ok(result)
    }
}

/// Renews the attempt's lease until aborted, publishing rows written, and flags the
/// attempt when the job is cancelled or the lease is lost.
async fn keep_lease(
    queue: Arc<dyn JobQueue>,
    lease: Lease,
    attempt: Arc<Attempt>,
    steps_total: u32,
    every: Duration,
) {
    let mut reported_rows = 0;
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    ticks.tick().await;
    loop {
        ticks.tick().await;
        let progress = attempt.progress(steps_total);
        match queue.renew(&lease, Some(progress)).await {
            Ok(LeaseStatus::Held { cancel_requested }) => {
                if cancel_requested {
                    attempt.cancelled.store(true, Ordering::Relaxed);
                    attempt.stopped.notify_one();
                }
            }
            Ok(LeaseStatus::Lost) => {
                attempt.lost.store(true, Ordering::Relaxed);
                attempt.stopped.notify_one();
                return;
            }
            Err(e) => {
                tracing::warn!(job = %lease.job.id, error = %e, "renewing a job's lease failed")
            }
        }
        if progress.rows_written != reported_rows {
            reported_rows = progress.rows_written;
            if let Err(e) = queue.progress(&lease, progress, true).await {
                tracing::debug!(error = %e, "progress not recorded");
            }
        }
    }
}

/// The tenant a job runs as: its submitter's (the queue reports a job recorded before
/// tenants as the default tenant's).
fn job_tenant(job: &polaroid_proto::v1::Job) -> TenantId {
    TenantId::from_name(&job.tenant)
}
