//! What a source may make the node sign while it is flooded. Answering a
//! ClientHello costs the node an X25519 agreement and an Ed25519 signature;
//! a flood of valid hellos from a few dozen addresses keeps its one core
//! signing, and an operator's handshake waits behind them. While the
//! pre-auth table is under pressure (at least half full), each source (an
//! IPv4 address or an IPv6 /64) gets a token bucket of [`RATE`] hellos a
//! second ([`BURST`] at once); a hello past it is closed unanswered (the
//! client sees a shed connection and retries). An operator with its own
//! address never comes near it; without pressure nothing is limited, so a
//! busy but unflooded node serves handshakes as fast as it can.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Instant;

/// Hellos a second one source may have answered under pressure.
pub const RATE: f64 = 20.0;

/// Hellos one source may have answered at once under pressure.
pub const BURST: f64 = 40.0;

/// Sources tracked at most; past it the table starts afresh (every source
/// with a full bucket: generous, never stuck).
const MAX_SOURCES: usize = 4096;

/// Token buckets by source.
#[derive(Default)]
pub struct HelloBudget {
    buckets: HashMap<IpAddr, (f64, Instant)>,
}

impl HelloBudget {
    /// Takes one token for a hello from `source` (already reduced to its
    /// source, see [`rpc::admission::source_of`]) at `now`; false when
    /// its bucket is empty.
    pub fn take(&mut self, source: IpAddr, now: Instant) -> bool {
        if self.buckets.len() >= MAX_SOURCES && !self.buckets.contains_key(&source) {
            self.buckets.clear();
        }
        let (tokens, last) = self.buckets.entry(source).or_insert((BURST, now));
        let refill = now.saturating_duration_since(*last).as_secs_f64() * RATE;
        *tokens = (*tokens + refill).min(BURST);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_others_are_untouched() {
        let mut budget = HelloBudget::default();
        let flood = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 9));
        let operator = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        let start = Instant::now();
        let granted = (0..100).filter(|_| budget.take(flood, start)).count();
        assert_eq!(granted, BURST as usize);
        assert!(budget.take(operator, start), "another source has its own");
        let later = start + Duration::from_millis(500);
        let refilled = (0..100).filter(|_| budget.take(flood, later)).count();
        assert_eq!(refilled, (RATE / 2.0) as usize);
    }
}
