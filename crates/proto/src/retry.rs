//! The one retry policy every Polaroid component uses: how many attempts, and how long to
//! wait before each, exponential with jitter and capped. Loops that retry ask it for the
//! next pause; none computes its own.

use std::time::Duration;

/// Attempts and waits of one kind of retry.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Attempts in all, the first included; `u32::MAX`: retry for as long as the caller
    /// keeps asking (a background loop that waits for a server to come back).
    pub max_attempts: u32,
    /// The wait before the second attempt; each later one doubles, up to `max_backoff`.
    pub first_backoff: Duration,
    pub max_backoff: Duration,
    /// The least of each wait that is kept when it is jittered: 0.0 is full jitter (AWS's
    /// "full jitter", which spreads a herd best); 0.5 waits at least half of it.
    pub min_jitter: f64,
}

impl RetryPolicy {
    /// The wait before attempt `next` (2 for the first retry), or `None` when the
    /// attempts are used up.
    pub fn pause(&self, next: u32) -> Option<Duration> {
        if next < 2 || next > self.max_attempts {
            return None;
        }
        Some(self.backoff(next - 1))
    }

    /// The wait after `failures` failures in a row (at least one), jittered and capped.
    pub fn backoff(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(30);
        let ceiling = self
            .first_backoff
            .saturating_mul(1u32 << doublings)
            .min(self.max_backoff);
        let low = self.min_jitter.clamp(0.0, 1.0);
        if low >= 1.0 {
            return ceiling;
        }
        ceiling.mul_f64(rand::random_range(low..=1.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: RetryPolicy = RetryPolicy {
        max_attempts: 4,
        first_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_millis(250),
        min_jitter: 0.5,
    };

    #[test]
    fn waits_double_up_to_the_cap_within_their_jitter() {
        assert_eq!(POLICY.pause(1), None, "no wait before the first attempt");
        for (next, ceiling) in [(2, 100), (3, 200), (4, 250)] {
            for _ in 0..200 {
                let pause = POLICY.pause(next).expect("within the attempts");
                let ceiling = Duration::from_millis(ceiling);
                assert!(
                    pause <= ceiling && pause >= ceiling / 2,
                    "{next}: {pause:?}"
                );
            }
        }
        assert_eq!(POLICY.pause(5), None, "attempts used up");
    }

    #[test]
    fn full_jitter_spreads_and_no_jitter_is_exact() {
        let full = RetryPolicy {
            min_jitter: 0.0,
            ..POLICY
        };
        let waits: std::collections::HashSet<_> = (0..50).map(|_| full.backoff(1)).collect();
        assert!(waits.len() > 10, "spread: {waits:?}");
        let exact = RetryPolicy {
            min_jitter: 1.0,
            ..POLICY
        };
        assert_eq!(exact.backoff(40), Duration::from_millis(250));
    }
}
