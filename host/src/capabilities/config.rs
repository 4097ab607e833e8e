//! `weft:service/config`: the component's own settings and replica id.

use crate::bindings::weft::service::config::Host;
use crate::state::HostState;

impl Host for HostState {
    async fn get(&mut self, key: String) -> wasmtime::Result<Option<String>> {
        Ok(self.inv.component.config.get(&key).cloned())
    }

    async fn get_all(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(self
            .inv
            .component
            .config
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect())
    }

    async fn instance_id(&mut self) -> wasmtime::Result<String> {
        Ok(self.inv.instance_id.to_string())
    }
}
