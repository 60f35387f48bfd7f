//! Safe defaults on disk and in operation: private files, the master key's
//! mode, SQLite URLs, graceful shutdown, pool settings, the metrics listener.

use std::path::Path;
use std::time::Duration;

use sea_orm::{ConnectionTrait, Statement};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::db_test;
use crate::helpers::{Backend, TEST_MASTER_KEY, TestApp, TestDb, assert_error, eventually, run_cli};
use crate::processes::ServeProcess;

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o777
}

/// A client that opens a new connection for every request, so each one
/// meets the listener (not a kept-alive connection).
fn fresh_connections() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap()
}

#[cfg(unix)]
#[test]
fn a_fresh_data_dir_and_its_sqlite_files_are_private() {
    // Arrange: no database or data dir configured, so everything lands in ./data.
    let dir = tempfile::tempdir().unwrap();
    // (No shutdown delay: nothing to wait for here.)
    let server = ServeProcess::start(dir.path(), &[("LATCHKEY_SHUTDOWN_DELAY", "0")]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async { reqwest::get(server.url("/readyz")).await.unwrap().status() });
    assert_eq!(status, 200);

    // Assert: while it runs, the WAL and shared-memory files exist too.
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data dir");
    for file in ["latchkey.db", "latchkey.db-wal", "latchkey.db-shm", "master.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    server.sigterm();
    let (exit, _) = server.wait();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn every_request_is_logged_without_its_query_up_to_the_last_before_shutdown() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServeProcess::start(dir.path(), &[("LATCHKEY_SHUTDOWN_DELAY", "0")]);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        for i in 0..50 {
            let url = server.url(&format!("/.well-known/jwks.json?n={i}&code=secret-code"));
            assert_eq!(reqwest::get(url).await.unwrap().status(), 200);
        }
        let missing = reqwest::get(server.url("/no/such/page?code=secret-code")).await.unwrap();
        assert_eq!(missing.status(), 404);
    });
    // Stopped right after its last answer: the lines still reach the log.
    server.sigterm();
    let (exit, log) = server.wait();
    assert!(exit.success(), "{exit:?}");
    let jwks = log
        .iter()
        .filter(|l| {
            l.contains("method=GET") && l.contains("path=/.well-known/jwks.json ") && l.contains("status=200")
        })
        .count();
    assert_eq!(jwks, 50, "{log:#?}");
    assert!(log.iter().any(|l| l.contains("path=/no/such/page ") && l.contains("status=404")), "{log:#?}");
    assert!(!log.iter().any(|l| l.contains("secret-code")), "a query reached the log: {log:#?}");
}

db_test!(async fn a_master_key_file_others_can_read_is_warned_about_at_start(backend) {
    // Arrange: the key in <data dir>/master.key, readable by everyone.
    let db = TestDb::new(backend).await;
    let key_file = db.dir.path().join("master.key");
    std::fs::write(&key_file, format!("{TEST_MASTER_KEY}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    }
    let data_dir = db.dir.path().to_str().unwrap().to_owned();
    let env = [("LATCHKEY_DATABASE_URL", db.url.as_str()), ("LATCHKEY_DATA_DIR", data_dir.as_str())];

    // Act
    let server = ServeProcess::start(db.dir.path(), &env);

    // Assert
    let warning = "the master key file is readable by group or others";
    if cfg!(unix) {
        assert!(server.startup_log.contains(warning), "{}", server.startup_log);
        assert!(server.startup_log.contains("mode=644"), "{}", server.startup_log);
    }
    drop(server);

    // A private key file starts quietly.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let server = ServeProcess::start(db.dir.path(), &env);
        assert!(server.startup_log.contains("master key loaded from file"), "{}", server.startup_log);
        assert!(!server.startup_log.contains(warning), "{}", server.startup_log);
    }
});

#[test]
fn a_sqlite_url_without_a_mode_creates_the_file() {
    // Arrange: an absolute path, `sqlite:///…`, in a directory that does not exist yet.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state/latchkey.db");
    assert!(path.is_absolute());
    let url = format!("sqlite://{}", path.display());
    assert!(url.starts_with("sqlite:///"));

    // Act
    let out = run_cli(&url, dir.path().to_path_buf(), &["migrate"], None, &[]);

    // Assert
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(path.exists());
    #[cfg(unix)]
    {
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("state")), 0o700);
    }
    let again = run_cli(&url, dir.path().to_path_buf(), &["migrate"], None, &[]);
    assert!(again.status.success(), "an existing file is opened: {}", String::from_utf8_lossy(&again.stderr));
}

#[test]
fn an_explicit_read_only_or_read_write_mode_does_not_create_the_file() {
    let dir = tempfile::tempdir().unwrap();
    for mode in ["ro", "rw"] {
        let path = dir.path().join(format!("missing-{mode}.db"));
        let url = format!("sqlite://{}?mode={mode}", path.display());
        let out = run_cli(&url, dir.path().to_path_buf(), &["migrate"], None, &[]);
        assert_eq!(out.status.code(), Some(1), "mode={mode}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("cannot connect to the database"), "{stderr}");
        assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
        assert!(!path.exists(), "mode={mode} must not create the file");
    }
}

db_test!(async fn sigterm_turns_readiness_off_then_drains_in_flight_requests(backend) {
    // Arrange: a server that stays up 4 s after SIGTERM (ample even on a
    // busy machine), and a login whose body is only half sent.
    let db = TestDb::new(backend).await;
    let data_dir = db.dir.path().to_str().unwrap().to_owned();
    let server = ServeProcess::start(
        db.dir.path(),
        &[
            ("LATCHKEY_DATABASE_URL", db.url.as_str()),
            ("LATCHKEY_DATA_DIR", data_dir.as_str()),
            ("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY),
            ("LATCHKEY_SHUTDOWN_DELAY", "4"),
            ("LATCHKEY_SHUTDOWN_GRACE", "20"),
        ],
    );
    let client = fresh_connections();
    assert_eq!(client.get(server.url("/readyz")).send().await.unwrap().status(), 200);
    let body = r#"{"username":"nobody","password":"not the password"}"#;
    let (first, second) = body.split_at(10);
    let mut in_flight = tokio::net::TcpStream::connect(&server.address).await.unwrap();
    let head = format!(
        "POST /auth/login HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        server.address,
        body.len()
    );
    in_flight.write_all(head.as_bytes()).await.unwrap();
    in_flight.write_all(first.as_bytes()).await.unwrap();

    // Act
    server.sigterm();

    // Assert: not ready, but still answering new connections.
    let last = std::sync::Mutex::new(String::new());
    let unready = eventually(Duration::from_secs(4), || async {
        let resp = client.get(server.url("/readyz")).send().await;
        *last.lock().unwrap() = format!("{resp:?}");
        resp.is_ok_and(|r| r.status() == 503)
    })
    .await;
    assert!(unready, "/readyz turns 503 after SIGTERM; last: {}", last.lock().unwrap());
    let ready: Value = client.get(server.url("/readyz")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "shutting down");
    assert_eq!(client.get(server.url("/healthz")).send().await.unwrap().status(), 200, "the port still answers");

    // Then the listener closes…
    let closed = eventually(Duration::from_secs(20), || async {
        tokio::net::TcpStream::connect(&server.address).await.is_err()
    })
    .await;
    assert!(closed, "the listener closes after the delay");

    // …and the request that was in flight still completes.
    in_flight.write_all(second.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), in_flight.read_to_end(&mut response))
        .await
        .expect("the in-flight request is answered")
        .unwrap();
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 401"), "{response}");
    assert!(response.contains("invalid_credentials"), "{response}");

    let (exit, log) = tokio::task::spawn_blocking(move || server.wait()).await.unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}: {log:?}");
    assert!(log.iter().any(|l| l.contains("closing the listener")), "{log:?}");
});

db_test!(async fn pool_settings_are_applied(backend) {
    // Arrange
    let app = TestApp::builder(backend)
        .configure(|s| {
            s.db_min_connections = 2;
            s.db_idle_timeout = Duration::from_secs(120);
            s.db_max_lifetime = Duration::ZERO;
            s.db_acquire_timeout = Duration::from_secs(3);
            s.db_statement_timeout = Duration::from_secs(1);
        })
        .spawn()
        .await;

    // Assert: the pool's own options.
    let db = &app.state.db;
    let (min, idle, lifetime, acquire) = match backend {
        Backend::Sqlite => {
            let o = db.get_sqlite_connection_pool().options();
            (o.get_min_connections(), o.get_idle_timeout(), o.get_max_lifetime(), o.get_acquire_timeout())
        }
        Backend::Postgres => {
            let o = db.get_postgres_connection_pool().options();
            (o.get_min_connections(), o.get_idle_timeout(), o.get_max_lifetime(), o.get_acquire_timeout())
        }
    };
    assert_eq!(min, 2);
    assert_eq!(idle, Some(Duration::from_secs(120)));
    assert_eq!(lifetime, None, "zero: connections are never recycled for age");
    assert_eq!(acquire, Duration::from_secs(3));
    assert_eq!(app.get("/readyz").await.status(), 200);

    if backend == Backend::Postgres {
        // Every session carries the statement timeout…
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), "SHOW statement_timeout"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(row.try_get_by_index::<String>(0).unwrap(), "1s");
        // …and a longer statement is cancelled.
        let err = db
            .execute_raw(Statement::from_string(db.get_database_backend(), "SELECT pg_sleep(3)"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("statement timeout"), "{err}");
    }
});

db_test!(async fn metrics_can_be_served_on_a_private_listener_only(backend) {
    // Arrange
    let app = TestApp::builder(backend)
        .configure(|s| {
            s.metrics_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
            s.metrics_token = Some(secrecy::SecretString::from("scrape-me".to_owned()));
        })
        .spawn()
        .await;
    let metrics = app.metrics_address.clone().expect("a metrics listener");
    assert_ne!(metrics, app.address);
    app.get("/healthz").await;

    // Act / Assert: the main listener does not know /metrics, even with the token.
    assert_error(app.get_with_token("/metrics", "scrape-me").await, 404, "not_found").await;

    // The metrics listener serves it, behind the token, and nothing else.
    let scrape = |token: Option<&'static str>| {
        let mut req = app.client.get(format!("{metrics}/metrics"));
        if let Some(token) = token {
            req = req.bearer_auth(token);
        }
        req.send()
    };
    assert_error(scrape(None).await.unwrap(), 401, "unauthorized").await;
    let resp = scrape(Some("scrape-me")).await.unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();
    assert!(text.contains("latchkey_http_requests_total{method=\"GET\",route=\"/healthz\",status=\"200\"} 1"), "{text}");
    assert_eq!(app.client.get(format!("{metrics}/healthz")).send().await.unwrap().status(), 404);
});

db_test!(async fn without_a_metrics_listener_metrics_stay_on_the_main_one(backend) {
    let app = TestApp::spawn(backend).await;
    assert!(app.metrics_address.is_none());
    assert_eq!(app.get("/metrics").await.status(), 200);
});
