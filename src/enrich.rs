//! `callinfo enrich`: wires reader -> engine -> writer for one job and decides what the
//! run produced. The reader and writer run on blocking threads, the lookups on the async
//! runtime, joined by bounded channels; the journal records every lookup as it finishes.

use std::sync::atomic::Ordering::{Relaxed, Release};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::api::auth::TokenProvider;
use crate::backoff::Backoff;
use crate::config::Job;
use crate::engine::memo::Cache;
use crate::engine::progress::{Progress, ReadSoFar, Size};
use crate::engine::{End, Engine, EngineError, Lookups, Memo, Quota, Shared, Stats};
use crate::input::{key_sources, Batch, Format, InputError, KeySpec, Read, Reader};
use crate::journal::{Journal, Ledger};
use crate::objects::{Bucket, ObjectUrl, UploadLog};
use crate::output::{check_columns, remove_leftovers, Destination, OutputError, Uploads, Writer};
use crate::outputs::{entries, read_whole, write_all, writer_for, Files, Outputs, ReadWhole};
use crate::pace::Pacer;
use crate::plan::Item;
use crate::receipt::{Finished, Receipts};
use crate::redis::{Redis, RedisCache, SharedQuota};
use crate::store::{blocking, Environment, Role, Store};
use crate::summary::{FileState, FileSummary, Summary};
use crate::{api, metrics, Error, FailOn, Shutdown, Status};

/// Batches queued between stages: enough to keep each busy, few enough to bound memory.
const QUEUE: usize = 2;

/// What a finished or interrupted run reports.
pub struct Report {
    pub status: Status,
    pub summary: Summary,
    /// Rows the input has, where known (for the interrupted message).
    pub total_rows: Option<u64>,
    pub journal: std::path::PathBuf,
    /// Where the failed rows are, in words.
    pub errors: String,
    /// Failed rows that a rerun looks up again; with none, the journal was removed.
    pub rerun_may_change: u64,
    /// The flag whose window ended the run, for its message.
    pub window: Option<String>,
    /// The quota that ended the run: the API's daily one, or `--max-requests`.
    pub quota: Option<Quota>,
    /// The `--rate` to start the next run at, when this one found the server's limit
    /// (stated, or seen) below the one given.
    pub advice: Option<String>,
}

/// A run, as its stages: check every input, take the output's lock and the shared parts,
/// skip what is already finished, look the rest up (reader -> engine -> writer), then
/// close the stores and say how it ended.
pub async fn run(job: Job, shutdown: Shutdown) -> Result<Report, Error> {
    let started = Instant::now();
    let env = Environment::new(&job.api.base_url, &job.api.app_key);
    let items = job.plan.items.clone();
    let inputs = check_inputs(&job).await?;
    // One local output's temporary files are made first, which checks its directory; then
    // the journal's lock: a second run on this output stops there, before it touches the
    // files of the run that holds it. Only then are a killed run's leftovers cleared.
    let first = first_local_writer(&job, &inputs)?;
    // The shared parts next: if one is unreachable, nothing of this run is left behind.
    let cache = open_cache(&job, &env).await?;
    let shared = open_shared_quota(&job, &env).await?;
    let journal = open_journal(&job, &env).await?;
    let shape = format!("{:?}|{:?}|{env:?}", job.layout, job.keys);
    let receipts = (job.plan.receipts.clone()).map(|dir| Arc::new(Receipts { dir, shape }));
    let (skipped, first) = take_stock(&job, journal.ledger(), receipts.clone(), first).await?;
    let pending: Vec<usize> = (0..items.len()).filter(|i| skipped[*i].is_none()).collect();
    let first = match first {
        Some(w) => Some(w),
        None => first_remote_writer(&job, &inputs, &pending, journal.ledger()).await?,
    };
    let files: Files = Arc::new(Mutex::new(entries(&items, &skipped)));
    let whole = read_whole(items.len());
    let outputs = Outputs {
        items: items.clone(),
        layout: job.layout.clone(),
        uploads: Some(journal.ledger().clone()),
        ledger: job.plan.many.then(|| journal.ledger().clone()),
        whole: whole.clone(),
        first,
        current: None,
        files: files.clone(),
    };
    let reading = reading(&job, inputs, &pending, whole.clone());
    let memo = Memo::new(journal.store().clone(), cache.clone());
    let engine = engine(&job, started, memo, shared)?;
    let exporter = job
        .metrics_file
        .clone()
        .map(|path| Exporter::start(path, job.progress_interval));
    let result = drive(
        &job, reading, outputs, &engine, &shutdown, &exporter, started,
    )
    .await;
    let rerun_may_change = engine.shared.lookups.stats.rerun_may_change();
    let done = matches!(result, Ok((End::Complete, _))) && rerun_may_change == 0;
    if let (true, Some(receipts)) = (done, receipts) {
        note_finished(receipts, &items, &pending, &whole, &files).await?;
    }
    let closed = blocking(move || {
        if let Some(Cache::File(store)) = cache {
            store.close()?;
        }
        journal.close(done)
    })
    .await;
    let ended = result.and_then(|ended| {
        closed?;
        Ok(ended)
    });
    conclude(&job, &engine, started, ended, files, exporter).await
}

/// Every input, opened once to check it: a missing column in the last file is reported
/// before the first lookup. One file (perhaps stdin) is kept open; many are opened again
/// in turn.
async fn check_inputs(job: &Job) -> Result<Inputs, Error> {
    let (plan, keys, layout) = (job.plan.clone(), job.keys.clone(), job.layout.clone());
    blocking(move || {
        let mut inputs = Inputs {
            first: None,
            opened: Vec::new(),
        };
        for item in &plan.items {
            let reader = Reader::open(&item.input, item.input_format, &keys, &item.text)?;
            check_columns(&reader.schema, &layout)?;
            match key_sources(&reader.schema, &keys) {
                (sources, true) => tracing::info!("{}: {sources}", item.input.name()),
                (sources, false) => tracing::debug!("{}: {sources}", item.input.name()),
            }
            // A CSV's bytes are what the progress estimate of its rows goes by.
            let bytes = match item.input_format {
                Format::Csv(_) => reader.total_bytes.or(item.input_bytes),
                Format::Parquet => None,
            };
            inputs
                .opened
                .push((reader.schema.clone(), reader.total_rows, bytes));
            if !plan.many {
                inputs.first = Some(reader);
            }
        }
        Ok(inputs)
    })
    .await
}

/// The writer of a single local output, made before the journal's lock.
fn first_local_writer(job: &Job, inputs: &Inputs) -> Result<Option<(usize, Writer)>, Error> {
    let local = |d: &Destination| !matches!(d, Destination::Object(_));
    Ok(match (&inputs.first, job.plan.items.as_slice()) {
        (Some(reader), [item]) if local(&item.output) && local(&item.errors) => {
            Some((0, writer_for(item, &reader.schema, &job.layout, &None)?))
        }
        _ => None,
    })
}

/// Under the lock: a killed run's leftovers cleared, and which items an earlier run
/// finished (by the ledger of this job, or a receipt; none with `--fresh`). A finished
/// single file's writer made up front is dropped: it would replace the file.
async fn take_stock(
    job: &Job,
    ledger: &Arc<Ledger>,
    receipts: Option<Arc<Receipts>>,
    first: Option<(usize, Writer)>,
) -> Result<(Vec<Option<Finished>>, Option<(usize, Writer)>), Error> {
    let (items, ledger, many) = (job.plan.items.clone(), ledger.clone(), job.plan.many);
    let ours = first
        .as_ref()
        .map(|(_, w)| w.temp_files())
        .unwrap_or_default();
    let receipts = receipts.filter(|_| !job.fresh);
    let skipped =
        blocking(move || clear_leftovers(&items, &ledger, ours, many, receipts.as_deref())).await?;
    // A local file's writer: dropped, its temporary files go, and no upload is left.
    let first = first.filter(|(i, _)| skipped[*i].is_none());
    Ok((skipped, first))
}

/// Many files, or an object: the first output to write is made now, under the lock, so a
/// bad OUTPUT is reported before the first lookup.
async fn first_remote_writer(
    job: &Job,
    inputs: &Inputs,
    pending: &[usize],
    ledger: &Arc<Ledger>,
) -> Result<Option<(usize, Writer)>, Error> {
    let Some(&i) = pending.first() else {
        return Ok(None);
    };
    let item = job.plan.items[i].clone();
    let schema = inputs.opened[i].0.clone();
    let layout = job.layout.clone();
    let uploads: Uploads = Some(ledger.clone());
    let w = blocking(move || writer_for(&item, &schema, &layout, &uploads)).await?;
    Ok(Some((i, w)))
}

/// What the reader stage reads: the items left to write, and their sizes where known.
fn reading(job: &Job, inputs: Inputs, pending: &[usize], whole: ReadWhole) -> Reading {
    let opened = |i: &usize| &inputs.opened[*i];
    Reading {
        items: pending
            .iter()
            .map(|&i| (i, job.plan.items[i].clone()))
            .collect(),
        keys: job.keys.clone(),
        whole,
        total_rows: pending.iter().map(|i| opened(i).1).sum(),
        total_bytes: pending.iter().map(|i| opened(i).2).sum(),
        first: inputs.first,
    }
}

/// The stages at work: the token keeper, the metrics file's ticks, and the pipeline,
/// until the pipeline ends.
async fn drive(
    job: &Job,
    reading: Reading,
    outputs: Outputs,
    engine: &Engine,
    shutdown: &Shutdown,
    exporter: &Option<Exporter>,
    started: Instant,
) -> Result<(End, Option<u64>), Error> {
    let Lookups { tokens, .. } = &engine.shared.lookups;
    // The keeper fetches the first token when a lookup first needs one: a run answered
    // entirely by the journal or the cache makes no request at all.
    let keeper = CancellationToken::new();
    let keeping = tokio::spawn(tokens.clone().keep(keeper.clone()));
    let ticks = async {
        match exporter {
            Some(e) => {
                e.run(&|| Summary::new(&engine.shared.lookups, started.elapsed()))
                    .await
            }
            None => std::future::pending().await,
        }
    };
    let result = tokio::select! {
        result = pipeline(job, reading, outputs, engine, shutdown) => result,
        never = ticks => match never {},
    };
    keeper.cancel();
    let _ = keeping.await;
    result
}

/// A receipt for each output this run wrote whole, with its figures.
async fn note_finished(
    receipts: Arc<Receipts>,
    items: &[Item],
    pending: &[usize],
    whole: &ReadWhole,
    files: &Files,
) -> Result<(), Error> {
    let figures = files.lock().unwrap_or_else(|e| e.into_inner()).clone();
    let written: Vec<(Item, FileSummary)> = pending
        .iter()
        .filter(|&&i| whole[i].load(std::sync::atomic::Ordering::Acquire))
        .map(|&i| (items[i].clone(), figures[i].clone()))
        .collect();
    blocking(move || {
        for (item, figures) in written {
            receipts.write(&item, &figures);
        }
        Ok::<_, Error>(())
    })
    .await
}

/// How the run ended: its status, the summary (and the metrics file's last write), and
/// what the closing line needs.
async fn conclude(
    job: &Job,
    engine: &Engine,
    started: Instant,
    ended: Result<(End, Option<u64>), Error>,
    files: Files,
    exporter: Option<Exporter>,
) -> Result<Report, Error> {
    let Lookups { pacer, stats, .. } = &engine.shared.lookups;
    let rerun_may_change = stats.rerun_may_change();
    let files = files.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // A finished file skipped counts its failed rows, as the run that finished it did.
    let skipped = files
        .iter()
        .filter(|f| f.state == FileState::AlreadyComplete);
    let failed = stats.failed_total() + skipped.map(|f| f.failed).sum::<u64>();
    let quota = match &ended {
        Ok((End::QuotaExhausted(q), _)) => Some(q.clone()),
        _ => None,
    };
    let status = ended.map(|(end, estimated)| {
        let status = status_of(end, job.fail_on, failed, rerun_may_change);
        (status, estimated)
    });
    let code = match &status {
        Ok((s, _)) => s.code(),
        Err(e) => e.code(),
    };
    let summary = Summary {
        exit_status: code,
        daily_quota_exhausted: matches!(quota, Some(Quota::Daily(_))),
        stated_limits: pacer.learned(),
        files,
        ..Summary::new(&engine.shared.lookups, started.elapsed())
    };
    if let Some(e) = exporter {
        e.finish(&summary, code).await;
    }
    let (status, estimated_rows) = status?;
    Ok(Report {
        status,
        summary,
        total_rows: estimated_rows,
        journal: job.plan.journal.clone(),
        window: job.stop.as_ref().map(|w| w.flag.clone()),
        quota,
        errors: match job.plan.items.as_slice() {
            [one] => one.errors.name(),
            _ => format!("the NAME.errors.csv reports in {}", job.plan.output),
        },
        rerun_may_change,
        advice: pacer.advice(),
    })
}

/// The lookups' engine: the pacer (shared across jobs with `--shared-quota`), the token
/// provider, the client, and the stores that answer before any request.
fn engine(
    job: &Job,
    started: Instant,
    memo: Memo,
    shared: Option<Arc<SharedQuota>>,
) -> Result<Engine, Error> {
    let pacer = Arc::new(Pacer::shared(job.rate.clone(), shared));
    let backoff = Backoff::new(job.max_retries);
    let (http, client) = api::clients(&job.api, job.concurrency).map_err(Error::Setup)?;
    let tokens = Arc::new(TokenProvider::new(
        http,
        (&job.api.base_url, &job.api.app_key, &job.api.app_secret),
        job.token_lifetime,
        pacer.clone(),
        backoff,
    ));
    let lookups = Lookups {
        client,
        tokens,
        pacer,
        backoff,
        stats: Arc::new(Stats::default()),
        max_requests: job.max_requests,
        reserved: Default::default(),
    };
    Ok(Engine {
        shared: Shared::new(lookups, memo),
        concurrency: job.concurrency,
        grace: job.api.timeout.min(Duration::from_secs(10)),
        stop_at: job
            .stop
            .as_ref()
            .map(|w| tokio::time::Instant::from_std(started) + w.after),
    })
}

/// The exit status of a run that ended as `end`, with `failed` rows of which
/// `rerun_may_change` a rerun may answer otherwise.
fn status_of(end: End, fail_on: FailOn, failed: u64, rerun_may_change: u64) -> Status {
    match end {
        End::Interrupted => Status::Interrupted,
        End::OutOfTime => Status::OutOfTime,
        End::QuotaExhausted(_) => Status::QuotaExhausted,
        End::Complete => match fail_on {
            FailOn::Any if failed > 0 => Status::SomeFailed,
            FailOn::Transient if rerun_may_change > 0 => Status::SomeFailed,
            _ => Status::AllOk,
        },
    }
}

/// `--cache`: a file, or Redis shared across machines.
async fn open_cache(job: &Job, env: &Environment) -> Result<Option<Cache>, Error> {
    Ok(match job.cache.clone() {
        Some(path) if is_redis(&path) => {
            let redis = Redis::connect(&path.to_string_lossy())
                .await
                .map_err(EngineError::from)?;
            Some(Cache::Redis(Arc::new(RedisCache::new(redis, env, job.ttl))))
        }
        Some(path) => {
            let (env, ttl) = (env.clone(), job.ttl);
            let store = blocking(move || Store::open(&path, Role::Cache(ttl), &env)).await?;
            Some(Cache::File(Arc::new(store)))
        }
        None => None,
    })
}

/// `--shared-quota`: the window every job of the app draws from.
async fn open_shared_quota(
    job: &Job,
    env: &Environment,
) -> Result<Option<Arc<SharedQuota>>, Error> {
    let Some(url) = &job.shared_quota else {
        return Ok(None);
    };
    let redis = Redis::connect(url).await.map_err(EngineError::from)?;
    Ok(Some(Arc::new(SharedQuota::new(redis, env))))
}

/// The journal, locked for this run; a run that finds an earlier run's lookups there says
/// so first.
async fn open_journal(job: &Job, env: &Environment) -> Result<Journal, Error> {
    let (path, fresh, env) = (job.plan.journal.clone(), job.fresh, env.clone());
    let journal = blocking(move || Journal::open(&path, fresh, &env)).await?;
    let store = journal.store().clone();
    let kept = blocking(move || store.count()).await?;
    if kept > 0 {
        tracing::info!(
            "resuming: {kept} lookups of an earlier run are in {}; they are not asked again",
            job.plan.journal.display()
        );
    }
    Ok(journal)
}

/// `--metrics-file`, rewritten every interval while the run goes on, and once at its end.
struct Exporter {
    path: std::path::PathBuf,
    interval: Duration,
    last_success: Option<f64>,
    /// Held by each write, on its blocking thread: a periodic write whose future was
    /// dropped (the run ended) still finishes before the final one starts, so the final
    /// figures are the ones left, and neither removes the other's temporary file.
    writing: Arc<Mutex<()>>,
}

impl Exporter {
    fn start(path: std::path::PathBuf, interval: Duration) -> Exporter {
        let last_success = metrics::last_success(&path);
        Exporter {
            path,
            interval,
            last_success,
            writing: Arc::default(),
        }
    }

    /// Write the figures every interval; never returns.
    async fn run(&self, figures: &impl Fn() -> Summary) -> std::convert::Infallible {
        let mut tick = tokio::time::interval(self.interval);
        loop {
            tick.tick().await;
            let text = metrics::render(&figures(), metrics::Phase::Running, self.last_success);
            self.write(text, true).await;
        }
    }

    async fn finish(self, summary: &Summary, code: u8) {
        let last = if code == 0 {
            Some(metrics::now_unix())
        } else {
            self.last_success
        };
        let text = metrics::render(summary, metrics::Phase::Ended(code), last);
        self.write(text, false).await;
    }

    /// A metrics file that cannot be written is reported, not fatal: the job's own
    /// output matters more than its monitoring.
    async fn write(&self, text: String, running: bool) {
        let (path, writing) = (self.path.clone(), self.writing.clone());
        let written = tokio::task::spawn_blocking(move || {
            let _turn = writing.lock().unwrap_or_else(|e| e.into_inner());
            #[cfg(debug_assertions)]
            test_hooks::metrics_write(running);
            #[cfg(not(debug_assertions))]
            let _ = running;
            crate::output::write_atomically(&path, text.as_bytes())
        })
        .await;
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
    reading: Reading,
    outputs: Outputs,
    engine: &Engine,
    shutdown: &Shutdown,
) -> Result<(End, Option<u64>), Error> {
    let read = Arc::new(ReadSoFar::default());
    let size = Size {
        rows: reading.total_rows,
        bytes: reading.total_bytes.map(|t| (t, read.clone())),
        limit: job.limit,
    };
    let (batch_tx, batch_rx) = mpsc::channel(QUEUE);
    let limit = job.limit;
    let reader = tokio::task::spawn_blocking(move || read_all(reading, limit, batch_tx, &read));
    let (done_tx, done_rx) = mpsc::channel(QUEUE);
    let (complete_tx, complete_rx) = oneshot::channel();
    let write_task = tokio::task::spawn_blocking(move || write_all(outputs, done_rx, complete_rx));

    let progress = Progress::start(
        job.progress,
        job.log_fields,
        job.progress_interval,
        engine,
        size,
    );
    let end = engine.run(batch_rx, done_tx, shutdown).await;
    // The engine has dropped its end of the reader's channel: the reader stops at its
    // next batch, if it had not ended (a panic there is the failure the engine reported).
    // A read blocked on stdin cannot be woken, so the wait is bounded.
    let _ = tokio::time::timeout(Duration::from_secs(1), reader).await;
    let estimated = progress.finish().await;
    // The writer finishes the last output, or drops the unfinished ones, on its thread.
    let _ = complete_tx.send(matches!(end, Ok(End::Complete)));
    let written = write_task.await.expect("the writer thread does not panic");
    match (end, written) {
        // The writer's own error says more than the engine's "writer stopped".
        (_, Err(e)) => Err(e.into()),
        (Err(e), Ok(())) => Err(e.into()),
        (Ok(end), Ok(())) => Ok((end, estimated)),
    }
}

/// What the reader stage reads: the inputs still to do, in order, with their index in
/// the plan.
struct Reading {
    /// The one input opened up front (a single-file run), for its first item.
    first: Option<Reader>,
    items: Vec<(usize, Item)>,
    keys: KeySpec,
    /// Set for each input read to its end.
    whole: ReadWhole,
    total_rows: Option<u64>,
    total_bytes: Option<u64>,
}

/// Every input, opened once to check it.
struct Inputs {
    first: Option<Reader>,
    /// Each input's schema, its rows (Parquet) and its bytes (CSV), where known.
    opened: Vec<(SchemaRef, Option<u64>, Option<u64>)>,
}

/// Under the lock: abort the uploads killed runs left, remove their temporary files, and
/// say which inputs an earlier run of this many-file job already completed.
fn clear_leftovers(
    items: &[Item],
    ledger: &Ledger,
    ours: Vec<std::path::PathBuf>,
    many: bool,
    receipts: Option<&Receipts>,
) -> Result<Vec<Option<Finished>>, Error> {
    for (url, id) in ledger.open_uploads() {
        let Some(Ok(object)) = ObjectUrl::parse(&url) else {
            continue;
        };
        let aborted = Bucket::of(&object).and_then(|b| b.abort(&object, &id));
        match aborted {
            Ok(()) => {
                tracing::info!("{url}: aborted the unfinished upload a killed run left");
                ledger
                    .ended(&id)
                    .map_err(OutputError::io(ledger.path().display()))?;
            }
            Err(e) => tracing::warn!("cannot abort an unfinished upload: {e}"),
        }
    }
    for item in items {
        for d in [&item.output, &item.errors] {
            if let Destination::File(path) = d {
                remove_leftovers(path, &ours);
            }
        }
    }
    items
        .iter()
        .map(|item| {
            let done = many
                && ledger.is_done(&item.output.name(), &item.input.name(), item.input_bytes)
                && item.output.exists()?;
            if done {
                tracing::info!(
                    "{}: already complete from {} (an earlier run of this job); skipped",
                    item.output.name(),
                    item.input.name()
                );
                return Ok(Some(Finished::default()));
            }
            let Some(finished) = receipts.and_then(|r| r.finished(item)) else {
                return Ok(None);
            };
            let when = chrono::DateTime::from_timestamp(finished.at as i64, 0)
                .map(|t| t.with_timezone(&chrono::Local).format(" at %Y-%m-%d %H:%M").to_string())
                .unwrap_or_default();
            let failed = match finished.failed {
                0 => String::new(),
                n => format!("; its {n} failed rows are in {}", item.errors.name()),
            };
            tracing::info!(
                "{}: already finished from {} by the same command{when}, and neither has changed: nothing to do{failed} (--fresh redoes it)",
                item.output.name(),
                item.input.name()
            );
            Ok(Some(finished))
        })
        .collect()
}

/// Batches of each input in turn, then `End`: at the end of the last input, or after
/// `limit` rows. An input with no rows still sends one empty batch, so that its output is
/// written. On an error it stops after sending it; a panic ends the thread without `End`,
/// which the engine takes as the failure it is.
fn read_all(
    reading: Reading,
    limit: Option<u64>,
    tx: mpsc::Sender<Result<Read, InputError>>,
    read: &ReadSoFar,
) {
    let mut left = limit.unwrap_or(u64::MAX);
    let mut first = reading.first;
    let mut bytes_before = 0;
    for (file, item) in &reading.items {
        if left == 0 {
            break;
        }
        let reader = match first.take() {
            Some(r) => Ok(r),
            None => Reader::open(&item.input, item.input_format, &reading.keys, &item.text),
        };
        let mut reader = match reader {
            Ok(r) => r,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut sent = false;
        while left > 0 {
            let Some(mut batch) = reader.next_batch() else {
                reading.whole[*file].store(true, Release);
                break;
            };
            if let Ok(b) = &mut batch {
                #[cfg(debug_assertions)]
                test_hooks::reader_batch(b.first_row);
                b.file = *file;
                b.truncate(left);
                left -= b.data.num_rows() as u64;
                read.rows.fetch_add(b.data.num_rows() as u64, Relaxed);
            }
            let failed = batch.is_err();
            if let Some(b) = reader.bytes_read() {
                read.bytes.store(bytes_before + b, Relaxed);
            }
            if tx.blocking_send(batch.map(Read::Batch)).is_err() || failed {
                return;
            }
            sent = true;
        }
        if !sent {
            let empty = Batch {
                file: *file,
                first_row: 1,
                data: RecordBatch::new_empty(reader.schema.clone()),
                keys: Vec::new(),
            };
            if tx.blocking_send(Ok(Read::Batch(empty))).is_err() {
                return;
            }
        }
        bytes_before += reader.total_bytes.unwrap_or(0);
    }
    let _ = tx.blocking_send(Ok(Read::End));
}

/// Faults the tests provoke in a debug build, where no real input can: the release binary
/// has none of this.
#[cfg(debug_assertions)]
mod test_hooks {
    /// `CALLINFO_TEST_SLOW_METRICS_MS=N`: each metrics write of a running run takes N ms
    /// more, so that the run ends while one is under way.
    pub fn metrics_write(running: bool) {
        let ms = std::env::var("CALLINFO_TEST_SLOW_METRICS_MS")
            .ok()
            .and_then(|v| v.parse::<u64>().ok());
        if let (true, Some(ms)) = (running, ms) {
            std::thread::sleep(std::time::Duration::from_millis(ms));
        }
    }

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
