//! `schema_json`, the established contract's way of naming a source's columns and types
//! (`RestApiRequest`, `MessageQueueRequest`, `WebSocketSourceRequest`): a JSON text, read
//! here once so that every source decides its columns the same way.
//!
//! Accepted shapes, all giving columns in the order written:
//! - an object of names to type names, `{"id": "Int64", "name": "String"}`;
//! - what `GetSchema` answers, `{"fields": [{"name": "id", "data_type": "Int64"}, ...]}`
//!   (`type` may stand for `data_type`; other keys, such as `nullable`, are ignored);
//! - that list alone, `[{"name": "id", "type": "Int64"}, ...]`.
//!
//! Type names are the wire's (`dtype::parse`: `Int64`, `Float64`, `String`, `Boolean`,
//! `Datetime[ms, UTC]`, `List[Int64]`, ...). An empty or blank text means "no schema":
//! the columns are inferred from the data.

use polars::prelude::{DataType, PlSmallStr, Schema, SchemaRef};
use serde_json::Value;
use std::sync::Arc;

use crate::dtype;
use crate::error::{EngineError, EngineResult};
use polaroid_proto::excerpt;

/// Most columns a schema may name; far more than any record has, few enough that a
/// hostile schema costs nothing.
const MAX_COLUMNS: usize = 10_000;

/// The schema `text` describes (`field` names the request field, for messages), or
/// `None` for an empty text.
pub fn parse(field: &str, text: &str) -> EngineResult<Option<SchemaRef>> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    let bad = |why: String| EngineError::invalid(format!("{field}: {why}"));
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad(format!("not JSON ({e}): `{}`", excerpt(text))))?;
    let columns: Vec<(String, String)> = match value {
        Value::Object(mut map)
            if map.len() == 1 && map.get("fields").is_some_and(Value::is_array) =>
        {
            match map.remove("fields") {
                Some(Value::Array(fields)) => listed(&fields).map_err(bad)?,
                _ => Vec::new(),
            }
        }
        Value::Object(map) => map
            .into_iter()
            .map(|(name, kind)| match kind {
                Value::String(kind) => Ok((name, kind)),
                other => Err(bad(format!(
                    "the type of `{}` must be a type name, got `{}`",
                    excerpt(&name),
                    excerpt(&other.to_string())
                ))),
            })
            .collect::<EngineResult<_>>()?,
        Value::Array(fields) => listed(&fields).map_err(bad)?,
        other => {
            return Err(bad(format!(
                "expected an object of column names to types or a list of fields, got `{}`",
                excerpt(&other.to_string())
            )));
        }
    };
    if columns.is_empty() {
        return Err(bad("names no columns (leave it empty to infer them)".into()));
    }
    if columns.len() > MAX_COLUMNS {
        return Err(bad(format!(
            "names {} columns, more than {MAX_COLUMNS}",
            columns.len()
        )));
    }
    let mut schema = Schema::with_capacity(columns.len());
    for (name, kind) in columns {
        let dtype: DataType =
            dtype::parse(&kind).map_err(|e| bad(format!("column `{}`: {e}", excerpt(&name))))?;
        if schema.insert(PlSmallStr::from_str(&name), dtype).is_some() {
            return Err(bad(format!("column `{}` is named twice", excerpt(&name))));
        }
    }
    Ok(Some(Arc::new(schema)))
}

/// The columns of a list of `{"name": ..., "data_type" | "type": ...}` objects.
fn listed(fields: &[Value]) -> Result<Vec<(String, String)>, String> {
    fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let text = |key: &str| field.get(key).and_then(Value::as_str);
            match (text("name"), text("data_type").or_else(|| text("type"))) {
                (Some(name), Some(kind)) => Ok((name.to_owned(), kind.to_owned())),
                _ => Err(format!(
                    "field {i} needs a string `name` and `data_type` (or `type`), got `{}`",
                    excerpt(&field.to_string())
                )),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn names_and_types(text: &str) -> Vec<(String, DataType)> {
        parse("schema_json", text)
            .unwrap()
            .unwrap()
            .iter()
            .map(|(n, t)| (n.to_string(), t.clone()))
            .collect()
    }

    #[test]
    fn every_shape_gives_the_columns_in_order() {
        let expected = vec![
            ("b".to_owned(), DataType::Int64),
            ("a".to_owned(), DataType::String),
        ];
        assert_eq!(
            names_and_types(r#"{"b": "Int64", "a": "String"}"#),
            expected
        );
        assert_eq!(
            names_and_types(
                r#"{"fields": [{"name": "b", "data_type": "Int64", "nullable": true},
                               {"name": "a", "data_type": "String", "nullable": true}]}"#
            ),
            expected
        );
        assert_eq!(
            names_and_types(r#"[{"name": "b", "type": "i64"}, {"name": "a", "type": "utf8"}]"#),
            expected
        );
        // A column may itself be called "fields".
        assert_eq!(
            names_and_types(r#"{"fields": "String"}"#),
            vec![("fields".to_owned(), DataType::String)]
        );
        assert!(parse("schema_json", "  ").unwrap().is_none());
    }

    #[test]
    fn bad_schemas_are_invalid_arguments_naming_the_field() {
        for (text, says) in [
            ("{", "not JSON"),
            ("3", "expected an object"),
            ("{}", "names no columns"),
            (r#"{"a": 1}"#, "must be a type name"),
            (r#"{"a": "NoSuchType"}"#, "NoSuchType"),
            (r#"[{"name": "a"}]"#, "field 0 needs"),
            (
                r#"[{"name": "a", "type": "Int64"}, {"name": "a", "type": "Int64"}]"#,
                "named twice",
            ),
        ] {
            let error = parse("schema_json", text).unwrap_err();
            assert_eq!(
                error.code(),
                polaroid_proto::ErrorCode::InvalidArgument,
                "{text}"
            );
            let message = error.to_string();
            assert!(message.starts_with("schema_json: "), "{message}");
            assert!(message.contains(says), "{text}: {message}");
        }
    }
}
