//! Atomic file sinks: a temp file in the target's directory, fsync, then rename. A reader
//! sees the old file or the new one, never a part; a failed or cancelled write leaves no
//! trace.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::num::NonZeroUsize;
use std::path::Path;

use polars::prelude::*;

use crate::engine::SinkFormat;
use crate::error::{EngineError, EngineResult};
use crate::query::{self, Mode, slices};
use polaroid_proto::excerpt;

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
                "unknown parquet compression `{}`; expected uncompressed, snappy, gzip, lz4, zstd or brotli",
                excerpt(other)
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
            "unknown ipc compression `{}`; expected uncompressed, lz4 or zstd",
            excerpt(other)
        ))),
    }
}

fn separator(text: Option<&str>) -> EngineResult<u8> {
    match text {
        None => Ok(b','),
        Some(s) if s.len() == 1 => Ok(s.as_bytes()[0]),
        Some(s) => Err(EngineError::invalid(format!(
            "separator must be a single byte, got `{}`",
            excerpt(s)
        ))),
    }
}

/// Reads the existing file to append to, checking its schema matches.
fn existing(
    target: &Path,
    format: &SinkFormat,
    schema: &Schema,
) -> EngineResult<Option<DataFrame>> {
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
    if old.schema().as_ref() != schema {
        return Err(EngineError::invalid(format!(
            "cannot append to {}: its schema {:?} differs from the result's {:?}",
            target.display(),
            old.schema(),
            schema
        )));
    }
    Ok(Some(old))
}

/// Rows written between two progress reports (and cancellation checks).
const CHUNK_ROWS: NonZeroUsize = NonZeroUsize::new(256 * 1024).expect("non-zero");

/// The rows a write takes: a result in memory already, or a query streamed to the file as
/// it runs (in bounded memory).
pub enum Rows {
    Frame(DataFrame),
    Query {
        lf: Box<LazyFrame>,
        schema: SchemaRef,
        mode: Mode,
    },
}

impl Rows {
    fn schema(&self) -> SchemaRef {
        match self {
            Self::Frame(df) => df.schema().clone(),
            Self::Query { schema, .. } => schema.clone(),
        }
    }

    /// Hands the rows to `consume` in frames of `batch_rows` (at least one frame, empty
    /// for no rows, so that a writer always learns the columns).
    fn for_each_batch(
        self,
        batch_rows: NonZeroUsize,
        consume: &mut dyn FnMut(DataFrame) -> EngineResult<()>,
    ) -> EngineResult<()> {
        match self {
            Self::Frame(df) => slices(&df, batch_rows, consume),
            Self::Query { lf, mode, .. } => query::for_each_batch(*lf, mode, batch_rows, consume),
        }
    }
}

/// A file format's writer, fed batch by batch.
trait BatchWriter {
    fn write(&mut self, df: &DataFrame) -> PolarsResult<()>;
    fn finish(&mut self) -> PolarsResult<()>;
}

impl<W: Write> BatchWriter for polars::io::parquet::write::BatchedWriter<W> {
    fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        self.write_batch(df)
    }
    fn finish(&mut self) -> PolarsResult<()> {
        polars::io::parquet::write::BatchedWriter::finish(self).map(|_| ())
    }
}

impl<W: Write> BatchWriter for polars::io::csv::write::BatchedWriter<W> {
    fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        self.write_batch(df)
    }
    fn finish(&mut self) -> PolarsResult<()> {
        polars::io::csv::write::BatchedWriter::finish(self)
    }
}

impl<W: Write> BatchWriter for polars::io::ipc::BatchedWriter<W> {
    fn write(&mut self, df: &DataFrame) -> PolarsResult<()> {
        // The IPC writer needs the columns' chunks aligned; the engine's batches may not be.
        let mut df = df.clone();
        df.align_chunks_par();
        self.write_batch(&df)
    }
    fn finish(&mut self) -> PolarsResult<()> {
        polars::io::ipc::BatchedWriter::finish(self)
    }
}

/// The operation a write in `format` is, for errors.
fn operation(format: &SinkFormat) -> &'static str {
    match format {
        SinkFormat::Parquet { .. } => "write parquet",
        SinkFormat::Csv { .. } => "write csv",
        SinkFormat::Ipc { .. } => "write ipc",
    }
}

/// Opens the writer of `format` on `out` for rows of `schema`; `header` says whether a CSV
/// starts with one. Returns the writer and the rows per batch it wants.
fn open_writer<'w>(
    out: &'w mut BufWriter<&mut File>,
    format: &SinkFormat,
    schema: &Schema,
    header: bool,
) -> EngineResult<(Box<dyn BatchWriter + 'w>, NonZeroUsize)> {
    Ok(match format {
        SinkFormat::Parquet {
            compression,
            row_group_size,
        } => {
            let mut parquet = ParquetWriter::new(out)
                .with_compression(parquet_compression(compression.as_deref())?);
            let mut batch_rows = CHUNK_ROWS;
            if let Some(size) = row_group_size {
                let rows = usize::try_from(*size)
                    .ok()
                    .and_then(NonZeroUsize::new)
                    .ok_or_else(|| {
                        EngineError::invalid(format!("row_group_size must be positive, got {size}"))
                    })?;
                parquet = parquet.with_row_group_size(Some(rows.get()));
                batch_rows = rows;
            }
            let writer = parquet
                .batched(schema)
                .map_err(EngineError::polars(operation(format)))?;
            (Box::new(writer), batch_rows)
        }
        SinkFormat::Csv {
            separator: sep,
            include_header,
        } => {
            let writer = CsvWriter::new(out)
                .include_header(*include_header && header)
                .with_separator(separator(sep.as_deref())?)
                .batched(schema)
                .map_err(EngineError::polars(operation(format)))?;
            (Box::new(writer), CHUNK_ROWS)
        }
        SinkFormat::Ipc { compression } => {
            let arrow = schema.to_arrow(CompatLevel::newest());
            let fields = polars_arrow::io::ipc::write::default_ipc_fields(arrow.iter_values());
            let writer = IpcWriter::new(out)
                .with_compression(ipc_compression(compression.as_deref())?)
                .batched(schema, fields)
                .map_err(EngineError::polars(operation(format)))?;
            (Box::new(writer), CHUNK_ROWS)
        }
    })
}

/// Writes `rows` to `target` (appending to what is there when asked) atomically, calling
/// `progress` with the rows written so far; an error from it abandons the write. Returns
/// the rows written (without those appended to).
pub fn write_atomic(
    target: &Path,
    rows: Rows,
    format: &SinkFormat,
    append: bool,
    progress: &mut dyn FnMut(usize) -> EngineResult<()>,
) -> EngineResult<usize> {
    let schema = rows.schema();
    let old = if append {
        existing(target, format, &schema)?
    } else {
        None
    };
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
    let mut written = 0;
    {
        let mut out = BufWriter::new(&mut file);
        let appending_to_csv =
            append && matches!(format, SinkFormat::Csv { .. }) && target.exists();
        if appending_to_csv {
            // Copy the existing text and add rows without repeating the header.
            let mut old = File::open(target).map_err(EngineError::io("append"))?;
            std::io::copy(&mut old, &mut out).map_err(EngineError::io("append"))?;
        }
        let (mut writer, batch_rows) = open_writer(&mut out, format, &schema, !appending_to_csv)?;
        let operation = operation(format);
        if let Some(old) = old {
            slices(&old, batch_rows, &mut |batch| {
                writer.write(&batch).map_err(EngineError::polars(operation))
            })?;
        }
        rows.for_each_batch(batch_rows, &mut |batch| {
            writer
                .write(&batch)
                .map_err(EngineError::polars(operation))?;
            written += batch.height();
            progress(written)
        })?;
        writer.finish().map_err(EngineError::polars(operation))?;
        drop(writer);
        out.flush().map_err(EngineError::io("write"))?;
    }
    // The last word before the rename: a cancelled job leaves nothing.
    progress(written)?;
    file.sync_all().map_err(EngineError::io("write"))?;
    std::fs::rename(&temp.path, target).map_err(EngineError::io("write"))?;
    let mut temp = temp;
    temp.committed = true;
    // The rename is durable once the directory entry is.
    if let Ok(dir) = File::open(directory) {
        let _ = dir.sync_all();
    }
    Ok(written)
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
        let outcome = write_atomic(
            &target,
            Rows::Frame(rows(1_000_000)),
            &format,
            false,
            &mut |written| {
                reports.push(written);
                if written >= CHUNK_ROWS.get() {
                    Err(EngineError::Cancelled)
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(outcome, Err(EngineError::Cancelled)));
        assert_eq!(reports, [CHUNK_ROWS.get()], "stopped at the first check");
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
                    include_header: true,
                },
            ),
            ("out.arrow", SinkFormat::Ipc { compression: None }),
        ] {
            let target = dir.path().join(name);
            let mut last = 0;
            write_atomic(
                &target,
                Rows::Frame(rows(600_000)),
                &format,
                false,
                &mut |written| {
                    assert!(written >= last, "{name}: progress only grows");
                    last = written;
                    Ok(())
                },
            )
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

    /// A query over `n` rows that Polars runs in several morsels.
    fn query(n: i64) -> Rows {
        let lf = rows(n)
            .lazy()
            .filter(col("id").gt_eq(lit(0)))
            .with_column((col("id") * lit(2)).alias("double"));
        let schema = lf.clone().collect_schema().unwrap();
        Rows::Query {
            lf: Box::new(lf),
            schema,
            mode: Mode::Streaming,
        }
    }

    #[test]
    fn a_query_streams_to_each_format_as_polars_computes_it() {
        let dir = tempfile::tempdir().unwrap();
        let expected = rows(700_000)
            .lazy()
            .with_column((col("id") * lit(2)).alias("double"))
            .collect()
            .unwrap();
        for (name, format) in [
            (
                "out.parquet",
                SinkFormat::Parquet {
                    compression: None,
                    row_group_size: Some(100_000),
                },
            ),
            ("out.arrow", SinkFormat::Ipc { compression: None }),
        ] {
            let target = dir.path().join(name);
            let mut reports = Vec::new();
            let written = write_atomic(&target, query(700_000), &format, false, &mut |n| {
                reports.push(n);
                Ok(())
            })
            .unwrap();
            assert_eq!(written, 700_000, "{name}");
            assert!(
                reports.len() > 2,
                "{name}: progress as it streams: {reports:?}"
            );
            let back = match format {
                SinkFormat::Parquet { .. } => {
                    ParquetReader::new(File::open(&target).unwrap()).finish()
                }
                _ => IpcReader::new(File::open(&target).unwrap()).finish(),
            }
            .unwrap();
            assert!(back.equals_missing(&expected), "{name}");
        }
        let meta = ParquetReader::new(File::open(dir.path().join("out.parquet")).unwrap())
            .get_metadata()
            .unwrap()
            .clone();
        assert!(
            meta.row_groups.iter().all(|g| g.num_rows() <= 100_000),
            "row groups of the size asked for"
        );
    }

    #[test]
    fn a_streamed_write_cancelled_midway_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let format = SinkFormat::Csv {
            separator: None,
            include_header: true,
        };
        let outcome = write_atomic(&target, query(1_000_000), &format, false, &mut |_| {
            Err(EngineError::Cancelled)
        });
        assert!(matches!(outcome, Err(EngineError::Cancelled)));
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn an_empty_query_result_still_writes_its_header() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let format = SinkFormat::Csv {
            separator: None,
            include_header: true,
        };
        let empty = match query(10) {
            Rows::Query { lf, schema, mode } => Rows::Query {
                lf: Box::new(lf.filter(col("id").lt(lit(0)))),
                schema,
                mode,
            },
            frame => frame,
        };
        let written = write_atomic(&target, empty, &format, false, &mut |_| Ok(())).unwrap();
        assert_eq!(written, 0);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "id,double\n");
    }
}
