//! `StreamMessageQueue` for `NATS` (JetStream): reads the subject `topic` from the stream
//! that holds it, through a pull consumer of its own: an ephemeral one from new messages
//! (or a given stream sequence), or the durable consumer `consumer_group`, whose messages
//! are acknowledged only once the messages holding their records were taken by the
//! transport to the client (and those not sent are given back at once). A message's body
//! is its payload; its position is its stream sequence.

use std::time::{Duration, Instant, SystemTime};

use async_nats::jetstream;
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, pull};
use futures::StreamExt;
use polaroid_proto::v1 as pb;
use polaroid_proto::{ErrorCode, excerpt};
use reqwest::Url;
use tokio::sync::watch;

use super::Sink;
use super::payload::{self, Decoding, Message};
use crate::error::{EngineError, EngineResult};
use crate::outbound::{Outbound, redacted};

/// NATS's port when a URL names none.
const DEFAULT_PORT: u16 = 4222;
/// The longest one pull request waits for a first message: asked again after it.
const MAX_BLOCK: Duration = Duration::from_secs(5);
/// How long the server keeps an ephemeral consumer whose stream went away.
const EPHEMERAL_IDLE: Duration = Duration::from_secs(30);
/// The name streams' connections carry (`/connz`), for operators.
pub const CLIENT_NAME: &str = "polaroid-stream";

/// A NATS JetStream source, checked.
pub struct NatsSource {
    /// The URL with the address the outbound rules allowed.
    url: Url,
    /// The URL without its password, for messages.
    shown: String,
    subject: String,
    group: Option<String>,
    deliver: DeliverPolicy,
    decoding: Decoding,
    max_wait: Duration,
}

impl NatsSource {
    /// Checks `req` and resolves its peer under the outbound rules.
    pub async fn new(
        req: pb::MessageQueueRequest,
        outbound: &Outbound,
        batch_rows: usize,
        max_decoded: usize,
    ) -> EngineResult<Self> {
        let url = super::queue_url(
            &req.connection_string,
            "NATS",
            "nats://[user:password@]host[:port]",
            "nats",
            |scheme| {
                matches!(scheme, "tls" | "ws" | "wss").then(|| {
                    format!(
                        "connection_string (2) {scheme}://: NATS over TLS or WebSocket is not built into this worker; use nats://"
                    )
                })
            },
        )?;
        let shown = redacted(&url);
        if req.topic.is_empty() || req.topic.contains(char::is_whitespace) {
            return Err(EngineError::invalid(format!(
                "topic (3) `{}` must be a NATS subject bound to a JetStream stream (no spaces)",
                excerpt(&req.topic)
            )));
        }
        if req.consumer_name.is_some() {
            return Err(EngineError::invalid(
                "consumer_name (7) does not apply to NATS: the members of a durable pull consumer are not named; consumer_group (4) is the consumer",
            ));
        }
        let (decoding, max_wait) = payload::body_decoding(&req, "NATS", batch_rows, max_decoded)?;
        let group = match req.consumer_group {
            None => None,
            Some(group)
                if group.is_empty()
                    || group.len() > 256
                    || group
                        .chars()
                        .any(|c| c.is_whitespace() || matches!(c, '.' | '*' | '>')) =>
            {
                return Err(EngineError::invalid(format!(
                    "consumer_group (4) `{}` is not a NATS durable consumer name (1 to 256 characters, none of `.`, `*`, `>` or spaces)",
                    excerpt(&group)
                )));
            }
            Some(group) => Some(group),
        };
        let deliver = match req.start_id.as_deref() {
            None | Some("$") => DeliverPolicy::New,
            Some("0") => DeliverPolicy::All,
            Some(sequence) => match sequence.parse::<u64>() {
                Ok(after) if after < u64::MAX => DeliverPolicy::ByStartSequence {
                    start_sequence: after + 1,
                },
                _ => {
                    return Err(EngineError::invalid(format!(
                        "start_id (8) `{}` is not \"$\", \"0\" or a stream sequence",
                        excerpt(sequence)
                    )));
                }
            },
        };
        let url = payload::pinned(&url, outbound, DEFAULT_PORT).await?;
        Ok(Self {
            url,
            shown,
            subject: req.topic,
            group,
            deliver,
            decoding,
            max_wait,
        })
    }

    /// Reads until the client goes away, an error, a cap, or the connection is lost.
    pub async fn run(self, mut sink: Sink) -> EngineResult<()> {
        // The client would reconnect on its own; a stream ends instead, with the peer's
        // error, as its other sources do.
        let (lost, mut lost_seen) = watch::channel(false);
        let options = async_nats::ConnectOptions::new()
            .name(CLIENT_NAME)
            .ignore_discovered_servers()
            .connection_timeout(Duration::from_secs(5))
            .event_callback(move |event| {
                let lost = lost.clone();
                async move {
                    if matches!(
                        event,
                        async_nats::Event::Disconnected | async_nats::Event::Closed
                    ) {
                        let _ = lost.send(true);
                    }
                }
            });
        let client = options.connect(self.url.as_str()).await.map_err(|e| {
            let code = match e.kind() {
                async_nats::ConnectErrorKind::Authentication
                | async_nats::ConnectErrorKind::AuthorizationViolation => {
                    ErrorCode::PermissionDenied
                }
                _ => ErrorCode::Unavailable,
            };
            self.failed(code, "connect", &e)
        })?;
        tokio::select! {
            result = self.read(&client, &mut sink) => result,
            Ok(_) = lost_seen.wait_for(|lost| *lost) => Err(self.failed(
                ErrorCode::Unavailable,
                "read",
                &"the connection was lost",
            )),
        }
    }

    async fn read(&self, client: &async_nats::Client, sink: &mut Sink) -> EngineResult<()> {
        let context = jetstream::new(client.clone());
        let stream_name = context
            .stream_by_subject(self.subject.clone())
            .await
            .map_err(|e| {
                let code = match e.kind() {
                    jetstream::context::GetStreamByNameErrorKind::Request => ErrorCode::Unavailable,
                    _ => ErrorCode::FailedPrecondition,
                };
                self.failed(code, "find the stream holding the subject", &e)
            })?;
        let stream = context
            .get_stream_no_info(&stream_name)
            .await
            .map_err(|e| self.failed(ErrorCode::Unavailable, "get stream", &e))?;
        let config = pull::Config {
            durable_name: self.group.clone(),
            deliver_policy: self.deliver,
            ack_policy: if self.group.is_some() {
                AckPolicy::Explicit
            } else {
                AckPolicy::None
            },
            filter_subject: self.subject.clone(),
            inactive_threshold: if self.group.is_some() {
                Duration::ZERO
            } else {
                EPHEMERAL_IDLE
            },
            ..Default::default()
        };
        let consumer: jetstream::consumer::PullConsumer = match &self.group {
            Some(group) => {
                let mut consumer =
                    stream
                        .get_or_create_consumer(group, config)
                        .await
                        .map_err(|e| {
                            self.failed(ErrorCode::FailedPrecondition, "create the consumer", &e)
                        })?;
                // A group made for another subject would read other messages.
                let info = consumer
                    .info()
                    .await
                    .map_err(|e| self.failed(ErrorCode::Unavailable, "consumer info", &e))?;
                if info.config.filter_subject != self.subject {
                    return Err(self.failed(
                        ErrorCode::FailedPrecondition,
                        "use the consumer",
                        &format!(
                            "durable consumer `{group}` of stream `{stream_name}` reads subject `{}`, not this topic",
                            excerpt(&info.config.filter_subject)
                        ),
                    ));
                }
                consumer
            }
            None => stream
                .create_consumer(config)
                .await
                .map_err(|e| self.failed(ErrorCode::FailedPrecondition, "create a consumer", &e))?,
        };
        loop {
            // One message, waiting for it (asking again every MAX_BLOCK); then more for at
            // most max_wait, up to batch_rows (and no more than the rows cap leaves room
            // for). Each pull request is read to its end, so no message is left in flight.
            let room = sink.rows_room().map_or(usize::MAX, |room| {
                usize::try_from(room).unwrap_or(usize::MAX)
            });
            let wanted = self.decoding.batch_rows.min(room).max(1);
            let mut batch = self.pull(&consumer, 1, MAX_BLOCK).await?;
            if batch.is_empty() {
                continue;
            }
            let first = Instant::now();
            while batch.len() < wanted {
                let left = match self.max_wait.checked_sub(first.elapsed()) {
                    Some(left) if left >= Duration::from_millis(1) => left,
                    _ => break,
                };
                let more = self.pull(&consumer, wanted - batch.len(), left).await?;
                if more.is_empty() {
                    break;
                }
                batch.extend(more);
            }
            self.deliver(client, sink, batch).await?;
        }
    }

    /// One pull request of at most `count` messages, waiting at most `wait`.
    async fn pull(
        &self,
        consumer: &jetstream::consumer::PullConsumer,
        count: usize,
        wait: Duration,
    ) -> EngineResult<Vec<(jetstream::Message, SystemTime)>> {
        let mut messages = consumer
            .batch()
            .max_messages(count)
            .expires(wait)
            .messages()
            .await
            .map_err(|e| self.failed(ErrorCode::Unavailable, "pull", &e))?;
        let mut got = Vec::new();
        while let Some(message) = messages.next().await {
            let message = message.map_err(|e| self.failed(ErrorCode::Unavailable, "pull", &e))?;
            got.push((message, SystemTime::now()));
        }
        Ok(got)
    }

    /// Sends `batch` and, in a group, acknowledges the messages whose records the
    /// transport took; those not sent are given back (NAK) for the next reader.
    async fn deliver(
        &self,
        client: &async_nats::Client,
        sink: &mut Sink,
        batch: Vec<(jetstream::Message, SystemTime)>,
    ) -> EngineResult<()> {
        let mut messages = Vec::with_capacity(batch.len());
        for (message, received) in &batch {
            let info = message.info().map_err(|e| {
                self.failed(ErrorCode::Unavailable, "read the message's metadata", &e)
            })?;
            messages.push(Message {
                position: info.stream_sequence.to_string(),
                received: *received,
                body: message.payload.clone(),
            });
        }
        let acknowledged = self.group.is_some();
        let delivered =
            payload::deliver(sink, &self.decoding, "message", messages, acknowledged).await?;
        if acknowledged {
            for (index, (message, _)) in batch.iter().enumerate() {
                let kind = if index < delivered.whole {
                    jetstream::message::AckKind::Ack
                } else {
                    jetstream::message::AckKind::Nak(None)
                };
                message
                    .ack_with(kind)
                    .await
                    .map_err(|e| self.failed(ErrorCode::Unavailable, "acknowledge", &e))?;
            }
            // On the wire before the stream may end (and its connection with it).
            client
                .flush()
                .await
                .map_err(|e| self.failed(ErrorCode::Unavailable, "acknowledge", &e))?;
        }
        delivered.outcome(sink)
    }

    /// A NATS failure, as the caller should read it.
    fn failed(&self, code: ErrorCode, doing: &str, error: &dyn std::fmt::Display) -> EngineError {
        EngineError::RemoteAnswer {
            code,
            message: format!(
                "NATS at {} ({doing} for subject `{}`): {error}",
                excerpt(&self.shown),
                excerpt(&self.subject)
            ),
        }
    }
}
