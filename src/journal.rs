//! The journal's whole life, in one place: a lock so that one run at a time works on an
//! output, `--fresh`, the store itself, its ledger of whole files and uploads, and at the
//! end the one decision of keeping the files (a rerun has work to do) or removing them
//! (nothing a rerun could change).

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::objects::{ObjectUrl, UploadLog};
use crate::store::{self, Environment, Role, Store, StoreError};

pub struct Journal {
    store: Arc<Store>,
    ledger: Arc<Ledger>,
    lock: Lock,
}

impl Journal {
    /// Take the lock first: a second run on the same output is refused before it touches
    /// anything, and `--fresh` never deletes a journal another run is writing.
    pub fn open(path: &Path, fresh: bool, env: &Environment) -> Result<Journal, StoreError> {
        let lock = Lock::take(path)?;
        if fresh {
            store::remove_files(path);
        }
        let ledger = Arc::new(Ledger::open(path, fresh)?);
        let store = Arc::new(Store::open(path, Role::Journal, env)?);
        Ok(Journal {
            store,
            ledger,
            lock,
        })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    /// Commit and close; remove the files when `done` (nothing is left that a rerun could
    /// change: not interrupted, nothing failed that a rerun would look up again) or nothing
    /// was recorded, keep them for the rerun otherwise. Blocking: run it off the async thread.
    pub fn close(self, done: bool) -> Result<(), StoreError> {
        self.store.close()?;
        let empty = self.store.is_empty()?;
        if (done || empty) && self.ledger.is_settled() {
            store::remove_files(self.store.path());
            let _ = std::fs::remove_file(&self.ledger.path);
        }
        drop(self.lock);
        Ok(())
    }
}

/// `JOURNAL.files`: beside the journal's lookups, what it knows of whole files, one JSON
/// line per event, fsynced as it is written:
/// - an output completed with nothing a rerun could change, so a rerun of a many-file job
///   skips its input (unless the input changed size, or the output is gone);
/// - an upload started (with its ID) and ended: one started and never ended is a killed
///   run's parts, which the next run aborts.
pub struct Ledger {
    path: PathBuf,
    /// Opened at the first entry: a run with nothing to note leaves no file.
    file: Mutex<Option<File>>,
    state: Mutex<LedgerState>,
}

#[derive(Default)]
struct LedgerState {
    /// Output name -> its input's name and size.
    done: HashMap<String, (String, Option<u64>)>,
    /// Upload ID -> the object it was for.
    open_uploads: HashMap<String, String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
enum Entry {
    Done {
        output: String,
        input: String,
        input_bytes: Option<u64>,
    },
    Upload {
        url: String,
        id: String,
    },
    Ended {
        id: String,
    },
}

impl Ledger {
    fn open(journal: &Path, fresh: bool) -> Result<Ledger, StoreError> {
        let mut name = journal.as_os_str().to_owned();
        name.push(".files");
        let path = PathBuf::from(name);
        let err = |e: std::io::Error| StoreError::Sqlite {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut state = LedgerState::default();
        let mut text = String::new();
        if let Ok(mut f) = File::open(&path) {
            f.read_to_string(&mut text).map_err(err)?;
        }
        // A line cut by a crash is the last one and is skipped.
        for entry in text
            .lines()
            .filter_map(|l| serde_json::from_str::<Entry>(l).ok())
        {
            match entry {
                Entry::Done {
                    output,
                    input,
                    input_bytes,
                } if !fresh => {
                    state.done.insert(output, (input, input_bytes));
                }
                Entry::Done { .. } => {}
                Entry::Upload { url, id } => {
                    state.open_uploads.insert(id, url);
                }
                Entry::Ended { id } => {
                    state.open_uploads.remove(&id);
                }
            }
        }
        if fresh && !text.is_empty() {
            forget_outputs(&path, &state).map_err(err)?;
        }
        Ok(Ledger {
            path,
            file: Mutex::new(None),
            state: Mutex::new(state),
        })
    }

    fn append(&self, entry: &Entry) -> std::io::Result<()> {
        let mut line = serde_json::to_string(entry).map_err(std::io::Error::other)?;
        line.push('\n');
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let f = match &mut *file {
            Some(f) => f,
            None => file.insert(private(OpenOptions::new().append(true)).open(&self.path)?),
        };
        f.write_all(line.as_bytes())?;
        f.sync_data()
    }

    fn state(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether an earlier run completed `output` from this same input.
    pub fn is_done(&self, output: &str, input: &str, input_bytes: Option<u64>) -> bool {
        self.state().done.get(output) == Some(&(input.to_owned(), input_bytes))
    }

    pub fn done(&self, output: &str, input: &str, input_bytes: Option<u64>) -> std::io::Result<()> {
        self.append(&Entry::Done {
            output: output.to_owned(),
            input: input.to_owned(),
            input_bytes,
        })?;
        self.state()
            .done
            .insert(output.to_owned(), (input.to_owned(), input_bytes));
        Ok(())
    }

    /// Uploads started and never ended: what killed runs left.
    pub fn open_uploads(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .state()
            .open_uploads
            .iter()
            .map(|(id, url)| (url.clone(), id.clone()))
            .collect();
        v.sort();
        v
    }

    /// No upload is left open: the ledger may go with the journal.
    fn is_settled(&self) -> bool {
        self.state().open_uploads.is_empty()
    }
}

/// `--fresh`: the ledger keeps only the uploads still open (a killed run's parts, for
/// this run to abort), so that a later run, interrupted or not, never skips a file as
/// completed by an earlier job. Written aside and renamed, so a crash leaves one or the
/// other.
fn forget_outputs(path: &Path, state: &LedgerState) -> std::io::Result<()> {
    if state.open_uploads.is_empty() {
        return std::fs::remove_file(path);
    }
    let mut text = String::new();
    for (id, url) in &state.open_uploads {
        let entry = Entry::Upload {
            url: url.clone(),
            id: id.clone(),
        };
        text.push_str(&serde_json::to_string(&entry).map_err(std::io::Error::other)?);
        text.push('\n');
    }
    let mut aside = path.as_os_str().to_owned();
    aside.push(".tmp");
    let aside = PathBuf::from(aside);
    let mut f = private(OpenOptions::new().write(true).truncate(true)).open(&aside)?;
    f.write_all(text.as_bytes())?;
    f.sync_data()?;
    std::fs::rename(&aside, path)
}

/// `options`, creating the file readable by its owner only: the ledger names the job's
/// files and uploads.
fn private(options: &mut OpenOptions) -> &mut OpenOptions {
    options.create(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    options
}

impl UploadLog for Ledger {
    fn started(&self, url: &ObjectUrl, id: &str) -> std::io::Result<()> {
        self.append(&Entry::Upload {
            url: url.to_string(),
            id: id.to_owned(),
        })?;
        self.state()
            .open_uploads
            .insert(id.to_owned(), url.to_string());
        Ok(())
    }

    fn ended(&self, id: &str) -> std::io::Result<()> {
        self.append(&Entry::Ended { id: id.to_owned() })?;
        self.state().open_uploads.remove(id);
        Ok(())
    }
}

/// `JOURNAL.lock`, held with an OS file lock for the whole run and naming its PID. The OS
/// drops the lock when the process dies, so a killed run never blocks the next one.
struct Lock {
    path: PathBuf,
    /// Holds the OS lock while open.
    _file: File,
}

impl Lock {
    fn take(journal: &Path) -> Result<Lock, StoreError> {
        let mut name = journal.as_os_str().to_owned();
        name.push(".lock");
        let path = PathBuf::from(name);
        let err = |e: std::io::Error| StoreError::Sqlite {
            path: path.display().to_string(),
            message: format!("cannot lock: {e}"),
        };
        loop {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(err)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(std::fs::TryLockError::WouldBlock) => {
                    let mut pid = String::new();
                    let _ = file.read_to_string(&mut pid);
                    return Err(StoreError::Locked {
                        path: journal.display().to_string(),
                        pid: pid.trim().to_owned(),
                    });
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(err(e)),
            }
            // The previous holder may have removed the file between our open and our lock:
            // then we hold a lock on a file nobody else will see. Open it again.
            if !same_file(&file, &path) {
                continue;
            }
            file.set_len(0).map_err(err)?;
            file.rewind().map_err(err)?;
            writeln!(file, "{}", std::process::id()).map_err(err)?;
            return Ok(Lock { path, _file: file });
        }
    }
}

/// Whatever way the run ends, the lock file goes: removed while still held, then let go.
impl Drop for Lock {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

#[cfg(unix)]
fn same_file(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn same_file(_: &File, path: &Path) -> bool {
    path.exists()
}
