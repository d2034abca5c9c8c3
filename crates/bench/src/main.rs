//! Benchmarks of the worker over loopback gRPC against Polars in-process, on generated data.
//! Run with `cargo run --release -p polaroid-bench -- core`; results go to docs/benchmarks.md.

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Parser, Subcommand};
use polaroid_proto::v1::{
    self as pb, BinaryOperator, data_frame_service_client::DataFrameServiceClient,
    expression::Kind, literal_expr::Value,
};
use polars::prelude::*;
use tonic::transport::Channel;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    bench: Bench,
}

#[derive(Subcommand)]
enum Bench {
    /// Trivial-call latency and the pipeline ratio on a 10-million-row Parquet file.
    Core {
        /// Where the generated data is kept between runs.
        #[arg(long, default_value = "bench-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 2000)]
        trivial_iterations: usize,
        #[arg(long, default_value_t = 7)]
        pipeline_iterations: usize,
        /// The worker's `keep_warm_micros` (0 turns keeping the CPUs warm off).
        #[arg(long, default_value_t = polaroid_worker::WorkerConfig::default().keep_warm_micros)]
        keep_warm_micros: u64,
        /// The worker runs every query on Polars' in-memory engine (`streaming_engine`
        /// false); in-process Polars still uses the streaming engine.
        #[arg(long)]
        in_memory_engine: bool,
    },
    /// The shared store: 1 GiB artifact throughput against plain file I/O, handle
    /// creation latency, and the core pipeline with a cold versus a warm cache.
    Store {
        /// Where the generated data and the store live between runs.
        #[arg(long, default_value = "bench-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 1024)]
        artifact_mib: usize,
        #[arg(long, default_value_t = 4)]
        repetitions: usize,
        #[arg(long, default_value_t = 2000)]
        handle_iterations: usize,
        #[arg(long, default_value_t = 10_000_000)]
        rows: usize,
        #[arg(long, default_value_t = 5)]
        pipeline_iterations: usize,
    },
    /// The coordinator's cost: the extra hop on a trivial call, collect throughput of a
    /// 1 GiB result through it versus straight from the worker, and trivial-call
    /// throughput with 3 workers and 64 concurrent clients.
    Cluster {
        /// Where the generated data and the store live between runs.
        #[arg(long, default_value = "bench-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        workers: usize,
        #[arg(long, default_value_t = 3000)]
        trivial_iterations: usize,
        #[arg(long, default_value_t = 1024)]
        collect_mib: usize,
        #[arg(long, default_value_t = 3)]
        repetitions: usize,
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        /// The coordinator's `keep_warm_micros` (the workers, in the same process, keep
        /// nothing warm themselves).
        #[arg(long, default_value_t = polaroid_coordinator::CoordinatorConfig::default().keep_warm_micros)]
        keep_warm_micros: u64,
    },
    /// Authentication's cost on a trivial call: a worker requiring tokens against one
    /// without, alternately.
    Auth {
        #[arg(long, default_value_t = 5000)]
        iterations: usize,
        /// Both workers without authentication: how far two identical sides differ.
        #[arg(long)]
        control: bool,
    },
    /// One call's latency and the worker's memory as a chain of WithColumns calls deepens.
    Lineage {
        /// Depths at which a call is timed and the memory read (comma-separated).
        #[arg(long, value_delimiter = ',', default_value = "10,100,1000,3000")]
        depths: Vec<usize>,
        /// Calls timed at each depth.
        #[arg(long, default_value_t = 200)]
        samples: usize,
        /// Each step adds a column instead of rewriting one, so the width grows too.
        #[arg(long)]
        add_columns: bool,
    },
    /// Batch jobs through Redis: queue-to-start latency on idle workers, throughput of
    /// 10,000 trivial jobs with 3 workers, and a 10-million-row plan as a job versus
    /// interactively.
    Jobs {
        /// Where the generated data lives between runs.
        #[arg(long, default_value = "bench-data")]
        data_dir: PathBuf,
        #[arg(long, default_value_t = 3)]
        workers: usize,
        /// Jobs each worker runs at once.
        #[arg(long, default_value_t = 4)]
        slots: usize,
        #[arg(long, default_value_t = 200)]
        idle_jobs: usize,
        #[arg(long, default_value_t = 10_000)]
        jobs: usize,
        #[arg(long, default_value_t = 32)]
        submitters: usize,
        #[arg(long, default_value_t = 10_000_000)]
        rows: usize,
        /// Runs of the large plan each way, counted after one uncounted warm-up pair.
        #[arg(long, default_value_t = 9)]
        repetitions: usize,
        /// Put the workers' filesystem store under this directory instead (e.g. a tmpfs,
        /// to see the queue apart from the disk).
        #[arg(long)]
        state_dir: Option<PathBuf>,
    },
}

mod auth;
mod cluster;
mod jobs;
mod lineage;
mod store;

type Client = DataFrameServiceClient<Channel>;

fn column(name: &str) -> pb::Expression {
    pb::Expression {
        kind: Some(Kind::Column(pb::ColumnExpr { name: name.into() })),
    }
}

fn literal(value: Value) -> pb::Expression {
    pb::Expression {
        kind: Some(Kind::Literal(pb::LiteralExpr { value: Some(value) })),
    }
}

fn binary(left: pb::Expression, op: BinaryOperator, right: pb::Expression) -> pb::Expression {
    pb::Expression {
        kind: Some(Kind::Binary(Box::new(pb::BinaryExpr {
            left: Some(Box::new(left)),
            op: op as i32,
            right: Some(Box::new(right)),
        }))),
    }
}

fn alias(expr: pb::Expression, name: &str) -> pb::Expression {
    pb::Expression {
        kind: Some(Kind::Function(pb::FunctionExpr {
            name: "alias".into(),
            args: vec![expr, literal(Value::StringVal(name.into()))],
        })),
    }
}

fn aggregate(function: pb::AggFunction, expr: pb::Expression, name: &str) -> pb::Expression {
    alias(
        pb::Expression {
            kind: Some(Kind::Aggregation(Box::new(pb::AggregationExpr {
                function: function as i32,
                expr: Some(Box::new(expr)),
                quantile: None,
            }))),
        },
        name,
    )
}

/// Writes the benchmark's Parquet file unless it is already there.
fn generate(path: &Path, rows: usize) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    eprintln!("generating {rows} rows into {}", path.display());
    let categories = [
        "alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta",
    ];
    let mut df = df!(
        "id" => (0..rows as i64).collect::<Vec<_>>(),
        "key" => (0..rows as i64).map(|i| (i * 7919) % 1000).collect::<Vec<_>>(),
        "value" => (0..rows).map(|i| ((i * 31) % 10_007) as f64 / 7.0).collect::<Vec<_>>(),
        "qty" => (0..rows as i32).map(|i| i % 100).collect::<Vec<_>>(),
        "category" => (0..rows).map(|i| categories[i % categories.len()]).collect::<Vec<_>>(),
    )?;
    let temp = path.with_extension("tmp");
    ParquetWriter::new(std::fs::File::create(&temp)?).finish(&mut df)?;
    std::fs::rename(temp, path)?;
    Ok(())
}

fn dimension() -> anyhow::Result<DataFrame> {
    Ok(df!(
        "key" => (0..1000i64).collect::<Vec<_>>(),
        "weight" => (0..1000).map(|i| 1.0 + (i % 10) as f64 / 10.0).collect::<Vec<_>>(),
        "group" => (0..1000).map(|i| format!("g{}", i % 25)).collect::<Vec<_>>(),
    )?)
}

async fn collect(client: &mut Client, handle: &str) -> anyhow::Result<DataFrame> {
    let mut stream = client
        .collect(pb::CollectRequest {
            handle: handle.into(),
            limit: None,
        })
        .await?
        .into_inner();
    let mut frames = Vec::new();
    while let Some(batch) = stream.message().await? {
        frames.push(IpcStreamReader::new(Cursor::new(batch.arrow_ipc)).finish()?);
    }
    let mut iter = frames.into_iter();
    let mut whole = iter.next().context("no batch")?;
    for frame in iter {
        whole.vstack_mut(&frame)?;
    }
    Ok(whole)
}

/// User and system CPU time of this process so far, from `/proc/self/stat` (in clock
/// ticks of 10 ms, so measure many calls); `None` where there is no such file.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces:
    // utime and stime, fields 14 and 15 of the line, are 11 and 12 (from 0) of these.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i)?.parse::<u64>().ok();
    // USER_HZ is 100 on Linux.
    Some(Duration::from_millis((ticks(11)? + ticks(12)?) * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Prints a results-table row: `label` with the p50 and p99 of `sorted`.
fn latency_row(label: &str, sorted: &[Duration]) {
    println!(
        "| {label} | {:.0} µs / {:.0} µs |",
        micros(percentile(sorted, 0.5)),
        micros(percentile(sorted, 0.99))
    );
}

fn micros(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

/// Whether two results hold the same rows: floats within a relative 1e-9, since Polars'
/// streaming engine adds a column's values in an order that depends on how the work was
/// split, so sums may differ in their last bits between two runs of one query.
fn same_result(a: &DataFrame, b: &DataFrame) -> bool {
    if a.shape() != b.shape() || a.schema() != b.schema() {
        return false;
    }
    a.columns().iter().zip(b.columns()).all(|(x, y)| {
        if !x.dtype().is_float() {
            return x
                .as_materialized_series()
                .equals_missing(y.as_materialized_series());
        }
        let (Ok(x), Ok(y)) = (x.cast(&DataType::Float64), y.cast(&DataType::Float64)) else {
            return false;
        };
        let (Ok(x), Ok(y)) = (x.f64(), y.f64()) else {
            return false;
        };
        x.iter().zip(y.iter()).all(|pair| match pair {
            (Some(x), Some(y)) => x == y || (x - y).abs() <= 1e-9 * x.abs().max(y.abs()),
            (None, None) => true,
            _ => false,
        })
    })
}

/// The pipeline in Polars, in this process; `threshold` varies per iteration.
fn local_pipeline(path: &Path, dimension: &DataFrame, threshold: i32) -> anyhow::Result<DataFrame> {
    Ok(LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy().as_ref()),
        Default::default(),
    )?
    .filter(col("qty").gt(lit(threshold)))
    .with_columns([
        (col("value") * lit(2.0)).alias("double"),
        (col("qty") + lit(1)).alias("qty1"),
    ])
    .join(
        dimension.clone().lazy(),
        [col("key")],
        [col("key")],
        JoinArgs::new(JoinType::Inner),
    )
    .group_by([col("group")])
    .agg([
        (col("double") * col("weight")).sum().alias("total"),
        col("qty1").mean().alias("mean_qty"),
        col("id").count().alias("n"),
    ])
    .sort(
        ["total"],
        SortMultipleOptions::default().with_order_descending(true),
    )
    .limit(10)
    // Polars' streaming engine, as the worker runs it and as Python Polars does by default.
    .collect_with_engine(Engine::Streaming)?
    .unwrap_single())
}

/// A frame as the Arrow IPC stream clients upload.
pub fn arrow_ipc(df: &DataFrame) -> anyhow::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    IpcStreamWriter::new(&mut bytes).finish(&mut df.clone())?;
    Ok(bytes)
}

/// Uploads a frame; returns its handle.
async fn upload(client: &mut Client, df: &DataFrame) -> anyhow::Result<String> {
    let arrow_ipc = arrow_ipc(df)?;
    Ok(client
        .create_from_arrow(pb::CreateFromArrowRequest {
            arrow_ipc: arrow_ipc.into(),
            name: None,
        })
        .await?
        .into_inner()
        .handle)
}

/// Opens a Parquet file on the worker; returns its handle.
async fn read_parquet(client: &mut Client, path: &Path) -> anyhow::Result<String> {
    Ok(client
        .read_parquet(pb::ReadParquetRequest {
            path: path.to_string_lossy().into_owned(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle)
}

/// Records the pipeline on the worker (nothing computed yet); returns its last handle.
async fn build_pipeline(
    client: &mut Client,
    source: &str,
    dimension: &str,
    threshold: i32,
) -> anyhow::Result<String> {
    let filtered = client
        .filter(pb::FilterRequest {
            handle: source.into(),
            predicate: Some(binary(
                column("qty"),
                BinaryOperator::Gt,
                literal(Value::IntVal(threshold.into())),
            )),
        })
        .await?
        .into_inner()
        .handle;
    let widened = client
        .with_columns(pb::WithColumnsRequest {
            handle: filtered,
            columns: Default::default(),
            exprs: vec![
                alias(
                    binary(
                        column("value"),
                        BinaryOperator::Multiply,
                        literal(Value::FloatVal(2.0)),
                    ),
                    "double",
                ),
                alias(
                    binary(
                        column("qty"),
                        BinaryOperator::Plus,
                        literal(Value::IntVal(1)),
                    ),
                    "qty1",
                ),
            ],
        })
        .await?
        .into_inner()
        .handle;
    let joined = client
        .join(pb::JoinRequest {
            left_handle: widened,
            right_handle: dimension.into(),
            on: Some(pb::JoinOn {
                columns: vec!["key".into()],
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let grouped = client
        .group_by(pb::GroupByRequest {
            handle: joined,
            columns: vec!["group".into()],
            aggs: vec![
                aggregate(
                    pb::AggFunction::Sum,
                    binary(column("double"), BinaryOperator::Multiply, column("weight")),
                    "total",
                ),
                aggregate(pb::AggFunction::Mean, column("qty1"), "mean_qty"),
                aggregate(pb::AggFunction::Count, column("id"), "n"),
            ],
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let sorted = client
        .sort(pb::SortRequest {
            handle: grouped,
            columns: vec![pb::SortColumn {
                name: "total".into(),
                descending: true,
                nulls_last: false,
            }],
            ..Default::default()
        })
        .await?
        .into_inner()
        .handle;
    let head = client
        .head(pb::HeadRequest {
            handle: sorted,
            n: 10,
        })
        .await?
        .into_inner()
        .handle;
    Ok(head)
}

async fn core(
    data_dir: PathBuf,
    rows: usize,
    trivial_iterations: usize,
    pipeline_iterations: usize,
    keep_warm_micros: u64,
    streaming_engine: bool,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&data_dir)?;
    let data_dir = data_dir.canonicalize()?;
    let path = data_dir.join(format!("core-{rows}.parquet"));
    generate(&path, rows)?;

    let worker = BenchServer::worker(polaroid_worker::WorkerConfig {
        data_roots: vec![data_dir.clone()],
        keep_warm_micros,
        streaming_engine,
        ..Default::default()
    })
    .await?;
    let mut client = worker.client().await?;

    let source = read_parquet(&mut client, &path).await?;

    // (a) trivial call: head(5) + collect, repeated (the same plan: served from the result cache
    // after the first), then with a distinct plan each time (computed by Polars every time).
    let mut cached = Vec::with_capacity(trivial_iterations);
    let mut uncached = Vec::with_capacity(trivial_iterations);
    let (mut head_only, mut collect_only) = (Vec::new(), Vec::new());
    for i in 0..trivial_iterations + 50 {
        let start = Instant::now();
        let head = client
            .head(pb::HeadRequest {
                handle: source.clone(),
                n: 5,
            })
            .await?
            .into_inner()
            .handle;
        let head_time = start.elapsed();
        let df = collect(&mut client, &head).await?;
        let elapsed = start.elapsed();
        anyhow::ensure!(df.height() == 5);
        if i >= 50 {
            cached.push(elapsed);
            head_only.push(head_time);
            collect_only.push(elapsed - head_time);
        }
        let start = Instant::now();
        let head = client
            .head(pb::HeadRequest {
                handle: source.clone(),
                n: 5 + (i % 1000) as i64,
            })
            .await?
            .into_inner()
            .handle;
        let limited = client
            .head(pb::HeadRequest { handle: head, n: 5 })
            .await?
            .into_inner()
            .handle;
        collect(&mut client, &limited).await?;
        if i >= 50 {
            uncached.push(start.elapsed());
        }
    }
    cached.sort();
    uncached.sort();
    head_only.sort();
    collect_only.sort();
    // The transport floor: one Heartbeat round trip, which touches no data.
    let mut floor = Vec::with_capacity(trivial_iterations);
    let cpu_before = process_cpu();
    for _ in 0..trivial_iterations {
        let start = Instant::now();
        client
            .heartbeat(pb::HeartbeatRequest {
                handles: vec![source.clone()],
            })
            .await?;
        floor.push(start.elapsed());
    }
    let floor_cpu = cpu_before
        .zip(process_cpu())
        .map(|(before, after)| (after - before) / trivial_iterations as u32);
    floor.sort();

    // A with_columns call: the worker resolves the new schema and runs the step on no rows
    // to check types (`checks_types_on_no_rows`); a new expression each time, so no call
    // is answered from the plan cache. Beside it, that zero-row run alone, in-process.
    let schema = LazyFrame::scan_parquet(
        PlRefPath::new(path.to_string_lossy().as_ref()),
        Default::default(),
    )?
    .collect_schema()?;
    let mut with_columns_calls = Vec::with_capacity(trivial_iterations);
    let mut zero_row_checks = Vec::with_capacity(trivial_iterations);
    for i in 0..trivial_iterations + 50 {
        let factor = 1.0 + i as f64;
        let start = Instant::now();
        client
            .with_columns(pb::WithColumnsRequest {
                handle: source.clone(),
                columns: Default::default(),
                exprs: vec![alias(
                    binary(
                        column("value"),
                        BinaryOperator::Multiply,
                        literal(Value::FloatVal(factor)),
                    ),
                    "scaled",
                )],
            })
            .await?;
        let call = start.elapsed();
        let start = Instant::now();
        DataFrame::empty_with_arc_schema(schema.clone())
            .lazy()
            .with_columns([(col("value") * lit(factor)).alias("scaled")])
            .collect()?;
        let check = start.elapsed();
        if i >= 50 {
            with_columns_calls.push(call);
            zero_row_checks.push(check);
        }
    }
    with_columns_calls.sort();
    zero_row_checks.sort();

    // (b) the pipeline through the worker versus in-process, interleaved, median of each.
    let dimension_df = dimension()?;
    let dimension_handle = upload(&mut client, &dimension_df).await?;
    let mut local_times = Vec::new();
    let mut remote_times = Vec::new();
    for i in 0..=pipeline_iterations {
        // A different threshold each time, so the worker cannot answer from its cache.
        let threshold = 10 + i as i32;
        let start = Instant::now();
        let local = local_pipeline(&path, &dimension_df, threshold)?;
        let local_time = start.elapsed();
        let start = Instant::now();
        let head = build_pipeline(&mut client, &source, &dimension_handle, threshold).await?;
        let remote = collect(&mut client, &head).await?;
        let remote_time = start.elapsed();
        anyhow::ensure!(
            same_result(&remote, &local),
            "worker and Polars disagree:\n{remote}\n{local}"
        );
        if i > 0 {
            local_times.push(local_time);
            remote_times.push(remote_time);
        }
    }
    local_times.sort();
    remote_times.sort();
    let local_median = local_times[local_times.len() / 2];
    let remote_median = remote_times[remote_times.len() / 2];

    println!("| measure | value |");
    println!("|---|---|");
    println!("| rows in the Parquet file | {rows} |");
    latency_row(
        "(a) head(5) + collect, same plan (result cache), p50 / p99",
        &cached,
    );
    println!(
        "| (a) of which the Head call / the Collect call, p50 | {:.0} µs / {:.0} µs |",
        micros(percentile(&head_only, 0.5)),
        micros(percentile(&collect_only, 0.5))
    );
    latency_row(
        "(a) head(n) + head(5) + collect, new plan each time, p50 / p99",
        &uncached,
    );
    latency_row(
        "one Heartbeat round trip (transport floor), p50 / p99",
        &floor,
    );
    println!(
        "| CPU of this process per Heartbeat (client, worker, keep-warm threads; keep_warm_micros = {keep_warm_micros}) | {} |",
        floor_cpu.map_or("n/a".into(), |cpu| format!("{:.0} µs", micros(cpu)))
    );
    latency_row(
        "one with_columns call, new expression each time (schema and zero-row type check), p50 / p99",
        &with_columns_calls,
    );
    latency_row(
        "the zero-row type check of that step alone, in-process, p50 / p99",
        &zero_row_checks,
    );
    println!(
        "| (b) pipeline in-process Polars, median of {pipeline_iterations} | {:.1} ms |",
        local_median.as_secs_f64() * 1e3
    );
    println!(
        "| (b) pipeline through the worker, median of {pipeline_iterations} | {:.1} ms |",
        remote_median.as_secs_f64() * 1e3
    );
    println!(
        "| (b) ratio worker / in-process | {:.3} |",
        remote_median.as_secs_f64() / local_median.as_secs_f64()
    );

    worker.stop().await
}

/// A server (worker or coordinator) on loopback ports, as the binary runs it: on its own
/// multi-threaded runtime and threads, apart from the benchmark's client, as a separate
/// process would be.
pub struct BenchServer {
    address: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    server: std::thread::JoinHandle<anyhow::Result<()>>,
}

impl BenchServer {
    /// A worker with `config` (its bind address is replaced by an ephemeral one).
    pub async fn worker(config: polaroid_worker::WorkerConfig) -> anyhow::Result<Self> {
        Self::spawn("worker", move |listeners, stop| async move {
            polaroid_worker::run(config, listeners, stop).await?;
            anyhow::Ok(())
        })
    }

    /// A coordinator with `config` (its bind address is replaced by an ephemeral one).
    pub async fn coordinator(
        config: polaroid_coordinator::CoordinatorConfig,
    ) -> anyhow::Result<Self> {
        Self::spawn("coordinator", move |listeners, stop| async move {
            polaroid_coordinator::run(config, listeners, stop).await?;
            anyhow::Ok(())
        })
    }

    /// `role` names the server's threads, so that profiles tell the servers apart.
    fn spawn<F, Fut>(role: &'static str, serve: F) -> anyhow::Result<Self>
    where
        F: FnOnce(
                polaroid_observability::Listeners,
                futures::future::BoxFuture<'static, ()>,
            ) -> Fut
            + Send
            + 'static,
        Fut: std::future::Future<Output = anyhow::Result<()>>,
    {
        let (grpc, http) = (
            std::net::TcpListener::bind("127.0.0.1:0")?,
            std::net::TcpListener::bind("127.0.0.1:0")?,
        );
        grpc.set_nonblocking(true)?;
        http.set_nonblocking(true)?;
        let address = grpc.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .thread_name(role)
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let listeners = polaroid_observability::Listeners {
                    grpc: tokio::net::TcpListener::from_std(grpc)?,
                    http: tokio::net::TcpListener::from_std(http)?,
                };
                serve(
                    listeners,
                    Box::pin(async {
                        let _ = stopped.await;
                    }),
                )
                .await
            })
        });
        Ok(Self {
            address,
            stop,
            server,
        })
    }

    pub fn address(&self) -> std::net::SocketAddr {
        self.address
    }

    pub async fn client(&self) -> anyhow::Result<Client> {
        client_of(self.address).await
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        let _ = self.stop.send(());
        tokio::task::spawn_blocking(move || {
            self.server
                .join()
                .map_err(|_| anyhow::anyhow!("server thread panicked"))?
        })
        .await?
    }
}

pub async fn client_of(address: std::net::SocketAddr) -> anyhow::Result<Client> {
    let channel = Channel::from_shared(format!("http://{address}"))?
        .connect()
        .await?;
    Ok(DataFrameServiceClient::new(channel).max_decoding_message_size(usize::MAX))
}

/// The client side runs on one runtime thread, as a notebook's client does (Polars
/// in-process needs a multi-threaded runtime). The benchmark itself is a task on that
/// thread, beside its connections' tasks, as an application's code is: from `block_on` on
/// the main thread, every call would cross threads twice more.
#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> anyhow::Result<()> {
    let bench = Cli::parse().bench;
    tokio::spawn(run(bench)).await?
}

async fn run(bench: Bench) -> anyhow::Result<()> {
    match bench {
        Bench::Core {
            data_dir,
            rows,
            trivial_iterations,
            pipeline_iterations,
            keep_warm_micros,
            in_memory_engine,
        } => {
            core(
                data_dir,
                rows,
                trivial_iterations,
                pipeline_iterations,
                keep_warm_micros,
                !in_memory_engine,
            )
            .await
        }
        Bench::Store {
            data_dir,
            artifact_mib,
            repetitions,
            handle_iterations,
            rows,
            pipeline_iterations,
        } => {
            store::run(store::Options {
                data_dir,
                artifact_bytes: artifact_mib * 1024 * 1024,
                repetitions,
                handle_iterations,
                rows,
                pipeline_iterations,
            })
            .await
        }
        Bench::Cluster {
            data_dir,
            workers,
            trivial_iterations,
            collect_mib,
            repetitions,
            clients,
            seconds,
            keep_warm_micros,
        } => {
            cluster::run(cluster::Options {
                data_dir,
                workers,
                trivial_iterations,
                collect_bytes: collect_mib * 1024 * 1024,
                repetitions,
                clients,
                duration: Duration::from_secs(seconds),
                keep_warm_micros,
            })
            .await
        }
        Bench::Auth {
            iterations,
            control,
        } => auth::run(iterations, control).await,
        Bench::Lineage {
            depths,
            samples,
            add_columns,
        } => {
            lineage::run(lineage::Options {
                depths,
                samples,
                add_columns,
            })
            .await
        }
        Bench::Jobs {
            data_dir,
            workers,
            slots,
            idle_jobs,
            jobs,
            submitters,
            rows,
            repetitions,
            state_dir,
        } => {
            jobs::run(jobs::Options {
                data_dir,
                workers,
                slots,
                idle_jobs,
                jobs,
                submitters,
                rows,
                repetitions,
                state_dir,
            })
            .await
        }
    }
}
