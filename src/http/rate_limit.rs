//! Per-client-address rate limits (GCRA, through the `governor` crate): the quota arithmetic
//! shared by every limiter, and the failure budget that aims the login limits at abuse rather
//! than at working logins.
//!
//! - A login costs one unit of `limits.login_per_minute`, at `/sso`. `/callback` is not
//!   counted: a browser that carries the login cookie for the returned `state` is finishing a
//!   login it already paid for and is never refused (it has logged in at the IdP by then).
//! - Refused requests — a DiscourseConnect request that does not verify, a callback without a
//!   login in flight (unknown or replayed `state`) — cost a unit of
//!   `limits.failures_per_minute`; once an address has spent it, its further refused requests
//!   get `429` instead of their answer, so probing gets slow while every working login passes.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::time::Duration;

use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// The time one unit takes to refill at `per_minute` (at least 1), to the nanosecond: no
/// silent cap at one per millisecond, so 120,000/min is 120,000/min.
pub fn replenish_period(per_minute: u32) -> Duration {
    Duration::from_nanos((60_000_000_000 / u64::from(per_minute.max(1))).max(1))
}

/// `per_minute`, refilled evenly, with a burst of a minute's worth.
pub fn quota(per_minute: u32) -> Quota {
    let burst = NonZeroU32::new(per_minute).unwrap_or(NonZeroU32::MIN);
    Quota::with_period(replenish_period(per_minute))
        .unwrap_or_else(|| Quota::per_second(NonZeroU32::MAX))
        .allow_burst(burst)
}

/// The per-address budget of refused login requests (see the module documentation).
#[derive(Debug)]
pub struct FailureBudget {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
}

impl FailureBudget {
    /// A budget of `per_minute` refused requests per address.
    pub fn new(per_minute: u32) -> Self {
        Self {
            limiter: RateLimiter::keyed(quota(per_minute)),
        }
    }

    /// Charges one refused request to `client`: `false` when its budget is spent, and the
    /// request should be answered `429` instead.
    pub fn charge(&self, client: IpAddr) -> bool {
        self.limiter.check_key(&client).is_ok()
    }

    /// Forgets addresses whose budget has fully refilled.
    pub fn retain_recent(&self) {
        self.limiter.retain_recent();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn periods_are_exact_above_sixty_thousand_a_minute() {
        assert_eq!(replenish_period(60), Duration::from_secs(1));
        assert_eq!(replenish_period(600), Duration::from_millis(100));
        assert_eq!(replenish_period(60_000), Duration::from_millis(1));
        // Issue 15, fault 4: these were all clamped to 1 ms, i.e. 60,000/min.
        assert_eq!(replenish_period(120_000), Duration::from_micros(500));
        assert_eq!(replenish_period(6_000_000), Duration::from_micros(10));
        assert_eq!(replenish_period(0), Duration::from_secs(60));
    }

    #[test]
    fn a_budget_allows_its_burst_then_refuses_per_address() {
        let budget = FailureBudget::new(5);
        let (a, b) = (IpAddr::from([192, 0, 2, 1]), IpAddr::from([192, 0, 2, 2]));
        for _ in 0..5 {
            assert!(budget.charge(a));
        }
        assert!(!budget.charge(a));
        assert!(budget.charge(b));
    }

    #[test]
    fn a_quota_bursts_a_minutes_worth() {
        let limiter = RateLimiter::direct(quota(150));
        let allowed = (0..400).filter(|_| limiter.check().is_ok()).count();
        assert_eq!(allowed, 150);
    }
}
