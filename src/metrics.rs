//! `--metrics-file`: the run's figures in the Prometheus text format, for node_exporter's
//! textfile collector (the usual way to watch cron jobs). Written atomically, as the
//! collector requires, at every progress interval and at the end. Every figure is a gauge
//! of this run; `callinfo_last_success_timestamp_seconds` is carried over from the file a
//! previous run left, so an alert can fire when no run has succeeded for a day.

use std::fmt::Write as _;
use std::path::Path;

use crate::summary::{Quantiles, Summary};

const LAST_SUCCESS: &str = "callinfo_last_success_timestamp_seconds";

/// How far the run has got: still running, or ended with this exit status.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Running,
    Ended(u8),
}

/// A gauge's samples: labels and value.
type Samples = Vec<(String, f64)>;

pub fn render(s: &Summary, phase: Phase, last_success: Option<f64>) -> String {
    let one = |v: f64| vec![(String::new(), v)];
    let by = |label: &str, samples: &[(&str, f64)]| -> Samples {
        samples
            .iter()
            .map(|(value, v)| (format!("{{{label}=\"{value}\"}}"), *v))
            .collect()
    };
    let mut rows = vec![("ok", s.ok as f64)];
    rows.extend(s.failed_by_kind.iter().map(|(k, n)| (*k, *n as f64)));
    let quantiles = |q: Option<Quantiles>| {
        q.map(|Quantiles { p50, p95, p99, max }| {
            let [p50, p95, p99, max] = [p50, p95, p99, max].map(|ms| ms / 1000.0);
            by(
                "quantile",
                &[("0.5", p50), ("0.95", p95), ("0.99", p99), ("1", max)],
            )
        })
    };
    let ended = |v: Option<f64>| match phase {
        Phase::Running => None,
        Phase::Ended(_) => v.map(one),
    };
    let exit = match phase {
        Phase::Running => None,
        Phase::Ended(code) => Some(f64::from(code)),
    };
    let requests = [
        ("lookup", s.lookup_requests as f64),
        ("token", s.token_requests as f64),
    ];
    let keys = [
        ("lookup", s.lookups as f64),
        ("journal", s.from_journal as f64),
        ("cache", s.from_cache as f64),
    ];
    let running = one(if exit.is_none() { 1.0 } else { 0.0 });
    let quota_used_up = Some(f64::from(u8::from(s.daily_quota_exhausted)));
    #[rustfmt::skip]
    let gauges: [(&str, &str, Option<Samples>); 14] = [
        ("callinfo_rows", "Rows written by this run, by lookup_status.",
            Some(by("status", &rows))),
        ("callinfo_requests", "HTTP requests made by this run, by endpoint.",
            Some(by("endpoint", &requests))),
        ("callinfo_retries", "Lookup retries.", Some(one(s.retries as f64))),
        ("callinfo_throttled", "HTTP 429 answers received.", Some(one(s.throttled_429 as f64))),
        ("callinfo_keys", "Distinct keys, by where their outcome came from.",
            Some(by("from", &keys))),
        ("callinfo_deduplicated_rows", "Rows that shared an earlier row's lookup.",
            Some(one(s.deduplicated as f64))),
        ("callinfo_pace_requests_per_second",
            "The pace requests go out at: --rate, or lower after 429s.", s.pace_at_end.map(one)),
        ("callinfo_lookup_latency_seconds", "Lookup latency, send to answer.",
            quantiles(s.latency_ms)),
        ("callinfo_pacer_wait_seconds", "Time requests waited for their pacer slot.",
            quantiles(s.pacer_wait_ms)),
        ("callinfo_duration_seconds", "Time since the run started.", Some(one(s.elapsed_s))),
        ("callinfo_running", "1 while the run goes on.", Some(running)),
        ("callinfo_exit_status", "The run's exit status (0 ok, 3 some rows failed, 75 out of \
            time or daily quota, 130 interrupted, 1 fatal).", ended(exit)),
        ("callinfo_daily_quota_exhausted",
            "1 when the run stopped because the API's daily quota was used up.",
            ended(quota_used_up)),
        // 0 before any success: `time() - callinfo_last_success_timestamp_seconds > 86400`
        // fires for a job that never succeeded, the one that needs it most.
        (LAST_SUCCESS, "When a run last ended with exit status 0 (Unix time; 0 before the first).",
            Some(one(last_success.unwrap_or(0.0)))),
    ];
    let mut out = String::new();
    for (name, help, samples) in gauges {
        let Some(samples) = samples else { continue };
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    }
    out
}

/// The last success time in the file a previous run wrote, if any.
pub fn last_success(path: &Path) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix(LAST_SUCCESS)?.trim().parse().ok())
}

pub fn now_unix() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| (d.as_secs_f64() * 1000.0).round() / 1000.0)
}
