//! The coordinator benchmark: what the extra hop costs a trivial call, collect throughput
//! of a large result through the coordinator against straight from its worker, and
//! trivial-call throughput with several workers and many concurrent clients.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use polaroid_coordinator::CoordinatorConfig;
use polaroid_proto::flight::{self as fl, flight_service_client::FlightServiceClient};
use polaroid_proto::v1::{self as pb, cluster_service_client::ClusterServiceClient};
use polaroid_worker::{HandleStoreKind, WorkerConfig};
use polars::prelude::*;

use crate::{
    BenchServer, Client, client_of, latency_row, micros, percentile, read_parquet, upload,
};

pub struct Options {
    pub data_dir: PathBuf,
    pub workers: usize,
    pub trivial_iterations: usize,
    pub collect_bytes: usize,
    pub repetitions: usize,
    pub clients: usize,
    pub duration: Duration,
    /// The coordinator's `keep_warm_micros`.
    pub keep_warm_micros: u64,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn served_by<T>(response: &tonic::Response<T>) -> String {
    response
        .metadata()
        .get(polaroid_proto::WORKER_METADATA)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned()
}

/// Two i64 columns: `bytes` of data in memory.
fn generate(path: &Path, bytes: usize) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let rows = (bytes / 16) as i64;
    eprintln!("generating {rows} rows into {}", path.display());
    let mut df = df!(
        "id" => (0..rows).collect::<Vec<_>>(),
        "x" => (0..rows).map(|i| i.wrapping_mul(0x9e37_79b9)).collect::<Vec<_>>(),
    )?;
    let temp = path.with_extension("tmp");
    ParquetWriter::new(std::fs::File::create(&temp)?).finish(&mut df)?;
    std::fs::rename(temp, path)?;
    Ok(())
}

/// Collects `handle` and returns the Arrow IPC bytes received (not decoded: this measures
/// the transport).
async fn collect_bytes(client: &mut Client, handle: &str) -> anyhow::Result<usize> {
    let mut stream = client
        .collect(pb::CollectRequest {
            handle: handle.into(),
            limit: None,
        })
        .await?
        .into_inner();
    let mut bytes = 0;
    while let Some(batch) = stream.message().await? {
        bytes += batch.arrow_ipc.len();
    }
    Ok(bytes)
}

type Flight = FlightServiceClient<tonic::transport::Channel>;

async fn flight_at(uri: &str) -> anyhow::Result<Flight> {
    let address = uri.strip_prefix("grpc+tcp://").unwrap_or(uri);
    let channel = tonic::transport::Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    Ok(FlightServiceClient::new(channel).max_decoding_message_size(usize::MAX))
}

/// Fetches `handle` with Flight `DoGet` and returns the Arrow bytes received.
async fn flight_bytes(flight: &mut Flight, handle: &str) -> anyhow::Result<usize> {
    let ticket = fl::Ticket {
        ticket: handle.to_owned().into(),
    };
    let mut stream = flight.do_get(ticket).await?.into_inner();
    let mut bytes = 0;
    while let Some(message) = stream.message().await? {
        bytes += message.data_header.len() + message.data_body.len();
    }
    Ok(bytes)
}

/// Asks the coordinator where `handle`'s rows are (GetFlightInfo), then fetches them from
/// the first location, as a Flight client does.
async fn flight_via_info(coordinator: &mut Flight, handle: &str) -> anyhow::Result<usize> {
    let descriptor = fl::FlightDescriptor {
        r#type: fl::flight_descriptor::DescriptorType::Path as i32,
        path: vec![handle.to_owned()],
        ..Default::default()
    };
    let info = coordinator.get_flight_info(descriptor).await?.into_inner();
    let endpoint = info
        .endpoint
        .first()
        .ok_or_else(|| anyhow::anyhow!("no endpoint"))?;
    let location = endpoint
        .location
        .first()
        .ok_or_else(|| anyhow::anyhow!("no location"))?;
    flight_bytes(&mut flight_at(&location.uri).await?, handle).await
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir)?;
    let data_dir = std::fs::canonicalize(&options.data_dir)?;
    let scratch = tempfile::Builder::new()
        .prefix("cluster-bench-")
        .tempdir_in(&data_dir)?;
    let source = data_dir.join(format!(
        "cluster-{}mib.parquet",
        options.collect_bytes >> 20
    ));
    generate(&source, options.collect_bytes)?;

    let coordinator = BenchServer::coordinator(CoordinatorConfig {
        bind_address: "127.0.0.1:0".parse()?,
        http_address: "127.0.0.1:0".parse()?,
        keep_warm_micros: options.keep_warm_micros,
        ..Default::default()
    })
    .await?;
    let mut workers = Vec::new();
    for index in 0..options.workers {
        workers.push(
            BenchServer::worker(WorkerConfig {
                coordinator_url: format!("http://{}", coordinator.address()),
                worker_id: format!("bench-{index}"),
                load_report_interval_secs: 0.5,
                handle_store: HandleStoreKind::External,
                state_dir: scratch.path().join("state"),
                data_roots: vec![data_dir.clone()],
                cache_bytes: 3 * options.collect_bytes.max(1 << 30),
                max_result_bytes: 4 * options.collect_bytes.max(1 << 30),
                // One process: the coordinator's threads keep its CPUs warm for all, as
                // in `polaroid standalone`.
                keep_warm_micros: 0,
                ..Default::default()
            })
            .await?,
        );
    }
    let mut membership =
        ClusterServiceClient::connect(format!("http://{}", coordinator.address())).await?;
    let addresses: HashMap<String, String> = loop {
        let live = membership
            .list_workers(pb::ListWorkersRequest {})
            .await?
            .into_inner()
            .workers;
        if live.len() == options.workers {
            break live.into_iter().map(|w| (w.worker_id, w.address)).collect();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let mut via_coordinator = coordinator.client().await?;

    // The extra hop: the same trivial call on the same worker, through the coordinator
    // and straight, interleaved so both see the same machine.
    let small = df!("a" => [1i64, 2, 3])?;
    let handle = upload(&mut via_coordinator, &small).await?;
    let request = || pb::GetSchemaRequest {
        handle: handle.clone(),
    };
    let owner = served_by(&via_coordinator.get_schema(request()).await?);
    let mut direct = client_of(addresses[&owner].parse()?).await?;
    let (mut hop, mut straight) = (Vec::new(), Vec::new());
    for _ in 0..options.trivial_iterations {
        let start = Instant::now();
        via_coordinator.get_schema(request()).await?;
        hop.push(start.elapsed());
        let start = Instant::now();
        direct.get_schema(request()).await?;
        straight.push(start.elapsed());
    }
    hop.sort();
    straight.sort();
    latency_row(
        "trivial call (GetSchema) through the coordinator, p50 / p99",
        &hop,
    );
    latency_row("the same call straight to its worker, p50 / p99", &straight);
    println!(
        "| extra hop, p50 through minus p50 straight | {:.0} µs |",
        micros(percentile(&hop, 0.5)) - micros(percentile(&straight, 0.5))
    );

    // Collect throughput of a large result, cached on its worker.
    let large = read_parquet(&mut via_coordinator, &source).await?;
    let owner = served_by(
        &via_coordinator
            .get_schema(pb::GetSchemaRequest {
                handle: large.clone(),
            })
            .await?,
    );
    let mut direct = client_of(addresses[&owner].parse()?).await?;
    let expected = collect_bytes(&mut via_coordinator, &large).await?;
    let coordinator_uri = format!("grpc+tcp://{}", coordinator.address());
    let mut flight_coordinator = flight_at(&coordinator_uri).await?;
    let mut flight_direct = flight_at(&addresses[&owner]).await?;
    let flight_expected = flight_bytes(&mut flight_direct, &large).await?;
    let (mut through, mut straight) = (Vec::new(), Vec::new());
    let (mut flight_through, mut flight_straight) = (Vec::new(), Vec::new());
    for _ in 0..options.repetitions {
        let start = Instant::now();
        anyhow::ensure!(collect_bytes(&mut direct, &large).await? == expected);
        straight.push(start.elapsed());
        let start = Instant::now();
        anyhow::ensure!(collect_bytes(&mut via_coordinator, &large).await? == expected);
        through.push(start.elapsed());
        let start = Instant::now();
        anyhow::ensure!(flight_bytes(&mut flight_direct, &large).await? == flight_expected);
        flight_straight.push(start.elapsed());
        let start = Instant::now();
        anyhow::ensure!(flight_via_info(&mut flight_coordinator, &large).await? == flight_expected);
        flight_through.push(start.elapsed());
    }
    let gib = expected as f64 / f64::from(1u32 << 30);
    let (through, straight) = (median(through), median(straight));
    let (flight_through, flight_straight) = (median(flight_through), median(flight_straight));
    println!(
        "| collect of a {gib:.2} GiB result (Arrow IPC), straight from its worker, median of {} | {:.2} s ({:.2} GiB/s) |",
        options.repetitions,
        straight.as_secs_f64(),
        gib / straight.as_secs_f64()
    );
    println!(
        "| the same through the coordinator | {:.2} s ({:.2} GiB/s) |",
        through.as_secs_f64(),
        gib / through.as_secs_f64()
    );
    println!(
        "| collect throughput ratio, through / straight | {:.2} |",
        straight.as_secs_f64() / through.as_secs_f64()
    );
    let flight_gib = flight_expected as f64 / f64::from(1u32 << 30);
    println!(
        "| Flight DoGet of the same result ({flight_gib:.2} GiB), straight from its worker | {:.2} s ({:.2} GiB/s) |",
        flight_straight.as_secs_f64(),
        flight_gib / flight_straight.as_secs_f64()
    );
    println!(
        "| Flight through the coordinator: GetFlightInfo there, DoGet at the first location | {:.2} s ({:.2} GiB/s) |",
        flight_through.as_secs_f64(),
        flight_gib / flight_through.as_secs_f64()
    );
    println!(
        "| ratio, Flight through the coordinator / Collect straight (throughput) | {:.2} |",
        straight.as_secs_f64() / flight_through.as_secs_f64()
    );
    println!(
        "| ratio, Flight through the coordinator / Flight straight (throughput) | {:.2} |",
        flight_straight.as_secs_f64() / flight_through.as_secs_f64()
    );

    // Many clients: trivial calls on handles spread over every worker.
    let mut handles = Vec::new();
    for i in 0..(options.workers * 10) {
        handles.push(upload(&mut via_coordinator, &df!("a" => [i as i64])?).await?);
    }
    let channels = 8.min(options.clients.max(1));
    let mut clients = Vec::new();
    for _ in 0..channels {
        clients.push(coordinator.client().await?);
    }
    let deadline = Instant::now() + options.duration;
    let started = Instant::now();
    let tasks = (0..options.clients).map(|task| {
        let mut client = clients[task % channels].clone();
        let handles = handles.clone();
        tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut turn = task;
            while Instant::now() < deadline {
                let request = pb::GetSchemaRequest {
                    handle: handles[turn % handles.len()].clone(),
                };
                turn += 1;
                let start = Instant::now();
                client.get_schema(request).await?;
                latencies.push(start.elapsed());
            }
            anyhow::Ok(latencies)
        })
    });
    let mut latencies = Vec::new();
    let mut results = futures::stream::iter(tasks).buffer_unordered(options.clients.max(1));
    while let Some(result) = results.next().await {
        latencies.extend(result??);
    }
    let elapsed = started.elapsed();
    latencies.sort();
    println!(
        "| trivial calls through the coordinator, {} workers, {} concurrent clients | {:.0} calls/s, p50 {:.0} µs, p99 {:.0} µs |",
        options.workers,
        options.clients,
        latencies.len() as f64 / elapsed.as_secs_f64(),
        micros(percentile(&latencies, 0.5)),
        micros(percentile(&latencies, 0.99))
    );

    for worker in workers {
        worker.stop().await?;
    }
    coordinator.stop().await?;
    Ok(())
}
