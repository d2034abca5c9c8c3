//! Arrow IPC on the wire: decoding uploads, and encoding results as self-contained IPC
//! streams that each fit in one gRPC message.

use std::io::Cursor;

use bytes::Bytes;
use polars::prelude::*;

use crate::error::{EngineError, EngineResult};
/// Arrow IPC files start with this magic; streams start with a schema message.
use crate::ipc_bounds::FILE_MAGIC;

/// Starts each encapsulated IPC message (and, followed by a zero length, ends a stream).
const CONTINUATION: [u8; 4] = [0xff; 4];

/// Decodes an Arrow IPC stream or file that may decode to at most `max_decoded` bytes,
/// after checking what its messages declare against its bytes (`ipc_bounds`).
pub fn decode(bytes: &[u8], max_decoded: usize) -> EngineResult<DataFrame> {
    if bytes.is_empty() {
        return Err(EngineError::invalid("arrow_ipc is empty"));
    }
    crate::ipc_bounds::check(bytes, max_decoded)?;
    let result = if bytes.starts_with(FILE_MAGIC) {
        IpcReader::new(Cursor::new(bytes)).finish()
    } else {
        IpcStreamReader::new(Cursor::new(bytes)).finish()
    };
    let df = result.map_err(|e| {
        EngineError::invalid(format!(
            "arrow_ipc is not a valid Arrow IPC stream or file: {e}"
        ))
    })?;
    // Polars materializes some columns on their first use (a constant column); using
    // them here, inside the engine's guard against panics, keeps a panic of that first
    // use out of the async handlers that later size the frame (`arrow_ipc_upload`).
    let _ = df.estimated_size();
    Ok(df)
}

/// Frames above this size are converted for the wire on Polars' thread pool.
const PARALLEL_ENCODE_BYTES: usize = 1024 * 1024;

/// Encodes `df` as one Arrow IPC stream. Strings go out as plain (large) UTF-8, not
/// string views, so that every Arrow reader, old ones included, can open it.
pub fn encode(df: &mut DataFrame) -> EngineResult<Vec<u8>> {
    // Sized for the columns plus the stream's headers, so the buffer is written in place
    // rather than through growing reallocations.
    let estimated = df.estimated_size();
    let mut buffer = Vec::with_capacity(estimated + 64 * 1024);
    if estimated > PARALLEL_ENCODE_BYTES {
        IpcStreamWriter::new(&mut buffer)
            .with_compat_level(CompatLevel::oldest())
            .finish(df)
            .map_err(EngineError::polars("encode arrow"))?;
    } else {
        // Polars' own writer converts string columns on its thread pool; for a small frame,
        // handing the work to the pool and back costs more than the conversion itself.
        encode_on_this_thread(df, &mut buffer).map_err(EngineError::polars("encode arrow"))?;
    }
    Ok(buffer)
}

fn encode_on_this_thread(df: &mut DataFrame, buffer: &mut Vec<u8>) -> PolarsResult<()> {
    use polars_arrow::io::ipc::write::{StreamWriter, WriteOptions};

    let compat_level = CompatLevel::oldest();
    df.rechunk_mut();
    let mut writer = StreamWriter::new(buffer, WriteOptions { compression: None });
    writer.start(&df.schema().to_arrow(compat_level), None)?;
    for batch in df.iter_chunks(compat_level, false) {
        writer.write(&batch, None)?;
    }
    writer.finish()
}

/// Splits `df` into row ranges whose encodings fit in `max_bytes`, at most `max_rows`
/// rows each, and calls `emit` with each encoded stream in order. A frame without rows
/// still yields one stream, so readers always learn the schema.
pub fn encode_chunks(
    df: &DataFrame,
    max_bytes: usize,
    max_rows: usize,
    emit: &mut dyn FnMut(Bytes) -> bool,
) -> EngineResult<()> {
    if df.height() == 0 {
        emit(Bytes::from(encode(&mut df.clone())?));
        return Ok(());
    }
    let mut encode_stream = |slice: &mut DataFrame| encode(slice).map(Bytes::from);
    encode_in_ranges(
        df,
        max_bytes,
        max_rows,
        &mut encode_stream,
        &Bytes::len,
        emit,
    )
}

/// One Arrow IPC message as Arrow Flight carries it: the flatbuffer header and the body.
pub struct FlightMessage {
    pub header: Vec<u8>,
    pub body: Bytes,
}

impl FlightMessage {
    fn len(&self) -> usize {
        self.header.len() + self.body.len()
    }
}

/// The Arrow schema results go out with: plain (large) UTF-8 strings, as in [`encode`].
fn wire_schema(schema: &Schema) -> polars_arrow::datatypes::ArrowSchema {
    schema.to_arrow(CompatLevel::oldest())
}

/// The IPC schema message (its flatbuffer) of a frame of `schema`.
pub fn schema_message(schema: &Schema) -> Vec<u8> {
    use polars_arrow::io::ipc::write::{default_ipc_fields, schema_to_bytes};
    let arrow = wire_schema(schema);
    let fields = default_ipc_fields(arrow.iter_values());
    schema_to_bytes(&arrow, &fields, None)
}

/// The schema as Flight's `FlightInfo` and `SchemaResult` carry it: the IPC message with
/// its encapsulation (continuation marker, padded length, flatbuffer, padding).
pub fn encapsulated_schema(schema: &Schema) -> Bytes {
    let message = schema_message(schema);
    let mut out = Vec::with_capacity(8 + message.len().next_multiple_of(8));
    // A schema's flatbuffer is far below 2 GiB.
    let _ = append_encapsulated(&mut out, &message, &[]);
    Bytes::from(out)
}

/// Appends one encapsulated IPC message to `out`: the continuation marker, the header's
/// length padded to 8 bytes (little-endian i32), the header, its padding, the body.
fn append_encapsulated(out: &mut Vec<u8>, header: &[u8], body: &[u8]) -> EngineResult<()> {
    let padded = header.len().next_multiple_of(8);
    let length = i32::try_from(padded).map_err(|_| {
        EngineError::invalid(format!("an Arrow IPC header of {padded} bytes is too long"))
    })?;
    out.reserve(8 + padded + body.len());
    out.extend_from_slice(&CONTINUATION);
    out.extend_from_slice(&length.to_le_bytes());
    out.extend_from_slice(header);
    out.resize(out.len() + padded - header.len(), 0);
    out.extend_from_slice(body);
    Ok(())
}

/// The record batches of `df` (after the schema message, which the caller sends) as Flight
/// messages: dictionaries then the batch, for row ranges of at most `max_rows` rows whose
/// messages fit in `max_bytes` together. A batch's dictionaries are sent with it, each
/// replacing the last of its id, so any batch can be decoded after the ones before it.
pub fn encode_flight_batches(
    df: &DataFrame,
    max_bytes: usize,
    max_rows: usize,
    emit: &mut dyn FnMut(FlightMessage) -> bool,
) -> EngineResult<()> {
    if df.height() == 0 {
        return Ok(());
    }
    let fields = {
        let arrow = wire_schema(df.schema());
        polars_arrow::io::ipc::write::default_ipc_fields(arrow.iter_values())
    };
    let mut encode_batch = |slice: &mut DataFrame| -> EngineResult<Vec<FlightMessage>> {
        encode_flight_batch(slice, &fields).map_err(EngineError::polars("encode arrow"))
    };
    let size = |messages: &Vec<FlightMessage>| messages.iter().map(FlightMessage::len).sum();
    let mut emit = |messages: Vec<FlightMessage>| messages.into_iter().all(&mut *emit);
    encode_in_ranges(df, max_bytes, max_rows, &mut encode_batch, &size, &mut emit)
}

fn encode_flight_batch(
    slice: &mut DataFrame,
    fields: &[polars_arrow::io::ipc::IpcField],
) -> PolarsResult<Vec<FlightMessage>> {
    use polars_arrow::io::ipc::write::{
        DictionaryTracker, EncodedData, WriteOptions, encode_new_dictionaries, encode_record_batch,
    };
    slice.rechunk_mut();
    let parallel = slice.estimated_size() > PARALLEL_ENCODE_BYTES;
    let mut tracker = DictionaryTracker {
        dictionaries: Default::default(),
        cannot_replace: false,
    };
    let options = WriteOptions { compression: None };
    let mut messages = Vec::new();
    for batch in slice.iter_chunks(CompatLevel::oldest(), parallel) {
        let mut dictionaries = Vec::new();
        for (field, array) in fields.iter().zip(batch.arrays()) {
            encode_new_dictionaries(
                field,
                array.as_ref(),
                &options,
                &mut tracker,
                &mut dictionaries,
            )?;
        }
        let mut encoded = EncodedData::default();
        encode_record_batch(&batch, &options, &mut encoded);
        messages.extend(
            dictionaries
                .into_iter()
                .chain([encoded])
                .map(|encoded| FlightMessage {
                    header: encoded.ipc_message,
                    body: Bytes::from(encoded.arrow_data),
                }),
        );
    }
    Ok(messages)
}

/// An Arrow IPC stream put together from the messages of a Flight upload, within a limit
/// on its size.
pub struct StreamBuilder {
    bytes: Vec<u8>,
    limit: usize,
}

impl StreamBuilder {
    pub fn new(limit: usize) -> Self {
        Self {
            bytes: Vec::new(),
            limit,
        }
    }

    /// Appends one message (a metadata-only Flight message, with neither, is skipped).
    pub fn push(&mut self, header: &[u8], body: &[u8]) -> EngineResult<()> {
        if header.is_empty() {
            return match body.is_empty() {
                true => Ok(()),
                false => Err(EngineError::invalid(
                    "a Flight message has a data_body but no data_header",
                )),
            };
        }
        let padded = header.len().next_multiple_of(8);
        let size = 8 + padded + body.len();
        if self.bytes.len().saturating_add(size) > self.limit {
            return Err(EngineError::LimitExceeded(format!(
                "upload is over the limit of {} bytes",
                self.limit
            )));
        }
        append_encapsulated(&mut self.bytes, header, body)
    }

    /// The stream, with its end marker.
    pub fn finish(mut self) -> EngineResult<Bytes> {
        if self.bytes.is_empty() {
            return Err(EngineError::invalid(
                "the upload has no Arrow messages: the first must carry the schema",
            ));
        }
        self.bytes.extend_from_slice(&CONTINUATION);
        self.bytes.extend_from_slice(&0i32.to_le_bytes());
        Ok(Bytes::from(self.bytes))
    }
}

/// Encodes `df` (with rows) in consecutive row ranges whose encodings fit in `max_bytes`,
/// at most `max_rows` rows each, handing each to `emit`, which answers whether the receiver
/// still wants more.
fn encode_in_ranges<T>(
    df: &DataFrame,
    max_bytes: usize,
    max_rows: usize,
    encode: &mut dyn FnMut(&mut DataFrame) -> EngineResult<T>,
    size: &dyn Fn(&T) -> usize,
    emit: &mut dyn FnMut(T) -> bool,
) -> EngineResult<()> {
    let height = df.height();
    // First guess from the in-memory size; ranges that still come out too big are halved.
    let per_row = (df.estimated_size() / height.max(1)).max(1);
    let rows = (max_bytes.saturating_mul(3) / 4 / per_row).clamp(1, max_rows.max(1));
    let mut ranges = Ranges {
        df,
        max_bytes,
        encode,
        size,
        emit,
    };
    let mut offset = 0;
    while offset < height {
        let length = rows.min(height - offset);
        if !ranges.encode_range(offset, length)? {
            return Ok(());
        }
        offset += length;
    }
    Ok(())
}

struct Ranges<'a, T> {
    df: &'a DataFrame,
    max_bytes: usize,
    encode: &'a mut dyn FnMut(&mut DataFrame) -> EngineResult<T>,
    size: &'a dyn Fn(&T) -> usize,
    emit: &'a mut dyn FnMut(T) -> bool,
}

impl<T> Ranges<'_, T> {
    /// Returns false when the receiver went away.
    fn encode_range(&mut self, offset: usize, length: usize) -> EngineResult<bool> {
        let mut slice = self.df.slice(offset as i64, length);
        let encoded = (self.encode)(&mut slice)?;
        let size = (self.size)(&encoded);
        if size <= self.max_bytes {
            return Ok((self.emit)(encoded));
        }
        if length == 1 {
            return Err(EngineError::LimitExceeded(format!(
                "row {offset} alone encodes to {size} bytes, over the maximum message size of {} bytes",
                self.max_bytes
            )));
        }
        let half = length / 2;
        Ok(self.encode_range(offset, half)? && self.encode_range(offset + half, length - half)?)
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> EngineResult<DataFrame> {
        decode(bytes, usize::MAX)
    }

    #[test]
    fn chunks_fit_and_reassemble() {
        let df = df!(
            "id" => (0..10_000i64).collect::<Vec<_>>(),
            "name" => (0..10_000).map(|i| format!("row-{i}-{}", "x".repeat(i % 50))).collect::<Vec<_>>(),
        )
        .unwrap();
        let mut chunks = Vec::new();
        encode_chunks(&df, 16 * 1024, usize::MAX, &mut |b| {
            chunks.push(b);
            true
        })
        .unwrap();
        assert!(chunks.len() > 10, "{} chunks", chunks.len());
        assert!(chunks.iter().all(|c| c.len() <= 16 * 1024));
        let mut parts = chunks.iter().map(|c| decode_all(c).unwrap());
        let mut whole = parts.next().unwrap();
        for part in parts {
            whole.vstack_mut(&part).unwrap();
        }
        assert!(whole.equals(&df));
    }

    #[test]
    fn empty_frame_still_carries_schema() {
        let df = df!("a" => Vec::<i64>::new()).unwrap();
        let mut chunks = Vec::new();
        encode_chunks(&df, 1024, 10, &mut |b| {
            chunks.push(b);
            true
        })
        .unwrap();
        assert_eq!(chunks.len(), 1);
        assert_eq!(decode_all(&chunks[0]).unwrap().schema(), df.schema());
    }

    #[test]
    fn small_and_large_frames_encode_alike() {
        // Two chunks per column, so the small path has to rechunk first.
        let part = |from: i64, rows: i64| {
            df!(
                "id" => (from..from + rows).collect::<Vec<_>>(),
                "name" => (from..from + rows).map(|i| format!("name-{i}")).collect::<Vec<_>>(),
            )
            .unwrap()
        };
        for rows in [10, 100_000] {
            let mut df = part(0, rows);
            df.vstack_mut(&part(rows, rows)).unwrap();
            let small = df.estimated_size() <= PARALLEL_ENCODE_BYTES;
            assert_eq!(
                small,
                rows == 10,
                "{rows} rows: {} bytes",
                df.estimated_size()
            );
            let encoded = encode(&mut df.clone()).unwrap();
            let decoded = decode_all(&encoded).unwrap();
            assert!(decoded.equals(&df), "{rows} rows");
            // Strings go out as plain UTF-8, which every Arrow reader can open.
            let arrow_schema =
                polars_arrow::io::ipc::read::read_stream_metadata(&mut Cursor::new(&encoded))
                    .unwrap()
                    .schema;
            let name = arrow_schema.get("name").unwrap();
            assert_eq!(
                name.dtype,
                polars_arrow::datatypes::ArrowDataType::LargeUtf8,
                "{rows} rows"
            );
        }
    }

    #[test]
    fn flight_messages_fit_and_reassemble_into_the_frame() {
        let rows = 5_000i64;
        let mut df = df!(
            "id" => (0..rows).collect::<Vec<_>>(),
            "name" => (0..rows).map(|i| (i % 3 != 0).then(|| format!("n{i}"))).collect::<Vec<_>>(),
            "day" => (0..rows).map(|i| i as i32).collect::<Vec<_>>(),
        )
        .unwrap();
        df.apply("day", |s| s.cast(&DataType::Date).unwrap())
            .unwrap();
        let limit = 8 * 1024;
        let mut messages = Vec::new();
        encode_flight_batches(&df, limit, usize::MAX, &mut |m| {
            messages.push(m);
            true
        })
        .unwrap();
        assert!(messages.len() > 5, "{} messages", messages.len());
        assert!(messages.iter().all(|m| m.len() <= limit));
        let mut stream = StreamBuilder::new(usize::MAX);
        stream.push(&schema_message(df.schema()), &[]).unwrap();
        for message in &messages {
            stream.push(&message.header, &message.body).unwrap();
        }
        assert!(
            decode_all(&stream.finish().unwrap())
                .unwrap()
                .equals_missing(&df)
        );

        // The encapsulated schema is a stream's first message.
        let mut schema_only = encapsulated_schema(df.schema()).to_vec();
        schema_only.extend_from_slice(&CONTINUATION);
        schema_only.extend_from_slice(&[0; 4]);
        assert_eq!(decode_all(&schema_only).unwrap().schema(), df.schema());
    }

    #[test]
    fn flight_uploads_are_bounded_and_need_headers() {
        let mut stream = StreamBuilder::new(64);
        stream.push(&[], &[]).unwrap();
        assert!(matches!(
            stream.push(&[], &[1]),
            Err(EngineError::InvalidArgument(_))
        ));
        stream.push(&[1; 20], &[2; 16]).unwrap();
        assert!(matches!(
            stream.push(&[1; 20], &[2; 16]),
            Err(EngineError::LimitExceeded(_))
        ));
        assert!(matches!(
            StreamBuilder::new(64).finish(),
            Err(EngineError::InvalidArgument(_))
        ));
    }

    #[test]
    fn garbage_is_invalid_argument() {
        assert!(matches!(
            decode_all(b"not arrow"),
            Err(EngineError::InvalidArgument(_))
        ));
    }
}
