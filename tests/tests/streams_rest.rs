//! `StreamRestApi` against a REST server started by the test on loopback whose answers
//! change: every page streamed in order, polling sends what is new, a cancelled stream
//! stops polling and closes its connection (directly and through a coordinator), a peer
//! dying midway ends the stream with UNAVAILABLE, the worker's caps and URL rules hold,
//! and bad requests are INVALID_ARGUMENT before anything is fetched.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::routing::get;
use polaroid_proto::v1 as pb;
use polaroid_proto::v1::pagination_config::Strategy;
use polaroid_tests::*;
use polars::prelude::*;
use tonic::Code;

/// The peer: its records (which the test changes), how many requests it served.
#[derive(Clone, Default)]
struct Peer {
    feed: Arc<Mutex<Vec<i64>>>,
    requests: Arc<AtomicUsize>,
}

fn records(ids: &[i64]) -> String {
    let items: Vec<String> = ids
        .iter()
        .map(|id| format!(r#"{{"id": {id}, "label": "r{id}"}}"#))
        .collect();
    format!("[{}]", items.join(","))
}

fn page_of(query: &HashMap<String, String>) -> i64 {
    query.get("page").and_then(|p| p.parse().ok()).unwrap_or(1)
}

/// Serves the peer on loopback; its base URL and port.
async fn serve(peer: Peer) -> anyhow::Result<(String, u16)> {
    let app = axum::Router::new()
        // Three pages of two records (ids 1..=6), then none.
        .route(
            "/pages",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                let page = page_of(&q);
                if page > 3 {
                    "[]".to_owned()
                } else {
                    records(&[2 * page - 1, 2 * page])
                }
            }),
        )
        // Whatever the feed holds now.
        .route(
            "/feed",
            get(|State(peer): State<Peer>| async move {
                peer.requests.fetch_add(1, Ordering::SeqCst);
                let ids = peer.feed.lock().expect("feed").clone();
                records(&ids)
            }),
        )
        // Page 1 whole; page 2 dies in the middle of its body.
        .route(
            "/dying",
            get(|Query(q): Query<HashMap<String, String>>| async move {
                if page_of(&q) == 1 {
                    return axum::body::Body::from(records(&[1, 2]));
                }
                let chunks: Vec<Result<&'static str, std::io::Error>> = vec![
                    Ok(r#"[{"id": 3, "label": "#),
                    Err(std::io::Error::other("the peer died")),
                ];
                axum::body::Body::from_stream(futures::stream::iter(chunks))
            }),
        )
        // A link to a page outside the worker's allowed prefix.
        .route(
            "/allowed/start",
            get(|| async {
                let mut headers = HeaderMap::new();
                headers.insert(
                    header::LINK,
                    "</elsewhere>; rel=\"next\""
                        .parse()
                        .expect("a header value"),
                );
                (headers, records(&[1]))
            }),
        )
        .route("/elsewhere", get(|| async { records(&[2]) }))
        .route("/none", get(|| async { "[]" }))
        .route("/gone", get(|| async { StatusCode::NOT_FOUND }))
        .with_state(peer);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok((format!("http://{address}"), address.port()))
}

fn request(url: String) -> pb::RestApiRequest {
    pb::RestApiRequest {
        url,
        method: "GET".into(),
        ..Default::default()
    }
}

fn paged(url: String) -> pb::RestApiRequest {
    pb::RestApiRequest {
        pagination: Some(pb::PaginationConfig {
            strategy: Some(Strategy::PageNumber(pb::PageNumberPagination {
                page_size: 0,
                page_param: "page".into(),
            })),
        }),
        ..request(url)
    }
}

fn polled(url: String, every_ms: i64) -> pb::RestApiRequest {
    pb::RestApiRequest {
        poll_interval_ms: Some(every_ms),
        ..request(url)
    }
}

/// What Polars reads from the records `ids`.
fn expected(ids: &[i64]) -> DataFrame {
    JsonReader::new(std::io::Cursor::new(records(ids).into_bytes()))
        .finish()
        .expect("Polars reads the records")
}

/// A message's records without the stream's own columns, and its source positions.
fn split(frame: &DataFrame) -> (DataFrame, Vec<String>) {
    let positions = frame
        .column("_source_position")
        .expect("a source position column")
        .str()
        .expect("strings")
        .iter()
        .flatten()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        frame
            .column("_received_at")
            .expect("a receive time")
            .dtype(),
        &DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
    );
    (
        frame.drop_many(["_received_at", "_source_position"]),
        positions,
    )
}

type Batches = tonic::Streaming<pb::ArrowBatch>;

/// The next message's frame, failing after 10 s.
async fn next_frame(stream: &mut Batches) -> anyhow::Result<Option<DataFrame>> {
    let message = tokio::time::timeout(Duration::from_secs(10), stream.message()).await??;
    Ok(message.map(|batch| {
        assert!(batch.error.is_none(), "error field set on success");
        from_ipc(&batch.arrow_ipc)
    }))
}

/// Every message until the stream ends: the frames, and the status it ended with.
async fn drain(mut stream: Batches) -> (Vec<DataFrame>, Result<(), tonic::Status>) {
    let mut frames = Vec::new();
    loop {
        match stream.message().await {
            Ok(Some(batch)) => frames.push(from_ipc(&batch.arrow_ipc)),
            Ok(None) => return (frames, Ok(())),
            Err(status) => return (frames, Err(status)),
        }
    }
}

/// Rows of `frames` stacked, the stream's own columns left out.
fn rows(frames: &[DataFrame]) -> (DataFrame, Vec<String>) {
    let (frames, positions): (Vec<DataFrame>, Vec<Vec<String>>) = frames.iter().map(split).unzip();
    (stack(&frames), positions.concat())
}

#[track_caller]
fn ended_with(result: Result<(), tonic::Status>, code: Code, says: &str) {
    let status = result.expect_err("the stream should end with an error");
    assert_eq!(status.code(), code, "{}", status.message());
    assert!(
        status.message().contains(says),
        "`{}` should say `{says}`",
        status.message()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_is_streamed_in_order_then_the_stream_ends() -> anyhow::Result<()> {
    let (base, _) = serve(Peer::default()).await?;
    let worker = loopback_worker(|c| c.stream_batch_rows = 1).await?;
    let mut client = worker.client().await?;
    let stream = client
        .stream_rest_api(paged(format!("{base}/pages")))
        .await?
        .into_inner();
    let (frames, end) = drain(stream).await;
    end?;
    // One record per message (stream_batch_rows), every page, in order.
    assert_eq!(frames.len(), 6);
    let (actual, positions) = rows(&frames);
    assert_frame_eq(&actual, &expected(&[1, 2, 3, 4, 5, 6]));
    assert_eq!(
        positions,
        ["0:0:0", "0:0:1", "0:1:0", "0:1:1", "0:2:0", "0:2:1"]
    );

    // A schema decides the columns; an answer without records still gives them.
    let typed = pb::RestApiRequest {
        schema_json: r#"{"label": "String", "id": "Int32"}"#.into(),
        ..paged(format!("{base}/pages"))
    };
    let (frames, end) = drain(client.stream_rest_api(typed).await?.into_inner()).await;
    end?;
    let want = expected(&[1, 2, 3, 4, 5, 6])
        .lazy()
        .select([col("label"), col("id").cast(DataType::Int32)])
        .collect()?;
    assert_frame_eq(&rows(&frames).0, &want);
    let empty = pb::RestApiRequest {
        schema_json: r#"{"id": "Int64"}"#.into(),
        ..request(format!("{base}/none"))
    };
    let (frames, end) = drain(client.stream_rest_api(empty).await?.into_inner()).await;
    end?;
    assert_eq!(frames.len(), 1);
    let (only, _) = split(&frames[0]);
    assert_eq!(only.height(), 0);
    assert_eq!(only.schema().get("id"), Some(&DataType::Int64));
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_sends_new_records_and_cancel_stops_it() -> anyhow::Result<()> {
    let peer = Peer::default();
    peer.feed.lock().expect("feed").extend([1, 2]);
    let (base, port) = serve(peer.clone()).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let mut stream = client
        .stream_rest_api(polled(format!("{base}/feed"), 30))
        .await?
        .into_inner();
    let first = next_frame(&mut stream).await?.expect("the first answer");
    let (first, positions) = split(&first);
    assert_frame_eq(&first, &expected(&[1, 2]));
    assert_eq!(positions, ["0:0:0", "0:0:1"]);

    // New records are sent once, in order; what was there before is not sent again.
    peer.feed.lock().expect("feed").push(3);
    let (next, positions) = split(&next_frame(&mut stream).await?.expect("record 3"));
    assert_frame_eq(&next, &expected(&[3]));
    assert_eq!(positions.len(), 1);
    assert!(positions[0].ends_with(":0:2"), "{positions:?}");
    {
        let mut feed = peer.feed.lock().expect("feed");
        feed.retain(|id| *id != 1);
        feed.extend([4, 5]);
    }
    let (next, _) = split(&next_frame(&mut stream).await?.expect("records 4 and 5"));
    assert_frame_eq(&next, &expected(&[4, 5]));
    // A record that left and came back is new again.
    peer.feed.lock().expect("feed").push(1);
    let (next, _) = split(&next_frame(&mut stream).await?.expect("record 1 again"));
    assert_frame_eq(&next, &expected(&[1]));
    assert!(
        open_connections(port)? >= 1,
        "the stream keeps its connection"
    );

    // Cancelled: the polling stops and its connection to the peer closes.
    drop(stream);
    eventually(
        "the stream's connection to close",
        Duration::from_secs(10),
        || async { Ok(open_connections(port)? == 0) },
    )
    .await?;
    let served = peer.requests.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        peer.requests.load(Ordering::SeqCst),
        served,
        "no polls after the cancel (10 intervals)"
    );
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_relays_a_stream_and_its_cancel() -> anyhow::Result<()> {
    let peer = Peer::default();
    peer.feed.lock().expect("feed").extend([7, 8]);
    let (base, port) = serve(peer.clone()).await?;
    let env = vec![(
        "POLAROID_REST_ALLOW_PRIVATE_NETWORKS".to_owned(),
        "true".to_owned(),
    )];
    let cluster = TestCluster::start_with_env(1, &[], &[], env, None).await?;
    let mut client = cluster.client().await?;
    let (frames, end) = drain(
        client
            .stream_rest_api(paged(format!("{base}/pages")))
            .await?
            .into_inner(),
    )
    .await;
    end?;
    assert_frame_eq(&rows(&frames).0, &expected(&[1, 2, 3, 4, 5, 6]));

    let mut stream = client
        .stream_rest_api(polled(format!("{base}/feed"), 30))
        .await?
        .into_inner();
    let (first, _) = split(&next_frame(&mut stream).await?.expect("the first answer"));
    assert_frame_eq(&first, &expected(&[7, 8]));
    peer.feed.lock().expect("feed").push(9);
    let (next, _) = split(&next_frame(&mut stream).await?.expect("record 9"));
    assert_frame_eq(&next, &expected(&[9]));
    assert!(
        open_connections(port)? >= 1,
        "the stream keeps its connection"
    );
    drop(stream);
    eventually(
        "the worker's connection to the peer to close after the client's cancel",
        Duration::from_secs(10),
        || async { Ok(open_connections(port)? == 0) },
    )
    .await?;

    // A bad request is refused by the worker, through the coordinator, as it is.
    let refused = client
        .stream_rest_api(pb::RestApiRequest {
            schema_json: "{".into(),
            ..request(format!("{base}/feed"))
        })
        .await
        .map(|_| ());
    ended_with(refused, Code::InvalidArgument, "schema_json (6)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_failing_midway_ends_the_stream_with_its_status() -> anyhow::Result<()> {
    let (base, _) = serve(Peer::default()).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let (frames, end) = drain(
        client
            .stream_rest_api(paged(format!("{base}/dying")))
            .await?
            .into_inner(),
    )
    .await;
    // Page 1 arrived whole; the connection lost in page 2 is UNAVAILABLE.
    assert_frame_eq(&rows(&frames).0, &expected(&[1, 2]));
    ended_with(end, Code::Unavailable, "/dying?page=2");

    // Polling a peer that starts refusing: its status, after what it sent.
    let (frames, end) = drain(
        client
            .stream_rest_api(polled(format!("{base}/gone"), 10))
            .await?
            .into_inner(),
    )
    .await;
    assert!(frames.is_empty());
    ended_with(end, Code::NotFound, "HTTP 404");
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_caps_hold() -> anyhow::Result<()> {
    let (base, _) = serve(Peer::default()).await?;

    // Rows: exactly the cap, then RESOURCE_EXHAUSTED.
    let worker = loopback_worker(|c| c.stream_max_rows = 3).await?;
    let mut client = worker.client().await?;
    let (frames, end) = drain(
        client
            .stream_rest_api(paged(format!("{base}/pages")))
            .await?
            .into_inner(),
    )
    .await;
    assert_frame_eq(&rows(&frames).0, &expected(&[1, 2, 3]));
    ended_with(end, Code::ResourceExhausted, "stream_max_rows");
    worker.stop().await?;

    // Bytes: a message that would pass the cap is not sent.
    let worker = loopback_worker(|c| c.stream_max_bytes = 1).await?;
    let mut client = worker.client().await?;
    let (frames, end) = drain(
        client
            .stream_rest_api(paged(format!("{base}/pages")))
            .await?
            .into_inner(),
    )
    .await;
    assert!(frames.is_empty());
    ended_with(end, Code::ResourceExhausted, "stream_max_bytes");
    worker.stop().await?;

    // Duration, streams at once, requests a second, rows a second.
    let peer = Peer::default();
    peer.feed.lock().expect("feed").extend([1]);
    let (feed_base, _) = serve(peer.clone()).await?;
    let worker = loopback_worker(|c| {
        c.stream_max_duration_secs = 1.0;
        c.max_streams = 1;
        c.stream_max_requests_per_second = 10;
    })
    .await?;
    let mut client = worker.client().await?;
    let started = Instant::now();
    let mut polling = client
        .stream_rest_api(polled(format!("{feed_base}/feed"), 1))
        .await?
        .into_inner();
    next_frame(&mut polling).await?.expect("the first answer");
    let second = client
        .stream_rest_api(polled(format!("{feed_base}/feed"), 1))
        .await
        .map(|_| ());
    ended_with(second, Code::ResourceExhausted, "max_streams");
    let (_, end) = drain(polling).await;
    ended_with(end, Code::DeadlineExceeded, "stream_max_duration_secs");
    let ran = started.elapsed().as_secs_f64();
    let requests = peer.requests.load(Ordering::SeqCst) as f64;
    // Asked to poll every millisecond, it polled at most 10 times a second (and a burst
    // of one).
    assert!(
        requests <= 1.0 + 10.0 * ran,
        "{requests} requests in {ran} s"
    );
    assert!(requests >= 2.0, "it did poll: {requests}");
    worker.stop().await?;

    let worker = loopback_worker(|c| c.stream_max_rows_per_second = 4).await?;
    let mut client = worker.client().await?;
    let started = Instant::now();
    let (frames, end) = drain(
        client
            .stream_rest_api(paged(format!("{base}/pages")))
            .await?
            .into_inner(),
    )
    .await;
    end?;
    assert_eq!(rows(&frames).0.height(), 6);
    // Four rows go at once, the last two wait for half a second's allowance.
    assert!(
        started.elapsed() >= Duration::from_millis(400),
        "{:?}",
        started.elapsed()
    );
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_obey_the_url_rules() -> anyhow::Result<()> {
    let (base, _) = serve(Peer::default()).await?;
    // By default loopback is refused, before any request.
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let refused = client
        .stream_rest_api(request(format!("{base}/pages")))
        .await
        .map(|_| ());
    ended_with(refused, Code::PermissionDenied, "loopback");
    worker.stop().await?;

    // Under a prefix only; a link out of it ends the stream after what came from inside.
    let allowed = format!("{base}/allowed");
    let worker = TestWorker::start_with(|c| c.rest_allowed_url_prefixes = vec![allowed]).await?;
    let mut client = worker.client().await?;
    let refused = client
        .stream_rest_api(request(format!("{base}/pages")))
        .await
        .map(|_| ());
    ended_with(refused, Code::PermissionDenied, "rest_allowed_url_prefixes");
    let linked = pb::RestApiRequest {
        pagination: Some(pb::PaginationConfig {
            strategy: Some(Strategy::LinkHeader(pb::LinkHeaderPagination {
                rel: "next".into(),
            })),
        }),
        ..request(format!("{base}/allowed/start"))
    };
    let (frames, end) = drain(client.stream_rest_api(linked).await?.into_inner()).await;
    assert_frame_eq(&rows(&frames).0, &expected(&[1]));
    ended_with(end, Code::PermissionDenied, "/elsewhere");
    worker.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_are_refused_before_anything_is_fetched() -> anyhow::Result<()> {
    let peer = Peer::default();
    let (base, _) = serve(peer.clone()).await?;
    let worker = loopback_worker(|_| {}).await?;
    let mut client = worker.client().await?;
    let feed = || request(format!("{base}/feed"));
    for (bad, code, says) in [
        (
            pb::RestApiRequest {
                schema_json: r#"{"id": "Nope"}"#.into(),
                ..feed()
            },
            Code::InvalidArgument,
            "Nope",
        ),
        (
            pb::RestApiRequest {
                schema_json: "[1]".into(),
                ..feed()
            },
            Code::InvalidArgument,
            "schema_json (6): field 0",
        ),
        (
            pb::RestApiRequest {
                format: 42,
                ..feed()
            },
            Code::InvalidArgument,
            "unknown MessageFormat 42",
        ),
        (
            pb::RestApiRequest {
                poll_interval_ms: Some(-5),
                ..feed()
            },
            Code::InvalidArgument,
            "poll_interval_ms (16) must be positive",
        ),
        (
            pb::RestApiRequest {
                url: "ftp://example.com/x".into(),
                ..feed()
            },
            Code::InvalidArgument,
            "not http or https",
        ),
    ] {
        let refused = client.stream_rest_api(bad).await.map(|_| ());
        ended_with(refused, code, says);
    }
    assert_eq!(peer.requests.load(Ordering::SeqCst), 0);
    worker.stop().await
}
