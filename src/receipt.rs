//! A finished job's receipt, so that the same command does not redo it. After a run that
//! left nothing a rerun could change, the state directory's `finished/` keeps one small
//! JSON file per output: its input's stamp (size and modification time, or an object's
//! size and ETag), a digest of everything else that shapes the output (formats, columns,
//! separators, key columns, API), and the stamps of the output and its report as written.
//! A later run whose input, options and files all still match says so and skips it;
//! `--fresh` redoes it, as does any change to the input, the options or the files.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use crate::input::Source;
use crate::objects::Bucket;
use crate::output::Destination;
use crate::plan::{state_name, Item};
use crate::summary::FileSummary;

/// The receipts of one job's outputs.
pub struct Receipts {
    pub dir: PathBuf,
    /// What shapes every output of the job beyond its item (columns, keys, API), as text.
    pub shape: String,
}

#[derive(Serialize, Deserialize)]
struct Receipt {
    #[serde(flatten)]
    made: Made,
    #[serde(flatten)]
    finished: Finished,
}

/// What a receipt holds to, and what a finished output still must match.
#[derive(Serialize, Deserialize, PartialEq, Eq)]
struct Made {
    input: String,
    input_stamp: String,
    options: String,
    output_stamp: String,
    errors_stamp: String,
}

/// When an output was finished, and its figures then: a run that skips it reports them
/// (and exits 3 as that run did when rows failed).
#[derive(Serialize, Deserialize, Clone, Copy, Debug, Default)]
pub struct Finished {
    /// Seconds since the epoch.
    pub at: u64,
    pub rows: u64,
    pub ok: u64,
    pub failed: u64,
}

impl Receipts {
    /// The digest of everything that shapes `item`'s output.
    fn options(&self, item: &Item) -> String {
        let text = format!("{}|{item:?}", self.shape);
        crate::key::sha256_hex(&text, 16)
    }

    fn path(&self, item: &Item) -> PathBuf {
        let name = format!("{} {}", item.output.name(), item.errors.name());
        self.dir.join(format!("{}.json", state_name(&name)))
    }

    /// Whether `item` was finished from its input as it is now, with these options, into
    /// the files still there. Blocking (an object's stamp).
    pub fn finished(&self, item: &Item) -> Option<Finished> {
        let text = std::fs::read_to_string(self.path(item)).ok()?;
        let kept: Receipt = serde_json::from_str(&text).ok()?;
        (self.made(item)? == kept.made).then_some(kept.finished)
    }

    /// Note `item` as finished with these figures. Blocking. A receipt that cannot be
    /// written costs only a rerun's work: it is logged, not fatal.
    pub fn write(&self, item: &Item, figures: &FileSummary) {
        let at = std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let Some(made) = self.made(item) else {
            return;
        };
        let (rows, ok, failed) = (figures.rows, figures.ok, figures.failed);
        let finished = Finished {
            at,
            rows,
            ok,
            failed,
        };
        let receipt = Receipt { made, finished };
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let text = serde_json::to_vec(&receipt).map_err(std::io::Error::other)?;
            crate::output::write_atomically(&self.path(item), &text)
        });
        if let Err(e) = written {
            tracing::warn!("{}: cannot note the finished job: {e}", self.dir.display());
        }
    }

    /// What `item`'s receipt would hold now; nothing for stdin or stdout.
    fn made(&self, item: &Item) -> Option<Made> {
        Some(Made {
            input: item.input.name(),
            input_stamp: match &item.input {
                Source::File(p) => file_stamp(p)?,
                Source::Object(url) => Bucket::of(url).ok()?.stamp(url).ok()??,
                Source::Stdin => return None,
            },
            options: self.options(item),
            output_stamp: dest_stamp(&item.output)?,
            errors_stamp: dest_stamp(&item.errors)?,
        })
    }
}

fn dest_stamp(d: &Destination) -> Option<String> {
    match d {
        Destination::File(p) => file_stamp(p),
        Destination::Object(url) => Bucket::of(url).ok()?.stamp(url).ok()?,
        Destination::Stdout => None,
    }
}

/// A file's size and modification time (ns).
fn file_stamp(p: &Path) -> Option<String> {
    let meta = std::fs::metadata(p).ok()?;
    let modified = meta.modified().ok()?.duration_since(UNIX_EPOCH).ok()?;
    Some(format!("{}:{}", meta.len(), modified.as_nanos()))
}
