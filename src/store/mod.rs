//! Outcomes kept on disk, keyed by call key: the run's journal (every outcome the run used,
//! so a rerun redoes nothing) and the optional cache shared across runs (`--cache`). Both are
//! SQLite databases with one plain table, one row per key, which an operator can open with
//! the sqlite3 shell (`file.rs` says what a file holds and migrates older ones).
//!
//! One owner per file: writes go through one thread behind a bounded channel, which commits
//! whatever has arrived in one transaction (group commit: what arrives during one commit goes
//! in the next) and ends on an explicit `Close`. A kill loses only the records not yet
//! committed; a power cut, at most what SQLite had not yet checkpointed (its default, every
//! 1000 pages): the rerun looks those up again. Not fsyncing every commit
//! (`synchronous = NORMAL`) saves a third of the CPU of an unlimited run (72-78 us a row
//! against 48-53, measured on 20,000 rows: the fsyncs' system time). Until its commit, a
//! record is answered from memory (`pending`). Reads are blocking SQLite calls: callers run
//! them off the async thread, a batch of keys in one read transaction. A write that fails is
//! not retried: the store says so through [`Store::failed`], and the engine stops the run.
//!
//! Two jobs on one cache file each write through their own writer: SQLite's file lock takes
//! their commits in turn (a write waits up to [`file::BUSY_TIMEOUT`] for the other's).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::key::{CallKey, IdMap, KeyId};
use crate::outcome::{Failure, Fields, LookupKind, Outcome};
use file::{sqlite_error, COLUMNS, FORMAT_VERSION, INSERT};

mod file;

/// Records committed in one transaction at most.
const MAX_GROUP: usize = 8192;
/// Records queued for the writer at most: a stalled disk slows the lookups down instead of
/// filling memory.
const QUEUE: usize = 4 * MAX_GROUP;
/// A group of fewer records waits this long for company first: each commit costs its file
/// locks and WAL pages, and an unlimited 100k-row run took up to 1.5x the CPU without the
/// wait (6.3 and 4.6 s user+sys against 4.1 and 4.0). A kill loses at most that much more.
const GATHER: Duration = Duration::from_millis(1);
const GATHER_UNTIL: usize = 256;

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: {message}")]
    Sqlite { path: String, message: String },
    #[error("{path}: not a callinfo {role} (or written by an incompatible version: format {found}, this callinfo reads {FORMAT_VERSION}); remove it, or pass --fresh")]
    Incompatible {
        path: String,
        role: &'static str,
        found: i32,
    },
    #[error("{path}: this {role} holds answers from {recorded}, not from {now}; they are not reused for another environment: {remedy}")]
    OtherEnvironment {
        path: String,
        role: &'static str,
        recorded: String,
        now: String,
        remedy: &'static str,
    },
    #[error("{path}: this is a callinfo {recorded}, not a {role}: {remedy}")]
    OtherRole {
        path: String,
        role: &'static str,
        recorded: String,
        remedy: &'static str,
    },
    #[error("{path}: cannot record lookups, so the run stopped (the lookups already recorded are kept): {message}")]
    WriteFailed { path: String, message: String },
    #[error("{path}: another callinfo run (PID {pid}) is working on this output; wait for it to end, or stop it")]
    Locked { path: String, pid: String },
}

/// Which API the answers came from: the base URL and a hash of the app key (the key itself
/// is not stored). Answers from one tenant's environment are never reused for another.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Environment {
    pub base_url: String,
    pub app_key_sha256: String,
}

impl Environment {
    pub fn new(base_url: &str, app_key: &str) -> Environment {
        Environment {
            base_url: base_url.to_owned(),
            app_key_sha256: crate::key::sha256_hex(app_key, 32),
        }
    }

    fn describe(&self) -> String {
        format!(
            "{} with app key sha256:{}",
            self.base_url,
            // A file not of ours may record anything here: never slice past its end.
            self.app_key_sha256
                .get(..12)
                .unwrap_or(&self.app_key_sha256)
        )
    }
}

/// One finished lookup on its way to the writer thread: the call ID, the key's digest.
type Record = (Box<str>, KeyId, Arc<Outcome>);

enum Msg {
    Put(Record),
    /// Commit what came before, fold the WAL in, and end.
    Close,
}

/// What the store is for, which decides what it keeps and what it gives back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Every outcome of this job. Transient failures of earlier runs are not reused: a rerun
    /// tries them again.
    Journal,
    /// Only definitive answers (`ok`, `not_found`), shared across jobs, each for its TTL.
    Cache(Ttl),
}

/// How long a cached answer is trusted: `--cache-ttl`, `--cache-not-found-ttl`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ttl {
    pub ok: Duration,
    pub not_found: Duration,
}

impl Default for Ttl {
    fn default() -> Self {
        Ttl {
            ok: Duration::from_secs(30 * 86400),
            not_found: Duration::from_secs(86400),
        }
    }
}

impl Ttl {
    /// Whether an outcome stored at `stored_ms` (Unix milliseconds) is past its TTL.
    fn expired(&self, outcome: &Outcome, stored_ms: i64, now_ms: i64) -> bool {
        let ttl = match outcome {
            Outcome::Ok(_) => self.ok,
            Outcome::Failed(_) => self.not_found,
        };
        now_ms.saturating_sub(stored_ms) >= ttl.as_millis().min(i64::MAX as u128) as i64
    }

    /// The expiry condition in SQL, for `now`.
    fn expired_sql(&self, now: i64) -> String {
        format!(
            "(status = 'ok' AND stored_at <= {}) OR (status <> 'ok' AND stored_at <= {})",
            now - self.ok.as_millis() as i64,
            now - self.not_found.as_millis() as i64
        )
    }
}

/// Unix time in milliseconds: when an outcome is stored.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Journal => "journal",
            Role::Cache(_) => "cache",
        }
    }

    fn keeps(self, outcome: &Outcome) -> bool {
        match (self, outcome) {
            (Role::Journal, _) | (Role::Cache(_), Outcome::Ok(_)) => true,
            (Role::Cache(_), Outcome::Failed(f)) => f.kind == LookupKind::NotFound,
        }
    }

    fn remedy(self) -> &'static str {
        match self {
            Role::Journal => "pass --fresh to start this output over",
            Role::Cache(_) => "use another --cache path for this environment",
        }
    }

    fn ttl(self) -> Option<Ttl> {
        match self {
            Role::Cache(ttl) => Some(ttl),
            Role::Journal => None,
        }
    }
}

/// Where a known outcome came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Recorded by this run: a later row with the key is a duplicate.
    ThisRun,
    /// Recorded by an earlier run (journal) or job (cache). Reused from the journal, it is
    /// recorded again for this run (put), so that later rows with the key count as
    /// duplicates.
    Earlier,
    /// A transient failure of an earlier run: not reused, looked up again (what a rerun is
    /// for). Its outcome says how it failed.
    Stale,
}

type Pending = Arc<Mutex<IdMap<Arc<Outcome>>>>;
/// What a store knows of a key: the outcome, and whose it counts as ([`Found`]).
pub type Hit = Option<(Arc<Outcome>, Found)>;

/// The first write error, for the engine to report; `token` fires with it.
#[derive(Default)]
struct Broken {
    token: CancellationToken,
    error: Mutex<Option<StoreError>>,
}

pub struct Store {
    path: PathBuf,
    role: Role,
    /// This run's number in the file: outcomes of this run are reused whatever their kind.
    run: i64,
    reader: Mutex<Connection>,
    /// Put but not yet committed: visible to reads until the writer's commit is.
    pending: Pending,
    tx: mpsc::Sender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    failure: Arc<Broken>,
}

impl Store {
    pub fn open(path: &Path, role: Role, env: &Environment) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        let err = sqlite_error(&name);
        let (reader, run) = file::open(path, role, env)?;
        let mut writer_conn = Connection::open(path).map_err(&err)?;
        writer_conn.busy_timeout(file::BUSY_TIMEOUT).map_err(&err)?;
        writer_conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(&err)?;
        let pending: Pending = Arc::default();
        let failure = Arc::new(Broken::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let writer = {
            let (pending, failure, path) = (pending.clone(), failure.clone(), name.clone());
            std::thread::Builder::new()
                .name(format!("callinfo-{}-writer", role.name()))
                .spawn(move || {
                    if let Err(e) = write_loop(&mut writer_conn, rx, &pending, run) {
                        fail(&failure, &path, &writer_conn, e);
                    }
                })
                .map_err(|e| StoreError::Sqlite {
                    path: name.clone(),
                    message: e.to_string(),
                })?
        };
        Ok(Store {
            path: path.to_owned(),
            role,
            run,
            reader: Mutex::new(reader),
            pending,
            tx,
            writer: Mutex::new(Some(writer)),
            failure,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Fires when a write failed; [`Store::error`] then says why.
    pub fn failed(&self) -> &CancellationToken {
        &self.failure.token
    }

    pub fn error(&self) -> Option<StoreError> {
        self.failure.error.lock().unwrap().clone()
    }

    /// An outcome put by this run and not yet committed. In memory: cheap on any thread.
    pub fn pending(&self, key: KeyId) -> Option<Arc<Outcome>> {
        self.pending.lock().unwrap().get(&key).cloned()
    }

    /// The outcomes this store has for `keys` and would have us reuse. Blocking (SQLite
    /// reads): run it off the async thread.
    pub fn get_many<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k CallKey>,
    ) -> Result<Vec<Hit>, StoreError> {
        // Memory first, for every key, and only then the file. A record leaves `pending`
        // once it is committed, so a key not pending now is in any snapshot taken after
        // now: the read transaction's snapshot starts after this pass, never before it.
        let mut found: Vec<Hit> = Vec::new();
        let mut ask: Vec<(usize, &CallKey)> = Vec::new();
        for key in keys {
            match self.pending(key.id) {
                Some(outcome) => found.push(Some((outcome, Found::ThisRun))),
                None => {
                    ask.push((found.len(), key));
                    found.push(None);
                }
            }
        }
        let conn = self.reader.lock().unwrap();
        let stored = read(&conn, &self.path, ask.iter().map(|(_, k)| *k))?;
        let (ttl, now) = (self.role.ttl(), now_ms());
        for ((at, _), row) in ask.into_iter().zip(stored) {
            found[at] = row.and_then(|r| reusable(r, self.run, ttl, now));
        }
        Ok(found)
    }

    /// Record an outcome for this run. Waits only when the writer is far behind.
    pub async fn put(&self, key: &CallKey, outcome: &Arc<Outcome>) {
        if !self.role.keeps(outcome) {
            return;
        }
        self.pending.lock().unwrap().insert(key.id, outcome.clone());
        let record = (key.call_id.clone(), key.id, outcome.clone());
        // A send fails only once the writer has ended; `failed` has fired if it failed.
        let _ = self.tx.send(Msg::Put(record)).await;
    }

    /// Commit everything put so far, fold the WAL in, and end the writer. Blocking.
    pub fn close(&self) -> Result<(), StoreError> {
        let _ = self.tx.blocking_send(Msg::Close);
        if let Some(writer) = self.writer.lock().unwrap().take() {
            let _ = writer.join();
        }
        match self.error() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Outcomes recorded so far (committed).
    pub fn count(&self) -> Result<u64, StoreError> {
        let conn = self.reader.lock().unwrap();
        conn.query_row("SELECT COUNT(*) FROM outcomes", [], |r| r.get::<_, i64>(0))
            .map(|n| n as u64)
            .map_err(sqlite_error(&self.path.display().to_string()))
    }

    /// Whether any outcome was ever recorded.
    pub fn is_empty(&self) -> Result<bool, StoreError> {
        let conn = self.reader.lock().unwrap();
        let sql = "SELECT NOT EXISTS (SELECT 1 FROM outcomes)";
        conn.query_row(sql, [], |r| r.get(0))
            .map_err(sqlite_error(&self.path.display().to_string()))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closed explicitly on every path that keeps the file; this only ends the writer.
        let _ = self.tx.try_send(Msg::Close);
    }
}

/// A look into an existing store that changes nothing in it (`--dry-run`).
pub struct Peek {
    path: PathBuf,
    conn: Connection,
    role: Role,
}

impl Peek {
    /// `None` when there is no such file yet.
    pub fn open(path: &Path, role: Role, env: &Environment) -> Result<Option<Peek>, StoreError> {
        if !path.exists() {
            return Ok(None);
        }
        Ok(Some(Peek {
            path: path.to_owned(),
            conn: file::open_existing(path, role, Some(env))?,
            role,
        }))
    }

    /// For each key, whether a run would reuse the store's outcome instead of looking it up.
    pub fn reusable<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k CallKey>,
    ) -> Result<Vec<bool>, StoreError> {
        let now = now_ms();
        Ok(read(&self.conn, &self.path, keys)?
            .into_iter()
            .map(|row| {
                row.and_then(|r| reusable(r, 0, self.role.ttl(), now))
                    .is_some_and(|(_, found)| found != Found::Stale)
            })
            .collect())
    }
}

/// A row of the table, as read.
struct Stored {
    outcome: Outcome,
    run: i64,
    stored_ms: i64,
}

/// Each key's stored row, all read in one transaction (one set of file locks and one
/// snapshot, not one per key).
fn read<'k>(
    conn: &Connection,
    path: &Path,
    keys: impl IntoIterator<Item = &'k CallKey>,
) -> Result<Vec<Option<Stored>>, StoreError> {
    let name = path.display().to_string();
    let err = sqlite_error(&name);
    let select = |conn: &Connection| -> rusqlite::Result<Vec<Option<Stored>>> {
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM outcomes WHERE call_id = ?1 AND key_low = ?2"
        ))?;
        keys.into_iter()
            .map(|key| {
                stmt.query_row(params![&*key.call_id, key.id.low64()], stored)
                    .optional()
            })
            .collect()
    };
    conn.execute_batch("BEGIN").map_err(&err)?;
    let rows = select(conn);
    let ended = conn.execute_batch("COMMIT");
    match (rows, ended) {
        (Ok(rows), Ok(())) => Ok(rows),
        (Err(e), _) | (_, Err(e)) => Err(err(e)),
    }
}

/// A row of [`COLUMNS`].
fn stored(r: &rusqlite::Row<'_>) -> rusqlite::Result<Stored> {
    let status: String = r.get(0)?;
    let outcome = if status == "ok" {
        Outcome::Ok(Fields {
            caller: r.get(1)?,
            called: r.get(2)?,
            media_ability: r.get(3)?,
            call_data: r.get(4)?,
            call_skill_id: r.get(5)?,
            call_skill: r.get(6)?,
            call_type: r.get(7)?,
        })
    } else {
        let kind = LookupKind::parse(&status).ok_or_else(|| {
            let what = format!("unknown status {status:?}");
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, what.into())
        })?;
        Outcome::Failed(Failure {
            kind,
            http_status: r.get(8)?,
            attempts: r.get(9)?,
            message: r.get::<_, Option<String>>(10)?.unwrap_or_default(),
        })
    };
    Ok(Stored {
        outcome,
        run: r.get(11)?,
        stored_ms: r.get(12)?,
    })
}

/// A stored outcome as seen by run `this`: reused unless it is a transient failure of an
/// earlier run (which is what a rerun is for) or past its cache TTL.
fn reusable(row: Stored, this: i64, ttl: Option<Ttl>, now_ms: i64) -> Hit {
    if ttl.is_some_and(|t| t.expired(&row.outcome, row.stored_ms, now_ms)) {
        return None;
    }
    let stale = matches!(&row.outcome, Outcome::Failed(f) if f.kind.retry_on_rerun());
    let found = match (row.run == this, stale) {
        (true, _) => Found::ThisRun,
        (false, false) => Found::Earlier,
        (false, true) => Found::Stale,
    };
    Some((Arc::new(row.outcome), found))
}

/// The writer thread: commit what has arrived, one transaction per group, until `Close`;
/// then fold the WAL into the database and truncate it, leaving one compact file.
fn write_loop(
    conn: &mut Connection,
    mut rx: mpsc::Receiver<Msg>,
    pending: &Pending,
    run: i64,
) -> rusqlite::Result<()> {
    let mut group: Vec<Record> = Vec::new();
    let mut open = true;
    while open {
        match rx.blocking_recv() {
            Some(Msg::Put(record)) => group.push(record),
            Some(Msg::Close) | None => open = false,
        }
        let mut gather = |group: &mut Vec<Record>, open: &mut bool| {
            while *open && group.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Msg::Put(record)) => group.push(record),
                    Ok(Msg::Close) => *open = false,
                    Err(_) => break,
                }
            }
        };
        gather(&mut group, &mut open);
        if open && group.len() < GATHER_UNTIL {
            std::thread::sleep(GATHER);
            gather(&mut group, &mut open);
        }
        if group.is_empty() {
            continue;
        }
        commit(conn, &group, run)?;
        let mut pending = pending.lock().unwrap();
        for (_, key, outcome) in group.drain(..) {
            if pending.get(&key).is_some_and(|o| Arc::ptr_eq(o, &outcome)) {
                pending.remove(&key);
            }
        }
        // A stall swells both; give the memory back once it passes, so a long run does not
        // keep the high-water mark of its worst moment.
        let len = pending.len();
        if pending.capacity() > 4 * len + MAX_GROUP {
            pending.shrink_to(2 * len);
        }
        group.shrink_to(MAX_GROUP);
    }
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
}

/// One group of records in one transaction. Immediate: the write lock is taken (waiting
/// on another job's commit) before anything is read.
fn commit(conn: &mut Connection, group: &[Record], run: i64) -> rusqlite::Result<()> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let stored_at = now_ms();
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for (call_id, key, outcome) in group {
            let (f, failure) = (outcome.fields(), outcome.failure());
            insert.execute(params![
                call_id,
                key.low64(),
                outcome.status(),
                f.and_then(|f| f.caller.as_deref()),
                f.and_then(|f| f.called.as_deref()),
                f.and_then(|f| f.media_ability),
                f.and_then(|f| f.call_data.as_deref()),
                f.and_then(|f| f.call_skill_id),
                f.and_then(|f| f.call_skill.as_deref()),
                f.and_then(|f| f.call_type),
                failure.and_then(|f| f.http_status),
                failure.map_or(0, |f| f.attempts),
                failure.map(|f| f.message.as_str()),
                run,
                stored_at,
            ])?;
        }
    }
    tx.commit()
}

/// Record the first write error, with the OS's reason where SQLite has one ("disk I/O
/// error" alone does not say that the disk is full).
fn fail(failure: &Broken, path: &str, conn: &Connection, e: rusqlite::Error) {
    // SAFETY: `handle` is the live connection of `conn`; sqlite3_system_errno only reads it.
    let errno = unsafe { rusqlite::ffi::sqlite3_system_errno(conn.handle()) };
    let message = match errno {
        0 => e.to_string(),
        n => format!("{e} ({})", std::io::Error::from_raw_os_error(n)),
    };
    let mut slot = failure.error.lock().unwrap();
    if slot.is_none() {
        *slot = Some(StoreError::WriteFailed {
            path: path.to_owned(),
            message,
        });
    }
    failure.token.cancel();
}

/// Run blocking store work off the async thread.
pub async fn blocking<T: Send + 'static, E: Send + 'static>(
    f: impl FnOnce() -> Result<T, E> + Send + 'static,
) -> Result<T, E> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| std::panic::resume_unwind(e.into_panic()))
}

/// Delete a store's files, if they exist (`--fresh`, and a journal with nothing left to do).
pub fn remove_files(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// What `callinfo cache stats` shows.
#[derive(Debug, Default)]
pub struct CacheStats {
    pub ok: i64,
    pub not_found: i64,
    pub expired: i64,
    /// Unix milliseconds of the oldest and newest entries.
    pub oldest_ms: Option<i64>,
    pub newest_ms: Option<i64>,
    pub bytes: u64,
}

/// Open an existing cache for `cache stats|prune`: it must be one.
fn open_cache(path: &Path) -> Result<Connection, StoreError> {
    if !path.exists() {
        return Err(StoreError::Sqlite {
            path: path.display().to_string(),
            message: "no such cache file".into(),
        });
    }
    file::open_existing(path, Role::Cache(Ttl::default()), None)
}

pub fn cache_stats(path: &Path, ttl: &Ttl) -> Result<CacheStats, StoreError> {
    let conn = open_cache(path)?;
    let sql = format!(
        "SELECT COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(status <> 'ok'), 0),
                COALESCE(SUM({}), 0), MIN(stored_at), MAX(stored_at) FROM outcomes",
        ttl.expired_sql(now_ms())
    );
    let mut stats = conn
        .query_row(&sql, [], |r| {
            Ok(CacheStats {
                ok: r.get(0)?,
                not_found: r.get(1)?,
                expired: r.get(2)?,
                oldest_ms: r.get(3)?,
                newest_ms: r.get(4)?,
                bytes: 0,
            })
        })
        .map_err(sqlite_error(&path.display().to_string()))?;
    stats.bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    Ok(stats)
}

/// Delete the expired entries, then compact the file. Returns how many went.
pub fn cache_prune(path: &Path, ttl: &Ttl) -> Result<u64, StoreError> {
    let conn = open_cache(path)?;
    let name = path.display().to_string();
    let err = sqlite_error(&name);
    let sql = format!("DELETE FROM outcomes WHERE {}", ttl.expired_sql(now_ms()));
    let gone = conn.execute(&sql, []).map_err(&err)?;
    conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(&err)?;
    Ok(gone as u64)
}
