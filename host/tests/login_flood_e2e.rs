//! A flood of wrong-password logins against the real host: the flood gets
//! 429s before any hashing, and another user's requests stay fast. Alone
//! in its test binary, so that no other test shares the cores while it
//! times the bystander.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::TestHost;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_flood_gets_429s_and_leaves_everyone_else_served() {
    let t = std::sync::Arc::new(TestHost::start().await);
    let (_, _) = t.user("target").await;
    let (_, bystander) = t.user("bystander").await;

    let flood: Vec<_> = (0..40)
        .map(|_| {
            let t = t.clone();
            tokio::spawn(async move {
                t.client
                    .post(t.url("/iam/login"))
                    .json(&json!({"username": "target", "password": "not the password"}))
                    .send()
                    .await
                    .unwrap()
            })
        })
        .collect();
    // Meanwhile another user reads and writes IAM, as a client outside
    // the host's runtime (its own thread), as a real client would be.
    let (me, invitations) = (t.url("/iam/me"), t.url("/iam/invitations"));
    let bystander_token = bystander.clone();
    let took = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let mut took = Vec::new();
            for i in 0..40 {
                let asked = Instant::now();
                let request = if i % 2 == 0 {
                    client.get(&me)
                } else {
                    client.post(&invitations).json(&json!({}))
                };
                let status = request
                    .bearer_auth(&bystander_token)
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16();
                took.push(asked.elapsed());
                assert!(status == 200 || status == 201, "{status}");
            }
            took
        })
    });
    let mut refused = 0;
    let mut wrong = 0;
    for answer in flood {
        let answer = answer.await.unwrap();
        match answer.status().as_u16() {
            429 => {
                let wait: u32 = answer.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .unwrap();
                assert!(wait > 0 && wait <= 900, "{wait}");
                let body: Value = answer.json().await.unwrap();
                assert_eq!(body["error"]["code"], "too_many_requests");
                refused += 1;
            }
            401 => wrong += 1,
            other => panic!("a flood login got {other}"),
        }
    }
    // Five attempts per account in the window; the rest cost nothing.
    assert_eq!((wrong, refused), (5, 35));
    let mut took = took.join().unwrap();
    took.sort();
    // Nearest rank: of 40, the slowest.
    let p99 = took[(took.len() * 99).div_ceil(100) - 1];
    eprintln!(
        "beside the flood: p50 {:?}, p99 {p99:?}",
        took[took.len() / 2]
    );
    assert!(
        p99 < Duration::from_millis(200),
        "another user's requests took {p99:?} at p99 beside the flood"
    );
}
