//! Revocations across hosts over NATS: a JetStream stream over
//! `weft.revocations` that keeps each message as long as a token it
//! refuses could be valid. A host publishes what it committed, and every
//! host replays the stream at start (before its gateway listens) and then
//! follows it, so a logout or password change on one host is refused by
//! the gateways of all.
//!
//! What arrives is checked like any input from the network: a message
//! holds at most [`MAX_PER_MESSAGE`] revocations of bounded ids, and
//! [`Revocation::sanitized`] bounds its times. A revocation can only make
//! a host refuse tokens, never accept one.

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use futures::StreamExt;

use super::{BusError, RevocationFeed};
use crate::revocations::Revocation;

/// The subject revocations travel on.
pub(super) const SUBJECT: &str = "weft.revocations";
/// Most revocations in one message (one invocation may make 1000).
const MAX_PER_MESSAGE: usize = 200;
/// Largest message taken from the stream.
const MAX_MESSAGE: usize = 256 << 10;
/// How long a starting host waits for the replay before it goes on (and
/// applies the rest as it comes).
const REPLAY_WITHIN: Duration = Duration::from_secs(10);

fn unavailable(what: &str, e: impl std::fmt::Display) -> BusError {
    BusError::Unavailable(format!("revocations: {what}: {e}"))
}

/// Publishes `revocations` and waits for the stream to keep them.
pub(super) async fn share(
    js: &jetstream::Context,
    revocations: &[Revocation],
) -> Result<(), BusError> {
    for chunk in revocations.chunks(MAX_PER_MESSAGE) {
        let payload = serde_json::to_vec(chunk).map_err(|e| unavailable("encode", e))?;
        js.publish(SUBJECT, payload.into())
            .await
            .map_err(|e| unavailable("publish", e))?
            .await
            .map_err(|e| unavailable("publish", e))?;
    }
    Ok(())
}

/// Makes sure stream `name` exists and keeps messages at least `window`;
/// replays it, and follows it from there.
pub(super) async fn follow(
    js: &jetstream::Context,
    name: &str,
    window: Duration,
) -> Result<(Vec<Revocation>, RevocationFeed), BusError> {
    let mut stream = ensure(js, name, window).await?;
    let last = stream
        .info()
        .await
        .map_err(|e| unavailable("stream info", e))?
        .state
        .last_sequence;
    let consumer = stream
        .create_consumer(consumer::pull::OrderedConfig {
            filter_subject: SUBJECT.into(),
            deliver_policy: consumer::DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(|e| unavailable("consumer", e))?;
    let mut messages = consumer
        .messages()
        .await
        .map_err(|e| unavailable("consumer", e))?;

    let mut replayed = Vec::new();
    let replay = async {
        let mut seen = 0;
        while seen < last {
            match messages.next().await {
                Some(Ok(message)) => {
                    seen = message.info().map_or(last, |i| i.stream_sequence);
                    replayed.extend(decode(&message.payload, window));
                }
                Some(Err(e)) => tracing::warn!("revocations: replay: {e}"),
                None => break,
            }
        }
    };
    if last > 0 && tokio::time::timeout(REPLAY_WITHIN, replay).await.is_err() {
        tracing::warn!(
            "revocations: the replay took longer than {REPLAY_WITHIN:?}; the rest is applied as it comes"
        );
    }

    let (tx, rx) = async_channel::bounded(64);
    tokio::spawn(async move {
        while let Some(message) = messages.next().await {
            match message {
                Ok(message) => {
                    let revocations = decode(&message.payload, window);
                    if !revocations.is_empty() && tx.send(revocations).await.is_err() {
                        break;
                    }
                }
                // The ordered consumer makes itself again after a gap or a
                // reconnect; say so and go on.
                Err(e) => tracing::warn!("revocations: {e}"),
            }
        }
    });
    Ok((replayed, rx))
}

/// The revocations in one message; nothing from a message that is not one.
fn decode(payload: &[u8], window: Duration) -> Vec<Revocation> {
    if payload.len() > MAX_MESSAGE {
        tracing::warn!("revocations: a message of {} bytes, ignored", payload.len());
        return Vec::new();
    }
    match serde_json::from_slice::<Vec<Revocation>>(payload) {
        Ok(list) if list.len() <= MAX_PER_MESSAGE => {
            let now = crate::auth::now_secs();
            list.into_iter()
                .filter_map(|r| r.sanitized(now, window.as_secs()))
                .collect()
        }
        Ok(list) => {
            tracing::warn!("revocations: a message of {} entries, ignored", list.len());
            Vec::new()
        }
        Err(e) => {
            tracing::warn!(
                "revocations: a message that is not a list of revocations ({e}), ignored"
            );
            Vec::new()
        }
    }
}

/// The stream, created when missing; one that forgets sooner than
/// `window` is made to keep longer.
async fn ensure(
    js: &jetstream::Context,
    name: &str,
    window: Duration,
) -> Result<stream::Stream, BusError> {
    let wanted = stream::Config {
        name: name.to_owned(),
        subjects: vec![SUBJECT.into()],
        max_age: window,
        storage: stream::StorageType::File,
        ..Default::default()
    };
    match js.get_stream(name).await {
        Ok(mut existing) => {
            let config = existing
                .info()
                .await
                .map_err(|e| unavailable("stream info", e))?
                .config
                .clone();
            if !config.max_age.is_zero() && config.max_age < window {
                js.update_stream(stream::Config {
                    max_age: window,
                    ..config
                })
                .await
                .map_err(|e| unavailable("stream update", e))?;
            }
            Ok(existing)
        }
        Err(_) => js
            .create_stream(wanted)
            .await
            .map_err(|e| unavailable(&format!("cannot create stream `{name}`"), e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_is_taken_only_when_it_is_a_bounded_list() {
        let window = Duration::from_secs(1000);
        let now = crate::auth::now_secs();
        let one = serde_json::json!([{"kind": "session", "sid": "s1", "expires": now + 10}]);
        assert_eq!(decode(one.to_string().as_bytes(), window).len(), 1);
        for bad in [
            b"nope".to_vec(),
            serde_json::json!({"kind": "session"})
                .to_string()
                .into_bytes(),
            serde_json::to_vec(&vec![
                serde_json::json!({"kind": "session", "sid": "s", "expires": now + 10});
                MAX_PER_MESSAGE + 1
            ])
            .unwrap_or_default(),
            vec![b' '; MAX_MESSAGE + 1],
        ] {
            assert!(decode(&bad, window).is_empty());
        }
    }
}
