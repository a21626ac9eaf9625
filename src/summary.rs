//! The run's figures: printed as one line on stderr, and written with `--summary-json`.
//! The JSON schema is stable: fields are only ever added.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

pub use crate::engine::Quantiles;
use crate::engine::{Lookups, Stats};
use crate::outcome::LookupKind;

#[derive(Serialize, Debug)]
pub struct Summary {
    pub schema_version: u32,
    pub rows: u64,
    pub ok: u64,
    pub failed: u64,
    /// Every kind, zeros included, so consumers need no defaults.
    pub failed_by_kind: BTreeMap<&'static str, u64>,
    /// Lookup requests plus token requests: what the quota was charged.
    pub requests: u64,
    pub lookup_requests: u64,
    pub token_requests: u64,
    pub retries: u64,
    pub throttled_429: u64,
    /// Keys looked up over HTTP in this run.
    pub lookups: u64,
    /// Distinct keys met so far: looked up now, or answered by the journal or the cache.
    pub distinct_keys: u64,
    /// Rows that shared an earlier row's key, and so its lookup.
    pub deduplicated: u64,
    /// Rows answered by the journal of an earlier, unfinished run of the same job.
    pub from_journal: u64,
    /// Rows answered by `--cache`.
    pub from_cache: u64,
    pub elapsed_s: f64,
    pub rows_per_s: f64,
    pub requests_per_s: f64,
    /// The pace at the end, in requests per second: below `--rate` when the server
    /// throttled and the pacer adapted (start the next run there); `null` for no limit.
    pub pace_at_end: Option<f64>,
    /// Lookup requests, send to answer: p50, p95, p99, max in milliseconds.
    pub latency_ms: Option<Quantiles>,
    /// Time requests waited for their pacer slot, likewise.
    pub pacer_wait_ms: Option<Quantiles>,
    pub exit_status: u8,
    /// The run stopped because the API's daily quota was used up (exit 75). Written only
    /// when true, so a summary's fields stay those of any other run.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub daily_quota_exhausted: bool,
    /// Limits the gateway stated in its 429s during the run (`100/min`), held from then
    /// on; the next run should give them to `--rate`. Written only when there are some.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stated_limits: Vec<String>,
    /// Each input of the run, in order, with its output and how it ended.
    pub files: Vec<FileSummary>,
}

#[derive(Serialize, Debug, Clone)]
pub struct FileSummary {
    pub input: String,
    pub output: String,
    pub errors: String,
    pub rows: u64,
    pub ok: u64,
    pub failed: u64,
    pub state: FileState,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Written by this run.
    Written,
    /// Written by an earlier run of the same job, from the same input: skipped.
    AlreadyComplete,
    /// Not (or not wholly) written: the run stopped first.
    NotWritten,
}

impl Summary {
    /// The figures of a run `elapsed` into it, before it ends.
    pub fn new(lookups: &Lookups, elapsed: Duration) -> Summary {
        let (stats, token_requests) = (&lookups.stats, lookups.tokens.requests());
        let secs = elapsed.as_secs_f64();
        let rows = Stats::get(&stats.rows);
        let lookup_requests = Stats::get(&stats.requests);
        let per_s = |n: u64| {
            if secs > 0.0 {
                (n as f64 / secs * 10.0).round() / 10.0
            } else {
                0.0
            }
        };
        Summary {
            schema_version: 1,
            rows,
            ok: Stats::get(&stats.ok),
            failed: stats.failed_total(),
            failed_by_kind: LookupKind::ALL
                .iter()
                .map(|k| (k.as_str(), stats.failed(*k)))
                .collect(),
            requests: lookup_requests + token_requests,
            lookup_requests,
            token_requests,
            retries: Stats::get(&stats.retries),
            throttled_429: Stats::get(&stats.throttled),
            lookups: Stats::get(&stats.lookups),
            distinct_keys: Stats::get(&stats.lookups)
                + Stats::get(&stats.from_journal)
                + Stats::get(&stats.from_cache),
            deduplicated: Stats::get(&stats.deduplicated),
            from_journal: Stats::get(&stats.from_journal),
            from_cache: Stats::get(&stats.from_cache),
            elapsed_s: (secs * 1000.0).round() / 1000.0,
            rows_per_s: per_s(rows),
            requests_per_s: per_s(lookup_requests + token_requests),
            pace_at_end: lookups
                .pacer
                .effective_rate()
                .map(|r| (r * 10.0).round() / 10.0),
            latency_ms: stats.latency.quantiles_ms(),
            pacer_wait_ms: stats.pacer_wait.quantiles_ms(),
            exit_status: 0,
            daily_quota_exhausted: false,
            stated_limits: Vec::new(),
            files: Vec::new(),
        }
    }

    /// `300 rows: 290 ok, 10 failed (5 not_found, 5 invalid_input); ...`, in the words of
    /// the JSON summary.
    pub fn line(&self) -> String {
        let kinds: Vec<String> = self
            .failed_by_kind
            .iter()
            .filter(|(_, n)| **n > 0)
            .map(|(k, n)| format!("{n} {k}"))
            .collect();
        let failed = if kinds.is_empty() {
            "0 failed".to_owned()
        } else {
            format!("{} failed ({})", self.failed, kinds.join(", "))
        };
        let latency = match (&self.latency_ms, &self.pacer_wait_ms) {
            (Some(l), Some(w)) => {
                format!("; latency p50/p95/p99/max {l}, pacer wait {w}")
            }
            _ => String::new(),
        };
        format!(
            "{} rows: {} ok, {failed}; {} deduplicated, {} from journal, {} from cache; {} ({}, {} x 429, {}) in {:.1}s, {:.0} rows/s{latency}",
            self.rows,
            self.ok,
            self.deduplicated,
            self.from_journal,
            self.from_cache,
            count(self.requests, "request"),
            count(self.retries, "retry"),
            self.throttled_429,
            count(self.token_requests, "token request"),
            self.elapsed_s,
            self.rows_per_s
        )
    }
}

/// `1 request`, `2 requests`, `1 retry`, `3 retries`.
pub fn count(n: u64, one: &str) -> String {
    match (n, one.strip_suffix('y')) {
        (1, _) => format!("1 {one}"),
        (_, Some(stem)) => format!("{n} {stem}ies"),
        (_, None) => format!("{n} {one}s"),
    }
}
