//! The coordinator's `DataFrameService`: every call is forwarded, as raw protobuf bytes,
//! to the worker that owns its affinity key, and retried on the next distinct worker on
//! the ring when that worker cannot be reached (and only then: see `failover`). Responses
//! pass through as the worker's HTTP/2 frames, neither decoded nor copied: a result is
//! never held whole here.

use std::convert::Infallible;
use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures::{Stream, StreamExt};
use http::uri::PathAndQuery;
use http_body::Frame;
use http_body_util::BodyExt;
use polaroid_auth::{Caller, ClusterCredential};
use polaroid_proto::retry::RetryPolicy;
use polaroid_proto::{AFFINITY_METADATA, ErrorCode, GRPC_PREFIX_BYTES};
use tonic::codec::{DecodeBuf, Decoder};
use tonic::{Status, Streaming};

use crate::cluster::Cluster;
use crate::error::CoordinatorError;
use crate::failover::Verdict;
use crate::link::{LinkError, Outbound, Received};
use crate::routing::{DataFrameRoutes, FlightRoutes, RouteKey, Routes};

/// Reads the caller's request messages as undecoded protobuf bytes.
pub(crate) struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = Bytes;
    type Error = Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

pub(crate) type MessageStream = Pin<Box<dyn Stream<Item = Result<Bytes, Status>> + Send>>;
type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

/// A forwarding service: `DataFrameService` or Arrow Flight, which differ only in their
/// name and in where a call's handle sits in its request.
pub struct Proxy<R> {
    inner: Arc<Settings>,
    routes: PhantomData<fn() -> R>,
}

/// The forwarding `polaroid.v1.DataFrameService`.
pub type DataFrameProxy = Proxy<DataFrameRoutes>;

/// The forwarding `arrow.flight.protocol.FlightService`: `GetFlightInfo` reaches the
/// owning worker, which names itself as the first location, so large results can skip
/// this hop; `DoGet` here serves clients that cannot reach workers.
pub type FlightProxy = Proxy<FlightRoutes>;

impl<R> Clone for Proxy<R> {
    fn clone(&self) -> Self {
        self.serving()
    }
}

struct Settings {
    cluster: Arc<Cluster>,
    /// Carried by every forwarded call, with the caller it acts for: workers trust the
    /// tenant they are told only from a coordinator. Empty: the cluster runs without
    /// authentication, and workers take every call as their anonymous tenant.
    credential: ClusterCredential,
    /// Workers tried for one call and the waits between them.
    retry: RetryPolicy,
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
        credential: ClusterCredential,
    ) -> Self {
        Self {
            inner: Arc::new(Settings {
                cluster,
                credential,
                retry: RetryPolicy {
                    max_attempts: u32::try_from(max_attempts.max(1)).unwrap_or(u32::MAX),
                    first_backoff: backoff,
                    // Ten doublings: past them a call waits no longer between workers.
                    max_backoff: backoff.saturating_mul(1 << 10),
                    min_jitter: 0.5,
                },
                max_request_bytes,
                max_response_bytes,
            }),
            routes: PhantomData,
        }
    }
}

impl<R> Proxy<R> {
    /// The same forwarding, for another service.
    pub fn serving<Other>(&self) -> Proxy<Other> {
        Proxy {
            inner: self.inner.clone(),
            routes: PhantomData,
        }
    }
}

impl<R: Routes> tonic::server::NamedService for Proxy<R> {
    const NAME: &'static str = R::NAME;
}

impl<R: Routes> tower::Service<http::Request<tonic::body::Body>> for Proxy<R> {
    type Response = http::Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let settings = self.inner.clone();
        Box::pin(async move {
            Ok(forward::<R>(&settings, request)
                .await
                .unwrap_or_else(|status| status.into_http()))
        })
    }
}

/// Whether running the call twice could change more than running it once: a write that
/// appends. Every other call makes content-addressed handles or replaces a file whole.
pub(crate) fn repeats_have_effects(method: &str, request: &[u8]) -> bool {
    use polaroid_proto::v1 as pb;
    use prost::Message;
    match method {
        "WriteParquet" => pb::WriteParquetRequest::decode(request).is_ok_and(|r| r.append),
        "WriteCsv" => pb::WriteCsvRequest::decode(request).is_ok_and(|r| r.append),
        "WriteIpc" => pb::WriteIpcRequest::decode(request).is_ok_and(|r| r.append),
        _ => false,
    }
}

/// The request messages to send: replayable when the client sent at most one (every
/// unary and server-streaming call), else the first two and the rest of the stream.
pub(crate) enum Body {
    Replayable(Option<Bytes>),
    Stream(Option<MessageStream>),
}

pub(crate) async fn read_body(mut inbound: Streaming<Bytes>) -> Result<Body, Status> {
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

/// Headers of the caller's request that the coordinator sets itself or must not pass on.
/// The client's token stays here: a worker is told the caller by the coordinator (and
/// only by it: a client's own internal headers are refused by the auth layer, and not
/// passed on even so).
/// Request metadata a client's retry carries: which attempt of the call it is (2 for the
/// first retry). The SDK sends it; gRPC's own retries send `grpc-previous-rpc-attempts`.
pub const ATTEMPT_METADATA: &str = "x-polaroid-attempt";

/// How many workers one client call may be tried on. One budget per client call: on the
/// client's first attempt the coordinator fails over across up to `max_attempts` workers;
/// a retry of the client's gets one worker (a worker that failed is suspected by then, so
/// it goes to another), so the client's retries and the coordinator's add up instead of
/// multiplying (the SDK's 7 attempts with 3 each were 21 worker attempts; now at most 9).
fn worker_attempts(headers: &http::HeaderMap, max_attempts: u32) -> u32 {
    let number = |name: &str| {
        headers
            .get(name)
            .and_then(|value| value.to_str().ok())
            .and_then(|text| text.trim().parse::<u32>().ok())
    };
    let retried = number(ATTEMPT_METADATA).is_some_and(|attempt| attempt > 1)
        || number("grpc-previous-rpc-attempts").is_some_and(|previous| previous > 0);
    if retried { 1 } else { max_attempts }
}

const NOT_FORWARDED: [&str; 11] = [
    "authorization",
    polaroid_auth::TENANT_METADATA,
    polaroid_auth::ROLE_METADATA,
    polaroid_auth::CLUSTER_CREDENTIAL_METADATA,
    "te",
    "content-type",
    "content-length",
    "grpc-timeout",
    "grpc-encoding",
    "host",
    AFFINITY_METADATA,
];

/// `grpc-timeout` for `left`: the finest unit that fits the protocol's 8 digits.
pub(crate) fn grpc_timeout(left: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let micros = left.as_micros();
    if micros <= MAX {
        return format!("{}u", micros.max(1));
    }
    let millis = left.as_millis();
    if millis <= MAX {
        return format!("{millis}m");
    }
    let secs = u128::from(left.as_secs());
    if secs <= MAX {
        return format!("{secs}S");
    }
    format!("{}M", (secs / 60).min(MAX))
}

async fn forward<R: Routes>(
    settings: &Settings,
    request: http::Request<tonic::body::Body>,
) -> Result<http::Response<tonic::body::Body>, Status> {
    let started = Instant::now();
    let (parts, inbound) = request.into_parts();
    // Set by the server stack from the client's deadline and the maximum call time.
    let deadline = match parts.extensions.get::<polaroid_server::CallDeadline>() {
        Some(deadline) => Some(deadline.0),
        None => polaroid_server::client_timeout(&parts.headers).map(|timeout| started + timeout),
    };
    let inbound =
        Streaming::new_request(RawDecoder, inbound, None, Some(settings.max_request_bytes));
    let path = parts.uri.path().to_owned();
    let method = path.rsplit('/').next().unwrap_or_default();
    let mut body = if R::converses(method) {
        Body::Stream(Some(Box::pin(inbound)))
    } else {
        read_body(inbound).await?
    };
    let retryable = match &body {
        Body::Replayable(first) => {
            !repeats_have_effects(method, first.as_deref().unwrap_or_default())
        }
        Body::Stream(_) => false,
    };
    let key = match &body {
        Body::Replayable(first) => R::route_key(method, first.as_deref()),
        // A client stream (an upload) creates a new pipeline.
        Body::Stream(_) => R::route_key(method, None),
    };
    let mut headers = http::HeaderMap::with_capacity(parts.headers.len() + 3);
    for (name, value) in &parts.headers {
        if !NOT_FORWARDED.contains(&name.as_str()) {
            headers.append(name, value.clone());
        }
    }
    headers.insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, http::HeaderValue::from_static("trailers"));
    settings
        .credential
        .authorize(&mut headers, parts.extensions.get::<Caller>());
    if let RouteKey::Fresh(affinity) = key {
        if let Ok(value) = http::HeaderValue::try_from(affinity.to_hex()) {
            headers.insert(AFFINITY_METADATA, value);
        }
    }
    let route = match key {
        RouteKey::Pipeline(_) => "pipeline",
        RouteKey::Fresh(_) => "new_pipeline",
    };
    metrics::counter!("polaroid_coordinator_routed_calls_total", "route" => route).increment(1);
    let streams_a_source = R::streams_a_source(method);
    let path = PathAndQuery::try_from(path)
        .map_err(|e| Status::invalid_argument(format!("bad method path: {e}")))?;

    let cluster = &settings.cluster;
    let mut tried = Vec::new();
    let mut last_failure = None;
    for attempt in 0..worker_attempts(&parts.headers, settings.retry.max_attempts) {
        if attempt > 0 {
            metrics::counter!("polaroid_coordinator_retries_total").increment(1);
            // Exponential backoff with jitter, never past the caller's deadline.
            let pause = settings.retry.backoff(attempt);
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
        let (failed, client_failure) = tokio::sync::oneshot::channel();
        let outbound = match &mut body {
            Body::Replayable(first) => Outbound::Message(first.clone()),
            Body::Stream(stream) => match stream.take() {
                Some(messages) => Outbound::Stream { messages, failed },
                None => break,
            },
        };
        let mut headers = headers.clone();
        if let Some(deadline) = deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CoordinatorError::DeadlineExceeded.into());
            }
            if let Ok(value) = http::HeaderValue::try_from(grpc_timeout(left)) {
                headers.insert("grpc-timeout", value);
            }
        }
        let worker = target.worker_id.clone();
        let call = async {
            let response = target.link.send(path.as_str(), headers, outbound).await?;
            let (head, mut body) = response.into_parts();
            // The first frame (or the end) is awaited here so that a worker that dies
            // before answering is failed over; after it, the stream is the client's. A
            // streaming source may send nothing for a long time (an idle queue): its
            // answer is the client's from its head on.
            if streams_a_source {
                let ended = body.ended_at_head();
                return Ok::<_, LinkError>((head, None, body, ended));
            }
            let first = body.frame().await.transpose()?;
            let ended = first.is_none();
            Ok::<_, LinkError>((head, first, body, ended))
        };
        let answer = tokio::select! {
            // The client's own failure first: resetting the worker's stream for it also
            // fails `call`, and the client must hear its error, not UNAVAILABLE.
            biased;
            Ok(status) = client_failure => return Err(status),
            answer = call => answer,
        };
        let failure = match answer {
            Ok((head, first, rest, ended)) => {
                if attempt > 0 {
                    metrics::counter!("polaroid_coordinator_failovers_total").increment(1);
                }
                // A trailers-only answer (a status in the headers, no body) must stay one
                // HEADERS frame that ends the stream: gRPC clients reject data after it.
                let body = Forwarded {
                    first,
                    rest,
                    message: MessageLimit::new(settings.max_response_bytes),
                    worker,
                    cluster: cluster.clone(),
                    ended,
                };
                return Ok(http::Response::from_parts(
                    head,
                    tonic::body::Body::new(body),
                ));
            }
            Err(e @ LinkError::MessageTooLarge(_)) => {
                return Err(ErrorCode::ResourceExhausted.status(e.to_string()));
            }
            // Only an unreachable worker is routed around and the call run elsewhere: a
            // bad answer would be as bad from every worker, and failing over on it once
            // emptied the ring (see `failover`).
            Err(e) => match e.verdict() {
                Verdict::WorkerDown => {
                    ErrorCode::Unavailable.status(format!("worker {worker} failed to answer: {e}"))
                }
                Verdict::CallFailed(code) => {
                    tracing::warn!(worker = %worker, error = %e, "a worker's answer could not be read");
                    return Err(call_failed(code, &worker, &e));
                }
            },
        };
        if !retryable {
            return Err(failure);
        }
        tracing::warn!(worker = %worker, %attempt, error = %failure, "call failed over");
        cluster.suspect(&worker);
        last_failure = Some(failure);
    }
    Err(last_failure.unwrap_or_else(|| CoordinatorError::NoLiveWorkers.into()))
}

/// The status of a call whose answer from `worker` could not be read (or that the link
/// refused to send): the worker stays on the ring.
fn call_failed(code: ErrorCode, worker: &str, error: &dyn std::fmt::Display) -> Status {
    code.status(format!(
        "the answer of worker {worker} could not be read: {error}"
    ))
}

/// A worker's response body on its way to the caller, frame by frame as the worker's
/// connection hands them over (no copy, no re-encoding). A worker lost mid-stream ends it
/// with UNAVAILABLE (the caller may run the call again) and is suspect until it reports;
/// a message over the response limit ends it with RESOURCE_EXHAUSTED.
struct Forwarded {
    first: Option<Frame<Bytes>>,
    rest: Received,
    message: MessageLimit,
    worker: Arc<str>,
    cluster: Arc<Cluster>,
    ended: bool,
}

impl Forwarded {
    fn end_with(&mut self, status: Status) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        self.ended = true;
        let mut trailers = http::HeaderMap::new();
        Poll::Ready(Some(match status.add_header(&mut trailers) {
            Ok(()) => Ok(Frame::trailers(trailers)),
            Err(status) => Err(status),
        }))
    }
}

impl http_body::Body for Forwarded {
    type Data = Bytes;
    type Error = Status;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Status>>> {
        if self.ended {
            return Poll::Ready(None);
        }
        let frame = match self.first.take() {
            Some(frame) => frame,
            None => match Pin::new(&mut self.rest).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => frame,
                Poll::Ready(Some(Err(e))) => {
                    let worker = self.worker.clone();
                    let status = match e.verdict() {
                        Verdict::WorkerDown => {
                            self.cluster.suspect(&worker);
                            ErrorCode::Unavailable.status(format!(
                                "worker {worker} went away during the response: {e}"
                            ))
                        }
                        Verdict::CallFailed(code) => call_failed(code, &worker, &e),
                    };
                    return self.end_with(status);
                }
                Poll::Ready(None) => {
                    self.ended = true;
                    return Poll::Ready(None);
                }
                Poll::Pending => return Poll::Pending,
            },
        };
        if let Some(data) = frame.data_ref()
            && let Err(status) = self.message.check(data)
        {
            return self.end_with(status);
        }
        Poll::Ready(Some(Ok(frame)))
    }

    fn is_end_stream(&self) -> bool {
        self.ended
    }
}

/// Follows the gRPC message prefixes through a stream of data frames, so that a message
/// over `limit` is refused as the worker starts sending it.
pub(crate) struct MessageLimit {
    limit: usize,
    /// Bytes of the current message's body still to come.
    body_left: usize,
    /// The current prefix's bytes read so far, when inside one.
    prefix: [u8; GRPC_PREFIX_BYTES],
    prefix_read: usize,
}

impl MessageLimit {
    pub(crate) fn new(limit: usize) -> Self {
        Self {
            limit,
            body_left: 0,
            prefix: [0; GRPC_PREFIX_BYTES],
            prefix_read: 0,
        }
    }

    pub(crate) fn check(&mut self, mut data: &[u8]) -> Result<(), Status> {
        while !data.is_empty() {
            if self.body_left > 0 {
                let skipped = self.body_left.min(data.len());
                self.body_left -= skipped;
                data = &data[skipped..];
                continue;
            }
            let wanted = (GRPC_PREFIX_BYTES - self.prefix_read).min(data.len());
            self.prefix[self.prefix_read..self.prefix_read + wanted]
                .copy_from_slice(&data[..wanted]);
            self.prefix_read += wanted;
            data = &data[wanted..];
            if self.prefix_read == GRPC_PREFIX_BYTES {
                self.prefix_read = 0;
                let [_, a, b, c, d] = self.prefix;
                let length = u32::from_be_bytes([a, b, c, d]) as usize;
                if length > self.limit {
                    return Err(Status::resource_exhausted(format!(
                        "a response message of {length} bytes is over the coordinator's \
                         limit of {} bytes (max_response_message_bytes)",
                        self.limit
                    )));
                }
                self.body_left = length;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clients_retry_gets_one_worker() {
        let headers = |pairs: &[(&'static str, &'static str)]| {
            let mut map = http::HeaderMap::new();
            for (name, value) in pairs {
                map.insert(*name, http::HeaderValue::from_static(value));
            }
            map
        };
        assert_eq!(
            worker_attempts(&headers(&[]), 3),
            3,
            "a first attempt fails over"
        );
        assert_eq!(worker_attempts(&headers(&[(ATTEMPT_METADATA, "1")]), 3), 3);
        assert_eq!(worker_attempts(&headers(&[(ATTEMPT_METADATA, "2")]), 3), 1);
        assert_eq!(
            worker_attempts(&headers(&[("grpc-previous-rpc-attempts", "1")]), 3),
            1
        );
        // What cannot be read is a first attempt.
        assert_eq!(
            worker_attempts(&headers(&[(ATTEMPT_METADATA, "many")]), 3),
            3
        );
    }

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
    fn grpc_timeouts_round_trip_within_eight_digits() {
        for left in [
            Duration::from_nanos(1),
            Duration::from_millis(250),
            Duration::from_secs(99),
            Duration::from_secs(100),
            Duration::from_secs(86_400 * 365 * 10),
        ] {
            let value = grpc_timeout(left);
            let mut headers = http::HeaderMap::new();
            headers.insert("grpc-timeout", value.parse().expect("ascii"));
            let parsed = polaroid_server::client_timeout(&headers).expect(&value);
            assert!(parsed <= left.max(Duration::from_micros(1)), "{value}");
            let slack = if left > Duration::from_secs(99_999_999) {
                60
            } else {
                1
            };
            assert!(
                left.saturating_sub(parsed) < Duration::from_secs(slack),
                "{value}"
            );
        }
    }

    fn prefixed(length: u32) -> Vec<u8> {
        let mut message = vec![0];
        message.extend_from_slice(&length.to_be_bytes());
        message.resize(GRPC_PREFIX_BYTES + length as usize, 7);
        message
    }

    #[test]
    fn message_limit_follows_prefixes_split_across_frames() {
        let stream: Vec<u8> = [prefixed(3), prefixed(0), prefixed(10)].concat();
        for frame_size in 1..stream.len() {
            let mut limit = MessageLimit::new(10);
            for frame in stream.chunks(frame_size) {
                limit
                    .check(frame)
                    .expect("every message is within the limit");
            }
            assert_eq!((limit.body_left, limit.prefix_read), (0, 0));
        }
        let over: Vec<u8> = [prefixed(3), prefixed(11)].concat();
        for frame_size in 1..over.len() {
            let mut limit = MessageLimit::new(10);
            let refused = over
                .chunks(frame_size)
                .map(|frame| limit.check(frame))
                .find_map(Result::err)
                .expect("the 11-byte message is over the limit");
            assert_eq!(refused.code(), tonic::Code::ResourceExhausted);
        }
    }
}
