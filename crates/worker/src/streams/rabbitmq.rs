//! `StreamMessageQueue` for `RABBITMQ` (AMQP 0-9-1): reads what is published to the
//! exchange `topic`. Without a group, through a queue of the stream's own (exclusive,
//! deleted with its connection) bound to the exchange with `#`: what is published from
//! now on. With `consumer_group`, the durable queue of that name (made on first use and
//! bound the same way; an existing one is read as it is), whose readers compete, each
//! message acknowledged only once the messages holding its records were taken by the
//! transport to the client (those not sent go back to the queue at once). A message's
//! body is its payload; its position is its delivery tag on the stream's channel.

use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use polaroid_proto::v1 as pb;
use polaroid_proto::{ErrorCode, excerpt};
use reqwest::Url;

use super::Sink;
use super::payload::{self, Decoding, Message};
use crate::error::{EngineError, EngineResult};
use crate::outbound::{Outbound, redacted};

/// AMQP's port when a URL names none.
const DEFAULT_PORT: u16 = 5672;
/// The binding key of the queues the worker binds: every message of a topic or fanout
/// exchange.
pub const BINDING_KEY: &str = "#";
/// The name streams' connections carry (`rabbitmqctl list_connections name`).
pub const CLIENT_NAME: &str = "polaroid-stream";

/// A RabbitMQ source, checked.
pub struct RabbitSource {
    /// The URL with the address the outbound rules allowed.
    url: Url,
    /// The URL without its password, for messages.
    shown: String,
    exchange: String,
    group: Option<String>,
    consumer_tag: String,
    decoding: Decoding,
    max_wait: Duration,
}

impl RabbitSource {
    /// Checks `req` and resolves its peer under the outbound rules.
    pub async fn new(
        req: pb::MessageQueueRequest,
        outbound: &Outbound,
        batch_rows: usize,
        max_decoded: usize,
    ) -> EngineResult<Self> {
        let url = super::queue_url(
            &req.connection_string,
            "RABBITMQ",
            "amqp://[user:password@]host[:port][/vhost]",
            "amqp",
            |scheme| {
                (scheme == "amqps").then(|| {
                    "connection_string (2) amqps://: TLS to RabbitMQ is not built into this worker (lapin is built without TLS); use amqp://".to_owned()
                })
            },
        )?;
        let shown = redacted(&url);
        if req.topic.is_empty() || req.topic.len() > 255 {
            return Err(EngineError::invalid(
                "topic (3) must name a RabbitMQ exchange (1 to 255 bytes)",
            ));
        }
        if req.consumer_group.is_none() && req.consumer_name.is_some() {
            return Err(EngineError::invalid(
                "consumer_name (7) applies with consumer_group (4) only",
            ));
        }
        if let Some(start) = &req.start_id {
            return Err(EngineError::invalid(format!(
                "start_id (8) `{}` does not apply to RABBITMQ: a queue has no position to start from (a group's queue keeps what no reader took)",
                excerpt(start)
            )));
        }
        let (decoding, max_wait) =
            payload::body_decoding(&req, "RABBITMQ", batch_rows, max_decoded)?;
        let group = match req.consumer_group {
            None => None,
            Some(group) if group.is_empty() || group.len() > 255 => {
                return Err(EngineError::invalid(
                    "consumer_group (4) must name a RabbitMQ queue (1 to 255 bytes): leave it unset to read what is published from now on",
                ));
            }
            Some(group) => Some(group),
        };
        let consumer_tag = match req.consumer_name {
            Some(name) if name.is_empty() || name.len() > 255 => {
                return Err(EngineError::invalid(
                    "consumer_name (7) must be 1 to 255 bytes",
                ));
            }
            Some(name) => name,
            // The server names it.
            None => String::new(),
        };
        let url = payload::pinned(&url, outbound, DEFAULT_PORT).await?;
        Ok(Self {
            url,
            shown,
            exchange: req.topic,
            group,
            consumer_tag,
            decoding,
            max_wait,
        })
    }

    /// Reads until the client goes away, an error, a cap, or the connection is lost.
    pub async fn run(self, mut sink: Sink) -> EngineResult<()> {
        let properties = ConnectionProperties::default().with_connection_name(CLIENT_NAME.into());
        let connect = Connection::connect(self.url.as_str(), properties);
        // Dropped with the stream, the connection closes.
        let connection = tokio::time::timeout(Duration::from_secs(10), connect)
            .await
            .map_err(|_| {
                self.failed_with(ErrorCode::Unavailable, "connect", &"no answer within 10 s")
            })?
            .map_err(|e| self.failed("connect", &e))?;
        let mut channel = connection
            .create_channel()
            .await
            .map_err(|e| self.failed("open a channel", &e))?;
        let queue = match &self.group {
            None => {
                let queue = channel
                    .queue_declare(
                        "".into(),
                        QueueDeclareOptions {
                            exclusive: true,
                            auto_delete: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| self.failed("declare the stream's queue", &e))?;
                let name = queue.name().to_string();
                self.bind(&channel, &name).await?;
                name
            }
            Some(group) => {
                let found = channel
                    .queue_declare(
                        group.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await;
                let missing = match found {
                    Ok(_) => false,
                    Err(e) if not_found(&e) => true,
                    Err(e) => return Err(self.failed("find the group's queue", &e)),
                };
                if missing {
                    // Not found: the server closed the channel; the group's queue is made
                    // on a new one, bound to the exchange.
                    channel = connection
                        .create_channel()
                        .await
                        .map_err(|e| self.failed("open a channel", &e))?;
                    channel
                        .queue_declare(
                            group.as_str().into(),
                            QueueDeclareOptions {
                                durable: true,
                                ..Default::default()
                            },
                            FieldTable::default(),
                        )
                        .await
                        .map_err(|e| self.failed("declare the group's queue", &e))?;
                    self.bind(&channel, group).await?;
                }
                group.clone()
            }
        };
        // Enough messages in flight to fill a batch (the most AMQP allows).
        let prefetch = u16::try_from(self.decoding.batch_rows).unwrap_or(u16::MAX);
        channel
            .basic_qos(prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| self.failed("set the prefetch", &e))?;
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                self.consumer_tag.as_str().into(),
                BasicConsumeOptions {
                    no_ack: self.group.is_none(),
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.failed("consume", &e))?;
        loop {
            // A message, waiting for it; then more for at most max_wait, up to batch_rows.
            let mut batch = vec![self.next(&mut consumer).await?];
            let first = Instant::now();
            while batch.len() < self.decoding.batch_rows {
                let left = match self.max_wait.checked_sub(first.elapsed()) {
                    Some(left) if !left.is_zero() => left,
                    _ => break,
                };
                match tokio::time::timeout(left, self.next(&mut consumer)).await {
                    Ok(delivery) => batch.push(delivery?),
                    Err(_) => break,
                }
            }
            self.deliver(&channel, &mut sink, batch).await?;
        }
    }

    /// Binds `queue` to the exchange.
    async fn bind(&self, channel: &Channel, queue: &str) -> EngineResult<()> {
        channel
            .queue_bind(
                queue.into(),
                self.exchange.as_str().into(),
                BINDING_KEY.into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| self.failed("bind to the exchange", &e))
    }

    /// The next delivery; the consumer's end is the connection's.
    async fn next(
        &self,
        consumer: &mut lapin::Consumer,
    ) -> EngineResult<(lapin::message::Delivery, SystemTime)> {
        match consumer.next().await {
            Some(Ok(delivery)) => Ok((delivery, SystemTime::now())),
            Some(Err(e)) => Err(self.failed("consume", &e)),
            None => Err(self.failed_with(
                ErrorCode::Unavailable,
                "consume",
                &"the server ended the consumer (the queue was deleted or the connection closed)",
            )),
        }
    }

    /// Sends `batch` and, in a group, acknowledges the messages whose records the
    /// transport took; those not sent go back to the queue.
    async fn deliver(
        &self,
        channel: &Channel,
        sink: &mut Sink,
        batch: Vec<(lapin::message::Delivery, SystemTime)>,
    ) -> EngineResult<()> {
        let tags: Vec<u64> = batch.iter().map(|(d, _)| d.delivery_tag).collect();
        let messages = batch
            .into_iter()
            .map(|(delivery, received)| Message {
                position: delivery.delivery_tag.to_string(),
                received,
                body: delivery.data.into(),
            })
            .collect();
        let acknowledged = self.group.is_some();
        let delivered =
            payload::deliver(sink, &self.decoding, "message", messages, acknowledged).await?;
        if acknowledged {
            // Tags grow on a channel: `multiple` covers this batch's, up to the one named.
            if delivered.whole > 0 {
                channel
                    .basic_ack(
                        tags[delivered.whole - 1],
                        BasicAckOptions { multiple: true },
                    )
                    .await
                    .map_err(|e| self.failed("acknowledge", &e))?;
            }
            if let Some(&last) = tags.last()
                && delivered.whole < tags.len()
            {
                channel
                    .basic_nack(
                        last,
                        BasicNackOptions {
                            multiple: true,
                            requeue: true,
                        },
                    )
                    .await
                    .map_err(|e| self.failed("give back what was not sent", &e))?;
            }
        }
        delivered.outcome(sink)
    }

    /// A RabbitMQ failure, as the caller should read it: the peer lost or unreachable is
    /// UNAVAILABLE, refused credentials or access PERMISSION_DENIED, an exchange or queue
    /// missing or unfit FAILED_PRECONDITION.
    fn failed(&self, doing: &str, error: &lapin::Error) -> EngineError {
        let code = match error.kind() {
            lapin::ErrorKind::ProtocolError(amqp) => match amqp.get_id() {
                403 => ErrorCode::PermissionDenied,
                320 => ErrorCode::Unavailable,
                _ => ErrorCode::FailedPrecondition,
            },
            lapin::ErrorKind::AuthProviderError(_) => ErrorCode::PermissionDenied,
            _ => ErrorCode::Unavailable,
        };
        self.failed_with(code, doing, error)
    }

    fn failed_with(
        &self,
        code: ErrorCode,
        doing: &str,
        error: &dyn std::fmt::Display,
    ) -> EngineError {
        EngineError::RemoteAnswer {
            code,
            message: format!(
                "RabbitMQ at {} ({doing} for exchange `{}`): {error}",
                excerpt(&self.shown),
                excerpt(&self.exchange)
            ),
        }
    }
}

/// Whether the server answered NOT_FOUND (404).
fn not_found(error: &lapin::Error) -> bool {
    matches!(error.kind(), lapin::ErrorKind::ProtocolError(amqp) if amqp.get_id() == 404)
}
