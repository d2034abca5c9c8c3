//! `ArrowBatch`, the one polaroid.v1 message encoded by hand: its Arrow payload starts at a
//! 16-byte boundary of the encoded message, so that a client which slices `arrow_ipc` out
//! of the message buffer (the Python SDK does) hands Arrow aligned buffers, which Polars
//! and pyarrow then use in place instead of copying. Protobuf readers accept fields in any
//! order, so the `alignment` field of zeros goes first on the wire.

use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{
    DecodeContext, WireType, bytes, encode_key, encode_varint, encoded_len_varint, key_len,
    skip_field, string,
};
use prost::{DecodeError, Message};

const ARROW_IPC_TAG: u32 = 1;
const ERROR_TAG: u32 = 2;
const ALIGNMENT_TAG: u32 = 15;
/// Where the payload starts, relative to the start of the message. CPython's `bytes` (what
/// grpcio hands a raw deserializer) keeps its data at a 16-byte boundary.
const PAYLOAD_ALIGNMENT: usize = 16;

/// One complete Arrow IPC stream (schema, record batch(es), end) that a reader opens on
/// its own, or the error that ended a result.
#[derive(Clone, PartialEq, Eq, Hash, Default, Debug)]
pub struct ArrowBatch {
    pub arrow_ipc: Bytes,
    pub error: Option<String>,
}

impl ArrowBatch {
    /// The zeros of the alignment field: enough that the alignment field (tag and
    /// one-byte length), the payload's tag and its length end on the boundary.
    fn alignment_zeros(&self) -> Option<usize> {
        if self.arrow_ipc.is_empty() {
            return None;
        }
        let payload_header =
            key_len(ARROW_IPC_TAG) + encoded_len_varint(self.arrow_ipc.len() as u64);
        let fixed = key_len(ALIGNMENT_TAG) + 1 + payload_header;
        Some((PAYLOAD_ALIGNMENT - fixed % PAYLOAD_ALIGNMENT) % PAYLOAD_ALIGNMENT)
    }
}

impl Message for ArrowBatch {
    fn encode_raw(&self, buf: &mut impl BufMut) {
        if let Some(zeros) = self.alignment_zeros() {
            encode_key(ALIGNMENT_TAG, WireType::LengthDelimited, buf);
            encode_varint(zeros as u64, buf);
            buf.put_bytes(0, zeros);
            bytes::encode(ARROW_IPC_TAG, &self.arrow_ipc, buf);
        }
        if let Some(error) = &self.error {
            string::encode(ERROR_TAG, error, buf);
        }
    }

    fn merge_field(
        &mut self,
        tag: u32,
        wire_type: WireType,
        buf: &mut impl Buf,
        ctx: DecodeContext,
    ) -> Result<(), DecodeError> {
        match tag {
            ARROW_IPC_TAG => bytes::merge(wire_type, &mut self.arrow_ipc, buf, ctx),
            ERROR_TAG => string::merge(
                wire_type,
                self.error.get_or_insert_with(String::new),
                buf,
                ctx,
            ),
            // The alignment zeros, and fields of newer versions.
            _ => skip_field(wire_type, tag, buf, ctx),
        }
    }

    fn encoded_len(&self) -> usize {
        let payload = self.alignment_zeros().map_or(0, |zeros| {
            key_len(ALIGNMENT_TAG)
                + encoded_len_varint(zeros as u64)
                + zeros
                + bytes::encoded_len(ARROW_IPC_TAG, &self.arrow_ipc)
        });
        payload
            + self
                .error
                .as_ref()
                .map_or(0, |error| string::encoded_len(ERROR_TAG, error))
    }

    fn clear(&mut self) {
        *self = Self::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What prost derives for the message as the .proto declares it.
    #[derive(Clone, PartialEq, ::prost::Message)]
    struct Derived {
        #[prost(bytes = "bytes", tag = "1")]
        arrow_ipc: Bytes,
        #[prost(string, optional, tag = "2")]
        error: Option<String>,
        #[prost(bytes = "bytes", tag = "15")]
        alignment: Bytes,
    }

    /// Where `arrow_ipc`'s bytes start in an encoded message, read field by field.
    fn payload_offset(encoded: &[u8]) -> usize {
        crate::field_start(encoded, ARROW_IPC_TAG)
    }

    #[test]
    fn payload_is_aligned_and_any_protobuf_reader_reads_it() {
        for size in [
            1usize,
            100,
            127,
            128,
            16_383,
            16_384,
            4 << 20,
            (4 << 20) + 5,
        ] {
            let payload: Bytes = (0..size).map(|i| (i % 251) as u8 + 1).collect();
            for error in [None, Some("stopped".to_owned())] {
                let batch = ArrowBatch {
                    arrow_ipc: payload.clone(),
                    error: error.clone(),
                };
                let encoded = batch.encode_to_vec();
                assert_eq!(encoded.len(), batch.encoded_len(), "size {size}");
                assert_eq!(
                    payload_offset(&encoded) % PAYLOAD_ALIGNMENT,
                    0,
                    "size {size}"
                );
                let derived = Derived::decode(&encoded[..]).expect("prost reads it");
                assert_eq!((derived.arrow_ipc, derived.error), (payload.clone(), error));
                assert!(derived.alignment.iter().all(|b| *b == 0));
                assert_eq!(ArrowBatch::decode(&encoded[..]).expect("round trip"), batch);
            }
        }
    }

    #[test]
    fn reads_messages_without_alignment() {
        let plain = Derived {
            arrow_ipc: Bytes::from_static(b"arrow"),
            error: Some("e".into()),
            alignment: Bytes::new(),
        };
        let batch = ArrowBatch::decode(&plain.encode_to_vec()[..]).expect("decodes");
        assert_eq!(batch.arrow_ipc, plain.arrow_ipc);
        assert_eq!(batch.error, plain.error);
        assert!(ArrowBatch::default().encode_to_vec().is_empty());
    }
}
