//! Runs queries: on Polars' streaming engine, with Polars' in-memory engine for the plans
//! the streaming engine does not implement yet.
//!
//! The streaming engine is what Python Polars runs by default. On the peer benchmark's
//! pipeline (10M-row Parquet, filter, join, group_by, sort) it took a third of the time the
//! in-memory engine took (0.15 s against 0.43 s in Python Polars; issue 21), and it runs
//! queries in bounded memory, so a write can stream to its file. The crate's `collect()`
//! still means the in-memory engine, hence this module: every query the worker runs for
//! a client or a job goes through it.

use std::num::NonZeroUsize;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};

use polars::prelude::{DataFrame, Engine as PolarsEngine, LazyFrame, PlanCallback, PolarsResult};

use crate::error::{EngineError, EngineResult};

/// Which of Polars' engines runs a plan.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The streaming engine, falling back to the in-memory one for what it cannot run.
    Streaming,
    /// The in-memory engine: for plans whose rows the streaming engine would give in
    /// another order. Its unpivot (melt) emits each batch's rows variable by variable, so
    /// the order depends on how the input happens to be split (seen in
    /// `transforms_match_polars`), and a handle must give the same rows on every worker.
    InMemory,
}

impl Mode {
    /// The mode of a step over inputs of `inputs` modes.
    pub fn of_step(op: &polaroid_proto::v1::plan_step::Op, inputs: &[Mode]) -> Self {
        use polaroid_proto::v1::plan_step::Op;
        if matches!(op, Op::Melt(_)) || inputs.contains(&Mode::InMemory) {
            Mode::InMemory
        } else {
            Mode::Streaming
        }
    }
}

/// Whether a panic is the streaming engine's `todo!()`: a plan it cannot run yet. Polars
/// itself falls back on exactly this message (`LazyFrame::collect_with_engine` with
/// `POLARS_AUTO_STREAMING`), which the crate does not expose.
fn is_not_implemented(payload: &(dyn std::any::Any + Send)) -> bool {
    let message = payload
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| payload.downcast_ref::<String>().map(String::as_str));
    message.is_some_and(|m| m.starts_with("not yet implemented"))
}

/// Runs `lf` on `engine` to its one result (`QueryResult::Multiple` comes only of
/// several sinks at once, which nothing here builds; the crate does not export the type).
fn run(lf: LazyFrame, engine: PolarsEngine) -> PolarsResult<DataFrame> {
    lf.collect_with_engine(engine)
        .map(|result| result.unwrap_single())
}

fn fell_back() {
    metrics::counter!("polaroid_worker_in_memory_fallbacks_total").increment(1);
    tracing::debug!("the streaming engine cannot run this plan; running it in memory");
}

/// Runs `lf` to a frame.
pub fn collect(lf: LazyFrame, mode: Mode) -> PolarsResult<DataFrame> {
    if mode == Mode::InMemory {
        return run(lf, PolarsEngine::InMemory);
    }
    let streamed = catch_unwind(AssertUnwindSafe(|| {
        run(lf.clone(), PolarsEngine::Streaming)
    }));
    match streamed {
        Ok(result) => result,
        Err(payload) if is_not_implemented(&*payload) => {
            fell_back();
            run(lf, PolarsEngine::InMemory)
        }
        Err(payload) => resume_unwind(payload),
    }
}

/// Runs `lf`, handing its rows to `consume` in order, in frames of `batch_rows` (the last
/// one shorter; one empty frame for an empty result). At most a couple of batches are held
/// at a time, so a result larger than memory can be written out. An error from `consume`
/// stops the query and is returned.
pub fn for_each_batch(
    lf: LazyFrame,
    mode: Mode,
    batch_rows: NonZeroUsize,
    consume: &mut dyn FnMut(DataFrame) -> EngineResult<()>,
) -> EngineResult<()> {
    if mode == Mode::InMemory {
        let df = run(lf, PolarsEngine::InMemory).map_err(EngineError::polars("run query"))?;
        return slices(&df, batch_rows, consume);
    }
    let schema_source = lf.clone();
    let (send, receive) = std::sync::mpsc::sync_channel::<DataFrame>(1);
    // The callback answers "stop" once the consumer has gone (an error, a cancelled job).
    let sink = lf
        .sink_batches(
            PlanCallback::new(move |df| Ok(send.send(df).is_err())),
            true,
            Some(batch_rows),
        )
        .map_err(EngineError::polars("run query"))?;
    let mut batcher = Batcher::new(batch_rows.get());
    let mut handed = 0usize;
    let mut outcome = Ok(());
    let produced = std::thread::scope(|scope| {
        let producer = std::thread::Builder::new()
            .name("polaroid-query".into())
            .spawn_scoped(scope, move || {
                catch_unwind(AssertUnwindSafe(|| {
                    sink.collect_with_engine(PolarsEngine::Streaming)
                        .map(|_| ())
                }))
            })
            .map_err(EngineError::io("run query"))?;
        for df in receive.iter() {
            let full = match batcher.push(df) {
                Ok(full) => full,
                Err(e) => {
                    outcome = Err(e);
                    break;
                }
            };
            for batch in full {
                handed += 1;
                if let Err(e) = consume(batch) {
                    outcome = Err(e);
                    break;
                }
            }
            if outcome.is_err() {
                break;
            }
        }
        // Closing the channel tells the callback to stop.
        drop(receive);
        producer.join().map_err(|payload| EngineError::Internal {
            operation: "run query",
            reason: crate::engine::panic_message(&*payload),
        })
    })?;
    outcome?;
    match produced {
        Ok(result) => {
            result.map_err(EngineError::polars("run query"))?;
        }
        // Nothing was run yet when the streaming engine refuses a plan, so the in-memory
        // engine can run it from the start.
        Err(payload) if is_not_implemented(&*payload) && handed == 0 => {
            fell_back();
            let df = run(schema_source, PolarsEngine::InMemory)
                .map_err(EngineError::polars("run query"))?;
            return slices(&df, batch_rows, consume);
        }
        Err(payload) => resume_unwind(payload),
    }
    match batcher.finish() {
        Some(last) => consume(last),
        None if handed == 0 => {
            // An empty result still has a schema, which writers need (a CSV header).
            let empty = run(schema_source.limit(0), PolarsEngine::InMemory)
                .map_err(EngineError::polars("run query"))?;
            consume(empty)
        }
        None => Ok(()),
    }
}

/// Hands `df` to `consume` in slices of `batch_rows` (one empty slice for no rows).
pub fn slices(
    df: &DataFrame,
    batch_rows: NonZeroUsize,
    consume: &mut dyn FnMut(DataFrame) -> EngineResult<()>,
) -> EngineResult<()> {
    let mut offset = 0;
    while offset < df.height() || offset == 0 {
        let chunk = df.slice(i64::try_from(offset).unwrap_or(i64::MAX), batch_rows.get());
        offset += chunk.height().max(1);
        consume(chunk)?;
    }
    Ok(())
}

/// Regroups the engine's morsels into batches of a set number of rows, so that a writer
/// gets row groups of the size asked for whatever morsel size the engine chose.
struct Batcher {
    rows: usize,
    pending: Option<DataFrame>,
}

impl Batcher {
    fn new(rows: usize) -> Self {
        Self {
            rows: rows.max(1),
            pending: None,
        }
    }

    /// The full batches `df` completes; the rest waits for more rows.
    fn push(&mut self, df: DataFrame) -> EngineResult<Vec<DataFrame>> {
        let mut pending = match self.pending.take() {
            Some(mut pending) => {
                pending
                    .vstack_mut(&df)
                    .map_err(EngineError::polars("run query"))?;
                pending
            }
            None => df,
        };
        let mut full = Vec::new();
        while pending.height() >= self.rows {
            full.push(pending.slice(0, self.rows));
            pending = pending.slice(self.rows as i64, usize::MAX);
        }
        if pending.height() > 0 {
            self.pending = Some(pending);
        }
        Ok(full)
    }

    fn finish(&mut self) -> Option<DataFrame> {
        self.pending.take()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use polars::prelude::*;

    use super::*;

    fn numbers(n: i64) -> LazyFrame {
        df!("id" => (0..n).collect::<Vec<_>>())
            .unwrap()
            .lazy()
            .filter(col("id").gt_eq(lit(0)))
    }

    #[test]
    fn batches_hold_every_row_in_order_in_the_size_asked_for() {
        let size = NonZeroUsize::new(30_000).unwrap();
        let mut batches = Vec::new();
        for_each_batch(numbers(250_000), Mode::Streaming, size, &mut |df| {
            batches.push(df);
            Ok(())
        })
        .unwrap();
        let heights: Vec<usize> = batches.iter().map(DataFrame::height).collect();
        assert!(
            heights[..heights.len() - 1].iter().all(|h| *h == 30_000),
            "{heights:?}"
        );
        let mut all = batches[0].clone();
        for batch in &batches[1..] {
            all.vstack_mut(batch).unwrap();
        }
        assert!(all.equals(&numbers(250_000).collect().unwrap()));
    }

    #[test]
    fn an_error_from_the_consumer_stops_the_query_and_is_returned() {
        let size = NonZeroUsize::new(1_000).unwrap();
        let mut seen = 0;
        let outcome = for_each_batch(numbers(1_000_000), Mode::Streaming, size, &mut |_| {
            seen += 1;
            Err(EngineError::Cancelled)
        });
        assert!(matches!(outcome, Err(EngineError::Cancelled)));
        assert_eq!(seen, 1);
    }

    #[test]
    fn both_modes_give_the_same_rows() {
        let lf = numbers(100_000)
            .group_by_stable([(col("id") % lit(7)).alias("k")])
            .agg([col("id").sum()]);
        let streamed = collect(lf.clone(), Mode::Streaming).unwrap();
        let in_memory = collect(lf, Mode::InMemory).unwrap();
        assert!(streamed.equals(&in_memory));
    }

    #[test]
    fn an_empty_result_is_one_empty_batch_with_its_columns() {
        let size = NonZeroUsize::new(10).unwrap();
        let mut batches = Vec::new();
        for_each_batch(
            numbers(100).filter(col("id").lt(lit(0))),
            Mode::Streaming,
            size,
            &mut |df| {
                batches.push(df);
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(batches.len(), 1);
        assert_eq!(batches[0].height(), 0);
        assert_eq!(batches[0].get_column_names(), ["id"]);
    }
}
