//! `StreamGrpc`: calls a server-streaming method of a peer that serves gRPC reflection
//! (`grpc.reflection.v1`, else `v1alpha`) with the request's bytes as its input message,
//! and turns each reply, decoded by the descriptors the peer gave, into one row: a column
//! per top-level field, the same columns in every message whatever the replies set. The
//! worker dials the address the outbound rules checked (again at each connection); the
//! stream's channel is its own, so dropping the stream resets the call and closes the
//! connection.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, BufMut, Bytes};
use polaroid_proto::v1 as pb;
use polaroid_proto::{ErrorCode, excerpt};
use polars::prelude::*;
use prost::Message as _;
use prost_reflect::{
    DescriptorPool, DynamicMessage, EnumDescriptor, FieldDescriptor, Kind, MessageDescriptor, Value,
};
use reqwest::Url;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::codegen::http::uri::PathAndQuery;
use tonic::metadata::{AsciiMetadataKey, BinaryMetadataKey, MetadataMap, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic_reflection::pb::v1 as reflection;

use super::{Sink, blocking, with_source_columns};
use crate::error::{EngineError, EngineResult};
use crate::outbound::Outbound;

/// How long a message waits for more replies once one came, by default.
const DEFAULT_WAIT: Duration = Duration::from_millis(100);
/// Dialling (and the TLS handshake), at most.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Fetching the descriptors, at most.
const REFLECTION_TIMEOUT: Duration = Duration::from_secs(30);
/// Files one reflection may bring (the service's and what it imports).
const MAX_FILES: usize = 512;
/// Nested messages deeper than this are sent as their encoded bytes.
const MAX_DEPTH: usize = 16;
/// The reflection services' bidirectional call, newest first; both speak the same messages.
const REFLECTION: [&str; 2] = [
    "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
    "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
];
/// Headers the transport sets itself (or HTTP/2 forbids): metadata may not name them.
const TRANSPORT_HEADERS: [&str; 8] = [
    "content-type",
    "te",
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "upgrade",
];

/// A gRPC source, checked; its peer not reached yet.
pub struct GrpcSource {
    outbound: Arc<Outbound>,
    url: Url,
    endpoint: Endpoint,
    service: String,
    method: String,
    request: Bytes,
    metadata: MetadataMap,
    batch_rows: Option<usize>,
    max_wait: Duration,
    max_decoded: usize,
}

/// A gRPC source whose peer described the method: ready to call it.
pub struct GrpcCall {
    source: GrpcSource,
    channel: Channel,
    path: PathAndQuery,
    output: MessageDescriptor,
    columns: Arc<Columns>,
}

impl GrpcSource {
    /// Checks `req`; `max_decoded` is the most one reply (and one reflection answer) may be.
    pub fn new(
        req: pb::GrpcStreamRequest,
        outbound: Arc<Outbound>,
        max_decoded: usize,
    ) -> EngineResult<Self> {
        let url = Url::parse(&req.endpoint).map_err(|e| {
            EngineError::invalid(format!(
                "endpoint (1) `{}` is not a URL ({e}); StreamGrpc takes http(s)://host:port",
                excerpt(&req.endpoint)
            ))
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(EngineError::invalid(format!(
                "endpoint (1): scheme `{}` is not http or https",
                excerpt(url.scheme())
            )));
        }
        let Some(host) = url.host_str().filter(|h| !h.is_empty()) else {
            return Err(EngineError::invalid("endpoint (1) names no host"));
        };
        if !url.username().is_empty()
            || url.password().is_some()
            || !matches!(url.path(), "" | "/")
            || url.query().is_some()
            || url.fragment().is_some()
        {
            return Err(EngineError::invalid(format!(
                "endpoint (1) `{}` must be http(s)://host[:port] alone: no credentials, path or query (the method's path comes from service (2) and method (3))",
                excerpt(&req.endpoint)
            )));
        }
        if req.service.is_empty() {
            return Err(EngineError::invalid(
                "service (2) must name the service, with its package (`package.Service`)",
            ));
        }
        if req.method.is_empty() {
            return Err(EngineError::invalid("method (3) must name the method"));
        }
        let tls = tls_config(url.scheme() == "https", req.tls.as_ref())?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        // The endpoint's scheme gives the default port, whatever `tls` says.
        let port = url.port_or_known_default().unwrap_or(80);
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{host}:{port}"))
            .map_err(|e| EngineError::invalid(format!("endpoint (1): {e}")))?
            .connect_timeout(CONNECT_TIMEOUT)
            .tcp_nodelay(true)
            // A peer gone silent (its machine lost, a network cut) is noticed; no more
            // often than every 5 minutes, what gRPC servers accept by default (pinged more
            // often they end the connection: ENHANCE_YOUR_CALM).
            .http2_keep_alive_interval(Duration::from_secs(300))
            .keep_alive_timeout(Duration::from_secs(20));
        if let Some(tls) = tls {
            endpoint = endpoint
                .tls_config(tls)
                .map_err(|e| EngineError::invalid(format!("tls (6): {}", chain(&e))))?;
        }
        let metadata = metadata(&req.metadata)?;
        let batch_rows = match req.batch_rows {
            None => None,
            Some(n) if n > 0 => Some(usize::try_from(n).unwrap_or(usize::MAX)),
            Some(n) => {
                return Err(EngineError::invalid(format!(
                    "batch_rows (7) must be positive, got {n}"
                )));
            }
        };
        let max_wait = match req.max_wait_ms {
            None => DEFAULT_WAIT,
            Some(ms) if (1..=60_000).contains(&ms) => Duration::from_millis(ms.unsigned_abs()),
            Some(ms) => {
                return Err(EngineError::invalid(format!(
                    "max_wait_ms (8) must be in 1..=60000, got {ms}"
                )));
            }
        };
        Ok(Self {
            outbound,
            url,
            endpoint,
            service: req.service,
            method: req.method,
            request: Bytes::from(req.request_proto),
            metadata,
            batch_rows,
            max_wait,
            max_decoded,
        })
    }

    fn default_port(&self) -> u16 {
        if self.url.scheme() == "https" {
            443
        } else {
            80
        }
    }

    /// Connects, asks the peer's reflection for the method, and checks the request
    /// against it: everything that can be refused is refused here, before the stream.
    pub async fn prepare(self) -> EngineResult<GrpcCall> {
        self.outbound
            .resolve(&self.url, self.default_port())
            .await?;
        let channel = self
            .endpoint
            .connect_with_connector(connector(
                self.outbound.clone(),
                self.url.clone(),
                self.default_port(),
            ))
            .await
            .map_err(|e| self.lost("connect", &chain(&e)))?;
        let pool = tokio::time::timeout(REFLECTION_TIMEOUT, self.reflect(&channel))
            .await
            .unwrap_or_else(|_| {
                Err(EngineError::RemoteAnswer {
                    code: ErrorCode::DeadlineExceeded,
                    message: format!(
                        "{}: its reflection did not describe `{}` within {} s",
                        self.shown(),
                        excerpt(&self.service),
                        REFLECTION_TIMEOUT.as_secs()
                    ),
                })
            })?;
        let service =
            pool.get_service_by_name(&self.service)
                .ok_or_else(|| EngineError::RemoteAnswer {
                    code: ErrorCode::NotFound,
                    message: format!(
                        "service (2) `{}`: the peer's reflection names no such service",
                        excerpt(&self.service)
                    ),
                })?;
        let method = service
            .methods()
            .find(|m| m.name() == self.method)
            .ok_or_else(|| {
                let known: Vec<String> = service.methods().map(|m| m.name().to_owned()).collect();
                EngineError::RemoteAnswer {
                    code: ErrorCode::NotFound,
                    message: format!(
                        "method (3) `{}` is not a method of {} (it has: {})",
                        excerpt(&self.method),
                        service.full_name(),
                        known.join(", ")
                    ),
                }
            })?;
        if !method.is_server_streaming() || method.is_client_streaming() {
            let kind = match (method.is_client_streaming(), method.is_server_streaming()) {
                (false, false) => "unary",
                (true, false) => "client-streaming",
                _ => "bidirectional",
            };
            return Err(EngineError::invalid(format!(
                "method (3) {}.{} is {kind}: StreamGrpc calls server-streaming methods (one request, `returns (stream ...)`)",
                service.full_name(),
                method.name()
            )));
        }
        let input = method.input();
        DynamicMessage::decode(input.clone(), self.request.clone()).map_err(|e| {
            EngineError::invalid(format!(
                "request_proto (4) does not decode as {}, the input of {}.{}: {e}",
                input.full_name(),
                service.full_name(),
                method.name()
            ))
        })?;
        let path = PathAndQuery::try_from(format!("/{}/{}", service.full_name(), method.name()))
            .map_err(|e| EngineError::invalid(format!("method (3): {e}")))?;
        let output = method.output();
        let columns = Arc::new(Columns::of(&output));
        Ok(GrpcCall {
            source: self,
            channel,
            path,
            output,
            columns,
        })
    }

    /// The descriptors of `service` and every file it imports, from the peer's reflection.
    async fn reflect(&self, channel: &Channel) -> EngineResult<DescriptorPool> {
        for path in REFLECTION {
            match self.reflect_by(channel, path).await? {
                Some(pool) => return Ok(pool),
                None => continue,
            }
        }
        Err(EngineError::RemoteAnswer {
            code: ErrorCode::FailedPrecondition,
            message: format!(
                "{} serves no gRPC reflection (grpc.reflection.v1 or v1alpha ServerReflection answered UNIMPLEMENTED): StreamGrpc decodes replies by the descriptors reflection gives",
                self.shown()
            ),
        })
    }

    /// [`Self::reflect`] through one version of the service; `None` if the peer does not
    /// serve it.
    async fn reflect_by(
        &self,
        channel: &Channel,
        path: &'static str,
    ) -> EngineResult<Option<DescriptorPool>> {
        use reflection::server_reflection_request::MessageRequest;
        use reflection::server_reflection_response::MessageResponse;

        let ask = |request: MessageRequest| {
            Bytes::from(
                reflection::ServerReflectionRequest {
                    host: String::new(),
                    message_request: Some(request),
                }
                .encode_to_vec(),
            )
        };
        let (asking, questions) = tokio::sync::mpsc::channel::<Bytes>(4);
        let _ = asking
            .send(ask(MessageRequest::FileContainingSymbol(
                self.service.clone(),
            )))
            .await;
        let mut grpc =
            tonic::client::Grpc::new(channel.clone()).max_decoding_message_size(self.max_decoded);
        grpc.ready()
            .await
            .map_err(|e| self.lost("connect", &chain(&e)))?;
        let request = tonic::Request::new(tokio_stream::wrappers::ReceiverStream::new(questions));
        let answers = grpc
            .streaming(request, PathAndQuery::from_static(path), RawCodec)
            .await;
        let mut answers = match answers {
            Ok(answers) => answers.into_inner(),
            Err(status) if status.code() == tonic::Code::Unimplemented => return Ok(None),
            Err(status) => return Err(self.reflection_failed(status)),
        };
        let mut files: HashMap<String, prost_types::FileDescriptorProto> = HashMap::new();
        let mut asked: HashSet<String> = HashSet::new();
        let mut waiting_for: Option<String> = None;
        let mut first = true;
        loop {
            let answer = match answers.message().await {
                Ok(Some(answer)) => answer,
                Err(status) if first && status.code() == tonic::Code::Unimplemented => {
                    return Ok(None);
                }
                Err(status) => return Err(self.reflection_failed(status)),
                Ok(None) => {
                    return Err(EngineError::Remote(format!(
                        "{}: its reflection ended the call before describing `{}`",
                        self.shown(),
                        excerpt(&self.service)
                    )));
                }
            };
            let answer = reflection::ServerReflectionResponse::decode(answer).map_err(|e| {
                EngineError::Remote(format!(
                    "{}: its reflection answered what is not a ServerReflectionResponse: {e}",
                    self.shown()
                ))
            })?;
            match answer.message_response {
                Some(MessageResponse::FileDescriptorResponse(found)) => {
                    for bytes in found.file_descriptor_proto {
                        let file =
                            prost_types::FileDescriptorProto::decode(bytes.as_slice()).map_err(
                                |e| {
                                    EngineError::Remote(format!(
                                        "{}: its reflection sent a file descriptor that does not decode: {e}",
                                        self.shown()
                                    ))
                                },
                            )?;
                        files.entry(file.name().to_owned()).or_insert(file);
                    }
                }
                Some(MessageResponse::ErrorResponse(error)) if first => {
                    let code = if error.error_code == tonic::Code::NotFound as i32 {
                        ErrorCode::NotFound
                    } else {
                        ErrorCode::FailedPrecondition
                    };
                    return Err(EngineError::RemoteAnswer {
                        code,
                        message: format!(
                            "service (2) `{}`: the peer's reflection does not describe it ({})",
                            excerpt(&self.service),
                            excerpt(&error.error_message)
                        ),
                    });
                }
                Some(MessageResponse::ErrorResponse(error)) => {
                    return Err(EngineError::RemoteAnswer {
                        code: ErrorCode::FailedPrecondition,
                        message: format!(
                            "{}: its reflection does not give `{}`, which `{}` needs ({})",
                            self.shown(),
                            excerpt(waiting_for.as_deref().unwrap_or_default()),
                            excerpt(&self.service),
                            excerpt(&error.error_message)
                        ),
                    });
                }
                _ => {
                    return Err(EngineError::Remote(format!(
                        "{}: its reflection answered with no file descriptor",
                        self.shown()
                    )));
                }
            }
            first = false;
            // The imports it has not sent yet, asked one at a time.
            let missing = files
                .values()
                .flat_map(|file| file.dependency.iter())
                .find(|name| !files.contains_key(*name) && !asked.contains(*name))
                .cloned();
            match missing {
                None => break,
                Some(_) if files.len() + asked.len() >= MAX_FILES => {
                    return Err(EngineError::LimitExceeded(format!(
                        "{}: `{}` imports more than {MAX_FILES} files",
                        self.shown(),
                        excerpt(&self.service)
                    )));
                }
                Some(name) => {
                    asked.insert(name.clone());
                    waiting_for = Some(name.clone());
                    if asking
                        .send(ask(MessageRequest::FileByFilename(name)))
                        .await
                        .is_err()
                    {
                        return Err(self.lost("reflection", "the call ended"));
                    }
                }
            }
        }
        // Ends the reflection call (its request stream closes).
        drop(asking);
        let mut pool = DescriptorPool::new();
        pool.add_file_descriptor_protos(files.into_values())
            .map_err(|e| EngineError::RemoteAnswer {
                code: ErrorCode::FailedPrecondition,
                message: format!(
                    "{}: the descriptors its reflection gave do not build: {e}",
                    self.shown()
                ),
            })?;
        Ok(Some(pool))
    }

    /// The endpoint as messages show it.
    fn shown(&self) -> String {
        excerpt(self.url.as_str()).to_string()
    }

    /// A connection that could not be made or was lost: UNAVAILABLE.
    fn lost(&self, doing: &str, why: &str) -> EngineError {
        EngineError::Remote(format!("{} ({doing}): {why}", self.shown()))
    }

    fn reflection_failed(&self, status: tonic::Status) -> EngineError {
        self.peer_failed("its reflection", status)
    }

    /// The peer's status (or a lost connection's), as the caller should read it: the
    /// peer's code and message, under the code that means the same for this call.
    fn peer_failed(&self, what: &str, status: tonic::Status) -> EngineError {
        use tonic::Code;
        // Statuses tonic makes itself from a transport failure carry their cause.
        if let Some(cause) = std::error::Error::source(&status) {
            return self.lost(what, &format!("{}: {}", status.message(), chain(cause)));
        }
        if status.message().contains("message length too large") {
            return EngineError::LimitExceeded(format!(
                "{}: a message of {what} is larger than {} bytes, the most one may be (max_rest_response_bytes): {}",
                self.shown(),
                self.max_decoded,
                excerpt(status.message())
            ));
        }
        let code = match status.code() {
            Code::InvalidArgument => ErrorCode::InvalidArgument,
            Code::NotFound => ErrorCode::NotFound,
            Code::PermissionDenied | Code::Unauthenticated => ErrorCode::PermissionDenied,
            Code::FailedPrecondition
            | Code::OutOfRange
            | Code::AlreadyExists
            | Code::Aborted
            | Code::Unimplemented => ErrorCode::FailedPrecondition,
            Code::DeadlineExceeded => ErrorCode::DeadlineExceeded,
            Code::Ok
            | Code::Cancelled
            | Code::Unknown
            | Code::ResourceExhausted
            | Code::Internal
            | Code::Unavailable
            | Code::DataLoss => ErrorCode::Unavailable,
        };
        EngineError::RemoteAnswer {
            code,
            message: format!(
                "{} ({what}): the peer ended the call with {} ({}): {}",
                self.shown(),
                code_name(status.code()),
                status.code() as i32,
                excerpt(status.message())
            ),
        }
    }
}

impl GrpcCall {
    /// Calls the method and sends its replies until the peer ends the call, the client
    /// goes away, an error, or a cap.
    pub async fn run(self, mut sink: Sink) -> EngineResult<()> {
        let source = &self.source;
        let what = self.path.to_string();
        let batch_rows = source.batch_rows.unwrap_or(sink.batch_rows());
        let mut grpc = tonic::client::Grpc::new(self.channel.clone())
            .max_decoding_message_size(source.max_decoded);
        grpc.ready()
            .await
            .map_err(|e| source.lost("connect", &chain(&e)))?;
        let mut request = tonic::Request::new(source.request.clone());
        *request.metadata_mut() = source.metadata.clone();
        let mut replies = grpc
            .server_streaming(request, self.path.clone(), RawCodec)
            .await
            .map_err(|status| source.peer_failed(&what, status))?
            .into_inner();
        let mut index = 0u64;
        let mut sent = false;
        loop {
            let mut batch: Vec<(Bytes, u64, SystemTime)> = Vec::new();
            let mut gathering: Option<Instant> = None;
            let mut ended = None;
            while batch.len() < batch_rows {
                let next = match gathering {
                    None => replies.message().await,
                    // `message` keeps its state in the stream: a timeout loses nothing.
                    Some(first) => match source.max_wait.checked_sub(first.elapsed()) {
                        Some(left) => match tokio::time::timeout(left, replies.message()).await {
                            Ok(next) => next,
                            Err(_) => break,
                        },
                        None => break,
                    },
                };
                match next {
                    Ok(Some(reply)) => {
                        batch.push((reply, index, SystemTime::now()));
                        index += 1;
                        gathering.get_or_insert_with(Instant::now);
                    }
                    Ok(None) => {
                        ended = Some(Ok(()));
                        break;
                    }
                    Err(status) => {
                        ended = Some(Err(source.peer_failed(&what, status)));
                        break;
                    }
                }
            }
            if !batch.is_empty() {
                self.deliver(&mut sink, batch, batch_rows).await?;
                sent = true;
            }
            match ended {
                None => continue,
                Some(Ok(())) => {
                    if !sent {
                        // No reply at all: one message without rows, so the client learns
                        // the columns.
                        self.deliver(&mut sink, Vec::new(), batch_rows).await?;
                    }
                    return Ok(());
                }
                Some(Err(error)) => return Err(error),
            }
        }
    }

    /// Decodes `replies` (each its bytes, index and receive time) and sends their rows; a
    /// reply that does not decode ends the stream after those before it.
    async fn deliver(
        &self,
        sink: &mut Sink,
        replies: Vec<(Bytes, u64, SystemTime)>,
        batch_rows: usize,
    ) -> EngineResult<()> {
        let (output, columns) = (self.output.clone(), self.columns.clone());
        let (df, positions, times, bad) = blocking("stream_grpc", move || {
            let mut messages = Vec::with_capacity(replies.len());
            let (mut positions, mut times) = (Vec::new(), Vec::new());
            let mut bad = None;
            for (bytes, index, at) in replies {
                match DynamicMessage::decode(output.clone(), bytes) {
                    Ok(message) => {
                        messages.push(message);
                        positions.push(index.to_string());
                        times.push(at);
                    }
                    Err(e) => {
                        bad = Some(EngineError::invalid(format!(
                            "reply {index} of the peer does not decode as {}: {e}",
                            output.full_name()
                        )));
                        break;
                    }
                }
            }
            let df = columns
                .frame(&messages)
                .map_err(EngineError::polars("stream_grpc rows"))?;
            Ok((df, positions, times, bad))
        })
        .await?;
        let df = with_source_columns(df, times, positions)?;
        if df.height() > 0 || bad.is_none() {
            sink.send(df, batch_rows, false).await?;
            sink.check_rows_cap()?;
        }
        match bad {
            Some(error) => Err(error),
            None => Ok(()),
        }
    }
}

/// Dials the addresses the outbound rules allow for `url`, resolved and checked again at
/// each connection the channel makes.
fn connector(
    outbound: Arc<Outbound>,
    url: Url,
    port: u16,
) -> impl tower::Service<
    tonic::codegen::http::Uri,
    Response = hyper_util::rt::TokioIo<tokio::net::TcpStream>,
    Error = std::io::Error,
    Future = impl Send,
> + Send
+ 'static {
    tower::service_fn(move |_: tonic::codegen::http::Uri| {
        let (outbound, url) = (outbound.clone(), url.clone());
        async move {
            let addresses = outbound
                .resolve(&url, port)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))?;
            let tcp = tokio::net::TcpStream::connect(addresses.as_slice()).await?;
            let _ = tcp.set_nodelay(true);
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(tcp))
        }
    })
}

/// The TLS a connection uses: on for https or `tls.enabled`; the peer checked against
/// `ca_cert` (PEM), else the system's trust store; `client_cert` and `client_key` (PEM)
/// the worker's identity, together or not at all.
fn tls_config(https: bool, tls: Option<&pb::TlsConfig>) -> EngineResult<Option<ClientTlsConfig>> {
    let Some(tls) = tls else {
        return Ok(https.then(|| ClientTlsConfig::new().with_native_roots()));
    };
    let given = |field: &Option<String>, name: &str| -> EngineResult<Option<String>> {
        match field {
            Some(text) if text.trim().is_empty() => Err(EngineError::invalid(format!(
                "tls (6): {name} is empty; leave it unset"
            ))),
            other => Ok(other.clone()),
        }
    };
    let ca = given(&tls.ca_cert, "ca_cert (2)")?;
    let cert = given(&tls.client_cert, "client_cert (3)")?;
    let key = given(&tls.client_key, "client_key (4)")?;
    if https && !tls.enabled {
        return Err(EngineError::invalid(
            "tls (6): enabled (1) is false but endpoint (1) is https; set it true, or use http://",
        ));
    }
    if !https && !tls.enabled {
        if ca.is_some() || cert.is_some() || key.is_some() {
            return Err(EngineError::invalid(
                "tls (6): certificates are given but TLS is off (enabled (1) false and an http:// endpoint)",
            ));
        }
        return Ok(None);
    }
    if cert.is_some() != key.is_some() {
        return Err(EngineError::invalid(
            "tls (6): client_cert (3) and client_key (4) go together: give both or neither",
        ));
    }
    // tonic skips what is not PEM: an empty trust store would only fail at the handshake.
    let certificates = |pem: &str, name: &str| -> EngineResult<()> {
        let found = CertificateDer::pem_slice_iter(pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| EngineError::invalid(format!("tls (6): {name} is not PEM: {e}")))?;
        if found.is_empty() {
            return Err(EngineError::invalid(format!(
                "tls (6): {name} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"
            )));
        }
        Ok(())
    };
    if let Some(ca) = &ca {
        certificates(ca, "ca_cert (2)")?;
    }
    if let Some(cert) = &cert {
        certificates(cert, "client_cert (3)")?;
    }
    if let Some(key) = &key {
        PrivateKeyDer::from_pem_slice(key.as_bytes()).map_err(|e| {
            EngineError::invalid(format!(
                "tls (6): client_key (4) is not a PEM private key: {e}"
            ))
        })?;
    }
    let mut config = ClientTlsConfig::new();
    config = match ca {
        Some(ca) => config.ca_certificate(Certificate::from_pem(ca)),
        None => config.with_native_roots(),
    };
    if let (Some(cert), Some(key)) = (cert, key) {
        config = config.identity(Identity::from_pem(cert, key));
    }
    Ok(Some(config))
}

/// The request's metadata, checked: names HTTP/2 can carry that neither gRPC nor the
/// transport reserve; a `-bin` name's value is sent as its text's bytes (base64 on the
/// wire, as gRPC says).
fn metadata(entries: &BTreeMap<String, String>) -> EngineResult<MetadataMap> {
    let mut map = MetadataMap::new();
    for (name, value) in entries {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("grpc-") || TRANSPORT_HEADERS.contains(&lower.as_str()) {
            return Err(EngineError::invalid(format!(
                "metadata (5): `{}` is set by gRPC itself",
                excerpt(name)
            )));
        }
        let bad_name =
            || EngineError::invalid(format!("metadata (5): bad name `{}`", excerpt(name)));
        if lower.ends_with("-bin") {
            let key = BinaryMetadataKey::from_bytes(lower.as_bytes()).map_err(|_| bad_name())?;
            map.insert_bin(key, MetadataValue::from_bytes(value.as_bytes()));
        } else {
            let key = AsciiMetadataKey::from_bytes(lower.as_bytes()).map_err(|_| bad_name())?;
            // HTTP allows bytes past ASCII in a value; gRPC's ASCII metadata does not.
            let ascii = value.bytes().all(|b| (0x20..0x7f).contains(&b));
            let value = MetadataValue::try_from(value.as_str())
                .ok()
                .filter(|_| ascii)
                .ok_or_else(|| {
                EngineError::invalid(format!(
                    "metadata (5): bad value for `{}` (visible ASCII only; binary values go under a name ending in -bin)",
                    excerpt(name)
                ))
            })?;
            map.insert(key, value);
        }
    }
    Ok(map)
}

/// An error and its causes, on one line.
fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "CANCELLED",
        Code::Unknown => "UNKNOWN",
        Code::InvalidArgument => "INVALID_ARGUMENT",
        Code::DeadlineExceeded => "DEADLINE_EXCEEDED",
        Code::NotFound => "NOT_FOUND",
        Code::AlreadyExists => "ALREADY_EXISTS",
        Code::PermissionDenied => "PERMISSION_DENIED",
        Code::ResourceExhausted => "RESOURCE_EXHAUSTED",
        Code::FailedPrecondition => "FAILED_PRECONDITION",
        Code::Aborted => "ABORTED",
        Code::OutOfRange => "OUT_OF_RANGE",
        Code::Unimplemented => "UNIMPLEMENTED",
        Code::Internal => "INTERNAL",
        Code::Unavailable => "UNAVAILABLE",
        Code::DataLoss => "DATA_LOSS",
        Code::Unauthenticated => "UNAUTHENTICATED",
    }
}

/// Messages as their encoded bytes, both ways: the worker has no generated code for the
/// peer's service.
#[derive(Debug, Clone, Copy)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Self::Error> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

/// A scalar field's column type.
#[derive(Debug, Clone, Copy)]
enum Scalar {
    F64,
    F32,
    I32,
    I64,
    U32,
    U64,
    Bool,
    Str,
    Bytes,
}

/// How a field's values become a column.
#[derive(Debug, Clone)]
enum Shape {
    Scalar(Scalar),
    /// The value's name (its number as text if the descriptor names none).
    Enum(EnumDescriptor),
    /// google.protobuf.Timestamp: Datetime[us, UTC].
    Timestamp,
    /// google.protobuf.Duration: Duration[us].
    Duration,
    /// google.protobuf.*Value wrappers: the value, null when unset.
    Wrapper(FieldDescriptor, Box<Shape>),
    /// A message: a struct of its fields.
    Struct(Vec<(FieldDescriptor, Shape)>),
    /// A message that contains itself (or nests past [`MAX_DEPTH`]), or has no fields:
    /// its encoded bytes.
    Encoded,
    List(Box<Shape>),
    /// A list of {key, value} structs, in key order.
    Map(Box<Shape>, Box<Shape>),
}

const WRAPPERS: [&str; 9] = [
    "google.protobuf.DoubleValue",
    "google.protobuf.FloatValue",
    "google.protobuf.Int64Value",
    "google.protobuf.UInt64Value",
    "google.protobuf.Int32Value",
    "google.protobuf.UInt32Value",
    "google.protobuf.BoolValue",
    "google.protobuf.StringValue",
    "google.protobuf.BytesValue",
];

impl Shape {
    fn of_field(field: &FieldDescriptor, path: &mut Vec<String>) -> Self {
        let kind = field.kind();
        if field.is_map()
            && let Some(entry) = kind.as_message()
        {
            let key = Self::of_kind(entry.map_entry_key_field().kind(), path);
            let value = Self::of_kind(entry.map_entry_value_field().kind(), path);
            return Self::Map(Box::new(key), Box::new(value));
        }
        let shape = Self::of_kind(kind, path);
        if field.is_list() {
            Self::List(Box::new(shape))
        } else {
            shape
        }
    }

    fn of_kind(kind: Kind, path: &mut Vec<String>) -> Self {
        match kind {
            Kind::Double => Self::Scalar(Scalar::F64),
            Kind::Float => Self::Scalar(Scalar::F32),
            Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Self::Scalar(Scalar::I32),
            Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Self::Scalar(Scalar::I64),
            Kind::Uint32 | Kind::Fixed32 => Self::Scalar(Scalar::U32),
            Kind::Uint64 | Kind::Fixed64 => Self::Scalar(Scalar::U64),
            Kind::Bool => Self::Scalar(Scalar::Bool),
            Kind::String => Self::Scalar(Scalar::Str),
            Kind::Bytes => Self::Scalar(Scalar::Bytes),
            Kind::Enum(e) => Self::Enum(e),
            Kind::Message(m) => Self::of_message(&m, path),
        }
    }

    fn of_message(message: &MessageDescriptor, path: &mut Vec<String>) -> Self {
        let name = message.full_name();
        match name {
            "google.protobuf.Timestamp" => return Self::Timestamp,
            "google.protobuf.Duration" => return Self::Duration,
            _ => {}
        }
        if WRAPPERS.contains(&name)
            && let Some(value) = message.get_field(1)
        {
            let shape = Self::of_kind(value.kind(), path);
            return Self::Wrapper(value, Box::new(shape));
        }
        if message.fields().len() == 0
            || path.len() >= MAX_DEPTH
            || path.iter().any(|seen| seen == name)
        {
            return Self::Encoded;
        }
        path.push(name.to_owned());
        let fields = message
            .fields()
            .map(|field| {
                let shape = Self::of_field(&field, path);
                (field, shape)
            })
            .collect();
        path.pop();
        Self::Struct(fields)
    }

    fn dtype(&self) -> DataType {
        match self {
            Self::Scalar(scalar) => match scalar {
                Scalar::F64 => DataType::Float64,
                Scalar::F32 => DataType::Float32,
                Scalar::I32 => DataType::Int32,
                Scalar::I64 => DataType::Int64,
                Scalar::U32 => DataType::UInt32,
                Scalar::U64 => DataType::UInt64,
                Scalar::Bool => DataType::Boolean,
                Scalar::Str => DataType::String,
                Scalar::Bytes => DataType::Binary,
            },
            Self::Enum(_) => DataType::String,
            Self::Timestamp => DataType::Datetime(TimeUnit::Microseconds, Some(TimeZone::UTC)),
            Self::Duration => DataType::Duration(TimeUnit::Microseconds),
            Self::Wrapper(_, shape) => shape.dtype(),
            Self::Struct(fields) => DataType::Struct(
                fields
                    .iter()
                    .map(|(field, shape)| Field::new(field.name().into(), shape.dtype()))
                    .collect(),
            ),
            Self::Encoded => DataType::Binary,
            Self::List(shape) => DataType::List(Box::new(shape.dtype())),
            Self::Map(key, value) => DataType::List(Box::new(DataType::Struct(vec![
                Field::new(PlSmallStr::from_static("key"), key.dtype()),
                Field::new(PlSmallStr::from_static("value"), value.dtype()),
            ]))),
        }
    }
}

/// The columns of one message type: its top-level fields, in declaration order.
#[derive(Debug)]
struct Columns(Vec<(FieldDescriptor, Shape)>);

impl Columns {
    fn of(message: &MessageDescriptor) -> Self {
        let mut path = vec![message.full_name().to_owned()];
        Self(
            message
                .fields()
                .map(|field| {
                    let shape = Shape::of_field(&field, &mut path);
                    (field, shape)
                })
                .collect(),
        )
    }

    /// One row per message.
    fn frame(&self, messages: &[DynamicMessage]) -> PolarsResult<DataFrame> {
        let rows: Vec<Option<&DynamicMessage>> = messages.iter().map(Some).collect();
        let columns = self
            .0
            .iter()
            .map(|(field, shape)| {
                build(field.name().into(), shape, &field_values(&rows, field)).map(Column::from)
            })
            .collect::<PolarsResult<Vec<_>>>()?;
        DataFrame::new(messages.len(), columns)
    }
}

/// `field` of each message: null where the message is, or where the field tracks presence
/// and is unset (optional, oneof members, messages); its default where it does not.
fn field_values<'a>(
    messages: &[Option<&'a DynamicMessage>],
    field: &FieldDescriptor,
) -> Vec<Option<Cow<'a, Value>>> {
    messages
        .iter()
        .map(|message| {
            message.and_then(|m| {
                (!field.supports_presence() || m.has_field(field)).then(|| m.get_field(field))
            })
        })
        .collect()
}

/// The column `name` of `values` (None: null) shaped as `shape`.
fn build<'a>(
    name: PlSmallStr,
    shape: &Shape,
    values: &'a [Option<Cow<'a, Value>>],
) -> PolarsResult<Series> {
    let each = || values.iter().map(|v| v.as_deref());
    let series = match shape {
        Shape::Scalar(scalar) => {
            match scalar {
                Scalar::F64 => Float64Chunked::from_iter_options(name, each().map(|v| v?.as_f64()))
                    .into_series(),
                Scalar::F32 => Float32Chunked::from_iter_options(name, each().map(|v| v?.as_f32()))
                    .into_series(),
                Scalar::I32 => {
                    Int32Chunked::from_iter_options(name, each().map(|v| v?.as_i32())).into_series()
                }
                Scalar::I64 => {
                    Int64Chunked::from_iter_options(name, each().map(|v| v?.as_i64())).into_series()
                }
                Scalar::U32 => UInt32Chunked::from_iter_options(name, each().map(|v| v?.as_u32()))
                    .into_series(),
                Scalar::U64 => UInt64Chunked::from_iter_options(name, each().map(|v| v?.as_u64()))
                    .into_series(),
                Scalar::Bool => {
                    BooleanChunked::from_iter_options(name, each().map(|v| v?.as_bool()))
                        .into_series()
                }
                Scalar::Str => StringChunked::from_iter_options(name, each().map(|v| v?.as_str()))
                    .into_series(),
                Scalar::Bytes => BinaryChunked::from_iter_options(
                    name,
                    each().map(|v| v?.as_bytes().map(|b| b.as_ref())),
                )
                .into_series(),
            }
        }
        Shape::Enum(descriptor) => StringChunked::from_iter_options(
            name,
            each().map(|v| {
                let number = v?.as_enum_number()?;
                Some(match descriptor.get_value(number) {
                    Some(value) => value.name().to_owned(),
                    None => number.to_string(),
                })
            }),
        )
        .into_series(),
        Shape::Timestamp => {
            Int64Chunked::from_iter_options(name, each().map(|v| micros(v?.as_message()?)))
                .into_datetime(TimeUnit::Microseconds, Some(TimeZone::UTC))
                .into_series()
        }
        Shape::Duration => {
            Int64Chunked::from_iter_options(name, each().map(|v| micros(v?.as_message()?)))
                .into_duration(TimeUnit::Microseconds)
                .into_series()
        }
        Shape::Wrapper(field, inner) => {
            let inner_values: Vec<Option<Cow<'_, Value>>> = each()
                .map(|v| Some(v?.as_message()?.get_field(field)))
                .collect();
            build(name, inner, &inner_values)?
        }
        Shape::Struct(fields) => {
            let messages: Vec<Option<&DynamicMessage>> =
                each().map(|v| v.and_then(Value::as_message)).collect();
            let children = fields
                .iter()
                .map(|(field, shape)| {
                    build(field.name().into(), shape, &field_values(&messages, field))
                })
                .collect::<PolarsResult<Vec<_>>>()?;
            let mut ca = StructChunked::from_series(name, messages.len(), children.iter())?
                .rechunk()
                .into_owned();
            if messages.iter().any(Option::is_none) {
                let valid: polars_arrow::bitmap::Bitmap =
                    messages.iter().map(Option::is_some).collect();
                ca = ca.with_outer_validity(Some(valid));
            }
            ca.into_series()
        }
        Shape::Encoded => BinaryChunked::from_iter_options(
            name,
            each().map(|v| Some(v?.as_message()?.encode_to_vec())),
        )
        .into_series(),
        Shape::List(inner) => {
            let mut flat: Vec<Option<Cow<'_, Value>>> = Vec::new();
            let lengths: Vec<Option<usize>> = each()
                .map(|v| {
                    let items = v?.as_list()?;
                    flat.extend(items.iter().map(|item| Some(Cow::Borrowed(item))));
                    Some(items.len())
                })
                .collect();
            let items = build(PlSmallStr::EMPTY, inner, &flat)?;
            lists(name, &inner.dtype(), &items, &lengths)?
        }
        Shape::Map(key, value) => {
            let (mut keys, mut entries) = (Vec::new(), Vec::new());
            let lengths: Vec<Option<usize>> = each()
                .map(|v| {
                    let map = v?.as_map()?;
                    let mut sorted: Vec<_> = map.iter().collect();
                    sorted.sort_by(|a, b| a.0.cmp(b.0));
                    for (k, v) in sorted {
                        keys.push(Some(Cow::Owned(Value::from(k.clone()))));
                        entries.push(Some(Cow::Borrowed(v)));
                    }
                    Some(map.len())
                })
                .collect();
            let keys = build(PlSmallStr::from_static("key"), key, &keys)?;
            let entries = build(PlSmallStr::from_static("value"), value, &entries)?;
            let pairs =
                StructChunked::from_series(PlSmallStr::EMPTY, keys.len(), [keys, entries].iter())?
                    .into_series();
            let dtype = pairs.dtype().clone();
            lists(name, &dtype, &pairs, &lengths)?
        }
    };
    Ok(series)
}

/// `items` cut into one list per row, `lengths` long each (None: a null list).
fn lists(
    name: PlSmallStr,
    dtype: &DataType,
    items: &Series,
    lengths: &[Option<usize>],
) -> PolarsResult<Series> {
    let mut builder =
        polars::chunked_array::builder::get_list_builder(dtype, items.len(), lengths.len(), name);
    let mut offset = 0usize;
    for length in lengths {
        match length {
            None => builder.append_null(),
            Some(length) => {
                builder.append_series(&items.slice(offset as i64, *length))?;
                offset += length;
            }
        }
    }
    Ok(builder.finish().into_series())
}

/// A Timestamp's or Duration's microseconds; None if they do not fit.
fn micros(message: &DynamicMessage) -> Option<i64> {
    let seconds = message.get_field_by_name("seconds")?.as_i64()?;
    let nanos = message.get_field_by_name("nanos")?.as_i32()?;
    seconds
        .checked_mul(1_000_000)?
        .checked_add(i64::from(nanos) / 1_000)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn refused<T>(result: EngineResult<T>) -> String {
        match result {
            Ok(_) => panic!("should be refused"),
            Err(error) => {
                assert_eq!(error.code(), ErrorCode::InvalidArgument, "{error}");
                error.to_string()
            }
        }
    }

    #[test]
    fn metadata_names_what_grpc_and_http2_can_carry() {
        let entries = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let map = metadata(&entries(&[("X-Token", "secret"), ("trace-bin", "\u{1}é")])).unwrap();
        assert_eq!(map.get("x-token").unwrap().to_str().unwrap(), "secret");
        assert_eq!(
            map.get_bin("trace-bin")
                .unwrap()
                .to_bytes()
                .unwrap()
                .as_ref(),
            "\u{1}é".as_bytes()
        );
        for bad in [
            ("grpc-timeout", "1S"),
            ("content-type", "text/plain"),
            ("connection", "close"),
            ("bad name", "x"),
            ("x-token", "é"),
        ] {
            assert!(refused(metadata(&entries(&[bad]))).contains("metadata (5)"));
        }
    }

    #[test]
    fn tls_follows_the_scheme_and_enabled() {
        assert!(tls_config(false, None).unwrap().is_none());
        assert!(tls_config(true, None).unwrap().is_some());
        let off = pb::TlsConfig::default();
        assert!(tls_config(false, Some(&off)).unwrap().is_none());
        assert!(refused(tls_config(true, Some(&off))).contains("enabled (1) is false"));
        let with = |ca: Option<&str>, cert: Option<&str>, key: Option<&str>| pb::TlsConfig {
            enabled: true,
            ca_cert: ca.map(str::to_owned),
            client_cert: cert.map(str::to_owned),
            client_key: key.map(str::to_owned),
        };
        assert!(
            refused(tls_config(false, Some(&with(None, Some("x"), None))))
                .contains("client_key (4)")
        );
        assert!(
            refused(tls_config(false, Some(&with(Some("not PEM"), None, None))))
                .contains("ca_cert (2)")
        );
        assert!(refused(tls_config(false, Some(&with(Some(""), None, None)))).contains("empty"));
        let certificates_off = pb::TlsConfig {
            enabled: false,
            ..with(Some("x"), None, None)
        };
        assert!(refused(tls_config(false, Some(&certificates_off))).contains("TLS is off"));
    }

    #[test]
    fn requests_are_checked_before_any_connection() {
        let outbound = Arc::new(Outbound::new(&[], true).unwrap());
        let request = |endpoint: &str| pb::GrpcStreamRequest {
            endpoint: endpoint.into(),
            service: "a.B".into(),
            method: "C".into(),
            ..Default::default()
        };
        for (endpoint, says) in [
            ("localhost:50051", "scheme"),
            ("ws://h:1", "not http or https"),
            ("http://h:1/path", "no credentials, path or query"),
            ("http://u:p@h:1", "no credentials, path or query"),
            ("not a url", "not a URL"),
        ] {
            let error = refused(GrpcSource::new(
                request(endpoint),
                outbound.clone(),
                1 << 20,
            ));
            assert!(error.contains(says), "{endpoint}: {error}");
        }
        let ok = GrpcSource::new(request("http://h:1"), outbound.clone(), 1 << 20);
        assert!(ok.is_ok());
        let unnamed = pb::GrpcStreamRequest {
            service: String::new(),
            ..request("http://h:1")
        };
        assert!(refused(GrpcSource::new(unnamed, outbound, 1 << 20)).contains("service (2)"));
    }
}
