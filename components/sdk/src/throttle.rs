//! Attempt counters kept by the host, one table per component: limits such
//! as failed logins per account and per client address.
//!
//! ```no_run
//! use weft_sdk::{http, throttle};
//!
//! # fn demo(account: &str) -> Result<(), weft_sdk::Response> {
//! let key = format!("login:{account}");
//! // Taken before the costly work, so a refused attempt costs nothing.
//! throttle::attempt(&key, 5, 900).map_err(http::too_many_requests)?;
//! // … it was legitimate after all:
//! throttle::give_back(&key);
//! # Ok(())
//! # }
//! ```

use crate::bindings::weft::service::throttle as host;

/// The address of the HTTP client this invocation answers (an IPv4 address
/// or an IPv6 /64), for keys per client.
pub fn client_address() -> Option<String> {
    host::client_address()
}

/// Takes one attempt under `key`: `Ok` when fewer than `limit` were taken in
/// its window of `window_secs`, else `Err(seconds until it ends)`.
pub fn attempt(key: &str, limit: u32, window_secs: u32) -> Result<(), u32> {
    host::attempt(key, limit, window_secs)
}

/// Gives back one attempt under `key`.
pub fn give_back(key: &str) {
    host::give_back(key)
}
