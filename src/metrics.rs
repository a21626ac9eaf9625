//! `--metrics-file`: the run's figures in the Prometheus text format, for node_exporter's
//! textfile collector (the usual way to watch cron jobs). Written atomically, as the
//! collector requires, at every progress interval and at the end. Every figure is a gauge
//! of this run; `callinfo_last_success_timestamp_seconds` is carried over from the file a
//! previous run left, so an alert can fire when no run has succeeded for a day.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::Path;

use crate::output::AtomicFile;
use crate::summary::{Quantiles, Summary};

const LAST_SUCCESS: &str = "callinfo_last_success_timestamp_seconds";

/// How far the run has got: still running, or ended with this exit status.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Running,
    Ended(u8),
}

pub fn render(s: &Summary, phase: Phase, last_success: Option<f64>) -> String {
    let mut out = String::new();
    let mut gauge = |name: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{labels} {value}");
        }
    };
    let mut rows = vec![("{status=\"ok\"}".to_owned(), s.ok as f64)];
    rows.extend(
        s.failed_by_kind
            .iter()
            .map(|(kind, n)| (format!("{{status=\"{kind}\"}}"), *n as f64)),
    );
    let rows: Vec<(&str, f64)> = rows.iter().map(|(l, v)| (l.as_str(), *v)).collect();
    gauge(
        "callinfo_rows",
        "Rows written by this run, by lookup_status.",
        &rows,
    );
    gauge(
        "callinfo_requests",
        "HTTP requests made by this run, by endpoint.",
        &[
            ("{endpoint=\"lookup\"}", s.lookup_requests as f64),
            ("{endpoint=\"token\"}", s.token_requests as f64),
        ],
    );
    gauge(
        "callinfo_retries",
        "Lookup retries.",
        &[("", s.retries as f64)],
    );
    gauge(
        "callinfo_throttled",
        "HTTP 429 answers received.",
        &[("", s.throttled_429 as f64)],
    );
    gauge(
        "callinfo_keys",
        "Distinct keys, by where their outcome came from.",
        &[
            ("{from=\"lookup\"}", s.lookups as f64),
            ("{from=\"journal\"}", s.from_journal as f64),
            ("{from=\"cache\"}", s.from_cache as f64),
        ],
    );
    gauge(
        "callinfo_deduplicated_rows",
        "Rows that shared an earlier row's lookup.",
        &[("", s.deduplicated as f64)],
    );
    if let Some(pace) = s.pace_at_end {
        gauge(
            "callinfo_pace_requests_per_second",
            "The pace requests go out at: --rate, or lower after 429s.",
            &[("", pace)],
        );
    }
    for (name, help, q) in [
        (
            "callinfo_lookup_latency_seconds",
            "Lookup latency, send to answer.",
            s.latency_ms,
        ),
        (
            "callinfo_pacer_wait_seconds",
            "Time requests waited for their pacer slot.",
            s.pacer_wait_ms,
        ),
    ] {
        if let Some(Quantiles { p50, p95, p99, max }) = q {
            gauge(
                name,
                help,
                &[
                    ("{quantile=\"0.5\"}", p50 / 1000.0),
                    ("{quantile=\"0.95\"}", p95 / 1000.0),
                    ("{quantile=\"0.99\"}", p99 / 1000.0),
                    ("{quantile=\"1\"}", max / 1000.0),
                ],
            );
        }
    }
    gauge(
        "callinfo_duration_seconds",
        "Time since the run started.",
        &[("", s.elapsed_s)],
    );
    let (running, exit) = match phase {
        Phase::Running => (1.0, None),
        Phase::Ended(code) => (0.0, Some(code)),
    };
    gauge(
        "callinfo_running",
        "1 while the run goes on.",
        &[("", running)],
    );
    if let Some(code) = exit {
        gauge(
            "callinfo_exit_status",
            "The run's exit status (0 ok, 3 some rows failed, 75 out of time or daily quota, 130 interrupted, 1 fatal).",
            &[("", f64::from(code))],
        );
        gauge(
            "callinfo_daily_quota_exhausted",
            "1 when the run stopped because the API's daily quota was used up.",
            &[("", f64::from(u8::from(s.daily_quota_exhausted)))],
        );
    }
    // 0 before any success: `time() - callinfo_last_success_timestamp_seconds > 86400`
    // fires for a job that never succeeded, the one that needs it most.
    gauge(
        LAST_SUCCESS,
        "When a run last ended with exit status 0 (Unix time; 0 before the first).",
        &[("", last_success.unwrap_or(0.0))],
    );
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

/// Write the file atomically: the collector never reads half of it.
pub fn write(path: &Path, text: &str) -> std::io::Result<()> {
    let mut file = AtomicFile::create(path)?;
    crate::output::remove_leftovers(path, &[file.temp_path().to_owned()]);
    file.write_all(text.as_bytes())?;
    file.commit()
}
