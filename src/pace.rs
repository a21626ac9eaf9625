//! The request pacer: every HTTP request of a run, token requests and retries included,
//! waits here first, so the run never exceeds `--rate` in any sliding second.

use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

/// Requests are spaced 1% wider than `1/rate`: a sliding one-second window then holds at
/// most `rate` of them even when the network delays one request and not the next.
const SPACING_MARGIN: f64 = 1.01;

pub struct Pacer {
    /// Burst 1: governor's default burst of `rate` would let `2 x rate` requests into the
    /// first second (governor issue #39).
    ceiling: Option<DefaultDirectRateLimiter>,
    /// Set by a 429's `Retry-After`: the server asked every client to wait, not one row.
    paused_until: Mutex<Option<Instant>>,
}

impl Pacer {
    /// `rate` requests per second; `None` paces nothing (the simulator, benchmarks).
    pub fn new(rate: Option<f64>) -> Pacer {
        let ceiling = rate.map(|rate| {
            let period = Duration::from_secs_f64(SPACING_MARGIN / rate);
            let quota = Quota::with_period(period)
                .expect("rate is checked to be positive and finite")
                .allow_burst(NonZeroU32::MIN);
            RateLimiter::direct(quota)
        });
        Pacer {
            ceiling,
            paused_until: Mutex::new(None),
        }
    }

    /// Wait for this request's turn.
    pub async fn ready(&self) {
        loop {
            let pause = *self.paused_until.lock().unwrap();
            match pause {
                Some(until) if until > Instant::now() => tokio::time::sleep_until(until).await,
                _ => break,
            }
        }
        if let Some(ceiling) = &self.ceiling {
            ceiling.until_ready().await;
        }
    }

    /// The server throttled us: hold every request until `retry_after` has passed.
    pub fn pause_for(&self, retry_after: Duration) {
        let until = Instant::now() + retry_after;
        let mut paused = self.paused_until.lock().unwrap();
        if paused.is_none_or(|p| p < until) {
            *paused = Some(until);
        }
    }
}
