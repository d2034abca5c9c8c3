//! `StreamWebSocket` against a Python `websockets` server started by the test on
//! loopback: text and binary frames become the records sent, in order, with headers on
//! the handshake; `buffer_size` rows per message; a connection cut without a close is
//! dialled again as `reconnect_policy` says, and without one ends the stream with
//! UNAVAILABLE; a cancel closes the connection; URL rules and bad input; `wss://` to a
//! peer whose certificate a private CA signed, trusted through `outbound_ca_files`.

use std::time::Duration;

use polaroid_proto::v1 as pb;
use polaroid_tests::streamed::records;
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;

type Batches = tonic::Streaming<pb::ArrowBatch>;

fn request(server: &WebSocketServer, path: &str) -> pb::WebSocketSourceRequest {
    pb::WebSocketSourceRequest {
        url: format!("ws://127.0.0.1:{}{path}", server.port),
        schema_json: r#"{"id": "Int64", "name": "String"}"#.into(),
        ..Default::default()
    }
}

fn expected(ids: &[i64]) -> DataFrame {
    let names: Vec<Option<String>> = ids
        .iter()
        .map(|id| (*id != 5).then(|| format!("n{id}")))
        .collect();
    df!("id" => ids, "name" => names).expect("frame")
}

/// Every message until the stream ends: its frames and how it ended.
async fn drain(mut stream: Batches) -> (Vec<DataFrame>, Result<(), tonic::Status>) {
    let mut frames = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(30), stream.message()).await {
            Err(_) => return (frames, Err(tonic::Status::deadline_exceeded("no end"))),
            Ok(Ok(Some(batch))) => frames.push(from_ipc(&batch.arrow_ipc)),
            Ok(Ok(None)) => return (frames, Ok(())),
            Ok(Err(status)) => return (frames, Err(status)),
        }
    }
}

#[track_caller]
fn ended_with(result: Result<(), tonic::Status>, code: Code, says: &str) {
    let status = result.expect_err("should end with an error");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(says),
        "`{}` should say `{says}`",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn frames_become_records_in_order() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let with_token = pb::WebSocketSourceRequest {
        headers: [("x-token".to_owned(), "secret".to_owned())].into(),
        buffer_size: Some(2),
        ..request(&server, "/records")
    };
    let (frames, end) = drain(client.stream_web_socket(with_token).await?.into_inner()).await;
    end?;
    assert!(
        frames.iter().all(|f| f.height() <= 2),
        "buffer_size rows at most"
    );
    let (rows, positions) = records(&frames);
    assert_frame_eq(&rows, &expected(&[1, 2, 3, 4, 5]));
    assert_eq!(positions, ["0:0", "0:1", "0:2", "0:3", "0:3"]);

    // The handshake refused (no token): its HTTP status, as the caller reads it.
    let (_, end) = drain(
        client
            .stream_web_socket(request(&server, "/records"))
            .await?
            .into_inner(),
    )
    .await;
    ended_with(end, Code::PermissionDenied, "HTTP 403");

    // A binary frame, decoded by format.
    let binary = pb::WebSocketSourceRequest {
        format: Some(pb::MessageFormat::Json as i32),
        schema_json: String::new(),
        ..request(&server, "/binary")
    };
    let (frames, end) = drain(client.stream_web_socket(binary).await?.into_inner()).await;
    end?;
    assert_frame_eq(
        &records(&frames).0,
        &df!("id" => [1i64, 2], "name" => ["a", "b"])?,
    );
    // A frame that does not decode ends the stream, naming it.
    let (_, end) = drain(
        client
            .stream_web_socket(request(&server, "/bad"))
            .await?
            .into_inner(),
    )
    .await;
    ended_with(end, Code::InvalidArgument, "frame 0:0");
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_connection_is_dialled_again_as_the_policy_says() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let policy = pb::WebSocketSourceRequest {
        reconnect_policy: Some(pb::ReconnectPolicy {
            max_retries: 2,
            initial_delay_ms: 10,
            max_delay_ms: 100,
            backoff_multiplier: 2.0,
        }),
        ..request(&server, "/flaky")
    };
    let (frames, end) = drain(client.stream_web_socket(policy).await?.into_inner()).await;
    end?;
    let (rows, positions) = records(&frames);
    assert_frame_eq(&rows, &expected(&[1, 2, 3]));
    assert_eq!(
        positions,
        ["0:0", "0:1", "1:0"],
        "the second connection's frames"
    );

    // Without a policy, a peer that dies midway ends the stream with UNAVAILABLE, after
    // what it sent.
    let (frames, end) = drain(
        client
            .stream_web_socket(request(&server, "/dying"))
            .await?
            .into_inner(),
    )
    .await;
    assert_frame_eq(&records(&frames).0, &expected(&[1]));
    ended_with(end, Code::Unavailable, "/dying");
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_closes_the_connection() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let mut stream = client
        .stream_web_socket(request(&server, "/endless"))
        .await?
        .into_inner();
    let first = tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await??
        .ok_or_else(|| anyhow::anyhow!("no message"))?;
    let (rows, _) = records(&[from_ipc(&first.arrow_ipc)]);
    assert_eq!(rows.column("id")?.i64()?.get(0), Some(1));
    assert_eq!(open_connections(server.port)?, 1);
    drop(stream);
    eventually(
        "the connection to close",
        Duration::from_secs(10),
        || async { Ok(open_connections(server.port)? == 0) },
    )
    .await?;
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn url_rules_and_bad_requests() -> anyhow::Result<()> {
    let server = websocket_server().await?;
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let refused = client
        .stream_web_socket(request(&server, "/endless"))
        .await
        .map(|_| ());
    ended_with(refused, Code::PermissionDenied, "loopback");
    worker.stop().await?;

    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    for (bad, code, says) in [
        (
            pb::WebSocketSourceRequest {
                url: "http://127.0.0.1/x".into(),
                ..request(&server, "/records")
            },
            Code::InvalidArgument,
            "not ws or wss",
        ),
        (
            pb::WebSocketSourceRequest {
                buffer_size: Some(0),
                ..request(&server, "/records")
            },
            Code::InvalidArgument,
            "buffer_size (5)",
        ),
        (
            pb::WebSocketSourceRequest {
                schema_json: "{".into(),
                ..request(&server, "/records")
            },
            Code::InvalidArgument,
            "schema_json (3)",
        ),
        (
            pb::WebSocketSourceRequest {
                format: Some(pb::MessageFormat::Protobuf as i32),
                ..request(&server, "/records")
            },
            Code::Unimplemented,
            "PROTOBUF",
        ),
        (
            pb::WebSocketSourceRequest {
                reconnect_policy: Some(pb::ReconnectPolicy {
                    backoff_multiplier: f32::NAN,
                    ..Default::default()
                }),
                ..request(&server, "/records")
            },
            Code::InvalidArgument,
            "backoff_multiplier",
        ),
    ] {
        let refused = client.stream_web_socket(bad).await.map(|_| ());
        ended_with(refused, code, says);
    }
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wss_peers_are_trusted_through_outbound_ca_files() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let ca = pki::new_ca("websocket peers' CA")?;
    let ca_file = dir.path().join("peers-ca.crt");
    std::fs::write(&ca_file, ca.pem())?;
    let (cert, key) = pki::issue(&ca, &["127.0.0.1"], dir.path(), "peer")?;
    let server = websocket_server_tls(&cert, &key).await?;
    let secure = pb::WebSocketSourceRequest {
        url: format!("wss://127.0.0.1:{}/records", server.port),
        headers: [("x-token".to_owned(), "secret".to_owned())].into(),
        ..request(&server, "/records")
    };

    // The system's trust store alone does not know the peer's CA.
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let (frames, end) = drain(client.stream_web_socket(secure.clone()).await?.into_inner()).await;
    assert!(frames.is_empty());
    ended_with(end, Code::Unavailable, "(TLS)");
    worker.stop().await?;

    // Told to trust it, the worker reads the peer over TLS as over plain TCP.
    let worker = TestWorker::start_with(|c| {
        c.rest_allow_private_networks = true;
        c.outbound_ca_files = vec![ca_file.clone()];
    })
    .await?;
    let mut client = worker.client().await?;
    let (frames, end) = drain(client.stream_web_socket(secure).await?.into_inner()).await;
    end?;
    let (rows, positions) = records(&frames);
    assert_frame_eq(&rows, &expected(&[1, 2, 3, 4, 5]));
    assert_eq!(positions, ["0:0", "0:1", "0:2", "0:3", "0:3"]);
    worker.stop().await
}
