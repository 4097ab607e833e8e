//! `weft:service/realtime`: pushes to the component's WebSocket clients,
//! held until the invocation commits.

use crate::bindings::weft::service::realtime::Host;
use crate::bindings::GuestError;
use crate::capabilities::messaging::{check_payload, denied};
use crate::state::{HostState, MAX_EVENTS_PER_INVOCATION};

impl Host for HostState {
    async fn push(
        &mut self,
        user_id: String,
        message: String,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        if !self.inv.component.grants.push {
            return Ok(Err(denied(self, "realtime.push", "push")));
        }
        if let Err(e) = check_payload(self, "message", message.len()) {
            return Ok(Err(e));
        }
        if user_id.is_empty() || user_id.len() > 256 {
            return Ok(Err(GuestError::Invalid(
                "user id must be 1-256 bytes".into(),
            )));
        }
        if self.pushes.len() >= MAX_EVENTS_PER_INVOCATION {
            return Ok(Err(GuestError::LimitExceeded(format!(
                "more than {MAX_EVENTS_PER_INVOCATION} pushes in one invocation"
            ))));
        }
        if serde_json::from_str::<serde_json::Value>(&message).is_err() {
            return Ok(Err(GuestError::Invalid("message must be JSON text".into())));
        }
        self.pushes.push((user_id, message));
        Ok(Ok(()))
    }
}
