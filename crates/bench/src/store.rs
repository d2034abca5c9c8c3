//! The shared-store benchmark: artifact throughput of the filesystem store against plain
//! sequential file I/O of the same bytes, handle creation latency on that store, and the
//! core pipeline served by a worker with a cold cache versus a warm one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use polaroid_proto::v1::{self as pb, PlanNode, PlanStep, plan_step::Op};
use polaroid_store::{
    AffinityKey, Catalog, FsStore, Handle, HandleRecord, PlanId, ResultStore, TenantId,
};
use polaroid_worker::{HandleStoreKind, WorkerConfig};

use crate::{
    BenchServer, build_pipeline, collect, dimension, generate, latency_row, local_pipeline,
    read_parquet, upload,
};

pub struct Options {
    pub data_dir: PathBuf,
    pub artifact_bytes: usize,
    pub repetitions: usize,
    pub handle_iterations: usize,
    pub rows: usize,
    pub pipeline_iterations: usize,
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

fn gib_per_s(bytes: usize, time: Duration) -> f64 {
    bytes as f64 / (1u64 << 30) as f64 / time.as_secs_f64()
}

/// Incompressible bytes, so no layer can shortcut them.
fn noise(len: usize) -> Bytes {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = Vec::with_capacity(len + 8);
    while bytes.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        bytes.extend_from_slice(&state.to_le_bytes());
    }
    bytes.truncate(len);
    Bytes::from(bytes)
}

fn plain_write(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = std::fs::File::create(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// A new file made durable on its own, as the filesystem store wrote every record before
/// its journal: temp file, `fsync`, rename, directory `fsync`.
fn durable_new_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let temp = path.with_extension("tmp");
    plain_write(&temp, bytes)?;
    std::fs::rename(&temp, path)?;
    std::fs::File::open(path.parent().unwrap_or(Path::new("/")))?.sync_all()
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    std::fs::create_dir_all(&options.data_dir)?;
    let data_dir = options.data_dir.canonicalize()?;
    let scratch = data_dir.join("store-bench");
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;

    println!("| measure | value |");
    println!("|---|---|");
    throughput(&scratch, &options).await?;
    handle_creation(&scratch, &options).await?;
    pipeline_cold_and_warm(&data_dir, &scratch, &options).await?;
    std::fs::remove_dir_all(&scratch)?;
    Ok(())
}

/// Put and get of one large artifact, interleaved with the same plain file I/O.
async fn throughput(scratch: &Path, options: &Options) -> anyhow::Result<()> {
    let bytes = noise(options.artifact_bytes);
    let store = FsStore::new(scratch.join("throughput"))?;
    let plain = scratch.join("plain.bin");
    let key = "t/0000000000000000/artifacts/bench";
    let (mut plain_writes, mut plain_reads, mut puts, mut gets) = (vec![], vec![], vec![], vec![]);
    // One discarded warm-up round, then rounds that alternate which side goes first, so
    // neither gains from the page cache or allocator state the other left behind.
    for round in 0..=options.repetitions {
        let keep = round > 0;
        for side in [round % 2, 1 - round % 2] {
            if side == 0 {
                let start = Instant::now();
                plain_write(&plain, &bytes)?;
                let write = start.elapsed();
                let start = Instant::now();
                let read = std::fs::read(&plain)?;
                let read_time = start.elapsed();
                anyhow::ensure!(read.len() == bytes.len());
                drop(read);
                std::fs::remove_file(&plain)?;
                if keep {
                    plain_writes.push(write);
                    plain_reads.push(read_time);
                }
            } else {
                let start = Instant::now();
                store.put(key, bytes.clone()).await?;
                let put = start.elapsed();
                let start = Instant::now();
                let read = store.get(key).await?.unwrap_or_default();
                let get = start.elapsed();
                anyhow::ensure!(read == bytes, "the store returned other bytes");
                drop(read);
                store.delete(key).await?;
                if keep {
                    puts.push(put);
                    gets.push(get);
                }
            }
        }
    }
    let size = options.artifact_bytes;
    let (plain_write, plain_read) = (median(plain_writes), median(plain_reads));
    let (put, get) = (median(puts), median(gets));
    println!(
        "| artifact size, repetitions (median reported) | {} MiB, {} |",
        size >> 20,
        options.repetitions
    );
    println!(
        "| plain file write + fsync / store put | {:.2} GiB/s / {:.2} GiB/s |",
        gib_per_s(size, plain_write),
        gib_per_s(size, put)
    );
    println!(
        "| put throughput ratio (store / plain) | {:.3} |",
        plain_write.as_secs_f64() / put.as_secs_f64()
    );
    println!(
        "| plain file read / store get | {:.2} GiB/s / {:.2} GiB/s |",
        gib_per_s(size, plain_read),
        gib_per_s(size, get)
    );
    println!(
        "| get throughput ratio (store / plain) | {:.3} |",
        plain_read.as_secs_f64() / get.as_secs_f64()
    );
    Ok(())
}

/// A new handle with a new plan, on the filesystem store: in the catalog, and as a
/// client sees it through a worker (a `Head` call over loopback gRPC).
async fn handle_creation(scratch: &Path, options: &Options) -> anyhow::Result<()> {
    let catalog = Catalog::new(Arc::new(FsStore::new(scratch.join("catalog"))?));
    let tenant = TenantId::from_name("default");
    let own_files = scratch.join("own-files");
    std::fs::create_dir_all(&own_files)?;
    let mut direct = Vec::with_capacity(options.handle_iterations);
    let mut own_file = Vec::with_capacity(options.handle_iterations);
    for i in 0..options.handle_iterations {
        let node = PlanNode {
            step: Some(PlanStep {
                op: Some(Op::Head(pb::HeadRequest {
                    handle: String::new(),
                    n: i as i64,
                })),
            }),
            inputs: vec!["0".repeat(64)],
            source: None,
        };
        let record = HandleRecord {
            plan: PlanId::of(&node).to_string(),
            node: Some(node),
            ..Default::default()
        };
        let handle = Handle::new(tenant, AffinityKey::random());
        let start = Instant::now();
        catalog.create_handle(&handle, &record).await?;
        direct.push(start.elapsed());
        // Interleaved, so both see the same disk.
        let encoded = prost::Message::encode_to_vec(&record);
        let path = own_files.join(i.to_string());
        let start = Instant::now();
        tokio::task::spawn_blocking(move || durable_new_file(&path, &encoded)).await??;
        own_file.push(start.elapsed());
    }
    direct.sort();
    own_file.sort();

    let worker = BenchServer::worker(WorkerConfig {
        handle_store: HandleStoreKind::External,
        state_dir: scratch.join("worker-state"),
        ..Default::default()
    })
    .await?;
    let mut client = worker.client().await?;
    let source = upload(&mut client, &dimension()?).await?;
    let mut through_worker = Vec::with_capacity(options.handle_iterations);
    for i in 0..options.handle_iterations {
        let start = Instant::now();
        client
            .head(pb::HeadRequest {
                handle: source.clone(),
                n: i as i64,
            })
            .await?;
        through_worker.push(start.elapsed());
    }
    through_worker.sort();
    worker.stop().await?;
    latency_row(
        "handle creation, new plan, filesystem store, catalog (the durable handle record; the plan record follows off the caller's path), p50 / p99",
        &direct,
    );
    latency_row(
        "the same record as a durable file of its own (the store's put before its journal), p50 / p99",
        &own_file,
    );
    latency_row(
        "handle creation, new plan, filesystem store, `Head` call through a worker, p50 / p99",
        &through_worker,
    );
    Ok(())
}

/// The core pipeline on an external store: built by one worker, then collected by a
/// fresh worker (cold: plan records read from the store, replayed, computed), by the
/// worker that built it (plans in memory, result computed), and again (result cached).
async fn pipeline_cold_and_warm(
    data_dir: &Path,
    scratch: &Path,
    options: &Options,
) -> anyhow::Result<()> {
    let path = data_dir.join(format!("core-{}.parquet", options.rows));
    generate(&path, options.rows)?;
    let config = || WorkerConfig {
        handle_store: HandleStoreKind::External,
        state_dir: scratch.join("pipeline-state"),
        data_roots: vec![data_dir.to_path_buf()],
        ..Default::default()
    };
    let builder = BenchServer::worker(config()).await?;
    let mut client = builder.client().await?;
    let source = read_parquet(&mut client, &path).await?;
    let dimension_df = dimension()?;
    let dimension_handle = upload(&mut client, &dimension_df).await?;

    let (mut cold, mut warm_plan, mut warm_result, mut local) = (vec![], vec![], vec![], vec![]);
    for i in 0..=options.pipeline_iterations {
        let threshold = 10 + i as i32;
        let start = Instant::now();
        let expected = local_pipeline(&path, &dimension_df, threshold)?;
        let local_time = start.elapsed();
        let head = build_pipeline(&mut client, &source, &dimension_handle, threshold).await?;

        let fresh = BenchServer::worker(config()).await?;
        let mut fresh_client = fresh.client().await?;
        let start = Instant::now();
        let from_cold = collect(&mut fresh_client, &head).await?;
        let cold_time = start.elapsed();
        fresh.stop().await?;

        let start = Instant::now();
        let from_builder = collect(&mut client, &head).await?;
        let warm_plan_time = start.elapsed();
        let start = Instant::now();
        let again = collect(&mut client, &head).await?;
        let warm_result_time = start.elapsed();
        for result in [&from_cold, &from_builder, &again] {
            anyhow::ensure!(
                crate::same_result(result, &expected),
                "worker and Polars disagree"
            );
        }
        if i > 0 {
            local.push(local_time);
            cold.push(cold_time);
            warm_plan.push(warm_plan_time);
            warm_result.push(warm_result_time);
        }
    }
    builder.stop().await?;
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let n = options.pipeline_iterations;
    println!(
        "| pipeline, in-process Polars, median of {n} | {:.1} ms |",
        ms(median(local))
    );
    println!(
        "| pipeline collect, cold cache (fresh worker replays from the store), median of {n} | {:.1} ms |",
        ms(median(cold))
    );
    println!(
        "| pipeline collect, warm plans (worker that built it), median of {n} | {:.1} ms |",
        ms(median(warm_plan))
    );
    println!(
        "| pipeline collect, warm result cache, median of {n} | {:.2} ms |",
        ms(median(warm_result))
    );
    Ok(())
}
