//! The bus: how events and request-reply messages move between components.
//!
//! One small trait, [`Bus`], with the in-process [`local::LocalBus`] as the
//! embedded default (NATS comes behind the same trait). Subjects follow NATS
//! semantics ([`subject`]) and every subscriber is a queue group: each event
//! or request reaches exactly one member of a group.

pub mod envelope;
pub mod local;
pub mod nats;
mod nats_revocations;
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
    /// The W3C trace context of the publishing invocation, if it had one.
    /// Not part of the contract's envelope: it travels in the outbox row
    /// and in the NATS `traceparent` header.
    #[serde(skip)]
    pub traceparent: Option<String>,
}

/// An event on its way to one subscriber, with what it settles once it is
/// done with it: the receipt of a local outbox row (see
/// [`crate::outbox`]), or the broker's message.
#[derive(Debug, Clone)]
pub struct Delivery {
    /// The event.
    pub event: Arc<Event>,
    /// Where to say it is done; `None` for events that come from no outbox
    /// (delivered once, at most).
    pub receipt: Option<crate::outbox::Receipt>,
    /// A broker that redelivers by itself (JetStream): it is told when the
    /// event is done, or to deliver it again later.
    pub broker: Option<Arc<dyn BrokerMessage>>,
}

/// A message of a broker that keeps it until it is acknowledged.
pub trait BrokerMessage: Send + Sync + std::fmt::Debug {
    /// Which delivery of the message this is (1 for the first).
    fn attempt(&self) -> u32;
    /// Done with: handled, or kept as a dead letter.
    fn ack(&self);
    /// Deliver it again after `delay`.
    fn retry_after(&self, delay: Duration);
    /// Keeps it in the broker's dead-letter stream too, with why.
    fn dead_letter(&self, component: &str, attempts: u32, error: &str);
}

impl Delivery {
    /// An event from no outbox.
    pub fn untracked(event: Arc<Event>) -> Delivery {
        Delivery {
            event,
            receipt: None,
            broker: None,
        }
    }

    /// Tells its outbox or broker this subscriber is done with it: handled
    /// and committed, a duplicate, or kept as a dead letter.
    pub fn settle(&self) {
        if let Some(receipt) = &self.receipt {
            receipt.settle();
        }
        if let Some(broker) = &self.broker {
            broker.ack();
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
    /// The requester's W3C trace context, if it had one.
    pub traceparent: Option<String>,
    /// Where the answer goes; dropping it tells the requester the responder
    /// failed.
    pub reply: tokio::sync::oneshot::Sender<Result<String, String>>,
}

/// Why a bus cannot send a request on `subject` (checked before anything
/// else by both buses): it must be literal, and the bus still open.
fn may_request(subject: &str, closed: bool) -> Result<(), BusError> {
    if !subject::is_literal(subject) {
        return Err(BusError::InvalidSubject(subject.to_owned()));
    }
    if closed {
        return Err(BusError::Closed);
    }
    Ok(())
}

/// Receives the events a queue group subscribed to; members share it.
pub type EventReceiver = async_channel::Receiver<Delivery>;
/// Receives the requests for the subjects a queue group serves.
pub type RequestReceiver = async_channel::Receiver<IncomingRequest>;

/// Revocations other hosts share, as they come.
pub type RevocationFeed = async_channel::Receiver<Vec<crate::revocations::Revocation>>;

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
    /// The bus is shutting down.
    #[error("bus closed")]
    Closed,
    /// The broker cannot take it now (disconnected, no stream); worth
    /// trying again.
    #[error("bus unavailable: {0}")]
    Unavailable(String),
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

    /// Subscribes queue group `group` to subject `patterns`, durably
    /// (every event reaches the group once, across restarts and hosts).
    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        patterns: &'a [String],
    ) -> BoxFuture<'a, Result<EventReceiver, BusError>>;

    /// Receives, from now on, what matches `patterns`, at most once (an
    /// embedding program's observer; not a queue group).
    fn observe<'a>(
        &'a self,
        patterns: &'a [String],
    ) -> BoxFuture<'a, Result<EventReceiver, BusError>>;

    /// Adds a member to queue group `group`, serving the exact `subjects`.
    /// Each request goes to exactly one member; members take turns.
    fn serve<'a>(
        &'a self,
        group: &'a str,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<RequestReceiver, BusError>>;

    /// Sends a request to one member of a group serving `subject` and waits
    /// for the reply.
    fn request(
        &self,
        subject: &str,
        payload: String,
        correlation_id: String,
        traceparent: Option<String>,
        timeout: Duration,
    ) -> BoxFuture<'_, Result<String, BusError>>;

    /// Stops taking new publishes and requests; queued items stay readable.
    fn close(&self);

    /// How long outboxes keep rows the bus confirmed, to send them again
    /// after a reconnect: a broker may lose what it confirmed last when it
    /// crashes (NATS keeps recent writes in memory for a moment). Zero for
    /// the local bus, whose confirmation is the subscriber's own commit.
    fn resend_window(&self) -> Duration {
        Duration::ZERO
    }

    /// Events waiting in the broker for queue group `group` (not yet
    /// delivered, or delivered and not yet acknowledged), when the broker
    /// keeps them; for `/health`.
    fn stream_backlog(&self, _group: &str) -> Option<u64> {
        None
    }

    /// How many times the connection came back since start; outboxes send
    /// their retained rows again when it changes.
    fn reconnects(&self) -> u64 {
        0
    }

    /// Tells every other host on this bus about committed revocations, so
    /// that their gateways refuse the same tokens. The local bus serves
    /// one host, whose set holds them already.
    fn share_revocations<'a>(
        &'a self,
        _revocations: &'a [crate::revocations::Revocation],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// The revocations hosts shared that may still be in force (one stays
    /// in force for `window`), then a feed of those shared from now on;
    /// `None` when the bus serves this host alone.
    #[allow(clippy::type_complexity)]
    fn follow_revocations(
        &self,
        _window: Duration,
    ) -> BoxFuture<
        '_,
        Result<Option<(Vec<crate::revocations::Revocation>, RevocationFeed)>, BusError>,
    > {
        Box::pin(std::future::ready(Ok(None)))
    }
}
