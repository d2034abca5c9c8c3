//! Translates wire expressions (`polaroid.v1.Expression`) into Polars expressions.
//!
//! Named functions are listed in [`FUNCTIONS`] and documented in docs/expressions.md.

use polaroid_proto::v1::{
    self as pb, AggFunction, BinaryOperator, RollingFunction, TimeUnit as PbTimeUnit,
    UnaryOperator, expression::Kind, literal_expr::Value,
};
use polars::prelude::*;

use crate::dtype;
use crate::error::{EngineError, EngineResult};
use crate::legacy::{self, OverParts};
use polaroid_proto::excerpt;

/// Every named function an expression may call, with its arguments (the first is the input).
pub const FUNCTIONS: &[(&str, &str)] = &[
    (
        "contains",
        "(string, pattern, [literal: bool]) regex match unless literal",
    ),
    ("starts_with", "(string, prefix)"),
    ("ends_with", "(string, suffix)"),
    ("lower", "(string)"),
    ("upper", "(string)"),
    ("length", "(string) length in characters"),
    (
        "replace",
        "(string, pattern, value, [literal: bool]) every match",
    ),
    ("slice", "(string, offset, [length])"),
    (
        "strip",
        "(string, [characters]) both ends; whitespace by default",
    ),
    ("year", "(temporal)"),
    ("month", "(temporal)"),
    ("day", "(temporal)"),
    ("hour", "(temporal)"),
    ("weekday", "(temporal) Monday = 1 … Sunday = 7"),
    ("truncate", "(temporal, every: duration string)"),
    ("strftime", "(temporal, format)"),
    ("abs", "(number)"),
    ("round", "(number, [decimals: int])"),
    ("sqrt", "(number)"),
    ("log", "(number, [base: float]) natural by default"),
    ("exp", "(number)"),
    ("clip", "(number, lower, upper)"),
    ("is_in", "(value, list literal)"),
    ("between", "(value, lower, upper) inclusive"),
    ("fill_null", "(value, fill)"),
    ("coalesce", "(value, value, …) first non-null"),
    ("alias", "(value, name: string)"),
];

fn known_functions() -> String {
    FUNCTIONS
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(", ")
}

fn missing(what: &str) -> EngineError {
    EngineError::invalid(format!("expression is missing its {what}"))
}

/// The most protobuf message levels an expression may span, itself included (`a + 1` is
/// three: the `Expression`, its `BinaryExpr`, the operands' `Expression`s). Every message
/// that carries an expression must still decode under prost's (and other clients')
/// recursion limit of 100 levels, and the deepest puts it 7 levels down (a
/// `ListJobsResponse`'s job, spec, plan, step, plan step, request): a request nested
/// just within the limit made a job that broke every listing of its tenant's jobs (and an
/// admin's of all tenants'), and a handle whose stored record no other worker could read.
pub const MAX_EXPRESSION_LEVELS: usize = 90;

/// The deepest Polars expression a wire expression may become. A case's branches nest,
/// each inside the one before it (`when(..).then(..).when(..)`), and Polars walks such a
/// chain once per node when it expands a plan, so the time grows with the square of the
/// branches: 65,535 branches (a 1 MiB request) held a thread for minutes (found by the
/// `expr_tree` fuzz target); 999 took 1.2 s and 256 take 0.1 s (debug build).
pub const MAX_EXPRESSION_DEPTH: usize = 256;

/// Checks an expression against [`MAX_EXPRESSION_LEVELS`] and [`MAX_EXPRESSION_DEPTH`],
/// walking it with a stack of its own (a client may build any depth in memory first).
fn check_depth<'a>(expr: &'a pb::Expression) -> EngineResult<()> {
    enum Node<'a> {
        Expr(&'a pb::Expression),
        Literal(&'a pb::LiteralExpr),
    }
    let within = |levels: usize, depth: usize| {
        if levels > MAX_EXPRESSION_LEVELS {
            return Err(EngineError::invalid(format!(
                "expression nested more than {MAX_EXPRESSION_LEVELS} protobuf messages deep"
            )));
        }
        if depth > MAX_EXPRESSION_DEPTH {
            return Err(EngineError::invalid(format!(
                "expression more than {MAX_EXPRESSION_DEPTH} deep (each branch of a case \
                 counts one)"
            )));
        }
        Ok(())
    };
    // (node, its message level, its depth as a Polars expression)
    let mut stack = vec![(Node::Expr(expr), 1, 1)];
    let (mut levels, mut depth) = (0, 0);
    while let Some((node, level, tree)) = stack.pop() {
        levels = levels.max(level);
        depth = depth.max(tree);
        within(levels, depth)?;
        let inner = level + 1;
        let kind = match node {
            Node::Literal(literal) => {
                match &literal.value {
                    Some(Value::ListVal(list)) => stack.extend(
                        list.values
                            .iter()
                            .map(|value| (Node::Literal(value), inner + 1, tree)),
                    ),
                    Some(Value::DatetimeVal(_) | Value::DurationVal(_) | Value::NullVal(_)) => {
                        levels = levels.max(inner);
                    }
                    _ => {}
                }
                continue;
            }
            Node::Expr(expr) => match &expr.kind {
                Some(kind) => kind,
                None => continue,
            },
        };
        // The kind's message is one level in; the expressions it holds one more.
        levels = levels.max(inner);
        let held = inner + 1;
        let mut push = |expr: Option<&'a pb::Expression>| {
            if let Some(expr) = expr {
                stack.push((Node::Expr(expr), held, tree + 1));
            }
        };
        match kind {
            Kind::Column(_) => {}
            Kind::Literal(literal) => stack.push((Node::Literal(literal), inner, tree)),
            Kind::Binary(binary) => {
                push(binary.left.as_deref());
                push(binary.right.as_deref());
            }
            Kind::Unary(unary) => push(unary.expr.as_deref()),
            Kind::Cast(cast) => push(cast.expr.as_deref()),
            Kind::Aggregation(aggregation) => push(aggregation.expr.as_deref()),
            Kind::Function(function) => function.args.iter().for_each(|arg| push(Some(arg))),
            Kind::Window(window) => {
                push(window.expr.as_deref());
                window.partition_by_v0.iter().for_each(|e| push(Some(e)));
                if window.rolling_v0.is_some() {
                    levels = levels.max(held);
                }
            }
            Kind::Over(over) => {
                push(over.expr.as_deref());
                over.partition_by.iter().for_each(|e| push(Some(e)));
                if over.rolling.is_some() {
                    levels = levels.max(held);
                }
            }
            Kind::CaseExpr(case) => {
                // Each branch (a `WhenThen` message) nests inside the one before it.
                for (i, branch) in case.when_then.iter().enumerate() {
                    for expr in [&branch.when, &branch.then].into_iter().flatten() {
                        stack.push((Node::Expr(expr), held + 1, tree + 1 + i));
                    }
                    levels = levels.max(held);
                }
                if let Some(otherwise) = case.otherwise.as_deref() {
                    stack.push((Node::Expr(otherwise), held, tree + 1 + case.when_then.len()));
                }
            }
        }
    }
    within(levels, depth)
}

/// Translates an optional wire expression that the caller requires.
pub fn required(expr: Option<&pb::Expression>, what: &str) -> EngineResult<Expr> {
    to_polars(expr.ok_or_else(|| missing(what))?)
}

pub fn to_polars_all(exprs: &[pb::Expression]) -> EngineResult<Vec<Expr>> {
    exprs.iter().map(to_polars).collect()
}

/// Translates one wire expression, after checking its depth.
pub fn to_polars(expr: &pb::Expression) -> EngineResult<Expr> {
    check_depth(expr)?;
    translate(expr)
}

fn required_inner(expr: Option<&pb::Expression>, what: &str) -> EngineResult<Expr> {
    translate(expr.ok_or_else(|| missing(what))?)
}

fn translate_all(exprs: &[pb::Expression]) -> EngineResult<Vec<Expr>> {
    exprs.iter().map(translate).collect()
}

/// Translates one wire expression whose depth is checked.
fn translate(expr: &pb::Expression) -> EngineResult<Expr> {
    let kind = expr
        .kind
        .as_ref()
        .ok_or_else(|| missing("kind (an empty Expression)"))?;
    match kind {
        Kind::Column(column) => Ok(if column.name == "*" {
            all().as_expr()
        } else {
            col(column.name.as_str())
        }),
        Kind::Literal(literal) => literal_expr(literal),
        Kind::Binary(binary) => {
            let left = required_inner(binary.left.as_deref(), "left operand")?;
            let right = required_inner(binary.right.as_deref(), "right operand")?;
            binary_expr(left, binary.op(), right, binary.op)
        }
        Kind::Unary(unary) => {
            let inner = required_inner(unary.expr.as_deref(), "operand")?;
            Ok(match unary.op() {
                UnaryOperator::Not => inner.not(),
                UnaryOperator::Negate => lit(0) - inner,
                UnaryOperator::IsNull => inner.is_null(),
                UnaryOperator::IsNotNull => inner.is_not_null(),
                UnaryOperator::Abs => inner.abs(),
                UnaryOperator::Unspecified => {
                    return Err(EngineError::invalid(format!(
                        "unknown unary operator {}",
                        unary.op
                    )));
                }
            })
        }
        Kind::Function(function) => function_expr(function),
        Kind::Aggregation(aggregation) => aggregation_expr(aggregation),
        Kind::Window(window) => window_expr(window),
        Kind::Over(over) => over_expr(OverParts {
            expr: over.expr.as_deref(),
            partition_by: &over.partition_by,
            rolling: over.rolling.as_ref(),
        }),
        Kind::CaseExpr(case) => case_expr(case),
        Kind::Cast(cast) => {
            let inner = required_inner(cast.expr.as_deref(), "cast input")?;
            let target = dtype::parse(&cast.data_type)?;
            Ok(if cast.strict {
                inner.strict_cast(target)
            } else {
                inner.cast(target)
            })
        }
    }
}

fn binary_expr(left: Expr, op: BinaryOperator, right: Expr, raw: i32) -> EngineResult<Expr> {
    Ok(match op {
        BinaryOperator::Eq => left.eq(right),
        BinaryOperator::Neq => left.neq(right),
        BinaryOperator::Lt => left.lt(right),
        BinaryOperator::Lte => left.lt_eq(right),
        BinaryOperator::Gt => left.gt(right),
        BinaryOperator::Gte => left.gt_eq(right),
        BinaryOperator::Plus => left + right,
        BinaryOperator::Minus => left - right,
        BinaryOperator::Multiply => left * right,
        BinaryOperator::Divide => left / right,
        BinaryOperator::Modulo => left % right,
        BinaryOperator::And => left.and(right),
        BinaryOperator::Or => left.or(right),
        BinaryOperator::Unspecified => {
            return Err(EngineError::invalid(format!(
                "unknown binary operator {raw}"
            )));
        }
    })
}

fn time_unit(unit: PbTimeUnit) -> TimeUnit {
    match unit {
        PbTimeUnit::Nanoseconds => TimeUnit::Nanoseconds,
        PbTimeUnit::Milliseconds => TimeUnit::Milliseconds,
        PbTimeUnit::Microseconds | PbTimeUnit::Unspecified => TimeUnit::Microseconds,
    }
}

fn literal_expr(literal: &pb::LiteralExpr) -> EngineResult<Expr> {
    let value = literal
        .value
        .as_ref()
        .ok_or_else(|| missing("literal value"))?;
    Ok(match value {
        Value::IntVal(v) => lit(*v),
        Value::FloatVal(v) => lit(*v),
        Value::StringVal(v) => lit(v.as_str()),
        Value::BoolVal(v) => lit(*v),
        Value::BytesVal(v) => lit(v.as_slice()),
        Value::NullVal(_) => lit(NULL),
        Value::DateVal(days) => lit(date_in_range(*days)?).cast(DataType::Date),
        Value::DatetimeVal(dt) => {
            let zone = TimeZone::opt_try_new(dt.time_zone.as_deref())
                .map_err(EngineError::polars("datetime literal"))?;
            let unit = time_unit(dt.unit());
            lit(datetime_in_range(dt.value, unit)?).cast(DataType::Datetime(unit, zone))
        }
        Value::DurationVal(d) => lit(d.value).cast(DataType::Duration(time_unit(d.unit()))),
        Value::ListVal(list) => lit(list_series(list)?).implode(false),
    })
}

/// Dates and datetimes a calendar can name (about 262,000 years either side of year 0):
/// Polars panicked printing a literal beyond them (in `explain`, and in the plan of an
/// error message; found by `expr_tree`).
fn date_in_range(days: i32) -> EngineResult<i32> {
    use polars_arrow::temporal_conversions as t;
    // The conversion adds the days to 1970's without checking for overflow first.
    days.checked_add(t::EPOCH_DAYS_FROM_CE)
        .and_then(|_| t::date32_to_date_opt(days))
        .map(|_| days)
        .ok_or_else(|| EngineError::invalid(format!("date literal {days} is out of range")))
}

fn datetime_in_range(value: i64, unit: TimeUnit) -> EngineResult<i64> {
    use polars_arrow::temporal_conversions as t;
    let named = match unit {
        TimeUnit::Nanoseconds => t::timestamp_ns_to_datetime_opt(value),
        TimeUnit::Microseconds => t::timestamp_us_to_datetime_opt(value),
        TimeUnit::Milliseconds => t::timestamp_ms_to_datetime_opt(value),
    };
    named
        .map(|_| value)
        .ok_or_else(|| EngineError::invalid(format!("datetime literal {value} is out of range")))
}

/// A literal list as a Series; all elements must share one kind (nulls allowed).
fn list_series(list: &pb::LiteralList) -> EngineResult<Series> {
    let values: Vec<&Value> = list
        .values
        .iter()
        .filter_map(|v| v.value.as_ref())
        .collect();
    let first = values.iter().find(|v| !matches!(v, Value::NullVal(_)));
    let mixed = || EngineError::invalid("list literal elements must all have the same type");
    let name = PlSmallStr::from_static("literal");
    let series = match first {
        None => Series::full_null(name, values.len(), &DataType::Null),
        Some(Value::IntVal(_)) => {
            let items: Option<Vec<Option<i64>>> = values
                .iter()
                .map(|v| match v {
                    Value::IntVal(i) => Some(Some(*i)),
                    Value::NullVal(_) => Some(None),
                    _ => None,
                })
                .collect();
            Series::new(name, items.ok_or_else(mixed)?)
        }
        Some(Value::FloatVal(_)) => {
            let items: Option<Vec<Option<f64>>> = values
                .iter()
                .map(|v| match v {
                    Value::FloatVal(f) => Some(Some(*f)),
                    Value::IntVal(i) => Some(Some(*i as f64)),
                    Value::NullVal(_) => Some(None),
                    _ => None,
                })
                .collect();
            Series::new(name, items.ok_or_else(mixed)?)
        }
        Some(Value::StringVal(_)) => {
            let items: Option<Vec<Option<&str>>> = values
                .iter()
                .map(|v| match v {
                    Value::StringVal(s) => Some(Some(s.as_str())),
                    Value::NullVal(_) => Some(None),
                    _ => None,
                })
                .collect();
            Series::new(name, items.ok_or_else(mixed)?)
        }
        Some(Value::BoolVal(_)) => {
            let items: Option<Vec<Option<bool>>> = values
                .iter()
                .map(|v| match v {
                    Value::BoolVal(b) => Some(Some(*b)),
                    Value::NullVal(_) => Some(None),
                    _ => None,
                })
                .collect();
            Series::new(name, items.ok_or_else(mixed)?)
        }
        Some(Value::DateVal(_)) => {
            for value in &values {
                if let Value::DateVal(days) = value {
                    date_in_range(*days)?;
                }
            }
            let items: Option<Vec<Option<i32>>> = values
                .iter()
                .map(|v| match v {
                    Value::DateVal(d) => Some(Some(*d)),
                    Value::NullVal(_) => Some(None),
                    _ => None,
                })
                .collect();
            Series::new(name, items.ok_or_else(mixed)?)
                .cast(&DataType::Date)
                .map_err(EngineError::polars("list literal"))?
        }
        Some(_) => {
            return Err(EngineError::invalid(
                "list literals hold ints, floats, strings, bools or dates",
            ));
        }
    };
    Ok(series)
}

fn aggregation_expr(aggregation: &pb::AggregationExpr) -> EngineResult<Expr> {
    let inner = required_inner(aggregation.expr.as_deref(), "aggregation input")?;
    Ok(match aggregation.function() {
        AggFunction::Sum => inner.sum(),
        AggFunction::Min => inner.min(),
        AggFunction::Max => inner.max(),
        AggFunction::Mean => inner.mean(),
        AggFunction::Median => inner.median(),
        AggFunction::Std => inner.std(1),
        AggFunction::Var => inner.var(1),
        AggFunction::Count => inner.count(),
        AggFunction::First => inner.first(),
        AggFunction::Last => inner.last(),
        AggFunction::NUnique => inner.n_unique(),
        AggFunction::Quantile => {
            let q = aggregation
                .quantile
                .ok_or_else(|| EngineError::invalid("QUANTILE needs `quantile`"))?;
            if !(0.0..=1.0).contains(&q) {
                return Err(EngineError::invalid(format!(
                    "quantile must be in [0, 1], got {q}"
                )));
            }
            inner.quantile(lit(q), QuantileMethod::Linear)
        }
        AggFunction::Unspecified => {
            return Err(EngineError::invalid(format!(
                "unknown aggregate function {}",
                aggregation.function
            )));
        }
    })
}

/// The largest window of rows a rolling function takes. Polars (crate 0.55) allocates
/// about 48 bytes per row of the window up front for a rolling function in a group_by's
/// aggregation, whatever the data: a window of 2^31 rows from an 18-byte fuzz input
/// (`fuzz/corpus/expr_tree/crash-rolling-window-size`) asked for 100 GB and aborted the
/// worker. This bound keeps one window under 50 MB. (Python Polars 2.1 allocates nothing
/// of the kind.)
pub const MAX_ROLLING_WINDOW_ROWS: usize = 1 << 20;

/// Applies a rolling function over a window of rows or a duration.
pub fn rolling(inner: Expr, spec: &pb::RollingSpec, closed: ClosedWindow) -> EngineResult<Expr> {
    let min_periods = non_negative(spec.min_periods.unwrap_or(1), "min_periods")?;
    match (spec.window_size, spec.period.as_deref()) {
        (Some(size), None) => {
            let size = non_negative(size, "window_size")?;
            if size == 0 {
                return Err(EngineError::invalid("window_size must be at least 1"));
            }
            if size > MAX_ROLLING_WINDOW_ROWS {
                return Err(EngineError::invalid(format!(
                    "window_size {size} is over the limit of {MAX_ROLLING_WINDOW_ROWS} rows"
                )));
            }
            let options = RollingOptionsFixedWindow {
                window_size: size,
                min_periods: min_periods.min(size),
                weights: None,
                center: spec.center,
                fn_params: None,
            };
            Ok(match spec.function() {
                RollingFunction::Sum => inner.rolling_sum(options),
                RollingFunction::Mean | RollingFunction::Unspecified => inner.rolling_mean(options),
                RollingFunction::Min => inner.rolling_min(options),
                RollingFunction::Max => inner.rolling_max(options),
                RollingFunction::Std => inner.rolling_std(options),
                RollingFunction::Var => inner.rolling_var(options),
                RollingFunction::Median => inner.rolling_median(options),
            })
        }
        (None, Some(period)) => {
            let by = spec.time_column.as_deref().ok_or_else(|| {
                EngineError::invalid("a duration window (`period`) needs `time_column`")
            })?;
            let options = RollingOptionsDynamicWindow {
                window_size: duration(period)?,
                min_periods,
                closed_window: closed,
                fn_params: None,
            };
            let by = col(by);
            Ok(match spec.function() {
                RollingFunction::Sum => inner.rolling_sum_by(by, options),
                RollingFunction::Mean | RollingFunction::Unspecified => {
                    inner.rolling_mean_by(by, options)
                }
                RollingFunction::Min => inner.rolling_min_by(by, options),
                RollingFunction::Max => inner.rolling_max_by(by, options),
                RollingFunction::Std => inner.rolling_std_by(by, options),
                RollingFunction::Var => inner.rolling_var_by(by, options),
                RollingFunction::Median => inner.rolling_median_by(by, options),
            })
        }
        _ => Err(EngineError::invalid(
            "a rolling window needs exactly one of `window_size` (rows) or `period` (duration)",
        )),
    }
}

/// The contract's window: an aggregation rolled over the last `window_size` rows. A window
/// of a plan stored before the contract is the `over` it was then.
fn window_expr(window: &pb::WindowExpr) -> EngineResult<Expr> {
    if let Some(parts) = legacy::window_v0(window)? {
        return over_expr(parts);
    }
    let input = window
        .expr
        .as_deref()
        .ok_or_else(|| missing("window input (`expr`, WindowExpr field 1)"))?;
    let Some(Kind::Aggregation(aggregation)) = &input.kind else {
        return Err(EngineError::invalid(
            "a window's `expr` (WindowExpr field 1) is the aggregation it rolls \
             (AggregationExpr: SUM, MEAN, MIN, MAX, MEDIAN, STD or VAR); an expression over \
             partitions or over a duration is an `over` (Expression field 10)",
        ));
    };
    let size = window.window_size;
    if size < 1 {
        return Err(EngineError::invalid(format!(
            "a window's `window_size` (WindowExpr field 2) is its rows, at least 1; got {size}"
        )));
    }
    // Unset: every row of the window, as Polars; 0 counts as 1, as in Polars.
    let min_periods = window.min_periods.unwrap_or(size);
    if !(0..=size).contains(&min_periods) {
        return Err(EngineError::invalid(format!(
            "a window's `min_periods` (WindowExpr field 3) must be between 0 and its \
             `window_size` ({size}); got {min_periods}"
        )));
    }
    let function = AggFunction::try_from(aggregation.function).map_err(|_| {
        EngineError::invalid(format!(
            "a window's aggregation has `function` {}, which is not an AggFunction",
            aggregation.function
        ))
    })?;
    let function = match function {
        AggFunction::Sum => RollingFunction::Sum,
        AggFunction::Mean => RollingFunction::Mean,
        AggFunction::Min => RollingFunction::Min,
        AggFunction::Max => RollingFunction::Max,
        AggFunction::Median => RollingFunction::Median,
        AggFunction::Std => RollingFunction::Std,
        AggFunction::Var => RollingFunction::Var,
        AggFunction::Unspecified => {
            return Err(EngineError::invalid(
                "a window's aggregation has no `function` (AGG_FUNCTION_UNSPECIFIED)",
            ));
        }
        other @ (AggFunction::Count
        | AggFunction::First
        | AggFunction::Last
        | AggFunction::NUnique
        | AggFunction::Quantile) => {
            return Err(EngineError::Unimplemented(format!(
                "a window of {} rolls nothing in Polars (SUM, MEAN, MIN, MAX, MEDIAN, STD \
                 and VAR do)",
                other.as_str_name()
            )));
        }
    };
    let inner = required_inner(aggregation.expr.as_deref(), "aggregation input")?;
    let spec = pb::RollingSpec {
        function: function as i32,
        window_size: Some(size),
        min_periods: Some(min_periods.max(1)),
        ..Default::default()
    };
    rolling(inner, &spec, ClosedWindow::Right)
}

/// Polaroid's window: `expr` over partitions, or rolled over rows or a duration.
fn over_expr(over: OverParts<'_>) -> EngineResult<Expr> {
    let inner = required_inner(over.expr, "window input")?;
    if let Some(spec) = over.rolling {
        return rolling(inner, spec, ClosedWindow::Right);
    }
    if over.partition_by.is_empty() {
        return Err(EngineError::invalid(
            "an `over` needs `partition_by` or `rolling`",
        ));
    }
    inner
        .over(translate_all(over.partition_by)?)
        .map_err(EngineError::polars("window"))
}

fn case_expr(case: &pb::CaseExpr) -> EngineResult<Expr> {
    let mut branches = case.when_then.iter().map(|branch| {
        Ok::<_, EngineError>((
            required_inner(branch.when.as_ref(), "`when` condition")?,
            required_inner(branch.then.as_ref(), "`then` value")?,
        ))
    });
    let otherwise = match case.otherwise.as_deref() {
        Some(expr) => translate(expr)?,
        None => lit(NULL),
    };
    let (when0, then0) = branches
        .next()
        .ok_or_else(|| EngineError::invalid("a case expression needs a branch"))??;
    let first = when(when0).then(then0);
    let Some(second) = branches.next() else {
        return Ok(first.otherwise(otherwise));
    };
    let (when1, then1) = second?;
    let mut chained = first.when(when1).then(then1);
    for branch in branches {
        let (w, t) = branch?;
        chained = chained.when(w).then(t);
    }
    Ok(chained.otherwise(otherwise))
}

/// Parses a Polars duration string ("1h", "30m", "2d12h").
pub fn duration(text: &str) -> EngineResult<Duration> {
    Duration::try_parse(text)
        .map_err(|e| EngineError::invalid(format!("bad duration `{}`: {e}", excerpt(text))))
}

fn non_negative(value: i64, what: &str) -> EngineResult<usize> {
    usize::try_from(value)
        .map_err(|_| EngineError::invalid(format!("{what} must be non-negative, got {value}")))
}

/// The value of a literal argument, for functions whose options must be constants.
fn literal_arg<'a>(
    function: &str,
    args: &'a [pb::Expression],
    index: usize,
) -> EngineResult<Option<&'a Value>> {
    let Some(arg) = args.get(index) else {
        return Ok(None);
    };
    match &arg.kind {
        Some(Kind::Literal(pb::LiteralExpr { value: Some(value) })) => Ok(Some(value)),
        _ => Err(EngineError::invalid(format!(
            "argument {index} of `{function}` must be a literal"
        ))),
    }
}

fn string_arg(function: &str, args: &[pb::Expression], index: usize) -> EngineResult<String> {
    match literal_arg(function, args, index)? {
        Some(Value::StringVal(s)) => Ok(s.clone()),
        _ => Err(EngineError::invalid(format!(
            "argument {index} of `{function}` must be a string literal"
        ))),
    }
}

fn bool_arg(
    function: &str,
    args: &[pb::Expression],
    index: usize,
    default: bool,
) -> EngineResult<bool> {
    match literal_arg(function, args, index)? {
        None => Ok(default),
        Some(Value::BoolVal(b)) => Ok(*b),
        Some(_) => Err(EngineError::invalid(format!(
            "argument {index} of `{function}` must be a bool literal"
        ))),
    }
}

fn function_expr(function: &pb::FunctionExpr) -> EngineResult<Expr> {
    let name = function.name.as_str();
    let Some((_, signature)) = FUNCTIONS.iter().find(|(known, _)| *known == name) else {
        return Err(EngineError::invalid(format!(
            "unknown function `{}`; known functions: {}",
            excerpt(name),
            known_functions()
        )));
    };
    let args = &function.args;
    let arity = |min: usize, max: usize| {
        if args.len() < min || args.len() > max {
            Err(EngineError::invalid(format!(
                "`{name}` takes {signature}, got {} argument(s)",
                args.len()
            )))
        } else {
            Ok(())
        }
    };
    let arg = |index: usize| translate(&args[index]);
    let expr = match name {
        "contains" => {
            arity(2, 3)?;
            let literal = bool_arg(name, args, 2, false)?;
            let input = arg(0)?.str();
            if literal {
                input.contains_literal(arg(1)?)
            } else {
                input.contains(arg(1)?, true)
            }
        }
        "starts_with" => {
            arity(2, 2)?;
            arg(0)?.str().starts_with(arg(1)?)
        }
        "ends_with" => {
            arity(2, 2)?;
            arg(0)?.str().ends_with(arg(1)?)
        }
        "lower" => {
            arity(1, 1)?;
            arg(0)?.str().to_lowercase()
        }
        "upper" => {
            arity(1, 1)?;
            arg(0)?.str().to_uppercase()
        }
        "length" => {
            arity(1, 1)?;
            arg(0)?.str().len_chars()
        }
        "replace" => {
            arity(3, 4)?;
            let literal = bool_arg(name, args, 3, false)?;
            arg(0)?.str().replace_all(arg(1)?, arg(2)?, literal)
        }
        "slice" => {
            arity(2, 3)?;
            let length = if args.len() == 3 { arg(2)? } else { lit(NULL) };
            arg(0)?.str().slice(arg(1)?, length)
        }
        "strip" => {
            arity(1, 2)?;
            let characters = if args.len() == 2 { arg(1)? } else { lit(NULL) };
            arg(0)?.str().strip_chars(characters)
        }
        "year" | "month" | "day" | "hour" | "weekday" => {
            arity(1, 1)?;
            let dt = arg(0)?.dt();
            match name {
                "year" => dt.year(),
                "month" => dt.month(),
                "day" => dt.day(),
                "hour" => dt.hour(),
                _ => dt.weekday(),
            }
        }
        "truncate" => {
            arity(2, 2)?;
            let every = string_arg(name, args, 1)?;
            duration(&every)?;
            arg(0)?.dt().truncate(lit(every))
        }
        "strftime" => {
            arity(2, 2)?;
            let format = string_arg(name, args, 1)?;
            arg(0)?.dt().strftime(&format)
        }
        "abs" => {
            arity(1, 1)?;
            arg(0)?.abs()
        }
        "round" => {
            arity(1, 2)?;
            let decimals = match literal_arg(name, args, 1)? {
                None => 0,
                Some(Value::IntVal(d)) => u32::try_from(*d).map_err(|_| {
                    EngineError::invalid(format!(
                        "`round` decimals must be 0..=4294967295, got {d}"
                    ))
                })?,
                Some(_) => {
                    return Err(EngineError::invalid(
                        "argument 1 of `round` must be an int literal",
                    ));
                }
            };
            arg(0)?.round(decimals, RoundMode::HalfAwayFromZero)
        }
        "sqrt" => {
            arity(1, 1)?;
            arg(0)?.sqrt()
        }
        "log" => {
            arity(1, 2)?;
            let base = if args.len() == 2 {
                arg(1)?
            } else {
                lit(std::f64::consts::E)
            };
            arg(0)?.log(base)
        }
        "exp" => {
            arity(1, 1)?;
            arg(0)?.exp()
        }
        "clip" => {
            arity(3, 3)?;
            arg(0)?.clip(arg(1)?, arg(2)?)
        }
        "is_in" => {
            arity(2, 2)?;
            arg(0)?.is_in(arg(1)?, false)
        }
        "between" => {
            arity(3, 3)?;
            arg(0)?.is_between(arg(1)?, arg(2)?, ClosedInterval::Both)
        }
        "fill_null" => {
            arity(2, 2)?;
            arg(0)?.fill_null(arg(1)?)
        }
        "coalesce" => {
            arity(1, usize::MAX)?;
            coalesce(&translate_all(args)?)
        }
        "alias" => {
            arity(2, 2)?;
            let alias = string_arg(name, args, 1)?;
            arg(0)?.alias(alias.as_str())
        }
        _ => {
            return Err(EngineError::Internal {
                operation: "expression",
                reason: format!("function `{name}` is listed but has no translation"),
            });
        }
    };
    Ok(expr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    fn column(name: &str) -> pb::Expression {
        pb::Expression {
            kind: Some(Kind::Column(pb::ColumnExpr { name: name.into() })),
        }
    }

    /// `NOT … NOT d`: each `NOT` is two message levels, the column two more.
    fn nots(levels: usize) -> pb::Expression {
        (0..(levels - 2) / 2).fold(column("d"), |inner, _| pb::Expression {
            kind: Some(Kind::Unary(Box::new(pb::UnaryExpr {
                op: UnaryOperator::Not as i32,
                expr: Some(Box::new(inner)),
            }))),
        })
    }

    fn invalid(result: EngineResult<Expr>) -> String {
        let error = result.expect_err("refused");
        assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
        error.to_string()
    }

    #[test]
    fn expressions_nest_within_every_message_that_carries_them() {
        let deepest = nots(MAX_EXPRESSION_LEVELS);
        let _ = to_polars(&deepest).expect("at the limit");
        let refused = invalid(to_polars(&nots(MAX_EXPRESSION_LEVELS + 2)));
        assert!(
            refused.contains("more than 90 protobuf messages deep"),
            "{refused}"
        );
        // The deepest messages that carry an expression, seen by clients and the store.
        let step = pb::PlanStep {
            op: Some(pb::plan_step::Op::Filter(pb::FilterRequest {
                predicate: Some(deepest),
                ..Default::default()
            })),
        };
        let job = pb::Job {
            spec: Some(pb::JobSpec {
                plan: Some(pb::JobPlan {
                    steps: vec![pb::JobStep {
                        step: Some(step.clone()),
                        inputs: vec![],
                    }],
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let listing = pb::ListJobsResponse {
            jobs: vec![job.clone()],
            next_page_token: String::new(),
        };
        pb::ListJobsResponse::decode(listing.encode_to_vec().as_slice()).expect("a listing");
        let submitted = pb::SubmitJobResponse {
            job: Some(job),
            created: true,
        };
        pb::SubmitJobResponse::decode(submitted.encode_to_vec().as_slice()).expect("a job");
        let record = pb::HandleRecord {
            node: Some(pb::PlanNode {
                step: Some(step),
                ..Default::default()
            }),
            ..Default::default()
        };
        pb::HandleRecord::decode(record.encode_to_vec().as_slice()).expect("a record");
    }

    #[test]
    fn a_request_within_the_decoders_limit_but_past_ours_is_invalid_argument() {
        // A filter whose predicate spans 100 levels decodes (the request is level 0) and
        // made a handle whose stored record (3 levels more) no worker could read.
        let request = pb::FilterRequest {
            predicate: Some(nots(100)),
            ..Default::default()
        };
        let decoded = pb::FilterRequest::decode(request.encode_to_vec().as_slice())
            .expect("within prost's limit");
        invalid(required(decoded.predicate.as_ref(), "predicate"));
        // Lists nest too, without an expression between them.
        let mut list = pb::LiteralExpr {
            value: Some(Value::IntVal(1)),
        };
        for _ in 0..MAX_EXPRESSION_LEVELS {
            list = pb::LiteralExpr {
                value: Some(Value::ListVal(pb::LiteralList { values: vec![list] })),
            };
        }
        invalid(to_polars(&pb::Expression {
            kind: Some(Kind::Literal(list)),
        }));
    }

    #[test]
    fn dates_beyond_the_calendar_are_invalid_argument() {
        let literal = |value: Value| pb::Expression {
            kind: Some(Kind::Literal(pb::LiteralExpr { value: Some(value) })),
        };
        invalid(to_polars(&literal(Value::DateVal(i32::MAX))));
        invalid(to_polars(&literal(Value::DatetimeVal(
            pb::DatetimeLiteral {
                value: i64::MAX,
                unit: PbTimeUnit::Milliseconds as i32,
                time_zone: None,
            },
        ))));
        let list = Value::ListVal(pb::LiteralList {
            values: vec![pb::LiteralExpr {
                value: Some(Value::DateVal(i32::MIN)),
            }],
        });
        invalid(to_polars(&literal(list)));
        // Every nanosecond and the calendar's own range are fine.
        let _ = to_polars(&literal(Value::DatetimeVal(pb::DatetimeLiteral {
            value: i64::MAX,
            unit: PbTimeUnit::Nanoseconds as i32,
            time_zone: None,
        })))
        .expect("in range");
        let _ = to_polars(&literal(Value::DateVal(2_000_000))).expect("year 7445");
    }

    #[test]
    fn wide_cases_are_bounded() {
        let case = |branches: usize| pb::Expression {
            kind: Some(Kind::CaseExpr(Box::new(pb::CaseExpr {
                when_then: vec![
                    pb::WhenThen {
                        when: Some(column("d")),
                        then: Some(column("a")),
                    };
                    branches
                ],
                otherwise: Some(Box::new(column("a"))),
            }))),
        };
        let _ = to_polars(&case(MAX_EXPRESSION_DEPTH - 3)).expect("within the limit");
        // 65,535 branches held a thread for minutes in Polars' planning.
        let started = std::time::Instant::now();
        let refused = invalid(to_polars(&case(65_535)));
        assert!(refused.contains("more than 256 deep"), "{refused}");
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
