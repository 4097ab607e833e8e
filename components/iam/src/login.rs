//! `POST /login`: a password for an access token.
//!
//! Body `{username | email, password}` → 200
//! `{accessToken, tokenType: "Bearer", expiresIn, refreshToken}` (a new
//! session, see `sessions`). An unknown or deleted
//! user and a wrong password give the same 401 `invalid_credentials`, in
//! about the same time: an unknown user's password is checked against a
//! dummy hash of the same cost. A `username` holding an `@` is looked up as
//! an email (usernames cannot contain one).
//!
//! Attempts are limited per account and per client address (config
//! `login_attempts_per_account`, default 5, `login_attempts_per_address`,
//! default 20, per `login_window_secs`, default 900): one past the limit
//! is 429 `too_many_requests` with `Retry-After`, before any password is
//! hashed. An attempt is taken before the hash is checked, so concurrent
//! guesses count, and given back when the password was right.

use serde::Deserialize;
use weft_sdk::{http, log, throttle, Error, Request, Response};

use crate::password;
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
    // Read without the writer lease: the hash check below takes tens of
    // milliseconds and must not hold up the writes of other requests.
    let user = users::find_live_committed(lookup)?;
    let limits = Limits::configured();
    let account = match (&user, lookup) {
        (Some(user), _) => format!("user:{}", user.base.id),
        (None, Lookup::Username(name) | Lookup::Email(name) | Lookup::Id(name)) => {
            format!("name:{}", name.to_lowercase())
        }
    };
    let address = throttle::client_address().map(|a| format!("address:{a}"));
    throttle::attempt(&account, limits.per_account, limits.window_secs).map_err(refused)?;
    if let Some(address) = &address {
        if let Err(wait) = throttle::attempt(address, limits.per_address, limits.window_secs) {
            throttle::give_back(&account);
            return Err(refused(wait));
        }
    }

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

    throttle::give_back(&account);
    if let Some(address) = &address {
        throttle::give_back(address);
    }
    log::info(&format!("user {} logged in", user.base.id));
    crate::sessions::start(&user)
}

fn refused(wait_secs: u32) -> Response {
    log::warn("login refused: too many attempts");
    http::too_many_requests(wait_secs)
}

/// The attempt limits in force.
struct Limits {
    per_account: u32,
    per_address: u32,
    window_secs: u32,
}

impl Limits {
    fn configured() -> Limits {
        use crate::settings::positive;
        Limits {
            per_account: positive("login_attempts_per_account", 5),
            per_address: positive("login_attempts_per_address", 20),
            window_secs: positive("login_window_secs", 900),
        }
    }
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
pub fn token_failure(err: Error) -> Response {
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
