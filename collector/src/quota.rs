//! Ingest quotas: no agent, and no crowd of agents, floods the collector.
//!
//! Two GCRA limiters (the `governor` crate), counted in events, checked for
//! each batch once it is decoded (a batch costs its number of lines, kept
//! or rejected):
//! - per agent (a keyed limiter, key = the agent id from the certificate):
//!   `ingest.agent_events_per_second`, bursts of `ingest.agent_burst_events`;
//!   over it the batch gets `429` with the code `over_quota`;
//! - global (a direct limiter): `ingest.max_events_per_second`, bursts of
//!   `ingest.burst_events`; over it `429` with the code `overloaded`.
//!
//! The agent limit is checked first, so an agent over its own quota never
//! spends the global budget the other agents share. The converse is not
//! true: GCRA cannot give cells back, so a batch refused by the global
//! limit has already been counted against its agent's quota (harmless while
//! the burst is larger than a batch, which config validation ensures).
//! A refused batch is not stored; the agent sends it again after
//! `Retry-After`, computed from the limiter's earliest conforming time,
//! rounded up to whole seconds and kept within 1..=[`MAX_RETRY_AFTER_SECS`].
//!
//! Memory: the keyed limiter holds one small state per agent seen (only
//! enrolled, authenticated agents reach it). Every [`RETAIN_EVERY_CHECKS`]
//! checks, states indistinguishable from a fresh one (agents that did not
//! send for a burst's worth of time) are dropped with `retain_recent`.
//!
//! Warnings about refused batches are themselves rate-limited: one per agent
//! per minute for `over_quota`, one per minute in all for `overloaded`
//! ([`Quotas::should_warn`]); the rest go to debug, and every refusal is
//! counted in `/metrics`.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::keyed::DefaultKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use crate::config::IngestConfig;

/// Longest `Retry-After` sent, in seconds.
pub const MAX_RETRY_AFTER_SECS: u64 = 60;

/// How often (in checks) stale per-agent states are dropped.
pub const RETAIN_EVERY_CHECKS: u64 = 1024;

/// Which limit refused a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limit {
    /// The agent's own quota.
    Agent,
    /// The collector's global ingest limit.
    Global,
}

impl Limit {
    /// The `error.code` of the `429` answer.
    pub fn code(self) -> &'static str {
        match self {
            Limit::Agent => "over_quota",
            Limit::Global => "overloaded",
        }
    }

    /// The `reason` label in `/metrics` and the logs.
    pub fn label(self) -> &'static str {
        match self {
            Limit::Agent => "agent",
            Limit::Global => "global",
        }
    }
}

/// What to do with a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Store it: the cost was taken from the quotas.
    Allow,
    /// Refuse it with `429`; the agent may send it again after this long.
    Throttle { limit: Limit, retry_after_secs: u64 },
    /// The batch is larger than the burst of `limit` and could never pass
    /// (config validation makes this unreachable for batches within
    /// `max_batch_events`).
    TooLarge { limit: Limit, burst: u32 },
}

type Keyed<C> =
    RateLimiter<String, DefaultKeyedStateStore<String>, C, NoOpMiddleware<<C as Clock>::Instant>>;
type Direct<C> = RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<<C as Clock>::Instant>>;

/// The ingest limiters. `Send + Sync`; checks take `&self`.
pub struct Quotas<C: Clock = DefaultClock> {
    agent: Option<Keyed<C>>,
    global: Option<Direct<C>>,
    /// One warning per agent per minute.
    warn_agent: Keyed<C>,
    /// One `overloaded` warning per minute.
    warn_global: Direct<C>,
    clock: C,
    checks: AtomicU64,
}

impl<C: Clock> std::fmt::Debug for Quotas<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quotas")
            .field("agent", &self.agent.is_some())
            .field("global", &self.global.is_some())
            .finish_non_exhaustive()
    }
}

impl Quotas<DefaultClock> {
    /// Limiters for `cfg`, on the real monotonic clock.
    pub fn new(cfg: &IngestConfig) -> Self {
        Self::with_clock(cfg, DefaultClock::default())
    }
}

/// A quota of `rate` events per second with bursts of `burst` (at least
/// one); none when `rate` is 0.
fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN)))
}

/// Whole seconds to wait, rounded up, within 1..=[`MAX_RETRY_AFTER_SECS`].
pub fn retry_after_secs(wait: Duration) -> u64 {
    let mut secs = wait.as_secs();
    if wait.subsec_nanos() > 0 {
        secs += 1;
    }
    secs.clamp(1, MAX_RETRY_AFTER_SECS)
}

impl<C: Clock + Clone> Quotas<C> {
    /// Limiters for `cfg` on `clock` (tests use `FakeRelativeClock`).
    pub fn with_clock(cfg: &IngestConfig, clock: C) -> Self {
        let minute = Quota::per_minute(NonZeroU32::MIN);
        Quotas {
            agent: quota(cfg.agent_events_per_second, cfg.agent_burst_events)
                .map(|q| RateLimiter::dashmap_with_clock(q, clock.clone())),
            global: quota(cfg.max_events_per_second, cfg.burst_events)
                .map(|q| RateLimiter::direct_with_clock(q, clock.clone())),
            warn_agent: RateLimiter::dashmap_with_clock(minute, clock.clone()),
            warn_global: RateLimiter::direct_with_clock(minute, clock.clone()),
            clock,
            checks: AtomicU64::new(0),
        }
    }
}

impl<C: Clock> Quotas<C> {
    /// Decides on a batch of `events` events from `agent_id`, and takes its
    /// cost from the quotas when it is allowed. An empty batch costs nothing.
    pub fn check(&self, agent_id: &str, events: usize) -> Decision {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY_CHECKS
            == RETAIN_EVERY_CHECKS - 1
        {
            self.retain_recent();
        }
        let n = match u32::try_from(events) {
            Ok(n) => match NonZeroU32::new(n) {
                Some(n) => n,
                None => return Decision::Allow,
            },
            Err(_) => {
                let limit = if self.agent.is_some() {
                    Limit::Agent
                } else {
                    Limit::Global
                };
                return Decision::TooLarge {
                    limit,
                    burst: u32::MAX,
                };
            }
        };
        if let Some(agent) = &self.agent {
            match agent.check_key_n(&agent_id.to_owned(), n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Decision::Throttle {
                        limit: Limit::Agent,
                        retry_after_secs: retry_after_secs(
                            not_until.wait_time_from(self.clock.now()),
                        ),
                    }
                }
                Err(capacity) => {
                    return Decision::TooLarge {
                        limit: Limit::Agent,
                        burst: capacity.0,
                    }
                }
            }
        }
        if let Some(global) = &self.global {
            match global.check_n(n) {
                Ok(Ok(())) => {}
                Ok(Err(not_until)) => {
                    return Decision::Throttle {
                        limit: Limit::Global,
                        retry_after_secs: retry_after_secs(
                            not_until.wait_time_from(self.clock.now()),
                        ),
                    }
                }
                Err(capacity) => {
                    return Decision::TooLarge {
                        limit: Limit::Global,
                        burst: capacity.0,
                    }
                }
            }
        }
        Decision::Allow
    }

    /// Whether a refusal by `limit` of a batch from `agent_id` should be
    /// logged at warn (at most once a minute per agent for the agent limit,
    /// once a minute in all for the global one); false means debug.
    pub fn should_warn(&self, limit: Limit, agent_id: &str) -> bool {
        match limit {
            Limit::Agent => self.warn_agent.check_key(&agent_id.to_owned()).is_ok(),
            Limit::Global => self.warn_global.check().is_ok(),
        }
    }

    /// Drops the per-agent states that are back to "fresh" (done by
    /// [`Quotas::check`] every [`RETAIN_EVERY_CHECKS`] checks).
    pub fn retain_recent(&self) {
        if let Some(agent) = &self.agent {
            agent.retain_recent();
            agent.shrink_to_fit();
        }
        self.warn_agent.retain_recent();
        self.warn_agent.shrink_to_fit();
    }

    /// Agents whose quota state is held in memory now.
    pub fn tracked_agents(&self) -> usize {
        self.agent.as_ref().map_or(0, |a| a.len())
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn cfg(agent_rate: u32, agent_burst: u32, rate: u32, burst: u32) -> IngestConfig {
        IngestConfig {
            max_batch_events: 100,
            agent_events_per_second: agent_rate,
            agent_burst_events: agent_burst,
            max_events_per_second: rate,
            burst_events: burst,
            ..IngestConfig::default()
        }
    }

    fn quotas(c: &IngestConfig) -> (Quotas<FakeRelativeClock>, FakeRelativeClock) {
        let clock = FakeRelativeClock::default();
        (Quotas::with_clock(c, clock.clone()), clock)
    }

    fn throttled(limit: Limit, retry_after_secs: u64) -> Decision {
        Decision::Throttle {
            limit,
            retry_after_secs,
        }
    }

    #[test]
    fn an_agent_gets_its_burst_then_its_rate() {
        // 10 events/s, bursts of 100.
        let (q, clock) = quotas(&cfg(10, 100, 0, 0));
        assert_eq!(q.check("a", 60), Decision::Allow);
        assert_eq!(q.check("a", 40), Decision::Allow);
        // The burst is spent: 50 more events need 5 s.
        assert_eq!(q.check("a", 50), throttled(Limit::Agent, 5));
        // A refused batch costs nothing: after 5 s it passes.
        clock.advance(Duration::from_secs(5));
        assert_eq!(q.check("a", 50), Decision::Allow);
        // 2.5 s later, 25 events are back: 30 need another 0.5 s, which
        // is rounded up.
        clock.advance(Duration::from_millis(2_500));
        assert_eq!(q.check("a", 30), throttled(Limit::Agent, 1));
        assert_eq!(q.check("a", 20), Decision::Allow);
    }

    #[test]
    fn agents_have_separate_quotas() {
        let (q, _clock) = quotas(&cfg(10, 100, 0, 0));
        assert_eq!(q.check("a", 100), Decision::Allow);
        assert!(matches!(q.check("a", 1), Decision::Throttle { .. }));
        assert_eq!(q.check("b", 100), Decision::Allow);
        assert_eq!(q.tracked_agents(), 2);
    }

    #[test]
    fn the_global_limit_is_shared_and_reported_as_overloaded() {
        let (q, clock) = quotas(&cfg(0, 0, 100, 200));
        assert_eq!(q.check("a", 100), Decision::Allow);
        assert_eq!(q.check("b", 100), Decision::Allow);
        assert_eq!(q.check("c", 50), throttled(Limit::Global, 1));
        clock.advance(Duration::from_millis(500));
        assert_eq!(q.check("c", 50), Decision::Allow);
        assert_eq!(Limit::Global.code(), "overloaded");
        assert_eq!(Limit::Agent.code(), "over_quota");
    }

    #[test]
    fn an_agent_over_its_quota_does_not_spend_the_global_budget() {
        let (q, _clock) = quotas(&cfg(10, 100, 1, 150));
        assert_eq!(q.check("a", 100), Decision::Allow);
        // Refused by its own quota, many times: the global budget (50
        // left) is untouched.
        for _ in 0..10 {
            assert!(matches!(
                q.check("a", 50),
                Decision::Throttle {
                    limit: Limit::Agent,
                    ..
                }
            ));
        }
        assert_eq!(q.check("b", 50), Decision::Allow);
        assert!(matches!(
            q.check("c", 1),
            Decision::Throttle {
                limit: Limit::Global,
                ..
            }
        ));
    }

    #[test]
    fn retry_after_is_whole_seconds_between_1_and_60() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1)), 1);
        assert_eq!(retry_after_secs(Duration::from_secs(2)), 2);
        assert_eq!(retry_after_secs(Duration::from_millis(2_001)), 3);
        assert_eq!(retry_after_secs(Duration::from_secs(3_600)), 60);
        // 1 event/s with a burst of 100: an empty bucket needs 100 s for a
        // full batch; the answer is capped.
        let (q, _clock) = quotas(&cfg(1, 100, 0, 0));
        assert_eq!(q.check("a", 100), Decision::Allow);
        assert_eq!(q.check("a", 100), throttled(Limit::Agent, 60));
    }

    #[test]
    fn no_limits_allow_everything_and_empty_batches_are_free() {
        let (q, _clock) = quotas(&cfg(0, 0, 0, 0));
        for _ in 0..100 {
            assert_eq!(q.check("a", 1_000_000), Decision::Allow);
        }
        assert_eq!(q.tracked_agents(), 0);
        let (q, _clock) = quotas(&cfg(1, 1, 1, 1));
        assert_eq!(q.check("a", 1), Decision::Allow);
        assert_eq!(q.check("a", 0), Decision::Allow);
    }

    #[test]
    fn a_batch_larger_than_the_burst_is_too_large_not_throttled() {
        let (q, _clock) = quotas(&cfg(10, 100, 0, 0));
        assert_eq!(
            q.check("a", 101),
            Decision::TooLarge {
                limit: Limit::Agent,
                burst: 100
            }
        );
    }

    #[test]
    fn idle_agents_are_forgotten() {
        let (q, clock) = quotas(&cfg(10, 100, 0, 0));
        for i in 0..750 {
            assert_eq!(q.check(&format!("agt_{i}"), 10), Decision::Allow);
        }
        assert_eq!(q.tracked_agents(), 750);
        // Everyone's bucket is full again after 1 s; agent "busy" keeps a
        // debt.
        clock.advance(Duration::from_secs(2));
        assert_eq!(q.check("busy", 100), Decision::Allow);
        q.retain_recent();
        assert_eq!(q.tracked_agents(), 1);
        // check() does it by itself every RETAIN_EVERY_CHECKS checks.
        for i in 0..RETAIN_EVERY_CHECKS {
            q.check(&format!("x_{i}"), 1);
        }
        clock.advance(Duration::from_secs(20));
        for _ in 0..RETAIN_EVERY_CHECKS {
            q.check("busy", 1);
        }
        assert_eq!(q.tracked_agents(), 1);
    }

    #[test]
    fn warnings_are_rate_limited_per_agent_and_globally() {
        let (q, clock) = quotas(&cfg(10, 100, 10, 100));
        assert!(q.should_warn(Limit::Agent, "a"));
        assert!(!q.should_warn(Limit::Agent, "a"));
        assert!(q.should_warn(Limit::Agent, "b"));
        assert!(q.should_warn(Limit::Global, "a"));
        assert!(!q.should_warn(Limit::Global, "b"));
        clock.advance(Duration::from_secs(59));
        assert!(!q.should_warn(Limit::Agent, "a"));
        clock.advance(Duration::from_secs(1));
        assert!(q.should_warn(Limit::Agent, "a"));
        assert!(q.should_warn(Limit::Global, "b"));
    }
}
