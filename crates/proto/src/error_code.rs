//! Polaroid's error codes and their gRPC and HTTP equivalents, in one table, and the
//! bounds on what a status message may carry.
//!
//! A status message travels in `grpc-message`, an HTTP/2 trailer. A message that echoes a
//! client's string whole is as long as the client likes, and a header block over the
//! receiver's limit is refused: a 100 KB handle echoed by a worker made the coordinator's
//! h2 client close its whole connection to that worker (h2 closes the connection with
//! ENHANCE_YOUR_CALM past 4x its `max_header_list_size`), and failover then walked the
//! ring and did the same to every worker. So client strings are quoted through
//! [`excerpt`], and every message is cut to [`MAX_STATUS_MESSAGE_BYTES`] by
//! [`ErrorCode::status`].

use std::fmt;

/// The most bytes of a status message. Percent-encoded in `grpc-message` it is at most
/// three times this, well within any HTTP/2 peer's header list limit (16 KiB is usual).
pub const MAX_STATUS_MESSAGE_BYTES: usize = 1024;

/// The most characters of a client's string quoted in an error message.
pub const MAX_EXCERPT_CHARS: usize = 128;

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
    /// A concurrent change won a compare-and-set too many times in a row; the whole
    /// operation may be tried again.
    Aborted,
    /// The call ran past its deadline: the client's `grpc-timeout`, or the server's
    /// maximum call time.
    DeadlineExceeded,
    /// A bug or an unexpected failure on the server.
    Internal,
}

impl ErrorCode {
    /// The status for this error with `message`, cut to [`MAX_STATUS_MESSAGE_BYTES`]:
    /// the one way an error becomes a `tonic::Status` at a service edge.
    pub fn status(self, message: impl Into<String>) -> tonic::Status {
        tonic::Status::new(self.grpc(), bounded_message(message.into()))
    }

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
            Self::Aborted => tonic::Code::Aborted,
            Self::DeadlineExceeded => tonic::Code::DeadlineExceeded,
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
            Self::Aborted => 409,
            Self::DeadlineExceeded => 504,
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
            Self::Aborted => "aborted",
            Self::DeadlineExceeded => "deadline_exceeded",
            Self::Internal => "internal",
        }
    }
}

/// `message` cut to [`MAX_STATUS_MESSAGE_BYTES`] (on a character boundary), saying how
/// long it was.
pub fn bounded_message(message: String) -> String {
    if message.len() <= MAX_STATUS_MESSAGE_BYTES {
        return message;
    }
    let note = format!("… ({} bytes in all)", message.len());
    let mut end = MAX_STATUS_MESSAGE_BYTES - note.len();
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    let mut cut = message;
    cut.truncate(end);
    cut.push_str(&note);
    cut
}

/// A client's string quoted in an error message: whole when short, else its first
/// [`MAX_EXCERPT_CHARS`] characters, an ellipsis and its length.
pub fn excerpt(text: &str) -> Excerpt<'_> {
    Excerpt(text)
}

/// See [`excerpt`].
#[derive(Debug, Clone, Copy)]
pub struct Excerpt<'a>(&'a str);

impl fmt::Display for Excerpt<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.char_indices().nth(MAX_EXCERPT_CHARS) {
            None => f.write_str(self.0),
            Some((end, _)) => write!(f, "{}… ({} bytes)", &self.0[..end], self.0.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_keep_short_strings_and_cut_long_ones() {
        assert_eq!(excerpt("data.parquet").to_string(), "data.parquet");
        let exact = "é".repeat(MAX_EXCERPT_CHARS);
        assert_eq!(excerpt(&exact).to_string(), exact);
        let long = "é".repeat(100_000);
        let quoted = excerpt(&long).to_string();
        assert!(quoted.starts_with(&"é".repeat(MAX_EXCERPT_CHARS)));
        assert!(quoted.ends_with("… (200000 bytes)"), "{quoted}");
        assert!(quoted.chars().count() < MAX_EXCERPT_CHARS + 20);
    }

    #[test]
    fn statuses_are_bounded_whole() {
        let short = ErrorCode::NotFound.status("no such handle");
        assert_eq!(short.message(), "no such handle");
        assert_eq!(short.code(), tonic::Code::NotFound);
        for unit in ["a", "é", "€", "𝄞"] {
            let message = unit.repeat(100_000);
            let status = ErrorCode::InvalidArgument.status(message.clone());
            assert!(status.message().len() <= MAX_STATUS_MESSAGE_BYTES, "{unit}");
            assert!(status.message().starts_with(unit.repeat(8).as_str()));
            let total = format!("({} bytes in all)", message.len());
            assert!(status.message().ends_with(&total), "{}", status.message());
        }
        let exact = "x".repeat(MAX_STATUS_MESSAGE_BYTES);
        assert_eq!(bounded_message(exact.clone()), exact);
    }
}
