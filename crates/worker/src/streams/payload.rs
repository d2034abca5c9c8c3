//! What the queues share: for those whose message body is the payload (NATS, RabbitMQ),
//! their peer's URL checked and pinned to the address the outbound rules allowed and the
//! batching extras; for every queue (Redis too, through [`deliver_each`]), a batch decoded
//! into records, given the stream's columns, cut where the rows cap falls, and sent; the
//! caller learns how many whole messages the transport took, which is what a consumer
//! group may acknowledge.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use polaroid_proto::excerpt;
use polaroid_proto::v1 as pb;
use polars::prelude::SchemaRef;
use reqwest::Url;

use super::{Sink, blocking, with_source_columns};
use crate::error::{EngineError, EngineResult};
use crate::outbound::Outbound;
use crate::records::{Payload, Records};

/// How long a batch waits for more messages by default.
const DEFAULT_WAIT: Duration = Duration::from_millis(100);

/// `url` with its host replaced by the address the outbound rules allowed, so that the
/// client connects to what was checked and never resolves the name again.
pub async fn pinned(url: &Url, outbound: &Outbound, default_port: u16) -> EngineResult<Url> {
    let addresses = outbound.resolve(url, default_port).await?;
    let address = addresses[0];
    let host = match address.ip() {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    let mut pinned = url.clone();
    pinned
        .set_host(Some(&host))
        .map_err(|e| EngineError::invalid(format!("connection_string (2): {e}")))?;
    pinned
        .set_port(Some(address.port()))
        .map_err(|()| EngineError::invalid("connection_string (2): the URL takes no port"))?;
    Ok(pinned)
}

/// `batch_rows` (10) and `max_wait_ms` (11), or their defaults (`batch_rows`: the
/// worker's).
pub fn batching(
    req: &pb::MessageQueueRequest,
    batch_rows: usize,
) -> EngineResult<(usize, Duration)> {
    let rows = match req.batch_rows {
        None => batch_rows,
        Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
        Some(n) => {
            return Err(EngineError::invalid(format!(
                "batch_rows (10) must be positive, got {n}"
            )));
        }
    };
    let wait = match req.max_wait_ms {
        None => DEFAULT_WAIT,
        Some(ms) if (1..=60_000).contains(&ms) => Duration::from_millis(ms as u64),
        Some(ms) => {
            return Err(EngineError::invalid(format!(
                "max_wait_ms (11) must be in 1..=60000, got {ms}"
            )));
        }
    };
    Ok((rows, wait))
}

/// How a queue whose message body is its payload (NATS, RabbitMQ, Kafka) decodes and
/// batches, from `req`: `payload_field` refused, `batch_rows` and `max_wait_ms`,
/// `format` (UNSPECIFIED: JSON) and `schema_json`.
pub fn body_decoding(
    req: &pb::MessageQueueRequest,
    queue: &str,
    batch_rows: usize,
    max_decoded: usize,
) -> EngineResult<(Decoding, Duration)> {
    no_payload_field(req, queue)?;
    let (batch_rows, max_wait) = batching(req, batch_rows)?;
    let decoding = Decoding {
        payload: Payload::of(req.format, "format (6)", Payload::Json)?,
        schema: crate::schema_json::parse("schema_json (5)", &req.schema_json)?,
        batch_rows,
        max_decoded,
    };
    Ok((decoding, max_wait))
}

/// Refuses the extras that mean nothing to `queue` (`payload_field`: the body is the
/// payload).
fn no_payload_field(req: &pb::MessageQueueRequest, queue: &str) -> EngineResult<()> {
    match &req.payload_field {
        Some(field) => Err(EngineError::invalid(format!(
            "payload_field (9) `{}` does not apply to {queue}: a message's body is its payload",
            excerpt(field)
        ))),
        None => Ok(()),
    }
}

/// One message as received: where it was in its source, when it came, its body.
pub struct Message {
    pub position: String,
    pub received: SystemTime,
    pub body: Bytes,
}

/// How a batch's records are made and sent.
#[derive(Debug, Clone)]
pub struct Decoding {
    pub payload: Payload,
    pub schema: Option<SchemaRef>,
    /// Rows per `ArrowBatch`.
    pub batch_rows: usize,
    /// What one Arrow payload may decode to.
    pub max_decoded: usize,
}

/// What became of a batch.
pub struct Delivered {
    /// The messages, from the first, whose every record the transport took (with
    /// `acknowledged`; else sent): these alone may be acknowledged.
    pub whole: usize,
    /// Why the stream ends now, if it does: a message that does not decode (those before
    /// it were sent), or the rows cap reached.
    pub end: Option<EngineError>,
}

impl Delivered {
    /// The stream's outcome once the caller acknowledged `whole` messages.
    pub fn outcome(self, sink: &Sink) -> EngineResult<()> {
        match self.end {
            Some(error) => Err(error),
            None => sink.check_rows_cap(),
        }
    }
}

/// One message of a batch, as [`deliver_each`] reads it: where it was in its source and
/// when it came.
pub trait Received: Send + 'static {
    fn position(&self) -> &str;
    fn received(&self) -> SystemTime;
}

impl Received for Message {
    fn position(&self) -> &str {
        &self.position
    }
    fn received(&self) -> SystemTime {
        self.received
    }
}

/// Decodes `messages` (named `<what> <position>` in errors) and sends their records in
/// order; with `acknowledged`, returns once the transport took them.
pub async fn deliver(
    sink: &mut Sink,
    decoding: &Decoding,
    what: &'static str,
    messages: Vec<Message>,
    acknowledged: bool,
) -> EngineResult<Delivered> {
    let (payload, max_decoded) = (decoding.payload, decoding.max_decoded);
    deliver_each(
        sink,
        decoding,
        messages,
        acknowledged,
        move |records, message| {
            let from = format!("{what} {}", message.position);
            records.add(payload, &message.body, &from, max_decoded)
        },
    )
    .await
}

/// [`deliver`] for messages whose records `add` makes (a Redis entry's fields, say):
/// `add` adds one message's records and says how many.
pub async fn deliver_each<M: Received>(
    sink: &mut Sink,
    decoding: &Decoding,
    messages: Vec<M>,
    acknowledged: bool,
    add: impl Fn(&mut Records, &M) -> EngineResult<usize> + Send + 'static,
) -> EngineResult<Delivered> {
    let (payload, schema) = (decoding.payload, decoding.schema.clone());
    let (df, rows_of, messages, bad) = blocking("stream_message_queue", move || {
        let mut records = Records::new(payload);
        // Per row, the index of its message; the first message that does not decode.
        let mut rows_of = Vec::new();
        let mut bad = None;
        for (index, message) in messages.iter().enumerate() {
            match add(&mut records, message) {
                Ok(count) => rows_of.extend(std::iter::repeat_n(index, count)),
                Err(e) => {
                    bad = Some((index, e));
                    break;
                }
            }
        }
        let df = records.into_frame(schema.as_ref(), false)?;
        Ok((df, rows_of, messages, bad))
    })
    .await?;
    let decoded = bad.as_ref().map_or(messages.len(), |(index, _)| *index);
    let (rows, capped) = match sink.rows_room() {
        Some(room) if (df.height() as u64) > room => (room as usize, true),
        _ => (df.height(), false),
    };
    let df = df.head(Some(rows));
    let positions = rows_of[..rows]
        .iter()
        .map(|&i| messages[i].position().to_owned())
        .collect();
    let times = rows_of[..rows]
        .iter()
        .map(|&i| messages[i].received())
        .collect();
    let df = with_source_columns(df, times, positions)?;
    if df.height() > 0 {
        sink.send(df, decoding.batch_rows, acknowledged).await?;
    }
    // A message cut by the cap is not whole: it stays unacknowledged.
    let whole = match rows_of.get(rows) {
        Some(&cut) if capped => cut,
        _ => decoded,
    };
    let end = if capped {
        Some(sink.rows_cap())
    } else {
        bad.map(|(_, error)| error)
    };
    Ok(Delivered { whole, end })
}
