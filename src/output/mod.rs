//! Writers: the enriched rows (CSV or Parquet) and the error report, each written
//! atomically. They know nothing of HTTP: they get rows and outcomes, in input order.

mod atomic;
pub mod columns;
mod csv;
mod parquet;
mod report;

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;

pub use atomic::{remove_leftovers, AtomicFile};

use crate::input::Format;
use crate::key::RowKey;
use crate::outcome::Outcome;

pub use columns::Selection;
pub use parquet::Compression;

/// How the enriched rows are laid out, beyond the input's own columns.
#[derive(Clone, Debug)]
pub struct Layout {
    pub columns: Selection,
    /// CSV output's field separator.
    pub delimiter: u8,
    pub compression: Compression,
    pub row_group_rows: usize,
}

impl Default for Layout {
    fn default() -> Self {
        Layout {
            columns: Selection::default(),
            delimiter: b',',
            compression: Compression::Zstd,
            row_group_rows: parquet::ROW_GROUP_ROWS,
        }
    }
}

/// Rows `first_row ..` with their outcomes, ready to be written.
pub struct Done {
    pub first_row: u64,
    pub data: RecordBatch,
    pub keys: Arc<[RowKey]>,
    pub outcomes: Vec<Arc<Outcome>>,
}

/// Where the enriched rows go: a file (atomically) or stdout (`-`, CSV only).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Destination {
    File(PathBuf),
    Stdout,
}

impl Destination {
    pub fn parse(arg: &Path) -> Destination {
        if arg == Path::new("-") {
            Destination::Stdout
        } else {
            Destination::File(arg.to_owned())
        }
    }

    pub fn name(&self) -> String {
        match self {
            Destination::File(p) => p.display().to_string(),
            Destination::Stdout => "<stdout>".into(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("{file}: cannot write: {source}")]
    Io { file: String, source: io::Error },
    #[error("{file}: cannot create it: {source}; check that the directory exists and is writable")]
    Create { file: String, source: io::Error },
    #[error("{file}: Parquet writer failed: {message}")]
    Parquet { file: String, message: String },
    #[error(
        "the input already has a column `{column}`, which callinfo adds; name the added columns apart with --prefix (e.g. --prefix cec_), or leave it out of --columns"
    )]
    ColumnClash { column: String },
}

/// A byte sink that is either an atomic file or stdout.
pub enum Sink {
    File(AtomicFile),
    Stdout(io::Stdout),
}

impl Sink {
    pub fn open(dest: &Destination) -> Result<Sink, OutputError> {
        match dest {
            Destination::Stdout => Ok(Sink::Stdout(io::stdout())),
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

    fn commit(self, name: &str) -> Result<(), OutputError> {
        let io = |source| OutputError::Io {
            file: name.to_owned(),
            source,
        };
        match self {
            Sink::File(f) => f.commit().map_err(io),
            Sink::Stdout(mut s) => s.flush().map_err(io),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sink::File(f) => f.write(buf),
            Sink::Stdout(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sink::File(f) => f.flush(),
            Sink::Stdout(s) => s.flush(),
        }
    }
}

enum Rows {
    Csv(csv::CsvRows),
    Parquet(parquet::ParquetRows),
}

/// Both outputs of a run. Nothing appears under a final name until [`Writer::finish`].
pub struct Writer {
    rows: Rows,
    rows_name: String,
    report: report::Report,
    /// Each final name, with the temporary file this writer made for it.
    files: Vec<(PathBuf, PathBuf)>,
}

impl Writer {
    /// Create both temporary files now, so a missing or read-only directory is reported
    /// before the first lookup.
    pub fn create(
        dest: &Destination,
        format: Format,
        errors: &Path,
        input_schema: &SchemaRef,
        layout: &Layout,
    ) -> Result<Writer, OutputError> {
        let added: Vec<String> = layout.columns.names().collect();
        if let Some(f) = input_schema
            .fields()
            .iter()
            .find(|f| added.contains(f.name()))
        {
            return Err(OutputError::ColumnClash {
                column: f.name().clone(),
            });
        }
        let rows_name = dest.name();
        let sink = Sink::open(dest)?;
        let mut files = Vec::new();
        if let Sink::File(f) = &sink {
            files.push((f.target().to_owned(), f.temp_path().to_owned()));
        }
        let rows = match format {
            Format::Csv => Rows::Csv(csv::CsvRows::new(sink, input_schema, layout, &rows_name)?),
            Format::Parquet => Rows::Parquet(parquet::ParquetRows::new(
                sink,
                input_schema,
                layout,
                &rows_name,
            )?),
        };
        let report = report::Report::create(errors)?;
        files.push((errors.to_owned(), report.temp_path().to_owned()));
        Ok(Writer {
            rows,
            rows_name,
            report,
            files,
        })
    }

    /// Remove what killed runs left beside the final names. Only once this run holds the
    /// output's lock: before, they may be another live run's files.
    pub fn remove_leftovers(&self) {
        let ours: Vec<PathBuf> = self.files.iter().map(|(_, tmp)| tmp.clone()).collect();
        for (target, _) in &self.files {
            remove_leftovers(target, &ours);
        }
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
        let sink = match self.rows {
            Rows::Csv(w) => w.finish(&self.rows_name)?,
            Rows::Parquet(w) => w.finish(&self.rows_name)?,
        };
        self.report.finish()?;
        sink.commit(&self.rows_name)
    }
}
