//! BPM: bank accounts and their transactions, in integer minor units.
//!
//! Routes (below the `/bpm` prefix), all auth required:
//! - `GET /accounts` → the caller's accounts.
//! - `POST /accounts` → 201 a new account; emits `account.created`.
//! - `GET /accounts/{id}` → the caller's account, else 404.
//! - `GET /accounts/{id}/transactions` → its transactions, newest first.
//! - `POST /transactions` → 201 a deposit, withdrawal or transfer; emits
//!   `transaction.completed`. Honours `Idempotency-Key`.
//!
//! Events: on `user.registered`, opens the user's one default savings
//! account and emits `account.created`. Config: `currency` (default USD).

mod accounts;
mod money;
mod schema;
mod transactions;

use weft_sdk::{http, Error, Event, Guest, Request, Response};

struct Bpm;

impl Guest for Bpm {
    fn migrations() -> Vec<String> {
        schema::MIGRATIONS
            .iter()
            .map(|sql| sql.to_string())
            .collect()
    }

    fn on_event(event: Event) -> Result<(), Error> {
        match event.event_type.as_str() {
            "user.registered" => accounts::on_user_registered(&event),
            _ => Ok(()),
        }
    }

    fn on_request(request: Request) -> Response {
        let result = match resolve(&request.method, &request.path) {
            Route::ListAccounts => accounts::list(&request),
            Route::CreateAccount => accounts::create(&request),
            Route::GetAccount(id) => accounts::get(&request, id),
            Route::History(id) => transactions::history(&request, id),
            Route::CreateTransaction => transactions::create(&request),
            Route::MethodNotAllowed(allowed) => Ok(http::method_not_allowed(allowed)),
            Route::NotFound => Ok(http::not_found()),
        };
        result.unwrap_or_else(|response| response)
    }

    /// BPM serves no request-reply subjects.
    fn on_message(subject: String, _payload: String) -> Result<String, Error> {
        Err(Error::NotFound(format!(
            "bpm serves no subject `{subject}`"
        )))
    }

    /// BPM has no timers.
    fn on_timer(name: String) -> Result<(), Error> {
        Err(Error::NotFound(format!("bpm has no timer `{name}`")))
    }
}

/// Where a request goes.
#[derive(Debug, PartialEq)]
enum Route<'a> {
    ListAccounts,
    CreateAccount,
    GetAccount(&'a str),
    History(&'a str),
    CreateTransaction,
    MethodNotAllowed(&'static [&'static str]),
    NotFound,
}

fn resolve<'a>(method: &str, path: &'a str) -> Route<'a> {
    match (method, http::segments(path).as_slice()) {
        ("GET", ["accounts"]) => Route::ListAccounts,
        ("POST", ["accounts"]) => Route::CreateAccount,
        (_, ["accounts"]) => Route::MethodNotAllowed(&["GET", "POST"]),
        ("GET", ["accounts", id]) => Route::GetAccount(id),
        (_, ["accounts", _]) => Route::MethodNotAllowed(&["GET"]),
        ("GET", ["accounts", id, "transactions"]) => Route::History(id),
        (_, ["accounts", _, "transactions"]) => Route::MethodNotAllowed(&["GET"]),
        ("POST", ["transactions"]) => Route::CreateTransaction,
        (_, ["transactions"]) => Route::MethodNotAllowed(&["POST"]),
        _ => Route::NotFound,
    }
}

weft_sdk::export!(Bpm);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes() {
        assert_eq!(resolve("GET", "/accounts"), Route::ListAccounts);
        assert_eq!(resolve("POST", "/accounts"), Route::CreateAccount);
        assert_eq!(resolve("GET", "/accounts/a1"), Route::GetAccount("a1"));
        assert_eq!(
            resolve("GET", "/accounts/a1/transactions"),
            Route::History("a1")
        );
        assert_eq!(resolve("POST", "/transactions"), Route::CreateTransaction);
    }

    #[test]
    fn wrong_methods_and_unknown_paths() {
        assert_eq!(
            resolve("DELETE", "/accounts"),
            Route::MethodNotAllowed(&["GET", "POST"])
        );
        assert_eq!(
            resolve("PUT", "/accounts/a1"),
            Route::MethodNotAllowed(&["GET"])
        );
        assert_eq!(
            resolve("POST", "/accounts/a1/transactions"),
            Route::MethodNotAllowed(&["GET"])
        );
        assert_eq!(
            resolve("GET", "/transactions"),
            Route::MethodNotAllowed(&["POST"])
        );
        assert_eq!(resolve("GET", "/"), Route::NotFound);
        assert_eq!(resolve("GET", "/accounts/a1/other"), Route::NotFound);
        assert_eq!(
            resolve("GET", "/accounts/a1/transactions/t1"),
            Route::NotFound
        );
        assert_eq!(resolve("GET", "/account"), Route::NotFound);
    }
}
