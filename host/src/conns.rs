//! Connection slots: the gateway's cap on open connections, and the lower
//! cap per client address, so that one address cannot take every slot.
//! A slot lives as long as its connection, or the WebSocket it became.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, LazyLock, Mutex};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// The open connections, in all and per client address.
pub struct Slots {
    all: Arc<Semaphore>,
    per_client: usize,
    by_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

/// One open connection's place; dropping it frees it. Cloned into a
/// WebSocket's task so that the socket keeps holding it after the upgrade.
pub struct Slot {
    _all: OwnedSemaphorePermit,
    client: IpAddr,
    by_client: Arc<Mutex<HashMap<IpAddr, usize>>>,
}

impl Slots {
    /// `max` connections in all, at most `per_client` from one address.
    pub fn new(max: usize, per_client: usize) -> Slots {
        Slots {
            all: Arc::new(Semaphore::new(max.max(1))),
            per_client: per_client.max(1),
            by_client: Arc::default(),
        }
    }

    /// Waits until fewer than `max` connections are open (the accept loop
    /// waits here, leaving further clients in the kernel's backlog).
    pub async fn free(&self) -> Option<OwnedSemaphorePermit> {
        self.all.clone().acquire_owned().await.ok()
    }

    /// A slot for a connection from `client` holding `permit`, or `None`
    /// when that address has `per_client` open already.
    pub fn take(&self, permit: OwnedSemaphorePermit, client: IpAddr) -> Option<Slot> {
        let mut by_client = lock(&self.by_client);
        let open = by_client.entry(client).or_insert(0);
        if *open >= self.per_client {
            return None;
        }
        *open += 1;
        Some(Slot {
            _all: permit,
            client,
            by_client: self.by_client.clone(),
        })
    }

    /// Open connections from `client`.
    pub fn open_from(&self, client: IpAddr) -> usize {
        lock(&self.by_client).get(&client).copied().unwrap_or(0)
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut by_client = lock(&self.by_client);
        if let Some(open) = by_client.get_mut(&self.client) {
            *open = open.saturating_sub(1);
            if *open == 0 {
                by_client.remove(&self.client);
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What a connection over its address's cap is told before it is closed:
/// written at once, without reading its request.
pub static TOO_MANY_FROM_CLIENT: LazyLock<Vec<u8>> = LazyLock::new(|| {
    let body = r#"{"error":{"code":"too_many_requests","message":"too many open connections from this address; retry later"}}"#;
    format!(
        "HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
});

#[cfg(test)]
mod tests {
    use super::*;

    type Result = std::result::Result<(), Box<dyn std::error::Error>>;

    #[tokio::test]
    async fn one_address_cannot_take_every_slot() -> Result {
        let slots = Slots::new(4, 2);
        let a: IpAddr = [127, 0, 0, 2].into();
        let b: IpAddr = [127, 0, 0, 3].into();
        let a1 = slots
            .take(slots.free().await.ok_or("closed")?, a)
            .ok_or("a1")?;
        let _a2 = slots
            .take(slots.free().await.ok_or("closed")?, a)
            .ok_or("a2")?;
        assert!(slots.take(slots.free().await.ok_or("closed")?, a).is_none());
        let _b1 = slots
            .take(slots.free().await.ok_or("closed")?, b)
            .ok_or("b1")?;
        assert_eq!(slots.open_from(a), 2);
        drop(a1);
        assert_eq!(slots.open_from(a), 1);
        assert!(slots.take(slots.free().await.ok_or("closed")?, a).is_some());
        Ok(())
    }

    #[test]
    fn the_refusal_is_one_well_formed_response() -> Result {
        let text = std::str::from_utf8(&TOO_MANY_FROM_CLIENT)?;
        let (head, body) = text.split_once("\r\n\r\n").ok_or("no head")?;
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let json: serde_json::Value = serde_json::from_str(body)?;
        assert_eq!(json["error"]["code"], "too_many_requests");
        Ok(())
    }
}
