//! The coordinator's errors, and the one place they become gRPC statuses. Statuses from
//! workers pass through unchanged: the worker already chose them (and bounded them). A
//! client's string in a message is quoted through `excerpt`, and every message is cut to
//! `MAX_STATUS_MESSAGE_BYTES`.

use polaroid_jobs::QueueError;
use polaroid_proto::excerpt;

use crate::membership::MembershipError;

#[derive(Debug, thiserror::Error)]
pub enum CoordinatorError {
    #[error("no live worker can take the call; workers register with this coordinator")]
    NoLiveWorkers,
    #[error("membership: {0}")]
    Membership(#[from] MembershipError),
    #[error("invalid worker address {0}")]
    BadWorkerAddress(String),
    #[error("invalid membership report: {0}")]
    InvalidReport(String),
    #[error("the call's deadline passed before a worker answered")]
    DeadlineExceeded,
    #[error("grpc server: {0}")]
    Transport(#[from] tonic::transport::Error),
    #[error("http server: {0}")]
    Http(#[from] std::io::Error),
    #[error("grpc reflection: {0}")]
    Reflection(#[from] polaroid_observability::ReflectionError),
    #[error("starting the keep-warm threads: {0}")]
    KeepWarm(std::io::Error),
    #[error("batch jobs need a queue: set redis_url (or run `polaroid standalone`)")]
    NoJobQueue,
    #[error("SubmitJob needs a spec")]
    MissingSpec,
    #[error("malformed job id `{}`: expected 28 lowercase hex digits", excerpt(.0))]
    MalformedJobId(String),
    #[error("job {0} not found (unknown, or expired after its retention)")]
    JobNotFound(String),
    #[error("unknown job state {0}")]
    UnknownJobState(i32),
    #[error(transparent)]
    Queue(#[from] QueueError),
    #[error("authentication: {0}")]
    Auth(#[from] polaroid_auth::AuthError),
    #[error("{0} needs the admin role")]
    AdminOnly(&'static str),
}

impl From<CoordinatorError> for tonic::Status {
    fn from(error: CoordinatorError) -> Self {
        let message = polaroid_proto::bounded_message(error.to_string());
        match error {
            CoordinatorError::NoLiveWorkers | CoordinatorError::Membership(_) => {
                tonic::Status::unavailable(message)
            }
            CoordinatorError::BadWorkerAddress(_) | CoordinatorError::InvalidReport(_) => {
                tonic::Status::invalid_argument(message)
            }
            CoordinatorError::DeadlineExceeded => tonic::Status::deadline_exceeded(message),
            CoordinatorError::AdminOnly(_) => tonic::Status::permission_denied(message),
            CoordinatorError::NoJobQueue => tonic::Status::failed_precondition(message),
            CoordinatorError::MissingSpec
            | CoordinatorError::MalformedJobId(_)
            | CoordinatorError::UnknownJobState(_)
            | CoordinatorError::Queue(QueueError::InvalidPageToken(_))
            | CoordinatorError::Queue(QueueError::InvalidTenant(_)) => {
                tonic::Status::invalid_argument(message)
            }
            CoordinatorError::JobNotFound(_) | CoordinatorError::Queue(QueueError::NotFound(_)) => {
                tonic::Status::not_found(message)
            }
            CoordinatorError::Queue(QueueError::Redis(_)) => tonic::Status::unavailable(message),
            CoordinatorError::Queue(QueueError::Contended(_)) => tonic::Status::aborted(message),
            CoordinatorError::Queue(QueueError::LeaseLost(_)) => {
                tonic::Status::failed_precondition(message)
            }
            CoordinatorError::Transport(_)
            | CoordinatorError::Http(_)
            | CoordinatorError::Reflection(_)
            | CoordinatorError::KeepWarm(_)
            | CoordinatorError::Auth(_)
            | CoordinatorError::Queue(QueueError::Corrupt(_)) => tonic::Status::internal(message),
        }
    }
}
