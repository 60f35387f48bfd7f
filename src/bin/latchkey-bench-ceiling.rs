//! Ceilings for `scripts/bench`, in a process of their own (built only with
//! `--features bench`):
//!
//! - `serve ADDR FILE`: a bare poem server answering `GET /` with the bytes
//!   of FILE (the JWKS latchkey served), as `application/json`: the most
//!   any poem handler can do for the same response on this machine;
//! - `crypto SECONDS`: raw ES256 signatures and verifications per second on
//!   one core, with josekit as latchkey uses it: the most a token endpoint or
//!   introspection can do per core;
//! - `update ADDR DATABASE_URL`: a bare poem handler on a pool configured
//!   as latchkey's is, rotating a counter with the conditional `UPDATE` a
//!   refresh makes (`... WHERE id = $1 AND counter = $2`), for tokens
//!   `ID.COUNTER` (rows 1 to 1000): the most a refresh can do;
//! - `revocations DATABASE_URL SECONDS CLIENTS`: on a scratch PostgreSQL
//!   database, CLIENTS tasks end sessions for SECONDS each way: through
//!   latchkey's own cut-off (what a logout does: end the family and write
//!   its `sid` entry on the feed) and as a plain family `UPDATE` through the
//!   same pool (the ceiling).

use std::time::{Duration, Instant};

use josekit::jws::{ES256, JwsHeader};
use josekit::jwt::{self, JwtPayload};
use poem::web::Data;
use poem::{EndpointExt, Route, Server, get, handler, listener::TcpListener};

#[handler]
fn same_bytes(Data(body): Data<&bytes::Bytes>) -> poem::Response {
    poem::Response::builder().content_type("application/json").body(body.clone())
}

fn usage() -> std::process::ExitCode {
    eprintln!(
        "usage: latchkey-bench-ceiling serve ADDR FILE | update ADDR DATABASE_URL | crypto SECONDS | revocations DATABASE_URL SECONDS CLIENTS"
    );
    std::process::ExitCode::from(2)
}

fn main() -> std::process::ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        ["serve", addr, file] => match serve(addr, file) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("latchkey-bench-ceiling: {e}");
                std::process::ExitCode::FAILURE
            }
        },
        ["update", addr, url] => match update(addr, url) {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("latchkey-bench-ceiling: {e:#}");
                std::process::ExitCode::FAILURE
            }
        },
        ["crypto", seconds] => match seconds.parse::<u64>() {
            Ok(seconds) => match crypto(Duration::from_secs(seconds)) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("latchkey-bench-ceiling: {e}");
                    std::process::ExitCode::FAILURE
                }
            },
            Err(_) => usage(),
        },
        ["revocations", url, seconds, clients] => match (seconds.parse::<u64>(), clients.parse::<usize>()) {
            (Ok(seconds), Ok(clients)) => match revocations(url, Duration::from_secs(seconds), clients) {
                Ok(()) => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("latchkey-bench-ceiling: {e:#}");
                    std::process::ExitCode::FAILURE
                }
            },
            _ => usage(),
        },
        _ => usage(),
    }
}

fn serve(addr: &str, file: &str) -> anyhow::Result<()> {
    let body = bytes::Bytes::from(std::fs::read(file)?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let app = Route::new().at("/", get(same_bytes)).data(body);
        Server::new(TcpListener::bind(addr)).run(app).await
    })?;
    Ok(())
}

#[derive(serde::Deserialize)]
struct Rotate {
    refresh_token: String,
}

#[handler]
async fn rotate(
    Data(db): Data<&sea_orm::DatabaseConnection>,
    poem::web::Json(body): poem::web::Json<Rotate>,
) -> poem::Response {
    use sea_orm::{ConnectionTrait, Statement};
    let parsed = body
        .refresh_token
        .split_once('.')
        .and_then(|(id, n)| Some((id.parse::<i64>().ok()?, n.parse::<i64>().ok()?)));
    let Some((id, counter)) = parsed else {
        return poem::Response::builder().status(poem::http::StatusCode::BAD_REQUEST).finish();
    };
    let result = db
        .execute_raw(Statement::from_sql_and_values(
            db.get_database_backend(),
            "UPDATE bench_rows SET counter = counter + 1, used_at = now() WHERE id = $1 AND counter = $2",
            [id.into(), counter.into()],
        ))
        .await;
    match result {
        Ok(done) if done.rows_affected() == 1 => poem::Response::builder()
            .content_type("application/json")
            .body(format!(r#"{{"refresh_token":"{id}.{}"}}"#, counter + 1)),
        Ok(_) => poem::Response::builder().status(poem::http::StatusCode::CONFLICT).finish(),
        Err(_) => poem::Response::builder().status(poem::http::StatusCode::SERVICE_UNAVAILABLE).finish(),
    }
}

fn update(addr: &str, url: &str) -> anyhow::Result<()> {
    use sea_orm::ConnectionTrait;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let settings = latchkey::config::Settings::for_tests(url, &std::env::temp_dir());
        let db = latchkey::startup::connect(&settings).await?;
        db.execute_unprepared(
            "DROP TABLE IF EXISTS bench_rows; \
             CREATE TABLE bench_rows (id BIGINT PRIMARY KEY, counter BIGINT NOT NULL, used_at TIMESTAMPTZ); \
             INSERT INTO bench_rows (id, counter) SELECT i, 0 FROM generate_series(1, 1000) AS i",
        )
        .await?;
        let app = Route::new().at("/", poem::post(rotate)).data(db);
        Server::new(TcpListener::bind(addr)).run(app).await?;
        anyhow::Ok(())
    })
}

/// Count operations done on this thread within `window`.
fn rate(window: Duration, mut op: impl FnMut() -> anyhow::Result<()>) -> anyhow::Result<f64> {
    let start = Instant::now();
    let mut count = 0u64;
    while start.elapsed() < window {
        op()?;
        count += 1;
    }
    Ok(count as f64 / start.elapsed().as_secs_f64())
}

fn crypto(window: Duration) -> anyhow::Result<()> {
    let pair = ES256.generate_key_pair()?;
    let signer = ES256.signer_from_der(pair.to_der_private_key())?;
    let verifier = ES256.verifier_from_jwk(&pair.to_jwk_public_key())?;
    let mut header = JwsHeader::new();
    header.set_token_type("at+jwt");
    header.set_key_id("bench");
    let mut payload = JwtPayload::new();
    payload.set_subject("0190f5c1-7d7a-7b3e-9f7e-2a1d3c4b5a69");
    payload.set_issuer("http://127.0.0.1:8080");
    payload.set_audience(vec!["latchkey"]);
    let token = jwt::encode_with_signer(&payload, &header, &signer)?;
    let signs = rate(window, || {
        jwt::encode_with_signer(&payload, &header, &signer)?;
        Ok(())
    })?;
    let verifies = rate(window, || {
        jwt::decode_with_verifier(&token, &verifier)?;
        Ok(())
    })?;
    println!("es256_sign_per_core {signs:.0}");
    println!("es256_verify_per_core {verifies:.0}");
    Ok(())
}

/// Sessions ended per second by `clients` tasks for `window`, each taking
/// the next of `ids` and calling `end` on it.
async fn sessions_per_second<F, Fut>(
    ids: Vec<uuid::Uuid>,
    window: Duration,
    clients: usize,
    end: F,
) -> anyhow::Result<f64>
where
    F: Fn(uuid::Uuid) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let ids = Arc::new(ids);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (ids, next, end) = (ids.clone(), next.clone(), end.clone());
        tasks.push(tokio::spawn(async move {
            let mut done = 0u64;
            while start.elapsed() < window {
                let Some(id) = ids.get(next.fetch_add(1, Ordering::Relaxed)) else {
                    anyhow::bail!("ran out of sessions: create more");
                };
                end(*id).await?;
                done += 1;
            }
            Ok(done)
        }));
    }
    let mut total = 0;
    for task in tasks {
        total += task.await??;
    }
    Ok(total as f64 / start.elapsed().as_secs_f64())
}

fn revocations(url: &str, window: Duration, clients: usize) -> anyhow::Result<()> {
    use latchkey::revocation::{Reach, cut_off};
    use sea_orm::{ConnectionTrait, FromQueryResult, Statement};

    const SESSIONS: u32 = 200_000;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let dir = std::env::temp_dir();
        let settings = latchkey::config::Settings::for_tests(url, &dir);
        let db = latchkey::startup::connect(&settings).await?;
        latchkey::startup::migrate(&db).await?;
        let user = uuid::Uuid::new_v4();
        db.execute_unprepared(&format!(
            "INSERT INTO users (id, username, username_key, password_hash, created_at, updated_at, password_changed_at) \
             VALUES ('{user}', 'bench', 'bench', 'x', now(), now(), now())"
        ))
        .await?;
        #[derive(FromQueryResult)]
        struct Id {
            id: uuid::Uuid,
        }
        let create = || {
            let db = db.clone();
            async move {
                let rows = Id::find_by_statement(Statement::from_string(
                    db.get_database_backend(),
                    format!(
                        "INSERT INTO refresh_families (id, user_id, client_id, scope, counter, auth_time, created_at, \
                         last_used_at, last_rotated_at, expires_at) SELECT gen_random_uuid(), '{user}', 'bench', \
                         'openid', 0, now(), now(), now(), now(), now() + interval '1 day' \
                         FROM generate_series(1, {SESSIONS}) RETURNING id"
                    ),
                ))
                .all(&db)
                .await?;
                anyhow::Ok(rows.into_iter().map(|r| r.id).collect::<Vec<_>>())
            }
        };
        let (first, second, third) = (create().await?, create().await?, create().await?);
        db.execute_unprepared("VACUUM ANALYZE").await?;

        let plain = {
            let db = db.clone();
            sessions_per_second(first, window, clients, move |id| {
                let db = db.clone();
                async move {
                    let now = latchkey::clock::Clock::now(&latchkey::clock::SystemClock);
                    latchkey::refresh::repo::revoke_ids(&db, &[id], now, "logout").await?;
                    Ok(())
                }
            })
            .await?
        };
        let logout = {
            let db = db.clone();
            sessions_per_second(second, window, clients, move |id| {
                let db = db.clone();
                async move {
                    let now = latchkey::clock::Clock::now(&latchkey::clock::SystemClock);
                    let reach = Reach { now, tokens_until: now + chrono::TimeDelta::minutes(15) };
                    cut_off::session(&db, reach, id, "logout").await?;
                    Ok(())
                }
            })
            .await?
        };
        // The same transaction as a logout's, without putting the entry on
        // the feed: what a logout would cost if ordering the feed were free.
        let unordered = {
            let db = db.clone();
            sessions_per_second(third, window, clients, move |id| {
                let db = db.clone();
                async move {
                    use sea_orm::TransactionTrait;
                    let now = latchkey::clock::Clock::now(&latchkey::clock::SystemClock);
                    let txn = db.begin().await?;
                    latchkey::refresh::repo::revoke_ids(&txn, &[id], now, "logout").await?;
                    txn.execute_raw(Statement::from_sql_and_values(
                        txn.get_database_backend(),
                        "INSERT INTO revocations_pending (created_at, kind, value, reason, expires_at) \
                         VALUES ($1, 'sid', $2, 'logout', $3)",
                        [now.into(), id.to_string().into(), (now + chrono::TimeDelta::minutes(15)).into()],
                    ))
                    .await?;
                    txn.commit().await?;
                    Ok(())
                }
            })
            .await?
        };
        println!("plain_family_revocations_per_s {plain:.0}");
        println!("logouts_with_feed_entry_per_s {logout:.0}");
        println!("logout_transactions_left_off_the_feed_per_s {unordered:.0}");
        anyhow::Ok(())
    })
}
