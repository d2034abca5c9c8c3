//! `StreamMessageQueue` for `REDIS_STREAM` against a real `redis-server` started by the
//! test on loopback: records equal what was added, in order, with their entry IDs; from
//! the latest entry or as a consumer group that acknowledges only what it sent; JSON,
//! Arrow IPC and MessagePack payloads; a cancel closes the connection; a server dying
//! midway ends the stream with UNAVAILABLE; caps and URL rules hold; bad requests are
//! refused with precise statuses.

use std::time::Duration;

use polaroid_proto::v1 as pb;
use polaroid_tests::streamed::{end_of, records, refused, take_rows};
use polaroid_tests::*;
use polars::prelude::*;
use redis::aio::MultiplexedConnection;
use tonic::Code;

async fn connect(server: &ExternalServer) -> anyhow::Result<MultiplexedConnection> {
    let client = redis::Client::open(server.redis_url())?;
    Ok(client.get_multiplexed_async_connection().await?)
}

/// XADDs one entry of `fields` to `key`; its ID.
async fn xadd(
    redis: &mut MultiplexedConnection,
    key: &str,
    fields: &[(&str, &[u8])],
) -> anyhow::Result<String> {
    let mut command = redis::cmd("XADD");
    command.arg(key).arg("*");
    for (name, value) in fields {
        command.arg(*name).arg(*value);
    }
    Ok(command.query_async(redis).await?)
}

/// The worker's stream connections (named so in `CLIENT LIST`), and how many of them wait
/// in a read.
async fn stream_clients(redis: &mut MultiplexedConnection) -> anyhow::Result<(usize, usize)> {
    let list: String = redis::cmd("CLIENT").arg("LIST").query_async(redis).await?;
    let ours: Vec<&str> = list
        .lines()
        .filter(|line| line.contains("name=polaroid-stream "))
        .collect();
    let reading = ours
        .iter()
        .filter(|line| line.contains("cmd=xread"))
        .count();
    Ok((ours.len(), reading))
}

async fn pending(redis: &mut MultiplexedConnection, key: &str, group: &str) -> anyhow::Result<i64> {
    let summary: redis::Value = redis::cmd("XPENDING")
        .arg(key)
        .arg(group)
        .query_async(redis)
        .await?;
    match summary {
        redis::Value::Array(parts) => match parts.first() {
            Some(redis::Value::Int(count)) => Ok(*count),
            other => anyhow::bail!("XPENDING answered {other:?}"),
        },
        other => anyhow::bail!("XPENDING answered {other:?}"),
    }
}

fn queue(server: &ExternalServer, topic: &str) -> pb::MessageQueueRequest {
    pb::MessageQueueRequest {
        r#type: pb::MessageQueueType::RedisStream as i32,
        connection_string: server.redis_url(),
        topic: topic.into(),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn entries_from_the_latest_in_order_and_cancel_closes_the_connection() -> anyhow::Result<()> {
    let server = redis_server().await?;
    let mut redis = connect(&server).await?;
    xadd(&mut redis, "weather", &[("city", b"Old"), ("temp", b"0")]).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let request = pb::MessageQueueRequest {
        schema_json: r#"{"city": "String", "temp": "Float64"}"#.into(),
        ..queue(&server, "weather")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    eventually(
        "the stream to wait in a read",
        Duration::from_secs(10),
        || async { Ok(stream_clients(&mut connect(&server).await?).await?.1 == 1) },
    )
    .await?;
    let mut ids = Vec::new();
    for (city, temp) in [("Oslo", "-3.5"), ("Lima", "19"), ("Pune", "31.25")] {
        ids.push(
            xadd(
                &mut redis,
                "weather",
                &[("city", city.as_bytes()), ("temp", temp.as_bytes())],
            )
            .await?,
        );
    }
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    let expected = df!(
        "city" => ["Oslo", "Lima", "Pune"],
        "temp" => [-3.5f64, 19.0, 31.25],
    )?;
    assert_frame_eq(&rows, &expected);
    assert_eq!(positions, ids, "in order, each with its entry ID");

    drop(stream);
    eventually(
        "the stream's connection to close",
        Duration::from_secs(10),
        || async { Ok(stream_clients(&mut redis.clone()).await?.0 == 0) },
    )
    .await?;
    worker.stop().await
}

/// ROWS in MessagePack: `[{"id": 7, "name": "g"}]`.
const MSGPACK: &[u8] = &[
    0x91, 0x82, 0xa2, b'i', b'd', 0x07, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'g',
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_arrow_and_msgpack_payloads_decode_as_sent() -> anyhow::Result<()> {
    let server = redis_server().await?;
    let mut redis = connect(&server).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;

    // JSON: an object is a record, an array several; from the first entry.
    let first = xadd(
        &mut redis,
        "json",
        &[("data", br#"{"id": 1, "name": "a"}"#)],
    )
    .await?;
    let second = xadd(
        &mut redis,
        "json",
        &[(
            "data",
            br#"[{"id": 2, "name": null}, {"id": 3, "name": "c"}]"#,
        )],
    )
    .await?;
    let bad = xadd(&mut redis, "json", &[("data", b"not json")]).await?;
    let request = pb::MessageQueueRequest {
        format: pb::MessageFormat::Json as i32,
        start_id: Some("0".into()),
        schema_json: r#"{"id": "Int32", "name": "String"}"#.into(),
        ..queue(&server, "json")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    assert_frame_eq(
        &rows,
        &df!("id" => [1i32, 2, 3], "name" => [Some("a"), None, Some("c")])?,
    );
    assert_eq!(positions, [first.clone(), second.clone(), second]);
    // An entry that does not decode ends the stream, naming it, after those before it.
    refused(
        end_of(stream).await,
        Code::InvalidArgument,
        &format!("entry {bad}"),
    );

    // Arrow IPC in a named field, next to others.
    let frame = df!("x" => [1.5f64, 2.5], "y" => ["p", "q"])?;
    let id = xadd(
        &mut redis,
        "arrow",
        &[("kind", b"batch"), ("payload", &to_ipc(&frame))],
    )
    .await?;
    let request = pb::MessageQueueRequest {
        format: pb::MessageFormat::ArrowIpc as i32,
        payload_field: Some("payload".into()),
        start_id: Some("0".into()),
        ..queue(&server, "arrow")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 2).await?);
    assert_frame_eq(&rows, &frame);
    assert_eq!(positions, [id.clone(), id]);
    drop(stream);

    // MessagePack, the entry's only field.
    xadd(&mut redis, "msgpack", &[("m", MSGPACK)]).await?;
    let request = pb::MessageQueueRequest {
        format: pb::MessageFormat::Msgpack as i32,
        start_id: Some("0".into()),
        ..queue(&server, "msgpack")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (rows, _) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("id" => [7i64], "name" => ["g"])?);
    drop(stream);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_acknowledges_only_what_it_sent() -> anyhow::Result<()> {
    let server = redis_server().await?;
    let mut redis = connect(&server).await?;
    let mut ids = Vec::new();
    for n in 1..=5 {
        ids.push(xadd(&mut redis, "jobs", &[("n", n.to_string().as_bytes())]).await?);
    }
    // Three rows a stream at most: the group is given five entries, the stream sends three.
    let worker = loopback_worker(|c| c.stream_max_rows = 3).await?;
    let mut client = worker.client().await?;
    let request = pb::MessageQueueRequest {
        consumer_group: Some("g".into()),
        consumer_name: Some("c1".into()),
        start_id: Some("0".into()),
        schema_json: r#"{"n": "Int64"}"#.into(),
        ..queue(&server, "jobs")
    };
    let mut stream = client
        .stream_message_queue(request.clone())
        .await?
        .into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    assert_frame_eq(&rows, &df!("n" => [1i64, 2, 3])?);
    assert_eq!(positions, ids[..3]);
    refused(
        end_of(stream).await,
        Code::ResourceExhausted,
        "stream_max_rows",
    );
    // The two it did not send are still the consumer's, unacknowledged.
    assert_eq!(pending(&mut redis, "jobs", "g").await?, 2);

    // The same consumer again: first what it was given and never sent, then new entries.
    let mut stream = client
        .stream_message_queue(request.clone())
        .await?
        .into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 2).await?);
    assert_frame_eq(&rows, &df!("n" => [4i64, 5])?);
    assert_eq!(positions, ids[3..]);
    eventually(
        "entries 4 and 5 to be acknowledged",
        Duration::from_secs(10),
        || async { Ok(pending(&mut redis.clone(), "jobs", "g").await? == 0) },
    )
    .await?;
    let six = xadd(&mut redis, "jobs", &[("n", b"6")]).await?;
    let (rows, positions) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [6i64])?);
    assert_eq!(positions, [six]);
    refused(
        end_of(stream).await,
        Code::ResourceExhausted,
        "stream_max_rows",
    );
    assert_eq!(pending(&mut redis, "jobs", "g").await?, 0);

    // Another consumer of the group gets only what no one took.
    let seven = xadd(&mut redis, "jobs", &[("n", b"7")]).await?;
    let other = pb::MessageQueueRequest {
        consumer_name: Some("c2".into()),
        ..request
    };
    let mut stream = client.stream_message_queue(other).await?.into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [7i64])?);
    assert_eq!(positions, [seven]);
    drop(stream);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_midway_ends_the_stream_with_unavailable() -> anyhow::Result<()> {
    let server = redis_server().await?;
    let mut redis = connect(&server).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    xadd(&mut redis, "s", &[("a", b"1")]).await?;
    let request = pb::MessageQueueRequest {
        start_id: Some("0".into()),
        ..queue(&server, "s")
    };
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    let (rows, _) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("a" => ["1"])?);
    drop(redis);
    drop(server);
    refused(
        end_of(stream).await,
        Code::Unavailable,
        "Redis at redis://127.0.0.1",
    );
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_obey_the_url_rules() -> anyhow::Result<()> {
    let server = redis_server().await?;
    let mut redis = connect(&server).await?;
    // Loopback is refused by default, before anything is sent.
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let denied = client.stream_message_queue(queue(&server, "s")).await;
    refused(denied, Code::PermissionDenied, "loopback");
    worker.stop().await?;

    // Under an allowed prefix only.
    let prefix = format!("redis://127.0.0.1:{}", server.port);
    let worker = TestWorker::start_with(|c| c.rest_allowed_url_prefixes = vec![prefix]).await?;
    let mut client = worker.client().await?;
    let elsewhere = pb::MessageQueueRequest {
        connection_string: "redis://127.0.0.1:1/".into(),
        ..queue(&server, "s")
    };
    refused(
        client.stream_message_queue(elsewhere).await,
        Code::PermissionDenied,
        "rest_allowed_url_prefixes",
    );
    let request = pb::MessageQueueRequest {
        start_id: Some("0".into()),
        ..queue(&server, "s")
    };
    xadd(&mut redis, "s", &[("a", b"1")]).await?;
    let mut stream = client.stream_message_queue(request).await?.into_inner();
    take_rows(&mut stream, 1).await?;
    drop(stream);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_and_other_queues_get_precise_statuses() -> anyhow::Result<()> {
    let server = redis_server().await?;
    let mut redis = connect(&server).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let cases = [
        (
            pb::MessageQueueRequest {
                schema_json: r#"{"a": "Nope"}"#.into(),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "schema_json (5): column `a`",
        ),
        (
            pb::MessageQueueRequest {
                format: 99,
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "unknown MessageFormat 99",
        ),
        (
            pb::MessageQueueRequest {
                format: pb::MessageFormat::Protobuf as i32,
                ..queue(&server, "s")
            },
            Code::Unimplemented,
            "PROTOBUF",
        ),
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
                start_id: Some("yesterday".into()),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "start_id (8)",
        ),
        (
            pb::MessageQueueRequest {
                payload_field: Some("data".into()),
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "payload_field (9) applies with a format (6)",
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
                connection_string: format!("rediss://127.0.0.1:{}", server.port),
                ..queue(&server, "s")
            },
            Code::Unimplemented,
            "TLS to Redis",
        ),
        (
            pb::MessageQueueRequest {
                r#type: pb::MessageQueueType::Kafka as i32,
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "scheme `redis` is not kafka",
        ),
        (
            pb::MessageQueueRequest {
                r#type: pb::MessageQueueType::Nats as i32,
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "scheme `redis` is not nats",
        ),
        (
            pb::MessageQueueRequest {
                r#type: pb::MessageQueueType::Rabbitmq as i32,
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "scheme `redis` is not amqp",
        ),
        (
            pb::MessageQueueRequest {
                r#type: 0,
                ..queue(&server, "s")
            },
            Code::InvalidArgument,
            "type (1) must name a queue",
        ),
    ];
    for (request, code, says) in cases {
        refused(client.stream_message_queue(request).await, code, says);
    }
    // A key of another type, and a server that is not there: the stream's status.
    let _: () = redis::cmd("SET")
        .arg("plain")
        .arg("x")
        .query_async(&mut redis)
        .await?;
    let stream = client
        .stream_message_queue(queue(&server, "plain"))
        .await?
        .into_inner();
    refused(end_of(stream).await, Code::FailedPrecondition, "WRONGTYPE");
    let nobody = pb::MessageQueueRequest {
        connection_string: "redis://127.0.0.1:1/".into(),
        ..queue(&server, "s")
    };
    let stream = client.stream_message_queue(nobody).await?.into_inner();
    refused(end_of(stream).await, Code::Unavailable, "connect");
    worker.stop().await
}
