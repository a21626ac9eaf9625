//! Outcomes kept on disk, keyed by call key: the run's journal (every outcome the run used,
//! so a rerun redoes nothing) and the optional cache shared across runs (`--cache`). Both are
//! SQLite databases with one table, which an operator can open with the sqlite3 shell.
//! A row is keyed by the call ID and 64 bits of the key's digest ([`KeyId`], which covers
//! the other three strings too): exports come in call-ID order, so rows are appended to the
//! table's B-tree instead of scattered over it (one page written per commit, not one per
//! row). The answer's fields are one compact blob ([`Fields::encode`]).
//!
//! One owner per file: writes go through one thread behind a bounded channel, which commits
//! whatever has arrived (group commit: what arrives during one commit, or in the millisecond
//! a small group waits for company, goes in the next, so a kill loses only the records being
//! gathered or committed) and ends on an explicit `Close`. It folds
//! the WAL in (a checkpoint, with fsync) at most once a second; a second thread does so when
//! the writer is idle, so that what was committed is durable within a second either way.
//! Reads are blocking SQLite calls: callers run them off the async thread, a batch of keys at
//! a time (`read.rs`). A write that fails is not retried: the store says so through
//! [`Store::failed`], and the engine stops the run.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::key::{CallKey, IdMap, KeyId};
use crate::outcome::{Fields, LookupKind, Outcome};
use read::{Claimed, Read, Span, Stored};

mod read;

/// `PRAGMA application_id`: marks the file as callinfo's ("CALL").
const APPLICATION_ID: i32 = 0x4341_4c4c;
/// `PRAGMA user_version`: bumped whenever the table's meaning changes. A file of another
/// version is refused, never misread. 2 added `stored_at`; 3 keys rows by the call ID and
/// the key's digest and packs the fields. Files of formats 1 and 2 are migrated.
pub const FORMAT_VERSION: i32 = 3;
/// How often committed outcomes are made durable (fsync via a WAL checkpoint).
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// Records committed in one transaction at most.
const MAX_GROUP: usize = 8192;
/// A commit of fewer records waits this long for more first.
const GATHER: Duration = Duration::from_millis(1);
const GATHER_UNTIL: usize = 256;
/// Records queued for the writer at most: a stalled disk slows the lookups down instead of
/// filling memory.
const QUEUE: usize = 4 * MAX_GROUP;
/// Batches of fewer keys to read are read one by one, not by a range scan.
const SCAN_FROM: usize = 32;
/// How long a write waits for another process holding a shared cache.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

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
        let digest = ring::digest::digest(&ring::digest::SHA256, app_key.as_bytes());
        let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        Environment {
            base_url: base_url.to_owned(),
            app_key_sha256: hex,
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
}

/// The table, format 3. `status` and `stored_at` stay plain columns, for `cache stats`,
/// `cache prune` and whoever opens the file with sqlite3.
const CREATE_OUTCOMES: &str = "CREATE TABLE IF NOT EXISTS outcomes (
    call_id TEXT NOT NULL, key_low INTEGER NOT NULL,
    status TEXT NOT NULL, answer BLOB,
    http_status INTEGER, attempts INTEGER NOT NULL, message TEXT,
    run INTEGER NOT NULL, stored_at INTEGER NOT NULL,
    PRIMARY KEY (call_id, key_low)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS strings (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE)";

/// Formats 1 and 2 kept the four key strings and one column per field: rewrite every row
/// into format 3, in one transaction.
fn migrate_to_v3(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch("BEGIN IMMEDIATE; ALTER TABLE outcomes RENAME TO outcomes_v2;")?;
    conn.execute_batch(CREATE_OUTCOMES)?;
    {
        let mut read = conn.prepare(
            "SELECT call_id, user_id, tenant_id, agent_id, status, caller, called,
                    media_ability, call_data, call_skill_id, call_skill, call_type,
                    http_status, attempts, message, run, stored_at FROM outcomes_v2",
        )?;
        let mut insert = conn.prepare(
            "INSERT OR REPLACE INTO outcomes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
        )?;
        let mut rows = read.query([])?;
        while let Some(r) = rows.next()? {
            let parts: [String; 4] = [r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?];
            let id = KeyId::of([&parts[0], &parts[1], &parts[2], &parts[3]]);
            let low = id.low64();
            let status: String = r.get(4)?;
            let answer = (status == "ok").then(|| {
                let mut blob = Vec::new();
                Fields {
                    caller: r.get(5).ok().flatten(),
                    called: r.get(6).ok().flatten(),
                    media_ability: r.get(7).ok().flatten(),
                    call_data: r.get(8).ok().flatten(),
                    call_skill_id: r.get(9).ok().flatten(),
                    call_skill: r.get(10).ok().flatten(),
                    call_type: r.get(11).ok().flatten(),
                }
                .encode(&mut blob);
                blob
            });
            insert.execute(params![
                parts[0],
                low,
                status,
                answer,
                r.get::<_, Option<i64>>(12)?,
                r.get::<_, i64>(13)?,
                r.get::<_, Option<String>>(14)?,
                r.get::<_, i64>(15)?,
                r.get::<_, i64>(16)?,
            ])?;
        }
    }
    conn.execute_batch("DROP TABLE outcomes_v2; COMMIT; VACUUM;")
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
}

/// Where a known outcome came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Found {
    /// Recorded by this run, or an earlier run's in a stretch of the journal this run has
    /// claimed already: a later row with the key is a duplicate.
    ThisRun,
    /// Recorded by an earlier run (journal) or job (cache). Reused from the journal, it is
    /// recorded again for this run (put), so that later rows with the key count as
    /// duplicates.
    Earlier,
    /// Recorded by an earlier run, in a stretch of the journal this read claimed: it counts
    /// as this run's from now on, with nothing to write (`read::Claimed`).
    Claimed,
    /// A transient failure of an earlier run: not reused, looked up again (what a rerun is
    /// for). Its outcome says how it failed.
    Stale,
}

type Pending = Arc<Mutex<IdMap<Arc<Outcome>>>>;
/// What a store knows of a key: the outcome, and whose it counts as ([`Found`]).
pub type Hit = Option<(Arc<Outcome>, Found)>;

/// A Bloom filter of the keys put into a store: "no" is certain, "maybe" is read from the
/// file. Fixed at 4 MiB (5 million keys give 5% of "maybe"s that are not, which then cost
/// the SELECT they would have cost anyway), so memory stays flat however many keys come.
/// Written here rather than taken from a crate: the keys are SHA-256 digests already, so
/// its three bit positions are bits of the key, where a crate would hash it again.
struct Seen {
    bits: Vec<std::sync::atomic::AtomicU64>,
}

impl Seen {
    const BITS_LOG2: u32 = 25;

    fn new() -> Seen {
        let words = (1usize << Self::BITS_LOG2) / 64;
        Seen {
            bits: (0..words).map(|_| Default::default()).collect(),
        }
    }

    fn positions(id: KeyId) -> impl Iterator<Item = usize> {
        let mask = (1u128 << Self::BITS_LOG2) - 1;
        (0..3).map(move |i| ((id.0 >> (i * Self::BITS_LOG2)) & mask) as usize)
    }

    fn insert(&self, id: KeyId) {
        for p in Self::positions(id) {
            self.bits[p / 64].fetch_or(1 << (p % 64), Ordering::Relaxed);
        }
    }

    fn may_have(&self, id: KeyId) -> bool {
        Self::positions(id)
            .all(|p| self.bits[p / 64].load(Ordering::Relaxed) & (1 << (p % 64)) != 0)
    }
}

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
    /// For a journal that was empty when opened: every key put since, so that a read of a
    /// key never put is answered without SQLite (a fresh run asks for every key once).
    seen: Option<Seen>,
    /// Whether a batch's keys are read by a range scan: until one reads more rows that were
    /// not asked for than rows that were (the input is not in the table's order).
    scan: AtomicBool,
    /// For a journal: the stretches of it whose every row this run has asked for.
    claimed: Option<Mutex<Claimed>>,
    tx: mpsc::Sender<Msg>,
    writer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
    failure: Arc<Broken>,
}

impl Store {
    pub fn open(path: &Path, role: Role, env: &Environment) -> Result<Store, StoreError> {
        let name = path.display().to_string();
        let err = sqlite_error(&name);
        private(path).map_err(|e| StoreError::Sqlite {
            path: name.clone(),
            message: e.to_string(),
        })?;
        let conn = Connection::open(path).map_err(&err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
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
            .map_err(&err)?;
        let fresh = app == 0 && version == 0;
        if !fresh && (app != APPLICATION_ID || !(1..=FORMAT_VERSION).contains(&version)) {
            return Err(StoreError::Incompatible {
                path: name.clone(),
                role: role.name(),
                found: if app == APPLICATION_ID { version } else { -1 },
            });
        }
        if version == 1 {
            // Entries from before `stored_at` count as stored now: their TTL starts today.
            conn.execute_batch(&format!(
                "ALTER TABLE outcomes ADD COLUMN stored_at INTEGER NOT NULL DEFAULT {}",
                now_ms()
            ))
            .map_err(&err)?;
        }
        wal_mode(&conn).map_err(&err)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(&err)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
             CREATE TABLE IF NOT EXISTS environment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT OR IGNORE INTO meta VALUES ('runs', 0);
             UPDATE meta SET value = value + 1 WHERE key = 'runs';",
        )
        .map_err(&err)?;
        if (1..=2).contains(&version) {
            migrate_to_v3(&conn).map_err(&err)?;
        } else {
            conn.execute_batch(CREATE_OUTCOMES).map_err(&err)?;
        }
        check_environment(&conn, env, role, &name, true)?;
        check_role(&conn, role, &name, true)?;
        conn.pragma_update(None, "application_id", APPLICATION_ID)
            .map_err(&err)?;
        conn.pragma_update(None, "user_version", FORMAT_VERSION)
            .map_err(&err)?;
        let run: i64 = conn
            .query_row("SELECT value FROM meta WHERE key = 'runs'", [], |r| {
                r.get(0)
            })
            .map_err(&err)?;

        let mut writer_conn = Connection::open(path).map_err(&err)?;
        writer_conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
        writer_conn
            .pragma_update(None, "synchronous", "NORMAL")
            .map_err(&err)?;
        // The writer checkpoints on its own clock (`write_loop`), not every 1000 pages.
        writer_conn
            .pragma_update(None, "wal_autocheckpoint", 0)
            .map_err(&err)?;
        let checkpoint_conn = Connection::open(path).map_err(&err)?;
        checkpoint_conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;

        let pending: Pending = Arc::default();
        let failure = Arc::new(Broken::default());
        let (tx, rx) = mpsc::channel(QUEUE);
        let spawn = |what: &str, f: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(format!("callinfo-{}-{what}", role.name()))
                .spawn(f)
                .map_err(|e| StoreError::Sqlite {
                    path: name.clone(),
                    message: e.to_string(),
                })
        };
        let writer = {
            let (pending, failure, name) = (pending.clone(), failure.clone(), name.clone());
            spawn(
                "writer",
                Box::new(move || {
                    if let Err(e) = write_loop(&mut writer_conn, rx, &pending, run) {
                        fail(&failure, &name, &writer_conn, e);
                    }
                }),
            )?
        };
        let stop = Arc::new(AtomicBool::new(false));
        let checkpointer = {
            let (stop, failure, name) = (stop.clone(), failure.clone(), name.clone());
            spawn(
                "checkpoint",
                Box::new(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::thread::park_timeout(DURABLE_EVERY);
                        if let Err(e) = checkpoint(&checkpoint_conn, "PASSIVE") {
                            fail(&failure, &name, &checkpoint_conn, e);
                            return;
                        }
                    }
                }),
            )?
        };
        let empty: bool = conn
            .query_row("SELECT NOT EXISTS (SELECT 1 FROM outcomes)", [], |r| {
                r.get(0)
            })
            .map_err(&err)?;
        Ok(Store {
            path: path.to_owned(),
            role,
            run,
            reader: Mutex::new(conn),
            pending,
            // Only a journal, which this run alone writes (it holds the lock): a cache
            // empty now may be filled by another job meanwhile.
            seen: (empty && role == Role::Journal).then(Seen::new),
            scan: AtomicBool::new(true),
            claimed: (role == Role::Journal).then(Mutex::default),
            tx,
            writer: Mutex::new(Some(writer)),
            checkpointer: Mutex::new(Some((stop, checkpointer))),
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
            // Put by this run and not yet committed: answered from memory.
            if let Some(pending) = self.pending(key.id) {
                found.push(Some((pending, Found::ThisRun)));
                continue;
            }
            // Never put, and the file had nothing when opened: not in it.
            if self.seen.as_ref().is_none_or(|s| s.may_have(key.id)) {
                ask.push((found.len(), key));
            }
            found.push(None);
        }
        let asked: Vec<&CallKey> = ask.iter().map(|(_, k)| *k).collect();
        let scan = asked.len() >= SCAN_FROM && self.scan.load(Ordering::Relaxed);
        // Held until the claims are made: two reads never claim the same stretch.
        let conn = self.reader.lock().unwrap();
        let Read { rows, spans, dense } = select(&conn, &self.path, |c| {
            if scan {
                read::scan(c, &asked)
            } else {
                read::points(c, asked.iter().copied())
            }
        })?;
        if !dense {
            self.scan.store(false, Ordering::Relaxed);
        }
        let (ttl, now) = (self.ttl(), now_ms());
        for ((at, _), row) in ask.iter().zip(rows) {
            found[*at] = row.and_then(|r| reusable(r, self.run, ttl, now));
        }
        if let Some(claimed) = &self.claimed {
            claim(&mut claimed.lock().unwrap(), &ask, &mut found, spans);
        }
        Ok(found)
    }

    fn ttl(&self) -> Option<Ttl> {
        match self.role {
            Role::Cache(ttl) => Some(ttl),
            Role::Journal => None,
        }
    }

    /// Record an outcome for this run. Waits only when the writer is far behind.
    pub async fn put(&self, key: &CallKey, outcome: &Arc<Outcome>) {
        if !self.role.keeps(outcome) {
            return;
        }
        if let Some(seen) = &self.seen {
            seen.insert(key.id);
        }
        self.pending.lock().unwrap().insert(key.id, outcome.clone());
        let record = (key.call_id.clone(), key.id, outcome.clone());
        // A send fails only once the writer has ended; `failed` has fired if it failed.
        let _ = self.tx.send(Msg::Put(record)).await;
    }

    /// Commit everything put so far, make it durable, and end both threads. Blocking.
    pub fn close(&self) -> Result<(), StoreError> {
        let _ = self.tx.blocking_send(Msg::Close);
        if let Some(writer) = self.writer.lock().unwrap().take() {
            let _ = writer.join();
        }
        if let Some((stop, thread)) = self.checkpointer.lock().unwrap().take() {
            stop.store(true, Ordering::Relaxed);
            thread.thread().unpark();
            let _ = thread.join();
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
        conn.query_row("SELECT NOT EXISTS (SELECT 1 FROM outcomes)", [], |r| {
            r.get(0)
        })
        .map_err(sqlite_error(&self.path.display().to_string()))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Closed explicitly on every path that keeps the file; this only ends the threads.
        let _ = self.tx.try_send(Msg::Close);
        if let Some((stop, thread)) = self.checkpointer.lock().unwrap().take() {
            stop.store(true, Ordering::Relaxed);
            thread.thread().unpark();
        }
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
        let name = path.display().to_string();
        let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(sqlite_error(&name))?;
        current_format(&conn, role, &name)?;
        check_environment(&conn, env, role, &name, false)?;
        check_role(&conn, role, &name, false)?;
        Ok(Some(Peek {
            path: path.to_owned(),
            conn,
            role,
        }))
    }

    /// For each key, whether a run would reuse the store's outcome instead of looking it up.
    pub fn reusable<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k CallKey>,
    ) -> Result<Vec<bool>, StoreError> {
        let ttl = match self.role {
            Role::Cache(ttl) => Some(ttl),
            Role::Journal => None,
        };
        let now = now_ms();
        Ok(select(&self.conn, &self.path, |c| read::points(c, keys))?
            .rows
            .into_iter()
            .map(|row| {
                row.and_then(|r| reusable(r, 0, ttl, now))
                    .is_some_and(|(_, found)| found != Found::Stale)
            })
            .collect())
    }
}

/// Each key's stored row, all read in one transaction (one set of file locks, not one per
/// key), by `read` (`read::scan` or `read::points`).
fn select(
    conn: &Connection,
    path: &Path,
    read: impl FnOnce(&Connection) -> rusqlite::Result<Read>,
) -> Result<Read, StoreError> {
    let name = path.display().to_string();
    let err = sqlite_error(&name);
    conn.execute_batch("BEGIN").map_err(&err)?;
    let read = read(conn);
    let ended = conn.execute_batch("COMMIT");
    match (read, ended) {
        (Ok(read), Ok(())) => Ok(read),
        (Err(e), _) | (_, Err(e)) => Err(err(e)),
    }
}

/// A rerun's reads of its journal: an earlier run's outcome in a stretch this run claimed
/// already is this run's (a duplicate); the stretches whose every row this read asked for
/// are kept, and the outcomes in them claimed. Writing each reused outcome again instead
/// (what is left for the others, `Found::Earlier`) took a rerun of a 1M-row journal from
/// 500k rows/s to 300k.
fn claim(claimed: &mut Claimed, ask: &[(usize, &CallKey)], found: &mut [Hit], spans: Vec<Span>) {
    let earlier = |found: &mut [Hit], to: Found, claimed: &Claimed| {
        for (at, key) in ask {
            if let Some((_, how @ Found::Earlier)) = &mut found[*at] {
                if claimed.contains(key) {
                    *how = to;
                }
            }
        }
    };
    earlier(found, Found::ThisRun, claimed);
    for span in spans {
        claimed.insert(span);
    }
    earlier(found, Found::Claimed, claimed);
}

/// A stored outcome as seen by run `this`: reused unless it is a transient failure of an
/// earlier run (which is what a rerun is for) or past its cache TTL.
fn reusable(row: Stored, this: i64, ttl: Option<Ttl>, now_ms: i64) -> Hit {
    let Stored {
        outcome,
        run: recorded,
        stored_ms,
    } = row;
    if ttl.is_some_and(|t| t.expired(&outcome, stored_ms, now_ms)) {
        return None;
    }
    let found = if recorded == this {
        Found::ThisRun
    } else {
        Found::Earlier
    };
    let stale = matches!(&outcome, Outcome::Failed(f) if f.kind.retry_on_rerun());
    if found == Found::Earlier && stale {
        return Some((Arc::new(outcome), Found::Stale));
    }
    Some((Arc::new(outcome), found))
}

/// An existing file of this version's format, or an error saying what it is.
fn current_format(conn: &Connection, role: Role, name: &str) -> Result<(), StoreError> {
    let pragma = |p| {
        conn.pragma_query_value(None, p, |r| r.get::<_, i32>(0))
            .unwrap_or(-1)
    };
    let (app, version) = (pragma("application_id"), pragma("user_version"));
    if app != APPLICATION_ID || version != FORMAT_VERSION {
        return Err(StoreError::Incompatible {
            path: name.to_owned(),
            role: role.name(),
            found: if app == APPLICATION_ID { version } else { -1 },
        });
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seen_never_forgets_a_key() {
        let seen = Seen::new();
        let ids: Vec<KeyId> = (0..100_000)
            .map(|i| KeyId::of([&format!("c{i}"), "u", "t", "a"]))
            .collect();
        for id in &ids {
            seen.insert(*id);
        }
        assert!(ids.iter().all(|id| seen.may_have(*id)));
        let strangers = (0..10_000)
            .filter(|i| seen.may_have(KeyId::of([&format!("x{i}"), "u", "t", "a"])))
            .count();
        assert!(strangers < 10, "{strangers} false maybes in 10000");
    }
}

fn sqlite_error(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Sqlite {
        path: path.to_owned(),
        message: e.to_string(),
    }
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

/// Record what the file is for in a new file; refuse a journal given as a cache (or the
/// reverse). A file from before the role was recorded is a journal if it holds an outcome
/// that no cache keeps.
fn check_role(conn: &Connection, role: Role, path: &str, record: bool) -> Result<(), StoreError> {
    let err = sqlite_error(path);
    let recorded: Option<String> = conn
        .query_row(
            "SELECT value FROM environment WHERE key = 'role'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(&err)?;
    let recorded = match recorded {
        Some(r) => r,
        None => {
            let journal_only: bool = conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM outcomes WHERE status NOT IN ('ok', 'not_found'))",
                    [],
                    |r| r.get(0),
                )
                .map_err(&err)?;
            match (journal_only, record) {
                (true, _) => Role::Journal.name().to_owned(),
                (false, true) => {
                    conn.execute(
                        "INSERT OR IGNORE INTO environment VALUES ('role', ?1)",
                        [role.name()],
                    )
                    .map_err(&err)?;
                    return Ok(());
                }
                (false, false) => return Ok(()),
            }
        }
    };
    if recorded != role.name() {
        return Err(StoreError::OtherRole {
            path: path.to_owned(),
            role: role.name(),
            recorded,
            remedy: match role {
                Role::Journal => "remove it, or pass --fresh",
                Role::Cache(_) => "give --cache a file of its own (a journal is not a cache)",
            },
        });
    }
    Ok(())
}

/// Record the environment in a new file; refuse a file recorded for another.
fn check_environment(
    conn: &Connection,
    env: &Environment,
    role: Role,
    path: &str,
    record: bool,
) -> Result<(), StoreError> {
    let err = sqlite_error(path);
    let get = |key: &str| -> Result<Option<String>, StoreError> {
        conn.query_row("SELECT value FROM environment WHERE key = ?1", [key], |r| {
            r.get(0)
        })
        .optional()
        .map_err(&err)
    };
    let recorded = match (get("base_url")?, get("app_key_sha256")?) {
        (Some(base_url), Some(app_key_sha256)) => Environment {
            base_url,
            app_key_sha256,
        },
        _ if !record => return Ok(()),
        _ => {
            conn.execute(
                "INSERT OR REPLACE INTO environment VALUES ('base_url', ?1), ('app_key_sha256', ?2)",
                [&env.base_url, &env.app_key_sha256],
            )
            .map_err(&err)?;
            return Ok(());
        }
    };
    if recorded != *env {
        return Err(StoreError::OtherEnvironment {
            path: path.to_owned(),
            role: role.name(),
            recorded: recorded.describe(),
            now: env.describe(),
            remedy: role.remedy(),
        });
    }
    Ok(())
}

fn write_loop(
    conn: &mut Connection,
    mut rx: mpsc::Receiver<Msg>,
    pending: &Pending,
    run: i64,
) -> rusqlite::Result<()> {
    let mut batch = Vec::new();
    let mut closing = false;
    let mut checkpointed = std::time::Instant::now();
    let mut strings = Interner::load(conn)?;
    while !closing {
        match rx.blocking_recv() {
            Some(Msg::Put(record)) => batch.push(record),
            Some(Msg::Close) | None => closing = true,
        }
        let mut drain = |batch: &mut Vec<Record>| {
            while batch.len() < MAX_GROUP {
                match rx.try_recv() {
                    Ok(Msg::Put(record)) => batch.push(record),
                    Ok(Msg::Close) => return true,
                    Err(_) => break,
                }
            }
            false
        };
        if !closing {
            closing = drain(&mut batch);
        }
        // A few records would each cost a commit of their own (its locks and a page of
        // WAL): gather for a millisecond first. A kill loses at most that much more.
        if !closing && batch.len() < GATHER_UNTIL {
            std::thread::sleep(GATHER);
            closing = drain(&mut batch);
        }
        if batch.is_empty() {
            continue;
        }
        // Immediate: the write lock is taken (waiting on another job's commit) before
        // anything is read, so a second job on one cache never meets a stale snapshot.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT OR REPLACE INTO outcomes VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            // Another job on the same cache file may have added the text since this one
            // loaded the table: then its number is the one to use.
            let mut add = tx.prepare_cached(
                "INSERT INTO strings (text) VALUES (?1)
                 ON CONFLICT (text) DO UPDATE SET text = excluded.text RETURNING id",
            )?;
            let now = now_ms();
            let mut blob = Vec::with_capacity(128);
            for (call_id, key, outcome) in &batch {
                blob.clear();
                if let Some(f) = outcome.fields() {
                    let mut failed = None;
                    f.encode_with(&mut blob, &mut |t| match strings.id(t, &mut add) {
                        Ok(id) => id,
                        Err(e) => {
                            failed = Some(e);
                            None
                        }
                    });
                    if let Some(e) = failed {
                        return Err(e);
                    }
                }
                write_outcome(&mut insert, &blob, (call_id, *key), outcome, run, now)?;
            }
        }
        tx.commit()?;
        let mut pending = pending.lock().unwrap();
        for (_, key, outcome) in batch.drain(..) {
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
        if batch.capacity() > MAX_GROUP {
            batch.shrink_to(MAX_GROUP);
        }
        // While records keep coming, only the writer itself can fold the whole WAL in
        // between two commits, which lets the next commit start the WAL over: a checkpoint
        // from another connection always finds new frames, and the WAL would grow all run.
        if checkpointed.elapsed() >= DURABLE_EVERY {
            checkpoint(conn, "PASSIVE")?;
            checkpointed = std::time::Instant::now();
        }
    }
    // Closing: fold the WAL into the database and truncate it, leaving one compact file.
    checkpoint(conn, "TRUNCATE")
}

/// The writer's half of the `strings` table: text that repeats from call to call (a skill's
/// name, call data an IVR flow sets) is stored once and written as its number. Text is
/// interned the second time it is seen, so text unique to one call stays in its row, and
/// at most [`Interner::MAX`] texts are (memory stays bounded; past it, text stays inline).
struct Interner {
    ids: HashMap<Box<str>, i64>,
    /// Hashes of texts seen once.
    once: HashSet<u64>,
}

impl Interner {
    const MAX: usize = 1 << 16;
    const ONCE_MAX: usize = 1 << 18;

    fn load(conn: &Connection) -> rusqlite::Result<Interner> {
        let mut ids = HashMap::new();
        let mut stmt = conn.prepare("SELECT id, text FROM strings LIMIT ?1")?;
        let mut rows = stmt.query([Self::MAX as i64])?;
        while let Some(r) = rows.next()? {
            ids.insert(r.get::<_, String>(1)?.into_boxed_str(), r.get(0)?);
        }
        Ok(Interner {
            ids,
            once: HashSet::new(),
        })
    }

    /// The number for `text`, adding it (in the writer's transaction) on its second sighting.
    fn id(
        &mut self,
        text: &str,
        add: &mut rusqlite::CachedStatement<'_>,
    ) -> rusqlite::Result<Option<u64>> {
        if let Some(&id) = self.ids.get(text) {
            return Ok(Some(id as u64));
        }
        if self.ids.len() >= Self::MAX {
            return Ok(None);
        }
        let hash = std::hash::BuildHasher::hash_one(
            &std::hash::BuildHasherDefault::<std::hash::DefaultHasher>::default(),
            text,
        );
        if self.once.insert(hash) {
            if self.once.len() > Self::ONCE_MAX {
                self.once.clear();
            }
            return Ok(None);
        }
        let id: i64 = add.query_row([text], |r| r.get(0))?;
        self.ids.insert(text.into(), id);
        Ok(Some(id as u64))
    }
}

/// Switch a file to WAL. Two jobs opening one new cache file at the same moment: the
/// switch needs the file to itself and does not wait for the other's open (SQLite's busy
/// handler is not asked), so it is retried here, as the busy handler would, for as long.
fn wal_mode(conn: &Connection) -> rusqlite::Result<()> {
    let started = std::time::Instant::now();
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(f, _))
                if matches!(
                    f.code,
                    rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
                ) && started.elapsed() < BUSY_TIMEOUT =>
            {
                std::thread::sleep(Duration::from_millis(5 + fastrand::u64(0..20)));
            }
            done => return done,
        }
    }
}

/// Copy the WAL into the database, fsyncing both: what was committed is now durable.
fn checkpoint(conn: &Connection, mode: &str) -> rusqlite::Result<()> {
    conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |_| Ok(()))
}

/// `blob`: the fields as encoded, for an `ok`.
fn write_outcome(
    insert: &mut rusqlite::CachedStatement<'_>,
    blob: &[u8],
    (call_id, key): (&str, KeyId),
    outcome: &Outcome,
    run: i64,
    stored_ms: i64,
) -> rusqlite::Result<usize> {
    let failure = outcome.failure();
    let answer = outcome.fields().map(|_| blob);
    insert.execute(params![
        call_id,
        key.low64(),
        outcome.status(),
        answer,
        failure.and_then(|f| f.http_status),
        failure.map_or(0, |f| f.attempts),
        failure.map(|f| f.message.as_str()),
        run,
        stored_ms,
    ])
}

/// Create a store file readable by its owner only, whatever the umask: it holds every
/// caller and called number. SQLite gives its `-wal` and `-shm` files the same mode.
fn private(path: &Path) -> std::io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(path)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    #[cfg(not(unix))]
    let _ = path;
    Ok(())
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
    let name = path.display().to_string();
    if !path.exists() {
        return Err(StoreError::Sqlite {
            path: name,
            message: "no such cache file".into(),
        });
    }
    let conn = Connection::open(path).map_err(sqlite_error(&name))?;
    conn.busy_timeout(BUSY_TIMEOUT)
        .map_err(sqlite_error(&name))?;
    current_format(&conn, Role::Cache(Ttl::default()), &name)?;
    check_role(&conn, Role::Cache(Ttl::default()), &name, false)?;
    Ok(conn)
}

/// The expiry condition of `ttl` in SQL, for `now`.
fn expired_sql(ttl: &Ttl, now: i64) -> String {
    format!(
        "(status = 'ok' AND stored_at <= {}) OR (status <> 'ok' AND stored_at <= {})",
        now - ttl.ok.as_millis() as i64,
        now - ttl.not_found.as_millis() as i64
    )
}

pub fn cache_stats(path: &Path, ttl: &Ttl) -> Result<CacheStats, StoreError> {
    let conn = open_cache(path)?;
    let name = path.display().to_string();
    let sql = format!(
        "SELECT COALESCE(SUM(status = 'ok'), 0), COALESCE(SUM(status <> 'ok'), 0),
                COALESCE(SUM({}), 0), MIN(stored_at), MAX(stored_at) FROM outcomes",
        expired_sql(ttl, now_ms())
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
        .map_err(sqlite_error(&name))?;
    stats.bytes = std::fs::metadata(path).map_or(0, |m| m.len());
    Ok(stats)
}

/// Delete the expired entries, then compact the file. Returns how many went.
pub fn cache_prune(path: &Path, ttl: &Ttl) -> Result<u64, StoreError> {
    let conn = open_cache(path)?;
    let name = path.display().to_string();
    let gone = conn
        .execute(
            &format!("DELETE FROM outcomes WHERE {}", expired_sql(ttl, now_ms())),
            [],
        )
        .map_err(sqlite_error(&name))?;
    conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
        .map_err(sqlite_error(&name))?;
    Ok(gone as u64)
}
