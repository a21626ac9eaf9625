//! Readers: turn an input file into [`Batch`]es of Arrow columns plus the lookup key of
//! every row. They know nothing of HTTP; they only say what each row asks for.

mod csv;
mod keys;
mod parquet;
mod types;

use std::path::{Path, PathBuf};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

pub use keys::{call_id_column, key_sources, FieldSpec, KeyColumns, KeySpec};

use crate::key::RowKey;
use crate::objects::{Bucket, ObjectError, ObjectFile, ObjectUrl};

/// Rows per batch: big enough to amortise per-batch work, small enough that the batches
/// alive at once (reader queue + reorder window + writer queue) stay a few MB.
pub const BATCH_ROWS: usize = 4096;

/// A file's format: CSV (plain, gzip or zstd), or Parquet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv(Codec),
    Parquet,
}

/// How CSV text is compressed: `.csv.gz` and `.csv.zst` are what buckets of exports hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Codec {
    #[default]
    None,
    Gzip,
    Zstd,
}

impl Codec {
    /// A name without its compression extension, and the codec that extension names.
    pub fn strip(name: &str) -> (&str, Codec) {
        let lower = name.to_ascii_lowercase();
        for (ext, codec) in [(".gz", Codec::Gzip), (".zst", Codec::Zstd)] {
            if lower.ends_with(ext) {
                return (&name[..name.len() - ext.len()], codec);
            }
        }
        (name, Codec::None)
    }

    /// How messages name it.
    pub fn name(self) -> &'static str {
        match self {
            Codec::None => "not",
            Codec::Gzip => "gzip",
            Codec::Zstd => "zstd",
        }
    }

    /// The codec whose magic number starts `bytes`, if any.
    pub fn sniff(bytes: &[u8]) -> Codec {
        if bytes.starts_with(&[0x1f, 0x8b]) {
            Codec::Gzip
        } else if bytes.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
            Codec::Zstd
        } else {
            Codec::None
        }
    }
}

impl Format {
    /// The name `--input-format`/`--output-format` take, and the extension written.
    pub fn name(self) -> &'static str {
        match self {
            Format::Csv(Codec::None) => "csv",
            Format::Csv(Codec::Gzip) => "csv.gz",
            Format::Csv(Codec::Zstd) => "csv.zst",
            Format::Parquet => "parquet",
        }
    }

    /// The format a path's extension names, if any: `.csv`, `.tsv`, either with `.gz` or
    /// `.zst`, `.parquet`, `.pq`.
    pub fn from_path(path: &Path) -> Option<Format> {
        let (ext, codec) = split_name(path.file_name()?.to_str()?).1?;
        match (ext.to_ascii_lowercase().as_str(), codec) {
            ("csv" | "tsv", codec) => Some(Format::Csv(codec)),
            ("parquet" | "pq", Codec::None) => Some(Format::Parquet),
            _ => None,
        }
    }
}

/// `x.csv.gz` -> `x`, with `csv` and gzip: the stem a report or another format's output
/// is named after, and the extension proper.
pub fn split_name(name: &str) -> (&str, Option<(&str, Codec)>) {
    let (base, codec) = Codec::strip(name);
    match base.rfind('.') {
        Some(dot) if dot > 0 => (&base[..dot], Some((&base[dot + 1..], codec))),
        _ => (name, None),
    }
}

impl clap::ValueEnum for Format {
    fn value_variants<'a>() -> &'a [Self] {
        &[
            Format::Csv(Codec::None),
            Format::Csv(Codec::Gzip),
            Format::Csv(Codec::Zstd),
            Format::Parquet,
        ]
    }

    fn to_possible_value(&self) -> Option<clap::builder::PossibleValue> {
        Some(clap::builder::PossibleValue::new(self.name()))
    }
}

/// How CSV input is read: its separator, `--encoding` (UTF-8 when `None`), and
/// `--infer-types`.
#[derive(Clone, Copy, Debug)]
pub struct CsvText {
    pub delimiter: u8,
    pub encoding: Option<&'static encoding_rs::Encoding>,
    pub infer_types: bool,
}

impl Default for CsvText {
    fn default() -> Self {
        CsvText {
            delimiter: b',',
            encoding: None,
            infer_types: false,
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
    #[error("{file}: the file is {}-compressed; name it .{} (or pass --input-format {})", codec.name(), Format::Csv(*codec).name(), Format::Csv(*codec).name())]
    Compressed { file: String, codec: Codec },
    #[error("Parquet input cannot come from stdin; pass a file path")]
    ParquetStdin,
    #[error(transparent)]
    Object(#[from] ObjectError),
    #[error("{pattern}: matches no input file (.csv, .tsv, .csv.gz, .csv.zst, .parquet); check the path, or pass --input-format for other names")]
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

// One per open input: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Inner {
    Csv(csv::CsvReader),
    Parquet(parquet::ParquetReader),
}

impl Reader {
    /// `text` says how CSV is read (Parquet ignores it).
    pub fn open(
        source: &Source,
        format: Format,
        spec: &KeySpec,
        text: &CsvText,
    ) -> Result<Reader, InputError> {
        match format {
            Format::Csv(codec) => {
                let (reader, total_bytes) = csv::CsvReader::open(source, codec, spec, text)?;
                Ok(Reader {
                    schema: reader.schema(),
                    total_rows: None,
                    total_bytes,
                    inner: Inner::Csv(reader),
                })
            }
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
                    let size = bucket.existing_size(url)?;
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
            if let Ok(mut reader) = Reader::open(&Source::File(path), Format::Csv(Codec::None), &spec, &CsvText::default()) {
                while let Some(batch) = reader.next_batch() {
                    if batch.is_err() {
                        break;
                    }
                }
            }
        }
    }
}
