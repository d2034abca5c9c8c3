//! File sources (Parquet, CSV, Arrow IPC, JSON/NDJSON) opened as lazy scans, and the
//! REST source, fetched once and kept as an upload (its answer cannot be replayed).

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

/// Where the records are in a decoded JSON body: the body itself, or under a dotted path.
fn records_at<'a>(
    body: &'a serde_json::Value,
    path: Option<&str>,
) -> EngineResult<&'a Vec<serde_json::Value>> {
    let mut node = body;
    for key in path.unwrap_or("").split('.').filter(|k| !k.is_empty()) {
        node = match node {
            serde_json::Value::Object(map) => map.get(key),
            serde_json::Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
            _ => None,
        }
        .ok_or_else(|| {
            EngineError::invalid(format!(
                "records path `{}`: no `{}` in the response",
                excerpt(path.unwrap_or("")),
                excerpt(key)
            ))
        })?;
    }
    node.as_array().ok_or_else(|| {
        EngineError::invalid("the response (at the records path) is not a JSON array of records")
    })
}

/// The longest pause between two pages a rate limit may ask for.
const MAX_PAGE_PAUSE: StdDuration = StdDuration::from_secs(60);

/// How a REST source's answer is written (`RestApiRequest.format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RestFormat {
    /// A JSON document: an array of records, or one under `records_path`.
    Json,
    /// One JSON record per line.
    Ndjson,
    /// Comma-separated values with a header line.
    Csv,
}

impl RestFormat {
    fn of(req: &pb::RestApiRequest) -> EngineResult<Self> {
        let format = match req.format.as_deref().map(str::trim) {
            None | Some("") => Self::Json,
            Some(name) => match name.to_ascii_lowercase().as_str() {
                "json" => Self::Json,
                "ndjson" | "jsonl" => Self::Ndjson,
                "csv" => Self::Csv,
                _ => {
                    return Err(EngineError::invalid(format!(
                        "unknown REST format `{}`: expected json, ndjson or csv",
                        excerpt(name)
                    )));
                }
            },
        };
        if format != Self::Json && req.records_path.as_deref().is_some_and(|p| !p.is_empty()) {
            return Err(EngineError::invalid(
                "records_path applies to the json format only",
            ));
        }
        Ok(format)
    }
}

/// The records of every page of a REST answer, gathered to be parsed once.
pub enum RestAnswer {
    Json(Vec<serde_json::Value>),
    Ndjson(Vec<u8>),
    Csv {
        header: Option<Vec<u8>>,
        rows: Vec<u8>,
    },
}

impl RestAnswer {
    fn new(format: RestFormat) -> Self {
        match format {
            RestFormat::Json => Self::Json(Vec::new()),
            RestFormat::Ndjson => Self::Ndjson(Vec::new()),
            RestFormat::Csv => Self::Csv {
                header: None,
                rows: Vec::new(),
            },
        }
    }

    /// Adds one page's body and returns how many records it held.
    fn add_page(
        &mut self,
        body: &[u8],
        records_path: Option<&str>,
        url: &str,
    ) -> EngineResult<usize> {
        match self {
            Self::Json(records) => {
                let body: serde_json::Value = serde_json::from_slice(body).map_err(|e| {
                    EngineError::invalid(format!("{} did not answer JSON: {e}", excerpt(url)))
                })?;
                let page = records_at(&body, records_path)?;
                records.extend(page.iter().cloned());
                Ok(page.len())
            }
            Self::Ndjson(lines) => {
                let count = non_blank_lines(body);
                lines.extend_from_slice(body);
                if !body.ends_with(b"\n") {
                    lines.push(b'\n');
                }
                Ok(count)
            }
            Self::Csv { header, rows } => {
                let (first, rest) = match body.iter().position(|&b| b == b'\n') {
                    Some(end) => (&body[..end], &body[end + 1..]),
                    None => (body, &[][..]),
                };
                let first = first.strip_suffix(b"\r").unwrap_or(first);
                match header {
                    None => *header = Some(first.to_vec()),
                    Some(known) if known.as_slice() == first => {}
                    Some(_) => {
                        return Err(EngineError::invalid(format!(
                            "{}: a page's CSV header differs from the first page's",
                            excerpt(url)
                        )));
                    }
                }
                let count = non_blank_lines(rest);
                rows.extend_from_slice(rest);
                if !rest.is_empty() && !rest.ends_with(b"\n") {
                    rows.push(b'\n');
                }
                Ok(count)
            }
        }
    }

    /// Parses the gathered records into one frame, cast to `fields` where given. This is
    /// Polars work: run it off the async threads.
    pub fn into_frame(self, schema: Option<SchemaRef>) -> EngineResult<DataFrame> {
        let df = match self {
            Self::Json(records) if records.is_empty() => None,
            Self::Json(records) => {
                let encoded = serde_json::to_vec(&records).map_err(|e| EngineError::Internal {
                    operation: "read_rest_api",
                    reason: e.to_string(),
                })?;
                Some(json_records(std::io::Cursor::new(encoded), None, None)?)
            }
            Self::Ndjson(lines) if non_blank_lines(&lines) == 0 => None,
            Self::Ndjson(lines) => Some(
                JsonReader::new(std::io::Cursor::new(lines))
                    .with_json_format(polars::prelude::JsonFormat::JsonLines)
                    .finish()
                    .map_err(EngineError::polars("read_rest_api ndjson"))?,
            ),
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
                        .map_err(EngineError::polars("read_rest_api csv"))?,
                )
            }
        };
        match (df, schema) {
            (None, None) => Ok(DataFrame::empty()),
            (None, Some(schema)) => Ok(DataFrame::empty_with_arc_schema(schema)),
            (Some(df), None) => Ok(df),
            (Some(df), Some(schema)) => {
                let casts: Vec<Expr> = schema
                    .iter()
                    .map(|(name, dtype)| col(name.clone()).strict_cast(dtype.clone()))
                    .collect();
                df.lazy()
                    .with_columns(casts)
                    .collect()
                    .map_err(EngineError::polars("read_rest_api schema"))
            }
        }
    }
}

fn non_blank_lines(text: &[u8]) -> usize {
    text.split(|&b| b == b'\n')
        .filter(|line| line.iter().any(|b| !b.is_ascii_whitespace()))
        .count()
}

/// The pause between pages a rate limit asks for.
fn page_pause(limit: Option<&pb::RestRateLimit>) -> EngineResult<StdDuration> {
    let Some(limit) = limit else {
        return Ok(StdDuration::ZERO);
    };
    let rate = limit.requests_per_second;
    if rate == 0.0 {
        return Ok(StdDuration::ZERO);
    }
    if !(rate.is_finite() && rate > 0.0) {
        return Err(EngineError::invalid(format!(
            "rate_limit.requests_per_second must be a positive number, got {rate}"
        )));
    }
    StdDuration::try_from_secs_f64(1.0 / rate)
        .ok()
        .filter(|pause| *pause <= MAX_PAGE_PAUSE)
        .ok_or_else(|| {
            EngineError::invalid(format!(
                "rate_limit.requests_per_second {rate} asks for more than {}s between pages",
                MAX_PAGE_PAUSE.as_secs()
            ))
        })
}

/// The page numbers to ask for, in order (`None`: one request, no page parameter).
fn page_numbers(pagination: Option<&pb::RestPagination>) -> EngineResult<Vec<Option<i64>>> {
    let Some(p) = pagination else {
        return Ok(vec![None]);
    };
    if p.page_param.is_empty() {
        return Err(EngineError::invalid("pagination needs `page_param`"));
    }
    if !(1..=10_000).contains(&p.max_pages) {
        return Err(EngineError::invalid(
            "pagination `max_pages` must be in 1..=10000",
        ));
    }
    (0..p.max_pages)
        .map(|i| {
            p.start_page.checked_add(i).map(Some).ok_or_else(|| {
                EngineError::invalid("pagination `start_page` + `max_pages` overflows")
            })
        })
        .collect()
}

/// Reads a response's body, refusing it once the answer so far would pass `limit` bytes.
async fn body_within(
    mut response: reqwest::Response,
    read_so_far: usize,
    limit: usize,
    url: &str,
) -> EngineResult<Vec<u8>> {
    let over = || {
        EngineError::LimitExceeded(format!(
            "the answer of {} is larger than max_rest_response_bytes ({limit} bytes)",
            excerpt(url)
        ))
    };
    let room = limit.saturating_sub(read_so_far);
    if response
        .content_length()
        .is_some_and(|length| length > room as u64)
    {
        return Err(over());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| EngineError::Remote(format!("{}: {e}", excerpt(url))))?
    {
        if body.len() + chunk.len() > room {
            return Err(over());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// Fetches a REST source, every page of it, at most `max_bytes` of answer in all, with
/// the request's schema; parse the two with [`RestAnswer::into_frame`].
pub async fn fetch_rest(
    outbound: &crate::outbound::Outbound,
    req: &pb::RestApiRequest,
    max_bytes: usize,
) -> EngineResult<(RestAnswer, Option<SchemaRef>)> {
    let method = if req.method.is_empty() {
        "GET"
    } else {
        req.method.as_str()
    };
    let method = reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes())
        .map_err(|_| EngineError::invalid(format!("bad HTTP method `{}`", excerpt(&req.method))))?;
    let url = reqwest::Url::parse(&req.url)
        .map_err(|e| EngineError::invalid(format!("bad url `{}`: {e}", excerpt(&req.url))))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(EngineError::invalid(format!(
            "url scheme `{}` is not http or https",
            url.scheme()
        )));
    }
    let client = outbound.client_for(&url)?;
    let format = RestFormat::of(req)?;
    // Checked before the first request, so a bad field costs the remote server nothing.
    let schema = schema_of(&req.schema)?;
    let timeout = StdDuration::from_millis(
        req.timeout_ms
            .map_or(30_000, |t| t.clamp(1, 600_000) as u64),
    );
    let pause = page_pause(req.rate_limit.as_ref())?;
    let pages = page_numbers(req.pagination.as_ref())?;

    let mut answer = RestAnswer::new(format);
    let mut read = 0;
    for (index, page) in pages.into_iter().enumerate() {
        if index > 0 && !pause.is_zero() {
            tokio::time::sleep(pause).await;
        }
        let mut page_url = url.clone();
        if let (Some(page), Some(p)) = (page, &req.pagination) {
            let mut query = page_url.query_pairs_mut();
            query.append_pair(&p.page_param, &page.to_string());
            if let (Some(param), Some(size)) = (&p.page_size_param, p.page_size) {
                query.append_pair(param, &size.to_string());
            }
        }
        let mut request = client.request(method.clone(), page_url).timeout(timeout);
        for (name, value) in &req.headers {
            request = request.header(name, value);
        }
        if let Some(body) = &req.body {
            request = request.body(body.clone());
        }
        let response =
            request
                .send()
                .await
                .map_err(|e| match crate::outbound::Outbound::refusal(&e) {
                    Some(refused) => EngineError::OutboundRefused(refused),
                    None => EngineError::Remote(format!("{}: {e}", excerpt(&req.url))),
                })?;
        let status = response.status();
        if !status.is_success() {
            return Err(EngineError::Remote(format!(
                "{} answered HTTP {status}",
                excerpt(&req.url)
            )));
        }
        let body = body_within(response, read, max_bytes, &req.url).await?;
        read += body.len();
        let records = answer.add_page(&body, req.records_path.as_deref(), &req.url)?;
        if records == 0 && page.is_some() {
            break;
        }
    }
    Ok((answer, schema))
}
