//! The IAM / BPM / LGM / NSM flow end to end: real HTTP and WebSocket
//! clients against the real host and components.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use common::{eventually, TestHost};
use futures_util::StreamExt;
use serde_json::{json, Value};

async fn accounts(t: &TestHost, token: &str) -> Vec<Value> {
    let (status, body) = t.get("/bpm/accounts", token).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_value(body).unwrap()
}

async fn default_account(t: &TestHost, token: &str) -> Value {
    eventually(Duration::from_secs(5), || async {
        accounts(t, token).await.into_iter().next()
    })
    .await
    .expect("the default account never appeared")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_login_bank_audit_notify() {
    let t = TestHost::start().await;
    let r = t
        .client
        .post(t.url("/iam/register"))
        .header("x-correlation-id", "flow-1")
        .json(&json!({"username": "bob", "email": "bob@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let bob_id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = t.login("bob", "correct horse battery").await.unwrap();
    // Login by email works too.
    let by_mail = t
        .client
        .post(t.url("/iam/login"))
        .json(&json!({"email": "bob@example.com", "password": "correct horse battery"}))
        .send()
        .await
        .unwrap();
    assert_eq!(by_mail.status(), 200);

    // The default account appears, once.
    let savings = default_account(&t, &token).await;
    assert_eq!(savings["accountType"], "savings");
    assert_eq!(savings["balance"], 0);
    assert_eq!(savings["userId"], bob_id.as_str());
    assert_eq!(savings["currency"], "USD");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(accounts(&t, &token).await.len(), 1);
    let sid = savings["id"].as_str().unwrap().to_owned();

    // Money.
    let (s, dep) = t
        .post(
            "/bpm/transactions",
            &token,
            &json!({"type": "deposit", "accountId": sid, "amount": 1000}),
        )
        .await;
    assert_eq!(
        (s, dep["balanceAfter"].clone()),
        (201, json!(1000)),
        "{dep}"
    );
    let (s, wd) = t
        .post(
            "/bpm/transactions",
            &token,
            &json!({"type": "withdrawal", "accountId": sid, "amount": 300}),
        )
        .await;
    assert_eq!((s, wd["balanceAfter"].clone()), (201, json!(700)), "{wd}");
    let (s, over) = t
        .post(
            "/bpm/transactions",
            &token,
            &json!({"type": "withdrawal", "accountId": sid, "amount": 5000}),
        )
        .await;
    assert_eq!(s, 422, "{over}");
    assert_eq!(over["error"]["code"], "insufficient_funds");
    let (_, acc) = t.get(&format!("/bpm/accounts/{sid}"), &token).await;
    assert_eq!(acc["balance"], 700, "an overdraft changed the balance");
    let (s, bad) = t
        .post(
            "/bpm/transactions",
            &token,
            &json!({"type": "deposit", "accountId": sid, "amount": 1.5}),
        )
        .await;
    assert_eq!(s, 400, "{bad}");

    let (s, checking) = t
        .post("/bpm/accounts", &token, &json!({"accountType": "checking"}))
        .await;
    assert_eq!(s, 201, "{checking}");
    let cid = checking["id"].as_str().unwrap().to_owned();
    let (s, tr) = t
        .post(
            "/bpm/transactions",
            &token,
            &json!({"type": "transfer", "accountId": sid, "toAccountId": cid, "amount": 200}),
        )
        .await;
    assert_eq!(s, 201, "{tr}");
    assert_eq!(tr["balanceAfter"], 500);
    assert_eq!(tr["toAccountId"], cid.as_str());
    let balances: Vec<(String, i64)> = accounts(&t, &token)
        .await
        .iter()
        .map(|a| {
            (
                a["id"].as_str().unwrap().to_owned(),
                a["balance"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(
        balances.contains(&(sid.clone(), 500)) && balances.contains(&(cid.clone(), 200)),
        "{balances:?}"
    );
    let (_, history) = t
        .get(&format!("/bpm/accounts/{cid}/transactions"), &token)
        .await;
    assert!(
        history
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["id"] == tr["id"]),
        "{history}"
    );
    let (_, history) = t
        .get(&format!("/bpm/accounts/{sid}/transactions"), &token)
        .await;
    let types: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["transfer", "withdrawal", "deposit"], "newest first");

    // Idempotency-Key: replayed, not applied twice; another body is a conflict.
    let keyed = |body: Value| {
        t.client
            .post(t.url("/bpm/transactions"))
            .bearer_auth(&token)
            .header("idempotency-key", "k-1")
            .json(&body)
            .send()
    };
    let deposit = json!({"type": "deposit", "accountId": sid, "amount": 50});
    let first: Value = keyed(deposit.clone()).await.unwrap().json().await.unwrap();
    let again = keyed(deposit.clone()).await.unwrap();
    assert_eq!(again.status(), 201);
    assert_eq!(again.json::<Value>().await.unwrap(), first);
    let (_, acc) = t.get(&format!("/bpm/accounts/{sid}"), &token).await;
    assert_eq!(acc["balance"], 550, "the replay applied twice");
    let other = keyed(json!({"type": "deposit", "accountId": sid, "amount": 51}))
        .await
        .unwrap();
    assert_eq!(other.status(), 409);

    // The audit trail of the registration holds its events.
    let events = eventually(Duration::from_secs(5), || async {
        let (_, logs) = t.get("/lgm/logs?correlationId=flow-1", &token).await;
        let types: Vec<String> = logs
            .as_array()?
            .iter()
            .filter_map(|e| e["eventType"].as_str().map(str::to_owned))
            .collect();
        (types.contains(&"user.registered".into()) && types.contains(&"account.created".into()))
            .then_some(types)
    })
    .await
    .expect("the audit trail lacks user.registered or account.created");
    assert_eq!(
        events.iter().filter(|t| *t == "account.created").count(),
        1,
        "{events:?}"
    );

    // Notifications.
    let kinds = eventually(Duration::from_secs(5), || async {
        let (_, list) = t.get("/nsm/notifications", &token).await;
        let kinds: Vec<String> = list
            .as_array()?
            .iter()
            .filter_map(|n| n["kind"].as_str().map(str::to_owned))
            .collect();
        // welcome, then one per account (the default one and the checking
        // one opened above): events arrive after the requests' answers.
        let accounts = kinds.iter().filter(|k| *k == "account_created").count();
        (kinds.contains(&"welcome".into()) && accounts >= 2).then_some(kinds)
    })
    .await
    .expect("welcome or account_created notification missing");
    assert!(kinds.len() >= 3, "{kinds:?}");
    let (_, list) = t.get("/nsm/notifications", &token).await;
    let first_id = list[0]["id"].as_str().unwrap().to_owned();
    let r = t
        .client
        .post(t.url(&format!("/nsm/notifications/{first_id}/read")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (_, list) = t.get("/nsm/notifications", &token).await;
    let read = list
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["id"] == first_id.as_str())
        .unwrap();
    assert!(read["readAt"].is_string(), "{read}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_client_gets_new_notifications_live() {
    let t = TestHost::start().await;
    let (_, token) = t.user("wendy").await;
    default_account(&t, &token).await;
    let ws_base = t.base.replace("http://", "ws://");

    // A bad or missing token never gets a socket.
    for url in [
        format!("{ws_base}/nsm/ws"),
        format!("{ws_base}/nsm/ws?access_token=nope"),
    ] {
        match tokio_tungstenite::connect_async(url.as_str()).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 401)
            }
            other => panic!("{url}: expected 401, got {:?}", other.map(|_| ())),
        }
    }

    // Token in the query string; a second client with it in the header.
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("{ws_base}/nsm/ws?access_token={token}"))
            .await
            .unwrap();
    let mut request =
        tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(format!(
            "{ws_base}/nsm/ws"
        ))
        .unwrap();
    request
        .headers_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws2, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    // A client that vanishes does not disturb the others.
    let (gone, _) =
        tokio_tungstenite::connect_async(format!("{ws_base}/nsm/ws?access_token={token}"))
            .await
            .unwrap();
    drop(gone);
    tokio::time::sleep(Duration::from_millis(100)).await;

    let (s, account) = t
        .post("/bpm/accounts", &token, &json!({"accountType": "checking"}))
        .await;
    assert_eq!(s, 201);
    for socket in [&mut ws, &mut ws2] {
        let frame = tokio::time::timeout(Duration::from_secs(5), socket.next())
            .await
            .expect("no live notification within 5 s")
            .unwrap()
            .unwrap();
        let pushed: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
        assert_eq!(pushed["kind"], "account_created", "{pushed}");
        assert!(
            pushed["body"].as_str().is_some() && pushed["id"].as_str().is_some(),
            "{pushed}"
        );
        let (_, list) = t.get("/nsm/notifications", &token).await;
        assert!(
            list.as_array().unwrap().iter().any(|n| n == &pushed),
            "pushed item differs from the list item"
        );
    }
    let _ = account;
    t.stop().await;
}

fn parts(token: &str) -> (String, Value, String) {
    let mut it = token.split('.');
    let (h, p, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    let payload: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (h.to_owned(), payload, s.to_owned())
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_tokens_get_401_at_the_gateway() {
    let t = TestHost::start().await;
    let (_, token) = t.user("mallory").await;
    let (s, _) = t.get("/iam/me", &token).await;
    assert_eq!(s, 200);
    let (header, claims, signature) = parts(&token);
    let kid = serde_json::from_slice::<Value>(&URL_SAFE_NO_PAD.decode(&header).unwrap()).unwrap()
        ["kid"]
        .clone();

    // The host's own key, to forge otherwise-valid tokens with bad claims.
    // (The operator key lives in a folder of its own beside them.)
    let key_file = std::fs::read_dir(t.dir.path().join("keys"))
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .find(|path| path.extension().is_some_and(|x| x == "pem"))
        .unwrap();
    let host_key =
        jsonwebtoken::EncodingKey::from_ed_pem(&std::fs::read(key_file).unwrap()).unwrap();
    let sign_eddsa = |claims: &Value| {
        let mut h = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::EdDSA);
        h.kid = kid.as_str().map(str::to_owned);
        jsonwebtoken::encode(&h, claims, &host_key).unwrap()
    };
    let now = claims["iat"].as_u64().unwrap();
    let mut expired = claims.clone();
    expired["exp"] = json!(now - 3600);
    expired["iat"] = json!(now - 7200);
    expired["nbf"] = json!(now - 7200);
    let mut future = claims.clone();
    future["nbf"] = json!(now + 3600);
    let mut foreign = claims.clone();
    foreign["iss"] = json!("someone-else");
    let mut flipped = claims.clone();
    flipped["sub"] = json!("someone-else");
    let mut hs = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    hs.kid = kid.as_str().map(str::to_owned);

    let cases = [
        (
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT"})),
                b64(&claims)
            ),
        ),
        (
            "HS256 with a guessed key",
            jsonwebtoken::encode(
                &hs,
                &claims,
                &jsonwebtoken::EncodingKey::from_secret(b"secret"),
            )
            .unwrap(),
        ),
        (
            "flipped payload",
            format!("{header}.{}.{signature}", b64(&flipped)),
        ),
        ("stripped signature", format!("{header}.{}.", b64(&claims))),
        ("expired", sign_eddsa(&expired)),
        ("not yet valid", sign_eddsa(&future)),
        ("wrong issuer", sign_eddsa(&foreign)),
        ("garbage", "a.b.c".to_string()),
    ];
    assert!(sign_eddsa(&claims).len() > 10);
    let (s, _) = t.get("/iam/me", &sign_eddsa(&claims)).await;
    assert_eq!(s, 200, "the forging helper itself is broken");
    for (name, bad) in cases {
        for path in [
            "/iam/me",
            "/bpm/accounts",
            "/lgm/logs",
            "/nsm/notifications",
        ] {
            let (s, body) = t.get(path, &bad).await;
            assert_eq!(s, 401, "{name} on {path}: {body}");
            assert_eq!(body["error"]["code"], "unauthorized", "{name}");
        }
    }
    // No token at all: the routes that need a caller say so themselves.
    let r = t.client.get(t.url("/bpm/accounts")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = t
        .client
        .get(t.url("/bpm/accounts"))
        .header("authorization", "Basic abc")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_never_sees_another_users_data() {
    let t = TestHost::start().await;
    let (bob, bob_token) = t.user("bob").await;
    let (carol, carol_token) = t.user("carol").await;
    let bob_account = default_account(&t, &bob_token).await;
    default_account(&t, &carol_token).await;
    let bid = bob_account["id"].as_str().unwrap();

    let carols = accounts(&t, &carol_token).await;
    assert!(
        carols.iter().all(|a| a["userId"] == carol.as_str()),
        "{carols:?}"
    );
    let (s, _) = t.get(&format!("/bpm/accounts/{bid}"), &carol_token).await;
    assert_eq!(s, 404);
    let (s, _) = t
        .get(&format!("/bpm/accounts/{bid}/transactions"), &carol_token)
        .await;
    assert_eq!(s, 404);
    let (s, _) = t
        .post(
            "/bpm/transactions",
            &carol_token,
            &json!({"type": "withdrawal", "accountId": bid, "amount": 1}),
        )
        .await;
    assert_eq!(s, 404);

    let (_, logs) = t.get("/lgm/logs?limit=1000", &carol_token).await;
    assert!(!logs.as_array().unwrap().is_empty());
    assert!(
        logs.as_array()
            .unwrap()
            .iter()
            .all(|e| e["data"]["userId"] == carol.as_str()),
        "{logs}"
    );
    let (_, notes) = eventually(Duration::from_secs(5), || async {
        let (s, n) = t.get("/nsm/notifications", &carol_token).await;
        (!n.as_array()?.is_empty()).then_some((s, n))
    })
    .await
    .unwrap();
    assert!(
        notes
            .as_array()
            .unwrap()
            .iter()
            .all(|n| n["userId"] == carol.as_str()),
        "{notes}"
    );
    let (_, bob_notes) = t.get("/nsm/notifications", &bob_token).await;
    if let Some(id) = bob_notes[0]["id"].as_str() {
        let r = t
            .client
            .post(t.url(&format!("/nsm/notifications/{id}/read")))
            .bearer_auth(&carol_token)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    // An admin sees everyone's events.
    let admin = t.admin().await;
    let (_, all) = t.get("/lgm/logs?limit=1000", &admin).await;
    let users: Vec<&str> = all
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["data"]["userId"].as_str())
        .collect();
    assert!(users.contains(&bob.as_str()) && users.contains(&carol.as_str()));
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_me_password_and_jwks() {
    let t = TestHost::start().await;
    let (id, token) = t.user("dave").await;
    assert_eq!(t.login("dave", "wrong password!").await, Err(401));
    let wrong = t
        .client
        .post(t.url("/iam/login"))
        .json(&json!({"username": "dave", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    let wrong_body: Value = wrong.json().await.unwrap();
    let unknown = t
        .client
        .post(t.url("/iam/login"))
        .json(&json!({"username": "nobody", "password": "wrong password!"}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 401);
    assert_eq!(
        unknown.json::<Value>().await.unwrap(),
        wrong_body,
        "unknown user and wrong password must look alike"
    );
    assert_eq!(wrong_body["error"]["code"], "invalid_credentials");

    let (s, me) = t.get("/iam/me", &token).await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], id.as_str());
    assert_eq!(me["username"], "dave");
    assert!(!me.to_string().to_lowercase().contains("argon2"), "{me}");

    let change = |current: &str, new: &str| {
        t.client
            .put(t.url("/iam/password"))
            .bearer_auth(&token)
            .json(&json!({"currentPassword": current, "newPassword": new}))
            .send()
    };
    assert_eq!(
        change("not the password", "another long one")
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        change("correct horse battery", "another long one")
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(t.login("dave", "correct horse battery").await, Err(401));
    assert!(t.login("dave", "another long one").await.is_ok());

    let (_, admin_me) = t.get("/iam/me", &t.admin().await).await;
    assert!(
        admin_me["roles"]
            .as_array()
            .unwrap()
            .contains(&json!("admin")),
        "{admin_me}"
    );
    assert!(
        !me["roles"].as_array().unwrap().contains(&json!("admin")),
        "{me}"
    );

    let jwks: Value = t.json("/iam/.well-known/jwks.json").await;
    let header: Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(token.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let key = &jwks["keys"][0];
    assert_eq!(key["kid"], header["kid"]);
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    // A client verifies the token with the published key alone.
    let decoding =
        jsonwebtoken::DecodingKey::from_ed_components(key["x"].as_str().unwrap()).unwrap();
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::EdDSA);
    validation.set_issuer(&["weft"]);
    assert!(jsonwebtoken::decode::<Value>(&token, &decoding, &validation).is_ok());
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_handler_is_retried_then_kept_as_a_dead_letter() {
    let t = TestHost::start().await;
    let shared = t.host.as_ref().unwrap().shared().clone();
    let poison = common::event("poison-1", "faulty.poison", json!({}), "poison");
    let started = std::time::Instant::now();
    shared.bus.publish(vec![poison]).await.unwrap();
    let health = eventually(Duration::from_secs(5), || async {
        let h: Value = t.json("/faulty/health").await;
        (h["deadLetters"] == 1).then_some(h)
    })
    .await
    .expect("the poison event never became a dead letter");
    // 3 deliveries: backoff 50 ms then 100 ms.
    assert_eq!(health["failed"], 3, "{health}");
    assert!(
        started.elapsed() >= Duration::from_millis(150),
        "{:?}",
        started.elapsed()
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    let h: Value = t.json("/faulty/health").await;
    assert_eq!(h["failed"], 3, "delivered again after the dead letter: {h}");
    t.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_repeated_user_registered_opens_no_second_account() {
    let t = TestHost::start().await;
    let (id, token) = t.user("erin").await;
    default_account(&t, &token).await;
    let shared = t.host.as_ref().unwrap().shared().clone();
    let data = json!({"userId": id, "username": "erin", "email": "erin@example.com", "orgId": "o"});
    let again = |event_id: &str| common::event(event_id, "user.registered", data.clone(), "again");
    // The same event id twice, and a new id for the same user.
    let bpm = shared.components["bpm"].clone();
    // A redelivered id is skipped by the host's inbox (counted as a
    // duplicate); a new id reaches the component, which must see that the
    // user has an account already.
    let seen = || {
        use std::sync::atomic::Ordering::Relaxed;
        bpm.stats.handled.load(Relaxed) + bpm.stats.duplicates.load(Relaxed)
    };
    let before = seen();
    let duplicates_before = bpm
        .stats
        .duplicates
        .load(std::sync::atomic::Ordering::Relaxed);
    shared
        .bus
        .publish(vec![again("dup-1"), again("dup-1"), again("dup-2")])
        .await
        .unwrap();
    // On NATS the stream itself drops the second dup-1 (same Nats-Msg-Id).
    let expected = if common::over_nats() { 2 } else { 3 };
    eventually(Duration::from_secs(5), || async {
        (seen() >= before + expected).then_some(())
    })
    .await
    .expect("bpm did not handle the repeated events");
    if !common::over_nats() {
        assert_eq!(
            bpm.stats
                .duplicates
                .load(std::sync::atomic::Ordering::Relaxed),
            duplicates_before + 1,
            "the second dup-1 was not recognised by the inbox"
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(accounts(&t, &token).await.len(), 1);
    let admin = t.admin().await;
    let (_, logs) = t
        .get(
            "/lgm/logs?correlationId=again&eventType=account.created",
            &admin,
        )
        .await;
    assert_eq!(logs.as_array().unwrap().len(), 0, "{logs}");
    t.stop().await;
}

#[test]
fn weft_keys_rotate_adds_a_signing_key_and_keeps_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let toml = dir.path().join("runtime.toml");
    std::fs::write(&toml, "version = 1\n[data]\ndir = \"data\"\n").unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_weft"))
            .args(args)
            .arg("--config")
            .arg(&toml)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let listed = run(&["keys", "list"]);
    assert_eq!(listed.lines().count(), 1, "{listed}");
    assert!(listed.contains("signs and verifies"));
    let old_kid = listed.split_whitespace().next().unwrap().to_owned();
    let rotated = run(&["keys", "rotate"]);
    let lines: Vec<&str> = rotated.lines().collect();
    assert_eq!(lines.len(), 3, "{rotated}");
    assert!(lines[1].contains("signs and verifies") && !lines[1].starts_with(&old_kid));
    assert!(lines[2].starts_with(&old_kid) && lines[2].ends_with(" verifies"));
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn socket(t: &TestHost, token: &str) -> Socket {
    let url = format!(
        "{}/nsm/ws?access_token={token}",
        t.base.replace("http://", "ws://")
    );
    tokio_tungstenite::connect_async(url).await.unwrap().0
}

/// The close frame `ws` gets within `within`; None if it stays open.
async fn closed_within(
    ws: &mut Socket,
    within: Duration,
) -> Option<tokio_tungstenite::tungstenite::protocol::CloseFrame> {
    use tokio_tungstenite::tungstenite::Message;
    tokio::time::timeout(within, async {
        while let Some(message) = ws.next().await {
            match message {
                Ok(Message::Close(frame)) => return frame,
                Err(_) => return None,
                Ok(_) => {}
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_session_is_refused_everywhere_at_once_and_after_a_restart() {
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
    let t = TestHost::start().await;
    let password = "correct horse battery";
    let (_, phone) = t.user("sven").await;
    let laptop = t.login("sven", password).await.unwrap();
    let mut phone_ws = socket(&t, &phone).await;
    let mut laptop_ws = socket(&t, &laptop).await;

    // Logout ends the phone's session: at the gateway for every component,
    // and its socket is closed with policy violation.
    let (status, _) = t.post("/iam/logout", &phone, &json!({})).await;
    assert_eq!(status, 204);
    let frame = closed_within(&mut phone_ws, Duration::from_secs(1))
        .await
        .expect("the phone's socket closed within 1 s of logout");
    assert_eq!(frame.code, CloseCode::Policy);
    for path in ["/iam/me", "/bpm/accounts", "/nsm/notifications"] {
        assert_eq!(t.get(path, &phone).await.0, 401, "{path}");
        assert_eq!(t.get(path, &laptop).await.0, 200, "{path}");
    }

    // A password change ends the rest.
    let r = t
        .client
        .put(t.url("/iam/password"))
        .bearer_auth(&laptop)
        .json(&json!({"currentPassword": password, "newPassword": "a brand new secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let frame = closed_within(&mut laptop_ws, Duration::from_secs(1))
        .await
        .expect("the laptop's socket closed within 1 s of the password change");
    assert_eq!(frame.code, CloseCode::Policy);
    assert_eq!(t.get("/bpm/accounts", &laptop).await.0, 401);
    let fresh = t.login("sven", "a brand new secret").await.unwrap();
    assert_eq!(t.get("/bpm/accounts", &fresh).await.0, 200);

    // Revocations are written with the commit: a restart keeps them.
    let dir = t.stop().await;
    let t = TestHost::start_in(dir).await;
    for token in [&phone, &laptop] {
        assert_eq!(t.get("/iam/me", token).await.0, 401);
    }
    assert_eq!(t.get("/iam/me", &fresh).await.0, 200);
    // And a revoked token cannot open a socket.
    match tokio_tungstenite::connect_async(format!(
        "{}/nsm/ws?access_token={phone}",
        t.base.replace("http://", "ws://")
    ))
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => assert_eq!(resp.status(), 401),
        other => panic!("expected 401, got {:?}", other.map(|_| ())),
    }
    t.stop().await;
}
