//! The statuses of requests that could not be decoded, as gRPC clients expect them:
//! tonic answers a request over the message limit with OUT_OF_RANGE (gRPC's status-code
//! guide says RESOURCE_EXHAUSTED) and a request that is not a valid message (an
//! expression nested past the decoder's recursion limit, say) with INTERNAL, which reads
//! as a server bug; it is the client's request, INVALID_ARGUMENT.

/// What a decode failure's status becomes: (tonic's code, the start of its message as it
/// is on the wire, where tonic percent-encodes spaces, ours).
const REWRITES: [(&str, &[u8], &str); 2] = [
    (
        "11",
        b"Error,%20decoded%20message%20length%20too%20large",
        "8",
    ),
    ("13", b"failed%20to%20decode%20Protobuf%20message", "3"),
];

/// The code a decode failure's status should have, if `headers` carry one.
fn rewritten(headers: &http::HeaderMap) -> Option<&'static str> {
    let (code, message) = (headers.get("grpc-status")?, headers.get("grpc-message")?);
    REWRITES.iter().find_map(|(code_is, starts, ours)| {
        (code.as_bytes() == code_is.as_bytes() && message.as_bytes().starts_with(starts))
            .then_some(*ours)
    })
}

fn rewrite(headers: &mut http::HeaderMap) {
    if let Some(ours) = rewritten(headers) {
        headers.insert("grpc-status", http::HeaderValue::from_static(ours));
    }
}

/// Rewrites a decode failure's status, in the headers (a trailers-only answer) or in the
/// trailers that end the body (tonic's unary answers).
pub fn rewrite_decode_status(
    mut response: http::Response<tonic::body::Body>,
) -> http::Response<tonic::body::Body> {
    rewrite(response.headers_mut());
    response.map(|body| tonic::body::Body::new(Rewritten { body }))
}

pin_project_lite::pin_project! {
    /// A body whose trailers pass through [`rewrite`].
    struct Rewritten {
        #[pin]
        body: tonic::body::Body,
    }
}

impl http_body::Body for Rewritten {
    type Data = bytes::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.project().body.poll_frame(cx).map(|frame| {
            frame.map(|frame| {
                frame.map(|frame| match frame.into_trailers() {
                    Ok(mut trailers) => {
                        rewrite(&mut trailers);
                        http_body::Frame::trailers(trailers)
                    }
                    Err(frame) => frame,
                })
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn headers(code: &str, message: &str) -> http::HeaderMap {
        let mut map = http::HeaderMap::new();
        map.insert("grpc-status", code.parse().unwrap());
        map.insert("grpc-message", message.parse().unwrap());
        map
    }

    #[test]
    fn only_decode_failures_change_code() {
        let code = |mut map: http::HeaderMap| {
            rewrite(&mut map);
            map["grpc-status"].to_str().unwrap().to_owned()
        };
        let too_large = headers(
            "11",
            "Error,%20decoded%20message%20length%20too%20large:%20found%209%20bytes",
        );
        assert_eq!(code(too_large), "8");
        let invalid = headers(
            "13",
            "failed%20to%20decode%20Protobuf%20message:%20recursion",
        );
        assert_eq!(code(invalid), "3");
        // The engine's own INTERNAL and OUT_OF_RANGE answers are left as they are.
        assert_eq!(code(headers("13", "internal%20error%20in%20collect")), "13");
        assert_eq!(code(headers("11", "offset%20out%20of%20range")), "11");
    }
}
