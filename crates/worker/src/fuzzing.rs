//! Entry points of the fuzz targets in `fuzz/` (and of the tests that replay their corpus):
//! a fuzzer's bytes go through the code a request's bytes go through, from the protobuf
//! decoder to a built, explained and collected Polars plan. Errors are answers; what must
//! never happen is what would take a worker down: a panic that the engine's own guard
//! would not catch, a stack overflow, an abort, memory without bound.
//!
//! Work runs on a thread with the stack of the runtime's threads (2 MiB, tokio's default
//! for workers and the blocking pool), where the engine runs it: a depth the main
//! thread's 8 MiB survives can still overflow there.
#![doc(hidden)]

use std::sync::{Arc, LazyLock};

use bytes::Bytes;
use polaroid_proto::v1::{self as pb, PlanNode, PlanStep, plan_step::Op};
use polars::prelude::*;
use prost::Message;

use crate::engine::{Node, build_step, catch_panic, schema_fields};
use crate::error::{EngineError, EngineResult};
use crate::plan::Frame;
use crate::query::{self, Mode};
use crate::{engine, ipc};

/// The stack of a tokio runtime thread, where the engine builds and runs plans.
pub const RUNTIME_THREAD_STACK: usize = 2 * 1024 * 1024;

/// Rows a fuzzed plan is collected to: enough to run every kernel, few enough to be fast.
const COLLECT_ROWS: IdxSize = 16;

/// Runs `work` on a thread with a runtime thread's stack and returns its result. A panic
/// that escapes `work` is resumed here, so the fuzzer sees it.
pub fn on_runtime_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("fuzz-runtime".into())
            .stack_size(RUNTIME_THREAD_STACK)
            .spawn_scoped(scope, work)
            .expect("spawning a thread");
        thread
            .join()
            .unwrap_or_else(|payload| std::panic::resume_unwind(payload))
    })
}

/// The frame every fuzzed plan starts from: one column of each kind a client meets, with
/// nulls, named with one letter each so that a mutation finds them.
fn tiny_frame() -> DataFrame {
    let frame = || -> PolarsResult<DataFrame> {
        let mut df = df!(
            "a" => [Some(1i64), None, Some(-3)],
            "b" => [Some(0.5f64), Some(f64::NAN), None],
            "c" => [Some("x"), None, Some("zz")],
            "d" => [Some(true), Some(false), None],
            "e" => [Some(19_000i32), None, Some(19_002)],
            "f" => [Some(1_700_000_000_000_000i64), Some(0), None],
            "g" => [Some(3_600_000_000i64), None, Some(-1)],
        )?;
        df.apply("e", |s| s.cast(&DataType::Date).expect("i32 to date"))?;
        df.apply("f", |s| {
            s.cast(&DataType::Datetime(TimeUnit::Microseconds, None))
                .expect("i64 to datetime")
        })?;
        df.apply("g", |s| {
            s.cast(&DataType::Duration(TimeUnit::Microseconds))
                .expect("i64 to duration")
        })?;
        Ok(df)
    };
    frame().expect("the fuzzing frame is valid")
}

/// The right input of joins: shares `a` and `c` with the left, and has a column of its own.
fn right_frame() -> DataFrame {
    df!(
        "a" => [Some(1i64), Some(2), None],
        "c" => [Some("x"), Some("y"), None],
        "h" => [Some(10.0f64), None, Some(30.0)],
    )
    .expect("the fuzzing frame is valid")
}

static LEFT: LazyLock<DataFrame> = LazyLock::new(tiny_frame);
static RIGHT: LazyLock<DataFrame> = LazyLock::new(right_frame);

/// An input node over rows in memory, as an upload's node is.
fn input(df: &DataFrame, grouped: bool) -> Arc<Node> {
    let lf = df.clone().lazy();
    let frame = if grouped {
        Frame::Grouped {
            input: lf,
            keys: vec![col("c")],
        }
    } else {
        Frame::Lazy(lf)
    };
    Node::in_memory(frame, df.schema().clone())
}

/// The inputs a request for `op` names: two for joins, one per table for SQL (at most
/// four), a grouped frame for `Agg` (whose handle comes of a `GroupBy`), else one.
fn inputs_of(op: &Op) -> Vec<Arc<Node>> {
    match op {
        Op::Join(_) | Op::Cross(_) | Op::AsofJoin(_) => {
            vec![input(&LEFT, false), input(&RIGHT, false)]
        }
        Op::Sql(req) => (0..req.tables.len().clamp(1, 4))
            .map(|i| input(if i % 2 == 0 { &LEFT } else { &RIGHT }, false))
            .collect(),
        Op::Agg(_) | Op::AggV0(_) => vec![input(&LEFT, true)],
        _ => vec![input(&LEFT, false)],
    }
}

/// Builds `op` over in-memory inputs as a request would (the engine's own build, with its
/// guard against panics), then does with the plan what later calls do: explain it and
/// collect its first rows, encoded as a `Collect` answer. Sources are skipped: they read
/// files or URLs, which these targets leave to the engine's tests.
pub fn step(op: Op) -> EngineResult<()> {
    if engine::is_source_op(&op) {
        return Ok(());
    }
    let inputs = inputs_of(&op);
    let modes: Vec<Mode> = inputs.iter().map(|n| n.mode).collect();
    let mode = Mode::of_step(&op, &modes);
    let operation = engine::op_name(&op);
    let (frame, schema) = catch_panic(operation, || build_step(&op, &inputs))?;
    schema_fields(&schema);
    let record = PlanNode {
        step: Some(PlanStep { op: Some(op) }),
        inputs: vec![],
        source: None,
    };
    polaroid_store::PlanId::of(&record);
    let Frame::Lazy(lf) = frame else {
        return Ok(());
    };
    let lf = crate::plan::detached(&lf);
    catch_panic("explain", || {
        lf.explain(true).map_err(EngineError::polars("explain"))
    })?;
    let df = catch_panic("collect", || {
        query::collect(lf.limit(COLLECT_ROWS), mode).map_err(EngineError::polars("collect"))
    })?;
    catch_panic("collect", || {
        ipc::encode_chunks(&df, 64 * 1024, 1024, &mut |_| true)
    })
}

/// Which request an expression rides in, chosen by the first byte of an `expr_decode` input.
pub fn expression_step(context: u8, expr: pb::Expression) -> Op {
    match context % 6 {
        0 => Op::Select(pb::SelectRequest {
            exprs: vec![expr],
            ..Default::default()
        }),
        1 => Op::Filter(pb::FilterRequest {
            predicate: Some(expr),
            ..Default::default()
        }),
        2 => Op::WithColumns(pb::WithColumnsRequest {
            exprs: vec![expr],
            ..Default::default()
        }),
        3 => Op::GroupBy(pb::GroupByRequest {
            columns: vec!["c".into()],
            aggs: vec![expr],
            ..Default::default()
        }),
        4 => Op::Sort(pb::SortRequest {
            exprs: vec![pb::SortExpr {
                expr: Some(expr),
                ..Default::default()
            }],
            ..Default::default()
        }),
        _ => Op::WithColumn(pb::WithColumnRequest {
            name: "z".into(),
            expr: Some(expr),
            ..Default::default()
        }),
    }
}

/// `expr_decode`: the first byte picks the request, the rest is a `polaroid.v1.Expression`.
pub fn expression(data: &[u8]) -> EngineResult<()> {
    let Some((&context, bytes)) = data.split_first() else {
        return Ok(());
    };
    let expr = pb::Expression::decode(bytes).map_err(|e| EngineError::invalid(e.to_string()))?;
    step(expression_step(context, expr))
}

/// `plan_decode`: a stored `polaroid.v1.PlanNode`, built over in-memory inputs.
pub fn plan_node(data: &[u8]) -> EngineResult<()> {
    let node = PlanNode::decode(data).map_err(|e| EngineError::invalid(e.to_string()))?;
    let Some(op) = node.step.and_then(|step| step.op) else {
        return Ok(());
    };
    // As a worker loads a stored plan: steps of the old shapes are upgraded first.
    step(crate::legacy::upgrade(op)?)
}

/// Most an upload may be in `arrow_ipc_upload`: uploads are checked against
/// `max_upload_bytes` before they are decoded, so beyond it nothing is.
pub const UPLOAD_LIMIT: usize = 1 << 20;

/// Most an upload may decode to in `arrow_ipc_upload`: far more than [`UPLOAD_LIMIT`], as
/// in production (16 GiB against uploads of any size), so that what the bounds let
/// through beyond an upload's own bytes is exercised, within libFuzzer's memory limit.
pub const DECODE_LIMIT: usize = 64 << 20;

/// `arrow_ipc_upload`: the first byte picks the way in. Even: the bytes are an upload as
/// `UploadArrow` and `CreateFromArrow` take it. Odd: they are Flight `DoPut` messages
/// (each a 2-byte little-endian header length, the header, a 2-byte body length, the
/// body), put together as `DoPut` does within [`UPLOAD_LIMIT`]. What decodes is then
/// handled as an upload is: its schema recorded, its rows encoded for `Collect` and
/// Flight, and decoded again.
pub fn arrow_ipc(data: &[u8]) -> EngineResult<()> {
    let Some((&way, rest)) = data.split_first() else {
        return Ok(());
    };
    let bytes = if way % 2 == 0 {
        Bytes::copy_from_slice(rest)
    } else {
        flight_messages(rest)?
    };
    let df = catch_panic("upload", || ipc::decode(&bytes, DECODE_LIMIT))?;
    schema_fields(df.schema());
    let _ = (df.height(), df.estimated_size());
    let chunks = catch_panic("collect", || {
        let mut chunks = Vec::new();
        ipc::encode_chunks(&df, 64 * 1024, 1024, &mut |chunk| {
            chunks.push(chunk);
            true
        })?;
        ipc::encode_flight_batches(&df, 64 * 1024, 1024, &mut |_| true)?;
        Ok(chunks)
    })?;
    // What the server wrote, it (and any client) reads back as written: outside every
    // guard, so that a failure here fails the run.
    for chunk in &chunks {
        let again = ipc::decode(chunk, usize::MAX)
            .unwrap_or_else(|e| panic!("a result chunk the server wrote does not decode: {e}"));
        assert_eq!(again.schema(), df.schema(), "a result re-read as written");
    }
    Ok(())
}

fn flight_messages(mut data: &[u8]) -> EngineResult<Bytes> {
    fn take<'a>(data: &mut &'a [u8]) -> Option<&'a [u8]> {
        let (length, rest) = data.split_first_chunk::<2>()?;
        let length = usize::from(u16::from_le_bytes(*length)).min(rest.len());
        let (taken, rest) = rest.split_at(length);
        *data = rest;
        Some(taken)
    }
    let mut stream = ipc::StreamBuilder::new(UPLOAD_LIMIT);
    while let Some(header) = take(&mut data) {
        let body = take(&mut data).unwrap_or_default();
        stream.push(header, body)?;
    }
    stream.finish()
}

#[cfg(test)]
mod tests {
    //! The committed corpus of each target, replayed: every input once found a new path
    //! through the code, and the crashes fixed are among them.
    use super::*;
    use polaroid_proto::fuzz_corpus;

    /// The seeds are in the committed corpus as [`seeds::all`] makes them (written there
    /// with `POLAROID_WRITE_FUZZ_SEEDS=1`): the corpus follows the requests it stands for.
    #[test]
    fn seeds_are_in_the_corpus() {
        for (target, name, bytes) in seeds::all() {
            fuzz_corpus::check_seed(target, &name, &bytes);
        }
    }

    fn replay(target: &str, run: fn(&[u8]) -> EngineResult<()>) {
        for (path, input) in fuzz_corpus::inputs(target) {
            // Errors are answers; a panic or an overflow fails the test.
            let result = on_runtime_stack(|| run(&input));
            if std::env::var_os("POLAROID_FUZZ_VERBOSE").is_some() {
                eprintln!("{}: {:?}", path.display(), result.err());
            }
        }
    }

    #[test]
    fn operations_polars_is_built_without_are_unimplemented() {
        // A number added to a list column: Polars panics for want of `list_arithmetic`.
        let list = pb::Expression {
            kind: Some(pb::expression::Kind::Function(pb::FunctionExpr {
                name: "alias".into(),
                args: vec![
                    pb::Expression {
                        kind: Some(pb::expression::Kind::Literal(pb::LiteralExpr {
                            value: Some(pb::literal_expr::Value::ListVal(pb::LiteralList {
                                values: vec![pb::LiteralExpr {
                                    value: Some(pb::literal_expr::Value::IntVal(1)),
                                }],
                            })),
                        })),
                    },
                    pb::Expression {
                        kind: Some(pb::expression::Kind::Literal(pb::LiteralExpr {
                            value: Some(pb::literal_expr::Value::StringVal("l".into())),
                        })),
                    },
                ],
            })),
        };
        let sum = pb::Expression {
            kind: Some(pb::expression::Kind::Binary(Box::new(pb::BinaryExpr {
                left: Some(Box::new(list)),
                op: pb::BinaryOperator::Plus as i32,
                right: Some(Box::new(pb::Expression {
                    kind: Some(pb::expression::Kind::Column(pb::ColumnExpr {
                        name: "a".into(),
                    })),
                })),
            }))),
        };
        let error = on_runtime_stack(|| step(expression_step(0, sum))).expect_err("refused");
        assert_eq!(
            error.code(),
            polaroid_proto::ErrorCode::Unimplemented,
            "{error}"
        );
    }

    #[test]
    fn a_rolling_window_past_its_limit_is_refused_in_every_context() {
        // Found by `expr_tree`: a rolling mean over 2^31 rows in a group_by's aggregation
        // asked Polars for 100 GB. Each context is tried, the largest window allowed too.
        let rolling = |window_size: usize| pb::Expression {
            kind: Some(pb::expression::Kind::Over(Box::new(pb::OverExpr {
                expr: Some(Box::new(pb::Expression {
                    kind: Some(pb::expression::Kind::Column(pb::ColumnExpr {
                        name: "a".into(),
                    })),
                })),
                partition_by: vec![],
                rolling: Some(pb::RollingSpec {
                    window_size: Some(window_size as i64),
                    ..Default::default()
                }),
            }))),
        };
        for context in 0..6 {
            let too_wide = rolling(2_099_281_201);
            let error =
                on_runtime_stack(|| step(expression_step(context, too_wide))).expect_err("refused");
            assert_eq!(
                error.code(),
                polaroid_proto::ErrorCode::InvalidArgument,
                "{error}"
            );
            assert!(error.to_string().contains("over the limit"), "{error}");
            // The widest window allowed runs (or fails for its context, never aborts).
            let widest = rolling(crate::expr::MAX_ROLLING_WINDOW_ROWS);
            let _ = on_runtime_stack(|| step(expression_step(context, widest)));
        }
    }

    #[test]
    fn expr_decode_corpus_runs() {
        replay("expr_decode", expression);
    }

    #[test]
    fn plan_decode_corpus_runs() {
        replay("plan_decode", plan_node);
    }

    #[test]
    fn arrow_ipc_upload_corpus_runs() {
        replay("arrow_ipc_upload", arrow_ipc);
    }
}

/// Seed inputs of the targets: real requests, encoded (see `fuzz/README.md`). Each is in
/// the committed corpus as `fuzz/corpus/<target>/seed-<name>`; the corpus test writes them
/// there with `POLAROID_WRITE_FUZZ_SEEDS=1`.
pub mod seeds {
    use super::*;
    use pb::expression::Kind;
    use pb::literal_expr::Value;

    fn expr(kind: Kind) -> pb::Expression {
        pb::Expression { kind: Some(kind) }
    }

    fn column(name: &str) -> pb::Expression {
        expr(Kind::Column(pb::ColumnExpr { name: name.into() }))
    }

    fn literal(value: Value) -> pb::Expression {
        expr(Kind::Literal(pb::LiteralExpr { value: Some(value) }))
    }

    fn text(value: &str) -> pb::Expression {
        literal(Value::StringVal(value.into()))
    }

    fn binary(
        left: pb::Expression,
        op: pb::BinaryOperator,
        right: pb::Expression,
    ) -> pb::Expression {
        expr(Kind::Binary(Box::new(pb::BinaryExpr {
            left: Some(Box::new(left)),
            op: op as i32,
            right: Some(Box::new(right)),
        })))
    }

    fn function(name: &str, args: Vec<pb::Expression>) -> pb::Expression {
        expr(Kind::Function(pb::FunctionExpr {
            name: name.into(),
            args,
        }))
    }

    fn aggregation(function: pb::AggFunction, input: pb::Expression) -> pb::Expression {
        expr(Kind::Aggregation(Box::new(pb::AggregationExpr {
            function: function as i32,
            expr: Some(Box::new(input)),
            quantile: (function == pb::AggFunction::Quantile).then_some(0.5),
        })))
    }

    /// Expressions of every kind, each function with arguments it accepts.
    pub fn expressions() -> Vec<(String, pb::Expression)> {
        use pb::{AggFunction as A, BinaryOperator as B, UnaryOperator as U};
        let mut all = vec![
            ("column".to_owned(), column("a")),
            ("all".into(), column("*")),
            ("int".into(), literal(Value::IntVal(7))),
            ("float".into(), literal(Value::FloatVal(2.5))),
            ("string".into(), text("x")),
            ("bool".into(), literal(Value::BoolVal(true))),
            (
                "bytes".into(),
                literal(Value::BytesVal(b"\x00\xff".to_vec())),
            ),
            ("null".into(), literal(Value::NullVal(pb::NullLiteral {}))),
            ("date".into(), literal(Value::DateVal(19_000))),
            (
                "datetime".into(),
                literal(Value::DatetimeVal(pb::DatetimeLiteral {
                    value: 1_700_000_000_000,
                    unit: pb::TimeUnit::Milliseconds as i32,
                    time_zone: Some("UTC".into()),
                })),
            ),
            (
                "duration".into(),
                literal(Value::DurationVal(pb::DurationLiteral {
                    value: 60,
                    unit: pb::TimeUnit::Nanoseconds as i32,
                })),
            ),
        ];
        for op in [
            B::Eq,
            B::Neq,
            B::Lt,
            B::Lte,
            B::Gt,
            B::Gte,
            B::Plus,
            B::Minus,
            B::Multiply,
            B::Divide,
            B::Modulo,
        ] {
            all.push((
                format!("binary-{}", op.as_str_name()),
                binary(column("a"), op, literal(Value::IntVal(2))),
            ));
        }
        for op in [B::And, B::Or] {
            all.push((
                format!("binary-{}", op.as_str_name()),
                binary(column("d"), op, literal(Value::BoolVal(false))),
            ));
        }
        for (op, input) in [
            (U::Not, "d"),
            (U::Negate, "b"),
            (U::IsNull, "c"),
            (U::IsNotNull, "c"),
            (U::Abs, "a"),
        ] {
            all.push((
                format!("unary-{}", op.as_str_name()),
                expr(Kind::Unary(Box::new(pb::UnaryExpr {
                    op: op as i32,
                    expr: Some(Box::new(column(input))),
                }))),
            ));
        }
        let list = literal(Value::ListVal(pb::LiteralList {
            values: [Value::IntVal(1), Value::NullVal(pb::NullLiteral {})]
                .into_iter()
                .map(|v| pb::LiteralExpr { value: Some(v) })
                .collect(),
        }));
        let functions = [
            (
                "contains",
                vec![column("c"), text("z+"), literal(Value::BoolVal(false))],
            ),
            ("starts_with", vec![column("c"), text("z")]),
            ("ends_with", vec![column("c"), text("z")]),
            ("lower", vec![column("c")]),
            ("upper", vec![column("c")]),
            ("length", vec![column("c")]),
            (
                "replace",
                vec![
                    column("c"),
                    text("z"),
                    text("y"),
                    literal(Value::BoolVal(true)),
                ],
            ),
            (
                "slice",
                vec![
                    column("c"),
                    literal(Value::IntVal(1)),
                    literal(Value::IntVal(1)),
                ],
            ),
            ("strip", vec![column("c"), text("z")]),
            ("year", vec![column("e")]),
            ("month", vec![column("f")]),
            ("day", vec![column("e")]),
            ("hour", vec![column("f")]),
            ("weekday", vec![column("e")]),
            ("truncate", vec![column("f"), text("1h")]),
            ("strftime", vec![column("f"), text("%Y-%m-%d")]),
            ("abs", vec![column("a")]),
            ("round", vec![column("b"), literal(Value::IntVal(1))]),
            ("sqrt", vec![column("b")]),
            ("log", vec![column("b"), literal(Value::FloatVal(10.0))]),
            ("exp", vec![column("b")]),
            (
                "clip",
                vec![
                    column("a"),
                    literal(Value::IntVal(0)),
                    literal(Value::IntVal(1)),
                ],
            ),
            ("is_in", vec![column("a"), list]),
            (
                "between",
                vec![
                    column("a"),
                    literal(Value::IntVal(0)),
                    literal(Value::IntVal(2)),
                ],
            ),
            ("fill_null", vec![column("a"), literal(Value::IntVal(0))]),
            (
                "coalesce",
                vec![column("a"), column("b"), literal(Value::IntVal(0))],
            ),
            ("alias", vec![column("a"), text("renamed")]),
        ];
        for (name, args) in functions {
            all.push((format!("function-{name}"), function(name, args)));
        }
        for function in [
            A::Sum,
            A::Min,
            A::Max,
            A::Mean,
            A::Median,
            A::Std,
            A::Var,
            A::Count,
            A::First,
            A::Last,
            A::NUnique,
            A::Quantile,
        ] {
            all.push((
                format!("aggregation-{}", function.as_str_name()),
                aggregation(function, column("b")),
            ));
        }
        // `window-*`: windows in the shape plans were stored in before the contract (the
        // bytes these seeds always had); `over-*`: the same as today's `over`.
        let window = |partition_by: Vec<pb::Expression>, rolling: Option<pb::RollingSpec>| {
            expr(Kind::Window(Box::new(pb::WindowExpr {
                expr: Some(Box::new(aggregation(A::Sum, column("a")))),
                partition_by_v0: partition_by,
                rolling_v0: rolling,
                ..Default::default()
            })))
        };
        let over = |partition_by: Vec<pb::Expression>, rolling: Option<pb::RollingSpec>| {
            expr(Kind::Over(Box::new(pb::OverExpr {
                expr: Some(Box::new(aggregation(A::Sum, column("a")))),
                partition_by,
                rolling,
            })))
        };
        all.push(("window-over".into(), window(vec![column("c")], None)));
        all.push((
            "window-rolling-rows".into(),
            window(
                vec![],
                Some(pb::RollingSpec {
                    function: pb::RollingFunction::Max as i32,
                    window_size: Some(2),
                    ..Default::default()
                }),
            ),
        ));
        all.push((
            "window-rolling-period".into(),
            window(
                vec![],
                Some(pb::RollingSpec {
                    function: pb::RollingFunction::Std as i32,
                    period: Some("2d".into()),
                    time_column: Some("e".into()),
                    ..Default::default()
                }),
            ),
        ));
        let branch = |when: pb::Expression, then: pb::Expression| pb::WhenThen {
            when: Some(when),
            then: Some(then),
        };
        all.push((
            "case".into(),
            expr(Kind::CaseExpr(Box::new(pb::CaseExpr {
                when_then: vec![
                    branch(column("d"), text("yes")),
                    branch(
                        binary(column("a"), B::Gt, literal(Value::IntVal(0))),
                        text("pos"),
                    ),
                ],
                otherwise: Some(Box::new(text("other"))),
            }))),
        ));
        for (name, data_type) in [
            ("int", "Int32"),
            ("string", "String"),
            ("datetime", "Datetime[ms, UTC]"),
            ("list", "List[Float64]"),
        ] {
            all.push((
                format!("cast-{name}"),
                expr(Kind::Cast(Box::new(pb::CastExpr {
                    expr: Some(Box::new(column("a"))),
                    data_type: data_type.into(),
                    strict: name == "int",
                }))),
            ));
        }
        // After the others: a seed's first byte (its request) follows its place in the list.
        all.push(("over-partition".into(), over(vec![column("c")], None)));
        all.push((
            "over-rolling-rows".into(),
            over(
                vec![],
                Some(pb::RollingSpec {
                    function: pb::RollingFunction::Max as i32,
                    window_size: Some(2),
                    ..Default::default()
                }),
            ),
        ));
        // The contract's window: an aggregation over the last rows.
        all.push((
            "window-contract-rows".into(),
            expr(Kind::Window(Box::new(pb::WindowExpr {
                expr: Some(Box::new(aggregation(A::Mean, column("a")))),
                window_size: 3,
                min_periods: Some(2),
                ..Default::default()
            }))),
        ));
        all
    }

    fn strings(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    /// A step of each kind, as its request would make it.
    pub fn steps() -> Vec<(&'static str, Op)> {
        use pb::*;
        let sum_b = || aggregation(AggFunction::Sum, column("b"));
        vec![
            (
                "select",
                Op::Select(SelectRequest {
                    columns: strings(&["a", "c"]),
                    exprs: vec![binary(column("a"), BinaryOperator::Plus, column("b"))],
                    ..Default::default()
                }),
            ),
            (
                "filter",
                Op::Filter(FilterRequest {
                    predicate: Some(column("d")),
                    ..Default::default()
                }),
            ),
            (
                "with_column",
                Op::WithColumn(WithColumnRequest {
                    name: "z".into(),
                    expr: Some(function("upper", vec![column("c")])),
                    ..Default::default()
                }),
            ),
            (
                "with_columns",
                Op::WithColumns(WithColumnsRequest {
                    exprs: vec![function("alias", vec![column("a"), text("z")])],
                    ..Default::default()
                }),
            ),
            (
                "with_columns-map",
                Op::WithColumns(WithColumnsRequest {
                    columns: [("z".to_owned(), column("a"))].into(),
                    ..Default::default()
                }),
            ),
            (
                "drop",
                Op::Drop(DropRequest {
                    columns: strings(&["b"]),
                    ..Default::default()
                }),
            ),
            (
                "rename",
                Op::Rename(RenameRequest {
                    mapping: [("a".to_owned(), "z".to_owned())].into(),
                    ..Default::default()
                }),
            ),
            (
                "sort",
                Op::Sort(SortRequest {
                    columns: vec![SortColumn {
                        name: "c".into(),
                        descending: true,
                        nulls_last: true,
                    }],
                    exprs: vec![SortExpr {
                        expr: Some(column("a")),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
            ),
            (
                "unique",
                Op::Unique(UniqueRequest {
                    subset: strings(&["c"]),
                    keep: UniqueKeep::Last as i32,
                    ..Default::default()
                }),
            ),
            (
                "unique-keep-first",
                Op::Unique(UniqueRequest {
                    keep_first: true,
                    ..Default::default()
                }),
            ),
            (
                "limit",
                Op::Limit(LimitRequest {
                    n: 2,
                    ..Default::default()
                }),
            ),
            (
                "head",
                Op::Head(HeadRequest {
                    n: 2,
                    ..Default::default()
                }),
            ),
            (
                "tail",
                Op::Tail(TailRequest {
                    n: 2,
                    ..Default::default()
                }),
            ),
            (
                "slice",
                Op::Slice(SliceRequest {
                    offset: -2,
                    length: 1,
                    ..Default::default()
                }),
            ),
            (
                "slice-to-end",
                Op::Slice(SliceRequest {
                    offset: 1,
                    to_end: true,
                    ..Default::default()
                }),
            ),
            (
                "group_by",
                Op::GroupBy(GroupByRequest {
                    columns: strings(&["c"]),
                    aggs: vec![sum_b()],
                    ..Default::default()
                }),
            ),
            (
                "group_by-keys-only",
                Op::GroupBy(GroupByRequest {
                    by_exprs: vec![column("d")],
                    ..Default::default()
                }),
            ),
            (
                "agg",
                Op::Agg(AggRequest {
                    exprs: vec![sum_b()],
                    ..Default::default()
                }),
            ),
            (
                "agg-contract",
                Op::Agg(AggRequest {
                    aggregations: vec![pb::Aggregation {
                        column: "b".into(),
                        alias: "total".into(),
                        function: pb::AggFunction::Sum as i32,
                    }],
                    ..Default::default()
                }),
            ),
            (
                "pivot",
                Op::Pivot(PivotRequest {
                    columns: "c".into(),
                    index: "a".into(),
                    values: "b".into(),
                    aggregate: Some(AggFunction::First as i32),
                    sort_columns: true,
                    ..Default::default()
                }),
            ),
            (
                "pivot-several",
                Op::Pivot(PivotRequest {
                    on_columns: strings(&["c"]),
                    index_columns: strings(&["a"]),
                    ..Default::default()
                }),
            ),
            (
                "pivot-v0",
                Op::PivotV0(PivotStepV0 {
                    on: strings(&["c"]),
                    index: strings(&["a"]),
                    aggregate: AggFunction::Sum as i32,
                    ..Default::default()
                }),
            ),
            (
                "melt",
                Op::Melt(MeltRequest {
                    id_vars: strings(&["a"]),
                    value_vars: strings(&["b"]),
                    ..Default::default()
                }),
            ),
            (
                "join",
                Op::Join(JoinRequest {
                    on: Some(JoinOn {
                        columns: strings(&["a"]),
                    }),
                    join_type: JoinType::Left as i32,
                    ..Default::default()
                }),
            ),
            (
                "join-left-right",
                Op::Join(JoinRequest {
                    left_right: Some(JoinLeftRight {
                        left: strings(&["c"]),
                        right: strings(&["c"]),
                    }),
                    how: JoinHow::Full as i32,
                    coalesce: true,
                    ..Default::default()
                }),
            ),
            ("cross", Op::Cross(CrossRequest::default())),
            (
                "sql",
                Op::Sql(SqlRequest {
                    query: "SELECT a, SUM(b) AS s FROM l JOIN r USING (a) GROUP BY a".into(),
                    tables: [
                        ("l".to_owned(), String::new()),
                        ("r".to_owned(), String::new()),
                    ]
                    .into(),
                }),
            ),
            (
                "as_time_series",
                Op::AsTimeSeries(AsTimeSeriesRequest {
                    timestamp_column: "f".into(),
                    ensure_sorted: true,
                    by: strings(&["c"]),
                    ..Default::default()
                }),
            ),
            (
                "resample",
                Op::Resample(ResampleRequest {
                    time_column: Some("e".into()),
                    frequency: "1d".into(),
                    exprs: vec![sum_b()],
                    ..Default::default()
                }),
            ),
            (
                "resample-contract",
                Op::Resample(ResampleRequest {
                    time_column: Some("e".into()),
                    frequency: "1d".into(),
                    aggregations: vec![pb::Aggregation {
                        column: "b".into(),
                        alias: String::new(),
                        function: pb::AggFunction::Mean as i32,
                    }],
                    label: Some("right".into()),
                    ..Default::default()
                }),
            ),
            (
                "rolling_window",
                Op::RollingWindow(RollingWindowRequest {
                    window_size: "2".into(),
                    aggregations: vec![pb::RollingAggregation {
                        column: "b".into(),
                        alias: "b_r".into(),
                        function: pb::AggFunction::Sum as i32,
                    }],
                    ..Default::default()
                }),
            ),
            (
                "rolling_window-period",
                Op::RollingWindow(RollingWindowRequest {
                    window_size: "2d".into(),
                    time_column: Some("e".into()),
                    every_numeric_column: pb::AggFunction::Mean as i32,
                    ..Default::default()
                }),
            ),
            (
                "lag",
                Op::Lag(LagRequest {
                    columns: vec![LagColumn {
                        column: "a".into(),
                        periods: 1,
                        alias: None,
                    }],
                    ..Default::default()
                }),
            ),
            (
                "lag-every-column",
                Op::Lag(LagRequest {
                    every_column_periods: Some(1),
                    ..Default::default()
                }),
            ),
            (
                "lead",
                Op::Lead(LeadRequest {
                    columns: vec![LagColumn {
                        column: "a".into(),
                        periods: 2,
                        alias: Some("a_next".into()),
                    }],
                    ..Default::default()
                }),
            ),
            (
                "diff",
                Op::Diff(DiffRequest {
                    periods: 1,
                    ..Default::default()
                }),
            ),
            ("pct_change", Op::PctChange(PctChangeRequest::default())),
            (
                "asof_join",
                Op::AsofJoin(AsofJoinRequest {
                    left_on: "a".into(),
                    strategy: Some("nearest".into()),
                    tolerance: Some("1".into()),
                    ..Default::default()
                }),
            ),
            (
                "fill_null-value",
                Op::FillNull(FillNullRequest {
                    value: Some(FillValue {
                        value: Some(fill_value::Value::IntVal(0)),
                    }),
                    ..Default::default()
                }),
            ),
            (
                "fill_null-method",
                Op::FillNull(FillNullRequest {
                    method: FillMethod::FillForward as i32,
                    limit: Some(1),
                    ..Default::default()
                }),
            ),
            (
                "fill_null-expr",
                Op::FillNull(FillNullRequest {
                    fill_expr: Some(literal(Value::IntVal(0))),
                    ..Default::default()
                }),
            ),
            (
                "fill_nan",
                Op::FillNan(FillNanRequest {
                    value: 1.5,
                    ..Default::default()
                }),
            ),
            (
                "fill_nan-method",
                Op::FillNan(FillNanRequest {
                    method: FillMethod::FillMean as i32,
                    ..Default::default()
                }),
            ),
            (
                "interpolate",
                Op::Interpolate(InterpolateRequest::default()),
            ),
            (
                "interpolate-nearest",
                Op::Interpolate(InterpolateRequest {
                    method: "nearest".into(),
                    ..Default::default()
                }),
            ),
            (
                "describe",
                Op::Describe(DescribeRequest {
                    percentiles: vec![0.1, 0.9],
                    ..Default::default()
                }),
            ),
            (
                "describe-columns",
                Op::Describe(DescribeRequest {
                    columns: strings(&["a"]),
                    ..Default::default()
                }),
            ),
            ("stats", Op::Stats(GetStatsRequest::default())),
            // Stored shapes from before the established contract, upgraded when loaded.
            (
                "sort-v0",
                Op::SortV0(SortStepV0 {
                    by: strings(&["c"]),
                    descending: vec![true, false],
                    by_exprs: vec![column("a")],
                    ..Default::default()
                }),
            ),
            (
                "slice-v0",
                Op::SliceV0(SliceStepV0 {
                    offset: 1,
                    ..Default::default()
                }),
            ),
            (
                "unique-v0",
                Op::UniqueV0(UniqueStepV0 {
                    subset: strings(&["c"]),
                    ..Default::default()
                }),
            ),
            (
                "with_columns-v0",
                Op::WithColumnsV0(WithColumnsStepV0 {
                    exprs: vec![column("b")],
                    ..Default::default()
                }),
            ),
            (
                "join-v0",
                Op::JoinV0(JoinStepV0 {
                    on: strings(&["a"]),
                    how: JoinHow::Semi as i32,
                    ..Default::default()
                }),
            ),
            (
                "asof_join-v0",
                Op::AsofJoinV0(AsofJoinStepV0 {
                    on: Some("a".into()),
                    strategy: AsofStrategy::Forward as i32,
                    ..Default::default()
                }),
            ),
            (
                "lag-v0",
                Op::LagV0(ShiftStepV0 {
                    columns: strings(&["a"]),
                    ..Default::default()
                }),
            ),
            (
                "lead-v0",
                Op::LeadV0(ShiftStepV0 {
                    n: 2,
                    suffix: Some("_next".into()),
                    ..Default::default()
                }),
            ),
            (
                "fill_null-v0",
                Op::FillNullV0(FillNullStepV0 {
                    strategy: FillNullStrategy::Mean as i32,
                    ..Default::default()
                }),
            ),
            (
                "fill_nan-v0",
                Op::FillNanV0(FillNanStepV0 {
                    value: Some(literal(Value::FloatVal(0.0))),
                    ..Default::default()
                }),
            ),
            (
                "describe-v0",
                Op::DescribeV0(DescribeStepV0 {
                    percentiles: vec![0.5],
                    ..Default::default()
                }),
            ),
            (
                "interpolate-v0",
                Op::InterpolateV0(InterpolateStepV0 {
                    method: InterpolationMethod::Nearest as i32,
                    ..Default::default()
                }),
            ),
        ]
    }

    /// Frames an upload may hold: the fuzzing frames, an empty one, and nested types.
    fn frames() -> Vec<(&'static str, DataFrame)> {
        let nested = || -> PolarsResult<DataFrame> {
            let list = Series::new(
                "l".into(),
                [
                    Series::new("".into(), [Some(1i64), None]),
                    Series::new("".into(), [3i64]),
                ],
            );
            let fields = [
                Series::new("x".into(), [1i64, 2]),
                Series::new("y".into(), ["p", "q"]),
            ];
            let st = StructChunked::from_series("st".into(), 2, fields.iter())?.into_series();
            DataFrame::new_infer_height(vec![list.into(), st.into()])
        };
        vec![
            ("tiny", LEFT.clone()),
            ("right", RIGHT.clone()),
            ("empty", LEFT.clear()),
            ("nested", nested().expect("a nested frame")),
        ]
    }

    /// Every seed: (target, name, bytes).
    pub fn all() -> Vec<(&'static str, String, Vec<u8>)> {
        let mut seeds = Vec::new();
        for (i, (name, expression)) in expressions().into_iter().enumerate() {
            let mut bytes = vec![i as u8 % 6];
            bytes.extend(expression.encode_to_vec());
            seeds.push(("expr_decode", name, bytes));
        }
        for (name, op) in steps() {
            let inputs = match &op {
                Op::Join(_) | Op::Cross(_) | Op::AsofJoin(_) | Op::Sql(_) => 2,
                _ => 1,
            };
            let node = PlanNode {
                step: Some(PlanStep { op: Some(op) }),
                inputs: (0..inputs).map(|i| format!("{i:064x}")).collect(),
                source: None,
            };
            seeds.push(("plan_decode", name.to_owned(), node.encode_to_vec()));
        }
        for (name, mut df) in frames() {
            let stream = ipc::encode(&mut df).expect("encoding a seed frame");
            let mut file = Vec::new();
            IpcWriter::new(&mut file)
                .finish(&mut df)
                .expect("writing a seed frame");
            seeds.push((
                "arrow_ipc_upload",
                format!("{name}-stream"),
                [&[0u8][..], &stream].concat(),
            ));
            seeds.push((
                "arrow_ipc_upload",
                format!("{name}-file"),
                [&[2u8][..], &file].concat(),
            ));
            // As Flight DoPut messages: the schema, then the batches.
            let mut messages = vec![1u8];
            let mut put = |header: &[u8], body: &[u8]| {
                for part in [header, body] {
                    let length = u16::try_from(part.len()).expect("a small seed message");
                    messages.extend(length.to_le_bytes());
                    messages.extend(part);
                }
            };
            put(&ipc::schema_message(df.schema()), &[]);
            ipc::encode_flight_batches(&df, 16 * 1024, 1024, &mut |m| {
                put(&m.header, &m.body);
                true
            })
            .expect("encoding a seed frame for Flight");
            seeds.push(("arrow_ipc_upload", format!("{name}-flight"), messages));
        }
        seeds
    }
}
