//! `JobService`: batch jobs are validated by a worker (which can build the plan), then
//! recorded and queued; their records and events are read back from the queue.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use polaroid_jobs::{JobQueue, LEGACY_TENANT, lifecycle, new_job_id, page_size, valid_job_id};
use polaroid_proto::v1::{
    self as pb, JobState, job_input, job_validation_service_client::JobValidationServiceClient,
};
use polaroid_store::AffinityKey;
use tonic::{Request, Response, Status};

use crate::cluster::Cluster;
use crate::error::CoordinatorError;

/// The longest a worker may take to check a job's plan.
const VALIDATION_TIMEOUT: Duration = Duration::from_secs(60);

/// How often a watch looks for new events.
const WATCH_POLL: Duration = Duration::from_millis(100);

pub struct JobServer {
    /// `None`: this coordinator has no queue (no Redis URL); every call says so.
    queue: Option<Arc<dyn JobQueue>>,
    cluster: Arc<Cluster>,
    max_attempts: usize,
    max_message_bytes: usize,
}

impl JobServer {
    pub fn new(
        queue: Option<Arc<dyn JobQueue>>,
        cluster: Arc<Cluster>,
        max_attempts: usize,
        max_message_bytes: usize,
    ) -> Self {
        Self {
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
    async fn validate(&self, spec: &pb::JobSpec) -> Result<(), Status> {
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
            match client.validate_job(request).await {
                Ok(_) => return Ok(()),
                Err(status) if is_transport_failure(&status) => {
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
        let spec = request
            .into_inner()
            .spec
            .ok_or(CoordinatorError::MissingSpec)?;
        // Tenant of the call: set from the caller's token (issue 22).
        let tenant = LEGACY_TENANT;
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
        self.validate(&spec).await?;
        let (job, created) = queue
            .submit(&new_job_id(), tenant, spec)
            .await
            .map_err(CoordinatorError::from)?;
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
        let id = request.into_inner().job_id;
        let job = self
            .queue()?
            .get(checked_id(&id)?)
            .await
            .map_err(CoordinatorError::from)?
            .ok_or(CoordinatorError::JobNotFound(id))?;
        Ok(Response::new(job))
    }

    async fn list_jobs(
        &self,
        request: Request<pb::ListJobsRequest>,
    ) -> Result<Response<pb::ListJobsResponse>, Status> {
        let request = request.into_inner();
        let state = match JobState::try_from(request.state) {
            Ok(JobState::Unspecified) => None,
            Ok(state) => Some(state),
            Err(_) => return Err(CoordinatorError::UnknownJobState(request.state).into()),
        };
        // Tenant of the call: set from the caller's token (issue 22).
        let tenant = Some(LEGACY_TENANT);
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
        let id = request.into_inner().job_id;
        let job = self
            .queue()?
            .cancel(checked_id(&id)?)
            .await
            .map_err(CoordinatorError::from)?;
        Ok(Response::new(job))
    }

    type WatchJobStream = EventStream;

    async fn watch_job(
        &self,
        request: Request<pb::WatchJobRequest>,
    ) -> Result<Response<Self::WatchJobStream>, Status> {
        let id = request.into_inner().job_id;
        let queue = self.queue()?.clone();
        if queue
            .get(checked_id(&id)?)
            .await
            .map_err(CoordinatorError::from)?
            .is_none()
        {
            return Err(CoordinatorError::JobNotFound(id).into());
        }
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

/// A failure worth trying the next worker for: the worker is unreachable or went away
/// (tonic attaches the transport error as the source, except for hyper's "operation was
/// canceled" when a connection dies under a queued call, which is CANCELLED; a worker
/// never sends CANCELLED itself, and our own caller cancelling drops this call instead).
/// A status the worker sent, even UNAVAILABLE (a REST source that is down), is its answer.
fn is_transport_failure(status: &Status) -> bool {
    use std::error::Error;
    match status.code() {
        tonic::Code::Cancelled => true,
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal => {
            status.source().is_some()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transport_failures_fail_over() {
        assert!(
            !is_transport_failure(&Status::unavailable("the REST source is down")),
            "a worker's own UNAVAILABLE is its answer"
        );
        let refused = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "refused");
        assert!(is_transport_failure(&Status::from_error(Box::new(refused))));
        assert!(!is_transport_failure(&Status::internal("worker said so")));
        assert!(!is_transport_failure(&Status::not_found("no handle")));
        assert!(is_transport_failure(&Status::cancelled(
            "operation was canceled"
        )));
        // A connection that broke under a call surfaces as UNKNOWN with the cause attached.
        let broken = std::io::Error::new(std::io::ErrorKind::Other, "connection closed");
        let status = Status::from_error(Box::new(broken));
        assert_eq!(status.code(), tonic::Code::Unknown);
        assert!(is_transport_failure(&status));
    }
}
