//! Where a `FlightData`'s body lands in its encoded message. Arrow C++ (and so pyarrow)
//! hands out Arrow buffers inside the received message: the gRPC slice it arrived in, or
//! gRPC's contiguous copy when it arrived in pieces, either starting at a malloc boundary.
//! A body on an aligned offset of the message gives aligned buffers, which Polars then
//! uses as they are, where it copies a misaligned one whole. And how a message is framed
//! for gRPC without copying its body.

use prost::Message;
use prost::bytes::{BufMut, Bytes, BytesMut};
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint, key_len};

use crate::GRPC_PREFIX_BYTES;
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

/// A message longer than a gRPC length prefix can say, or than the peer accepts.
#[derive(Debug, thiserror::Error)]
#[error("a FlightData message of {length} bytes is over the limit of {limit} bytes")]
pub struct MessageTooLarge {
    pub length: usize,
    pub limit: usize,
}

impl FlightData {
    /// This message as one uncompressed gRPC frame, in two pieces: the frame's prefix with
    /// every field but the body's bytes, then those bytes as they are (shared, not copied).
    /// Prost writes fields in number order and `data_body`'s (1000) is the last, so the
    /// pieces together are the bytes tonic's encoder sends, which copies the body first.
    pub fn into_grpc_frame(mut self, limit: usize) -> Result<(Bytes, Bytes), MessageTooLarge> {
        let body = std::mem::take(&mut self.data_body);
        let body_field = match body.len() {
            0 => 0,
            n => key_len(DATA_BODY_TAG) + encoded_len_varint(n as u64) + n,
        };
        let length = self.encoded_len() + body_field;
        let limit = limit.min(u32::MAX as usize);
        if length > limit {
            return Err(MessageTooLarge { length, limit });
        }
        let mut head = BytesMut::with_capacity(GRPC_PREFIX_BYTES + length - body.len());
        head.put_u8(0);
        head.put_u32(length as u32);
        self.encode_raw(&mut head);
        if !body.is_empty() {
            encode_key(DATA_BODY_TAG, WireType::LengthDelimited, &mut head);
            encode_varint(body.len() as u64, &mut head);
        }
        Ok((head.freeze(), body))
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

    /// Tonic's uncompressed frame: the prefix, then prost's encoding of the whole message.
    #[test]
    fn a_frame_in_pieces_is_the_frame_tonic_sends() {
        let descriptor = crate::flight::FlightDescriptor {
            r#type: 1,
            cmd: Bytes::new(),
            path: vec!["h".to_owned()],
        };
        let bodies = [
            Bytes::new(),
            Bytes::from(vec![4u8; 100]),
            Bytes::from(vec![9u8; 300]),
            Bytes::from(vec![3u8; 70_000]),
        ];
        for body in bodies {
            let mut message = FlightData::with_aligned_body(vec![5u8; 120], body.clone());
            message.flight_descriptor = Some(descriptor.clone());
            message.app_metadata = Bytes::from_static(b"meta");
            let encoded = message.encode_to_vec();
            let (head, shared) = message.into_grpc_frame(usize::MAX).expect("fits");
            let mut expected = vec![0u8];
            expected.extend_from_slice(&(encoded.len() as u32).to_be_bytes());
            expected.extend_from_slice(&encoded);
            assert_eq!([&head[..], &shared[..]].concat(), expected);
            assert_eq!(
                shared.as_ptr(),
                body.as_ptr(),
                "the body is shared, not copied"
            );
        }
    }

    #[test]
    fn a_frame_at_the_limit_goes_and_one_over_it_is_refused() {
        let message = FlightData::with_aligned_body(vec![1; 8], Bytes::from(vec![0u8; 1000]));
        let length = message.encoded_len();
        assert!(message.clone().into_grpc_frame(length).is_ok());
        let error = message.into_grpc_frame(length - 1).expect_err("over");
        assert_eq!((error.length, error.limit), (length, length - 1));
    }

    #[test]
    fn a_message_without_body_is_left_as_it_is() {
        let message = FlightData::with_aligned_body(vec![1, 2, 3], Bytes::new());
        assert_eq!(&message.data_header[..], &[1, 2, 3]);
    }
}
