//! A fake clock and seeded randomness for component tests (see
//! [`crate::testing`]): what the guest reads through `wasi:clocks` and
//! `wasi:random`, and the timestamps the host puts on its events, all come
//! from here instead of the system, so a test can pin and move time and get
//! the same "random" ids on every run.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wasmtime_wasi::{HostMonotonicClock, HostWallClock};

/// A clock that moves only when told. Clones share the same time.
#[derive(Debug, Clone)]
pub struct FakeClock {
    since_epoch: Arc<Mutex<Duration>>,
}

impl FakeClock {
    /// A clock standing at `at`.
    pub fn at(at: SystemTime) -> FakeClock {
        FakeClock {
            since_epoch: Arc::new(Mutex::new(
                at.duration_since(UNIX_EPOCH).unwrap_or_default(),
            )),
        }
    }

    /// The time since the Unix epoch.
    pub fn now(&self) -> Duration {
        match self.since_epoch.lock() {
            Ok(t) => *t,
            Err(poisoned) => *poisoned.into_inner(),
        }
    }

    /// Moves the clock forward by `by`.
    pub fn advance(&self, by: Duration) {
        let mut t = match self.since_epoch.lock() {
            Ok(t) => t,
            Err(poisoned) => poisoned.into_inner(),
        };
        *t = t.saturating_add(by);
    }

    /// Now, as an RFC 3339 UTC timestamp to the second.
    pub fn rfc3339(&self) -> String {
        let secs = i64::try_from(self.now().as_secs()).unwrap_or(i64::MAX);
        time::OffsetDateTime::from_unix_timestamp(secs)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default()
    }
}

impl HostWallClock for FakeClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        FakeClock::now(self)
    }
}

impl HostMonotonicClock for FakeClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        u64::try_from(FakeClock::now(self).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// What a component test replaces: the clock, and a seed from which each
/// invocation draws its own random bytes (the n-th invocation of a run
/// always sees the same bytes, and no two invocations see the same).
#[derive(Debug)]
pub struct Fakes {
    /// The clock.
    pub clock: FakeClock,
    seed: u64,
    invocations: AtomicU64,
}

/// Random bytes each invocation gets (cycled if it reads more).
const RANDOM_BYTES_PER_INVOCATION: usize = 4096;

impl Fakes {
    /// Fakes with `clock` and randomness from `seed`.
    pub fn new(clock: FakeClock, seed: u64) -> Fakes {
        Fakes {
            clock,
            seed,
            invocations: AtomicU64::new(0),
        }
    }

    /// The random bytes of the next invocation.
    pub fn next_random(&self) -> wasmtime_wasi::Deterministic {
        let n = self.invocations.fetch_add(1, Ordering::Relaxed);
        let mut state = self.seed ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut bytes = Vec::with_capacity(RANDOM_BYTES_PER_INVOCATION);
        while bytes.len() < RANDOM_BYTES_PER_INVOCATION {
            bytes.extend_from_slice(&splitmix64(&mut state).to_le_bytes());
        }
        wasmtime_wasi::Deterministic::new(bytes)
    }
}

/// One step of SplitMix64: a fast, well-mixed sequence from any seed.
fn splitmix64(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime_wasi::Rng;

    #[test]
    fn the_clock_moves_only_when_told() {
        let clock = FakeClock::at(UNIX_EPOCH + Duration::from_secs(1_764_064_800));
        assert_eq!(clock.rfc3339(), "2025-11-25T10:00:00Z");
        clock.clone().advance(Duration::from_secs(90));
        assert_eq!(clock.rfc3339(), "2025-11-25T10:01:30Z");
    }

    #[test]
    fn randomness_repeats_per_run_and_differs_per_invocation() {
        let draw = |fakes: &Fakes| fakes.next_random().next_u64();
        let (a, b) = (
            Fakes::new(FakeClock::at(UNIX_EPOCH), 7),
            Fakes::new(FakeClock::at(UNIX_EPOCH), 7),
        );
        let first = (draw(&a), draw(&a));
        assert_eq!(first, (draw(&b), draw(&b)));
        assert_ne!(first.0, first.1);
        assert_ne!(draw(&Fakes::new(FakeClock::at(UNIX_EPOCH), 8)), first.0);
    }
}
