//! The lineage-depth benchmark: the cost of one call, and the worker's resident memory, as
//! a chain of WithColumns calls on a 1,000-row table deepens (issue 21's second part).
//!
//! Each step rewrites a column (`a = a + 1`), so the frame keeps its width and only the
//! lineage grows; `--add-columns` adds a column per step instead, as a notebook deriving
//! features does, where each call's own schema grows too.

use std::time::{Duration, Instant};

use polaroid_proto::v1::{self as pb, BinaryOperator, literal_expr::Value};
use polars::prelude::*;

use crate::{BenchServer, alias, binary, collect, column, literal, micros, percentile, upload};

pub struct Options {
    pub depths: Vec<usize>,
    pub samples: usize,
    pub add_columns: bool,
}

/// This process's resident memory, in bytes (the worker runs in it).
fn resident_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let kib = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .ok_or_else(|| anyhow::anyhow!("no VmRSS in /proc/self/status"))?;
    Ok(kib * 1024)
}

fn base() -> anyhow::Result<DataFrame> {
    Ok(df!(
        "id" => (0..1_000i64).collect::<Vec<_>>(),
        "a" => (0..1_000i64).map(|i| i * 2).collect::<Vec<_>>(),
        "b" => (0..1_000i64).map(|i| i % 7).collect::<Vec<_>>(),
    )?)
}

struct Chain {
    client: crate::Client,
    add_columns: bool,
    /// Handles made so far, for the memory per step.
    made: usize,
}

impl Chain {
    async fn step(&mut self, handle: &str, depth: usize) -> anyhow::Result<String> {
        let name = if self.add_columns {
            format!("c{depth}")
        } else {
            "a".to_owned()
        };
        let expr = alias(
            binary(column("a"), BinaryOperator::Plus, literal(Value::IntVal(1))),
            &name,
        );
        let request = pb::WithColumnsRequest {
            handle: handle.to_owned(),
            columns: Default::default(),
            exprs: vec![expr],
        };
        self.made += 1;
        Ok(self.client.with_columns(request).await?.into_inner().handle)
    }
}

pub async fn run(options: Options) -> anyhow::Result<()> {
    let mut depths = options.depths.clone();
    depths.sort_unstable();
    depths.dedup();
    anyhow::ensure!(depths.len() >= 2, "give at least two depths");
    let worker = BenchServer::worker(polaroid_worker::WorkerConfig::default()).await?;
    let mut chain = Chain {
        client: worker.client().await?,
        add_columns: options.add_columns,
        made: 0,
    };
    let mut handle = upload(&mut chain.client, &base()?).await?;
    let mut depth = 0;
    println!(
        "| depth | WithColumns p50 / p99 | resident memory | handles made |\n|---|---|---|---|"
    );
    let mut rows = Vec::new();
    for &target in &depths {
        while depth < target {
            handle = chain.step(&handle, depth).await?;
            depth += 1;
        }
        // The calls measured at this depth each derive a sibling of the next step.
        let mut times = Vec::with_capacity(options.samples);
        for _ in 0..options.samples {
            let start = Instant::now();
            chain.step(&handle, depth).await?;
            times.push(start.elapsed());
        }
        times.sort();
        let resident = resident_bytes()?;
        let p50 = times[times.len() / 2];
        println!(
            "| {target} | {:.0} µs / {:.0} µs | {:.0} MiB | {} |",
            micros(p50),
            micros(percentile(&times, 0.99)),
            resident as f64 / (1 << 20) as f64,
            chain.made
        );
        rows.push((target, p50, resident, chain.made));
    }
    let (first_depth, first_p50, first_rss, first_made) = rows[0];
    let (last_depth, last_p50, last_rss, last_made) = rows[rows.len() - 1];
    let per_step = last_rss.saturating_sub(first_rss) as f64 / (last_made - first_made) as f64;
    println!(
        "\np50 at depth {last_depth} / at depth {first_depth}: {:.2} ({:.0} µs / {:.0} µs)",
        last_p50.as_secs_f64() / first_p50.as_secs_f64(),
        micros(last_p50),
        micros(first_p50)
    );
    println!(
        "resident memory per handle made between them: {:.1} KiB",
        per_step / 1024.0
    );

    // Collecting the deepest handle: the whole lineage goes through Polars' optimizer once.
    let start = Instant::now();
    let df = collect(&mut chain.client, &handle).await?;
    let first_collect = start.elapsed();
    let start = Instant::now();
    collect(&mut chain.client, &handle).await?;
    let cached_collect = start.elapsed();
    if !options.add_columns {
        let expected = base()?
            .lazy()
            .with_column(col("a") + lit(depth as i64))
            .collect()?;
        anyhow::ensure!(
            df.equals(&expected),
            "the deep chain's rows differ from Polars'"
        );
    }
    println!(
        "collect at depth {depth}: {} first (computed), {} again (cached)",
        pretty(first_collect),
        pretty(cached_collect)
    );
    worker.stop().await
}

fn pretty(d: Duration) -> String {
    if d >= Duration::from_millis(10) {
        format!("{:.1} ms", d.as_secs_f64() * 1e3)
    } else {
        format!("{:.0} µs", micros(d))
    }
}
