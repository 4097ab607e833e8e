//! IAM: user accounts, logins and access tokens.
//!
//! Routes (below the `/iam` prefix):
//! - `POST /register` → 201 the new user; emits `user.registered`.
//! - `POST /login` → 200 an access token (issued by the host's `auth`) and
//!   a refresh token: a session (`sessions`).
//! - `POST /token/refresh` → 200 new tokens for a refresh token, spent.
//! - `POST /logout` (auth) → 204; the caller's session ends.
//! - `GET /me` (auth) → 200 the caller's profile.
//! - `PUT /password` (auth) → 204; emits `user.password_changed`.
//! - `GET /.well-known/jwks.json` → 200 the JWK set that verifies tokens.
//! - `POST /invitations` (auth, `org_admin` or `admin`) → 201 a code to join
//!   the caller's org.
//! - `POST /admins` (the operator only) → 201 an administrator's account.
//!
//! Config: `admins`, the usernames reserved for administrators (see
//! `roles`); `invitation_ttl_secs` (default 7 days); `refresh_ttl_secs`
//! (default 30 days).

mod admins;
mod change_password;
mod invitations;
mod login;
mod password;
mod profile;
mod register;
mod roles;
mod secrets;
mod sessions;
mod settings;
mod users;

use weft_sdk::{auth, http, Error, Event, Guest, Request, Response};

struct Iam;

impl Guest for Iam {
    fn migrations() -> Vec<String> {
        users::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    /// IAM subscribes to no events.
    fn on_event(_event: Event) -> Result<(), Error> {
        Ok(())
    }

    fn on_request(request: Request) -> Response {
        let result = match resolve(&request.method, &request.path) {
            Route::Register => register::handle(&request),
            Route::Login => login::handle(&request),
            Route::Refresh => sessions::refresh(&request),
            Route::Logout => sessions::logout(&request),
            Route::Me => profile::handle(&request),
            Route::Password => change_password::handle(&request),
            Route::Jwks => Ok(jwks()),
            Route::Invitations => invitations::handle(&request),
            Route::Admins => admins::handle(&request),
            Route::MethodNotAllowed(allowed) => Ok(http::method_not_allowed(allowed)),
            Route::NotFound => Ok(http::not_found()),
        };
        result.unwrap_or_else(|response| response)
    }

    /// IAM serves no request-reply subjects.
    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!(
            "iam serves no subject `{subject}`"
        )))
    }

    /// IAM has no timers.
    fn on_timer(name: String) -> Result<(), Error> {
        Err(Error::NotFound(format!("iam has no timer `{name}`")))
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq)]
enum Route {
    Register,
    Login,
    Refresh,
    Logout,
    Me,
    Password,
    Jwks,
    Invitations,
    Admins,
    MethodNotAllowed(&'static [&'static str]),
    NotFound,
}

const JWKS_PATH: &str = "/.well-known/jwks.json";

fn resolve(method: &str, path: &str) -> Route {
    match (method, path) {
        ("POST", "/register") => Route::Register,
        ("POST", "/login") => Route::Login,
        ("POST", "/token/refresh") => Route::Refresh,
        ("POST", "/logout") => Route::Logout,
        ("GET", "/me") => Route::Me,
        ("PUT", "/password") => Route::Password,
        ("GET", JWKS_PATH) => Route::Jwks,
        ("POST", "/invitations") => Route::Invitations,
        ("POST", "/admins") => Route::Admins,
        (_, "/register" | "/login" | "/token/refresh" | "/logout" | "/invitations" | "/admins") => {
            Route::MethodNotAllowed(&["POST"])
        }
        (_, "/me" | JWKS_PATH) => Route::MethodNotAllowed(&["GET"]),
        (_, "/password") => Route::MethodNotAllowed(&["PUT"]),
        _ => Route::NotFound,
    }
}

/// The host's JWK set, as it gives it; public, cacheable for a while.
fn jwks() -> Response {
    Response {
        status: 200,
        headers: vec![
            ("content-type".into(), "application/json".into()),
            ("cache-control".into(), "public, max-age=300".into()),
        ],
        body: auth::jwks().into_bytes(),
    }
}

weft_sdk::export!(Iam);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(resolve("POST", "/register"), Route::Register);
        assert_eq!(resolve("POST", "/login"), Route::Login);
        assert_eq!(resolve("GET", "/me"), Route::Me);
        assert_eq!(resolve("PUT", "/password"), Route::Password);
        assert_eq!(resolve("GET", "/.well-known/jwks.json"), Route::Jwks);
        assert_eq!(resolve("POST", "/invitations"), Route::Invitations);
        assert_eq!(resolve("POST", "/admins"), Route::Admins);
        assert_eq!(resolve("POST", "/token/refresh"), Route::Refresh);
        assert_eq!(resolve("POST", "/logout"), Route::Logout);
        assert_eq!(
            resolve("GET", "/logout"),
            Route::MethodNotAllowed(&["POST"])
        );
        assert_eq!(
            resolve("GET", "/admins"),
            Route::MethodNotAllowed(&["POST"])
        );
        assert_eq!(resolve("GET", "/login"), Route::MethodNotAllowed(&["POST"]));
        assert_eq!(
            resolve("POST", "/password"),
            Route::MethodNotAllowed(&["PUT"])
        );
        assert_eq!(resolve("DELETE", "/me"), Route::MethodNotAllowed(&["GET"]));
        assert_eq!(resolve("GET", "/nope"), Route::NotFound);
        assert_eq!(resolve("GET", "/me/"), Route::NotFound);
    }
}
