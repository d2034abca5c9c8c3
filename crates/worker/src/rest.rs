//! REST sources (`RestApiRequest`): the request checked once, before anything is sent,
//! then its answer fetched page by page (the contract's four pagination schemes) within
//! the rate limit, each page's records decoded by the answer's format. `ReadRestApi`
//! gathers every page into one frame; `StreamRestApi` (`streams::rest`) sends each page
//! as it comes and polls again.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use polaroid_proto::v1::{self as pb, pagination_config::Strategy};
use polaroid_proto::{ErrorCode, excerpt};
use polars::prelude::SchemaRef;
use reqwest::Url;
use reqwest::header::{HeaderName, HeaderValue};
use serde_json::Value;

use crate::error::{EngineError, EngineResult};
use crate::outbound::Outbound;
use crate::records::{Payload, Records};

/// The longest wait between two requests a rate may ask for.
const MAX_REQUEST_INTERVAL: Duration = Duration::from_secs(60);

/// What the worker allows one REST source.
#[derive(Debug, Clone, Copy)]
pub struct RestLimits {
    /// Bytes of one answer, all its pages together (`max_rest_response_bytes`).
    pub max_answer_bytes: usize,
    /// Pages of one answer (`max_rest_pages`).
    pub max_pages: u32,
    /// Requests per second at most, whatever the client asks (streams'
    /// `stream_max_requests_per_second`); `None`: the client's rate alone.
    pub max_requests_per_second: Option<u32>,
}

/// Spaces requests: a token bucket of `burst` requests refilled at `rate` a second.
#[derive(Debug)]
pub struct RateLimiter {
    rate: Option<f64>,
    burst: f64,
    tokens: f64,
    refilled: Instant,
}

impl RateLimiter {
    /// `rate` requests a second (`None`: no limit) in bursts of at most `burst` (at least 1).
    pub fn new(rate: Option<f64>, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Self {
            rate,
            burst,
            tokens: burst,
            refilled: Instant::now(),
        }
    }

    /// Waits until one more request may go.
    pub async fn acquire(&mut self) {
        self.acquire_many(1.0).await;
    }

    /// Waits until `n` more may go: until the bucket holds `n` (or is full, for more than
    /// it holds), then takes them, into debt if need be, which the next call waits off.
    pub async fn acquire_many(&mut self, n: f64) {
        let Some(rate) = self.rate else {
            return;
        };
        let wanted = n.min(self.burst);
        loop {
            let now = Instant::now();
            let elapsed = now.duration_since(self.refilled).as_secs_f64();
            self.tokens = (self.tokens + elapsed * rate).min(self.burst);
            self.refilled = now;
            if self.tokens >= wanted {
                self.tokens -= n;
                return;
            }
            let wait = Duration::from_secs_f64(((wanted - self.tokens) / rate).min(60.0));
            tokio::time::sleep(wait).await;
        }
    }
}

/// One pagination scheme with its settings, checked.
#[derive(Debug, Clone)]
enum Pagination {
    Single,
    PageNumber {
        param: String,
        first: i64,
        page_size: u32,
        size_param: Option<String>,
    },
    Offset {
        param: String,
        limit: u32,
        limit_param: Option<String>,
    },
    Cursor {
        field: String,
        param: String,
    },
    Link {
        rel: String,
    },
}

/// Where the next page is, between pages of one answer.
#[derive(Debug, Clone)]
enum Next {
    /// The first page: the request's URL (with the scheme's first parameters).
    First,
    Page(i64),
    Offset(u64),
    Cursor(String),
    Url(Url),
    Done,
}

/// A REST source, checked: everything a request can get wrong is refused here, before
/// the remote server is asked anything.
pub struct RestSource {
    outbound: Arc<Outbound>,
    method: reqwest::Method,
    url: Url,
    headers: Vec<(HeaderName, HeaderValue)>,
    body: Option<String>,
    pub payload: Payload,
    records_path: Option<String>,
    pagination: Pagination,
    /// Pages the client asked for at most (quietly the end), else the worker's cap (an
    /// error if the answer has more).
    max_pages: (u32, bool),
    timeout: Duration,
    pub schema: Option<SchemaRef>,
    pub cast_only: bool,
    limiter: RateLimiter,
    max_answer_bytes: usize,
    pub poll_interval: Option<Duration>,
}

/// A field that applies to one pagination scheme only, set with another.
fn only_with(field: &str, scheme: &str) -> EngineError {
    EngineError::invalid(format!(
        "{field} applies to {scheme} pagination only (pagination, field 5)"
    ))
}

fn or_default(value: &str, default: &str) -> String {
    if value.is_empty() {
        default.to_owned()
    } else {
        value.to_owned()
    }
}

impl RestSource {
    /// Checks `req`; `streaming` says whether it is for `StreamRestApi` (which alone takes
    /// a polling interval).
    pub fn new(
        outbound: Arc<Outbound>,
        req: pb::RestApiRequest,
        limits: RestLimits,
        streaming: bool,
    ) -> EngineResult<Self> {
        let method = if req.method.is_empty() {
            "GET"
        } else {
            req.method.as_str()
        };
        let method =
            reqwest::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
                EngineError::invalid(format!("bad HTTP method `{}`", excerpt(&req.method)))
            })?;
        let url = Url::parse(&req.url)
            .map_err(|e| EngineError::invalid(format!("bad url `{}`: {e}", excerpt(&req.url))))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EngineError::invalid(format!(
                "url scheme `{}` is not http or https",
                excerpt(url.scheme())
            )));
        }
        outbound.client_for(&url)?;
        let headers = req
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    EngineError::invalid(format!("bad header name `{}`", excerpt(name)))
                })?;
                let value = HeaderValue::from_str(value)
                    .map_err(|_| EngineError::invalid(format!("bad value for header `{name}`")))?;
                Ok((name, value))
            })
            .collect::<EngineResult<_>>()?;

        let text_format = req.text_format();
        let payload = match (req.format, text_format) {
            (_, pb::RestTextFormat::Unspecified) => {
                Payload::of(req.format, "format (8)", Payload::Json)?
            }
            (0, pb::RestTextFormat::Ndjson) => Payload::Ndjson,
            (0, pb::RestTextFormat::Csv) => Payload::Csv,
            (format, text) => {
                let format = pb::MessageFormat::try_from(format)
                    .map_or_else(|_| format.to_string(), |f| f.as_str_name().to_owned());
                return Err(EngineError::invalid(format!(
                    "format (8) {format} and text_format (11) {}: set one of them",
                    text.as_str_name()
                )));
            }
        };
        let records_path = req.records_path.filter(|p| !p.is_empty());
        if records_path.is_some() && payload != Payload::Json {
            return Err(EngineError::invalid(
                "records_path (10) applies to the JSON format only",
            ));
        }

        let strategy = req.pagination.and_then(|p| p.strategy);
        let scheme = match &strategy {
            None => "no",
            Some(Strategy::PageNumber(_)) => "page_number",
            Some(Strategy::Offset(_)) => "offset",
            Some(Strategy::Cursor(_)) => "cursor",
            Some(Strategy::LinkHeader(_)) => "link_header",
        };
        if scheme != "page_number" {
            if req.start_page.is_some() {
                return Err(only_with("start_page (13)", "page_number"));
            }
            if req.page_size_param.is_some() {
                return Err(only_with("page_size_param (14)", "page_number"));
            }
        }
        if scheme != "offset" && req.limit_param.is_some() {
            return Err(only_with("limit_param (15)", "offset"));
        }
        let pagination = match strategy {
            None => Pagination::Single,
            Some(Strategy::PageNumber(p)) => Pagination::PageNumber {
                param: or_default(&p.page_param, "page"),
                first: req.start_page.unwrap_or(1),
                page_size: p.page_size,
                size_param: req.page_size_param.filter(|p| !p.is_empty()),
            },
            Some(Strategy::Offset(p)) => {
                if p.limit == 0 {
                    return Err(EngineError::invalid(
                        "pagination.offset.limit must be positive: it is the page size",
                    ));
                }
                Pagination::Offset {
                    param: or_default(&p.offset_field, "offset"),
                    limit: p.limit,
                    limit_param: match req.limit_param {
                        None => Some("limit".to_owned()),
                        Some(name) if name.is_empty() => None,
                        Some(name) => Some(name),
                    },
                }
            }
            Some(Strategy::Cursor(p)) => {
                if p.cursor_field.is_empty() {
                    return Err(EngineError::invalid(
                        "pagination.cursor needs cursor_field, where the answer gives the next cursor",
                    ));
                }
                if payload != Payload::Json {
                    return Err(EngineError::invalid(
                        "cursor pagination reads the cursor from a JSON answer: it needs the JSON format",
                    ));
                }
                Pagination::Cursor {
                    field: p.cursor_field,
                    param: or_default(&p.cursor_param, "cursor"),
                }
            }
            Some(Strategy::LinkHeader(p)) => Pagination::Link {
                rel: or_default(&p.rel, "next"),
            },
        };
        let max_pages = match req.max_pages {
            None => (limits.max_pages, false),
            Some(0) => return Err(EngineError::invalid("max_pages (12) must be positive")),
            Some(n) if n > limits.max_pages => {
                return Err(EngineError::LimitExceeded(format!(
                    "max_pages (12) {n} is over the worker's max_rest_pages ({})",
                    limits.max_pages
                )));
            }
            Some(n) => (n, true),
        };

        // Checked before the first request, so a bad field costs the remote server nothing.
        let schema = crate::schema_json::parse("schema_json (6)", &req.schema_json)?;
        let timeout = Duration::from_millis(
            req.timeout_ms
                .map_or(30_000, |t| t.clamp(1, 600_000) as u64),
        );
        let (rate, burst) = match (req.rate_limit, req.min_request_interval_ms) {
            (Some(limit), Some(_)) if limit.requests_per_second > 0 => {
                return Err(EngineError::invalid(
                    "rate_limit (7) and min_request_interval_ms (18): set one of them",
                ));
            }
            (_, Some(0)) => (None, 1),
            (_, Some(interval)) => {
                let interval = Duration::from_millis(u64::from(interval));
                if interval > MAX_REQUEST_INTERVAL {
                    return Err(EngineError::invalid(format!(
                        "min_request_interval_ms (18) is over {} s",
                        MAX_REQUEST_INTERVAL.as_secs()
                    )));
                }
                (Some(1.0 / interval.as_secs_f64()), 1)
            }
            (Some(limit), None) if limit.requests_per_second > 0 => {
                (Some(f64::from(limit.requests_per_second)), limit.burst_size)
            }
            _ => (None, 1),
        };
        let rate = match (rate, limits.max_requests_per_second) {
            (rate, None) => rate,
            (None, Some(cap)) => Some(f64::from(cap.max(1))),
            (Some(rate), Some(cap)) => Some(rate.min(f64::from(cap.max(1)))),
        };
        let poll_interval = match req.poll_interval_ms {
            None => None,
            Some(_) if !streaming => {
                return Err(EngineError::invalid(
                    "poll_interval_ms (16) applies to StreamRestApi only",
                ));
            }
            Some(ms) if ms <= 0 => {
                return Err(EngineError::invalid(format!(
                    "poll_interval_ms (16) must be positive, got {ms}"
                )));
            }
            Some(ms) => Some(Duration::from_millis(ms as u64)),
        };
        Ok(Self {
            outbound,
            method,
            url,
            headers,
            body: req.body,
            payload,
            records_path,
            pagination,
            max_pages,
            timeout,
            schema,
            cast_only: req.cast_only,
            limiter: RateLimiter::new(rate, burst),
            max_answer_bytes: limits.max_answer_bytes,
            poll_interval,
        })
    }

    /// Starts fetching the answer from its first page.
    pub fn fetch(&mut self) -> Fetch<'_> {
        Fetch {
            source: self,
            next: Next::First,
            pages: 0,
            bytes: 0,
        }
    }

    /// Fetches every page of the answer into one set of records.
    pub async fn fetch_all(&mut self) -> EngineResult<Records> {
        let mut records = Records::new(self.payload);
        let mut fetch = self.fetch();
        while fetch.next_page(&mut records).await?.is_some() {}
        Ok(records)
    }
}

/// One answer being fetched, page by page.
pub struct Fetch<'a> {
    source: &'a mut RestSource,
    next: Next,
    pages: u32,
    bytes: usize,
}

/// What one page brought.
#[derive(Debug, Clone, Copy)]
pub struct PageRead {
    /// The page's number in the answer, from 0.
    pub index: u32,
    pub received_at: SystemTime,
}

impl Fetch<'_> {
    /// Fetches the next page into `records`; `None` when the answer has no more.
    pub async fn next_page(&mut self, records: &mut Records) -> EngineResult<Option<PageRead>> {
        let source = &mut *self.source;
        let url = match (&self.next, &source.pagination) {
            (Next::Done, _) => return Ok(None),
            (Next::First, Pagination::PageNumber { first, .. }) => {
                page_url(&source.url, &source.pagination, &Next::Page(*first))
            }
            (Next::First, Pagination::Offset { .. }) => {
                page_url(&source.url, &source.pagination, &Next::Offset(0))
            }
            (Next::First, _) => source.url.clone(),
            (next, pagination) => page_url(&source.url, pagination, next),
        };
        let (pages, final_cap) = source.max_pages;
        if self.pages == pages {
            if final_cap {
                return Ok(None);
            }
            return Err(EngineError::LimitExceeded(format!(
                "the answer of {} has more than {pages} pages (max_rest_pages); set max_pages to read fewer",
                excerpt(source.url.as_str())
            )));
        }
        let client = source.outbound.client_for(&url)?;
        source.limiter.acquire().await;
        let mut request = client
            .request(source.method.clone(), url.clone())
            .timeout(source.timeout);
        for (name, value) in &source.headers {
            request = request.header(name.clone(), value.clone());
        }
        if let Some(body) = &source.body {
            request = request.body(body.clone());
        }
        let response = request
            .send()
            .await
            .map_err(|e| request_failed(&e, &url, source.timeout))?;
        let received_at = SystemTime::now();
        let status = response.status();
        if !status.is_success() {
            return Err(answered(status, &url));
        }
        let link = match &source.pagination {
            Pagination::Link { rel } => next_link(response.headers(), rel, &url),
            _ => None,
        };
        let body = body_within(
            response,
            self.bytes,
            source.max_answer_bytes,
            &url,
            source.timeout,
        )
        .await?;
        self.bytes += body.len();
        let from = format!("the answer of {}", excerpt(url.as_str()));
        let (count, cursor) = if source.payload == Payload::Json {
            let value: Value = serde_json::from_slice(&body)
                .map_err(|e| EngineError::invalid(format!("{from} is not JSON: {e}")))?;
            let page = records_at(&value, source.records_path.as_deref())?;
            let count = page.len();
            if let Some(bad) = page.iter().find(|r| !r.is_object()) {
                return Err(EngineError::invalid(format!(
                    "{from}: `{}` is not a record (a JSON object)",
                    excerpt(&bad.to_string())
                )));
            }
            let cursor = match &source.pagination {
                Pagination::Cursor { field, .. } => cursor_at(&value, field),
                _ => None,
            };
            records.add_values(page.iter().cloned())?;
            (count, cursor)
        } else {
            let budget = source.max_answer_bytes.saturating_mul(4);
            (records.add(source.payload, &body, &from, budget)?, None)
        };
        let index = self.pages;
        self.pages += 1;
        self.next = match (&source.pagination, &self.next) {
            (Pagination::Single, _) => Next::Done,
            _ if count == 0 => Next::Done,
            (Pagination::PageNumber { page_size, .. }, _)
                if *page_size > 0 && count < *page_size as usize =>
            {
                Next::Done
            }
            (Pagination::PageNumber { first, .. }, Next::First) => match first.checked_add(1) {
                Some(page) => Next::Page(page),
                None => Next::Done,
            },
            (Pagination::PageNumber { .. }, Next::Page(page)) => match page.checked_add(1) {
                Some(page) => Next::Page(page),
                None => Next::Done,
            },
            (Pagination::Offset { limit, .. }, _) if count < *limit as usize => Next::Done,
            (Pagination::Offset { limit, .. }, Next::Offset(offset)) => {
                Next::Offset(offset + u64::from(*limit))
            }
            (Pagination::Offset { limit, .. }, _) => Next::Offset(u64::from(*limit)),
            (Pagination::Cursor { .. }, previous) => match cursor {
                // The same cursor again would ask for the same page for ever.
                Some(cursor) if !matches!(previous, Next::Cursor(p) if *p == cursor) => {
                    Next::Cursor(cursor)
                }
                _ => Next::Done,
            },
            (Pagination::Link { .. }, _) => match link {
                Some(next) if next != url => Next::Url(next),
                _ => Next::Done,
            },
            _ => Next::Done,
        };
        Ok(Some(PageRead { index, received_at }))
    }
}

/// The URL of the page `next` names.
fn page_url(base: &Url, pagination: &Pagination, next: &Next) -> Url {
    if let Next::Url(url) = next {
        return url.clone();
    }
    let mut url = base.clone();
    {
        let mut query = url.query_pairs_mut();
        match (pagination, next) {
            (
                Pagination::PageNumber {
                    param,
                    page_size,
                    size_param,
                    ..
                },
                Next::Page(page),
            ) => {
                query.append_pair(param, &page.to_string());
                if let Some(size_param) = size_param {
                    query.append_pair(size_param, &page_size.to_string());
                }
            }
            (
                Pagination::Offset {
                    param,
                    limit,
                    limit_param,
                },
                Next::Offset(offset),
            ) => {
                query.append_pair(param, &offset.to_string());
                if let Some(limit_param) = limit_param {
                    query.append_pair(limit_param, &limit.to_string());
                }
            }
            (Pagination::Cursor { param, .. }, Next::Cursor(cursor)) => {
                query.append_pair(param, cursor);
            }
            _ => {}
        }
    }
    // A URL without a query keeps none (an empty `?` would be a different URL to some).
    if url.query() == Some("") {
        url.set_query(None);
    }
    url
}

/// Where the records are in a decoded JSON body: the body itself, or under a dotted path.
fn records_at<'a>(body: &'a Value, path: Option<&str>) -> EngineResult<&'a Vec<Value>> {
    let mut node = body;
    for key in path.unwrap_or("").split('.').filter(|k| !k.is_empty()) {
        node = match node {
            Value::Object(map) => map.get(key),
            Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get(i)),
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

/// The next cursor at the dotted `path` of a JSON answer: a string or a number; null,
/// empty or absent is none.
fn cursor_at(body: &Value, path: &str) -> Option<String> {
    let mut node = body;
    for key in path.split('.').filter(|k| !k.is_empty()) {
        node = node.get(key)?;
    }
    match node {
        Value::String(text) if !text.is_empty() => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    }
}

/// The target of the `Link` header entry of relation `rel`, resolved against `base`.
fn next_link(headers: &reqwest::header::HeaderMap, rel: &str, base: &Url) -> Option<Url> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(mut rest) = value.to_str() else {
            continue;
        };
        while let Some(start) = rest.find('<') {
            let end = rest[start..].find('>')? + start;
            let target = &rest[start + 1..end];
            rest = &rest[end + 1..];
            let params_end = rest.find('<').unwrap_or(rest.len());
            let named = rest[..params_end].split(';').any(|param| {
                let param = param.trim().trim_end_matches(',').trim();
                param
                    .strip_prefix("rel=")
                    .map(|rels| rels.trim_matches('"'))
                    .is_some_and(|rels| {
                        rels.split_whitespace().any(|r| r.eq_ignore_ascii_case(rel))
                    })
            });
            if named {
                return base.join(target).ok();
            }
        }
    }
    None
}

/// The error of a request that got no answer.
fn request_failed(error: &reqwest::Error, url: &Url, timeout: Duration) -> EngineError {
    if let Some(refused) = Outbound::refusal(error) {
        return EngineError::OutboundRefused(refused);
    }
    if error.is_timeout() {
        return EngineError::RemoteAnswer {
            code: ErrorCode::DeadlineExceeded,
            message: format!(
                "{} did not answer within {} ms (timeout_ms)",
                excerpt(url.as_str()),
                timeout.as_millis()
            ),
        };
    }
    EngineError::Remote(format!("{}: {error}", excerpt(url.as_str())))
}

/// The error of an answer with a status other than success: what the status means for the
/// caller (the remote refused it, has no such thing, or is unavailable).
fn answered(status: reqwest::StatusCode, url: &Url) -> EngineError {
    let code = match status.as_u16() {
        401 | 403 => ErrorCode::PermissionDenied,
        404 | 410 => ErrorCode::NotFound,
        408 | 429 => ErrorCode::Unavailable,
        400..=499 => ErrorCode::FailedPrecondition,
        _ => ErrorCode::Unavailable,
    };
    EngineError::RemoteAnswer {
        code,
        message: format!("{} answered HTTP {status}", excerpt(url.as_str())),
    }
}

/// Reads a response's body, refusing it once the answer so far would pass `limit` bytes.
async fn body_within(
    mut response: reqwest::Response,
    read_so_far: usize,
    limit: usize,
    url: &Url,
    timeout: Duration,
) -> EngineResult<Vec<u8>> {
    let over = || {
        EngineError::LimitExceeded(format!(
            "the answer of {} is larger than max_rest_response_bytes ({limit} bytes)",
            excerpt(url.as_str())
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
        .map_err(|e| request_failed(&e, url, timeout))?
    {
        if body.len() + chunk.len() > room {
            return Err(over());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A REST step recorded before the contract, in today's shape with its meaning: its
/// `schema` only cast the columns it named, its format was a name, its page numbers ran
/// from `start_page` for `max_pages` pages with the page size sent, not used to end, and
/// its rate was any positive number of requests a second.
pub fn upgrade_step(old: pb::RestApiStepV0) -> EngineResult<pb::RestApiRequest> {
    let text_format = match old.format.as_deref().map(str::trim) {
        None | Some("") => pb::RestTextFormat::Unspecified,
        Some(name) => match name.to_ascii_lowercase().as_str() {
            "json" => pb::RestTextFormat::Unspecified,
            "ndjson" | "jsonl" => pb::RestTextFormat::Ndjson,
            "csv" => pb::RestTextFormat::Csv,
            _ => {
                return Err(EngineError::invalid(format!(
                    "unknown REST format `{}`: expected json, ndjson or csv",
                    excerpt(name)
                )));
            }
        },
    };
    let schema_json = if old.schema.is_empty() {
        String::new()
    } else {
        let columns: serde_json::Map<String, Value> = old
            .schema
            .iter()
            .map(|f| (f.name.clone(), Value::String(f.data_type.clone())))
            .collect();
        Value::Object(columns).to_string()
    };
    let mut url = old.url;
    let (pagination, start_page, max_pages) = match old.pagination {
        None => (None, None, None),
        Some(p) => {
            if p.page_param.is_empty() {
                return Err(EngineError::invalid("pagination needs `page_param`"));
            }
            if !(1..=10_000).contains(&p.max_pages) {
                return Err(EngineError::invalid(
                    "pagination `max_pages` must be in 1..=10000",
                ));
            }
            // The page size went with every page; it never ended the pages.
            if let (Some(param), Some(size)) = (&p.page_size_param, p.page_size)
                && let Ok(mut parsed) = Url::parse(&url)
            {
                parsed
                    .query_pairs_mut()
                    .append_pair(param, &size.to_string());
                url = parsed.to_string();
            }
            (
                Some(pb::PaginationConfig {
                    strategy: Some(Strategy::PageNumber(pb::PageNumberPagination {
                        page_size: 0,
                        page_param: p.page_param,
                    })),
                }),
                Some(p.start_page),
                Some(p.max_pages as u32),
            )
        }
    };
    let min_request_interval_ms = match old.rate_limit {
        None => None,
        Some(limit) if limit.requests_per_second == 0.0 => None,
        Some(limit) => {
            let rate = limit.requests_per_second;
            let interval = (rate.is_finite() && rate > 0.0)
                .then(|| Duration::try_from_secs_f64(1.0 / rate).ok())
                .flatten()
                .filter(|pause| *pause <= MAX_REQUEST_INTERVAL)
                .ok_or_else(|| {
                    EngineError::invalid(format!(
                        "rate_limit.requests_per_second must be a positive number asking for at most 60s between pages, got {rate}"
                    ))
                })?;
            Some(u32::try_from(interval.as_millis()).unwrap_or(u32::MAX))
        }
    };
    Ok(pb::RestApiRequest {
        url,
        headers: old.headers,
        method: old.method,
        body: old.body,
        pagination,
        schema_json,
        rate_limit: None,
        format: pb::MessageFormat::Unspecified as i32,
        timeout_ms: old.timeout_ms,
        records_path: old.records_path,
        text_format: text_format as i32,
        max_pages,
        start_page,
        page_size_param: None,
        limit_param: None,
        poll_interval_ms: None,
        cast_only: true,
        min_request_interval_ms,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn link_headers_name_the_next_page() {
        let base = Url::parse("http://api.example.com/items?page=1").unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::LINK,
            HeaderValue::from_static(
                r#"<http://api.example.com/items?page=1>; rel="prev first", </items?page=3&a=b,c>; rel="next""#,
            ),
        );
        assert_eq!(
            next_link(&headers, "next", &base).unwrap().as_str(),
            "http://api.example.com/items?page=3&a=b,c"
        );
        assert_eq!(
            next_link(&headers, "first", &base).unwrap().as_str(),
            "http://api.example.com/items?page=1"
        );
        assert!(next_link(&headers, "last", &base).is_none());
    }

    #[test]
    fn cursors_are_strings_or_numbers() {
        let body = serde_json::json!({"meta": {"next": "abc", "n": 7, "none": null, "empty": ""}});
        assert_eq!(cursor_at(&body, "meta.next").as_deref(), Some("abc"));
        assert_eq!(cursor_at(&body, "meta.n").as_deref(), Some("7"));
        for missing in ["meta.none", "meta.empty", "meta.nothing", "other"] {
            assert_eq!(cursor_at(&body, missing), None, "{missing}");
        }
    }

    #[test]
    fn page_urls_carry_the_scheme_parameters() {
        let base = Url::parse("http://h/items?x=1").unwrap();
        let pages = Pagination::PageNumber {
            param: "p".into(),
            first: 1,
            page_size: 50,
            size_param: Some("size".into()),
        };
        assert_eq!(
            page_url(&base, &pages, &Next::Page(2)).as_str(),
            "http://h/items?x=1&p=2&size=50"
        );
        let offsets = Pagination::Offset {
            param: "offset".into(),
            limit: 10,
            limit_param: None,
        };
        assert_eq!(
            page_url(
                &Url::parse("http://h/items").unwrap(),
                &offsets,
                &Next::Offset(20)
            )
            .as_str(),
            "http://h/items?offset=20"
        );
    }

    #[test]
    fn old_steps_keep_their_meaning() {
        let old = pb::RestApiStepV0 {
            url: "http://h/items".into(),
            schema: vec![pb::Field {
                name: "n".into(),
                data_type: "Int32".into(),
            }],
            format: Some("NDJSON".into()),
            pagination: Some(pb::RestPaginationV0 {
                page_param: "page".into(),
                start_page: 3,
                max_pages: 2,
                page_size_param: Some("size".into()),
                page_size: Some(25),
            }),
            rate_limit: Some(pb::RestRateLimitV0 {
                requests_per_second: 0.5,
            }),
            ..Default::default()
        };
        let new = upgrade_step(old).unwrap();
        assert_eq!(new.url, "http://h/items?size=25");
        assert_eq!(new.schema_json, r#"{"n":"Int32"}"#);
        assert!(new.cast_only);
        assert_eq!(new.text_format(), pb::RestTextFormat::Ndjson);
        assert_eq!((new.start_page, new.max_pages), (Some(3), Some(2)));
        assert_eq!(new.min_request_interval_ms, Some(2000));
        let bad = pb::RestApiStepV0 {
            format: Some("xml".into()),
            ..Default::default()
        };
        assert!(upgrade_step(bad).is_err());
    }
}
