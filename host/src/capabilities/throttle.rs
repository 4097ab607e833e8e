//! `weft:service/throttle`: attempt counters of the component's own
//! ([`crate::throttle`]), and the HTTP client's address to key them by.

use crate::bindings::weft::service::throttle::Host;
use crate::state::HostState;
use crate::throttle::MAX_KEY;

impl HostState {
    /// Now in Unix seconds: the fake clock in component tests.
    fn throttle_now(&self) -> u64 {
        match &self.inv.component.fakes {
            Some(fakes) => fakes.clock.now().as_secs(),
            None => crate::auth::now_secs(),
        }
    }
}

/// `key` cut to [`MAX_KEY`] bytes, on a character boundary.
fn bounded(key: &str) -> &str {
    if key.len() <= MAX_KEY {
        return key;
    }
    let mut end = MAX_KEY;
    while !key.is_char_boundary(end) {
        end -= 1;
    }
    &key[..end]
}

impl Host for HostState {
    async fn client_address(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(self.inv.client.map(crate::throttle::client_key))
    }

    async fn attempt(
        &mut self,
        key: String,
        limit: u32,
        window_secs: u32,
    ) -> wasmtime::Result<Result<(), u32>> {
        let now = self.throttle_now();
        Ok(self
            .inv
            .component
            .throttle
            .attempt(bounded(&key), limit, window_secs, now))
    }

    async fn give_back(&mut self, key: String) -> wasmtime::Result<()> {
        self.inv.component.throttle.give_back(bounded(&key));
        Ok(())
    }
}
