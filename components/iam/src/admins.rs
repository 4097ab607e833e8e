//! `POST /admins`: the operator creates an administrator's account.
//!
//! Only the operator reaches it: the host gives the caller role
//! `weft:operator` to calls through `POST /admin/components/iam/call/admins`
//! with an operator token, and never to an application token. Body
//! `{username, email, password, orgId?}` → 201 as `/register`; the username
//! must be listed in config `admins` (else 422: a stored admin role on an
//! unlisted name would give nothing). The account stores `admin` and
//! `org_admin`.

use serde::Deserialize;
use weft_sdk::{config, http, new_id, Request, Response};

use crate::{register, roles};

/// The caller role the host gives the operator's calls.
const OPERATOR: &str = "weft:operator";

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct AdminRequest {
    username: String,
    email: String,
    password: String,
    #[serde(default)]
    org_id: Option<String>,
}

pub fn handle(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    if !caller.has_role(OPERATOR) {
        return Err(http::error(
            403,
            "forbidden",
            "only the host's operator creates administrators (weft iam create-admin)",
        ));
    }
    let input: AdminRequest = http::parse_json(request)?;
    if !roles::is_listed(&input.username, config::get("admins").as_deref()) {
        return Err(http::error(
            422,
            "not_listed",
            "list the username in [components.iam.config] admins first",
        ));
    }
    register::validate_fields(
        &input.username,
        &input.email,
        &input.password,
        input.org_id.as_deref(),
    )
    .map_err(|message| http::validation_failed(&message))?;
    register::create(register::NewAccount {
        username: input.username,
        email: input.email,
        password: &input.password,
        org_id: input.org_id.unwrap_or_else(new_id),
        roles: vec![
            roles::USER.into(),
            roles::ORG_ADMIN.into(),
            roles::ADMIN.into(),
        ],
        invitation: None,
    })
}
