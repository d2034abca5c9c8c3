//! `StreamMessageQueue` for `REDIS_STREAM`: reads the Redis stream `topic` on a connection
//! of its own, from the latest entry (or a given ID), or as a consumer of
//! `consumer_group`, acknowledging an entry only once the messages holding its records
//! were taken by the transport to the client. Entries become records by `format`: the
//! entry's fields themselves, or its payload field decoded as JSON, Arrow IPC or
//! MessagePack; each record's position is its entry ID.

use std::time::{Duration, Instant, SystemTime};

use polaroid_proto::v1 as pb;
use polaroid_proto::{ErrorCode, excerpt};
use polars::prelude::SchemaRef;
use redis::Value;

use super::Sink;
use super::payload::{self, Decoding};
use crate::error::{EngineError, EngineResult};
use crate::outbound::{Outbound, redacted};
use crate::records::{Payload, Records};

/// Redis's port when a URL names none.
const DEFAULT_PORT: u16 = 6379;
/// The longest one read blocks: the connection is asked again after it, so a dead peer is
/// noticed within this and the response timeout.
const MAX_BLOCK: Duration = Duration::from_secs(5);
/// How long a batch waits for more entries by default.
const DEFAULT_WAIT: Duration = Duration::from_millis(100);
/// The name streams' connections carry (`CLIENT LIST`), for operators.
pub const CLIENT_NAME: &str = "polaroid-stream";

/// How an entry becomes records.
#[derive(Debug, Clone)]
enum Decode {
    /// The entry's fields are one record (values as text).
    Fields,
    /// One field holds the payload: `field`, else the entry's only field, else `data`.
    Payload {
        payload: Payload,
        field: Option<String>,
    },
}

/// Where a reader without a group starts.
#[derive(Debug, Clone)]
enum Start {
    /// Entries added from now on.
    Latest,
    /// Entries after this ID (`0-0`: every entry).
    After(String),
}

/// One entry as read: its ID and its fields in order.
type Entry = (String, Vec<(Vec<u8>, Vec<u8>)>);

/// An entry as the shared delivery reads it.
struct Received {
    id: String,
    fields: Vec<(Vec<u8>, Vec<u8>)>,
    received: SystemTime,
}

impl payload::Received for Received {
    fn position(&self) -> &str {
        &self.id
    }
    fn received(&self) -> SystemTime {
        self.received
    }
}

/// A Redis stream source, checked.
pub struct RedisSource {
    client: redis::Client,
    /// The URL without its password, for messages.
    shown: String,
    topic: String,
    group: Option<(String, String)>,
    start: Start,
    decode: Decode,
    schema: Option<SchemaRef>,
    batch_rows: usize,
    max_wait: Duration,
    max_decoded: usize,
}

impl RedisSource {
    /// Checks `req` and resolves its peer under the outbound rules; `batch_rows` is the
    /// worker's default, `max_decoded` what one Arrow payload may decode to.
    pub async fn new(
        req: pb::MessageQueueRequest,
        outbound: &Outbound,
        batch_rows: usize,
        max_decoded: usize,
    ) -> EngineResult<Self> {
        let url = super::queue_url(
            &req.connection_string,
            "REDIS_STREAM",
            "redis://[user:password@]host[:port][/db]",
            "redis",
            |scheme| {
                (scheme == "rediss").then(|| {
                    "connection_string (2) rediss://: TLS to Redis is not built into this worker (the redis client is built without TLS); use redis://".to_owned()
                })
            },
        )?;
        let shown = redacted(&url);
        if req.topic.is_empty() {
            return Err(EngineError::invalid(
                "topic (3) must name the Redis stream's key",
            ));
        }
        if req.consumer_group.is_none() && req.consumer_name.is_some() {
            return Err(EngineError::invalid(
                "consumer_name (7) applies with consumer_group (4) only",
            ));
        }
        let group = match req.consumer_group {
            None => None,
            Some(group) if group.is_empty() => {
                return Err(EngineError::invalid(
                    "consumer_group (4) is empty: leave it unset to read from the latest entry",
                ));
            }
            Some(group) => {
                let consumer = match req.consumer_name {
                    Some(name) if name.is_empty() => {
                        return Err(EngineError::invalid("consumer_name (7) is empty"));
                    }
                    Some(name) => name,
                    None => format!("polaroid-{:016x}", rand::random::<u64>()),
                };
                Some((group, consumer))
            }
        };
        let start = match req.start_id.as_deref() {
            None | Some("$") => Start::Latest,
            Some("0") => Start::After("0-0".into()),
            Some(id) if is_entry_id(id) => Start::After(id.to_owned()),
            Some(other) => {
                return Err(EngineError::invalid(format!(
                    "start_id (8) `{}` is not \"$\", \"0\" or an entry ID (<ms>-<seq>)",
                    excerpt(other)
                )));
            }
        };
        let decode = match req.format {
            0 => {
                if req.payload_field.is_some() {
                    return Err(EngineError::invalid(
                        "payload_field (9) applies with a format (6): without one, the entry's fields are the record",
                    ));
                }
                Decode::Fields
            }
            format => Decode::Payload {
                payload: Payload::of(format, "format (6)", Payload::Json)?,
                field: req.payload_field.filter(|f| !f.is_empty()),
            },
        };
        let schema = crate::schema_json::parse("schema_json (5)", &req.schema_json)?;
        let batch_rows = match req.batch_rows {
            None => batch_rows,
            Some(n) if n > 0 => usize::try_from(n).unwrap_or(usize::MAX),
            Some(n) => {
                return Err(EngineError::invalid(format!(
                    "batch_rows (10) must be positive, got {n}"
                )));
            }
        };
        let max_wait = match req.max_wait_ms {
            None => DEFAULT_WAIT,
            Some(ms) if (1..=60_000).contains(&ms) => Duration::from_millis(ms as u64),
            Some(ms) => {
                return Err(EngineError::invalid(format!(
                    "max_wait_ms (11) must be in 1..=60000, got {ms}"
                )));
            }
        };
        // Connected to the address checked, never to a name resolved again later.
        let addresses = outbound.resolve(&url, DEFAULT_PORT).await?;
        let mut resolved = url.clone();
        let ip = addresses[0].ip();
        let host = match ip {
            std::net::IpAddr::V4(v4) => v4.to_string(),
            std::net::IpAddr::V6(v6) => format!("[{v6}]"),
        };
        resolved
            .set_host(Some(&host))
            .and_then(|()| {
                resolved
                    .set_port(Some(addresses[0].port()))
                    .map_err(|()| url::ParseError::InvalidPort)
            })
            .map_err(|e| EngineError::invalid(format!("connection_string (2): {e}")))?;
        let client = redis::Client::open(resolved.as_str()).map_err(|e| {
            EngineError::invalid(format!("connection_string (2) `{}`: {e}", excerpt(&shown)))
        })?;
        Ok(Self {
            client,
            shown,
            topic: req.topic,
            group,
            start,
            decode,
            schema,
            batch_rows,
            max_wait,
            max_decoded,
        })
    }

    /// Reads until the client goes away, an error, or a cap.
    pub async fn run(self, mut sink: Sink) -> EngineResult<()> {
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(MAX_BLOCK + Duration::from_secs(5)));
        let mut connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.failed("connect", &e))?;
        let _: Value = redis::cmd("CLIENT")
            .arg("SETNAME")
            .arg(CLIENT_NAME)
            .query_async(&mut connection)
            .await
            .map_err(|e| self.failed("CLIENT SETNAME", &e))?;
        let mut cursor = match &self.group {
            Some((group, _)) => {
                let from = match &self.start {
                    Start::Latest => "$",
                    Start::After(id) => id.as_str(),
                };
                let created: Result<Value, redis::RedisError> = redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(&self.topic)
                    .arg(group)
                    .arg(from)
                    .arg("MKSTREAM")
                    .query_async(&mut connection)
                    .await;
                if let Err(e) = created
                    && e.code() != Some("BUSYGROUP")
                {
                    return Err(self.failed("XGROUP CREATE", &e));
                }
                // First what this consumer was given and never acknowledged (a stream cut
                // before the client took it), then new entries.
                "0-0".to_owned()
            }
            None => match &self.start {
                Start::After(id) => id.clone(),
                Start::Latest => {
                    let last: Value = redis::cmd("XREVRANGE")
                        .arg(&self.topic)
                        .arg("+")
                        .arg("-")
                        .arg("COUNT")
                        .arg(1)
                        .query_async(&mut connection)
                        .await
                        .map_err(|e| self.failed("XREVRANGE", &e))?;
                    entries_of(last, &self.topic)?
                        .into_iter()
                        .next()
                        .map_or_else(|| "0-0".to_owned(), |(id, _)| id)
                }
            },
        };
        // In a group, first this consumer's own pending entries (from ID 0 on).
        let mut pending = self.group.is_some();
        loop {
            // Block until an entry comes (asking again every MAX_BLOCK), then gather more
            // for at most max_wait, up to batch_rows entries.
            let mut batch: Vec<Entry> = Vec::new();
            let mut received = Vec::new();
            let mut gathering: Option<Instant> = None;
            while batch.len() < self.batch_rows {
                let block = match gathering {
                    None => MAX_BLOCK,
                    Some(first) => match self.max_wait.checked_sub(first.elapsed()) {
                        Some(left) if !left.is_zero() => left,
                        _ => break,
                    },
                };
                let from = if self.group.is_some() && !pending {
                    ">"
                } else {
                    cursor.as_str()
                };
                let mut entries = self
                    .read(
                        &mut connection,
                        from,
                        self.batch_rows - batch.len(),
                        block,
                        pending,
                    )
                    .await?;
                let at = SystemTime::now();
                if pending {
                    match entries.last() {
                        Some((id, _)) => cursor = id.clone(),
                        None => pending = false,
                    }
                    // Entries deleted while pending have no fields: nothing to send.
                    let (gone, kept): (Vec<Entry>, Vec<Entry>) = entries
                        .into_iter()
                        .partition(|(_, fields)| fields.is_empty());
                    self.acknowledge(&mut connection, gone.iter().map(|(id, _)| id))
                        .await?;
                    entries = kept;
                } else if self.group.is_none()
                    && let Some((id, _)) = entries.last()
                {
                    cursor = id.clone();
                }
                if entries.is_empty() {
                    if gathering.is_some() && !pending {
                        break;
                    }
                    continue;
                }
                gathering.get_or_insert_with(Instant::now);
                received.extend(std::iter::repeat_n(at, entries.len()));
                batch.extend(entries);
            }
            if batch.is_empty() {
                continue;
            }
            self.deliver(&mut sink, &mut connection, batch, received)
                .await?;
        }
    }

    /// One XREAD (or XREADGROUP) of at most `count` entries after `cursor`.
    async fn read(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        cursor: &str,
        count: usize,
        block: Duration,
        pending: bool,
    ) -> EngineResult<Vec<Entry>> {
        let mut command = match &self.group {
            Some((group, consumer)) => {
                let mut command = redis::cmd("XREADGROUP");
                command.arg("GROUP").arg(group).arg(consumer);
                command
            }
            None => redis::cmd("XREAD"),
        };
        command.arg("COUNT").arg(count);
        // A consumer's own pending entries are there or not: no wait for them.
        if !pending {
            command
                .arg("BLOCK")
                .arg(u64::try_from(block.as_millis()).unwrap_or(u64::MAX).max(1));
        }
        command.arg("STREAMS").arg(&self.topic).arg(cursor);
        let reply: Value = command
            .query_async(connection)
            .await
            .map_err(|e| self.failed("XREAD", &e))?;
        let streams = match reply {
            Value::Nil => return Ok(Vec::new()),
            Value::Array(streams) => streams,
            Value::Map(pairs) => pairs
                .into_iter()
                .map(|(key, value)| Value::Array(vec![key, value]))
                .collect(),
            other => return Err(unexpected("XREAD", &other)),
        };
        let mut entries = Vec::new();
        for stream in streams {
            let Value::Array(mut parts) = stream else {
                return Err(unexpected("XREAD", &stream));
            };
            if parts.len() != 2 {
                return Err(unexpected("XREAD", &Value::Array(parts)));
            }
            let items = parts.pop().unwrap_or(Value::Nil);
            entries.extend(entries_of(items, &self.topic)?);
        }
        Ok(entries)
    }

    /// Sends `batch` (its records, in entry order) and, in a group, acknowledges the
    /// entries whose records the transport took. An entry that does not decode ends the
    /// stream, after the entries before it are sent.
    async fn deliver(
        &self,
        sink: &mut Sink,
        connection: &mut redis::aio::MultiplexedConnection,
        batch: Vec<Entry>,
        received: Vec<SystemTime>,
    ) -> EngineResult<()> {
        let ids: Vec<String> = batch.iter().map(|(id, _)| id.clone()).collect();
        let entries: Vec<Received> = batch
            .into_iter()
            .zip(received)
            .map(|((id, fields), received)| Received {
                id,
                fields,
                received,
            })
            .collect();
        let decoding = Decoding {
            payload: match &self.decode {
                Decode::Fields => Payload::Json,
                Decode::Payload { payload, .. } => *payload,
            },
            schema: self.schema.clone(),
            batch_rows: self.batch_rows,
            max_decoded: self.max_decoded,
        };
        let (decode, max_decoded) = (self.decode.clone(), self.max_decoded);
        let acknowledged = self.group.is_some();
        let delivered = payload::deliver_each(
            sink,
            &decoding,
            entries,
            acknowledged,
            move |records, entry| {
                add_entry(records, &decode, &entry.id, &entry.fields, max_decoded)
            },
        )
        .await?;
        // In a group, an entry is acknowledged once every one of its records was taken;
        // a cut entry is left pending for this consumer, which reads it again first.
        self.acknowledge(connection, ids[..delivered.whole].iter())
            .await?;
        delivered.outcome(sink)
    }

    /// XACKs `ids` in the group (nothing without one, or without IDs).
    async fn acknowledge<'a>(
        &self,
        connection: &mut redis::aio::MultiplexedConnection,
        ids: impl Iterator<Item = &'a String>,
    ) -> EngineResult<()> {
        let Some((group, _)) = &self.group else {
            return Ok(());
        };
        let mut command = redis::cmd("XACK");
        command.arg(&self.topic).arg(group);
        let mut any = false;
        for id in ids {
            command.arg(id);
            any = true;
        }
        if !any {
            return Ok(());
        }
        let _: Value = command
            .query_async(connection)
            .await
            .map_err(|e| self.failed("XACK", &e))?;
        Ok(())
    }

    /// A Redis failure, as the caller should read it: the peer lost or unreachable is
    /// UNAVAILABLE, refused credentials PERMISSION_DENIED, the key of another type or a
    /// group gone FAILED_PRECONDITION.
    fn failed(&self, doing: &str, error: &redis::RedisError) -> EngineError {
        let code = if error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout()
        {
            ErrorCode::Unavailable
        } else if error.kind() == redis::ErrorKind::AuthenticationFailed
            || matches!(error.code(), Some("NOAUTH" | "WRONGPASS" | "NOPERM"))
        {
            ErrorCode::PermissionDenied
        } else if error.kind() == redis::ErrorKind::InvalidClientConfig {
            ErrorCode::InvalidArgument
        } else {
            ErrorCode::FailedPrecondition
        };
        EngineError::RemoteAnswer {
            code,
            message: format!(
                "Redis at {} ({doing} on stream `{}`): {error}",
                excerpt(&self.shown),
                excerpt(&self.topic)
            ),
        }
    }
}

/// Adds the records of one entry; returns how many it held.
fn add_entry(
    records: &mut Records,
    decode: &Decode,
    id: &str,
    fields: &[(Vec<u8>, Vec<u8>)],
    max_decoded: usize,
) -> EngineResult<usize> {
    let from = format!("entry {id}");
    match decode {
        Decode::Fields => {
            let record: serde_json::Map<String, serde_json::Value> = fields
                .iter()
                .map(|(name, value)| {
                    (
                        String::from_utf8_lossy(name).into_owned(),
                        serde_json::Value::String(String::from_utf8_lossy(value).into_owned()),
                    )
                })
                .collect();
            records.add_values([serde_json::Value::Object(record)])?;
            Ok(1)
        }
        Decode::Payload { payload, field } => {
            let value = match field {
                Some(name) => fields.iter().find(|(n, _)| n.as_slice() == name.as_bytes()),
                None if fields.len() == 1 => fields.first(),
                None => fields.iter().find(|(n, _)| n.as_slice() == b"data"),
            };
            let Some((_, value)) = value else {
                return Err(EngineError::invalid(format!(
                    "{from} has no payload field `{}` (payload_field, 9)",
                    excerpt(field.as_deref().unwrap_or("data"))
                )));
            };
            records.add(*payload, value, &from, max_decoded)
        }
    }
}

/// The entries of an XRANGE-shaped reply: `[[id, [field, value, ...]], ...]`.
fn entries_of(items: Value, topic: &str) -> EngineResult<Vec<Entry>> {
    let items = match items {
        Value::Nil => return Ok(Vec::new()),
        Value::Array(items) => items,
        other => return Err(unexpected(topic, &other)),
    };
    items
        .into_iter()
        .map(|item| {
            let Value::Array(parts) = item else {
                return Err(unexpected(topic, &item));
            };
            let mut parts = parts.into_iter();
            let id = match parts.next() {
                Some(Value::BulkString(id)) => String::from_utf8_lossy(&id).into_owned(),
                Some(Value::SimpleString(id)) => id,
                other => return Err(unexpected(topic, &other.unwrap_or(Value::Nil))),
            };
            let fields = match parts.next() {
                Some(Value::Array(values)) => {
                    let mut values = values.into_iter();
                    let mut fields = Vec::new();
                    while let (Some(name), Some(value)) = (values.next(), values.next()) {
                        fields.push((bytes_of(name), bytes_of(value)));
                    }
                    fields
                }
                Some(Value::Map(pairs)) => pairs
                    .into_iter()
                    .map(|(name, value)| (bytes_of(name), bytes_of(value)))
                    .collect(),
                // An entry deleted while pending has no fields.
                Some(Value::Nil) | None => Vec::new(),
                Some(other) => return Err(unexpected(topic, &other)),
            };
            Ok((id, fields))
        })
        .collect()
}

fn bytes_of(value: Value) -> Vec<u8> {
    match value {
        Value::BulkString(bytes) => bytes,
        Value::SimpleString(text) => text.into_bytes(),
        Value::Int(n) => n.to_string().into_bytes(),
        Value::Double(x) => x.to_string().into_bytes(),
        _ => Vec::new(),
    }
}

fn unexpected(what: &str, value: &Value) -> EngineError {
    EngineError::RemoteAnswer {
        code: ErrorCode::Unavailable,
        message: format!(
            "Redis answered {} with an unexpected shape: {}",
            excerpt(what),
            excerpt(&format!("{value:?}"))
        ),
    }
}

/// Whether `id` is a stream entry ID: `<ms>` or `<ms>-<seq>`.
fn is_entry_id(id: &str) -> bool {
    let mut parts = id.splitn(2, '-');
    let number = |part: Option<&str>| {
        part.is_some_and(|p| {
            !p.is_empty() && p.len() <= 20 && p.bytes().all(|b| b.is_ascii_digit())
        })
    };
    let ms = parts.next();
    match parts.next() {
        None => number(ms),
        Some(seq) => number(ms) && number(Some(seq)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn entry_ids_are_checked() {
        for good in ["0", "1700000000000", "1700000000000-3"] {
            assert!(is_entry_id(good), "{good}");
        }
        for bad in ["", "-1", "1-", "a-1", "1-2-3", "$"] {
            assert!(!is_entry_id(bad), "{bad}");
        }
    }

    #[test]
    fn replies_become_entries_in_order() {
        let bulk = |text: &str| Value::BulkString(text.as_bytes().to_vec());
        let reply = Value::Array(vec![
            Value::Array(vec![
                bulk("1-0"),
                Value::Array(vec![bulk("a"), bulk("1"), bulk("b"), bulk("x")]),
            ]),
            Value::Array(vec![bulk("2-0"), Value::Nil]),
        ]);
        let entries = entries_of(reply, "s").unwrap();
        assert_eq!(entries[0].0, "1-0");
        assert_eq!(
            entries[0].1,
            vec![
                (b"a".to_vec(), b"1".to_vec()),
                (b"b".to_vec(), b"x".to_vec())
            ]
        );
        assert_eq!(entries[1], ("2-0".to_owned(), Vec::new()));
    }
}
