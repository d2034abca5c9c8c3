//! Where a `FlightData`'s body lands in its encoded message. Arrow C++ (and so pyarrow)
//! hands out Arrow buffers inside the received message: the gRPC slice it arrived in, or
//! gRPC's contiguous copy when it arrived in pieces, either starting at a malloc boundary.
//! A body on an aligned offset of the message gives aligned buffers, which Polars then
//! uses as they are, where it copies a misaligned one whole.

use prost::bytes::Bytes;
use prost::encoding::{encoded_len_varint, key_len};

use crate::flight::FlightData;

/// The boundary a body starts on, relative to the start of the encoded message: the
/// message itself starts at 16 bytes or better (malloc's), and 64 is Arrow's own choice.
pub const BODY_ALIGNMENT: usize = 64;

const DATA_HEADER_TAG: u32 = 2;
const DATA_BODY_TAG: u32 = 1000;

impl FlightData {
    /// A message of one Arrow IPC message, without descriptor or app metadata (which
    /// would move the body): `header` (its flatbuffer) is padded with trailing zeros so
    /// that `body` starts on [`BODY_ALIGNMENT`] in the encoded message. Zeros after the
    /// flatbuffer are what the IPC format's own padding of metadata to 8 bytes looks like,
    /// and readers ignore them.
    pub fn with_aligned_body(mut header: Vec<u8>, body: Bytes) -> Self {
        if !header.is_empty() && !body.is_empty() {
            let body_key = key_len(DATA_BODY_TAG) + encoded_len_varint(body.len() as u64);
            let body_offset = |header: usize| {
                key_len(DATA_HEADER_TAG) + encoded_len_varint(header as u64) + header + body_key
            };
            // A longer header can need a longer length varint (one more byte at 128, 16384,
            // ...): at most one such step falls among two boundaries' worth of lengths, so
            // 64 consecutive offsets, and one on the boundary, are always among them.
            let padded = (header.len()..header.len() + 2 * BODY_ALIGNMENT)
                .find(|&length| body_offset(length) % BODY_ALIGNMENT == 0);
            debug_assert!(padded.is_some(), "no padding aligns the body");
            header.resize(padded.unwrap_or(header.len()), 0);
        }
        Self {
            flight_descriptor: None,
            data_header: header.into(),
            app_metadata: Bytes::new(),
            data_body: body,
        }
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;

    /// Where `data_body`'s bytes start in an encoded message, read field by field.
    fn body_offset(encoded: &[u8]) -> usize {
        crate::field_start(encoded, DATA_BODY_TAG)
    }

    #[test]
    fn body_starts_on_the_boundary_and_the_header_keeps_its_bytes() {
        for header_len in [8usize, 120, 125, 127, 128, 200, 16_380, 16_384] {
            for body_len in [1usize, 127, 128, 16_384, 4 << 20, (4 << 20) + 3] {
                let header: Vec<u8> = (0..header_len).map(|i| (i % 251) as u8 + 1).collect();
                let body: Bytes = vec![7u8; body_len].into();
                let message = FlightData::with_aligned_body(header.clone(), body.clone());
                let encoded = message.encode_to_vec();
                let at = body_offset(&encoded);
                assert_eq!(
                    at % BODY_ALIGNMENT,
                    0,
                    "header {header_len}, body {body_len}"
                );
                let decoded = FlightData::decode(&encoded[..]).expect("decodes");
                assert_eq!(decoded.data_body, body);
                assert_eq!(&decoded.data_header[..header_len], &header[..]);
                assert!(decoded.data_header[header_len..].iter().all(|b| *b == 0));
                assert!(decoded.data_header.len() < header_len + 2 * BODY_ALIGNMENT);
            }
        }
    }

    #[test]
    fn a_message_without_body_is_left_as_it_is() {
        let message = FlightData::with_aligned_body(vec![1, 2, 3], Bytes::new());
        assert_eq!(&message.data_header[..], &[1, 2, 3]);
    }
}
