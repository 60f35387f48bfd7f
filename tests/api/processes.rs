//! latchkey as separate processes of the test binary's `latchkey`: for
//! what needs a real process (its own startup, signals, `kill -9`) and for
//! replicas of one database that share nothing but it.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};

use crate::helpers::{TEST_MASTER_KEY, TestDb};

/// `latchkey serve` as a separate process, with only `env` on top of an
/// empty environment (and port 0), logging at `info`.
pub struct ServeProcess {
    child: Option<Child>,
    /// `host:port` the server listens on.
    pub address: String,
    /// Everything logged up to the "listening" line.
    pub startup_log: String,
    /// The rest of stderr, once the process exits.
    rest: Option<std::thread::JoinHandle<Vec<String>>>,
}

impl ServeProcess {
    pub fn start(cwd: &Path, env: &[(&str, &str)]) -> ServeProcess {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_latchkey"));
        cmd.arg("serve")
            .current_dir(cwd)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LATCHKEY_LISTEN", "127.0.0.1:0")
            .env("LATCHKEY_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn latchkey serve");
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let mut startup_log = String::new();
        let address = loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("server exited before listening: {startup_log}"))
                .unwrap();
            startup_log.push_str(&line);
            startup_log.push('\n');
            if line.contains("latchkey is listening") {
                let rest = line.split("address=").nth(1).unwrap();
                break rest.split_whitespace().next().unwrap().to_owned();
            }
        };
        let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect());
        ServeProcess { child: Some(child), address, startup_log, rest: Some(rest) }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn sigterm(&self) {
        let pid = self.child.as_ref().unwrap().id().to_string();
        let kill = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(kill.success());
    }

    /// Wait for the exit; returns its status and what it logged after starting.
    pub fn wait(mut self) -> (ExitStatus, Vec<String>) {
        let status = self.child.take().unwrap().wait().unwrap();
        (status, self.rest.take().unwrap().join().unwrap())
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl ServeProcess {
    /// SIGKILL: no shutdown, no drain, nothing flushed.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("kill -9");
            child.wait().expect("reap");
        }
    }
}

/// The admin every replica bootstraps, and its password.
pub const ADMIN: (&str, &str) = ("admin", "admin password 1");
/// The issuer every replica shares (tokens carry it, so replicas must agree).
pub const ISSUER: &str = "http://localhost";

/// One replica of `db`: the test master key, a shared issuer, keys reloaded
/// every second, the bootstrap admin, no rate limits (the test's requests
/// all come from one address), plus `extra`.
pub fn replica(db: &TestDb, extra: &[(&str, &str)]) -> ServeProcess {
    serve_on(&db.url, db.dir.path(), extra)
}

/// The same on any database URL, with `dir` as data dir and working directory.
pub fn serve_on(url: &str, dir: &Path, extra: &[(&str, &str)]) -> ServeProcess {
    let data_dir = dir.display().to_string();
    let mut env = vec![
        ("LATCHKEY_DATABASE_URL", url),
        ("LATCHKEY_DATA_DIR", data_dir.as_str()),
        ("LATCHKEY_MASTER_KEY", TEST_MASTER_KEY),
        ("LATCHKEY_ISSUER", ISSUER),
        ("LATCHKEY_KEY_RELOAD_INTERVAL", "1"),
        ("LATCHKEY_JWKS_MAX_AGE", "300"),
        ("LATCHKEY_ADMIN_USERNAME", ADMIN.0),
        ("LATCHKEY_ADMIN_PASSWORD", ADMIN.1),
        ("LATCHKEY_USER_SCOPES", "openid profile email tasks:read"),
        ("LATCHKEY_LOGIN_RATE_PER_IP", "0"),
        ("LATCHKEY_TOKEN_RATE_PER_IP", "0"),
        ("LATCHKEY_REGISTER_RATE_PER_IP", "0"),
        ("LATCHKEY_USERNAME_FAILURE_RATE", "0"),
        ("LATCHKEY_LOCKOUT_THRESHOLD", "0"),
        ("LATCHKEY_PASSWORD_HASH_CONCURRENCY", "2"),
        ("LATCHKEY_DB_MAX_CONNECTIONS", "5"),
        ("LATCHKEY_SHUTDOWN_DELAY", "0"),
        ("LATCHKEY_LOG", "warn,latchkey=info"),
    ];
    env.extend_from_slice(extra);
    ServeProcess::start(dir, &env)
}
