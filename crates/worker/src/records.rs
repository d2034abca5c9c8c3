//! Records that remote sources send (a REST answer's pages, a queue's messages), decoded
//! by their format into one frame whose columns a schema decides: the one way REST reads,
//! REST streams and message queues turn payloads into rows.

use std::num::NonZeroUsize;

use polars::prelude::*;
use serde_json::Value;

use crate::error::{EngineError, EngineResult};
use polaroid_proto::excerpt;

/// How one payload is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Payload {
    /// JSON: a record (an object) or an array of records.
    Json,
    /// One JSON record per line.
    Ndjson,
    /// Comma-separated values, with a header line in every payload.
    Csv,
    /// An Arrow IPC stream or file.
    ArrowIpc,
    /// MessagePack: a map, or an array of maps.
    Msgpack,
}

impl Payload {
    /// The payload the contract's `MessageFormat` names (UNSPECIFIED: `default`).
    pub fn of(format: i32, field: &str, default: Self) -> EngineResult<Self> {
        use polaroid_proto::v1::MessageFormat;
        match MessageFormat::try_from(format) {
            Ok(MessageFormat::Unspecified) => Ok(default),
            Ok(MessageFormat::Json) => Ok(Self::Json),
            Ok(MessageFormat::ArrowIpc) => Ok(Self::ArrowIpc),
            Ok(MessageFormat::Msgpack) => Ok(Self::Msgpack),
            Ok(MessageFormat::Protobuf) => Err(EngineError::Unimplemented(format!(
                "{field} PROTOBUF: decoding protobuf payloads needs the message's descriptor, \
                 which schema_json cannot give; send JSON, ARROW_IPC or MSGPACK"
            ))),
            Err(_) => Err(EngineError::invalid(format!(
                "{field}: unknown MessageFormat {format} (JSON 1, ARROW_IPC 2, MSGPACK 3, PROTOBUF 4)"
            ))),
        }
    }
}

/// Records gathered from payloads, parsed into a frame at once (Polars work: off the async
/// threads, with [`Records::into_frame`]).
pub enum Records {
    Values(Vec<Value>),
    Csv {
        header: Option<Vec<u8>>,
        rows: Vec<u8>,
    },
    Frames(Vec<DataFrame>),
}

impl Records {
    pub fn new(payload: Payload) -> Self {
        match payload {
            Payload::Json | Payload::Ndjson | Payload::Msgpack => Self::Values(Vec::new()),
            Payload::Csv => Self::Csv {
                header: None,
                rows: Vec::new(),
            },
            Payload::ArrowIpc => Self::Frames(Vec::new()),
        }
    }

    /// Adds decoded JSON records (objects).
    pub fn add_values(&mut self, values: impl IntoIterator<Item = Value>) -> EngineResult<()> {
        match self {
            Self::Values(records) => {
                records.extend(values);
                Ok(())
            }
            _ => Err(EngineError::Internal {
                operation: "records",
                reason: "JSON values added to records of another format".into(),
            }),
        }
    }

    /// Adds one payload of `payload`'s format from `from` (named in errors); returns how
    /// many records it held. Arrow payloads may decode to at most `max_decoded` bytes.
    pub fn add(
        &mut self,
        payload: Payload,
        bytes: &[u8],
        from: &str,
        max_decoded: usize,
    ) -> EngineResult<usize> {
        let added = match (payload, &mut *self) {
            (Payload::Json, Self::Values(records)) => {
                let value: Value = serde_json::from_slice(bytes)
                    .map_err(|e| EngineError::invalid(format!("{from} is not JSON: {e}")))?;
                push_records(records, value, from)?
            }
            (Payload::Msgpack, Self::Values(records)) => {
                let value: Value = rmp_serde::from_slice(bytes).map_err(|e| {
                    EngineError::invalid(format!("{from} is not MessagePack of records: {e}"))
                })?;
                push_records(records, value, from)?
            }
            (Payload::Ndjson, Self::Values(records)) => {
                let before = records.len();
                for (number, line) in bytes.split(|&b| b == b'\n').enumerate() {
                    if line.iter().all(u8::is_ascii_whitespace) {
                        continue;
                    }
                    let value: Value = serde_json::from_slice(line).map_err(|e| {
                        EngineError::invalid(format!(
                            "{from}, line {}: not a JSON record: {e}",
                            number + 1
                        ))
                    })?;
                    if !value.is_object() {
                        return Err(not_a_record(from, &value));
                    }
                    records.push(value);
                }
                records.len() - before
            }
            (Payload::Csv, Self::Csv { header, rows }) => {
                let (first, rest) = match bytes.iter().position(|&b| b == b'\n') {
                    Some(end) => (&bytes[..end], &bytes[end + 1..]),
                    None => (bytes, &[][..]),
                };
                let first = first.strip_suffix(b"\r").unwrap_or(first);
                match header {
                    None => *header = Some(first.to_vec()),
                    Some(known) if known.as_slice() == first => {}
                    Some(_) => {
                        return Err(EngineError::invalid(format!(
                            "{from}: a CSV header differs from the first one's"
                        )));
                    }
                }
                let lines = non_blank_lines(rest);
                rows.extend_from_slice(rest);
                if !rest.is_empty() && !rest.ends_with(b"\n") {
                    rows.push(b'\n');
                }
                lines
            }
            (Payload::ArrowIpc, Self::Frames(frames)) => {
                let df = crate::ipc::decode(bytes, max_decoded)
                    .map_err(|e| EngineError::invalid(format!("{from}: {e}")))?;
                let rows = df.height();
                frames.push(df);
                rows
            }
            _ => {
                return Err(EngineError::Internal {
                    operation: "records",
                    reason: format!("a {payload:?} payload added to records of another format"),
                });
            }
        };
        Ok(added)
    }

    /// The records as one frame whose columns `schema` decides (see [`shape`]). Polars
    /// work: run it off the async threads.
    pub fn into_frame(
        self,
        schema: Option<&SchemaRef>,
        cast_only: bool,
    ) -> EngineResult<DataFrame> {
        let df = match self {
            Self::Values(records) if records.is_empty() => None,
            Self::Values(records) => {
                let encoded = serde_json::to_vec(&records).map_err(|e| EngineError::Internal {
                    operation: "records",
                    reason: e.to_string(),
                })?;
                Some(json_records(std::io::Cursor::new(encoded))?)
            }
            Self::Csv { header: None, .. } => None,
            Self::Csv {
                header: Some(mut data),
                rows,
            } => {
                data.push(b'\n');
                data.extend_from_slice(&rows);
                Some(
                    CsvReadOptions::default()
                        .with_has_header(true)
                        .into_reader_with_file_handle(std::io::Cursor::new(data))
                        .finish()
                        .map_err(EngineError::polars("parse csv"))?,
                )
            }
            Self::Frames(frames) => {
                let mut frames = frames.into_iter();
                match frames.next() {
                    None => None,
                    Some(mut first) => {
                        for next in frames {
                            first.vstack_mut_owned(next).map_err(|e| {
                                EngineError::invalid(format!(
                                    "Arrow IPC payloads of different schemas: {e}"
                                ))
                            })?;
                        }
                        Some(first)
                    }
                }
            }
        };
        shape(df, schema, cast_only)
    }
}

/// A frame with the columns `schema` decides: exactly its columns, in its order, cast to
/// its types (strictly: a value that does not convert is an error), a column the records
/// lack all null; without a schema, the records' columns as inferred. With `cast_only`
/// (a REST step recorded before the contract), the records' columns in their order, the
/// ones `schema` names cast to its types. No records at all: an empty frame of the
/// schema.
pub fn shape(
    df: Option<DataFrame>,
    schema: Option<&SchemaRef>,
    cast_only: bool,
) -> EngineResult<DataFrame> {
    let (df, schema) = match (df, schema) {
        (None, None) => return Ok(DataFrame::empty()),
        (None, Some(schema)) => return Ok(DataFrame::empty_with_arc_schema(schema.clone())),
        (Some(df), None) => return Ok(df),
        (Some(df), Some(schema)) => (df, schema),
    };
    let casts: Vec<Expr> = schema
        .iter()
        .map(|(name, dtype)| {
            if cast_only || df.schema().contains(name) {
                col(name.clone()).strict_cast(dtype.clone())
            } else {
                lit(NULL).cast(dtype.clone()).alias(name.clone())
            }
        })
        .collect();
    let lf = df.lazy();
    let shaped = if cast_only {
        lf.with_columns(casts)
    } else {
        lf.select(casts)
    };
    shaped
        .collect()
        .map_err(EngineError::polars("apply schema_json"))
}

/// Parses a JSON array of records, every record read for the columns' types.
pub fn json_records(reader: impl polars::io::mmap::MmapBytesReader) -> EngineResult<DataFrame> {
    JsonReader::new(reader)
        .with_json_format(polars::prelude::JsonFormat::Json)
        .infer_schema_len(None::<NonZeroUsize>)
        .finish()
        .map_err(EngineError::polars("parse json"))
}

/// Adds `value`'s records: itself when an object, its items when an array of objects.
fn push_records(records: &mut Vec<Value>, value: Value, from: &str) -> EngineResult<usize> {
    match value {
        Value::Object(_) => {
            records.push(value);
            Ok(1)
        }
        Value::Array(items) => {
            if let Some(bad) = items.iter().find(|item| !item.is_object()) {
                return Err(not_a_record(from, bad));
            }
            let count = items.len();
            records.extend(items);
            Ok(count)
        }
        other => Err(not_a_record(from, &other)),
    }
}

fn not_a_record(from: &str, value: &Value) -> EngineError {
    EngineError::invalid(format!(
        "{from}: `{}` is not a record (a JSON object)",
        excerpt(&value.to_string())
    ))
}

fn non_blank_lines(text: &[u8]) -> usize {
    text.split(|&b| b == b'\n')
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .count()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn schema(text: &str) -> SchemaRef {
        crate::schema_json::parse("schema_json", text)
            .unwrap()
            .unwrap()
    }

    #[test]
    fn every_format_gives_the_same_rows() {
        let expected = df!("id" => [1i64, 2], "name" => [Some("a"), None]).unwrap();
        let mut json = Records::new(Payload::Json);
        json.add(Payload::Json, br#"{"id": 1, "name": "a"}"#, "m1", 1 << 20)
            .unwrap();
        json.add(
            Payload::Json,
            br#"[{"id": 2, "name": null}]"#,
            "m2",
            1 << 20,
        )
        .unwrap();
        assert!(
            json.into_frame(None, false)
                .unwrap()
                .equals_missing(&expected)
        );

        let mut ndjson = Records::new(Payload::Ndjson);
        let added = ndjson
            .add(
                Payload::Ndjson,
                b"{\"id\": 1, \"name\": \"a\"}\n\n{\"id\": 2, \"name\": null}\n",
                "page",
                1 << 20,
            )
            .unwrap();
        assert_eq!(added, 2);
        assert!(
            ndjson
                .into_frame(None, false)
                .unwrap()
                .equals_missing(&expected)
        );

        let mut msgpack = Records::new(Payload::Msgpack);
        let value = serde_json::json!([{"id": 1, "name": "a"}, {"id": 2, "name": null}]);
        let bytes = rmp_serde::to_vec_named(&value).unwrap();
        msgpack.add(Payload::Msgpack, &bytes, "m", 1 << 20).unwrap();
        assert!(
            msgpack
                .into_frame(None, false)
                .unwrap()
                .equals_missing(&expected)
        );

        let mut arrow = Records::new(Payload::ArrowIpc);
        let encoded = crate::ipc::encode(&mut expected.clone()).unwrap();
        arrow
            .add(Payload::ArrowIpc, &encoded, "m", 1 << 20)
            .unwrap();
        assert!(
            arrow
                .into_frame(None, false)
                .unwrap()
                .equals_missing(&expected)
        );
    }

    #[test]
    fn a_schema_decides_the_columns() {
        let mut records = Records::new(Payload::Json);
        records
            .add(
                Payload::Json,
                br#"[{"b": "x", "a": 1, "extra": true}]"#,
                "m",
                1 << 20,
            )
            .unwrap();
        let df = records
            .into_frame(
                Some(&schema(
                    r#"{"a": "Float64", "missing": "String", "b": "String"}"#,
                )),
                false,
            )
            .unwrap();
        let expected = df!(
            "a" => [1.0f64],
            "missing" => [None::<&str>],
            "b" => ["x"],
        )
        .unwrap();
        assert!(df.equals_missing(&expected), "{df}");

        let empty = Records::new(Payload::Json)
            .into_frame(Some(&schema(r#"{"a": "Int32"}"#)), false)
            .unwrap();
        assert_eq!(empty.height(), 0);
        assert_eq!(empty.schema().get("a"), Some(&DataType::Int32));

        // A value that does not convert is an error, not a null.
        let mut records = Records::new(Payload::Json);
        records
            .add(Payload::Json, br#"[{"a": "not a number"}]"#, "m", 1 << 20)
            .unwrap();
        let error = records
            .into_frame(Some(&schema(r#"{"a": "Int64"}"#)), false)
            .unwrap_err();
        assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
    }

    #[test]
    fn payloads_that_are_not_records_are_refused() {
        let mut records = Records::new(Payload::Json);
        for bad in [&b"3"[..], b"[1, 2]", b"not json"] {
            let error = records
                .add(Payload::Json, bad, "entry 1-0", 1 << 20)
                .unwrap_err();
            assert!(error.to_string().contains("entry 1-0"), "{error}");
        }
        let mut csv = Records::new(Payload::Csv);
        csv.add(Payload::Csv, b"a,b\n1,2\n", "p1", 1 << 20).unwrap();
        let error = csv
            .add(Payload::Csv, b"a,c\n1,2\n", "p2", 1 << 20)
            .unwrap_err();
        assert!(error.to_string().contains("header differs"), "{error}");
    }
}
