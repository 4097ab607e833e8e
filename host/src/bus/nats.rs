//! The NATS bus: the same services across processes and machines.
//!
//! - **Events** are published on `events.<eventType>` with the contract's
//!   JSON envelope and `Nats-Msg-Id: <event id>` into a JetStream stream
//!   over `events.>` (created, or checked, at start). The outbox relay awaits
//!   the stream's acknowledgements for a whole page of events at once and
//!   settles each row when its acknowledgement came; a row the stream did
//!   not confirm is sent again, and the stream drops the copy by its id.
//! - Each subscribing component has one **durable pull consumer**
//!   (`weft-<component>`), shared by its replicas on every host, so each
//!   event is handled once per component across the cluster. A message is
//!   acknowledged after the handler's transaction committed; a failure asks
//!   for it again after the retry backoff (`Nak` with a delay), and the last
//!   failure keeps it as a dead letter (the component's database and the
//!   dead-letter stream over `dlq.>`).
//! - **Request-reply** uses core NATS requests on the served subject; each
//!   replica subscribes in the queue group named after its component. A
//!   responder's failure comes back as the header `Weft-Error`.
//! - The correlation id travels in the header `Weft-Correlation-Id`.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_nats::HeaderMap;
use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};

use super::{
    envelope, subject, BrokerMessage, Bus, BusError, Delivery, Event, EventReceiver,
    IncomingRequest, RequestReceiver,
};
use crate::config::BusConfig;

/// The header that carries the correlation id.
pub const CORRELATION_HEADER: &str = "Weft-Correlation-Id";
/// The header of a reply that says the responder failed, and why.
pub const ERROR_HEADER: &str = "Weft-Error";
/// Requests waiting for a replica, per served subject group.
const PULLED: usize = 256;
/// How long a page of events may wait for the stream's acknowledgements
/// (and a JetStream API call for its answer) before the relay sends again.
const ACK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long outboxes keep what the stream confirmed, to send it again after
/// a reconnect: a `nats-server` killed outright loses the writes it had not
/// flushed yet, confirmed or not (seen: about a hundred events of the last
/// half second). The stream drops the copies it still has by id.
const RESEND_WINDOW: Duration = Duration::from_secs(10);
/// How long a stream the host creates remembers event ids to drop copies:
/// well past [`RESEND_WINDOW`], and past the outbox's 5 s resend of a page
/// that was not confirmed.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);
/// Largest event envelope taken from the stream.
const MAX_ENVELOPE: usize = 1 << 20;

/// Failures to connect or to set the streams up.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// No server answered, or it refused the credentials.
    #[error("cannot connect to NATS at {url}: {why}")]
    Connect {
        /// Where.
        url: String,
        /// Why.
        why: String,
    },
    /// A stream exists with a configuration that does not fit.
    #[error("JetStream stream `{name}`: {why}")]
    Stream {
        /// The stream.
        name: String,
        /// What does not fit, or what failed.
        why: String,
    },
}

/// The bus over a NATS server (or cluster) with JetStream.
pub struct NatsBus {
    client: async_nats::Client,
    js: jetstream::Context,
    events: stream::Stream,
    dead_letters: String,
    /// The stream of revocations shared between hosts.
    revocations: String,
    ack_wait: Duration,
    /// Events pulled and waiting for a replica, per consumer.
    queue_capacity: usize,
    /// Connections after the first.
    reconnects: Arc<std::sync::atomic::AtomicU64>,
    /// Each consumer's pending and unacknowledged messages, as last read.
    backlogs: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    closed: Arc<AtomicBool>,
}

/// How long the server may take to confirm a subscription.
const REGISTERED_WITHIN: Duration = Duration::from_secs(5);

impl NatsBus {
    /// Connects and creates (or checks) the event and dead-letter streams.
    pub async fn connect(config: &BusConfig) -> Result<NatsBus, NatsError> {
        let url = config
            .url
            .clone()
            .unwrap_or_else(|| "nats://127.0.0.1:4222".into());
        let connect_err = |why: String| NatsError::Connect {
            url: url.clone(),
            why,
        };
        let reconnects = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let urls: Vec<async_nats::ServerAddr> = url
            .split(',')
            .map(|u| u.trim().parse())
            .collect::<Result<_, _>>()
            .map_err(|e| connect_err(format!("bad URL: {e}")))?;
        let name = config.name.clone().unwrap_or_else(|| "weft".into());
        // Two connections, one for requests and replies and one for the
        // streams: the server takes a connection's messages in order, and
        // a reply sharing one with the outbox relay's JetStream publishes
        // waited behind them (one request in flight: 2.4k → 2.85k round
        // trips/s; durable events 26k → 28.6k/s).
        let client = options(config, &name, &reconnects)
            .await
            .map_err(connect_err)?
            .connect(urls.clone())
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let stream_client = options(config, &format!("{name}-stream"), &reconnects)
            .await
            .map_err(connect_err)?
            .connect(urls)
            .await
            .map_err(|e| connect_err(e.to_string()))?;
        let js = jetstream::ContextBuilder::new()
            .timeout(ACK_TIMEOUT)
            .ack_timeout(ACK_TIMEOUT)
            .build(stream_client);
        let events = ensure_stream(
            &js,
            &config.stream,
            subject::EVENTS_PREFIX.to_owned() + ">",
            Duration::from_secs(config.stream_max_age_secs),
        )
        .await?;
        let dead_letters = format!("{}_DLQ", config.stream);
        ensure_stream(&js, &dead_letters, "dlq.>".into(), Duration::ZERO).await?;
        tracing::info!(url = %url, stream = %config.stream, "NATS bus ready");
        Ok(NatsBus {
            client,
            js,
            events,
            dead_letters,
            revocations: format!("{}_REVOCATIONS", config.stream),
            ack_wait: Duration::from_secs(config.ack_wait_secs.max(1)),
            queue_capacity: config.queue_capacity.max(1),
            reconnects,
            backlogs: Arc::default(),
            closed: Arc::new(AtomicBool::new(false)),
        })
    }

    /// Returns once the server has taken this connection's subscriptions:
    /// `subscribe` returns when the request is queued, and an event
    /// published on the other (JetStream) connection right after could
    /// reach the server first and miss the subscriber. The server takes
    /// one connection's messages in order, so a message this connection
    /// sends to itself comes back only after the subscriptions before it.
    async fn registered(&self) -> Result<(), BusError> {
        let failed = |e: String| BusError::Unavailable(format!("subscribe: {e}"));
        let inbox = self.client.new_inbox();
        let mut echo = self
            .client
            .subscribe(inbox.clone())
            .await
            .map_err(|e| failed(e.to_string()))?;
        self.client
            .publish(inbox, bytes::Bytes::new())
            .await
            .map_err(|e| failed(e.to_string()))?;
        if !matches!(
            tokio::time::timeout(REGISTERED_WITHIN, echo.next()).await,
            Ok(Some(_))
        ) {
            // Disconnected: the client subscribes again when it is back.
            tracing::warn!(
                "NATS: the server did not confirm a subscription within {REGISTERED_WITHIN:?}"
            );
        }
        Ok(())
    }
}

/// The connection options `config` asks for; each (re)connection counts
/// in `reconnects`.
async fn options(
    config: &BusConfig,
    name: &str,
    reconnects: &Arc<std::sync::atomic::AtomicU64>,
) -> Result<async_nats::ConnectOptions, String> {
    let counter = reconnects.clone();
    let mut options = async_nats::ConnectOptions::new()
        .name(name)
        .connection_timeout(Duration::from_secs(5))
        .event_callback(move |event| {
            let counter = counter.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        counter.fetch_add(1, Ordering::Relaxed);
                        tracing::info!("NATS: connected");
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!("NATS: disconnected; reconnecting with backoff")
                    }
                    other => tracing::info!("NATS: {other}"),
                }
            }
        });
    if let (Some(user), Some(password)) = (&config.user, &config.password) {
        options = options.user_and_password(user.clone(), password.clone());
    }
    if let Some(token) = &config.token {
        options = options.token(token.clone());
    }
    if let Some(file) = &config.credentials {
        options = options
            .credentials_file(file)
            .await
            .map_err(|e| format!("credentials {}: {e}", file.display()))?;
    }
    if let Some(ca) = &config.tls_ca {
        options = options.add_root_certificates(ca.clone());
    }
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    if config.tls_required {
        options = options.require_tls(true);
    }
    Ok(options)
}

/// Gets stream `name`, checking that it covers `subject`, or creates it.
async fn ensure_stream(
    js: &jetstream::Context,
    name: &str,
    subject: String,
    max_age: Duration,
) -> Result<stream::Stream, NatsError> {
    let err = |why: String| NatsError::Stream {
        name: name.to_owned(),
        why,
    };
    match js.get_stream(name).await {
        Ok(mut existing) => {
            let info = existing
                .info()
                .await
                .map_err(|e| err(format!("cannot read its configuration: {e}")))?;
            if let Some(why) = conflict(&info.config, &subject) {
                return Err(err(format!(
                    "{why}; change or delete it, or set [bus] stream to another name"
                )));
            }
            for caveat in caveats(&info.config) {
                tracing::warn!(stream = name, "JetStream stream `{name}`: {caveat}");
            }
            Ok(existing)
        }
        Err(e)
            if matches!(
                e.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(j)
                    if j.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            js.create_stream(new_stream(name, subject, max_age))
                .await
                .map_err(|e| err(format!("cannot create it: {e}")))
        }
        Err(e) => Err(err(format!(
            "cannot look it up ({e}); is JetStream enabled on the server (nats-server -js)?"
        ))),
    }
}

/// The stream the host creates when there is none: on disk, keeping each
/// event id for [`DUPLICATE_WINDOW`].
fn new_stream(name: &str, subject: String, max_age: Duration) -> stream::Config {
    stream::Config {
        name: name.to_owned(),
        subjects: vec![subject],
        max_age,
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    }
}

/// Why an existing stream cannot carry Weft's events on `subject`, if it
/// cannot.
fn conflict(config: &stream::Config, subject: &str) -> Option<String> {
    if !config.subjects.iter().any(|s| s == subject) {
        return Some(format!(
            "it exists with subjects {:?}, but weft needs `{subject}`",
            config.subjects
        ));
    }
    // Every subscribing component reads every event through a durable
    // consumer of its own: the stream must keep an event after one
    // consumer (work queue), or all the consumers of the moment
    // (interest), took it.
    match config.retention {
        stream::RetentionPolicy::Limits => None,
        stream::RetentionPolicy::WorkQueue => Some(
            "its retention is `workqueue`, which drops an event once one consumer has it, \
             but every subscribing component needs its own copy: weft needs `limits`"
                .into(),
        ),
        stream::RetentionPolicy::Interest => Some(
            "its retention is `interest`, which drops an event that no consumer is \
             interested in yet, so a component added later never sees it: weft needs `limits`"
                .into(),
        ),
    }
}

/// What an existing stream's configuration gives up, for the log.
fn caveats(config: &stream::Config) -> Vec<String> {
    let mut caveats = Vec::new();
    if config.storage == stream::StorageType::Memory {
        caveats.push("it keeps events in memory: a server restart loses them".to_owned());
    }
    if config.duplicate_window < RESEND_WINDOW {
        caveats.push(format!(
            "its duplicate window ({:?}) is shorter than the {RESEND_WINDOW:?} in which \
             outboxes send events again after a reconnect: copies may be stored twice \
             (the inboxes still drop them)",
            config.duplicate_window
        ));
    }
    caveats
}

/// A JetStream message handed to a component.
struct StreamMessage {
    message: jetstream::Message,
    consumer: Arc<ConsumerSide>,
}

/// What every message of one consumer shares.
struct ConsumerSide {
    js: jetstream::Context,
    dead_letters: String,
    /// Reply subjects to acknowledge, sent in order by one task: a task
    /// (and a copy of the message) per acknowledgement cost more than the
    /// acknowledgement.
    acks: tokio::sync::mpsc::UnboundedSender<async_nats::Subject>,
}

impl ConsumerSide {
    fn new(js: jetstream::Context, dead_letters: String) -> Arc<ConsumerSide> {
        let (acks, mut pending) = tokio::sync::mpsc::unbounded_channel::<async_nats::Subject>();
        let client = js.client();
        tokio::spawn(async move {
            let mut batch = Vec::with_capacity(ACKS_AT_ONCE);
            while pending.recv_many(&mut batch, ACKS_AT_ONCE).await > 0 {
                for reply in batch.drain(..) {
                    if let Err(e) = client.publish(reply, bytes::Bytes::new()).await {
                        // Not acknowledged: delivered again after the ack
                        // wait, and dropped then by the inbox.
                        tracing::warn!("NATS: ack failed: {e}");
                    }
                }
            }
        });
        Arc::new(ConsumerSide {
            js,
            dead_letters,
            acks,
        })
    }

    /// Queues `message`'s acknowledgement.
    fn ack(&self, message: &jetstream::Message) {
        if let Some(reply) = &message.reply {
            // Fails only when the host is going away: then the server
            // delivers it again after the ack wait.
            let _ = self.acks.send(reply.clone());
        }
    }
}

/// Acknowledgements taken from the queue at once.
const ACKS_AT_ONCE: usize = 256;

impl std::fmt::Debug for StreamMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StreamMessage({})", self.message.subject)
    }
}

impl BrokerMessage for StreamMessage {
    fn attempt(&self) -> u32 {
        self.message
            .info()
            .map(|i| u32::try_from(i.delivered).unwrap_or(1))
            .unwrap_or(1)
    }

    fn ack(&self) {
        self.consumer.ack(&self.message);
    }

    fn retry_after(&self, delay: Duration) {
        let message = self.message.clone();
        tokio::spawn(async move {
            let nak = jetstream::AckKind::Nak(Some(delay));
            if let Err(e) = message.ack_with(nak).await {
                tracing::warn!("NATS: nak failed ({e}); redelivered after the ack wait");
            }
        });
    }

    fn dead_letter(&self, component: &str, attempts: u32, error: &str) {
        let (js, message) = (self.consumer.js.clone(), self.message.clone());
        let event_type = message
            .subject
            .strip_prefix(subject::EVENTS_PREFIX)
            .unwrap_or("unknown")
            .to_owned();
        let subject = format!("dlq.{component}.{event_type}");
        let mut headers = HeaderMap::new();
        let id = header(&message, async_nats::header::NATS_MESSAGE_ID).unwrap_or_default();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            format!("{component}:{id}").as_str(),
        );
        headers.insert("Weft-Component", component);
        headers.insert("Weft-Attempts", attempts.to_string().as_str());
        headers.insert(ERROR_HEADER, one_line(error).as_str());
        let stream = self.consumer.dead_letters.clone();
        tokio::spawn(async move {
            let sent = js
                .publish_with_headers(subject, headers, message.payload.clone())
                .await;
            let acked = match sent {
                Ok(ack) => ack.await.map(|_| ()).map_err(|e| e.to_string()),
                Err(e) => Err(e.to_string()),
            };
            if let Err(e) = acked {
                tracing::warn!("NATS: dead letter not stored in {stream}: {e} (it is kept in the component's database)");
            }
        });
    }
}

/// Moves a durable consumer's messages into the queue its component's
/// replicas take from, for as long as the host runs. Its pull stream ends or
/// fails when the server restarts or the connection breaks; it then starts
/// a new one, until the server answers again.
struct Pump {
    durable: String,
    /// The subjects subscribed to: a server that did not filter may send
    /// others.
    filters: Vec<String>,
    consumer: consumer::PullConsumer,
    tx: async_channel::Sender<Delivery>,
    side: Arc<ConsumerSide>,
    closed: Arc<AtomicBool>,
}

impl Pump {
    async fn run(self, mut messages: consumer::pull::Stream) {
        let mut pause = Duration::from_millis(100);
        loop {
            match self.drain(&mut messages).await {
                Drained::Stop => return,
                Drained::Broken(why) => {
                    tracing::warn!(consumer = %self.durable, "NATS: pulling stopped ({why}); pulling again in {pause:?}");
                }
            }
            loop {
                tokio::time::sleep(pause).await;
                if self.closed.load(Ordering::Relaxed) || self.tx.is_closed() {
                    return;
                }
                pause = (pause * 2).min(Duration::from_secs(5));
                match pull(&self.consumer).await {
                    Ok(fresh) => {
                        messages = fresh;
                        pause = Duration::from_millis(100);
                        tracing::info!(consumer = %self.durable, "NATS: pulling again");
                        break;
                    }
                    Err(e) => {
                        tracing::warn!(consumer = %self.durable, "NATS: cannot pull yet: {e}")
                    }
                }
            }
        }
    }

    /// Hands on messages until the stream fails or the host stops.
    async fn drain(&self, messages: &mut consumer::pull::Stream) -> Drained {
        while let Some(next) = messages.next().await {
            if self.closed.load(Ordering::Relaxed) {
                return Drained::Stop; // unacknowledged: the server keeps it
            }
            let message = match next {
                Ok(m) => m,
                Err(e) => return Drained::Broken(e.to_string()),
            };
            if !self
                .filters
                .iter()
                .any(|f| subject::matches(f, &message.subject))
            {
                // Not subscribed to: this consumer's copy is done with.
                self.side.ack(&message);
                continue;
            }
            let event = match envelope::decode(&message.payload, MAX_ENVELOPE) {
                Ok(event) => Event {
                    traceparent: header(&message, crate::trace::HEADER),
                    ..event
                },
                Err(e) => {
                    // Nobody can handle it, now or later.
                    tracing::error!(consumer = %self.durable, subject = %message.subject, "NATS: unreadable event, terminated: {e}");
                    let _ = message.ack_with(jetstream::AckKind::Term).await;
                    continue;
                }
            };
            let delivery = Delivery {
                event: Arc::new(event),
                receipt: None,
                broker: Some(Arc::new(StreamMessage {
                    message,
                    consumer: self.side.clone(),
                })),
            };
            if self.tx.send(delivery).await.is_err() {
                return Drained::Stop;
            }
        }
        Drained::Broken("the stream ended".into())
    }
}

/// Pulls a consumer's messages, with the server's heartbeat every
/// [`PULL_HEARTBEAT`]. A pull that the server has dropped is noticed only
/// by the heartbeats that stop: with the client's default (15 s, missed
/// after 30 s) nats-server 2.9 left a consumer's events waiting 30 s in
/// about one run of the events bench in twenty.
async fn pull(
    consumer: &consumer::PullConsumer,
) -> Result<consumer::pull::Stream, consumer::StreamError> {
    consumer
        .stream()
        .expires(PULL_EXPIRES)
        .heartbeat(PULL_HEARTBEAT)
        .messages()
        .await
}

/// How long one pull request waits on the server.
const PULL_EXPIRES: Duration = Duration::from_secs(5);
/// How often the server says that a waiting pull is alive.
const PULL_HEARTBEAT: Duration = Duration::from_secs(1);

enum Drained {
    Stop,
    Broken(String),
}

/// Header values are one line.
fn one_line(text: &str) -> String {
    let line: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    line.chars().take(512).collect()
}

fn nats_subjects(patterns: &[String]) -> Result<Vec<String>, BusError> {
    patterns
        .iter()
        .map(|p| {
            subject::event_subject_pattern(p).ok_or_else(|| BusError::InvalidSubject(p.clone()))
        })
        .collect()
}

impl Bus for NatsBus {
    fn kind(&self) -> &'static str {
        "nats"
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    fn publish(&self, events: Vec<Delivery>) -> BoxFuture<'_, Result<(), BusError>> {
        async move {
            if self.closed.load(Ordering::Relaxed) {
                return Err(BusError::Closed);
            }
            // Publish the whole page, then await its acknowledgements
            // together: one round trip per page, not per event. A page that
            // is not confirmed in time is sent again (the relay rewinds);
            // the stream drops the copies by `Nats-Msg-Id`.
            let mut acks = Vec::with_capacity(events.len());
            let mut failed = None;
            // One deadline for the whole page, not one per event: a page
            // the server will never confirm must not wait 5 s per row.
            let deadline = tokio::time::Instant::now() + ACK_TIMEOUT;
            for delivery in events {
                let event = &delivery.event;
                let subject = subject::event_subject(&event.event_type)
                    .ok_or_else(|| BusError::InvalidSubject(event.event_type.clone()))?;
                let payload = serde_json::to_vec(&**event)
                    .map_err(|e| BusError::InvalidSubject(format!("unserialisable event: {e}")))?;
                let mut headers = HeaderMap::new();
                headers.insert(async_nats::header::NATS_MESSAGE_ID, event.id.as_str());
                headers.insert(CORRELATION_HEADER, one_line(&event.correlation_id).as_str());
                if let Some(trace) = &event.traceparent {
                    headers.insert(crate::trace::HEADER, one_line(trace).as_str());
                }
                if let Some(receipt) = &delivery.receipt {
                    receipt.expect(1);
                }
                let sent = tokio::time::timeout(
                    ACK_TIMEOUT,
                    self.js
                        .publish_with_headers(subject, headers, payload.into()),
                )
                .await;
                match sent {
                    Ok(Ok(ack)) => acks.push((ack, delivery)),
                    Ok(Err(e)) => {
                        failed = Some(format!("publish: {e}"));
                        break;
                    }
                    Err(_) => {
                        failed = Some("publish: no room to send within 5 s".into());
                        break;
                    }
                }
            }
            for (ack, delivery) in acks {
                match tokio::time::timeout_at(deadline, ack).await {
                    Ok(Ok(_)) => delivery.settle(),
                    Ok(Err(e)) => failed = Some(format!("not confirmed by the stream: {e}")),
                    Err(_) => failed = Some("not confirmed by the stream within 5 s".into()),
                }
            }
            match failed {
                None => Ok(()),
                Some(why) => Err(BusError::Unavailable(why)),
            }
        }
        .boxed()
    }

    fn subscribe<'a>(
        &'a self,
        group: &'a str,
        patterns: &'a [String],
    ) -> BoxFuture<'a, Result<EventReceiver, BusError>> {
        async move {
            let filters = nats_subjects(patterns)?;
            let durable = format!("weft-{group}");
            // One subject goes in `filter_subject`, which every JetStream
            // server knows; several need `filter_subjects` (nats-server
            // 2.10), which older servers drop without a word.
            let (filter_subject, filter_subjects) = match filters.as_slice() {
                [one] => (one.clone(), Vec::new()),
                _ => (String::new(), filters.clone()),
            };
            let config = consumer::pull::Config {
                durable_name: Some(durable.clone()),
                filter_subject,
                filter_subjects,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: self.ack_wait,
                // The host counts attempts and dead-letters; the server
                // keeps a message until it is acknowledged.
                max_deliver: -1,
                // Pulled, queued here or being handled: the rest waits in
                // the stream.
                max_ack_pending: (2 * self.queue_capacity).max(64) as i64,
                ..Default::default()
            };
            let consumer: consumer::PullConsumer = self
                .events
                .create_consumer(config)
                .await
                .map_err(|e| BusError::Unavailable(format!("consumer {durable}: {e}")))?;
            let applied = &consumer.cached_info().config;
            if applied.filter_subject.is_empty() && applied.filter_subjects.is_empty() {
                tracing::warn!(
                    consumer = %durable,
                    "NATS: the server ignored the consumer's subjects (several subjects need \
                     nats-server 2.10): it receives every event, and the host acknowledges \
                     the ones {group} does not subscribe to without handling them"
                );
            }
            let messages = pull(&consumer)
                .await
                .map_err(|e| BusError::Unavailable(format!("consumer {durable}: {e}")))?;
            tokio::spawn(watch_backlog(
                consumer.clone(),
                group.to_owned(),
                self.backlogs.clone(),
                self.closed.clone(),
            ));
            let (tx, rx) = async_channel::bounded(self.queue_capacity);
            let pump = Pump {
                durable,
                filters,
                consumer,
                tx,
                side: ConsumerSide::new(self.js.clone(), self.dead_letters.clone()),
                closed: self.closed.clone(),
            };
            tokio::spawn(pump.run(messages));
            Ok(rx)
        }
        .boxed()
    }

    fn observe<'a>(
        &'a self,
        patterns: &'a [String],
    ) -> BoxFuture<'a, Result<EventReceiver, BusError>> {
        async move {
            let (tx, rx) = async_channel::bounded(PULLED);
            for filter in nats_subjects(patterns)? {
                let mut sub = self
                    .client
                    .subscribe(filter)
                    .await
                    .map_err(|e| BusError::Unavailable(format!("subscribe: {e}")))?;
                let tx = tx.clone();
                tokio::spawn(async move {
                    while let Some(message) = sub.next().await {
                        let Ok(event) = envelope::decode(&message.payload, MAX_ENVELOPE) else {
                            continue;
                        };
                        let event = Event {
                            traceparent: header(&message, crate::trace::HEADER),
                            ..event
                        };
                        if tx.send(Delivery::untracked(Arc::new(event))).await.is_err() {
                            break;
                        }
                    }
                });
            }
            self.registered().await?;
            Ok(rx)
        }
        .boxed()
    }

    fn serve<'a>(
        &'a self,
        group: &'a str,
        subjects: &'a [String],
    ) -> BoxFuture<'a, Result<RequestReceiver, BusError>> {
        async move {
            let (tx, rx) = async_channel::bounded(PULLED);
            for served in subjects {
                if !subject::is_valid(served) {
                    return Err(BusError::InvalidSubject(served.clone()));
                }
                let mut sub = self
                    .client
                    .queue_subscribe(served.clone(), group.to_owned())
                    .await
                    .map_err(|e| BusError::Unavailable(format!("subscribe {served}: {e}")))?;
                let (tx, client) = (tx.clone(), self.client.clone());
                tokio::spawn(async move {
                    while let Some(message) = sub.next().await {
                        let Some(reply_to) = message.reply.clone() else {
                            continue; // a publish, not a request
                        };
                        let correlation_id =
                            header(&message, CORRELATION_HEADER).unwrap_or_default();
                        let (reply, answer) = tokio::sync::oneshot::channel();
                        let request = IncomingRequest {
                            subject: message.subject.to_string(),
                            payload: String::from_utf8_lossy(&message.payload).into_owned(),
                            correlation_id,
                            traceparent: header(&message, crate::trace::HEADER),
                            reply,
                        };
                        if tx.send(request).await.is_err() {
                            break;
                        }
                        let client = client.clone();
                        tokio::spawn(async move {
                            let (headers, body) = match answer.await {
                                Ok(Ok(text)) => (HeaderMap::new(), text),
                                Ok(Err(why)) => error_reply(&why),
                                Err(_) => error_reply("the responder failed"),
                            };
                            if let Err(e) = client
                                .publish_with_headers(reply_to, headers, body.into())
                                .await
                            {
                                tracing::warn!("NATS: reply not sent: {e}");
                            }
                        });
                    }
                });
            }
            self.registered().await?;
            Ok(rx)
        }
        .boxed()
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
            let mut headers = HeaderMap::new();
            headers.insert(CORRELATION_HEADER, one_line(&correlation_id).as_str());
            if let Some(trace) = &traceparent {
                headers.insert(crate::trace::HEADER, one_line(trace).as_str());
            }
            let request = async_nats::Request::new()
                .payload(payload.into())
                .headers(headers)
                .timeout(Some(timeout));
            let reply = self
                .client
                .send_request(subject.clone(), request)
                .await
                .map_err(|e| match e.kind() {
                    async_nats::RequestErrorKind::TimedOut => BusError::Timeout,
                    async_nats::RequestErrorKind::NoResponders => BusError::NoResponder(subject),
                    _ => BusError::Unavailable(e.to_string()),
                })?;
            if let Some(why) = header(&reply, ERROR_HEADER) {
                return Err(BusError::Remote(why));
            }
            String::from_utf8(reply.payload.to_vec())
                .map_err(|_| BusError::Remote("the reply is not UTF-8 text".into()))
        }
        .boxed()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    fn resend_window(&self) -> Duration {
        RESEND_WINDOW
    }

    fn reconnects(&self) -> u64 {
        self.reconnects.load(Ordering::Relaxed)
    }

    fn share_revocations<'a>(
        &'a self,
        revocations: &'a [crate::revocations::Revocation],
    ) -> BoxFuture<'a, Result<(), BusError>> {
        super::nats_revocations::share(&self.js, revocations).boxed()
    }

    fn follow_revocations(
        &self,
        window: Duration,
    ) -> BoxFuture<
        '_,
        Result<Option<(Vec<crate::revocations::Revocation>, super::RevocationFeed)>, BusError>,
    > {
        async move {
            super::nats_revocations::follow(&self.js, &self.revocations, window)
                .await
                .map(Some)
        }
        .boxed()
    }

    fn stream_backlog(&self, group: &str) -> Option<u64> {
        let backlogs = self
            .backlogs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        backlogs.get(group).copied()
    }
}

/// Reads a consumer's backlog once a second, for `/health`.
async fn watch_backlog(
    mut consumer: consumer::PullConsumer,
    group: String,
    backlogs: Arc<std::sync::Mutex<std::collections::HashMap<String, u64>>>,
    closed: Arc<AtomicBool>,
) {
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    while !closed.load(Ordering::Relaxed) {
        ticks.tick().await;
        if let Ok(info) = consumer.info().await {
            let waiting = info.num_pending + info.num_ack_pending as u64;
            backlogs
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .insert(group.clone(), waiting);
        }
    }
}

/// A header of `message`, if it has one.
fn header(
    message: &async_nats::Message,
    name: impl async_nats::header::IntoHeaderName,
) -> Option<String> {
    message
        .headers
        .as_ref()
        .and_then(|h| h.get(name))
        .map(|v| v.to_string())
}

fn error_reply(why: &str) -> (HeaderMap, String) {
    let mut headers = HeaderMap::new();
    headers.insert(ERROR_HEADER, one_line(why).as_str());
    (headers, String::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stream the host itself creates: it must pass its own checks.
    fn events_stream() -> stream::Config {
        new_stream("WEFT_EVENTS", "events.>".into(), Duration::from_secs(3600))
    }

    #[test]
    fn a_stream_must_cover_the_subject_and_keep_events_for_every_consumer() {
        assert_eq!(conflict(&events_stream(), "events.>"), None);
        let other = stream::Config {
            subjects: vec!["other.>".into()],
            ..events_stream()
        };
        let why = conflict(&other, "events.>").unwrap_or_default();
        assert!(why.contains("other.>") && why.contains("events.>"), "{why}");
        for (retention, name) in [
            (stream::RetentionPolicy::WorkQueue, "workqueue"),
            (stream::RetentionPolicy::Interest, "interest"),
        ] {
            let config = stream::Config {
                retention,
                ..events_stream()
            };
            let why = conflict(&config, "events.>").unwrap_or_default();
            assert!(why.contains(name) && why.contains("limits"), "{why}");
        }
    }

    #[test]
    fn memory_storage_and_a_short_duplicate_window_are_caveats() {
        assert!(caveats(&events_stream()).is_empty());
        let config = stream::Config {
            storage: stream::StorageType::Memory,
            duplicate_window: Duration::from_secs(2),
            ..events_stream()
        };
        let said = caveats(&config);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(said[0].contains("memory"), "{said:?}");
        assert!(said[1].contains("duplicate window"), "{said:?}");
    }
}
