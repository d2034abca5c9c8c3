//! `StreamMessageQueue` for `NATS` (JetStream) against a real `nats-server -js` started by
//! the test on loopback: records equal what was published, in order, with their stream
//! sequences; from new messages or a sequence, or as a durable consumer that acknowledges
//! only what it sent (what it did not send is read again, none lost); JSON, Arrow IPC and
//! MessagePack payloads; a cancel closes the connection (the server's `/connz`); a server
//! dying midway ends the stream with UNAVAILABLE; URL rules hold; bad requests are refused
//! with precise statuses.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull, stream};
use polaroid_proto::v1 as pb;
use polaroid_tests::streamed::{end_of, records, refused, take_rows};
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;

fn nats_url(server: &ExternalServer) -> String {
    format!("nats://127.0.0.1:{}", server.port)
}

/// A JetStream context on `server`, with the stream `name` holding `<name lowercase>.>`.
async fn jetstream_with(server: &ExternalServer, name: &str) -> anyhow::Result<jetstream::Context> {
    let client = async_nats::connect(nats_url(server)).await?;
    let context = jetstream::new(client);
    context
        .create_stream(stream::Config {
            name: name.into(),
            subjects: vec![format!("{}.>", name.to_lowercase())],
            ..Default::default()
        })
        .await?;
    Ok(context)
}

/// Publishes `payload` to `subject`; its stream sequence.
async fn publish(
    context: &jetstream::Context,
    subject: &str,
    payload: impl Into<bytes::Bytes>,
) -> anyhow::Result<u64> {
    let ack = context
        .publish(subject.to_owned(), payload.into())
        .await?
        .await?;
    Ok(ack.sequence)
}

/// The worker's stream connections that the server lists (`/connz`, by name).
async fn stream_connections(server: &ExternalServer) -> anyhow::Result<usize> {
    let port = server.monitor_port.expect("a monitoring port");
    let connz: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{port}/connz"))
        .await?
        .json()
        .await?;
    Ok(connz["connections"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|c| c["name"] == "polaroid-stream")
                .count()
        })
        .unwrap_or(0))
}

async fn consumers(context: &jetstream::Context, stream: &str) -> anyhow::Result<usize> {
    let mut stream = context.get_stream(stream).await?;
    Ok(stream.info().await?.state.consumer_count)
}

fn queue(server: &ExternalServer, topic: &str) -> pb::MessageQueueRequest {
    pb::MessageQueueRequest {
        r#type: pb::MessageQueueType::Nats as i32,
        connection_string: nats_url(server),
        topic: topic.into(),
        format: pb::MessageFormat::Json as i32,
        ..Default::default()
    }
}

fn sequences(numbers: &[u64]) -> Vec<String> {
    numbers.iter().map(u64::to_string).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_messages_in_order_and_cancel_closes_the_connection() -> anyhow::Result<()> {
    let server = nats_server().await?;
    let js = jetstream_with(&server, "WEATHER").await?;
    publish(&js, "weather.now", r#"{"city": "Old", "temp": 0}"#).await?;
    // Another subject of the same stream: not this topic's.
    publish(&js, "weather.other", r#"{"city": "Elsewhere", "temp": 1}"#).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let request = pb::MessageQueueRequest {
        schema_json: r#"{"city": "String", "temp": "Float64"}"#.into(),
        ..queue(&server, "weather.now")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    eventually(
        "the stream's consumer to exist",
        Duration::from_secs(10),
        || async { Ok(consumers(&js, "WEATHER").await? == 1) },
    )
    .await?;
    assert_eq!(stream_connections(&server).await?, 1);
    let mut published = Vec::new();
    for (city, temp) in [("Oslo", "-3.5"), ("Lima", "19"), ("Pune", "31.25")] {
        publish(&js, "weather.other", r#"{"city": "x", "temp": 2}"#).await?;
        let body = format!(r#"{{"city": "{city}", "temp": {temp}}}"#);
        published.push(publish(&js, "weather.now", body).await?);
    }
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    let expected = df!(
        "city" => ["Oslo", "Lima", "Pune"],
        "temp" => [-3.5f64, 19.0, 31.25],
    )?;
    assert_frame_eq(&rows, &expected);
    assert_eq!(
        positions,
        sequences(&published),
        "in order, each with its sequence"
    );

    drop(stream);
    eventually(
        "the stream's connection to close",
        Duration::from_secs(10),
        || async { Ok(stream_connections(&server).await? == 0) },
    )
    .await?;
    worker.stop().await
}

/// ROWS in MessagePack: `[{"id": 7, "name": "g"}]`.
const MSGPACK: &[u8] = &[
    0x91, 0x82, 0xa2, b'i', b'd', 0x07, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'g',
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_arrow_and_msgpack_payloads_from_a_sequence() -> anyhow::Result<()> {
    let server = nats_server().await?;
    let js = jetstream_with(&server, "DATA").await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;

    let skipped = publish(&js, "data.json", r#"{"id": 0, "name": "skipped"}"#).await?;
    let first = publish(&js, "data.json", r#"{"id": 1, "name": "a"}"#).await?;
    let second = publish(
        &js,
        "data.json",
        r#"[{"id": 2, "name": null}, {"id": 3, "name": "c"}]"#,
    )
    .await?;
    let bad = publish(&js, "data.json", "not json").await?;
    // From after a sequence.
    let request = pb::MessageQueueRequest {
        start_id: Some(skipped.to_string()),
        schema_json: r#"{"id": "Int32", "name": "String"}"#.into(),
        ..queue(&server, "data.json")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    assert_frame_eq(
        &rows,
        &df!("id" => [1i32, 2, 3], "name" => [Some("a"), None, Some("c")])?,
    );
    assert_eq!(positions, sequences(&[first, second, second]));
    // A message that does not decode ends the stream, naming it, after those before it.
    refused(
        end_of(stream).await,
        Code::InvalidArgument,
        &format!("message {bad}"),
    );

    let frame = df!("x" => [1.5f64, 2.5], "y" => ["p", "q"])?;
    let arrow = publish(&js, "data.arrow", to_ipc(&frame)).await?;
    let request = pb::MessageQueueRequest {
        format: pb::MessageFormat::ArrowIpc as i32,
        start_id: Some("0".into()),
        ..queue(&server, "data.arrow")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 2).await?);
    assert_frame_eq(&rows, &frame);
    assert_eq!(positions, sequences(&[arrow, arrow]));
    drop(stream);

    publish(&js, "data.msgpack", MSGPACK).await?;
    let request = pb::MessageQueueRequest {
        format: pb::MessageFormat::Msgpack as i32,
        start_id: Some("0".into()),
        ..queue(&server, "data.msgpack")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (rows, _) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("id" => [7i64], "name" => ["g"])?);
    drop(stream);
    worker.stop().await
}

/// The durable consumer `name` of stream JOBS: (acknowledged up to this stream sequence,
/// messages delivered and not acknowledged).
async fn ack_state(js: &jetstream::Context, name: &str) -> anyhow::Result<(u64, usize)> {
    let mut consumer: jetstream::consumer::PullConsumer = js
        .get_stream("JOBS")
        .await?
        .get_consumer(name)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    let info = consumer.info().await?;
    Ok((info.ack_floor.stream_sequence, info.num_ack_pending))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_acknowledges_only_what_it_sent() -> anyhow::Result<()> {
    let server = nats_server().await?;
    let js = jetstream_with(&server, "JOBS").await?;
    let mut published = Vec::new();
    for n in 1..=5 {
        published.push(publish(&js, "jobs.new", format!(r#"{{"n": {n}}}"#)).await?);
    }
    // Three rows a stream at most: the stream sends three of the five.
    let worker = loopback_worker(|c| c.stream_max_rows = 3).await?;
    let mut client = worker.client().await?;
    let request = pb::MessageQueueRequest {
        consumer_group: Some("g".into()),
        start_id: Some("0".into()),
        schema_json: r#"{"n": "Int64"}"#.into(),
        ..queue(&server, "jobs.new")
    };
    let mut stream = client
        .stream_message_queue(request.clone())
        .await?
        .into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    assert_frame_eq(&rows, &df!("n" => [1i64, 2, 3])?);
    assert_eq!(positions, sequences(&published[..3]));
    refused(
        end_of(stream).await,
        Code::ResourceExhausted,
        "stream_max_rows",
    );
    // Acknowledged: the three sent, no more; none left waiting on an acknowledgement.
    eventually("the acknowledgements", Duration::from_secs(10), || async {
        Ok(ack_state(&js, "g").await? == (published[2], 0))
    })
    .await?;

    // The group again: the two it did not send, then new messages.
    let mut stream = client
        .stream_message_queue(request.clone())
        .await?
        .into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 2).await?);
    assert_frame_eq(&rows, &df!("n" => [4i64, 5])?);
    assert_eq!(positions, sequences(&published[3..]));
    let six = publish(&js, "jobs.new", r#"{"n": 6}"#).await?;
    let (rows, positions) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [6i64])?);
    assert_eq!(positions, sequences(&[six]));
    refused(
        end_of(stream).await,
        Code::ResourceExhausted,
        "stream_max_rows",
    );
    eventually("all acknowledged", Duration::from_secs(10), || async {
        Ok(ack_state(&js, "g").await? == (six, 0))
    })
    .await?;
    worker.stop().await?;

    // A reader cancelled midway: what its transport took stays acknowledged, which may
    // be more than the client read (gRPC does not say what a client read of what was
    // sent: HTTP/2 buffers it); what it had pulled and not handed over comes again
    // (after the consumer's ack wait, short here); nothing is left pending.
    let js_consumer = pull::Config {
        durable_name: Some("quick".into()),
        filter_subject: "jobs.new".into(),
        ack_wait: Duration::from_secs(1),
        deliver_policy: jetstream::consumer::DeliverPolicy::New,
        ..Default::default()
    };
    js.get_stream("JOBS")
        .await?
        .create_consumer(js_consumer)
        .await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let quick = pb::MessageQueueRequest {
        consumer_group: Some("quick".into()),
        start_id: None,
        batch_rows: Some(2),
        ..request
    };
    let mut last = 0;
    for n in 7..=12 {
        last = publish(&js, "jobs.new", format!(r#"{{"n": {n}}}"#)).await?;
    }
    let mut stream = client
        .stream_message_queue(quick.clone())
        .await?
        .into_inner();
    let (first, _) = records(&take_rows(&mut stream, 2).await?);
    drop(stream);
    let numbers = |frame: &DataFrame| -> anyhow::Result<Vec<i64>> {
        Ok(frame.column("n")?.i64()?.into_no_null_iter().collect())
    };
    let first = numbers(&first)?;
    assert_eq!(first, [7, 8], "in order");
    // Read until every message is accounted for: all acknowledged, none pending or
    // waiting on an acknowledgement, and half a second without a message.
    let mut seen: std::collections::BTreeSet<i64> = first.iter().copied().collect();
    let mut stream = client.stream_message_queue(quick).await?.into_inner();
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        match tokio::time::timeout(Duration::from_millis(500), stream.message()).await {
            Ok(message) => {
                let message = message?.ok_or_else(|| anyhow::anyhow!("the stream ended"))?;
                let (more, _) = records(&[from_ipc(&message.arrow_ipc)]);
                for n in numbers(&more)? {
                    assert!((7..=12).contains(&n), "{n} was not published to this group");
                    assert!(seen.insert(n) || first.contains(&n), "{n} came twice");
                }
            }
            Err(_) if ack_state(&js, "quick").await? == (last, 0) => break,
            Err(_) => anyhow::ensure!(
                tokio::time::Instant::now() < give_up,
                "30 s and messages still unacknowledged; seen {seen:?}"
            ),
        }
    }
    drop(stream);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_midway_ends_the_stream_with_unavailable() -> anyhow::Result<()> {
    let server = nats_server().await?;
    let js = jetstream_with(&server, "S").await?;
    publish(&js, "s.a", r#"{"a": 1}"#).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let request = pb::MessageQueueRequest {
        start_id: Some("0".into()),
        ..queue(&server, "s.a")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (rows, _) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("a" => [1i64])?);
    drop(js);
    drop(server);
    refused(
        end_of(stream).await,
        Code::Unavailable,
        "NATS at nats://127.0.0.1",
    );
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_rules_and_bad_requests_get_precise_statuses() -> anyhow::Result<()> {
    let server = nats_server().await?;
    let js = jetstream_with(&server, "S").await?;
    // Loopback is refused by default, before anything is sent.
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    refused(
        client.stream_message_queue(queue(&server, "s.a")).await,
        Code::PermissionDenied,
        "loopback",
    );
    worker.stop().await?;

    // Under an allowed prefix only.
    let prefix = format!("nats://127.0.0.1:{}", server.port);
    let worker = TestWorker::start_with(|c| c.rest_allowed_url_prefixes = vec![prefix]).await?;
    let mut client = worker.client().await?;
    let elsewhere = pb::MessageQueueRequest {
        connection_string: "nats://127.0.0.1:1".into(),
        ..queue(&server, "s.a")
    };
    refused(
        client.stream_message_queue(elsewhere).await,
        Code::PermissionDenied,
        "rest_allowed_url_prefixes",
    );
    let sequence = publish(&js, "s.a", r#"{"a": 1}"#).await?;
    let request = pb::MessageQueueRequest {
        start_id: Some("0".into()),
        ..queue(&server, "s.a")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (_, positions) = records(&take_rows(&mut stream, 1).await?);
    assert_eq!(positions, sequences(&[sequence]));
    drop(stream);
    worker.stop().await?;

    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let cases = [
        (
            pb::MessageQueueRequest {
                topic: String::new(),
                ..queue(&server, "s.a")
            },
            Code::InvalidArgument,
            "topic (3)",
        ),
        (
            pb::MessageQueueRequest {
                start_id: Some("yesterday".into()),
                ..queue(&server, "s.a")
            },
            Code::InvalidArgument,
            "start_id (8)",
        ),
        (
            pb::MessageQueueRequest {
                consumer_group: Some("a.b".into()),
                ..queue(&server, "s.a")
            },
            Code::InvalidArgument,
            "consumer_group (4)",
        ),
        (
            pb::MessageQueueRequest {
                consumer_group: Some("g".into()),
                consumer_name: Some("c".into()),
                ..queue(&server, "s.a")
            },
            Code::InvalidArgument,
            "consumer_name (7) does not apply to NATS",
        ),
        (
            pb::MessageQueueRequest {
                payload_field: Some("data".into()),
                ..queue(&server, "s.a")
            },
            Code::InvalidArgument,
            "payload_field (9)",
        ),
        (
            pb::MessageQueueRequest {
                format: pb::MessageFormat::Protobuf as i32,
                ..queue(&server, "s.a")
            },
            Code::Unimplemented,
            "PROTOBUF",
        ),
        (
            pb::MessageQueueRequest {
                connection_string: format!("tls://127.0.0.1:{}", server.port),
                ..queue(&server, "s.a")
            },
            Code::Unimplemented,
            "NATS over TLS",
        ),
        (
            pb::MessageQueueRequest {
                connection_string: "redis://127.0.0.1:1".into(),
                ..queue(&server, "s.a")
            },
            Code::InvalidArgument,
            "is not nats",
        ),
        (
            pb::MessageQueueRequest {
                r#type: pb::MessageQueueType::Kafka as i32,
                ..queue(&server, "s.a")
            },
            Code::InvalidArgument,
            "scheme `nats` is not kafka",
        ),
    ];
    for (request, code, says) in cases {
        refused(client.stream_message_queue(request).await, code, says);
    }
    // A subject no stream holds, and a server that is not there: the stream's status.
    let stream = client
        .stream_message_queue(queue(&server, "nowhere"))
        .await?
        .into_inner();
    refused(
        end_of(stream).await,
        Code::FailedPrecondition,
        "stream not found",
    );
    let nobody = pb::MessageQueueRequest {
        connection_string: "nats://127.0.0.1:1".into(),
        ..queue(&server, "s.a")
    };
    let stream = client.stream_message_queue(nobody).await?.into_inner();
    refused(end_of(stream).await, Code::Unavailable, "connect");
    worker.stop().await
}
