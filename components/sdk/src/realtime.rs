//! Live pushes to the WebSocket clients of a user, through the host's
//! gateway. Like events, pushes are held until the invocation commits and
//! dropped if it fails. Only components granted `push` may push; others get
//! [`Error::Denied`].

use serde::Serialize;

use crate::Error;

/// Sends `message` (serialised to JSON) as one text frame to every open
/// WebSocket of `user_id`.
pub fn push(user_id: &str, message: &impl Serialize) -> Result<(), Error> {
    let text = serde_json::to_string(message)
        .map_err(|err| Error::Invalid(format!("cannot serialise a push message: {err}")))?;
    push_text(user_id, &text)
}

/// Sends `message`, JSON text already, as one text frame to every open
/// WebSocket of `user_id`.
pub fn push_text(user_id: &str, message: &str) -> Result<(), Error> {
    crate::bindings::weft::service::realtime::push(user_id, message)
}
