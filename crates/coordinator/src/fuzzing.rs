//! Entry point of the `coordinator_frames` fuzz target (`fuzz/`): what the coordinator
//! reads of a call it forwards, from bytes an untrusted client or a worker sends. The
//! client's body goes through the gRPC message framing the proxy reads it with, then the
//! route and retry decisions taken on its first message; the same bytes, as a worker's
//! response, go through the length prefixes the proxy follows to enforce the response
//! limit, checked against a plain reading of the prefixes.
#![doc(hidden)]

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body::Frame;
use tonic::Streaming;

use crate::proxy::{self, Body, MessageLimit, RawDecoder};
use crate::routing::{self, FlightRoutes, Routes};

/// Methods the first byte picks from: every kind of route (a handle in field 1, SQL's
/// tables, appending writes, Flight tickets and descriptors, uploads, streams).
const METHODS: [(bool, &str); 16] = [
    (false, "Select"),
    (false, "Join"),
    (false, "Sql"),
    (false, "WriteParquet"),
    (false, "WriteCsv"),
    (false, "WriteIpc"),
    (false, "Heartbeat"),
    (false, "UploadArrow"),
    (false, "ReadParquet"),
    (false, "Collect"),
    (true, "DoGet"),
    (true, "GetFlightInfo"),
    (true, "GetSchema"),
    (true, "PollFlightInfo"),
    (true, "DoPut"),
    (true, "Handshake"),
];

/// The largest request the proxy reads here; a client's limit is the configured one.
const MAX_REQUEST_BYTES: usize = 1 << 16;

/// Input: a method (byte 0), the size of the HTTP/2 data frames the body arrives in (byte
/// 1, 0 for one frame), a response message limit (bytes 2..4, little-endian), then the
/// body.
pub fn frames(data: &[u8]) {
    let Some((&[method, frame_size, l0, l1], body)) = data.split_first_chunk::<4>() else {
        return;
    };
    let (flight, method) = METHODS[usize::from(method) % METHODS.len()];
    let frames: Vec<Bytes> = match frame_size {
        0 => vec![Bytes::copy_from_slice(body)],
        n => body
            .chunks(usize::from(n))
            .map(Bytes::copy_from_slice)
            .collect(),
    };
    request(flight, method, frames.clone());
    response(usize::from(u16::from_le_bytes([l0, l1])), &frames);
    timeouts(body);
}

/// The client's side: the body read as the proxy reads it, then routed.
fn request(flight: bool, method: &str, frames: Vec<Bytes>) {
    let stream = futures::stream::iter(
        frames
            .into_iter()
            .map(|data| Ok::<_, Infallible>(Frame::data(data))),
    );
    let body = tonic::body::Body::new(http_body_util::StreamBody::new(stream));
    let inbound = Streaming::new_request(RawDecoder, body, None, Some(MAX_REQUEST_BYTES));
    let Ok(body) = futures::executor::block_on(proxy::read_body(inbound)) else {
        return;
    };
    let first = match &body {
        Body::Replayable(first) => first.as_deref(),
        Body::Stream(_) => None,
    };
    let _ = proxy::repeats_have_effects(method, first.unwrap_or_default());
    let _ = if flight {
        FlightRoutes::route_key(method, first)
    } else {
        routing::route_key(method, first)
    };
}

/// The worker's side: the proxy's running check of message prefixes, frame by frame,
/// refuses exactly where a plain reading of the whole body finds a message over `limit`.
fn response(limit: usize, frames: &[Bytes]) {
    let whole: Vec<u8> = frames.concat();
    // Where (in bytes of the body) the first prefix over the limit ends, if one does.
    let mut expected = None;
    let mut at = 0;
    while let Some(prefix) = whole.get(at..at + polaroid_proto::GRPC_PREFIX_BYTES) {
        let length = u32::from_be_bytes([prefix[1], prefix[2], prefix[3], prefix[4]]) as usize;
        at += polaroid_proto::GRPC_PREFIX_BYTES;
        if length > limit {
            expected = Some(at);
            break;
        }
        at = at.saturating_add(length);
    }
    let mut checked = MessageLimit::new(limit);
    let mut seen = 0;
    let mut refused = None;
    for frame in frames {
        seen += frame.len();
        if checked.check(frame).is_err() {
            refused = Some(seen);
            break;
        }
    }
    // The check refuses in the frame that completes the prefix.
    let expected_frame_end = expected.map(|end| {
        let mut total = 0;
        frames
            .iter()
            .map(|frame| {
                total += frame.len();
                total
            })
            .find(|&total| total >= end)
            .unwrap_or(total)
    });
    assert_eq!(
        refused,
        expected_frame_end,
        "response limit {limit} over {} frames",
        frames.len()
    );
}

/// `grpc-timeout` as a client may send it (any bytes a header value may hold), and the
/// proxy's own for what is left.
fn timeouts(body: &[u8]) {
    let read = |value: http::HeaderValue| {
        let mut headers = http::HeaderMap::new();
        headers.insert("grpc-timeout", value);
        polaroid_server::client_timeout(&headers)
    };
    if let Ok(value) = http::HeaderValue::from_bytes(&body[..body.len().min(12)]) {
        let _ = read(value);
    }
    if let Some(nanos) = body.first_chunk::<8>() {
        let left = Duration::from_nanos(u64::from_le_bytes(*nanos));
        let sent = proxy::grpc_timeout(left);
        let value = http::HeaderValue::try_from(sent.as_str()).expect("an ASCII header value");
        let read = read(value).expect("the proxy's grpc-timeout parses");
        assert!(
            read <= left.max(Duration::from_micros(1)),
            "{sent} for {left:?}"
        );
    }
}

/// Seed inputs: real requests of each kind of route, framed as a client frames them,
/// whole or in small frames, under a limit some exceed. Each is in the committed corpus
/// as `fuzz/corpus/coordinator_frames/seed-<name>`.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    use polaroid_proto::flight::{self as fl, flight_descriptor::DescriptorType};
    use polaroid_proto::v1 as pb;
    use polaroid_store::TenantId;
    use prost::Message;

    // A fixed handle (tenant, affinity key, id), so that the seeds are the same each time.
    let handle = format!(
        "ph1_{}{:016x}{:032x}",
        TenantId::from_name("fuzz").to_hex(),
        0x00c0_ffee_u64,
        7
    );
    let framed = |messages: &[Vec<u8>]| -> Vec<u8> {
        let mut body = Vec::new();
        for message in messages {
            body.push(0);
            body.extend(
                u32::try_from(message.len())
                    .unwrap_or(u32::MAX)
                    .to_be_bytes(),
            );
            body.extend(message);
        }
        body
    };
    let select = pb::SelectRequest {
        handle: handle.clone(),
        columns: vec!["a".into()],
        ..Default::default()
    }
    .encode_to_vec();
    let requests: Vec<(&str, Vec<Vec<u8>>)> = vec![
        ("Select", vec![select.clone()]),
        (
            "Join",
            vec![
                pb::JoinRequest {
                    left_handle: handle.clone(),
                    right_handle: handle.clone(),
                    on: Some(pb::JoinOn {
                        columns: vec!["a".into()],
                    }),
                    ..Default::default()
                }
                .encode_to_vec(),
            ],
        ),
        (
            "Sql",
            vec![
                pb::SqlRequest {
                    query: "SELECT * FROM t".into(),
                    tables: [("t".to_owned(), handle.clone())].into(),
                }
                .encode_to_vec(),
            ],
        ),
        (
            "WriteParquet",
            vec![
                pb::WriteParquetRequest {
                    handle: handle.clone(),
                    path: "out.parquet".into(),
                    append: true,
                    ..Default::default()
                }
                .encode_to_vec(),
            ],
        ),
        (
            "Heartbeat",
            vec![
                pb::HeartbeatRequest {
                    handles: vec![handle.clone(), handle.clone()],
                }
                .encode_to_vec(),
            ],
        ),
        ("UploadArrow", vec![vec![10, 1, 0], vec![10, 1, 1]]),
        ("Collect", vec![]),
        (
            "DoGet",
            vec![
                fl::Ticket {
                    ticket: handle.clone().into(),
                }
                .encode_to_vec(),
            ],
        ),
        (
            "GetFlightInfo",
            vec![
                fl::FlightDescriptor {
                    r#type: DescriptorType::Path as i32,
                    path: vec![handle.clone()],
                    ..Default::default()
                }
                .encode_to_vec(),
            ],
        ),
        (
            "GetSchema",
            vec![
                fl::FlightDescriptor {
                    r#type: DescriptorType::Cmd as i32,
                    cmd: handle.clone().into(),
                    ..Default::default()
                }
                .encode_to_vec(),
            ],
        ),
        ("Handshake", vec![vec![8, 1]]),
    ];
    let mut seeds = Vec::new();
    for (method, messages) in requests {
        let index = METHODS
            .iter()
            .position(|(_, name)| *name == method)
            .expect("a method the target knows") as u8;
        let body = framed(&messages);
        for (frame_size, limit) in [(0u8, 64u16), (3, 16)] {
            let mut input = vec![index, frame_size];
            input.extend(limit.to_le_bytes());
            input.extend(&body);
            seeds.push((format!("{method}-{frame_size}-{limit}"), input));
        }
    }
    // A compressed message, and one cut short.
    let mut compressed = vec![0, 0, 0, 1];
    compressed.extend(framed(std::slice::from_ref(&select)));
    compressed[4] = 1;
    seeds.push(("compressed".into(), compressed));
    let mut cut = vec![0, 0, 0, 1];
    cut.extend(&framed(&[select])[..8]);
    seeds.push(("cut-short".into(), cut));
    seeds
}

#[cfg(test)]
mod tests {
    use super::*;
    use polaroid_proto::fuzz_corpus;

    /// As the worker's seeds (`POLAROID_WRITE_FUZZ_SEEDS=1` writes them).
    #[test]
    fn coordinator_seeds_are_in_the_corpus() {
        for (name, bytes) in seeds() {
            fuzz_corpus::check_seed("coordinator_frames", &name, &bytes);
        }
    }

    #[test]
    fn coordinator_frames_corpus_runs() {
        for (_, input) in fuzz_corpus::inputs("coordinator_frames") {
            frames(&input);
        }
    }
}
