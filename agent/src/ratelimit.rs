//! Per-source rate limits: `max_events_per_second` with a burst, in block or
//! drop mode (governor's GCRA).
//!
//! - `block` (default): the source waits until its lines are allowed. A file
//!   source's thread sleeps, so only that source slows down and its position
//!   holds: nothing is lost while the file exists.
//! - `drop`: lines over the limit are dropped and counted per source; the
//!   pipeline reports each source's new drops every few seconds as a
//!   data-loss event (`event.reason: rate_limit`).
//!
//! Limits count records as a source emits them: a journald entry, or a file
//! line (a multiline event joined by the file source counts as one).

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde::Deserialize;

/// What happens to lines over the limit.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum WhenLimited {
    /// Wait: the source is read more slowly.
    #[default]
    Block,
    /// Drop the lines over the limit (counted and reported).
    Drop,
}

/// A source's limit, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    pub events_per_second: NonZeroU32,
    pub burst: NonZeroU32,
    pub when_limited: WhenLimited,
}

/// The limiter of one source, shared by its reader and the pipeline.
#[derive(Debug)]
pub struct SourceLimiter {
    limiter: DefaultDirectRateLimiter,
    cfg: RateLimit,
    dropped: AtomicU64,
    reported: AtomicU64,
}

impl SourceLimiter {
    pub fn new(cfg: RateLimit) -> SourceLimiter {
        let quota = Quota::per_second(cfg.events_per_second).allow_burst(cfg.burst);
        SourceLimiter {
            limiter: RateLimiter::direct(quota),
            cfg,
            dropped: AtomicU64::new(0),
            reported: AtomicU64::new(0),
        }
    }

    pub fn mode(&self) -> WhenLimited {
        self.cfg.when_limited
    }

    /// Drop mode: keeps the items the limit allows, in order, and counts the
    /// others. Block mode: keeps everything (see [`Self::wait_blocking`]).
    pub fn filter<T>(&self, items: &mut Vec<T>) {
        if self.cfg.when_limited != WhenLimited::Drop {
            return;
        }
        let before = items.len();
        items.retain(|_| self.limiter.check().is_ok());
        let dropped = (before - items.len()) as u64;
        if dropped > 0 {
            self.dropped.fetch_add(dropped, Ordering::Relaxed);
        }
    }

    /// How long to wait before `n` (at most the burst) more items are
    /// allowed; zero: allowed now, and taken from the budget.
    fn wait_for(&self, n: u32) -> Duration {
        let Some(n) = NonZeroU32::new(n.min(self.cfg.burst.get())) else {
            return Duration::ZERO;
        };
        match self.limiter.check_n(n) {
            Ok(Ok(())) => Duration::ZERO,
            Ok(Err(not_until)) => not_until
                .wait_time_from(DefaultClock::default().now())
                .max(Duration::from_millis(1)),
            // `n` <= burst, so this cannot happen.
            Err(_) => Duration::ZERO,
        }
    }

    /// Block mode, on a source thread: returns once `n` items are allowed,
    /// or early when `stop` is set.
    pub fn wait_blocking(&self, n: usize, stop: &AtomicBool) {
        if self.cfg.when_limited != WhenLimited::Block {
            return;
        }
        let mut left = u32::try_from(n).unwrap_or(u32::MAX);
        while left > 0 && !stop.load(Ordering::Relaxed) {
            let step = left.min(self.cfg.burst.get());
            let wait = self.wait_for(step);
            if wait.is_zero() {
                left -= step;
            } else {
                std::thread::sleep(wait.min(Duration::from_millis(200)));
            }
        }
    }

    /// Block mode, in a task: returns once `n` items are allowed.
    pub async fn wait(&self, n: usize) {
        if self.cfg.when_limited != WhenLimited::Block {
            return;
        }
        let mut left = u32::try_from(n).unwrap_or(u32::MAX);
        while left > 0 {
            let step = left.min(self.cfg.burst.get());
            let wait = self.wait_for(step);
            if wait.is_zero() {
                left -= step;
            } else {
                tokio::time::sleep(wait).await;
            }
        }
    }

    /// Items dropped since the last call (for data-loss reports).
    pub fn take_new_drops(&self) -> u64 {
        let total = self.dropped.load(Ordering::Relaxed);
        let before = self.reported.swap(total, Ordering::Relaxed);
        total.saturating_sub(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(rate: u32, burst: u32, when_limited: WhenLimited) -> SourceLimiter {
        SourceLimiter::new(RateLimit {
            events_per_second: NonZeroU32::new(rate).unwrap(),
            burst: NonZeroU32::new(burst).unwrap(),
            when_limited,
        })
    }

    #[test]
    fn drop_mode_keeps_the_burst_and_counts_the_rest_exactly() {
        // One per hour: nothing refills during the test.
        let l = SourceLimiter::new(RateLimit {
            events_per_second: NonZeroU32::new(1).unwrap(),
            burst: NonZeroU32::new(100).unwrap(),
            when_limited: WhenLimited::Drop,
        });
        let mut items: Vec<u32> = (0..250).collect();
        l.filter(&mut items);
        assert!(items.len() >= 100 && items.len() <= 102, "{}", items.len());
        assert_eq!(items[..100], (0..100).collect::<Vec<_>>()[..]);
        let dropped = 250 - items.len() as u64;
        assert_eq!(l.take_new_drops(), dropped);
        assert_eq!(l.take_new_drops(), 0, "reported once");
    }

    #[test]
    fn block_mode_keeps_everything() {
        let l = limit(1_000_000, 1_000, WhenLimited::Block);
        let mut items: Vec<u32> = (0..5_000).collect();
        l.filter(&mut items);
        assert_eq!(items.len(), 5_000);
        // More than the burst at once is admitted in steps, not refused.
        let stop = AtomicBool::new(false);
        l.wait_blocking(5_000, &stop);
        assert_eq!(l.take_new_drops(), 0);
    }

    #[test]
    fn block_mode_waits_for_the_budget() {
        let l = limit(1, 10, WhenLimited::Block);
        let stop = AtomicBool::new(false);
        l.wait_blocking(10, &stop); // the burst
        assert!(!l.wait_for(1).is_zero(), "budget spent: must wait");
        // A stop request ends the wait.
        stop.store(true, Ordering::Relaxed);
        l.wait_blocking(5, &stop);
    }
}
