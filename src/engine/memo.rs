//! One lookup per distinct key. A row's key is answered, in order, by a lookup in flight
//! for another row, by an outcome this run recorded, by the journal of an earlier run, or by
//! the cache; only then is it queued for a lookup. Memory holds the keys in flight; what is
//! finished lives in the journal on disk, so de-duplication stays bounded whatever the input.
//!
//! The stores are read once per batch, on a blocking thread. A key in flight when the batch
//! was read may finish and be committed before its row is reached: such rows are read again.

use std::sync::{Arc, Mutex};

use super::queue::{Cell, Queue, Queued};
use super::{EngineError, Slot};
use crate::engine::Stats;
use crate::key::{CallKey, IdMap, RowKey};
use crate::outcome::Outcome;
use crate::redis::RedisCache;
use crate::store::{blocking, Found, Store, StoreError};

pub struct Memo {
    pub journal: Arc<Store>,
    pub cache: Option<Cache>,
    /// Keys being looked up, and where their outcome will land.
    inflight: Mutex<IdMap<Arc<Cell>>>,
}

/// `--cache`: a SQLite file, or Redis shared across machines.
#[derive(Clone)]
pub enum Cache {
    File(Arc<Store>),
    Redis(Arc<RedisCache>),
}

impl Cache {
    /// Fires when the cache can no longer be written.
    pub fn failed(&self) -> &tokio_util::sync::CancellationToken {
        match self {
            Cache::File(store) => store.failed(),
            Cache::Redis(cache) => cache.failed(),
        }
    }

    pub fn error(&self) -> Option<EngineError> {
        match self {
            Cache::File(store) => store.error().map(EngineError::from),
            Cache::Redis(cache) => cache.error().map(EngineError::from),
        }
    }
}

fn valid(row: &RowKey) -> &CallKey {
    match row {
        RowKey::Valid(k) => k,
        RowKey::Invalid { .. } => unreachable!("only valid keys are asked"),
    }
}

/// What the stores knew of one row's key when the batch was read.
enum Known {
    Unknown,
    /// An earlier run's transient failure, to be looked up again.
    Stale,
    /// Recorded by this run: the row shares an earlier row's lookup.
    ThisRun(Arc<Outcome>),
    /// From an earlier run.
    Journal(Arc<Outcome>),
    Cache(Arc<Outcome>),
}

impl Memo {
    pub fn new(journal: Arc<Store>, cache: Option<Cache>) -> Memo {
        Memo {
            journal,
            cache,
            inflight: Mutex::default(),
        }
    }

    /// Each row's outcome, or the cell it will land in; queues the keys no one knows.
    pub(super) async fn resolve(
        &self,
        keys: &Arc<[RowKey]>,
        queue: &Queue,
        stats: &Stats,
    ) -> Result<Vec<Slot>, EngineError> {
        let ask: Vec<usize> = {
            let inflight = self.inflight.lock().unwrap();
            (0..keys.len())
                .filter(|&i| matches!(&keys[i], RowKey::Valid(k) if !inflight.contains_key(&k.id)))
                .collect()
        };
        let mut known = self.read(keys.clone(), ask).await?.into_iter().peekable();

        let mut slots = Vec::with_capacity(keys.len());
        // Keys this batch already resolved: a later row with one shares that, even once the
        // lookup or the journal's copy was committed after the stores were read.
        let mut resolved: IdMap<Slot> = IdMap::default();
        for (i, row) in keys.iter().enumerate() {
            let from_stores = match known.peek() {
                Some((at, _)) if *at == i => known.next().map(|(_, k)| k),
                _ => None,
            };
            let key = match row {
                RowKey::Invalid { reason, .. } => {
                    slots.push(Slot::Ready(Arc::new(Outcome::invalid_input(
                        reason.clone(),
                    ))));
                    continue;
                }
                RowKey::Valid(key) => key,
            };
            let slot = match self.shared(key, &resolved) {
                Some(slot) => {
                    Stats::bump(&stats.deduplicated);
                    slot
                }
                None => {
                    // In flight when the batch was read, finished and committed since.
                    let known = match from_stores {
                        Some(k) => k,
                        None => self.read_one(key.clone()).await?,
                    };
                    let slot = self.settle(known, keys, i, queue, stats).await;
                    resolved.insert(key.id, slot.clone());
                    slot
                }
            };
            slots.push(slot);
        }
        Ok(slots)
    }

    /// What another row of this batch, a lookup in flight or this run's outcome not yet
    /// committed already holds for `key`.
    fn shared(&self, key: &CallKey, resolved: &IdMap<Slot>) -> Option<Slot> {
        if let Some(slot) = resolved.get(&key.id) {
            return Some(slot.clone());
        }
        if let Some(cell) = self.inflight.lock().unwrap().get(&key.id) {
            return Some(Slot::Waiting(cell.clone()));
        }
        self.journal.pending(key.id).map(Slot::Ready)
    }

    /// Row `i`'s slot, from what the stores knew of its key: the outcome, or a lookup queued.
    async fn settle(
        &self,
        known: Known,
        keys: &Arc<[RowKey]>,
        i: usize,
        queue: &Queue,
        stats: &Stats,
    ) -> Slot {
        let key = valid(&keys[i]);
        let outcome = match known {
            Known::ThisRun(outcome) => {
                Stats::bump(&stats.deduplicated);
                outcome
            }
            // Recorded again for this run, so that later rows with the key count as
            // duplicates.
            Known::Journal(outcome) => {
                Stats::bump(&stats.from_journal);
                self.journal.put(key, &outcome).await;
                outcome
            }
            Known::Cache(outcome) => {
                Stats::bump(&stats.from_cache);
                self.journal.put(key, &outcome).await;
                outcome
            }
            Known::Unknown | Known::Stale => {
                let cell = Arc::new(Cell::default());
                self.inflight.lock().unwrap().insert(key.id, cell.clone());
                let mut job = Queued::new(keys.clone(), i, cell.clone());
                job.failed_before = matches!(known, Known::Stale);
                queue.push_fresh(job);
                return Slot::Waiting(cell);
            }
        };
        Slot::Ready(outcome)
    }

    /// A lookup finished: keep it, then let later rows find it in the journal, not in flight.
    pub(super) async fn record(&self, key: &CallKey, cell: &Cell, outcome: Arc<Outcome>) {
        self.journal.put(key, &outcome).await;
        match &self.cache {
            Some(Cache::File(store)) => store.put(key, &outcome).await,
            Some(Cache::Redis(cache)) => cache.record(key, &outcome).await,
            None => {}
        }
        let _ = cell.set(outcome);
        self.inflight.lock().unwrap().remove(&key.id);
    }

    /// What the journal, then the cache, know of the rows `ask` of `keys`.
    async fn read(
        &self,
        keys: Arc<[RowKey]>,
        ask: Vec<usize>,
    ) -> Result<Vec<(usize, Known)>, EngineError> {
        if ask.is_empty() {
            return Ok(Vec::new());
        }
        let journal = self.journal.clone();
        let file_cache = match &self.cache {
            Some(Cache::File(store)) => Some(store.clone()),
            _ => None,
        };
        let keys_read = keys.clone();
        let (mut known, misses) = blocking(move || {
            let keys = keys_read;
            let mut known: Vec<(usize, Known)> = Vec::with_capacity(ask.len());
            let mut misses = Vec::new();
            for (&i, hit) in ask
                .iter()
                .zip(journal.get_many(ask.iter().map(|&i| valid(&keys[i])))?)
            {
                known.push((
                    i,
                    match hit {
                        Some((o, Found::ThisRun)) => Known::ThisRun(o),
                        Some((outcome, Found::Earlier)) => Known::Journal(outcome),
                        Some((_, Found::Stale)) => {
                            misses.push(known.len());
                            Known::Stale
                        }
                        None => {
                            misses.push(known.len());
                            Known::Unknown
                        }
                    },
                ));
            }
            if let Some(cache) = &file_cache {
                let hits = cache.get_many(misses.iter().map(|&m| valid(&keys[known[m].0])))?;
                let mut left = Vec::new();
                for (&m, hit) in misses.iter().zip(hits) {
                    match hit {
                        Some((o, _)) => known[m].1 = Known::Cache(o),
                        None => left.push(m),
                    }
                }
                misses = left;
            }
            Ok::<_, StoreError>((known, misses))
        })
        .await?;
        if let Some(Cache::Redis(cache)) = &self.cache {
            let asked: Vec<&CallKey> = misses.iter().map(|&m| valid(&keys[known[m].0])).collect();
            for (&m, hit) in misses.iter().zip(cache.get_many(&asked).await?) {
                if let Some(o) = hit {
                    known[m].1 = Known::Cache(Arc::new(o));
                }
            }
        }
        Ok(known)
    }

    async fn read_one(&self, key: CallKey) -> Result<Known, StoreError> {
        let journal = self.journal.clone();
        blocking(move || {
            Ok(match journal.get_many([&key])?.pop().flatten() {
                Some((_, Found::Stale)) => Known::Stale,
                Some((o, _)) => Known::ThisRun(o),
                None => Known::Unknown,
            })
        })
        .await
    }
}
