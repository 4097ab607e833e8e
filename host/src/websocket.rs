//! WebSocket endpoints: the gateway verifies the token (from the
//! `Authorization` header or `?access_token=`) before upgrading — a bad or
//! missing token gets 401 and never a socket — then joins the socket to its
//! component's [`Hub`](crate::hub::Hub) under the caller's user id.

use std::sync::Arc;

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
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::component::LoadedComponent;
use crate::gateway::{error_response, unauthorized};
use crate::runtime::Shared;

/// Largest frame a client may send (clients only need pings and closes).
const MAX_CLIENT_FRAME: usize = 64 << 10;

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
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(&mut req);
    let hub = component.ctx.hub.clone();
    let name = component.name().to_owned();
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::info!(component = %name, "WebSocket upgrade failed: {e}");
                return;
            }
        };
        let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default()
            .max_message_size(Some(MAX_CLIENT_FRAME))
            .max_frame_size(Some(MAX_CLIENT_FRAME));
        let socket =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, Some(config))
                .await;
        serve_socket(socket, &hub, &claims.sub).await;
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

/// Forwards the hub's messages for `user` to the socket until either side
/// ends; then leaves the hub.
async fn serve_socket<S>(socket: WebSocketStream<S>, hub: &crate::hub::Hub, user: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let (id, mut queue) = hub.register(user);
    let (mut sink, mut stream) = socket.split();
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
                    let _ = sink.send(Message::Close(None)).await;
                    break;
                }
            },
            incoming = stream.next() => match incoming {
                // Pings are answered by tungstenite while reading.
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => break,
                Some(Ok(_)) => {}
            },
        }
    }
    hub.unregister(user, id);
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
