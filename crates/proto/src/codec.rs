//! The protobuf codec of every generated client and server: prost's, except that a
//! message's buffer is sized once before encoding, so a 4 MiB result message is written
//! in one pass instead of through a chain of growing reallocations.

use std::marker::PhantomData;

use prost::Message;
use tonic::Status;
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic_prost::{ProstCodec, ProstDecoder};

/// A [`Codec`] for prost messages that reserves each message's encoded length up front.
#[derive(Debug)]
pub struct PresizedProstCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for PresizedProstCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for PresizedProstCodec<T, U>
where
    T: Message + Send + 'static,
    U: Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = PresizedEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        PresizedEncoder(PhantomData)
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstCodec::<T, U>::default().decoder()
    }
}

/// Encodes a prost message into a buffer reserved to its exact length.
#[derive(Debug)]
pub struct PresizedEncoder<T>(PhantomData<T>);

impl<T: Message> Encoder for PresizedEncoder<T> {
    type Item = T;
    type Error = Status;

    fn encode(&mut self, item: T, buf: &mut EncodeBuf<'_>) -> Result<(), Status> {
        // One length pass: `encode` would measure the message again to check capacity.
        buf.reserve(item.encoded_len());
        item.encode_raw(buf);
        Ok(())
    }
}
