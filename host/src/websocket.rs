//! WebSocket endpoints: the gateway verifies the token (from the
//! `Authorization` header or `?access_token=`) before upgrading — a bad or
//! missing token gets 401 and never a socket — then joins the socket to its
//! component's [`Hub`](crate::hub::Hub) under the caller's user id.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{
    HeaderValue, AUTHORIZATION, CONNECTION, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE,
};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::component::LoadedComponent;
use crate::conns::Slot;
use crate::gateway::{error_response, unauthorized};
use crate::runtime::Shared;

/// Largest frame a client may send (clients only need pings and closes).
const MAX_CLIENT_FRAME: usize = 64 << 10;

/// The caps and timers of WebSockets (`[http]`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Open sockets of one user on one endpoint at most.
    pub max_per_user: usize,
    /// How often the host pings each socket.
    pub ping: Duration,
    /// A socket that sends nothing for this long is closed.
    pub idle: Duration,
}

impl Limits {
    /// The limits `[http]` sets.
    pub fn of(http: &crate::config::HttpConfig) -> Limits {
        Limits {
            max_per_user: http.max_websockets_per_user,
            ping: Duration::from_secs(http.websocket_ping_secs),
            idle: Duration::from_secs(http.websocket_idle_secs),
        }
    }
}

fn query_token(query: Option<&str>) -> Option<String> {
    query?.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k == "access_token").then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push((h * 16 + l) as u8);
                    i += 3;
                }
                _ => {
                    out.push(b'%');
                    i += 1;
                }
            },
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Answers a WebSocket handshake on `component`'s endpoint.
pub fn upgrade(
    shared: &Shared,
    component: &Arc<LoadedComponent>,
    mut req: Request<Incoming>,
) -> Response<Full<Bytes>> {
    let header_token = req
        .headers()
        .get(AUTHORIZATION)
        .map(|v| v.to_str().map(str::to_owned).unwrap_or_default());
    let verified = match (header_token, query_token(req.uri().query())) {
        (Some(header), _) => shared.tokens.verify_bearer(&header),
        (None, Some(token)) => shared.tokens.verify(&token),
        (None, None) => {
            return unauthorized(
                "a WebSocket needs a token: Authorization header or ?access_token=",
            )
        }
    };
    let claims = match verified {
        Ok(claims) => claims,
        Err(e) => {
            tracing::info!(component = component.name(), "WebSocket refused: {e}");
            return unauthorized("invalid or expired token");
        }
    };
    let is_upgrade = req
        .headers()
        .get(UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return error_response(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "not a WebSocket handshake",
        );
    };
    if req.method() != hyper::Method::GET || !is_upgrade {
        return error_response(
            StatusCode::BAD_REQUEST,
            "validation_failed",
            "not a WebSocket handshake",
        );
    }
    let limits = shared.websockets_limits;
    let hub = component.ctx.hub.clone();
    // Taken before the 101, so that the user's sockets never exceed the cap
    // even for a moment.
    let Some((id, queue)) = hub.register(&claims.sub, limits.max_per_user) else {
        tracing::info!(
            component = component.name(),
            user = %claims.sub,
            "WebSocket refused: the user has {} open", limits.max_per_user
        );
        let mut response = error_response(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_requests",
            &format!(
                "at most {} open WebSockets per user; close one first",
                limits.max_per_user
            ),
        );
        response
            .headers_mut()
            .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("5"));
        return response;
    };
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    // The connection's slot stays taken while the socket lives.
    let slot = req.extensions().get::<Arc<Slot>>().cloned();
    let name = component.name().to_owned();
    let tokens = shared.tokens.clone();
    tokio::spawn(async move {
        let _slot = slot;
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(component = %name, "WebSocket upgrade failed: {e}");
                hub.unregister(&claims.sub, id);
                return;
            }
        };
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_FRAME))
            .max_frame_size(Some(MAX_CLIENT_FRAME));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        let expires = Duration::from_secs(claims.exp.saturating_sub(crate::auth::now_secs()));
        let revoked = Revoked {
            tokens,
            claims: claims.clone(),
        };
        serve_socket(socket, queue, limits, expires, revoked).await;
        hub.unregister(&claims.sub, id);
    });
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    response
}

/// Why the host closed a socket, as its close frame says.
fn close(code: CloseCode, reason: &'static str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }))
}

/// What tells an open socket that its token was revoked.
struct Revoked {
    tokens: Arc<crate::auth::TokenService>,
    claims: crate::auth::Claims,
}

/// Forwards the hub's messages from `queue` to the socket until either side
/// ends, the client falls silent for `limits.idle` (it is pinged every
/// `limits.ping`), its token expires after `expires`, or it is revoked.
async fn serve_socket<S>(
    socket: WebSocketStream<S>,
    mut queue: tokio::sync::mpsc::Receiver<String>,
    limits: Limits,
    expires: Duration,
    revoked: Revoked,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (mut sink, mut stream) = socket.split();
    let mut revocations = revoked.tokens.revocations().watch();
    let expiry = tokio::time::sleep(expires);
    tokio::pin!(expiry);
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + limits.ping, limits.ping);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = tokio::time::Instant::now();
    loop {
        tokio::select! {
            message = queue.recv() => match message {
                Some(text) => {
                    if sink.send(Message::text(text)).await.is_err() {
                        break;
                    }
                }
                // Dropped by the hub (stuck, or shutdown): say goodbye.
                None => {
                    let _ = sink.send(close(CloseCode::Away, "closing")).await;
                    break;
                }
            },
            incoming = stream.next() => match incoming {
                // Pings are answered by tungstenite while reading.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => heard = tokio::time::Instant::now(),
            },
            _ = ping.tick() => {
                if heard.elapsed() >= limits.idle {
                    let _ = sink.send(close(CloseCode::Away, "idle")).await;
                    break;
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() {
                    break;
                }
            }
            () = &mut expiry => {
                let _ = sink.send(close(CloseCode::Policy, "token expired")).await;
                break;
            }
            changed = revocations.changed() => {
                if changed.is_err() {
                    let _ = sink.send(close(CloseCode::Away, "closing")).await;
                    break;
                }
                if revoked.tokens.is_revoked(&revoked.claims) {
                    let _ = sink.send(close(CloseCode::Policy, "token revoked")).await;
                    break;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_query_token_is_found_and_decoded() {
        assert_eq!(
            query_token(Some("a=1&access_token=x%2Ey+z")).as_deref(),
            Some("x.y z")
        );
        assert_eq!(
            query_token(Some("access_token=abc")).as_deref(),
            Some("abc")
        );
        assert_eq!(query_token(Some("other=1")), None);
        assert_eq!(query_token(None), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
    }
}
