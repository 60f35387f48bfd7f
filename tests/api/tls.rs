//! Built-in TLS: `Strict-Transport-Security`, and certificates replaced
//! under a running server (file change, `SIGHUP`, broken replacements),
//! all through real TLS handshakes.

use std::time::Duration;

use reqwest::StatusCode;

use crate::db_test;
use crate::helpers::{TestApp, TestCa, eventually, write_atomically};

const HSTS: &str = "strict-transport-security";

/// A client of its own (so its own connections), trusting the app's CA and
/// `extra`, that reports the peer certificate.
fn client(app: &TestApp, extra: &[&TestCa]) -> reqwest::Client {
    let tls = app.tls.as_ref().expect("a TLS app");
    let mut builder = reqwest::Client::builder().tls_info(true);
    for ca in std::iter::once(&tls.ca).chain(extra.iter().copied()) {
        builder = builder.add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap());
    }
    builder.build().unwrap()
}

/// The leaf certificate `client`'s connection presents (a new connection if
/// it has none open).
async fn peer_certificate(client: &reqwest::Client, app: &TestApp) -> Vec<u8> {
    let resp = client.get(app.url("/healthz")).send().await.expect("TLS request");
    assert_eq!(resp.status(), StatusCode::OK);
    let info = resp.extensions().get::<reqwest::tls::TlsInfo>().expect("TLS info");
    info.peer_certificate().expect("a peer certificate").to_vec()
}

/// The certificate a brand-new connection is served.
async fn new_connection_certificate(app: &TestApp, extra: &[&TestCa]) -> Vec<u8> {
    peer_certificate(&client(app, extra), app).await
}

db_test!(async fn hsts_is_on_every_https_response_including_errors(backend) {
    let app = TestApp::builder(backend).tls().spawn().await;

    let ok = app.get("/healthz").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert_eq!(ok.headers()[HSTS], "max-age=63072000");

    let not_found = app.get("/no-such-page").await;
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    assert_eq!(not_found.headers()[HSTS], "max-age=63072000");

    let oauth_error =
        app.client.post(app.url("/oauth/token")).form(&[("grant_type", "nonsense")]).send().await.unwrap();
    assert_eq!(oauth_error.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(oauth_error.headers()[HSTS], "max-age=63072000");
});

db_test!(async fn hsts_follows_the_issuer_not_the_listener(backend) {
    // Plain HTTP behind a proxy that terminates TLS: the issuer is https, so
    // the browser sees HSTS; LATCHKEY_HSTS_MAX_AGE sets its lifetime.
    let proxied = TestApp::builder(backend)
        .configure(|s| {
            s.issuer = Some("https://id.example.com".into());
            s.hsts_max_age = Duration::from_secs(300);
        })
        .spawn()
        .await;
    let resp = proxied.get("/healthz").await;
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers()[HSTS], "max-age=300");

    // An http issuer (development): never.
    let plain = TestApp::builder(backend).on(proxied.db.clone()).spawn().await;
    assert!(plain.state.issuer().starts_with("http://"));
    let ok = plain.get("/healthz").await;
    assert_eq!(ok.status(), StatusCode::OK);
    assert!(ok.headers().get(HSTS).is_none());
    let not_found = plain.get("/no-such-page").await;
    assert_eq!(not_found.status(), StatusCode::NOT_FOUND);
    assert!(not_found.headers().get(HSTS).is_none());
});

db_test!(async fn a_replaced_certificate_file_reaches_new_connections_and_spares_open_ones(backend) {
    let app = TestApp::builder(backend)
        .tls()
        .configure(|s| s.tls_reload_interval = Duration::from_millis(200))
        .spawn()
        .await;
    let tls = app.tls.as_ref().unwrap();
    let kept = client(&app, &[]);
    assert_eq!(peer_certificate(&kept, &app).await, tls.ca.cert_der);

    // Act: a renewal from the same CA (new key, new serial).
    let next = tls.ca.leaf();
    assert_ne!(next.cert_der, tls.ca.cert_der);
    tls.install(&next.cert_pem, &next.key_pem);

    let renewed = eventually(Duration::from_secs(10), || async {
        new_connection_certificate(&app, &[]).await == next.cert_der
    })
    .await;
    assert!(renewed, "new connections get the new certificate");
    // The keep-alive connection opened before the reload still answers, and
    // still with the old certificate: it was not dropped and redialled (a new
    // connection, resumed or not, meets the new configuration).
    assert_eq!(peer_certificate(&kept, &app).await, tls.ca.cert_der);
});

db_test!(async fn a_broken_replacement_keeps_the_old_certificate_serving(backend) {
    let app = TestApp::builder(backend)
        .tls()
        .configure(|s| s.tls_reload_interval = Duration::from_millis(200))
        .spawn()
        .await;
    let tls = app.tls.as_ref().unwrap();
    let old = tls.ca.cert_der.clone();
    let next = tls.ca.leaf();
    // Several polls of each broken state.
    let settle = || tokio::time::sleep(Duration::from_secs(1));

    // Not PEM at all.
    write_atomically(&tls.cert_file, "not a certificate\n");
    settle().await;
    assert_eq!(new_connection_certificate(&app, &[]).await, old, "garbage certificate file");

    // A valid certificate whose key is not the one in the key file.
    write_atomically(&tls.cert_file, &next.cert_pem);
    settle().await;
    assert_eq!(new_connection_certificate(&app, &[]).await, old, "mismatched key");

    // The key file gone.
    std::fs::remove_file(&tls.key_file).unwrap();
    settle().await;
    assert_eq!(new_connection_certificate(&app, &[]).await, old, "unreadable key file");

    // Repaired: the watcher is still at work.
    tls.install(&next.cert_pem, &next.key_pem);
    let renewed = eventually(Duration::from_secs(10), || async {
        new_connection_certificate(&app, &[]).await == next.cert_der
    })
    .await;
    assert!(renewed, "the repaired files are picked up");
});

/// `SIGHUP` goes to the whole test process: one such test at a time, so
/// none sees another's signal while it checks that nothing reloads without one.
static SIGHUP_TESTS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

db_test!(async fn sighup_reloads_the_certificate(backend) {
    let _one_at_a_time = SIGHUP_TESTS.lock().await;
    // No polling: only the signal can make the server look at the files.
    let app = TestApp::builder(backend)
        .tls()
        .configure(|s| s.tls_reload_interval = Duration::ZERO)
        .spawn()
        .await;
    let tls = app.tls.as_ref().unwrap();
    let kept = client(&app, &[]);
    assert_eq!(peer_certificate(&kept, &app).await, tls.ca.cert_der);

    // A certificate from another CA.
    let other = TestCa::new();
    let next = other.leaf();
    tls.install(&next.cert_pem, &next.key_pem);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(new_connection_certificate(&app, &[&other]).await, tls.ca.cert_der, "no reload without SIGHUP");

    // The server runs in this process, which the server's SIGHUP handler
    // (registered when it bound) keeps alive; other TLS servers of this test
    // binary just reload their unchanged files.
    let hup = std::process::Command::new("kill")
        .arg("-HUP")
        .arg(std::process::id().to_string())
        .status()
        .unwrap();
    assert!(hup.success());

    let reloaded = eventually(Duration::from_secs(10), || async {
        new_connection_certificate(&app, &[&other]).await == next.cert_der
    })
    .await;
    assert!(reloaded, "SIGHUP loads the new certificate");
    assert_eq!(peer_certificate(&kept, &app).await, tls.ca.cert_der, "the open connection survives");
});

/// At startup a key that does not belong to the certificate is refused in
/// one line naming both variables, instead of failing every handshake later.
#[tokio::test]
async fn serve_refuses_a_key_that_does_not_match_the_certificate() {
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let (ca, stranger) = (TestCa::new(), TestCa::new());
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, &ca.cert_pem).unwrap();
    std::fs::write(&key, &stranger.key_pem).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_latchkey"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LATCHKEY_DATABASE_URL", format!("sqlite://{}?mode=rwc", dir.path().join("x.db").display()))
        .env("LATCHKEY_DATA_DIR", dir.path())
        .env("LATCHKEY_MASTER_KEY", crate::helpers::TEST_MASTER_KEY)
        .env("LATCHKEY_LISTEN", "127.0.0.1:0")
        .env("LATCHKEY_TLS_CERT", &cert)
        .env("LATCHKEY_TLS_KEY", &key)
        .env("LATCHKEY_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Should it start serving after all, do not wait forever.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("latchkey started with a mismatched key");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("LATCHKEY_TLS_KEY") && stderr.contains("does not match"), "{stderr}");
    assert!(stderr.contains("LATCHKEY_TLS_CERT"), "{stderr}");
}
