//! A batch's rows read out of a store, in one read transaction. Keys that sit together in
//! the table (call ID, then the digest's low bits: a rerun of an export in call-ID order)
//! are read by range scans, which walk the B-tree's leaves once where a SELECT per key
//! descends it from the root each time; keys spread over the table are read one by one.
//! The scan also says which stretches of the table it read whole, every row of them asked
//! for: a rerun keeps those in memory as reused ([`Claimed`]) instead of writing each of
//! their rows again. Written here because SQLite has no such multi-key read of its own.

use std::cmp::Ordering;
use std::collections::HashMap;

use rusqlite::{params, Connection, OptionalExtension};

use crate::key::CallKey;
use crate::outcome::{Failure, Fields, LookupKind, Outcome};

/// The columns every read selects, in [`RawRow::read`]'s order.
const COLUMNS: &str = "status, answer, http_status, attempts, message, run, stored_at";
/// Rows a scan reads beyond the number of keys asked, for the rows between them that were
/// not asked (a key recorded by another input, say) before giving up on the rest.
const SLACK: usize = 64;

/// A row of the table.
#[derive(Clone)]
pub(super) struct Stored {
    pub outcome: Outcome,
    pub run: i64,
    pub stored_ms: i64,
}

/// Where a row sits in the table: its primary key, in the table's order (text compares
/// bytewise, as SQLite's BINARY collation does).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Pos {
    call_id: Box<str>,
    low: i64,
}

impl Pos {
    fn of(call_id: &str, low: i64) -> Pos {
        Pos {
            call_id: call_id.into(),
            low,
        }
    }

    fn cmp_key(&self, key: &CallKey) -> Ordering {
        (&*self.call_id, self.low).cmp(&(&*key.call_id, key.id.low64()))
    }
}

/// Consecutive rows of the table, first and last included.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Span {
    lo: Pos,
    hi: Pos,
}

/// What one read found: each key's row (in the order asked), the spans a scan read whole,
/// and whether the scan was worth it (at least half the rows it read were asked for).
pub(super) struct Read {
    pub rows: Vec<Option<Stored>>,
    pub spans: Vec<Span>,
    pub dense: bool,
}

/// Each key's row, by one SELECT per key.
pub(super) fn points<'k>(
    conn: &Connection,
    keys: impl IntoIterator<Item = &'k CallKey>,
) -> rusqlite::Result<Read> {
    let mut texts = Texts::new(conn)?;
    Ok(Read {
        rows: one_by_one(conn, keys, &mut texts)?,
        spans: Vec::new(),
        dense: true,
    })
}

fn one_by_one<'k>(
    conn: &Connection,
    keys: impl IntoIterator<Item = &'k CallKey>,
    texts: &mut Texts<'_>,
) -> rusqlite::Result<Vec<Option<Stored>>> {
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM outcomes WHERE call_id = ?1 AND key_low = ?2"
    ))?;
    let mut found = Vec::new();
    for key in keys {
        let row = stmt
            .query_row(params![&*key.call_id, key.id.low64()], |r| {
                RawRow::read(r, 0)
            })
            .optional()?;
        found.push(match row {
            Some(raw) => Some(raw.into_stored(&mut |id| texts.get(id))?),
            None => None,
        });
    }
    Ok(found)
}

/// Each key's row, by range scans in the table's order: each from the smallest key not yet
/// met, reading at most as many rows as keys are left (plus [`SLACK`]), again while at
/// least half the rows read so far were asked for; the keys left then are read one by one.
/// A key below the last row a scan read that the scan did not meet is not in the table.
pub(super) fn scan(conn: &Connection, keys: &[&CallKey]) -> rusqlite::Result<Read> {
    let key = |i: usize| (&*keys[i].call_id, keys[i].id.low64());
    let mut order: Vec<usize> = (0..keys.len()).collect();
    order.sort_unstable_by(|&a, &b| key(a).cmp(&key(b)));
    let mut rows: Vec<Option<Stored>> = (0..keys.len()).map(|_| None).collect();
    let mut texts = Texts::new(conn)?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT call_id, key_low, {COLUMNS} FROM outcomes
         WHERE (call_id, key_low) >= (?1, ?2) ORDER BY call_id, key_low LIMIT ?3"
    ))?;
    let mut spans = Vec::new();
    let (mut next, mut read, mut asked) = (0, 0, 0);
    while next < order.len() && 2 * asked >= read {
        let limit = order.len() - next + SLACK;
        let (from_id, from_low) = key(order[next]);
        let mut found = stmt.query(params![from_id, from_low, limit as i64])?;
        // The rows between two scans are not read: a span ends with its scan.
        let mut open: Option<Span> = None;
        let mut this_scan = 0;
        while next < order.len() {
            let Some(row) = found.next()? else {
                // The end of the table: the keys left are not in it.
                next = order.len();
                break;
            };
            this_scan += 1;
            read += 1;
            let at = (row.get_ref(0)?.as_str()?, row.get::<_, i64>(1)?);
            while next < order.len() && key(order[next]) < at {
                next += 1;
            }
            let same = order[next..].iter().take_while(|&&i| key(i) == at).count();
            if same > 0 {
                let stored = RawRow::read(row, 2)?.into_stored(&mut |id| texts.get(id))?;
                for &i in &order[next..next + same] {
                    rows[i] = Some(stored.clone());
                }
                next += same;
                asked += 1;
                let here = Pos::of(at.0, at.1);
                match &mut open {
                    Some(span) => span.hi = here,
                    None => {
                        open = Some(Span {
                            lo: here.clone(),
                            hi: here,
                        })
                    }
                }
            } else {
                spans.extend(open.take());
            }
            if this_scan == limit {
                break;
            }
        }
        spans.extend(open.take());
    }
    let rest = &order[next..];
    for (&i, row) in rest
        .iter()
        .zip(one_by_one(conn, rest.iter().map(|&i| keys[i]), &mut texts)?)
    {
        rows[i] = row;
    }
    Ok(Read {
        rows,
        spans,
        dense: 2 * asked >= read,
    })
}

/// The spans of a journal whose every row this run has asked for: a row in one from an
/// earlier run counts as this run's, as if it had been written again. Exact because this
/// run alone writes the journal (it holds the lock) and writes its own number: a row of an
/// earlier run in a span is one the scan met there, and so one an earlier row of the input
/// asked for. (A span also holds rows it does not change: this run's, and transient
/// failures, which are looked up again.) Sorted and disjoint. At most [`Claimed::MAX`]
/// (about 2 MiB; 60 million rows of an export in call-ID order): past that, a reused row is
/// written again.
#[derive(Default)]
pub(super) struct Claimed {
    spans: Vec<Span>,
}

impl Claimed {
    const MAX: usize = 1 << 14;

    pub fn contains(&self, key: &CallKey) -> bool {
        let i = self
            .spans
            .partition_point(|s| s.hi.cmp_key(key) == Ordering::Less);
        self.spans
            .get(i)
            .is_some_and(|s| s.lo.cmp_key(key) != Ordering::Greater)
    }

    /// Keep `span`, merged with those it overlaps. False when full: it is not kept.
    pub fn insert(&mut self, mut span: Span) -> bool {
        let start = self.spans.partition_point(|s| s.hi < span.lo);
        let end = self.spans.partition_point(|s| s.lo <= span.hi);
        if start == end && self.spans.len() >= Self::MAX {
            return false;
        }
        if start < end {
            span.lo = span.lo.min(self.spans[start].lo.clone());
            span.hi = span.hi.max(self.spans[end - 1].hi.clone());
        }
        self.spans.splice(start..end, [span]);
        true
    }
}

/// Interned texts met in one read: a skill's name is read once, not per row.
struct Texts<'c> {
    stmt: rusqlite::CachedStatement<'c>,
    known: HashMap<u64, Option<String>>,
}

impl<'c> Texts<'c> {
    fn new(conn: &'c Connection) -> rusqlite::Result<Texts<'c>> {
        Ok(Texts {
            stmt: conn.prepare_cached("SELECT text FROM strings WHERE id = ?1")?,
            known: HashMap::new(),
        })
    }

    fn get(&mut self, id: u64) -> Option<String> {
        let stmt = &mut self.stmt;
        self.known
            .entry(id)
            .or_insert_with(|| {
                stmt.query_row([id as i64], |r| r.get(0))
                    .optional()
                    .ok()
                    .flatten()
            })
            .clone()
    }
}

/// A row as read: [`COLUMNS`].
struct RawRow {
    status: String,
    answer: Option<Vec<u8>>,
    http_status: Option<u16>,
    attempts: u32,
    message: Option<String>,
    run: i64,
    stored_ms: i64,
}

impl RawRow {
    /// [`COLUMNS`], from column `at` on.
    fn read(row: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<RawRow> {
        Ok(RawRow {
            status: row.get(at)?,
            answer: row.get(at + 1)?,
            http_status: row.get(at + 2)?,
            attempts: row.get(at + 3)?,
            message: row.get(at + 4)?,
            run: row.get(at + 5)?,
            stored_ms: row.get(at + 6)?,
        })
    }

    /// `text` gives back the interned texts the answer refers to.
    fn into_stored(self, text: &mut dyn FnMut(u64) -> Option<String>) -> rusqlite::Result<Stored> {
        let bad = |what: String| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, what.into())
        };
        let outcome = if self.status == "ok" {
            let blob = self.answer.unwrap_or_default();
            Outcome::Ok(
                Fields::decode_with(&blob, text)
                    .ok_or_else(|| bad("an unreadable answer".into()))?,
            )
        } else {
            let kind = LookupKind::parse(&self.status)
                .ok_or_else(|| bad(format!("unknown status {:?}", self.status)))?;
            Outcome::Failed(Failure {
                kind,
                http_status: self.http_status,
                attempts: self.attempts,
                message: self.message.unwrap_or_default(),
            })
        };
        Ok(Stored {
            outcome,
            run: self.run,
            stored_ms: self.stored_ms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(call_id: &str) -> CallKey {
        CallKey::new(call_id.into(), "u".into(), "t".into(), "a".into())
    }

    /// A table of the store's schema holding `ids`, each a `not_found` of run 1.
    fn table(ids: &[String]) -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(super::super::CREATE_OUTCOMES).unwrap();
        for id in ids {
            conn.execute(
                "INSERT INTO outcomes VALUES (?1, ?2, 'not_found', NULL, 404, 1, ?1, 1, 0)",
                params![id, key(id).id.low64()],
            )
            .unwrap();
        }
        conn
    }

    fn span(lo: &str, hi: &str) -> Span {
        let pos = |id: &str| Pos::of(id, key(id).id.low64());
        Span {
            lo: pos(lo),
            hi: pos(hi),
        }
    }

    fn message(row: &Option<Stored>) -> Option<&str> {
        row.as_ref().map(|s| match &s.outcome {
            Outcome::Failed(f) => f.message.as_str(),
            Outcome::Ok(_) => "ok",
        })
    }

    #[test]
    fn a_scan_finds_every_row_and_the_stretches_it_read_whole() {
        let ids: Vec<String> = (0..20).map(|i| format!("c{i:02}")).collect();
        let conn = table(&ids);
        // c05 and c10-c14 are in the table but not asked; c055 and zz are asked but not in
        // it; c07 is asked twice. Out of order, as a batch may be.
        let asked: Vec<CallKey> = ["c07", "zz", "c00", "c01", "c02", "c03", "c04"]
            .into_iter()
            .chain(["c055", "c06", "c07", "c08", "c09", "c15", "c19", "c16"])
            .chain(["c17", "c18"])
            .map(key)
            .collect();
        let refs: Vec<&CallKey> = asked.iter().collect();
        let read = scan(&conn, &refs).unwrap();
        let found: Vec<Option<&str>> = read.rows.iter().map(message).collect();
        let want: Vec<Option<&str>> = asked
            .iter()
            .map(|k| ids.contains(&k.call_id.to_string()).then_some(&*k.call_id))
            .collect();
        assert_eq!(found, want);
        assert_eq!(
            read.spans,
            [span("c00", "c04"), span("c06", "c09"), span("c15", "c19")]
        );
        // All 20 rows read (zz sorts past the last), 14 of them asked.
        assert!(read.dense);
    }

    #[test]
    fn keys_far_apart_are_read_one_by_one_past_the_scans_rows() {
        let ids: Vec<String> = (0..500).map(|i| format!("c{i:03}")).collect();
        let conn = table(&ids);
        let asked: Vec<CallKey> = ["c000", "c200", "c400", "c450x"]
            .into_iter()
            .map(key)
            .collect();
        let refs: Vec<&CallKey> = asked.iter().collect();
        let read = scan(&conn, &refs).unwrap();
        let found: Vec<Option<&str>> = read.rows.iter().map(message).collect();
        assert_eq!(found, [Some("c000"), Some("c200"), Some("c400"), None]);
        // The scan read 4 + SLACK rows and met c000 only: the rest came one by one.
        assert_eq!(read.spans, [span("c000", "c000")]);
        assert!(!read.dense);
    }

    #[test]
    fn a_scan_cut_short_while_dense_goes_on_from_where_it_stopped() {
        // Every third row not asked: the first scan (keys + SLACK rows) stops two thirds of
        // the way, and the next ones go on from the first key not met.
        let ids: Vec<String> = (0..3000).map(|i| format!("c{i:04}")).collect();
        let conn = table(&ids);
        let asked: Vec<CallKey> = ids
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 3 != 2)
            .map(|(_, id)| key(id))
            .collect();
        let refs: Vec<&CallKey> = asked.iter().collect();
        let read = scan(&conn, &refs).unwrap();
        let found: Vec<Option<&str>> = read.rows.iter().map(message).collect();
        let want: Vec<Option<&str>> = asked.iter().map(|k| Some(&*k.call_id)).collect();
        assert_eq!(found, want);
        assert!(read.dense);
        // A span is a pair of asked rows, or one where a scan began or ended: never across
        // a row not asked.
        assert!(read.spans.len() >= 1000, "{} spans", read.spans.len());
        let mut claimed = Claimed::default();
        for span in read.spans {
            claimed.insert(span);
        }
        for (i, id) in ids.iter().enumerate() {
            assert_eq!(claimed.contains(&key(id)), i % 3 != 2, "{id}");
        }
    }

    #[test]
    fn claimed_spans_merge_where_they_overlap_and_nowhere_else() {
        let mut claimed = Claimed::default();
        for (lo, hi) in [("b", "d"), ("m", "p"), ("f", "g")] {
            assert!(claimed.insert(span(lo, hi)));
        }
        assert_eq!(claimed.spans.len(), 3);
        assert!(claimed.insert(span("c", "f")));
        assert_eq!(claimed.spans, [span("b", "g"), span("m", "p")]);
        let inside = |id: &str| claimed.contains(&key(id));
        assert!(["b", "c", "e", "g", "m", "n", "p"].into_iter().all(inside));
        assert!(!["a", "h", "l", "q"].into_iter().any(inside));
        // Sharing only an end is overlapping too.
        assert!(claimed.insert(span("p", "r")));
        assert_eq!(claimed.spans, [span("b", "g"), span("m", "r")]);
    }

    #[test]
    fn a_full_set_of_spans_keeps_no_more() {
        let mut claimed = Claimed::default();
        for i in 0..Claimed::MAX {
            let id = format!("k{i:06}");
            assert!(claimed.insert(span(&id, &id)));
        }
        assert!(!claimed.insert(span("z", "z")));
        assert!(!claimed.contains(&key("z")));
        // One that overlaps kept spans still merges with them.
        assert!(claimed.insert(span("k000001", "k000003")));
        assert_eq!(claimed.spans.len(), Claimed::MAX - 2);
        assert_eq!(claimed.spans[1], span("k000001", "k000003"));
    }
}
