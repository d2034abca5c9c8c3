//! File sources (Parquet, CSV, Arrow IPC, JSON/NDJSON) opened as lazy scans. (REST
//! sources, fetched once and kept as uploads, are `rest`.)

use std::num::NonZeroUsize;
use std::path::Path;
use std::time::{Duration as StdDuration, UNIX_EPOCH};

use polaroid_proto::v1::{self as pb, JsonFormat};
use polars::prelude::*;

use crate::dtype;
use crate::error::{EngineError, EngineResult};
use polaroid_proto::excerpt;

fn usize_of(value: i64, what: &str) -> EngineResult<usize> {
    usize::try_from(value)
        .map_err(|_| EngineError::invalid(format!("{what} must be non-negative, got {value}")))
}

fn schema_of(fields: &[pb::Field]) -> EngineResult<Option<SchemaRef>> {
    if fields.is_empty() {
        return Ok(None);
    }
    let mut schema = Schema::with_capacity(fields.len());
    for field in fields {
        schema.with_column(
            PlSmallStr::from_str(&field.name),
            dtype::parse(&field.data_type)?,
        );
    }
    Ok(Some(Arc::new(schema)))
}

fn byte_option(value: Option<&str>, what: &str, default: Option<u8>) -> EngineResult<Option<u8>> {
    match value {
        None => Ok(default),
        Some("") => Ok(None),
        Some(text) if text.len() == 1 => Ok(Some(text.as_bytes()[0])),
        Some(text) => Err(EngineError::invalid(format!(
            "{what} must be a single byte, got `{}`",
            excerpt(text)
        ))),
    }
}

/// Applies row limit, row index, an optional row filter and projection on top of a scan;
/// Polars pushes them down. The filter comes after the row limit and row index (so
/// `n_rows` counts rows of the file and the index numbers them) and before the projection
/// (so it may use columns the projection leaves out).
fn shape_scan(
    mut lf: LazyFrame,
    columns: &[String],
    row_index: Option<(&str, i64)>,
    n_rows: Option<i64>,
    predicate: Option<Expr>,
) -> EngineResult<LazyFrame> {
    if let Some(n) = n_rows {
        lf =
            lf.limit(IdxSize::try_from(n).map_err(|_| {
                EngineError::invalid(format!("n_rows must be non-negative, got {n}"))
            })?);
    }
    if let Some((name, offset)) = row_index {
        let offset = IdxSize::try_from(offset).map_err(|_| {
            EngineError::invalid(format!(
                "row index offset must be non-negative, got {offset}"
            ))
        })?;
        lf = lf.with_row_index(name, Some(offset));
    }
    if let Some(predicate) = predicate {
        lf = lf.filter(predicate);
    }
    if !columns.is_empty() {
        let mut projection: Vec<Expr> = row_index.iter().map(|(name, _)| col(*name)).collect();
        projection.extend(columns.iter().map(|c| col(c.as_str())));
        lf = lf.select(projection);
    }
    Ok(lf)
}

pub fn parquet(req: &pb::ReadParquetRequest) -> EngineResult<LazyFrame> {
    let lf = LazyFrame::scan_parquet(
        PlRefPath::new(req.path.as_str()),
        ScanArgsParquet::default(),
    )
    .map_err(EngineError::polars("read_parquet"))?;
    let row_index = req
        .row_index_offset
        .map(|offset| (req.row_index_name.as_deref().unwrap_or("index"), offset));
    let predicate = req
        .predicate
        .as_deref()
        .filter(|p| !p.trim().is_empty())
        .map(sql_predicate)
        .transpose()?;
    shape_scan(lf, &req.columns, row_index, req.n_rows, predicate)
}

/// A row filter written as a SQL boolean expression (`amount > 100 AND region = 'EU'`),
/// as `ReadParquetRequest.predicate` carries it.
fn sql_predicate(text: &str) -> EngineResult<Expr> {
    crate::sql_depth::check("predicate", text)?;
    polars::sql::sql_expr(text).map_err(|e| {
        EngineError::invalid(format!(
            "predicate `{}` is not a SQL expression: {e}",
            excerpt(text)
        ))
    })
}

pub fn csv(req: &pb::ReadCsvRequest) -> EngineResult<LazyFrame> {
    let separator = byte_option(req.separator.as_deref(), "separator", Some(b','))?
        .ok_or_else(|| EngineError::invalid("separator must not be empty"))?;
    let quote = byte_option(req.quote_char.as_deref(), "quote_char", Some(b'"'))?;
    let mut reader = LazyCsvReader::new(PlRefPath::new(req.path.as_str()))
        .with_has_header(req.has_header)
        .with_separator(separator)
        .with_quote_char(quote)
        .with_skip_rows(usize_of(req.skip_rows.unwrap_or(0), "skip_rows")?)
        .with_try_parse_dates(req.try_parse_dates)
        .with_schema(csv_schema(req)?);
    if let Some(length) = req.infer_schema_length {
        reader = reader.with_infer_schema_length(Some(usize_of(length, "infer_schema_length")?));
    }
    if !req.null_values.is_empty() {
        let values = req
            .null_values
            .iter()
            .map(|v| PlSmallStr::from_str(v))
            .collect();
        reader = reader.with_null_values(Some(NullValues::AllColumns(values)));
    }
    let lf = reader.finish().map_err(EngineError::polars("read_csv"))?;
    shape_scan(lf, &req.columns, None, req.n_rows, None)
}

/// The CSV's explicit schema: the contract's `schema_json` or Polaroid's `schema` fields,
/// not both.
fn csv_schema(req: &pb::ReadCsvRequest) -> EngineResult<Option<SchemaRef>> {
    match (&req.schema_json, req.schema.is_empty()) {
        (None, _) => schema_of(&req.schema),
        (Some(json), true) => schema_of(&fields_of_json(json)?),
        (Some(_), false) => Err(EngineError::invalid(
            "read_csv: `schema_json` (field 8) and `schema` (field 12) are both set: set one \
             of them",
        )),
    }
}

/// The fields of a `schema_json`: GetSchema's form (`{"fields": [{"name": "a",
/// "data_type": "Int64"}, ...]}`) or its list of fields alone, in column order.
pub fn fields_of_json(text: &str) -> EngineResult<Vec<pb::Field>> {
    let invalid = |why: &str| {
        EngineError::invalid(format!(
            "schema_json `{}`: {why} (expected {{\"fields\": [{{\"name\": ..., \"data_type\": \
             ...}}, ...]}}, as GetSchema gives it)",
            excerpt(text)
        ))
    };
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| invalid(&format!("not JSON: {e}")))?;
    let list = match &value {
        serde_json::Value::Array(list) => list,
        serde_json::Value::Object(map) => match map.get("fields") {
            Some(serde_json::Value::Array(list)) => list,
            _ => return Err(invalid("no list of `fields`")),
        },
        _ => return Err(invalid("neither an object nor a list")),
    };
    if list.is_empty() {
        return Err(invalid("no fields"));
    }
    list.iter()
        .map(|field| {
            let text_of = |key: &str| field.get(key).and_then(serde_json::Value::as_str);
            match (text_of("name"), text_of("data_type")) {
                (Some(name), Some(data_type)) => Ok(pb::Field {
                    name: name.to_owned(),
                    data_type: data_type.to_owned(),
                }),
                _ => Err(invalid("a field without a text `name` and `data_type`")),
            }
        })
        .collect()
}

pub fn ipc(req: &pb::ReadIpcRequest) -> EngineResult<LazyFrame> {
    let lf = LazyFrame::scan_ipc(
        PlRefPath::new(req.path.as_str()),
        Default::default(),
        Default::default(),
    )
    .map_err(EngineError::polars("read_ipc"))?;
    let row_index = req
        .row_index_offset
        .map(|offset| (req.row_index_name.as_deref().unwrap_or("index"), offset));
    shape_scan(lf, &req.columns, row_index, req.n_rows, None)
}

fn is_ndjson(req: &pb::ReadJsonRequest) -> bool {
    match req.format() {
        JsonFormat::Ndjson => true,
        JsonFormat::Json => false,
        JsonFormat::Unspecified => {
            matches!(
                Path::new(&req.path).extension().and_then(|e| e.to_str()),
                Some("ndjson" | "jsonl")
            )
        }
    }
}

pub fn json(req: &pb::ReadJsonRequest) -> EngineResult<LazyFrame> {
    let schema = schema_of(&req.schema)?;
    let infer = req
        .infer_schema_length
        .map(|n| usize_of(n, "infer_schema_length"))
        .transpose()?;
    if is_ndjson(req) {
        let mut reader =
            LazyJsonLineReader::new(PlRefPath::new(req.path.as_str())).with_schema(schema);
        if let Some(n) = infer {
            reader = reader.with_infer_schema_length(NonZeroUsize::new(n));
        }
        let lf = reader.finish().map_err(EngineError::polars("read_json"))?;
        return shape_scan(lf, &[], None, req.n_rows, None);
    }
    // A JSON array has no lazy scan: it is parsed here, once, when the handle is made.
    let file = std::fs::File::open(&req.path).map_err(EngineError::io("read_json"))?;
    let df = json_records(file, schema, infer)?;
    shape_scan(df.lazy(), &[], None, req.n_rows, None)
}

/// Parses a JSON array of records.
pub fn json_records(
    reader: impl polars::io::mmap::MmapBytesReader,
    schema: Option<SchemaRef>,
    infer: Option<usize>,
) -> EngineResult<DataFrame> {
    let mut json = JsonReader::new(reader).with_json_format(polars::prelude::JsonFormat::Json);
    if let Some(schema) = schema {
        json = json.with_schema(schema);
    }
    if let Some(n) = infer {
        json = json.infer_schema_len(NonZeroUsize::new(n));
    }
    json.finish().map_err(EngineError::polars("parse json"))
}

/// Size and modification time of a file, recorded with the plans that read it.
pub fn fingerprint(path: &Path) -> EngineResult<pb::SourceFingerprint> {
    let meta = std::fs::metadata(path).map_err(EngineError::io("fingerprint source"))?;
    let modified = meta
        .modified()
        .map_err(EngineError::io("fingerprint source"))?;
    let nanos = modified
        .duration_since(UNIX_EPOCH)
        .unwrap_or(StdDuration::ZERO)
        .as_nanos();
    Ok(pb::SourceFingerprint {
        path: path.to_string_lossy().into_owned(),
        size: meta.len(),
        modified_unix_nanos: i64::try_from(nanos).unwrap_or(i64::MAX),
    })
}
