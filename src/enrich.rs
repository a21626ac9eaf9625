//! `callinfo enrich`: wires reader -> engine -> writer for one job and decides what the
//! run produced. The reader and writer run on blocking threads, the lookups on the async
//! runtime, joined by bounded channels; the journal records every lookup as it finishes.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::api::auth::TokenProvider;
use crate::api::client::Client;
use crate::backoff::Backoff;
use crate::config::Job;
use crate::engine::progress::{Progress, Size};
use crate::engine::{End, Engine, EngineError, LookupError, Lookups, Memo, Stats};
use crate::input::{Batch, InputError, Reader};
use crate::output::{Done, OutputError, Writer};
use crate::pace::Pacer;
use crate::store::{self, Role, Store};
use crate::summary::Summary;
use crate::{api, Error, Shutdown, Status};

/// Batches queued between stages: enough to keep each busy, few enough to bound memory.
const QUEUE: usize = 2;

/// What a finished or interrupted run reports.
pub struct Report {
    pub status: Status,
    pub summary: Summary,
    /// Rows the input has, where known (for the interrupted message).
    pub total_rows: Option<u64>,
    pub journal: std::path::PathBuf,
}

pub async fn run(job: Job, shutdown: Shutdown) -> Result<Report, Error> {
    let started = Instant::now();
    let reader = Reader::open(&job.input, job.input_format, &job.keys)?;
    let total_rows = reader.total_rows;
    let writer = Writer::create(&job.output, job.output_format, &job.errors, &reader.schema)?;
    if job.fresh {
        store::remove_files(&job.journal);
    }
    let journal = Store::open(&job.journal, Role::Journal)?;
    let cache = match &job.cache {
        Some(path) => Some(Store::open(path, Role::Cache)?),
        None => None,
    };

    let pacer = Arc::new(Pacer::new(job.rate));
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
    let stats = Arc::new(Stats::default());
    let engine = Arc::new(Engine {
        lookups: Lookups {
            client: Client::new(http, &job.api.base_url, job.api.app_key.clone()),
            tokens: tokens.clone(),
            pacer: pacer.clone(),
            backoff,
            permits: tokio::sync::Semaphore::new(job.concurrency),
            stats: stats.clone(),
        },
        memo: Memo::new(journal, cache),
        window: (job.concurrency * 16).max(256),
        grace: job.api.timeout.min(Duration::from_secs(10)),
    });

    // Fail fast: rejected credentials or a wrong base URL stop the run before any row.
    let result = match tokens.get().await {
        Ok(_) => pipeline(&job, reader, writer, engine.clone(), shutdown).await,
        Err(e) => Err(EngineError::from(LookupError::from(e)).into()),
    };
    let closed = engine.memo.close();
    let summary = |status: Status| {
        let pace = engine.lookups.pacer.effective_rate();
        Summary::new(
            &stats,
            tokens.requests(),
            pace,
            started.elapsed(),
            status.code(),
        )
    };
    let report = |status: Status| Report {
        status,
        summary: summary(status),
        total_rows,
        journal: job.journal.clone(),
    };
    match result {
        Err(e) => Err(e),
        Ok(None) => {
            closed?;
            Ok(report(Status::Interrupted))
        }
        Ok(Some(())) => {
            closed?;
            if stats.failed_total() == 0 {
                // Nothing left to redo: the journal has done its job.
                engine.memo.journal.remove()?;
                Ok(report(Status::AllOk))
            } else {
                Ok(report(Status::SomeFailed))
            }
        }
    }
}

/// Run the stages; `Ok(None)` when a signal stopped the run before the end.
async fn pipeline(
    job: &Job,
    reader: Reader,
    writer: Writer,
    engine: Arc<Engine>,
    shutdown: Shutdown,
) -> Result<Option<()>, Error> {
    let stats = engine.lookups.stats.clone();
    let bytes_read = Arc::new(AtomicU64::new(0));
    let size = Size {
        rows: reader.total_rows,
        bytes: reader.total_bytes.map(|t| (t, bytes_read.clone())),
    };
    let (batch_tx, batch_rx) = mpsc::channel(QUEUE);
    tokio::task::spawn_blocking(move || read_all(reader, batch_tx, bytes_read));
    let (done_tx, done_rx) = mpsc::channel(QUEUE);
    let write_task = tokio::task::spawn_blocking(move || write_all(writer, done_rx));

    let pacer = engine.lookups.pacer.clone();
    let progress = Progress::start(job.progress, job.progress_interval, stats, pacer, size);
    let end = engine.run(batch_rx, done_tx, shutdown).await;
    progress.finish().await;
    let written = write_task.await.expect("the writer thread does not panic");

    let writer = match (end, written) {
        // The writer's own error says more than the engine's "writer stopped".
        (_, Err(e)) => return Err(e.into()),
        (Err(e), Ok(_)) => return Err(e.into()),
        // Dropping the unfinished writer removes its temporary files.
        (Ok(End::Interrupted), Ok(_unfinished)) => return Ok(None),
        (Ok(End::Complete), Ok(writer)) => writer,
    };
    tokio::task::spawn_blocking(move || writer.finish())
        .await
        .expect("the writer thread does not panic")?;
    Ok(Some(()))
}

fn read_all(
    mut reader: Reader,
    tx: mpsc::Sender<Result<Batch, InputError>>,
    bytes: Arc<AtomicU64>,
) {
    while let Some(batch) = reader.next_batch() {
        let failed = batch.is_err();
        if let Some(b) = reader.bytes_read() {
            bytes.store(b, Relaxed);
        }
        if tx.blocking_send(batch).is_err() || failed {
            return;
        }
    }
}

fn write_all(mut writer: Writer, mut rx: mpsc::Receiver<Done>) -> Result<Writer, OutputError> {
    while let Some(done) = rx.blocking_recv() {
        writer.write(&done)?;
    }
    Ok(writer)
}
