//! The command line, run as a separate process.

use serde_json::Value;

use crate::db_test;
use crate::helpers::{TestApp, run_cli};

db_test!(async fn users_create_reads_the_password_from_stdin_and_grants_roles(backend) {
    let app = TestApp::spawn(backend).await;
    let out = app.cli(&["users", "create", "--username", "root", "--role", "admin", "--email", "root@example.com"], Some("a long admin password\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("created user root"));

    let tokens = app.tokens("root", "a long admin password").await;
    let me: Value = app.get_with_token("/auth/me", tokens["access_token"].as_str().unwrap()).await.json().await.unwrap();
    assert_eq!(me["roles"], serde_json::json!(["admin"]));
    assert_eq!(me["email"], "root@example.com");

    // The same name again is refused, in one line.
    let again = app.cli(&["users", "create", "--username", "ROOT"], Some("another password\n"));
    assert!(!again.status.success());
    assert_eq!(String::from_utf8_lossy(&again.stderr).trim().lines().count(), 1);
});

#[test]
fn the_password_is_never_taken_from_argv() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let out = run_cli(
        &url,
        dir.path().to_path_buf(),
        &["users", "create", "--username", "x", "--password", "secret123"],
        None,
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--password"));
}

#[test]
fn a_bad_setting_is_a_one_line_error_naming_the_variable() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display());
    let out =
        run_cli(&url, dir.path().to_path_buf(), &["migrate"], None, &[("LATCHKEY_ACCESS_TOKEN_TTL", "soon")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LATCHKEY_ACCESS_TOKEN_TTL"), "{stderr}");
}

#[test]
fn an_unreachable_database_is_a_one_line_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli(
        "postgres://nobody:hunter2@127.0.0.1:1/none",
        dir.path().to_path_buf(),
        &["migrate"],
        None,
        &[],
    );
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains("cannot connect to the database postgres://nobody:***@127.0.0.1:1/none"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"), "the password is not printed");
    assert!(!stderr.contains("panicked"));
}

#[test]
fn openapi_prints_the_document_without_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let out = run_cli("postgres://nowhere:1/x", dir.path().to_path_buf(), &["openapi"], None, &[]);
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), latchkey::http::spec_json());
}

#[test]
fn migrate_creates_a_fresh_sqlite_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/dir/latchkey.db");
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let out = run_cli(&url, dir.path().to_path_buf(), &["migrate"], None, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(path.exists());
}

/// `latchkey` with no configuration at all: SQLite under `./data`, a
/// generated master key, a clean exit on SIGTERM.
#[test]
fn zero_configuration_serves_and_stops_cleanly_on_sigterm() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        // Only the port differs from the defaults, so tests can run in parallel.
        .env("LATCHKEY_LISTEN", "127.0.0.1:0")
        .env("LATCHKEY_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let mut log = String::new();
    let address = loop {
        let line = lines.next().expect("server exited before listening").unwrap();
        log.push_str(&line);
        log.push('\n');
        if let Some(rest) = line.split("address=").nth(1) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    assert!(log.contains("generated a new master key"), "{log}");

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status =
        rt.block_on(async { reqwest::get(format!("http://{address}/readyz")).await.unwrap().status() });
    assert_eq!(status, 200);
    assert!(dir.path().join("data/latchkey.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("data/master.key")).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    let kill = Command::new("kill").arg("-TERM").arg(child.id().to_string()).status().unwrap();
    assert!(kill.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "graceful shutdown exits 0, got {exit:?}");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(rest.iter().any(|l| l.contains("shutting down")), "{rest:?}");
}

// The container HEALTHCHECK: no shell or curl in the runtime image, so the
// binary checks its own server, and secrets can come from files.
db_test!(async fn healthcheck_answers_for_the_running_server_and_secrets_come_from_files(backend) {
    let app = TestApp::spawn(backend).await;
    let listen = app.address.trim_start_matches("http://").to_owned();
    let out = run_cli(&app.db.url, app.db.dir.path().to_path_buf(), &["healthcheck"], None, &[("LATCHKEY_LISTEN", &listen)]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "healthy");

    // A wildcard listen address is checked on loopback.
    let port = listen.rsplit(':').next().unwrap();
    let out = run_cli(&app.db.url, app.db.dir.path().to_path_buf(), &["healthcheck"], None, &[("LATCHKEY_LISTEN", &format!("0.0.0.0:{port}")), ("LATCHKEY_ISSUER", "http://localhost")]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    // Nothing listening: a one-line failure.
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let out = run_cli(&app.db.url, app.db.dir.path().to_path_buf(), &["healthcheck"], None, &[("LATCHKEY_LISTEN", &free.to_string())]);
    assert!(!out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stderr).trim().lines().count(), 1, "{}", String::from_utf8_lossy(&out.stderr));

    // The master key from a file (a compose secret) opens the same keys.
    let key_file = app.db.dir.path().join("master_key");
    std::fs::write(&key_file, format!("{}\n", crate::helpers::TEST_MASTER_KEY)).unwrap();
    let key_file = key_file.display().to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_latchkey"));
    let out = cmd
        .args(["keys", "list"])
        .env_clear()
        .env("LATCHKEY_DATABASE_URL", &app.db.url)
        .env("LATCHKEY_DATA_DIR", app.db.dir.path())
        .env("LATCHKEY_MASTER_KEY_FILE", &key_file)
        .env("LATCHKEY_JWKS_MAX_AGE", "300")
        .env("LATCHKEY_KEY_RELOAD_INTERVAL", "1")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("current"), "{}", String::from_utf8_lossy(&out.stdout));
});
