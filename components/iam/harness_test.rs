//! iam's tests through the host's component harness (`weft_host::testing`):
//! the built component in a host of its own, a temporary database and a
//! capturing bus. Run with `just test-component iam`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use rusqlite::types::Value as Sql;
use serde_json::{json, Value};
use weft_host::http::{Bytes, Request, StatusCode};
use weft_host::testing::{ComponentTest, ComponentTestBuilder};

fn component() -> ComponentTestBuilder {
    ComponentTest::from_file(
        "iam",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../components/target/wasm32-wasip2/release/iam.wasm"
        ),
    )
}

const PASSWORD: &str = "correct horse battery";

fn registration(username: &str, email: &str) -> Value {
    json!({"username": username, "email": email, "password": PASSWORD})
}

/// Registers `username` (email `<username>@example.com`); the 201 body.
async fn register(t: &ComponentTest, username: &str) -> Value {
    let body = registration(username, &format!("{username}@example.com"));
    let (status, user) = t.send_json("POST", "/register", None, Some(&body)).await;
    assert_eq!(status, 201, "{user}");
    user
}

async fn login(t: &ComponentTest, body: Value) -> (StatusCode, Value) {
    t.send_json("POST", "/login", None, Some(&body)).await
}

/// Logs `username` in with `password`; the access token.
async fn token_of(t: &ComponentTest, username: &str, password: &str) -> String {
    let (status, body) = login(t, json!({"username": username, "password": password})).await;
    assert_eq!(status, 200, "{body}");
    body["accessToken"].as_str().unwrap().to_owned()
}

/// Part `part` of a JWT (0 the header, 1 the claims), decoded unverified.
fn jwt_part(token: &str, part: usize) -> Value {
    let segment = token.split('.').nth(part).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(segment).unwrap()).unwrap()
}

fn claims(token: &str) -> Value {
    jwt_part(token, 1)
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn error_message(body: &Value) -> &str {
    body["error"]["message"].as_str().unwrap_or_default()
}

fn text(value: &Sql) -> &str {
    match value {
        Sql::Text(text) => text,
        other => panic!("not text: {other:?}"),
    }
}

async fn count_users(t: &ComponentTest) -> usize {
    t.rows("SELECT id FROM users").await.unwrap().rows.len()
}

async fn change_password(
    t: &ComponentTest,
    token: Option<&str>,
    current: &str,
    new: &str,
) -> (StatusCode, Value) {
    let body = json!({"currentPassword": current, "newPassword": new});
    t.send_json("PUT", "/password", token, Some(&body)).await
}

#[tokio::test]
async fn it_loads_and_answers_health() {
    let t = component().start().await.unwrap();
    let (status, health) = t.get_json("/health", None).await;
    assert_eq!(status, 200, "{health}");
    assert_eq!(health["status"], "ok");
    t.stop().await;
}

// --- register ---------------------------------------------------------

#[tokio::test]
async fn register_answers_201_with_the_new_user() {
    let t = component().start().await.unwrap();
    let body = registration("ada", "Ada@Example.com");
    let (status, user) = t.send_json("POST", "/register", None, Some(&body)).await;
    assert_eq!(status, 201, "{user}");

    let id = user["id"].as_str().unwrap();
    let org = user["orgId"].as_str().unwrap();
    assert_eq!(
        user,
        json!({"id": id, "username": "ada", "email": "Ada@Example.com", "orgId": org,
               "createdAt": "2026-01-01T00:00:00Z"})
    );
    assert_eq!(uuid::Uuid::parse_str(id).unwrap().get_version_num(), 7);
    // Without an orgId the user gets an organisation of their own, not
    // their user id reused.
    assert!(uuid::Uuid::parse_str(org).is_ok(), "{org}");
    assert_ne!(org, id);
}

#[tokio::test]
async fn register_publishes_user_registered() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;

    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    let event = &published[0];
    assert_eq!(event.event_type, "user.registered");
    assert_eq!(event.source, "iam");
    assert_eq!(event.timestamp, "2026-01-01T00:00:00Z");
    assert_eq!(event.causation_id, None);
    assert_eq!(
        event.data,
        json!({"userId": user["id"], "username": "ada", "email": "ada@example.com",
               "orgId": user["orgId"]})
    );
}

#[tokio::test]
async fn the_registered_event_carries_the_requests_correlation_id() {
    let t = component().start().await.unwrap();
    let body = registration("ada", "ada@example.com").to_string();
    let request = Request::post("/register")
        .header("content-type", "application/json")
        .header("x-correlation-id", "signup-42")
        .body(Bytes::from(body))
        .unwrap();
    let response = t.call(request).await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["x-correlation-id"], "signup-42");
    assert_eq!(t.published()[0].correlation_id, "signup-42");
}

#[tokio::test]
async fn register_stores_a_hash_never_the_password() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;

    let rows = t
        .rows("SELECT id, owner_user_id, owner_org_id, username, email, password_hash, created_at, deleted_at FROM users")
        .await
        .unwrap();
    assert_eq!(rows.rows.len(), 1);
    let row = &rows.rows[0];
    assert_eq!(text(&row[0]), user["id"]);
    assert_eq!(text(&row[1]), user["id"], "a user owns their own account");
    assert_eq!(text(&row[2]), user["orgId"]);
    assert_eq!(text(&row[3]), "ada");
    assert_eq!(text(&row[4]), "ada@example.com");
    let hash = text(&row[5]);
    assert!(hash.starts_with("$argon2id$v=19$"), "{hash}");
    assert!(!hash.contains(PASSWORD));
    assert_eq!(text(&row[6]), "2026-01-01T00:00:00Z");
    assert_eq!(row[7], Sql::Null);

    // No column anywhere holds the plain password.
    let all = t.rows("SELECT * FROM users").await.unwrap();
    for value in &all.rows[0] {
        if let Sql::Text(text) = value {
            assert!(!text.contains(PASSWORD), "{text}");
        }
    }
}

/// An invitation into the org of `token`'s caller, optionally for
/// `email`: status and body.
async fn invite(t: &ComponentTest, token: &str, email: Option<&str>) -> (StatusCode, Value) {
    let body = match email {
        Some(email) => json!({"email": email}),
        None => json!({}),
    };
    t.send_json("POST", "/invitations", Some(token), Some(&body))
        .await
}

/// Registers `username` into `org` with `invitation`: status and body.
async fn join(
    t: &ComponentTest,
    username: &str,
    org: &Value,
    invitation: &Value,
) -> (StatusCode, Value) {
    let body = json!({"username": username, "email": format!("{username}@example.com"),
                      "password": PASSWORD, "orgId": org, "invitation": invitation});
    t.send_json("POST", "/register", None, Some(&body)).await
}

#[tokio::test]
async fn joining_an_org_needs_an_invitation_of_that_org() {
    let t = component().start().await.unwrap();
    let ada = register(&t, "ada").await;
    let org = &ada["orgId"];
    // Knowing the org id is not enough, nor is a made-up code.
    let body = json!({"username": "eve", "email": "eve@example.com", "password": PASSWORD,
                      "orgId": org});
    let (status, answer) = t.send_json("POST", "/register", None, Some(&body)).await;
    assert_eq!(status, 403, "{answer}");
    assert_eq!(error_code(&answer), "forbidden");
    let (status, _) = join(&t, "eve", org, &json!("0".repeat(64))).await;
    assert_eq!(status, 403);

    let ada_token = token_of(&t, "ada", PASSWORD).await;
    let (status, invitation) = invite(&t, &ada_token, None).await;
    assert_eq!(status, 201, "{invitation}");
    assert_eq!(invitation["orgId"], *org);
    let code = &invitation["code"];
    assert_eq!(code.as_str().unwrap().len(), 64, "{invitation}");
    // Seven days by default, on the fake clock.
    assert_eq!(invitation["expiresAt"], "2026-01-08T00:00:00Z");
    // Only its hash is kept.
    let stored = t.rows("SELECT code_hash FROM invitations").await.unwrap();
    assert_ne!(stored.rows[0][0], Sql::Text(code.as_str().unwrap().into()));

    // A code of this org does not open another.
    let bob = register(&t, "bob").await;
    let (status, _) = join(&t, "eve", &bob["orgId"], code).await;
    assert_eq!(status, 403);

    let (status, eve) = join(&t, "eve", org, code).await;
    assert_eq!(status, 201, "{eve}");
    assert_eq!(eve["orgId"], *org);
    let eve_token = token_of(&t, "eve", PASSWORD).await;
    assert_eq!(claims(&eve_token)["org"], *org);
    // A member who joined is no org_admin and cannot invite.
    assert_eq!(claims(&eve_token)["roles"], json!(["user"]));
    let (status, answer) = invite(&t, &eve_token, None).await;
    assert_eq!(status, 403, "{answer}");

    // Single use.
    let (status, _) = join(&t, "mallory", org, code).await;
    assert_eq!(status, 403);
    assert_eq!(count_users(&t).await, 3);
}

#[tokio::test]
async fn an_invitation_expires_and_may_name_its_email() {
    let t = component()
        .with(|c| c.config_value("invitation_ttl_secs", 3600))
        .start()
        .await
        .unwrap();
    let ada = register(&t, "ada").await;
    let org = &ada["orgId"];
    let token = token_of(&t, "ada", PASSWORD).await;

    let (status, for_eve) = invite(&t, &token, Some("Eve@Example.com")).await;
    assert_eq!(status, 201, "{for_eve}");
    assert_eq!(for_eve["expiresAt"], "2026-01-01T01:00:00Z");
    // Another email cannot use it; the named one can, in any case.
    let (status, _) = join(&t, "mallory", org, &for_eve["code"]).await;
    assert_eq!(status, 403);
    let (status, eve) = join(&t, "eve", org, &for_eve["code"]).await;
    assert_eq!(status, 201, "{eve}");

    let (_, late) = invite(&t, &token, None).await;
    t.advance(Duration::from_secs(3601));
    let (status, _) = join(&t, "frank", org, &late["code"]).await;
    assert_eq!(status, 403);
}

#[tokio::test]
async fn a_failed_registration_keeps_the_invitation_unspent() {
    let t = component().start().await.unwrap();
    let ada = register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;
    let (_, invitation) = invite(&t, &token, None).await;
    // Taken username: 409, and the code still works afterwards.
    let (status, _) = join(&t, "ada", &ada["orgId"], &invitation["code"]).await;
    assert_eq!(status, 409);
    let (status, answer) = join(&t, "eve", &ada["orgId"], &invitation["code"]).await;
    assert_eq!(status, 201, "{answer}");
}

#[tokio::test]
async fn invitations_need_a_caller_and_good_input() {
    let t = component().start().await.unwrap();
    let (status, _) = t
        .send_json("POST", "/invitations", None, Some(&json!({})))
        .await;
    assert_eq!(status, 401);
    // An admin of the application may invite (into their own org).
    let admin = t.token("root", "o1", &["user", "admin"]);
    let (status, invitation) = invite(&t, &admin, None).await;
    assert_eq!(status, 201, "{invitation}");
    assert_eq!(invitation["orgId"], "o1");
    for body in [
        json!({"email": "nope"}),
        json!({"email": 5}),
        json!({"role": "admin"}),
    ] {
        let (status, answer) = t
            .send_json("POST", "/invitations", Some(&admin), Some(&body))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
    // An invitation without an orgId, or an absurd code, is bad input.
    let cases = [
        json!({"username": "eve", "email": "eve@example.com", "password": PASSWORD,
               "invitation": invitation["code"]}),
        json!({"username": "eve", "email": "eve@example.com", "password": PASSWORD,
               "orgId": "o1", "invitation": "x".repeat(129)}),
    ];
    for body in cases {
        let (status, answer) = t.send_json("POST", "/register", None, Some(&body)).await;
        assert_eq!(status, 400, "{body}: {answer}");
    }
}

#[tokio::test]
async fn a_null_org_id_is_as_if_absent() {
    let t = component().start().await.unwrap();
    let body = json!({"username": "ada", "email": "ada@example.com", "password": PASSWORD,
                      "orgId": null});
    let (status, user) = t.send_json("POST", "/register", None, Some(&body)).await;
    assert_eq!(status, 201, "{user}");
    assert!(uuid::Uuid::parse_str(user["orgId"].as_str().unwrap()).is_ok());
}

#[tokio::test]
async fn users_registered_without_an_org_get_different_orgs() {
    let t = component().start().await.unwrap();
    let ada = register(&t, "ada").await;
    let bob = register(&t, "bob").await;
    assert_ne!(ada["id"], bob["id"]);
    assert_ne!(ada["orgId"], bob["orgId"]);
}

#[tokio::test]
async fn register_rejects_bad_input_with_validation_failed() {
    let t = component().start().await.unwrap();
    let ok_email = "ada@example.com";
    let cases: Vec<(&str, Value, &str)> = vec![
        ("short username", registration("ab", ok_email), "username"),
        (
            "long username",
            registration(&"a".repeat(33), ok_email),
            "username",
        ),
        (
            "space in username",
            registration("ada lovelace", ok_email),
            "username",
        ),
        (
            "@ in username",
            registration("ada@home", ok_email),
            "username",
        ),
        (
            "non-ASCII username",
            registration("adé", ok_email),
            "username",
        ),
        ("email without @", registration("ada", "ada"), "email"),
        (
            "email without a dot domain",
            registration("ada", "ada@example"),
            "email",
        ),
        (
            "email with two @",
            registration("ada", "ada@@example.com"),
            "email",
        ),
        (
            "numeric top-level domain",
            registration("ada", "ada@example.123"),
            "email",
        ),
        (
            "7-character password",
            json!({"username": "ada", "email": ok_email, "password": "1234567"}),
            "password",
        ),
        (
            "1025-character password",
            json!({"username": "ada", "email": ok_email, "password": "a".repeat(1025)}),
            "password",
        ),
        (
            "empty orgId",
            json!({"username": "ada", "email": ok_email, "password": PASSWORD, "orgId": ""}),
            "orgId",
        ),
        (
            "orgId with a space",
            json!({"username": "ada", "email": ok_email, "password": PASSWORD, "orgId": "org one"}),
            "orgId",
        ),
        (
            "missing password",
            json!({"username": "ada", "email": ok_email}),
            "missing field `password`",
        ),
        (
            "missing username",
            json!({"email": ok_email, "password": PASSWORD}),
            "missing field `username`",
        ),
        (
            "missing email",
            json!({"username": "ada", "password": PASSWORD}),
            "missing field `email`",
        ),
        (
            "username not a string",
            json!({"username": 1, "email": ok_email, "password": PASSWORD}),
            "`username`",
        ),
        (
            "unknown field",
            json!({"username": "ada", "email": ok_email, "password": PASSWORD, "orgID": "x"}),
            "unknown field `orgID`",
        ),
        ("not an object", json!(["ada"]), "must be a JSON object"),
    ];
    for (what, body, names) in cases {
        let (status, answer) = t.send_json("POST", "/register", None, Some(&body)).await;
        assert_eq!(status, 400, "{what}: {answer}");
        assert_eq!(error_code(&answer), "validation_failed", "{what}: {answer}");
        assert!(
            error_message(&answer).contains(names),
            "{what}: {answer} should name {names}"
        );
    }
    assert_eq!(count_users(&t).await, 0);
    assert!(t.published().is_empty(), "{:?}", t.published());
}

#[tokio::test]
async fn register_rejects_an_empty_or_malformed_body() {
    let t = component().start().await.unwrap();
    for (body, names) in [("", "JSON object"), ("{not json", "invalid request body")] {
        let request = Request::post("/register")
            .header("content-type", "application/json")
            .body(Bytes::from(body))
            .unwrap();
        let response = t.call(request).await;
        assert_eq!(response.status(), 400, "{body:?}");
        let answer: Value = serde_json::from_slice(response.body()).unwrap();
        assert_eq!(error_code(&answer), "validation_failed");
        assert!(error_message(&answer).contains(names), "{answer}");
    }
    assert_eq!(count_users(&t).await, 0);
}

#[tokio::test]
async fn register_accepts_the_limits_of_each_rule() {
    let t = component().start().await.unwrap();
    // The longest org id, joined by an invitation of its admin.
    let long_org = "o".repeat(64);
    let admin = t.token("root", &long_org, &["user", "org_admin"]);
    let (status, invitation) = invite(&t, &admin, None).await;
    assert_eq!(status, 201, "{invitation}");
    let cases = [
        // Passwords count characters, not bytes: 8 two-byte characters.
        json!({"username": "abc", "email": "a@b.co", "password": "é".repeat(8)}),
        json!({"username": "a".repeat(32), "email": "ada+tag@mail.example.com",
               "password": "a".repeat(1024)}),
        json!({"username": "A_b.c-9", "email": "x_y@1.example.org", "password": "12345678",
               "orgId": long_org, "invitation": invitation["code"]}),
    ];
    for body in &cases {
        let (status, user) = t.send_json("POST", "/register", None, Some(body)).await;
        assert_eq!(status, 201, "{body}: {user}");
    }
    assert_eq!(count_users(&t).await, 3);
    // The two-byte password works for a login, too.
    token_of(&t, "abc", &"é".repeat(8)).await;
}

#[tokio::test]
async fn a_taken_username_is_a_conflict_whatever_its_case() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    t.take_published();

    let body = registration("ADA", "other@example.com");
    let (status, answer) = t.send_json("POST", "/register", None, Some(&body)).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(error_code(&answer), "conflict");
    assert!(error_message(&answer).contains("username"), "{answer}");
    assert_eq!(count_users(&t).await, 1);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn a_taken_email_is_a_conflict_whatever_its_case() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    t.take_published();

    let body = registration("lovelace", "ADA@EXAMPLE.COM");
    let (status, answer) = t.send_json("POST", "/register", None, Some(&body)).await;
    assert_eq!(status, 409, "{answer}");
    assert_eq!(error_code(&answer), "conflict");
    assert!(error_message(&answer).contains("email"), "{answer}");
    assert_eq!(count_users(&t).await, 1);
    assert!(t.published().is_empty());
}

#[tokio::test]
async fn concurrent_registrations_of_one_username_make_one_user() {
    let t = component().start().await.unwrap();
    let first = registration("ada", "ada@example.com");
    let second = registration("Ada", "lovelace@example.com");
    let (a, b) = tokio::join!(
        t.send_json("POST", "/register", None, Some(&first)),
        t.send_json("POST", "/register", None, Some(&second)),
    );
    let mut statuses = [a.0.as_u16(), b.0.as_u16()];
    statuses.sort_unstable();
    assert_eq!(statuses, [201, 409], "{} / {}", a.1, b.1);
    assert_eq!(count_users(&t).await, 1);
    assert_eq!(t.published().len(), 1);
}

#[tokio::test]
async fn a_deleted_users_username_and_email_stay_taken() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    // No route deletes a user; the row is marked as a deletion would.
    t.rows("UPDATE users SET deleted_at = '2026-01-02T00:00:00Z'")
        .await
        .unwrap();

    let (status, answer) = t
        .send_json(
            "POST",
            "/register",
            None,
            Some(&registration("ada", "new@example.com")),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
    let (status, answer) = t
        .send_json(
            "POST",
            "/register",
            None,
            Some(&registration("newbie", "ada@example.com")),
        )
        .await;
    assert_eq!(status, 409, "{answer}");
}

// --- login ------------------------------------------------------------

#[tokio::test]
async fn login_answers_a_bearer_token_for_the_user() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;

    let (status, body) = login(&t, json!({"username": "ada", "password": PASSWORD})).await;
    assert_eq!(status, 200, "{body}");
    let token = body["accessToken"].as_str().unwrap();
    let refresh = body["refreshToken"].as_str().unwrap();
    assert_eq!(
        body,
        json!({"accessToken": token, "tokenType": "Bearer", "expiresIn": 900,
               "refreshToken": refresh})
    );
    assert_eq!(refresh.len(), 64, "{refresh}");
    // Only the refresh token's hash is kept.
    let stored = t
        .rows("SELECT token_hash FROM refresh_tokens")
        .await
        .unwrap();
    assert_ne!(stored.rows[0][0], Sql::Text(refresh.into()));

    let header = jwt_part(token, 0);
    assert_eq!(header["alg"], "EdDSA");
    assert!(header["kid"].is_string(), "{header}");
    let claims = claims(token);
    assert_eq!(claims["sub"], user["id"]);
    assert_eq!(claims["org"], user["orgId"]);
    // The founder of a new org is its org_admin.
    assert_eq!(claims["roles"], json!(["user", "org_admin"]));
    assert_eq!(claims["iss"], "weft");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        900
    );
    // The token belongs to the login's session.
    let session = t.rows("SELECT id FROM sessions").await.unwrap();
    assert_eq!(
        Sql::Text(claims["sid"].as_str().unwrap().into()),
        session.rows[0][0]
    );
}

// --- sessions ---------------------------------------------------------

/// Logs ada in: (access token, refresh token).
async fn session_of(t: &ComponentTest, username: &str) -> (String, String) {
    let (status, body) = login(t, json!({"username": username, "password": PASSWORD})).await;
    assert_eq!(status, 200, "{body}");
    (
        body["accessToken"].as_str().unwrap().to_owned(),
        body["refreshToken"].as_str().unwrap().to_owned(),
    )
}

async fn refresh(t: &ComponentTest, refresh_token: &str) -> (StatusCode, Value) {
    t.send_json(
        "POST",
        "/token/refresh",
        None,
        Some(&json!({"refreshToken": refresh_token})),
    )
    .await
}

async fn me_status(t: &ComponentTest, token: &str) -> StatusCode {
    t.get_json("/me", Some(token)).await.0
}

#[tokio::test]
async fn a_refresh_token_is_rotated_and_a_reused_one_ends_the_session() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let (first_access, first) = session_of(&t, "ada").await;

    let (status, second) = refresh(&t, &first).await;
    assert_eq!(status, 200, "{second}");
    let second_refresh = second["refreshToken"].as_str().unwrap();
    assert_ne!(second_refresh, first);
    let second_access = second["accessToken"].as_str().unwrap();
    assert_eq!(claims(second_access)["sid"], claims(&first_access)["sid"]);
    assert_eq!(me_status(&t, second_access).await, 200);
    let (status, third) = refresh(&t, second_refresh).await;
    assert_eq!(status, 200, "{third}");
    let third_access = third["accessToken"].as_str().unwrap();

    // The first one again: it leaked. The whole login ends.
    let (status, answer) = refresh(&t, &first).await;
    assert_eq!(status, 401, "{answer}");
    for token in [&first_access, second_access, third_access] {
        assert_eq!(me_status(&t, token).await, 401);
    }
    let (status, _) = refresh(&t, third["refreshToken"].as_str().unwrap()).await;
    assert_eq!(status, 401);
    // Another login is another session, untouched.
    let (other, _) = session_of(&t, "ada").await;
    assert_eq!(me_status(&t, &other).await, 200);
}

#[tokio::test]
async fn logout_ends_that_session_only() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let (phone, phone_refresh) = session_of(&t, "ada").await;
    let (laptop, _) = session_of(&t, "ada").await;
    let (status, body) = t.send_json("POST", "/logout", Some(&phone), None).await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me_status(&t, &phone).await, 401);
    assert_eq!(refresh(&t, &phone_refresh).await.0, 401);
    assert_eq!(me_status(&t, &laptop).await, 200);
    // Without a token, or with one of no login.
    assert_eq!(t.send_json("POST", "/logout", None, None).await.0, 401);
    let loose = t.token("u1", "o1", &["user"]);
    assert_eq!(
        t.send_json("POST", "/logout", Some(&loose), None).await.0,
        400
    );
}

#[tokio::test]
async fn a_password_change_ends_every_session() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let (phone, _) = session_of(&t, "ada").await;
    let (laptop, laptop_refresh) = session_of(&t, "ada").await;
    let (status, body) = change_password(&t, Some(&phone), PASSWORD, "a brand new secret").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(me_status(&t, &phone).await, 401);
    assert_eq!(me_status(&t, &laptop).await, 401);
    assert_eq!(refresh(&t, &laptop_refresh).await.0, 401);
    // The new password starts a session that works.
    let token = token_of(&t, "ada", "a brand new secret").await;
    assert_eq!(me_status(&t, &token).await, 200);
}

#[tokio::test]
async fn a_failed_password_change_ends_nothing() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let (token, refresh_token) = session_of(&t, "ada").await;
    let (status, _) = change_password(&t, Some(&token), "not the password", "whatever new").await;
    assert_eq!(status, 401);
    assert_eq!(me_status(&t, &token).await, 200);
    assert_eq!(refresh(&t, &refresh_token).await.0, 200);
}

#[tokio::test]
async fn refresh_refuses_what_it_does_not_know() {
    let t = component().start().await.unwrap();
    for token in ["", "nope", &"0".repeat(64), &"x".repeat(4096)] {
        assert_eq!(refresh(&t, token).await.0, 401, "{token}");
    }
    for body in [
        json!({}),
        json!({"refreshToken": 5}),
        json!({"refreshToken": "a", "x": 1}),
    ] {
        let (status, _) = t
            .send_json("POST", "/token/refresh", None, Some(&body))
            .await;
        assert_eq!(status, 400, "{body}");
    }
}

#[tokio::test]
async fn a_session_expires_after_refresh_ttl() {
    let t = component()
        .with(|c| c.config_value("refresh_ttl_secs", 60))
        .start()
        .await
        .unwrap();
    register(&t, "ada").await;
    let (_, refresh_token) = session_of(&t, "ada").await;
    t.advance(Duration::from_secs(61));
    assert_eq!(refresh(&t, &refresh_token).await.0, 401);
}

#[tokio::test]
async fn login_by_email_or_username_ignores_case() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;
    for body in [
        json!({"username": "ADA", "password": PASSWORD}),
        json!({"email": "ada@example.com", "password": PASSWORD}),
        json!({"email": "Ada@Example.COM", "password": PASSWORD}),
        // A username holding an @ is looked up as an email.
        json!({"username": "ada@example.com", "password": PASSWORD}),
    ] {
        let (status, answer) = login(&t, body.clone()).await;
        assert_eq!(status, 200, "{body}: {answer}");
        let token = answer["accessToken"].as_str().unwrap();
        assert_eq!(claims(token)["sub"], user["id"], "{body}");
    }
}

#[tokio::test]
async fn wrong_password_and_unknown_user_look_the_same() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;

    let (wrong_status, wrong) = login(
        &t,
        json!({"username": "ada", "password": "not the password"}),
    )
    .await;
    let (unknown_status, unknown) =
        login(&t, json!({"username": "nobody", "password": PASSWORD})).await;
    let (unknown_email_status, unknown_email) = login(
        &t,
        json!({"email": "nobody@example.com", "password": PASSWORD}),
    )
    .await;

    assert_eq!(wrong_status, 401);
    assert_eq!(error_code(&wrong), "invalid_credentials", "{wrong}");
    assert_eq!((unknown_status, &unknown), (wrong_status, &wrong));
    assert_eq!(
        (unknown_email_status, &unknown_email),
        (wrong_status, &wrong)
    );
}

#[tokio::test]
async fn an_overlong_password_is_refused_as_invalid_credentials() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let (status, body) = login(&t, json!({"username": "ada", "password": "a".repeat(1025)})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_credentials");
}

#[tokio::test]
async fn a_deleted_user_cannot_log_in() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    t.rows("UPDATE users SET deleted_at = '2026-01-02T00:00:00Z'")
        .await
        .unwrap();
    let (status, body) = login(&t, json!({"username": "ada", "password": PASSWORD})).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "invalid_credentials");
}

#[tokio::test]
async fn login_must_name_exactly_one_user() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let cases = [
        json!({"username": "ada", "email": "ada@example.com", "password": PASSWORD}),
        json!({"password": PASSWORD}),
        json!({"username": "", "password": PASSWORD}),
        json!({"email": "", "password": PASSWORD}),
        json!({"username": "ada"}),
        json!({"username": "ada", "password": PASSWORD, "remember": true}),
    ];
    for body in cases {
        let (status, answer) = login(&t, body.clone()).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(error_code(&answer), "validation_failed", "{body}: {answer}");
    }
}

// --- roles ------------------------------------------------------------

/// Creates listed admin `username` as the operator; the 201 body.
async fn create_admin(t: &ComponentTest, username: &str) -> Value {
    let body = registration(username, &format!("{username}@example.com"));
    let (status, user) = t.operator_send_json("POST", "/admins", Some(&body)).await;
    assert_eq!(status, 201, "{user}");
    user
}

#[tokio::test]
async fn a_listed_admin_name_cannot_be_registered_only_created_by_the_operator() {
    let t = component()
        .with(|c| c.config_value("admins", vec!["alice"]))
        .start()
        .await
        .unwrap();
    // Squatting, in any case, is refused and leaves no account.
    for name in ["alice", "ALICE", "Alice"] {
        let body = registration(name, &format!("{name}@squat.example"));
        let (status, answer) = t.send_json("POST", "/register", None, Some(&body)).await;
        assert_eq!(status, 403, "{name}: {answer}");
        assert_eq!(error_code(&answer), "forbidden", "{answer}");
    }
    assert_eq!(count_users(&t).await, 0);

    create_admin(&t, "alice").await;
    register(&t, "bob").await;
    let alice = token_of(&t, "alice", PASSWORD).await;
    assert_eq!(
        claims(&alice)["roles"],
        json!(["user", "org_admin", "admin"])
    );
    let bob = token_of(&t, "bob", PASSWORD).await;
    assert_eq!(claims(&bob)["roles"], json!(["user", "org_admin"]));

    let (status, me) = t.get_json("/me", Some(&alice)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["roles"], json!(["user", "org_admin", "admin"]));
    // Created once: the name is taken now.
    let again = registration("alice", "other@example.com");
    let (status, _) = t.operator_send_json("POST", "/admins", Some(&again)).await;
    assert_eq!(status, 409);
}

#[tokio::test]
async fn only_the_operator_creates_admins_and_only_listed_ones() {
    let t = component()
        .with(|c| c.config_value("admins", vec!["alice"]))
        .start()
        .await
        .unwrap();
    let body = registration("alice", "alice@example.com");
    // An application admin, an anonymous caller: neither is the operator.
    let app_admin = t.token("u1", "o1", &["user", "admin"]);
    let (status, answer) = t
        .send_json("POST", "/admins", Some(&app_admin), Some(&body))
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, _) = t.send_json("POST", "/admins", None, Some(&body)).await;
    assert_eq!(status, 401);
    // The operator, for a name not listed.
    let unlisted = registration("mallory", "mallory@example.com");
    let (status, answer) = t
        .operator_send_json("POST", "/admins", Some(&unlisted))
        .await;
    assert_eq!(status, 422, "{answer}");
    assert_eq!(error_code(&answer), "not_listed");
    // Bad fields are 400 for the operator too.
    let bad = json!({"username": "alice", "email": "nope", "password": PASSWORD});
    let (status, _) = t.operator_send_json("POST", "/admins", Some(&bad)).await;
    assert_eq!(status, 400);
    assert_eq!(count_users(&t).await, 0);
}

#[tokio::test]
async fn a_stored_admin_role_without_the_listing_gives_nothing() {
    let t = component()
        .with(|c| c.config_value("admins", "carol, ALICE"))
        .start()
        .await
        .unwrap();
    create_admin(&t, "alice").await;
    let alice = token_of(&t, "alice", PASSWORD).await;
    assert_eq!(
        claims(&alice)["roles"],
        json!(["user", "org_admin", "admin"])
    );
    // A row that says admin (a restored backup, a stray edit) for a name
    // the config does not list: no admin.
    register(&t, "bob").await;
    t.rows(r#"UPDATE users SET roles = '["user","admin"]' WHERE username = 'bob'"#)
        .await
        .unwrap();
    let bob = token_of(&t, "bob", PASSWORD).await;
    assert_eq!(claims(&bob)["roles"], json!(["user"]));
}

#[tokio::test]
async fn admins_that_are_not_usernames_make_nobody_admin() {
    let t = component()
        .with(|c| c.config_value("admins", vec![1, 2]))
        .start()
        .await
        .unwrap();
    let user = t
        .send_json(
            "POST",
            "/register",
            None,
            Some(&json!({"username": "123", "email": "n@example.com", "password": PASSWORD})),
        )
        .await;
    assert_eq!(user.0, 201, "{}", user.1);
    let token = token_of(&t, "123", PASSWORD).await;
    assert_eq!(claims(&token)["roles"], json!(["user", "org_admin"]));
}

// --- me ---------------------------------------------------------------

#[tokio::test]
async fn me_answers_the_callers_profile_without_the_hash() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;

    let (status, me) = t.get_json("/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        me,
        json!({"id": user["id"], "username": "ada", "email": "ada@example.com",
               "orgId": user["orgId"], "roles": ["user", "org_admin"], "createdAt": "2026-01-01T00:00:00Z"})
    );
    assert!(!me.to_string().contains("argon2"), "{me}");
}

#[tokio::test]
async fn me_shows_the_roles_of_the_token() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;
    let token = t.token(
        user["id"].as_str().unwrap(),
        user["orgId"].as_str().unwrap(),
        &["user", "auditor"],
    );
    let (status, me) = t.get_json("/me", Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["roles"], json!(["user", "auditor"]));
}

#[tokio::test]
async fn me_without_a_caller_is_unauthorized() {
    let t = component().start().await.unwrap();
    let (status, body) = t.get_json("/me", None).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
}

#[tokio::test]
async fn me_with_a_bad_token_is_refused_before_iam() {
    let t = component().start().await.unwrap();
    let (status, body) = t.get_json("/me", Some("not.a.token")).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
}

#[tokio::test]
async fn me_for_a_user_who_does_not_exist_is_unauthorized() {
    let t = component().start().await.unwrap();
    let token = t.token("no-such-user", "o1", &["user"]);
    let (status, body) = t.get_json("/me", Some(&token)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
}

#[tokio::test]
async fn me_for_a_deleted_user_is_unauthorized() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;
    t.rows("UPDATE users SET deleted_at = '2026-01-02T00:00:00Z'")
        .await
        .unwrap();
    let (status, body) = t.get_json("/me", Some(&token)).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
}

// --- password ---------------------------------------------------------

#[tokio::test]
async fn a_changed_password_replaces_the_old_one_at_once() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;
    t.take_published();

    let (status, body) = change_password(&t, Some(&token), PASSWORD, "a brand new secret").await;
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");

    let (status, old) = login(&t, json!({"username": "ada", "password": PASSWORD})).await;
    assert_eq!(status, 401, "{old}");
    assert_eq!(error_code(&old), "invalid_credentials");
    let new = token_of(&t, "ada", "a brand new secret").await;
    assert_eq!(claims(&new)["sub"], user["id"]);
}

#[tokio::test]
async fn a_password_change_publishes_user_password_changed() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;
    t.take_published();

    let (status, body) = change_password(&t, Some(&token), PASSWORD, "a brand new secret").await;
    assert_eq!(status, 204, "{body}");
    let published = t.take_published();
    assert_eq!(published.len(), 1, "{published:?}");
    assert_eq!(published[0].event_type, "user.password_changed");
    assert_eq!(published[0].source, "iam");
    assert_eq!(published[0].data, json!({"userId": user["id"]}));
}

#[tokio::test]
async fn a_password_change_rehashes_and_records_when() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;
    let before = t.rows("SELECT password_hash FROM users").await.unwrap();
    t.advance(Duration::from_secs(3600));

    let (status, body) = change_password(&t, Some(&token), PASSWORD, "a brand new secret").await;
    assert_eq!(status, 204, "{body}");
    let after = t
        .rows("SELECT password_hash, updated_at, created_at, metadata FROM users")
        .await
        .unwrap();
    let row = &after.rows[0];
    assert_ne!(row[0], before.rows[0][0]);
    assert!(text(&row[0]).starts_with("$argon2id$"));
    assert!(!text(&row[0]).contains("a brand new secret"));
    assert_eq!(text(&row[1]), "2026-01-01T01:00:00Z");
    assert_eq!(text(&row[2]), "2026-01-01T00:00:00Z");
    let metadata: Value = serde_json::from_str(text(&row[3])).unwrap();
    assert_eq!(metadata["passwordChangedAt"], "2026-01-01T01:00:00Z");
}

#[tokio::test]
async fn every_token_issued_before_a_password_change_is_refused() {
    let t = component().start().await.unwrap();
    let user = register(&t, "ada").await;
    let id = user["id"].as_str().unwrap();
    let token = token_of(&t, "ada", PASSWORD).await;
    // A token of no session, as another granted component could mint.
    let loose = t.token(id, user["orgId"].as_str().unwrap(), &["user"]);
    let (status, _) = change_password(&t, Some(&token), PASSWORD, "a brand new secret").await;
    assert_eq!(status, 204);
    assert_eq!(me_status(&t, &token).await, 401);
    assert_eq!(me_status(&t, &loose).await, 401);
    // One issued in the same second as the change is dated after it.
    let fresh = token_of(&t, "ada", "a brand new secret").await;
    assert_eq!(me_status(&t, &fresh).await, 200);
}

#[tokio::test]
async fn a_wrong_current_password_changes_nothing() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;
    t.take_published();
    let hash = t.rows("SELECT password_hash FROM users").await.unwrap();

    for wrong in ["not the password".to_owned(), "a".repeat(1025)] {
        let (status, body) = change_password(&t, Some(&token), &wrong, "a brand new secret").await;
        assert_eq!(status, 401, "{body}");
        assert_eq!(error_code(&body), "invalid_credentials");
    }
    assert_eq!(
        t.rows("SELECT password_hash FROM users").await.unwrap(),
        hash
    );
    assert!(t.published().is_empty(), "{:?}", t.published());
    token_of(&t, "ada", PASSWORD).await;
}

#[tokio::test]
async fn a_new_password_must_follow_the_registration_rule() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;
    t.take_published();

    for bad in ["1234567".to_owned(), "a".repeat(1025)] {
        let (status, body) = change_password(&t, Some(&token), PASSWORD, &bad).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(error_code(&body), "validation_failed");
        assert!(error_message(&body).starts_with("newPassword"), "{body}");
    }
    assert!(t.published().is_empty());
    token_of(&t, "ada", PASSWORD).await;
}

#[tokio::test]
async fn a_password_change_needs_both_fields() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;
    for (body, names) in [
        (
            json!({"newPassword": "a brand new secret"}),
            "currentPassword",
        ),
        (json!({"currentPassword": PASSWORD}), "newPassword"),
        (
            json!({"current_password": PASSWORD, "newPassword": "a brand new secret"}),
            "current_password",
        ),
    ] {
        let (status, answer) = t
            .send_json("PUT", "/password", Some(&token), Some(&body))
            .await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(error_code(&answer), "validation_failed");
        assert!(error_message(&answer).contains(names), "{answer}");
    }
    token_of(&t, "ada", PASSWORD).await;
}

#[tokio::test]
async fn a_password_change_needs_a_caller() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let (status, body) = change_password(&t, None, PASSWORD, "a brand new secret").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
    token_of(&t, "ada", PASSWORD).await;
}

#[tokio::test]
async fn a_password_change_for_a_user_who_does_not_exist_is_unauthorized() {
    let t = component().start().await.unwrap();
    let token = t.token("no-such-user", "o1", &["user"]);
    let (status, body) = change_password(&t, Some(&token), PASSWORD, "a brand new secret").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(error_code(&body), "unauthorized");
    assert!(t.published().is_empty());
}

// --- jwks and routing -------------------------------------------------

#[tokio::test]
async fn jwks_publishes_the_key_that_verifies_login_tokens() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    let token = token_of(&t, "ada", PASSWORD).await;

    let response = t
        .call(
            Request::get("/.well-known/jwks.json")
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["cache-control"], "public, max-age=300");
    let set: jsonwebtoken::jwk::JwkSet = serde_json::from_slice(response.body()).unwrap();
    let raw: Value = serde_json::from_slice(response.body()).unwrap();
    for key in raw["keys"].as_array().unwrap() {
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["alg"], "EdDSA");
        assert!(key.get("d").is_none(), "no private part: {key}");
    }

    let kid = jwt_part(&token, 0)["kid"].as_str().unwrap().to_owned();
    let jwk = set.find(&kid).expect("the signing key is in the set");
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["weft"]);
    let verified = jsonwebtoken::decode::<Value>(&token, &key, &validation).unwrap();
    assert_eq!(verified.claims["roles"], json!(["user", "org_admin"]));
}

#[tokio::test]
async fn jwks_needs_no_caller_and_routes_answer_405_and_404() {
    let t = component().start().await.unwrap();
    let (status, set) = t.get_json("/.well-known/jwks.json", None).await;
    assert_eq!(status, 200, "{set}");
    assert!(!set["keys"].as_array().unwrap().is_empty());

    for (method, path, allow) in [
        ("GET", "/register", "POST"),
        ("GET", "/login", "POST"),
        ("DELETE", "/me", "GET"),
        ("POST", "/.well-known/jwks.json", "GET"),
        ("POST", "/password", "PUT"),
    ] {
        let response = t
            .call(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .body(Bytes::new())
                    .unwrap(),
            )
            .await;
        assert_eq!(response.status(), 405, "{method} {path}");
        assert_eq!(response.headers()["allow"], allow, "{method} {path}");
    }
    for path in ["/nope", "/me/"] {
        let (status, body) = t.get_json(path, None).await;
        assert_eq!(status, 404, "{path}: {body}");
        assert_eq!(error_code(&body), "not_found");
    }
}

// --- login limits -----------------------------------------------------

/// A login with a raw answer: status, `Retry-After`, body.
async fn login_raw(t: &ComponentTest, username: &str, password: &str) -> (u16, Option<u32>, Value) {
    let body = json!({"username": username, "password": password}).to_string();
    let request = Request::builder()
        .method("POST")
        .uri("/login")
        .header("content-type", "application/json")
        .body(Bytes::from(body))
        .unwrap();
    let response = t.call(request).await;
    let retry_after = response
        .headers()
        .get("retry-after")
        .map(|v| v.to_str().unwrap().parse().unwrap());
    (
        response.status().as_u16(),
        retry_after,
        serde_json::from_slice(response.body()).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn an_account_guessed_at_is_locked_for_the_window_then_opens_again() {
    let t = component().start().await.unwrap();
    register(&t, "ada").await;
    for _ in 0..5 {
        assert_eq!(login_raw(&t, "ada", "not the password").await.0, 401);
    }
    // By username or by email: the same account.
    for who in ["ada", "ADA@example.com"] {
        let (status, retry_after, body) = login_raw(&t, who, "not the password").await;
        assert_eq!(status, 429, "{body}");
        assert_eq!(error_code(&body), "too_many_requests");
        let wait = retry_after.expect("Retry-After");
        assert!(wait > 0 && wait <= 900, "{wait}");
    }
    // Even the right password waits: the owner is told when to come back.
    assert_eq!(login_raw(&t, "ada", PASSWORD).await.0, 429);
    // Another account is not touched.
    register(&t, "bob").await;
    assert_eq!(login_raw(&t, "bob", PASSWORD).await.0, 200);
    // An unknown name is limited just the same, so a 429 tells nothing.
    for _ in 0..5 {
        assert_eq!(login_raw(&t, "nobody", "x12345678").await.0, 401);
    }
    assert_eq!(login_raw(&t, "nobody", "x12345678").await.0, 429);

    t.advance(Duration::from_secs(901));
    assert_eq!(login_raw(&t, "ada", PASSWORD).await.0, 200);
}

#[tokio::test]
async fn right_passwords_do_not_count_against_the_limit() {
    let t = component()
        .with(|c| c.config_value("login_attempts_per_account", 2))
        .start()
        .await
        .unwrap();
    register(&t, "ada").await;
    t.set_client_address(Some("203.0.113.7".parse().unwrap()));
    for _ in 0..25 {
        assert_eq!(login_raw(&t, "ada", PASSWORD).await.0, 200);
    }
    assert_eq!(login_raw(&t, "ada", "not the password").await.0, 401);
    assert_eq!(login_raw(&t, "ada", PASSWORD).await.0, 200);
    assert_eq!(login_raw(&t, "ada", "not the password").await.0, 401);
    assert_eq!(login_raw(&t, "ada", PASSWORD).await.0, 429);
}

#[tokio::test]
async fn one_address_guessing_at_many_accounts_is_stopped() {
    let t = component()
        .with(|c| {
            c.config_value("login_attempts_per_address", 3)
                .config_value("login_attempts_per_account", 1)
        })
        .start()
        .await
        .unwrap();
    register(&t, "ada").await;
    t.set_client_address(Some("2001:db8:1:2::7".parse().unwrap()));
    for name in ["u1", "u2", "u3"] {
        assert_eq!(login_raw(&t, name, "x12345678").await.0, 401);
    }
    // Anywhere in the same /64.
    t.set_client_address(Some("2001:db8:1:2:ffff::1".parse().unwrap()));
    let (status, retry_after, _) = login_raw(&t, "u4", "x12345678").await;
    assert_eq!((status, retry_after.is_some()), (429, true));
    assert_eq!(login_raw(&t, "ada", PASSWORD).await.0, 429);
    // The refused attempt did not count against the account.
    t.set_client_address(Some("198.51.100.1".parse().unwrap()));
    assert_eq!(login_raw(&t, "u4", "x12345678").await.0, 401);
    assert_eq!(login_raw(&t, "ada", PASSWORD).await.0, 200);
}
