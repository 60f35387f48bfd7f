//! Throughput benchmarks, each reported as a ratio to a ceiling measured in
//! the same run on the same machine:
//!
//! - JWKS requests/s against a bare poem handler returning the same bytes
//!   (the framework's ceiling);
//! - refresh rotations/s against a bare poem handler doing one single-row
//!   `UPDATE` on the same database (the database's ceiling);
//! - client-credentials token issuance/s against a bare poem handler doing
//!   one primary-key `SELECT` on the same database;
//! - logins/s against raw argon2id hashes/s with the same parameters and the
//!   same number of threads (the hashing ceiling).
//!
//! `cargo bench --bench throughput` (SQLite). Set LATCHKEY_BENCH_DATABASE_URL
//! to an admin URL of a PostgreSQL server to run the database benchmarks
//! there instead. LATCHKEY_BENCH_SECONDS sets the duration of each run.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use latchkey::clock::SystemClock;
use latchkey::config::{OWASP_ARGON2_ITERATIONS, OWASP_ARGON2_MEMORY_KIB, Settings};
use latchkey::passwords::{Password, PasswordHasher, PasswordPolicy};
use latchkey::startup::Application;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route, get, handler, post};
use sea_orm::{ConnectionTrait, Database, DatabaseConnection};
use serde_json::{Value, json};

const CONCURRENCY: usize = 32;

fn seconds() -> Duration {
    Duration::from_secs(
        std::env::var("LATCHKEY_BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(5),
    )
}

/// Run `make` from `CONCURRENCY` tasks for the bench duration; requests/s.
async fn measure<F, Fut>(name: &str, make: F) -> f64
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let make = Arc::new(make);
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + seconds();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for worker in 0..CONCURRENCY {
        let (make, done, failed) = (make.clone(), done.clone(), failed.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = 0;
            while Instant::now() < deadline {
                if make(worker, i).await {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                i += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let rate = done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64();
    let failures = failed.load(Ordering::Relaxed);
    println!(
        "  {name:<44} {rate:>10.0} req/s{}",
        if failures > 0 { format!(" ({failures} failed)") } else { String::new() }
    );
    rate
}

async fn serve(app: impl poem::Endpoint + 'static) -> String {
    let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(app));
    format!("http://{addr}")
}

struct BenchDb {
    url: String,
    _dir: tempfile::TempDir,
}

async fn bench_db() -> BenchDb {
    let dir = tempfile::tempdir().unwrap();
    match std::env::var("LATCHKEY_BENCH_DATABASE_URL") {
        Ok(admin) if !admin.is_empty() => {
            let name = format!("latchkey_bench_{}", uuid::Uuid::new_v4().simple());
            let conn = Database::connect(&admin).await.unwrap();
            conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
            let base = admin.rsplit_once('/').unwrap().0;
            BenchDb { url: format!("{base}/{name}"), _dir: dir }
        }
        _ => {
            BenchDb { url: format!("sqlite://{}?mode=rwc", dir.path().join("bench.db").display()), _dir: dir }
        }
    }
}

fn production_like(db: &BenchDb, dir: &std::path::Path) -> Settings {
    let mut s = Settings::for_tests(&db.url, dir);
    s.argon2_memory_kib = OWASP_ARGON2_MEMORY_KIB;
    s.argon2_iterations = OWASP_ARGON2_ITERATIONS;
    s.password_hash_concurrency = std::thread::available_parallelism().map_or(2, |n| n.get());
    s.max_sessions_per_user = 64;
    s.refresh_grace_period = Duration::ZERO;
    s
}

#[handler]
fn bare_static(Data(body): Data<&bytes::Bytes>) -> poem::Response {
    poem::Response::builder().content_type("application/json").body(body.clone())
}

#[handler]
async fn bare_update(Data(db): Data<&DatabaseConnection>) -> poem::Response {
    let id = rand::random_range(1..=1000i64);
    let ok = db
        .execute_raw(sea_orm::Statement::from_sql_and_values(
            db.get_database_backend(),
            match db.get_database_backend() {
                sea_orm::DbBackend::Postgres => "UPDATE bench_rows SET counter = counter + 1 WHERE id = $1",
                _ => "UPDATE bench_rows SET counter = counter + 1 WHERE id = ?",
            },
            [id.into()],
        ))
        .await
        .is_ok();
    poem::Response::builder()
        .status(if ok { poem::http::StatusCode::OK } else { poem::http::StatusCode::INTERNAL_SERVER_ERROR })
        .body("{}")
}

#[handler]
async fn bare_select(Data(db): Data<&DatabaseConnection>) -> poem::Response {
    use sea_orm::EntityTrait;
    let ok = latchkey::entities::users::Entity::find_by_id(uuid::Uuid::nil()).one(db).await.is_ok();
    poem::Response::builder()
        .status(if ok { poem::http::StatusCode::OK } else { poem::http::StatusCode::INTERNAL_SERVER_ERROR })
        .body("{}")
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(run());
}

async fn run() {
    let db = bench_db().await;
    let settings = production_like(&db, db._dir.path());
    println!(
        "latchkey throughput ({} s per run, {CONCURRENCY} concurrent clients, {} CPUs, {})",
        seconds().as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        if db.url.starts_with("sqlite") { "SQLite" } else { "PostgreSQL" }
    );
    let app = Application::build(settings.clone(), Arc::new(SystemClock)).await.unwrap();
    let latchkey = format!("http://{}", app.address());
    // The ceiling handler shares latchkey's pool, so both see the same
    // connection settings (WAL, synchronous=NORMAL on SQLite).
    let shared_db = app.state().db.clone();
    let shared_select_db = shared_db.clone();
    let app_db = shared_db.clone();
    tokio::spawn(app.run_until(std::future::pending()));
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONCURRENCY).build().unwrap();

    // --- JWKS vs a bare handler serving the same bytes.
    println!("\nJWKS");
    let jwks =
        client.get(format!("{latchkey}/.well-known/jwks.json")).send().await.unwrap().bytes().await.unwrap();
    let bare = serve(Route::new().at("/", get(bare_static)).data(jwks)).await;
    let c = client.clone();
    let ceiling = measure("bare poem handler, same bytes (ceiling)", move |_, _| {
        let (c, url) = (c.clone(), bare.clone());
        async move { c.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let (c, url) = (client.clone(), format!("{latchkey}/.well-known/jwks.json"));
    let rate = measure("GET /.well-known/jwks.json", move |_, _| {
        let (c, url) = (c.clone(), url.clone());
        async move { c.get(&url).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    println!("  ratio: {:.2} of the framework ceiling", rate / ceiling);

    // --- Refresh rotation vs one single-row UPDATE through a bare handler.
    println!("\nRefresh rotation");
    let conn = shared_db;
    conn.execute_unprepared("CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, counter BIGINT NOT NULL)")
        .await
        .unwrap();
    let values: Vec<String> = (1..=1000).map(|i| format!("({i}, 0)")).collect();
    conn.execute_unprepared(&format!("INSERT INTO bench_rows (id, counter) VALUES {}", values.join(",")))
        .await
        .unwrap();
    let bare = serve(Route::new().at("/", post(bare_update)).data(conn)).await;
    let c = client.clone();
    let ceiling = measure("bare handler, one UPDATE (database ceiling)", move |_, _| {
        let (c, url) = (c.clone(), bare.clone());
        async move { c.post(&url).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    client
        .post(format!("{latchkey}/auth/register"))
        .json(&json!({"username": "bench", "password": "benchmark password"}))
        .send()
        .await
        .unwrap();
    let mut chains = Vec::new();
    for _ in 0..CONCURRENCY {
        let tokens: Value = client
            .post(format!("{latchkey}/auth/login"))
            .json(&json!({"username": "bench", "password": "benchmark password"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        chains.push(tokio::sync::Mutex::new(tokens["refresh_token"].as_str().unwrap().to_owned()));
    }
    let chains = Arc::new(chains);
    let (c, url) = (client.clone(), format!("{latchkey}/auth/refresh"));
    let rate = measure("POST /auth/refresh (rotation + new access token)", move |worker, _| {
        let (c, url, chains) = (c.clone(), url.clone(), chains.clone());
        async move {
            let mut token = chains[worker].lock().await;
            let Ok(resp) = c.post(&url).json(&json!({"refresh_token": *token})).send().await else {
                return false;
            };
            let Ok(body) = resp.json::<Value>().await else { return false };
            match body["refresh_token"].as_str() {
                Some(next) => {
                    *token = next.to_owned();
                    true
                }
                None => false,
            }
        }
    })
    .await;
    println!("  ratio: {:.2} of the database ceiling", rate / ceiling);

    // --- Token issuance (client credentials) vs one primary-key SELECT.
    println!("\nToken issuance (client_credentials)");
    let bare = serve(Route::new().at("/", post(bare_select)).data(shared_select_db)).await;
    let c = client.clone();
    let ceiling = measure("bare handler, one SELECT by key (database ceiling)", move |_, _| {
        let (c, url) = (c.clone(), bare.clone());
        async move { c.post(&url).send().await.is_ok_and(|r| r.status().is_success()) }
    })
    .await;
    let service = latchkey::clients::create(
        &app_db,
        chrono::DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(),
        latchkey::clients::ClientMetadata {
            client_name: Some("bench".into()),
            grant_types: Some(vec!["client_credentials".into()]),
            scope: Some("tasks:read".into()),
            ..Default::default()
        },
        &[latchkey::config::SigningAlg::Rs256],
    )
    .await
    .unwrap();
    let secret = service.1.clone().unwrap();
    let (c, url, id) = (client.clone(), format!("{latchkey}/oauth/token"), service.0.client_id.clone());
    let rate = measure("POST /oauth/token (client_credentials)", move |_, _| {
        let (c, url, id, secret) = (c.clone(), url.clone(), id.clone(), secret.clone());
        async move {
            c.post(&url)
                .basic_auth(id, Some(secret))
                .form(&[("grant_type", "client_credentials")])
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    println!("  ratio: {:.2} of the database ceiling", rate / ceiling);

    // --- Login vs raw argon2.
    println!(
        "\nLogin (argon2id m={} KiB, t={}, p=1)",
        settings.argon2_memory_kib, settings.argon2_iterations
    );
    let threads = settings.password_hash_concurrency;
    let hasher =
        PasswordHasher::new(PasswordPolicy::from_settings(&settings).unwrap(), threads, 1024).await.unwrap();
    let password = Password::new("benchmark password").unwrap();
    let phc = hasher.hash(&password).await.unwrap();
    let ceiling = measure(&format!("raw argon2id verify, {threads} threads (ceiling)"), move |_, _| {
        let (hasher, password, phc) = (hasher.clone(), password.clone(), phc.clone());
        async move { hasher.verify(&password, Some(&phc)).await.is_ok() }
    })
    .await;
    let (c, url) = (client.clone(), format!("{latchkey}/auth/login"));
    let rate = measure("POST /auth/login", move |_, _| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            c.post(&url)
                .json(&json!({"username": "bench", "password": "benchmark password"}))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        }
    })
    .await;
    println!("  ratio: {:.2} of the raw argon2 rate", rate / ceiling);
}
