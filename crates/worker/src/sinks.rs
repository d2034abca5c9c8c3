//! Atomic file sinks: a temp file in the target's directory, fsync, then rename. A reader
//! sees the old file or the new one, never a part; a failed or cancelled write leaves no
//! trace.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use polars::prelude::*;

use crate::engine::SinkFormat;
use crate::error::{EngineError, EngineResult};

/// Deletes the temp file unless the write committed.
struct TempFile {
    path: std::path::PathBuf,
    committed: bool,
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if !self.committed {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn parquet_compression(name: Option<&str>) -> EngineResult<ParquetCompression> {
    Ok(match name.unwrap_or("zstd").to_ascii_lowercase().as_str() {
        "uncompressed" | "none" => ParquetCompression::Uncompressed,
        "snappy" => ParquetCompression::Snappy,
        "gzip" => ParquetCompression::Gzip(None),
        "lz4" => ParquetCompression::Lz4Raw,
        "zstd" => ParquetCompression::Zstd(None),
        "brotli" => ParquetCompression::Brotli(None),
        other => {
            return Err(EngineError::invalid(format!(
                "unknown parquet compression `{other}`; expected uncompressed, snappy, gzip, lz4, zstd or brotli"
            )));
        }
    })
}

fn ipc_compression(name: Option<&str>) -> EngineResult<Option<IpcCompression>> {
    match name.unwrap_or("uncompressed").to_ascii_lowercase().as_str() {
        "uncompressed" | "none" => Ok(None),
        "lz4" => Ok(Some(IpcCompression::LZ4)),
        "zstd" => Ok(Some(IpcCompression::ZSTD(Default::default()))),
        other => Err(EngineError::invalid(format!(
            "unknown ipc compression `{other}`; expected uncompressed, lz4 or zstd"
        ))),
    }
}

fn separator(text: Option<&str>) -> EngineResult<u8> {
    match text {
        None => Ok(b','),
        Some(s) if s.len() == 1 => Ok(s.as_bytes()[0]),
        Some(s) => Err(EngineError::invalid(format!(
            "separator must be a single byte, got `{s}`"
        ))),
    }
}

/// Reads the existing file to append to, checking its schema matches.
fn existing(target: &Path, format: &SinkFormat, df: &DataFrame) -> EngineResult<Option<DataFrame>> {
    let file = match File::open(target) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(EngineError::io("append")(e)),
    };
    let old = match format {
        SinkFormat::Parquet { .. } => ParquetReader::new(file).finish(),
        SinkFormat::Ipc { .. } => IpcReader::new(file).finish(),
        SinkFormat::Csv { .. } => return Ok(None),
    }
    .map_err(|e| {
        EngineError::invalid(format!(
            "cannot append to {}: not readable as the same format: {e}",
            target.display()
        ))
    })?;
    if old.schema() != df.schema() {
        return Err(EngineError::invalid(format!(
            "cannot append to {}: its schema {:?} differs from the result's {:?}",
            target.display(),
            old.schema(),
            df.schema()
        )));
    }
    Ok(Some(old))
}

/// Rows written between two progress reports (and cancellation checks).
const CHUNK_ROWS: usize = 256 * 1024;

/// Feeds `df` to `write` in chunks, reporting the rows written so far after each; an error
/// from `progress` (a cancellation) stops the write.
fn write_chunks(
    df: &DataFrame,
    chunk_rows: usize,
    progress: &mut dyn FnMut(usize) -> EngineResult<()>,
    mut write: impl FnMut(&DataFrame) -> EngineResult<()>,
) -> EngineResult<()> {
    let mut offset = 0;
    while offset < df.height() || offset == 0 {
        let chunk = df.slice(i64::try_from(offset).unwrap_or(i64::MAX), chunk_rows);
        write(&chunk)?;
        offset += chunk.height().max(1);
        progress(offset.min(df.height()))?;
    }
    Ok(())
}

/// Writes `df` to `target` (appending to what is there when asked) atomically, calling
/// `progress` with the rows written so far; an error from it abandons the write.
pub fn write_atomic(
    target: &Path,
    mut df: DataFrame,
    format: &SinkFormat,
    append: bool,
    progress: &mut dyn FnMut(usize) -> EngineResult<()>,
) -> EngineResult<()> {
    let old = if append {
        existing(target, format, &df)?
    } else {
        None
    };
    if let Some(mut old) = old {
        old.vstack_mut(&df).map_err(EngineError::polars("append"))?;
        df = old;
    }
    let directory = target.parent().unwrap_or(Path::new("."));
    let file_name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let temp = TempFile {
        path: directory.join(format!(
            ".{file_name}.polaroid-{:016x}.tmp",
            rand::random::<u64>()
        )),
        committed: false,
    };
    let mut file = File::create_new(&temp.path).map_err(EngineError::io("write"))?;
    {
        let mut writer = BufWriter::new(&mut file);
        match format {
            SinkFormat::Parquet {
                compression,
                row_group_size,
            } => {
                let mut parquet = ParquetWriter::new(&mut writer)
                    .with_compression(parquet_compression(compression.as_deref())?);
                let mut chunk_rows = CHUNK_ROWS;
                if let Some(size) = row_group_size {
                    let size = usize::try_from(*size)
                        .ok()
                        .filter(|s| *s > 0)
                        .ok_or_else(|| {
                            EngineError::invalid(format!(
                                "row_group_size must be positive, got {size}"
                            ))
                        })?;
                    parquet = parquet.with_row_group_size(Some(size));
                    chunk_rows = size;
                }
                let mut batched = parquet
                    .batched(df.schema())
                    .map_err(EngineError::polars("write parquet"))?;
                write_chunks(&df, chunk_rows, progress, |chunk| {
                    batched
                        .write_batch(chunk)
                        .map_err(EngineError::polars("write parquet"))
                })?;
                batched
                    .finish()
                    .map_err(EngineError::polars("write parquet"))?;
            }
            SinkFormat::Csv {
                separator: sep,
                include_header,
            } => {
                let appending_to_existing = append && target.exists();
                if appending_to_existing {
                    // Copy the existing text and add rows without repeating the header.
                    let mut old = File::open(target).map_err(EngineError::io("append"))?;
                    std::io::copy(&mut old, &mut writer).map_err(EngineError::io("append"))?;
                }
                let mut batched = CsvWriter::new(&mut writer)
                    .include_header(include_header.unwrap_or(true) && !appending_to_existing)
                    .with_separator(separator(sep.as_deref())?)
                    .batched(df.schema())
                    .map_err(EngineError::polars("write csv"))?;
                write_chunks(&df, CHUNK_ROWS, progress, |chunk| {
                    batched
                        .write_batch(chunk)
                        .map_err(EngineError::polars("write csv"))
                })?;
                batched.finish().map_err(EngineError::polars("write csv"))?;
            }
            SinkFormat::Ipc { compression } => {
                IpcWriter::new(&mut writer)
                    .with_compression(ipc_compression(compression.as_deref())?)
                    .finish(&mut df)
                    .map_err(EngineError::polars("write ipc"))?;
                progress(df.height())?;
            }
        }
        writer.flush().map_err(EngineError::io("write"))?;
    }
    // The last word before the rename: a cancelled job leaves nothing.
    progress(df.height())?;
    file.sync_all().map_err(EngineError::io("write"))?;
    std::fs::rename(&temp.path, target).map_err(EngineError::io("write"))?;
    let mut temp = temp;
    temp.committed = true;
    // The rename is durable once the directory entry is.
    if let Ok(dir) = File::open(directory) {
        let _ = dir.sync_all();
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn rows(n: i64) -> DataFrame {
        df!("id" => (0..n).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_write_cancelled_midway_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.parquet");
        let format = SinkFormat::Parquet {
            compression: None,
            row_group_size: None,
        };
        let mut reports = Vec::new();
        let outcome = write_atomic(&target, rows(1_000_000), &format, false, &mut |written| {
            reports.push(written);
            if written >= CHUNK_ROWS {
                Err(EngineError::Cancelled)
            } else {
                Ok(())
            }
        });
        assert!(matches!(outcome, Err(EngineError::Cancelled)));
        assert_eq!(reports, [CHUNK_ROWS], "stopped at the first check");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn progress_counts_every_row_then_commits() {
        let dir = tempfile::tempdir().unwrap();
        for (name, format) in [
            (
                "out.parquet",
                SinkFormat::Parquet {
                    compression: None,
                    row_group_size: None,
                },
            ),
            (
                "out.csv",
                SinkFormat::Csv {
                    separator: None,
                    include_header: None,
                },
            ),
            ("out.arrow", SinkFormat::Ipc { compression: None }),
        ] {
            let target = dir.path().join(name);
            let mut last = 0;
            write_atomic(&target, rows(600_000), &format, false, &mut |written| {
                assert!(written >= last, "{name}: progress only grows");
                last = written;
                Ok(())
            })
            .unwrap();
            assert_eq!(last, 600_000, "{name}");
            assert!(target.is_file(), "{name}");
        }
        let back = ParquetReader::new(File::open(dir.path().join("out.parquet")).unwrap())
            .finish()
            .unwrap();
        assert_eq!(back, rows(600_000));
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            3,
            "no temp files"
        );
    }
}
