//! `weft:service/logging`: guest log lines into the host's `tracing` output,
//! tagged with the component, replica and correlation id.

use crate::bindings::weft::service::logging::{Host, Level};
use crate::state::HostState;

/// Longer guest log lines are cut to this many bytes.
const MAX_LINE: usize = 8 * 1024;

impl Host for HostState {
    async fn log(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let mut message = message;
        if message.len() > MAX_LINE {
            let mut end = MAX_LINE;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
            message.push('…');
        }
        let component = self.inv.component.name.as_str();
        let instance = &*self.inv.instance_id;
        let correlation_id = self.inv.correlation_id.as_str();
        match level {
            Level::Trace => {
                tracing::trace!(target: "guest", component, instance, correlation_id, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "guest", component, instance, correlation_id, "{message}")
            }
            Level::Info => {
                tracing::info!(target: "guest", component, instance, correlation_id, "{message}")
            }
            Level::Warn => {
                tracing::warn!(target: "guest", component, instance, correlation_id, "{message}")
            }
            Level::Error => {
                tracing::error!(target: "guest", component, instance, correlation_id, "{message}")
            }
        }
        Ok(())
    }
}
