//! Test harness: one database per test, a server on port 0, a shared clock.
//!
//! Every test in this binary runs on SQLite, and on PostgreSQL too when
//! `LATCHKEY_TEST_DATABASE_URL` points at a server where we may create
//! databases (`.ci/run` always sets it). Each run gets a fresh database:
//! a file in a temporary directory, or `latchkey_test_<random>` dropped when
//! the test ends.

use std::path::PathBuf;
use std::process::Output;
use std::sync::{Arc, Once};
use std::time::Duration;

use latchkey::clock::{Clock, MockClock};
use latchkey::config::Settings;
use latchkey::http::error::ErrorBody;
use latchkey::startup::Application;
use latchkey::state::AppState;
use reqwest::StatusCode;
use sea_orm::{ConnectionTrait, Database};
use serde_json::{Value, json};
use tempfile::TempDir;
use tokio::sync::oneshot;

pub const PG_ENV: &str = "LATCHKEY_TEST_DATABASE_URL";
/// The master key `Settings::for_tests` uses, for CLI runs on the same database.
pub const TEST_MASTER_KEY: &str = "dGVzdC1tYXN0ZXIta2V5LW5vdC1mb3ItcHJvZHVjdGlvbiE";

/// Run an async test body once per backend:
/// `db_test!(async fn name(backend) { ... })` defines `name::sqlite` and
/// `name::postgres`.
#[macro_export]
macro_rules! db_test {
    ($(#[$meta:meta])* async fn $name:ident($backend:ident) $body:block) => {
        mod $name {
            #[allow(unused_imports)]
            use super::*;

            $(#[$meta])*
            async fn run($backend: $crate::helpers::Backend) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run($crate::helpers::Backend::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if $crate::helpers::Backend::postgres_configured() {
                    run($crate::helpers::Backend::Postgres).await
                } else {
                    // `.ci/run` sets CI: there a missing PostgreSQL pass is a failure.
                    assert!(
                        std::env::var_os("CI").is_none(),
                        "PostgreSQL pass not run: {} is not set",
                        $crate::helpers::PG_ENV
                    );
                    eprintln!("PostgreSQL pass not run: {} is not set", $crate::helpers::PG_ENV);
                }
            }
        }
    };
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn postgres_configured() -> bool {
        std::env::var(PG_ENV).is_ok_and(|v| !v.is_empty())
    }
}

fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            // Kept for the whole test run.
            std::mem::forget(latchkey::telemetry::init(latchkey::config::LogFormat::Text));
        }
    });
}

/// A database of its own for one test.
pub struct TestDb {
    pub url: String,
    pub dir: TempDir,
    postgres: Option<(String, String)>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        let dir = tempfile::tempdir().expect("temp dir");
        match backend {
            Backend::Sqlite => {
                let url = format!("sqlite://{}?mode=rwc", dir.path().join("latchkey.db").display());
                TestDb { url, dir, postgres: None }
            }
            Backend::Postgres => {
                let admin = std::env::var(PG_ENV).expect("LATCHKEY_TEST_DATABASE_URL");
                let name = format!("latchkey_test_{}", uuid::Uuid::new_v4().simple());
                let conn = Database::connect(&admin)
                    .await
                    .unwrap_or_else(|e| panic!("PostgreSQL at {PG_ENV} is not reachable: {e}"));
                conn.execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
                    .await
                    .expect("create test database");
                conn.close().await.ok();
                let url = replace_database(&admin, &name);
                TestDb { url, dir, postgres: Some((admin, name)) }
            }
        }
    }
}

/// `postgres://u@h:p/db?x` with `db` replaced.
fn replace_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, format!("?{q}")),
        None => (url, String::new()),
    };
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let path_start = base[scheme_end..].find('/').map_or(base.len(), |i| scheme_end + i);
    format!("{}/{name}{query}", &base[..path_start])
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.postgres.take() else { return };
        // Drop runs outside async; use a private runtime on a plain thread.
        let handle = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
            rt.block_on(async {
                if let Ok(conn) = Database::connect(&admin).await {
                    let _ = conn
                        .execute_unprepared(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                        .await;
                    conn.close().await.ok();
                }
            });
        });
        let _ = handle.join();
    }
}

pub struct TestApp {
    /// Where to connect: `http://127.0.0.1:<port>`, or with TLS the issuer
    /// `https://localhost:<port>`.
    pub address: String,
    /// The CA to trust when the app serves HTTPS.
    pub ca_pem: Option<String>,
    /// With TLS: the certificate key's SPKI hash (see [`TestCa`]).
    pub tls_spki: Option<String>,
    /// With TLS: the CA and the files the server reads.
    pub tls: Option<TestTls>,
    /// `http://127.0.0.1:<port>` of the metrics listener, when configured.
    pub metrics_address: Option<String>,
    pub client: reqwest::Client,
    pub clock: Arc<MockClock>,
    pub state: AppState,
    pub db: Arc<TestDb>,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

type Configure = Box<dyn FnOnce(&mut Settings) + Send>;

pub struct TestAppBuilder {
    backend: Backend,
    db: Option<Arc<TestDb>>,
    clock: Option<Arc<MockClock>>,
    configure: Vec<Configure>,
    tls: bool,
    localhost: bool,
}

/// A throwaway CA and a `localhost` certificate it signed, as PEM.
pub struct TestCa {
    pub ca_pem: String,
    pub cert_pem: String,
    pub key_pem: String,
    /// The leaf certificate, DER: what a client sees as the peer certificate.
    pub cert_der: Vec<u8>,
    /// Base64 SHA-256 of the leaf's SubjectPublicKeyInfo, for browsers told
    /// to trust exactly this key (`--ignore-certificate-errors-spki-list`).
    pub leaf_spki_sha256: String,
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
}

/// A `localhost` certificate and its new key.
pub struct TestLeaf {
    pub cert_pem: String,
    pub key_pem: String,
    pub cert_der: Vec<u8>,
    pub spki_sha256: String,
}

impl TestCa {
    pub fn new() -> TestCa {
        use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let issuer = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
        let mut ca = TestCa {
            ca_pem: issuer.pem(),
            cert_pem: String::new(),
            key_pem: String::new(),
            cert_der: Vec::new(),
            leaf_spki_sha256: String::new(),
            issuer,
        };
        let leaf = ca.leaf();
        (ca.cert_pem, ca.key_pem, ca.cert_der, ca.leaf_spki_sha256) =
            (leaf.cert_pem, leaf.key_pem, leaf.cert_der, leaf.spki_sha256);
        ca
    }

    /// Sign another `localhost` certificate, with a new key (and serial).
    pub fn leaf(&self) -> TestLeaf {
        use base64::Engine;
        use rcgen::{CertificateParams, KeyPair, PublicKeyData};
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &self.issuer)
            .unwrap();
        let spki = latchkey::crypto::sha256(&key.subject_public_key_info());
        TestLeaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cert_der: cert.der().to_vec(),
            spki_sha256: base64::engine::general_purpose::STANDARD.encode(spki),
        }
    }
}

/// What a TLS test app serves: its CA and the files it reads.
pub struct TestTls {
    pub ca: TestCa,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TestTls {
    /// Replace the certificate and key files (key first, each atomically,
    /// as a deployment tool would).
    pub fn install(&self, cert_pem: &str, key_pem: &str) {
        write_atomically(&self.key_file, key_pem);
        write_atomically(&self.cert_file, cert_pem);
    }
}

/// Write through a temporary file and a rename: readers see the old or the
/// new content, never half of it.
pub fn write_atomically(path: &std::path::Path, content: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, content).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

impl TestAppBuilder {
    /// Use an existing database (a second replica, a restart).
    pub fn on(mut self, db: Arc<TestDb>) -> Self {
        self.db = Some(db);
        self
    }

    /// Share a clock with another app.
    pub fn clock(mut self, clock: Arc<MockClock>) -> Self {
        self.clock = Some(clock);
        self
    }

    pub fn configure(mut self, f: impl FnOnce(&mut Settings) + Send + 'static) -> Self {
        self.configure.push(Box::new(f));
        self
    }

    /// Serve HTTPS with a certificate from a test CA; the issuer becomes
    /// `https://localhost:<port>` and the client trusts the CA.
    pub fn tls(mut self) -> Self {
        self.tls = true;
        self
    }

    /// Issuer `http://localhost:<port>`: a WebAuthn relying party (a domain
    /// name in a secure context), which `http://127.0.0.1` is not.
    pub fn localhost(mut self) -> Self {
        self.localhost = true;
        self
    }

    pub async fn spawn(self) -> TestApp {
        init_tracing();
        let db = match self.db {
            Some(db) => db,
            None => Arc::new(TestDb::new(self.backend).await),
        };
        let mut settings = Settings::for_tests(&db.url, db.dir.path());
        let tls = self.tls.then(|| {
            let ca = TestCa::new();
            let (cert, key) = (db.dir.path().join("tls-cert.pem"), db.dir.path().join("tls-key.pem"));
            std::fs::write(&cert, &ca.cert_pem).unwrap();
            std::fs::write(&key, &ca.key_pem).unwrap();
            settings.tls = Some(latchkey::config::TlsFiles { cert: cert.clone(), key: key.clone() });
            TestTls { ca, cert_file: cert, key_file: key }
        });
        let ca = tls.as_ref().map(|t| &t.ca);
        for f in self.configure {
            f(&mut settings);
        }
        let clock = self.clock.unwrap_or_else(|| Arc::new(MockClock::new()));
        if (ca.is_some() || self.localhost) && settings.issuer.is_none() {
            // The issuer must name the host the certificate is for (or be
            // localhost for WebAuthn), so pick the port before building.
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = probe.local_addr().unwrap().port();
            drop(probe);
            settings.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
            let scheme = if ca.is_some() { "https" } else { "http" };
            settings.issuer = Some(format!("{scheme}://localhost:{port}"));
        }
        let app =
            Application::build(settings, clock.clone() as Arc<dyn Clock>).await.expect("application builds");
        let state = app.state();
        let address = match &ca {
            Some(_) => state.issuer().to_owned(),
            None => format!("http://127.0.0.1:{}", app.port()),
        };
        let metrics_address = app.metrics_address().map(|a| format!("http://{a}"));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(app.run_until(async move {
            let _ = stop_rx.await;
        }));
        let mut client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
        if let Some(ca) = ca {
            client =
                client.add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap());
        }
        TestApp {
            address,
            tls_spki: ca.map(|c| c.leaf_spki_sha256.clone()),
            ca_pem: ca.map(|c| c.ca_pem.clone()),
            tls,
            metrics_address,
            client: client.build().expect("client"),
            clock,
            state,
            db,
            stop: Some(stop_tx),
            server: Some(server),
        }
    }
}

impl TestApp {
    pub fn builder(backend: Backend) -> TestAppBuilder {
        TestAppBuilder { backend, db: None, clock: None, configure: Vec::new(), tls: false, localhost: false }
    }

    pub async fn spawn(backend: Backend) -> TestApp {
        Self::builder(backend).spawn().await
    }

    /// Stop serving (graceful) and wait until the listener is closed.
    pub async fn stop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.state.db.clone().close().await.ok();
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.expect("request")
    }

    pub async fn get_with_token(&self, path: &str, token: &str) -> reqwest::Response {
        self.client.get(self.url(path)).bearer_auth(token).send().await.expect("request")
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.expect("request")
    }

    pub async fn register(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json("/auth/register", &json!({ "username": username, "password": password })).await
    }

    /// Register, asserting success; returns the user JSON.
    pub async fn create_user(&self, username: &str, password: &str) -> Value {
        let resp = self.register(username, password).await;
        assert_eq!(resp.status(), StatusCode::CREATED, "register {username}");
        resp.json().await.expect("user json")
    }

    pub async fn login(&self, username: &str, password: &str) -> reqwest::Response {
        self.post_json("/auth/login", &json!({ "username": username, "password": password })).await
    }

    /// Log in, asserting success; returns the token response.
    pub async fn tokens(&self, username: &str, password: &str) -> Value {
        let resp = self.login(username, password).await;
        assert_eq!(resp.status(), StatusCode::OK, "login {username}");
        resp.json().await.expect("token json")
    }

    pub async fn refresh(&self, refresh_token: &str) -> reqwest::Response {
        self.post_json("/auth/refresh", &json!({ "refresh_token": refresh_token })).await
    }

    pub async fn jwks(&self) -> Value {
        let resp = self.get("/.well-known/jwks.json").await;
        assert_eq!(resp.status(), StatusCode::OK);
        resp.json().await.expect("jwks json")
    }

    pub async fn jwks_kids(&self) -> Vec<String> {
        self.jwks().await["keys"]
            .as_array()
            .expect("keys")
            .iter()
            .map(|k| k["kid"].as_str().expect("kid").to_owned())
            .collect()
    }

    /// The `admin` user (password `admin password 1`), created through the CLI.
    pub async fn create_user_with_roles_admin(&self) {
        let out = self
            .cli(&["users", "create", "--username", "admin", "--role", "admin"], Some("admin password 1\n"));
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    /// Run the `latchkey` binary against this app's database and master key.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> Output {
        run_cli(&self.db.url, self.db.dir.path().to_path_buf(), args, stdin, &[])
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Run the binary with the test configuration plus `extra_env`.
pub fn run_cli(
    database_url: &str,
    data_dir: PathBuf,
    args: &[&str],
    stdin: Option<&str>,
    extra_env: &[(&str, &str)],
) -> Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LATCHKEY_DATABASE_URL", database_url)
        .env("LATCHKEY_DATA_DIR", data_dir)
        .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env("LATCHKEY_JWKS_MAX_AGE", "300")
        .env("LATCHKEY_KEY_RELOAD_INTERVAL", "1")
        .env("LATCHKEY_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn latchkey");
    if let Some(mut pipe) = child.stdin.take() {
        if let Some(input) = stdin {
            pipe.write_all(input.as_bytes()).expect("write stdin");
        }
    }
    child.wait_with_output().expect("latchkey output")
}

/// Assert an error response: status, JSON body with `error == code`.
pub async fn assert_error(resp: reqwest::Response, status: u16, code: &str) -> ErrorBody {
    let actual = resp.status().as_u16();
    let content_type =
        resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let text = resp.text().await.expect("body");
    assert_eq!(actual, status, "status (body: {text})");
    assert!(content_type.starts_with("application/json"), "content type {content_type:?} (body: {text})");
    let body: ErrorBody =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("ErrorBody expected, got {text}: {e}"));
    assert_eq!(body.error, code, "error code (body: {text})");
    assert!(!body.error_description.is_empty());
    body
}

/// Poll `check` until it is true or `timeout` passes.
pub async fn eventually<F, Fut>(timeout: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if check().await {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[test]
fn replace_database_keeps_everything_else() {
    assert_eq!(replace_database("postgres://u@h:5432/test", "x"), "postgres://u@h:5432/x");
    assert_eq!(
        replace_database("postgres://u:p@h/test?sslmode=disable", "x"),
        "postgres://u:p@h/x?sslmode=disable"
    );
    assert_eq!(replace_database("postgres://h", "x"), "postgres://h/x");
}
