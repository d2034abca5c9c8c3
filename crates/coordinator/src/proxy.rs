//! The coordinator's `DataFrameService`: every call is forwarded, as raw protobuf bytes,
//! to the worker that owns its affinity key, and retried on the next distinct worker on
//! the ring when that worker cannot be reached. Responses stream through message by
//! message: a result is never held whole here.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes};
use futures::{Stream, StreamExt};
use http::uri::PathAndQuery;
use polaroid_proto::AFFINITY_METADATA;
use rand::Rng;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::cluster::Cluster;
use crate::error::CoordinatorError;
use crate::routing::{RouteKey, route_key};

/// Passes protobuf messages through undecoded.
#[derive(Clone, Copy, Default)]
struct RawCodec;

struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }

    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Bytes;
    type Error = Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

type MessageStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// The forwarding `DataFrameService`.
#[derive(Clone)]
pub struct DataFrameProxy {
    inner: Arc<Settings>,
}

struct Settings {
    cluster: Arc<Cluster>,
    max_attempts: usize,
    backoff: Duration,
    max_request_bytes: usize,
    max_response_bytes: usize,
}

impl DataFrameProxy {
    pub fn new(
        cluster: Arc<Cluster>,
        max_attempts: usize,
        backoff: Duration,
        max_request_bytes: usize,
        max_response_bytes: usize,
    ) -> Self {
        Self {
            inner: Arc::new(Settings {
                cluster,
                max_attempts: max_attempts.max(1),
                backoff,
                max_request_bytes,
                max_response_bytes,
            }),
        }
    }
}

impl tonic::server::NamedService for DataFrameProxy {
    const NAME: &'static str = "polaroid.v1.DataFrameService";
}

impl tower::Service<http::Request<tonic::body::Body>> for DataFrameProxy {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let call = Forward {
            settings: self.inner.clone(),
            path: request.uri().path().to_owned(),
        };
        let (max_request, max_response) =
            (self.inner.max_request_bytes, self.inner.max_response_bytes);
        Box::pin(async move {
            let mut grpc = tonic::server::Grpc::new(RawCodec)
                .apply_max_message_size_config(Some(max_request), Some(max_response));
            // Unary, server-, client- and bidi-streaming calls share one wire format; a
            // stream of one message each way is a unary call.
            Ok(grpc.streaming(call, request).await)
        })
    }
}

/// One forwarded call.
struct Forward {
    settings: Arc<Settings>,
    path: String,
}

impl tower::Service<Request<Streaming<Bytes>>> for Forward {
    type Response = Response<MessageStream>;
    type Error = Status;
    type Future = BoxFuture<Result<Self::Response, Status>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Status>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<Streaming<Bytes>>) -> Self::Future {
        let settings = self.settings.clone();
        let path = self.path.clone();
        Box::pin(async move { forward(&settings, path, request).await })
    }
}

/// A failure worth trying the next worker for: the worker is unreachable or went away
/// (tonic attaches the transport error as the source, except for hyper's "operation was
/// canceled" when a connection dies under a queued call, which is CANCELLED; a worker
/// never sends CANCELLED itself, and our own caller cancelling drops this call instead).
/// A status the worker sent, even UNAVAILABLE (a REST source that is down), is its answer.
pub(crate) fn is_transport_failure(status: &Status) -> bool {
    use std::error::Error;
    match status.code() {
        tonic::Code::Cancelled => true,
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Internal => {
            status.source().is_some()
        }
        _ => false,
    }
}

/// Whether running the call twice could change more than running it once: a write that
/// appends. Every other call makes content-addressed handles or replaces a file whole.
fn repeats_have_effects(method: &str, request: &[u8]) -> bool {
    use polaroid_proto::v1 as pb;
    use prost::Message;
    match method {
        "WriteParquet" => pb::WriteParquetRequest::decode(request).is_ok_and(|r| r.append),
        "WriteCsv" => pb::WriteCsvRequest::decode(request).is_ok_and(|r| r.append),
        "WriteIpc" => pb::WriteIpcRequest::decode(request).is_ok_and(|r| r.append),
        _ => false,
    }
}

/// `grpc-timeout`: up to 8 digits and a unit (H, M, S, m, u, n).
fn parse_grpc_timeout(value: &str) -> Option<Duration> {
    let (digits, unit) = value.split_at(value.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let amount: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(amount.saturating_mul(3600)),
        "M" => Duration::from_secs(amount.saturating_mul(60)),
        "S" => Duration::from_secs(amount),
        "m" => Duration::from_millis(amount),
        "u" => Duration::from_micros(amount),
        "n" => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The request messages to send: replayable when the client sent at most one (every
/// unary and server-streaming call), else the first two and the rest of the stream.
enum Body {
    Replayable(Option<Bytes>),
    Stream(Option<MessageStream>),
}

async fn read_body(mut inbound: Streaming<Bytes>) -> Result<Body, Status> {
    let Some(first) = inbound.message().await? else {
        return Ok(Body::Replayable(None));
    };
    let Some(second) = inbound.message().await? else {
        return Ok(Body::Replayable(Some(first)));
    };
    let rest = inbound.map(|m| m);
    Ok(Body::Stream(Some(Box::pin(
        futures::stream::iter([Ok(first), Ok(second)]).chain(rest),
    ))))
}

/// The outbound request stream. If the client's stream fails (a chunk over the size
/// limit, a broken connection), the worker's stream is left open rather than ended, so
/// the worker never mistakes a truncated upload for a whole one, and the failure goes to
/// `failed`, which ends the call with the client's error (dropping the worker's call
/// resets its stream).
fn outbound(
    messages: MessageStream,
    failed: tokio::sync::oneshot::Sender<Status>,
) -> impl Stream<Item = Bytes> + Send {
    futures::stream::unfold(Some((messages, Some(failed))), |state| async move {
        let (mut messages, mut failed) = state?;
        match messages.next().await {
            Some(Ok(message)) => Some((message, Some((messages, failed)))),
            Some(Err(status)) => {
                if let Some(failed) = failed.take() {
                    let _ = failed.send(status);
                }
                std::future::pending::<()>().await;
                None
            }
            None => None,
        }
    })
}

async fn forward(
    settings: &Settings,
    path: String,
    request: Request<Streaming<Bytes>>,
) -> Result<Response<MessageStream>, Status> {
    let started = Instant::now();
    let (mut metadata, _extensions, inbound) = request.into_parts();
    let deadline = metadata
        .remove("grpc-timeout")
        .and_then(|v| v.to_str().ok().and_then(parse_grpc_timeout))
        .map(|timeout| started + timeout);
    metadata.remove(AFFINITY_METADATA);
    let mut body = read_body(inbound).await?;
    let method = path.rsplit('/').next().unwrap_or_default();
    let retryable = match &body {
        Body::Replayable(first) => {
            !repeats_have_effects(method, first.as_deref().unwrap_or_default())
        }
        Body::Stream(_) => false,
    };
    let key = match &body {
        Body::Replayable(first) => route_key(method, first.as_deref()),
        // A client stream (an upload) creates a new pipeline.
        Body::Stream(_) => route_key(method, None),
    };
    if let RouteKey::Fresh(affinity) = key {
        if let Ok(value) = MetadataValue::try_from(affinity.to_hex()) {
            metadata.insert(AFFINITY_METADATA, value);
        }
    }
    let route = match key {
        RouteKey::Pipeline(_) => "pipeline",
        RouteKey::Fresh(_) => "new_pipeline",
    };
    metrics::counter!("polaroid_coordinator_routed_calls_total", "route" => route).increment(1);
    let path = PathAndQuery::try_from(path)
        .map_err(|e| Status::invalid_argument(format!("bad method path: {e}")))?;

    let cluster = &settings.cluster;
    let mut tried = Vec::new();
    let mut last_failure = None;
    for attempt in 0..settings.max_attempts {
        if attempt > 0 {
            metrics::counter!("polaroid_coordinator_retries_total").increment(1);
            // Exponential backoff with full jitter, never past the caller's deadline.
            let ceiling = settings.backoff.saturating_mul(1 << (attempt - 1).min(10));
            let pause = ceiling.mul_f64(rand::rng().random_range(0.5..=1.0));
            if deadline.is_some_and(|d| Instant::now() + pause >= d) {
                return Err(CoordinatorError::DeadlineExceeded.into());
            }
            tokio::time::sleep(pause).await;
        }
        let target = match cluster.pick(key.affinity().as_u64(), &tried) {
            Ok(target) => target,
            // Every worker was tried: report the last failure, which says more.
            Err(e) => return Err(last_failure.unwrap_or_else(|| e.into())),
        };
        tried.push(target.worker_id.clone());
        let messages: MessageStream = match &mut body {
            Body::Replayable(first) => Box::pin(futures::stream::iter(first.clone().map(Ok))),
            Body::Stream(stream) => match stream.take() {
                Some(stream) => stream,
                None => break,
            },
        };
        let (failed, client_failure) = tokio::sync::oneshot::channel();
        let mut outgoing = Request::from_parts(
            metadata.clone(),
            Default::default(),
            outbound(messages, failed),
        );
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CoordinatorError::DeadlineExceeded.into());
            }
            outgoing.set_timeout(left);
        }
        let mut client = tonic::client::Grpc::new(target.channel)
            .max_decoding_message_size(settings.max_response_bytes)
            .max_encoding_message_size(settings.max_request_bytes);
        let call = async {
            client
                .ready()
                .await
                .map_err(|e| Status::from_error(e.into()))?;
            let response = client.streaming(outgoing, path.clone(), RawCodec).await?;
            let (headers, mut messages, extensions) = response.into_parts();
            // The first message (or the end) is awaited here so that a worker that dies
            // before answering is failed over; after it, the stream is the client's.
            let first = messages.message().await?;
            Ok::<_, Status>((headers, first, messages, extensions))
        };
        let answer = tokio::select! {
            answer = call => answer,
            Ok(status) = client_failure => return Err(status),
        };
        let failure = match answer {
            Ok((headers, first, messages, extensions)) => {
                if attempt > 0 {
                    metrics::counter!("polaroid_coordinator_failovers_total").increment(1);
                }
                // A worker lost mid-stream is UNAVAILABLE to the client (which may run the
                // call again), not the transport's UNKNOWN; it is suspect until it reports.
                let (cluster, worker) = (cluster.clone(), target.worker_id.clone());
                let rest = messages.map(move |message| {
                    message.map_err(|status| {
                        if !is_transport_failure(&status) {
                            return status;
                        }
                        cluster.suspect(&worker);
                        Status::unavailable(format!(
                            "worker {worker} went away during the response: {}",
                            status.message()
                        ))
                    })
                });
                let stream: MessageStream =
                    Box::pin(futures::stream::iter(first.map(Ok)).chain(rest));
                return Ok(Response::from_parts(headers, stream, extensions));
            }
            Err(status) => status,
        };
        if !retryable || !is_transport_failure(&failure) {
            return Err(failure);
        }
        tracing::warn!(worker = %target.worker_id, %attempt, error = %failure, "call failed over");
        cluster.suspect(&target.worker_id);
        last_failure = Some(failure);
    }
    Err(last_failure.unwrap_or_else(|| CoordinatorError::NoLiveWorkers.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appending_writes_are_not_repeated() {
        use polaroid_proto::v1 as pb;
        use prost::Message;
        let append = pb::WriteParquetRequest {
            append: true,
            ..Default::default()
        };
        assert!(repeats_have_effects(
            "WriteParquet",
            &append.encode_to_vec()
        ));
        let replace = pb::WriteCsvRequest::default();
        assert!(!repeats_have_effects("WriteCsv", &replace.encode_to_vec()));
        assert!(!repeats_have_effects("Select", &append.encode_to_vec()));
    }

    #[test]
    fn grpc_timeouts_parse_strictly() {
        assert_eq!(parse_grpc_timeout("100m"), Some(Duration::from_millis(100)));
        assert_eq!(parse_grpc_timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse_grpc_timeout("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_grpc_timeout("5u"), Some(Duration::from_micros(5)));
        assert_eq!(parse_grpc_timeout(""), None);
        assert_eq!(parse_grpc_timeout("m"), None);
        assert_eq!(parse_grpc_timeout("123456789S"), None);
        assert_eq!(parse_grpc_timeout("10x"), None);
        assert_eq!(parse_grpc_timeout("-1S"), None);
    }

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
