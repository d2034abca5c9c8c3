//! `StreamMessageQueue` for `RABBITMQ` against a real RabbitMQ node started by the test on
//! loopback (one per test: a node boots in seconds, so the cases share it): records equal
//! what was published to the exchange, in order, with their delivery tags; a consumer
//! group's queue keeps what the stream did not send, and gives it to the next reader; a
//! cancel closes the connection (its exclusive queue goes, its consumer leaves the group's
//! queue); the node dying midway ends the stream with UNAVAILABLE; URL rules hold; bad
//! requests are refused with precise statuses.

use std::time::Duration;

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use polaroid_proto::v1 as pb;
use polaroid_tests::streamed::{end_of, records, refused, take_rows};
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;

fn amqp_url(server: &ExternalServer) -> String {
    format!("amqp://guest:guest@127.0.0.1:{}/%2f", server.port)
}

/// A channel with publisher confirms, and the topic exchanges `exchanges` declared.
async fn channel(
    server: &ExternalServer,
    exchanges: &[&str],
) -> anyhow::Result<(Connection, Channel)> {
    let connection =
        Connection::connect(&amqp_url(server), ConnectionProperties::default()).await?;
    let channel = connection.create_channel().await?;
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await?;
    for exchange in exchanges {
        channel
            .exchange_declare(
                (*exchange).into(),
                ExchangeKind::Topic,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await?;
    }
    Ok((connection, channel))
}

/// Publishes `body` to `exchange` (mandatory): whether a queue took it.
async fn publish(channel: &Channel, exchange: &str, body: &[u8]) -> anyhow::Result<bool> {
    let confirmation = channel
        .basic_publish(
            exchange.into(),
            "some.key".into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            body,
            BasicProperties::default(),
        )
        .await?
        .await?;
    match confirmation {
        Confirmation::Ack(None) => Ok(true),
        Confirmation::Ack(Some(_returned)) => Ok(false),
        other => anyhow::bail!("the broker answered {other:?}"),
    }
}

/// Publishes `body` again and again until a queue takes it (the stream's queue bound).
async fn publish_once_bound(channel: &Channel, exchange: &str, body: &[u8]) -> anyhow::Result<()> {
    eventually(
        "a queue bound to the exchange",
        Duration::from_secs(15),
        || async { publish(channel, exchange, body).await },
    )
    .await
}

/// The group queue's (ready messages, consumers).
async fn queue_state(connection: &Connection, queue: &str) -> anyhow::Result<(u32, u32)> {
    // A channel per look: a queue not found closes the channel.
    let channel = connection.create_channel().await?;
    let queue = channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions {
                passive: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await?;
    let _ = channel.close(200, "OK".into()).await;
    Ok((queue.message_count(), queue.consumer_count()))
}

fn queue(server: &ExternalServer, exchange: &str) -> pb::MessageQueueRequest {
    pb::MessageQueueRequest {
        r#type: pb::MessageQueueType::Rabbitmq as i32,
        connection_string: amqp_url(server),
        topic: exchange.into(),
        format: pb::MessageFormat::Json as i32,
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_in_order_groups_and_cancel() -> anyhow::Result<()> {
    let server = rabbitmq_server().await?;
    let (connection, channel) = channel(&server, &["weather", "jobs"]).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;

    // Without a group: what is published from now on, in order.
    let request = pb::MessageQueueRequest {
        schema_json: r#"{"city": "String", "temp": "Float64"}"#.into(),
        ..queue(&server, "weather")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    publish_once_bound(&channel, "weather", br#"{"city": "Oslo", "temp": -3.5}"#).await?;
    assert!(
        publish(
            &channel,
            "weather",
            br#"[{"city": "Lima", "temp": 19}, {"city": "Pune", "temp": 31.25}]"#
        )
        .await?
    );
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    let expected = df!(
        "city" => ["Oslo", "Lima", "Pune"],
        "temp" => [-3.5f64, 19.0, 31.25],
    )?;
    assert_frame_eq(&rows, &expected);
    assert_eq!(positions, ["1", "2", "2"], "each with its delivery tag");
    // Cancelled, its connection closes, and with it its exclusive queue: nothing takes
    // what is published to the exchange any more.
    drop(stream);
    eventually(
        "the stream's queue to go with its connection",
        Duration::from_secs(10),
        || async { Ok(!publish(&channel, "weather", b"{}").await?) },
    )
    .await?;
    worker.stop().await?;

    // A group: its queue is made on first use; three rows a stream at most.
    let worker = loopback_worker(|c| c.stream_max_rows = 3).await?;
    let mut client = worker.client().await?;
    let request = pb::MessageQueueRequest {
        consumer_group: Some("g".into()),
        schema_json: r#"{"n": "Int64"}"#.into(),
        ..queue(&server, "jobs")
    };
    let mut stream = client
        .stream_message_queue(request.clone())
        .await?
        .into_inner();
    publish_once_bound(&channel, "jobs", br#"{"n": 1}"#).await?;
    for n in 2..=5 {
        assert!(publish(&channel, "jobs", format!(r#"{{"n": {n}}}"#).as_bytes()).await?);
    }
    let (rows, _) = records(&take_rows(&mut stream, 3).await?);
    assert_frame_eq(&rows, &df!("n" => [1i64, 2, 3])?);
    refused(
        end_of(stream).await,
        Code::ResourceExhausted,
        "stream_max_rows",
    );
    // The two not sent are back in the group's queue; no reader holds any.
    eventually(
        "the unsent messages back in the queue",
        Duration::from_secs(10),
        || async { Ok(queue_state(&connection, "g").await? == (2, 0)) },
    )
    .await?;

    // The group again: the rest, in order, then new messages.
    let mut stream = client
        .stream_message_queue(request.clone())
        .await?
        .into_inner();
    let (rows, _) = records(&take_rows(&mut stream, 2).await?);
    assert_frame_eq(&rows, &df!("n" => [4i64, 5])?);
    assert!(publish(&channel, "jobs", br#"{"n": 6}"#).await?);
    let (rows, _) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [6i64])?);
    refused(
        end_of(stream).await,
        Code::ResourceExhausted,
        "stream_max_rows",
    );
    eventually("every message taken", Duration::from_secs(10), || async {
        Ok(queue_state(&connection, "g").await? == (0, 0))
    })
    .await?;

    // A reader of the group, cancelled: its consumer leaves the queue with its connection.
    let mut stream = client
        .stream_message_queue(request.clone())
        .await?
        .into_inner();
    eventually("the group's reader", Duration::from_secs(10), || async {
        Ok(queue_state(&connection, "g").await?.1 == 1)
    })
    .await?;
    assert!(publish(&channel, "jobs", br#"{"n": 7}"#).await?);
    let (rows, _) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [7i64])?);
    drop(stream);
    eventually(
        "the group's reader to leave",
        Duration::from_secs(10),
        || async { Ok(queue_state(&connection, "g").await?.1 == 0) },
    )
    .await?;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_rules_bad_requests_and_a_node_dying_midway() -> anyhow::Result<()> {
    let server = rabbitmq_server().await?;
    let (connection, channel) = channel(&server, &["s"]).await?;

    // Loopback is refused by default, before anything is sent.
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    refused(
        client.stream_message_queue(queue(&server, "s")).await,
        Code::PermissionDenied,
        "loopback",
    );
    worker.stop().await?;
    // Under an allowed prefix only.
    let prefix = format!("amqp://guest:guest@127.0.0.1:{}/", server.port);
    let worker = TestWorker::start_with(|c| c.rest_allowed_url_prefixes = vec![prefix]).await?;
    let mut client = worker.client().await?;
    let elsewhere = pb::MessageQueueRequest {
        connection_string: "amqp://guest:guest@127.0.0.1:1/%2f".into(),
        ..queue(&server, "s")
    };
    refused(
        client.stream_message_queue(elsewhere).await,
        Code::PermissionDenied,
        "rest_allowed_url_prefixes",
    );
    let mut stream = client
        .stream_message_queue(queue(&server, "s"))
        .await?
        .into_inner();
    publish_once_bound(&channel, "s", br#"{"a": 1}"#).await?;
    take_rows(&mut stream, 1).await?;
    drop(stream);
    worker.stop().await?;

    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let cases = [
        (
            pb::MessageQueueRequest {
                topic: String::new(),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "topic (3)",
        ),
        (
            pb::MessageQueueRequest {
                start_id: Some("0".into()),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "start_id (8) `0` does not apply to RABBITMQ",
        ),
        (
            pb::MessageQueueRequest {
                consumer_name: Some("c".into()),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "consumer_name (7) applies with consumer_group (4)",
        ),
        (
            pb::MessageQueueRequest {
                consumer_group: Some(String::new()),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "consumer_group (4)",
        ),
        (
            pb::MessageQueueRequest {
                payload_field: Some("data".into()),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "payload_field (9)",
        ),
        (
            pb::MessageQueueRequest {
                connection_string: format!("amqps://127.0.0.1:{}", server.port),
                ..queue(&server, "s")
            },
            Code::Unimplemented,
            "TLS to RabbitMQ",
        ),
        (
            pb::MessageQueueRequest {
                max_wait_ms: Some(0),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "max_wait_ms (11)",
        ),
    ];
    for (request, code, says) in cases {
        refused(client.stream_message_queue(request).await, code, says);
    }
    // An exchange that is not there, bad credentials, and a node that is not there: the
    // stream's status.
    let stream = client
        .stream_message_queue(queue(&server, "nowhere"))
        .await?
        .into_inner();
    refused(end_of(stream).await, Code::FailedPrecondition, "NOT_FOUND");
    let intruder = pb::MessageQueueRequest {
        connection_string: format!("amqp://guest:wrong@127.0.0.1:{}/%2f", server.port),
        ..queue(&server, "s")
    };
    let stream = client.stream_message_queue(intruder).await?.into_inner();
    let status = end_of(stream).await.expect_err("refused");
    assert!(
        matches!(status.code(), Code::PermissionDenied | Code::Unavailable),
        "{status:?}"
    );
    assert!(
        !status.message().contains("wrong"),
        "no password shown: {status:?}"
    );
    let nobody = pb::MessageQueueRequest {
        connection_string: "amqp://127.0.0.1:1/%2f".into(),
        ..queue(&server, "s")
    };
    let stream = client.stream_message_queue(nobody).await?.into_inner();
    refused(end_of(stream).await, Code::Unavailable, "connect");

    // The node dying midway.
    let mut stream = client
        .stream_message_queue(queue(&server, "s"))
        .await?
        .into_inner();
    publish_once_bound(&channel, "s", br#"{"a": 2}"#).await?;
    let (rows, _) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("a" => [2i64])?);
    drop(channel);
    drop(connection);
    drop(server);
    refused(
        end_of(stream).await,
        Code::Unavailable,
        "RabbitMQ at amqp://guest:***@127.0.0.1",
    );
    worker.stop().await
}
