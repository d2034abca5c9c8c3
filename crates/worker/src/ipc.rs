//! Arrow IPC on the wire: decoding uploads, and encoding results as self-contained IPC
//! streams that each fit in one gRPC message.

use std::io::Cursor;

use bytes::Bytes;
use polars::prelude::*;

use crate::error::{EngineError, EngineResult};

/// Arrow IPC files start with this magic; streams start with a schema message.
const FILE_MAGIC: &[u8] = b"ARROW1";

/// Decodes an Arrow IPC stream or file.
pub fn decode(bytes: &[u8]) -> EngineResult<DataFrame> {
    if bytes.is_empty() {
        return Err(EngineError::invalid("arrow_ipc is empty"));
    }
    let result = if bytes.starts_with(FILE_MAGIC) {
        IpcReader::new(Cursor::new(bytes)).finish()
    } else {
        IpcStreamReader::new(Cursor::new(bytes)).finish()
    };
    result.map_err(|e| {
        EngineError::invalid(format!(
            "arrow_ipc is not a valid Arrow IPC stream or file: {e}"
        ))
    })
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
    let height = df.height();
    if height == 0 {
        emit(Bytes::from(encode(&mut df.clone())?));
        return Ok(());
    }
    // First guess from the in-memory size; chunks that still come out too big are halved.
    let per_row = (df.estimated_size() / height).max(1);
    let rows = (max_bytes.saturating_mul(3) / 4 / per_row).clamp(1, max_rows.max(1));
    let mut offset = 0;
    while offset < height {
        let length = rows.min(height - offset);
        if !encode_range(df, offset, length, max_bytes, emit)? {
            return Ok(());
        }
        offset += length;
    }
    Ok(())
}

/// Returns false when the receiver went away.
fn encode_range(
    df: &DataFrame,
    offset: usize,
    length: usize,
    max_bytes: usize,
    emit: &mut dyn FnMut(Bytes) -> bool,
) -> EngineResult<bool> {
    let mut slice = df.slice(offset as i64, length);
    let encoded = encode(&mut slice)?;
    if encoded.len() <= max_bytes {
        return Ok(emit(Bytes::from(encoded)));
    }
    if length == 1 {
        return Err(EngineError::LimitExceeded(format!(
            "row {offset} alone encodes to {} bytes, over the maximum message size of {max_bytes} bytes",
            encoded.len()
        )));
    }
    let half = length / 2;
    Ok(encode_range(df, offset, half, max_bytes, emit)?
        && encode_range(df, offset + half, length - half, max_bytes, emit)?)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut parts = chunks.iter().map(|c| decode(c).unwrap());
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
        assert_eq!(decode(&chunks[0]).unwrap().schema(), df.schema());
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
            let decoded = decode(&encoded).unwrap();
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
    fn garbage_is_invalid_argument() {
        assert!(matches!(
            decode(b"not arrow"),
            Err(EngineError::InvalidArgument(_))
        ));
    }
}
