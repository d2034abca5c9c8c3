//! Expression trees for `expr_tree`, generated with `arbitrary` from the fuzzer's bytes:
//! names, operators and type names are drawn from the ones the engine knows (with a few
//! it does not), so that most trees get past the translation into Polars.

use arbitrary::Arbitrary;
use polaroid_proto::v1::{self as pb, expression::Kind, literal_expr::Value};

/// Columns of the fuzzing frame (`a`..`g`), of the right input (`h`), every column, and
/// one that does not exist.
const COLUMNS: [&str; 10] = ["a", "b", "c", "d", "e", "f", "g", "h", "*", "nope"];

/// Function names: the engine's own and one it does not know.
const FUNCTIONS: [&str; 30] = [
    "contains",
    "starts_with",
    "ends_with",
    "lower",
    "upper",
    "length",
    "replace",
    "slice",
    "strip",
    "year",
    "month",
    "day",
    "hour",
    "weekday",
    "truncate",
    "strftime",
    "abs",
    "round",
    "sqrt",
    "log",
    "exp",
    "clip",
    "is_in",
    "between",
    "fill_null",
    "coalesce",
    "alias",
    "nope",
    "",
    "ALIAS",
];

const TYPES: [&str; 16] = [
    "Int64",
    "int8",
    "UInt32",
    "Float32",
    "f64",
    "String",
    "Boolean",
    "Binary",
    "Date",
    "Datetime[ms]",
    "Datetime[ns, UTC]",
    "Duration[us]",
    "List[Int64]",
    "Null",
    "Datetime[xx]",
    "nope",
];

const STRINGS: [&str; 10] = [
    "", "x", "zz", "%Y-%m-%d", "1h", "2d12h", "[a-z]+", "(", "\u{e9}", "-1mo",
];

const ZONES: [&str; 4] = ["UTC", "Europe/Paris", "+01:00", "Not/AZone"];

/// One request's expression: the first byte picks the request (see
/// `polaroid_worker::fuzzing::expression_step`).
#[derive(Debug, Arbitrary)]
pub struct Request {
    context: u8,
    tree: Tree,
}

impl Request {
    pub fn into_parts(self) -> (u8, pb::Expression) {
        (self.context, self.tree.into_expression())
    }
}

#[derive(Debug, Arbitrary)]
enum Tree {
    Column(u8),
    Literal(Literal),
    Binary(Box<Tree>, u8, Box<Tree>),
    Unary(u8, Box<Tree>),
    Function(u8, Vec<Tree>),
    Aggregation(u8, Box<Tree>, Option<f64>),
    /// Polaroid's `over` (a window over partitions, rows or a duration).
    Window(Box<Tree>, Vec<Tree>, Option<Rolling>),
    Case(Vec<(Tree, Tree)>, Option<Box<Tree>>),
    Cast(Box<Tree>, TypeName, bool),
    /// A wide case, as a client may send in one flat message. Its branches are leaves: a
    /// wide case inside a wide case would be a tree no request could carry (65,535
    /// squared nodes ran the fuzzer out of memory).
    WideCase(u16, Literal),
    /// The contract's window: rows and min_periods (any, the bad ones too).
    RowWindow(Box<Tree>, i64, Option<i64>),
}

#[derive(Debug, Arbitrary)]
enum TypeName {
    Known(u8),
    /// `List[` this many times, around a known type.
    Nested(u16, u8),
    Raw(String),
}

impl TypeName {
    fn name(self) -> String {
        match self {
            Self::Known(i) => TYPES[usize::from(i) % TYPES.len()].to_owned(),
            Self::Nested(depth, i) => {
                let depth = usize::from(depth);
                format!(
                    "{}{}{}",
                    "List[".repeat(depth),
                    TYPES[usize::from(i) % TYPES.len()],
                    "]".repeat(depth)
                )
            }
            Self::Raw(name) => name,
        }
    }
}

#[derive(Debug, Arbitrary)]
struct Rolling {
    function: u8,
    window_size: Option<i64>,
    period: Option<u8>,
    time_column: Option<u8>,
    min_periods: Option<i64>,
    center: bool,
}

#[derive(Debug, Arbitrary)]
enum Literal {
    Int(i64),
    Float(f64),
    Str(u8),
    RawStr(String),
    Bool(bool),
    Bytes(Vec<u8>),
    Null,
    Date(i32),
    Datetime(i64, u8, Option<u8>),
    Duration(i64, u8),
    List(Vec<Literal>),
}

fn pick<'a>(options: &[&'a str], i: u8) -> &'a str {
    options[usize::from(i) % options.len()]
}

impl Literal {
    fn into_value(self) -> Value {
        match self {
            Self::Int(v) => Value::IntVal(v),
            Self::Float(v) => Value::FloatVal(v),
            Self::Str(i) => Value::StringVal(pick(&STRINGS, i).to_owned()),
            Self::RawStr(s) => Value::StringVal(s),
            Self::Bool(b) => Value::BoolVal(b),
            Self::Bytes(b) => Value::BytesVal(b),
            Self::Null => Value::NullVal(pb::NullLiteral {}),
            Self::Date(d) => Value::DateVal(d),
            Self::Datetime(value, unit, zone) => Value::DatetimeVal(pb::DatetimeLiteral {
                value,
                unit: i32::from(unit % 5),
                time_zone: zone.map(|z| pick(&ZONES, z).to_owned()),
            }),
            Self::Duration(value, unit) => Value::DurationVal(pb::DurationLiteral {
                value,
                unit: i32::from(unit % 5),
            }),
            Self::List(values) => Value::ListVal(pb::LiteralList {
                values: values
                    .into_iter()
                    .map(|v| pb::LiteralExpr {
                        value: Some(v.into_value()),
                    })
                    .collect(),
            }),
        }
    }
}

fn boxed(tree: Tree) -> Option<Box<pb::Expression>> {
    Some(Box::new(tree.into_expression()))
}

impl Tree {
    fn into_expression(self) -> pb::Expression {
        let kind = match self {
            Self::Column(i) => Kind::Column(pb::ColumnExpr {
                name: pick(&COLUMNS, i).to_owned(),
            }),
            Self::Literal(literal) => Kind::Literal(pb::LiteralExpr {
                value: Some(literal.into_value()),
            }),
            // One past each enum's last value: an unknown operator from a newer client.
            Self::Binary(left, op, right) => Kind::Binary(Box::new(pb::BinaryExpr {
                left: boxed(*left),
                op: i32::from(op % 15),
                right: boxed(*right),
            })),
            Self::Unary(op, expr) => Kind::Unary(Box::new(pb::UnaryExpr {
                op: i32::from(op % 7),
                expr: boxed(*expr),
            })),
            Self::Function(name, args) => Kind::Function(pb::FunctionExpr {
                name: pick(&FUNCTIONS, name).to_owned(),
                args: args.into_iter().map(Tree::into_expression).collect(),
            }),
            Self::Aggregation(function, expr, quantile) => {
                Kind::Aggregation(Box::new(pb::AggregationExpr {
                    function: i32::from(function % 14),
                    expr: boxed(*expr),
                    quantile,
                }))
            }
            Self::Window(expr, partition_by, rolling) => Kind::Over(Box::new(pb::OverExpr {
                expr: boxed(*expr),
                partition_by: partition_by
                    .into_iter()
                    .map(Tree::into_expression)
                    .collect(),
                rolling: rolling.map(|r| pb::RollingSpec {
                    function: i32::from(r.function % 9),
                    window_size: r.window_size,
                    period: r.period.map(|p| pick(&STRINGS, p).to_owned()),
                    time_column: r.time_column.map(|c| pick(&COLUMNS, c).to_owned()),
                    min_periods: r.min_periods,
                    center: r.center,
                }),
            })),
            Self::Case(branches, otherwise) => Kind::CaseExpr(Box::new(pb::CaseExpr {
                when_then: branches
                    .into_iter()
                    .map(|(when, then)| pb::WhenThen {
                        when: Some(when.into_expression()),
                        then: Some(then.into_expression()),
                    })
                    .collect(),
                otherwise: otherwise.and_then(|o| boxed(*o)),
            })),
            Self::Cast(expr, data_type, strict) => Kind::Cast(Box::new(pb::CastExpr {
                expr: boxed(*expr),
                data_type: data_type.name(),
                strict,
            })),
            Self::WideCase(branches, then) => {
                let then = Tree::Literal(then).into_expression();
                let branch = pb::WhenThen {
                    when: Some(pb::Expression {
                        kind: Some(Kind::Column(pb::ColumnExpr { name: "d".into() })),
                    }),
                    then: Some(then),
                };
                Kind::CaseExpr(Box::new(pb::CaseExpr {
                    when_then: vec![branch; usize::from(branches)],
                    otherwise: None,
                }))
            }
            Self::RowWindow(expr, window_size, min_periods) => {
                Kind::Window(Box::new(pb::WindowExpr {
                    expr: boxed(*expr),
                    window_size,
                    min_periods,
                    ..Default::default()
                }))
            }
        };
        pb::Expression { kind: Some(kind) }
    }
}
