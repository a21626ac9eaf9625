//! The engine: takes batches from the reader, resolves each row's key (journal, cache, an
//! earlier row) or queues it for a lookup, and hands the rows to the writer in input order.
//!
//! Two halves, one job each. `--concurrency` worker tasks take keys from the [`Queue`]
//! (retries first) and send one paced request at a time. The engine loop admits batches,
//! and releases the rows at the head of its reorder window as their outcomes land. The
//! window is bounded by the bytes of input it holds, not by a row count, so a row whose
//! answer is slow never stops the lookups of the rows behind it; how far the reader runs
//! ahead of the lookups is bounded separately. Every end is explicit: the reader's `End`,
//! a signal, a fatal error, or a store that can no longer write.

pub mod lookup;
pub mod memo;
pub mod progress;
pub mod queue;
pub mod stats;

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::api::auth::AuthError;
use crate::backoff::sleep_until;
use crate::input::{Batch, InputError, Read};
use crate::key::RowKey;
use crate::outcome::{LookupKind, Outcome};
use crate::output::Done;
use crate::store::StoreError;
use crate::Shutdown;

pub use lookup::Lookups;
pub use memo::Memo;
pub use queue::Queue;
pub use stats::{Quantiles, Stats};

use lookup::Step;
use queue::{Cell, Queued};

/// Input bytes the reorder window may hold while a slow row keeps its batch from the
/// writer: rows behind it go on being looked up until this much waits.
const WINDOW_BYTES: usize = 64 << 20;
/// Keys that must fail the same way, before any succeeds, to call a failure systemic.
pub const SYSTEMIC_KEYS: u32 = 10;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A lookup that cannot go on, for any row.
    #[error(transparent)]
    Lookup(#[from] AuthError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Redis(#[from] crate::redis::RedisError),
    /// Not an error to report but a stop: the engine ends as [`End::QuotaExhausted`].
    #[error("{0}")]
    QuotaExhausted(Quota),
    #[error("stopped after the first {keys} lookups all failed as {kind} (last: {message}); nothing suggests the rest would do better")]
    Systemic {
        keys: u32,
        kind: LookupKind,
        message: String,
    },
    #[error(transparent)]
    Input(#[from] InputError),
    #[error("the input reader stopped before the end of the input (an internal error); nothing was written under the output name")]
    ReaderDied,
    #[error("the output writer stopped")]
    WriterGone,
}

/// How the row stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Every input row reached the writer.
    Complete,
    /// A signal stopped the run; the rows after the last one written were not done.
    Interrupted,
    /// `--deadline` / `--max-duration` came: likewise, and the same command finishes later.
    OutOfTime,
    /// The API's daily quota is used up, or the run's `--max-requests`: likewise.
    QuotaExhausted(Quota),
}

/// Which quota ended a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Quota {
    /// The API's daily quota, in the gateway's words: the same command once it resets.
    Daily(String),
    /// `--max-requests N`: the same command goes on with the rest of the day's quota.
    Run(u64),
}

impl std::fmt::Display for Quota {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Quota::Daily(words) => write!(f, "the daily quota is used up: {words}"),
            Quota::Run(max) => write!(f, "--max-requests {max} reached"),
        }
    }
}

/// A row's outcome, or the cell its lookup will fill.
#[derive(Clone)]
pub enum Slot {
    Ready(Arc<Outcome>),
    Waiting(Arc<Cell>),
}

/// What the workers and the engine loop share.
pub struct Shared {
    pub lookups: Lookups,
    pub memo: Memo,
    pub queue: Queue,
    /// A lookup ended (done or re-queued): the loop looks at the head of its window again.
    settled: Notify,
    fatal: Fatal,
    systemic: Mutex<Systemic>,
    /// The workers and the retries waiting out their back-off: owned by the run, ended
    /// with it.
    tasks: Mutex<JoinSet<()>>,
}

impl Shared {
    pub fn new(lookups: Lookups, memo: Memo) -> Arc<Shared> {
        Arc::new(Shared {
            lookups,
            memo,
            queue: Queue::default(),
            settled: Notify::new(),
            fatal: Fatal::default(),
            systemic: Mutex::default(),
            tasks: Mutex::default(),
        })
    }

    /// One worker: claim a job, wait until there is a usable token, then for a slot, send,
    /// repeat. A slot is never held while a token is awaited.
    async fn work(self: Arc<Self>) {
        let l = &self.lookups;
        while self.queue.claim().await {
            let token = loop {
                if let Err(e) = l.tokens.get().await {
                    self.queue.unclaim();
                    self.fatal.set(match e {
                        AuthError::QuotaExhausted { message, .. } => {
                            EngineError::QuotaExhausted(Quota::Daily(message))
                        }
                        e => e.into(),
                    });
                    return;
                }
                let waiting = tokio::time::Instant::now();
                if let Err(e) = l.pacer.ready().await {
                    self.queue.unclaim();
                    self.fatal.set(e.into());
                    return;
                }
                l.stats.pacer_wait.record(waiting.elapsed());
                // The token current at the slot, which a refresh may have replaced while
                // this worker waited; only with none usable is the slot given up.
                if let Some(token) = l.tokens.current() {
                    break token;
                }
            };
            if let Err(max) = l.reserve() {
                self.fatal.set(EngineError::QuotaExhausted(Quota::Run(max)));
            }
            // Nothing more goes once the run is stopping (a fatal error, a used-up quota).
            if self.fatal.token.is_cancelled() {
                self.queue.unclaim();
                return;
            }
            let Some(mut job) = self.queue.take() else {
                return;
            };
            match l.attempt(&mut job, &token).await {
                Step::Done(outcome) => self.finish(job, outcome).await,
                Step::Again => self.queue.push_retry(job),
                Step::After(delay) => {
                    let shared = self.clone();
                    self.tasks.lock().unwrap().spawn(async move {
                        tokio::time::sleep(delay).await;
                        shared.queue.push_retry(job);
                    });
                }
                Step::Fatal(e) => self.fatal.set(e.into()),
                // The row is left undone: the run stops, and its rerun asks it again.
                Step::QuotaExhausted(message) => self
                    .fatal
                    .set(EngineError::QuotaExhausted(Quota::Daily(message))),
            }
            self.queue.finished();
            self.settled.notify_one();
        }
    }

    async fn finish(&self, job: Queued, outcome: Outcome) {
        Stats::bump(&self.lookups.stats.lookups);
        let failed_again = job.failed_before && matches!(outcome, Outcome::Failed(_));
        if !failed_again {
            if let Err(e) = self.systemic.lock().unwrap().observe(&outcome) {
                self.fatal.set(e);
            }
        }
        self.memo
            .record(job.key(), &job.cell, Arc::new(outcome))
            .await;
    }
}

/// The first fatal error of the run, from any worker.
#[derive(Default)]
struct Fatal {
    token: CancellationToken,
    error: Mutex<Option<EngineError>>,
}

impl Fatal {
    fn set(&self, e: EngineError) {
        let mut slot = self.error.lock().unwrap();
        if slot.is_none() {
            *slot = Some(e);
        }
        self.token.cancel();
    }

    fn take(&self) -> EngineError {
        self.error
            .lock()
            .unwrap()
            .take()
            .expect("set before it fires")
    }
}

/// Rows of one batch waiting in the reorder window.
struct Held {
    done: Done,
    slots: Vec<Slot>,
    /// Rows before this one have been released.
    next: usize,
    bytes: usize,
}

pub struct Engine {
    pub shared: Arc<Shared>,
    pub concurrency: usize,
    /// How long lookups in flight may take to finish after a stop.
    pub grace: Duration,
    /// When to stop admitting rows (`--deadline`, `--max-duration`).
    pub stop_at: Option<tokio::time::Instant>,
}

impl Engine {
    pub async fn run(
        &self,
        batches: mpsc::Receiver<Result<Read, InputError>>,
        done: mpsc::Sender<Done>,
        shutdown: &Shutdown,
    ) -> Result<End, EngineError> {
        {
            let mut tasks = self.shared.tasks.lock().unwrap();
            for _ in 0..self.concurrency {
                tasks.spawn(self.shared.clone().work());
            }
        }
        let end = self.flow(batches, done, shutdown).await;
        self.wind_down(shutdown).await;
        self.end_tasks().await;
        end
    }

    /// Every worker and waiting retry ends with the run: after the wind-down, what is
    /// still running (a request past the grace period) is dropped, as a kill would.
    async fn end_tasks(&self) {
        loop {
            let mut tasks = std::mem::take(&mut *self.shared.tasks.lock().unwrap());
            if tasks.is_empty() {
                return;
            }
            tasks.shutdown().await;
        }
    }

    /// No new request; those in flight get the grace period to land in the journal.
    async fn wind_down(&self, shutdown: &Shutdown) {
        let queue = &self.shared.queue;
        queue.close();
        let deadline = tokio::time::Instant::now() + self.grace;
        while queue.in_flight() > 0 {
            tokio::select! {
                _ = self.shared.settled.notified() => {}
                _ = tokio::time::sleep_until(deadline) => return,
                _ = shutdown.now.cancelled() => return,
            }
        }
    }

    async fn flow(
        &self,
        mut batches: mpsc::Receiver<Result<Read, InputError>>,
        done: mpsc::Sender<Done>,
        shutdown: &Shutdown,
    ) -> Result<End, EngineError> {
        let shared = &self.shared;
        let stats = &shared.lookups.stats;
        let journal = shared.memo.journal.clone();
        let cache = shared.memo.cache.clone();
        let no_cache = CancellationToken::new();
        let cache_failed = cache.as_ref().map_or(&no_cache, |c| c.failed());
        let mut window: VecDeque<Held> = VecDeque::new();
        let mut held_bytes = 0;
        let mut input_ended = false;
        loop {
            while let Some(head) = window.front_mut() {
                if !release(head, stats) {
                    break;
                }
                let held = window.pop_front().expect("just looked at");
                held_bytes -= held.bytes;
                tokio::select! {
                    sent = done.send(held.done) => sent.map_err(|_| EngineError::WriterGone)?,
                    _ = shutdown.stop.cancelled() => return Ok(End::Interrupted),
                }
            }
            if input_ended && window.is_empty() {
                return Ok(End::Complete);
            }
            // How far reading runs ahead of the lookups is bounded apart from the window.
            let admit = !input_ended
                && held_bytes < WINDOW_BYTES
                && shared.queue.fresh_len() < 2 * self.concurrency;
            tokio::select! {
                biased;
                _ = shutdown.stop.cancelled() => return Ok(End::Interrupted),
                _ = sleep_until(self.stop_at) => return Ok(End::OutOfTime),
                _ = shared.fatal.token.cancelled() => return match shared.fatal.take() {
                    EngineError::QuotaExhausted(message) => Ok(End::QuotaExhausted(message)),
                    e => Err(e),
                },
                _ = journal.failed().cancelled() => {
                    let e = journal.error().expect("a store fires `failed` after setting its error");
                    return Err(e.into());
                }
                _ = cache_failed.cancelled() => {
                    let e = cache.as_ref().and_then(|c| c.error());
                    return Err(e.expect("a cache fires `failed` after setting its error"));
                }
                _ = shared.settled.notified() => {}
                read = batches.recv(), if admit => match read {
                    Some(Ok(Read::Batch(batch))) => {
                        let held = self.admit(batch).await?;
                        held_bytes += held.bytes;
                        window.push_back(held);
                    }
                    Some(Ok(Read::End)) => input_ended = true,
                    Some(Err(e)) => return Err(e.into()),
                    None => return Err(EngineError::ReaderDied),
                },
            }
        }
    }

    async fn admit(&self, batch: Batch) -> Result<Held, EngineError> {
        // An empty batch still goes through: it is how the writer learns of an empty file.
        let rows = batch.data.num_rows();
        let keys: Arc<[RowKey]> = batch.keys.into();
        let shared = &self.shared;
        let slots = shared
            .memo
            .resolve(&keys, &shared.queue, &shared.lookups.stats)
            .await?;
        Ok(Held {
            bytes: batch.data.get_array_memory_size(),
            done: Done {
                file: batch.file,
                first_row: batch.first_row,
                outcomes: Vec::with_capacity(rows),
                data: batch.data,
                keys,
            },
            slots,
            next: 0,
        })
    }
}

/// Move the rows at the head of `held` whose outcome has landed to its output; `true` once
/// every row of the batch has.
fn release(held: &mut Held, stats: &Stats) -> bool {
    while let Some(slot) = held.slots.get(held.next) {
        let outcome = match slot {
            Slot::Ready(o) => o.clone(),
            Slot::Waiting(cell) => match cell.get() {
                Some(o) => o.clone(),
                None => return false,
            },
        };
        stats.count_row(&outcome);
        held.done.outcomes.push(outcome);
        held.next += 1;
    }
    true
}

/// Stops a run whose first lookups all fail the same way (401 after refresh, 400 for a
/// wrong tenant, 5xx everywhere): better one clear line than millions of report lines.
/// Counted per key looked up, so duplicate rows of one bad ID do not stop a run.
#[derive(Default)]
struct Systemic {
    disarmed: bool,
    kind: Option<LookupKind>,
    count: u32,
}

impl Systemic {
    fn observe(&mut self, outcome: &Outcome) -> Result<(), EngineError> {
        let failure = match outcome {
            _ if self.disarmed => return Ok(()),
            Outcome::Failed(f) if f.kind == LookupKind::InvalidInput => return Ok(()),
            Outcome::Failed(f) if f.kind != LookupKind::NotFound => f,
            // An answer, even "no such call", shows that lookups work.
            _ => {
                self.disarmed = true;
                return Ok(());
            }
        };
        if self.kind == Some(failure.kind) {
            self.count += 1;
        } else {
            (self.kind, self.count) = (Some(failure.kind), 1);
        }
        if self.count < SYSTEMIC_KEYS {
            return Ok(());
        }
        self.disarmed = true;
        Err(EngineError::Systemic {
            keys: self.count,
            kind: failure.kind,
            message: failure.message.clone(),
        })
    }
}
