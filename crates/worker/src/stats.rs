//! `Describe` and `GetStats`: summary statistics as lazy frames over the input.

use polars::prelude::*;

use crate::dtype;
use crate::error::{EngineError, EngineResult};

/// What `describe` computes for a column, after Polars' own `describe`.
#[derive(Clone, Copy, PartialEq)]
enum Described {
    /// Integers and floats: every statistic, as Float64.
    Numeric,
    /// Booleans: mean (the share of `true`), min and max, as Float64.
    Boolean,
    /// Dates, datetimes and durations: mean, min, percentiles and max, as text.
    Temporal,
    /// Strings: min and max, as text.
    Text,
    /// Lists, structs, binary and null columns: counts only. Lists, structs and null
    /// columns give Float64 values as Polars does; binary gives text. (Polars also gives
    /// a binary column's min and max, as Python's `b'..'`; binary that is not UTF-8 has
    /// no text here.)
    CountsOnly { float: bool },
}

impl Described {
    fn of(dtype: &DataType) -> Self {
        match dtype {
            d if d.is_primitive_numeric() => Self::Numeric,
            DataType::Boolean => Self::Boolean,
            d if d.is_temporal() => Self::Temporal,
            DataType::String => Self::Text,
            DataType::Binary => Self::CountsOnly { float: false },
            _ => Self::CountsOnly { float: true },
        }
    }

    /// Whether min and max mean something (and have text).
    fn has_extremes(self) -> bool {
        matches!(
            self,
            Self::Numeric | Self::Boolean | Self::Temporal | Self::Text
        )
    }

    fn is_float(self) -> bool {
        matches!(
            self,
            Self::Numeric | Self::Boolean | Self::CountsOnly { float: true }
        )
    }
}

/// A percentile's row label as Polars writes it (Python's `f"{p * 100:g}%"`): six
/// significant digits, trailing zeros dropped, so 0.25 is `25%` and 0.125 is `12.5%`.
fn percentile_label(p: f64) -> String {
    let value = p * 100.0;
    let trim = |text: &str| {
        if text.contains('.') {
            text.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            text.to_string()
        }
    };
    // As `g` does: the exponent is the one of the value rounded to six digits.
    let scientific = format!("{value:.5e}");
    let (mantissa, exponent) = scientific.split_once('e').unwrap_or((&scientific, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if !(-4..6).contains(&exponent) {
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}%", trim(mantissa), exponent.abs());
    }
    let decimals = (5 - exponent) as usize;
    format!("{}%", trim(&format!("{value:.decimals$}")))
}

/// A datetime as Python prints it, which is how Polars' `describe` shows temporal
/// statistics: seconds always, microseconds only when there are some, then the offset.
fn datetime_text(value: Expr, zoned: bool) -> Expr {
    let zone = if zoned { "%:z" } else { "" };
    let whole = format!("%Y-%m-%d %H:%M:%S{zone}");
    let fractional = format!("%Y-%m-%d %H:%M:%S%.6f{zone}");
    when((value.clone().dt().nanosecond() / lit(1_000)).eq(lit(0)))
        .then(value.clone().dt().to_string(&whole))
        .otherwise(value.dt().to_string(&fractional))
}

/// A duration as Python prints it (`-1 day, 23:00:00`, `2 days, 0:00:01.500000`), which
/// is how Polars' `describe` shows duration statistics. Polars has no cast of durations
/// to text, so the parts are computed here.
fn duration_text(value: Expr) -> Expr {
    const DAY: i64 = 86_400_000_000;
    let micros = value.dt().total_microseconds(false);
    // Floor division keeps the time of day positive under negative days, as Python does.
    let days = micros.clone().floor_div(lit(DAY));
    let rest = micros - days.clone() * lit(DAY);
    // Zero-padded: the number plus 10^width as text, without its leading 1.
    let padded = |part: Expr, width: u32| {
        (part + lit(10i64.pow(width)))
            .cast(DataType::String)
            .str()
            .slice(lit(1), lit(u64::from(width)))
    };
    let day_part = when(days.clone().eq(lit(0)))
        .then(lit(""))
        .otherwise(concat_str(
            [
                days.clone().cast(DataType::String),
                when(days.abs().eq(lit(1)))
                    .then(lit(" day, "))
                    .otherwise(lit(" days, ")),
            ],
            "",
            false,
        ));
    let fraction = rest.clone() % lit(1_000_000);
    let fraction_part = when(fraction.clone().eq(lit(0)))
        .then(lit(""))
        .otherwise(concat_str([lit("."), padded(fraction, 6)], "", false));
    concat_str(
        [
            day_part,
            (rest.clone() / lit(3_600_000_000i64)).cast(DataType::String),
            lit(":"),
            padded(rest.clone() / lit(60_000_000i64) % lit(60), 2),
            lit(":"),
            padded(rest / lit(1_000_000i64) % lit(60), 2),
            fraction_part,
        ],
        "",
        false,
    )
}

/// A statistic of a column of type `dtype` as text: temporal values as Python prints
/// them, everything else as Polars casts it.
fn text(value: Expr, dtype: &DataType) -> Expr {
    match dtype {
        DataType::Datetime(_, zone) => datetime_text(value, zone.is_some()),
        DataType::Duration(_) => duration_text(value),
        _ => value.cast(DataType::String),
    }
}

/// Polars' `describe`: one row per statistic (count, null_count, mean, std, min, the
/// percentiles in ascending order, max) and one column per input column, computed as
/// Polars' `DataFrame.describe` does for each type (see [`Described`]). Percentiles
/// default to 25, 50 and 75 (an empty list too: the request cannot say "none") and use
/// Polars' `nearest` interpolation.
pub fn describe(input: LazyFrame, schema: &Schema, percentiles: &[f64]) -> EngineResult<LazyFrame> {
    if schema.is_empty() {
        return Err(EngineError::invalid("describe of a frame without columns"));
    }
    let mut percentiles = if percentiles.is_empty() {
        vec![0.25, 0.5, 0.75]
    } else {
        percentiles.to_vec()
    };
    if let Some(bad) = percentiles.iter().find(|p| !(0.0..=1.0).contains(*p)) {
        return Err(EngineError::invalid(format!(
            "percentiles must be in [0, 1], got {bad}"
        )));
    }
    percentiles.sort_by(f64::total_cmp);

    enum Stat {
        Count,
        NullCount,
        Mean,
        Std,
        Min,
        Percentile(f64),
        Max,
    }
    let mut stats = vec![
        ("count".to_string(), Stat::Count),
        ("null_count".into(), Stat::NullCount),
        ("mean".into(), Stat::Mean),
        ("std".into(), Stat::Std),
        ("min".into(), Stat::Min),
    ];
    stats.extend(
        percentiles
            .iter()
            .map(|&p| (percentile_label(p), Stat::Percentile(p))),
    );
    stats.push(("max".into(), Stat::Max));

    let rows = stats
        .iter()
        .map(|(label, stat)| {
            let mut row = vec![lit(label.as_str()).alias("statistic")];
            for (name, dtype) in schema.iter() {
                let kind = Described::of(dtype);
                let c = if kind == Described::Boolean {
                    col(name.clone()).cast(DataType::Float64)
                } else {
                    col(name.clone())
                };
                use Described::*;
                let value = match (stat, kind) {
                    (Stat::Count, _) => Some(c.count()),
                    (Stat::NullCount, _) => Some(c.null_count()),
                    (Stat::Mean, Numeric | Boolean | Temporal) => Some(c.mean()),
                    (Stat::Std, Numeric) => Some(c.std(1)),
                    (Stat::Min, kind) if kind.has_extremes() => Some(c.min()),
                    (Stat::Max, kind) if kind.has_extremes() => Some(c.max()),
                    (Stat::Percentile(p), Numeric) => {
                        Some(c.quantile(lit(*p), QuantileMethod::Nearest))
                    }
                    (Stat::Percentile(p), Temporal) => Some(
                        c.to_physical()
                            .quantile(lit(*p), QuantileMethod::Nearest)
                            .cast(dtype.clone()),
                    ),
                    _ => None,
                };
                let value = match (value, kind) {
                    (None, kind) if kind.is_float() => lit(NULL).cast(DataType::Float64),
                    (None, _) => lit(NULL).cast(DataType::String),
                    (Some(value), kind) if kind.is_float() => value.cast(DataType::Float64),
                    (Some(value), _) => match (stat, dtype) {
                        (Stat::Count | Stat::NullCount, _) => value.cast(DataType::String),
                        // The mean of dates is a datetime, as in Polars.
                        (Stat::Mean, DataType::Date) => datetime_text(value, false),
                        _ => text(value, dtype),
                    },
                };
                row.push(value.alias(name.clone()));
            }
            input.clone().select(row)
        })
        .collect::<Vec<_>>();
    concat(rows, UnionArgs::default()).map_err(EngineError::polars("describe"))
}

/// One row per input column: name, type, count, null_count, n_unique, min and max (as
/// text, see [`text`]; null for lists, structs, binary and null columns), mean and std
/// (numeric and boolean columns only).
pub fn column_stats(input: LazyFrame, schema: &Schema) -> EngineResult<LazyFrame> {
    if schema.is_empty() {
        return Err(EngineError::invalid("stats of a frame without columns"));
    }
    let rows = schema
        .iter()
        .map(|(name, dtype)| {
            let c = col(name.clone());
            let kind = Described::of(dtype);
            let numeric = matches!(kind, Described::Numeric | Described::Boolean);
            let as_float = if kind == Described::Boolean {
                c.clone().cast(DataType::Float64)
            } else {
                c.clone()
            };
            let extreme = |e: Expr| {
                if kind.has_extremes() {
                    text(e, dtype)
                } else {
                    lit(NULL).cast(DataType::String)
                }
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
                extreme(c.clone().min()).alias("min"),
                extreme(c.clone().max()).alias("max"),
                numeric_stat(as_float.clone().mean()).alias("mean"),
                numeric_stat(as_float.std(1)).alias("std"),
            ])
        })
        .collect::<Vec<_>>();
    concat(rows, UnionArgs::default()).map_err(EngineError::polars("stats"))
}

/// The rows of a [`column_stats`] frame as `GetStats`' map, by column name.
pub fn column_stats_map(
    frame: &DataFrame,
) -> EngineResult<std::collections::BTreeMap<String, polaroid_proto::v1::ColumnStats>> {
    let failed = || EngineError::polars("stats");
    let text = |name: &str| -> EngineResult<Vec<Option<String>>> {
        let column = frame.column(name).map_err(failed())?;
        let values = column.str().map_err(failed())?;
        Ok(values.iter().map(|v| v.map(str::to_owned)).collect())
    };
    let counts = |name: &str| -> EngineResult<Vec<i64>> {
        let column = frame.column(name).map_err(failed())?;
        let values = column.u64().map_err(failed())?;
        Ok(values
            .iter()
            .map(|v| v.map_or(0, |v| i64::try_from(v).unwrap_or(i64::MAX)))
            .collect())
    };
    let floats = |name: &str| -> EngineResult<Vec<Option<f64>>> {
        let column = frame.column(name).map_err(failed())?;
        Ok(column.f64().map_err(failed())?.iter().collect())
    };
    let (names, dtypes) = (text("column")?, text("dtype")?);
    let (count, null_count, n_unique) =
        (counts("count")?, counts("null_count")?, counts("n_unique")?);
    let (min, max) = (text("min")?, text("max")?);
    let (mean, std) = (floats("mean")?, floats("std")?);
    Ok((0..frame.height())
        .map(|row| {
            let stats = polaroid_proto::v1::ColumnStats {
                data_type: dtypes[row].clone().unwrap_or_default(),
                count: count[row],
                null_count: null_count[row],
                n_unique: n_unique[row],
                min: min[row].clone(),
                max: max[row].clone(),
                mean: mean[row],
                std: std[row],
            };
            (names[row].clone().unwrap_or_default(), stats)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_labels_read_as_polars_writes_them() {
        for (p, label) in [
            (0.25, "25%"),
            (0.5, "50%"),
            (0.1, "10%"),
            (0.125, "12.5%"),
            (1.0 / 3.0, "33.3333%"),
            (0.0, "0%"),
            (1.0, "100%"),
            (0.999_999_9, "100%"),
            (1e-7, "1e-05%"),
            (9.999_999_9e-7, "0.0001%"),
            (0.123_456_789, "12.3457%"),
        ] {
            assert_eq!(percentile_label(p), label, "{p}");
        }
    }
}
