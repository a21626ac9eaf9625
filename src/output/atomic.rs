//! Files that appear under their final name only when complete: written to a temporary
//! file beside the target, fsynced, then renamed. Dropped unfinished, they vanish.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

pub struct AtomicFile {
    tmp: NamedTempFile,
    target: PathBuf,
}

impl AtomicFile {
    /// Creating the temporary file up front is also the check that the directory exists
    /// and is writable, before any lookup is paid for.
    pub fn create(target: &Path) -> io::Result<AtomicFile> {
        let dir = parent_dir(target);
        let mut builder = tempfile::Builder::new();
        // Like any file a tool writes: 0666 less the umask (0644 under the usual 022), so
        // the next job, run by another user, can read it. The rename keeps the mode.
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            builder.permissions(std::fs::Permissions::from_mode(0o666));
        }
        let tmp = builder
            .prefix(&temp_prefix(target))
            .suffix(".tmp")
            .tempfile_in(dir)?;
        Ok(AtomicFile {
            tmp,
            target: target.to_owned(),
        })
    }

    pub fn temp_path(&self) -> &Path {
        self.tmp.path()
    }

    /// Make the content durable, then give it its final name.
    pub fn commit(self) -> io::Result<()> {
        self.tmp.as_file().sync_all()?;
        let dir = parent_dir(&self.target).to_owned();
        self.tmp.persist(&self.target).map_err(|e| e.error)?;
        // The rename itself is durable only once the directory is synced.
        File::open(&dir)?.sync_all()
    }
}

fn temp_prefix(target: &Path) -> String {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    format!(".{name}.")
}

/// A run killed with SIGKILL (or a power cut) cannot remove its temporary files: the next
/// run for the same target does, once it holds the output's lock (another run's live files
/// look just the same), keeping `ours`. Only names this module makes are touched:
/// `.{name}.XXXXXX.tmp`, with tempfile's six random characters.
pub fn remove_leftovers(target: &Path, ours: &[PathBuf]) {
    let prefix = temp_prefix(target);
    let Ok(entries) = std::fs::read_dir(parent_dir(target)) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let made_here = name
            .strip_prefix(&prefix)
            .and_then(|rest| rest.strip_suffix(".tmp"))
            .is_some_and(|random| random.len() == 6 && !random.contains('.'));
        if made_here
            && !ours
                .iter()
                .any(|p| p.file_name() == Some(entry.file_name().as_os_str()))
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn parent_dir(target: &Path) -> &Path {
    match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Write a whole small file atomically (a summary, a metrics file, a receipt): a reader
/// sees the old file or the new one, never half of it.
pub fn write_atomically(target: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = AtomicFile::create(target)?;
    remove_leftovers(target, &[file.temp_path().to_owned()]);
    file.write_all(bytes)?;
    file.commit()
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tmp.write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.tmp.write_all(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tmp.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_under_the_final_name_until_commit() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("out.csv");
        let mut f = AtomicFile::create(&target).unwrap();
        f.write_all(b"a,b\n").unwrap();
        assert!(!target.exists());
        f.commit().unwrap();
        assert_eq!(std::fs::read(&target).unwrap(), b"a,b\n");

        let g = AtomicFile::create(&dir.path().join("gone.csv")).unwrap();
        drop(g);
        let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only out.csv remains");
    }
}
