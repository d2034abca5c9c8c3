//! Polaroid's error codes and their gRPC and HTTP equivalents, in one table.

/// What went wrong, independent of the transport. Every library error maps to one of these;
/// the service edge turns it into a `tonic::Status` (or an HTTP status) with this table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The request is malformed: bad handle syntax, unknown column, wrong type, bad expression.
    InvalidArgument,
    /// The handle, file or object does not exist (or belongs to another tenant).
    NotFound,
    /// The caller presented no credential, or one nobody issued.
    Unauthenticated,
    /// The request touches something outside what the caller may access (data roots, a
    /// call its role may not make, an address outbound requests may not reach).
    PermissionDenied,
    /// The result or request is over a configured limit.
    ResourceExhausted,
    /// The request is valid but the state it depends on changed (e.g. a source file).
    FailedPrecondition,
    /// The call is declared but not available yet.
    Unimplemented,
    /// A dependency (a remote source, the store) could not be reached.
    Unavailable,
    /// The work was cancelled by its owner (a batch job's `CancelJob`).
    Cancelled,
    /// A bug or an unexpected failure on the server.
    Internal,
}

impl ErrorCode {
    /// The gRPC status code for this error.
    pub fn grpc(self) -> tonic::Code {
        match self {
            Self::InvalidArgument => tonic::Code::InvalidArgument,
            Self::NotFound => tonic::Code::NotFound,
            Self::Unauthenticated => tonic::Code::Unauthenticated,
            Self::PermissionDenied => tonic::Code::PermissionDenied,
            Self::ResourceExhausted => tonic::Code::ResourceExhausted,
            Self::FailedPrecondition => tonic::Code::FailedPrecondition,
            Self::Unimplemented => tonic::Code::Unimplemented,
            Self::Unavailable => tonic::Code::Unavailable,
            Self::Cancelled => tonic::Code::Cancelled,
            Self::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status code for this error (admin and health endpoints).
    pub fn http(self) -> u16 {
        match self {
            Self::InvalidArgument => 400,
            Self::NotFound => 404,
            Self::Unauthenticated => 401,
            Self::PermissionDenied => 403,
            Self::ResourceExhausted => 429,
            Self::FailedPrecondition => 412,
            Self::Unimplemented => 501,
            Self::Unavailable => 503,
            // nginx's "client closed request": the conventional HTTP code for it.
            Self::Cancelled => 499,
            Self::Internal => 500,
        }
    }

    /// A stable lowercase name, for metrics labels and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArgument => "invalid_argument",
            Self::NotFound => "not_found",
            Self::Unauthenticated => "unauthenticated",
            Self::PermissionDenied => "permission_denied",
            Self::ResourceExhausted => "resource_exhausted",
            Self::FailedPrecondition => "failed_precondition",
            Self::Unimplemented => "unimplemented",
            Self::Unavailable => "unavailable",
            Self::Cancelled => "cancelled",
            Self::Internal => "internal",
        }
    }
}
