//! Request counters behind `GET /__sim/stats`, so tests can assert how a client behaved (how
//! many lookups, how fast, how concurrent), not only what it wrote.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

const WINDOW: Duration = Duration::from_secs(1);
const MINUTE: Duration = Duration::from_secs(60);

/// Which limit turned a request away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Throttle {
    Second,
    Minute,
}

#[derive(Clone, Copy)]
pub(super) enum Endpoint {
    Token,
    Lookup,
}

/// One lock for everything: each request holds it for a few counter updates only.
pub(super) struct Stats {
    start: Instant,
    /// `--limit-per-minute` (0: none).
    per_minute: u32,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    token_requests: u64,
    lookup_requests: u64,
    /// Keyed by a 64-bit hash of the call ID, so millions of IDs stay small: requests so
    /// far, and when the first came.
    per_call_id: HashMap<u64, (u32, Instant)>,
    max_per_call_id: u32,
    /// The longest time from a call ID's first request to a later one: how long a retried
    /// row waited, back-off and queue included.
    max_retry_span: Duration,
    slow_answered: u64,
    by_status: BTreeMap<String, u64>,
    rejected_429: u64,
    /// Arrival instants of the last second, all requests: what the client sent.
    arrivals: VecDeque<Instant>,
    max_arrivals: usize,
    /// Arrival instants of the last second, admitted requests only: what `--limit` caps.
    admitted: VecDeque<Instant>,
    max_admitted: usize,
    /// Likewise over the last minute, when `--limit-per-minute` is set.
    admitted_minute: VecDeque<Instant>,
    max_admitted_minute: usize,
    per_second: Vec<u64>,
    in_flight: u64,
    /// The distinct `agentId`s of valid lookups (the first 100), so a test can see which
    /// IDs a client sent.
    agent_ids: std::collections::BTreeSet<String>,
}

/// Holds one unit of `in_flight` until dropped, which also covers a handler cancelled
/// because its client went away.
pub(super) struct InFlight<'a>(&'a Stats);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.lock().in_flight -= 1;
    }
}

impl Stats {
    pub(super) fn new(per_minute: u32) -> Self {
        Stats {
            start: Instant::now(),
            per_minute,
            inner: Mutex::default(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counts an arrival and applies `limit` (0 = none) over the sliding second. Returns the
    /// request's 0-based index among its endpoint's requests, and whether it was admitted.
    /// Rejected requests do not enter the admitted window, as with a real gateway's limiter.
    pub(super) fn arrive(&self, endpoint: Endpoint, limit: u32) -> (u64, Result<(), Throttle>) {
        self.arrive_at(endpoint, limit, Instant::now())
    }

    fn arrive_at(
        &self,
        endpoint: Endpoint,
        limit: u32,
        now: Instant,
    ) -> (u64, Result<(), Throttle>) {
        let mut s = self.lock();
        let counter = match endpoint {
            Endpoint::Token => &mut s.token_requests,
            Endpoint::Lookup => &mut s.lookup_requests,
        };
        let index = *counter;
        *counter += 1;

        let second = (now - self.start).as_secs() as usize;
        if s.per_second.len() <= second {
            s.per_second.resize(second + 1, 0);
        }
        s.per_second[second] += 1;

        slide(&mut s.arrivals, now, WINDOW);
        s.arrivals.push_back(now);
        s.max_arrivals = s.max_arrivals.max(s.arrivals.len());

        slide(&mut s.admitted, now, WINDOW);
        slide(&mut s.admitted_minute, now, MINUTE);
        let per_minute = self.per_minute as usize;
        let verdict = if limit != 0 && s.admitted.len() >= limit as usize {
            Err(Throttle::Second)
        } else if per_minute != 0 && s.admitted_minute.len() >= per_minute {
            Err(Throttle::Minute)
        } else {
            Ok(())
        };
        if verdict.is_ok() {
            s.admitted.push_back(now);
            s.max_admitted = s.max_admitted.max(s.admitted.len());
            if per_minute != 0 {
                s.admitted_minute.push_back(now);
                s.max_admitted_minute = s.max_admitted_minute.max(s.admitted_minute.len());
            }
        } else {
            s.rejected_429 += 1;
        }
        (index, verdict)
    }

    /// Counts one request for the call ID hashed to `key`; returns how many came before it.
    pub(super) fn call_id_seen(&self, key: u64) -> u32 {
        let now = Instant::now();
        let mut s = self.lock();
        let (count, first) = s.per_call_id.entry(key).or_insert((0, now));
        let before = *count;
        *count += 1;
        let (count, span) = (*count, now - *first);
        s.max_per_call_id = s.max_per_call_id.max(count);
        s.max_retry_span = s.max_retry_span.max(span);
        before
    }

    pub(super) fn slow_answered(&self) {
        self.lock().slow_answered += 1;
    }

    /// Counts one answer under `label`: a status code, or `dropped` / `hung`.
    pub(super) fn record(&self, label: &str) {
        *self.lock().by_status.entry(label.to_owned()).or_default() += 1;
    }

    pub(super) fn agent_id(&self, id: &str) {
        let mut s = self.lock();
        if s.agent_ids.len() < 100 {
            s.agent_ids.insert(id.to_owned());
        }
    }

    pub(super) fn enter(&self) -> InFlight<'_> {
        let mut s = self.lock();
        s.in_flight += 1;
        InFlight(self)
    }

    pub(super) fn to_json(&self) -> Value {
        let s = self.lock();
        json!({
            "token_requests": s.token_requests,
            "lookup_requests": s.lookup_requests,
            "distinct_call_ids": s.per_call_id.len(),
            "max_requests_per_call_id": s.max_per_call_id,
            "max_retry_span_ms": s.max_retry_span.as_millis() as u64,
            "slow_answered": s.slow_answered,
            "by_status": s.by_status,
            "rejected_429": s.rejected_429,
            "max_in_sliding_second": s.max_arrivals,
            "max_admitted_in_sliding_second": s.max_admitted,
            "max_admitted_in_sliding_minute": s.max_admitted_minute,
            "in_flight": s.in_flight,
            "agent_ids": s.agent_ids,
        })
    }

    /// Requests per whole second since start, for tests of a client's rate over time.
    pub(super) fn per_second(&self) -> Vec<u64> {
        self.lock().per_second.clone()
    }
}

/// Forgets the arrivals that are a second old or more: amortized O(1) per request.
fn slide(window: &mut VecDeque<Instant>, now: Instant, span: Duration) {
    while window.front().is_some_and(|&t| now - t >= span) {
        window.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sliding_limit() {
        let stats = Stats::new(0);
        let admitted = |n, ms| {
            let at = stats.start + Duration::from_millis(ms);
            (0..n)
                .filter(|_| stats.arrive_at(Endpoint::Lookup, 3, at).1.is_ok())
                .count()
        };
        assert_eq!(admitted(5, 0), 3);
        assert_eq!(admitted(2, 600), 0);
        assert_eq!(admitted(5, 1000), 3);
        let v = stats.to_json();
        assert_eq!(v["rejected_429"], 6);
        assert_eq!(v["max_in_sliding_second"], 7);
        assert_eq!(v["max_admitted_in_sliding_second"], 3);
        assert_eq!(stats.per_second(), vec![7, 5]);
    }
}
