//! The in-process bus: bounded queues per queue group, NATS subject matching.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::RwLock;
use std::time::Duration;

use futures::future::BoxFuture;
use futures::FutureExt;

use super::{subject, Bus, BusError, Delivery, EventReceiver, IncomingRequest, RequestReceiver};

struct Subscription {
    patterns: Vec<String>,
    queue: async_channel::Sender<Delivery>,
}

struct Server {
    subjects: Vec<String>,
    queue: async_channel::Sender<IncomingRequest>,
}

/// The embedded bus. Cheap to share behind an `Arc`.
pub struct LocalBus {
    capacity: usize,
    subscriptions: RwLock<Vec<Subscription>>,
    servers: RwLock<Vec<Server>>,
    next_server: AtomicUsize,
    closed: AtomicBool,
}

impl LocalBus {
    /// A bus whose per-group queues hold `capacity` items.
    pub fn new(capacity: usize) -> LocalBus {
        LocalBus {
            capacity: capacity.max(1),
            subscriptions: RwLock::new(Vec::new()),
            servers: RwLock::new(Vec::new()),
            next_server: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
        }
    }

    fn queues_for(&self, subject: &str) -> Vec<async_channel::Sender<Delivery>> {
        let subs = self
            .subscriptions
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        subs.iter()
            .filter(|s| !s.queue.is_closed())
            .filter(|s| s.patterns.iter().any(|p| subject::matches(p, subject)))
            .map(|s| s.queue.clone())
            .collect()
    }

    fn server_for(&self, subject: &str) -> Option<async_channel::Sender<IncomingRequest>> {
        let servers = self
            .servers
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let matching: Vec<_> = servers
            .iter()
            .filter(|s| s.subjects.iter().any(|p| subject::matches(p, subject)))
            .filter(|s| !s.queue.is_closed())
            .collect();
        if matching.is_empty() {
            return None;
        }
        let i = self.next_server.fetch_add(1, Ordering::Relaxed) % matching.len();
        Some(matching[i].queue.clone())
    }
}

impl LocalBus {
    fn add_subscription(&self, patterns: &[String]) -> Result<EventReceiver, BusError> {
        let mut subjects = Vec::with_capacity(patterns.len());
        for p in patterns {
            subjects.push(
                subject::event_subject_pattern(p)
                    .ok_or_else(|| BusError::InvalidSubject(p.clone()))?,
            );
        }
        let (tx, rx) = async_channel::bounded(self.capacity);
        self.subscriptions
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Subscription {
                patterns: subjects,
                queue: tx,
            });
        Ok(rx)
    }

    fn add_server(&self, subjects: &[String]) -> Result<RequestReceiver, BusError> {
        if let Some(bad) = subjects.iter().find(|s| !subject::is_valid(s)) {
            return Err(BusError::InvalidSubject(bad.clone()));
        }
        let (tx, rx) = async_channel::bounded(self.capacity);
        self.servers
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .push(Server {
                subjects: subjects.to_vec(),
                queue: tx,
            });
        Ok(rx)
    }
}

impl Bus for LocalBus {
    fn kind(&self) -> &'static str {
        "local"
    }

    fn connected(&self) -> bool {
        !self.closed.load(Ordering::Relaxed)
    }

    fn publish(&self, events: Vec<Delivery>) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            for delivery in events {
                let event = &delivery.event;
                let subject = subject::event_subject(&event.event_type)
                    .ok_or_else(|| BusError::InvalidSubject(event.event_type.clone()))?;
                let queues = self.queues_for(&subject);
                if let Some(receipt) = &delivery.receipt {
                    receipt.expect(queues.len() as u32);
                }
                for queue in queues {
                    if queue.send(delivery.clone()).await.is_err() {
                        if self.closed.load(Ordering::Relaxed) {
                            // The host is stopping: the delivery stays
                            // unsettled, so its outbox keeps it for the
                            // next start.
                            return Err(BusError::Closed);
                        }
                        // The subscriber went away (an embedding program
                        // dropped its receiver): nobody is left to settle.
                        delivery.settle();
                    }
                }
            }
            Ok(())
        }
        .boxed()
    }

    fn subscribe<'a>(
        &'a self,
        _group: &'a str,
        patterns: &'a [String],
    ) -> BoxFuture<'a, Result<EventReceiver, BusError>> {
        async move { self.add_subscription(patterns) }.boxed()
    }

    fn observe<'a>(
        &'a self,
        patterns: &'a [String],
    ) -> BoxFuture<'a, Result<EventReceiver, BusError>> {
        async move { self.add_subscription(patterns) }.boxed()
    }

    fn serve<'a>(
        &'a self,
        _group: &'a str,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<RequestReceiver, BusError>> {
        async move { self.add_server(subjects) }.boxed()
    }

    fn request(
        &self,
        subject: &str,
        payload: String,
        correlation_id: String,
        traceparent: Option<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<String, BusError>> {
        let subject = subject.to_owned();
        async move {
            super::may_request(&subject, self.closed.load(Ordering::Relaxed))?;
            let queue = self
                .server_for(&subject)
                .ok_or_else(|| BusError::NoResponder(subject.clone()))?;
            let (reply, answer) = tokio::sync::oneshot::channel();
            let exchange = async move {
                queue
                    .send(IncomingRequest {
                        subject: subject.clone(),
                        payload,
                        correlation_id,
                        traceparent,
                        reply,
                    })
                    .await
                    .map_err(|_| BusError::NoResponder(subject))?;
                match answer.await {
                    Ok(Ok(text)) => Ok(text),
                    Ok(Err(message)) => Err(BusError::Remote(message)),
                    Err(_) => Err(BusError::Remote("the responder failed".into())),
                }
            };
            tokio::time::timeout(timeout, exchange)
                .await
                .unwrap_or(Err(BusError::Timeout))
        }
        .boxed()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::bus::Event;
    use std::sync::Arc;

    fn event(event_type: &str) -> Delivery {
        Delivery::untracked(Arc::new(Event {
            id: uuid::Uuid::new_v4().to_string(),
            event_type: event_type.into(),
            source: "test".into(),
            data: serde_json::json!({}),
            timestamp: "2026-11-25T10:00:00Z".into(),
            correlation_id: "c".into(),
            causation_id: None,
            traceparent: None,
        }))
    }

    #[tokio::test]
    async fn each_group_gets_matching_events_once() -> Result<(), BusError> {
        let bus = LocalBus::new(16);
        let all = bus.subscribe("lgm", &["*".into()]).await?;
        let users = bus.subscribe("bpm", &["user.registered".into()]).await?;
        bus.publish(vec![event("user.registered"), event("account.created")])
            .await?;
        assert_eq!(all.len(), 2);
        assert_eq!(users.len(), 1);
        let got = users.recv().await.map_err(|_| BusError::Closed)?;
        assert_eq!(got.event.event_type, "user.registered");
        Ok(())
    }

    #[tokio::test]
    async fn a_full_queue_makes_the_publisher_wait_not_drop() -> Result<(), BusError> {
        let bus = Arc::new(LocalBus::new(1));
        let rx = bus.subscribe("slow", &["*".into()]).await?;
        let publisher = {
            let bus = bus.clone();
            tokio::spawn(async move { bus.publish(vec![event("a"), event("b"), event("c")]).await })
        };
        let mut seen = Vec::new();
        for _ in 0..3 {
            seen.push(
                rx.recv()
                    .await
                    .map_err(|_| BusError::Closed)?
                    .event
                    .event_type
                    .clone(),
            );
        }
        publisher.await.map_err(|_| BusError::Closed)??;
        assert_eq!(seen, ["a", "b", "c"]);
        Ok(())
    }

    #[tokio::test]
    async fn members_of_a_serving_group_take_turns() -> Result<(), BusError> {
        let bus = Arc::new(LocalBus::new(4));
        for member in ["m1", "m2", "m3"] {
            let rx = bus.serve("g", &["s.x".into()]).await?;
            tokio::spawn(async move {
                while let Ok(req) = rx.recv().await {
                    let _ = req.reply.send(Ok(member.to_string()));
                }
            });
        }
        let mut answers = Vec::new();
        for _ in 0..6 {
            answers.push(
                bus.request(
                    "s.x",
                    String::new(),
                    "c".into(),
                    None,
                    Duration::from_secs(1),
                )
                .await?,
            );
        }
        answers.sort();
        assert_eq!(answers, ["m1", "m1", "m2", "m2", "m3", "m3"]);
        Ok(())
    }

    #[tokio::test]
    async fn request_reply_and_its_errors() -> Result<(), BusError> {
        let bus = Arc::new(LocalBus::new(4));
        let no_one = bus
            .request(
                "x.y",
                "p".into(),
                "c".into(),
                None,
                Duration::from_millis(50),
            )
            .await;
        assert_eq!(no_one, Err(BusError::NoResponder("x.y".into())));

        let rx = bus.serve("echo", &["x.y".into()]).await?;
        tokio::spawn(async move {
            while let Ok(req) = rx.recv().await {
                let answer = if req.payload == "fail" {
                    Err("boom".to_string())
                } else {
                    Ok(format!("re:{}", req.payload))
                };
                let _ = req.reply.send(answer);
            }
        });
        let ok = bus
            .request("x.y", "p".into(), "c".into(), None, Duration::from_secs(1))
            .await;
        assert_eq!(ok, Ok("re:p".to_string()));
        let remote = bus
            .request(
                "x.y",
                "fail".into(),
                "c".into(),
                None,
                Duration::from_secs(1),
            )
            .await;
        assert_eq!(remote, Err(BusError::Remote("boom".into())));

        let _silent = bus.serve("silent", &["slow.one".into()]).await?;
        let timeout = bus
            .request(
                "slow.one",
                "p".into(),
                "c".into(),
                None,
                Duration::from_millis(20),
            )
            .await;
        assert_eq!(timeout, Err(BusError::Timeout));
        Ok(())
    }
}
