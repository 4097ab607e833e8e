//! The WebSocket hub of one component: the open sockets of each user, and
//! delivery of that component's `realtime.push` messages to them.
//!
//! Each socket has a bounded queue. A client that stops reading and lets its
//! queue fill is disconnected rather than allowed to grow the host's memory;
//! a client that disappears is removed when its socket task ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use tokio::sync::mpsc;

/// Messages waiting for one socket before it counts as stuck.
pub const SOCKET_QUEUE: usize = 256;

struct Client {
    id: u64,
    queue: mpsc::Sender<String>,
}

/// Open sockets by user id.
#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    clients: Mutex<HashMap<String, Vec<Client>>>,
}

impl Hub {
    fn clients(&self) -> std::sync::MutexGuard<'_, HashMap<String, Vec<Client>>> {
        self.clients
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a socket for `user` unless `user` has `max` open already;
    /// returns its id and the queue it reads.
    pub fn register(&self, user: &str, max: usize) -> Option<(u64, mpsc::Receiver<String>)> {
        let mut clients = self.clients();
        let list = clients.entry(user.to_owned()).or_default();
        // Sockets whose task is gone but that no push has found yet do not
        // count against the user.
        list.retain(|c| !c.queue.is_closed());
        if list.len() >= max {
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (queue, rx) = mpsc::channel(SOCKET_QUEUE);
        list.push(Client { id, queue });
        Some((id, rx))
    }

    /// Removes a socket.
    pub fn unregister(&self, user: &str, id: u64) {
        let mut clients = self.clients();
        if let Some(list) = clients.get_mut(user) {
            list.retain(|c| c.id != id);
            if list.is_empty() {
                clients.remove(user);
            }
        }
    }

    /// Queues `message` for every socket of `user`; returns how many took
    /// it. Sockets whose queue is full or closed are dropped.
    pub fn push(&self, user: &str, message: &str) -> usize {
        let mut clients = self.clients();
        let Some(list) = clients.get_mut(user) else {
            return 0;
        };
        let before = list.len();
        list.retain(|c| c.queue.try_send(message.to_owned()).is_ok());
        if list.len() < before {
            tracing::warn!(
                user,
                dropped = before - list.len(),
                "disconnected WebSocket clients that stopped reading"
            );
        }
        let delivered = list.len();
        if list.is_empty() {
            clients.remove(user);
        }
        delivered
    }

    /// Open sockets in all.
    pub fn connections(&self) -> usize {
        self.clients().values().map(Vec::len).sum()
    }

    /// Closes every socket (on shutdown): their queues end.
    pub fn close_all(&self) {
        self.clients().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_holds_at_most_max_sockets_and_a_closed_one_frees_its_place(
    ) -> Result<(), &'static str> {
        let hub = Hub::default();
        let (_, first) = hub.register("a", 2).ok_or("first")?;
        let (_, _second) = hub.register("a", 2).ok_or("second")?;
        assert!(hub.register("a", 2).is_none());
        assert!(
            hub.register("b", 2).is_some(),
            "another user is not held back"
        );
        drop(first);
        assert!(hub.register("a", 2).is_some());
        Ok(())
    }

    #[tokio::test]
    async fn pushes_reach_every_socket_of_that_user_only() -> Result<(), &'static str> {
        let hub = Hub::default();
        let (_, mut a1) = hub.register("a", 16).ok_or("full")?;
        let (_, mut a2) = hub.register("a", 16).ok_or("full")?;
        let (_, mut b) = hub.register("b", 16).ok_or("full")?;
        assert_eq!(hub.push("a", "hi"), 2);
        assert_eq!(a1.recv().await.as_deref(), Some("hi"));
        assert_eq!(a2.recv().await.as_deref(), Some("hi"));
        assert!(b.try_recv().is_err());
        assert_eq!(hub.push("nobody", "x"), 0);
        Ok(())
    }

    #[tokio::test]
    async fn a_stuck_or_gone_client_is_dropped() -> Result<(), &'static str> {
        let hub = Hub::default();
        let (_, stuck) = hub.register("a", 16).ok_or("full")?;
        let (gone_id, gone) = hub.register("a", 16).ok_or("full")?;
        drop(gone);
        for _ in 0..SOCKET_QUEUE {
            hub.push("a", "m");
        }
        assert_eq!(hub.connections(), 1);
        assert_eq!(hub.push("a", "overflow"), 0);
        assert_eq!(hub.connections(), 0);
        hub.unregister("a", gone_id);
        drop(stuck);
        Ok(())
    }
}
