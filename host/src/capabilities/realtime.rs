//! `weft:service/realtime`: pushes to the component's WebSocket clients,
//! held until the invocation commits.

use crate::bindings::weft::service::realtime::Host;
use crate::bindings::GuestError;
use crate::capabilities::messaging::MAX_PAYLOAD;
use crate::state::{HostState, MAX_EVENTS_PER_INVOCATION};

impl Host for HostState {
    async fn push(
        &mut self,
        user_id: String,
        message: String,
    ) -> wasmtime::Result<Result<(), GuestError>> {
        let ctx = &self.inv.component;
        if !ctx.grants.push {
            tracing::warn!(component = %ctx.name, "denied: realtime.push is not granted");
            return Ok(Err(GuestError::Denied(
                "this component is not granted push".into(),
            )));
        }
        if message.len() > MAX_PAYLOAD {
            return Ok(Err(GuestError::LimitExceeded(format!(
                "message larger than {MAX_PAYLOAD} bytes"
            ))));
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
