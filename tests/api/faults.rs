//! Faults: a replica killed with `kill -9` under load, PostgreSQL stopped
//! under load, a SQLite file that is read-only or locked, a replica whose
//! clock is behind. No test here asserts a speed; "nothing hangs" means
//! every request is answered within a client timeout far above the pool's
//! acquire timeout.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use latchkey::clock::MockClock;
use latchkey_verify::{Verifier, VerifierConfig};
use serde_json::{Value, json};

use crate::db_test;
use crate::helpers::{TEST_MASTER_KEY, TestApp, TestDb, assert_error, eventually, run_cli};
use crate::processes::serve_on;
use crate::replicas::{Cluster, PASSWORD};

const DATABASE_UNAVAILABLE: &str = "the database is unavailable; retry shortly";

fn is_root() -> bool {
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// `program args…`, as the `postgres` user when we are root (PostgreSQL
/// refuses to run as root).
fn as_postgres(program: &str) -> Command {
    if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--", program]);
        cmd
    } else {
        Command::new(program)
    }
}

fn run_ok(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A PostgreSQL cluster of the test's own (`initdb` into a temporary
/// directory, its own port): stopping it disturbs no other test.
struct PrivatePostgres {
    dir: tempfile::TempDir,
    port: u16,
}

impl PrivatePostgres {
    fn start() -> PrivatePostgres {
        let dir = tempfile::tempdir().unwrap();
        if is_root() {
            let uid = Command::new("id").args(["-u", "postgres"]).output().unwrap();
            let uid: u32 = String::from_utf8_lossy(&uid.stdout).trim().parse().expect("a postgres user");
            std::os::unix::fs::chown(dir.path(), Some(uid), None).unwrap();
        }
        let data = dir.path().join("data");
        run_ok(as_postgres("initdb").args(["-A", "trust", "-U", "postgres", "--no-sync", "-D"]).arg(&data));
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = PrivatePostgres { dir, port };
        pg.pg_ctl_start();
        pg
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl_start(&self) {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("postgres.log");
        run_ok(
            as_postgres("pg_ctl")
                .args(["start", "-w", "-o", &options, "-l"])
                .arg(log)
                .arg("-D")
                .arg(self.data()),
        );
    }

    fn stop(&self) {
        run_ok(as_postgres("pg_ctl").args(["stop", "-w", "-m", "fast", "-D"]).arg(self.data()));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = as_postgres("pg_ctl").args(["stop", "-m", "immediate", "-D"]).arg(self.data()).output();
    }
}

/// Answers seen by a load task: status codes, or `None` for no answer at all.
type Answers = Vec<Option<u16>>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_one_of_two_replicas_under_load_loses_no_acknowledged_write() {
    // A long grace period: a rotation committed by the killed replica whose
    // answer was lost is then still redeemable with the previous token.
    let Some(mut cluster) = Cluster::start(2, &[("LATCHKEY_REFRESH_GRACE_PERIOD", "120")]).await else {
        return;
    };
    let urls: Vec<String> = cluster.replicas.iter().map(|r| r.url("")).collect();
    let http = cluster.http.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let mut workers = Vec::new();
    for i in 0..6 {
        let (http, urls, stop) = (http.clone(), urls.clone(), Arc::clone(&stop));
        workers.push(tokio::spawn(async move {
            let user = format!("user{i}");
            let creds = json!({"username": user, "password": PASSWORD});
            // Each step goes to the other replica than the last; a step
            // that gets no answer is retried on the next one.
            let mut turn = i;
            let mut next = || {
                turn += 1;
                urls[turn % 2].clone()
            };
            let mut registered = false;
            while !registered {
                let resp = http.post(format!("{}/auth/register", next())).json(&creds).send().await;
                registered = matches!(resp.map(|r| r.status().as_u16()), Ok(201 | 409));
            }
            let mut refresh = loop {
                if let Ok(resp) = http.post(format!("{}/auth/login", next())).json(&creds).send().await
                    && resp.status() == 200
                {
                    break resp.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
                }
            };
            let mut answers: Answers = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let body = json!({"refresh_token": refresh});
                match http.post(format!("{}/auth/refresh", next())).json(&body).send().await {
                    Ok(resp) => {
                        answers.push(Some(resp.status().as_u16()));
                        if resp.status() == 200 {
                            refresh = resp.json::<Value>().await.unwrap()["refresh_token"]
                                .as_str()
                                .unwrap()
                                .to_owned();
                        }
                    }
                    Err(_) => answers.push(None),
                }
            }
            (user, refresh, answers)
        }));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    cluster.replicas[1].kill9();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        let (user, last_acknowledged, answers) = worker.await.unwrap();
        // Every answer was a success or no answer (the killed replica).
        assert!(answers.iter().all(|a| matches!(a, None | Some(200))), "{user}: {answers:?}");
        // Durable: the user signs in on the survivor, and the last token
        // the client was handed still refreshes there.
        cluster.login(0, &user).await;
        let resp = cluster.post(0, "/auth/refresh", &json!({"refresh_token": last_acknowledged})).await;
        assert_eq!(resp.status(), 200, "{user}: the last acknowledged refresh token was lost");
        let current = resp.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
        // One current token: the previous one now leads to the same one.
        let resp = cluster.post(0, "/auth/refresh", &json!({"refresh_token": last_acknowledged})).await;
        assert_eq!(resp.status(), 200);
        let again = resp.json::<Value>().await.unwrap()["refresh_token"].as_str().unwrap().to_owned();
        assert_eq!(again, current, "{user}: the family has two current tokens");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgresql_stopped_under_load_answers_503_and_recovers_by_itself() {
    if !crate::helpers::Backend::postgres_configured() {
        assert!(std::env::var_os("CI").is_none(), "PostgreSQL fault test not run");
        return;
    }
    let pg = tokio::task::block_in_place(PrivatePostgres::start);
    let dir = tempfile::tempdir().unwrap();
    let server = tokio::task::block_in_place(|| {
        serve_on(
            &pg.url(),
            dir.path(),
            &[("LATCHKEY_DB_ACQUIRE_TIMEOUT", "2"), ("LATCHKEY_DB_MAX_CONNECTIONS", "4")],
        )
    });
    // A hang detector, not a speed claim: ten times the acquire timeout.
    let http = reqwest::Client::builder().timeout(Duration::from_secs(20)).build().unwrap();
    let creds = json!({"username": "alice", "password": PASSWORD});
    let resp = http.post(server.url("/auth/register")).json(&creds).send().await.unwrap();
    assert_eq!(resp.status(), 201);

    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for i in 0..3 {
        let (http, url, stop, creds) = (http.clone(), server.url(""), Arc::clone(&stop), creds.clone());
        load.push(tokio::spawn(async move {
            let mut answers: Vec<(u16, String)> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let resp = if i == 0 {
                    http.get(format!("{url}/readyz")).send().await
                } else {
                    http.post(format!("{url}/auth/login")).json(&creds).send().await
                };
                let resp = match resp {
                    Ok(resp) => resp,
                    Err(e) => {
                        answers.push((0, format!("no answer: {e:?}")));
                        continue;
                    }
                };
                let status = resp.status().as_u16();
                answers.push((status, resp.text().await.unwrap_or_default()));
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            answers
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::task::block_in_place(|| pg.stop());

    // While it is down: the documented 503, readiness red, liveness and
    // the JWKS (served from memory) still fine.
    let resp = http.post(server.url("/auth/login")).json(&creds).send().await.unwrap();
    assert!(resp.headers().contains_key("retry-after"));
    let body = assert_error(resp, 503, "temporarily_unavailable").await;
    assert_eq!(body.error_description, DATABASE_UNAVAILABLE);
    assert_eq!(http.get(server.url("/readyz")).send().await.unwrap().status(), 503);
    assert_eq!(http.get(server.url("/healthz")).send().await.unwrap().status(), 200);
    assert_eq!(http.get(server.url("/.well-known/jwks.json")).send().await.unwrap().status(), 200);

    // Back: it recovers without a restart.
    tokio::task::block_in_place(|| pg.pg_ctl_start());
    let recovered = eventually(Duration::from_secs(30), || {
        let (http, url, creds) = (http.clone(), server.url("/auth/login"), creds.clone());
        async move { http.post(url).json(&creds).send().await.is_ok_and(|r| r.status() == 200) }
    })
    .await;
    assert!(recovered, "no successful login after PostgreSQL came back");
    assert_eq!(http.get(server.url("/readyz")).send().await.unwrap().status(), 200);
    stop.store(true, Ordering::Relaxed);
    for task in load {
        for (status, body) in task.await.unwrap() {
            assert!(matches!(status, 200 | 503), "under the outage: {status} {body}");
            if status == 503 && body.contains("temporarily_unavailable") {
                assert!(body.contains(DATABASE_UNAVAILABLE), "{body}");
            }
        }
    }
}

/// `latchkey serve` on `url` until it exits; its stderr. As `nobody` when
/// we are root, so that file modes apply.
fn serve_until_exit(url: &str, dir: &Path) -> (bool, String) {
    let binary = env!("CARGO_BIN_EXE_latchkey");
    let mut cmd = if is_root() {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "nobody", "--", binary]);
        cmd
    } else {
        Command::new(binary)
    };
    let out = cmd
        .arg("serve")
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LATCHKEY_DATABASE_URL", url)
        .env("LATCHKEY_DATA_DIR", dir)
        .env("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY)
        .env("LATCHKEY_LISTEN", "127.0.0.1:0")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn a_read_only_sqlite_file_stops_the_start_with_a_line_that_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("latchkey.db");
    let url = format!("sqlite://{}", file.display());
    let out = run_cli(&url, dir.path().to_path_buf(), &["migrate"], None, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for path in [file.clone(), file.with_extension("db-wal"), file.with_extension("db-shm")] {
        if path.exists() {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        }
    }
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o555)).unwrap();
    let (ok, stderr) = serve_until_exit(&url, dir.path());
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(!ok, "serve started on a read-only database");
    assert!(stderr.contains("the SQLite database is read-only for this process"), "{stderr}");
    assert_eq!(stderr.trim().lines().filter(|l| l.contains("read-only")).count(), 1, "{stderr}");
}

/// A `sqlite3` process holding the write lock of `file` until dropped.
struct SqliteLock(Child);

impl SqliteLock {
    fn take(file: &Path) -> SqliteLock {
        let script = "import sqlite3, sys\n\
                      c = sqlite3.connect(sys.argv[1], isolation_level=None)\n\
                      c.execute('BEGIN IMMEDIATE')\n\
                      c.execute('CREATE TABLE lock_holder (x)')\n\
                      print('locked', flush=True)\n\
                      sys.stdin.read()\n";
        let mut child = Command::new("python3")
            .args(["-c", script])
            .arg(file)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.take().unwrap()), &mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        SqliteLock(child)
    }
}

impl Drop for SqliteLock {
    fn drop(&mut self) {
        drop(self.0.stdin.take());
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_locked_sqlite_file_gives_a_clear_line_at_start_and_503_while_serving() {
    let db = TestDb::new(crate::helpers::Backend::Sqlite).await;
    let file = db.dir.path().join("latchkey.db");
    let server = tokio::task::block_in_place(|| serve_on(&db.url, db.dir.path(), &[]));
    let http = reqwest::Client::builder().timeout(Duration::from_secs(60)).build().unwrap();
    let creds = json!({"username": "alice", "password": PASSWORD});
    assert_eq!(http.post(server.url("/auth/register")).json(&creds).send().await.unwrap().status(), 201);

    // Locked while serving: a login waits out the busy timeout, then 503.
    let lock = tokio::task::block_in_place(|| SqliteLock::take(&file));
    let resp = http.post(server.url("/auth/login")).json(&creds).send().await.unwrap();
    let body = assert_error(resp, 503, "temporarily_unavailable").await;
    assert_eq!(body.error_description, DATABASE_UNAVAILABLE);
    // A second process cannot start on it either, and says why.
    let (ok, stderr) = tokio::task::block_in_place(|| {
        let out = run_cli(
            &db.url,
            db.dir.path().to_path_buf(),
            &["serve"],
            None,
            &[("LATCHKEY_LISTEN", "127.0.0.1:0")],
        );
        (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
    });
    assert!(!ok);
    assert!(stderr.contains("the SQLite database is locked by another process"), "{stderr}");
    drop(lock);
    // Released: the same server serves again.
    let resp = http.post(server.url("/auth/login")).json(&creds).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    drop(server);
}

db_test!(async fn a_replica_whose_clock_is_behind_signs_within_the_allowance_and_refuses_beyond(backend) {
    // The first replica creates the keys: on a fresh install the first key
    // activates as it is created, by this replica's clock.
    let first = TestApp::spawn(backend).await;
    first.create_user("alice", PASSWORD).await;
    let behind = Arc::new(MockClock::new());
    behind.rewind(Duration::from_secs(3 * 60));
    let late = TestApp::builder(backend).on(Arc::clone(&first.db)).clock(behind).spawn().await;
    // Three minutes behind: it signs with the published key, and the token
    // verifies with the other replica's JWKS.
    let tokens = late.tokens("alice", PASSWORD).await;
    let jwks = first.client.get(first.url("/.well-known/jwks.json")).send().await.unwrap().bytes().await.unwrap();
    let mut config = VerifierConfig::new(late.state.issuer(), "latchkey");
    let clock = Arc::clone(&late.clock);
    config.clock = Arc::new(move || latchkey::clock::Clock::now(clock.as_ref()).timestamp());
    let verifier = Verifier::from_jwks(config, &jwks).unwrap();
    assert!(verifier.verify(tokens["access_token"].as_str().unwrap()).await.is_ok());
    // Half an hour behind: past the allowance, nothing signs. A 503 that
    // says so, not a 500.
    let far = Arc::new(MockClock::new());
    far.rewind(Duration::from_secs(30 * 60));
    let lost = TestApp::builder(backend).on(Arc::clone(&first.db)).clock(far).spawn().await;
    let body = assert_error(lost.login("alice", PASSWORD).await, 503, "temporarily_unavailable").await;
    assert_eq!(body.error_description, "no signing key is active on this server yet; retry shortly");
});
