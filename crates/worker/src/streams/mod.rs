//! Streaming sources (`StreamRestApi`, `StreamMessageQueue`, ...): a task per call reads
//! its source and sends what arrives as `ArrowBatch` messages, each a complete Arrow IPC
//! stream encoded as `Collect`'s are, within the worker's stream caps (rows, bytes, rate,
//! duration, streams at once). The task ends with the source, with the first error (the
//! stream's status), or as soon as the client goes away: the task is then dropped
//! whole, and with it every connection it holds to its peer.

pub mod capture;
mod gate;
pub mod grpc;
pub mod kafka;
mod kafka_offsets;
pub mod nats;
pub mod payload;
pub mod rabbitmq;
pub mod redis;
pub mod rest;
pub mod websocket;

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures::{FutureExt, Stream, StreamExt};
use polaroid_proto::ErrorCode;
use polaroid_proto::v1 as pb;
use polars::prelude::*;
use tokio::sync::{mpsc, oneshot};
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use crate::error::{EngineError, EngineResult};
use crate::outbound::Outbound;
use crate::rest::{RateLimiter, RestLimits};

/// The column every streamed record gets: when the worker received it (UTC).
pub const RECEIVED_AT: &str = "_received_at";
/// The column every streamed record gets: where it was in its source (a Redis entry ID;
/// `<poll>:<page>:<record>` for a REST stream).
pub const SOURCE_POSITION: &str = "_source_position";

/// What the worker allows one stream (`stream_*` settings; 0 or `None`: no cap).
#[derive(Debug, Clone, Copy)]
pub struct StreamCaps {
    /// Rows one stream sends in all (`stream_max_rows`).
    pub max_rows: u64,
    /// Arrow IPC bytes one stream sends in all (`stream_max_bytes`).
    pub max_bytes: u64,
    /// How long one stream runs (`stream_max_duration_secs`).
    pub max_duration: Option<Duration>,
    /// Rows a second one stream sends at most (`stream_max_rows_per_second`): faster
    /// sources wait.
    pub max_rows_per_second: Option<u32>,
    /// Requests a second to its peer one stream makes at most, whatever the client asks
    /// (`stream_max_requests_per_second`: REST pages and polls).
    pub max_requests_per_second: Option<u32>,
    /// Streams one worker serves at once (`max_streams`).
    pub max_streams: usize,
    /// Rows per message by default (`stream_batch_rows`).
    pub batch_rows: usize,
    /// The largest message (`max_response_message_bytes`).
    pub max_message_bytes: usize,
}

type BatchStream = Pin<Box<dyn Stream<Item = Result<pb::ArrowBatch, Status>> + Send>>;

/// One message on its way to the client, with whom to tell once the transport took it.
struct Outgoing {
    message: Result<pb::ArrowBatch, Status>,
    taken: Option<oneshot::Sender<()>>,
}

/// The worker's streaming sources: where they may connect, their caps, and the streams
/// running now.
pub struct Streams {
    outbound: Arc<Outbound>,
    rest_limits: RestLimits,
    caps: StreamCaps,
    running: Arc<tokio::sync::Semaphore>,
}

impl Streams {
    pub fn new(outbound: Arc<Outbound>, rest_limits: RestLimits, caps: StreamCaps) -> Self {
        let permits = if caps.max_streams == 0 {
            tokio::sync::Semaphore::MAX_PERMITS
        } else {
            caps.max_streams
        };
        Self {
            outbound,
            rest_limits: RestLimits {
                max_requests_per_second: caps.max_requests_per_second,
                ..rest_limits
            },
            caps,
            running: Arc::new(tokio::sync::Semaphore::new(permits)),
        }
    }

    /// `StreamRestApi`: the request is checked here, before the stream starts.
    pub fn rest(&self, request: pb::RestApiRequest) -> EngineResult<BatchStream> {
        // A stream's own HTTP clients: dropped with it, they close its connections.
        let outbound = Arc::new(self.outbound.fresh().map_err(|e| EngineError::Internal {
            operation: "stream_rest_api",
            reason: e.to_string(),
        })?);
        let source = crate::rest::RestSource::new(outbound, request, self.rest_limits, true)?;
        self.start("rest", move |sink| rest::run(source, sink))
    }

    /// `StreamWebSocket`: the request and its peer's address are checked here, before the
    /// stream starts (and the address again at each connection).
    pub async fn websocket(
        &self,
        request: pb::WebSocketSourceRequest,
    ) -> EngineResult<BatchStream> {
        let source = websocket::WebSocketSource::new(
            request,
            self.outbound.clone(),
            self.rest_limits.max_answer_bytes,
        )?;
        source.check_address().await?;
        self.start("websocket", move |sink| source.run(sink))
    }

    /// `StreamMessageQueue`: the request is checked here, and its peer's address under
    /// the outbound rules, before the stream starts.
    pub async fn message_queue(
        &self,
        request: pb::MessageQueueRequest,
    ) -> EngineResult<BatchStream> {
        match request.r#type() {
            pb::MessageQueueType::RedisStream => {
                let source = redis::RedisSource::new(
                    request,
                    &self.outbound,
                    self.caps.batch_rows,
                    self.rest_limits.max_answer_bytes,
                )
                .await?;
                self.start("redis_stream", move |sink| source.run(sink))
            }
            pb::MessageQueueType::Kafka => {
                let reader = kafka::KafkaSource::new(
                    request,
                    Arc::clone(&self.outbound),
                    self.caps.batch_rows,
                    self.rest_limits.max_answer_bytes,
                )?
                .connect()
                .await?;
                self.start("kafka", move |sink| reader.run(sink))
            }
            pb::MessageQueueType::Nats => {
                let source = nats::NatsSource::new(
                    request,
                    &self.outbound,
                    self.caps.batch_rows,
                    self.rest_limits.max_answer_bytes,
                )
                .await?;
                self.start("nats", move |sink| source.run(sink))
            }
            pb::MessageQueueType::Rabbitmq => {
                let source = rabbitmq::RabbitSource::new(
                    request,
                    &self.outbound,
                    self.caps.batch_rows,
                    self.rest_limits.max_answer_bytes,
                )
                .await?;
                self.start("rabbitmq", move |sink| source.run(sink))
            }
            pb::MessageQueueType::Unspecified => Err(EngineError::invalid(format!(
                "type (1) must name a queue: KAFKA 1, RABBITMQ 2, NATS 3 or REDIS_STREAM 4, got {}",
                request.r#type
            ))),
        }
    }

    /// `StreamGrpc`: the request is checked, its peer's address under the outbound rules,
    /// and the method against the peer's reflection, before the stream starts.
    pub async fn grpc(&self, request: pb::GrpcStreamRequest) -> EngineResult<BatchStream> {
        let call = grpc::GrpcSource::new(
            request,
            self.outbound.clone(),
            self.rest_limits.max_answer_bytes,
        )?
        .prepare()
        .await?;
        self.start("grpc", move |sink| call.run(sink))
    }

    /// Runs `source` on a task of its own, feeding the returned stream, within the caps.
    fn start<F, Fut>(&self, kind: &'static str, source: F) -> EngineResult<BatchStream>
    where
        F: FnOnce(Sink) -> Fut,
        Fut: Future<Output = EngineResult<()>> + Send + 'static,
    {
        let permit = self.running.clone().try_acquire_owned().map_err(|_| {
            EngineError::LimitExceeded(format!(
                "this worker serves {} streams at once already (max_streams)",
                self.caps.max_streams
            ))
        })?;
        // A message or two ahead of the client at most: a slow reader slows the source.
        let (sender, receiver) = mpsc::channel::<Outgoing>(2);
        let sink = Sink::new(sender.clone(), self.caps, kind);
        let run = source(sink);
        let max_duration = self.caps.max_duration;
        tokio::spawn(async move {
            let _permit = permit;
            metrics::gauge!("polaroid_worker_streams_active", "source" => kind).increment(1.0);
            // A source that panics ends the stream with INTERNAL, not as if it had ended:
            // the client would take what it got for all there was.
            let run = std::panic::AssertUnwindSafe(run)
                .catch_unwind()
                .map(|outcome| {
                    outcome.unwrap_or_else(|panic| {
                        Err(EngineError::Internal {
                            operation: "stream",
                            reason: crate::engine::panic_message(&*panic),
                        })
                    })
                });
            let capped = async {
                match max_duration {
                    None => run.await,
                    Some(limit) => tokio::time::timeout(limit, run).await.unwrap_or_else(|_| {
                        Err(EngineError::StreamCap {
                            code: ErrorCode::DeadlineExceeded,
                            message: format!(
                                "the stream ran for {} s, the most a stream may (stream_max_duration_secs)",
                                limit.as_secs_f64()
                            ),
                        })
                    }),
                }
            };
            // The client gone, the source is dropped where it waits: its connections close.
            let outcome = tokio::select! {
                result = capped => Some(result),
                () = sender.closed() => None,
            };
            let ended = match outcome {
                None => "cancelled",
                Some(Ok(())) => "source_ended",
                Some(Err(error)) => {
                    let reason = match error {
                        EngineError::StreamCap { .. } | EngineError::LimitExceeded(_) => "cap",
                        _ => "error",
                    };
                    let message = Outgoing {
                        message: Err(crate::service::status(error)),
                        taken: None,
                    };
                    let _ = sender.send(message).await;
                    reason
                }
            };
            metrics::gauge!("polaroid_worker_streams_active", "source" => kind).decrement(1.0);
            metrics::counter!("polaroid_worker_streams_ended_total", "source" => kind, "reason" => ended)
                .increment(1);
        });
        Ok(Box::pin(ReceiverStream::new(receiver).map(|outgoing| {
            if let Some(taken) = outgoing.taken {
                let _ = taken.send(());
            }
            outgoing.message
        })))
    }
}

/// A queue's `connection_string` (2), parsed: a URL of `scheme` (`form` shows the whole
/// shape). `unbuilt` gives the reason for a scheme this worker knows but is built without
/// (TLS), which is UNIMPLEMENTED; any other scheme is INVALID_ARGUMENT.
pub fn queue_url(
    text: &str,
    queue: &str,
    form: &str,
    scheme: &str,
    unbuilt: impl Fn(&str) -> Option<String>,
) -> EngineResult<reqwest::Url> {
    let url = reqwest::Url::parse(text).map_err(|e| {
        EngineError::invalid(format!(
            "connection_string (2) is not a URL ({e}); {queue} takes {form}"
        ))
    })?;
    if url.scheme() == scheme {
        return Ok(url);
    }
    if let Some(reason) = unbuilt(url.scheme()) {
        return Err(EngineError::Unimplemented(reason));
    }
    Err(EngineError::invalid(format!(
        "connection_string (2): scheme `{}` is not {scheme}",
        polaroid_proto::excerpt(url.scheme())
    )))
}

/// Where a source sends its frames: encoded, counted against the caps, paced.
pub struct Sink {
    sender: mpsc::Sender<Outgoing>,
    caps: StreamCaps,
    kind: &'static str,
    rows: u64,
    bytes: u64,
    pace: RowPace,
}

impl Sink {
    fn new(sender: mpsc::Sender<Outgoing>, caps: StreamCaps, kind: &'static str) -> Self {
        Self {
            sender,
            caps,
            kind,
            rows: 0,
            bytes: 0,
            pace: RowPace::new(caps.max_rows_per_second),
        }
    }

    /// Rows per message by default.
    pub fn batch_rows(&self) -> usize {
        self.caps.batch_rows
    }

    /// Rows the stream may still send (`stream_max_rows`); `None`: no cap.
    pub fn rows_room(&self) -> Option<u64> {
        (self.caps.max_rows > 0).then(|| self.caps.max_rows.saturating_sub(self.rows))
    }

    /// Ends the stream once it has sent `stream_max_rows` (checked after each send, so a
    /// stream that reached the cap exactly does not wait on for more).
    pub fn check_rows_cap(&self) -> EngineResult<()> {
        match self.rows_room() {
            Some(0) => Err(self.rows_cap()),
            _ => Ok(()),
        }
    }

    /// The error of a stream that reached `stream_max_rows`.
    pub fn rows_cap(&self) -> EngineError {
        EngineError::StreamCap {
            code: ErrorCode::ResourceExhausted,
            message: format!(
                "the stream sent {} rows, the most a stream may (stream_max_rows)",
                self.caps.max_rows
            ),
        }
    }

    /// Sends `df` as messages of at most `batch_rows` rows; with `acknowledged`, returns
    /// only once the transport has taken the last of them (what a consumer group may then
    /// acknowledge). A frame past `stream_max_rows` is cut there and the stream ends with
    /// RESOURCE_EXHAUSTED; a message past `stream_max_bytes` is not sent and the stream
    /// ends likewise.
    pub async fn send(
        &mut self,
        mut df: DataFrame,
        batch_rows: usize,
        acknowledged: bool,
    ) -> EngineResult<()> {
        let mut over_rows = None;
        if self.caps.max_rows > 0 {
            let room = self.caps.max_rows.saturating_sub(self.rows);
            if df.height() as u64 > room {
                df = df.head(Some(room as usize));
                over_rows = Some(self.rows_cap());
            }
        }
        if df.height() > 0 || over_rows.is_none() {
            self.pace.take(df.height()).await;
            let messages = encode(df.clone(), self.caps.max_message_bytes, batch_rows).await?;
            let last = messages.len().saturating_sub(1);
            for (index, bytes) in messages.into_iter().enumerate() {
                if self.caps.max_bytes > 0 && self.bytes + bytes.len() as u64 > self.caps.max_bytes
                {
                    return Err(EngineError::StreamCap {
                        code: ErrorCode::ResourceExhausted,
                        message: format!(
                            "the stream sent {} bytes; the next message would pass {}, the most a stream may (stream_max_bytes)",
                            self.bytes, self.caps.max_bytes
                        ),
                    });
                }
                self.bytes += bytes.len() as u64;
                let (taken, was_taken) = if acknowledged && index == last {
                    let (sender, receiver) = oneshot::channel();
                    (Some(sender), Some(receiver))
                } else {
                    (None, None)
                };
                let outgoing = Outgoing {
                    message: Ok(pb::ArrowBatch {
                        arrow_ipc: bytes,
                        error: None,
                    }),
                    taken,
                };
                if self.sender.send(outgoing).await.is_err() {
                    return Err(EngineError::Cancelled);
                }
                if let Some(was_taken) = was_taken {
                    was_taken.await.map_err(|_| EngineError::Cancelled)?;
                }
            }
            self.rows += df.height() as u64;
            metrics::counter!("polaroid_worker_stream_rows_total", "source" => self.kind)
                .increment(df.height() as u64);
        }
        match over_rows {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Spaces rows to a rate: a frame goes at once and the next waits for what it took.
struct RowPace(Option<RateLimiter>);

impl RowPace {
    fn new(rate: Option<u32>) -> Self {
        Self(
            rate.filter(|r| *r > 0)
                .map(|rate| RateLimiter::new(Some(f64::from(rate)), rate)),
        )
    }

    async fn take(&mut self, rows: usize) {
        if let Some(limiter) = &mut self.0 {
            limiter.acquire_many(rows as f64).await;
        }
    }
}

/// The messages of `df`, encoded off the async threads as `Collect` encodes them.
async fn encode(df: DataFrame, max_bytes: usize, batch_rows: usize) -> EngineResult<Vec<Bytes>> {
    tokio::task::spawn_blocking(move || {
        crate::engine::catch_panic("stream encode", || {
            let mut messages = Vec::new();
            crate::ipc::encode_chunks(&df, max_bytes, batch_rows.max(1), &mut |bytes| {
                messages.push(bytes);
                true
            })?;
            Ok(messages)
        })
    })
    .await
    .unwrap_or_else(|e| {
        Err(EngineError::Internal {
            operation: "stream encode",
            reason: e.to_string(),
        })
    })
}

/// Runs Polars work off the async threads.
pub async fn blocking<T: Send + 'static>(
    operation: &'static str,
    work: impl FnOnce() -> EngineResult<T> + Send + 'static,
) -> EngineResult<T> {
    tokio::task::spawn_blocking(move || crate::engine::catch_panic(operation, work))
        .await
        .unwrap_or_else(|e| {
            Err(EngineError::Internal {
                operation,
                reason: e.to_string(),
            })
        })
}

/// `df` with the receive-time and source-position columns after its own; a record with
/// a column of either name already is INVALID_ARGUMENT.
pub fn with_source_columns(
    mut df: DataFrame,
    received_at: Vec<SystemTime>,
    positions: Vec<String>,
) -> EngineResult<DataFrame> {
    for name in [RECEIVED_AT, SOURCE_POSITION] {
        if df.schema().contains(name) {
            return Err(EngineError::invalid(format!(
                "the records have a column `{name}`, which streams add themselves (the receive time and the source position)"
            )));
        }
    }
    let micros: Vec<i64> = received_at
        .iter()
        .map(|at| {
            at.duration_since(UNIX_EPOCH)
                .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        })
        .collect();
    let received = Int64Chunked::from_vec(PlSmallStr::from_static(RECEIVED_AT), micros)
        .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        .into_series();
    let positions = StringChunked::from_iter_values(
        PlSmallStr::from_static(SOURCE_POSITION),
        positions.iter().map(String::as_str),
    )
    .into_series();
    df.with_column(received.into_column())
        .map_err(EngineError::polars("stream columns"))?;
    df.with_column(positions.into_column())
        .map_err(EngineError::polars("stream columns"))?;
    Ok(df)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn a_source_that_panics_ends_its_stream_with_internal() {
        let streams = Streams::new(
            Arc::new(Outbound::new(&[], false).unwrap()),
            crate::rest::RestLimits {
                max_answer_bytes: 1 << 20,
                max_pages: 1,
                max_requests_per_second: None,
            },
            crate::WorkerConfig::default().stream_caps(),
        );
        let mut stream = streams
            .start("test", |_sink| async { panic!("a bug in a source") })
            .unwrap();
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
        assert!(status.message().contains("a bug in a source"), "{status:?}");
        assert!(stream.next().await.is_none());
    }

    #[test]
    fn source_columns_come_after_the_records() {
        let df = df!("a" => [1i64, 2]).unwrap();
        let now = SystemTime::now();
        let df = with_source_columns(df, vec![now, now], vec!["1-0".into(), "2-0".into()]).unwrap();
        let names: Vec<&str> = df.get_column_names().iter().map(|n| n.as_str()).collect();
        assert_eq!(names, ["a", RECEIVED_AT, SOURCE_POSITION]);
        assert_eq!(
            df.column(RECEIVED_AT).unwrap().dtype(),
            &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
        );
        let clash = df!(SOURCE_POSITION => ["x"]).unwrap();
        assert!(
            with_source_columns(clash, vec![now], vec!["p".into()])
                .unwrap_err()
                .to_string()
                .contains(SOURCE_POSITION)
        );
    }
}
