//! A store file as SQLite holds it: its table, what it records of itself (format, role,
//! environment), and the one place where files of earlier formats are brought up to this
//! one. Everything here runs once, when a file is opened.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OptionalExtension};

use super::{Environment, Role, StoreError};
use crate::key::KeyId;
use crate::outcome::Fields;

/// `PRAGMA application_id`: marks the file as callinfo's ("CALL").
const APPLICATION_ID: i32 = 0x4341_4c4c;
/// `PRAGMA user_version`: bumped whenever the table's meaning changes. A file of another
/// version is refused, never misread. 2 added `stored_at`; 3 keyed rows by the call ID and
/// the key's digest and packed the fields into a blob; 4 keeps that key and gives every
/// field its own column again. Files of formats 1 to 3 are migrated ([`migrate`]).
pub const FORMAT_VERSION: i32 = 4;
/// How long a write waits for another process holding a shared cache.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// The table. A row is keyed by the call ID and 64 bits of the key's digest ([`KeyId`],
/// which covers the other three strings too): exports come in call-ID order, so rows are
/// appended to the table's B-tree instead of scattered over it. Every other column is
/// plain, for `cache stats`, `cache prune` and whoever opens the file with sqlite3.
const CREATE_OUTCOMES: &str = "CREATE TABLE IF NOT EXISTS outcomes (
    call_id TEXT NOT NULL, key_low INTEGER NOT NULL,
    status TEXT NOT NULL, caller TEXT, called TEXT, media_ability INTEGER, call_data TEXT,
    call_skill_id INTEGER, call_skill TEXT, call_type INTEGER,
    http_status INTEGER, attempts INTEGER NOT NULL, message TEXT,
    run INTEGER NOT NULL, stored_at INTEGER NOT NULL,
    PRIMARY KEY (call_id, key_low)
) WITHOUT ROWID";

/// Every column after the key, in the table's order: what reads select and writes bind.
pub const COLUMNS: &str = "status, caller, called, media_ability, call_data, call_skill_id, \
    call_skill, call_type, http_status, attempts, message, run, stored_at";
pub const INSERT: &str = "INSERT OR REPLACE INTO outcomes VALUES \
    (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

pub fn sqlite_error(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
    move |e| StoreError::Sqlite {
        path: path.to_owned(),
        message: e.to_string(),
    }
}

/// Open (or create) a store file for a run: brought to this format, in WAL mode, its
/// environment and role checked (and recorded if new), its run counter bumped. Returns the
/// connection and this run's number in the file.
pub fn open(path: &Path, role: Role, env: &Environment) -> Result<(Connection, i64), StoreError> {
    let name = path.display().to_string();
    let err = sqlite_error(&name);
    private(path).map_err(|e| StoreError::Sqlite {
        path: name.clone(),
        message: e.to_string(),
    })?;
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    let version = format(&conn, role, &name, true)?;
    wal_mode(&conn).map_err(&err)?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
         CREATE TABLE IF NOT EXISTS environment (key TEXT PRIMARY KEY, value TEXT NOT NULL);
         INSERT OR IGNORE INTO meta VALUES ('runs', 0);
         UPDATE meta SET value = value + 1 WHERE key = 'runs';",
    )
    .map_err(&err)?;
    migrate(&conn, version).map_err(&err)?;
    check_environment(&conn, env, role, &name, true)?;
    check_role(&conn, role, &name, true)?;
    conn.pragma_update(None, "application_id", APPLICATION_ID)
        .map_err(&err)?;
    conn.pragma_update(None, "user_version", FORMAT_VERSION)
        .map_err(&err)?;
    let run = conn
        .query_row("SELECT value FROM meta WHERE key = 'runs'", [], |r| {
            r.get(0)
        })
        .map_err(&err)?;
    Ok((conn, run))
}

/// Open an existing file without changing it: `--dry-run`, `cache stats|prune`. It must be
/// of this format and role, and (with `env`) of this environment.
pub fn open_existing(
    path: &Path,
    role: Role,
    env: Option<&Environment>,
) -> Result<Connection, StoreError> {
    let name = path.display().to_string();
    let err = sqlite_error(&name);
    let conn = Connection::open(path).map_err(&err)?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(&err)?;
    let version = format(&conn, role, &name, false)?;
    if version != FORMAT_VERSION {
        return Err(incompatible(&name, role, version));
    }
    if let Some(env) = env {
        check_environment(&conn, env, role, &name, false)?;
    }
    check_role(&conn, role, &name, false)?;
    Ok(conn)
}

fn incompatible(name: &str, role: Role, found: i32) -> StoreError {
    StoreError::Incompatible {
        path: name.to_owned(),
        role: role.name(),
        found,
    }
}

/// The file's format version: 0 for a new file, an error for a file not of ours or of a
/// version this callinfo cannot read (or, unless `migrating`, cannot read as it is).
fn format(conn: &Connection, role: Role, name: &str, migrating: bool) -> Result<i32, StoreError> {
    let pragma = |p| conn.pragma_query_value(None, p, |r| r.get::<_, i32>(0));
    let app = pragma("application_id").map_err(|e| match e {
        rusqlite::Error::SqliteFailure(f, _) if f.code == rusqlite::ErrorCode::NotADatabase => {
            incompatible(name, role, -1)
        }
        e => sqlite_error(name)(e),
    })?;
    let version = pragma("user_version").map_err(sqlite_error(name))?;
    let fresh = app == 0 && version == 0 && migrating;
    let known = app == APPLICATION_ID && (1..=FORMAT_VERSION).contains(&version);
    if !fresh && !known {
        let found = if app == APPLICATION_ID { version } else { -1 };
        return Err(incompatible(name, role, found));
    }
    Ok(version)
}

/// Bring a file of format `from` to this one, in one transaction: the only place that
/// knows earlier formats. Two jobs opening one old cache at the same moment: the second
/// waits for the first's transaction, then finds the file migrated.
fn migrate(conn: &Connection, from: i32) -> rusqlite::Result<()> {
    if from == 0 || from == FORMAT_VERSION {
        return conn.execute_batch(CREATE_OUTCOMES);
    }
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let now: i32 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if now == FORMAT_VERSION {
        return conn.execute_batch("COMMIT");
    }
    conn.execute_batch("ALTER TABLE outcomes RENAME TO outcomes_old")?;
    if from == 1 {
        // Entries from before `stored_at` count as stored now: their TTL starts today.
        conn.execute_batch(&format!(
            "ALTER TABLE outcomes_old ADD COLUMN stored_at INTEGER NOT NULL DEFAULT {}",
            super::now_ms()
        ))?;
    }
    conn.execute_batch(CREATE_OUTCOMES)?;
    if from <= 2 {
        from_key_strings(conn)?;
    } else {
        from_packed(conn)?;
    }
    conn.execute_batch(&format!(
        "DROP TABLE outcomes_old; DROP TABLE IF EXISTS strings;
         PRAGMA user_version = {FORMAT_VERSION}; COMMIT;"
    ))?;
    // Compaction can wait for a moment when no other job has the file open.
    let _ = conn.execute_batch("VACUUM");
    Ok(())
}

/// Formats 1 and 2 kept the four key strings, and the same columns after them.
fn from_key_strings(conn: &Connection) -> rusqlite::Result<()> {
    let mut read = conn.prepare(&format!(
        "SELECT call_id, user_id, tenant_id, agent_id, {COLUMNS} FROM outcomes_old"
    ))?;
    let mut insert = conn.prepare(INSERT)?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let key: [String; 4] = [r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?];
        let low = KeyId::of([&key[0], &key[1], &key[2], &key[3]]).low64();
        let mut values: Vec<rusqlite::types::Value> = vec![key[0].clone().into(), low.into()];
        for i in 4..17 {
            values.push(r.get(i)?);
        }
        insert.execute(rusqlite::params_from_iter(values))?;
    }
    Ok(())
}

/// Format 3 packed an `ok`'s fields into one blob, with repeated texts in a `strings` table.
fn from_packed(conn: &Connection) -> rusqlite::Result<()> {
    let mut strings: HashMap<u64, String> = HashMap::new();
    let mut texts = conn.prepare("SELECT id, text FROM strings")?;
    let mut rows = texts.query([])?;
    while let Some(r) = rows.next()? {
        strings.insert(r.get::<_, i64>(0)? as u64, r.get(1)?);
    }
    let mut read = conn.prepare(
        "SELECT call_id, key_low, status, answer, http_status, attempts, message, run, stored_at
         FROM outcomes_old",
    )?;
    let mut insert = conn.prepare(INSERT)?;
    let mut rows = read.query([])?;
    while let Some(r) = rows.next()? {
        let answer: Option<Vec<u8>> = r.get(3)?;
        let f = match answer {
            Some(blob) => unpack_v3(&blob, &strings).ok_or_else(|| {
                rusqlite::Error::FromSqlConversionFailure(
                    3,
                    rusqlite::types::Type::Blob,
                    "an unreadable answer of format 3".into(),
                )
            })?,
            None => Fields::default(),
        };
        insert.execute(params![
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, String>(2)?,
            f.caller,
            f.called,
            f.media_ability,
            f.call_data,
            f.call_skill_id,
            f.call_skill,
            f.call_type,
            r.get::<_, Option<i64>>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, Option<String>>(6)?,
            r.get::<_, i64>(7)?,
            r.get::<_, i64>(8)?,
        ])?;
    }
    Ok(())
}

/// Format 3's blob: a byte of which fields are present, then each present one in order
/// (caller, called, media ability, call data, skill ID, skill, call type): numbers as
/// zigzag varints, text as a varint header (length << 2 | 0 for bytes, 1 for digits packed
/// two to a byte, or number << 2 | 2 for a text of `strings`) and its bytes.
fn unpack_v3(mut bytes: &[u8], strings: &HashMap<u64, String>) -> Option<Fields> {
    fn varint(bytes: &mut &[u8]) -> Option<u64> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = bytes.split_first()?;
            *bytes = rest;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Some(v);
            }
        }
        None
    }
    fn take<'b>(bytes: &mut &'b [u8], n: usize) -> Option<&'b [u8]> {
        let (taken, rest) = (bytes.get(..n)?, bytes.get(n..)?);
        *bytes = rest;
        Some(taken)
    }
    let text = |bytes: &mut &[u8]| -> Option<String> {
        let header = varint(bytes)?;
        let len = usize::try_from(header >> 2).ok()?;
        match header & 3 {
            0 => String::from_utf8(take(bytes, len)?.to_vec()).ok(),
            1 => {
                let pairs = take(bytes, len.div_ceil(2))?;
                let digits = pairs.iter().flat_map(|b| [b >> 4, b & 0x0f]).take(len);
                digits
                    .map(|d| (d <= 9).then(|| char::from(b'0' + d)))
                    .collect()
            }
            2 => strings.get(&(header >> 2)).cloned(),
            _ => None,
        }
    };
    let number = |bytes: &mut &[u8]| varint(bytes).map(|z| ((z >> 1) as i64) ^ -((z & 1) as i64));
    let present = *bytes.first()?;
    bytes = &bytes[1..];
    let has = |bit: u8| present & (1 << bit) != 0;
    let mut f = Fields::default();
    let b = &mut bytes;
    f.caller = if has(0) { Some(text(b)?) } else { None };
    f.called = if has(1) { Some(text(b)?) } else { None };
    f.media_ability = if has(4) { Some(number(b)?) } else { None };
    f.call_data = if has(2) { Some(text(b)?) } else { None };
    f.call_skill_id = if has(5) { Some(number(b)?) } else { None };
    f.call_skill = if has(3) { Some(text(b)?) } else { None };
    f.call_type = if has(6) { Some(number(b)?) } else { None };
    bytes.is_empty().then_some(f)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_packed_answer_of_format_3_reads_back() {
        // caller "0012359421049" as digits, call data by reference to string 7, skill ID -3.
        let mut blob = vec![0b0010_0101, (13 << 2 | 1) as u8];
        blob.extend([0x00, 0x12, 0x35, 0x94, 0x21, 0x04, 0x90]);
        blob.push(7 << 2 | 2);
        blob.push(5);
        let strings = HashMap::from([(7, "ivr".to_string())]);
        let f = unpack_v3(&blob, &strings).unwrap();
        assert_eq!(f.caller.as_deref(), Some("0012359421049"));
        assert_eq!(f.call_data.as_deref(), Some("ivr"));
        assert_eq!(f.call_skill_id, Some(-3));
        assert_eq!(f.called, None);
        assert_eq!(
            unpack_v3(&[0xff], &strings),
            None,
            "a truncated blob is refused"
        );
    }
}
