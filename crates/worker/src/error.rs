//! The engine's errors, each with the [`ErrorCode`] it means on the wire. A client's
//! string in a message is quoted through [`excerpt`] (a handle, a path, a name may be as
//! long as a request allows; the message goes back in an HTTP/2 trailer).

use polaroid_proto::{ErrorCode, excerpt};
use polaroid_store::{HandleParseError, StoreError};
use polars::prelude::PolarsError;

/// Everything a DataFrame call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("malformed handle `{}`: {reason}", excerpt(.handle))]
    MalformedHandle {
        handle: String,
        reason: HandleParseError,
    },
    #[error("handle `{}` not found (unknown, dropped or expired)", excerpt(.0))]
    HandleNotFound(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// Polars rejected the plan: unknown column, wrong type, bad expression.
    #[error("{operation}: {source}")]
    Polars {
        operation: &'static str,
        source: PolarsError,
    },
    #[error("file not found: {0}")]
    FileNotFound(String),
    #[error("permission denied: {0}")]
    OutsideDataRoots(String),
    /// A REST source aimed where outbound requests may not go.
    #[error("permission denied: {0}")]
    OutboundRefused(String),
    #[error("{0}")]
    LimitExceeded(String),
    #[error("source changed since the plan was recorded: {0}")]
    SourceChanged(String),
    #[error(
        "the lineage would be {depth} steps deep, over the limit of {limit} (max_lineage_depth): \
         persist the handle to start a new lineage from its stored result"
    )]
    LineageTooDeep { depth: u32, limit: u32 },
    #[error("{0}")]
    Unimplemented(String),
    /// A capture whose source sent no message within its bounds: no columns are known to
    /// make a frame of.
    #[error("{0}")]
    NothingCaptured(String),
    #[error("remote source failed: {0}")]
    Remote(String),
    /// A remote source answered, with a failure that means `code` for the caller (it
    /// refused the request, has no such thing, or timed out).
    #[error("remote source failed: {message}")]
    RemoteAnswer { code: ErrorCode, message: String },
    /// A stream reached one of the worker's stream caps (rows, bytes, duration).
    #[error("{message}")]
    StreamCap { code: ErrorCode, message: String },
    #[error("i/o error during {operation}: {source}")]
    Io {
        operation: &'static str,
        source: std::io::Error,
    },
    /// A batch job was cancelled while this work ran for it.
    #[error("cancelled")]
    Cancelled,
    #[error("handle store: {0}")]
    Store(#[from] StoreError),
    #[error("internal error in {operation}: {reason}")]
    Internal {
        operation: &'static str,
        reason: String,
    },
}

impl EngineError {
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidArgument(message.into())
    }

    /// Wraps a Polars error raised while performing `operation`.
    pub fn polars(operation: &'static str) -> impl FnOnce(PolarsError) -> Self {
        move |source| Self::Polars { operation, source }
    }

    pub fn io(operation: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        move |source| Self::Io { operation, source }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            Self::MalformedHandle { .. } | Self::InvalidArgument(_) => ErrorCode::InvalidArgument,
            Self::HandleNotFound(_) | Self::FileNotFound(_) => ErrorCode::NotFound,
            Self::OutsideDataRoots(_) | Self::OutboundRefused(_) => ErrorCode::PermissionDenied,
            Self::LimitExceeded(_) => ErrorCode::ResourceExhausted,
            Self::SourceChanged(_) | Self::LineageTooDeep { .. } | Self::NothingCaptured(_) => {
                ErrorCode::FailedPrecondition
            }
            Self::Unimplemented(_) => ErrorCode::Unimplemented,
            Self::Remote(_) => ErrorCode::Unavailable,
            Self::RemoteAnswer { code, .. } | Self::StreamCap { code, .. } => *code,
            Self::Cancelled => ErrorCode::Cancelled,
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                ErrorCode::NotFound
            }
            Self::Store(e) => e.code(),
            Self::Io { .. } | Self::Internal { .. } => ErrorCode::Internal,
            Self::Polars { source, .. } => polars_code(source),
        }
    }
}

fn polars_code(error: &PolarsError) -> ErrorCode {
    match error {
        PolarsError::Context { error, .. } | PolarsError::ExprContext { error, .. } => {
            polars_code(error)
        }
        PolarsError::IO { error, .. } if error.kind() == std::io::ErrorKind::NotFound => {
            ErrorCode::NotFound
        }
        PolarsError::IO { .. } => ErrorCode::Internal,
        // Everything else Polars reports is about the plan or the data it was given.
        _ => ErrorCode::InvalidArgument,
    }
}

pub type EngineResult<T> = Result<T, EngineError>;
