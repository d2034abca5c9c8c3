//! `CaptureStream` against real peers on loopback (the Python WebSocket peer, a REST
//! server, redis-server): each bound ends the capture exactly where it says (rows cut to
//! the bound, a duration, an idle gap, the source's end), the handle holds what the peer
//! sent, it is served by another worker once the capturing one is killed, a peer dying
//! midway ends the call with its error and stores nothing, and bad bounds are refused.

use std::time::Duration;

use polaroid_proto::v1 as pb;
use polaroid_proto::v1::capture_stream_request::Source;
use polaroid_tests::streamed::refused;
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;

const SOURCE_COLUMNS: [&str; 2] = ["_received_at", "_source_position"];

fn socket(server: &WebSocketServer, path: &str) -> Source {
    Source::WebSocket(pb::WebSocketSourceRequest {
        url: format!("ws://127.0.0.1:{}{path}", server.port),
        schema_json: r#"{"id": "Int64", "name": "String"}"#.into(),
        ..Default::default()
    })
}

fn bounded(
    source: Source,
    rows: Option<i64>,
    duration_ms: Option<i64>,
    idle_ms: Option<i64>,
) -> pb::CaptureStreamRequest {
    pb::CaptureStreamRequest {
        max_rows: rows,
        max_duration_ms: duration_ms,
        idle_ms,
        name: None,
        source: Some(source),
    }
}

/// The peer's records `ids` (the `/endless` and `/pause` paths send `n<id>` names).
fn expected(ids: impl IntoIterator<Item = i64>) -> DataFrame {
    let ids: Vec<i64> = ids.into_iter().collect();
    let names: Vec<String> = ids.iter().map(|id| format!("n{id}")).collect();
    df!("id" => ids, "name" => names).expect("frame")
}

/// Every progress message of a capture, and its last (the handle's).
async fn capture(
    client: &mut Client,
    request: pb::CaptureStreamRequest,
) -> Result<(Vec<pb::CaptureProgress>, pb::CaptureProgress), tonic::Status> {
    let mut stream = client.capture_stream(request).await?.into_inner();
    let mut seen = Vec::new();
    loop {
        let next = tokio::time::timeout(Duration::from_secs(30), stream.message())
            .await
            .map_err(|_| tonic::Status::deadline_exceeded("the capture did not end"))??;
        match next {
            Some(message) if message.handle.is_some() => return Ok((seen, message)),
            Some(message) => seen.push(message),
            None => {
                return Err(tonic::Status::internal(
                    "the capture ended without a handle",
                ));
            }
        }
    }
}

fn handle_of(last: &pb::CaptureProgress) -> String {
    last.handle
        .as_ref()
        .map(|h| h.handle.clone())
        .unwrap_or_default()
}

/// The records a handle holds, without the columns streams add.
async fn records(client: &mut Client, handle: &str) -> anyhow::Result<DataFrame> {
    let whole = collect(client, handle).await?;
    for name in SOURCE_COLUMNS {
        anyhow::ensure!(whole.schema().contains(name), "no {name} column");
    }
    Ok(whole.drop_many(SOURCE_COLUMNS))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_bound_ends_the_capture_where_it_says() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;

    // Rows: the batch that passes the bound is cut; the handle holds exactly 7.
    let (progress, last) = capture(
        &mut client,
        bounded(socket(&server, "/endless"), Some(7), None, None),
    )
    .await?;
    assert_eq!(last.stopped(), pb::CaptureStop::MaxRows);
    assert_eq!(last.rows, 7);
    assert!(!progress.is_empty(), "progress comes before the handle");
    assert!(progress.iter().all(|p| p.handle.is_none() && p.rows <= 7));
    assert_frame_eq(
        &records(&mut client, &handle_of(&last)).await?,
        &expected(1..=7),
    );
    let info = handle_info(&mut client, &handle_of(&last)).await?;
    assert_eq!(info.rows, Some(7));

    // A duration: what came until then, from the first record on, in order.
    let (_, last) = capture(
        &mut client,
        bounded(socket(&server, "/endless"), None, Some(800), None),
    )
    .await?;
    assert_eq!(last.stopped(), pb::CaptureStop::MaxDuration);
    assert!(
        (800..3_000).contains(&last.elapsed_ms),
        "stopped after {} ms",
        last.elapsed_ms
    );
    let rows = records(&mut client, &handle_of(&last)).await?;
    assert!(rows.height() > 0);
    assert_eq!(rows.height() as i64, last.rows);
    assert_frame_eq(&rows, &expected(1..=rows.height() as i64));

    // An idle gap: the peer sends three records, then nothing with the connection open.
    let (_, last) = capture(
        &mut client,
        bounded(
            socket(&server, "/pause"),
            Some(1_000),
            Some(20_000),
            Some(400),
        ),
    )
    .await?;
    assert_eq!(last.stopped(), pb::CaptureStop::Idle);
    assert_frame_eq(
        &records(&mut client, &handle_of(&last)).await?,
        &expected(1..=3),
    );

    // The source's end: the peer closes after two records.
    let binary = Source::WebSocket(pb::WebSocketSourceRequest {
        url: format!("ws://127.0.0.1:{}/binary", server.port),
        format: Some(pb::MessageFormat::Json as i32),
        ..Default::default()
    });
    let (_, last) = capture(&mut client, bounded(binary, Some(100), None, None)).await?;
    assert_eq!(last.stopped(), pb::CaptureStop::SourceEnded);
    assert_frame_eq(
        &records(&mut client, &handle_of(&last)).await?,
        &df!("id" => [1i64, 2], "name" => ["a", "b"])?,
    );
    // The captures are over: their connections to the peer are closed.
    eventually(
        "the peer's connections to close",
        Duration::from_secs(10),
        || async { Ok(open_connections(server.port)? == 0) },
    )
    .await?;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rest_and_queue_sources_are_captured_alike() -> anyhow::Result<()> {
    let app = axum::Router::new().route(
        "/items",
        axum::routing::get(|| async { r#"[{"id": 1, "name": "n1"}, {"id": 2, "name": "n2"}]"# }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let rest_url = format!("http://{}/items", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });
    let redis = redis_server().await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;

    let rest = Source::RestApi(pb::RestApiRequest {
        url: rest_url.clone(),
        method: "GET".into(),
        ..Default::default()
    });
    let (_, last) = capture(&mut client, bounded(rest, None, Some(10_000), None)).await?;
    assert_eq!(last.stopped(), pb::CaptureStop::SourceEnded);
    assert_frame_eq(
        &records(&mut client, &handle_of(&last)).await?,
        &expected(1..=2),
    );

    // A Redis stream from its first entry; the bound cuts the batch of five at three.
    let connection = redis::Client::open(redis.redis_url())?;
    let mut redis_client = connection.get_multiplexed_async_connection().await?;
    for id in 1..=5i64 {
        let _: String = redis::cmd("XADD")
            .arg("events")
            .arg("*")
            .arg("id")
            .arg(id)
            .arg("name")
            .arg(format!("n{id}"))
            .query_async(&mut redis_client)
            .await?;
    }
    let queue = |topic: &str| {
        Source::MessageQueue(pb::MessageQueueRequest {
            r#type: pb::MessageQueueType::RedisStream as i32,
            connection_string: redis.redis_url(),
            topic: topic.into(),
            start_id: Some("0".into()),
            schema_json: r#"{"id": "Int64", "name": "String"}"#.into(),
            ..Default::default()
        })
    };
    let (_, last) = capture(&mut client, bounded(queue("events"), Some(3), None, None)).await?;
    assert_eq!(last.stopped(), pb::CaptureStop::MaxRows);
    let rows = records(&mut client, &handle_of(&last)).await?;
    assert_frame_eq(&rows, &expected(1..=3));

    // A queue with nothing in it: no columns to make a frame of, and no handle.
    refused(
        capture(&mut client, bounded(queue("empty"), None, None, Some(300))).await,
        Code::FailedPrecondition,
        "before its source sent anything",
    );
    // A gRPC source is checked as StreamGrpc checks it, before anything starts.
    refused(
        capture(
            &mut client,
            bounded(
                Source::Grpc(pb::GrpcStreamRequest::default()),
                Some(1),
                None,
                None,
            ),
        )
        .await,
        Code::InvalidArgument,
        "endpoint (1)",
    );
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_dying_midway_fails_the_capture_and_stores_nothing() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let state = tempfile::tempdir()?;
    let store = state.path().to_path_buf();
    let worker = TestWorker::start_with(|c| {
        c.rest_allow_private_networks = true;
        c.handle_store = polaroid_worker::HandleStoreKind::External;
        c.state_dir = store;
    })
    .await?;
    let mut client = worker.client().await?;
    let before = files_under(state.path());
    // The peer sends a record, then cuts the connection: its error, and no handle.
    refused(
        capture(
            &mut client,
            bounded(socket(&server, "/dying"), Some(100), None, None),
        )
        .await,
        Code::Unavailable,
        "/dying",
    );
    assert_eq!(files_under(state.path()), before, "nothing was stored");
    // The same capture of a source that ends well is stored.
    let (_, last) = capture(
        &mut client,
        bounded(socket(&server, "/pause"), Some(3), None, None),
    )
    .await?;
    assert_frame_eq(
        &records(&mut client, &handle_of(&last)).await?,
        &expected(1..=3),
    );
    assert_ne!(files_under(state.path()), before);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_bounds_are_refused_and_max_call_secs_does_not_cut_a_capture() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let worker = TestWorker::start_with(|c| {
        c.rest_allow_private_networks = true;
        c.stream_max_rows = 1_000;
        c.stream_max_duration_secs = 60.0;
        // Shorter than the capture below: it bounds the time until a capture answers.
        c.max_call_secs = 0.5;
    })
    .await?;
    let mut client = worker.client().await?;
    for (request, says) in [
        (
            bounded(socket(&server, "/endless"), None, None, None),
            "needs a bound",
        ),
        (
            bounded(socket(&server, "/endless"), Some(0), None, None),
            "max_rows (1) must be positive",
        ),
        (
            bounded(socket(&server, "/endless"), None, Some(-5), None),
            "max_duration_ms (2)",
        ),
        (
            bounded(socket(&server, "/endless"), None, None, Some(0)),
            "idle_ms (3)",
        ),
        (
            bounded(socket(&server, "/endless"), Some(1_001), None, None),
            "stream_max_rows",
        ),
        (
            bounded(socket(&server, "/endless"), None, Some(60_001), None),
            "stream_max_duration_secs",
        ),
        (
            pb::CaptureStreamRequest {
                source: None,
                ..bounded(socket(&server, "/endless"), Some(1), None, None)
            },
            "source must be one of",
        ),
    ] {
        refused(
            capture(&mut client, request).await,
            Code::InvalidArgument,
            says,
        );
    }
    // The source's own request is checked as its Stream* call checks it.
    let bad_url = Source::WebSocket(pb::WebSocketSourceRequest {
        url: "http://127.0.0.1/x".into(),
        ..Default::default()
    });
    refused(
        capture(&mut client, bounded(bad_url, Some(1), None, None)).await,
        Code::InvalidArgument,
        "not ws or wss",
    );
    // A capture longer than max_call_secs runs to its own bound.
    let (_, last) = capture(
        &mut client,
        bounded(socket(&server, "/endless"), None, Some(1_200), None),
    )
    .await?;
    assert_eq!(last.stopped(), pb::CaptureStop::MaxDuration);
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_captured_handle_outlives_the_worker_that_captured_it() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let env = vec![(
        "POLAROID_REST_ALLOW_PRIVATE_NETWORKS".to_owned(),
        "true".to_owned(),
    )];
    let mut cluster = TestCluster::start_with_env(2, &[], &[], env, None).await?;
    let mut client = cluster.client().await?;
    let response = client
        .capture_stream(bounded(socket(&server, "/endless"), Some(25), None, None))
        .await?;
    let capturer = served_by(&response);
    let mut stream = response.into_inner();
    let mut last = None;
    while let Some(message) = stream.message().await? {
        if message.handle.is_some() {
            last = Some(message);
        }
    }
    let last = last.ok_or_else(|| anyhow::anyhow!("no handle"))?;
    let handle = handle_of(&last);
    assert_frame_eq(&records(&mut client, &handle).await?, &expected(1..=25));

    // The worker that captured it, by its id among the coordinator's members.
    let index = cluster
        .live_workers()
        .await?
        .into_iter()
        .find(|w| w.worker_id == capturer)
        .and_then(|w| cluster.index_of(&w.address))
        .ok_or_else(|| anyhow::anyhow!("no worker {capturer}"))?;
    cluster.kill_worker(index)?;
    cluster.wait_for_workers(1).await?;
    let mut client = cluster.client().await?;
    assert_frame_eq(&records(&mut client, &handle).await?, &expected(1..=25));
    Ok(())
}
