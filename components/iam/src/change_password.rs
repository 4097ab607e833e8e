//! `PUT /password` (auth required): body `{currentPassword, newPassword}`
//! → 204. A wrong current password → 401 `invalid_credentials`; a new
//! password that breaks registration's rule (8–1024 characters) → 400. The
//! old password stops working at once, and so does every session and token
//! issued before (revoked at the host on commit). Emits `user.password_changed` `{userId}`.

use serde::{Deserialize, Serialize};
use weft_sdk::{events, http, now_rfc3339, Request, Response};

use crate::login::invalid_credentials;
use crate::password;
use crate::profile::gone;
use crate::users::{self, Lookup};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ChangePassword {
    current_password: String,
    new_password: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PasswordChanged<'a> {
    user_id: &'a str,
}

pub fn handle(request: &Request) -> Result<Response, Response> {
    let caller = http::require_caller(request)?;
    let input: ChangePassword = http::parse_json(request)?;
    password::validate("newPassword", &input.new_password)
        .map_err(|message| http::validation_failed(&message))?;

    let mut user = users::find_live(Lookup::Id(&caller.user_id))?.ok_or_else(gone)?;
    let current_ok = password::plausible(&input.current_password)
        && password::verify(&input.current_password, &user.password_hash)
            .map_err(|err| http::internal(format!("user {}'s stored hash: {err}", user.base.id)))?;
    if !current_ok {
        return Err(invalid_credentials());
    }

    user.password_hash = password::hash(&input.new_password).map_err(http::internal)?;
    user.base.set_metadata("passwordChangedAt", now_rfc3339());
    users::update_password(&user).map_err(http::rollback)?;
    // Every login before this one ends, the caller's own included.
    crate::sessions::end_all(&user.base.id).map_err(http::rollback)?;
    events::publish(
        "user.password_changed",
        &PasswordChanged {
            user_id: &user.base.id,
        },
    )
    .map_err(http::rollback)?;
    Ok(http::no_content())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_strict() {
        let request = |body: &str| Request {
            method: "PUT".into(),
            path: "/password".into(),
            query: String::new(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            caller: None,
        };
        assert!(http::parse_json::<ChangePassword>(&request(
            r#"{"currentPassword":"a","newPassword":"b"}"#
        ))
        .is_ok());
        assert!(
            http::parse_json::<ChangePassword>(&request(r#"{"currentPassword":"a"}"#)).is_err()
        );
        assert!(http::parse_json::<ChangePassword>(&request(
            r#"{"current_password":"a","newPassword":"b"}"#
        ))
        .is_err());
    }

    #[test]
    fn the_event_names_the_user() {
        assert_eq!(
            serde_json::to_string(&PasswordChanged { user_id: "u1" }).expect("serialises"),
            r#"{"userId":"u1"}"#
        );
    }
}
