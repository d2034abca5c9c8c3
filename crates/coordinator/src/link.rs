//! The coordinator's HTTP/2 connection to one worker, for forwarded calls, driven by `h2`
//! itself rather than through a client stack: a forwarded request's headers and its
//! message are queued together and leave in one write (hyper's client waits for stream
//! capacity before sending a body, which puts them in two, and wakes the worker twice),
//! and a one-message call crosses no task between the caller and the connection. With
//! `tls.ca_file` the connection is TLS, presenting the coordinator's certificate (mTLS).
//! A worker in this very process (`polaroid standalone`) is called through the stack it
//! published instead, with no connection at all (`polaroid_server::InProcess`).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use h2::client::SendRequest;
use http_body::Frame;
use polaroid_auth::tls::ClientTls;
use polaroid_proto::GRPC_PREFIX_BYTES;
use polaroid_server::{InProcess, InProcessService};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tonic::Status;

use crate::failover::{Http2Failure, Verdict};
use crate::proxy::MessageStream;

/// A worker that does not accept a connection this quickly is treated as down.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// The connection is pinged this often, and closed when a ping goes unanswered as long,
/// so that calls do not wait on a worker that vanished without closing it.
const KEEPALIVE: Duration = Duration::from_secs(20);
/// The most bytes given to h2 in one send.
const MAX_SEND_BYTES: usize = 1 << 30;
/// The largest header block (response headers or trailers) read from a worker, as hyper's
/// client. A larger one fails its call (REFUSED_STREAM), and one over 4x this closes the
/// whole connection (h2's ENHANCE_YOUR_CALM): a worker's headers are a few fixed fields
/// and its status, whose message is at most `MAX_STATUS_MESSAGE_BYTES` (three times that
/// percent-encoded), so they always fit.
pub(crate) const MAX_HEADER_LIST_BYTES: u32 = 16 << 10;
const _: () =
    assert!(3 * polaroid_proto::MAX_STATUS_MESSAGE_BYTES + 1024 <= MAX_HEADER_LIST_BYTES as usize);

/// Why a call could not be sent to the worker, or its answer not read.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("connecting to {address}: {reason}")]
    Connect { address: String, reason: String },
    #[error("a request message of {0} bytes is larger than gRPC can frame")]
    MessageTooLarge(usize),
    #[error(transparent)]
    Http2(#[from] h2::Error),
    /// A worker in this process failed the call outside gRPC's own statuses (its stack
    /// refused it, or its response body broke).
    #[error("the worker's stack failed the call: {0}")]
    InProcess(Status),
}

impl LinkError {
    /// Whether the worker is down (fail over) or this call failed (answer it with the
    /// code): see [`crate::failover`].
    pub fn verdict(&self) -> Verdict {
        match self {
            Self::Connect { .. } => Verdict::WorkerDown,
            Self::MessageTooLarge(_) => {
                Verdict::CallFailed(polaroid_proto::ErrorCode::ResourceExhausted)
            }
            Self::Http2(e) => Http2Failure::of(e).verdict(),
            Self::InProcess(_) => Verdict::CallFailed(polaroid_proto::ErrorCode::Internal),
        }
    }
}

/// A connection to one worker, opened on first use and again after it fails.
pub struct WorkerLink {
    address: String,
    /// `None`: plaintext.
    tls: Option<ClientTls>,
    /// Where a worker in this process publishes its stack; looked up per call, so that a
    /// worker that stopped is dialed (and found down) like any other.
    in_process: Option<InProcess>,
    slot: tokio::sync::Mutex<Connection>,
}

/// The open connection's sender; `generation` counts connections opened.
#[derive(Default)]
struct Connection {
    generation: u64,
    sender: Option<SendRequest<Bytes>>,
}

/// The messages of a forwarded request.
pub enum Outbound {
    /// One message, held whole: it is sent with the headers.
    Message(Option<Bytes>),
    /// A client stream, sent as the worker's flow control allows. A failure of the
    /// caller's stream goes to `failed`; the worker's stream is then reset with
    /// INTERNAL_ERROR, as it is when the call is dropped before the stream ends, because
    /// a worker's gRPC server takes a CANCEL reset for the end of the stream.
    Stream {
        messages: MessageStream,
        failed: tokio::sync::oneshot::Sender<Status>,
    },
}

impl WorkerLink {
    pub fn new(address: &str, tls: Option<ClientTls>, in_process: Option<InProcess>) -> Self {
        Self {
            address: address.to_owned(),
            tls,
            in_process,
            slot: tokio::sync::Mutex::default(),
        }
    }

    /// Sends a request (`path` and headers; the body is `outbound`) and returns the
    /// worker's response head with its body. The request body keeps flowing after this
    /// returns; it stops when the returned body is dropped.
    pub async fn send(
        &self,
        path: &str,
        headers: http::HeaderMap,
        outbound: Outbound,
    ) -> Result<http::Response<Received>, LinkError> {
        if let Some(stack) = self
            .in_process
            .as_ref()
            .and_then(|r| r.service(&self.address))
        {
            return send_in_process(stack, path, headers, outbound).await;
        }
        let mut request = http::Request::new(());
        *request.method_mut() = http::Method::POST;
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        *request.uri_mut() = http::Uri::try_from(format!("{scheme}://{}{path}", self.address))
            .map_err(|e| LinkError::Connect {
                address: self.address.clone(),
                reason: e.to_string(),
            })?;
        *request.version_mut() = http::Version::HTTP_2;
        *request.headers_mut() = headers;
        // Checked before the worker sees anything of the call.
        let prefix = match &outbound {
            Outbound::Message(Some(message)) => Some(framed_prefix(message.len())?),
            _ => None,
        };
        let mut sender = self.ready_sender().await?;
        let (response, mut send) = sender.send_request(request, false)?;
        let pipe = match outbound {
            Outbound::Message(message) => {
                // The last frame ends the stream. No empty DATA frame is sent before it:
                // h2 counts those as a flood (CVE-2019-9518), and a worker's connection
                // that had carried 200 requests with an empty message was closed.
                match (prefix, message) {
                    (Some(prefix), Some(message)) if message.is_empty() => {
                        send.send_data(prefix, true)?;
                    }
                    (Some(prefix), Some(mut message)) => {
                        send.send_data(prefix, false)?;
                        // h2 refuses a single send of 2 GiB or more; gRPC messages reach
                        // 4 GiB.
                        while message.len() > MAX_SEND_BYTES {
                            send.send_data(message.split_to(MAX_SEND_BYTES), false)?;
                        }
                        send.send_data(message, true)?;
                    }
                    _ => send.send_data(Bytes::new(), true)?,
                }
                None
            }
            Outbound::Stream { messages, failed } => {
                Some(AbortOnDrop(tokio::spawn(pipe(send, messages, failed))))
            }
        };
        let (head, body) = response.await?.into_parts();
        Ok(http::Response::from_parts(
            head,
            Received(Inner::Http2 {
                stream: body,
                data_done: false,
                done: false,
                _pipe: pipe,
            }),
        ))
    }

    /// The connection's sender, ready for a new stream: the open connection, or a new one
    /// when there is none or it has closed.
    async fn ready_sender(&self) -> Result<SendRequest<Bytes>, LinkError> {
        let (generation, cached) = {
            let slot = self.slot.lock().await;
            (slot.generation, slot.sender.clone())
        };
        if let Some(sender) = cached {
            match sender.ready().await {
                Ok(sender) => return Ok(sender),
                Err(e) => tracing::debug!(worker = %self.address, error = %e, "reconnecting"),
            }
        }
        let mut slot = self.slot.lock().await;
        // Another call may have reconnected meanwhile.
        let sender = match slot.sender.clone() {
            Some(sender) if slot.generation != generation => sender,
            _ => {
                let sender = self.connect().await?;
                slot.sender = Some(sender.clone());
                slot.generation += 1;
                sender
            }
        };
        drop(slot);
        Ok(sender.ready().await?)
    }

    async fn connect(&self) -> Result<SendRequest<Bytes>, LinkError> {
        let failed = |reason: String| LinkError::Connect {
            address: self.address.clone(),
            reason,
        };
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.address))
            .await
            .map_err(|_| failed(format!("no answer within {CONNECT_TIMEOUT:?}")))?
            .map_err(|e| failed(e.to_string()))?;
        tcp.set_nodelay(true).map_err(|e| failed(e.to_string()))?;
        match &self.tls {
            // A worker whose certificate does not verify is as unusable as one that is
            // down; the reason is in the call's status and the log.
            Some(tls) => {
                let tls = tls
                    .connect(tcp, &self.address)
                    .await
                    .map_err(|e| failed(format!("TLS: {e}")))?;
                self.handshake(tls).await
            }
            None => self.handshake(tcp).await,
        }
    }

    /// Opens HTTP/2 over `io` and drives the connection on a task of its own.
    async fn handshake<T>(&self, io: T) -> Result<SendRequest<Bytes>, LinkError>
    where
        T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let (sender, mut connection) = h2::client::Builder::new()
            // Results stream through here: 1 MiB frames and windows of several messages
            // move a 4 MiB message in a few frames, without stalling on window updates.
            // The connection's window is 32 streams' worth, so callers that stop reading
            // cannot starve the other calls on this worker's one connection.
            .max_frame_size(1 << 20)
            .initial_window_size(16 << 20)
            .initial_connection_window_size(512 << 20)
            // As hyper's client: workers never push, and header blocks stay small.
            .enable_push(false)
            .max_header_list_size(MAX_HEADER_LIST_BYTES)
            .handshake::<_, Bytes>(io)
            .await?;
        let ping_pong = connection.ping_pong();
        let address = self.address.clone();
        tokio::spawn(async move {
            let keepalive = async move {
                let Some(mut ping_pong) = ping_pong else {
                    return std::future::pending().await;
                };
                loop {
                    tokio::time::sleep(KEEPALIVE).await;
                    let answered =
                        tokio::time::timeout(KEEPALIVE, ping_pong.ping(h2::Ping::opaque())).await;
                    if !matches!(answered, Ok(Ok(_))) {
                        return "a keepalive ping went unanswered";
                    }
                }
            };
            tokio::select! {
                ended = &mut connection => if let Err(e) = ended {
                    tracing::debug!(worker = %address, error = %e, "worker connection ended");
                },
                reason = keepalive => tracing::warn!(worker = %address, reason, "closing worker connection"),
            }
        });
        Ok(sender)
    }
}

fn framed_prefix(length: usize) -> Result<Bytes, LinkError> {
    let length = u32::try_from(length).map_err(|_| LinkError::MessageTooLarge(length))?;
    let mut prefix = BytesMut::with_capacity(GRPC_PREFIX_BYTES);
    prefix.put_u8(0);
    prefix.put_u32(length);
    Ok(prefix.freeze())
}

/// Sends a client stream's messages as the worker's flow control allows.
async fn pipe(
    send: h2::SendStream<Bytes>,
    mut messages: MessageStream,
    failed: tokio::sync::oneshot::Sender<Status>,
) {
    let mut send = Unfinished {
        stream: send,
        ended: false,
    };
    while let Some(message) = messages.next().await {
        let message = message.and_then(|message| {
            let prefix = framed_prefix(message.len())
                .map_err(|e| Status::resource_exhausted(e.to_string()))?;
            Ok((prefix, message))
        });
        let (prefix, message) = match message {
            Ok(parts) => parts,
            Err(status) => {
                // The client hears its error before the worker's stream is reset (on drop).
                let _ = failed.send(status);
                return;
            }
        };
        for data in [prefix, message] {
            if send_within_capacity(&mut send.stream, data).await.is_err() {
                // The worker ended or reset the stream; its answer says why.
                return;
            }
        }
    }
    let _ = send.stream.send_data(Bytes::new(), true);
    send.ended = true;
}

/// An upload's stream to the worker that has not been ended: dropped as it is (the
/// client's stream failed, or the call was dropped), it resets the worker's stream with
/// INTERNAL_ERROR, which the worker's gRPC server reports as an error; with CANCEL it
/// would take the upload so far for the whole of it.
struct Unfinished {
    stream: h2::SendStream<Bytes>,
    ended: bool,
}

impl Drop for Unfinished {
    fn drop(&mut self) {
        if !self.ended {
            self.stream.send_reset(h2::Reason::INTERNAL_ERROR);
        }
    }
}

async fn send_within_capacity(
    send: &mut h2::SendStream<Bytes>,
    mut data: Bytes,
) -> Result<(), h2::Error> {
    while !data.is_empty() {
        send.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| send.poll_capacity(cx)).await {
            Some(granted) => granted?,
            None => return Err(h2::Error::from(h2::Reason::CANCEL)),
        };
        if granted > 0 {
            send.send_data(data.split_to(granted.min(data.len())), false)?;
        }
    }
    Ok(())
}

/// Aborts a task when dropped: the request pipe stops with the call it feeds.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A worker's response body: its data frames as they arrive (their window is handed back
/// to the worker as each is passed on), then its trailers.
pub struct Received(Inner);

enum Inner {
    Http2 {
        stream: h2::RecvStream,
        data_done: bool,
        done: bool,
        _pipe: Option<AbortOnDrop>,
    },
    /// The body a worker's stack in this process answered with.
    InProcess(tonic::body::Body),
}

impl Received {
    /// Whether the worker's answer ended with its head (a status without a body).
    pub fn ended_at_head(&self) -> bool {
        match &self.0 {
            Inner::Http2 { stream, done, .. } => *done || stream.is_end_stream(),
            Inner::InProcess(body) => http_body::Body::is_end_stream(body),
        }
    }
}

impl http_body::Body for Received {
    type Data = Bytes;
    type Error = LinkError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, LinkError>>> {
        let (stream, data_done, done) = match &mut self.get_mut().0 {
            Inner::InProcess(body) => {
                return Pin::new(body).poll_frame(cx).map_err(LinkError::InProcess);
            }
            Inner::Http2 {
                stream,
                data_done,
                done,
                ..
            } => (stream, data_done, done),
        };
        if *done {
            return Poll::Ready(None);
        }
        if !*data_done {
            match stream.poll_data(cx) {
                Poll::Ready(Some(Ok(data))) => {
                    let _ = stream.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Poll::Ready(Some(Err(e))) => {
                    *done = true;
                    return Poll::Ready(Some(Err(e.into())));
                }
                Poll::Ready(None) => *data_done = true,
                Poll::Pending => return Poll::Pending,
            }
        }
        let trailers = std::task::ready!(stream.poll_trailers(cx));
        *done = true;
        Poll::Ready(match trailers {
            Ok(Some(trailers)) => Some(Ok(Frame::trailers(trailers))),
            Ok(None) => None,
            Err(e) => Some(Err(e.into())),
        })
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Inner::Http2 { done, .. } => *done,
            Inner::InProcess(body) => body.is_end_stream(),
        }
    }
}

/// Calls a worker of this process through its published stack: the request as the
/// worker's port would have decoded it from HTTP/2 (the framed message as its body), and
/// its response body handed on as it comes.
async fn send_in_process(
    stack: InProcessService,
    path: &str,
    headers: http::HeaderMap,
    outbound: Outbound,
) -> Result<http::Response<Received>, LinkError> {
    use tower::ServiceExt;
    metrics::counter!("polaroid_coordinator_in_process_calls_total").increment(1);
    let body = match outbound {
        Outbound::Message(message) => {
            let frames = match message {
                Some(message) => vec![framed_prefix(message.len())?, message],
                None => Vec::new(),
            };
            tonic::body::Body::new(http_body_util::StreamBody::new(futures::stream::iter(
                frames
                    .into_iter()
                    .map(|data| Ok::<_, Status>(Frame::data(data))),
            )))
        }
        Outbound::Stream { messages, failed } => {
            let mut failed = Some(failed);
            let frames = messages.flat_map(move |message| {
                let frames = match message.and_then(|message| {
                    let prefix = framed_prefix(message.len())
                        .map_err(|e| Status::resource_exhausted(e.to_string()))?;
                    Ok((prefix, message))
                }) {
                    Ok((prefix, message)) => {
                        vec![Ok(Frame::data(prefix)), Ok(Frame::data(message))]
                    }
                    Err(status) => {
                        // The client hears its own error; the worker's request stream
                        // fails (not ends), so it takes nothing of the upload.
                        if let Some(failed) = failed.take() {
                            let _ = failed.send(status.clone());
                        }
                        vec![Err(status)]
                    }
                };
                futures::stream::iter(frames)
            });
            tonic::body::Body::new(http_body_util::StreamBody::new(frames))
        }
    };
    let mut request = http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.version_mut() = http::Version::HTTP_2;
    *request.uri_mut() = http::Uri::try_from(path).map_err(|e| {
        LinkError::InProcess(Status::invalid_argument(format!("bad method path: {e}")))
    })?;
    *request.headers_mut() = headers;
    let response = match stack.oneshot(request).await {
        Ok(response) => response,
        // As a worker's port answers an error of its stack (tonic's server does the same).
        Err(e) => Status::from_error(e).into_http(),
    };
    let (head, body) = response.into_parts();
    Ok(http::Response::from_parts(
        head,
        Received(Inner::InProcess(body)),
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use http_body_util::BodyExt;

    use super::*;

    /// Nothing listens here: a call that succeeds did not use the network.
    const NOWHERE: &str = "127.0.0.1:1";

    /// A worker's stack that reads the whole request body and answers with what it got:
    /// the bytes in a data frame, or the body's error as the status.
    fn echoing_stack() -> InProcessService {
        InProcessService::new(tower::service_fn(
            |request: http::Request<tonic::body::Body>| async move {
                let path = request.uri().path().to_owned();
                let mut trailers = http::HeaderMap::new();
                let (data, status) = match request.into_body().collect().await {
                    Ok(body) => (body.to_bytes(), Status::ok(path)),
                    Err(status) => (Bytes::new(), status),
                };
                status.add_header(&mut trailers).unwrap();
                let frames = vec![
                    Ok::<_, Status>(Frame::data(data)),
                    Ok(Frame::trailers(trailers)),
                ];
                let body = http_body_util::StreamBody::new(futures::stream::iter(frames));
                Ok(http::Response::new(tonic::body::Body::new(body)))
            },
        ))
    }

    async fn read_all(response: http::Response<Received>) -> (Bytes, http::HeaderMap) {
        let collected = response.into_body().collect().await.unwrap();
        let trailers = collected.trailers().cloned().unwrap_or_default();
        (collected.to_bytes(), trailers)
    }

    #[tokio::test]
    async fn a_worker_in_this_process_is_called_through_its_stack() {
        let registry = InProcess::default();
        let published = registry.publish(NOWHERE, echoing_stack());
        let link = WorkerLink::new(NOWHERE, None, Some(registry));
        let response = link
            .send(
                "/polaroid.v1.DataFrameService/Head",
                http::HeaderMap::new(),
                Outbound::Message(Some(Bytes::from_static(b"hello"))),
            )
            .await
            .unwrap();
        let (data, trailers) = read_all(response).await;
        // The message arrives framed, as from the wire.
        assert_eq!(&data[..], b"\0\0\0\0\x05hello");
        assert_eq!(trailers["grpc-status"], "0");
        assert_eq!(
            trailers["grpc-message"],
            "/polaroid.v1.DataFrameService/Head"
        );

        // Withdrawn (its worker stopped): the address is dialed, and nobody answers.
        drop(published);
        let refused = link
            .send("/x.Y/Z", http::HeaderMap::new(), Outbound::Message(None))
            .await
            .err()
            .unwrap();
        assert!(
            matches!(refused.verdict(), Verdict::WorkerDown),
            "{refused}"
        );
    }

    #[tokio::test]
    async fn a_client_stream_that_fails_fails_the_workers_request_too() {
        let registry = InProcess::default();
        let _published = registry.publish(NOWHERE, echoing_stack());
        let link = WorkerLink::new(NOWHERE, None, Some(registry));
        let (failed, client_failure) = tokio::sync::oneshot::channel();
        let messages: MessageStream = Box::pin(futures::stream::iter([
            Ok(Bytes::from_static(b"part")),
            Err(Status::invalid_argument("the client's upload broke")),
            Ok(Bytes::from_static(b"never read")),
        ]));
        let response = link
            .send(
                "/arrow.flight.protocol.FlightService/DoPut",
                http::HeaderMap::new(),
                Outbound::Stream { messages, failed },
            )
            .await
            .unwrap();
        let (data, trailers) = read_all(response).await;
        // The worker saw an error, not an upload that ended early.
        assert!(data.is_empty());
        assert_eq!(trailers["grpc-status"], "3");
        assert_eq!(
            client_failure.await.unwrap().message(),
            "the client's upload broke"
        );
    }
}
