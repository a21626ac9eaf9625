//! Outcomes kept on disk, keyed by call key: the run's journal (every finished lookup, so
//! a rerun redoes nothing) and the optional cache shared across runs (`--cache`). Both are
//! SQLite databases with one table, which an operator can open with the sqlite3 shell.
//!
//! Writes go through one thread that commits whatever has arrived (group commit): each
//! commit reaches the OS at once, so a killed process loses at most the lookups that were
//! still queued, and a checkpoint every second makes them durable against power loss.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use crate::key::CallKey;
use crate::outcome::{Failure, Fields, LookupKind, Outcome};

/// `PRAGMA application_id`: marks the file as callinfo's ("CALL").
const APPLICATION_ID: i32 = 0x4341_4c4c;
/// `PRAGMA user_version`: bumped whenever the table's meaning changes. A file of another
/// version is refused, never misread.
pub const FORMAT_VERSION: i32 = 1;
/// How often the writer makes committed outcomes durable (fsync via a WAL checkpoint).
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// Records committed in one transaction at most.
const MAX_GROUP: usize = 8192;
/// After the first record of a group, wait this long for more: one commit and one wake-up
/// per group rather than per record. A kill loses at most this much of recent lookups.
const GROUP_WAIT: Duration = Duration::from_millis(2);

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Sqlite { path: String, message: String },
    #[error("{path}: not a callinfo {role} (or written by an incompatible version: format {found}, this callinfo reads {FORMAT_VERSION}); remove it, or pass --fresh")]
    Incompatible {
        path: String,
        role: &'static str,
        found: i32,
    },
}

/// One finished lookup on its way to the writer thread.
type Record = (CallKey, Arc<Outcome>);

/// What the store is for, which decides what it keeps and what it gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Every outcome of this job. Transient failures of earlier runs are not reused: a rerun
    /// tries them again.
    Journal,
    /// Only definitive answers (`ok`, `not_found`), shared across jobs.
    Cache,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Journal => "journal",
            Role::Cache => "cache",
        }
    }

    fn keeps(self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Role::Journal, _) | (Role::Cache, Outcome::Ok(_)) => true,
            (Role::Cache, Outcome::Failed(f)) => f.kind == LookupKind::NotFound,
        }
    }
}

/// Where a known outcome came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Looked up earlier in this run.
    ThisRun,
    /// Looked up by an earlier run (journal) or job (cache).
    Earlier,
}

pub struct Store {
    path: PathBuf,
    role: Role,
    /// This run's number in the file: outcomes of this run are reused whatever their kind.
    run: i64,
    reader: Mutex<Connection>,
    /// Put but not yet committed: visible to `get` until the writer's commit is.
    pending: Arc<Mutex<HashMap<CallKey, Arc<Outcome>>>>,
    /// Taken by `close`, which ends the writer thread.
    tx: Mutex<Option<mpsc::Sender<Record>>>,
    writer: Mutex<Option<JoinHandle<Result<(), StoreError>>>>,
}

impl Store {
    pub fn open(path: &Path, role: Role) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        let err = |e: rusqlite::Error| StoreError::Sqlite {
            path: name.clone(),
            message: e.to_string(),
        };
        let conn = Connection::open(path).map_err(err)?;
        let app: i32 = conn
            .pragma_query_value(None, "application_id", |r| r.get(0))
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::NotADatabase =>
                {
                    StoreError::Incompatible {
                        path: name.clone(),
                        role: role.name(),
                        found: -1,
                    }
                }
                e => err(e),
            })?;
        let version: i32 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .map_err(err)?;
        let fresh = app == 0 && version == 0;
        if !fresh && (app != APPLICATION_ID || version != FORMAT_VERSION) {
            return Err(StoreError::Incompatible {
                path: name,
                role: role.name(),
                found: if app == APPLICATION_ID { version } else { -1 },
            });
        }
        conn.pragma_update(None, "journal_mode", "WAL")
            .map_err(err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS outcomes (
                call_id TEXT NOT NULL, user_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL, agent_id TEXT NOT NULL,
                status TEXT NOT NULL,
                caller TEXT, called TEXT, media_ability INTEGER, call_data TEXT,
                call_skill_id INTEGER, call_skill TEXT, call_type INTEGER,
                http_status INTEGER, attempts INTEGER NOT NULL, message TEXT,
                run INTEGER NOT NULL,
                PRIMARY KEY (call_id, user_id, tenant_id, agent_id)
             ) WITHOUT ROWID;
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             INSERT OR IGNORE INTO meta VALUES ('runs', 0);
             UPDATE meta SET value = value + 1 WHERE key = 'runs';",
        )
        .map_err(err)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(err)?;
        conn.pragma_update(None, "user_version", FORMAT_VERSION)
            .map_err(err)?;
        let run: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'runs'", [], |r| {
                r.get(0)
            })
            .map_err(err)?;

        let writer_conn = Connection::open(path).map_err(err)?;
        writer_conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(err)?;
        let pending: Arc<Mutex<HashMap<CallKey, Arc<Outcome>>>> = Arc::default();
        let (tx, rx) = mpsc::channel();
        let writer = {
            let pending = pending.clone();
            let thread_name = name.clone();
            std::thread::Builder::new()
                .name(format!("callinfo-{}", role.name()))
                .spawn(move || write_loop(writer_conn, rx, pending, run, &thread_name))
                .map_err(|e| StoreError::Sqlite {
                    path: name.clone(),
                    message: e.to_string(),
                })?
        };
        Ok(Store {
            path: path.to_owned(),
            role,
            run,
            reader: Mutex::new(conn),
            pending,
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Outcomes this store has for `key` and would have us reuse.
    pub fn get(&self, key: &CallKey) -> Result<Option<(Arc<Outcome>, Found)>, StoreError> {
        if let Some(o) = self.pending.lock().unwrap().get(key) {
            return Ok(Some((o.clone(), Found::ThisRun)));
        }
        let conn = self.reader.lock().unwrap();
        let row = conn
            .prepare_cached(
                "SELECT status, caller, called, media_ability, call_data, call_skill_id,
                        call_skill, call_type, http_status, attempts, message, run
                 FROM outcomes
                 WHERE call_id = ?1 AND user_id = ?2 AND tenant_id = ?3 AND agent_id = ?4",
            )
            .and_then(|mut stmt| {
                stmt.query_row(
                    params![
                        &*key.call_id,
                        &*key.user_id,
                        &*key.tenant_id,
                        &*key.agent_id
                    ],
                    read_outcome,
                )
                .optional()
            })
            .map_err(|e| StoreError::Sqlite {
                path: self.path.display().to_string(),
                message: e.to_string(),
            })?;
        let Some((outcome, run)) = row else {
            return Ok(None);
        };
        let found = if run == self.run {
            Found::ThisRun
        } else {
            Found::Earlier
        };
        // A transient failure of an earlier run is what a rerun is for: try it again.
        let stale = matches!(&outcome, Outcome::Failed(f) if f.kind.retry_on_rerun());
        if found == Found::Earlier && stale {
            return Ok(None);
        }
        Ok(Some((Arc::new(outcome), found)))
    }

    /// Record a finished lookup. Returns at once; the writer thread commits it.
    pub fn put(&self, key: &CallKey, outcome: &Arc<Outcome>) {
        if !self.role.keeps(outcome) {
            return;
        }
        self.pending
            .lock()
            .unwrap()
            .insert(key.clone(), outcome.clone());
        if let Some(tx) = &*self.tx.lock().unwrap() {
            // A send fails only if the writer died; `close` reports its error.
            let _ = tx.send((key.clone(), outcome.clone()));
        }
    }

    /// Commit everything put so far and make it durable. Later puts are dropped.
    pub fn close(&self) -> Result<(), StoreError> {
        self.tx.lock().unwrap().take();
        let writer = self.writer.lock().unwrap().take();
        match writer.map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => Err(StoreError::Sqlite {
                path: self.path.display().to_string(),
                message: "the writer thread panicked".into(),
            }),
            None => Ok(()),
        }
    }

    /// Whether any outcome was ever recorded.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let conn = self.reader.lock().unwrap();
        conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM outcomes)", [], |r| {
            r.get(0)
        })
        .map_err(|e| StoreError::Sqlite {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Close, then delete the file and SQLite's companions (`-wal`, `-shm`).
    pub fn remove(&self) -> Result<(), StoreError> {
        self.close()?;
        remove_files(&self.path);
        Ok(())
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Delete a store's files, if they exist (`--fresh`, and after a run that exits 0).
pub fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

fn write_loop(
    mut conn: Connection,
    rx: mpsc::Receiver<Record>,
    pending: Arc<Mutex<HashMap<CallKey, Arc<Outcome>>>>,
    run: i64,
    name: &str,
) -> Result<(), StoreError> {
    let err = |e: rusqlite::Error| StoreError::Sqlite {
        path: name.to_owned(),
        message: e.to_string(),
    };
    let mut last_durable = Instant::now();
    let mut batch = Vec::new();
    loop {
        let first = match rx.recv_timeout(DURABLE_EVERY) {
            Ok(item) => Some(item),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        if let Some(first) = first {
            batch.push(first);
            std::thread::sleep(GROUP_WAIT);
            batch.extend(rx.try_iter().take(MAX_GROUP - 1));
        }
        if !batch.is_empty() {
            let tx = conn.transaction().map_err(err)?;
            {
                let mut insert = tx
                    .prepare_cached(
                        "INSERT OR REPLACE INTO outcomes VALUES
                         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                    )
                    .map_err(err)?;
                for (key, outcome) in &batch {
                    write_outcome(&mut insert, key, outcome, run).map_err(err)?;
                }
            }
            tx.commit().map_err(err)?;
            let mut pending = pending.lock().unwrap();
            for (key, outcome) in batch.drain(..) {
                if pending.get(&key).is_some_and(|o| Arc::ptr_eq(o, &outcome)) {
                    pending.remove(&key);
                }
            }
            // A stall (a long checkpoint) swells both; give the memory back once it passes,
            // so a long run does not keep the high-water mark of its worst moment.
            let len = pending.len();
            if pending.capacity() > 4 * len + MAX_GROUP {
                pending.shrink_to(2 * len);
            }
            if batch.capacity() > MAX_GROUP {
                batch.shrink_to(MAX_GROUP);
            }
        }
        if last_durable.elapsed() >= DURABLE_EVERY {
            checkpoint(&conn).map_err(err)?;
            last_durable = Instant::now();
        }
    }
    // Closing: fold the WAL into the database and truncate it, leaving one compact file.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .map_err(err)
}

/// Copy the WAL into the database, fsyncing both: what was committed is now durable.
fn checkpoint(conn: &Connection) -> rusqlite::Result<()> {
    conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
}

fn write_outcome(
    insert: &mut rusqlite::CachedStatement<'_>,
    key: &CallKey,
    outcome: &Outcome,
    run: i64,
) -> rusqlite::Result<usize> {
    let none = Fields::default();
    let f = outcome.fields().unwrap_or(&none);
    let failure = outcome.failure();
    insert.execute(params![
        &*key.call_id,
        &*key.user_id,
        &*key.tenant_id,
        &*key.agent_id,
        outcome.status(),
        f.caller,
        f.called,
        f.media_ability,
        f.call_data,
        f.call_skill_id,
        f.call_skill,
        f.call_type,
        failure.and_then(|f| f.http_status),
        failure.map_or(0, |f| f.attempts),
        failure.map(|f| f.message.as_str()),
        run,
    ])
}

fn read_outcome(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Outcome, i64)> {
    let status: String = row.get(0)?;
    let run: i64 = row.get(11)?;
    let outcome = if status == "ok" {
        Outcome::Ok(Fields {
            caller: row.get(1)?,
            called: row.get(2)?,
            media_ability: row.get(3)?,
            call_data: row.get(4)?,
            call_skill_id: row.get(5)?,
            call_skill: row.get(6)?,
            call_type: row.get(7)?,
        })
    } else {
        let kind = LookupKind::parse(&status).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(
                0,
                rusqlite::types::Type::Text,
                format!("unknown status {status:?}").into(),
            )
        })?;
        Outcome::Failed(Failure {
            kind,
            http_status: row.get(8)?,
            attempts: row.get(9)?,
            message: row.get::<_, Option<String>>(10)?.unwrap_or_default(),
        })
    };
    Ok((outcome, run))
}
