//! The coordinator's errors, and the one place they become gRPC statuses. Statuses from
//! workers pass through unchanged: the worker already chose them (and bounded them). A
//! client's string in a message is quoted through `excerpt`, and every message is cut to
//! `MAX_STATUS_MESSAGE_BYTES`.

use polaroid_jobs::QueueError;
use polaroid_proto::{ErrorCode, excerpt};

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
    #[error("quotas: {0}")]
    InvalidQuotas(String),
}

impl CoordinatorError {
    /// The row of the shared error-code table this error is.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NoLiveWorkers | Self::Membership(_) | Self::Queue(QueueError::Redis(_)) => {
                ErrorCode::Unavailable
            }
            Self::BadWorkerAddress(_)
            | Self::InvalidReport(_)
            | Self::MissingSpec
            | Self::MalformedJobId(_)
            | Self::UnknownJobState(_)
            | Self::Queue(QueueError::InvalidPageToken(_))
            | Self::Queue(QueueError::InvalidTenant(_)) => ErrorCode::InvalidArgument,
            Self::DeadlineExceeded => ErrorCode::DeadlineExceeded,
            Self::AdminOnly(_) => ErrorCode::PermissionDenied,
            Self::NoJobQueue | Self::Queue(QueueError::LeaseLost(_)) => {
                ErrorCode::FailedPrecondition
            }
            Self::JobNotFound(_) | Self::Queue(QueueError::NotFound(_)) => ErrorCode::NotFound,
            Self::Queue(QueueError::Contended(_)) => ErrorCode::Aborted,
            Self::Queue(QueueError::QuotaExceeded { .. }) => ErrorCode::ResourceExhausted,
            Self::Transport(_)
            | Self::Http(_)
            | Self::Reflection(_)
            | Self::KeepWarm(_)
            | Self::Auth(_)
            | Self::InvalidQuotas(_)
            | Self::Queue(QueueError::Corrupt(_)) => ErrorCode::Internal,
        }
    }
}

impl From<CoordinatorError> for tonic::Status {
    fn from(error: CoordinatorError) -> Self {
        error.code().status(error.to_string())
    }
}
