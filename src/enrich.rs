//! `callinfo enrich`: wires reader -> engine -> writer for one job and decides what the
//! run produced. The reader and writer run on blocking threads, the lookups on the async
//! runtime, joined by bounded channels; the journal records every lookup as it finishes.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::api::auth::TokenProvider;
use crate::api::client::Client;
use crate::backoff::Backoff;
use crate::config::Job;
use crate::engine::memo::Cache;
use crate::engine::progress::{Progress, ReadSoFar, Size};
use crate::engine::{End, Engine, EngineError, Lookups, Memo, Shared, Stats};
use crate::input::{InputError, Read, Reader};
use crate::journal::{Ending, Journal};
use crate::outcome::LookupKind;
use crate::output::{Done, OutputError, Writer};
use crate::pace::Pacer;
use crate::redis::{Redis, RedisCache, SharedQuota};
use crate::store::{blocking, Environment, Role, Store};
use crate::summary::Summary;
use crate::{api, metrics, Error, FailOn, Shutdown, Status};

/// Batches queued between stages: enough to keep each busy, few enough to bound memory.
const QUEUE: usize = 2;
/// Input bytes the reorder window may hold while a slow row keeps its batch from the
/// writer: rows behind it go on being looked up until this much waits.
const WINDOW_BYTES: usize = 64 << 20;

/// What a finished or interrupted run reports.
pub struct Report {
    pub status: Status,
    pub summary: Summary,
    /// Rows the input has, where known (for the interrupted message).
    pub total_rows: Option<u64>,
    pub journal: std::path::PathBuf,
    pub errors: std::path::PathBuf,
    /// Failed rows that a rerun looks up again; with none, the journal was removed.
    pub rerun_may_change: u64,
    /// The flag whose window ended the run, for its message.
    pub window: Option<String>,
}

pub async fn run(job: Job, shutdown: Shutdown) -> Result<Report, Error> {
    let started = Instant::now();
    let env = Environment::new(&job.api.base_url, &job.api.app_key);
    let reader = Reader::open(&job.input, job.input_format, &job.keys, job.delimiter)?;
    let total_rows = reader.total_rows.map(|t| job.limit.map_or(t, |l| t.min(l)));
    // The writer's temporary files are made first, which checks the output directory; then
    // the journal's lock: a second run on this output stops there, before it touches the
    // files of the run that holds it. Only then are a killed run's leftovers cleared.
    let writer = Writer::create(
        &job.output,
        job.output_format,
        &job.errors,
        &reader.schema,
        &job.layout,
    )?;
    // The shared parts next: if one is unreachable, nothing of this run is left behind.
    let cache = match job.cache.clone() {
        Some(path) if is_redis(&path) => {
            let redis = Redis::connect(&path.to_string_lossy())
                .await
                .map_err(EngineError::from)?;
            Some(Cache::Redis(Arc::new(RedisCache::new(
                redis, &env, job.ttl,
            ))))
        }
        Some(path) => {
            let (env, ttl) = (env.clone(), job.ttl);
            let store = blocking(move || Store::open(&path, Role::Cache(ttl), &env)).await?;
            Some(Cache::File(Arc::new(store)))
        }
        None => None,
    };
    let shared = match &job.shared_quota {
        Some(url) => {
            let redis = Redis::connect(url).await.map_err(EngineError::from)?;
            Some(Arc::new(SharedQuota::new(redis, &env)))
        }
        None => None,
    };

    let journal = {
        let (path, fresh, env) = (job.journal.clone(), job.fresh, env.clone());
        blocking(move || Journal::open(&path, fresh, &env)).await?
    };
    writer.remove_leftovers();

    let pacer = Arc::new(Pacer::shared(job.rate, shared));
    let backoff = Backoff::new(job.max_retries);
    let http = api::http_client(job.api.timeout, job.concurrency, job.api.ca_cert.as_deref())
        .map_err(|e| Error::Setup(format!("cannot set up the HTTP client: {e}")))?;
    let tokens = Arc::new(TokenProvider::new(
        http.clone(),
        &job.api.base_url,
        job.api.app_key.clone(),
        job.api.app_secret.clone(),
        job.token_lifetime,
        pacer.clone(),
        backoff,
    ));
    // The keeper fetches the first token when a lookup first needs one: a run answered
    // entirely by the journal or the cache makes no request at all.
    let keeper = CancellationToken::new();
    tokio::spawn(tokens.clone().keep(keeper.clone()));
    let stats = Arc::new(Stats::default());
    let engine = Engine {
        shared: Shared::new(
            Lookups {
                client: Client::new(http, &job.api.base_url, job.api.app_key.clone()),
                tokens: tokens.clone(),
                pacer: pacer.clone(),
                backoff,
                stats: stats.clone(),
            },
            Memo::new(journal.store().clone(), cache.clone()),
        ),
        concurrency: job.concurrency,
        window_bytes: WINDOW_BYTES,
        read_ahead: 2 * job.concurrency,
        grace: job.api.timeout.min(Duration::from_secs(10)),
        stop_at: job
            .stop
            .as_ref()
            .map(|w| tokio::time::Instant::from_std(started) + w.after),
    };

    let figures = || {
        Summary::new(
            &stats,
            tokens.requests(),
            pacer.effective_rate(),
            started.elapsed(),
            0,
        )
    };
    let exporter = job
        .metrics_file
        .clone()
        .map(|path| Exporter::start(path, job.progress_interval));
    let result = {
        let ticks = async {
            match &exporter {
                Some(e) => e.run(&figures).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            result = pipeline(&job, reader, writer, &engine, &shutdown) => result,
            never = ticks => match never {},
        }
    };
    keeper.cancel();
    // Rows a rerun could answer differently: transient failures and 401s.
    let rerun_may_change: u64 = LookupKind::ALL
        .iter()
        .filter(|k| k.retry_on_rerun())
        .map(|k| stats.failed(*k))
        .sum();
    let ending = match result {
        Ok((End::Complete, _)) if rerun_may_change == 0 => Ending::Done,
        _ => Ending::RerunHasWork,
    };
    let closed = blocking(move || {
        if let Some(Cache::File(store)) = cache {
            store.close()?;
        }
        journal.close(ending)
    })
    .await;
    let failed = stats.failed_total();
    let status = result.and_then(|(end, estimated)| {
        closed?;
        let status = match end {
            End::Interrupted => Status::Interrupted,
            End::OutOfTime => Status::OutOfTime,
            End::Complete => match job.fail_on {
                FailOn::Any if failed > 0 => Status::SomeFailed,
                FailOn::Transient if rerun_may_change > 0 => Status::SomeFailed,
                _ => Status::AllOk,
            },
        };
        Ok((status, estimated))
    });
    let code = match &status {
        Ok((s, _)) => s.code(),
        Err(e) => e.code(),
    };
    let summary = Summary {
        exit_status: code,
        ..figures()
    };
    if let Some(e) = exporter {
        e.finish(&summary, code).await;
    }
    let (status, estimated_rows) = status?;
    Ok(Report {
        status,
        summary,
        total_rows: total_rows.or(estimated_rows),
        journal: job.journal.clone(),
        window: job.stop.as_ref().map(|w| w.flag.clone()),
        errors: job.errors.clone(),
        rerun_may_change,
    })
}

/// `--metrics-file`, rewritten every interval while the run goes on, and once at its end.
struct Exporter {
    path: std::path::PathBuf,
    interval: Duration,
    last_success: Option<f64>,
}

impl Exporter {
    fn start(path: std::path::PathBuf, interval: Duration) -> Exporter {
        let last_success = metrics::last_success(&path);
        Exporter {
            path,
            interval,
            last_success,
        }
    }

    /// Write the figures every interval; never returns.
    async fn run(&self, figures: &impl Fn() -> Summary) -> std::convert::Infallible {
        let mut tick = tokio::time::interval(self.interval);
        loop {
            tick.tick().await;
            let text = metrics::render(&figures(), metrics::Phase::Running, self.last_success);
            self.write(text).await;
        }
    }

    async fn finish(self, summary: &Summary, code: u8) {
        let last = if code == 0 {
            Some(metrics::now_unix())
        } else {
            self.last_success
        };
        let text = metrics::render(summary, metrics::Phase::Ended(code), last);
        self.write(text).await;
    }

    /// A metrics file that cannot be written is reported, not fatal: the job's own
    /// output matters more than its monitoring.
    async fn write(&self, text: String) {
        let path = self.path.clone();
        let written = tokio::task::spawn_blocking(move || metrics::write(&path, &text)).await;
        if let Ok(Err(e)) = written {
            tracing::warn!(
                "{}: cannot write the metrics file: {e}",
                self.path.display()
            );
        }
    }
}

/// Run the stages: how the rows ended, and the input's rows as last estimated (CSV).
async fn pipeline(
    job: &Job,
    reader: Reader,
    writer: Writer,
    engine: &Engine,
    shutdown: &Shutdown,
) -> Result<(End, Option<u64>), Error> {
    let stats = engine.shared.lookups.stats.clone();
    let read = Arc::new(ReadSoFar::default());
    let size = Size {
        rows: reader.total_rows.map(|t| job.limit.map_or(t, |l| t.min(l))),
        bytes: reader.total_bytes.map(|t| (t, read.clone())),
        limit: job.limit,
    };
    let (batch_tx, batch_rx) = mpsc::channel(QUEUE);
    let limit = job.limit;
    tokio::task::spawn_blocking(move || read_all(reader, limit, batch_tx, &read));
    let (done_tx, done_rx) = mpsc::channel(QUEUE);
    let write_task = tokio::task::spawn_blocking(move || write_all(writer, done_rx));

    let pacer = engine.shared.lookups.pacer.clone();
    let progress = Progress::start(
        job.progress,
        job.progress_interval,
        stats,
        pacer,
        size,
        engine.stop_at,
    );
    let end = engine.run(batch_rx, done_tx, shutdown).await;
    let estimated = progress.finish().await;
    let written = write_task.await.expect("the writer thread does not panic");

    let writer = match (end, written) {
        // The writer's own error says more than the engine's "writer stopped".
        (_, Err(e)) => return Err(e.into()),
        (Err(e), Ok(_)) => return Err(e.into()),
        (Ok(End::Complete), Ok(writer)) => writer,
        // Dropping the unfinished writer removes its temporary files.
        (Ok(end), Ok(_unfinished)) => return Ok((end, estimated)),
    };
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .expect("the writer thread does not panic")?;
    Ok((End::Complete, estimated))
}

/// Batches, then `End`: at the end of the input, or after `limit` rows. On an error it
/// stops after sending it; a panic ends the thread without `End`, which the engine takes as
/// the failure it is.
fn read_all(
    mut reader: Reader,
    limit: Option<u64>,
    tx: mpsc::Sender<Result<Read, InputError>>,
    read: &ReadSoFar,
) {
    let mut left = limit.unwrap_or(u64::MAX);
    while left > 0 {
        let Some(mut batch) = reader.next_batch() else {
            break;
        };
        if let Ok(b) = &mut batch {
            #[cfg(debug_assertions)]
            test_hooks::reader_batch(b.first_row);
            b.truncate(left);
            left -= b.data.num_rows() as u64;
            read.rows.fetch_add(b.data.num_rows() as u64, Relaxed);
        }
        let failed = batch.is_err();
        if let Some(b) = reader.bytes_read() {
            read.bytes.store(b, Relaxed);
        }
        if tx.blocking_send(batch.map(Read::Batch)).is_err() || failed {
            return;
        }
    }
    let _ = tx.blocking_send(Ok(Read::End));
}

fn write_all(mut writer: Writer, mut rx: mpsc::Receiver<Done>) -> Result<Writer, OutputError> {
    while let Some(done) = rx.blocking_recv() {
        writer.write(&done)?;
    }
    Ok(writer)
}

/// Faults the tests provoke in a debug build, where no real input can: the release binary
/// has none of this.
#[cfg(debug_assertions)]
mod test_hooks {
    /// `CALLINFO_TEST_READER_PANIC_AFTER_ROW=N`: the reader thread panics on the first batch
    /// that starts after data row N, as a bug in a reader would.
    pub fn reader_batch(first_row: u64) {
        let Some(after) = std::env::var("CALLINFO_TEST_READER_PANIC_AFTER_ROW")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        else {
            return;
        };
        if first_row > after {
            panic!("test hook: the reader dies at row {first_row}");
        }
    }
}

/// `--cache redis://...` (or `rediss://`) is a Redis cache; anything else a file.
pub fn is_redis(path: &std::path::Path) -> bool {
    let s = path.to_string_lossy();
    s.starts_with("redis://") || s.starts_with("rediss://")
}
