//! Applies one plan step to its inputs' lazy frames: the translation from the wire's
//! operations to Polars' lazy API. Nothing here runs a query, except where Polars needs
//! data to know the output schema (pivot: the distinct values of `on`).

use std::sync::Arc;

use polaroid_proto::v1::{
    self as pb, AggFunction, ClosedWindow as PbClosedWindow,
    InterpolationMethod as PbInterpolationMethod, JoinHow, JoinType as PbJoinType, UniqueKeep,
    WindowLabel, plan_step::Op,
};
use polars::prelude::*;

use crate::error::{EngineError, EngineResult};
use crate::expr::{self, duration, to_polars_all};
use crate::sources;
use polaroid_proto::excerpt;

/// What a plan node evaluates to: a frame, grouped keys awaiting `Agg`, or a time series
/// (a frame that Resample and RollingWindow know the timestamp column and frequency of).
#[derive(Clone)]
pub enum Frame {
    Lazy(LazyFrame),
    Grouped {
        input: LazyFrame,
        keys: Vec<Expr>,
    },
    TimeSeries {
        frame: LazyFrame,
        timestamp_column: String,
        frequency: String,
    },
}

impl Frame {
    /// The frame, or INVALID_ARGUMENT for a grouped handle used as a frame.
    pub fn lazy(&self) -> EngineResult<LazyFrame> {
        match self {
            Self::Lazy(lf) | Self::TimeSeries { frame: lf, .. } => Ok(detached(lf)),
            Self::Grouped { .. } => Err(EngineError::invalid(
                "this handle is a grouped frame from GroupBy; call Agg on it first",
            )),
        }
    }
}

/// A copy of `lf` sharing its plan but not its cache of converted plans. A `LazyFrame`'s
/// clones share that cache, and resolving a schema fills it with the conversion of the
/// whole lineage: a node whose frame were cloned into such work would keep a copy of all
/// its ancestors' plans, and memory would grow with the square of the depth.
pub fn detached(lf: &LazyFrame) -> LazyFrame {
    LazyFrame::from(lf.logical_plan.clone())
}

/// The same frame over no rows of `schema`: a stand-in with which a step's output schema
/// is resolved without going through the input's lineage.
pub fn stand_in(frame: &Frame, schema: &SchemaRef) -> Frame {
    let empty = DataFrame::empty_with_arc_schema(schema.clone()).lazy();
    match frame {
        Frame::Lazy(_) => Frame::Lazy(empty),
        Frame::TimeSeries {
            timestamp_column,
            frequency,
            ..
        } => Frame::TimeSeries {
            frame: empty,
            timestamp_column: timestamp_column.clone(),
            frequency: frequency.clone(),
        },
        Frame::Grouped { keys, .. } => Frame::Grouped {
            input: empty,
            keys: keys.clone(),
        },
    }
}

/// Everything a step can need besides its inputs.
pub struct StepContext<'a> {
    pub inputs: &'a [Frame],
    pub input_schemas: &'a [SchemaRef],
    /// The engine that runs what a step must compute to be built (pivot's columns).
    pub mode: crate::query::Mode,
}

impl StepContext<'_> {
    fn input(&self, index: usize) -> EngineResult<LazyFrame> {
        self.inputs
            .get(index)
            .ok_or_else(|| EngineError::Internal {
                operation: "plan",
                reason: format!("input {index} missing"),
            })?
            .lazy()
    }

    fn schema(&self, index: usize) -> EngineResult<&SchemaRef> {
        self.input_schemas
            .get(index)
            .ok_or_else(|| EngineError::Internal {
                operation: "plan",
                reason: format!("schema {index} missing"),
            })
    }
}

fn names(columns: &[String]) -> Vec<PlSmallStr> {
    columns.iter().map(|c| PlSmallStr::from_str(c)).collect()
}

fn exprs(columns: &[String]) -> Vec<Expr> {
    columns.iter().map(|c| col(c.as_str())).collect()
}

fn count(n: i64, what: &str) -> EngineResult<IdxSize> {
    IdxSize::try_from(n).map_err(|_| {
        EngineError::invalid(format!(
            "{what} must be between 0 and {}, got {n}",
            IdxSize::MAX
        ))
    })
}

fn require_columns(schema: &Schema, columns: &[String]) -> EngineResult<()> {
    for column in columns {
        if !schema.contains(column) {
            return Err(EngineError::Polars {
                operation: "resolve columns",
                source: PolarsError::ColumnNotFound(
                    format!(
                        "unable to find column \"{column}\"; valid columns: {:?}",
                        schema.iter_names().collect::<Vec<_>>()
                    )
                    .into(),
                ),
            });
        }
    }
    Ok(())
}

/// The columns to apply a per-column operation to: `columns`, or every column matching `keep`.
fn target_columns(
    schema: &Schema,
    columns: &[String],
    keep: impl Fn(&DataType) -> bool,
) -> EngineResult<Vec<String>> {
    if columns.is_empty() {
        Ok(schema
            .iter()
            .filter(|(_, dtype)| keep(dtype))
            .map(|(name, _)| name.to_string())
            .collect())
    } else {
        require_columns(schema, columns)?;
        Ok(columns.to_vec())
    }
}

fn renamed(expr: Expr, column: &str, suffix: Option<&str>) -> Expr {
    match suffix {
        Some(suffix) => expr.alias(format!("{column}{suffix}")),
        None => expr.alias(column),
    }
}

/// Applies `op` to the context's inputs.
pub fn apply(op: &Op, ctx: &StepContext<'_>) -> EngineResult<Frame> {
    let frame = match op {
        Op::ReadParquet(_)
        | Op::ReadCsv(_)
        | Op::ReadIpc(_)
        | Op::ReadJson(_)
        | Op::ReadRestApi(_)
        | Op::ReadRestApiV0(_)
        | Op::Upload(_) => {
            return Err(EngineError::Internal {
                operation: "plan",
                reason: "sources are opened by the engine".into(),
            });
        }
        Op::ReadCsvV0(_)
        | Op::AggV0(_)
        | Op::AsTimeSeriesV0(_)
        | Op::ResampleV0(_)
        | Op::RollingWindowV0(_)
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
        | Op::PivotV0(_) => {
            return Err(EngineError::Internal {
                operation: "plan",
                reason: "a stored step of an old shape reached the planner without being \
                         upgraded (legacy::upgrade)"
                    .into(),
            });
        }
        Op::Select(req) => {
            let mut selected = exprs(&req.columns);
            selected.extend(to_polars_all(&req.exprs)?);
            if selected.is_empty() {
                return Err(EngineError::invalid(
                    "select needs at least one column or expression",
                ));
            }
            ctx.input(0)?.select(selected)
        }
        Op::Filter(req) => ctx
            .input(0)?
            .filter(expr::required(req.predicate.as_ref(), "predicate")?),
        Op::WithColumn(req) => {
            if req.name.is_empty() {
                return Err(EngineError::invalid("with_column needs a `name`"));
            }
            ctx.input(0)?.with_column(
                expr::required(req.expr.as_ref(), "expression")?.alias(req.name.as_str()),
            )
        }
        Op::WithColumns(req) => ctx.input(0)?.with_columns(with_columns(req)?),
        Op::Drop(req) => {
            require_columns(ctx.schema(0)?, &req.columns)?;
            ctx.input(0)?
                .drop(by_name(names(&req.columns), true, false))
        }
        Op::Rename(req) => {
            let (old, new): (Vec<_>, Vec<_>) = req
                .mapping
                .iter()
                .map(|(o, n)| (o.as_str(), n.as_str()))
                .unzip();
            ctx.input(0)?.rename(old, new, true)
        }
        Op::Sort(req) => sort(ctx.input(0)?, ctx.schema(0)?, req)?,
        Op::Unique(req) => {
            let keep = unique_keep(req)?;
            let subset = (!req.subset.is_empty()).then(|| {
                require_columns(ctx.schema(0)?, &req.subset)?;
                Ok::<_, EngineError>(by_name(names(&req.subset), true, false))
            });
            let subset = subset.transpose()?;
            // Always in input order: a handle must give the same rows, in the same order, on
            // every worker and after every restart (`maintain_order` is implied).
            ctx.input(0)?.unique_stable(subset, keep)
        }
        Op::Limit(req) => ctx.input(0)?.limit(count(req.n, "n")?),
        Op::Head(req) => ctx.input(0)?.limit(count(req.n, "n")?),
        Op::Tail(req) => ctx.input(0)?.tail(count(req.n, "n")?),
        Op::Slice(req) => {
            let length = match (req.to_end, req.length) {
                (true, 0) => IdxSize::MAX,
                (true, length) => {
                    return Err(EngineError::invalid(format!(
                        "slice: `to_end` (field 4) takes every row from the offset but \
                         `length` (field 3) is {length}: set one of them"
                    )));
                }
                (false, length) => count(length, "length")?,
            };
            ctx.input(0)?.slice(req.offset, length)
        }
        Op::GroupBy(req) => {
            let keys = group_keys(req)?;
            let input = ctx.input(0)?;
            if req.aggs.is_empty() {
                return Ok(Frame::Grouped { input, keys });
            }
            group(input, keys).agg(to_polars_all(&req.aggs)?)
        }
        Op::Agg(req) => match ctx.inputs.first() {
            Some(Frame::Grouped { input, keys }) => {
                let mut aggregated = req
                    .aggregations
                    .iter()
                    .map(|a| aggregation(a, "agg"))
                    .collect::<EngineResult<Vec<_>>>()?;
                aggregated.extend(to_polars_all(&req.exprs)?);
                if aggregated.is_empty() {
                    return Err(EngineError::invalid(
                        "agg needs at least one aggregation (`aggregations`, field 2, or \
                         `exprs`, field 3)",
                    ));
                }
                group(input.clone(), keys.clone()).agg(aggregated)
            }
            _ => {
                return Err(EngineError::invalid(
                    "agg needs a grouped handle from GroupBy (called without aggregations)",
                ));
            }
        },
        Op::Pivot(req) => pivot(ctx.input(0)?, ctx.schema(0)?, req, ctx.mode)?,
        Op::Melt(req) => {
            require_columns(ctx.schema(0)?, &req.id_vars)?;
            require_columns(ctx.schema(0)?, &req.value_vars)?;
            ctx.input(0)?.unpivot(UnpivotArgsDSL {
                on: (!req.value_vars.is_empty())
                    .then(|| by_name(names(&req.value_vars), true, false)),
                index: by_name(names(&req.id_vars), true, false),
                variable_name: req.variable_name.as_deref().map(PlSmallStr::from_str),
                value_name: req.value_name.as_deref().map(PlSmallStr::from_str),
            })
        }
        Op::Join(req) => join(
            ctx.input(0)?,
            ctx.input(1)?,
            (ctx.schema(0)?, ctx.schema(1)?),
            req,
        )?,
        Op::Cross(req) => cross_join(
            ctx.input(0)?,
            ctx.input(1)?,
            PlSmallStr::from_str(req.suffix.as_deref().unwrap_or("_right")),
        ),
        Op::Sql(req) => {
            crate::sql_depth::check("query", &req.query)?;
            let mut context = polars::sql::SQLContext::new();
            for (index, name) in req.tables.keys().enumerate() {
                context.register(name, ctx.input(index)?);
            }
            context
                .execute(&req.query)
                .map_err(EngineError::polars("sql"))?
        }
        Op::AsTimeSeries(req) => return as_time_series(ctx, req),
        Op::Resample(req) => resample(ctx, req)?,
        Op::RollingWindow(req) => rolling_window(ctx, req)?,
        Op::Lag(req) => shift(
            ctx,
            "lag",
            &req.columns,
            req.every_column_periods,
            req.suffix.as_deref(),
            false,
        )?,
        Op::Lead(req) => shift(
            ctx,
            "lead",
            &req.columns,
            req.every_column_periods,
            req.suffix.as_deref(),
            true,
        )?,
        Op::Diff(req) => {
            let columns = target_columns(ctx.schema(0)?, &req.columns, |d| {
                d.is_primitive_numeric() || d.is_temporal()
            })?;
            // As sent: an established client's 0 is 0 periods (zeros), not a default.
            let n = req.periods;
            let diffed: Vec<_> = columns
                .iter()
                .map(|c| {
                    renamed(
                        col(c.as_str()).diff(lit(n), polars::series::ops::NullBehavior::Ignore),
                        c,
                        req.suffix.as_deref(),
                    )
                })
                .collect();
            ctx.input(0)?.with_columns(diffed)
        }
        Op::PctChange(req) => {
            let columns =
                target_columns(ctx.schema(0)?, &req.columns, DataType::is_primitive_numeric)?;
            let n = req.periods;
            let changed: Vec<_> = columns
                .iter()
                .map(|c| renamed(col(c.as_str()).pct_change(lit(n)), c, req.suffix.as_deref()))
                .collect();
            ctx.input(0)?.with_columns(changed)
        }
        Op::AsofJoin(req) => asof_join(ctx, req)?,
        Op::FillNull(req) => fill_null(ctx, req)?,
        Op::FillNan(req) => fill_nan(ctx, req)?,
        Op::Interpolate(req) => {
            let method = interpolation(req)?;
            let columns =
                target_columns(ctx.schema(0)?, &req.columns, DataType::is_primitive_numeric)?;
            let interpolated: Vec<_> = columns
                .iter()
                .map(|c| col(c.as_str()).interpolate(method))
                .collect();
            ctx.input(0)?.with_columns(interpolated)
        }
        Op::Describe(req) => {
            let schema = ctx.schema(0)?;
            if req.columns.is_empty() {
                crate::stats::describe(ctx.input(0)?, schema, &req.percentiles)?
            } else {
                require_columns(schema, &req.columns)?;
                let selected: Schema = req
                    .columns
                    .iter()
                    .map(|c| {
                        let dtype = schema.get(c).cloned().unwrap_or(DataType::Null);
                        Field::new(PlSmallStr::from_str(c), dtype)
                    })
                    .collect();
                crate::stats::describe(
                    ctx.input(0)?.select(exprs(&req.columns)),
                    &selected,
                    &req.percentiles,
                )?
            }
        }
        Op::Stats(req) => {
            let schema = ctx.schema(0)?;
            if req.columns.is_empty() {
                crate::stats::column_stats(ctx.input(0)?, schema)?
            } else {
                require_columns(schema, &req.columns)?;
                let selected: Schema = req
                    .columns
                    .iter()
                    .map(|c| {
                        let dtype = schema.get(c).cloned().unwrap_or(DataType::Null);
                        Field::new(PlSmallStr::from_str(c), dtype)
                    })
                    .collect();
                crate::stats::column_stats(ctx.input(0)?.select(exprs(&req.columns)), &selected)?
            }
        }
    };
    Ok(Frame::Lazy(frame))
}

/// Lag (`lead` false) or lead: the contract's `columns`, each by its own periods into its
/// alias or in place, or Polaroid's every column by `every_column_periods`.
fn shift(
    ctx: &StepContext<'_>,
    call: &str,
    columns: &[pb::LagColumn],
    every_column_periods: Option<i64>,
    suffix: Option<&str>,
    lead: bool,
) -> EngineResult<LazyFrame> {
    let by = |periods: i64| -> EngineResult<i64> {
        if lead {
            periods.checked_neg().ok_or_else(|| {
                EngineError::invalid(format!("{call}: {periods} periods is out of range"))
            })
        } else {
            Ok(periods)
        }
    };
    let schema = ctx.schema(0)?;
    let shifted: Vec<Expr> = match every_column_periods {
        Some(_) if !columns.is_empty() => {
            return Err(EngineError::invalid(format!(
                "{call}: `columns` (field 2) names columns but `every_column_periods` (field 5) \
                 shifts every column: set one of them"
            )));
        }
        Some(periods) => {
            let n = by(periods)?;
            schema
                .iter_names()
                .map(|c| renamed(col(c.clone()).shift(lit(n)), c, suffix))
                .collect()
        }
        None => {
            if suffix.is_some() {
                return Err(EngineError::invalid(format!(
                    "{call}: `suffix` (field 6) names the columns of `every_column_periods` \
                     (field 5), which is not set; name a column's output with its `alias`"
                )));
            }
            if columns.is_empty() {
                return Err(EngineError::invalid(format!(
                    "{call} needs at least one column in `columns`"
                )));
            }
            columns
                .iter()
                .map(|c| {
                    if c.column.is_empty() {
                        return Err(EngineError::invalid(format!(
                            "{call}: a `columns` entry has no `column`"
                        )));
                    }
                    require_columns(schema, std::slice::from_ref(&c.column))?;
                    let output = c.alias.as_deref().unwrap_or(&c.column);
                    Ok(col(c.column.as_str())
                        .shift(lit(by(c.periods)?))
                        .alias(output))
                })
                .collect::<EngineResult<_>>()?
        }
    };
    Ok(ctx.input(0)?.with_columns(shifted))
}

/// A method's name as the client wrote it.
fn fill_method(call: &str, method: i32) -> EngineResult<pb::FillMethod> {
    pb::FillMethod::try_from(method)
        .map_err(|_| EngineError::invalid(format!("{call}: `method` {method} is not a FillMethod")))
}

/// FillNull: exactly one of the contract's `value` and `method`, or Polaroid's `fill_expr`.
fn fill_null(ctx: &StepContext<'_>, req: &pb::FillNullRequest) -> EngineResult<LazyFrame> {
    use pb::fill_value::Value as Fill;
    let method = fill_method("fill_null", req.method)?;
    let value = req.value.as_ref().and_then(|v| v.value.as_ref());
    let set: Vec<&str> = [
        value.map(|_| "`value` (field 2)"),
        (method != pb::FillMethod::Unspecified).then_some("`method` (field 3)"),
        req.fill_expr.as_ref().map(|_| "`fill_expr` (field 6)"),
    ]
    .into_iter()
    .flatten()
    .collect();
    match set.as_slice() {
        [] => {
            return Err(EngineError::invalid(
                "fill_null needs a `value` (field 2), a `method` (field 3) or a `fill_expr` \
                 (field 6)",
            ));
        }
        [_] => {}
        [first, second, ..] => {
            return Err(EngineError::invalid(format!(
                "fill_null: {first} and {second} are both set: set one of them"
            )));
        }
    }
    if req.limit.is_some()
        && !matches!(
            method,
            pb::FillMethod::FillForward | pb::FillMethod::FillBackward
        )
    {
        return Err(EngineError::invalid(
            "fill_null: `limit` (field 5) applies to FILL_FORWARD and FILL_BACKWARD only",
        ));
    }
    let schema = ctx.schema(0)?;
    let filled: Vec<Expr> = if let Some(value) = value {
        // Without explicit columns, a fill value applies to the columns of its kind.
        let (fill, applies): (Expr, fn(&DataType) -> bool) = match value {
            Fill::IntVal(v) => (lit(*v), DataType::is_primitive_numeric),
            Fill::FloatVal(v) => (lit(*v), DataType::is_primitive_numeric),
            Fill::StringVal(v) => (lit(v.clone()), DataType::is_string),
        };
        target_columns(schema, &req.columns, applies)?
            .iter()
            .map(|c| col(c.as_str()).fill_null(fill.clone()))
            .collect()
    } else if let Some(expression) = &req.fill_expr {
        let kind = match &expression.kind {
            Some(pb::expression::Kind::Literal(pb::LiteralExpr { value: Some(value) })) => {
                Some(value.clone())
            }
            _ => None,
        };
        let fill = expr::to_polars(expression)?;
        target_columns(schema, &req.columns, |dtype| {
            fill_applies(kind.as_ref(), dtype)
        })?
        .iter()
        .map(|c| col(c.as_str()).fill_null(fill.clone()))
        .collect()
    } else {
        let limit = req.limit.map(|l| count(l, "limit")).transpose()?;
        let strategy = match method {
            pb::FillMethod::FillForward => FillNullStrategy::Forward(limit),
            pb::FillMethod::FillBackward => FillNullStrategy::Backward(limit),
            pb::FillMethod::FillMean => FillNullStrategy::Mean,
            pb::FillMethod::FillMin => FillNullStrategy::Min,
            pb::FillMethod::FillMax => FillNullStrategy::Max,
            pb::FillMethod::FillZero => FillNullStrategy::Zero,
            pb::FillMethod::FillOne => FillNullStrategy::One,
            pb::FillMethod::Unspecified => unreachable!("a method is set"),
        };
        // Every column, as Polars' DataFrame.fill_null(strategy=...) does.
        target_columns(schema, &req.columns, |_| true)?
            .iter()
            .map(|c| col(c.as_str()).fill_null_with_strategy(strategy))
            .collect()
    };
    Ok(ctx.input(0)?.with_columns(filled))
}

/// FillNan: the contract's `value` (0.0 when unset) or `method`, or Polaroid's `fill_expr`.
fn fill_nan(ctx: &StepContext<'_>, req: &pb::FillNanRequest) -> EngineResult<LazyFrame> {
    let method = fill_method("fill_nan", req.method)?;
    let columns = target_columns(ctx.schema(0)?, &req.columns, DataType::is_float)?;
    let conflict = |extra: &str| {
        Err(EngineError::invalid(format!(
            "fill_nan: `value` (field 2) is {} but {extra}: set one of them",
            req.value
        )))
    };
    let fill = |c: &str| -> EngineResult<Expr> {
        let column = col(c);
        // NaN and null alike are "no value" for the nearest value and the statistics.
        let values = column.clone().fill_nan(lit(NULL));
        Ok(match method {
            pb::FillMethod::Unspecified => match &req.fill_expr {
                Some(expression) => column.fill_nan(expr::to_polars(expression)?),
                None => column.fill_nan(lit(req.value)),
            },
            pb::FillMethod::FillForward => {
                let nearest = values.fill_null_with_strategy(FillNullStrategy::Forward(None));
                // A NaN with no value on that side stays NaN.
                when(column.clone().is_nan().and(nearest.clone().is_not_null()))
                    .then(nearest)
                    .otherwise(column)
            }
            pb::FillMethod::FillBackward => {
                let nearest = values.fill_null_with_strategy(FillNullStrategy::Backward(None));
                // A NaN with no value on that side stays NaN.
                when(column.clone().is_nan().and(nearest.clone().is_not_null()))
                    .then(nearest)
                    .otherwise(column)
            }
            pb::FillMethod::FillMean => column.fill_nan(values.mean()),
            pb::FillMethod::FillMin => column.fill_nan(values.min()),
            pb::FillMethod::FillMax => column.fill_nan(values.max()),
            pb::FillMethod::FillZero => column.fill_nan(lit(0.0)),
            pb::FillMethod::FillOne => column.fill_nan(lit(1.0)),
        }
        .alias(c))
    };
    if method != pb::FillMethod::Unspecified {
        if req.value != 0.0 {
            return conflict(&format!("`method` (field 3) is {}", method.as_str_name()));
        }
        if req.fill_expr.is_some() {
            return Err(EngineError::invalid(format!(
                "fill_nan: `method` (field 3) is {} and `fill_expr` (field 5) is set: set one \
                 of them",
                method.as_str_name()
            )));
        }
    } else if req.fill_expr.is_some() && req.value != 0.0 {
        return conflict("`fill_expr` (field 5) is set");
    }
    let filled = columns
        .iter()
        .map(|c| fill(c))
        .collect::<EngineResult<Vec<_>>>()?;
    Ok(ctx.input(0)?.with_columns(filled))
}

/// Whether a literal fill value applies to a column of `dtype` (any column for non-literals).
fn fill_applies(value: Option<&pb::literal_expr::Value>, dtype: &DataType) -> bool {
    use pb::literal_expr::Value;
    match value {
        Some(Value::IntVal(_) | Value::FloatVal(_)) => dtype.is_primitive_numeric(),
        Some(Value::StringVal(_)) => dtype.is_string(),
        Some(Value::BoolVal(_)) => dtype.is_bool(),
        Some(Value::DateVal(_) | Value::DatetimeVal(_)) => dtype.is_temporal(),
        Some(Value::DurationVal(_)) => matches!(dtype, DataType::Duration(_)),
        _ => true,
    }
}

/// Groups in order of first appearance, whatever the request says: a handle must give the
/// same rows in the same order on every worker and after every restart.
/// A GroupBy's keys: the contract's `columns`, then Polaroid's `by_exprs`.
fn group_keys(req: &pb::GroupByRequest) -> EngineResult<Vec<Expr>> {
    if req.columns.iter().any(String::is_empty) {
        return Err(EngineError::invalid("group_by: a `columns` entry is empty"));
    }
    let mut keys = exprs(&req.columns);
    keys.extend(to_polars_all(&req.by_exprs)?);
    if keys.is_empty() {
        return Err(EngineError::invalid("group_by needs at least one key"));
    }
    Ok(keys)
}

/// The names a GroupBy's keys have in its result, over an input of `schema`.
pub fn group_key_names(schema: &SchemaRef, req: &pb::GroupByRequest) -> EngineResult<Vec<String>> {
    let keys = group_keys(req)?;
    let names = DataFrame::empty_with_arc_schema(schema.clone())
        .lazy()
        .select(keys)
        .collect_schema()
        .map_err(EngineError::polars("group_by"))?;
    Ok(names.iter_names().map(|n| n.to_string()).collect())
}

/// The contract's aggregate function over `values`; `None` for UNSPECIFIED and for
/// QUANTILE, which needs a quantile that only an `AggregationExpr` carries.
fn agg_function(function: pb::AggFunction, values: Expr) -> Option<Expr> {
    Some(match function {
        pb::AggFunction::Unspecified | pb::AggFunction::Quantile => return None,
        pb::AggFunction::Sum => values.sum(),
        pb::AggFunction::Min => values.min(),
        pb::AggFunction::Max => values.max(),
        pb::AggFunction::Mean => values.mean(),
        pb::AggFunction::Median => values.median(),
        pb::AggFunction::Std => values.std(1),
        pb::AggFunction::Var => values.var(1),
        pb::AggFunction::Count => values.count(),
        pb::AggFunction::First => values.first(),
        pb::AggFunction::Last => values.last(),
        pb::AggFunction::NUnique => values.n_unique(),
    })
}

/// The contract's `Aggregation`: `function` over `column`, named `alias` (empty: the
/// column's own name, as Polars names it).
pub fn aggregation(agg: &pb::Aggregation, call: &str) -> EngineResult<Expr> {
    if agg.column.is_empty() {
        return Err(EngineError::invalid(format!(
            "{call}: an aggregation has no `column`"
        )));
    }
    let function = pb::AggFunction::try_from(agg.function).map_err(|_| {
        EngineError::invalid(format!(
            "{call}: the aggregation of `{}` has `function` {}, which is not an AggFunction",
            excerpt(&agg.column),
            agg.function
        ))
    })?;
    let aggregated = agg_function(function, col(agg.column.as_str())).ok_or_else(|| {
        EngineError::invalid(match function {
            pb::AggFunction::Quantile => format!(
                "{call}: the aggregation of `{}` is QUANTILE, which needs a quantile: use an \
                 aggregation expression (`exprs`, AggregationExpr.quantile)",
                excerpt(&agg.column)
            ),
            _ => format!(
                "{call}: the aggregation of `{}` has no `function` (AGG_FUNCTION_UNSPECIFIED)",
                excerpt(&agg.column)
            ),
        })
    })?;
    Ok(if agg.alias.is_empty() {
        aggregated
    } else {
        aggregated.alias(agg.alias.as_str())
    })
}

fn group(input: LazyFrame, keys: Vec<Expr>) -> LazyGroupBy {
    input.group_by_stable(keys)
}

/// Sort keys: `columns` (the contract's), then `exprs` (Polaroid's), each with its flags.
fn sort(input: LazyFrame, schema: &Schema, req: &pb::SortRequest) -> EngineResult<LazyFrame> {
    let mut keys = Vec::with_capacity(req.columns.len() + req.exprs.len());
    let mut descending = Vec::with_capacity(keys.capacity());
    let mut nulls_last = Vec::with_capacity(keys.capacity());
    for column in &req.columns {
        if column.name.is_empty() {
            return Err(EngineError::invalid(
                "sort: a `columns` entry has no `name`",
            ));
        }
        require_columns(schema, std::slice::from_ref(&column.name))?;
        keys.push(col(column.name.as_str()));
        descending.push(column.descending);
        nulls_last.push(column.nulls_last);
    }
    for key in &req.exprs {
        keys.push(expr::required(key.expr.as_ref(), "sort expression")?);
        descending.push(key.descending);
        nulls_last.push(key.nulls_last);
    }
    if keys.is_empty() {
        return Err(EngineError::invalid(
            "sort needs at least one key in `columns` or `exprs`",
        ));
    }
    let (input, group_keys) = groups_in_any_order(input, schema);
    // Ties of a sorted group_by are broken by its keys, which no two groups share: the
    // order is total. Elsewhere ties keep their input order. Either way it is
    // deterministic.
    let total = !group_keys.is_empty();
    // A key the sort has already is not repeated: Polars refuses two sort keys of one name.
    let named: Vec<PlSmallStr> = keys
        .iter()
        .filter_map(|key| key.clone().meta().output_name().ok())
        .collect();
    for key in group_keys {
        if !named.contains(&key) {
            keys.push(col(key));
            descending.push(false);
            nulls_last.push(false);
        }
    }
    let options = SortMultipleOptions::default()
        .with_order_descending_multi(descending)
        .with_nulls_last_multi(nulls_last)
        .with_maintain_order(!total);
    Ok(input.sort_by_exprs(keys, options))
}

/// For a sort straight after a group_by: the same group_by without its order of first
/// appearance, and the names of its keys (empty, and the input as it was, otherwise).
///
/// Why: the sort decides the order, so the groups' own is wasted work, and costly: on
/// issue 21's pipeline (an order-keeping join, then group_by, then sort) Polars' streaming
/// engine took 1.37–1.54x as long with groups in order of first appearance as with the
/// group keys as the sort's last keys, which was as fast as Polars with no order at all
/// (docs/benchmarks.md, "The peer pipeline"). Ties therefore come in key order here, not
/// in order of first appearance (docs/architecture.md, "Determinism").
fn groups_in_any_order(input: LazyFrame, schema: &Schema) -> (LazyFrame, Vec<PlSmallStr>) {
    let optimizations = input.get_current_optimizations();
    let plan = match input.logical_plan {
        DslPlan::GroupBy {
            input,
            keys,
            predicates,
            aggs,
            maintain_order: true,
            options,
            apply: None,
        } if !keys.is_empty()
            && !options.is_rolling()
            && !options.is_dynamic()
            && options.slice.is_none() =>
        {
            // A group_by's output starts with its keys.
            let names = schema.iter_names().take(keys.len()).cloned().collect();
            let plan = DslPlan::GroupBy {
                input,
                keys,
                predicates,
                aggs,
                maintain_order: false,
                options,
                apply: None,
            };
            return (
                LazyFrame::from(plan).with_optimizations(optimizations),
                names,
            );
        }
        plan => plan,
    };
    (
        LazyFrame::from(plan).with_optimizations(optimizations),
        Vec::new(),
    )
}

/// WithColumns' expressions: the contract's map (each aliased to its name, in name order)
/// or Polaroid's list, never both: which would come first, and which wins a name both
/// give, would be a guess.
fn with_columns(req: &pb::WithColumnsRequest) -> EngineResult<Vec<Expr>> {
    if req.columns.is_empty() {
        return to_polars_all(&req.exprs);
    }
    if !req.exprs.is_empty() {
        return Err(EngineError::invalid(
            "with_columns: set `columns` (field 2, name -> expression) or `exprs` (field 3, \
             expressions in order), not both",
        ));
    }
    req.columns
        .iter()
        .map(|(name, expression)| {
            if name.is_empty() {
                return Err(EngineError::invalid(
                    "with_columns: a `columns` entry has an empty name",
                ));
            }
            Ok(expr::to_polars(expression)?.alias(name.as_str()))
        })
        .collect()
}

/// Which row of each key Unique keeps: `keep` when set, else the contract's `keep_first`
/// (true: the first, false: the last). `keep_first` true with another `keep` is a
/// contradiction, not a preference.
fn unique_keep(req: &pb::UniqueRequest) -> EngineResult<UniqueKeepStrategy> {
    let keep = UniqueKeep::try_from(req.keep).map_err(|_| {
        EngineError::invalid(format!("unique: `keep` {} is not a UniqueKeep", req.keep))
    })?;
    Ok(match (keep, req.keep_first) {
        (UniqueKeep::Unspecified, true) | (UniqueKeep::First, _) => UniqueKeepStrategy::First,
        (UniqueKeep::Unspecified, false) => UniqueKeepStrategy::Last,
        (other, true) => {
            return Err(EngineError::invalid(format!(
                "unique: `keep_first` (field 3) is true but `keep` (field 5) is {}: set one \
                 of them",
                other.as_str_name()
            )));
        }
        (UniqueKeep::Last, false) => UniqueKeepStrategy::Last,
        (UniqueKeep::None, false) => UniqueKeepStrategy::None,
        (UniqueKeep::Any, false) => UniqueKeepStrategy::Any,
    })
}

/// Interpolate's method: the contract's name (`method`) or Polaroid's enum
/// (`interpolation`); both set must agree. Linear when neither is.
fn interpolation(req: &pb::InterpolateRequest) -> EngineResult<InterpolationMethod> {
    let typed = PbInterpolationMethod::try_from(req.interpolation).map_err(|_| {
        EngineError::invalid(format!(
            "interpolate: `interpolation` {} is not an InterpolationMethod",
            req.interpolation
        ))
    })?;
    let named = match req.method.to_ascii_lowercase().as_str() {
        "" => None,
        "linear" => Some(PbInterpolationMethod::Linear),
        "nearest" => Some(PbInterpolationMethod::Nearest),
        "cubic" | "polynomial" | "spline" => {
            return Err(EngineError::Unimplemented(format!(
                "interpolate: method `{}` is not available (Polars interpolates linear or nearest)",
                excerpt(&req.method)
            )));
        }
        _ => {
            return Err(EngineError::invalid(format!(
                "interpolate: unknown method `{}` (linear or nearest)",
                excerpt(&req.method)
            )));
        }
    };
    let method = match (named, typed) {
        (None, PbInterpolationMethod::Unspecified) => PbInterpolationMethod::Linear,
        (None, typed) => typed,
        (Some(named), PbInterpolationMethod::Unspecified) => named,
        (Some(named), typed) if named == typed => named,
        (Some(_), typed) => {
            return Err(EngineError::invalid(format!(
                "interpolate: `method` (field 2) is `{}` but `interpolation` (field 4) is {}: \
                 set one of them",
                excerpt(&req.method),
                typed.as_str_name()
            )));
        }
    };
    Ok(match method {
        PbInterpolationMethod::Nearest => InterpolationMethod::Nearest,
        PbInterpolationMethod::Linear | PbInterpolationMethod::Unspecified => {
            InterpolationMethod::Linear
        }
    })
}

fn aggregate(function: AggFunction, values: Expr) -> EngineResult<Expr> {
    Ok(match function {
        AggFunction::Sum => values.sum(),
        AggFunction::Min => values.min(),
        AggFunction::Max => values.max(),
        AggFunction::Mean => values.mean(),
        AggFunction::Median => values.median(),
        AggFunction::Std => values.std(1),
        AggFunction::Var => values.var(1),
        AggFunction::Count => values.count(),
        AggFunction::First => values.first(),
        AggFunction::Last => values.last(),
        AggFunction::NUnique => values.n_unique(),
        AggFunction::Quantile => {
            return Err(EngineError::invalid("pivot does not support QUANTILE"));
        }
        // One value per cell: `first` after checking uniqueness would cost a pass; Polars'
        // own default for pivot is an error on duplicates, which `item` gives.
        AggFunction::Unspecified => values.item(true),
    })
}

fn pivot(
    input: LazyFrame,
    schema: &Schema,
    req: &pb::PivotRequest,
    mode: crate::query::Mode,
) -> EngineResult<LazyFrame> {
    // The contract's one column, or Polaroid's several: not both.
    let pick = |one: &str, many: &[String], names: (&str, &str)| -> EngineResult<Vec<String>> {
        match (one.is_empty(), many.is_empty()) {
            (true, _) => Ok(many.to_vec()),
            (false, true) => Ok(vec![one.to_owned()]),
            (false, false) => Err(EngineError::invalid(format!(
                "pivot: {} and {} are both set: set one of them",
                names.0, names.1
            ))),
        }
    };
    let on = pick(
        &req.columns,
        &req.on_columns,
        ("`columns` (field 3)", "`on_columns` (field 8)"),
    )?;
    let index = pick(
        &req.index,
        &req.index_columns,
        ("`index` (field 2)", "`index_columns` (field 9)"),
    )?;
    let values = pick(
        &req.values,
        &req.values_columns,
        ("`values` (field 4)", "`values_columns` (field 10)"),
    )?;
    if on.is_empty() {
        return Err(EngineError::invalid(
            "pivot needs `columns` (field 3) or `on_columns` (field 8)",
        ));
    }
    require_columns(schema, &on)?;
    require_columns(schema, &index)?;
    require_columns(schema, &values)?;
    let values: Vec<String> = if values.is_empty() {
        schema
            .iter_names()
            .filter(|name| !on.iter().chain(&index).any(|c| c == name.as_str()))
            .map(|name| name.to_string())
            .collect()
    } else {
        values
    };
    let function = match req.aggregate {
        None => AggFunction::Unspecified,
        Some(value) => pb::AggFunction::try_from(value).map_err(|_| {
            EngineError::invalid(format!("pivot: `aggregate` {value} is not an AggFunction"))
        })?,
    };
    // Polars needs the output columns up front: the distinct values of `on`.
    let mut on_columns = crate::query::collect(
        input
            .clone()
            .select(exprs(&on))
            .unique_stable(None, UniqueKeepStrategy::First),
        mode,
    )
    .map_err(EngineError::polars("pivot"))?;
    if req.sort_columns {
        on_columns = on_columns
            .sort(names(&on), SortMultipleOptions::default())
            .map_err(EngineError::polars("pivot"))?;
    }
    Ok(input.pivot(
        by_name(names(&on), true, false),
        Arc::new(on_columns),
        by_name(names(&index), true, false),
        by_name(names(&values), true, false),
        aggregate(function, element())?,
        true,
        PlSmallStr::from_str(req.separator.as_deref().unwrap_or("_")),
        polars::frame::PivotColumnNaming::Auto,
    ))
}

/// Every left row with every right row, left-major. Polars' `cross_join` leaves the order
/// to the engine, and the streaming engine gives right-major order; a handle must give the
/// same rows in the same order wherever it runs.
fn cross_join(left: LazyFrame, right: LazyFrame, suffix: PlSmallStr) -> LazyFrame {
    let mut args = JoinArgs::new(JoinType::Cross).with_suffix(Some(suffix));
    args.maintain_order = MaintainOrderJoin::LeftRight;
    left.join(right, Vec::<Expr>::new(), Vec::<Expr>::new(), args)
}

/// The join's type: the contract's `join_type` or Polaroid's `how` (semi and anti); both
/// set must agree. Inner when neither is.
fn join_how(req: &pb::JoinRequest) -> EngineResult<JoinType> {
    let contract = PbJoinType::try_from(req.join_type).map_err(|_| {
        EngineError::invalid(format!(
            "join: `join_type` {} is not a JoinType",
            req.join_type
        ))
    })?;
    let how = JoinHow::try_from(req.how)
        .map_err(|_| EngineError::invalid(format!("join: `how` {} is not a JoinHow", req.how)))?;
    let from_contract = match contract {
        PbJoinType::Unspecified => None,
        PbJoinType::Inner => Some(JoinHow::Inner),
        PbJoinType::Left => Some(JoinHow::Left),
        PbJoinType::Right => Some(JoinHow::Right),
        PbJoinType::Full => Some(JoinHow::Full),
        PbJoinType::Cross => Some(JoinHow::Cross),
    };
    let chosen = match (from_contract, how) {
        (None, JoinHow::Unspecified) => JoinHow::Inner,
        (None, how) => how,
        (Some(typed), JoinHow::Unspecified) => typed,
        (Some(typed), how) if typed == how => how,
        (Some(_), how) => {
            return Err(EngineError::invalid(format!(
                "join: `join_type` (field 5) is {} but `how` (field 9) is {}: set one of them",
                contract.as_str_name(),
                how.as_str_name()
            )));
        }
    };
    Ok(match chosen {
        JoinHow::Inner | JoinHow::Unspecified => JoinType::Inner,
        JoinHow::Left => JoinType::Left,
        JoinHow::Right => JoinType::Right,
        JoinHow::Full => JoinType::Full,
        JoinHow::Semi => JoinType::Semi,
        JoinHow::Anti => JoinType::Anti,
        JoinHow::Cross => JoinType::Cross,
    })
}

fn join(
    left: LazyFrame,
    right: LazyFrame,
    schemas: (&Schema, &Schema),
    req: &pb::JoinRequest,
) -> EngineResult<LazyFrame> {
    let how = join_how(req)?;
    let suffix = PlSmallStr::from_str(req.suffix.as_deref().unwrap_or("_right"));
    let (left_on, right_on) = match (&req.on, &req.left_right) {
        (Some(_), Some(_)) => {
            return Err(EngineError::invalid(
                "join: `on` (field 3) and `left_right` (field 4) are both set: set one of them",
            ));
        }
        (Some(on), None) => (on.columns.clone(), on.columns.clone()),
        (None, Some(sides)) => {
            if sides.left.len() != sides.right.len() {
                return Err(EngineError::invalid(format!(
                    "join: `left_right` has {} left and {} right columns: they pair up",
                    sides.left.len(),
                    sides.right.len()
                )));
            }
            (sides.left.clone(), sides.right.clone())
        }
        (None, None) => (Vec::new(), Vec::new()),
    };
    if matches!(how, JoinType::Cross) {
        if !left_on.is_empty() {
            return Err(EngineError::invalid(
                "join: a cross join takes no keys (`on` or `left_right`)",
            ));
        }
        return Ok(cross_join(left, right, suffix));
    }
    if left_on.is_empty() {
        return Err(EngineError::invalid(
            "join needs key columns in `on` (field 3) or `left_right` (field 4)",
        ));
    }
    require_columns(schemas.0, &left_on)?;
    require_columns(schemas.1, &right_on)?;
    let coalesce = if req.coalesce {
        JoinCoalesce::CoalesceColumns
    } else {
        JoinCoalesce::JoinSpecific
    };
    Ok(left
        .join_builder()
        .with(right)
        .how(how)
        .left_on(exprs(&left_on))
        .right_on(exprs(&right_on))
        .suffix(suffix)
        .coalesce(coalesce)
        // Deterministic output order (left rows first, then right), as handles require.
        .maintain_order(MaintainOrderJoin::LeftRight)
        .finish())
}

fn closed_window(closed: PbClosedWindow, default: ClosedWindow) -> ClosedWindow {
    match closed {
        PbClosedWindow::Unspecified => default,
        PbClosedWindow::Left => ClosedWindow::Left,
        PbClosedWindow::Right => ClosedWindow::Right,
        PbClosedWindow::Both => ClosedWindow::Both,
        PbClosedWindow::None => ClosedWindow::None,
    }
}

/// The contract's AsTimeSeries: the rows as they are (sorted by Polaroid's `by`, then the
/// timestamp, when `ensure_sorted`), with the timestamp column and frequency the time
/// series calls read.
fn as_time_series(ctx: &StepContext<'_>, req: &pb::AsTimeSeriesRequest) -> EngineResult<Frame> {
    let schema = ctx.schema(0)?;
    let column = &req.timestamp_column;
    if column.is_empty() {
        return Err(EngineError::invalid(
            "as_time_series needs `timestamp_column` (field 2)",
        ));
    }
    match schema.get(column) {
        Some(DataType::Date | DataType::Datetime(..)) => {}
        Some(other) => {
            return Err(EngineError::invalid(format!(
                "time column `{}` must be Date or Datetime, not {}",
                excerpt(column),
                crate::dtype::name(other)
            )));
        }
        None => require_columns(schema, std::slice::from_ref(column))?,
    }
    let frequency = req.frequency.clone().unwrap_or_default();
    if !frequency.is_empty() {
        duration(&frequency)?;
    }
    if !req.by.is_empty() && !req.ensure_sorted {
        return Err(EngineError::invalid(
            "as_time_series: `by` (field 5) orders the sort `ensure_sorted` (field 4) asks \
             for, which is not set",
        ));
    }
    require_columns(schema, &req.by)?;
    let mut frame = ctx.input(0)?;
    if req.ensure_sorted {
        let mut keys = req.by.clone();
        keys.push(column.clone());
        frame = frame.sort(
            names(&keys),
            SortMultipleOptions::default().with_maintain_order(true),
        );
    }
    Ok(Frame::TimeSeries {
        frame,
        timestamp_column: column.clone(),
        frequency,
    })
}

/// The time column of a time series call: the time series handle's, or Polaroid's
/// `time_column` (field `field`), which must be the same when both are there.
fn time_column(
    ctx: &StepContext<'_>,
    call: &str,
    extra: Option<&str>,
    field: u32,
) -> EngineResult<(String, String)> {
    let series = match ctx.inputs.first() {
        Some(Frame::TimeSeries {
            timestamp_column,
            frequency,
            ..
        }) => Some((timestamp_column.clone(), frequency.clone())),
        _ => None,
    };
    match (series, extra) {
        (Some(series), None) => Ok(series),
        (Some((column, frequency)), Some(named)) if named == column => Ok((column, frequency)),
        (Some((column, _)), Some(named)) => Err(EngineError::invalid(format!(
            "{call}: `time_column` (field {field}) is `{}` but the time series' timestamp \
             column is `{}`: leave it unset",
            excerpt(named),
            excerpt(&column)
        ))),
        (None, Some(named)) => Ok((named.to_owned(), String::new())),
        (None, None) => Err(EngineError::invalid(format!(
            "{call} needs a time series handle (from AsTimeSeries) or `time_column` (field \
             {field})"
        ))),
    }
}

fn resample(ctx: &StepContext<'_>, req: &pb::ResampleRequest) -> EngineResult<LazyFrame> {
    let (time, series_frequency) = time_column(ctx, "resample", req.time_column.as_deref(), 11)?;
    let frequency = if req.frequency.is_empty() {
        series_frequency
    } else {
        req.frequency.clone()
    };
    if frequency.is_empty() {
        return Err(EngineError::invalid(
            "resample needs `frequency` (field 2), or a time series handle with one",
        ));
    }
    let mut aggregated = req
        .aggregations
        .iter()
        .map(|a| aggregation(a, "resample"))
        .collect::<EngineResult<Vec<_>>>()?;
    aggregated.extend(to_polars_all(&req.exprs)?);
    if aggregated.is_empty() {
        return Err(EngineError::invalid(
            "resample needs at least one aggregation (`aggregations`, field 3, or `exprs`, \
             field 6)",
        ));
    }
    let label = match req.label.as_deref().map(str::to_ascii_lowercase).as_deref() {
        None | Some("") => None,
        Some("left") => Some(WindowLabel::Left),
        Some("right") => Some(WindowLabel::Right),
        Some("datapoint") => Some(WindowLabel::Datapoint),
        Some(_) => {
            return Err(EngineError::invalid(format!(
                "resample: unknown `label` `{}` (left, right or datapoint)",
                excerpt(req.label.as_deref().unwrap_or(""))
            )));
        }
    };
    let typed = WindowLabel::try_from(req.window_label).map_err(|_| {
        EngineError::invalid(format!(
            "resample: `window_label` {} is not a WindowLabel",
            req.window_label
        ))
    })?;
    let label = match (label, typed) {
        (None, typed) => typed,
        (Some(named), WindowLabel::Unspecified) => named,
        (Some(named), typed) if named == typed => named,
        (Some(_), typed) => {
            return Err(EngineError::invalid(format!(
                "resample: `label` (field 4) is `{}` but `window_label` (field 9) is {}: set \
                 one of them",
                excerpt(req.label.as_deref().unwrap_or("")),
                typed.as_str_name()
            )));
        }
    };
    let every = duration(&frequency)?;
    let options = DynamicGroupOptions {
        every,
        period: req
            .period
            .as_deref()
            .map(duration)
            .transpose()?
            .unwrap_or(every),
        offset: req
            .offset
            .as_deref()
            .map(duration)
            .transpose()?
            .unwrap_or_else(|| Duration::parse("0ns")),
        label: match label {
            WindowLabel::Right => Label::Right,
            WindowLabel::Datapoint => Label::DataPoint,
            WindowLabel::Left | WindowLabel::Unspecified => Label::Left,
        },
        include_boundaries: req.include_boundaries,
        closed_window: closed_window(req.closed(), ClosedWindow::Left),
        ..Default::default()
    };
    // Windows are computed over sorted time (within each `by` group).
    let mut order = req.by.clone();
    order.push(time.clone());
    Ok(ctx
        .input(0)?
        .sort(
            names(&order),
            SortMultipleOptions::default().with_maintain_order(true),
        )
        .group_by_dynamic(col(time.as_str()), exprs(&req.by), options)
        .agg(aggregated))
}

/// The contract's RollingWindow: each aggregation's function over windows of rows or of a
/// duration, into its alias or in place; or Polaroid's every numeric column by one function.
fn rolling_window(
    ctx: &StepContext<'_>,
    req: &pb::RollingWindowRequest,
) -> EngineResult<LazyFrame> {
    let size = req.window_size.trim();
    let rows = size.strip_suffix('i').unwrap_or(size).parse::<i64>().ok();
    let (window_size, period, time) = match rows {
        _ if size.is_empty() => {
            return Err(EngineError::invalid(
                "rolling_window needs `window_size` (field 2): rows (\"3\") or a duration \
                 (\"2h\")",
            ));
        }
        Some(rows) => (Some(rows), None, None),
        None => {
            duration(size)?;
            let (time, _) = time_column(ctx, "rolling_window", req.time_column.as_deref(), 6)?;
            (None, Some(size.to_owned()), Some(time))
        }
    };
    // As Polars: a window of rows needs all its rows unless told fewer.
    let min_periods = req.min_periods.or(window_size);
    let every = pb::AggFunction::try_from(req.every_numeric_column).map_err(|_| {
        EngineError::invalid(format!(
            "rolling_window: `every_numeric_column` {} is not an AggFunction",
            req.every_numeric_column
        ))
    })?;
    let targets: Vec<(String, String, i32)> = match (req.aggregations.is_empty(), every) {
        (false, pb::AggFunction::Unspecified) => {
            if req.suffix.is_some() {
                return Err(EngineError::invalid(
                    "rolling_window: `suffix` (field 9) names the outputs of \
                     `every_numeric_column` (field 11); `aggregations` are named by their \
                     `alias`",
                ));
            }
            req.aggregations
                .iter()
                .map(|a| {
                    if a.column.is_empty() {
                        return Err(EngineError::invalid(
                            "rolling_window: an aggregation has no `column`",
                        ));
                    }
                    let alias = if a.alias.is_empty() {
                        a.column.clone()
                    } else {
                        a.alias.clone()
                    };
                    Ok((a.column.clone(), alias, a.function))
                })
                .collect::<EngineResult<_>>()?
        }
        (true, pb::AggFunction::Unspecified) => {
            return Err(EngineError::invalid(
                "rolling_window needs `aggregations` (field 3)",
            ));
        }
        (true, function) => target_columns(ctx.schema(0)?, &[], DataType::is_primitive_numeric)?
            .into_iter()
            .map(|c| {
                let alias = format!("{c}{}", req.suffix.as_deref().unwrap_or(""));
                (c, alias, function as i32)
            })
            .collect(),
        (false, _) => {
            return Err(EngineError::invalid(
                "rolling_window: `aggregations` (field 3) and `every_numeric_column` (field \
                 11) are both set: set one of them",
            ));
        }
    };
    let closed = closed_window(req.closed(), ClosedWindow::Right);
    let rolled = targets
        .iter()
        .map(|(column, alias, function)| {
            let function = rolling_function(*function, column)?;
            let spec = pb::RollingSpec {
                function: function as i32,
                window_size,
                period: period.clone(),
                time_column: time.clone(),
                min_periods,
                center: req.center,
            };
            require_columns(ctx.schema(0)?, std::slice::from_ref(column))?;
            Ok(expr::rolling(col(column.as_str()), &spec, closed)?.alias(alias.as_str()))
        })
        .collect::<EngineResult<Vec<_>>>()?;
    Ok(ctx.input(0)?.with_columns(rolled))
}

/// The rolling form of a contract aggregate function; UNIMPLEMENTED where Polars has none.
fn rolling_function(function: i32, column: &str) -> EngineResult<pb::RollingFunction> {
    let typed = pb::AggFunction::try_from(function).map_err(|_| {
        EngineError::invalid(format!(
            "rolling_window: the aggregation of `{}` has `function` {function}, which is not \
             an AggFunction",
            excerpt(column)
        ))
    })?;
    Ok(match typed {
        pb::AggFunction::Sum => pb::RollingFunction::Sum,
        pb::AggFunction::Mean => pb::RollingFunction::Mean,
        pb::AggFunction::Min => pb::RollingFunction::Min,
        pb::AggFunction::Max => pb::RollingFunction::Max,
        pb::AggFunction::Median => pb::RollingFunction::Median,
        pb::AggFunction::Std => pb::RollingFunction::Std,
        pb::AggFunction::Var => pb::RollingFunction::Var,
        pb::AggFunction::Unspecified => {
            return Err(EngineError::invalid(format!(
                "rolling_window: the aggregation of `{}` has no `function` \
                 (AGG_FUNCTION_UNSPECIFIED)",
                excerpt(column)
            )));
        }
        other => {
            return Err(EngineError::Unimplemented(format!(
                "rolling_window: {} has no rolling form in Polars (SUM, MEAN, MIN, MAX, \
                 MEDIAN, STD and VAR have)",
                other.as_str_name()
            )));
        }
    })
}

fn asof_join(ctx: &StepContext<'_>, req: &pb::AsofJoinRequest) -> EngineResult<LazyFrame> {
    let (left_on, right_on) = match (&req.on, req.left_on.as_str(), req.right_on.as_str()) {
        (Some(on), "", "") => (on.clone(), on.clone()),
        (Some(_), _, _) => {
            return Err(EngineError::invalid(
                "asof join: `on` (field 12) is set and so is `left_on` (field 3) or `right_on` \
                 (field 4): set one of them",
            ));
        }
        (None, "", _) => {
            return Err(EngineError::invalid(
                "asof join needs `left_on` (field 3), the left key",
            ));
        }
        (None, left, "") => (left.to_owned(), left.to_owned()),
        (None, left, right) => (left.to_owned(), right.to_owned()),
    };
    let (by_left, by_right) = match (
        req.by.is_empty(),
        req.by_left.is_empty(),
        req.by_right.is_empty(),
    ) {
        (true, true, true) => (vec![], vec![]),
        (false, true, true) => (req.by.clone(), req.by.clone()),
        (true, false, false) if req.by_left.len() == req.by_right.len() => {
            (req.by_left.clone(), req.by_right.clone())
        }
        (false, _, _) => {
            return Err(EngineError::invalid(
                "asof join: `by` (field 5) is set and so is `by_left` (field 13) or `by_right` \
                 (field 14): set one of them",
            ));
        }
        _ => {
            return Err(EngineError::invalid(
                "asof join: `by_left` and `by_right` pair up: give both, of the same length",
            ));
        }
    };
    let strategy = match req
        .strategy
        .as_deref()
        .unwrap_or("")
        .to_ascii_lowercase()
        .as_str()
    {
        "" | "backward" => AsofStrategy::Backward,
        "forward" => AsofStrategy::Forward,
        "nearest" => AsofStrategy::Nearest,
        _ => {
            return Err(EngineError::invalid(format!(
                "asof join: unknown strategy `{}` (backward, forward or nearest)",
                excerpt(req.strategy.as_deref().unwrap_or(""))
            )));
        }
    };
    let (left_schema, right_schema) = (ctx.schema(0)?, ctx.schema(1)?);
    require_columns(left_schema, std::slice::from_ref(&left_on))?;
    require_columns(right_schema, std::slice::from_ref(&right_on))?;
    require_columns(left_schema, &by_left)?;
    require_columns(right_schema, &by_right)?;
    let (tolerance, tolerance_str) = match req.tolerance.as_deref() {
        None => (None, None),
        Some(text) => match left_schema.get(&left_on) {
            Some(dtype) if dtype.is_temporal() => {
                duration(text)?;
                (None, Some(PlSmallStr::from_str(text)))
            }
            _ => {
                let value: f64 = text.parse().map_err(|_| {
                    EngineError::invalid(format!("tolerance `{}` is not a number", excerpt(text)))
                })?;
                (Some(Scalar::from(value)), None)
            }
        },
    };
    let options = AsOfOptions {
        strategy,
        tolerance,
        tolerance_str,
        left_by: (!by_left.is_empty()).then(|| names(&by_left)),
        right_by: (!by_right.is_empty()).then(|| names(&by_right)),
        allow_eq: true,
        check_sortedness: true,
    };
    // An as-of join matches along sorted keys: sort both sides by the key.
    let sorted = |lf: LazyFrame, key: &str| {
        lf.sort(
            [key],
            SortMultipleOptions::default().with_maintain_order(true),
        )
    };
    Ok(sorted(ctx.input(0)?, &left_on)
        .join_builder()
        .with(sorted(ctx.input(1)?, &right_on))
        .how(JoinType::AsOf(Box::new(options)))
        .left_on([col(left_on.as_str())])
        .right_on([col(right_on.as_str())])
        .suffix(req.suffix.as_deref().unwrap_or("_right"))
        .finish())
}

/// Opens the lazy frame of a file source; `path` is already confined to the data roots.
pub fn open_source(op: &Op) -> EngineResult<LazyFrame> {
    match op {
        Op::ReadParquet(req) => sources::parquet(req),
        Op::ReadCsv(req) => sources::csv(req),
        Op::ReadIpc(req) => sources::ipc(req),
        Op::ReadJson(req) => sources::json(req),
        _ => Err(EngineError::Internal {
            operation: "plan",
            reason: "not a file source".into(),
        }),
    }
}
