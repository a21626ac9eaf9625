//! The request pacer: every HTTP request of a run, token requests and retries included,
//! waits here first. `--rate` is a hard ceiling (governor); below it, the pacer adapts to a
//! server whose real limit is lower: it holds everyone on `Retry-After`, drops to the rate
//! the server was seen to accept, and climbs back additively while no 429 comes.

use std::collections::VecDeque;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::clock::Clock;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Requests are spaced 1% wider than `1/rate`: a sliding one-second window then holds at
/// most `rate` of them even when the network delays one request and not the next.
const SPACING_MARGIN: f64 = 1.01;
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
    /// The guarantee: whatever the schedule does, governor (burst 1; its default burst of
    /// `rate` would let `2 x rate` requests into the first second, governor issue #39) never
    /// lets requests closer than `1/rate`. The schedule below keeps its waits short.
    ceiling: Option<DefaultDirectRateLimiter>,
    max_rate: Option<f64>,
    state: Mutex<Adaptive>,
}

struct Adaptive {
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

impl Pacer {
    /// `rate` requests per second; `None` sets no ceiling (the pacer still adapts to 429s).
    pub fn new(rate: Option<f64>) -> Pacer {
        let ceiling = rate.map(|rate| {
            let period = Duration::from_secs_f64(SPACING_MARGIN / rate);
            let quota = Quota::with_period(period)
                .expect("rate is checked to be positive and finite")
                .allow_burst(safe_burst(rate));
            RateLimiter::direct(quota)
        });
        let now = Instant::now();
        Pacer {
            ceiling,
            max_rate: rate,
            state: Mutex::new(Adaptive {
                paused_until: None,
                throttled: None,
                next_slot: now,
                last_cut: None,
                last_raise: now,
                accepted: VecDeque::new(),
            }),
        }
    }

    /// Wait for this request's turn.
    pub async fn ready(&self) {
        loop {
            let pause = self.state.lock().unwrap().paused_until;
            if let Some(until) = pause.filter(|u| *u > Instant::now()) {
                tokio::time::sleep_until(until).await;
            }
            let slot = self.state.lock().unwrap().take_slot(self.max_rate);
            if let Some(slot) = slot {
                tokio::time::sleep_until(slot).await;
            }
            if let Some(ceiling) = &self.ceiling {
                // governor's own `until_ready` sleeps on a timer thread of its own: a wake-up
                // across threads per wait. Its verdict with tokio's timer costs nothing.
                while let Err(not_until) = ceiling.check() {
                    let wait = not_until.wait_time_from(ceiling.clock().now());
                    tokio::time::sleep(wait).await;
                }
            }
            // A 429 may have paused everyone while this request waited its turn.
            let pause = self.state.lock().unwrap().paused_until;
            if pause.is_none_or(|u| u <= Instant::now()) {
                return;
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
    }

    /// The pace requests go out at now: the adapted one, else `--rate` (`None`: no limit).
    pub fn effective_rate(&self) -> Option<f64> {
        self.state.lock().unwrap().throttled.or(self.max_rate)
    }
}

/// The largest burst that still keeps any sliding second at or under `rate`: a token bucket
/// of `b` refilled every `SPACING_MARGIN / rate` admits at most `b + floor(rate /
/// SPACING_MARGIN)` requests in one second. A burst above 1 lets a request that woke a
/// little late go at once instead of pushing every later one back.
fn safe_burst(rate: f64) -> NonZeroU32 {
    let refills = (rate / SPACING_MARGIN).floor();
    let burst = (rate.floor() - refills).max(1.0) as u32;
    NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)
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

    #[test]
    fn burst_never_lets_a_second_exceed_the_rate() {
        for rate in [0.5, 1.0, 20.0, 50.0, 199.0, 200.0, 1000.0, 5000.0] {
            let burst = safe_burst(rate).get() as f64;
            let refills = (rate / SPACING_MARGIN).floor();
            assert!(
                burst + refills <= rate.max(1.0),
                "rate {rate}: burst {burst}"
            );
        }
        assert_eq!(safe_burst(50.0).get(), 1);
        assert_eq!(safe_burst(1000.0).get(), 10);
    }
}
