//! The run's counters: atomics bumped once per request or row, read by the progress
//! display and the summary. Tallied by kind, never a list of results.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;

use crate::outcome::{LookupKind, Outcome};

/// Latency quantiles, in milliseconds.
#[derive(serde::Serialize, Debug, Clone, Copy)]
pub struct Quantiles {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
}

impl std::fmt::Display for Quantiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}/{} ms", self.p50, self.p95, self.p99, self.max)
    }
}

#[derive(Default)]
pub struct Stats {
    /// Rows handed to the writer, in order.
    pub rows: AtomicU64,
    pub ok: AtomicU64,
    failed: [AtomicU64; LookupKind::ALL.len()],
    /// Lookup HTTP requests, retries included (token requests are counted by the provider).
    pub requests: AtomicU64,
    pub retries: AtomicU64,
    /// 429 answers received.
    pub throttled: AtomicU64,
    /// Keys looked up over HTTP to the end (rows that share a key share its lookup).
    pub lookups: AtomicU64,
    /// Rows whose outcome came from an earlier row with the same key in this run.
    pub deduplicated: AtomicU64,
    /// Rows answered from the journal of an earlier, unfinished run of this job.
    pub from_journal: AtomicU64,
    /// Rows answered from `--cache`.
    pub from_cache: AtomicU64,
    /// Time from sending a lookup to its answer (or its failure).
    pub latency: Latency,
    /// Time a request waited for its pacer slot.
    pub pacer_wait: Latency,
}

/// A distribution of durations in microseconds, 1 us to 1 h at 2 significant digits:
/// fixed memory (a few tens of KB) however many requests.
pub struct Latency(Mutex<Histogram<u64>>);

impl Default for Latency {
    fn default() -> Self {
        Latency(Mutex::new(
            Histogram::new_with_bounds(1, 3_600_000_000, 2).expect("valid bounds"),
        ))
    }
}

impl Latency {
    pub fn record(&self, d: Duration) {
        let us = (d.as_micros() as u64).clamp(1, 3_600_000_000);
        let _ = self.0.lock().unwrap().record(us);
    }

    /// p50, p95, p99 and max, in milliseconds; `None` with no sample.
    pub fn quantiles_ms(&self) -> Option<Quantiles> {
        let h = self.0.lock().unwrap();
        if h.is_empty() {
            return None;
        }
        let ms = |us: u64| (us as f64 / 100.0).round() / 10.0;
        Some(Quantiles {
            p50: ms(h.value_at_quantile(0.5)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        })
    }
}

impl Stats {
    pub fn count_row(&self, outcome: &Outcome) {
        self.rows.fetch_add(1, Relaxed);
        match outcome {
            Outcome::Ok(_) => self.ok.fetch_add(1, Relaxed),
            Outcome::Failed(f) => self.failed[f.kind.index()].fetch_add(1, Relaxed),
        };
    }

    pub fn failed(&self, kind: LookupKind) -> u64 {
        self.failed[kind.index()].load(Relaxed)
    }

    /// Failed rows a rerun could answer differently: transient failures and 401s.
    pub fn rerun_may_change(&self) -> u64 {
        LookupKind::ALL
            .iter()
            .filter(|k| k.retry_on_rerun())
            .map(|k| self.failed(*k))
            .sum()
    }

    pub fn failed_total(&self) -> u64 {
        self.failed.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Relaxed)
    }

    pub fn bump(counter: &AtomicU64) {
        counter.fetch_add(1, Relaxed);
    }
}
