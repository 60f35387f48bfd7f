//! Bulk revocation on a million refresh families, on PostgreSQL.
//!
//! Creates a scratch database, fills `refresh_families` with 1,000,000 live
//! families (set-based `INSERT ... SELECT generate_series`), then times the
//! bulk revocation (`revocation::cut_off::matching`: one `UPDATE` ending the
//! families and one `INSERT ... SELECT` writing their `sid` deny entries, in
//! one transaction) for an IP prefix, an issued-before cutoff, a user agent
//! substring and a user, each matching a known share of the rows. For each
//! it reports the time, the entries written and the size of the feed a
//! relying service then downloads (the JSON of every page, as served).
//!
//! `cargo bench --bench bulk_revocation` (LATCHKEY_BENCH_DATABASE_URL, default
//! postgres://postgres@127.0.0.1:5432/test, must allow CREATE DATABASE).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::time::Instant;

use chrono::{TimeDelta, Utc};
use latchkey::admin::ip_range;
use latchkey::config::Settings;
use latchkey::http::revocations::RevocationFeed;
use latchkey::refresh::repo::FamilyFilter;
use latchkey::revocation::{self, Reach, cut_off};
use poem_openapi::types::ToJSON;
use sea_orm::{ConnectionTrait, Database};

const ROWS: i64 = 1_000_000;

#[tokio::main]
async fn main() {
    let admin = std::env::var("LATCHKEY_BENCH_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let name = format!("latchkey_bench_{}", uuid::Uuid::new_v4().simple());
    let conn = Database::connect(&admin).await.expect("PostgreSQL reachable");
    conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\"")).await.unwrap();
    let url = format!("{}/{name}", admin.rsplit_once('/').unwrap().0);
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings::for_tests(&url, dir.path());
    let db = latchkey::startup::connect(&settings).await.unwrap();
    latchkey::startup::migrate(&db).await.unwrap();

    let user = uuid::Uuid::now_v7();
    db.execute_unprepared(&format!(
        "INSERT INTO users (id, username, username_key, password_hash, roles, disabled, created_at, updated_at, password_changed_at)
         VALUES ('{user}', 'bench', 'bench', 'x', '', false, now(), now(), now())"
    ))
    .await
    .unwrap();
    let started = Instant::now();
    // Families i = 1..ROWS: created i seconds ago, from 10.0.0.0/8 (address
    // 10.x.y.z spread over the block), every 4th with a "curl" agent.
    db.execute_unprepared(&format!(
        "INSERT INTO refresh_families
           (id, user_id, client_id, scope, counter, auth_time, created_at, last_used_at, last_rotated_at,
            expires_at, ip, ip_bin, user_agent)
         SELECT gen_random_uuid(), '{user}', 'latchkey', 'profile', 0, now(),
                now() - make_interval(secs => i), now(), now(), now() + interval '30 days',
                '10.0.0.0',
                '\\x00000000000000000000ffff'::bytea || int4send(167772160 + ((i * 16) % 16777216)::int),
                CASE WHEN i % 4 = 0 THEN 'curl/8.0' ELSE 'Mozilla/5.0' END
         FROM generate_series(1, {ROWS}) AS i"
    ))
    .await
    .unwrap();
    db.execute_unprepared("ANALYZE refresh_families").await.unwrap();
    println!(
        "bulk revocation on PostgreSQL, {ROWS} live families (filled in {:.1} s)",
        started.elapsed().as_secs_f64()
    );

    #[allow(clippy::disallowed_methods)]
    let now = Utc::now();
    let cases: Vec<(&str, FamilyFilter)> = vec![
        (
            "ip_prefix 10.0.0.0/9 (half)",
            FamilyFilter { ip_range: Some(ip_range("10.0.0.0/9".parse().unwrap())), ..Default::default() },
        ),
        (
            "issued_before now-750000s (a quarter)",
            FamilyFilter { created_before: Some(now - TimeDelta::seconds(750_000)), ..Default::default() },
        ),
        (
            "user_agent_contains curl (a quarter)",
            FamilyFilter { user_agent_contains: Some("curl".into()), ..Default::default() },
        ),
        ("user_id (all of them)", FamilyFilter { user_id: Some(user), ..Default::default() }),
    ];
    let reach = Reach { now, tokens_until: now + TimeDelta::minutes(16) };
    for (label, filter) in cases {
        let t = Instant::now();
        let ended = cut_off::matching(&db, reach, &filter, "bench").await.unwrap();
        let took = t.elapsed().as_secs_f64();
        // What a relying service downloads: every feed page, as JSON.
        let (mut entries, mut bytes, mut cursor) = (0usize, 0usize, 0i64);
        loop {
            let page = revocation::since(&db, cursor, now, revocation::SNAPSHOT_LIMIT).await.unwrap();
            entries += page.entries.len();
            let more = page.more;
            let next = page.cursor;
            bytes += RevocationFeed::from(page).to_json_string().len();
            cursor = next;
            if !more {
                break;
            }
        }
        println!(
            "  {label:<40} ended {ended:>7} in {took:>6.2} s; feed: {entries:>7} entries, {:>6.1} MB",
            bytes as f64 / 1e6
        );
        // Every case starts from a million live families and an empty feed.
        db.execute_unprepared("UPDATE refresh_families SET revoked_at = NULL, revoked_reason = NULL")
            .await
            .unwrap();
        db.execute_unprepared("DELETE FROM revocations").await.unwrap();
        db.execute_unprepared("VACUUM ANALYZE refresh_families").await.unwrap();
        db.execute_unprepared("VACUUM ANALYZE revocations").await.unwrap();
    }
    db.close().await.ok();
    conn.execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).await.unwrap();
}
