//! The journal's whole life, in one place: a lock so that one run at a time works on an
//! output, `--fresh`, the store itself, and at the end the one decision of keeping the file
//! (a rerun has work to do) or removing it (nothing a rerun could change).

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::store::{self, Environment, Role, Store, StoreError};

/// How a run ended, as far as its journal cares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Nothing is left that a rerun could change: the journal has done its job.
    Done,
    /// A rerun has work: interrupted, failed, or rows it would look up again.
    RerunHasWork,
}

pub struct Journal {
    store: Arc<Store>,
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
        let store = Arc::new(Store::open(path, Role::Journal, env)?);
        Ok(Journal { store, lock })
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn path(&self) -> &Path {
        self.store.path()
    }

    /// Commit and close; keep the file when a rerun needs it (or it holds anything after
    /// an error), remove it when not. Blocking: run it off the async thread.
    pub fn close(self, ending: Ending) -> Result<(), StoreError> {
        self.store.close()?;
        let empty = self.store.is_empty()?;
        if ending == Ending::Done || empty {
            store::remove_files(self.store.path());
        }
        drop(self.lock);
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
