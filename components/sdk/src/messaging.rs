//! Request-reply: calling a subject that another component serves.
//!
//! ```no_run
//! use weft_sdk::{messaging, Error};
//!
//! # fn demo() -> Result<(), Error> {
//! match messaging::request("workflows.create", r#"{"name":"n","buildingId":"b1"}"#, 2000) {
//!     Ok(reply) => println!("{reply}"),
//!     Err(Error::Timeout | Error::NoResponder | Error::Remote(_)) => { /* upstream down */ }
//!     Err(other) => return Err(other),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! Publishing events is [`crate::events::publish`].

use serde::Serialize;

use crate::Error;

/// Sends `payload` to whoever serves `subject` (exactly one instance of one
/// component) and waits up to `timeout_ms` for its reply.
///
/// Fails with [`Error::Timeout`] when no reply came in time,
/// [`Error::NoResponder`] when nobody serves `subject`, and
/// [`Error::Remote`] (the responder's message) when the responder failed.
///
/// Call it before touching the database where you can: the invocation holds
/// its database's writer lease from its first write until it ends, and a
/// request can wait up to `timeout_ms`.
pub fn request(subject: &str, payload: &str, timeout_ms: u32) -> Result<String, Error> {
    crate::bindings::weft::service::messaging::request(subject, payload, timeout_ms)
}

/// [`request`] with `payload` serialised to JSON first.
pub fn request_json(
    subject: &str,
    payload: &impl Serialize,
    timeout_ms: u32,
) -> Result<String, Error> {
    let payload = serde_json::to_string(payload)
        .map_err(|err| Error::Invalid(format!("cannot serialise a `{subject}` payload: {err}")))?;
    request(subject, &payload, timeout_ms)
}
