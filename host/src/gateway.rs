//! The HTTP gateway: routes `/<prefix>/…` to a component, answers `/health`
//! itself, caps bodies, propagates `X-Correlation-Id`, and turns a failed
//! invocation into the contract's error body while it keeps serving.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, CONTENT_LENGTH, CONTENT_TYPE};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::bindings::{Caller, HttpRequest};
use crate::component::{InvokeError, LoadedComponent};
use crate::conns::Slots;
use crate::health;
use crate::runtime::{Shared, DRAIN_TIMEOUT};

/// The header that carries the correlation id.
pub const CORRELATION_HEADER: &str = "x-correlation-id";

type Body = Full<Bytes>;

/// Accepts connections until `stop` turns true, then lets open ones finish.
/// Sheds slow and greedy clients as `[http]` says: a cap on connections in
/// all and per client address, a time limit for each request's head (and
/// for the wait for the next one), a cap on the head's size.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    http: crate::config::HttpConfig,
    mut stop: watch::Receiver<bool>,
) {
    let mut open = tokio::task::JoinSet::new();
    let slots = Slots::new(http.max_connections, http.max_connections_per_client);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_millis(http.header_timeout_ms))
        .max_header_size(http.max_header_bytes)
        // The read buffer holds a request's head while it arrives: capped
        // at the head's cap, a stream of header bytes costs no more.
        .max_buf_size(http.max_header_bytes.max(crate::config::MIN_HEADER_BYTES));
    loop {
        let Some(permit) = slots.free().await else {
            break;
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off, go on.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(slot) = slots.take(permit, peer.ip()) else {
            // Not worth a task: the answer fits the socket's send buffer.
            let _ = stream.try_write(&crate::conns::TOO_MANY_FROM_CLIENT);
            tracing::debug!(client = %peer.ip(), "connection refused: too many from this address");
            continue;
        };
        let slot = Arc::new(slot);
        let _ = stream.set_nodelay(true);
        let shared = shared.clone();
        let held = slot.clone();
        let service = service_fn(move |mut req: Request<Incoming>| {
            let shared = shared.clone();
            // A WebSocket keeps its connection's slot (see `websocket`).
            req.extensions_mut().insert(held.clone());
            req.extensions_mut().insert(ClientAddr(peer.ip()));
            async move { Ok::<_, Infallible>(handle(&shared, req).await) }
        });
        let conn = builder
            .serve_connection(TokioIo::new(stream), service)
            .with_upgrades();
        let mut stopping = stop.clone();
        open.spawn(async move {
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                () = stopped(&mut stopping) => {
                    // Finish the request in progress, then close.
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
            drop(slot);
        });
        while open.try_join_next().is_some() {}
    }
    drop(listener);
    let drain = async { while open.join_next().await.is_some() {} };
    if tokio::time::timeout(DRAIN_TIMEOUT, drain).await.is_err() {
        tracing::warn!("shutdown: gave up waiting for open HTTP connections");
    }
}

/// Resolves once `stop` turns true (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            return;
        }
    }
}

/// The address of the client a request came from (the socket's peer: a
/// proxy in front is the client, see README "Auth").
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::IpAddr);

/// A response with the contract's error body.
pub fn error_response(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({"error": {"code": code, "message": message}});
    json_response(status, &body)
}

/// 401 with the contract's body and a `WWW-Authenticate` challenge.
pub fn unauthorized(message: &str) -> Response<Body> {
    let mut response = error_response(StatusCode::UNAUTHORIZED, "unauthorized", message);
    response.headers_mut().insert(
        hyper::header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer"),
    );
    response
}

/// A JSON response.
pub fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A correlation id from the client if it is sane, else a fresh one.
fn correlation_id<B>(req: &Request<B>) -> String {
    req.headers()
        .get(CORRELATION_HEADER)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string())
}

/// Handles one request; never fails (errors become error responses).
pub async fn handle(shared: &Arc<Shared>, req: Request<Incoming>) -> Response<Body> {
    let correlation = correlation_id(&req);
    let mut response = route(shared, req, &correlation).await;
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

async fn route(shared: &Arc<Shared>, req: Request<Incoming>, correlation: &str) -> Response<Body> {
    let path = req.uri().path().to_owned();
    if path == "/health" {
        return json_response(StatusCode::OK, &health::overall(shared));
    }
    if let Some(rest) = path.strip_prefix("/admin/") {
        let rest = rest.to_owned();
        return crate::admin::handle(shared, req, &rest).await;
    }
    if let Some(component) = shared.websockets.get(&path) {
        return crate::websocket::upgrade(shared, component, req);
    }
    to_component(shared, req, &path, correlation).await
}

/// Serves one request inside the process, with no socket: what
/// [`crate::Host::call`] does. The same routing, guard, body cap, health
/// answers and error bodies as over HTTP; no WebSocket upgrades and no
/// admin API (an embedding program has [`crate::Host::reload`]).
pub async fn handle_in_process(shared: &Shared, req: Request<Full<Bytes>>) -> Response<Body> {
    let correlation = correlation_id(&req);
    let path = req.uri().path().to_owned();
    let mut response = if path == "/health" {
        json_response(StatusCode::OK, &health::overall(shared))
    } else {
        to_component(shared, req, &path, &correlation).await
    };
    if let Ok(value) = HeaderValue::from_str(&correlation) {
        response.headers_mut().insert(CORRELATION_HEADER, value);
    }
    response
}

/// Routes `/<prefix>/<rest>` to the component mounted at `prefix`.
async fn to_component<B>(
    shared: &Shared,
    req: Request<B>,
    path: &str,
    correlation: &str,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let trimmed = path.trim_start_matches('/');
    let (prefix, rest) = match trimmed.find('/') {
        Some(i) => (&trimmed[..i], &trimmed[i..]),
        None => (trimmed, "/"),
    };
    let Some(component) = shared.routes.get(prefix) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no service at {path}"),
        );
    };
    if rest == "/health" || rest == "/health/" {
        return json_response(StatusCode::OK, &health::component(component));
    }
    let rest = rest.to_owned();
    invoke(shared, component, req, rest, correlation).await
}

async fn invoke<B>(
    shared: &Shared,
    component: &LoadedComponent,
    req: Request<B>,
    path: String,
    correlation: &str,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = body_cap(shared, component);
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("request body larger than {max} bytes"),
        )
    };
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > max as u64) {
        return too_large();
    }
    // The guard: a request that carries a token reaches the component only
    // with that token verified; without one, the component decides.
    let caller = match req.headers().get(hyper::header::AUTHORIZATION) {
        None => None,
        Some(value) => {
            let verified = value
                .to_str()
                .map_err(|_| crate::auth::TokenError::Malformed)
                .and_then(|v| shared.tokens.verify_bearer(v));
            match verified {
                Ok(claims) => Some((
                    Caller {
                        user_id: claims.sub,
                        org_id: claims.org,
                        roles: claims.roles,
                    },
                    claims.sid,
                )),
                Err(e) => {
                    tracing::info!(
                        component = component.name(),
                        correlation_id = correlation,
                        "401: {e}"
                    );
                    return unauthorized("invalid or expired token");
                }
            }
        }
    };
    let (caller, session) = caller.unzip();
    invoke_as(
        shared,
        component,
        req,
        path,
        correlation,
        caller,
        session.flatten(),
    )
    .await
}

/// The largest body `component` gets: the gateway's cap or its own.
pub(crate) fn body_cap(shared: &Shared, component: &LoadedComponent) -> usize {
    shared.max_body_bytes.min(component.limits().max_body_bytes)
}

/// Runs `component` for `req` on behalf of `caller` (verified already, or
/// the operator through the admin API), its body capped in size
/// ([`body_cap`]) and in time (`http.body_timeout_ms`).
pub(crate) async fn invoke_as<B>(
    shared: &Shared,
    component: &LoadedComponent,
    req: Request<B>,
    path: String,
    correlation: &str,
    caller: Option<Caller>,
    session: Option<String>,
) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let max = body_cap(shared, component);
    let too_large = || {
        error_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            &format!("request body larger than {max} bytes"),
        )
    };
    let (parts, body) = req.into_parts();
    let client = parts.extensions.get::<ClientAddr>().map(|a| a.0);
    let collected = tokio::time::timeout(shared.body_timeout, Limited::new(body, max).collect());
    let Ok(collected) = collected.await else {
        return error_response(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            &format!(
                "the request body did not arrive within {} ms",
                shared.body_timeout.as_millis()
            ),
        );
    };
    let body = match collected {
        Ok(collected) => collected.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return too_large()
        }
        Err(e) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "validation_failed",
                &format!("could not read the request body: {e}"),
            )
        }
    };
    let mut headers: Vec<(String, String)> = parts
        .headers
        .iter()
        // The component gets the verified caller, never the raw token.
        .filter(|(k, _)| *k != hyper::header::AUTHORIZATION)
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect();
    if !headers.iter().any(|(k, _)| k == CORRELATION_HEADER) {
        headers.push((CORRELATION_HEADER.to_owned(), correlation.to_owned()));
    }
    let traceparent = parts
        .headers
        .get(crate::trace::HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let request = HttpRequest {
        method: parts.method.as_str().to_owned(),
        path,
        query: parts.uri.query().unwrap_or("").to_owned(),
        headers,
        body: body.to_vec(),
        caller,
    };
    match component
        .handle_http(
            request,
            correlation.to_owned(),
            traceparent,
            session,
            client,
        )
        .await
    {
        Ok(answer) | Err(InvokeError::ServerError(answer)) => guest_response(answer),
        Err(e) => {
            tracing::error!(
                component = component.name(),
                correlation_id = correlation,
                "request failed: {e}"
            );
            failure_response(&e)
        }
    }
}

/// The contract's answer to a failed invocation: what kind of failure, in
/// words a client can use, and none of the component's internals.
fn failure_response(e: &InvokeError) -> Response<Body> {
    let message = match e {
        InvokeError::Busy(ms) => {
            let mut response = error_response(
                StatusCode::SERVICE_UNAVAILABLE,
                "service_busy",
                &format!("the service had no free slot for {ms} ms; retry later"),
            );
            response
                .headers_mut()
                .insert(hyper::header::RETRY_AFTER, HeaderValue::from_static("1"));
            return response;
        }
        InvokeError::Timeout(ms) => format!("the service did not answer within its {ms} ms limit"),
        InvokeError::LimitExceeded(hit) => format!("the service stopped: {hit}"),
        _ => "the service failed to handle the request".to_owned(),
    };
    error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal", &message)
}

fn guest_response(answer: crate::bindings::HttpResponse) -> Response<Body> {
    let Ok(status) = StatusCode::from_u16(answer.status) else {
        return error_response(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "the service answered with an invalid status",
        );
    };
    let mut response = Response::new(Full::new(Bytes::from(answer.body)));
    *response.status_mut() = status;
    for (name, value) in answer.headers {
        let (Ok(name), Ok(value)) = (
            hyper::header::HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) else {
            continue;
        };
        // The gateway owns framing and correlation.
        if name == CONTENT_LENGTH
            || name.as_str() == CORRELATION_HEADER
            || name == hyper::header::TRANSFER_ENCODING
        {
            continue;
        }
        response.headers_mut().append(name, value);
    }
    response
}
