//! The keys waiting for a lookup, in two lanes: retries whose wait is over go before rows
//! that have not been tried yet, so a retried row takes the next free slot instead of
//! waiting behind everything read since.
//!
//! A worker first *claims* a job (there is one for it), then waits for its token and its
//! pacer slot, and only then takes the job at the head: which job goes is decided when the
//! request goes, and no slot is taken without a job to spend it on.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, OnceLock};

use tokio::sync::Notify;

use crate::key::{CallKey, RowKey};
use crate::outcome::Outcome;

/// Where the outcome of one lookup lands; every row with that key reads it from here.
pub type Cell = OnceLock<Arc<Outcome>>;

/// One key to look up, and how its lookup has gone so far. The key stays in its batch's
/// keys, shared: a job holds the batch's `Arc` and the row's index, not a copy.
pub struct Queued {
    keys: Arc<[RowKey]>,
    at: usize,
    pub cell: Arc<Cell>,
    pub attempts: u32,
    pub retries: u32,
    /// Already retried once after a 401 with a new token.
    pub refreshed: bool,
    /// An earlier run's transient failure, looked up again: its failing again says
    /// nothing of the server (a rerun asks mostly such keys), so it never counts towards
    /// calling a failure systemic.
    pub failed_before: bool,
    /// The pacer's count of accepted answers at this key's last 429.
    pub throttled_at: Option<u64>,
}

impl Queued {
    /// The job for row `at` of `keys`, which must be a valid key.
    pub fn new(keys: Arc<[RowKey]>, at: usize, cell: Arc<Cell>) -> Queued {
        debug_assert!(matches!(keys[at], RowKey::Valid(_)));
        Queued {
            keys,
            at,
            cell,
            attempts: 0,
            retries: 0,
            refreshed: false,
            failed_before: false,
            throttled_at: None,
        }
    }

    pub fn key(&self) -> &CallKey {
        match &self.keys[self.at] {
            RowKey::Valid(key) => key,
            RowKey::Invalid { .. } => unreachable!("jobs are made for valid keys only"),
        }
    }
}

#[derive(Default)]
struct Lanes {
    retry: VecDeque<Queued>,
    fresh: VecDeque<Queued>,
    /// Jobs queued that no worker has claimed yet.
    unclaimed: usize,
    /// Jobs taken by a worker and not yet done: requests in flight.
    in_flight: usize,
    closed: bool,
}

#[derive(Default)]
pub struct Queue {
    lanes: Mutex<Lanes>,
    /// A job was queued, or the queue closed.
    queued: Notify,
}

impl Queue {
    pub fn push_fresh(&self, job: Queued) {
        self.push(job, false)
    }

    pub fn push_retry(&self, job: Queued) {
        self.push(job, true)
    }

    fn push(&self, job: Queued, retry: bool) {
        let mut lanes = self.lanes.lock().unwrap();
        if lanes.closed {
            return;
        }
        if retry {
            lanes.retry.push_back(job);
        } else {
            lanes.fresh.push_back(job);
        }
        lanes.unclaimed += 1;
        drop(lanes);
        self.queued.notify_one();
    }

    /// Wait until there is a job for this worker; `false` once the queue is closed.
    pub async fn claim(&self) -> bool {
        loop {
            let queued = self.queued.notified();
            tokio::pin!(queued);
            queued.as_mut().enable();
            {
                let mut lanes = self.lanes.lock().unwrap();
                if lanes.closed {
                    return false;
                }
                if lanes.unclaimed > 0 {
                    lanes.unclaimed -= 1;
                    return true;
                }
            }
            queued.await;
        }
    }

    /// Give back a claim that will not be used (the worker is stopping).
    pub fn unclaim(&self) {
        let mut lanes = self.lanes.lock().unwrap();
        lanes.unclaimed += 1;
        drop(lanes);
        self.queued.notify_one();
    }

    /// The job to send now, retries first; `None` once closed. The caller holds a claim.
    pub fn take(&self) -> Option<Queued> {
        let mut lanes = self.lanes.lock().unwrap();
        if lanes.closed {
            return None;
        }
        let job = lanes.retry.pop_front().or_else(|| lanes.fresh.pop_front());
        if job.is_some() {
            lanes.in_flight += 1;
        }
        job
    }

    /// A taken job's request is over (done, or queued again for a retry).
    pub fn finished(&self) {
        self.lanes.lock().unwrap().in_flight -= 1;
    }

    /// Rows read but not yet tried: how far the reader is ahead of the lookups.
    pub fn fresh_len(&self) -> usize {
        self.lanes.lock().unwrap().fresh.len()
    }

    pub fn in_flight(&self) -> usize {
        self.lanes.lock().unwrap().in_flight
    }

    /// No job is taken any more; queued and later-pushed jobs are dropped.
    pub fn close(&self) {
        let mut lanes = self.lanes.lock().unwrap();
        lanes.closed = true;
        lanes.retry.clear();
        lanes.fresh.clear();
        drop(lanes);
        self.queued.notify_waiters();
    }
}
