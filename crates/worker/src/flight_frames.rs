//! The worker's Flight service as the server routes it: `DoGet` is answered here, each
//! message framed for gRPC by hand so that its Arrow body reaches the connection as the
//! bytes it was encoded into. Tonic's encoder copies every message into its own buffer
//! first: for a large fetch, one of the three copies a byte took on its way out. Every
//! other call, and a `DoGet` whose request is compressed, goes to the generated service.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use futures::StreamExt;
use http_body::Frame;
use polaroid_proto::codec::PresizedProstCodec;
use polaroid_proto::flight::{self as pb, flight_service_server::FlightServiceServer};
use tonic::body::Body;
use tonic::codec::Codec;
use tonic::server::NamedService;
use tonic::{Code, Status, Streaming};

use crate::error::EngineError;
use crate::flight::{FlightServer, ReplyStream};
use crate::service::status;

/// `DoGet`'s path: [`NamedService::NAME`] of the generated service, then the method.
const DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";

/// `arrow.flight.protocol.FlightService`, with `DoGet` framed here.
#[derive(Clone)]
pub struct FlightService {
    generated: FlightServiceServer<FlightServer>,
    server: Arc<FlightServer>,
    max_request_bytes: usize,
    max_response_bytes: usize,
}

impl FlightService {
    pub fn new(server: FlightServer, config: &crate::WorkerConfig) -> Self {
        let server = Arc::new(server);
        Self {
            generated: FlightServiceServer::from_arc(server.clone())
                .max_decoding_message_size(config.max_request_message_bytes)
                .max_encoding_message_size(config.max_response_message_bytes),
            server,
            max_request_bytes: config.max_request_message_bytes,
            max_response_bytes: config.max_response_message_bytes,
        }
    }
}

impl NamedService for FlightService {
    const NAME: &'static str = <FlightServiceServer<FlightServer> as NamedService>::NAME;
}

type BoxFuture<T> = Pin<Box<dyn std::future::Future<Output = T> + Send>>;

impl tower::Service<http::Request<Body>> for FlightService {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        tower::Service::<http::Request<Body>>::poll_ready(&mut self.generated, cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The generated service answers a compressed request (UNIMPLEMENTED: the worker
        // accepts no compression) as it answers every other call.
        let compressed = request
            .headers()
            .get("grpc-encoding")
            .is_some_and(|encoding| encoding != "identity");
        if request.uri().path() != DO_GET || compressed {
            return Box::pin(self.generated.call(request));
        }
        let this = self.clone();
        Box::pin(async move {
            Ok(this
                .do_get(request)
                .await
                .unwrap_or_else(|status| status.into_http()))
        })
    }
}

impl FlightService {
    async fn do_get(&self, request: http::Request<Body>) -> Result<http::Response<Body>, Status> {
        let tenant = crate::service::tenant_in(request.extensions())?;
        let decoder = PresizedProstCodec::<pb::FlightData, pb::Ticket>::default().decoder();
        let mut inbound = Streaming::new_request(
            decoder,
            request.into_body(),
            None,
            Some(self.max_request_bytes),
        );
        let Some(ticket) = inbound.message().await? else {
            return Err(status(EngineError::invalid(
                "DoGet takes one Ticket; the request carried no message",
            )));
        };
        if inbound.message().await?.is_some() {
            return Err(status(EngineError::invalid(
                "DoGet takes one Ticket; the request carried more than one message",
            )));
        }
        let messages = self.server.fetch(tenant, &ticket).await?;
        let body = FramedMessages {
            messages,
            pending_body: None,
            finished: false,
            max_message_bytes: self.max_response_bytes,
        };
        Ok(http::Response::builder()
            .header(http::header::CONTENT_TYPE, "application/grpc")
            .body(Body::new(body))
            .expect("a static header is valid"))
    }
}

/// A response body of `FlightData` messages as gRPC frames, then the call's status as
/// trailers: OK after the last message, or the error that ended the stream. Each message
/// is at least two data frames, where tonic packs small messages into one buffer: DoGet's
/// messages are Arrow batches of up to the message limit, so the frames are few.
struct FramedMessages {
    messages: ReplyStream<pb::FlightData>,
    /// The Arrow body of the message whose head went last, to go next.
    pending_body: Option<Bytes>,
    finished: bool,
    max_message_bytes: usize,
}

impl http_body::Body for FramedMessages {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        if let Some(body) = self.pending_body.take() {
            return Poll::Ready(Some(Ok(Frame::data(body))));
        }
        if self.finished {
            return Poll::Ready(None);
        }
        let ended = match ready!(self.messages.poll_next_unpin(cx)) {
            Some(Ok(message)) => match message.into_grpc_frame(self.max_message_bytes) {
                Ok((head, body)) => {
                    self.pending_body = Some(body).filter(|body| !body.is_empty());
                    return Poll::Ready(Some(Ok(Frame::data(head))));
                }
                Err(too_large) => status(EngineError::LimitExceeded(too_large.to_string())),
            },
            Some(Err(error)) => error,
            None => Status::ok(""),
        };
        self.finished = true;
        Poll::Ready(Some(Ok(Frame::trailers(trailers(&ended)))))
    }

    fn is_end_stream(&self) -> bool {
        // Nothing is pending once finished: the trailers follow a body, never precede it.
        self.finished
    }
}

fn trailers(status: &Status) -> http::HeaderMap {
    let mut trailers = http::HeaderMap::new();
    if status.add_header(&mut trailers).is_err() {
        // Unreachable in practice: the message is percent-encoded and metadata sanitized.
        trailers.clear();
        trailers.insert(
            http::HeaderName::from_static("grpc-status"),
            http::HeaderValue::from(Code::Internal as i32),
        );
    }
    trailers
}

#[cfg(test)]
mod tests {
    use http_body_util::BodyExt;

    use super::*;

    fn message(body_len: usize) -> pb::FlightData {
        pb::FlightData::with_aligned_body(vec![1; 16], Bytes::from(vec![7; body_len]))
    }

    /// Every frame of a body made of `messages`, with at most `limit` bytes per message:
    /// the data put together, and the trailers.
    async fn frames(
        messages: Vec<Result<pb::FlightData, Status>>,
        limit: usize,
    ) -> (Vec<u8>, http::HeaderMap) {
        let mut body = FramedMessages {
            messages: Box::pin(futures::stream::iter(messages)),
            pending_body: None,
            finished: false,
            max_message_bytes: limit,
        };
        let (mut data, mut trailers) = (Vec::new(), None);
        while let Some(frame) = body.frame().await {
            let frame = frame.expect("infallible");
            assert!(trailers.is_none(), "nothing follows the trailers");
            match frame.into_data() {
                Ok(chunk) => data.extend_from_slice(&chunk),
                Err(frame) => trailers = frame.into_trailers().ok(),
            }
        }
        assert!(http_body::Body::is_end_stream(&body));
        (data, trailers.expect("trailers end the body"))
    }

    fn code(trailers: &http::HeaderMap) -> (Code, String) {
        let status = Status::from_header_map(trailers).expect("a status");
        (status.code(), status.message().to_owned())
    }

    #[tokio::test]
    async fn messages_then_ok() {
        let sent = vec![message(0), message(100), message(5000)];
        let (data, trailers) = frames(sent.iter().cloned().map(Ok).collect(), 1 << 20).await;
        let mut expected = Vec::new();
        for message in sent {
            let (head, body) = message.into_grpc_frame(usize::MAX).expect("fits");
            expected.extend_from_slice(&head);
            expected.extend_from_slice(&body);
        }
        assert_eq!(data, expected);
        assert_eq!(code(&trailers).0, Code::Ok);
    }

    #[tokio::test]
    async fn a_message_over_the_limit_ends_the_call_after_the_ones_before() {
        let (head, body) = message(10).into_grpc_frame(usize::MAX).expect("fits");
        let first = [&head[..], &body[..]].concat();
        let (data, trailers) = frames(vec![Ok(message(10)), Ok(message(5000))], 1000).await;
        assert_eq!(data, first, "the first message, and nothing of the second");
        let (code, text) = code(&trailers);
        assert_eq!(code, Code::ResourceExhausted, "{text}");
        assert!(text.contains("over the limit of 1000 bytes"), "{text}");
    }

    #[tokio::test]
    async fn an_error_midway_is_the_calls_status() {
        let failed = Status::not_found("gone: ünïcode and % signs");
        let (_, trailers) = frames(vec![Ok(message(10)), Err(failed)], 1 << 20).await;
        assert_eq!(
            code(&trailers),
            (Code::NotFound, "gone: ünïcode and % signs".to_owned())
        );
    }
}
