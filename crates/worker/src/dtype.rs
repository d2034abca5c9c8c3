//! Data type names on the wire: `Int64`, `Float64`, `String`, `Boolean`, `Date`,
//! `Datetime[us]`, `Datetime[ms, UTC]`, `Duration[ns]`, `List[Int64]`, … (docs/expressions.md).

use polars::prelude::{DataType, TimeUnit, TimeZone};

use crate::error::{EngineError, EngineResult};
use polaroid_proto::excerpt;

/// Most `List[…]` levels a type name may nest. Each is a level of recursion here and in
/// Polars (casts, schemas, names of types): a cast to `List[` nested 5,000 deep (a 30 KB
/// name) overflowed a runtime thread's 2 MiB stack, which aborts the worker, after
/// lowering the rest of the name at every level.
pub const MAX_TYPE_NESTING: usize = 32;

/// Parses a data type name; case-insensitive for the simple names, with common aliases.
pub fn parse(name: &str) -> EngineResult<DataType> {
    parse_nested(name, 0)
}

fn parse_nested(name: &str, depth: usize) -> EngineResult<DataType> {
    let trimmed = name.trim();
    if let Some(inner) = bracketed(trimmed, "list") {
        if depth == MAX_TYPE_NESTING {
            return Err(EngineError::invalid(format!(
                "data type `{}` nests lists more than {MAX_TYPE_NESTING} deep",
                excerpt(name)
            )));
        }
        return Ok(DataType::List(Box::new(parse_nested(inner, depth + 1)?)));
    }
    if let Some(inner) = bracketed(trimmed, "datetime") {
        let mut parts = inner.splitn(2, ',').map(str::trim);
        let unit = time_unit(parts.next().unwrap_or(""))?;
        let zone = parts.next().filter(|z| !z.is_empty());
        let zone = TimeZone::opt_try_new(zone).map_err(EngineError::polars("parse time zone"))?;
        return Ok(DataType::Datetime(unit, zone));
    }
    if let Some(inner) = bracketed(trimmed, "duration") {
        return Ok(DataType::Duration(time_unit(inner)?));
    }
    Ok(match trimmed.to_ascii_lowercase().as_str() {
        "bool" | "boolean" => DataType::Boolean,
        "int8" | "i8" => DataType::Int8,
        "int16" | "i16" => DataType::Int16,
        "int32" | "i32" => DataType::Int32,
        "int64" | "i64" | "int" => DataType::Int64,
        "uint8" | "u8" => DataType::UInt8,
        "uint16" | "u16" => DataType::UInt16,
        "uint32" | "u32" => DataType::UInt32,
        "uint64" | "u64" => DataType::UInt64,
        "float32" | "f32" => DataType::Float32,
        "float64" | "f64" | "float" | "double" => DataType::Float64,
        "string" | "str" | "utf8" => DataType::String,
        "binary" => DataType::Binary,
        "date" => DataType::Date,
        "datetime" => DataType::Datetime(TimeUnit::Microseconds, None),
        "duration" => DataType::Duration(TimeUnit::Microseconds),
        "null" => DataType::Null,
        _ => {
            return Err(EngineError::invalid(format!(
                "unknown data type `{}`; expected one of Boolean, Int8..Int64, UInt8..UInt64, Float32, \
                 Float64, String, Binary, Date, Datetime[unit(, zone)], Duration[unit], List[type], Null",
                excerpt(name)
            )));
        }
    })
}

/// What is inside `head[…]` (`head` in any case). Compares the head in place: lowering
/// the whole text at each level of a nested name cost time in its square.
fn bracketed<'a>(text: &'a str, head: &str) -> Option<&'a str> {
    let named = text.get(..head.len())?.eq_ignore_ascii_case(head);
    let inner = text
        .get(head.len()..)?
        .strip_prefix('[')?
        .strip_suffix(']')?;
    named.then_some(inner)
}

fn time_unit(text: &str) -> EngineResult<TimeUnit> {
    match text.trim() {
        "ns" => Ok(TimeUnit::Nanoseconds),
        "us" | "μs" => Ok(TimeUnit::Microseconds),
        "ms" => Ok(TimeUnit::Milliseconds),
        other => Err(EngineError::invalid(format!(
            "unknown time unit `{}`; expected ns, us or ms",
            excerpt(other)
        ))),
    }
}

fn unit_name(unit: TimeUnit) -> &'static str {
    match unit {
        TimeUnit::Nanoseconds => "ns",
        TimeUnit::Microseconds => "us",
        TimeUnit::Milliseconds => "ms",
    }
}

/// The wire name of a data type; [`parse`] reads it back.
pub fn name(dtype: &DataType) -> String {
    match dtype {
        DataType::Boolean => "Boolean".into(),
        DataType::Int8 => "Int8".into(),
        DataType::Int16 => "Int16".into(),
        DataType::Int32 => "Int32".into(),
        DataType::Int64 => "Int64".into(),
        DataType::UInt8 => "UInt8".into(),
        DataType::UInt16 => "UInt16".into(),
        DataType::UInt32 => "UInt32".into(),
        DataType::UInt64 => "UInt64".into(),
        DataType::Float32 => "Float32".into(),
        DataType::Float64 => "Float64".into(),
        DataType::String => "String".into(),
        DataType::Binary => "Binary".into(),
        DataType::Date => "Date".into(),
        DataType::Datetime(unit, None) => format!("Datetime[{}]", unit_name(*unit)),
        DataType::Datetime(unit, Some(zone)) => format!("Datetime[{}, {}]", unit_name(*unit), zone),
        DataType::Duration(unit) => format!("Duration[{}]", unit_name(*unit)),
        DataType::List(inner) => format!("List[{}]", name(inner)),
        DataType::Null => "Null".into(),
        other => format!("{other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for text in [
            "Int64",
            "String",
            "Datetime[ms]",
            "Datetime[us, UTC]",
            "Duration[ns]",
            "List[Float64]",
            "Date",
        ] {
            assert_eq!(name(&parse(text).unwrap()), text);
        }
        assert!(parse("Decimal").is_err());
        assert!(parse("list[int64]").is_ok_and(|t| t == DataType::List(Box::new(DataType::Int64))));
        for odd in [
            "List[",
            "List]",
            "List[]",
            "Lis",
            "List\u{e9}[Int64]",
            "\u{e9}",
        ] {
            assert!(parse(odd).is_err(), "{odd}");
        }
    }

    #[test]
    fn nested_lists_are_bounded() {
        let nested = |depth: usize| format!("{}Int64{}", "List[".repeat(depth), "]".repeat(depth));
        let deepest = parse(&nested(MAX_TYPE_NESTING)).expect("at the limit");
        assert_eq!(name(&deepest), nested(MAX_TYPE_NESTING));
        // Deep enough to overflow a runtime thread's stack when it was parsed recursively.
        let error = parse(&nested(200_000)).expect_err("past the limit");
        assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
        assert!(
            error.to_string().contains("nests lists more than 32 deep"),
            "{error}"
        );
    }
}
