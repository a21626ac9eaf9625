//! Writers: the enriched rows (CSV or Parquet) and the error report, each written
//! atomically. They know nothing of HTTP: they get rows and outcomes, in input order.

mod atomic;
pub mod columns;
mod csv;
mod parquet;
mod report;

use std::io::{self, Write};
use std::path::PathBuf;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;

pub use atomic::{remove_leftovers, write_atomically, AtomicFile};

use crate::input::{FieldSpec, Format};
use crate::key::RowKey;
use crate::objects::{Aborter, Bucket, ObjectUrl, Upload, UploadLog};
use crate::outcome::Outcome;

pub use columns::Selection;
pub use parquet::Compression;

/// How the enriched rows are laid out, beyond the input's own columns.
#[derive(Clone, Debug)]
pub struct Layout {
    pub columns: Selection,
    /// CSV output's field separator.
    pub delimiter: u8,
    /// `--excel`: CSV output and report as Excel reads them (UTF-8 BOM, CRLF).
    pub excel: bool,
    pub compression: Compression,
    pub row_group_rows: usize,
    /// Where the call ID is: Parquet keeps that column, unique per row, out of dictionary
    /// encoding, which would only cost CPU and make the file bigger.
    pub call_id: FieldSpec,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            columns: Selection::default(),
            delimiter: b',',
            excel: false,
            compression: Compression::Zstd,
            row_group_rows: parquet::ROW_GROUP_ROWS,
            call_id: FieldSpec::default(),
        }
    }
}

/// Rows `first_row ..` with their outcomes, ready to be written.
pub struct Done {
    /// Which input of the run the rows are from.
    pub file: usize,
    pub first_row: u64,
    pub data: RecordBatch,
    pub keys: Arc<[RowKey]>,
    pub outcomes: Vec<Arc<Outcome>>,
}

/// Where the enriched rows (or a report) go: a file or an object, atomically either way,
/// or stdout (`-`, CSV only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    File(PathBuf),
    Object(ObjectUrl),
    Stdout,
}

impl Destination {
    pub fn name(&self) -> String {
        match self {
            Destination::File(p) => p.display().to_string(),
            Destination::Object(url) => url.to_string(),
            Destination::Stdout => "<stdout>".into(),
        }
    }

    /// Whether a complete output is already under this name.
    pub fn exists(&self) -> Result<bool, OutputError> {
        match self {
            Destination::File(p) => Ok(p.is_file()),
            Destination::Object(url) => Bucket::of(url)
                .and_then(|b| b.size(url))
                .map(|s| s.is_some())
                .map_err(|e| OutputError::Object(e.to_string())),
            Destination::Stdout => Ok(false),
        }
    }
}

/// Where uploads are noted so that a rerun can abort what a killed run left: the
/// journal's ledger. Only an object destination needs it.
pub type Uploads = Option<Arc<dyn UploadLog>>;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{file}: cannot write: {source}")]
    Io { file: String, source: io::Error },
    #[error("{file}: cannot create it: {source}; check that the directory exists and is writable")]
    Create { file: String, source: io::Error },
    #[error("{file}: Parquet writer failed: {message}")]
    Parquet { file: String, message: String },
    #[error("{0}")]
    Object(String),
    #[error(
        "the input already has a column `{column}`, which callinfo adds; name the added columns apart with --prefix (e.g. --prefix cec_), or leave it out of --columns"
    )]
    ColumnClash { column: String },
}

impl OutputError {
    /// The write error of `file`, for `map_err`.
    pub fn io(file: impl std::fmt::Display) -> impl Fn(io::Error) -> OutputError {
        let file = file.to_string();
        move |source| OutputError::Io {
            file: file.clone(),
            source,
        }
    }
}

/// A byte sink: an atomic file, an upload, or stdout.
pub enum Sink {
    File(AtomicFile),
    Object(Upload),
    Stdout(io::Stdout),
}

impl Sink {
    pub fn open(dest: &Destination, uploads: &Uploads) -> Result<Sink, OutputError> {
        match dest {
            Destination::Stdout => Ok(Sink::Stdout(io::stdout())),
            Destination::Object(url) => {
                let log = uploads
                    .clone()
                    .expect("an object output is opened once the journal's ledger is");
                let bucket = Bucket::of(url).map_err(|e| OutputError::Object(e.to_string()))?;
                Ok(Sink::Object(Upload::new(bucket, url.clone(), log)))
            }
            Destination::File(path) => {
                AtomicFile::create(path)
                    .map(Sink::File)
                    .map_err(|source| OutputError::Create {
                        file: path.display().to_string(),
                        source,
                    })
            }
        }
    }

    fn temp_file(&self) -> Option<PathBuf> {
        match self {
            Sink::File(f) => Some(f.temp_path().to_owned()),
            _ => None,
        }
    }

    fn aborter(&self) -> Option<Aborter> {
        match self {
            Sink::Object(u) => Some(u.aborter()),
            _ => None,
        }
    }

    fn commit(self, name: &str) -> Result<(), OutputError> {
        let io = OutputError::io(name);
        match self {
            Sink::File(f) => f.commit().map_err(io),
            Sink::Object(u) => u.commit().map_err(io),
            Sink::Stdout(mut s) => s.flush().map_err(io),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Object(u) => u.write(buf),
            Sink::Stdout(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Object(u) => u.flush(),
            Sink::Stdout(s) => s.flush(),
        }
    }
}

// One per output: its size does not matter.
#[allow(clippy::large_enum_variant)]
enum Rows {
    Csv(csv::CsvRows),
    Parquet(parquet::ParquetRows),
}

/// An added column the input already has would be written twice.
pub fn check_columns(input_schema: &SchemaRef, layout: &Layout) -> Result<(), OutputError> {
    let added: Vec<String> = layout.columns.names().collect();
    match input_schema
        .fields()
        .iter()
        .find(|f| added.contains(f.name()))
    {
        Some(f) => Err(OutputError::ColumnClash {
            column: f.name().clone(),
        }),
        None => Ok(()),
    }
}

/// Both outputs of a run. Nothing appears under a final name until [`Writer::finish`].
pub struct Writer {
    rows: Rows,
    rows_name: String,
    report: report::Report,
    /// The temporary files this writer made.
    temp_files: Vec<PathBuf>,
    /// The uploads this writer may leave unfinished.
    aborters: Vec<Aborter>,
}

impl Writer {
    /// Create both temporary files now, so a missing or read-only directory is reported
    /// before the first lookup.
    pub fn create(
        dest: &Destination,
        format: Format,
        errors: &Destination,
        input_schema: &SchemaRef,
        layout: &Layout,
        uploads: &Uploads,
    ) -> Result<Writer, OutputError> {
        check_columns(input_schema, layout)?;
        let rows_name = dest.name();
        let sink = Sink::open(dest, uploads)?;
        let mut temp_files: Vec<_> = sink.temp_file().into_iter().collect();
        let mut aborters: Vec<_> = sink.aborter().into_iter().collect();
        let (schema, name) = (input_schema, &rows_name);
        let rows = match format {
            Format::Csv(codec) => Rows::Csv(csv::CsvRows::new(sink, codec, schema, layout, name)?),
            Format::Parquet => {
                Rows::Parquet(parquet::ParquetRows::new(sink, schema, layout, name)?)
            }
        };
        let report = report::Report::create(errors, uploads, layout)?;
        temp_files.extend(report.sink().temp_file());
        aborters.extend(report.sink().aborter());
        Ok(Writer {
            rows,
            rows_name,
            report,
            temp_files,
            aborters,
        })
    }

    /// Drop an unfinished writer: its temporary files go, and its uploads are aborted
    /// now rather than left to the next run. Blocking.
    pub fn abandon(self) {
        for a in &self.aborters {
            a.abort();
        }
    }

    /// The temporary files this writer made (kept when a killed run's leftovers go).
    pub fn temp_files(&self) -> Vec<PathBuf> {
        self.temp_files.clone()
    }

    pub fn write(&mut self, done: &Done) -> Result<(), OutputError> {
        match &mut self.rows {
            Rows::Csv(w) => w.write(done, &self.rows_name)?,
            Rows::Parquet(w) => w.write(done, &self.rows_name)?,
        }
        self.report.write(done)
    }

    /// Close both files and give them their final names: the report first, so a complete
    /// output always has its report beside it.
    pub fn finish(self) -> Result<(), OutputError> {
        // `CALLINFO_TEST_SLOW_FINISH_MS`: a debug build's tests make the final write slow
        // (a slow disk, a slow upload), to stop the run there.
        #[cfg(debug_assertions)]
        if let Some(ms) = std::env::var("CALLINFO_TEST_SLOW_FINISH_MS")
            .ok()
            .and_then(|v| v.parse().ok())
        {
            eprintln!("test hook: the final write takes {ms} ms");
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
        let sink = match self.rows {
            Rows::Csv(w) => w.finish(&self.rows_name)?,
            Rows::Parquet(w) => w.finish(&self.rows_name)?,
        };
        self.report.finish()?;
        sink.commit(&self.rows_name)
    }
}
