//! Deadlines: a call ends with DEADLINE_EXCEEDED when its client's `grpc-timeout` runs out,
//! or the server's maximum call time, whichever comes first, instead of working on for a
//! client that has given up.

use std::task::{Context, Poll};
use std::time::Duration;

use polaroid_proto::ErrorCode;

use crate::BoxFuture;

/// Bounds every call by its client's deadline and by `max_call` (`None`: no server bound).
#[derive(Debug, Clone, Copy)]
pub struct DeadlineLayer {
    max_call: Option<Duration>,
}

impl DeadlineLayer {
    pub fn new(max_call: Option<Duration>) -> Self {
        Self { max_call }
    }
}

impl<S> tower::Layer<S> for DeadlineLayer {
    type Service = Deadline<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Deadline {
            max_call: self.max_call,
            inner,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Deadline<S> {
    max_call: Option<Duration>,
    inner: S,
}

/// The time a client gave its call, from `grpc-timeout` (`<digits><unit>`, at most eight
/// digits, by gRPC's HTTP/2 protocol spec); `None` when absent or malformed.
pub fn client_timeout(headers: &http::HeaderMap) -> Option<Duration> {
    let text = headers.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = text.split_at(text.len().checked_sub(1)?);
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value * 3600),
        "M" => Duration::from_secs(value * 60),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// Calls whose request is a stream of any length: a whole upload is read before the
/// answer starts.
fn is_upload(path: &str) -> bool {
    matches!(
        path,
        "/polaroid.v1.DataFrameService/UploadArrow" | "/arrow.flight.protocol.FlightService/DoPut"
    )
}

/// When a call must be answered by, in the extensions of a call that has a deadline: a
/// coordinator's forwarding gives the worker what is left of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallDeadline(pub std::time::Instant);

impl<S, B, R> tower::Service<http::Request<B>> for Deadline<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = BoxFuture<Result<S::Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let client = client_timeout(request.headers());
        // An upload's stream is bounded by `max_upload_bytes`, and its time by how fast
        // the client sends: only the client's deadline applies to it.
        let max_call = self.max_call.filter(|_| !is_upload(request.uri().path()));
        let limit = match (client, max_call) {
            _ if crate::is_control_call(request.uri().path()) => None,
            (Some(client), Some(max)) if max < client => Some((max, "the server's max_call_secs")),
            (Some(client), _) => Some((client, "the client's grpc-timeout")),
            (None, Some(max)) => Some((max, "the server's max_call_secs")),
            (None, None) => None,
        };
        let Some((limit, set_by)) = limit else {
            return Box::pin(self.inner.call(request));
        };
        request
            .extensions_mut()
            .insert(CallDeadline(std::time::Instant::now() + limit));
        let call = self.inner.call(request);
        Box::pin(async move {
            // Until the response starts: a streamed result, once flowing, is bounded by
            // the client, which cancels its stream when its own deadline passes.
            match tokio::time::timeout(limit, call).await {
                Ok(response) => response,
                Err(_) => {
                    metrics::counter!("polaroid_grpc_deadline_exceeded_total").increment(1);
                    Ok(ErrorCode::DeadlineExceeded
                        .status(format!(
                            "the call did not finish within {} ms ({set_by})",
                            limit.as_millis()
                        ))
                        .into_http())
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use tower::{Layer, ServiceExt};

    fn headers(timeout: &str) -> http::HeaderMap {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", timeout.parse().unwrap());
        headers
    }

    #[test]
    fn grpc_timeouts_parse_as_the_spec_writes_them() {
        assert_eq!(
            client_timeout(&headers("250m")),
            Some(Duration::from_millis(250))
        );
        assert_eq!(client_timeout(&headers("2S")), Some(Duration::from_secs(2)));
        assert_eq!(
            client_timeout(&headers("1H")),
            Some(Duration::from_secs(3600))
        );
        assert_eq!(
            client_timeout(&headers("99999999n")),
            Some(Duration::from_nanos(99_999_999))
        );
        for bad in ["", "m", "123456789m", "12x", "-1S", "1.5S"] {
            assert_eq!(client_timeout(&headers(bad)), None, "{bad:?}");
        }
        assert_eq!(client_timeout(&http::HeaderMap::new()), None);
    }

    async fn answer(layer: DeadlineLayer, path: &str, timeout: Option<&str>) -> String {
        let service = layer.layer(tower::service_fn(|_: http::Request<()>| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            Ok::<_, std::convert::Infallible>(http::Response::new(tonic::body::Body::empty()))
        }));
        let mut request = http::Request::builder().uri(path).body(()).unwrap();
        if let Some(timeout) = timeout {
            request
                .headers_mut()
                .insert("grpc-timeout", timeout.parse().unwrap());
        }
        let call = service.oneshot(request);
        match tokio::time::timeout(Duration::from_secs(2), call).await {
            Ok(response) => {
                let response = response.unwrap();
                let status = tonic::Status::from_header_map(response.headers()).unwrap();
                format!("{:?}: {}", status.code(), status.message())
            }
            Err(_) => "still running".into(),
        }
    }

    #[tokio::test]
    async fn the_nearer_of_the_two_deadlines_ends_the_call() {
        let path = "/polaroid.v1.DataFrameService/Collect";
        let server = DeadlineLayer::new(Some(Duration::from_millis(50)));
        let answer_of = answer(server, path, Some("10S")).await;
        assert!(answer_of.starts_with("DeadlineExceeded"), "{answer_of}");
        assert!(answer_of.contains("max_call_secs"), "{answer_of}");
        let answer_of = answer(DeadlineLayer::new(None), path, Some("20m")).await;
        assert!(
            answer_of.contains("within 20 ms (the client's"),
            "{answer_of}"
        );
        assert_eq!(
            answer(DeadlineLayer::new(None), path, None).await,
            "still running"
        );
        let health = "/grpc.health.v1.Health/Check";
        assert_eq!(answer(server, health, Some("1m")).await, "still running");
        // An upload takes as long as its client sends, within the client's own deadline.
        let upload = "/polaroid.v1.DataFrameService/UploadArrow";
        assert_eq!(answer(server, upload, None).await, "still running");
        let answer_of = answer(server, upload, Some("20m")).await;
        assert!(answer_of.contains("the client's"), "{answer_of}");
    }
}
