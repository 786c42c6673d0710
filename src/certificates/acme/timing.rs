//! When to order: renewal when a third of the lifetime remains (or inside the window the
//! CA suggests through ACME Renewal Information), and exponential backoff after a
//! failure. Pure functions over times, tested alone.

use std::time::{Duration, SystemTime};

/// Backoff between failed orders of one hostname: `first`, doubling, at most `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    pub first: Duration,
    pub max: Duration,
}

/// 2 min doubling: the fifth failure comes after an hour, within Let's Encrypt's limit
/// of five failed validations per hostname per hour.
pub const DEFAULT_BACKOFF: Backoff = Backoff {
    first: Duration::from_secs(120),
    max: Duration::from_secs(12 * 3600),
};

impl Backoff {
    /// The wait after the `failures`-th failure in a row (1 for the first).
    pub fn after(&self, failures: u32) -> Duration {
        let doublings = failures.saturating_sub(1).min(32);
        self.first
            .checked_mul(1u32 << doublings.min(31))
            .unwrap_or(self.max)
            .min(self.max)
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed: with a third
/// of its lifetime left.
pub fn renewal_at(not_before: SystemTime, not_after: SystemTime) -> SystemTime {
    let lifetime = not_after.duration_since(not_before).unwrap_or_default();
    not_after - lifetime / 3
}

/// The renewal time: a point `fraction` (0..1, random per certificate so a fleet does
/// not renew at once) into the CA's suggested window when it gives one, else `rule`.
pub fn renewal_time(
    rule: SystemTime,
    window: Option<(SystemTime, SystemTime)>,
    fraction: f64,
) -> SystemTime {
    match window {
        Some((start, end)) => {
            let width = end.duration_since(start).unwrap_or_default();
            start + width.mul_f64(fraction.clamp(0.0, 1.0))
        }
        None => rule,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    /// A 90-day certificate renews 30 days before it expires; a 9-second one after 6 s.
    #[test]
    fn a_third_of_the_lifetime_left() {
        let day = 86_400;
        assert_eq!(renewal_at(at(0), at(90 * day)), at(60 * day));
        assert_eq!(renewal_at(at(100), at(109)), at(106));
    }

    /// The CA's window wins over the rule when it is given.
    #[test]
    fn renewal_information_decides() {
        let rule = at(1_000);
        assert_eq!(renewal_time(rule, None, 0.5), rule);
        assert_eq!(renewal_time(rule, Some((at(100), at(200))), 0.5), at(150));
        assert_eq!(renewal_time(rule, Some((at(100), at(200))), 7.0), at(200));
    }

    /// Waits double from the first and stop at the cap, whatever the count.
    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let backoff = Backoff {
            first: Duration::from_secs(2),
            max: Duration::from_secs(30),
        };
        let waits: Vec<u64> = (1..=6).map(|n| backoff.after(n).as_secs()).collect();
        assert_eq!(waits, [2, 4, 8, 16, 30, 30]);
        assert_eq!(backoff.after(u32::MAX), Duration::from_secs(30));
        assert_eq!(DEFAULT_BACKOFF.after(5), Duration::from_secs(32 * 60));
    }
}
