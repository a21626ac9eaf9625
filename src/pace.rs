//! The request pacer: every HTTP request of a run, token requests and retries included,
//! waits here first. `--rate` is a hard ceiling of one or more windows (`20/s,1000/min`);
//! below it, the pacer adapts to a server whose real limit is lower: a limit the gateway
//! states in its 429 (`limit:100,time:1 minute`) becomes one more window at once; else it
//! holds everyone on `Retry-After`, drops to the rate the server was seen to accept, and
//! climbs back additively while no 429 comes.
//!
//! Two mechanisms, one job each. A first-come schedule (oha's `start + i / rate`) spaces
//! requests evenly at the tightest window's average, so waiting requests sleep until their
//! own turn and a long window is spread over rather than spent in a burst. An exact sliding
//! window per limit, the last `count` send times, is the guarantee: no window ever holds
//! more than its count.
//! (governor was tried for the guarantee: with burst 1 every timer tick of lateness pushed
//! all later requests back, losing 6% of the quota; a larger burst breaks the guarantee.)

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
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
/// Send times kept to seed a window learned mid-run: an hour's, at most this many.
const HISTORY: usize = 100_000;
const HOUR: Duration = Duration::from_secs(3600);

/// One window of `--rate`: at most `count` requests in any sliding `span`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limit {
    pub count: f64,
    pub span: Duration,
}

impl Limit {
    pub fn per_second(self) -> f64 {
        self.count / self.span.as_secs_f64()
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.span.as_secs() {
            1 => write!(f, "{}/s", self.count),
            60 => write!(f, "{}/min", self.count),
            3600 => write!(f, "{}/h", self.count),
            secs => write!(f, "{}/{secs}s", self.count),
        }
    }
}

/// `--rate`: every window held at once.
#[derive(Clone, Debug, PartialEq)]
pub struct Rate(pub Vec<Limit>);

impl Rate {
    /// `20`, `20/s`, `100/min`, `5000/h`, or a list of them (`20/s,1000/min`); `0` is no
    /// limit (`None`).
    pub fn parse(s: &str) -> Result<Option<Rate>, String> {
        if s.trim() == "0" {
            return Ok(None);
        }
        let mut limits: Vec<Limit> = Vec::new();
        for part in s.split(',').map(str::trim) {
            let (count, unit) = part.split_once('/').unwrap_or((part, "s"));
            // `10s` as a gateway states it: ten seconds.
            let digits = unit.find(|c: char| !c.is_ascii_digit()).unwrap_or(0);
            let times: u64 = unit[..digits].parse().unwrap_or(1);
            let span = times
                * match &unit[digits..] {
                    "s" | "sec" | "second" => 1,
                    "m" | "min" | "minute" => 60,
                    "h" | "hour" => 3600,
                    _ => 0,
                };
            let count: f64 = count.parse().unwrap_or(f64::NAN);
            let limit = Limit {
                count,
                span: Duration::from_secs(span),
            };
            let whole = span == 1 || count.fract() == 0.0;
            let positive = count > 0.0; // false for NaN too
            if span == 0 || !positive || !whole || limit.per_second() > 1_000_000.0 {
                return Err(format!(
                    "`{part}` is not a rate: N (per second), N/s, N/min or N/h, N above 0 (whole per minute or hour), at most 1000000 a second; several as a list (20/s,1000/min); 0 for no limit"
                ));
            }
            if limits.iter().any(|l| l.span == limit.span) {
                return Err(format!("`{s}` gives two limits of one window"));
            }
            limits.push(limit);
        }
        Ok(Some(Rate(limits)))
    }

    /// The steady pace that keeps every window: the smallest average.
    pub fn per_second(&self) -> f64 {
        self.0
            .iter()
            .map(|l| l.per_second())
            .fold(f64::INFINITY, f64::min)
    }

    /// With `learned` held too: it replaces a looser window of its span.
    pub fn with(&self, learned: Limit) -> Rate {
        let mut limits: Vec<Limit> = self
            .0
            .iter()
            .copied()
            .filter(|l| l.span != learned.span || l.count < learned.count)
            .collect();
        if !limits.iter().any(|l| l.span == learned.span) {
            limits.push(learned);
        }
        limits.sort_by_key(|l| l.span);
        Rate(limits)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(Limit::to_string).collect();
        f.write_str(&parts.join(","))
    }
}

pub struct Pacer {
    state: Mutex<Adaptive>,
    /// `--shared-quota`: the window every process of the app draws from, after this one's.
    shared: Option<Arc<SharedQuota>>,
    /// Answers that were not a 429, ever: a key throttled again while others passed is
    /// that key's problem, not the quota's.
    accepted_total: AtomicU64,
}

struct Adaptive {
    /// `--rate`, with the limits the gateway stated since; `None` without a ceiling.
    rate: Option<Rate>,
    /// Its guarantee: one exact window per limit.
    ceiling: Vec<Window>,
    /// Limits the gateway stated in this run, for the closing advice.
    learned: Vec<Limit>,
    /// Set by a 429's `Retry-After`: the server asked every client to wait, not one row.
    paused_until: Option<Instant>,
    /// The adapted pace, when below the ceiling.
    throttled: Option<f64>,
    next_slot: Instant,
    last_cut: Option<Instant>,
    last_raise: Instant,
    /// When the last second's accepted answers arrived: the rate the server accepts.
    accepted: VecDeque<Instant>,
    /// Recent send times, to seed a window learned mid-run with what it already holds.
    history: VecDeque<Instant>,
    /// The keys throttled in the last second, with when.
    throttled_keys: VecDeque<(u64, Instant)>,
}

/// An exact sliding window: the send times of the last `cap` requests. A request may go
/// once the oldest of them is `span` old, so any `span` holds at most `cap` requests.
struct Window {
    cap: usize,
    span: Duration,
    sent: VecDeque<Instant>,
}

impl Window {
    /// At or above one per second: `floor(rate)` sends per `SPACING_MARGIN` seconds, so no
    /// sliding second ever holds more than `rate` (a fractional rate such as 2.5 is held
    /// to 2 in any second: a server counting whole requests per second allows no more).
    /// Below one per second: one send per `SPACING_MARGIN / rate` seconds. A longer window
    /// holds its count in `SPACING_MARGIN` times its span.
    fn new(limit: Limit) -> Window {
        let (cap, span) = if limit.span > WINDOW {
            (limit.count, limit.span.as_secs_f64() * SPACING_MARGIN)
        } else if limit.count >= 1.0 {
            (limit.count.floor(), SPACING_MARGIN)
        } else {
            (1.0, SPACING_MARGIN / limit.count)
        };
        Window {
            cap: cap as usize,
            span: Duration::from_secs_f64(span),
            sent: VecDeque::with_capacity((cap as usize).min(HISTORY)),
        }
    }

    /// When a send may go, if not now.
    fn free_at(&self, now: Instant) -> Option<Instant> {
        (self.sent.len() >= self.cap)
            .then(|| self.sent[self.sent.len() - self.cap] + self.span)
            .filter(|at| now < *at)
    }

    fn record(&mut self, now: Instant) {
        if self.sent.len() >= self.cap {
            self.sent.pop_front();
        }
        self.sent.push_back(now);
    }
}

/// Record a send at `now` in every window, or say when one may go.
fn admit(windows: &mut [Window], now: Instant) -> Result<(), Instant> {
    match windows.iter().filter_map(|w| w.free_at(now)).max() {
        Some(at) => Err(at),
        None => {
            windows.iter_mut().for_each(|w| w.record(now));
            Ok(())
        }
    }
}

impl Pacer {
    /// `rate`'s windows (`None` sets no ceiling: the pacer still adapts to 429s), and with
    /// `shared` every request also waits for its turn in the shared window.
    pub fn shared(rate: Option<Rate>, shared: Option<Arc<SharedQuota>>) -> Pacer {
        let now = Instant::now();
        let ceiling = rate
            .iter()
            .flat_map(|r| r.0.iter().map(|&l| Window::new(l)))
            .collect();
        Pacer {
            shared,
            accepted_total: AtomicU64::new(0),
            state: Mutex::new(Adaptive {
                rate,
                ceiling,
                learned: Vec::new(),
                paused_until: None,
                throttled: None,
                next_slot: now,
                last_cut: None,
                last_raise: now,
                accepted: VecDeque::new(),
                history: VecDeque::new(),
                throttled_keys: VecDeque::new(),
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
    /// request that the scheduled lookups wait on. The sliding windows still hold.
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
        let (windows, pace) = {
            let s = self.state.lock().unwrap();
            let windows: Vec<(usize, Duration)> = s
                .ceiling
                .iter()
                .map(|w| (w.cap, w.span.mul_f64(SHARED_MARGIN / SPACING_MARGIN)))
                .collect();
            (windows, s.throttled)
        };
        shared.publish_pace(pace).await;
        shared.admit(&windows).await
    }

    async fn wait(&self, first: bool) {
        loop {
            let pause = self.state.lock().unwrap().paused_until;
            if let Some(until) = pause.filter(|u| *u > Instant::now()) {
                tokio::time::sleep_until(until).await;
            }
            let slot = self.state.lock().unwrap().take_slot();
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
                    let verdict = admit(&mut s.ceiling, now);
                    if verdict.is_ok() {
                        s.sent(now);
                    }
                    verdict
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
        self.accepted_total.fetch_add(1, Relaxed);
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        s.accepted.push_back(now);
        s.forget_before(now);
    }

    /// How many answers were not a 429 so far (see [`Pacer::accepted`]).
    pub fn accepted_total(&self) -> u64 {
        self.accepted_total.load(Relaxed)
    }

    /// The gateway stated a limit in its 429: hold it from now on, as one more window
    /// seeded with the sends it already holds (shared with the other jobs through the
    /// limits this job registers), and pace at its average. `false` when `--rate` holds it
    /// already: then the 429 came of others' requests, and is a plain throttle.
    pub fn learn(&self, limit: Limit) -> bool {
        let mut s = self.state.lock().unwrap();
        let rate = match &s.rate {
            Some(r)
                if r.0
                    .iter()
                    .any(|l| l.span == limit.span && l.count <= limit.count) =>
            {
                return false
            }
            Some(r) => r.with(limit),
            None => Rate(vec![limit]),
        };
        let mut window = Window::new(limit);
        let since = Instant::now().checked_sub(window.span);
        let held = s.history.iter().filter(|t| since.is_none_or(|at| **t > at));
        let skip = held.clone().count().saturating_sub(window.cap);
        held.skip(skip).for_each(|t| window.sent.push_back(*t));
        s.ceiling.retain(|w| w.span != window.span);
        s.ceiling.push(window);
        s.learned.retain(|l| l.span != limit.span);
        s.learned.push(limit);
        tracing::info!(
            "the gateway states {limit}: pacing at {:.1}/s from now on (the next run: --rate {rate})",
            rate.per_second()
        );
        s.rate = Some(rate);
        s.throttled = s
            .throttled
            .filter(|t| *t < s.pace().unwrap_or(f64::INFINITY));
        true
    }

    /// The server throttled `key` (a hash of the call ID; `None` for the token request,
    /// which is the quota's). A 429 with `Retry-After`, or a second key's within a second,
    /// is the quota's: hold every request for `retry_after`, and pace below the rate the
    /// server was seen to accept. A lone key's first 429 may be its own: it is noted only.
    /// The pause is shared with the other jobs on the quota, awaited by the request that
    /// met the 429 (it waits out its back-off anyway).
    pub async fn throttled(&self, key: Option<u64>, retry_after: Option<Duration>) {
        let cut = self.note_429(key, retry_after);
        if let (true, Some(shared), Some(wait)) = (cut, &self.shared, retry_after) {
            shared.pause(wait).await;
        }
    }

    /// Whether the 429 cut the pace (and so the pause is the quota's to share).
    fn note_429(&self, key: Option<u64>, retry_after: Option<Duration>) -> bool {
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        while s
            .throttled_keys
            .front()
            .is_some_and(|(_, t)| now.duration_since(*t) > WINDOW)
        {
            s.throttled_keys.pop_front();
        }
        if let Some(key) = key {
            let others = s.throttled_keys.iter().any(|(k, _)| *k != key);
            s.throttled_keys.push_back((key, now));
            if retry_after.is_none() && !others {
                return false;
            }
        }
        if let Some(wait) = retry_after {
            let until = now + wait;
            if s.paused_until.is_none_or(|p| p < until) {
                s.paused_until = Some(until);
            }
        }
        if s.last_cut
            .is_some_and(|t| now.duration_since(t) < CUT_COOLDOWN)
        {
            return false;
        }
        s.forget_before(now);
        let seen = s.accepted.len() as f64 / WINDOW.as_secs_f64();
        let current = s.throttled.or(s.pace()).unwrap_or(seen * 2.0);
        // The server just accepted `seen` in a second: that is its limit, give or take.
        let target = if seen >= 1.0 {
            seen.min(current)
        } else {
            current / 2.0
        };
        let pace = (target * BACKOFF_FACTOR).max(MIN_RATE);
        tracing::info!("pace {pace:.1}/s (was {current:.1}/s): a 429, with {seen:.0} answers accepted in the last second");
        s.throttled = Some(pace);
        s.last_cut = Some(now);
        s.last_raise = now;
        true
    }

    /// The pace requests go out at now: the adapted one, else `--rate`'s (`None`: no limit).
    pub fn effective_rate(&self) -> Option<f64> {
        let s = self.state.lock().unwrap();
        s.throttled.or(s.pace())
    }

    /// What the next run should ask for: `--rate` with the limits stated in this run, or
    /// the pace the server was found to accept. `None` when `--rate` held as given.
    pub fn advice(&self) -> Option<String> {
        let s = self.state.lock().unwrap();
        let rate = s.rate.as_ref();
        match (s.learned.as_slice(), s.throttled) {
            ([], None) => None,
            ([], Some(pace)) => Some(format!(
                "the server accepted about {pace:.1}/s: start the next run at --rate {:.0}",
                pace.floor().max(1.0)
            )),
            (learned, _) => {
                let stated: Vec<String> = learned.iter().map(Limit::to_string).collect();
                Some(format!(
                    "the gateway states {}: add --rate {}",
                    stated.join(", "),
                    rate.map(Rate::to_string).unwrap_or_default()
                ))
            }
        }
    }

    /// The limits the gateway stated in this run.
    pub fn learned(&self) -> Vec<String> {
        let s = self.state.lock().unwrap();
        s.learned.iter().map(Limit::to_string).collect()
    }
}

impl Adaptive {
    /// The steady pace of `--rate` and what was learned (`None`: no limit).
    fn pace(&self) -> Option<f64> {
        self.rate.as_ref().map(Rate::per_second)
    }

    fn forget_before(&mut self, now: Instant) {
        while self
            .accepted
            .front()
            .is_some_and(|t| now.duration_since(*t) > WINDOW)
        {
            self.accepted.pop_front();
        }
    }

    /// A send at `now`, kept for a window learned later.
    fn sent(&mut self, now: Instant) {
        while self.history.len() >= HISTORY
            || self
                .history
                .front()
                .is_some_and(|t| now.duration_since(*t) > HOUR)
        {
            self.history.pop_front();
        }
        self.history.push_back(now);
    }

    /// This request's slot in the schedule: one every `1/pace`, first come first served, so
    /// waiting requests sleep until their own turn instead of all waking for every opening.
    /// When throttled, the pace climbs back one step per quiet `RAISE_EVERY`.
    fn take_slot(&mut self) -> Option<Instant> {
        let now = Instant::now();
        let max_rate = self.pace();
        let quiet = now.duration_since(self.last_raise);
        if let (Some(pace), true) = (self.throttled, quiet >= RAISE_EVERY) {
            let steps = (quiet.as_secs_f64() / RAISE_EVERY.as_secs_f64()).floor();
            let raised = pace + (pace * 0.01).max(0.5) * steps;
            self.last_raise = now;
            if max_rate.is_some_and(|m| raised >= m) {
                tracing::info!(
                    "pace back at --rate ({:.1}/s): no 429 for {RAISE_EVERY:?}",
                    max_rate.unwrap_or(raised)
                );
                self.throttled = None;
                return None;
            }
            tracing::info!("pace {raised:.1}/s (was {pace:.1}/s): no 429 for {RAISE_EVERY:?}");
            self.throttled = Some(raised);
        }
        let pace = self.throttled.or(max_rate)?;
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
        let per_second = |count| Limit {
            count,
            span: WINDOW,
        };
        let mut c = [Window::new(per_second(50.0))];
        let mut sent = Vec::new();
        let mut now = start;
        // Try to send every 3 ms for 3 s; keep the times admitted.
        while now < start + Duration::from_secs(3) {
            if admit(&mut c, now).is_ok() {
                sent.push(now);
            }
            now += Duration::from_millis(3);
        }
        for (i, t) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|u| **u < *t + WINDOW).count();
            assert!(in_window <= 50, "{in_window} sends in the second from {i}");
        }
        assert!(sent.len() >= 147, "the quota is used: {}", sent.len());

        let mut frac = [Window::new(per_second(2.5))];
        assert!(admit(&mut frac, start).is_ok() && admit(&mut frac, start).is_ok());
        let next = start + Duration::from_secs_f64(SPACING_MARGIN);
        assert_eq!(
            admit(&mut frac, start + Duration::from_millis(810)),
            Err(next)
        );

        let mut slow = [Window::new(per_second(0.5))];
        assert!(admit(&mut slow, start).is_ok());
        let free_at = start + Duration::from_secs_f64(2.0 * SPACING_MARGIN);
        assert_eq!(
            admit(&mut slow, start + Duration::from_secs(1)),
            Err(free_at)
        );
    }
}
