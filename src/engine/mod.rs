//! The engine: takes batches from the reader, looks up their rows concurrently, and hands
//! them to the writer in input order through a bounded reorder window.
//!
//! Rows become futures in input order; `buffered(window)` runs up to `window` of them at
//! once and yields their outcomes in order, so memory holds at most `window` rows' work
//! plus the batches they belong to. Requests in flight are capped separately by the
//! `--concurrency` semaphore in [`lookup::Lookups`].

pub mod lookup;
pub mod memo;
pub mod progress;
pub mod stats;

use std::sync::Arc;
use std::time::Duration;

use crate::Shutdown;
use futures::future::{self, BoxFuture, FutureExt};
use futures::stream::{self, StreamExt};
use tokio::sync::mpsc;

use crate::api::auth::AuthError;
use crate::input::{Batch, InputError};
use crate::key::RowKey;
use crate::outcome::{LookupKind, Outcome};
use crate::output::Done;
use crate::store::{Found, StoreError};

pub use lookup::Lookups;
pub use memo::Memo;
pub use stats::Stats;

/// Rows that must fail the same way, before any succeeds, to call a failure systemic.
pub const SYSTEMIC_ROWS: u32 = 10;

/// A lookup that cannot go on, for any row: cloneable, since rows that share a key share
/// the lookup and its end.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LookupError {
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{url} answered HTTP 404: wrong base URL or path; check --base-url")]
    WrongUrl { url: String },
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Lookup(#[from] LookupError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("stopped after the first {rows} lookups all failed as {kind} (last: {message}); nothing suggests the rest would do better")]
    Systemic {
        rows: u32,
        kind: LookupKind,
        message: String,
    },
    #[error(transparent)]
    Input(#[from] InputError),
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
}

enum Item {
    /// A batch starts: the writer gets it once all its rows have an outcome.
    Start(Done),
    Row(Arc<Outcome>),
}

pub struct Engine {
    pub lookups: Lookups,
    pub memo: Memo,
    /// Rows that may be in progress at once: the reorder window.
    pub window: usize,
    /// How long rows in flight may take to finish after a signal.
    pub grace: Duration,
}

impl Engine {
    pub async fn run(
        self: Arc<Self>,
        batches: mpsc::Receiver<Result<Batch, InputError>>,
        done: mpsc::Sender<Done>,
        shutdown: Shutdown,
    ) -> Result<End, EngineError> {
        let cancel = shutdown.stop;
        let batches = stream::unfold(
            batches,
            |mut rx| async move { rx.recv().await.map(|b| (b, rx)) },
        );
        let engine = self.clone();
        let items = batches
            .flat_map(move |batch| engine.clone().row_futures(batch))
            .take_until(cancel.clone().cancelled_owned())
            .buffered(self.window);
        futures::pin_mut!(items);

        let stats = &self.lookups.stats;
        let mut systemic = Systemic::default();
        let mut current: Option<Done> = None;
        let mut deadline = None;
        loop {
            let item = tokio::select! {
                item = items.next() => item,
                _ = cancel.cancelled(), if deadline.is_none() => {
                    deadline = Some(tokio::time::Instant::now() + self.grace);
                    continue;
                }
                _ = sleep_until(deadline) => break,
                _ = shutdown.now.cancelled() => break,
            };
            let Some(item) = item else { break };
            match item? {
                Item::Start(batch) => current = Some(batch),
                Item::Row(outcome) => {
                    systemic.observe(&outcome)?;
                    stats.count_row(&outcome);
                    let batch = current.as_mut().expect("a batch starts before its rows");
                    batch.outcomes.push(outcome);
                    if batch.outcomes.len() == batch.data.num_rows() {
                        let batch = current.take().expect("just used");
                        done.send(batch)
                            .await
                            .map_err(|_| EngineError::WriterGone)?;
                    }
                }
            }
        }
        Ok(if cancel.is_cancelled() {
            End::Interrupted
        } else {
            End::Complete
        })
    }

    /// The stream items of one batch: its start, then one future per row.
    fn row_futures(
        self: Arc<Self>,
        batch: Result<Batch, InputError>,
    ) -> stream::BoxStream<'static, BoxFuture<'static, Result<Item, EngineError>>> {
        let batch = match batch {
            Ok(b) if b.data.num_rows() > 0 => b,
            Ok(_) => return stream::empty().boxed(),
            Err(e) => {
                return stream::once(future::ready(future::ready(Err(e.into())).boxed())).boxed()
            }
        };
        let keys: Arc<[RowKey]> = batch.keys.into();
        let start = Item::Start(Done {
            first_row: batch.first_row,
            outcomes: Vec::with_capacity(batch.data.num_rows()),
            data: batch.data,
            keys: keys.clone(),
        });
        let first = stream::once(future::ready(future::ready(Ok(start)).boxed()));
        let rows = stream::iter(0..keys.len()).map(move |i| {
            let engine = self.clone();
            let keys = keys.clone();
            async move { engine.resolve(&keys[i]).await.map(Item::Row) }.boxed()
        });
        first.chain(rows).boxed()
    }

    /// The outcome of one row: known already (journal, cache, an earlier row with the same
    /// key), being looked up for another row (share that lookup), or looked up now.
    async fn resolve(self: Arc<Self>, key: &RowKey) -> Result<Arc<Outcome>, EngineError> {
        let key = match key {
            RowKey::Invalid { reason, .. } => {
                return Ok(Arc::new(Outcome::invalid_input(reason.clone())))
            }
            RowKey::Valid(key) => key,
        };
        let stats = &self.lookups.stats;
        let shared = {
            let mut inflight = self.memo.inflight.lock().unwrap();
            if let Some(lookup) = inflight.get(key) {
                Stats::bump(&stats.deduplicated);
                lookup.clone()
            } else if let Some(known) = self.memo.known(key)? {
                match (known.found, known.origin) {
                    (Found::ThisRun, _) => Stats::bump(&stats.deduplicated),
                    (Found::Earlier, memo::Origin::Journal) => Stats::bump(&stats.from_journal),
                    (Found::Earlier, memo::Origin::Cache) => Stats::bump(&stats.from_cache),
                }
                return Ok(known.outcome);
            } else {
                let engine = self.clone();
                let owned = key.clone();
                let lookup = async move {
                    let outcome = engine.lookups.lookup(&owned).await.map(Arc::new);
                    if let Ok(o) = &outcome {
                        Stats::bump(&engine.lookups.stats.lookups);
                        engine.memo.record(&owned, o);
                    }
                    outcome
                }
                .boxed()
                .shared();
                inflight.insert(key.clone(), lookup.clone());
                lookup
            }
        };
        Ok(shared.await?)
    }
}

async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => future::pending().await,
    }
}

/// Stops a run whose first lookups all fail the same way (401 after refresh, 400 for a
/// wrong tenant, 5xx everywhere): better one clear line than millions of report lines.
#[derive(Default)]
struct Systemic {
    disarmed: bool,
    kind: Option<LookupKind>,
    count: u32,
}

impl Systemic {
    fn observe(&mut self, outcome: &Outcome) -> Result<(), EngineError> {
        if self.disarmed {
            return Ok(());
        }
        let failure = match outcome {
            Outcome::Ok(_) => {
                self.disarmed = true;
                return Ok(());
            }
            Outcome::Failed(f) => f,
        };
        match failure.kind {
            LookupKind::InvalidInput => return Ok(()),
            LookupKind::NotFound => {
                self.disarmed = true;
                return Ok(());
            }
            kind if Some(kind) == self.kind => self.count += 1,
            kind => {
                self.kind = Some(kind);
                self.count = 1;
            }
        }
        if self.count >= SYSTEMIC_ROWS {
            return Err(EngineError::Systemic {
                rows: self.count,
                kind: failure.kind,
                message: failure.message.clone(),
            });
        }
        Ok(())
    }
}
