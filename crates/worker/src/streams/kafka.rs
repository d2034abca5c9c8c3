//! `StreamMessageQueue` for `KAFKA` (rskafka, pure Rust): reads every partition of `topic`
//! from the offsets taken when the call starts (the latest, the earliest, or after given
//! positions), or as the consumer group `consumer_group`, from its committed offsets, and
//! commits only what the transport took to the client. A message's value is its payload
//! (a tombstone, with none, makes no row); its position is `partition:offset`.
//!
//! Every connection, to the bootstrap broker and to the brokers the cluster's metadata
//! names, goes through the stream's [`Gate`], so the outbound rules hold for all of them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use futures::StreamExt;
use futures::stream::BoxStream;
use polaroid_proto::v1 as pb;
use polaroid_proto::{ErrorCode, excerpt};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};

use super::Sink;
use super::gate::Gate;
use super::kafka_offsets::{GroupOffsets, OffsetsError};
use super::payload::{self, Decoding, Received};
use crate::error::{EngineError, EngineResult};
use crate::outbound::{Outbound, redacted};

/// Kafka's port when a URL names none.
const DEFAULT_PORT: u16 = 9092;
/// The client id brokers see (their request logs and quotas), for operators.
pub const CLIENT_ID: &str = "polaroid-stream";
/// How long brokers that stopped answering are retried before the stream ends with
/// UNAVAILABLE: rskafka's own retries (which may outlast it: its fetches retry lookups
/// that retry connections, each with this deadline) and the gate's watch on connections
/// that all fail, which ends it.
const RETRY_DEADLINE: Duration = Duration::from_secs(10);
/// How long one fetch waits at the broker for a first record.
const FETCH_WAIT_MS: i32 = 500;
/// What one fetch asks of a partition (rskafka's default is 50 MB, held per partition).
const FETCH_MAX_BYTES: i32 = 4 << 20;
/// The largest answer read from a broker: a fetch answers at least one whole record
/// batch, so a batch over this ends the stream.
const MAX_ANSWER_BYTES: usize = 64 << 20;
/// Partitions one stream reads at most: each has a connection and a fetch of its own.
const MAX_PARTITIONS: usize = 256;

/// Where each partition starts.
#[derive(Debug, Clone, PartialEq)]
enum Start {
    /// Records written from the call's start on (`$`, the default).
    Latest,
    /// Every record the partitions hold (`0`).
    Earliest,
    /// After the given offset of the partitions named, from the latest in the others.
    After(BTreeMap<i32, i64>),
}

/// A Kafka source, checked.
pub struct KafkaSource {
    bootstrap: (String, u16),
    /// The URL without its password, for messages.
    shown: String,
    topic: String,
    group: Option<String>,
    start: Start,
    decoding: Decoding,
    max_wait: Duration,
    outbound: Arc<Outbound>,
}

impl KafkaSource {
    /// Checks `req` (the peers are checked as they are connected to, by the gate).
    pub fn new(
        req: pb::MessageQueueRequest,
        outbound: Arc<Outbound>,
        batch_rows: usize,
        max_decoded: usize,
    ) -> EngineResult<Self> {
        let url = super::queue_url(
            &req.connection_string,
            "KAFKA",
            "kafka://host[:port] (a bootstrap broker)",
            "kafka",
            |scheme| {
                matches!(scheme, "kafka+ssl" | "kafka+tls" | "ssl" | "sasl_ssl").then(|| {
                    format!(
                        "connection_string (2) {scheme}://: Kafka over TLS or SASL is not built into this worker; use kafka://"
                    )
                })
            },
        )?;
        let shown = redacted(&url);
        if !url.username().is_empty() || url.password().is_some() {
            return Err(EngineError::Unimplemented(
                "connection_string (2): Kafka SASL credentials are not built into this worker; use kafka://host:port".into(),
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            // rskafka splits `host:port` at the first colon.
            Some(url::Host::Ipv6(_)) => {
                return Err(EngineError::Unimplemented(
                    "connection_string (2): an IPv6 bootstrap address; name the broker by host name or IPv4".into(),
                ));
            }
            None => {
                return Err(EngineError::invalid(format!(
                    "connection_string (2) `{}` names no broker",
                    excerpt(&shown)
                )));
            }
        };
        let bootstrap = (host, url.port().unwrap_or(DEFAULT_PORT));
        let legal = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if req.topic.is_empty() || req.topic.len() > 249 || !req.topic.chars().all(legal) {
            return Err(EngineError::invalid(format!(
                "topic (3) `{}` is not a Kafka topic name (1 to 249 of a-z, A-Z, 0-9, `.`, `_`, `-`)",
                excerpt(&req.topic)
            )));
        }
        if req.consumer_name.is_some() {
            return Err(EngineError::invalid(
                "consumer_name (7) does not apply to KAFKA: a stream commits its group's offsets as a standalone member, which has no name",
            ));
        }
        let (decoding, max_wait) = payload::body_decoding(&req, "KAFKA", batch_rows, max_decoded)?;
        let group = match req.consumer_group {
            None => None,
            Some(group)
                if group.is_empty()
                    || group.len() > 255
                    || group.chars().any(|c| c.is_control()) =>
            {
                return Err(EngineError::invalid(format!(
                    "consumer_group (4) `{}` is not a Kafka group id (1 to 255 characters, no control characters)",
                    excerpt(&group)
                )));
            }
            Some(group) => Some(group),
        };
        let start = parse_start(req.start_id.as_deref())?;
        Ok(Self {
            bootstrap,
            shown,
            topic: req.topic,
            group,
            start,
            decoding,
            max_wait,
            outbound,
        })
    }

    /// Connects and takes each partition's starting offset, so that what is written once
    /// the call answered is read.
    pub async fn connect(self) -> EngineResult<KafkaReader> {
        let gate = Gate::open(
            Arc::clone(&self.outbound),
            "kafka",
            format!(
                "Kafka at {} (topic `{}`)",
                excerpt(&self.shown),
                excerpt(&self.topic)
            ),
            RETRY_DEADLINE,
        )
        .await?;
        let (host, port) = &self.bootstrap;
        let builder = ClientBuilder::new(vec![format!("{host}:{port}")])
            .client_id(CLIENT_ID)
            .socks5_proxy(gate.address().to_string())
            .max_message_size(MAX_ANSWER_BYTES)
            .backoff_config(rskafka::BackoffConfig {
                init_backoff: Duration::from_millis(100),
                max_backoff: Duration::from_secs(1),
                base: 3.0,
                deadline: Some(RETRY_DEADLINE),
            });
        // Every step is guarded: a broker the rules refuse ends it at once.
        let client = gate
            .guard(async {
                builder
                    .build()
                    .await
                    .map_err(|e| self.failed(&gate, ErrorCode::Unavailable, "connect", &e))
            })
            .await?;
        let partitions = gate.guard(self.partitions(&gate, &client)).await?;
        let mut offsets = self
            .group
            .clone()
            .map(|group| GroupOffsets::new(gate.address(), group, self.topic.clone(), CLIENT_ID));
        let committed: BTreeMap<i32, Option<i64>> = match offsets.as_mut() {
            Some(offsets) => gate
                .guard(async {
                    offsets
                        .committed(&self.bootstrap, &partitions)
                        .await
                        .map_err(|e| self.group_failed(&gate, "fetch the group's offsets", &e))
                })
                .await?
                .into_iter()
                .collect(),
            None => BTreeMap::new(),
        };
        let mut readers = Vec::with_capacity(partitions.len());
        // Where a group starts in the partitions it never committed, committed now: a
        // stream that reads nothing before it ends leaves the next one of the group
        // there, not at a later "latest".
        let mut placed = Vec::new();
        for partition in partitions {
            let client = gate
                .guard(async {
                    client
                        .partition_client(
                            self.topic.clone(),
                            partition,
                            UnknownTopicHandling::Error,
                        )
                        .await
                        .map_err(|e| {
                            self.failed(&gate, ErrorCode::Unavailable, "reach the partition", &e)
                        })
                })
                .await?;
            let still_held = match committed.get(&partition).copied().flatten() {
                Some(offset) => {
                    gate.guard(self.committed_offset(&gate, &client, offset))
                        .await?
                }
                None => None,
            };
            let next = match still_held {
                Some(offset) => offset,
                None => {
                    let offset = gate.guard(self.start_offset(&gate, &client)).await?;
                    placed.push((partition, offset));
                    offset
                }
            };
            readers.push((Arc::new(client), next));
        }
        if let Some(offsets) = offsets.as_mut()
            && !placed.is_empty()
        {
            gate.guard(async {
                offsets
                    .commit(&self.bootstrap, &placed)
                    .await
                    .map_err(|e| self.group_failed(&gate, "commit the group's start", &e))
            })
            .await?;
        }
        Ok(KafkaReader {
            source: self,
            gate,
            _client: client,
            readers,
            offsets,
        })
    }

    /// The topic's partitions, or NOT_FOUND when the cluster has no such topic.
    async fn partitions(&self, gate: &Gate, client: &Client) -> EngineResult<Vec<i32>> {
        let topics = client
            .list_topics()
            .await
            .map_err(|e| self.failed(gate, ErrorCode::Unavailable, "list topics", &e))?;
        match topics.into_iter().find(|t| t.name == self.topic) {
            Some(topic) if topic.partitions.len() > MAX_PARTITIONS => {
                Err(EngineError::LimitExceeded(format!(
                    "topic `{}` has {} partitions; a stream reads {MAX_PARTITIONS} at most",
                    excerpt(&self.topic),
                    topic.partitions.len()
                )))
            }
            Some(topic) if !topic.partitions.is_empty() => {
                let partitions: Vec<i32> = topic.partitions.into_iter().collect();
                if let Start::After(after) = &self.start
                    && let Some(unknown) = after.keys().find(|p| !partitions.contains(p))
                {
                    return Err(EngineError::invalid(format!(
                        "start_id (8) names partition {unknown}, which topic `{}` does not have (it has {})",
                        excerpt(&self.topic),
                        partitions.len()
                    )));
                }
                Ok(partitions)
            }
            _ => Err(self.failed(
                gate,
                ErrorCode::NotFound,
                "find the topic",
                &"the cluster has no such topic",
            )),
        }
    }

    /// A group's committed `offset` in `partition`, if the partition still holds it (or
    /// is at it): `None` when retention deleted it or the topic was made again, and the
    /// group starts as one that never committed, as Kafka's consumers do
    /// (`auto.offset.reset`).
    async fn committed_offset(
        &self,
        gate: &Gate,
        partition: &PartitionClient,
        offset: i64,
    ) -> EngineResult<Option<i64>> {
        let at = |at: OffsetAt| async move {
            partition
                .get_offset(at)
                .await
                .map_err(|e| self.failed(gate, ErrorCode::Unavailable, "list offsets", &e))
        };
        let (earliest, latest) = (at(OffsetAt::Earliest).await?, at(OffsetAt::Latest).await?);
        Ok((earliest..=latest).contains(&offset).then_some(offset))
    }

    /// The first offset to read in a partition the group (if any) never committed.
    async fn start_offset(&self, gate: &Gate, partition: &PartitionClient) -> EngineResult<i64> {
        let at = |at: OffsetAt| async move {
            partition
                .get_offset(at)
                .await
                .map_err(|e| self.failed(gate, ErrorCode::Unavailable, "list offsets", &e))
        };
        match &self.start {
            Start::Latest => at(OffsetAt::Latest).await,
            Start::Earliest => at(OffsetAt::Earliest).await,
            Start::After(after) => match after.get(&partition.partition()) {
                None => at(OffsetAt::Latest).await,
                Some(&offset) => {
                    let (earliest, latest) =
                        (at(OffsetAt::Earliest).await?, at(OffsetAt::Latest).await?);
                    // After the last record written is where the latest starts; `offset`
                    // is below i64::MAX (parse_start).
                    let next = offset + 1;
                    if next < earliest || next > latest {
                        let holds = if earliest >= latest {
                            "no records".to_owned()
                        } else {
                            format!("offsets {earliest} to {}", latest.saturating_sub(1))
                        };
                        return Err(EngineError::invalid(format!(
                            "start_id (8): partition {} of topic `{}` holds {holds}, so no record follows offset {offset} there",
                            partition.partition(),
                            excerpt(&self.topic),
                        )));
                    }
                    Ok(next)
                }
            },
        }
    }

    /// A Kafka failure, as the caller should read it: the outbound rules' refusal if one
    /// stopped the client.
    fn failed(
        &self,
        gate: &Gate,
        code: ErrorCode,
        doing: &str,
        error: &dyn std::fmt::Display,
    ) -> EngineError {
        if let Some(refusal) = gate.refusal() {
            return refusal;
        }
        EngineError::RemoteAnswer {
            code,
            message: format!(
                "Kafka at {} ({doing} for topic `{}`): {}",
                excerpt(&self.shown),
                excerpt(&self.topic),
                excerpt(&error.to_string())
            ),
        }
    }

    fn group_failed(&self, gate: &Gate, doing: &str, error: &OffsetsError) -> EngineError {
        let code = match error {
            // GROUP_AUTHORIZATION_FAILED, TOPIC_AUTHORIZATION_FAILED
            OffsetsError::Broker { code: 29 | 30, .. } => ErrorCode::PermissionDenied,
            // INVALID_GROUP_ID; ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
            // REBALANCE_IN_PROGRESS and STALE_MEMBER_EPOCH: members of the group hold
            // it, so a standalone member may not commit.
            OffsetsError::Broker {
                code: 22 | 24 | 25 | 27 | 113,
                ..
            } => ErrorCode::FailedPrecondition,
            _ => ErrorCode::Unavailable,
        };
        self.failed(gate, code, doing, error)
    }
}

/// `start_id` (8): `$` (the default), `0`, or positions `partition:offset` (the records
/// after them), comma-separated.
fn parse_start(start_id: Option<&str>) -> EngineResult<Start> {
    let bad = |text: &str| {
        EngineError::invalid(format!(
            "start_id (8) `{}` is not \"$\", \"0\" or positions partition:offset, comma-separated (as the stream's position column gives them)",
            excerpt(text)
        ))
    };
    match start_id {
        None | Some("$") => Ok(Start::Latest),
        Some("0") => Ok(Start::Earliest),
        Some(text) => {
            let mut after = BTreeMap::new();
            for position in text.split(',') {
                let (partition, offset) =
                    position.trim().split_once(':').ok_or_else(|| bad(text))?;
                let partition: i32 = partition.parse().map_err(|_| bad(text))?;
                let offset: i64 = offset.parse().map_err(|_| bad(text))?;
                if partition < 0
                    || !(0..i64::MAX).contains(&offset)
                    || after.insert(partition, offset).is_some()
                {
                    return Err(bad(text));
                }
            }
            Ok(Start::After(after))
        }
    }
}

/// A Kafka source connected, its starting offsets taken.
pub struct KafkaReader {
    source: KafkaSource,
    /// Closes its connections when the stream ends.
    gate: Gate,
    /// The client the partition clients came from (each has its leader's connection).
    _client: Client,
    /// Each partition and the offset it is read from.
    readers: Vec<(Arc<PartitionClient>, i64)>,
    offsets: Option<GroupOffsets>,
}

/// One record as received.
struct Record {
    partition: i32,
    offset: i64,
    position: String,
    received: SystemTime,
    value: Option<Vec<u8>>,
}

impl Received for Record {
    fn position(&self) -> &str {
        &self.position
    }
    fn received(&self) -> SystemTime {
        self.received
    }
}

type Fetched = (
    i32,
    rskafka::client::error::Result<(rskafka::record::RecordAndOffset, i64)>,
);

impl KafkaReader {
    /// Reads until the client goes away, an error, a cap, or a broker lost for good.
    pub async fn run(mut self, mut sink: Sink) -> EngineResult<()> {
        let consumers = self.readers.iter().map(|(partition, next)| {
            let index = partition.partition();
            rskafka::client::consumer::StreamConsumerBuilder::new(
                Arc::clone(partition),
                rskafka::client::consumer::StartOffset::At(*next),
            )
            .with_max_wait_ms(FETCH_WAIT_MS)
            .with_max_batch_size(FETCH_MAX_BYTES)
            .build()
            .map(move |item| (index, item))
            .boxed()
        });
        let mut records: BoxStream<'static, Fetched> =
            futures::stream::select_all(consumers).boxed();
        let max_wait = self.source.max_wait;
        loop {
            // One record, waiting for it; then more for at most max_wait, up to
            // batch_rows (and no more than the rows cap leaves room for).
            let room = sink.rows_room().map_or(usize::MAX, |room| {
                usize::try_from(room).unwrap_or(usize::MAX)
            });
            let wanted = self.source.decoding.batch_rows.min(room).max(1);
            let Some(first) = self.gate.guard(async { Ok(records.next().await) }).await? else {
                return Ok(());
            };
            let mut batch = vec![self.record(first)?];
            let deadline = tokio::time::Instant::now() + max_wait;
            // A fetch that fails ends the stream after the records before it are sent.
            let mut failed = None;
            while batch.len() < wanted {
                let more = tokio::time::timeout_at(deadline, records.next());
                match self.gate.guard(async { Ok(more.await) }).await {
                    Ok(Ok(Some(fetched))) => match self.record(fetched) {
                        Ok(record) => batch.push(record),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    },
                    Ok(Ok(None) | Err(_)) => break,
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            self.deliver(&mut sink, batch).await?;
            if let Some(error) = failed {
                return Err(error);
            }
        }
    }

    fn record(&self, (partition, fetched): Fetched) -> EngineResult<Record> {
        let (record, _high_watermark) = fetched.map_err(|e| {
            // Out of range midway: retention deleted records before they were read.
            let code = match &e {
                rskafka::client::error::Error::ServerError {
                    protocol_error: rskafka::client::error::ProtocolError::OffsetOutOfRange,
                    ..
                } => ErrorCode::FailedPrecondition,
                _ => ErrorCode::Unavailable,
            };
            self.source.failed(
                &self.gate,
                code,
                &format!("fetch from partition {partition}"),
                &e,
            )
        })?;
        Ok(Record {
            partition,
            offset: record.offset,
            position: format!("{partition}:{}", record.offset),
            received: SystemTime::now(),
            value: record.record.value,
        })
    }

    /// Sends `batch` and, in a group, commits the offsets after the records whose rows the
    /// transport took.
    async fn deliver(&mut self, sink: &mut Sink, batch: Vec<Record>) -> EngineResult<()> {
        let decoding = self.source.decoding.clone();
        let (payload, max_decoded) = (decoding.payload, decoding.max_decoded);
        // Each partition's last offset in the batch, in batch order: what a whole prefix
        // of the batch lets the group commit is computed from it below.
        let offsets: Vec<(i32, i64)> = batch.iter().map(|r| (r.partition, r.offset)).collect();
        let acknowledged = self.offsets.is_some();
        let delivered = payload::deliver_each(
            sink,
            &decoding,
            batch,
            acknowledged,
            move |records, record| match &record.value {
                None => Ok(0),
                Some(value) => {
                    let from = format!("message {}", record.position);
                    records.add(payload, value, &from, max_decoded)
                }
            },
        )
        .await?;
        if let Some(group) = self.offsets.as_mut() {
            let mut next: BTreeMap<i32, i64> = BTreeMap::new();
            for &(partition, offset) in &offsets[..delivered.whole] {
                next.insert(partition, offset.saturating_add(1));
            }
            if !next.is_empty() {
                let next: Vec<(i32, i64)> = next.into_iter().collect();
                let (source, gate) = (&self.source, &self.gate);
                gate.guard(async {
                    group
                        .commit(&source.bootstrap, &next)
                        .await
                        .map_err(|e| source.group_failed(gate, "commit the group's offsets", &e))
                })
                .await?;
            }
        }
        delivered.outcome(sink)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn start_ids_are_latest_earliest_or_positions() {
        assert_eq!(parse_start(None).unwrap(), Start::Latest);
        assert_eq!(parse_start(Some("$")).unwrap(), Start::Latest);
        assert_eq!(parse_start(Some("0")).unwrap(), Start::Earliest);
        assert_eq!(
            parse_start(Some("0:41, 2:7")).unwrap(),
            Start::After(BTreeMap::from([(0, 41), (2, 7)]))
        );
        let past_the_end = format!("0:{}", i64::MAX);
        for bad in [
            "",
            "1",
            "a:1",
            "0:-1",
            "-1:3",
            "0:1,0:2",
            "0:1,",
            "0:x",
            &past_the_end,
        ] {
            assert!(parse_start(Some(bad)).is_err(), "{bad}");
        }
    }
}
