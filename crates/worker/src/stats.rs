//! `Describe` and `GetStats`: summary statistics as lazy frames over the input.

use polars::prelude::*;

use crate::dtype;
use crate::error::{EngineError, EngineResult};

fn is_numeric(dtype: &DataType) -> bool {
    dtype.is_primitive_numeric() || dtype.is_bool()
}

/// Polars' `describe`: one row per statistic (count, null_count, mean, std, min,
/// percentiles, max) and one column per input column. Numeric and boolean columns give
/// Float64 values; other columns give String values, with mean, std and percentiles null.
pub fn describe(input: LazyFrame, schema: &Schema, percentiles: &[f64]) -> EngineResult<LazyFrame> {
    let percentiles = if percentiles.is_empty() {
        vec![0.25, 0.5, 0.75]
    } else {
        percentiles.to_vec()
    };
    if let Some(bad) = percentiles.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return Err(EngineError::invalid(format!(
            "percentiles must be in [0, 1], got {bad}"
        )));
    }
    type Stat = Box<dyn Fn(Expr, &DataType) -> Option<Expr>>;
    let mut stats: Vec<(String, Stat)> = vec![
        ("count".into(), Box::new(|c, _| Some(c.count()))),
        ("null_count".into(), Box::new(|c, _| Some(c.null_count()))),
        (
            "mean".into(),
            Box::new(|c, d| is_numeric(d).then(|| c.mean())),
        ),
        (
            "std".into(),
            Box::new(|c, d| is_numeric(d).then(|| c.std(1))),
        ),
        ("min".into(), Box::new(|c, _| Some(c.min()))),
    ];
    for p in percentiles {
        stats.push((
            format!("{}%", p * 100.0),
            Box::new(move |c, d| {
                is_numeric(d).then(|| c.quantile(lit(p), QuantileMethod::Nearest))
            }),
        ));
    }
    stats.push(("max".into(), Box::new(|c, _| Some(c.max()))));

    let rows = stats
        .iter()
        .map(|(label, stat)| {
            let mut row = vec![lit(label.as_str()).alias("statistic")];
            for (name, dtype) in schema.iter() {
                let target = if is_numeric(dtype) {
                    DataType::Float64
                } else {
                    DataType::String
                };
                let source = if dtype.is_bool() {
                    col(name.clone()).cast(DataType::Float64)
                } else {
                    col(name.clone())
                };
                let value = match stat(source, dtype) {
                    Some(value) => value.cast(target.clone()),
                    None => lit(NULL).cast(target.clone()),
                };
                row.push(value.alias(name.clone()));
            }
            input.clone().select(row)
        })
        .collect::<Vec<_>>();
    concat(rows, UnionArgs::default()).map_err(EngineError::polars("describe"))
}

/// One row per input column: name, type, count, null_count, n_unique, min, max (as
/// strings), mean and std (numeric columns only).
pub fn column_stats(input: LazyFrame, schema: &Schema) -> EngineResult<LazyFrame> {
    if schema.is_empty() {
        return Err(EngineError::invalid("stats of a frame without columns"));
    }
    let rows = schema
        .iter()
        .map(|(name, dtype)| {
            let c = col(name.clone());
            let numeric = is_numeric(dtype);
            let as_float = if dtype.is_bool() {
                c.clone().cast(DataType::Float64)
            } else {
                c.clone()
            };
            let numeric_stat = |e: Expr| {
                if numeric {
                    e.cast(DataType::Float64)
                } else {
                    lit(NULL).cast(DataType::Float64)
                }
            };
            input.clone().select([
                lit(name.as_str()).alias("column"),
                lit(dtype::name(dtype)).alias("dtype"),
                c.clone().count().cast(DataType::UInt64).alias("count"),
                c.clone()
                    .null_count()
                    .cast(DataType::UInt64)
                    .alias("null_count"),
                c.clone()
                    .n_unique()
                    .cast(DataType::UInt64)
                    .alias("n_unique"),
                c.clone().min().cast(DataType::String).alias("min"),
                c.clone().max().cast(DataType::String).alias("max"),
                numeric_stat(as_float.clone().mean()).alias("mean"),
                numeric_stat(as_float.std(1)).alias("std"),
            ])
        })
        .collect::<Vec<_>>();
    concat(rows, UnionArgs::default()).map_err(EngineError::polars("stats"))
}
