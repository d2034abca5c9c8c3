//! Translates wire expressions (`polaroid.v1.Expression`) into Polars expressions.
//!
//! Named functions are listed in [`FUNCTIONS`] and documented in docs/expressions.md.

use polaroid_proto::v1::{
    self as pb, AggregateFunction, BinaryOperator, RollingFunction, TimeUnit as PbTimeUnit,
    UnaryOperator, expression::Kind, literal_expr::Value,
};
use polars::prelude::*;

use crate::dtype;
use crate::error::{EngineError, EngineResult};
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

/// Translates an optional wire expression that the caller requires.
pub fn required(expr: Option<&pb::Expression>, what: &str) -> EngineResult<Expr> {
    to_polars(expr.ok_or_else(|| missing(what))?)
}

pub fn to_polars_all(exprs: &[pb::Expression]) -> EngineResult<Vec<Expr>> {
    exprs.iter().map(to_polars).collect()
}

/// Translates one wire expression.
pub fn to_polars(expr: &pb::Expression) -> EngineResult<Expr> {
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
            let left = required(binary.left.as_deref(), "left operand")?;
            let right = required(binary.right.as_deref(), "right operand")?;
            binary_expr(left, binary.op(), right, binary.op)
        }
        Kind::Unary(unary) => {
            let inner = required(unary.expr.as_deref(), "operand")?;
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
        Kind::CaseExpr(case) => case_expr(case),
        Kind::Cast(cast) => {
            let inner = required(cast.expr.as_deref(), "cast input")?;
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
        Value::DateVal(days) => lit(*days).cast(DataType::Date),
        Value::DatetimeVal(dt) => {
            let zone = TimeZone::opt_try_new(dt.time_zone.as_deref())
                .map_err(EngineError::polars("datetime literal"))?;
            lit(dt.value).cast(DataType::Datetime(time_unit(dt.unit()), zone))
        }
        Value::DurationVal(d) => lit(d.value).cast(DataType::Duration(time_unit(d.unit()))),
        Value::ListVal(list) => lit(list_series(list)?).implode(false),
    })
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
    let inner = required(aggregation.expr.as_deref(), "aggregation input")?;
    Ok(match aggregation.function() {
        AggregateFunction::Sum => inner.sum(),
        AggregateFunction::Min => inner.min(),
        AggregateFunction::Max => inner.max(),
        AggregateFunction::Mean => inner.mean(),
        AggregateFunction::Median => inner.median(),
        AggregateFunction::Std => inner.std(1),
        AggregateFunction::Var => inner.var(1),
        AggregateFunction::Count => inner.count(),
        AggregateFunction::First => inner.first(),
        AggregateFunction::Last => inner.last(),
        AggregateFunction::NUnique => inner.n_unique(),
        AggregateFunction::Quantile => {
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
        AggregateFunction::Unspecified => {
            return Err(EngineError::invalid(format!(
                "unknown aggregate function {}",
                aggregation.function
            )));
        }
    })
}

/// Applies a rolling function over a window of rows or a duration.
pub fn rolling(inner: Expr, spec: &pb::RollingSpec, closed: ClosedWindow) -> EngineResult<Expr> {
    let min_periods = non_negative(spec.min_periods.unwrap_or(1), "min_periods")?;
    match (spec.window_size, spec.period.as_deref()) {
        (Some(size), None) => {
            let size = non_negative(size, "window_size")?;
            if size == 0 {
                return Err(EngineError::invalid("window_size must be at least 1"));
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

fn window_expr(window: &pb::WindowExpr) -> EngineResult<Expr> {
    let inner = required(window.expr.as_deref(), "window input")?;
    if let Some(spec) = &window.rolling {
        return rolling(inner, spec, ClosedWindow::Right);
    }
    if window.partition_by.is_empty() {
        return Err(EngineError::invalid(
            "a window needs `partition_by` or `rolling`",
        ));
    }
    inner
        .over(to_polars_all(&window.partition_by)?)
        .map_err(EngineError::polars("window"))
}

fn case_expr(case: &pb::CaseExpr) -> EngineResult<Expr> {
    let mut branches = case.branches.iter().map(|branch| {
        Ok::<_, EngineError>((
            required(branch.when.as_ref(), "`when` condition")?,
            required(branch.then.as_ref(), "`then` value")?,
        ))
    });
    let otherwise = match case.otherwise.as_deref() {
        Some(expr) => to_polars(expr)?,
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
    let arg = |index: usize| to_polars(&args[index]);
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
            coalesce(&to_polars_all(args)?)
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
