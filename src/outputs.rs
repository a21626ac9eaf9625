//! The writer stage of a run over one or many files: one [`Writer`] per input, made when
//! its first rows arrive and completed when the next file's arrive (or at the end). Each
//! complete file of a many-file run is noted in the journal's ledger, so a rerun skips it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{mpsc, oneshot};

use crate::journal::Ledger;
use crate::output::{Done, Layout, OutputError, Uploads, Writer};
use crate::plan::Item;
use crate::receipt::Finished;
use crate::summary::{FileState, FileSummary};

/// Each file's figures, shared with the run for its summary.
pub type Files = Arc<Mutex<Vec<FileSummary>>>;

/// One flag per input, set by the reader once it has read that input to its end. A file
/// cut short (by `--limit`) is written, but never noted as complete: a rerun without the
/// limit must write its other rows.
pub type ReadWhole = Arc<Vec<AtomicBool>>;

pub fn read_whole(files: usize) -> ReadWhole {
    Arc::new((0..files).map(|_| AtomicBool::new(false)).collect())
}

pub struct Outputs {
    pub items: Vec<Item>,
    pub layout: Layout,
    pub uploads: Uploads,
    /// Set for a many-file run, whose complete files a rerun skips.
    pub ledger: Option<Arc<Ledger>>,
    pub whole: ReadWhole,
    /// A writer made before the run began (to check the output's directory early).
    pub first: Option<(usize, Writer)>,
    /// The file being written (`None` to begin with).
    pub current: Option<Current>,
    pub files: Files,
}

pub struct Current {
    file: usize,
    writer: Writer,
    /// Failed rows a rerun may change: with any, the file is not noted as complete.
    transient: u64,
}

impl Outputs {
    fn write(&mut self, done: Done) -> Result<(), OutputError> {
        if self.current.as_ref().map(|c| c.file) != Some(done.file) {
            self.complete_current()?;
            let writer = match self.first.take() {
                Some((file, w)) if file == done.file => w,
                other => {
                    if let Some((_, w)) = other {
                        w.abandon();
                    }
                    let item = &self.items[done.file];
                    writer_for(item, &done.data.schema(), &self.layout, &self.uploads)?
                }
            };
            self.current = Some(Current {
                file: done.file,
                writer,
                transient: 0,
            });
        }
        let current = self.current.as_mut().expect("set above");
        if done.data.num_rows() > 0 {
            current.writer.write(&done)?;
        }
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let figures = &mut files[done.file];
        for outcome in &done.outcomes {
            figures.rows += 1;
            match outcome.failure() {
                None => figures.ok += 1,
                Some(f) => {
                    figures.failed += 1;
                    current.transient += u64::from(f.kind.retry_on_rerun());
                }
            }
        }
        Ok(())
    }

    fn complete_current(&mut self) -> Result<(), OutputError> {
        let Some(current) = self.current.take() else {
            return Ok(());
        };
        current.writer.finish()?;
        let item = &self.items[current.file];
        let mut files = self.files.lock().unwrap_or_else(|e| e.into_inner());
        let figures = &mut files[current.file];
        figures.state = FileState::Written;
        if let Some(ledger) = &self.ledger {
            // The reader set the flag before it sent the next file's rows, or its end.
            let whole = self.whole[current.file].load(Ordering::Acquire);
            tracing::info!(
                "{} -> {}: {} rows, {} ok, {} failed{}",
                figures.input,
                figures.output,
                figures.rows,
                figures.ok,
                figures.failed,
                if whole { "" } else { " (cut short by --limit)" }
            );
            if current.transient == 0 && whole {
                ledger
                    .done(&item.output.name(), &item.input.name(), item.input_bytes)
                    .map_err(OutputError::io(ledger.path().display()))?;
            }
        }
        Ok(())
    }

    fn abandon(mut self) {
        if let Some(c) = self.current.take() {
            c.writer.abandon();
        }
        if let Some((_, w)) = self.first.take() {
            w.abandon();
        }
    }
}

/// The writer thread: rows until the engine ends, then its word on whether the run is
/// complete: complete, the last file is finished; not, every unfinished output is dropped
/// (temporary files removed, uploads aborted) on this same thread.
pub fn write_all(
    mut outputs: Outputs,
    mut rx: mpsc::Receiver<Done>,
    complete: oneshot::Receiver<bool>,
) -> Result<(), OutputError> {
    let written = (|| {
        while let Some(done) = rx.blocking_recv() {
            outputs.write(done)?;
        }
        Ok(())
    })();
    if let Err(e) = written {
        outputs.abandon();
        return Err(e);
    }
    if complete.blocking_recv().unwrap_or(false) {
        // A run whose rows were all cut by --limit before this file still ends here.
        let finished = outputs.complete_current();
        if finished.is_err() {
            outputs.abandon();
        } else if let Some((_, w)) = outputs.first.take() {
            // Nothing reached the writer made up front (an input with no rows at all is
            // still a batch): finish it, so the empty output exists as for one file.
            w.finish()?;
        }
        finished
    } else {
        outputs.abandon();
        Ok(())
    }
}

/// The writer of one item's output and report, in the run's layout with the item's own CSV
/// separator.
pub fn writer_for(
    item: &Item,
    schema: &arrow_schema::SchemaRef,
    layout: &Layout,
    uploads: &Uploads,
) -> Result<Writer, OutputError> {
    let layout = Layout {
        delimiter: item.out_delimiter,
        ..layout.clone()
    };
    Writer::create(
        &item.output,
        item.output_format,
        &item.errors,
        schema,
        &layout,
        uploads,
    )
}

/// Every item's entry, before anything is written: a skipped one with its figures then.
pub fn entries(items: &[Item], skipped: &[Option<Finished>]) -> Vec<FileSummary> {
    items
        .iter()
        .zip(skipped)
        .map(|(item, skip)| {
            let figures = skip.unwrap_or_default();
            FileSummary {
                input: item.input.name(),
                output: item.output.name(),
                errors: item.errors.name(),
                rows: figures.rows,
                ok: figures.ok,
                failed: figures.failed,
                state: match skip {
                    Some(_) => FileState::AlreadyComplete,
                    None => FileState::NotWritten,
                },
            }
        })
        .collect()
}
