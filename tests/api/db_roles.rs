//! Least privilege on PostgreSQL (deploy/postgres-roles.sql): `latchkey
//! migrate` runs as the owner role, `latchkey serve` as a role with only
//! SELECT, INSERT, UPDATE and DELETE. PostgreSQL only: SQLite has no roles.
//!
//! Roles are global to the cluster and outlive a database, so each run
//! creates its own role names and drops them afterwards ([`Roles`]).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use latchkey::config::DatabaseUrl;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};

use crate::helpers::{Backend, PG_ENV, TestApp, TestDb, run_cli};

const ADMIN_PASSWORD: &str = "admin password 1";
const PASSWORD: &str = "correct horse battery";

/// `postgres://user@host/db` with the user replaced.
fn with_user(url: &str, user: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let rest = rest.split_once('@').map_or(rest, |(_, host)| host);
    format!("{scheme}://{user}@{rest}")
}

fn database_name(url: &str) -> String {
    let path = url.split('?').next().unwrap();
    path.rsplit('/').next().unwrap().to_owned()
}

/// The run's two roles. Dropped last: the test database first (it holds
/// their grants and objects), then the roles.
struct Roles {
    owner: String,
    app: String,
    database: String,
}

impl Roles {
    fn create(db: &TestDb) -> Roles {
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..12];
        let roles = Roles {
            owner: format!("latchkey_owner_{suffix}"),
            app: format!("latchkey_app_{suffix}"),
            database: database_name(&db.url),
        };
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/postgres-roles.sql");
        let out = Command::new("psql")
            .arg(&db.url)
            .args(["-q", "-v", &format!("owner={}", roles.owner), "-v", "owner_password=owner-secret"])
            .args(["-v", &format!("app={}", roles.app), "-v", "app_password=app-secret"])
            .arg("-f")
            .arg(script)
            .output()
            .expect("psql runs (install PostgreSQL's client)");
        assert!(out.status.success(), "postgres-roles.sql: {}", String::from_utf8_lossy(&out.stderr));
        roles
    }
}

impl Drop for Roles {
    fn drop(&mut self) {
        let admin = std::env::var(PG_ENV).unwrap_or_default();
        // One statement per `-c`: DROP DATABASE cannot run in a transaction.
        let statements = [
            format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.database),
            format!("DROP ROLE IF EXISTS \"{}\"", self.app),
            format!("DROP ROLE IF EXISTS \"{}\"", self.owner),
        ];
        let mut psql = Command::new("psql");
        psql.arg(&admin).arg("-q");
        for sql in &statements {
            psql.args(["-c", sql]);
        }
        let _ = psql.output();
    }
}

/// Try a statement as `url`'s role; the error text when refused.
async fn refused(url: &str, sql: &str) -> String {
    let conn = Database::connect(url).await.expect("connect");
    let result = conn.execute_unprepared(sql).await;
    conn.close().await.ok();
    match result {
        Ok(_) => panic!("{sql} was allowed"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_runs_as_a_role_that_cannot_change_the_schema() {
    if !Backend::postgres_configured() {
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL pass not run: {PG_ENV} is not set");
        eprintln!("PostgreSQL pass not run: {PG_ENV} is not set");
        return;
    }
    let db = Arc::new(TestDb::new(Backend::Postgres).await);
    let roles = Roles::create(&db);
    let owner_url = with_user(&db.url, &roles.owner);
    let app_url = with_user(&db.url, &roles.app);
    let cli = |url: &str, args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]| {
        run_cli(url, db.dir.path().to_path_buf(), args, stdin, env)
    };
    let restricted = [("LATCHKEY_MIGRATE_ON_START", "false")];

    // Not migrated yet: the restricted server refuses to start, in one line
    // that says what to run.
    let out = cli(&app_url, &["serve"], None, &restricted);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("run `latchkey migrate`"), "{stderr}");
    assert!(stderr.contains("pending"), "{stderr}");

    // The app role cannot migrate; the owner can.
    let out = cli(&app_url, &["migrate"], None, &[]);
    assert!(!out.status.success(), "the app role migrated the database");
    let out = cli(&owner_url, &["migrate"], None, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // The normal flows, served as the app role.
    let out = cli(
        &app_url,
        &["users", "create", "--username", "admin", "--role", "admin"],
        Some(&format!("{ADMIN_PASSWORD}\n")),
        &restricted,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let app_role_url = app_url.clone();
    let mut app = TestApp::builder(Backend::Postgres)
        .on(Arc::clone(&db))
        .configure(move |s| {
            s.database_url = DatabaseUrl::new(app_role_url);
            s.migrate_on_start = false;
        })
        .spawn()
        .await;
    assert_eq!(app.register("alice", PASSWORD).await.status(), 201);
    let tokens = app.tokens("alice", PASSWORD).await;
    let resp = app.refresh(tokens["refresh_token"].as_str().unwrap()).await;
    assert_eq!(resp.status(), 200);
    let refreshed: Value = resp.json().await.unwrap();
    let me = app.get_with_token("/auth/me", refreshed["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 200);
    let alice: Value = me.json().await.unwrap();

    let admin: Value = app
        .post_json(
            "/auth/login",
            &json!({"username": "admin", "password": ADMIN_PASSWORD, "scope": "openid latchkey:admin"}),
        )
        .await
        .json()
        .await
        .unwrap();
    let admin = admin["access_token"].as_str().unwrap().to_owned();
    let post = |path: &str, body: Value| {
        let req = app.client.post(app.url(path)).bearer_auth(&admin).json(&body);
        async move { req.send().await.unwrap() }
    };
    // A ban writes the revocation feed (its lock row, its entries).
    let resp =
        post(&format!("/admin/users/{}/ban", alice["id"].as_str().unwrap()), json!({"reason": "test"})).await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let me = app.get_with_token("/auth/me", refreshed["access_token"].as_str().unwrap()).await;
    assert_eq!(me.status(), 401, "the ban reached the token");
    let resp = post("/admin/keys/rotate", json!({})).await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    // Bulk revocation (set-based writes); it also ends the admin's session.
    let resp = post("/admin/sessions/revoke", json!({"client_id": "latchkey"})).await;
    assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
    let report = latchkey::purge::run(
        &app.state.db,
        app.state.now() + chrono::TimeDelta::days(365),
        &latchkey::purge::Retention {
            dead_rows: chrono::TimeDelta::days(7),
            audit: chrono::TimeDelta::days(90),
            idle_timeout: chrono::TimeDelta::days(30),
        },
    )
    .await;
    assert!(report.is_ok(), "purge as the app role: {:?}", report.err());
    app.stop().await;

    // What the app role may not do.
    for sql in [
        "DROP TABLE users",
        "ALTER TABLE users ADD COLUMN sneaky integer",
        "CREATE TABLE sneaky (id integer)",
        "TRUNCATE revocations",
        "CREATE INDEX sneaky_idx ON users (email)",
    ] {
        let error = refused(&app_url, sql).await;
        assert!(error.contains("permission denied") || error.contains("must be owner"), "{sql}: {error}");
    }

    // A later migration, applied by the owner, is usable by the app role
    // without running the roles script again (default privileges).
    let owner = Database::connect(&owner_url).await.unwrap();
    owner
        .execute_unprepared("CREATE TABLE later_migration (id bigserial PRIMARY KEY, note text NOT NULL)")
        .await
        .unwrap();
    owner.close().await.ok();
    let as_app = Database::connect(&app_url).await.unwrap();
    as_app.execute_unprepared("INSERT INTO later_migration (note) VALUES ('ok')").await.unwrap();
    as_app.execute_unprepared("UPDATE later_migration SET note = 'still ok'").await.unwrap();
    as_app.execute_unprepared("DELETE FROM later_migration").await.unwrap();
    as_app.close().await.ok();

    // A schema that is behind (an upgrade whose migration the owner has not
    // run yet): the restricted server refuses to start, in one line.
    let owner = Database::connect(&owner_url).await.unwrap();
    owner
        .execute_unprepared(
            "DELETE FROM seaql_migrations WHERE version = (SELECT max(version) FROM seaql_migrations)",
        )
        .await
        .unwrap();
    owner.close().await.ok();
    let out = cli(&app_url, &["serve"], None, &restricted);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 migration(s) pending"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    drop(roles);
}
