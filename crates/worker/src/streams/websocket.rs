//! `StreamWebSocket`: reads a WebSocket's frames (text and binary, `ws://` and `wss://`,
//! with the request's headers), decodes each into records by `format`, and sends them in
//! messages of `buffer_size` rows; a connection lost without a close is dialled again as
//! `reconnect_policy` says. The worker dials the address the outbound rules checked (and
//! wraps TLS itself), so the connection goes where the check said it may.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use futures::StreamExt;
use polaroid_proto::v1 as pb;
use polaroid_proto::{ErrorCode, excerpt};
use polars::prelude::SchemaRef;
use reqwest::Url;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{WebSocketStream, client_async};

use super::{Sink, blocking, with_source_columns};
use crate::error::{EngineError, EngineResult};
use crate::outbound::{Outbound, redacted};
use crate::records::{Payload, Records};

/// How long a message waits for more frames once one came.
const GATHER: Duration = Duration::from_millis(100);
/// The longest wait between two reconnects when the policy names none.
const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(30);
/// Dialling and the handshake, at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

type Socket = WebSocketStream<Box<dyn Io>>;

/// A WebSocket source, checked.
pub struct WebSocketSource {
    outbound: Arc<Outbound>,
    url: Url,
    shown: String,
    headers: Vec<(HeaderName, HeaderValue)>,
    schema: Option<SchemaRef>,
    payload: Payload,
    batch_rows: Option<usize>,
    retries: u32,
    first_delay: Duration,
    max_delay: Duration,
    multiplier: f64,
    max_decoded: usize,
}

impl WebSocketSource {
    pub fn new(
        req: pb::WebSocketSourceRequest,
        outbound: Arc<Outbound>,
        max_decoded: usize,
    ) -> EngineResult<Self> {
        let url = Url::parse(&req.url).map_err(|e| {
            EngineError::invalid(format!("url (1) `{}` is not a URL: {e}", excerpt(&req.url)))
        })?;
        if !matches!(url.scheme(), "ws" | "wss") {
            return Err(EngineError::invalid(format!(
                "url (1): scheme `{}` is not ws or wss",
                excerpt(url.scheme())
            )));
        }
        let shown = redacted(&url);
        let headers = req
            .headers
            .iter()
            .map(|(name, value)| {
                let name = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    EngineError::invalid(format!("headers (2): bad name `{}`", excerpt(name)))
                })?;
                let value = HeaderValue::from_str(value).map_err(|_| {
                    EngineError::invalid(format!("headers (2): bad value for `{name}`"))
                })?;
                Ok((name, value))
            })
            .collect::<EngineResult<_>>()?;
        let schema = crate::schema_json::parse("schema_json (3)", &req.schema_json)?;
        let payload = Payload::of(req.format.unwrap_or(0), "format (6)", Payload::Json)?;
        let batch_rows = match req.buffer_size {
            None => None,
            Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(n) => {
                return Err(EngineError::invalid(format!(
                    "buffer_size (5) must be positive, got {n}"
                )));
            }
        };
        let policy = req.reconnect_policy.unwrap_or_default();
        let multiplier = f64::from(policy.backoff_multiplier);
        if !(multiplier.is_finite() && multiplier >= 0.0) {
            return Err(EngineError::invalid(format!(
                "reconnect_policy.backoff_multiplier must be a number of 0 or more, got {multiplier}"
            )));
        }
        let max_delay = match policy.max_delay_ms {
            0 => DEFAULT_MAX_DELAY,
            ms => Duration::from_millis(u64::from(ms)),
        };
        Ok(Self {
            outbound,
            url,
            shown,
            headers,
            schema,
            payload,
            batch_rows,
            retries: policy.max_retries,
            first_delay: Duration::from_millis(u64::from(policy.initial_delay_ms)),
            max_delay,
            // 0 (unset) keeps the delay as it is; below 1 would shrink it.
            multiplier: if multiplier < 1.0 { 1.0 } else { multiplier },
            max_decoded,
        })
    }

    fn default_port(&self) -> u16 {
        if self.url.scheme() == "wss" { 443 } else { 80 }
    }

    /// Refuses a peer the outbound rules do not allow, before the stream starts.
    pub async fn check_address(&self) -> EngineResult<()> {
        self.outbound
            .resolve(&self.url, self.default_port())
            .await
            .map(|_| ())
    }

    /// Dials the checked address, wraps TLS for wss, and does the handshake.
    async fn connect(&self) -> EngineResult<Socket> {
        let secure = self.url.scheme() == "wss";
        let addresses = self
            .outbound
            .resolve(&self.url, self.default_port())
            .await?;
        let dial = async {
            let tcp = tokio::net::TcpStream::connect(addresses.as_slice())
                .await
                .map_err(|e| self.lost("connect", &e.to_string()))?;
            let _ = tcp.set_nodelay(true);
            let io: Box<dyn Io> = if secure {
                Box::new(
                    tls(&self.url, self.outbound.tls_roots(), tcp)
                        .await
                        .map_err(|e| self.lost("TLS", &e))?,
                )
            } else {
                Box::new(tcp)
            };
            let mut request = self
                .url
                .as_str()
                .into_client_request()
                .map_err(|e| EngineError::invalid(format!("url (1): {e}")))?;
            for (name, value) in &self.headers {
                request.headers_mut().insert(name.clone(), value.clone());
            }
            let (socket, _) = client_async(request, io)
                .await
                .map_err(|e| self.failed("the handshake", e))?;
            Ok(socket)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, dial)
            .await
            .unwrap_or_else(|_| Err(self.lost("connect", "no answer within 10 s")))
    }

    /// Reads until the peer closes, the client goes away, an error, or a cap.
    pub async fn run(self, mut sink: Sink) -> EngineResult<()> {
        let batch_rows = self.batch_rows.unwrap_or(sink.batch_rows());
        let mut failures = 0u32;
        let mut delay = self.first_delay;
        for connection in 0u64.. {
            let mut socket = match self.connect().await {
                Ok(socket) => socket,
                Err(error) if failures < self.retries && error.code() == ErrorCode::Unavailable => {
                    failures += 1;
                    tokio::time::sleep(delay).await;
                    delay = next_delay(delay, self.multiplier, self.max_delay);
                    continue;
                }
                Err(error) => return Err(error),
            };
            let mut frame_index = 0u64;
            loop {
                let mut frames: Vec<(Vec<u8>, String, SystemTime)> = Vec::new();
                let mut gathering: Option<Instant> = None;
                let mut ended = None;
                while frames.len() < batch_rows {
                    let next = match gathering {
                        None => socket.next().await,
                        Some(first) => match GATHER.checked_sub(first.elapsed()) {
                            Some(left) => match tokio::time::timeout(left, socket.next()).await {
                                Ok(next) => next,
                                Err(_) => break,
                            },
                            None => break,
                        },
                    };
                    match next {
                        Some(Ok(Message::Text(text))) => {
                            frames.push((
                                text.as_bytes().to_vec(),
                                format!("{connection}:{frame_index}"),
                                SystemTime::now(),
                            ));
                        }
                        Some(Ok(Message::Binary(bytes))) => {
                            frames.push((
                                bytes.to_vec(),
                                format!("{connection}:{frame_index}"),
                                SystemTime::now(),
                            ));
                        }
                        // Pings are answered by the protocol layer; pongs need nothing.
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                            continue;
                        }
                        Some(Ok(Message::Close(_))) | None => {
                            ended = Some(Ok(()));
                            break;
                        }
                        Some(Err(error)) => {
                            ended = Some(Err(self.failed("reading", error)));
                            break;
                        }
                    }
                    frame_index += 1;
                    gathering.get_or_insert_with(Instant::now);
                }
                if !frames.is_empty() {
                    self.deliver(&mut sink, frames, batch_rows).await?;
                    // A connection that brought data starts the policy afresh.
                    failures = 0;
                    delay = self.first_delay;
                }
                match ended {
                    None => continue,
                    // The peer closed: the source ended.
                    Some(Ok(())) => return Ok(()),
                    Some(Err(error)) if failures < self.retries => {
                        tracing::debug!(%error, "websocket source lost; dialling again");
                        failures += 1;
                        tokio::time::sleep(delay).await;
                        delay = next_delay(delay, self.multiplier, self.max_delay);
                        break;
                    }
                    Some(Err(error)) => return Err(error),
                }
            }
        }
        Ok(())
    }

    /// Decodes `frames` (each its bytes, position and receive time) and sends their
    /// records; a frame that does not decode ends the stream after those before it.
    async fn deliver(
        &self,
        sink: &mut Sink,
        frames: Vec<(Vec<u8>, String, SystemTime)>,
        batch_rows: usize,
    ) -> EngineResult<()> {
        let (payload, schema, max_decoded) = (self.payload, self.schema.clone(), self.max_decoded);
        let (df, positions, times, bad) = blocking("stream_web_socket", move || {
            let mut records = Records::new(payload);
            let (mut positions, mut times) = (Vec::new(), Vec::new());
            let mut bad = None;
            for (bytes, position, at) in frames {
                let from = format!("frame {position}");
                match records.add(payload, &bytes, &from, max_decoded) {
                    Ok(count) => {
                        positions.extend(std::iter::repeat_n(position, count));
                        times.extend(std::iter::repeat_n(at, count));
                    }
                    Err(e) => {
                        bad = Some(e);
                        break;
                    }
                }
            }
            let df = records.into_frame(schema.as_ref(), false)?;
            Ok((df, positions, times, bad))
        })
        .await?;
        let df = with_source_columns(df, times, positions)?;
        if df.height() > 0 {
            sink.send(df, batch_rows, false).await?;
            sink.check_rows_cap()?;
        }
        match bad {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }

    /// A connection that could not be made or was lost: UNAVAILABLE.
    fn lost(&self, doing: &str, why: &str) -> EngineError {
        EngineError::Remote(format!("{} ({doing}): {why}", excerpt(&self.shown)))
    }

    /// A WebSocket failure, as the caller should read it: a refused handshake by its HTTP
    /// status (401/403, 404/410, other 4xx, else UNAVAILABLE); anything else, a lost
    /// connection or a peer breaking the protocol, UNAVAILABLE.
    fn failed(&self, doing: &str, error: WsError) -> EngineError {
        match error {
            WsError::Http(response) => {
                let status = response.status();
                let code = match status.as_u16() {
                    401 | 403 => ErrorCode::PermissionDenied,
                    404 | 410 => ErrorCode::NotFound,
                    400..=499 => ErrorCode::FailedPrecondition,
                    _ => ErrorCode::Unavailable,
                };
                EngineError::RemoteAnswer {
                    code,
                    message: format!(
                        "{} refused the WebSocket handshake with HTTP {status}",
                        excerpt(&self.shown)
                    ),
                }
            }
            other => self.lost(doing, &other.to_string()),
        }
    }
}

fn next_delay(delay: Duration, multiplier: f64, max: Duration) -> Duration {
    Duration::try_from_secs_f64(delay.as_secs_f64() * multiplier)
        .unwrap_or(max)
        .min(max)
}

/// TLS over `tcp` for `url`'s host, checked against `roots` (the system's trust store and
/// `outbound_ca_files`; ring).
async fn tls(
    url: &Url,
    roots: tokio_rustls::rustls::RootCertStore,
    tcp: tokio::net::TcpStream,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, String> {
    use tokio_rustls::rustls;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let host = url
        .host_str()
        .unwrap_or_default()
        .trim_matches(['[', ']'])
        .to_owned();
    let name = rustls::pki_types::ServerName::try_from(host).map_err(|e| e.to_string())?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())
}
