//! Progress for people: a bar on a terminal, otherwise one log line per interval. It reads
//! the counters on a tick, never per row, and writes only to stderr.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::stats::Stats;
use crate::pace::Pacer;
use crate::summary::count;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// A bar when stderr is a terminal, otherwise a log line per interval.
    Auto,
    /// Always the bar.
    Always,
    Never,
}

/// How far the reader has got, updated once per batch.
#[derive(Default)]
pub struct ReadSoFar {
    pub rows: AtomicU64,
    pub bytes: AtomicU64,
}

/// What the progress display knows of the input's size.
pub struct Size {
    /// Exact row count (Parquet).
    pub rows: Option<u64>,
    /// Total bytes, and how far the reader has got (CSV): the rows in the file are the rows
    /// read so far scaled by the share of the bytes they took, right from the first batch.
    pub bytes: Option<(u64, Arc<ReadSoFar>)>,
    /// `--limit`: never more than this.
    pub limit: Option<u64>,
}

impl Size {
    fn estimate(&self) -> Option<u64> {
        let rows = match (self.rows, &self.bytes) {
            (Some(rows), _) => Some(rows),
            (None, Some((total, read))) => {
                let (rows, bytes) = (read.rows.load(Relaxed), read.bytes.load(Relaxed));
                (rows > 0 && bytes > 0).then(|| (rows as f64 * *total as f64 / bytes as f64) as u64)
            }
            (None, None) => None,
        }?;
        Some(self.limit.map_or(rows, |l| rows.min(l)))
    }
}

pub struct Progress {
    stop: CancellationToken,
    task: JoinHandle<()>,
    view: Arc<View>,
}

/// What both displays read.
struct View {
    stats: Arc<Stats>,
    pacer: Arc<Pacer>,
    size: Size,
    started: Instant,
    /// `--deadline` / `--max-duration`: the ETA says whether it will be met.
    stop_at: Option<Instant>,
}

impl Progress {
    /// `fields`: log lines carry their figures as fields too (`--log-format json`).
    pub fn start(
        mode: ProgressMode,
        fields: bool,
        interval: Duration,
        engine: &super::Engine,
        size: Size,
    ) -> Progress {
        let stop = CancellationToken::new();
        let view = Arc::new(View {
            stats: engine.shared.lookups.stats.clone(),
            pacer: engine.shared.lookups.pacer.clone(),
            size,
            started: Instant::now(),
            stop_at: engine.stop_at,
        });
        let task = match mode {
            ProgressMode::Never => tokio::spawn(async {}),
            ProgressMode::Auto if !std::io::stderr().is_terminal() => {
                tokio::spawn(log_lines(view.clone(), interval, fields, stop.clone()))
            }
            _ => tokio::spawn(draw_bar(view.clone(), stop.clone())),
        };
        Progress { stop, task, view }
    }

    /// Stop the display; the input's rows as last estimated.
    pub async fn finish(self) -> Option<u64> {
        self.stop.cancel();
        let _ = self.task.await;
        self.view.size.estimate()
    }
}

/// Figures shared by the bar and the log line.
struct Snapshot {
    rows: u64,
    ok: u64,
    total: Option<u64>,
    lookups_per_s: f64,
    errors: u64,
    retries: u64,
    throttled: u64,
    /// The pace requests go out at: `--rate`, or lower after 429s.
    pace: Option<f64>,
    /// Seconds to the end at the rate so far, when the total is known.
    eta_s: Option<u64>,
    /// Whether the run's window will hold the rest, at the rate so far.
    window: String,
}

impl Snapshot {
    /// `312 lookups/s, pace 20.0/s, 0 errors, 2 retries, 1 x 429`, joined by `sep`.
    fn figures(&self, sep: &str) -> String {
        [
            format!("{:.1} lookups/s", self.lookups_per_s),
            match self.pace {
                Some(r) => format!("pace {r:.1}/s"),
                None => "pace unlimited".into(),
            },
            count(self.errors, "error"),
            count(self.retries, "retry"),
            format!("{} x 429{}", self.throttled, self.window),
        ]
        .join(sep)
    }
}

impl View {
    fn snapshot(&self) -> Snapshot {
        let stats = &self.stats;
        let rows = Stats::get(&stats.rows);
        let elapsed = self.started.elapsed();
        let secs = elapsed.as_secs_f64().max(1e-3);
        let total = self.size.estimate();
        Snapshot {
            rows,
            total,
            lookups_per_s: Stats::get(&stats.requests) as f64 / secs,
            errors: stats.failed_total(),
            retries: Stats::get(&stats.retries),
            throttled: Stats::get(&stats.throttled),
            ok: Stats::get(&stats.ok),
            pace: self.pacer.effective_rate(),
            eta_s: total
                .filter(|_| rows > 0)
                .map(|t| (t.saturating_sub(rows) as f64 * secs / rows as f64) as u64),
            window: match (self.stop_at, total) {
                (Some(at), Some(total)) if rows > 0 => {
                    let left = at.saturating_duration_since(Instant::now()).as_secs_f64();
                    let rate = rows as f64 / secs;
                    let need = total.saturating_sub(rows) as f64 / rate;
                    if need <= left {
                        format!("  the window ends in {left:.0}s: on time")
                    } else {
                        let short = total.saturating_sub(rows + (rate * left) as u64);
                        format!("  the window ends in {left:.0}s: ~{short} rows will be left")
                    }
                }
                _ => String::new(),
            },
        }
    }
}

async fn draw_bar(view: Arc<View>, stop: CancellationToken) {
    // Drawn once the input's size is known (the first batch, for CSV), so the total shown
    // is never a guess; an input of unknown size (stdin) is drawn at once, without one.
    let mut bar: Option<ProgressBar> = None;
    let sized = view.size.rows.is_some() || view.size.bytes.is_some();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => break,
        }
        let s = view.snapshot();
        if sized && s.total.is_none() {
            continue;
        }
        let bar = bar.get_or_insert_with(|| {
            let bar = ProgressBar::with_draw_target(s.total, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{bar:30} {pos}/{len} rows  {msg}  eta {eta}")
                    .expect("valid template"),
            );
            bar
        });
        if let Some(total) = s.total {
            bar.set_length(total.max(s.rows));
        }
        bar.set_position(s.rows);
        bar.set_message(s.figures("  "));
    }
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
}

async fn log_lines(view: Arc<View>, interval: Duration, fields: bool, stop: CancellationToken) {
    let mut tick = tokio::time::interval_at(Instant::now() + interval, interval);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.cancelled() => return,
        }
        let s = view.snapshot();
        let of = match s.total {
            Some(t) => format!("/{t}"),
            None => String::new(),
        };
        let line = format!("progress: {}{of} rows, {}", s.rows, s.figures(", "));
        if fields {
            // For a log collector: each figure a field it can graph.
            tracing::info!(
                rows = s.rows,
                total = s.total,
                ok = s.ok,
                failed = s.errors,
                lookups_per_s = s.lookups_per_s,
                pace_per_s = s.pace,
                retries = s.retries,
                throttled = s.throttled,
                eta_s = s.eta_s,
                "{line}"
            );
        } else {
            tracing::info!("{line}");
        }
    }
}
