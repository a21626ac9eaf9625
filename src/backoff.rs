//! How long to wait before retry number `n`: exponential back-off with full jitter, never
//! shorter than the server's `Retry-After`. Shared by lookups and token requests.

use std::time::Duration;

#[derive(Clone, Copy, Debug)]
pub struct Backoff {
    pub max_retries: u32,
    pub base: Duration,
    pub cap: Duration,
}

impl Backoff {
    pub fn new(max_retries: u32) -> Backoff {
        Backoff {
            max_retries,
            base: Duration::from_millis(250),
            cap: Duration::from_secs(30),
        }
    }

    /// Full jitter (uniform in `0..=min(cap, base * 2^(n-1))`) keeps clients that failed
    /// together from retrying together.
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << retry.saturating_sub(1).min(16))
            .min(self.cap);
        let jittered = exp.mul_f64(fastrand::f64());
        jittered.max(retry_after.unwrap_or_default())
    }
}

/// Sleep until `at`; forever when there is nothing to wait for (a `select!` arm that never
/// fires).
pub async fn sleep_until(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounded_and_honours_retry_after() {
        let b = Backoff::new(5);
        for n in 1..40 {
            let d = b.delay(n, None);
            assert!(d <= b.cap, "retry {n}: {d:?}");
            assert!(d <= b.base * 2u32.pow(n.min(8) - 1));
        }
        assert!(b.delay(1, Some(Duration::from_secs(7))) >= Duration::from_secs(7));
    }
}
