//! The admin API under `/admin/`, for operators and the `weft` CLI:
//!
//! - `POST /admin/components/<name>/reload` — body: the new `.wasm` bytes,
//!   or empty to read the configured file again;
//! - `POST /admin/components/<name>/rollback`;
//! - `GET /admin/dead-letters[?component=<name>]` — every dead letter;
//! - `POST /admin/dead-letters/<component>:<n>/replay` — one, once more;
//! - `POST /admin/dead-letters/replay[?component=<name>]` — all of them;
//! - `<METHOD> /admin/components/<name>/call/<path>` — the component's own
//!   route `/<path>`, called with the operator as its caller (role
//!   [`OPERATOR_ROLE`]): what `weft iam create-admin` uses.
//!
//! Every call needs the operator's token ([`crate::operator`]): 401
//! without one. An application token, whatever its roles, is not one. The
//! `weft` CLI mints one itself from the operator key in the host's data
//! directory, which only the operator can read.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::bindings::Caller;
use crate::deadletters::{self, ReplayError};
use crate::gateway::{error_response, json_response, unauthorized};
use crate::operator::OPERATOR_ROLE;
use crate::reload::{ReloadError, Swapped};
use crate::runtime::Shared;

/// Largest `.wasm` a reload may upload.
pub const MAX_WASM_BYTES: usize = 64 << 20;

/// Handles `/admin/<rest>`.
pub async fn handle(
    shared: &Arc<Shared>,
    req: Request<Incoming>,
    rest: &str,
) -> Response<Full<Bytes>> {
    let verified = match req.headers().get(hyper::header::AUTHORIZATION) {
        None => Err(crate::auth::TokenError::Malformed),
        Some(value) => value
            .to_str()
            .map_err(|_| crate::auth::TokenError::Malformed)
            .and_then(|v| shared.operator.verify_bearer(v)),
    };
    if let Err(e) = verified {
        tracing::info!("admin API 401: {e}");
        return unauthorized("the admin API needs the operator's token (the weft CLI mints one)");
    }
    if let Some(call) = rest.strip_prefix("components/").and_then(|r| {
        let (name, path) = r.split_once("/call")?;
        (path.is_empty() || path.starts_with('/')).then(|| (name.to_owned(), path.to_owned()))
    }) {
        return operator_call(shared, req, call).await;
    }
    let parts: Vec<&str> = rest.trim_matches('/').split('/').collect();
    let (name, action) = match parts.as_slice() {
        ["components", name, action] => (name.to_string(), *action),
        ["dead-letters", ..] => return dead_letters(shared, &req, &parts[1..]).await,
        _ => {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!(
                    "no admin endpoint at /admin/{}",
                    rest.trim_start_matches('/')
                ),
            )
        }
    };
    if req.method() != hyper::Method::POST {
        return error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "use POST",
        );
    }
    let result = match action {
        "reload" => {
            let body = match Limited::new(req.into_body(), MAX_WASM_BYTES)
                .collect()
                .await
            {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return error_response(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "payload_too_large",
                        &format!("a component of at most {MAX_WASM_BYTES} bytes"),
                    )
                }
            };
            let wasm = (!body.is_empty()).then(|| body.to_vec());
            crate::reload::reload(shared, &name, wasm).await
        }
        "rollback" => crate::reload::rollback(shared, &name).await,
        other => {
            return error_response(
                StatusCode::NOT_FOUND,
                "not_found",
                &format!("no action `{other}`: use reload or rollback"),
            )
        }
    };
    match result {
        Ok(swapped) => json_response(StatusCode::OK, &swapped_json(&swapped)),
        Err(e) => {
            tracing::warn!(component = %name, "admin {action} refused: {e}");
            let (status, code) = match &e {
                ReloadError::UnknownComponent(_) => (StatusCode::NOT_FOUND, "not_found"),
                ReloadError::Refused(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_component"),
                ReloadError::Migration { .. } => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "migration_failed")
                }
                ReloadError::NoPrevious(_) => (StatusCode::CONFLICT, "conflict"),
            };
            error_response(status, code, &e.to_string())
        }
    }
}

/// `/admin/components/<name>/call/<path>`: the component's `/<path>` with
/// the operator as caller. The harness calls it too
/// ([`crate::testing::ComponentTest::operator_send_json`]).
pub(crate) async fn operator_call<B>(
    shared: &Shared,
    req: Request<B>,
    (name, path): (String, String),
) -> Response<Full<Bytes>>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(component) = shared.components.get(&name) else {
        return error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            &format!("no component `{name}`"),
        );
    };
    let caller = Caller {
        user_id: "weft-operator".into(),
        org_id: String::new(),
        roles: vec![OPERATOR_ROLE.into()],
    };
    let path = if path.is_empty() { "/".into() } else { path };
    let correlation = uuid::Uuid::new_v4().to_string();
    tracing::info!(component = %name, %path, method = %req.method(), "operator call");
    crate::gateway::invoke_as(
        shared,
        component,
        req,
        path,
        &correlation,
        Some(caller),
        None,
    )
    .await
}

fn swapped_json(s: &Swapped) -> serde_json::Value {
    json!({
        "component": s.component,
        "from": s.from,
        "to": s.to,
        "tookMs": s.took.as_secs_f64() * 1e3,
        "cached": s.cached,
        "migrationsApplied": s.migrations_applied,
    })
}

/// `/admin/dead-letters…`: list and replay.
async fn dead_letters(
    shared: &Arc<Shared>,
    req: &Request<Incoming>,
    rest: &[&str],
) -> Response<Full<Bytes>> {
    let only = req.uri().query().and_then(|q| {
        q.split('&')
            .find_map(|kv| kv.strip_prefix("component="))
            .map(str::to_owned)
    });
    let chosen: Vec<&Arc<crate::component::LoadedComponent>> = match &only {
        Some(name) => match shared.components.get(name) {
            Some(c) => vec![c],
            None => {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    &format!("no component `{name}`"),
                )
            }
        },
        None => shared.components.values().collect(),
    };
    let method = req.method().clone();
    match (rest, method) {
        ([], hyper::Method::GET) => {
            let mut all = Vec::new();
            for c in chosen {
                match deadletters::list(c) {
                    Ok(list) => all.extend(list),
                    Err(e) => return internal(&e.to_string()),
                }
            }
            json_response(StatusCode::OK, &json!(all))
        }
        (["replay"], hyper::Method::POST) => {
            let (mut replayed, mut failed) = (Vec::new(), Vec::new());
            for c in chosen {
                let list = match deadletters::list(c) {
                    Ok(list) => list,
                    Err(e) => return internal(&e.to_string()),
                };
                for dl in list {
                    let Some((_, n)) = deadletters::parse_id(&dl.id) else {
                        continue;
                    };
                    match deadletters::replay(c, n).await {
                        Ok(()) => replayed.push(dl.id),
                        Err(e) => failed.push(json!({"id": dl.id, "error": e.to_string()})),
                    }
                }
            }
            json_response(
                StatusCode::OK,
                &json!({"replayed": replayed, "failed": failed}),
            )
        }
        ([id, "replay"], hyper::Method::POST) => {
            let found = deadletters::parse_id(id)
                .and_then(|(name, n)| shared.components.get(name).map(|c| (c, n)));
            let Some((component, n)) = found else {
                return error_response(
                    StatusCode::NOT_FOUND,
                    "not_found",
                    &ReplayError::NotFound((*id).to_owned()).to_string(),
                );
            };
            match deadletters::replay(component, n).await {
                Ok(()) => json_response(StatusCode::OK, &json!({"replayed": [id], "failed": []})),
                Err(e @ ReplayError::NotFound(_)) => {
                    error_response(StatusCode::NOT_FOUND, "not_found", &e.to_string())
                }
                Err(e @ ReplayError::Failed(_)) => {
                    error_response(StatusCode::UNPROCESSABLE_ENTITY, "replay_failed", &e.to_string())
                }
                Err(e) => internal(&e.to_string()),
            }
        }
        ([] | ["replay"] | [_, "replay"], _) => error_response(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "GET lists dead letters; POST …/replay replays",
        ),
        _ => error_response(
            StatusCode::NOT_FOUND,
            "not_found",
            "dead letters: GET /admin/dead-letters, POST /admin/dead-letters/<id>/replay or /admin/dead-letters/replay",
        ),
    }
}

fn internal(why: &str) -> Response<Full<Bytes>> {
    tracing::error!("admin API: {why}");
    error_response(
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal",
        "the dead letters could not be read; see the host's log",
    )
}
