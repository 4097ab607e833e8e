//! The admin API under `/admin/`, for operators and the `weft` CLI:
//!
//! - `POST /admin/components/<name>/reload` — body: the new `.wasm` bytes,
//!   or empty to read the configured file again;
//! - `POST /admin/components/<name>/rollback`;
//! - `GET /admin/dead-letters[?component=<name>]` — every dead letter;
//! - `POST /admin/dead-letters/<component>:<n>/replay` — one, once more;
//! - `POST /admin/dead-letters/replay[?component=<name>]` — all of them.
//!
//! Every call needs a bearer token with the `admin` role (401 without a
//! valid token, 403 without the role). The `weft` CLI mints one itself from
//! the host's signing keys, which only someone with access to the host's
//! data directory has.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use serde_json::json;

use crate::deadletters::{self, ReplayError};
use crate::gateway::{error_response, json_response, unauthorized};
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
    let roles = match req.headers().get(hyper::header::AUTHORIZATION) {
        None => return unauthorized("the admin API needs an admin token"),
        Some(value) => match value
            .to_str()
            .map_err(|_| crate::auth::TokenError::Malformed)
            .and_then(|v| shared.tokens.verify_bearer(v))
        {
            Ok(claims) => claims.roles,
            Err(e) => {
                tracing::info!("admin API 401: {e}");
                return unauthorized("invalid or expired token");
            }
        },
    };
    if !roles.iter().any(|r| r == "admin") {
        return error_response(
            StatusCode::FORBIDDEN,
            "forbidden",
            "the admin role is required",
        );
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
