//! One lookup per distinct key. A key is answered, in order, by a lookup already in flight
//! for another row, by the journal (this job's earlier runs and this run's earlier rows),
//! or by the cache; only then is it looked up. Memory holds the keys in flight; everything
//! finished lives in the journal on disk, so de-duplication stays bounded whatever the input.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, Shared};

use super::LookupError;
use crate::key::CallKey;
use crate::outcome::Outcome;
use crate::store::{Found, Store, StoreError};

pub type SharedLookup = Shared<BoxFuture<'static, Result<Arc<Outcome>, LookupError>>>;

/// Which store knew the outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    Journal,
    Cache,
}

/// An outcome a store already had, and where it came from.
pub struct Known {
    pub outcome: Arc<Outcome>,
    pub found: Found,
    pub origin: Origin,
}

pub struct Memo {
    pub journal: Store,
    pub cache: Option<Store>,
    /// Held while checking and inserting, so two rows never both start the same lookup.
    pub(super) inflight: Mutex<HashMap<CallKey, SharedLookup>>,
}

impl Memo {
    pub fn new(journal: Store, cache: Option<Store>) -> Memo {
        Memo {
            journal,
            cache,
            inflight: Mutex::default(),
        }
    }

    pub(super) fn known(&self, key: &CallKey) -> Result<Option<Known>, StoreError> {
        let known = |(outcome, found), origin| Known {
            outcome,
            found,
            origin,
        };
        if let Some(hit) = self.journal.get(key)? {
            return Ok(Some(known(hit, Origin::Journal)));
        }
        match &self.cache {
            Some(cache) => Ok(cache.get(key)?.map(|hit| known(hit, Origin::Cache))),
            None => Ok(None),
        }
    }

    /// A lookup finished: keep it, then let later rows find it there instead of in flight.
    pub(super) fn record(&self, key: &CallKey, outcome: &Arc<Outcome>) {
        self.journal.put(key, outcome);
        if let Some(cache) = &self.cache {
            cache.put(key, outcome);
        }
        self.inflight.lock().unwrap().remove(key);
    }

    /// Forget lookups still in flight (after a stop), then commit and close both stores.
    pub fn close(&self) -> Result<(), StoreError> {
        self.inflight.lock().unwrap().clear();
        if let Some(cache) = &self.cache {
            cache.close()?;
        }
        self.journal.close()?;
        // A run that stopped before its first lookup leaves nothing behind.
        if self.journal.is_empty()? {
            self.journal.remove()?;
        }
        Ok(())
    }
}
