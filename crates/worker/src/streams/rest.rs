//! `StreamRestApi`: the REST answer (every page, within the rate limit) streamed page by
//! page as it is fetched; with `poll_interval_ms`, fetched again and again, each time
//! sending the records that were not in the previous answer.
//!
//! "New" is counted, not guessed: each record of an answer is compared, as the columns
//! the stream sends (after `schema_json`), with the records of the answer before, as a
//! multiset. A record the previous answer held n times is new from its (n+1)-th copy on.
//! A record that left the answer and comes back is new again; one that never changes is
//! sent once. The first answer is sent whole.

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::time::Instant;

use polars::prelude::*;

use super::{Sink, blocking, with_source_columns};
use crate::error::EngineResult;
use crate::records::Records;
use crate::rest::RestSource;

/// How many times each record (by its key) was in an answer.
type Seen = HashMap<u64, usize>;

/// Streams `source` into `sink` until its answer ends (or, polling, until the client
/// goes away or a cap is reached).
pub async fn run(mut source: RestSource, mut sink: Sink) -> EngineResult<()> {
    let mut previous: Option<Seen> = None;
    let batch_rows = sink.batch_rows();
    for poll in 0u64.. {
        let started = Instant::now();
        let mut current = Seen::new();
        let mut sent_any = false;
        let (schema, cast_only, payload) =
            (source.schema.clone(), source.cast_only, source.payload);
        let mut fetch = source.fetch();
        let mut first_page = None;
        loop {
            let mut records = Records::new(payload);
            let Some(page) = fetch.next_page(&mut records).await? else {
                break;
            };
            let schema = schema.clone();
            let (df, keys) = blocking("stream_rest_api", move || {
                let df = records.into_frame(schema.as_ref(), cast_only)?;
                let keys = row_keys(&df);
                Ok((df, keys))
            })
            .await?;
            let mut mask = Vec::with_capacity(keys.len());
            let mut positions = Vec::new();
            for (index, key) in keys.iter().enumerate() {
                let count = current.entry(*key).or_insert(0);
                *count += 1;
                let known = previous
                    .as_ref()
                    .and_then(|p| p.get(key))
                    .copied()
                    .unwrap_or(0);
                let new = *count > known;
                mask.push(new);
                if new {
                    positions.push(format!("{poll}:{}:{index}", page.index));
                }
            }
            let fresh = if mask.iter().all(|m| *m) {
                df
            } else {
                let mask = BooleanChunked::from_slice(PlSmallStr::EMPTY, &mask);
                df.filter(&mask)
                    .map_err(crate::error::EngineError::polars("stream_rest_api"))?
            };
            let received = vec![page.received_at; fresh.height()];
            let fresh = with_source_columns(fresh, received, positions)?;
            if fresh.height() > 0 {
                sink.send(fresh, batch_rows, false).await?;
                sink.check_rows_cap()?;
                sent_any = true;
            } else if first_page.is_none() {
                // Kept: an answer with no records at all still tells its columns.
                first_page = Some(fresh);
            }
        }
        if poll == 0
            && !sent_any
            && let Some(empty) = first_page
        {
            sink.send(empty, batch_rows, false).await?;
        }
        previous = Some(current);
        let Some(interval) = source.poll_interval else {
            return Ok(());
        };
        tokio::time::sleep_until((started + interval).into()).await;
    }
    Ok(())
}

/// A key per row: a hash of its values, column by column.
fn row_keys(df: &DataFrame) -> Vec<u64> {
    let mut hashers = vec![std::collections::hash_map::DefaultHasher::new(); df.height()];
    for column in df.columns() {
        let series = column.as_materialized_series();
        for (hasher, value) in hashers.iter_mut().zip(series.iter()) {
            format!("{value:?}").hash(hasher);
        }
    }
    hashers.into_iter().map(|h| h.finish()).collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn equal_rows_have_equal_keys_and_others_not() {
        let df = df!(
            "a" => [Some(1i64), Some(1), None, Some(1)],
            "b" => ["x", "x", "x", "y"],
        )
        .unwrap();
        let keys = row_keys(&df);
        assert_eq!(keys[0], keys[1]);
        assert_ne!(keys[0], keys[2]);
        assert_ne!(keys[0], keys[3]);
    }
}
