//! The request pacer: every HTTP request of a run, token requests and retries included,
//! waits here first. `--rate` is a hard ceiling; below it, the pacer adapts to a server
//! whose real limit is lower: it holds everyone on `Retry-After`, drops to the rate the
//! server was seen to accept, and climbs back additively while no 429 comes.
//!
//! Two mechanisms, one job each. A first-come schedule (oha's `start + i / rate`) spaces
//! requests evenly, so waiting requests sleep until their own turn. An exact sliding window
//! of the last `rate` send times is the guarantee: no second ever holds more than `rate`.
//! (governor was tried for the guarantee: with burst 1 every timer tick of lateness pushed
//! all later requests back, losing 6% of the quota; a larger burst breaks the guarantee.)

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::redis::{RedisError, SharedQuota};

/// Requests are spaced 1.5% wider than `1/rate`, and the window below counts `rate` sends
/// per 1.015 s: a server counting arrivals then sees at most `rate` in any second even when
/// one request reaches it up to 15 ms later than the next (a loaded server, the network).
const SPACING_MARGIN: f64 = 1.015;
/// The shared window (`--shared-quota`) counts `rate` grants per 1.03 s: its grants go to
/// several processes, any of which a loaded machine may pause between grant and send, so
/// one may arrive later than another's next grant by more than 15 ms (seen in CI: one 429).
const SHARED_MARGIN: f64 = 1.03;
/// A throttled pace is set this far below the rate the server was seen to accept.
const BACKOFF_FACTOR: f64 = 0.95;
/// 429s answering requests sent in the same burst are one signal: cut at most this often.
const CUT_COOLDOWN: Duration = Duration::from_secs(1);
/// Quiet time (no 429) before each step back up: slow enough that a limit just found is
/// probed a few times a minute, not every second.
const RAISE_EVERY: Duration = Duration::from_secs(5);
/// Lowest pace the adaptation goes down to, in requests per second.
const MIN_RATE: f64 = 0.5;
const WINDOW: Duration = Duration::from_secs(1);

pub struct Pacer {
    max_rate: Option<f64>,
    state: Mutex<Adaptive>,
    /// `--shared-quota`: the window every process of the app draws from, after this one's.
    shared: Option<Arc<SharedQuota>>,
}

struct Adaptive {
    /// `--rate`'s guarantee; `None` without a ceiling.
    ceiling: Option<Ceiling>,
    /// Set by a 429's `Retry-After`: the server asked every client to wait, not one row.
    paused_until: Option<Instant>,
    /// The adapted pace, when below the ceiling.
    throttled: Option<f64>,
    next_slot: Instant,
    last_cut: Option<Instant>,
    last_raise: Instant,
    /// When the last second's accepted answers arrived: the rate the server accepts.
    accepted: VecDeque<Instant>,
}

/// An exact sliding window: the send times of the last `cap` requests. A request may go
/// once the oldest of them is `span` old, so any `span` holds at most `cap` requests.
struct Ceiling {
    cap: usize,
    span: Duration,
    sent: VecDeque<Instant>,
}

impl Ceiling {
    /// At or above one per second: `floor(rate)` sends per `SPACING_MARGIN` seconds, so no
    /// sliding second ever holds more than `rate` (a fractional rate such as 2.5 is held
    /// to 2 in any second: a server counting whole requests per second allows no more).
    /// Below one per second: one send per `SPACING_MARGIN / rate` seconds.
    fn new(rate: f64) -> Ceiling {
        let (cap, span) = if rate >= 1.0 {
            (rate.floor(), SPACING_MARGIN)
        } else {
            (1.0, SPACING_MARGIN / rate)
        };
        Ceiling {
            cap: cap as usize,
            span: Duration::from_secs_f64(span),
            sent: VecDeque::with_capacity(cap as usize),
        }
    }

    /// Record a send at `now`, or say when one may go.
    fn admit(&mut self, now: Instant) -> Result<(), Instant> {
        if self.sent.len() == self.cap {
            let free_at = self.sent[0] + self.span;
            if now < free_at {
                return Err(free_at);
            }
            self.sent.pop_front();
        }
        self.sent.push_back(now);
        Ok(())
    }
}

impl Pacer {
    /// `rate` requests per second; `None` sets no ceiling (the pacer still adapts to 429s).
    pub fn new(rate: Option<f64>) -> Pacer {
        Pacer::shared(rate, None)
    }

    /// Likewise, and every request also waits for its turn in the shared window.
    pub fn shared(rate: Option<f64>, shared: Option<Arc<SharedQuota>>) -> Pacer {
        let now = Instant::now();
        Pacer {
            shared,
            max_rate: rate,
            state: Mutex::new(Adaptive {
                ceiling: rate.map(Ceiling::new),
                paused_until: None,
                throttled: None,
                next_slot: now,
                last_cut: None,
                last_raise: now,
                accepted: VecDeque::new(),
            }),
        }
    }

    /// Wait for this request's turn in the first-come schedule. Fails only when the shared
    /// quota has been unreachable for too long: then no request may go.
    pub async fn ready(&self) -> Result<(), RedisError> {
        self.wait(false).await;
        self.share().await
    }

    /// Wait for the next opening, ahead of the requests already scheduled: for the token
    /// request that the scheduled lookups wait on. The sliding window still holds.
    pub async fn ready_first(&self) -> Result<(), RedisError> {
        self.wait(true).await;
        self.share().await
    }

    /// The shared window's turn, after this process's own; the adapted pace is published
    /// when it changed, so that every process paces alike.
    async fn share(&self) -> Result<(), RedisError> {
        let Some(shared) = &self.shared else {
            return Ok(());
        };
        let (cap, span, pace) = {
            let s = self.state.lock().unwrap();
            let c = s.ceiling.as_ref().expect("--shared-quota requires --rate");
            (c.cap, c.span, s.throttled)
        };
        shared.publish_pace(pace).await;
        shared
            .admit(cap, span.mul_f64(SHARED_MARGIN / SPACING_MARGIN))
            .await
    }

    async fn wait(&self, first: bool) {
        loop {
            let pause = self.state.lock().unwrap().paused_until;
            if let Some(until) = pause.filter(|u| *u > Instant::now()) {
                tokio::time::sleep_until(until).await;
            }
            let slot = self.state.lock().unwrap().take_slot(self.max_rate);
            if let Some(slot) = slot.filter(|_| !first) {
                tokio::time::sleep_until(slot).await;
            }
            loop {
                let verdict = {
                    let mut s = self.state.lock().unwrap();
                    let now = Instant::now();
                    // A 429 may have paused everyone while this request waited its turn.
                    if s.paused_until.is_some_and(|u| u > now) {
                        break;
                    }
                    match &mut s.ceiling {
                        Some(ceiling) => ceiling.admit(now),
                        None => Ok(()),
                    }
                };
                match verdict {
                    Ok(()) => return,
                    Err(free_at) => tokio::time::sleep_until(free_at).await,
                }
            }
        }
    }

    /// An answer came that was not a 429.
    pub fn accepted(&self) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        s.accepted.push_back(now);
        s.forget_before(now);
    }

    /// The server throttled us: hold every request for `retry_after`, and pace below the
    /// rate it was seen to accept.
    pub fn throttled(&self, retry_after: Option<Duration>) {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        if let Some(wait) = retry_after {
            let until = now + wait;
            if s.paused_until.is_none_or(|p| p < until) {
                s.paused_until = Some(until);
            }
        }
        if s.last_cut
            .is_some_and(|t| now.duration_since(t) < CUT_COOLDOWN)
        {
            return;
        }
        s.forget_before(now);
        let seen = s.accepted.len() as f64 / WINDOW.as_secs_f64();
        let current = s.throttled.or(self.max_rate).unwrap_or(seen * 2.0);
        // The server just accepted `seen` in a second: that is its limit, give or take.
        let target = if seen >= 1.0 {
            seen.min(current)
        } else {
            current / 2.0
        };
        let pace = (target * BACKOFF_FACTOR).max(MIN_RATE);
        tracing::debug!(pace, seen, "429: pacing down");
        s.throttled = Some(pace);
        s.last_cut = Some(now);
        s.last_raise = now;
        drop(s);
        if let (Some(shared), Some(wait)) = (&self.shared, retry_after) {
            let shared = shared.clone();
            tokio::spawn(async move { shared.pause(wait).await });
        }
    }

    /// The pace requests go out at now: the adapted one, else `--rate` (`None`: no limit).
    pub fn effective_rate(&self) -> Option<f64> {
        self.state.lock().unwrap().throttled.or(self.max_rate)
    }
}

impl Adaptive {
    fn forget_before(&mut self, now: Instant) {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.accepted.pop_front();
        }
    }

    /// This request's slot in the schedule: one every `1/pace`, first come first served, so
    /// waiting requests sleep until their own turn instead of all waking for every opening.
    /// When throttled, the pace climbs back one step per quiet `RAISE_EVERY`.
    fn take_slot(&mut self, max_rate: Option<f64>) -> Option<Instant> {
        let now = Instant::now();
        let Some(pace) = self.throttled else {
            let rate = max_rate?;
            let slot = self.next_slot.max(now);
            self.next_slot = slot + Duration::from_secs_f64(SPACING_MARGIN / rate);
            return Some(slot);
        };
        let quiet = now.duration_since(self.last_raise);
        if quiet >= RAISE_EVERY {
            let steps = (quiet.as_secs_f64() / RAISE_EVERY.as_secs_f64()).floor();
            let step = (pace * 0.01).max(0.5) * steps;
            let raised = pace + step;
            self.last_raise = now;
            if max_rate.is_some_and(|m| raised >= m) {
                self.throttled = None;
                return None;
            }
            self.throttled = Some(raised);
        }
        let pace = self.throttled.unwrap_or(pace);
        let slot = self.next_slot.max(now);
        self.next_slot = slot + Duration::from_secs_f64(SPACING_MARGIN / pace);
        Some(slot)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Whatever the order and timing of sends, no window of `span` admits more than `cap`.
    #[test]
    fn ceiling_is_an_exact_sliding_window() {
        let start = Instant::now();
        let mut c = Ceiling::new(50.0);
        let mut sent = Vec::new();
        let mut now = start;
        // Try to send every 3 ms for 3 s; keep the times admitted.
        while now < start + Duration::from_secs(3) {
            if c.admit(now).is_ok() {
                sent.push(now);
            }
            now += Duration::from_millis(3);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|u| **u < *t + WINDOW).count();
            assert!(in_window <= 50, "{in_window} sends in the second from {i}");
        }
        assert!(sent.len() >= 147, "the quota is used: {}", sent.len());

        let mut frac = Ceiling::new(2.5);
        assert!(frac.admit(start).is_ok() && frac.admit(start).is_ok());
        let next = start + Duration::from_secs_f64(SPACING_MARGIN);
        assert_eq!(frac.admit(start + Duration::from_millis(810)), Err(next));

        let mut slow = Ceiling::new(0.5);
        assert!(slow.admit(start).is_ok());
        let free_at = start + Duration::from_secs_f64(2.0 * SPACING_MARGIN);
        assert_eq!(slow.admit(start + Duration::from_secs(1)), Err(free_at));
    }
}
