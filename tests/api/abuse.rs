//! Abuse resistance: registration limits, the hashing pool under a
//! registration flood, IPv6 grouping, distributed attacks on one username.
//! Every client address is set through a trusted `X-Forwarded-For`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde_json::json;

use crate::db_test;
use crate::helpers::{Backend, TestApp, assert_error};
use crate::oauth_support::PASSWORD;

async fn spawn(
    backend: Backend,
    configure: impl FnOnce(&mut latchkey::config::Settings) + Send + 'static,
) -> TestApp {
    TestApp::builder(backend)
        .configure(move |s| {
            s.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()];
            configure(s);
        })
        .spawn()
        .await
}

async fn register_from(app: &TestApp, ip: &str, username: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/register"))
        .header("x-forwarded-for", ip)
        .json(&json!({"username": username, "password": PASSWORD}))
        .send()
        .await
        .unwrap()
}

async fn login_from(app: &TestApp, ip: &str, username: &str, password: &str) -> reqwest::Response {
    app.client
        .post(app.url("/auth/login"))
        .header("x-forwarded-for", ip)
        .json(&json!({"username": username, "password": password}))
        .send()
        .await
        .unwrap()
}

fn retry_after(resp: &reqwest::Response) -> u64 {
    resp.headers()["retry-after"].to_str().unwrap().parse().unwrap()
}

db_test!(async fn registrations_are_limited_per_address(backend) {
    let app = spawn(backend, |s| s.register_rate_per_ip = 3).await;
    for i in 0..3 {
        assert_eq!(register_from(&app, "203.0.113.5", &format!("flood{i}")).await.status(), 201);
    }
    // Invalid or not, every request from there now waits.
    for username in ["flood3", "x"] {
        let resp = register_from(&app, "203.0.113.5", username).await;
        let wait = retry_after(&resp);
        assert!((1..=20 * 60).contains(&wait), "{wait}");
        assert_error(resp, 429, "rate_limited").await;
    }
    // Another address has its own budget, and logins their own.
    assert_eq!(register_from(&app, "198.51.100.7", "neighbour").await.status(), 201);
    assert_eq!(login_from(&app, "203.0.113.5", "flood0", PASSWORD).await.status(), 200);
    // One registration every 20 minutes refills.
    let resp = register_from(&app, "203.0.113.5", "flood3").await;
    app.advance(Duration::from_secs(retry_after(&resp)));
    assert_eq!(register_from(&app, "203.0.113.5", "flood3").await.status(), 201);
    assert_eq!(register_from(&app, "203.0.113.5", "flood4").await.status(), 429);
});

db_test!(async fn ipv6_addresses_of_one_56_share_a_budget(backend) {
    let app = spawn(backend, |s| {
        s.register_rate_per_ip = 3;
        s.login_rate_per_ip = 3;
    })
    .await;
    // Three /64s of one customer's /56...
    for (i, ip) in ["2001:db8:5:1200::1", "2001:db8:5:12ab::2", "2001:db8:5:12ff:ffff::3"].iter().enumerate() {
        assert_eq!(register_from(&app, ip, &format!("v6user{i}")).await.status(), 201, "{ip}");
    }
    // ...used the budget for every address in it.
    for ip in ["2001:db8:5:1234::9", "2001:db8:5:12fe::1"] {
        assert_error(register_from(&app, ip, "v6user9").await, 429, "rate_limited").await;
    }
    // The next /56 (and the one before) are other customers.
    assert_eq!(register_from(&app, "2001:db8:5:1300::1", "v6next").await.status(), 201);
    assert_eq!(register_from(&app, "2001:db8:5:11ff::1", "v6prev").await.status(), 201);
    // Password checks are keyed the same way.
    for ip in ["2001:db8:7:100::1", "2001:db8:7:1aa::1", "2001:db8:7:1ff::1"] {
        assert_eq!(login_from(&app, ip, "v6user0", PASSWORD).await.status(), 200, "{ip}");
    }
    assert_error(login_from(&app, "2001:db8:7:180::5", "v6user0", PASSWORD).await, 429, "rate_limited").await;
    assert_eq!(login_from(&app, "2001:db8:7:200::1", "v6user0", PASSWORD).await.status(), 200);
});

db_test!(async fn a_registration_flood_leaves_logins_working(backend) {
    // Two hashing threads, a short queue, and real argon2 parameters so
    // that hashing, not HTTP, is the bottleneck.
    let app = Arc::new(
        spawn(backend, |s| {
            s.password_hash_concurrency = 2;
            s.password_hash_queue = 2;
            s.argon2_memory_kib = 19_456;
            s.argon2_iterations = 2;
        })
        .await,
    );
    app.create_user("user", PASSWORD).await;
    let stop = Arc::new(AtomicBool::new(false));
    // Twelve clients register as fast as they can, each request from a new
    // address (so the per-address limit plays no part).
    let flood: Vec<_> = (0..12u32)
        .map(|worker| {
            let (app, stop) = (Arc::clone(&app), Arc::clone(&stop));
            tokio::spawn(async move {
                let mut statuses = Vec::new();
                let mut n = 0u32;
                while !stop.load(Ordering::SeqCst) {
                    let ip = format!("10.{worker}.{}.{}", n / 250, n % 250 + 1);
                    let resp = register_from(&app, &ip, &format!("bot{worker}x{n}")).await;
                    let status = resp.status().as_u16();
                    if status == 503 {
                        // The documented answer: retry in a second.
                        assert_eq!(retry_after(&resp), 1);
                        assert_error(resp, 503, "temporarily_unavailable").await;
                    }
                    statuses.push(status);
                    n += 1;
                }
                statuses
            })
        })
        .collect();
    // Let the flood fill the pool, then sign in repeatedly meanwhile.
    tokio::time::sleep(Duration::from_millis(300)).await;
    for i in 0..10 {
        let resp = login_from(&app, "192.0.2.1", "user", PASSWORD).await;
        assert_eq!(resp.status(), 200, "login {i} during the flood: {}", resp.text().await.unwrap());
    }
    stop.store(true, Ordering::SeqCst);
    let mut statuses = Vec::new();
    for worker in flood {
        statuses.extend(worker.await.unwrap());
    }
    let created = statuses.iter().filter(|s| **s == 201).count();
    let busy = statuses.iter().filter(|s| **s == 503).count();
    assert!(created > 0, "registration still works, within its share: {statuses:?}");
    assert!(busy > 0, "the flood saturated the registration share: {statuses:?}");
    assert_eq!(created + busy, statuses.len(), "{statuses:?}");
});

db_test!(async fn a_distributed_attack_on_one_username_slows_new_addresses_too(backend) {
    let app = spawn(backend, |s| {
        s.login_rate_per_ip = 30;
        s.lockout_threshold = 3;
        s.username_failure_rate = 5;
        s.lockout_duration = Duration::from_secs(900);
    })
    .await;
    app.create_user("user", PASSWORD).await;
    app.create_user("other", PASSWORD).await;
    // The real user signed in from home before the attack.
    assert_eq!(login_from(&app, "192.0.2.10", "user", PASSWORD).await.status(), 200);

    // Forty addresses guess at once, one guess each.
    let attackers: Vec<String> = (0..40).map(|i| format!("10.0.0.{}", i + 1)).collect();
    let guesses = futures_util::future::join_all(
        attackers.iter().map(|ip| login_from(&app, ip, "user", "guess")),
    )
    .await;
    let statuses: Vec<u16> = guesses.iter().map(|r| r.status().as_u16()).collect();
    let tried = statuses.iter().filter(|s| **s == 401).count();
    let refused = statuses.iter().filter(|s| **s == 429).count();
    // Five attempts use the failure limit; the sixth starts the attack and
    // the shared budget allows a burst of five: ten guesses, not forty.
    assert_eq!((tried, refused), (10, 30), "{statuses:?}");

    // A fresh address is slowed for that username...
    let resp = login_from(&app, "198.51.100.77", "user", PASSWORD).await;
    assert!((1..=60).contains(&retry_after(&resp)));
    assert_error(resp, 429, "rate_limited").await;
    // ...but not for another one.
    assert_eq!(login_from(&app, "198.51.100.77", "other", PASSWORD).await.status(), 200);
    // The address the user signed in from before still works.
    assert_eq!(login_from(&app, "192.0.2.10", "user", PASSWORD).await.status(), 200);

    // The attacker keeps going at the budget's pace: about five a minute.
    app.advance(Duration::from_secs(60));
    let more: Vec<String> = (0..20).map(|i| format!("10.1.0.{}", i + 1)).collect();
    let later = futures_util::future::join_all(
        more.iter().map(|ip| login_from(&app, ip, "user", "guess")),
    )
    .await;
    let tried = later.iter().filter(|r| r.status() == 401).count();
    assert_eq!(tried, 5, "a minute later");

    // Fifteen minutes after the last failure the attack state has decayed:
    // the real user signs in from a new address.
    app.advance(Duration::from_secs(901));
    assert_eq!(login_from(&app, "198.51.100.78", "user", PASSWORD).await.status(), 200);
});
