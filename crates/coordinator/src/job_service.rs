//! `JobService`: batch jobs are validated by a worker (which can build the plan), then
//! recorded and queued; their records and events are read back from the queue.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use polaroid_auth::{Caller, ClusterCredential};
use polaroid_jobs::{JobQueue, QueueError, lifecycle, new_job_id, page_size, valid_job_id};
use polaroid_proto::v1::{
    self as pb, JobState, job_input, job_validation_service_client::JobValidationServiceClient,
};
use polaroid_server::QuotaConfig;
use polaroid_store::AffinityKey;
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::error::CoordinatorError;

/// The longest a worker may take to check a job's plan.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a watch looks for new events.
const WATCH_POLL: Duration = Duration::from_millis(100);

/// How often a coordinator reads the queue's depth for its gauges: a Redis round trip
/// of one pipeline, and what autoscalers and dashboards look at, which scrape every 15 s
/// or so.
pub(crate) const QUEUE_DEPTH_INTERVAL: Duration = Duration::from_secs(5);

/// Keeps `polaroid_jobs_{waiting,taken,delayed}` per priority up to date. Every
/// coordinator reports the same queue: dashboards take the max over coordinators.
pub(crate) async fn report_queue_depth_every(queue: Arc<dyn JobQueue>, interval: Duration) {
    loop {
        match queue.depth().await {
            Ok(depths) => {
                for depth in depths {
                    let priority = lifecycle::priority_name(depth.priority);
                    metrics::gauge!("polaroid_jobs_waiting", "priority" => priority)
                        .set(depth.waiting as f64);
                    metrics::gauge!("polaroid_jobs_taken", "priority" => priority)
                        .set(depth.taken as f64);
                    metrics::gauge!("polaroid_jobs_delayed", "priority" => priority)
                        .set(depth.delayed as f64);
                }
            }
            Err(e) => tracing::debug!(error = %e, "reading the job queue's depth failed"),
        }
        tokio::time::sleep(interval).await;
    }
}

pub struct JobServer {
    /// `None`: this coordinator has no queue (no Redis URL); every call says so.
    queue: Option<Arc<dyn JobQueue>>,
    cluster: Arc<Cluster>,
    max_attempts: usize,
    max_message_bytes: usize,
    /// Validation calls act for the submitter: its tenant resolves the input handles.
    credential: ClusterCredential,
    /// Each tenant's quota of active jobs.
    quotas: Arc<QuotaConfig>,
}

impl JobServer {
    pub fn new(
        queue: Option<Arc<dyn JobQueue>>,
        cluster: Arc<Cluster>,
        max_attempts: usize,
        max_message_bytes: usize,
        credential: ClusterCredential,
        quotas: Arc<QuotaConfig>,
    ) -> Self {
        Self {
            credential,
            quotas,
            queue,
            cluster,
            max_attempts,
            max_message_bytes,
        }
    }

    fn queue(&self) -> Result<&Arc<dyn JobQueue>, CoordinatorError> {
        self.queue.as_ref().ok_or(CoordinatorError::NoJobQueue)
    }

    /// Has a worker build the job's plan: the worker of its first input handle when it has
    /// one (its plan is likely cached there), else any. Another worker is tried only when
    /// one cannot be reached.
    async fn validate(&self, caller: &Caller, spec: &pb::JobSpec) -> Result<(), Status> {
        let key = first_input_handle(spec)
            .and_then(|handle| polaroid_store::Handle::parse(handle).ok())
            .map_or_else(AffinityKey::random, |handle| handle.affinity());
        let mut tried = Vec::new();
        let mut last_failure = None;
        for _ in 0..self.max_attempts.max(1) {
            let target = self.cluster.pick(key.as_u64(), &tried)?;
            let mut client = JobValidationServiceClient::new(target.channel)
                .max_encoding_message_size(self.max_message_bytes);
            let mut request = tonic::Request::new(pb::ValidateJobRequest {
                spec: Some(spec.clone()),
            });
            // Building a plan reads only schemas (and REST sources); a worker that takes
            // longer than this is stuck.
            request.set_timeout(VALIDATION_TIMEOUT);
            self.credential
                .authorize_request(&mut request, Some(caller));
            match client.validate_job(request).await {
                Ok(_) => return Ok(()),
                Err(status) if crate::failover::is_transport_failure(&status) => {
                    self.cluster.suspect(&target.worker_id);
                    tried.push(target.worker_id);
                    last_failure = Some(status);
                }
                // The worker's verdict on the plan, as it gave it.
                Err(status) => return Err(status),
            }
        }
        Err(last_failure.unwrap_or_else(|| CoordinatorError::NoLiveWorkers.into()))
    }
}

impl JobServer {
    /// The job `id` as `caller` may see it: its own tenant's, or any for an admin.
    /// Another tenant's job is not found, exactly like one that never existed.
    async fn visible_job(&self, caller: &Caller, id: String) -> Result<pb::Job, CoordinatorError> {
        let job = self.queue()?.get(checked_id(&id)?).await?;
        match job {
            Some(job) if caller.is_admin() || job.tenant == caller.tenant => Ok(job),
            _ => Err(CoordinatorError::JobNotFound(id)),
        }
    }
}

fn first_input_handle(spec: &pb::JobSpec) -> Option<&str> {
    spec.plan.as_ref()?.steps.iter().find_map(|step| {
        step.inputs.iter().find_map(|input| match &input.input {
            Some(job_input::Input::Handle(handle)) => Some(handle.as_str()),
            _ => None,
        })
    })
}

fn checked_id(id: &str) -> Result<&str, CoordinatorError> {
    if valid_job_id(id) {
        Ok(id)
    } else {
        Err(CoordinatorError::MalformedJobId(id.to_owned()))
    }
}

type EventStream = Pin<Box<dyn Stream<Item = Result<pb::JobEvent, Status>> + Send>>;

#[tonic::async_trait]
impl pb::job_service_server::JobService for JobServer {
    async fn submit_job(
        &self,
        request: Request<pb::SubmitJobRequest>,
    ) -> Result<Response<pb::SubmitJobResponse>, Status> {
        let queue = self.queue()?.clone();
        let caller = Caller::of(&request)?.clone();
        let spec = request
            .into_inner()
            .spec
            .ok_or(CoordinatorError::MissingSpec)?;
        // The job belongs to the caller's tenant: it runs as that tenant, and only that
        // tenant (and admins) see it.
        let tenant = caller.tenant.as_str();
        // A retried submit gets its job even if its inputs have changed since.
        if let Some(job) = queue
            .find(tenant, &spec.idempotency_key)
            .await
            .map_err(CoordinatorError::from)?
        {
            return Ok(Response::new(pb::SubmitJobResponse {
                job: Some(job),
                created: false,
            }));
        }
        self.validate(&caller, &spec).await?;
        let limit = self.quotas.limits(tenant).active_jobs;
        if let Some(limit) = limit {
            metrics::gauge!("polaroid_quota_jobs_limit", "tenant" => tenant.to_owned())
                .set(f64::from(limit));
        }
        let submitted = queue.submit(&new_job_id(), tenant, spec, limit).await;
        if let Err(QueueError::QuotaExceeded { active, .. }) = &submitted {
            metrics::counter!("polaroid_quota_refusals_total", "quota" => "active_jobs", "tenant" => tenant.to_owned())
                .increment(1);
            metrics::gauge!("polaroid_quota_jobs_active", "tenant" => tenant.to_owned())
                .set(*active as f64);
        }
        let (job, created) = submitted.map_err(CoordinatorError::from)?;
        metrics::counter!("polaroid_coordinator_jobs_submitted_total")
            .increment(u64::from(created));
        Ok(Response::new(pb::SubmitJobResponse {
            job: Some(job),
            created,
        }))
    }

    async fn get_job(
        &self,
        request: Request<pb::GetJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = Caller::of(&request)?.clone();
        let id = request.into_inner().job_id;
        Ok(Response::new(self.visible_job(&caller, id).await?))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let caller = Caller::of(&request)?.clone();
        let request = request.into_inner();
        let state = match JobState::try_from(request.state) {
            Ok(JobState::Unspecified) => None,
            Ok(state) => Some(state),
            Err(_) => return Err(CoordinatorError::UnknownJobState(request.state).into()),
        };
        let tenant = match (request.all_tenants, caller.is_admin()) {
            (false, _) => Some(caller.tenant.as_str()),
            (true, true) => None,
            (true, false) => return Err(CoordinatorError::AdminOnly("all_tenants").into()),
        };
        let page = self
            .queue()?
            .list(
                tenant,
                state,
                page_size(request.page_size),
                &request.page_token,
            )
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(pb::ListJobsResponse {
            jobs: page.jobs,
            next_page_token: page.next_page_token,
        }))
    }

    async fn cancel_job(
        &self,
        request: Request<pb::CancelJobRequest>,
    ) -> Result<Response<pb::Job>, Status> {
        let caller = Caller::of(&request)?.clone();
        let id = request.into_inner().job_id;
        self.visible_job(&caller, id.clone()).await?;
        let job = self
            .queue()?
            .cancel(&id)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(job))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let caller = Caller::of(&request)?.clone();
        let id = request.into_inner().job_id;
        let queue = self.queue()?.clone();
        self.visible_job(&caller, id.clone()).await?;
        let (sender, receiver) = tokio::sync::mpsc::channel(64);
        tokio::spawn(async move {
            let mut cursor = String::new();
            loop {
                // The record is read before the events: a change writes both at once, so
                // when the record is final, the events read next include the last one.
                let job = queue.get(&id).await;
                let batch = queue.events(&id, &cursor).await;
                let (job, batch) = match (job, batch) {
                    (Ok(job), Ok(batch)) => (job, batch),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = sender.send(Err(CoordinatorError::from(e).into())).await;
                        return;
                    }
                };
                cursor = batch.next;
                let caught_up = batch.events.is_empty();
                for event in batch.events {
                    if sender.send(Ok(event)).await.is_err() {
                        return;
                    }
                }
                let over = job.is_none_or(|job| lifecycle::is_terminal(job.state()));
                if over && caught_up {
                    return;
                }
                if over {
                    // More events may follow the batch just sent (they come in pages).
                    continue;
                }
                tokio::select! {
                    _ = tokio::time::sleep(WATCH_POLL) => {}
                    _ = sender.closed() => return,
                }
            }
        });
        Ok(Response::new(Box::pin(
            tokio_stream::wrappers::ReceiverStream::new(receiver),
        )))
    }
}
