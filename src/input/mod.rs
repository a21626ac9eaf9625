//! Readers: turn an input file into [`Batch`]es of Arrow columns plus the lookup key of
//! every row. They know nothing of HTTP; they only say what each row asks for.

mod csv;
mod keys;
mod parquet;

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

pub use keys::{call_id_column, key_sources, FieldSpec, KeyColumns, KeySpec};

use crate::key::RowKey;
use crate::objects::{Bucket, ObjectError, ObjectFile, ObjectUrl};

/// Rows per batch: big enough to amortise per-batch work, small enough that the batches
/// alive at once (reader queue + reorder window + writer queue) stay a few MB.
pub const BATCH_ROWS: usize = 4096;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Parquet,
}

impl Format {
    /// The format a path's extension names, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" | "tsv" => Some(Format::Csv),
            "parquet" | "pq" => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// Where rows come from: a file, an object, or stdin (`-`, CSV only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    File(PathBuf),
    Object(ObjectUrl),
    Stdin,
}

impl Source {
    /// How the source is named in messages.
    pub fn name(&self) -> String {
        match self {
            Source::File(p) => p.display().to_string(),
            Source::Object(url) => url.to_string(),
            Source::Stdin => "<stdin>".into(),
        }
    }
}

/// Rows `first_row ..` of the input (1-based data row numbers, as in the error report).
pub struct Batch {
    /// Which input of the run (its index in the plan); the reader stage sets it.
    pub file: usize,
    pub first_row: u64,
    pub data: RecordBatch,
    pub keys: Vec<RowKey>,
}

impl Batch {
    /// Keep only the first `rows` rows (`--limit`).
    pub fn truncate(&mut self, rows: u64) {
        let n = self.data.num_rows();
        if (rows as usize) < n {
            self.data = self.data.slice(0, rows as usize);
            self.keys.truncate(rows as usize);
        }
    }
}

/// What the reader sends: batches, then an explicit end. A reader that stops without
/// `End` died, and the run fails instead of committing a truncated output.
pub enum Read {
    Batch(Batch),
    End,
}

#[derive(Debug, thiserror::Error)]
pub enum InputError {
    #[error("{file}: cannot read: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
    #[error("{file}: empty file: expected a header row naming the columns")]
    Empty { file: String },
    #[error("{file}: {missing}; columns found: {found}{hint}")]
    MissingColumns {
        file: String,
        missing: String,
        found: String,
        hint: String,
    },
    #[error("{file}: column `{column}` is {data_type}; {wanted} must be text or integers (a float cannot hold every ID exactly)")]
    KeyColumnType {
        file: String,
        column: String,
        data_type: String,
        wanted: &'static str,
    },
    #[error("{file}: column `{column}` looks like the {wanted}, but {default} would stand in for it on every row: name the column with {column_flag}, or rename it")]
    DefaultBesideColumn {
        file: String,
        column: String,
        wanted: &'static str,
        default: &'static str,
        column_flag: &'static str,
    },
    #[error("{file}: header: {message}")]
    Header { file: String, message: String },
    #[error("{file}: row {row}: {message}")]
    Row {
        file: String,
        row: u64,
        message: String,
    },
    #[error(
        "{file}: not a readable Parquet file ({message}); if it is CSV, pass --input-format csv"
    )]
    NotParquet { file: String, message: String },
    #[error("{file}: cannot read Parquet: {message}")]
    Parquet { file: String, message: String },
    #[error("Parquet input cannot come from stdin; pass a file path")]
    ParquetStdin,
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("{pattern}: matches no input file (.csv, .tsv, .parquet); check the path, or pass --input-format for other names")]
    NoMatch { pattern: String },
}

/// An open input: its schema is known before any row is read, so the writer can be set up
/// (and every column problem reported) before the first lookup.
pub struct Reader {
    pub schema: SchemaRef,
    /// Rows in the input when the format knows it up front (Parquet).
    pub total_rows: Option<u64>,
    /// Bytes in the input, for a CSV progress estimate.
    pub total_bytes: Option<u64>,
    inner: Inner,
}

enum Inner {
    Csv(csv::CsvReader),
    Parquet(parquet::ParquetReader),
}

impl Reader {
    /// `delimiter` is CSV's field separator (ignored for Parquet).
    pub fn open(
        source: &Source,
        format: Format,
        spec: &KeySpec,
        delimiter: u8,
    ) -> Result<Reader, InputError> {
        match format {
            Format::Csv => csv::CsvReader::open(source, spec, delimiter),
            Format::Parquet => match source {
                Source::File(path) => {
                    let name = path.display().to_string();
                    let f = std::fs::File::open(path).map_err(|source| InputError::Io {
                        file: name.clone(),
                        source,
                    })?;
                    let bytes = f.metadata().ok().map(|m| m.len());
                    parquet::ParquetReader::open(f, name, bytes, spec)
                }
                Source::Object(url) => {
                    let bucket = Bucket::of(url)?;
                    let size = bucket.size(url)?.ok_or_else(|| ObjectError::NotFound {
                        url: url.to_string(),
                    })?;
                    let object = ObjectFile {
                        bucket,
                        url: url.clone(),
                        size,
                    };
                    parquet::ParquetReader::open(object, url.to_string(), Some(size), spec)
                }
                Source::Stdin => Err(InputError::ParquetStdin),
            },
        }
    }

    /// Bytes consumed so far, where the format can tell.
    pub fn bytes_read(&self) -> Option<u64> {
        match &self.inner {
            Inner::Csv(r) => Some(r.bytes_read()),
            Inner::Parquet(_) => None,
        }
    }

    /// The next batch; `None` at the end. Blocking: run it off the async threads.
    pub fn next_batch(&mut self) -> Option<Result<Batch, InputError>> {
        match &mut self.inner {
            Inner::Csv(r) => r.next_batch(),
            Inner::Parquet(r) => r.next_batch(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest::proptest! {
        /// A CSV reader fed arbitrary bytes reports an error or reads rows; it never panics.
        #[test]
        fn csv_of_any_bytes_never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..2000)) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("in.csv");
            let mut content = b"callId,x\n".to_vec();
            content.extend(&bytes);
            std::fs::write(&path, content).unwrap();
            let spec = KeySpec::default();
            let mut spec = spec;
            for f in [&mut spec.user_id, &mut spec.tenant_id, &mut spec.agent_id] {
                f.default = Some("d".into());
            }
            if let Ok(mut reader) = Reader::open(&Source::File(path), Format::Csv, &spec, b',') {
                while let Some(batch) = reader.next_batch() {
                    if batch.is_err() {
                        break;
                    }
                }
            }
        }
    }
}
