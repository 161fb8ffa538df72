//! The one bounded polling loop.
//!
//! Readiness waits (a port accepting, a log line appearing, a process
//! exiting) all go through [`wait_for`], so every wait in the harness is
//! bounded both in time and in number of attempts.

use std::time::{Duration, Instant};

/// Pause between two attempts.
pub const POLL_INTERVAL: Duration = Duration::from_millis(25);

/// Calls `probe` until it returns `Some`, at most until `timeout` has passed.
///
/// The probe runs at least once, and at most `timeout / POLL_INTERVAL + 1`
/// times, so a probe that itself blocks cannot stretch the loop's count.
/// Returns `None` when the time ran out.
pub fn wait_for<T>(timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + timeout;
    let max_attempts = timeout.as_millis() / POLL_INTERVAL.as_millis() + 1;
    for _ in 0..max_attempts {
        if let Some(value) = probe() {
            return Some(value);
        }
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        std::thread::sleep(POLL_INTERVAL.min(deadline - now));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn returns_the_first_success() {
        let mut calls = 0;
        let got = wait_for(Duration::from_secs(5), || {
            calls += 1;
            (calls == 3).then_some(calls)
        });
        assert_eq!(got, Some(3));
    }

    #[test]
    fn gives_up_after_the_timeout() {
        let started = Instant::now();
        let got: Option<()> = wait_for(Duration::from_millis(100), || None);
        assert_eq!(got, None);
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}
