//! Which failures of a call to a worker mean the worker is down, and which are the call's
//! own.
//!
//! Only a worker that cannot be reached (connect refused or timed out, its connection
//! reset or closed under the call, a graceful GOAWAY as it shuts down) is routed around
//! until it reports again, and only then is the call run on the next worker. Anything
//! else is this call's answer: a status the worker sent, or an answer this side could
//! not read (a header block over `max_header_list_size`, a malformed frame, a reset of
//! its stream). Such an answer is deterministic, so running the call elsewhere gets the
//! same one: issue 22 found a 100 KB handle, echoed into a worker's status, make h2 close
//! the connection (its header list was over 4x the limit, which h2 answers with
//! ENHANCE_YOUR_CALM on the whole connection), after which failover walked the ring and
//! marked every worker unreachable within milliseconds.

use polaroid_proto::ErrorCode;
use tonic::Code;

/// What a failed call says about the worker it was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The worker is down or unreachable: route around it and retry the call elsewhere.
    WorkerDown,
    /// The worker is fine; the call fails with this code and is not run elsewhere.
    CallFailed(ErrorCode),
}

/// An HTTP/2 error, as far as it tells who failed: the facts of an [`h2::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Http2Failure {
    /// The connection's socket failed or closed (reset, end of stream, broken pipe).
    Io,
    /// The worker closed the connection (GOAWAY) with this reason.
    RemoteGoAway(h2::Reason),
    /// This side closed the connection over what the worker sent.
    LocalGoAway(h2::Reason),
    /// The worker reset the call's stream.
    RemoteReset(h2::Reason),
    /// This side reset the call's stream over what the worker sent, e.g. a header block
    /// over `max_header_list_size` (REFUSED_STREAM).
    LocalReset(h2::Reason),
    /// A misuse of h2 by this side.
    Other,
}

impl Http2Failure {
    pub fn of(error: &h2::Error) -> Self {
        let reason = error.reason().unwrap_or(h2::Reason::INTERNAL_ERROR);
        if error.is_io() {
            Self::Io
        } else if error.is_go_away() {
            if error.is_remote() {
                Self::RemoteGoAway(reason)
            } else {
                Self::LocalGoAway(reason)
            }
        } else if error.is_reset() {
            if error.is_remote() {
                Self::RemoteReset(reason)
            } else {
                Self::LocalReset(reason)
            }
        } else {
            Self::Other
        }
    }

    pub fn verdict(self) -> Verdict {
        match self {
            Self::Io => Verdict::WorkerDown,
            // A worker shutting down says NO_ERROR; the streams it did not take are safe
            // to run elsewhere.
            Self::RemoteGoAway(h2::Reason::NO_ERROR) => Verdict::WorkerDown,
            // The worker closed the connection over what it was sent: another worker
            // would do the same, and the caller may try again on a new connection.
            Self::RemoteGoAway(_) => Verdict::CallFailed(ErrorCode::Unavailable),
            // Not processed (RFC 9113 8.7): the caller may send it again.
            Self::RemoteReset(h2::Reason::REFUSED_STREAM) => {
                Verdict::CallFailed(ErrorCode::Unavailable)
            }
            Self::RemoteReset(_) | Self::LocalGoAway(_) | Self::LocalReset(_) | Self::Other => {
                Verdict::CallFailed(ErrorCode::Internal)
            }
        }
    }
}

/// A failure of a call through a tonic channel worth trying the next worker for. A status
/// the worker sent, even UNAVAILABLE (a REST source that is down), is its answer. Tonic
/// attaches a transport failure as the status's source: an HTTP/2 error in that chain is
/// judged as on a forwarded call; other transport errors (connect refused, timed out)
/// mean the worker is down, and so does hyper's CANCELLED "operation was canceled" when a
/// connection dies under a queued call (a worker never sends CANCELLED itself, and our
/// own caller cancelling drops the call instead).
pub fn is_transport_failure(status: &tonic::Status) -> bool {
    use std::error::Error;
    match status.code() {
        Code::Cancelled => true,
        Code::Unavailable | Code::Unknown | Code::Internal => {
            let mut source = status.source();
            while let Some(error) = source {
                if let Some(h2) = error.downcast_ref::<h2::Error>() {
                    return Http2Failure::of(h2).verdict() == Verdict::WorkerDown;
                }
                source = error.source();
            }
            status.source().is_some()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Status;

    #[test]
    fn only_an_unreachable_worker_is_down() {
        use h2::Reason;
        assert_eq!(Http2Failure::Io.verdict(), Verdict::WorkerDown);
        assert_eq!(
            Http2Failure::RemoteGoAway(Reason::NO_ERROR).verdict(),
            Verdict::WorkerDown,
            "a worker shutting down"
        );
        for (failure, code) in [
            (
                Http2Failure::LocalGoAway(Reason::ENHANCE_YOUR_CALM),
                ErrorCode::Internal,
            ),
            (
                Http2Failure::LocalGoAway(Reason::COMPRESSION_ERROR),
                ErrorCode::Internal,
            ),
            (
                Http2Failure::LocalReset(Reason::REFUSED_STREAM),
                ErrorCode::Internal,
            ),
            (
                Http2Failure::LocalReset(Reason::PROTOCOL_ERROR),
                ErrorCode::Internal,
            ),
            (
                Http2Failure::RemoteReset(Reason::INTERNAL_ERROR),
                ErrorCode::Internal,
            ),
            (
                Http2Failure::RemoteReset(Reason::REFUSED_STREAM),
                ErrorCode::Unavailable,
            ),
            (
                Http2Failure::RemoteGoAway(Reason::ENHANCE_YOUR_CALM),
                ErrorCode::Unavailable,
            ),
            (Http2Failure::Other, ErrorCode::Internal),
        ] {
            assert_eq!(failure.verdict(), Verdict::CallFailed(code), "{failure:?}");
        }
        assert_eq!(
            Http2Failure::of(&h2::Error::from(Reason::CANCEL)),
            Http2Failure::Other
        );
    }

    /// A real h2 client and server over an in-memory pipe: an answer whose header block is
    /// far over the client's limit (as a 100 KB echoed handle was) is the call's failure,
    /// not the worker's; a connection that closes under a call is the worker's.
    #[tokio::test]
    async fn real_h2_failures_are_judged_by_who_failed() {
        let over_limit = answer_with_status_message(&"x".repeat(100_000)).await;
        assert!(
            matches!(over_limit, Http2Failure::LocalGoAway(_)),
            "{over_limit:?}"
        );
        assert_eq!(
            over_limit.verdict(),
            Verdict::CallFailed(ErrorCode::Internal)
        );
        let within = answer_with_status_message(&"x".repeat(20_000)).await;
        // Over the limit but under 4x: h2 resets only this stream.
        assert!(matches!(within, Http2Failure::LocalReset(_)), "{within:?}");
        assert_eq!(within.verdict(), Verdict::CallFailed(ErrorCode::Internal));

        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let server = tokio::spawn(async move {
            let mut connection = h2::server::handshake(server_io).await.expect("handshake");
            // Takes the request, then drops the connection as a killed worker would.
            let _request = connection.accept().await;
        });
        let (mut sender, connection) = client_handshake(client_io).await;
        tokio::spawn(connection);
        let (response, _) = sender
            .send_request(request(), true)
            .expect("send the request");
        let failure = response.await.expect_err("the connection closed");
        server.await.expect("server task");
        assert_eq!(Http2Failure::of(&failure), Http2Failure::Io, "{failure}");
        assert_eq!(Http2Failure::of(&failure).verdict(), Verdict::WorkerDown);
    }

    fn request() -> http::Request<()> {
        http::Request::post("http://worker/polaroid.v1.DataFrameService/GetShape")
            .body(())
            .expect("request")
    }

    async fn client_handshake(
        io: tokio::io::DuplexStream,
    ) -> (
        h2::client::SendRequest<bytes::Bytes>,
        h2::client::Connection<tokio::io::DuplexStream, bytes::Bytes>,
    ) {
        // The link's limits (see `link::WorkerLink::connect`).
        h2::client::Builder::new()
            .max_frame_size(1 << 20)
            .max_header_list_size(crate::link::MAX_HEADER_LIST_BYTES)
            .handshake(io)
            .await
            .expect("client handshake")
    }

    /// How the client fails to read a trailers-only answer whose `grpc-message` is
    /// `message`.
    async fn answer_with_status_message(message: &str) -> Http2Failure {
        let (client_io, server_io) = tokio::io::duplex(1 << 20);
        let message = message.to_owned();
        tokio::spawn(async move {
            let mut connection = h2::server::handshake(server_io).await.expect("handshake");
            if let Some(Ok((_, mut respond))) = connection.accept().await {
                let answer = http::Response::builder()
                    .header("content-type", "application/grpc")
                    .header("grpc-status", "3")
                    .header("grpc-message", message)
                    .body(())
                    .expect("response");
                let _ = respond.send_response(answer, true);
            }
            // Serves the connection until the client is done with it.
            while connection.accept().await.is_some() {}
        });
        let (mut sender, connection) = client_handshake(client_io).await;
        tokio::spawn(connection);
        let (response, _) = sender
            .send_request(request(), true)
            .expect("send the request");
        let failure = response.await.expect_err("the answer is over the limit");
        Http2Failure::of(&failure)
    }

    #[test]
    fn only_transport_failures_of_a_channel_fail_over() {
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
        let broken = std::io::Error::other("connection closed");
        let status = Status::from_error(Box::new(broken));
        assert_eq!(status.code(), Code::Unknown);
        assert!(is_transport_failure(&status));
        // An HTTP/2 error that is the call's own, however deep in the chain, is not.
        #[derive(Debug, thiserror::Error)]
        #[error("transport error")]
        struct Wrapped(#[source] h2::Error);
        let h2_own = h2::Error::from(h2::Reason::PROTOCOL_ERROR);
        let status = Status::from_error(Box::new(Wrapped(h2_own)));
        assert!(!is_transport_failure(&status), "{status:?}");
    }
}
