//! Arrow Flight through a real tonic Flight client over real sockets: rows fetched with
//! `DoGet` equal Polars computing the same thing, `GetFlightInfo` on a coordinator names
//! the owning worker first, uploads with `DoPut` become handles, and bad input gets a
//! precise status while the worker keeps serving.

use bytes::Bytes;
use futures::StreamExt;
use polaroid_proto::flight::{self as fl, flight_service_client::FlightServiceClient};
use polaroid_proto::v1 as pb;
use std::time::Duration;

use polaroid_tests::{
    Client, TestCluster, TestWorker, assert_frame_eq, collect, e, eventually, from_ipc, grpc_frame,
    list_workers, raw_grpc_call, served_by, upload,
};
use polars::prelude::*;
use tonic::Code;
use tonic::transport::Channel;

type Flight = FlightServiceClient<Channel>;

async fn flight_at(address: std::net::SocketAddr) -> anyhow::Result<Flight> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    Ok(FlightServiceClient::new(channel).max_decoding_message_size(usize::MAX))
}

fn frame(rows: i64) -> DataFrame {
    df!(
        "id" => (0..rows).collect::<Vec<_>>(),
        "name" => (0..rows).map(|i| format!("name-{i}")).collect::<Vec<_>>(),
        "score" => (0..rows).map(|i| (i % 7 != 0).then_some(i as f64 / 3.0)).collect::<Vec<_>>(),
    )
    .unwrap()
}

fn path_descriptor(handle: &str) -> fl::FlightDescriptor {
    fl::FlightDescriptor {
        r#type: fl::flight_descriptor::DescriptorType::Path as i32,
        cmd: Bytes::new(),
        path: vec![handle.to_owned()],
    }
}

fn ticket(handle: &str) -> fl::Ticket {
    fl::Ticket {
        ticket: Bytes::copy_from_slice(handle.as_bytes()),
    }
}

/// Flight messages put back together as one Arrow IPC stream.
fn ipc_stream(messages: &[fl::FlightData]) -> Vec<u8> {
    let mut stream = Vec::new();
    for message in messages {
        let padded = message.data_header.len().next_multiple_of(8);
        stream.extend_from_slice(&[0xff; 4]);
        stream.extend_from_slice(&(padded as i32).to_le_bytes());
        stream.extend_from_slice(&message.data_header);
        stream.resize(stream.len() + padded - message.data_header.len(), 0);
        stream.extend_from_slice(&message.data_body);
    }
    stream.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    stream
}

async fn do_get(flight: &mut Flight, handle: &str) -> Result<Vec<fl::FlightData>, tonic::Status> {
    let mut stream = flight.do_get(ticket(handle)).await?.into_inner();
    let mut messages = Vec::new();
    while let Some(message) = stream.message().await? {
        messages.push(message);
    }
    Ok(messages)
}

async fn do_put(
    flight: &mut Flight,
    messages: Vec<fl::FlightData>,
) -> Result<String, tonic::Status> {
    let mut results = flight
        .do_put(futures::stream::iter(messages))
        .await?
        .into_inner();
    let result = results
        .message()
        .await?
        .ok_or_else(|| tonic::Status::internal("DoPut answered no PutResult"))?;
    Ok(String::from_utf8(result.app_metadata.to_vec()).expect("a handle is UTF-8"))
}

/// A client stream that sends `messages` and then stays open.
fn open_after<T: Send + 'static>(messages: Vec<T>) -> impl futures::Stream<Item = T> + Send {
    futures::stream::iter(messages).chain(futures::stream::pending())
}

/// A request whose client stream sends `messages` and stays open, within a deadline.
fn open_request<T: Send + 'static>(
    messages: Vec<T>,
) -> tonic::Request<impl futures::Stream<Item = T> + Send> {
    let mut request = tonic::Request::new(open_after(messages));
    request.set_timeout(Duration::from_secs(20));
    request
}

/// The files stored under `root`, by path relative to it.
fn files_under(root: &std::path::Path) -> std::collections::BTreeSet<std::path::PathBuf> {
    polaroid_tests::files_under(root)
        .into_iter()
        .filter_map(|(path, _)| path.strip_prefix(root).ok().map(|p| p.to_path_buf()))
        .collect()
}

async fn filtered(client: &mut Client, handle: &str, min_id: i64) -> anyhow::Result<String> {
    Ok(client
        .filter(pb::FilterRequest {
            handle: handle.to_owned(),
            predicate: Some(e::binary(
                e::col("id"),
                pb::BinaryOperator::Gte,
                e::int(min_id),
            )),
        })
        .await?
        .into_inner()
        .handle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_get_fetches_the_rows_polars_computes_in_messages_under_the_limit() -> anyhow::Result<()>
{
    const LIMIT: usize = 64 * 1024;
    let worker = TestWorker::start_with(|c| c.max_response_message_bytes = LIMIT).await?;
    let mut client = worker.client().await?;
    let mut flight = flight_at(worker.address).await?;
    let input = frame(20_000);
    let source = upload(&mut client, &input).await?;
    let handle = filtered(&mut client, &source, 1_000).await?;
    let expected = input.lazy().filter(col("id").gt_eq(lit(1_000))).collect()?;

    let info = flight
        .get_flight_info(path_descriptor(&handle))
        .await?
        .into_inner();
    // The encapsulated schema plus an end marker is a stream of no batches.
    let mut schema_only = info.schema.to_vec();
    schema_only.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0]);
    assert_eq!(from_ipc(&schema_only).schema(), expected.schema());
    let [endpoint] = info.endpoint.as_slice() else {
        panic!("one endpoint: {:?}", info.endpoint);
    };
    assert_eq!(endpoint.ticket, Some(ticket(&handle)));
    let locations: Vec<&str> = endpoint.location.iter().map(|l| l.uri.as_str()).collect();
    let here = format!("grpc+tcp://{}", worker.address);
    assert_eq!(
        locations,
        [here.as_str(), "arrow-flight-reuse-connection://?"]
    );
    let schema = flight
        .get_schema(fl::FlightDescriptor {
            r#type: fl::flight_descriptor::DescriptorType::Cmd as i32,
            cmd: Bytes::copy_from_slice(handle.as_bytes()),
            path: vec![],
        })
        .await?
        .into_inner();
    assert_eq!(schema.schema, info.schema);

    let messages = do_get(&mut flight, &handle).await?;
    assert!(messages.len() > 5, "{} messages", messages.len());
    assert!(messages[0].data_body.is_empty(), "the schema comes first");
    for message in &messages {
        assert!(
            message.data_header.len() + message.data_body.len() <= LIMIT,
            "a message of {} bytes",
            message.data_header.len() + message.data_body.len()
        );
    }
    assert_frame_eq(&from_ipc(&ipc_stream(&messages)), &expected);

    // An empty result is its schema alone.
    let none = filtered(&mut client, &source, 1_000_000).await?;
    let messages = do_get(&mut flight, &none).await?;
    assert_eq!(messages.len(), 1);
    assert_frame_eq(&from_ipc(&ipc_stream(&messages)), &expected.head(Some(0)));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_put_uploads_rows_as_a_new_handle() -> anyhow::Result<()> {
    let worker = TestWorker::start_with(|c| c.max_response_message_bytes = 16 * 1024).await?;
    let mut client = worker.client().await?;
    let mut flight = flight_at(worker.address).await?;
    let input = frame(3_000);
    let source = upload(&mut client, &input).await?;

    // What DoGet sends is what a Flight client uploads: schema, then batches.
    let mut messages = do_get(&mut flight, &source).await?;
    messages[0].flight_descriptor = Some(path_descriptor("scores"));
    let handle = do_put(&mut flight, messages.clone()).await?;
    assert_ne!(handle, source);
    assert_frame_eq(&collect(&mut client, &handle).await?, &input);
    let described = client
        .get_handle_info(pb::HandleInfoRequest {
            handle: handle.clone(),
        })
        .await?
        .into_inner();
    assert_eq!(described.rows, Some(3_000));

    // Over the upload limit: refused, and nothing half-made is left behind.
    let state = tempfile::tempdir()?;
    let small = TestWorker::start_with(|c| {
        c.max_upload_bytes = 4 * 1024;
        c.handle_store = polaroid_worker::HandleStoreKind::External;
        c.state_dir = state.path().to_path_buf();
    })
    .await?;
    let mut small_flight = flight_at(small.address).await?;
    let refused = do_put(&mut small_flight, messages.clone())
        .await
        .expect_err("over the limit");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused:?}");
    assert!(refused.message().contains("limit"), "{refused:?}");
    assert!(files_under(state.path()).is_empty(), "nothing stored");

    // Malformed uploads are the client's error.
    let cases: Vec<(Vec<fl::FlightData>, &str)> = vec![
        (vec![], "no Arrow messages"),
        (
            vec![fl::FlightData {
                data_header: Bytes::from_static(b"not a flatbuffer at all"),
                ..Default::default()
            }],
            "not a valid Arrow IPC",
        ),
        (
            vec![fl::FlightData {
                data_body: Bytes::from_static(&[0; 8]),
                ..Default::default()
            }],
            "no data_header",
        ),
        // Batches without their schema.
        (messages[1..].to_vec(), "not a valid Arrow IPC"),
    ];
    for (upload, reason) in cases {
        let status = do_put(&mut flight, upload).await.expect_err(reason);
        assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
        assert!(status.message().contains(reason), "{status:?}");
    }
    // Still serving.
    assert_frame_eq(&collect(&mut client, &handle).await?, &input);
    Ok(())
}

/// Calls of `method` the worker has finished (answered, or dropped when the client left).
async fn finished_calls(worker: &TestWorker, method: &str) -> anyhow::Result<f64> {
    let text = polaroid_tests::http_get(worker.http_address, "/metrics").await?;
    Ok(polaroid_tests::metric_sum(
        &text,
        "polaroid_grpc_requests_total",
        &[("method", method)],
    ))
}

/// Calls the worker is serving now.
async fn calls_in_flight(worker: &TestWorker) -> anyhow::Result<f64> {
    let text = polaroid_tests::http_get(worker.http_address, "/metrics").await?;
    Ok(polaroid_tests::metric_sum(
        &text,
        "polaroid_grpc_in_flight_requests",
        &[("role", "worker")],
    ))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_cancelled_midway_stores_nothing() -> anyhow::Result<()> {
    let state = tempfile::tempdir()?;
    let worker = TestWorker::start_with(|c| {
        c.max_response_message_bytes = 16 * 1024;
        c.handle_store = polaroid_worker::HandleStoreKind::External;
        c.state_dir = state.path().to_path_buf();
    })
    .await?;
    let mut client = worker.client().await?;
    let mut flight = flight_at(worker.address).await?;
    let input = frame(3_000);
    let source = upload(&mut client, &input).await?;
    let messages = do_get(&mut flight, &source).await?;
    anyhow::ensure!(messages.len() > 2, "the frame takes several messages");
    let stored = files_under(state.path());
    let (puts, uploads) = (
        finished_calls(&worker, "DoPut").await?,
        finished_calls(&worker, "UploadArrow").await?,
    );

    // What arrives before the client goes away is a valid stream on its own in both
    // calls: the schema and a first batch (DoPut), a whole IPC stream (UploadArrow).
    let mut put_client = flight.clone();
    let partial = messages[..2].to_vec();
    let put = tokio::spawn(async move { put_client.do_put(open_after(partial)).await });
    let mut upload_client = client.clone();
    let first_chunk = pb::UploadArrowChunk {
        data: polaroid_tests::to_ipc(&input.head(Some(100))).into(),
        name: None,
    };
    let upload_call = tokio::spawn(async move {
        upload_client
            .upload_arrow(open_after(vec![first_chunk]))
            .await
    });
    eventually(
        "both uploads under way",
        Duration::from_secs(20),
        || async { Ok(calls_in_flight(&worker).await? >= 2.0) },
    )
    .await?;
    put.abort();
    upload_call.abort();
    eventually("both calls ended", Duration::from_secs(20), || async {
        Ok(finished_calls(&worker, "DoPut").await? > puts
            && finished_calls(&worker, "UploadArrow").await? > uploads)
    })
    .await?;
    assert_eq!(files_under(state.path()), stored, "nothing stored");

    // Still serving: the same upload, finished, makes a handle.
    let handle = do_put(&mut flight, messages).await?;
    assert_frame_eq(&collect(&mut client, &handle).await?, &input);
    assert!(files_under(state.path()).is_superset(&stored));
    assert!(files_under(state.path()).len() > stored.len());
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tickets_and_descriptors_get_precise_statuses() -> anyhow::Result<()> {
    let worker = TestWorker::start().await?;
    let mut client = worker.client().await?;
    let mut flight = flight_at(worker.address).await?;
    let handle = upload(&mut client, &frame(10)).await?;

    let not_utf8 = flight
        .do_get(fl::Ticket {
            ticket: Bytes::from_static(&[0xff, 0xfe]),
        })
        .await
        .expect_err("not UTF-8");
    assert_eq!(not_utf8.code(), Code::InvalidArgument, "{not_utf8:?}");
    let malformed = do_get(&mut flight, "not-a-handle")
        .await
        .expect_err("malformed");
    assert_eq!(malformed.code(), Code::InvalidArgument, "{malformed:?}");
    client
        .drop_handle(pb::DropHandleRequest {
            handle: handle.clone(),
        })
        .await?;
    let dropped = do_get(&mut flight, &handle).await.expect_err("dropped");
    assert_eq!(dropped.code(), Code::NotFound, "{dropped:?}");
    let two = fl::FlightDescriptor {
        path: vec![handle.clone(), handle.clone()],
        ..path_descriptor("")
    };
    let status = flight.get_flight_info(two).await.expect_err("two handles");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().contains("one Polaroid handle"),
        "{status:?}"
    );
    let unknown_type = fl::FlightDescriptor {
        r#type: 0,
        ..path_descriptor(&handle)
    };
    let status = flight.get_schema(unknown_type).await.expect_err("UNKNOWN");
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");

    let status = flight
        .list_flights(fl::Criteria::default())
        .await
        .expect_err("not listed");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let status = flight
        .do_action(fl::Action {
            r#type: "drop".into(),
            body: Bytes::new(),
        })
        .await
        .expect_err("no actions");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    let actions: Vec<_> = flight
        .list_actions(fl::Empty {})
        .await?
        .into_inner()
        .collect()
        .await;
    assert!(actions.is_empty());

    // Still serving.
    let fresh = upload(&mut client, &frame(10)).await?;
    assert_frame_eq(
        &from_ipc(&ipc_stream(&do_get(&mut flight, &fresh).await?)),
        &frame(10),
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_names_the_owning_worker_and_also_serves_the_rows() -> anyhow::Result<()> {
    let cluster = TestCluster::start(3, &[], &[]).await?;
    let mut client = cluster.client().await?;
    let mut through_coordinator = flight_at(cluster.coordinator.address).await?;
    let workers = list_workers(cluster.coordinator.address).await?;
    for rows in [10, 200, 3_000] {
        let input = frame(rows);
        let response = client
            .create_from_arrow(pb::CreateFromArrowRequest {
                arrow_ipc: polaroid_tests::to_ipc(&input).into(),
                name: None,
            })
            .await?;
        let owner = served_by(&response);
        let handle = response.into_inner().handle;
        let owner_address = &workers
            .iter()
            .find(|w| w.worker_id == owner)
            .expect("the owner is a live worker")
            .address;

        let info = through_coordinator
            .get_flight_info(path_descriptor(&handle))
            .await?
            .into_inner();
        let locations: Vec<&str> = info.endpoint[0]
            .location
            .iter()
            .map(|l| l.uri.as_str())
            .collect();
        let first = format!("grpc+tcp://{owner_address}");
        assert_eq!(
            locations,
            [first.as_str(), "arrow-flight-reuse-connection://?"]
        );

        // Fetched where the first location says, and through the coordinator.
        let mut at_owner = flight_at(owner_address.parse()?).await?;
        let direct = do_get(&mut at_owner, &handle).await?;
        assert_frame_eq(&from_ipc(&ipc_stream(&direct)), &input);
        let relayed = do_get(&mut through_coordinator, &handle).await?;
        assert_frame_eq(&from_ipc(&ipc_stream(&relayed)), &input);
    }

    // An upload through the coordinator lands on a worker and collects anywhere.
    let input = frame(500);
    let source = upload(&mut client, &input).await?;
    let messages = do_get(&mut through_coordinator, &source).await?;
    let handle = do_put(&mut through_coordinator, messages).await?;
    assert_frame_eq(&collect(&mut client, &handle).await?, &input);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_coordinator_forwards_bidirectional_calls_without_reading_ahead() -> anyhow::Result<()> {
    let cluster = TestCluster::start(1, &[], &[]).await?;
    let mut through_coordinator = flight_at(cluster.coordinator.address).await?;
    // A client of a bidirectional call may wait for an answer before it sends more (a
    // handshake does): its stream is forwarded as it comes, not held for a first or second
    // message, so it hears the worker's answer (a handshake's reply, an exchange's
    // UNIMPLEMENTED) while its own stream is still open, rather than its deadline.
    for sent in [vec![], vec![fl::HandshakeRequest::default()]] {
        let mut replies = through_coordinator
            .handshake(open_request(sent))
            .await?
            .into_inner();
        let reply = replies.message().await?;
        assert!(reply.is_some(), "a handshake is answered with one reply");
    }
    let status = through_coordinator
        .do_exchange(open_request(vec![fl::FlightData::default()]))
        .await
        .expect_err("no exchange");
    assert_eq!(status.code(), Code::Unimplemented, "{status:?}");
    Ok(())
}

const FLIGHT_DO_GET: &str = "/arrow.flight.protocol.FlightService/DoGet";
const FLIGHT_GET_SCHEMA: &str = "/arrow.flight.protocol.FlightService/GetSchema";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_get_requests_malformed_as_grpc_get_precise_statuses() -> anyhow::Result<()> {
    use prost::Message;
    let worker = TestWorker::start_with(|c| c.max_request_message_bytes = 4096).await?;
    let mut client = worker.client().await?;
    let mut flight = flight_at(worker.address).await?;
    let handle = upload(&mut client, &frame(10)).await?;
    let one_ticket = grpc_frame(false, &ticket(&handle).encode_to_vec());

    // DoGet's frames are made by hand on the worker; a whole call made by hand gets them.
    let answer = raw_grpc_call(worker.address, FLIGHT_DO_GET, &[], one_ticket.clone()).await?;
    assert_eq!(answer.code, Code::Ok, "{}", answer.message);
    assert!(answer.in_trailers, "the status follows the messages");
    assert_eq!(answer.content_type.as_deref(), Some("application/grpc"));
    let mut data = &answer.data[..];
    let mut messages = Vec::new();
    while !data.is_empty() {
        assert_eq!(data[0], 0, "uncompressed");
        let length = u32::from_be_bytes(data[1..5].try_into()?) as usize;
        messages.push(fl::FlightData::decode(&data[5..5 + length])?);
        data = &data[5 + length..];
    }
    assert_eq!(messages, do_get(&mut flight, &handle).await?);
    assert_frame_eq(&from_ipc(&ipc_stream(&messages)), &frame(10));

    let none = raw_grpc_call(worker.address, FLIGHT_DO_GET, &[], Vec::new()).await?;
    assert_eq!(none.code, Code::InvalidArgument, "{}", none.message);
    assert!(none.message.contains("no message"), "{}", none.message);
    let two = raw_grpc_call(worker.address, FLIGHT_DO_GET, &[], one_ticket.repeat(2)).await?;
    assert_eq!(two.code, Code::InvalidArgument, "{}", two.message);
    assert!(two.message.contains("more than one"), "{}", two.message);

    // A frame cut short, garbage, a compressed flag without an encoding, an oversized
    // ticket, a compressed request: what the generated services answer (GetSchema's
    // request is read the same way), and nothing sent.
    let oversized = grpc_frame(false, &ticket(&"h".repeat(5000)).encode_to_vec());
    for (headers, body) in [
        (&[][..], one_ticket[..one_ticket.len() - 1].to_vec()),
        (&[][..], grpc_frame(false, &[0xff, 0xff, 0xff])),
        (&[][..], grpc_frame(true, &ticket(&handle).encode_to_vec())),
        (&[][..], oversized),
        (&[("grpc-encoding", "gzip")][..], grpc_frame(true, b"gzip?")),
    ] {
        let here = raw_grpc_call(worker.address, FLIGHT_DO_GET, headers, body.clone()).await?;
        let generated = raw_grpc_call(worker.address, FLIGHT_GET_SCHEMA, headers, body).await?;
        assert_ne!(here.code, Code::Ok, "{}", here.message);
        assert_eq!(
            (here.code, &here.message),
            (generated.code, &generated.message)
        );
        assert!(here.data.is_empty() && !here.in_trailers);
    }

    // Still serving.
    assert_eq!(do_get(&mut flight, &handle).await?, messages);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn do_get_ends_with_the_error_that_stopped_it_midway() -> anyhow::Result<()> {
    const LIMIT: usize = 4096;
    let worker = TestWorker::start_with(|c| c.max_response_message_bytes = LIMIT).await?;
    let mut client = worker.client().await?;
    let mut flight = flight_at(worker.address).await?;
    // Rows that fit, then one that cannot fit in any message.
    let names: Vec<String> = (0..200)
        .map(|i| match i {
            150 => "x".repeat(3 * LIMIT),
            _ => format!("name-{i}"),
        })
        .collect();
    let input = df!("id" => (0..200i64).collect::<Vec<_>>(), "name" => names)?;
    let handle = upload(&mut client, &input).await?;

    let mut stream = flight.do_get(ticket(&handle)).await?.into_inner();
    let mut received = 0;
    let error = loop {
        match stream.message().await {
            Ok(Some(_)) => received += 1,
            Ok(None) => panic!("the stream ended without its error"),
            Err(status) => break status,
        }
    };
    assert!(
        received >= 2,
        "the schema and rows before the error came first"
    );
    assert_eq!(error.code(), Code::ResourceExhausted, "{error:?}");
    assert!(error.message().contains("row 150"), "{error:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_the_client_abandons_ends_on_the_worker() -> anyhow::Result<()> {
    let worker = TestWorker::start_with(|c| c.max_response_message_bytes = 16 * 1024).await?;
    let mut client = worker.client().await?;
    let mut flight = flight_at(worker.address).await?;
    // About 30 MB: far more than the connection's windows and socket buffers hold, so
    // most of it is still to come when the client leaves.
    let handle = upload(&mut client, &frame(1_000_000)).await?;
    let fetches = finished_calls(&worker, "DoGet").await?;
    let mut stream = flight.do_get(ticket(&handle)).await?.into_inner();
    assert!(stream.message().await?.is_some(), "the schema");
    drop(stream);
    eventually("the fetch ended", Duration::from_secs(20), || async {
        Ok(finished_calls(&worker, "DoGet").await? > fetches
            && calls_in_flight(&worker).await? == 0.0)
    })
    .await?;

    // Still serving.
    let small = upload(&mut client, &frame(10)).await?;
    let messages = do_get(&mut flight, &small).await?;
    assert_frame_eq(&from_ipc(&ipc_stream(&messages)), &frame(10));
    Ok(())
}
