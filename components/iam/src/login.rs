//! `POST /login`: a password for an access token.
//!
//! Body `{username | email, password}` → 200
//! `{accessToken, tokenType: "Bearer", expiresIn}`. An unknown or deleted
//! user and a wrong password give the same 401 `invalid_credentials`, in
//! about the same time: an unknown user's password is checked against a
//! dummy hash of the same cost. A `username` holding an `@` is looked up as
//! an email (usernames cannot contain one).

use serde::Deserialize;
use weft_sdk::{auth, config, http, log, Error, Request, Response};

use crate::password;
use crate::roles;
use crate::users::{self, Lookup};

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LoginRequest {
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    email: Option<String>,
    password: String,
}

pub fn handle(request: &Request) -> Result<Response, Response> {
    let input: LoginRequest = http::parse_json(request)?;
    let lookup = identify(&input).map_err(|message| http::validation_failed(&message))?;
    let user = users::find_live(lookup)?;

    let authenticated = match &user {
        // Too long to be anyone's: refused without hashing, whoever it names.
        _ if !password::plausible(&input.password) => false,
        Some(user) => password::verify(&input.password, &user.password_hash)
            .map_err(|err| http::internal(format!("user {}'s stored hash: {err}", user.base.id)))?,
        None => password::verify_nobody(&input.password),
    };
    let Some(user) = user.filter(|_| authenticated) else {
        log::info("login refused: invalid credentials");
        return Err(invalid_credentials());
    };

    let roles = roles::for_user(
        &user.username,
        &user.roles,
        config::get("admins").as_deref(),
    );
    let token =
        auth::issue_token(&user.base.id, &user.base.owner.org_id, &roles).map_err(token_failure)?;
    log::info(&format!("user {} logged in", user.base.id));
    Ok(http::json(200, &auth::TokenResponse::from(&token)))
}

/// 401 `invalid_credentials`: the same for every way a login fails.
pub fn invalid_credentials() -> Response {
    http::error(
        401,
        "invalid_credentials",
        "the username, email or password is not right",
    )
}

/// Which user the login names: exactly one of `username` and `email`.
fn identify(input: &LoginRequest) -> Result<Lookup<'_>, String> {
    match (input.username.as_deref(), input.email.as_deref()) {
        (Some(_), Some(_)) => Err("give either username or email, not both".into()),
        (None, None) => Err("give username or email".into()),
        (Some(""), None) => Err("username must not be empty".into()),
        (None, Some("")) => Err("email must not be empty".into()),
        (Some(username), None) if username.contains('@') => Ok(Lookup::Email(username)),
        (Some(username), None) => Ok(Lookup::Username(username)),
        (None, Some(email)) => Ok(Lookup::Email(email)),
    }
}

/// The host refusing to issue a token is the host's configuration (iam not
/// granted `issue_tokens`), not the client's fault: a 500.
fn token_failure(err: Error) -> Response {
    match err {
        Error::Denied(message) => {
            http::internal(format!("the host denies issuing tokens: {message}"))
        }
        other => http::rollback(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(username: Option<&str>, email: Option<&str>) -> LoginRequest {
        LoginRequest {
            username: username.map(String::from),
            email: email.map(String::from),
            password: "secret123".into(),
        }
    }

    #[test]
    fn a_login_names_one_user() {
        assert_eq!(
            identify(&input(Some("ada"), None)),
            Ok(Lookup::Username("ada"))
        );
        assert_eq!(
            identify(&input(None, Some("ada@example.com"))),
            Ok(Lookup::Email("ada@example.com"))
        );
        assert_eq!(
            identify(&input(Some("ada@example.com"), None)),
            Ok(Lookup::Email("ada@example.com"))
        );
        assert!(identify(&input(Some("ada"), Some("ada@example.com"))).is_err());
        assert!(identify(&input(None, None)).is_err());
        assert!(identify(&input(Some(""), None)).is_err());
        assert!(identify(&input(None, Some(""))).is_err());
    }

    #[test]
    fn failures_look_alike() {
        let response = invalid_credentials();
        assert_eq!(response.status, 401);
        let body: serde_json::Value = serde_json::from_slice(&response.body).expect("JSON");
        assert_eq!(body["error"]["code"], "invalid_credentials");
    }

    #[test]
    fn host_refusals_are_server_errors() {
        assert_eq!(token_failure(Error::Denied("no grant".into())).status, 500);
        assert_eq!(token_failure(Error::Conflict("?".into())).status, 500);
        assert_eq!(token_failure(Error::Unavailable("busy".into())).status, 503);
    }

    #[test]
    fn bodies_are_strict() {
        let request = |body: &str| Request {
            method: "POST".into(),
            path: "/login".into(),
            query: String::new(),
            headers: Vec::new(),
            body: body.as_bytes().to_vec(),
            caller: None,
        };
        assert!(http::parse_json::<LoginRequest>(&request(r#"{"username":"ada"}"#)).is_err());
        assert!(http::parse_json::<LoginRequest>(&request(
            r#"{"username":"ada","password":"x","extra":1}"#
        ))
        .is_err());
        let parsed =
            http::parse_json::<LoginRequest>(&request(r#"{"email":"a@b.co","password":"x"}"#));
        assert!(parsed.is_ok_and(|input| input.username.is_none() && input.password == "x"));
    }
}
