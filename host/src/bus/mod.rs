//! The bus: how events and request-reply messages move between components.
//!
//! One small trait, [`Bus`], with the in-process [`local::LocalBus`] as the
//! embedded default (NATS comes behind the same trait). Subjects follow NATS
//! semantics ([`subject`]) and every subscriber is a queue group: each event
//! or request reaches exactly one member of a group.

pub mod envelope;
pub mod local;
pub mod subject;

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

/// A new event id: a UUID (version 7) that starts with the time, so that
/// the ids a subscriber records in its inbox arrive in order and land at
/// the end of its index instead of all over it (measured: random ids cut
/// event throughput to a third through write amplification; BENCHMARKS.md).
pub fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// An event as the contract's JSON envelope describes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Event {
    /// Unique id (UUID).
    pub id: String,
    /// Dotted type, e.g. `user.registered`.
    pub event_type: String,
    /// The publishing component.
    pub source: String,
    /// The payload, a JSON object.
    pub data: serde_json::Value,
    /// RFC 3339 UTC.
    pub timestamp: String,
    /// Shared by everything one outside request caused.
    pub correlation_id: String,
    /// The event whose handling published this one.
    pub causation_id: Option<String>,
}

/// An event on its way to one subscriber, with the receipt it settles once
/// it is done with it (see [`crate::outbox`]).
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event.
    pub event: Arc<Event>,
    /// Where to say it is done; `None` for events that come from no outbox
    /// (delivered once, at most).
    pub receipt: Option<crate::outbox::Receipt>,
}

impl Delivery {
    /// An event from no outbox.
    pub fn untracked(event: Arc<Event>) -> Delivery {
        Delivery {
            event,
            receipt: None,
        }
    }

    /// Tells its outbox this subscriber is done with it: handled and
    /// committed, a duplicate, or kept as a dead letter.
    pub fn settle(&self) {
        if let Some(receipt) = &self.receipt {
            receipt.settle();
        }
    }
}

/// What a queue group receives when a requester calls a subject it serves.
#[derive(Debug)]
pub struct IncomingRequest {
    /// The subject called.
    pub subject: String,
    /// The payload text.
    pub payload: String,
    /// The correlation id of the requester's invocation.
    pub correlation_id: String,
    /// Where the answer goes; dropping it tells the requester the responder
    /// failed.
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
}

/// Receives the events a queue group subscribed to; members share it.
pub type EventReceiver = async_channel::Receiver<Delivery>;
/// Receives the requests for the subjects a queue group serves.
pub type RequestReceiver = async_channel::Receiver<IncomingRequest>;

/// Bus failures.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BusError {
    /// The subject or pattern is malformed.
    #[error("invalid subject `{0}`")]
    InvalidSubject(String),
    /// Nobody serves the subject.
    #[error("no responder for `{0}`")]
    NoResponder(String),
    /// No reply within the timeout.
    #[error("request timed out")]
    Timeout,
    /// The responder answered with an error, or failed before answering.
    #[error("responder failed: {0}")]
    Remote(String),
    /// The bus is shutting down or disconnected.
    #[error("bus closed")]
    Closed,
}

/// The transport between components.
pub trait Bus: Send + Sync + 'static {
    /// `local` or `nats`, for `/health`.
    fn kind(&self) -> &'static str;

    /// Whether the bus can deliver right now.
    fn connected(&self) -> bool;

    /// Delivers committed events, in order, to every queue group whose
    /// patterns match, telling each receipt how many deliveries it has to
    /// wait for. Waits (never drops) when a subscriber's queue is full.
    fn publish(&self, events: Vec<Delivery>) -> BoxFuture<'_, Result<(), BusError>>;

    /// Subscribes queue group `group` to subject `patterns`.
    fn subscribe(&self, group: &str, patterns: &[String]) -> Result<EventReceiver, BusError>;

    /// Adds a member to queue group `group`, serving the exact `subjects`.
    /// Each request goes to exactly one member; members take turns.
    fn serve(&self, group: &str, subjects: &[String]) -> Result<RequestReceiver, BusError>;

    /// Sends a request to one member of a group serving `subject` and waits
    /// for the reply.
    fn request(
        &self,
        subject: &str,
        payload: String,
        correlation_id: String,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<String, BusError>>;

    /// Stops taking new publishes and requests; queued items stay readable.
    fn close(&self);
}
