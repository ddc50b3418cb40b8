//! How long a node waits before it looks for a session again after one
//! could not be had (no manager reachable, no leader known): doubling from
//! a quarter second to two seconds, each wait drawn between half and all of
//! that. A thousand nodes that lost their leader at once then spread their
//! attempts instead of handshaking with the remaining managers every half
//! second while those elect a new one.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(250);
/// A session that lasted this long was had (its end is not one more failure).
pub const HAD: Duration = Duration::from_secs(10);
const MOST: Duration = Duration::from_secs(2);

#[derive(Debug, Default)]
pub struct Backoff {
    failures: u32,
}

impl Backoff {
    /// The wait after one more failure.
    pub fn after_failure(&mut self) -> Duration {
        let ceiling = FIRST.saturating_mul(1 << self.failures.min(8)).min(MOST);
        self.failures = self.failures.saturating_add(1);
        ceiling.mul_f64(0.5 + rand::random::<f64>() / 2.0)
    }

    /// A session was had: the next failure waits the least again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_to_a_ceiling_with_jitter_and_start_over() {
        let mut b = Backoff::default();
        let ceilings = [250u64, 500, 1000, 2000, 2000, 2000];
        for c in ceilings {
            let w = b.after_failure();
            assert!(w >= Duration::from_millis(c / 2) && w <= Duration::from_millis(c), "{w:?} for {c} ms");
        }
        b.reset();
        assert!(b.after_failure() <= FIRST);
    }
}
