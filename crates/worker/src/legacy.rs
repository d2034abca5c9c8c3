//! Plan steps stored in the shapes requests had before the established contract (issue 23),
//! converted to today's shapes.
//!
//! Why: a handle's plan is its requests (`PlanStep`), and records written by older workers
//! (handle and plan records in the store, jobs waiting in a queue) hold the old shapes.
//! Those records must keep meaning what they meant: each old shape is decoded under its old
//! tag as a `*StepV0` message (plan.proto) and converted here, once, when a worker loads a
//! plan or takes a job, so the planner only ever sees today's shapes. The stored bytes are
//! left as they are: a plan's id is the hash of its encoding, and rewriting a record would
//! change what its id names.

use polaroid_proto::v1::{self as pb, plan_step::Op};

use crate::error::{EngineError, EngineResult};

/// The parts of a window over partitions or rolled over rows or a duration: an `OverExpr`,
/// or a `WindowExpr` of a plan stored before the contract (which had them as fields 2 and 3).
#[derive(Clone, Copy, Debug)]
pub struct OverParts<'a> {
    pub expr: Option<&'a pb::Expression>,
    pub partition_by: &'a [pb::Expression],
    pub rolling: Option<&'a pb::RollingSpec>,
}

/// A `WindowExpr` in the shape from before the contract (fields 2 and 3 as messages, which
/// `polaroid_proto` decodes into `partition_by_v0` and `rolling_v0` and encodes back as
/// they were): its parts, which mean what today's `over` does. `None` for the contract's
/// window. Unlike a step, it is read in place, not converted: it sits anywhere in an
/// expression tree, and the bytes it came from must stay as they are. One with fields of
/// both shapes was never written by code that meant either: INVALID_ARGUMENT.
pub fn window_v0(window: &pb::WindowExpr) -> EngineResult<Option<OverParts<'_>>> {
    if !window.has_v0_fields() {
        return Ok(None);
    }
    if window.has_contract_fields() {
        return Err(EngineError::invalid(
            "a WindowExpr has the contract's `window_size` (field 2) or `min_periods` (field \
             3) as integers and also `partition_by` (field 2) or `rolling` (field 3) as \
             messages, the shape windows had before the contract: a window over partitions \
             or a duration is an `over` (Expression field 10)",
        ));
    }
    Ok(Some(OverParts {
        expr: window.expr.as_deref(),
        partition_by: &window.partition_by_v0,
        rolling: window.rolling_v0.as_ref(),
    }))
}

/// Whether `op` is a step in a shape from before the contract.
pub fn is_legacy(op: &Op) -> bool {
    matches!(
        op,
        Op::ReadCsvV0(_)
            | Op::AggV0(_)
            | Op::AsTimeSeriesV0(_)
            | Op::ResampleV0(_)
            | Op::RollingWindowV0(_)
            | Op::ReadRestApiV0(_)
            | Op::WithColumnsV0(_)
            | Op::SortV0(_)
            | Op::UniqueV0(_)
            | Op::SliceV0(_)
            | Op::DiffV0(_)
            | Op::PctChangeV0(_)
            | Op::InterpolateV0(_)
            | Op::LagV0(_)
            | Op::LeadV0(_)
            | Op::FillNullV0(_)
            | Op::FillNanV0(_)
            | Op::DescribeV0(_)
            | Op::JoinV0(_)
            | Op::AsofJoinV0(_)
            | Op::PivotV0(_)
    )
}

/// The step `op` in today's shape, with the meaning it had when it was recorded; any other
/// step as it is. A legacy step that could never have been recorded (sort flags that fit
/// no key count) is INVALID_ARGUMENT.
pub fn upgrade(op: Op) -> EngineResult<Op> {
    Ok(match op {
        Op::ReadCsvV0(old) => Op::ReadCsv(pb::ReadCsvRequest {
            path: old.path,
            // Unset meant a header line; the contract's plain bool says so explicitly.
            has_header: old.has_header.unwrap_or(true),
            separator: old.separator,
            quote_char: old.quote_char,
            skip_rows: old.skip_rows,
            n_rows: old.n_rows,
            columns: old.columns,
            schema_json: None,
            infer_schema_length: old.infer_schema_length,
            null_values: old.null_values,
            try_parse_dates: old.try_parse_dates,
            schema: old.schema,
        }),
        Op::AggV0(old) => Op::Agg(pb::AggRequest {
            handle: old.handle,
            aggregations: Vec::new(),
            exprs: old.aggs,
        }),
        // The old call always sorted, by its keys then time.
        Op::AsTimeSeriesV0(old) => Op::AsTimeSeries(pb::AsTimeSeriesRequest {
            handle: old.handle,
            timestamp_column: old.time_column,
            frequency: None,
            ensure_sorted: true,
            by: old.by,
        }),
        Op::ResampleV0(old) => Op::Resample(pb::ResampleRequest {
            handle: old.handle,
            frequency: old.every,
            aggregations: Vec::new(),
            label: None,
            offset: old.offset,
            exprs: old.aggs,
            by: old.by,
            closed: old.closed,
            window_label: old.label,
            include_boundaries: old.include_boundaries,
            time_column: Some(old.time_column),
            period: old.period,
        }),
        Op::RollingWindowV0(old) => rolling_window(old),
        Op::ReadRestApiV0(old) => Op::ReadRestApi(crate::rest::upgrade_step(old)?),
        Op::WithColumnsV0(old) => Op::WithColumns(pb::WithColumnsRequest {
            handle: old.handle,
            columns: Default::default(),
            exprs: old.exprs,
        }),
        Op::SortV0(old) => {
            let keys = old.by.len() + old.by_exprs.len();
            let descending = per_key(&old.descending, keys, "descending")?;
            let nulls_last = per_key(&old.nulls_last, keys, "nulls_last")?;
            let mut flags = descending.into_iter().zip(nulls_last);
            let columns = old
                .by
                .into_iter()
                .zip(flags.by_ref())
                .map(|(name, (descending, nulls_last))| pb::SortColumn {
                    name,
                    descending,
                    nulls_last,
                })
                .collect();
            let exprs = old
                .by_exprs
                .into_iter()
                .zip(flags)
                .map(|(expr, (descending, nulls_last))| pb::SortExpr {
                    expr: Some(expr),
                    descending,
                    nulls_last,
                })
                .collect();
            Op::Sort(pb::SortRequest {
                handle: old.handle,
                columns,
                exprs,
                maintain_order: old.maintain_order,
            })
        }
        Op::UniqueV0(old) => {
            // UNSPECIFIED meant "any"; today it means "not set" (keep_first decides).
            let keep = match old.keep() {
                pb::UniqueKeep::Unspecified => pb::UniqueKeep::Any,
                keep => keep,
            };
            Op::Unique(pb::UniqueRequest {
                handle: old.handle,
                subset: old.subset,
                keep_first: false,
                keep: keep as i32,
                maintain_order: old.maintain_order,
            })
        }
        Op::SliceV0(old) => Op::Slice(pb::SliceRequest {
            handle: old.handle,
            offset: old.offset,
            length: old.length.unwrap_or(0),
            to_end: old.length.is_none(),
        }),
        Op::DiffV0(old) => Op::Diff(pb::DiffRequest {
            handle: old.handle,
            columns: old.columns,
            periods: periods(old.n),
            suffix: old.suffix,
        }),
        Op::PctChangeV0(old) => Op::PctChange(pb::PctChangeRequest {
            handle: old.handle,
            columns: old.columns,
            periods: periods(old.n),
            suffix: old.suffix,
        }),
        Op::InterpolateV0(old) => {
            let method = match old.method() {
                pb::InterpolationMethod::Nearest => pb::InterpolationMethod::Nearest,
                pb::InterpolationMethod::Linear | pb::InterpolationMethod::Unspecified => {
                    pb::InterpolationMethod::Linear
                }
            };
            Op::Interpolate(pb::InterpolateRequest {
                handle: old.handle,
                method: String::new(),
                columns: old.columns,
                interpolation: method as i32,
            })
        }
        Op::LagV0(old) => {
            let (handle, columns, every_column_periods, suffix) = shifted(old);
            Op::Lag(pb::LagRequest {
                handle,
                columns,
                every_column_periods,
                suffix,
            })
        }
        Op::LeadV0(old) => {
            let (handle, columns, every_column_periods, suffix) = shifted(old);
            Op::Lead(pb::LeadRequest {
                handle,
                columns,
                every_column_periods,
                suffix,
            })
        }
        Op::FillNullV0(old) => {
            // The old strategy's numbers: MIN 3, MAX 4, MEAN 5 (FillMethod's MEAN 3, MIN 4,
            // MAX 5); UNSPECIFIED meant "fill with `value`", as it does today.
            let method = match old.strategy() {
                pb::FillNullStrategy::Unspecified => pb::FillMethod::Unspecified,
                pb::FillNullStrategy::Forward => pb::FillMethod::FillForward,
                pb::FillNullStrategy::Backward => pb::FillMethod::FillBackward,
                pb::FillNullStrategy::Min => pb::FillMethod::FillMin,
                pb::FillNullStrategy::Max => pb::FillMethod::FillMax,
                pb::FillNullStrategy::Mean => pb::FillMethod::FillMean,
                pb::FillNullStrategy::Zero => pb::FillMethod::FillZero,
                pb::FillNullStrategy::One => pb::FillMethod::FillOne,
            };
            Op::FillNull(pb::FillNullRequest {
                handle: old.handle,
                value: None,
                method: method as i32,
                columns: old.columns,
                // Ignored by the old code with any other strategy; refused today.
                limit: old.limit.filter(|_| {
                    matches!(
                        method,
                        pb::FillMethod::FillForward | pb::FillMethod::FillBackward
                    )
                }),
                fill_expr: old.value,
            })
        }
        Op::FillNanV0(old) => {
            let Some(value) = old.value else {
                return Err(EngineError::invalid(
                    "a stored fill_nan step has no fill value",
                ));
            };
            Op::FillNan(pb::FillNanRequest {
                handle: old.handle,
                value: 0.0,
                method: pb::FillMethod::Unspecified as i32,
                columns: old.columns,
                fill_expr: Some(value),
            })
        }
        Op::PivotV0(old) => Op::Pivot(pb::PivotRequest {
            handle: old.handle,
            index: String::new(),
            columns: String::new(),
            values: String::new(),
            // The same numbers (QUANTILE, 12, was refused then and is now); UNSPECIFIED
            // meant one value per cell, as unset does.
            aggregate: (old.aggregate != 0).then_some(old.aggregate),
            sort_columns: old.sort_columns,
            separator: old.separator,
            on_columns: old.on,
            index_columns: old.index,
            values_columns: old.values,
        }),
        Op::JoinV0(old) => {
            let (on, left_right) = if old.left_on.is_empty() && old.right_on.is_empty() {
                (
                    (!old.on.is_empty()).then(|| pb::JoinOn { columns: old.on }),
                    None,
                )
            } else {
                // As stored (both `on` and sides, or sides of two lengths, were refused then
                // and are now).
                (
                    (!old.on.is_empty()).then(|| pb::JoinOn { columns: old.on }),
                    Some(pb::JoinLeftRight {
                        left: old.left_on,
                        right: old.right_on,
                    }),
                )
            };
            // UNSPECIFIED meant inner, as the contract's join_type does.
            Op::Join(pb::JoinRequest {
                left_handle: old.handle,
                right_handle: old.right,
                on,
                left_right,
                join_type: pb::JoinType::Unspecified as i32,
                suffix: old.suffix,
                coalesce: old.coalesce,
                how: old.how,
            })
        }
        Op::AsofJoinV0(old) => {
            let strategy = match old.strategy() {
                pb::AsofStrategy::Unspecified | pb::AsofStrategy::Backward => "backward",
                pb::AsofStrategy::Forward => "forward",
                pb::AsofStrategy::Nearest => "nearest",
            };
            Op::AsofJoin(pb::AsofJoinRequest {
                left_handle: old.handle,
                right_handle: old.right,
                left_on: old.left_on.unwrap_or_default(),
                right_on: old.right_on.unwrap_or_default(),
                by: old.by,
                tolerance: old.tolerance,
                strategy: Some(strategy.into()),
                suffix: old.suffix,
                on: old.on,
                by_left: old.by_left,
                by_right: old.by_right,
            })
        }
        Op::DescribeV0(old) => Op::Describe(pb::DescribeRequest {
            handle: old.handle,
            columns: Vec::new(),
            percentiles: old.percentiles,
        }),
        op => op,
    })
}

/// An old lag or lead: named columns (each by the old `n`, into `<column><suffix>` when a
/// suffix was set), or every column when none were named.
#[allow(clippy::type_complexity)]
fn shifted(old: pb::ShiftStepV0) -> (String, Vec<pb::LagColumn>, Option<i64>, Option<String>) {
    let periods = periods(old.n);
    if old.columns.is_empty() {
        return (old.handle, Vec::new(), Some(periods), old.suffix);
    }
    let columns = old
        .columns
        .into_iter()
        .map(|column| pb::LagColumn {
            alias: old
                .suffix
                .as_ref()
                .map(|suffix| format!("{column}{suffix}")),
            column,
            periods,
        })
        .collect();
    (old.handle, columns, None, None)
}

/// An old rolling window: one function over named columns (into `<column><suffix>` when a
/// suffix was set), or over every numeric column when none were named; a window of rows
/// (`window_size`) or a duration (`period`).
fn rolling_window(old: pb::RollingWindowStepV0) -> Op {
    let function = match old.function() {
        pb::RollingFunction::Sum => pb::AggFunction::Sum,
        pb::RollingFunction::Mean | pb::RollingFunction::Unspecified => pb::AggFunction::Mean,
        pb::RollingFunction::Min => pb::AggFunction::Min,
        pb::RollingFunction::Max => pb::AggFunction::Max,
        pb::RollingFunction::Std => pb::AggFunction::Std,
        pb::RollingFunction::Var => pb::AggFunction::Var,
        pb::RollingFunction::Median => pb::AggFunction::Median,
    };
    // Both or neither was refused then, and an empty window_size is now.
    let window_size = match (old.window_size, old.period) {
        (Some(rows), None) => rows.to_string(),
        (None, Some(period)) => period,
        _ => String::new(),
    };
    let (aggregations, every_numeric_column, suffix) = if old.columns.is_empty() {
        (Vec::new(), function, old.suffix)
    } else {
        let aggregations = old
            .columns
            .into_iter()
            .map(|column| pb::RollingAggregation {
                alias: old
                    .suffix
                    .as_ref()
                    .map_or_else(String::new, |suffix| format!("{column}{suffix}")),
                column,
                function: function as i32,
            })
            .collect();
        (aggregations, pb::AggFunction::Unspecified, None)
    };
    Op::RollingWindow(pb::RollingWindowRequest {
        handle: old.handle,
        window_size,
        aggregations,
        // Unset meant 1 then; today unset is the window's rows for a window of rows.
        min_periods: Some(old.min_periods.unwrap_or(1)),
        center: old.center,
        time_column: old.time_column,
        suffix,
        closed: old.closed,
        every_numeric_column: every_numeric_column as i32,
    })
}

/// A plan step with its operation upgraded (see [`upgrade`]).
pub fn upgrade_step(step: pb::PlanStep) -> EngineResult<pb::PlanStep> {
    Ok(pb::PlanStep {
        op: step.op.map(upgrade).transpose()?,
    })
}

/// An old `n` of 0 meant one period.
fn periods(n: i64) -> i64 {
    if n == 0 { 1 } else { n }
}

/// An old sort flag list: one value per key, or one for every key, or none (false).
fn per_key(flags: &[bool], keys: usize, what: &str) -> EngineResult<Vec<bool>> {
    match flags.len() {
        0 => Ok(vec![false; keys]),
        1 => Ok(vec![flags[0]; keys]),
        n if n == keys => Ok(flags.to_vec()),
        n => Err(EngineError::invalid(format!(
            "a stored sort step has {n} `{what}` values for {keys} keys"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaroid_proto::v1::{PlanNode, expression::Kind};
    use prost::Message;

    /// PlanNodes as the code before the contract encoded them: written with the Python
    /// stubs generated from the .proto files at 8eb1a70 (`PlanNode.SerializeToString`),
    /// each over input plan "pp…p" (and "qq…q", the cross join's right). Lag, lead,
    /// fill_null, fill_nan, describe, join, asof_join and pivot were written with the stubs of 0332c8d, where those
    /// messages were as at 8eb1a70; read_csv (a source: no inputs), agg, as_time_series,
    /// resample and rolling_window with the stubs of 2e73a7e.
    const OLD_RECORDS: &[(&str, &str)] = &[
        (
            "read_csv",
            "0a2f122d0a0b2f646174612f612e6373761a013b420a0a01611205496e743634420b0a01621206537472696e6752024e41",
        ),
        (
            "read_csv_no_header",
            "0a11120f0a0b2f646174612f612e6373761000",
        ),
        (
            "as_time_series",
            "0a09f201061201741a0167124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "resample",
            "0a28fa01251201741a023168220232682a02356d320b3209080412050a030a01763a0167400248025001124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "rolling_window",
            "0a1782021412017612017718042003380240014a045f6d6178124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "rolling_window_period",
            "0a0c8202092a0232683201745003124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "agg",
            "0a1dba011a120b3209080112050a030a0176120b3209080c12050a030a0177124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "sort",
            "0a158201121201621a0101220101280132050a030a0161124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "unique",
            "0a0a8a010712016118022001124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "with_columns",
            "0a226a2012172a150a05616c69617312050a030a0161120512031a016312050a030a0162124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "slice_to_end",
            "0a05aa01021001124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "slice_empty",
            "0a07aa010410021800124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "diff",
            "0a069a0203120161124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "pct_change",
            "0a0ea2020b120161180222045f706374124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "interpolate",
            "0a08c202051201611802124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "melt",
            "0a0fca010c120269641a01612203766172124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "cross",
            "0a07da01041a025f72124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070124071717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171",
        ),
        (
            "lag",
            "0a0c8a020912016122045f6c6167124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "lead",
            "0a059202021802124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "fill_null",
            "0a08b202051805220161124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "fill_null_value",
            "0a09b20206120412020807124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "fill_nan",
            "0a13ba0210120b120911000000000000e03f1a0161124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "describe",
            "0a15ca021212109a9999999999b93fcdccccccccccec3f124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "join",
            "0a0cd201091a016b30053a025f72124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070124071717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171",
        ),
        (
            "join_sides",
            "0a0dd2010a2201612a016230044001124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070124071717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171",
        ),
        (
            "asof_join",
            "0a0faa020c1a017432016748035202356d124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070124071717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171717171",
        ),
        // Windows (`WindowExpr` with fields 2 and 3 as messages), written with the stubs of
        // cdb839e, before the contract's WindowExpr: `with_column("s", sum(v).over(g))` and
        // `filter(rolling sum of v over 2 rows > 1)`.
        (
            "with_column_window",
            "0a1d621b1201731a163a140a0b3209080112050a030a017612050a030a0167124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "filter_rolling",
            "0a1f5a1d121b1a190a0f3a0d0a050a030a01761a040801100210051a0412020801124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
        (
            "pivot",
            "0a13c201101201631a01611a016222017628043001124070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070707070",
        ),
    ];

    fn unhex(text: &str) -> Vec<u8> {
        (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex"))
            .collect()
    }

    /// The old record `name`, decoded by today's code, its step upgraded.
    fn loaded(name: &str) -> (Op, PlanNode) {
        let (_, hex) = OLD_RECORDS
            .iter()
            .find(|(n, _)| *n == name)
            .expect("a fixture");
        let bytes = unhex(hex);
        let node = PlanNode::decode(bytes.as_slice()).expect("an old record decodes");
        if !name.starts_with("read_") {
            assert_eq!(node.inputs[0], "p".repeat(64), "{name}: inputs as written");
        }
        // Encoded again, the record is the same bytes, so it has the same plan id (a
        // replay finds its nodes by the ids their users recorded).
        assert_eq!(node.encode_to_vec(), bytes, "{name}: re-encodes as stored");
        let op = node.step.clone().and_then(|s| s.op).expect("a step");
        (upgrade(op).expect("upgrades"), node)
    }

    fn column(name: &str) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Column(pb::ColumnExpr { name: name.into() })),
        }
    }

    #[test]
    fn old_read_csv_records_keep_their_header_and_schema() {
        // has_header unset meant a header line; the schema as fields is Polaroid's extra.
        let Op::ReadCsv(csv) = loaded("read_csv").0 else {
            panic!("not read_csv")
        };
        assert!(csv.has_header);
        assert_eq!(
            (csv.path.as_str(), csv.separator.as_deref()),
            ("/data/a.csv", Some(";"))
        );
        assert_eq!(csv.schema_json, None);
        assert_eq!(
            csv.schema,
            vec![
                pb::Field {
                    name: "a".into(),
                    data_type: "Int64".into()
                },
                pb::Field {
                    name: "b".into(),
                    data_type: "String".into()
                }
            ]
        );
        assert_eq!(csv.null_values, ["NA"]);
        let Op::ReadCsv(csv) = loaded("read_csv_no_header").0 else {
            panic!("not read_csv")
        };
        assert!(!csv.has_header);
    }

    #[test]
    fn old_time_series_records_keep_their_meaning() {
        // The old AsTimeSeries always sorted, by its keys then time.
        let Op::AsTimeSeries(series) = loaded("as_time_series").0 else {
            panic!("not as_time_series")
        };
        assert_eq!(series.timestamp_column, "t");
        assert!(series.ensure_sorted);
        assert_eq!(
            (series.by.as_slice(), series.frequency),
            (&["g".to_owned()][..], None)
        );
        let Op::Resample(resample) = loaded("resample").0 else {
            panic!("not resample")
        };
        assert_eq!(resample.time_column.as_deref(), Some("t"));
        assert_eq!(resample.frequency, "1h");
        assert_eq!(
            (resample.period.as_deref(), resample.offset.as_deref()),
            (Some("2h"), Some("5m"))
        );
        assert_eq!((resample.exprs.len(), resample.aggregations.len()), (1, 0));
        assert_eq!(resample.by, ["g"]);
        assert_eq!(resample.closed(), pb::ClosedWindow::Right);
        assert_eq!(
            (resample.window_label(), resample.label),
            (pb::WindowLabel::Right, None)
        );
        assert!(resample.include_boundaries);
        // Columns v and w by MAX over 3 rows, suffix "_max": aliases now.
        let Op::RollingWindow(rolling) = loaded("rolling_window").0 else {
            panic!("not rolling_window")
        };
        assert_eq!(rolling.window_size, "3");
        assert_eq!(
            rolling.aggregations,
            ["v", "w"].map(|c| pb::RollingAggregation {
                column: c.into(),
                alias: format!("{c}_max"),
                function: pb::AggFunction::Max as i32,
            })
        );
        assert_eq!((rolling.min_periods, rolling.center), (Some(2), true));
        assert_eq!(rolling.suffix, None);
        // No columns (every numeric one), a period, the mean (unset), min_periods unset
        // (then 1).
        let Op::RollingWindow(rolling) = loaded("rolling_window_period").0 else {
            panic!("not rolling_window")
        };
        assert_eq!(rolling.window_size, "2h");
        assert_eq!(rolling.time_column.as_deref(), Some("t"));
        assert!(rolling.aggregations.is_empty());
        assert_eq!(rolling.every_numeric_column(), pb::AggFunction::Mean);
        assert_eq!(rolling.min_periods, Some(1));
        assert_eq!(rolling.closed(), pb::ClosedWindow::Both);
    }

    #[test]
    fn old_agg_records_keep_their_expressions() {
        // aggs [sum(v), quantile(w)]: Polaroid's `exprs` now.
        let Op::Agg(agg) = loaded("agg").0 else {
            panic!("not agg")
        };
        assert!(agg.aggregations.is_empty());
        assert_eq!(agg.exprs.len(), 2);
        assert!(matches!(
            &agg.exprs[0].kind,
            Some(Kind::Aggregation(a)) if a.function == 1 && a.expr.as_deref() == Some(&column("v"))
        ));
    }

    #[test]
    fn old_sort_records_keep_their_keys_and_flags() {
        let (op, node) = loaded("sort");
        assert!(is_legacy(
            node.step.and_then(|s| s.op).as_ref().expect("op")
        ));
        let Op::Sort(sort) = op else { panic!("{op:?}") };
        // by = ["b"], by_exprs = [col("a")], one descending and one nulls_last for both.
        assert_eq!(
            sort.columns,
            vec![pb::SortColumn {
                name: "b".into(),
                descending: true,
                nulls_last: true
            }]
        );
        assert_eq!(
            sort.exprs,
            vec![pb::SortExpr {
                expr: Some(column("a")),
                descending: true,
                nulls_last: true
            }]
        );
        assert!(sort.maintain_order);
    }

    #[test]
    fn old_unique_records_keep_their_strategy() {
        let Op::Unique(unique) = loaded("unique").0 else {
            panic!("not unique")
        };
        assert_eq!(unique.subset, ["a"]);
        assert_eq!(unique.keep(), pb::UniqueKeep::Last);
        assert!(!unique.keep_first);
        // UNSPECIFIED meant any: today it would mean "keep_first decides" (the last row).
        let any = upgrade(Op::UniqueV0(pb::UniqueStepV0::default())).expect("upgrades");
        assert!(matches!(any, Op::Unique(u) if u.keep() == pb::UniqueKeep::Any));
    }

    #[test]
    fn old_with_columns_records_keep_their_expressions_in_order() {
        let Op::WithColumns(with) = loaded("with_columns").0 else {
            panic!("not with_columns")
        };
        assert!(with.columns.is_empty());
        assert_eq!(with.exprs.len(), 2);
        assert_eq!(with.exprs[1], column("b"));
    }

    #[test]
    fn an_old_slice_without_a_length_runs_to_the_end() {
        let Op::Slice(to_end) = loaded("slice_to_end").0 else {
            panic!("not slice")
        };
        assert_eq!((to_end.offset, to_end.length, to_end.to_end), (1, 0, true));
        // A length of 0 that was set meant no rows, as it does today.
        let Op::Slice(empty) = loaded("slice_empty").0 else {
            panic!("not slice")
        };
        assert_eq!((empty.offset, empty.length, empty.to_end), (2, 0, false));
    }

    #[test]
    fn old_diff_and_pct_change_records_keep_their_periods() {
        // n unset (0) meant 1 period; today 0 means 0.
        let Op::Diff(diff) = loaded("diff").0 else {
            panic!("not diff")
        };
        assert_eq!(
            (diff.columns.as_slice(), diff.periods),
            (&["a".to_owned()][..], 1)
        );
        let Op::PctChange(pct) = loaded("pct_change").0 else {
            panic!("not pct_change")
        };
        assert_eq!((pct.periods, pct.suffix.as_deref()), (2, Some("_pct")));
    }

    #[test]
    fn old_interpolate_records_keep_their_method() {
        let Op::Interpolate(interpolate) = loaded("interpolate").0 else {
            panic!("not interpolate")
        };
        assert_eq!(interpolate.columns, ["a"]);
        assert_eq!(
            interpolate.interpolation(),
            pb::InterpolationMethod::Nearest
        );
        assert!(interpolate.method.is_empty());
    }

    #[test]
    fn old_lag_and_lead_records_keep_their_columns_periods_and_names() {
        // columns ["a"], n unset (one period), suffix "_lag": a new column "a_lag".
        let Op::Lag(lag) = loaded("lag").0 else {
            panic!("not lag")
        };
        assert_eq!(
            lag.columns,
            vec![pb::LagColumn {
                column: "a".into(),
                periods: 1,
                alias: Some("a_lag".into())
            }]
        );
        assert_eq!((lag.every_column_periods, lag.suffix), (None, None));
        // No columns meant every column; n 2.
        let Op::Lead(lead) = loaded("lead").0 else {
            panic!("not lead")
        };
        assert!(lead.columns.is_empty());
        assert_eq!((lead.every_column_periods, lead.suffix), (Some(2), None));
    }

    #[test]
    fn old_fill_null_records_keep_their_strategy_and_value() {
        // The old MEAN was 5, which is FillMethod's FILL_MAX: it must stay the mean.
        let Op::FillNull(fill) = loaded("fill_null").0 else {
            panic!("not fill_null")
        };
        assert_eq!(fill.method(), pb::FillMethod::FillMean);
        assert_eq!(fill.columns, ["a"]);
        assert!(fill.value.is_none() && fill.fill_expr.is_none());
        for (old, new) in [
            (pb::FillNullStrategy::Min, pb::FillMethod::FillMin),
            (pb::FillNullStrategy::Max, pb::FillMethod::FillMax),
            (pb::FillNullStrategy::One, pb::FillMethod::FillOne),
        ] {
            let step = pb::FillNullStepV0 {
                strategy: old as i32,
                limit: Some(3),
                ..Default::default()
            };
            let Op::FillNull(fill) = upgrade(Op::FillNullV0(step)).expect("upgrades") else {
                panic!("not fill_null")
            };
            assert_eq!(fill.method(), new);
            // The old code ignored a limit with these strategies.
            assert_eq!(fill.limit, None);
        }
        // A value expression is Polaroid's fill_expr now.
        let Op::FillNull(fill) = loaded("fill_null_value").0 else {
            panic!("not fill_null")
        };
        assert_eq!(fill.method(), pb::FillMethod::Unspecified);
        assert!(fill.value.is_none());
        assert!(matches!(
            fill.fill_expr.and_then(|e| e.kind),
            Some(Kind::Literal(pb::LiteralExpr {
                value: Some(pb::literal_expr::Value::IntVal(7))
            }))
        ));
    }

    #[test]
    fn old_fill_nan_and_describe_records_keep_their_value_and_percentiles() {
        let Op::FillNan(fill) = loaded("fill_nan").0 else {
            panic!("not fill_nan")
        };
        assert_eq!((fill.value, fill.method), (0.0, 0));
        assert_eq!(fill.columns, ["a"]);
        assert!(matches!(
            fill.fill_expr.and_then(|e| e.kind),
            Some(Kind::Literal(pb::LiteralExpr {
                value: Some(pb::literal_expr::Value::FloatVal(v))
            })) if v == 0.5
        ));
        let Op::Describe(describe) = loaded("describe").0 else {
            panic!("not describe")
        };
        assert!(describe.columns.is_empty());
        assert_eq!(describe.percentiles, [0.1, 0.9]);
    }

    #[test]
    fn old_join_records_keep_their_keys_and_type() {
        // on ["k"], how SEMI (5, the contract's CROSS today), suffix "_r".
        let Op::Join(join) = loaded("join").0 else {
            panic!("not join")
        };
        assert_eq!(
            join.on,
            Some(pb::JoinOn {
                columns: vec!["k".into()]
            })
        );
        assert_eq!(join.left_right, None);
        assert_eq!(join.join_type(), pb::JoinType::Unspecified);
        assert_eq!(join.how(), pb::JoinHow::Semi);
        assert_eq!(join.suffix.as_deref(), Some("_r"));
        let Op::Join(join) = loaded("join_sides").0 else {
            panic!("not join")
        };
        assert_eq!(join.on, None);
        assert_eq!(
            join.left_right,
            Some(pb::JoinLeftRight {
                left: vec!["a".into()],
                right: vec!["b".into()]
            })
        );
        assert_eq!(join.how(), pb::JoinHow::Full);
        assert!(join.coalesce);
    }

    #[test]
    fn old_asof_join_records_keep_their_key_and_strategy() {
        let (op, node) = loaded("asof_join");
        let Op::AsofJoin(asof) = op else {
            panic!("not asof_join")
        };
        assert_eq!(asof.on.as_deref(), Some("t"));
        assert!(asof.left_on.is_empty() && asof.right_on.is_empty());
        assert_eq!(asof.by, ["g"]);
        assert_eq!(asof.strategy.as_deref(), Some("nearest"));
        assert_eq!(asof.tolerance.as_deref(), Some("5m"));
        assert_eq!(node.inputs[1], "q".repeat(64));
    }

    #[test]
    fn old_pivot_records_keep_their_columns_and_function() {
        // on ["c"], index ["a", "b"], values ["v"], MEAN (4 in both enums), sorted.
        let Op::Pivot(pivot) = loaded("pivot").0 else {
            panic!("not pivot")
        };
        assert_eq!(pivot.on_columns, ["c"]);
        assert_eq!(pivot.index_columns, ["a", "b"]);
        assert_eq!(pivot.values_columns, ["v"]);
        assert!(pivot.columns.is_empty() && pivot.index.is_empty() && pivot.values.is_empty());
        assert_eq!(pivot.aggregate, Some(pb::AggFunction::Mean as i32));
        assert!(pivot.sort_columns);
        // UNSPECIFIED meant one value per cell: unset today.
        let Op::Pivot(pivot) = upgrade(Op::PivotV0(pb::PivotStepV0::default())).expect("upgrades")
        else {
            panic!("not pivot")
        };
        assert_eq!(pivot.aggregate, None);
    }

    #[test]
    fn renamed_melt_and_cross_records_decode_as_they_are() {
        // Same tags, same bytes: only field names changed.
        let (op, _) = loaded("melt");
        let Op::Melt(melt) = op else {
            panic!("not melt")
        };
        assert_eq!(
            (melt.id_vars, melt.value_vars, melt.variable_name),
            (
                vec!["id".to_owned()],
                vec!["a".to_owned()],
                Some("var".to_owned())
            )
        );
        let (op, node) = loaded("cross");
        let Op::Cross(cross) = op else {
            panic!("not cross")
        };
        assert_eq!(cross.suffix.as_deref(), Some("_r"));
        assert!(cross.left_handle.is_empty() && cross.right_handle.is_empty());
        assert_eq!(node.inputs[1], "q".repeat(64));
    }

    #[test]
    fn an_old_rest_step_keeps_its_meaning() {
        // A job's ReadRestApi step as the code before the contract encoded it (the Python
        // stubs of 2e73a7e, `PlanStep.SerializeToString`): url, a header, GET, page numbers
        // 2.. for 3 pages with size=10 sent, schema n: Int32, 4 requests a second, CSV,
        // a 500 ms timeout.
        let bytes = unhex(
            "2a540a0e687474703a2f2f682f6974656d73120a0a05782d6b657912016b1a034745542a120a047061676510021803220473697a65280a320a0a016e1205496e7433323a09090000000000001040420363737648f403",
        );
        let step = pb::PlanStep::decode(bytes.as_slice()).expect("an old step decodes");
        assert_eq!(step.encode_to_vec(), bytes, "re-encodes as stored");
        let op = step.op.expect("an op");
        assert!(is_legacy(&op));
        let Op::ReadRestApi(rest) = upgrade(op).expect("upgrades") else {
            panic!("not read_rest_api")
        };
        assert_eq!(rest.url, "http://h/items?size=10");
        assert_eq!(rest.headers.get("x-key").map(String::as_str), Some("k"));
        assert_eq!(rest.method, "GET");
        assert_eq!(
            rest.pagination.clone().and_then(|p| p.strategy),
            Some(pb::pagination_config::Strategy::PageNumber(
                pb::PageNumberPagination {
                    page_size: 0,
                    page_param: "page".into()
                }
            ))
        );
        assert_eq!((rest.start_page, rest.max_pages), (Some(2), Some(3)));
        assert_eq!(rest.schema_json, r#"{"n":"Int32"}"#);
        assert!(rest.cast_only, "the old schema cast the columns it named");
        assert_eq!(rest.min_request_interval_ms, Some(250));
        assert_eq!(rest.rate_limit, None);
        assert_eq!(rest.text_format(), pb::RestTextFormat::Csv);
        assert_eq!(rest.format(), pb::MessageFormat::Unspecified);
        assert_eq!(rest.timeout_ms, Some(500));
        assert!(!is_legacy(&Op::ReadRestApi(rest)));
    }

    #[test]
    fn old_windows_read_as_the_over_they_were() {
        let Op::WithColumn(with_column) = loaded("with_column_window").0 else {
            panic!("a with_column")
        };
        let Some(Kind::Window(window)) = with_column.expr.and_then(|e| e.kind) else {
            panic!("a window")
        };
        let parts = window_v0(&window)
            .expect("one shape")
            .expect("the old shape");
        assert_eq!(parts.partition_by, [column("g")]);
        assert!(parts.rolling.is_none());
        let Some(Kind::Aggregation(sum)) = parts.expr.and_then(|e| e.kind.as_ref()) else {
            panic!("sum(v)")
        };
        assert_eq!(sum.function(), pb::AggFunction::Sum);

        let Op::Filter(filter) = loaded("filter_rolling").0 else {
            panic!("a filter")
        };
        let Some(Kind::Binary(binary)) = filter.predicate.and_then(|e| e.kind) else {
            panic!("a comparison")
        };
        let Some(Kind::Window(window)) = binary.left.and_then(|e| e.kind) else {
            panic!("a window")
        };
        let parts = window_v0(&window)
            .expect("one shape")
            .expect("the old shape");
        assert!(parts.partition_by.is_empty());
        let rolling = parts.rolling.expect("rolling");
        assert_eq!(rolling.function(), pb::RollingFunction::Sum);
        assert_eq!(rolling.window_size, Some(2));
        assert_eq!(parts.expr, Some(&column("v")));
        // It translates, as the `over` it means.
        let _ = crate::expr::to_polars(&pb::Expression {
            kind: Some(Kind::Window(window)),
        })
        .expect("translates");
    }

    #[test]
    fn a_window_of_both_shapes_is_invalid_and_the_contracts_is_not_old() {
        let contract = pb::WindowExpr {
            expr: Some(Box::new(column("v"))),
            window_size: 3,
            ..Default::default()
        };
        assert!(window_v0(&contract).expect("the contract's").is_none());
        let both = pb::WindowExpr {
            partition_by_v0: vec![column("g")],
            ..contract
        };
        let error = window_v0(&both).expect_err("both shapes").to_string();
        assert!(
            error.contains("`window_size` (field 2)") && error.contains("`partition_by` (field 2)"),
            "{error}"
        );
    }

    #[test]
    fn upgraded_steps_are_not_legacy_and_others_pass_through() {
        for (name, _) in OLD_RECORDS {
            let (op, _) = loaded(name);
            assert!(!is_legacy(&op), "{name}");
        }
        let head = Op::Head(pb::HeadRequest {
            handle: String::new(),
            n: 3,
        });
        assert_eq!(upgrade(head.clone()).expect("as is"), head);
    }

    #[test]
    fn an_old_sort_with_flags_for_no_key_count_is_invalid() {
        let bad = Op::SortV0(pb::SortStepV0 {
            by: vec!["a".into(), "b".into(), "c".into()],
            descending: vec![true, false],
            ..Default::default()
        });
        let error = upgrade(bad).expect_err("two flags for three keys");
        assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
    }
}
