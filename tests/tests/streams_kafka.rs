//! `StreamMessageQueue` for `KAFKA` against a real Kafka-compatible broker (tansu) started
//! by the test on loopback, records produced with a real Kafka client (rskafka): records
//! equal what was produced, in order in each partition, with their `partition:offset`
//! positions; from the latest, the earliest or given positions, or as a consumer group
//! that commits only what it sent (what it did not send is read again, none lost); JSON,
//! Arrow IPC and MessagePack payloads and tombstones; a cancel closes the broker
//! connections; a broker dying midway ends the stream with UNAVAILABLE; the outbound rules
//! hold for the brokers the metadata names, not only the bootstrap; bad requests are
//! refused with precise statuses.

use std::collections::BTreeMap;
use std::time::Duration;

use polaroid_proto::v1 as pb;
use polaroid_tests::streamed::{end_of, records, refused, take_rows};
use polaroid_tests::*;
use polars::prelude::*;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;
use tonic::Code;

fn kafka_url(broker: &ExternalServer) -> String {
    format!("kafka://127.0.0.1:{}", broker.port)
}

async fn producer(broker: &ExternalServer) -> anyhow::Result<Client> {
    Ok(
        ClientBuilder::new(vec![format!("127.0.0.1:{}", broker.port)])
            .build()
            .await?,
    )
}

/// Creates `topic` with `partitions`; a client of each partition.
async fn topic(
    client: &Client,
    topic: &str,
    partitions: i32,
) -> anyhow::Result<Vec<PartitionClient>> {
    client
        .controller_client()?
        .create_topic(topic, partitions, 1, 5_000)
        .await?;
    let mut clients = Vec::new();
    for partition in 0..partitions {
        clients.push(
            client
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await?,
        );
    }
    Ok(clients)
}

/// Produces one record of `value` (`None`: a tombstone); its position.
async fn produce(partition: &PartitionClient, value: Option<&[u8]>) -> anyhow::Result<String> {
    let record = Record {
        key: Some(b"k".to_vec()),
        value: value.map(<[u8]>::to_vec),
        headers: BTreeMap::new(),
        timestamp: rskafka::chrono::Utc::now(),
    };
    let offsets = partition
        .produce(vec![record], Compression::NoCompression)
        .await?;
    Ok(format!("{}:{}", partition.partition(), offsets[0]))
}

/// The established TCP connections to `port` on loopback (both ends are this machine's,
/// so each counts once, from its client's side: remote port `port`).
fn connections_to(port: u16) -> anyhow::Result<usize> {
    let mut count = 0;
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|remote| remote.rsplit(':').next())
                .and_then(|hex| u16::from_str_radix(hex, 16).ok());
            if remote_port == Some(port) && fields.get(3) == Some(&"01") {
                count += 1;
            }
        }
    }
    Ok(count)
}

fn queue(broker: &ExternalServer, topic: &str) -> pb::MessageQueueRequest {
    pb::MessageQueueRequest {
        r#type: pb::MessageQueueType::Kafka as i32,
        connection_string: kafka_url(broker),
        topic: topic.into(),
        format: pb::MessageFormat::Json as i32,
        ..Default::default()
    }
}

/// The rows of `frames` with their positions, ordered by position (records of different
/// partitions come in no set order), and whether each partition's came in offset order.
fn by_position(frames: &[DataFrame]) -> anyhow::Result<(DataFrame, Vec<String>, bool)> {
    let (rows, positions) = records(frames);
    let key = |p: &String| -> (i32, i64) {
        let (partition, offset) = p.split_once(':').expect("partition:offset");
        (
            partition.parse().expect("a partition"),
            offset.parse().expect("an offset"),
        )
    };
    let mut last: BTreeMap<i32, i64> = BTreeMap::new();
    let in_order = positions.iter().map(key).all(|(partition, offset)| {
        let before = last.insert(partition, offset);
        before.is_none_or(|before| before < offset)
    });
    let mut order: Vec<usize> = (0..positions.len()).collect();
    order.sort_by_key(|&i| key(&positions[i]));
    let indices = IdxCa::from_vec("i".into(), order.iter().map(|&i| i as IdxSize).collect());
    let sorted = order.iter().map(|&i| positions[i].clone()).collect();
    Ok((rows.take(&indices)?, sorted, in_order))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_records_of_every_partition_and_cancel_closes_the_connections() -> anyhow::Result<()> {
    let broker = kafka_broker(None).await?;
    let client = producer(&broker).await?;
    let partitions = topic(&client, "weather", 2).await?;
    produce(&partitions[0], Some(br#"{"city": "Old", "temp": 0}"#)).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut grpc = worker.client().await?;
    let before = connections_to(broker.port)?;
    let request = pb::MessageQueueRequest {
        schema_json: r#"{"city": "String", "temp": "Float64"}"#.into(),
        ..queue(&broker, "weather")
    };
    // The call answers once each partition's latest offset is taken: what is produced
    // from here on is read, what was before is not.
    let mut stream = grpc.stream_message_queue(request).await?.into_inner();
    assert!(connections_to(broker.port)? > before);
    let mut produced = Vec::new();
    for (n, (city, temp)) in [
        ("Oslo", "-3.5"),
        ("Lima", "19"),
        ("Pune", "31.25"),
        ("Kyiv", "2"),
    ]
    .into_iter()
    .enumerate()
    {
        let body = format!(r#"{{"city": "{city}", "temp": {temp}}}"#);
        produced.push(produce(&partitions[n % 2], Some(body.as_bytes())).await?);
    }
    let (rows, positions, in_order) = by_position(&take_rows(&mut stream, 4).await?)?;
    assert!(in_order, "each partition's records in offset order");
    produced.sort();
    assert_eq!(positions, produced);
    let expected = df!(
        "city" => ["Oslo", "Pune", "Lima", "Kyiv"],
        "temp" => [-3.5f64, 31.25, 19.0, 2.0],
    )?;
    assert_frame_eq(&rows, &expected);

    drop(stream);
    eventually(
        "the stream's broker connections to close",
        Duration::from_secs(10),
        || async { Ok(connections_to(broker.port)? == before) },
    )
    .await?;
    worker.stop().await
}

/// ROWS in MessagePack: `[{"id": 7, "name": "g"}]`.
const MSGPACK: &[u8] = &[
    0x91, 0x82, 0xa2, b'i', b'd', 0x07, 0xa4, b'n', b'a', b'm', b'e', 0xa1, b'g',
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payloads_tombstones_and_positions_to_start_after() -> anyhow::Result<()> {
    let broker = kafka_broker(None).await?;
    let client = producer(&broker).await?;
    let json = topic(&client, "json", 1).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut grpc = worker.client().await?;

    let skipped = produce(&json[0], Some(br#"{"id": 0, "name": "skipped"}"#)).await?;
    let first = produce(&json[0], Some(br#"{"id": 1, "name": "a"}"#)).await?;
    produce(&json[0], None).await?;
    let second = produce(
        &json[0],
        Some(br#"[{"id": 2, "name": null}, {"id": 3, "name": "c"}]"#),
    )
    .await?;
    let bad = produce(&json[0], Some(b"not json")).await?;
    let request = pb::MessageQueueRequest {
        start_id: Some(skipped),
        schema_json: r#"{"id": "Int32", "name": "String"}"#.into(),
        ..queue(&broker, "json")
    };
    let mut stream = grpc.stream_message_queue(request).await?.into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    assert_frame_eq(
        &rows,
        &df!("id" => [1i32, 2, 3], "name" => [Some("a"), None, Some("c")])?,
    );
    // The tombstone between them made no row.
    assert_eq!(positions, [first, second.clone(), second]);
    // A record that does not decode ends the stream, naming it, after those before it.
    refused(
        end_of(stream).await,
        Code::InvalidArgument,
        &format!("message {bad}"),
    );

    let arrow = topic(&client, "arrow", 1).await?;
    let frame = df!("x" => [1.5f64, 2.5], "y" => ["p", "q"])?;
    let at = produce(&arrow[0], Some(&to_ipc(&frame))).await?;
    let request = pb::MessageQueueRequest {
        format: pb::MessageFormat::ArrowIpc as i32,
        start_id: Some("0".into()),
        ..queue(&broker, "arrow")
    };
    let mut stream = grpc.stream_message_queue(request).await?.into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 2).await?);
    assert_frame_eq(&rows, &frame);
    assert_eq!(positions, [at.clone(), at]);
    drop(stream);

    let msgpack = topic(&client, "msgpack", 1).await?;
    produce(&msgpack[0], Some(MSGPACK)).await?;
    let request = pb::MessageQueueRequest {
        format: pb::MessageFormat::Msgpack as i32,
        start_id: Some("0".into()),
        ..queue(&broker, "msgpack")
    };
    let mut stream = grpc.stream_message_queue(request).await?.into_inner();
    let (rows, _) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("id" => [7i64], "name" => ["g"])?);
    drop(stream);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_group_commits_only_what_it_sent() -> anyhow::Result<()> {
    let broker = kafka_broker(None).await?;
    let client = producer(&broker).await?;
    let jobs = topic(&client, "jobs", 1).await?;
    // A record of three rows between two of one.
    let one = produce(&jobs[0], Some(br#"{"n": 1}"#)).await?;
    let three = produce(&jobs[0], Some(br#"[{"n": 2}, {"n": 3}, {"n": 4}]"#)).await?;
    let five = produce(&jobs[0], Some(br#"{"n": 5}"#)).await?;
    // Three rows a stream at most.
    let worker = loopback_worker(|c| c.stream_max_rows = 3).await?;
    let mut grpc = worker.client().await?;
    let request = pb::MessageQueueRequest {
        consumer_group: Some("g".into()),
        start_id: Some("0".into()),
        schema_json: r#"{"n": "Int64"}"#.into(),
        ..queue(&broker, "jobs")
    };
    let reads = |grpc: &mut polaroid_tests::Client| {
        let request = request.clone();
        let mut grpc = Clone::clone(grpc);
        async move { anyhow::Ok(grpc.stream_message_queue(request).await?.into_inner()) }
    };
    // The cap cuts the second record: its first two rows are sent, and only the first
    // record is committed.
    let mut stream = reads(&mut grpc).await?;
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    assert_frame_eq(&rows, &df!("n" => [1i64, 2, 3])?);
    assert_eq!(positions, [one.clone(), three.clone(), three.clone()]);
    refused(
        end_of(stream).await,
        Code::ResourceExhausted,
        "stream_max_rows",
    );
    // The group again, from its commit (start_id only places a group that has none):
    // the cut record whole, and the cap cuts the next.
    let mut stream = reads(&mut grpc).await?;
    let (rows, positions) = records(&take_rows(&mut stream, 3).await?);
    assert_frame_eq(&rows, &df!("n" => [2i64, 3, 4])?);
    assert_eq!(positions, [three.clone(), three.clone(), three]);
    refused(
        end_of(stream).await,
        Code::ResourceExhausted,
        "stream_max_rows",
    );
    // And again: the rest, then a new record; a client that cancels keeps what was sent
    // committed.
    let mut stream = reads(&mut grpc).await?;
    let (rows, positions) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [5i64])?);
    assert_eq!(positions, [five]);
    let six = produce(&jobs[0], Some(br#"{"n": 6}"#)).await?;
    let (rows, positions) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [6i64])?);
    assert_eq!(positions, [six]);
    drop(stream);
    let seven = produce(&jobs[0], Some(br#"{"n": 7}"#)).await?;
    let mut stream = reads(&mut grpc).await?;
    let (rows, positions) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [7i64])?);
    assert_eq!(positions, [seven]);
    drop(stream);

    // A record that does not decode is not committed: the group meets it again.
    let bad = produce(&jobs[0], Some(b"not json")).await?;
    for _ in 0..2 {
        let stream = reads(&mut grpc).await?;
        refused(
            end_of(stream).await,
            Code::InvalidArgument,
            &format!("message {bad}"),
        );
    }

    // A new group that starts at the latest and reads nothing still starts there next
    // time: what was written in between is its.
    let late = pb::MessageQueueRequest {
        consumer_group: Some("late".into()),
        start_id: None,
        ..request.clone()
    };
    drop(grpc.stream_message_queue(late.clone()).await?);
    let between = produce(&jobs[0], Some(br#"{"n": 8}"#)).await?;
    let mut stream = grpc.stream_message_queue(late).await?.into_inner();
    let (rows, positions) = records(&take_rows(&mut stream, 1).await?);
    assert_frame_eq(&rows, &df!("n" => [8i64])?);
    assert_eq!(positions, [between]);
    drop(stream);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_dying_midway_ends_the_stream_with_unavailable() -> anyhow::Result<()> {
    let broker = kafka_broker(None).await?;
    let client = producer(&broker).await?;
    let partitions = topic(&client, "short", 1).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut grpc = worker.client().await?;
    let mut stream = grpc
        .stream_message_queue(queue(&broker, "short"))
        .await?
        .into_inner();
    produce(&partitions[0], Some(br#"{"a": 1}"#)).await?;
    take_rows(&mut stream, 1).await?;
    drop(broker);
    // Once no connection succeeded for 10 s.
    refused(
        end_of(stream).await,
        Code::Unavailable,
        "no connection succeeded for 10 s",
    );
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_outbound_rules_hold_for_every_broker_the_cluster_names() -> anyhow::Result<()> {
    let broker = kafka_broker(None).await?;
    producer(&broker)
        .await?
        .controller_client()?
        .create_topic("t", 1, 1, 5_000)
        .await?;
    // By default, loopback and private addresses are refused.
    let strict = TestWorker::start().await?;
    let mut grpc = strict.client().await?;
    refused(
        grpc.stream_message_queue(queue(&broker, "t")).await,
        Code::PermissionDenied,
        "127.0.0.1",
    );
    strict.stop().await?;

    // A broker allowed as the bootstrap whose metadata names another (private) address
    // for the partition's leader: that connection is refused too.
    let elsewhere = kafka_broker(Some("10.255.255.1:9092")).await?;
    kafka_create_topic(&elsewhere, "t", 1)?;
    let bootstrap = kafka_url(&elsewhere);
    let worker = TestWorker::start_with(|c| {
        c.rest_allowed_url_prefixes = vec![format!("{bootstrap}/")];
    })
    .await?;
    let mut grpc = worker.client().await?;
    let request = pb::MessageQueueRequest {
        connection_string: bootstrap,
        ..queue(&elsewhere, "t")
    };
    refused(
        grpc.stream_message_queue(request).await,
        Code::PermissionDenied,
        "10.255.255.1",
    );
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_precise_statuses() -> anyhow::Result<()> {
    let broker = kafka_broker(None).await?;
    let client = producer(&broker).await?;
    let partitions = topic(&client, "t", 2).await?;
    produce(&partitions[1], Some(br#"{"a": 1}"#)).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut grpc = worker.client().await?;
    let base = queue(&broker, "t");
    let cases: Vec<(pb::MessageQueueRequest, Code, &str)> = vec![
        (
            pb::MessageQueueRequest {
                topic: "no topic".into(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "topic (3)",
        ),
        (
            pb::MessageQueueRequest {
                topic: "missing".into(),
                ..base.clone()
            },
            Code::NotFound,
            "no such topic",
        ),
        (
            pb::MessageQueueRequest {
                consumer_name: Some("me".into()),
                ..base.clone()
            },
            Code::InvalidArgument,
            "consumer_name (7)",
        ),
        (
            pb::MessageQueueRequest {
                payload_field: Some("data".into()),
                ..base.clone()
            },
            Code::InvalidArgument,
            "payload_field (9)",
        ),
        (
            pb::MessageQueueRequest {
                start_id: Some("1".into()),
                ..base.clone()
            },
            Code::InvalidArgument,
            "start_id (8)",
        ),
        (
            pb::MessageQueueRequest {
                start_id: Some("1:5".into()),
                ..base.clone()
            },
            Code::InvalidArgument,
            "partition 1 of topic `t` holds offsets 0 to 0",
        ),
        (
            pb::MessageQueueRequest {
                start_id: Some("7:1".into()),
                ..base.clone()
            },
            Code::InvalidArgument,
            "names partition 7, which topic `t` does not have",
        ),
        (
            pb::MessageQueueRequest {
                connection_string: format!("kafka://[::1]:{}", broker.port),
                ..base.clone()
            },
            Code::Unimplemented,
            "IPv6",
        ),
        (
            pb::MessageQueueRequest {
                connection_string: format!("kafka+ssl://127.0.0.1:{}", broker.port),
                ..base.clone()
            },
            Code::Unimplemented,
            "TLS",
        ),
        (
            pb::MessageQueueRequest {
                connection_string: format!("kafka://user:secret@127.0.0.1:{}", broker.port),
                ..base.clone()
            },
            Code::Unimplemented,
            "SASL",
        ),
        (
            pb::MessageQueueRequest {
                connection_string: "redis://127.0.0.1:6379".into(),
                ..base.clone()
            },
            Code::InvalidArgument,
            "scheme `redis` is not kafka",
        ),
        (
            pb::MessageQueueRequest {
                consumer_group: Some(String::new()),
                ..base.clone()
            },
            Code::InvalidArgument,
            "consumer_group (4)",
        ),
    ];
    for (request, code, says) in cases {
        let status = grpc
            .stream_message_queue(request.clone())
            .await
            .expect_err(&format!("{request:?} should be refused"));
        assert_eq!(status.code(), code, "{}", status.message());
        assert!(
            status.message().contains(says),
            "`{}` should say `{says}`",
            status.message()
        );
        assert!(!status.message().contains("secret"), "{}", status.message());
    }
    // Nothing of the refused calls stays connected.
    worker.stop().await
}
