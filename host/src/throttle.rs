//! Attempt counters in the host's memory, one table per component, for
//! limits such as failed logins per account and per client address
//! (`weft:service/throttle`).
//!
//! A key holds the attempts taken in a fixed window that starts at its
//! first attempt. An attempt is taken before the work it guards (so
//! concurrent attempts count, and a refused one costs nothing) and may be
//! given back when it turned out legitimate. The table is bounded
//! (`[throttle] max_keys`): when full, expired windows go first, then the
//! window that ends soonest.
//!
//! Counters live in memory only: a restart forgets them, and each host of
//! a NATS cluster counts its own.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;

/// Longest key a component may use.
pub const MAX_KEY: usize = 512;

#[derive(Debug, Clone, Copy)]
struct Window {
    attempts: u32,
    /// Unix seconds at which the window ends.
    ends: u64,
}

/// One component's counters.
#[derive(Debug)]
pub struct Throttle {
    windows: Mutex<HashMap<String, Window>>,
    max_keys: usize,
}

impl Throttle {
    /// An empty table of at most `max_keys` keys (at least one).
    pub fn new(max_keys: usize) -> Throttle {
        Throttle {
            windows: Mutex::default(),
            max_keys: max_keys.max(1),
        }
    }

    /// Takes one attempt under `key` at `now`: `Ok` when fewer than `limit`
    /// were taken in its window, else `Err(seconds until the window ends)`
    /// (at least 1). A refused attempt is not counted.
    pub fn attempt(&self, key: &str, limit: u32, window_secs: u32, now: u64) -> Result<(), u32> {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(w) = windows.get_mut(key) {
            if w.ends > now {
                if w.attempts >= limit {
                    return Err(u32::try_from(w.ends - now).unwrap_or(u32::MAX).max(1));
                }
                w.attempts += 1;
                return Ok(());
            }
        }
        if limit == 0 {
            return Err(window_secs.max(1));
        }
        if !windows.contains_key(key) && windows.len() >= self.max_keys {
            windows.retain(|_, w| w.ends > now);
            if windows.len() >= self.max_keys {
                let soonest = windows
                    .iter()
                    .min_by_key(|(_, w)| w.ends)
                    .map(|(k, _)| k.clone());
                if let Some(k) = soonest {
                    windows.remove(&k);
                }
            }
        }
        windows.insert(
            key.to_owned(),
            Window {
                attempts: 1,
                ends: now.saturating_add(u64::from(window_secs.max(1))),
            },
        );
        Ok(())
    }

    /// Gives back one attempt under `key` (it was legitimate).
    pub fn give_back(&self, key: &str) {
        let mut windows = self
            .windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(w) = windows.get_mut(key) {
            w.attempts = w.attempts.saturating_sub(1);
        }
    }

    /// Keys held now.
    pub fn len(&self) -> usize {
        self.windows
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A client address as a throttle key: an IPv4 address whole, an IPv6
/// address cut to its /64 (one subscriber usually holds a whole /64).
pub fn client_key(addr: IpAddr) -> String {
    match addr {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_refuses_past_its_limit_until_it_ends() {
        let t = Throttle::new(100);
        for _ in 0..3 {
            assert_eq!(t.attempt("k", 3, 60, 1000), Ok(()));
        }
        assert_eq!(t.attempt("k", 3, 60, 1010), Err(50));
        assert_eq!(t.attempt("other", 3, 60, 1010), Ok(()));
        t.give_back("k");
        assert_eq!(t.attempt("k", 3, 60, 1010), Ok(()));
        assert_eq!(t.attempt("k", 3, 60, 1059), Err(1));
        // A new window at its end.
        assert_eq!(t.attempt("k", 3, 60, 1060), Ok(()));
        assert_eq!(t.attempt("z", 0, 60, 1060), Err(60));
    }

    #[test]
    fn a_full_table_drops_expired_windows_then_the_soonest() {
        let t = Throttle::new(2);
        assert_eq!(t.attempt("a", 1, 10, 0), Ok(()));
        assert_eq!(t.attempt("b", 1, 100, 0), Ok(()));
        assert_eq!(t.attempt("c", 1, 100, 5), Ok(()));
        assert_eq!(t.len(), 2);
        // `a` went (the soonest to end): it may be tried again.
        assert_eq!(t.attempt("b", 1, 100, 5), Err(95));
        assert_eq!(t.attempt("a", 1, 10, 5), Ok(()));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn addresses_are_keyed_by_host_or_by_ipv6_network() {
        let key = |s: &str| client_key(s.parse().unwrap_or(IpAddr::from([0, 0, 0, 0])));
        assert_eq!(key("203.0.113.7"), "203.0.113.7");
        assert_eq!(key("::ffff:203.0.113.7"), "203.0.113.7");
        assert_eq!(key("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(key("2001:db8:1:2:bbbb::9"), key("2001:db8:1:2:aaaa::1"));
    }
}
