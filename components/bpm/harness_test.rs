//! bpm's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component bpm`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, UNIX_EPOCH};

use rusqlite::types::Value as Sql;
use serde_json::{json, Value};
use weft_host::bus::Event;
use weft_host::http::{Bytes, Request, StatusCode};
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "bpm",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/bpm.wasm"
        ),
    )
}

#[tokio::test]
async fn it_loads_and_answers_health() {
    let t = component().start().await.unwrap();
    let (status, health) = t.get_json("/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    t.stop().await;
}

// --- helpers -----------------------------------------------------------------

/// The single value `sql` selects.
async fn scalar(t: &ComponentTest, sql: &str) -> Sql {
    let rows = t.rows(sql).await.unwrap();
    assert_eq!(rows.rows.len(), 1, "{sql}: {:?}", rows.rows);
    rows.rows[0][0].clone()
}

async fn count(t: &ComponentTest, sql: &str) -> i64 {
    match scalar(t, sql).await {
        Sql::Integer(n) => n,
        other => panic!("{sql} gave {other:?}"),
    }
}

/// Balances, their last change and the transactions: what a refused
/// request must leave alone.
async fn ledger(t: &ComponentTest) -> Vec<Vec<Sql>> {
    let mut rows = t
        .rows("SELECT id, balance, updated_at FROM accounts ORDER BY seq")
        .await
        .unwrap()
        .rows;
    rows.extend(
        t.rows("SELECT id, amount FROM transactions ORDER BY seq")
            .await
            .unwrap()
            .rows,
    );
    rows
}

/// The ledger now, with the clock moved on after it so that even a write of
/// an unchanged balance shows in `updated_at`.
async fn ledger_before(t: &ComponentTest) -> Vec<Vec<Sql>> {
    let ledger = ledger(t).await;
    t.advance(Duration::from_secs(5));
    ledger
}

/// Opens an account of `kind` for the caller; returns its id.
async fn open(t: &ComponentTest, token: &str, kind: &str) -> String {
    let (status, account) = t
        .send_json(
            "POST",
            "/accounts",
            Some(token),
            Some(&json!({"accountType": kind})),
        )
        .await;
    assert_eq!(status, 201, "{account}");
    account["id"].as_str().unwrap().to_owned()
}

async fn transact(t: &ComponentTest, token: &str, body: Value) -> (StatusCode, Value) {
    t.send_json("POST", "/transactions", Some(token), Some(&body))
        .await
}

async fn deposit(t: &ComponentTest, token: &str, account: &str, amount: i64) -> Value {
    let (status, transaction) = transact(
        t,
        token,
        json!({"type": "deposit", "accountId": account, "amount": amount}),
    )
    .await;
    assert_eq!(status, 201, "{transaction}");
    transaction
}

async fn balance(t: &ComponentTest, token: &str, account: &str) -> i64 {
    let (status, body) = t
        .get_json(&format!("/accounts/{account}"), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    body["balance"].as_i64().unwrap()
}

async fn history(t: &ComponentTest, token: &str, account: &str) -> Vec<Value> {
    let (status, body) = t
        .get_json(&format!("/accounts/{account}/transactions"), Some(token))
        .await;
    assert_eq!(status, 200, "{body}");
    body.as_array().unwrap().clone()
}

/// A POST with an `Idempotency-Key` and a raw JSON body: status, body, and
/// whether the answer says it is a replay.
async fn post_keyed(
    t: &ComponentTest,
    path: &str,
    token: &str,
    key: &str,
    body: &str,
) -> (StatusCode, Value, bool) {
    let request = Request::post(path)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(Bytes::from(body.to_owned()))
        .unwrap();
    let response = t.call(request).await;
    let replayed = response
        .headers()
        .get("idempotent-replayed")
        .is_some_and(|v| v == "true");
    (
        response.status(),
        serde_json::from_slice(response.body()).unwrap_or(Value::Null),
        replayed,
    )
}

fn registered(id: &str, user: &str) -> Event {
    Event {
        id: id.into(),
        event_type: "user.registered".into(),
        source: "iam".into(),
        data: json!({"userId": user, "username": "ada", "email": "ada@example.com", "orgId": "o1"}),
        timestamp: "2026-01-01T00:00:00Z".into(),
        correlation_id: "corr-registration".into(),
        causation_id: None,
        traceparent: None,
    }
}

fn assert_error(status: StatusCode, body: &Value, expected: u16, code: &str) {
    assert_eq!(status, expected, "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
}

// --- user.registered ---------------------------------------------------------

#[tokio::test]
async fn user_registered_opens_one_default_savings_account() {
    let t = component().start().await.unwrap();
    t.event(
        "user.registered",
        json!({"userId": "u1", "username": "ada", "orgId": "o1"}),
    )
    .await
    .unwrap();

    let token = t.token("u1", "o1", &["user"]);
    let (status, accounts) = t.get_json("/accounts", Some(&token)).await;
    assert_eq!(status, 200, "{accounts}");
    let accounts = accounts.as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{accounts:?}");
    let id = accounts[0]["id"].as_str().unwrap();
    assert_eq!(
        accounts[0],
        json!({"id": id, "userId": "u1", "accountType": "savings", "balance": 0,
               "currency": "USD", "createdAt": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(
        t.rows("SELECT owner_org_id, is_default FROM accounts")
            .await
            .unwrap()
            .rows,
        vec![vec![Sql::Text("o1".into()), Sql::Integer(1)]]
    );
}

#[tokio::test]
async fn user_registered_publishes_account_created_in_the_same_correlation() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();

    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    let event = &published[0];
    assert_eq!(event.event_type, "account.created");
    assert_eq!(event.source, "bpm");
    assert_eq!(event.correlation_id, "corr-registration");
    assert_eq!(event.causation_id.as_deref(), Some("evt-1"));
    assert_eq!(event.timestamp, "2026-01-01T00:00:00Z");
    let account_id = scalar(&t, "SELECT id FROM accounts").await;
    assert_eq!(
        event.data,
        json!({"accountId": match account_id { Sql::Text(id) => id, other => panic!("{other:?}") },
               "userId": "u1", "accountType": "savings", "balance": 0})
    );
}

#[tokio::test]
async fn a_redelivered_user_registered_opens_no_second_account() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    // A redelivery is acknowledged, not failed: failing it would only make
    // the bus deliver it again.
    t.deliver(registered("evt-1", "u1")).await.unwrap();

    assert_eq!(count(&t, "SELECT count(*) FROM accounts").await, 1);
    let published = t.published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].event_type, "account.created");
}

#[tokio::test]
async fn a_second_user_registered_with_a_new_id_opens_no_second_account() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    t.deliver(registered("evt-2", "u1")).await.unwrap();

    assert_eq!(count(&t, "SELECT count(*) FROM accounts").await, 1);
    assert_eq!(t.published().len(), 1);
    // Another user is not caught by the one-per-user rule.
    t.deliver(registered("evt-3", "u2")).await.unwrap();
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM accounts WHERE owner_user_id = 'u2' AND is_default = 1"
        )
        .await,
        1
    );
    assert_eq!(t.published().len(), 2);
}

#[tokio::test]
async fn an_account_opened_by_hand_does_not_stand_in_for_the_default_one() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    open(&t, &token, "savings").await;
    t.take_published();

    t.deliver(registered("evt-1", "u1")).await.unwrap();
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM accounts WHERE owner_user_id = 'u1'"
        )
        .await,
        2
    );
    assert_eq!(
        count(&t, "SELECT count(*) FROM accounts WHERE is_default = 1").await,
        1
    );
    assert_eq!(t.take_published().len(), 1);
}

#[tokio::test]
async fn a_user_registered_without_a_user_fails_and_opens_nothing() {
    let t = component().start().await.unwrap();
    for data in [
        json!({"username": "ada"}),
        json!({"userId": ""}),
        json!({"userId": 7}),
    ] {
        let result = t.event("user.registered", data.clone()).await;
        assert!(result.is_err(), "{data} was accepted");
    }
    assert_eq!(count(&t, "SELECT count(*) FROM accounts").await, 0);
    assert!(t.published().is_empty(), "{:?}", t.published());
}

#[tokio::test]
async fn other_events_are_ignored() {
    let t = component().start().await.unwrap();
    t.event(
        "account.created",
        json!({"accountId": "a1", "userId": "u1", "accountType": "savings", "balance": 0}),
    )
    .await
    .unwrap();
    t.event("transaction.completed", json!({"userId": "u1"}))
        .await
        .unwrap();
    assert_eq!(count(&t, "SELECT count(*) FROM accounts").await, 0);
    assert!(t.published().is_empty());
}

// --- accounts ----------------------------------------------------------------

#[tokio::test]
async fn opening_an_account_answers_201_and_publishes_account_created() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let request = Request::post("/accounts")
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .header("x-correlation-id", "corr-open")
        .body(Bytes::from(r#"{"accountType":"checking"}"#))
        .unwrap();
    let response = t.call(request).await;
    assert_eq!(response.status(), 201);
    let account: Value = serde_json::from_slice(response.body()).unwrap();
    let id = account["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(
        account,
        json!({"id": id, "userId": "u1", "accountType": "checking", "balance": 0,
               "currency": "USD", "createdAt": "2026-01-01T00:00:00Z"})
    );

    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].event_type, "account.created");
    assert_eq!(published[0].correlation_id, "corr-open");
    assert_eq!(
        published[0].data,
        json!({"accountId": id, "userId": "u1", "accountType": "checking", "balance": 0})
    );
    // Opened by hand, so not the default: registration may still open that.
    assert_eq!(
        count(&t, "SELECT count(*) FROM accounts WHERE is_default = 0").await,
        1
    );
    let (status, fetched) = t.get_json(&format!("/accounts/{id}"), Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(fetched, account);
}

#[tokio::test]
async fn a_user_sees_only_their_own_accounts() {
    let t = component().start().await.unwrap();
    let ada = t.token("u1", "o1", &["user"]);
    let bob = t.token("u2", "o1", &["user"]);
    let savings = open(&t, &ada, "savings").await;
    deposit(&t, &ada, &savings, 500).await;

    let (status, list) = t.get_json("/accounts", Some(&bob)).await;
    assert_eq!(status, 200);
    assert_eq!(list, json!([]));
    // Someone else's account looks exactly like one that does not exist.
    let (status, body) = t
        .get_json(&format!("/accounts/{savings}"), Some(&bob))
        .await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = t
        .get_json(&format!("/accounts/{savings}/transactions"), Some(&bob))
        .await;
    assert_error(status, &body, 404, "not_found");
    // Even an admin of the same organisation sees only their own.
    let admin = t.token("u3", "o1", &["user", "admin"]);
    let (_, list) = t.get_json("/accounts", Some(&admin)).await;
    assert_eq!(list, json!([]));

    let (_, list) = t.get_json("/accounts", Some(&ada)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], savings.as_str());
}

#[tokio::test]
async fn account_listing_keeps_the_newest_up_to_limit_oldest_first() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let mut ids = Vec::new();
    for kind in ["savings", "checking", "checking"] {
        ids.push(open(&t, &token, kind).await);
        t.advance(Duration::from_secs(60));
    }
    let listed = |body: &Value| -> Vec<String> {
        body.as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect()
    };
    let (status, all) = t.get_json("/accounts", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(listed(&all), ids);
    let (status, newest) = t.get_json("/accounts?limit=2", Some(&token)).await;
    assert_eq!(status, 200);
    assert_eq!(listed(&newest), ids[1..].to_vec());

    for bad in ["0", "1001", "-1", "two"] {
        let (status, body) = t
            .get_json(&format!("/accounts?limit={bad}"), Some(&token))
            .await;
        assert_error(status, &body, 400, "validation_failed");
    }
}

#[tokio::test]
async fn opening_an_account_rejects_bad_bodies_and_stores_nothing() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    for body in [
        r#"{"accountType":"Savings"}"#,
        r#"{"accountType":"brokerage"}"#,
        r#"{}"#,
        r#"{"accountType":"savings","balance":5}"#,
        r#"{"accountType":"#,
        "",
        "[]",
    ] {
        let request = Request::post("/accounts")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Bytes::from(body))
            .unwrap();
        let response = t.call(request).await;
        let answer: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(response.status(), 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed", "{body}");
    }
    assert_eq!(count(&t, "SELECT count(*) FROM accounts").await, 0);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn every_route_needs_a_caller() {
    let t = component().start().await.unwrap();
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    t.take_published();
    let id = match scalar(&t, "SELECT id FROM accounts").await {
        Sql::Text(id) => id,
        other => panic!("{other:?}"),
    };
    let deposit = json!({"type": "deposit", "accountId": id, "amount": 100});
    for (method, path, body) in [
        ("GET", "/accounts".to_owned(), None),
        (
            "POST",
            "/accounts".to_owned(),
            Some(json!({"accountType": "savings"})),
        ),
        ("GET", format!("/accounts/{id}"), None),
        ("GET", format!("/accounts/{id}/transactions"), None),
        ("POST", "/transactions".to_owned(), Some(deposit.clone())),
    ] {
        let (status, answer) = t.send_json(method, &path, None, body.as_ref()).await;
        assert_error(status, &answer, 401, "unauthorized");
    }
    assert_eq!(count(&t, "SELECT count(*) FROM accounts").await, 1);
    assert_eq!(count(&t, "SELECT count(*) FROM transactions").await, 0);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn unknown_accounts_are_404() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, body) = t.get_json("/accounts/no-such-id", Some(&token)).await;
    assert_error(status, &body, 404, "not_found");
    let (status, body) = t
        .get_json("/accounts/no-such-id/transactions", Some(&token))
        .await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn wrong_methods_are_405_with_allow_and_unknown_paths_404() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    for (method, path, allow) in [
        ("DELETE", "/accounts", "GET, POST"),
        ("PUT", "/accounts/a1", "GET"),
        ("POST", "/accounts/a1/transactions", "GET"),
        ("GET", "/transactions", "POST"),
    ] {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .unwrap();
        let response = t.call(request).await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
        let body: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(body["error"]["code"], "method_not_allowed");
    }
    for path in ["/", "/account", "/accounts/a1/other", "/transactions/t1"] {
        let (status, body) = t.get_json(path, Some(&token)).await;
        assert_error(status, &body, 404, "not_found");
    }
}

#[tokio::test]
async fn currency_comes_from_config() {
    let t = component()
        .with(|c| c.config_value("currency", "EUR"))
        .start()
        .await
        .unwrap();
    let token = t.token("u1", "o1", &["user"]);
    t.deliver(registered("evt-1", "u1")).await.unwrap();
    open(&t, &token, "checking").await;
    let (_, accounts) = t.get_json("/accounts", Some(&token)).await;
    let currencies: Vec<&str> = accounts
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["currency"].as_str().unwrap())
        .collect();
    assert_eq!(currencies, ["EUR", "EUR"]);
}

#[tokio::test]
async fn a_configured_currency_is_normalised_and_a_bad_one_falls_back_to_usd() {
    for (configured, expected) in [(" chf ", "CHF"), ("EURO", "USD"), ("", "USD")] {
        let t = component()
            .with(|c| c.config_value("currency", configured))
            .start()
            .await
            .unwrap();
        let token = t.token("u1", "o1", &["user"]);
        let (status, account) = t
            .send_json(
                "POST",
                "/accounts",
                Some(&token),
                Some(&json!({"accountType": "savings"})),
            )
            .await;
        assert_eq!(status, 201, "{account}");
        assert_eq!(account["currency"], expected, "configured {configured:?}");
    }
}

// --- transactions ------------------------------------------------------------

#[tokio::test]
async fn a_deposit_raises_the_balance_and_publishes_transaction_completed() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    t.take_published();

    let transaction = deposit(&t, &token, &account, 1250).await;
    let id = transaction["id"].as_str().unwrap();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    assert_eq!(
        transaction,
        json!({"id": id, "type": "deposit", "accountId": account, "toAccountId": null,
               "amount": 1250, "balanceAfter": 1250, "createdAt": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(balance(&t, &token, &account).await, 1250);
    assert_eq!(
        history(&t, &token, &account).await,
        vec![transaction.clone()]
    );

    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].event_type, "transaction.completed");
    let mut expected = transaction;
    expected["userId"] = json!("u1");
    assert_eq!(published[0].data, expected);
}

#[tokio::test]
async fn a_withdrawal_lowers_the_balance_down_to_zero() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    deposit(&t, &token, &account, 1000).await;

    let (status, first) = transact(
        &t,
        &token,
        json!({"type": "withdrawal", "accountId": account, "amount": 400}),
    )
    .await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["type"], "withdrawal");
    assert_eq!(first["balanceAfter"], 600);
    let (status, all) = transact(
        &t,
        &token,
        json!({"type": "withdrawal", "accountId": account, "amount": 600}),
    )
    .await;
    assert_eq!(status, 201, "{all}");
    assert_eq!(all["balanceAfter"], 0);
    assert_eq!(balance(&t, &token, &account).await, 0);
    let completed: Vec<_> = t
        .published()
        .into_iter()
        .filter(|e| e.event_type == "transaction.completed")
        .map(|e| (e.data["type"].clone(), e.data["amount"].clone()))
        .collect();
    assert_eq!(
        completed,
        [
            (json!("deposit"), json!(1000)),
            (json!("withdrawal"), json!(400)),
            (json!("withdrawal"), json!(600)),
        ]
    );
}

#[tokio::test]
async fn an_overdraft_is_422_insufficient_funds_and_changes_nothing() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    deposit(&t, &token, &account, 100).await;
    t.take_published();
    let before = ledger_before(&t).await;

    let (status, body) = transact(
        &t,
        &token,
        json!({"type": "withdrawal", "accountId": account, "amount": 101}),
    )
    .await;
    assert_error(status, &body, 422, "insufficient_funds");
    assert_eq!(ledger(&t).await, before);
    assert_eq!(balance(&t, &token, &account).await, 100);
    assert!(t.published().is_empty(), "{:?}", t.published());
}

#[tokio::test]
async fn a_transfer_moves_both_balances_and_shows_in_both_histories() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let from = open(&t, &token, "checking").await;
    let to = open(&t, &token, "savings").await;
    deposit(&t, &token, &from, 100).await;
    deposit(&t, &token, &to, 5).await;
    t.take_published();

    let (status, transfer) = transact(
        &t,
        &token,
        json!({"type": "transfer", "accountId": from, "toAccountId": to, "amount": 30}),
    )
    .await;
    assert_eq!(status, 201, "{transfer}");
    assert_eq!(transfer["toAccountId"], to.as_str());
    // The answer shows the sender's balance.
    assert_eq!(transfer["balanceAfter"], 70);
    assert_eq!(balance(&t, &token, &from).await, 70);
    assert_eq!(balance(&t, &token, &to).await, 35);

    // Each history shows the one transfer with that account's own balance.
    let sent = history(&t, &token, &from).await;
    let received = history(&t, &token, &to).await;
    assert_eq!(sent[0], transfer);
    let mut seen_by_receiver = transfer.clone();
    seen_by_receiver["balanceAfter"] = json!(35);
    assert_eq!(received[0], seen_by_receiver);
    assert_eq!(
        count(
            &t,
            "SELECT count(*) FROM transactions WHERE type = 'transfer'"
        )
        .await,
        1
    );

    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].event_type, "transaction.completed");
    assert_eq!(published[0].data["toAccountId"], to.as_str());
    assert_eq!(published[0].data["balanceAfter"], 70);
}

#[tokio::test]
async fn a_transfer_may_go_to_another_users_account_who_sees_only_their_balance() {
    let t = component().start().await.unwrap();
    let ada = t.token("u1", "o1", &["user"]);
    let bob = t.token("u2", "o2", &["user"]);
    let from = open(&t, &ada, "checking").await;
    let to = open(&t, &bob, "savings").await;
    deposit(&t, &ada, &from, 1000).await;
    deposit(&t, &bob, &to, 1).await;

    let (status, transfer) = transact(
        &t,
        &ada,
        json!({"type": "transfer", "accountId": from, "toAccountId": to, "amount": 250}),
    )
    .await;
    assert_eq!(status, 201, "{transfer}");
    assert_eq!(balance(&t, &ada, &from).await, 750);
    assert_eq!(balance(&t, &bob, &to).await, 251);

    let received = history(&t, &bob, &to).await;
    assert_eq!(received.len(), 2);
    assert_eq!(received[0]["id"], transfer["id"]);
    assert_eq!(received[0]["balanceAfter"], 251, "not the sender's 750");
    // The receiver still cannot look at the sender's account.
    let (status, body) = t.get_json(&format!("/accounts/{from}"), Some(&bob)).await;
    assert_error(status, &body, 404, "not_found");
}

#[tokio::test]
async fn an_overdrawn_transfer_moves_neither_balance() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let from = open(&t, &token, "checking").await;
    let to = open(&t, &token, "savings").await;
    deposit(&t, &token, &from, 100).await;
    t.take_published();
    let before = ledger_before(&t).await;

    let (status, body) = transact(
        &t,
        &token,
        json!({"type": "transfer", "accountId": from, "toAccountId": to, "amount": 101}),
    )
    .await;
    assert_error(status, &body, 422, "insufficient_funds");
    assert_eq!(ledger(&t).await, before);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn a_transfer_that_would_overflow_the_receiver_moves_neither_balance() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let from = open(&t, &token, "checking").await;
    let to = open(&t, &token, "savings").await;
    deposit(&t, &token, &from, 100).await;
    deposit(&t, &token, &to, i64::MAX).await;
    t.take_published();
    let before = ledger_before(&t).await;

    // The sender can afford it: only the receiver's side fails, and the
    // sender's debit must not happen alone.
    let (status, body) = transact(
        &t,
        &token,
        json!({"type": "transfer", "accountId": from, "toAccountId": to, "amount": 10}),
    )
    .await;
    assert_error(status, &body, 400, "validation_failed");
    assert_eq!(ledger(&t).await, before);
    assert_eq!(balance(&t, &token, &from).await, 100);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn a_deposit_past_the_largest_balance_is_400_and_changes_nothing() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "savings").await;
    deposit(&t, &token, &account, i64::MAX).await;
    let before = ledger_before(&t).await;

    let (status, body) = transact(
        &t,
        &token,
        json!({"type": "deposit", "accountId": account, "amount": 1}),
    )
    .await;
    assert_error(status, &body, 400, "validation_failed");
    assert_eq!(ledger(&t).await, before);
    assert_eq!(balance(&t, &token, &account).await, i64::MAX);
}

#[tokio::test]
async fn a_transfer_to_an_unknown_account_is_404_and_moves_nothing() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let from = open(&t, &token, "checking").await;
    deposit(&t, &token, &from, 100).await;
    t.take_published();
    let before = ledger_before(&t).await;

    let (status, body) = transact(
        &t,
        &token,
        json!({"type": "transfer", "accountId": from, "toAccountId": "no-such-id", "amount": 10}),
    )
    .await;
    assert_error(status, &body, 404, "not_found");
    assert_eq!(ledger(&t).await, before);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn moving_money_out_of_someone_elses_account_is_404() {
    let t = component().start().await.unwrap();
    let ada = t.token("u1", "o1", &["user"]);
    let bob = t.token("u2", "o1", &["user", "admin"]);
    let adas = open(&t, &ada, "checking").await;
    let bobs = open(&t, &bob, "checking").await;
    deposit(&t, &ada, &adas, 500).await;
    t.take_published();
    let before = ledger_before(&t).await;

    for body in [
        json!({"type": "deposit", "accountId": adas, "amount": 10}),
        json!({"type": "withdrawal", "accountId": adas, "amount": 10}),
        json!({"type": "transfer", "accountId": adas, "toAccountId": bobs, "amount": 10}),
        json!({"type": "deposit", "accountId": "no-such-id", "amount": 10}),
    ] {
        let (status, answer) = transact(&t, &bob, body.clone()).await;
        assert_error(status, &answer, 404, "not_found");
    }
    assert_eq!(ledger(&t).await, before);
    assert_eq!(balance(&t, &ada, &adas).await, 500);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn invalid_transactions_are_400_and_change_nothing() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let a = open(&t, &token, "checking").await;
    let b = open(&t, &token, "savings").await;
    deposit(&t, &token, &a, 100).await;
    t.take_published();
    let before = ledger_before(&t).await;

    let cases: Vec<(String, &str)> = [
        (
            json!({"type": "deposit", "accountId": a, "amount": 0}),
            "amount",
        ),
        (
            json!({"type": "deposit", "accountId": a, "amount": -5}),
            "amount",
        ),
        (
            json!({"type": "deposit", "accountId": a, "amount": 2.5}),
            "amount",
        ),
        (
            json!({"type": "deposit", "accountId": a, "amount": 10.0}),
            "amount",
        ),
        (
            json!({"type": "deposit", "accountId": a, "amount": "100"}),
            "amount",
        ),
        (
            json!({"type": "deposit", "accountId": a, "amount": null}),
            "amount",
        ),
        (
            json!({"type": "deposit", "accountId": a, "amount": true}),
            "amount",
        ),
        (
            json!({"type": "deposit", "accountId": a, "amount": [1]}),
            "amount",
        ),
        (json!({"type": "deposit", "accountId": a}), "amount"),
        (
            json!({"type": "deposit", "accountId": a, "amount": u64::MAX}),
            "at most",
        ),
        (
            json!({"type": "deposit", "accountId": "", "amount": 5}),
            "accountId",
        ),
        (json!({"type": "deposit", "amount": 5}), "accountId"),
        (
            json!({"type": "transfer", "accountId": a, "amount": 5}),
            "toAccountId",
        ),
        (
            json!({"type": "transfer", "accountId": a, "toAccountId": "", "amount": 5}),
            "toAccountId",
        ),
        (
            json!({"type": "transfer", "accountId": a, "toAccountId": a, "amount": 5}),
            "toAccountId",
        ),
        (
            json!({"type": "deposit", "accountId": a, "toAccountId": b, "amount": 5}),
            "toAccountId",
        ),
        (
            json!({"type": "withdrawal", "accountId": a, "toAccountId": b, "amount": 5}),
            "toAccountId",
        ),
        (
            json!({"type": "refund", "accountId": a, "amount": 5}),
            "type",
        ),
        (
            json!({"type": "Deposit", "accountId": a, "amount": 5}),
            "type",
        ),
        (json!({"accountId": a, "amount": 5}), "type"),
        (
            json!({"type": "deposit", "accountId": a, "amount": 5, "memo": "x"}),
            "memo",
        ),
    ]
    .into_iter()
    .map(|(body, expected)| (body.to_string(), expected))
    .chain([
        // Written out: serde_json would print these as other numbers.
        (
            format!(r#"{{"type":"deposit","accountId":"{a}","amount":1e3}}"#),
            "amount",
        ),
        (
            format!(r#"{{"type":"deposit","accountId":"{a}","amount":4.2e1}}"#),
            "amount",
        ),
        (
            format!(r#"{{"type":"deposit","accountId":"{a}","amount":99999999999999999999}}"#),
            "amount",
        ),
        ("{not json".to_owned(), "invalid request body"),
        (String::new(), "JSON object"),
        (
            format!(r#"{{"type":"deposit","accountId":"{a}","amount":5}} trailing"#),
            "trailing",
        ),
    ])
    .collect();
    for (body, expected) in cases {
        let request = Request::post("/transactions")
            .header("authorization", format!("Bearer {token}"))
            .header("content-type", "application/json")
            .body(Bytes::from(body.clone()))
            .unwrap();
        let response = t.call(request).await;
        let answer: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(response.status(), 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed", "{body}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    assert_eq!(ledger(&t).await, before);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn a_transfer_between_currencies_is_400_and_moves_nothing() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let dollars = open(&t, &token, "checking").await;
    let euros = open(&t, &token, "savings").await;
    deposit(&t, &token, &dollars, 100).await;
    // An account opened while the deployment was configured for another
    // currency: the harness fixes config for its lifetime, so the row is
    // changed in place.
    t.rows(&format!(
        "UPDATE accounts SET currency = 'EUR' WHERE id = '{euros}'"
    ))
    .await
    .unwrap();
    assert_eq!(
        scalar(
            &t,
            &format!("SELECT currency FROM accounts WHERE id = '{euros}'")
        )
        .await,
        Sql::Text("EUR".into())
    );
    t.take_published();
    let before = ledger_before(&t).await;

    let (status, body) = transact(
        &t,
        &token,
        json!({"type": "transfer", "accountId": dollars, "toAccountId": euros, "amount": 10}),
    )
    .await;
    assert_error(status, &body, 400, "validation_failed");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("USD to EUR"),
        "{body}"
    );
    assert_eq!(ledger(&t).await, before);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn history_is_newest_first_and_honours_limit() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    let other = open(&t, &token, "savings").await;
    for amount in [10, 20, 30] {
        deposit(&t, &token, &account, amount).await;
        t.advance(Duration::from_secs(1));
    }
    deposit(&t, &token, &other, 99).await;

    let amounts = |list: &[Value]| -> Vec<i64> {
        list.iter()
            .map(|tx| tx["amount"].as_i64().unwrap())
            .collect()
    };
    let all = history(&t, &token, &account).await;
    assert_eq!(amounts(&all), [30, 20, 10], "{all:?}");
    assert_eq!(
        all.iter()
            .map(|tx| tx["balanceAfter"].as_i64().unwrap())
            .collect::<Vec<_>>(),
        [60, 30, 10]
    );
    let (status, newest) = t
        .get_json(
            &format!("/accounts/{account}/transactions?limit=2"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(amounts(newest.as_array().unwrap()), [30, 20]);
    let (status, body) = t
        .get_json(
            &format!("/accounts/{account}/transactions?limit=0"),
            Some(&token),
        )
        .await;
    assert_error(status, &body, 400, "validation_failed");
}

#[tokio::test]
async fn timestamps_come_from_the_fake_clock() {
    let start = UNIX_EPOCH + Duration::from_secs(1_800_000_000); // 2027-01-15T08:00:00Z
    let t = component().clock(start).start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (_, account) = t
        .send_json(
            "POST",
            "/accounts",
            Some(&token),
            Some(&json!({"accountType": "savings"})),
        )
        .await;
    assert_eq!(account["createdAt"], "2027-01-15T08:00:00Z");
    let id = account["id"].as_str().unwrap();

    t.advance(Duration::from_secs(90));
    let transaction = deposit(&t, &token, id, 5).await;
    assert_eq!(transaction["createdAt"], "2027-01-15T08:01:30Z");
    assert_eq!(
        t.rows(&format!(
            "SELECT created_at, updated_at FROM accounts WHERE id = '{id}'"
        ))
        .await
        .unwrap()
        .rows,
        vec![vec![
            Sql::Text("2027-01-15T08:00:00Z".into()),
            Sql::Text("2027-01-15T08:01:30Z".into())
        ]]
    );
    let published = t.take_published();
    assert_eq!(published[1].timestamp, "2027-01-15T08:01:30Z");
    assert_eq!(published[1].data["createdAt"], "2027-01-15T08:01:30Z");
}

#[tokio::test]
async fn ids_come_from_the_hosts_seeded_randomness() {
    let run = |seed: u64| async move {
        let t = component().seed(seed).start().await.unwrap();
        let token = t.token("u1", "o1", &["user"]);
        let account = open(&t, &token, "savings").await;
        let transaction = deposit(&t, &token, &account, 5).await;
        (account, transaction["id"].as_str().unwrap().to_owned())
    };
    let (first, again, other) = (run(7).await, run(7).await, run(8).await);
    assert_eq!(first, again);
    assert_ne!(first.0, other.0);
    assert_ne!(first.0, first.1);
}

fn without_publish_grant() -> ComponentTestBuilder {
    component().with(|mut c| {
        c.grants.publish = Vec::new();
        c
    })
}

#[tokio::test]
async fn an_account_whose_event_cannot_be_published_is_not_opened() {
    let t = without_publish_grant().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let (status, body) = t
        .send_json(
            "POST",
            "/accounts",
            Some(&token),
            Some(&json!({"accountType": "checking"})),
        )
        .await;
    assert_error(status, &body, 500, "internal");
    // Failing the event, with nothing kept, lets the bus deliver it again.
    assert!(t.deliver(registered("evt-1", "u1")).await.is_err());
    assert_eq!(count(&t, "SELECT count(*) FROM accounts").await, 0);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn a_transaction_whose_event_cannot_be_published_is_rolled_back_and_not_remembered() {
    let t = without_publish_grant().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    // Opening one would publish, so the account is stored directly.
    t.rows(
        "INSERT INTO accounts (id, owner_user_id, owner_org_id, created_at, updated_at,
                               account_type, balance, currency)
         VALUES ('acc-1', 'u1', 'o1', '2026-01-01T00:00:00Z', '2026-01-01T00:00:00Z',
                 'checking', 100, 'USD')",
    )
    .await
    .unwrap();
    let before = ledger_before(&t).await;

    let body = json!({"type": "withdrawal", "accountId": "acc-1", "amount": 40}).to_string();
    let (status, answer, _) = post_keyed(&t, "/transactions", &token, "k-1", &body).await;
    assert_error(status, &answer, 500, "internal");
    assert_eq!(ledger(&t).await, before);
    // A 5xx is not kept under its key, so a retry runs afresh.
    assert_eq!(count(&t, "SELECT count(*) FROM idempotency_keys").await, 0);
    assert!(t.published().is_empty());
}

// --- Idempotency-Key ---------------------------------------------------------

#[tokio::test]
async fn a_repeated_idempotency_key_replays_the_first_answer_without_a_second_effect() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    t.take_published();
    let body = json!({"type": "deposit", "accountId": account, "amount": 700}).to_string();

    let (status, first, replayed) = post_keyed(&t, "/transactions", &token, "k-1", &body).await;
    assert_eq!(status, 201, "{first}");
    assert!(!replayed);
    t.advance(Duration::from_secs(30));
    let (status, second, replayed) = post_keyed(&t, "/transactions", &token, "k-1", &body).await;
    assert_eq!(status, 201, "{second}");
    assert!(replayed);
    assert_eq!(second, first);

    assert_eq!(balance(&t, &token, &account).await, 700);
    assert_eq!(count(&t, "SELECT count(*) FROM transactions").await, 1);
    assert_eq!(t.take_published().len(), 1);
}

#[tokio::test]
async fn a_replay_matches_the_json_value_not_its_layout() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    let compact = format!(r#"{{"type":"deposit","accountId":"{account}","amount":700}}"#);
    let spaced =
        format!("{{ \"amount\": 700,\n  \"accountId\": \"{account}\", \"type\": \"deposit\" }}");

    let (_, first, _) = post_keyed(&t, "/transactions", &token, "k-1", &compact).await;
    let (status, second, replayed) = post_keyed(&t, "/transactions", &token, "k-1", &spaced).await;
    assert_eq!(status, 201, "{second}");
    assert!(replayed);
    assert_eq!(second, first);
    assert_eq!(balance(&t, &token, &account).await, 700);
}

#[tokio::test]
async fn the_same_key_with_another_body_is_409_and_changes_nothing() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    let deposit = |amount: i64| {
        json!({"type": "deposit", "accountId": account, "amount": amount}).to_string()
    };
    let (status, _, _) = post_keyed(&t, "/transactions", &token, "k-1", &deposit(700)).await;
    assert_eq!(status, 201);
    t.take_published();
    let before = ledger_before(&t).await;

    let (status, body, replayed) =
        post_keyed(&t, "/transactions", &token, "k-1", &deposit(701)).await;
    assert_error(status, &body, 409, "conflict");
    assert!(!replayed);
    // Another route under the same key is another request too.
    let (status, body, _) = post_keyed(
        &t,
        "/accounts",
        &token,
        "k-1",
        r#"{"accountType":"savings"}"#,
    )
    .await;
    assert_error(status, &body, 409, "conflict");
    assert_eq!(ledger(&t).await, before);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn a_refusal_is_replayed_even_once_it_would_succeed() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    let withdrawal = json!({"type": "withdrawal", "accountId": account, "amount": 300}).to_string();

    let (status, refused, _) = post_keyed(&t, "/transactions", &token, "k-1", &withdrawal).await;
    assert_error(status, &refused, 422, "insufficient_funds");
    deposit(&t, &token, &account, 1000).await;

    let (status, again, replayed) =
        post_keyed(&t, "/transactions", &token, "k-1", &withdrawal).await;
    assert_eq!(status, 422);
    assert!(replayed);
    assert_eq!(again, refused);
    assert_eq!(balance(&t, &token, &account).await, 1000);
    assert_eq!(count(&t, "SELECT count(*) FROM transactions").await, 1);
}

#[tokio::test]
async fn idempotency_keys_are_per_caller() {
    let t = component().start().await.unwrap();
    let ada = t.token("u1", "o1", &["user"]);
    let bob = t.token("u2", "o1", &["user"]);
    let adas = open(&t, &ada, "checking").await;
    let bobs = open(&t, &bob, "checking").await;

    let body =
        |account: &str| json!({"type": "deposit", "accountId": account, "amount": 50}).to_string();
    let (status, first, _) =
        post_keyed(&t, "/transactions", &ada, "shared-key", &body(&adas)).await;
    assert_eq!(status, 201, "{first}");
    let (status, second, replayed) =
        post_keyed(&t, "/transactions", &bob, "shared-key", &body(&bobs)).await;
    assert_eq!(status, 201, "{second}");
    assert!(!replayed);
    assert_ne!(first["id"], second["id"]);
    assert_eq!(balance(&t, &ada, &adas).await, 50);
    assert_eq!(balance(&t, &bob, &bobs).await, 50);
}

#[tokio::test]
async fn idempotency_keys_are_kept_for_seven_days() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    let deposit = |amount: i64| {
        json!({"type": "deposit", "accountId": account, "amount": amount}).to_string()
    };
    let (_, first, _) = post_keyed(&t, "/transactions", &token, "k-1", &deposit(10)).await;

    // The contract asks for at least 24 hours.
    t.advance(Duration::from_secs(25 * 3600));
    let (status, again, replayed) =
        post_keyed(&t, "/transactions", &token, "k-1", &deposit(10)).await;
    assert_eq!(status, 201);
    assert!(replayed);
    assert_eq!(again, first);
    t.advance(Duration::from_secs(7 * 86_400 - 25 * 3600));
    let (status, body, _) = post_keyed(&t, "/transactions", &token, "k-1", &deposit(20)).await;
    assert_error(status, &body, 409, "conflict");

    t.advance(Duration::from_secs(1));
    let (status, fresh, replayed) =
        post_keyed(&t, "/transactions", &token, "k-1", &deposit(20)).await;
    assert_eq!(status, 201, "{fresh}");
    assert!(!replayed);
    assert_eq!(balance(&t, &token, &account).await, 30);
}

#[tokio::test]
async fn opening_an_account_honours_idempotency_key() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let body = r#"{"accountType":"checking"}"#;
    let (status, first, _) = post_keyed(&t, "/accounts", &token, "open-1", body).await;
    assert_eq!(status, 201, "{first}");
    let (status, second, replayed) = post_keyed(&t, "/accounts", &token, "open-1", body).await;
    assert_eq!(status, 201);
    assert!(replayed);
    assert_eq!(second, first);
    assert_eq!(count(&t, "SELECT count(*) FROM accounts").await, 1);
    assert_eq!(t.published().len(), 1);
}

#[tokio::test]
async fn a_malformed_idempotency_key_is_400_and_changes_nothing() {
    let t = component().start().await.unwrap();
    let token = t.token("u1", "o1", &["user"]);
    let account = open(&t, &token, "checking").await;
    t.take_published();
    let body = json!({"type": "deposit", "accountId": account, "amount": 10}).to_string();

    for bad in ["k".repeat(256), String::new(), "   ".to_owned()] {
        let (status, answer, _) = post_keyed(&t, "/transactions", &token, &bad, &body).await;
        assert_error(status, &answer, 400, "validation_failed");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("Idempotency-Key"),
            "{bad:?}: {answer}"
        );
    }
    assert_eq!(count(&t, "SELECT count(*) FROM transactions").await, 0);
    let longest = "k".repeat(255);
    let (status, answer, _) = post_keyed(&t, "/transactions", &token, &longest, &body).await;
    assert_eq!(status, 201, "{answer}");
    assert_eq!(balance(&t, &token, &account).await, 10);
    assert_eq!(count(&t, "SELECT count(*) FROM transactions").await, 1);
}
