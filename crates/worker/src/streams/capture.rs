//! `CaptureStream`: a bounded window of any streaming source kept as a handle. The source
//! runs exactly as its `Stream*` call would (the same [`Streams`] method, caps and
//! checks); what it sends is gathered until the first bound is reached (rows, duration,
//! an idle gap) or the source ends, then stored as an upload is, and the handle is the
//! call's last message. Progress goes to the client at most every 250 ms meanwhile. A
//! source that fails, a cap, or a client that goes away ends the capture with no handle
//! made: a handle always holds the whole window its bounds asked for.

use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{Stream, StreamExt};
use polaroid_proto::v1 as pb;
use polaroid_proto::v1::capture_stream_request::Source;
use polaroid_store::{AffinityKey, TenantId};
use polars::prelude::*;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Status;

use super::{BatchStream, StreamCaps, Streams, blocking};
use crate::engine::Engine;
use crate::error::{EngineError, EngineResult};

/// The most often a capture reports its progress.
const PROGRESS_EVERY: Duration = Duration::from_millis(250);

pub type ProgressStream = Pin<Box<dyn Stream<Item = Result<pb::CaptureProgress, Status>> + Send>>;

/// A capture's bounds, checked against the worker's stream caps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_rows: Option<u64>,
    pub max_duration: Option<Duration>,
    pub idle: Option<Duration>,
}

impl Bounds {
    /// The request's bounds: at least one, each positive, none past the caps (a capture
    /// that a cap would end midway could only fail, after it has read its source).
    pub fn of(request: &pb::CaptureStreamRequest, caps: &StreamCaps) -> EngineResult<Self> {
        fn positive(value: Option<i64>, field: &str) -> EngineResult<Option<u64>> {
            match value {
                None => Ok(None),
                Some(n) if n > 0 => Ok(Some(n.unsigned_abs())),
                Some(n) => Err(EngineError::invalid(format!(
                    "{field} must be positive, got {n}"
                ))),
            }
        }
        let max_rows = positive(request.max_rows, "max_rows (1)")?;
        let max_duration =
            positive(request.max_duration_ms, "max_duration_ms (2)")?.map(Duration::from_millis);
        let idle = positive(request.idle_ms, "idle_ms (3)")?.map(Duration::from_millis);
        if max_rows.is_none() && max_duration.is_none() && idle.is_none() {
            return Err(EngineError::invalid(
                "a capture needs a bound: max_rows (1), max_duration_ms (2) or idle_ms (3)",
            ));
        }
        if let Some(rows) = max_rows
            && caps.max_rows > 0
            && rows > caps.max_rows
        {
            return Err(EngineError::invalid(format!(
                "max_rows (1) is {rows}, past the {} rows a stream may send on this worker (stream_max_rows)",
                caps.max_rows
            )));
        }
        if let Some(cap) = caps.max_duration {
            for (field, asked) in [("max_duration_ms (2)", max_duration), ("idle_ms (3)", idle)] {
                if let Some(asked) = asked.filter(|asked| *asked > cap) {
                    return Err(EngineError::invalid(format!(
                        "{field} is {} ms, past the {} ms a stream may run on this worker (stream_max_duration_secs)",
                        asked.as_millis(),
                        cap.as_millis()
                    )));
                }
            }
        }
        Ok(Self {
            max_rows,
            max_duration,
            idle,
        })
    }
}

/// Why a capture made no handle.
enum Failed {
    /// The source's own status (its failure, or a cap), passed on as it is.
    Source(Status),
    Engine(EngineError),
    /// The client went away.
    Cancelled,
}

impl From<EngineError> for Failed {
    fn from(error: EngineError) -> Self {
        Self::Engine(error)
    }
}

/// What a capture gathered, and why it stopped.
struct Captured {
    frames: Vec<DataFrame>,
    rows: u64,
    bytes: u64,
    stopped: pb::CaptureStop,
}

impl Streams {
    /// `CaptureStream`: the bounds and the source's request are checked here, before the
    /// source starts; the returned stream reports progress, then the handle.
    pub async fn capture(
        &self,
        engine: Arc<Engine>,
        tenant: TenantId,
        affinity: AffinityKey,
        request: pb::CaptureStreamRequest,
    ) -> EngineResult<ProgressStream> {
        // Before the source starts, whose own duration cap starts after: a duration bound
        // equal to the cap ends the capture, not the stream.
        let started = Instant::now();
        let bounds = Bounds::of(&request, &self.caps)?;
        let (source, default_name) = match request.source {
            Some(Source::RestApi(rest)) => {
                let name = rest.url.clone();
                (self.rest(rest)?, name)
            }
            Some(Source::WebSocket(socket)) => {
                let name = reqwest::Url::parse(&socket.url)
                    .map(|url| crate::outbound::redacted(&url))
                    .unwrap_or_default();
                (self.websocket(socket).await?, name)
            }
            Some(Source::Grpc(call)) => {
                let name = format!("{}/{}", call.service, call.method);
                (self.grpc(call).await?, name)
            }
            Some(Source::MessageQueue(queue)) => {
                let name = queue.topic.clone();
                (self.message_queue(queue).await?, name)
            }
            None => {
                return Err(EngineError::invalid(
                    "source must be one of rest_api (10), web_socket (11), grpc (12) or message_queue (13)",
                ));
            }
        };
        let name = request.name.or(Some(default_name));
        let max_bytes = engine.max_upload_bytes();
        let (sender, receiver) = mpsc::channel::<Result<pb::CaptureProgress, Status>>(4);
        tokio::spawn(async move {
            let gathered = tokio::select! {
                result = gather(source, bounds, started, max_bytes, &sender) => result,
                // The client gone: the source is dropped where it waits, nothing is kept.
                () = sender.closed() => Err(Failed::Cancelled),
            };
            let outcome = match gathered {
                Ok(captured) if !sender.is_closed() => {
                    keep(&engine, tenant, affinity, name, captured, started)
                        .await
                        .map_err(Failed::Engine)
                }
                Ok(_) => Err(Failed::Cancelled),
                Err(failed) => Err(failed),
            };
            let stopped = match &outcome {
                Ok(last) => stop_label(last.stopped()),
                Err(Failed::Cancelled) => "cancelled",
                Err(_) => "error",
            };
            metrics::counter!("polaroid_worker_stream_captures_total", "stopped" => stopped)
                .increment(1);
            let message = outcome.map_err(|failed| match failed {
                Failed::Source(status) => status,
                Failed::Engine(error) => crate::service::status(error),
                Failed::Cancelled => crate::service::status(EngineError::Cancelled),
            });
            let _ = sender.send(message).await;
        });
        Ok(Box::pin(ReceiverStream::new(receiver)))
    }
}

fn stop_label(stop: pb::CaptureStop) -> &'static str {
    match stop {
        pb::CaptureStop::MaxRows => "max_rows",
        pb::CaptureStop::MaxDuration => "max_duration",
        pb::CaptureStop::Idle => "idle",
        pb::CaptureStop::SourceEnded => "source_ended",
        pb::CaptureStop::Unspecified => "unspecified",
    }
}

fn progress(rows: u64, bytes: u64, started: Instant) -> pb::CaptureProgress {
    pb::CaptureProgress {
        rows: i64::try_from(rows).unwrap_or(i64::MAX),
        bytes: i64::try_from(bytes).unwrap_or(i64::MAX),
        elapsed_ms: i64::try_from(started.elapsed().as_millis()).unwrap_or(i64::MAX),
        handle: None,
        stopped: pb::CaptureStop::Unspecified as i32,
    }
}

/// Waits until `at`; forever when there is no such bound.
async fn until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Reads `source` until a bound or its end, reporting progress to `sender`; the source's
/// error, a cap's, or the client's going away ends it with that error.
async fn gather(
    mut source: BatchStream,
    bounds: Bounds,
    started: Instant,
    max_bytes: usize,
    sender: &mpsc::Sender<Result<pb::CaptureProgress, Status>>,
) -> Result<Captured, Failed> {
    let deadline = bounds.max_duration.map(|limit| started + limit);
    let mut last_message = started;
    let mut captured = Captured {
        frames: Vec::new(),
        rows: 0,
        bytes: 0,
        stopped: pb::CaptureStop::Unspecified,
    };
    let mut ticks = tokio::time::interval(PROGRESS_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let idle_at = bounds.idle.map(|gap| last_message + gap);
        tokio::select! {
            // The bounds first: a message that comes as a bound passes is not waited for.
            biased;
            () = until(deadline) => {
                captured.stopped = pb::CaptureStop::MaxDuration;
                return Ok(captured);
            }
            () = until(idle_at) => {
                captured.stopped = pb::CaptureStop::Idle;
                return Ok(captured);
            }
            _ = ticks.tick() => {
                let report = progress(captured.rows, captured.bytes, started);
                sender.send(Ok(report)).await.map_err(|_| Failed::Cancelled)?;
            }
            next = source.next() => {
                let batch = match next {
                    None => {
                        captured.stopped = pb::CaptureStop::SourceEnded;
                        return Ok(captured);
                    }
                    Some(Err(status)) => return Err(Failed::Source(status)),
                    Some(Ok(batch)) => batch,
                };
                last_message = Instant::now();
                captured.bytes += batch.arrow_ipc.len() as u64;
                if captured.bytes > max_bytes as u64 {
                    return Err(Failed::Engine(EngineError::LimitExceeded(format!(
                        "the capture received {} bytes of Arrow IPC, past the {max_bytes} an upload may be (max_upload_bytes)",
                        captured.bytes
                    ))));
                }
                let room = bounds
                    .max_rows
                    .map_or(usize::MAX, |max| usize::try_from(max - captured.rows).unwrap_or(usize::MAX));
                let bytes = batch.arrow_ipc;
                let df = blocking("capture_stream", move || {
                    let df = crate::ipc::decode(&bytes, max_bytes)?;
                    // The batch that passes max_rows is cut there: the handle holds exactly it.
                    Ok(if df.height() > room { df.head(Some(room)) } else { df })
                })
                .await?;
                captured.rows += df.height() as u64;
                captured.frames.push(df);
                if bounds.max_rows.is_some_and(|max| captured.rows >= max) {
                    captured.stopped = pb::CaptureStop::MaxRows;
                    return Ok(captured);
                }
            }
        }
    }
}

/// Stores what was captured as one frame, and makes its handle: the call's last message.
async fn keep(
    engine: &Engine,
    tenant: TenantId,
    affinity: AffinityKey,
    name: Option<String>,
    captured: Captured,
    started: Instant,
) -> EngineResult<pb::CaptureProgress> {
    let Captured {
        frames,
        rows,
        bytes,
        stopped,
    } = captured;
    if frames.is_empty() {
        return Err(EngineError::NothingCaptured(format!(
            "the capture stopped ({}) before its source sent anything: with no columns known, no handle is made",
            stop_label(stopped)
        )));
    }
    let df = blocking("capture_stream", move || stack(frames)).await?;
    let (handle, _) = engine.keep_capture(tenant, df, name, affinity).await?;
    Ok(pb::CaptureProgress {
        handle: Some(pb::DataFrameHandle {
            handle: handle.to_string(),
            error: None,
        }),
        stopped: stopped as i32,
        ..progress(rows, bytes, started)
    })
}

/// One frame of `frames`, in order: a column some lack (records decoded without a
/// `schema_json` name what each batch had) is null there, and a column's type is the
/// supertype of its batches' types.
fn stack(mut frames: Vec<DataFrame>) -> EngineResult<DataFrame> {
    if frames.len() == 1 {
        return Ok(frames.remove(0));
    }
    let mut names: Vec<PlSmallStr> = Vec::new();
    for df in &frames {
        for name in df.get_column_names() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    let lazy = frames
        .into_iter()
        .map(|mut df| {
            for name in &names {
                if !df.schema().contains(name.as_str()) {
                    let nulls = Column::full_null(name.clone(), df.height(), &DataType::Null);
                    df.with_column(nulls)
                        .map_err(EngineError::polars("capture_stream"))?;
                }
            }
            df.select(names.iter().cloned())
                .map(|df| df.lazy())
                .map_err(EngineError::polars("capture_stream"))
        })
        .collect::<EngineResult<Vec<LazyFrame>>>()?;
    let args = UnionArgs {
        to_supertypes: true,
        rechunk: true,
        ..Default::default()
    };
    concat(lazy, args)
        .and_then(|lazy| lazy.collect())
        .map_err(EngineError::polars("capture_stream"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn caps() -> StreamCaps {
        StreamCaps {
            max_rows: 100,
            max_bytes: 0,
            max_duration: Some(Duration::from_secs(60)),
            max_rows_per_second: None,
            max_requests_per_second: None,
            max_streams: 0,
            batch_rows: 10,
            max_message_bytes: 1 << 20,
        }
    }

    fn bounds(rows: Option<i64>, duration: Option<i64>, idle: Option<i64>) -> EngineResult<Bounds> {
        let request = pb::CaptureStreamRequest {
            max_rows: rows,
            max_duration_ms: duration,
            idle_ms: idle,
            ..Default::default()
        };
        Bounds::of(&request, &caps())
    }

    #[test]
    fn bounds_are_needed_positive_and_within_the_caps() {
        assert_eq!(
            bounds(Some(5), None, Some(10)).unwrap(),
            Bounds {
                max_rows: Some(5),
                max_duration: None,
                idle: Some(Duration::from_millis(10)),
            }
        );
        for (bad, says) in [
            (bounds(None, None, None), "needs a bound"),
            (bounds(Some(0), None, None), "max_rows (1) must be positive"),
            (
                bounds(None, Some(-1), None),
                "max_duration_ms (2) must be positive",
            ),
            (bounds(None, None, Some(0)), "idle_ms (3) must be positive"),
            (bounds(Some(101), None, None), "stream_max_rows"),
            (bounds(None, Some(60_001), None), "stream_max_duration_secs"),
            (bounds(None, None, Some(60_001)), "idle_ms (3) is 60001 ms"),
        ] {
            let error = bad.unwrap_err();
            assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
            assert!(error.to_string().contains(says), "{error}");
        }
    }

    #[test]
    fn batches_stack_with_missing_columns_null_and_types_widened() {
        let first = df!("a" => [1i32, 2]).unwrap();
        let second = df!("b" => ["x"], "a" => [3i64]).unwrap();
        let whole = stack(vec![first, second]).unwrap();
        let expected = df!(
            "a" => [1i64, 2, 3],
            "b" => [None, None, Some("x")],
        )
        .unwrap();
        assert!(whole.equals_missing(&expected), "{whole}");
    }
}
