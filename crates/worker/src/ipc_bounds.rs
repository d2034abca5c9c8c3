//! Checks an Arrow IPC stream or file against its own bytes before Polars reads it.
//!
//! Polars' reader trusts the sizes an IPC message declares: it allocates a buffer of the
//! declared length before it reads the bytes that should fill it, and a compressed buffer
//! of its declared decompressed length. A 1 KB upload declaring a 103 GB buffer made that
//! allocation fail, which aborts the process: the worker, and every call on it, gone
//! (found by the `arrow_ipc_upload` fuzz target). So every message is read here first,
//! with nothing allocated from what it declares: each buffer must lie within the bytes of
//! the upload, and the buffers of all messages together within its size (Polars copies
//! each buffer out, so buffers that overlap, or blocks of a file that name the same
//! message, would multiply a small upload: thousands of columns over one 1 MiB body made
//! 9 GiB); the decompressed sizes together within the upload limit, each array's length
//! within what the bytes can hold, and the schema's types within
//! [`crate::dtype::MAX_TYPE_NESTING`] levels (Polars reads nested types recursively).
//!
//! What Polars then does with bytes that pass is its own checking (offsets, UTF-8,
//! dictionary keys), behind the engine's guard against panics.

use polars_arrow::io::ipc::format::ipc::{self as fb, planus::ReadAsRoot};

use crate::dtype::MAX_TYPE_NESTING;
use crate::error::{EngineError, EngineResult};

/// Arrow IPC files start (and end) with this magic.
pub const FILE_MAGIC: &[u8] = b"ARROW1";

/// Rows an array may have beyond 8 per byte of the upload (or of what its compressed
/// buffers declare): arrays of the null type have no buffers at all, so their length is
/// backed by nothing.
const ROWS_WITHOUT_DATA: u64 = 1 << 20;

fn invalid(reason: impl std::fmt::Display) -> EngineError {
    EngineError::invalid(format!(
        "arrow_ipc is not a valid Arrow IPC stream or file: {reason}"
    ))
}

fn flatbuffer(error: fb::planus::Error) -> EngineError {
    invalid(format!("a message does not parse: {error}"))
}

/// What the messages of one upload may declare, and have declared so far.
struct Bounds {
    /// Bytes of the upload.
    size: u64,
    /// Bytes the buffers of all messages span together (at most `size`).
    spanned: u64,
    /// Bytes the upload may decode to (its limit).
    max_decoded: u64,
    decoded: u64,
    /// Rows of all batches together.
    rows: u64,
}

impl Bounds {
    /// Rows one array, and all batches together, may have: 8 per byte the data decodes to
    /// so far (a bit each), and a margin for arrays of the null type.
    fn max_rows(&self) -> u64 {
        self.size
            .max(self.decoded)
            .saturating_mul(8)
            .saturating_add(ROWS_WITHOUT_DATA)
    }
}

/// Checks `bytes`, an upload that may decode to at most `max_decoded` bytes.
pub fn check(bytes: &[u8], max_decoded: usize) -> EngineResult<()> {
    let size = u64::try_from(bytes.len()).unwrap_or(u64::MAX);
    let mut bounds = Bounds {
        size,
        spanned: 0,
        max_decoded: u64::try_from(max_decoded).unwrap_or(u64::MAX),
        decoded: 0,
        rows: 0,
    };
    if bytes.starts_with(FILE_MAGIC) {
        check_file(bytes, &mut bounds)
    } else {
        check_stream(bytes, &mut bounds)
    }
}

/// A little-endian i32 at `at`, if the bytes hold one there.
fn i32_at(bytes: &[u8], at: usize) -> Option<i32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    Some(i32::from_le_bytes(word.try_into().ok()?))
}

/// The message whose length prefix (after an optional continuation marker) starts at
/// `at`, and where its metadata ends; `None` at the end-of-stream marker or the end.
fn message_at(bytes: &[u8], mut at: usize) -> EngineResult<Option<(fb::MessageRef<'_>, usize)>> {
    let Some(mut length) = i32_at(bytes, at) else {
        return Ok(None);
    };
    at += 4;
    if length == -1 {
        let Some(after_marker) = i32_at(bytes, at) else {
            return Ok(None);
        };
        length = after_marker;
        at += 4;
    }
    if length == 0 {
        return Ok(None);
    }
    let length = usize::try_from(length).map_err(|_| invalid("a negative message length"))?;
    let end = at
        .checked_add(length)
        .filter(|&end| end <= bytes.len())
        .ok_or_else(|| invalid("a message runs past the end"))?;
    let message = fb::MessageRef::read_as_root(&bytes[at..end]).map_err(flatbuffer)?;
    Ok(Some((message, end)))
}

fn check_stream(bytes: &[u8], bounds: &mut Bounds) -> EngineResult<()> {
    let mut at = 0;
    while let Some((message, body_start)) = message_at(bytes, at)? {
        let body_length = usize::try_from(message.body_length().map_err(flatbuffer)?)
            .map_err(|_| invalid("a negative body length"))?;
        let body_end = body_start
            .checked_add(body_length)
            .filter(|&end| end <= bytes.len())
            .ok_or_else(|| invalid("a message body runs past the end"))?;
        check_message(message, &bytes[body_start..body_end], bounds)?;
        at = body_end;
    }
    Ok(())
}

fn check_file(bytes: &[u8], bounds: &mut Bounds) -> EngineResult<()> {
    // The footer: its flatbuffer, its length (i32) and the magic end the file.
    let trailer = bytes
        .len()
        .checked_sub(FILE_MAGIC.len() + 4)
        .filter(|_| bytes.ends_with(FILE_MAGIC))
        .ok_or_else(|| invalid("a file without its footer"))?;
    let footer_length = i32_at(bytes, trailer)
        .and_then(|length| usize::try_from(length).ok())
        .ok_or_else(|| invalid("a negative footer length"))?;
    let footer_start = trailer
        .checked_sub(footer_length)
        .ok_or_else(|| invalid("a footer longer than the file"))?;
    let footer = fb::FooterRef::read_as_root(&bytes[footer_start..trailer]).map_err(flatbuffer)?;
    if let Some(schema) = footer.schema().map_err(flatbuffer)? {
        check_schema(schema)?;
    }
    let dictionaries = footer.dictionaries().map_err(flatbuffer)?;
    let batches = footer.record_batches().map_err(flatbuffer)?;
    for block in [dictionaries, batches].into_iter().flatten().flatten() {
        let start = usize::try_from(block.offset()).map_err(|_| invalid("a negative offset"))?;
        let metadata = usize::try_from(block.meta_data_length())
            .map_err(|_| invalid("a negative metadata length"))?;
        let (message, _) =
            message_at(bytes, start)?.ok_or_else(|| invalid("a block names no message"))?;
        // Polars reads a block's buffers from after its metadata, anywhere in the file.
        let body = start
            .checked_add(metadata)
            .and_then(|body| bytes.get(body..))
            .ok_or_else(|| invalid("a block runs past the end"))?;
        check_message(message, body, bounds)?;
    }
    Ok(())
}

fn check_message(
    message: fb::MessageRef<'_>,
    body: &[u8],
    bounds: &mut Bounds,
) -> EngineResult<()> {
    match message.header().map_err(flatbuffer)? {
        Some(fb::MessageHeaderRef::Schema(schema)) => check_schema(schema),
        Some(fb::MessageHeaderRef::RecordBatch(batch)) => {
            let rows = u64::try_from(batch.length().map_err(flatbuffer)?)
                .map_err(|_| invalid("a negative row count"))?;
            check_batch(batch, body, bounds)?;
            bounds.rows = bounds.rows.saturating_add(rows);
            if bounds.rows > bounds.max_rows() {
                return Err(invalid(format!(
                    "{} rows declared in {} bytes",
                    bounds.rows, bounds.size
                )));
            }
            Ok(())
        }
        Some(fb::MessageHeaderRef::DictionaryBatch(dictionary)) => {
            match dictionary.data().map_err(flatbuffer)? {
                Some(batch) => check_batch(batch, body, bounds),
                None => Ok(()),
            }
        }
        // Polars refuses the rest itself.
        _ => Ok(()),
    }
}

/// Every buffer of `batch` lies within `body`, all buffers so far within the upload, and
/// what they decode to within the limit; then each array's length within what they hold.
fn check_batch(
    batch: fb::RecordBatchRef<'_>,
    body: &[u8],
    bounds: &mut Bounds,
) -> EngineResult<()> {
    let compressed = batch.compression().map_err(flatbuffer)?.is_some();
    for buffer in batch.buffers().map_err(flatbuffer)?.into_iter().flatten() {
        let (offset, length) = (buffer.offset(), buffer.length());
        let span = usize::try_from(offset)
            .ok()
            .zip(usize::try_from(length).ok())
            .and_then(|(offset, length)| Some((offset, offset.checked_add(length)?)))
            .filter(|&(_, end)| end <= body.len());
        let Some((start, end)) = span else {
            return Err(invalid(format!(
                "a buffer ({length} bytes at {offset}) outside its message's {} bytes",
                body.len()
            )));
        };
        bounds.spanned = bounds.spanned.saturating_add((end - start) as u64);
        if bounds.spanned > bounds.size {
            return Err(invalid(format!(
                "its buffers span more than its {} bytes (they overlap)",
                bounds.size
            )));
        }
        // A compressed buffer starts with its decompressed length (-1: not compressed).
        let decoded = match body.get(start..end).and_then(|b| b.first_chunk::<8>()) {
            Some(prefix) if compressed => match i64::from_le_bytes(*prefix) {
                -1 => (end - start - 8) as u64,
                declared => u64::try_from(declared)
                    .map_err(|_| invalid("a negative decompressed length"))?,
            },
            _ => (end - start) as u64,
        };
        bounds.decoded = bounds.decoded.saturating_add(decoded);
        if bounds.decoded > bounds.max_decoded {
            return Err(EngineError::LimitExceeded(format!(
                "the upload decodes to more than {} bytes (max_upload_bytes)",
                bounds.max_decoded
            )));
        }
    }
    for node in batch.nodes().map_err(flatbuffer)?.into_iter().flatten() {
        let length = u64::try_from(node.length()).map_err(|_| invalid("a negative length"))?;
        if length > bounds.max_rows() {
            return Err(invalid(format!(
                "an array of {length} rows declared in {} bytes",
                bounds.size
            )));
        }
    }
    Ok(())
}

/// The schema's types nest at most [`MAX_TYPE_NESTING`] levels (walked with a stack of
/// its own: a flatbuffer may nest as deep as its bytes allow), and the fields of a type
/// have distinct names: Polars read a struct with two fields named alike, then panicked
/// on its first use of the column (an `unwrap` in `Series::full_null`), outside any guard
/// when that use was a `Collect`'s size check (found by `arrow_ipc_upload`).
fn check_schema(schema: fb::SchemaRef<'_>) -> EngineResult<()> {
    let mut stack = Vec::new();
    let mut names = std::collections::HashSet::new();
    for field in schema.fields().map_err(flatbuffer)?.into_iter().flatten() {
        // A top-level field's type is level 0, as a type name's outermost type is.
        stack.push((field.map_err(flatbuffer)?, 0));
    }
    while let Some((field, depth)) = stack.pop() {
        if depth > MAX_TYPE_NESTING {
            return Err(invalid(format!(
                "its types nest more than {MAX_TYPE_NESTING} levels deep"
            )));
        }
        // Polars reads no array of a fixed-size list of no items, but took the schema of
        // an upload without rows, and then every result it wrote of that column was one
        // it could not read back (a reloaded result, a client's Polars; `arrow_ipc_upload`).
        if let Some(fb::TypeRef::FixedSizeList(list)) = field.type_().map_err(flatbuffer)? {
            let size = list.list_size().map_err(flatbuffer)?;
            if size <= 0 {
                return Err(invalid(format!(
                    "a fixed-size list of {size} items (Polars reads none)"
                )));
            }
        }
        names.clear();
        for child in field.children().map_err(flatbuffer)?.into_iter().flatten() {
            let child = child.map_err(flatbuffer)?;
            let name = child.name().map_err(flatbuffer)?.unwrap_or_default();
            if !names.insert(name) {
                return Err(invalid(format!(
                    "a type has two fields named `{}`",
                    polaroid_proto::excerpt(name)
                )));
            }
            stack.push((child, depth + 1));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use polars::prelude::*;

    fn stream(df: &mut DataFrame, compression: Option<IpcCompression>) -> Vec<u8> {
        let mut bytes = Vec::new();
        IpcStreamWriter::new(&mut bytes)
            .with_compression(compression)
            .finish(df)
            .expect("encoding");
        bytes
    }

    /// `bytes` with every little-endian `from` replaced by `to`; the frames below are made
    /// so that `from` occurs only where it is meant to.
    fn patched(bytes: &[u8], from: i64, to: i64) -> Vec<u8> {
        let (from, to) = (from.to_le_bytes(), to.to_le_bytes());
        let mut out = bytes.to_vec();
        let mut replaced = 0;
        for at in 0..out.len().saturating_sub(7) {
            if out[at..at + 8] == from {
                out[at..at + 8].copy_from_slice(&to);
                replaced += 1;
            }
        }
        assert!(replaced > 0, "nothing to patch");
        out
    }

    fn refused(bytes: &[u8]) -> EngineError {
        // The real decode, so that a regression aborts this test rather than passing it.
        crate::ipc::decode(bytes, 1 << 20).expect_err("refused")
    }

    #[test]
    fn valid_streams_and_files_pass() {
        let mut df = df!("a" => [1i64, 2, 3], "s" => ["x", "y", "z"]).unwrap();
        check(&stream(&mut df, None), 1 << 20).unwrap();
        check(
            &stream(&mut df, Some(IpcCompression::ZSTD(Default::default()))),
            1 << 20,
        )
        .unwrap();
        let mut file = Vec::new();
        IpcWriter::new(&mut file).finish(&mut df).unwrap();
        check(&file, 1 << 20).unwrap();
    }

    #[test]
    fn a_buffer_declared_past_the_upload_is_refused_before_it_is_allocated() {
        // 4,321 rows of 8 bytes: a values buffer of 34,568 bytes, declared as 103 GB (what
        // the fuzzer's upload declared; allocating it aborted the process).
        let mut df = df!("a" => vec![7i64; 4_321]).unwrap();
        let bytes = patched(&stream(&mut df, None), 34_568, 103 << 30);
        let error = refused(&bytes);
        assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
        assert!(error.to_string().contains("outside its message"), "{error}");
        // The fuzzer's own input, minimized: Flight messages put together as DoPut does.
        let found =
            include_bytes!("../../../fuzz/corpus/arrow_ipc_upload/crash-declared-buffer-103-gb");
        assert!(crate::fuzzing::arrow_ipc(found).is_err());
    }

    #[test]
    fn a_decompressed_length_past_the_limit_is_resource_exhausted() {
        let mut df = df!("a" => vec![7i64; 4_321]).unwrap();
        let bytes = patched(
            &stream(&mut df, Some(IpcCompression::LZ4)),
            34_568,
            103 << 30,
        );
        let error = refused(&bytes);
        assert_eq!(error.code(), polaroid_proto::ErrorCode::ResourceExhausted);
        assert!(error.to_string().contains("max_upload_bytes"), "{error}");
    }

    #[test]
    fn rows_without_bytes_behind_them_are_refused() {
        // Null columns have no buffers: only the declared lengths say how long they are.
        let null = Column::full_null("n".into(), 12_345, &DataType::Null);
        let mut df = DataFrame::new_infer_height(vec![null]).unwrap();
        check(&stream(&mut df, None), 1 << 20).unwrap();
        let bytes = patched(&stream(&mut df, None), 12_345, 1 << 40);
        let error = refused(&bytes);
        assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
        assert!(error.to_string().contains("declared in"), "{error}");
    }

    #[test]
    fn fields_named_alike_are_refused() {
        let fields = [
            Series::new("fieldA".into(), [1i64]),
            Series::new("fieldB".into(), [2i64]),
        ];
        let st = StructChunked::from_series("st".into(), 1, fields.iter()).unwrap();
        let mut df = DataFrame::new_infer_height(vec![st.into_series().into()]).unwrap();
        let mut bytes = stream(&mut df, None);
        let at = bytes.windows(6).position(|w| w == b"fieldB").unwrap();
        bytes[at + 5] = b'A';
        let error = refused(&bytes);
        assert!(
            error.to_string().contains("two fields named `fieldA`"),
            "{error}"
        );
        // The fuzzer's upload, whose Collect panicked outside the engine's guard.
        let found = include_bytes!(
            "../../../fuzz/corpus/arrow_ipc_upload/crash-struct-duplicate-field-names"
        );
        assert!(crate::fuzzing::arrow_ipc(found).is_err());
    }

    #[test]
    fn fixed_size_lists_of_no_items_are_refused() {
        // The fuzzer's upload: a schema with such a column and no rows, whose results
        // Polars could not read back.
        let found = include_bytes!(
            "../../../fuzz/corpus/arrow_ipc_upload/crash-fixed-size-list-of-no-items"
        );
        let error = crate::fuzzing::arrow_ipc(found).expect_err("refused");
        assert!(
            error.to_string().contains("fixed-size list of 0 items"),
            "{error}"
        );
        // A fixed-size list with items is read, and read back as the server writes it.
        let items = Series::new("x".into(), [1i64, 2, 3, 4]);
        let array = items.reshape_array(&[ReshapeDimension::Infer, ReshapeDimension::new(2)]);
        let mut df = DataFrame::new_infer_height(vec![array.unwrap().into()]).unwrap();
        crate::fuzzing::arrow_ipc(&[&[0u8][..], &stream(&mut df, None)].concat()).unwrap();
    }

    #[test]
    fn types_nest_as_deep_as_type_names_and_no_deeper() {
        let nested = |lists: usize| {
            let mut inner = Series::new("x".into(), [1i64]);
            for _ in 0..lists {
                inner = inner.implode().unwrap().into_series();
            }
            DataFrame::new_infer_height(vec![inner.into()]).unwrap()
        };
        // What a cast to a type name may make, an upload may hold (a result is reloaded so).
        let deepest = format!("{}Int64{}", "List[".repeat(32), "]".repeat(32));
        assert!(crate::dtype::parse(&deepest).is_ok());
        crate::ipc::decode(&stream(&mut nested(MAX_TYPE_NESTING), None), 1 << 20).unwrap();
        let error = refused(&stream(&mut nested(MAX_TYPE_NESTING + 1), None));
        assert!(error.to_string().contains("nest more than 32"), "{error}");
    }

    /// A stream of `schema_from`'s schema and one record batch as `batch` declares it, over
    /// `body`.
    fn stream_of(schema_from: &mut DataFrame, batch: fb::RecordBatch, body: &[u8]) -> Vec<u8> {
        let schema_only = stream(&mut schema_from.head(Some(0)), None);
        let (_, schema_end) = message_at(&schema_only, 0).unwrap().unwrap();
        let mut bytes = schema_only[..schema_end].to_vec();
        let message = fb::Message {
            version: fb::MetadataVersion::V5,
            header: Some(fb::MessageHeader::RecordBatch(Box::new(batch))),
            body_length: body.len() as i64,
            custom_metadata: None,
        };
        let mut builder = fb::planus::Builder::new();
        let metadata = builder.finish(&message, None).to_vec();
        let padding = (8 - metadata.len() % 8) % 8;
        bytes.extend_from_slice(&CONTINUATION);
        bytes.extend_from_slice(&((metadata.len() + padding) as i32).to_le_bytes());
        bytes.extend_from_slice(&metadata);
        bytes.extend(std::iter::repeat_n(0, padding));
        bytes.extend_from_slice(body);
        bytes.extend_from_slice(&CONTINUATION);
        bytes.extend_from_slice(&[0; 4]);
        bytes
    }

    const CONTINUATION: [u8; 4] = [0xff; 4];

    #[test]
    fn buffers_that_overlap_cannot_multiply_an_upload() {
        // 1,000 columns whose values all point at one 1 MiB body: 1 GiB once copied out.
        let columns = 1_000;
        let mut schema: DataFrame = DataFrame::new_infer_height(
            (0..columns)
                .map(|i| Column::new(format!("c{i}").into(), [0i64]))
                .collect(),
        )
        .unwrap();
        let rows = 1 << 17;
        let batch = fb::RecordBatch {
            length: rows,
            nodes: Some(vec![
                fb::FieldNode {
                    length: rows,
                    null_count: 0
                };
                columns
            ]),
            buffers: Some(
                (0..columns)
                    .flat_map(|_| {
                        [
                            fb::Buffer {
                                offset: 0,
                                length: 0,
                            },
                            fb::Buffer {
                                offset: 0,
                                length: rows * 8,
                            },
                        ]
                    })
                    .collect(),
            ),
            compression: None,
            variadic_buffer_counts: None,
        };
        let bytes = stream_of(&mut schema, batch.clone(), &vec![0; 1 << 20]);
        let error = check(&bytes, usize::MAX).expect_err("refused");
        assert!(error.to_string().contains("they overlap"), "{error}");
        // The same batch with each column's own bytes is read.
        let mut apart = batch;
        apart.buffers = Some(
            (0..2)
                .flat_map(|i| {
                    [
                        fb::Buffer {
                            offset: 0,
                            length: 0,
                        },
                        fb::Buffer {
                            offset: i * rows * 8,
                            length: rows * 8,
                        },
                    ]
                })
                .collect(),
        );
        apart.nodes.as_mut().unwrap().truncate(2);
        let mut two = schema.select(["c0", "c1"]).unwrap();
        let bytes = stream_of(&mut two, apart, &vec![0; 2 << 20]);
        assert_eq!(
            crate::ipc::decode(&bytes, usize::MAX).unwrap().height(),
            1 << 17
        );
    }

    #[test]
    fn compressed_batches_may_hold_more_rows_than_their_bytes() {
        // 10M zeros compress to a few KB; their rows are bounded by what the buffers
        // declare they decompress to, not by the upload's size.
        let mut df = df!("z" => vec![0i64; 10_000_000]).unwrap();
        let bytes = stream(&mut df, Some(IpcCompression::ZSTD(Default::default())));
        assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
        let decoded = crate::ipc::decode(&bytes, 1 << 30).unwrap();
        assert_eq!(decoded.height(), 10_000_000);
    }
}
