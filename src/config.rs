//! Settings: typed, flat, one field per `LATCHKEY_*` variable.
//!
//! Each setting is declared once, as a field of [`Settings`]: the variable is
//! the field's name in upper case, the type is the field's, the default and
//! the bounds (its value parser) are in its `#[arg]` attribute, and its doc
//! comment is the documentation. clap reads that declaration; the README's
//! configuration table is generated from it ([`reference_table`], checked by
//! a test).
//!
//! Sources, later ones winning: the declared defaults, an optional TOML file
//! (`LATCHKEY_CONFIG`, keys are the variable names without the prefix, in any
//! case), the environment, and `LATCHKEY_<NAME>_FILE` for secrets. Every value
//! is parsed from text by its setting's parser, so an error always names the
//! variable it came from, in one line, and a numeric-looking password stays a
//! string. [`Settings::validate`] checks what involves several settings; `main`
//! prints any error and exits non-zero.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::{CommandFactory, Parser};
use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use crate::refresh::ContextPolicy;
use crate::scope::ScopeSet;

/// Environment variables that configure the process but are not settings,
/// with what they do and their default; the README lists them after the
/// settings. `LATCHKEY_TEST_DATABASE_URL` is the test suite's, documented
/// with it.
const OTHER_VARS: &[(&str, &str, &str)] = &[
    (
        "LATCHKEY_CONFIG",
        "a TOML file of settings, keys without the `LATCHKEY_` prefix (`access_token_ttl = 600`, lists as arrays); the environment wins over it",
        "unset",
    ),
    ("LATCHKEY_LOG", "log filter (`RUST_LOG` syntax)", "`warn,latchkey=info`"),
    ("LATCHKEY_TEST_DATABASE_URL", "", ""),
];

/// The OWASP Password Storage Cheat Sheet minimum for argon2id.
pub const OWASP_ARGON2_MEMORY_KIB: u32 = 19_456;
pub const OWASP_ARGON2_ITERATIONS: u32 = 2;
/// The largest argon2 parameters latchkey hashes with, or checks a stored
/// hash with: beyond them a PHC string is refused, not computed.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;
pub const MAX_ARGON2_ITERATIONS: u32 = 16;
pub const MAX_ARGON2_PARALLELISM: u32 = 16;

const DAY: u64 = 86_400;

/// A configuration error, already phrased for a human: one line.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ConfigError(pub String);

fn invalid(var: &str, why: impl fmt::Display) -> ConfigError {
    ConfigError(format!("invalid configuration: LATCHKEY_{var}: {why}"))
}

/// Algorithms latchkey signs access tokens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SigningAlg {
    Es256,
    EdDsa,
    Rs256,
}

impl SigningAlg {
    pub const fn as_str(self) -> &'static str {
        match self {
            SigningAlg::Es256 => "ES256",
            SigningAlg::EdDsa => "EdDSA",
            SigningAlg::Rs256 => "RS256",
        }
    }
}

impl fmt::Display for SigningAlg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SigningAlg {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "ES256" => Ok(SigningAlg::Es256),
            "EdDSA" => Ok(SigningAlg::EdDsa),
            "RS256" => Ok(SigningAlg::Rs256),
            other => Err(format!("expected ES256, EdDSA or RS256, got {other:?}")),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("expected text or json, got {other:?}")),
        }
    }
}

/// A database URL whose `Debug` and `Display` hide the password.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    pub fn new(url: impl Into<String>) -> Self {
        DatabaseUrl(SecretString::from(url.into()))
    }

    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }

    pub fn is_sqlite(&self) -> bool {
        self.expose().starts_with("sqlite:")
    }

    pub fn is_postgres(&self) -> bool {
        let url = self.expose();
        url.starts_with("postgres://") || url.starts_with("postgresql://")
    }

    /// The URL with any password replaced by `***`.
    pub fn redacted(&self) -> String {
        let url = self.expose();
        let Some(scheme_end) = url.find("://") else {
            return url.to_owned();
        };
        let rest = &url[scheme_end + 3..];
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let authority = &rest[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                let userinfo = &authority[..at];
                let user = userinfo.split(':').next().unwrap_or_default();
                let password_hidden = if userinfo.contains(':') { ":***" } else { "" };
                format!("{}{user}{password_hidden}{}", &url[..scheme_end + 3], &url[scheme_end + 3 + at..])
            }
            None => url.to_owned(),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({})", self.redacted())
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// PEM files for built-in TLS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Every setting of the server, each declared once (see the module doc).
/// Built by [`Settings::load`] in production and by [`Settings::for_tests`]
/// in tests (which never read the environment). The doc comment of a field
/// is the README's text for its variable: write it for operators.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "latchkey-settings",
    no_binary_name = true,
    disable_help_flag = true,
    disable_version_flag = true
)]
pub struct Settings {
    /// `postgres://…` or `sqlite://…` (`sqlite:///abs/path.db` works; a SQLite file is created, mode 0600, unless the URL says `mode=rw` or `mode=ro`); unset: `latchkey.db` in the data dir
    #[arg(long = "database-url", value_parser = database_url)]
    configured_database_url: Option<DatabaseUrl>,
    /// The database: `LATCHKEY_DATABASE_URL`, or the SQLite default in `data_dir`.
    #[arg(skip = DatabaseUrl::new(String::new()))]
    pub database_url: DatabaseUrl,
    /// directory for the SQLite default and a generated master key (created mode 0700)
    #[arg(long, default_value = "./data")]
    pub data_dir: PathBuf,
    /// address:port to bind
    #[arg(long, default_value = "127.0.0.1:8080", value_parser = socket_addr)]
    pub listen: SocketAddr,
    /// the `iss` value and base of discovery URLs (https in production); unset: `http://` (`https://` with built-in TLS) + the listen address
    #[arg(long, value_parser = issuer)]
    pub issuer: Option<String>,
    /// default `aud` of access tokens
    #[arg(long, default_value = "latchkey", value_parser = audience)]
    pub audience: String,
    /// access-token lifetime, seconds
    #[arg(long, default_value = "900", value_parser = seconds(30, DAY))]
    pub access_token_ttl: Duration,
    /// absolute lifetime of a refresh family (a sign-in session), seconds (default 30 days)
    #[arg(long, default_value = "2592000", value_parser = seconds(60, 400 * DAY))]
    pub refresh_token_ttl: Duration,
    /// a refresh family unused this long ends, seconds (default 14 days)
    #[arg(long, default_value = "1209600", value_parser = seconds(60, 400 * DAY))]
    pub refresh_idle_timeout: Duration,
    /// how long the previous refresh token of a family still returns the current one (two tabs refreshing at once), seconds
    #[arg(long, default_value = "15", value_parser = seconds(0, 300))]
    pub refresh_grace_period: Duration,
    /// live refresh families per user; the oldest ends beyond it
    #[arg(long, default_value = "20", value_parser = integer::<u32>(1, u64::from(u32::MAX)))]
    pub max_sessions_per_user: u32,
    /// a refresh from outside this IPv4 prefix of the last refresh's address is a context change (0: any IPv4 address is the same network); see [suspicious refreshes](#protection-and-operations)
    #[arg(long, default_value = "16", value_parser = integer::<u8>(0, 32))]
    pub refresh_context_ipv4_prefix: u8,
    /// the same for IPv6
    #[arg(long, default_value = "48", value_parser = integer::<u8>(0, 128))]
    pub refresh_context_ipv6_prefix: u8,
    /// what a context change does: `audit` (record a `refresh_context_changed` event) or `end_session` (also end the session: the user signs in again)
    #[arg(long, default_value = "audit", value_parser = from_str::<ContextPolicy>)]
    pub refresh_context_policy: ContextPolicy,
    /// `ES256`, `EdDSA` or `RS256` for access tokens
    #[arg(long, default_value = "ES256", value_parser = from_str::<SigningAlg>)]
    pub signing_alg: SigningAlg,
    /// 32–64 random bytes (base64 or hex) that encrypt private keys and derive token MAC keys; unset: generated into the data dir (mode 0600), with a warning
    #[arg(long, value_parser = secret)]
    pub master_key: Option<SecretString>,
    /// create this admin on start if it does not exist (with `LATCHKEY_ADMIN_PASSWORD`)
    #[arg(long, value_parser = text)]
    pub admin_username: Option<String>,
    /// the password of `LATCHKEY_ADMIN_USERNAME`
    #[arg(long, value_parser = secret)]
    pub admin_password: Option<SecretString>,
    /// automatic signing-key rotation period, seconds (default 30 days); at least twice `LATCHKEY_JWKS_MAX_AGE` + `LATCHKEY_KEY_RELOAD_INTERVAL`, so a key is published long enough before it signs
    #[arg(long, default_value = "2592000", value_parser = seconds(3_600, 400 * DAY))]
    pub key_rotation_interval: Duration,
    /// upper bound of the JWKS `Cache-Control: max-age`, seconds
    #[arg(long, default_value = "3600", value_parser = seconds(0, DAY))]
    pub jwks_max_age: Duration,
    /// how often each replica reloads keys from the database, seconds
    #[arg(long, default_value = "30", value_parser = seconds(1, 3_600))]
    pub key_reload_interval: Duration,
    /// hashing threads: argon2 hashes computed at once; unset: the number of CPUs
    #[arg(long = "password-hash-concurrency", value_parser = integer::<usize>(1, 512))]
    configured_password_hash_concurrency: Option<usize>,
    /// Password hashes computed at once: the setting, or the number of CPUs.
    #[arg(skip)]
    pub password_hash_concurrency: usize,
    /// logins that may wait for a hashing slot before new ones get `503` (registrations never hold more than half the threads, queued or running; beyond that they get `503`)
    #[arg(long, default_value = "256", value_parser = integer::<usize>(0, 1_000_000))]
    pub password_hash_queue: usize,
    /// argon2id memory, KiB (the lower bound is the OWASP minimum)
    #[arg(long, default_value = "19456", value_parser = argon2(OWASP_ARGON2_MEMORY_KIB, MAX_ARGON2_MEMORY_KIB))]
    pub argon2_memory_kib: u32,
    /// argon2id iterations (the lower bound is the OWASP minimum)
    #[arg(long, default_value = "2", value_parser = argon2(OWASP_ARGON2_ITERATIONS, MAX_ARGON2_ITERATIONS))]
    pub argon2_iterations: u32,
    /// argon2id lanes
    #[arg(long, default_value = "1", value_parser = argon2(1, MAX_ARGON2_PARALLELISM))]
    pub argon2_parallelism: u32,
    /// largest request body, bytes
    #[arg(long, default_value = "65536", value_parser = integer::<usize>(1024, 16 * 1024 * 1024))]
    pub body_limit: usize,
    /// comma-separated IPs/CIDRs whose `X-Forwarded-For` is believed
    #[arg(long, default_value = "", value_parser = proxies)]
    pub trusted_proxies: ::std::vec::Vec<IpNet>,
    /// comma-separated exact origins (`https://app.example.com`, no path, no `*`) whose pages may call the token, revoke, userinfo and `/auth/*` endpoints with credentials, and use cookie mode; see [Browser apps](#browser-apps-cors-and-cookie-mode)
    #[arg(long, default_value = "", value_parser = origins)]
    pub cors_origins: ::std::vec::Vec<String>,
    /// the same for `/admin/*` (an admin console on its own origin); empty: the admin API is closed to browsers
    #[arg(long, default_value = "", value_parser = origins)]
    pub admin_cors_origins: ::std::vec::Vec<String>,
    /// `text` or `json`
    #[arg(long, default_value = "text", value_parser = from_str::<LogFormat>)]
    pub log_format: LogFormat,
    /// database pool size
    #[arg(long, default_value = "10", value_parser = integer::<u32>(1, 10_000))]
    pub db_max_connections: u32,
    /// `serve` applies pending migrations; `false` when it runs as a role that may not change the schema (it then refuses to start while a migration is pending; see [least-privilege roles](#least-privilege-database-roles-postgresql))
    #[arg(long, default_value = "true", value_parser = boolean, action = clap::ArgAction::Set)]
    pub migrate_on_start: bool,
    /// scopes a first-party password login may grant
    #[arg(long, default_value = "openid profile email", value_parser = scopes)]
    pub user_scopes: ScopeSet,
    /// whether `POST /auth/register` is open to anyone
    #[arg(long, default_value = "true", value_parser = boolean, action = clap::ArgAction::Set)]
    pub allow_registration: bool,
    /// authorization code lifetime, seconds
    #[arg(long, default_value = "60", value_parser = seconds(10, 600))]
    pub auth_code_ttl: Duration,
    /// sign-in page browser session lifetime, seconds
    #[arg(long, default_value = "43200", value_parser = seconds(60, 90 * DAY))]
    pub session_ttl: Duration,
    /// how long a rotated client secret keeps working, seconds
    #[arg(long, default_value = "86400", value_parser = seconds(0, 90 * DAY))]
    pub client_secret_overlap: Duration,
    /// PEM certificate chain (leaf first): serve HTTPS directly, with `LATCHKEY_TLS_KEY` (the default issuer becomes `https://`); reloaded on `SIGHUP` or when it changes, see [HTTPS](#https); unset: plain HTTP, e.g. behind a proxy
    #[arg(long, value_parser = path)]
    tls_cert: Option<PathBuf>,
    /// the private key (PKCS#8, PKCS#1 or SEC1 PEM) of `LATCHKEY_TLS_CERT`
    #[arg(long, value_parser = path)]
    tls_key: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain and private key.
    #[arg(skip)]
    pub tls: Option<TlsFiles>,
    /// how often the TLS files are read to see whether they changed, seconds (0: only on `SIGHUP`)
    #[arg(long, default_value = "5", value_parser = seconds(0, DAY))]
    pub tls_reload_interval: Duration,
    /// `Strict-Transport-Security: max-age` sent when the issuer is `https://`, seconds (default 2 years; 0 tells browsers to forget it)
    #[arg(long, default_value = "63072000", value_parser = seconds(0, 10 * 366 * DAY))]
    pub hsts_max_age: Duration,
    /// password checks per minute per client address (0: unlimited)
    #[arg(long, default_value = "30", value_parser = integer::<u32>(0, u64::from(u32::MAX)))]
    pub login_rate_per_ip: u32,
    /// token-endpoint and refresh requests per minute per client address (0: unlimited)
    #[arg(long, default_value = "300", value_parser = integer::<u32>(0, u64::from(u32::MAX)))]
    pub token_rate_per_ip: u32,
    /// `POST /auth/register` requests per hour per client address, in bursts of as many (0: unlimited)
    #[arg(long, default_value = "20", value_parser = integer::<u32>(0, u64::from(u32::MAX)))]
    pub register_rate_per_ip: u32,
    /// failed logins per minute for one username (from anywhere) before it counts as under attack; during an attack, also the attempts per minute that all addresses new for it share (see [Protection](#protection-and-operations))
    #[arg(long, default_value = "10", value_parser = integer::<u32>(0, u64::from(u32::MAX)))]
    pub username_failure_rate: u32,
    /// failures of one username from one address before that pair is locked (0: never)
    #[arg(long, default_value = "5", value_parser = integer::<u32>(0, u64::from(u32::MAX)))]
    pub lockout_threshold: u32,
    /// how long a locked username and address pair stays locked, seconds
    #[arg(long, default_value = "900", value_parser = seconds(1, DAY))]
    pub lockout_duration: Duration,
    /// comma-separated roles whose users must have a second factor: until they enrol one, signing in gives them only a token that can enrol (`latchkey:mfa_enrol`); see [Second factors](#second-factors-and-passkeys)
    #[arg(long, default_value = "", value_parser = role_list)]
    pub mfa_required_roles: ::std::vec::Vec<String>,
    /// adding or removing a second factor needs a sign-in at most this many seconds old
    #[arg(long = "mfa-reauth-window", default_value = "300", value_parser = seconds(30, DAY))]
    pub mfa_reauth_window: Duration,
    /// second-factor answers per minute per client address, in bursts of as many (0: unlimited); starting a passkey sign-in has a budget of this size of its own; per user, 5 wrong answers in 15 minutes lock the second step for 15 minutes on every replica
    #[arg(long, default_value = "30", value_parser = integer::<u32>(0, u64::from(u32::MAX)))]
    pub mfa_rate_per_ip: u32,
    /// how often the purge job deletes dead rows, seconds
    #[arg(long, default_value = "3600", value_parser = seconds(1, DAY))]
    pub purge_interval: Duration,
    /// how long revoked and expired rows are kept before the purge deletes them, seconds (default 7 days)
    #[arg(long, default_value = "604800", value_parser = seconds(0, 400 * DAY))]
    pub purge_retention: Duration,
    /// how long audit events are kept, seconds (default 90 days)
    #[arg(long, default_value = "7776000", value_parser = seconds(DAY, 10 * 366 * DAY))]
    pub audit_retention: Duration,
    /// when set, `GET /metrics` needs `Authorization: Bearer <token>`
    #[arg(long, value_parser = secret)]
    pub metrics_token: Option<SecretString>,
    /// address:port of a separate plain-HTTP listener for `GET /metrics` (bind it to a private interface); when set, the main listener answers `404` for `/metrics`; unset: served on the main listener
    #[arg(long, value_parser = socket_addr)]
    pub metrics_listen: Option<SocketAddr>,
    /// after SIGTERM, how long to keep serving with `/readyz` answering `503`, so load balancers stop sending traffic before the listener closes, seconds
    #[arg(long, default_value = "5", value_parser = seconds(0, 300))]
    pub shutdown_delay: Duration,
    /// then, after the listener closes, how long in-flight requests may take before connections are cut, seconds
    #[arg(long, default_value = "30", value_parser = seconds(1, 3_600))]
    pub shutdown_grace: Duration,
    /// connections the pool keeps open even when idle (at most `LATCHKEY_DB_MAX_CONNECTIONS`)
    #[arg(long, default_value = "0", value_parser = integer::<u32>(0, 10_000))]
    pub db_min_connections: u32,
    /// an idle connection above the minimum is closed after this, seconds (0: never)
    #[arg(long, default_value = "600", value_parser = seconds(0, DAY))]
    pub db_idle_timeout: Duration,
    /// a connection is replaced after this age, seconds (0: never)
    #[arg(long, default_value = "1800", value_parser = seconds(0, 7 * DAY))]
    pub db_max_lifetime: Duration,
    /// how long a request waits for a free connection before failing, seconds
    #[arg(long, default_value = "10", value_parser = seconds(1, 300))]
    pub db_acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout`: a longer statement is cancelled, seconds (0: no limit). It also bounds migrations: run a long one with `LATCHKEY_DB_STATEMENT_TIMEOUT=0 latchkey migrate`. It is sent as the `options` startup parameter, which PgBouncer refuses unless `ignore_startup_parameters` lists `options` (or set 0)
    #[arg(long, default_value = "30", value_parser = seconds(0, DAY))]
    pub db_statement_timeout: Duration,
}

/// Secrets that may instead be given as a file (`LATCHKEY_<NAME>_FILE`),
/// as container secrets are: the file's content, without a trailing newline.
pub const FILE_SECRETS: &[&str] = &["MASTER_KEY", "ADMIN_PASSWORD", "METRICS_TOKEN", "DATABASE_URL"];

/// Everything `load` found that deserves a warning once logging is up.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub warnings: Vec<String>,
}

/// A declared setting: its variable name without the prefix, and whether it
/// has a default (one without is optional: an empty value means unset).
struct Declared {
    name: String,
    has_default: bool,
}

/// The declared settings, read off the clap declaration.
fn declared() -> Vec<Declared> {
    Settings::command()
        .get_arguments()
        .filter_map(|arg| {
            let long = arg.get_long()?;
            Some(Declared { name: var_name(long), has_default: !arg.get_default_values().is_empty() })
        })
        .collect()
}

/// `access-token-ttl` → `ACCESS_TOKEN_TTL`.
fn var_name(long: &str) -> String {
    long.to_ascii_uppercase().replace('-', "_")
}

/// `ACCESS_TOKEN_TTL` → `access-token-ttl`.
fn long_name(var: &str) -> String {
    var.to_ascii_lowercase().replace('_', "-")
}

impl Settings {
    /// Load from the process environment (and `LATCHKEY_CONFIG` if set).
    pub fn load() -> Result<(Settings, LoadReport), ConfigError> {
        let env: Vec<(String, String)> = std::env::vars().collect();
        let file = match std::env::var("LATCHKEY_CONFIG") {
            Ok(path) if !path.is_empty() => Some(read_file(Path::new(&path))?),
            _ => None,
        };
        Self::from_sources(file.as_deref(), &env)
    }

    /// Load from explicit sources; the testable core of [`Settings::load`].
    pub fn from_sources(
        file_toml: Option<&str>,
        env: &[(String, String)],
    ) -> Result<(Settings, LoadReport), ConfigError> {
        let declared = declared();
        let known = |name: &str| declared.iter().any(|d| d.name == name);
        let mut report = LoadReport::default();
        let mut raw: BTreeMap<String, String> = BTreeMap::new();
        if let Some(text) = file_toml {
            let table: toml::Table =
                text.parse().map_err(|e| ConfigError(format!("invalid configuration file: {e}")))?;
            for (key, value) in table {
                let name = key.to_ascii_uppercase();
                if !known(&name) {
                    report.warnings.push(format!("unknown key {key:?} in the configuration file is ignored"));
                    continue;
                }
                raw.insert(name, toml_to_text(&key, value)?);
            }
        }
        let mut from_files = Vec::new();
        for (key, value) in env {
            let Some(name) = key.strip_prefix("LATCHKEY_") else { continue };
            if OTHER_VARS.iter().any(|(var, _, _)| var == key) {
                continue;
            }
            if let Some(secret) = name.strip_suffix("_FILE").filter(|n| FILE_SECRETS.contains(n)) {
                from_files.push((secret, value));
                continue;
            }
            if !known(name) {
                report.warnings.push(format!("unknown environment variable {key} is ignored"));
                continue;
            }
            raw.insert(name.to_owned(), value.clone());
        }
        for (name, path) in from_files {
            if raw.contains_key(name) {
                return Err(invalid(
                    name,
                    format!("set both LATCHKEY_{name} and LATCHKEY_{name}_FILE; set one"),
                ));
            }
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid(&format!("{name}_FILE"), format!("cannot read {path}: {e}")))?;
            raw.insert(name.to_owned(), text.trim_end_matches(['\n', '\r']).to_owned());
        }
        // An optional setting given as an empty string is unset.
        raw.retain(|name, value| {
            !value.is_empty() || declared.iter().any(|d| d.name == *name && d.has_default)
        });
        let args = raw.iter().map(|(name, value)| format!("--{}={value}", long_name(name)));
        let mut settings = Settings::try_parse_from(args).map_err(from_clap)?;
        settings.derive()?;
        settings.validate()?;
        if let Some(w) = settings.issuer_warning() {
            report.warnings.push(w);
        }
        Ok((settings, report))
    }

    /// Fill the fields that follow from the declared ones.
    fn derive(&mut self) -> Result<(), ConfigError> {
        self.database_url = self.configured_database_url.clone().unwrap_or_else(|| {
            DatabaseUrl::new(format!("sqlite://{}?mode=rwc", self.data_dir.join("latchkey.db").display()))
        });
        self.password_hash_concurrency = self
            .configured_password_hash_concurrency
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get().min(512)));
        self.tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.clone(), key: key.clone() }),
            (None, None) => None,
            _ => {
                return Err(ConfigError(
                    "invalid configuration: LATCHKEY_TLS_CERT and LATCHKEY_TLS_KEY must be set together"
                        .into(),
                ));
            }
        };
        Ok(())
    }

    /// Check what involves more than one setting, or more than the setting
    /// itself; each setting's own bounds are in its parser. One line per problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.key_rotation_interval < self.publish_lead() * 2 {
            return Err(invalid(
                "KEY_ROTATION_INTERVAL",
                "must be at least twice LATCHKEY_JWKS_MAX_AGE + LATCHKEY_KEY_RELOAD_INTERVAL, so a key is published long enough before it signs",
            ));
        }
        if self.db_min_connections > self.db_max_connections {
            return Err(invalid("DB_MIN_CONNECTIONS", "must not exceed LATCHKEY_DB_MAX_CONNECTIONS"));
        }
        if self.metrics_listen == Some(self.listen) && self.listen.port() != 0 {
            return Err(invalid("METRICS_LISTEN", "must differ from LATCHKEY_LISTEN"));
        }
        if self.admin_username.is_some() != self.admin_password.is_some() {
            return Err(ConfigError(
                "invalid configuration: LATCHKEY_ADMIN_USERNAME and LATCHKEY_ADMIN_PASSWORD must be set together".into(),
            ));
        }
        Ok(())
    }

    /// How long before it signs anything a new key must be published: one
    /// full JWKS cache lifetime, plus one reload interval for replicas that
    /// have not seen the key yet, plus a little clock skew.
    pub fn publish_lead(&self) -> Duration {
        self.jwks_max_age + self.key_reload_interval + Duration::from_secs(5)
    }

    fn issuer_warning(&self) -> Option<String> {
        match &self.issuer {
            Some(i) if i.starts_with("http://") && !is_loopback_url(i) => Some(format!(
                "LATCHKEY_ISSUER {i} is not https: tokens and cookies travel in clear text"
            )),
            None if self.listen.ip().is_unspecified() && self.tls.is_none() => Some(
                "LATCHKEY_ISSUER is not set and LATCHKEY_LISTEN is a wildcard address: set LATCHKEY_ISSUER to the public URL".into(),
            ),
            _ => None,
        }
    }

    /// The issuer for a server bound to `bound`: the configured one, or
    /// `http://` (`https://` with TLS) + the bound address.
    pub fn issuer_for(&self, bound: SocketAddr) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        self.issuer.clone().unwrap_or_else(|| format!("{scheme}://{bound}"))
    }

    /// Settings for tests: the declared defaults, except port 0, cheap
    /// argon2, a short grace window and key reload, a fixed master key, no
    /// rate limits, the given database; never the environment.
    pub fn for_tests(database_url: &str, data_dir: &Path) -> Settings {
        #[allow(clippy::expect_used)]
        // The defaults parse: `zero_configuration_gives_the_documented_defaults`.
        let mut s =
            Settings::try_parse_from(std::iter::empty::<String>()).expect("the declared defaults parse");
        s.configured_database_url = Some(DatabaseUrl::new(database_url));
        s.data_dir = data_dir.to_path_buf();
        s.configured_password_hash_concurrency = Some(4);
        #[allow(clippy::expect_used)] // Nothing in it can fail: no TLS files are set.
        s.derive().expect("test settings derive");
        s.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        s.refresh_grace_period = Duration::from_secs(5);
        s.master_key = Some(SecretString::from("dGVzdC1tYXN0ZXIta2V5LW5vdC1mb3ItcHJvZHVjdGlvbiE".to_owned()));
        s.jwks_max_age = Duration::from_secs(300);
        s.key_reload_interval = Duration::from_secs(1);
        s.argon2_memory_kib = 64;
        // Below the OWASP minimum the parsers enforce: only tests get here.
        s.argon2_iterations = 1;
        s.user_scopes = ScopeSet::from_stored("openid profile email tasks:read tasks:write");
        s.login_rate_per_ip = 0;
        s.token_rate_per_ip = 0;
        s.register_rate_per_ip = 0;
        s.mfa_rate_per_ip = 0;
        s.username_failure_rate = 0;
        s.lockout_threshold = 0;
        // Tests stop servers often: no load balancer to wait for.
        s.shutdown_delay = Duration::ZERO;
        s.shutdown_grace = Duration::from_secs(10);
        s
    }
}

/// clap's error for a value its parser refused, as one line naming the variable.
fn from_clap(error: clap::Error) -> ConfigError {
    use clap::error::{ContextKind, ContextValue};
    let var = match error.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(arg)) => {
            var_name(arg.trim_start_matches('-').split([' ', '=']).next().unwrap_or_default())
        }
        _ => return ConfigError(format!("invalid configuration: {}", error.kind())),
    };
    match std::error::Error::source(&error) {
        Some(why) => invalid(&var, why),
        None => invalid(&var, error.kind()),
    }
}

// Value parsers: each turns a variable's text into its type, or says why not.
// They hold each setting's bounds; the README's ranges are read off them.

fn number(text: &str) -> Result<u64, String> {
    text.trim().parse::<u64>().map_err(|_| format!("expected a non-negative integer, got {text:?}"))
}

/// Whole seconds between `min` and `max`.
fn seconds(min: u64, max: u64) -> impl Fn(&str) -> Result<Duration, String> + Clone + Send + Sync + 'static {
    move |text| {
        let secs = number(text)?;
        if !(min..=max).contains(&secs) {
            return Err(format!("must be between {min} and {max} seconds, got {secs}"));
        }
        Ok(Duration::from_secs(secs))
    }
}

/// An integer between `min` and `max` (both within `T`).
fn integer<T: TryFrom<u64> + Clone + Send + Sync + 'static>(
    min: u64,
    max: u64,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |text| {
        let n = number(text)?;
        if !(min..=max).contains(&n) {
            return Err(format!("must be between {min} and {max}, got {n}"));
        }
        T::try_from(n).map_err(|_| format!("must be between {min} and {max}, got {n}"))
    }
}

/// An argon2id parameter: at least `min` (for memory and iterations, the
/// OWASP Password Storage Cheat Sheet's minimum), at most `max`.
fn argon2(min: u32, max: u32) -> impl Fn(&str) -> Result<u32, String> + Clone + Send + Sync + 'static {
    move |text| {
        let n = number(text)?;
        let owasp = if min > 1 { " (OWASP minimum)" } else { "" };
        match u32::try_from(n) {
            Ok(n) if n < min => Err(format!("must be at least {min}{owasp}, got {n}")),
            Ok(n) if n <= max => Ok(n),
            _ => Err(format!("must be at most {max}, got {n}")),
        }
    }
}

fn from_str<T: FromStr<Err = String>>(text: &str) -> Result<T, String> {
    text.trim().parse()
}

fn boolean(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!("expected true or false, got {other:?}")),
    }
}

fn text(text: &str) -> Result<String, String> {
    Ok(text.to_owned())
}

fn secret(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text.to_owned()))
}

fn path(text: &str) -> Result<PathBuf, String> {
    Ok(PathBuf::from(text))
}

fn socket_addr(text: &str) -> Result<SocketAddr, String> {
    text.trim().parse().map_err(|_| format!("expected address:port, got {text:?}"))
}

fn database_url(text: &str) -> Result<DatabaseUrl, String> {
    let url = DatabaseUrl::new(text);
    if !url.is_sqlite() && !url.is_postgres() {
        return Err(format!("expected a postgres:// or sqlite:// URL, got {}", url.redacted()));
    }
    Ok(url)
}

fn issuer(text: &str) -> Result<String, String> {
    let issuer = text.trim_end_matches('/');
    validate_issuer(issuer)?;
    Ok(issuer.to_owned())
}

fn audience(text: &str) -> Result<String, String> {
    if text.trim().is_empty() || text.contains(char::is_whitespace) {
        return Err("must be a non-empty string without spaces".into());
    }
    Ok(text.to_owned())
}

fn role_list(text: &str) -> Result<Vec<String>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            crate::users::Role::parse(s)
                .map(|r| r.as_str().to_owned())
                .map_err(|_| format!("{s:?} is not a role name"))
        })
        .collect()
}

fn scopes(text: &str) -> Result<ScopeSet, String> {
    ScopeSet::parse(text).map_err(|e| e.to_string())
}

fn proxies(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{s:?} is not an IP address or CIDR"))
        })
        .collect()
}

/// A comma-separated list of exact origins; empty entries are skipped.
fn origins(text: &str) -> Result<Vec<String>, String> {
    text.split(',').map(str::trim).filter(|s| !s.is_empty()).map(parse_origin).collect()
}

/// The README's configuration table, generated from the declaration: one
/// row per setting with its doc, the values its parser accepts (for numbers)
/// and its default, then the `_FILE` forms and the other variables.
pub fn reference_table() -> String {
    let mut out = String::from("| Variable | Meaning | Range | Default |\n|---|---|---|---|\n");
    let cmd = Settings::command();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        let var = var_name(long);
        let doc = arg.get_long_help().or(arg.get_help()).map(|d| d.to_string()).unwrap_or_default();
        let doc = doc.split_whitespace().collect::<Vec<_>>().join(" ");
        let default = match arg.get_default_values() {
            [] => "unset".to_owned(),
            [d] if d.is_empty() => "empty".to_owned(),
            values => {
                values.iter().map(|v| format!("`{}`", v.to_string_lossy())).collect::<Vec<_>>().join(", ")
            }
        };
        let range = numeric_range(&var).unwrap_or_default();
        out.push_str(&format!("| `LATCHKEY_{var}` | {doc} | {range} | {default} |\n"));
    }
    let files = FILE_SECRETS.iter().map(|s| format!("`{s}`")).collect::<Vec<_>>().join(", ");
    out.push_str(&format!(
        "| `LATCHKEY_<NAME>_FILE` | for {files}: read the value from this file (a container secret; one trailing newline is dropped); setting both forms is an error |  | unset |\n"
    ));
    for (var, doc, default) in OTHER_VARS.iter().filter(|(_, doc, _)| !doc.is_empty()) {
        out.push_str(&format!("| `{var}` | {doc} |  | {default} |\n"));
    }
    out
}

/// The integers a numeric setting accepts, read off its parser: from a value
/// it accepts (its default, or 1), binary search for the smallest and largest.
fn numeric_range(var: &str) -> Option<String> {
    let accepts = |n: u64| Settings::try_parse_from([format!("--{}={n}", long_name(var))]).is_ok();
    let cmd = Settings::command();
    let arg = cmd.get_arguments().find(|a| a.get_long() == Some(&long_name(var)))?;
    let start = match arg.get_default_values() {
        [d] => d.to_str()?.parse::<u64>().ok()?,
        [] => 1,
        _ => return None,
    };
    if !accepts(start) || accepts(u64::MAX) && accepts(0) {
        return None;
    }
    let (mut lo, mut hi) = (0, start); // smallest accepted is in (lo, hi], or 0
    let min = if accepts(0) {
        0
    } else {
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if accepts(mid) { hi = mid } else { lo = mid }
        }
        hi
    };
    let (mut lo, mut hi) = (start, u64::MAX); // largest accepted is in [lo, hi)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if accepts(mid) { lo = mid } else { hi = mid }
    }
    let max = lo;
    if max >= u64::from(u32::MAX) {
        return (min > 0).then(|| format!("≥ {min}"));
    }
    Some(format!("{min}–{max}"))
}

/// RFC 8414 §2: an https URL (http allowed for development) with no query or fragment.
fn validate_issuer(issuer: &str) -> Result<(), String> {
    let rest = issuer
        .strip_prefix("https://")
        .or_else(|| issuer.strip_prefix("http://"))
        .ok_or("must start with https:// (or http:// for development)")?;
    if rest.is_empty() || rest.starts_with('/') {
        return Err("must include a host".into());
    }
    if issuer.contains(['?', '#']) {
        return Err("must not contain a query or fragment (RFC 8414 §2)".into());
    }
    if issuer.contains(char::is_whitespace) {
        return Err("must not contain spaces".into());
    }
    Ok(())
}

/// One exact web origin, written exactly as a browser sends it in `Origin`
/// (RFC 6454 §6.1: lower-case scheme and host, no default port, no path).
///
/// The CORS check compares the `Origin` header with these strings byte for
/// byte, so anything the browser would serialize differently
/// (`https://App.example.com`, `https://app.example.com:443`,
/// `https://app.example.com/`) is refused here with the spelling to use,
/// instead of silently never matching.
fn parse_origin(text: &str) -> Result<String, String> {
    if text == "*" {
        return Err("\"*\" is not allowed: list exact origins such as https://app.example.com".into());
    }
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not an origin: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http:// or https:// origin"));
    }
    let origin = url.origin().ascii_serialization();
    if origin != text {
        return Err(format!(
            "{text:?} is not an exact origin (scheme://host[:port], no path, query, fragment or trailing slash): write {origin:?}"
        ));
    }
    Ok(origin)
}

fn is_loopback_url(url: &str) -> bool {
    let host = url.trim_start_matches("http://").split(['/', ':']).next().unwrap_or_default();
    host == "localhost" || host.starts_with("127.") || url.starts_with("http://[::1]")
}

fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError(format!("invalid configuration: LATCHKEY_CONFIG: cannot read {}: {e}", path.display()))
    })
}

fn toml_to_text(key: &str, value: toml::Value) -> Result<String, ConfigError> {
    Ok(match value {
        toml::Value::String(s) => s,
        toml::Value::Integer(i) => i.to_string(),
        toml::Value::Boolean(b) => b.to_string(),
        toml::Value::Array(items) => {
            items.into_iter().map(|v| toml_to_text(key, v)).collect::<Result<Vec<_>, _>>()?.join(",")
        }
        other => {
            return Err(ConfigError(format!("invalid configuration file: {key}: unsupported value {other}")));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
    }

    #[test]
    fn secrets_can_come_from_files() {
        use secrecy::ExposeSecret;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("master_key");
        std::fs::write(&key, "dGVzdC1tYXN0ZXIta2V5LW5vdC1mb3ItcHJvZHVjdGlvbiE\n").unwrap();
        let key = key.display().to_string();
        let (s, _) = Settings::from_sources(None, &env(&[("LATCHKEY_MASTER_KEY_FILE", &key)])).unwrap();
        assert_eq!(s.master_key.unwrap().expose_secret(), "dGVzdC1tYXN0ZXIta2V5LW5vdC1mb3ItcHJvZHVjdGlvbiE");

        let both = env(&[("LATCHKEY_MASTER_KEY_FILE", &key), ("LATCHKEY_MASTER_KEY", "x")]);
        let err = Settings::from_sources(None, &both).unwrap_err();
        assert!(err.0.contains("LATCHKEY_MASTER_KEY") && err.0.contains("set one"), "{err}");

        let missing = env(&[("LATCHKEY_ADMIN_PASSWORD_FILE", "/nonexistent/secret")]);
        let err = Settings::from_sources(None, &missing).unwrap_err();
        assert!(
            err.0.starts_with("invalid configuration: LATCHKEY_ADMIN_PASSWORD_FILE: cannot read"),
            "{err}"
        );

        // Only secrets have a file form.
        let (_, report) = Settings::from_sources(None, &env(&[("LATCHKEY_ISSUER_FILE", &key)])).unwrap();
        assert!(report.warnings.iter().any(|w| w.contains("LATCHKEY_ISSUER_FILE")), "{:?}", report.warnings);
    }

    #[test]
    fn zero_configuration_gives_the_documented_defaults() {
        let (s, report) = Settings::from_sources(None, &[]).unwrap();
        assert_eq!(s.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(s.audience, "latchkey");
        assert_eq!(s.access_token_ttl, Duration::from_secs(900));
        assert_eq!(s.refresh_token_ttl, Duration::from_secs(2_592_000));
        assert_eq!(s.signing_alg, SigningAlg::Es256);
        assert!(s.database_url.expose().starts_with("sqlite://"));
        assert!(s.database_url.expose().contains("data"));
        assert_eq!(s.issuer_for(s.listen), "http://127.0.0.1:8080");
        assert!(report.warnings.is_empty());
    }

    #[test]
    fn refresh_context_settings_default_to_audit_on_16_and_48() {
        let (s, _) = Settings::from_sources(None, &[]).unwrap();
        assert_eq!(s.refresh_context_ipv4_prefix, 16);
        assert_eq!(s.refresh_context_ipv6_prefix, 48);
        assert_eq!(s.refresh_context_policy, ContextPolicy::Audit);
        let (s, _) = Settings::from_sources(
            Some("refresh_context_ipv6_prefix = 64"),
            &env(&[
                ("LATCHKEY_REFRESH_CONTEXT_IPV4_PREFIX", "24"),
                ("LATCHKEY_REFRESH_CONTEXT_POLICY", "end_session"),
            ]),
        )
        .unwrap();
        assert_eq!(s.refresh_context_ipv4_prefix, 24);
        assert_eq!(s.refresh_context_ipv6_prefix, 64);
        assert_eq!(s.refresh_context_policy, ContextPolicy::EndSession);
        for (var, value) in [
            ("LATCHKEY_REFRESH_CONTEXT_IPV4_PREFIX", "33"),
            ("LATCHKEY_REFRESH_CONTEXT_IPV4_PREFIX", "-1"),
            ("LATCHKEY_REFRESH_CONTEXT_IPV6_PREFIX", "129"),
            ("LATCHKEY_REFRESH_CONTEXT_IPV6_PREFIX", "1000"),
            ("LATCHKEY_REFRESH_CONTEXT_POLICY", "revoke"),
        ] {
            let err = Settings::from_sources(None, &env(&[(var, value)])).unwrap_err();
            assert!(err.0.contains(var), "{err}");
            assert!(!err.0.contains('\n'));
        }
    }

    #[test]
    fn a_bad_value_names_its_variable_in_one_line() {
        let err = Settings::from_sources(None, &env(&[("LATCHKEY_ACCESS_TOKEN_TTL", "soon")])).unwrap_err();
        assert!(err.0.contains("LATCHKEY_ACCESS_TOKEN_TTL"), "{err}");
        assert!(!err.0.contains('\n'));
        let err = Settings::from_sources(None, &env(&[("LATCHKEY_SIGNING_ALG", "HS256")])).unwrap_err();
        assert!(err.0.contains("LATCHKEY_SIGNING_ALG"), "{err}");
        let err = Settings::from_sources(None, &env(&[("LATCHKEY_ARGON2_MEMORY_KIB", "1024")])).unwrap_err();
        assert!(err.0.contains("OWASP"), "{err}");
        for threads in ["0", "513"] {
            let err = Settings::from_sources(None, &env(&[("LATCHKEY_PASSWORD_HASH_CONCURRENCY", threads)]))
                .unwrap_err();
            assert!(err.0.contains("LATCHKEY_PASSWORD_HASH_CONCURRENCY"), "{err}");
        }
        let err =
            Settings::from_sources(None, &env(&[("LATCHKEY_ISSUER", "https://x.test/?a=b")])).unwrap_err();
        assert!(err.0.contains("LATCHKEY_ISSUER"), "{err}");
    }

    #[test]
    fn numeric_looking_secrets_stay_strings() {
        let (s, _) = Settings::from_sources(
            None,
            &env(&[("LATCHKEY_ADMIN_USERNAME", "1234"), ("LATCHKEY_ADMIN_PASSWORD", "12345678")]),
        )
        .unwrap();
        assert_eq!(s.admin_username.as_deref(), Some("1234"));
        assert_eq!(s.admin_password.unwrap().expose_secret(), "12345678");
    }

    #[test]
    fn environment_overrides_file_and_unknown_names_warn() {
        let file = "access_token_ttl = 600\naudience = \"from-file\"\nbogus = 1\n";
        let (s, report) = Settings::from_sources(
            Some(file),
            &env(&[("LATCHKEY_ACCESS_TOKEN_TTL", "300"), ("LATCHKEY_TYPO", "x")]),
        )
        .unwrap();
        assert_eq!(s.access_token_ttl, Duration::from_secs(300));
        assert_eq!(s.audience, "from-file");
        assert_eq!(report.warnings.len(), 2, "{:?}", report.warnings);
    }

    #[test]
    fn trusted_proxies_parse_addresses_and_cidrs() {
        let (s, _) = Settings::from_sources(
            None,
            &env(&[("LATCHKEY_TRUSTED_PROXIES", "10.0.0.0/8, 192.168.1.1,::1")]),
        )
        .unwrap();
        assert_eq!(s.trusted_proxies.len(), 3);
    }

    #[test]
    fn cors_origins_are_exact_origins() {
        let (s, _) = Settings::from_sources(
            None,
            &env(&[
                (
                    "LATCHKEY_CORS_ORIGINS",
                    "https://app.example.com, http://localhost:5173,,http://[::1]:3000",
                ),
                ("LATCHKEY_ADMIN_CORS_ORIGINS", "https://admin.example.com"),
            ]),
        )
        .unwrap();
        assert_eq!(s.cors_origins, ["https://app.example.com", "http://localhost:5173", "http://[::1]:3000"]);
        assert_eq!(s.admin_cors_origins, ["https://admin.example.com"]);
        let (defaults, _) = Settings::from_sources(None, &[]).unwrap();
        assert!(defaults.cors_origins.is_empty() && defaults.admin_cors_origins.is_empty());
        // A TOML array works as well as a comma-separated string.
        let (s, _) =
            Settings::from_sources(Some("cors_origins = [\"https://a.test\", \"https://b.test:8443\"]"), &[])
                .unwrap();
        assert_eq!(s.cors_origins, ["https://a.test", "https://b.test:8443"]);
    }

    #[test]
    fn anything_but_an_exact_origin_is_refused_naming_the_variable() {
        for (bad, hint) in [
            ("*", "not allowed"),
            ("null", "not an origin"),
            ("app.example.com", "not an origin"),
            ("ftp://files.example.com", "http"),
            ("https://app.example.com/", "\"https://app.example.com\""),
            ("https://app.example.com/spa", "\"https://app.example.com\""),
            ("https://app.example.com?x=1", "\"https://app.example.com\""),
            ("https://app.example.com#top", "\"https://app.example.com\""),
            ("https://App.Example.com", "\"https://app.example.com\""),
            ("https://app.example.com:443", "\"https://app.example.com\""),
            ("https://user@app.example.com", "\"https://app.example.com\""),
        ] {
            for var in ["LATCHKEY_CORS_ORIGINS", "LATCHKEY_ADMIN_CORS_ORIGINS"] {
                let list = format!("https://ok.example.com,{bad}");
                let err = Settings::from_sources(None, &env(&[(var, &list)])).unwrap_err();
                assert!(err.0.contains(var), "{bad}: {err}");
                assert!(err.0.contains(hint), "{bad}: {err}");
                assert!(!err.0.contains('\n'), "{bad}: {err}");
            }
        }
    }

    #[test]
    fn pool_shutdown_and_metrics_listener_settings_have_documented_defaults() {
        let (s, _) = Settings::from_sources(None, &[]).unwrap();
        assert_eq!(s.db_min_connections, 0);
        assert_eq!(s.db_idle_timeout, Duration::from_secs(600));
        assert_eq!(s.db_max_lifetime, Duration::from_secs(1800));
        assert_eq!(s.db_acquire_timeout, Duration::from_secs(10));
        assert_eq!(s.db_statement_timeout, Duration::from_secs(30));
        assert_eq!(s.shutdown_delay, Duration::from_secs(5));
        assert_eq!(s.shutdown_grace, Duration::from_secs(30));
        assert_eq!(s.metrics_listen, None);
        let (s, _) = Settings::from_sources(
            None,
            &env(&[
                ("LATCHKEY_DB_MIN_CONNECTIONS", "2"),
                ("LATCHKEY_DB_STATEMENT_TIMEOUT", "0"),
                ("LATCHKEY_SHUTDOWN_DELAY", "0"),
                ("LATCHKEY_METRICS_LISTEN", "10.0.0.5:9100"),
            ]),
        )
        .unwrap();
        assert_eq!(s.db_min_connections, 2);
        assert_eq!(s.db_statement_timeout, Duration::ZERO);
        assert_eq!(s.shutdown_delay, Duration::ZERO);
        assert_eq!(s.metrics_listen, Some(SocketAddr::from(([10, 0, 0, 5], 9100))));
        for (var, value) in [
            ("LATCHKEY_DB_MIN_CONNECTIONS", "11"),
            ("LATCHKEY_DB_ACQUIRE_TIMEOUT", "0"),
            ("LATCHKEY_DB_IDLE_TIMEOUT", "soon"),
            ("LATCHKEY_DB_MAX_LIFETIME", "-1"),
            ("LATCHKEY_DB_STATEMENT_TIMEOUT", "86401"),
            ("LATCHKEY_SHUTDOWN_DELAY", "301"),
            ("LATCHKEY_SHUTDOWN_GRACE", "0"),
            ("LATCHKEY_METRICS_LISTEN", "9100"),
            ("LATCHKEY_METRICS_LISTEN", "127.0.0.1:8080"),
        ] {
            let err = Settings::from_sources(None, &env(&[(var, value)])).unwrap_err();
            assert!(err.0.contains(var), "{var}={value}: {err}");
            assert!(!err.0.contains('\n'));
        }
    }

    #[test]
    fn the_readme_documents_every_setting_as_declared() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
        let readme = std::fs::read_to_string(&path).unwrap();
        let begin = readme.find("<!-- settings:begin").expect("the README has a settings:begin marker");
        let begin = begin + readme[begin..].find('\n').unwrap() + 1;
        let end = readme.find("<!-- settings:end -->").expect("the README has a settings:end marker");
        let expected = reference_table();
        if readme[begin..end] != expected && std::env::var_os("UPDATE_README").is_some() {
            std::fs::write(&path, format!("{}{expected}{}", &readme[..begin], &readme[end..])).unwrap();
            return;
        }
        assert!(
            readme[begin..end] == expected,
            "the README's configuration table differs from src/config.rs: run `UPDATE_README=1 cargo test --workspace --lib readme`"
        );
    }

    #[test]
    fn the_reference_reads_ranges_off_the_parsers() {
        assert_eq!(numeric_range("ACCESS_TOKEN_TTL").as_deref(), Some("30–86400"));
        assert_eq!(numeric_range("PASSWORD_HASH_CONCURRENCY").as_deref(), Some("1–512"));
        assert_eq!(numeric_range("REFRESH_CONTEXT_IPV6_PREFIX").as_deref(), Some("0–128"));
        assert_eq!(numeric_range("MAX_SESSIONS_PER_USER").as_deref(), Some("≥ 1"));
        assert_eq!(numeric_range("LOGIN_RATE_PER_IP"), None);
        assert_eq!(numeric_range("AUDIENCE"), None);
        let table = reference_table();
        for d in declared() {
            assert!(table.contains(&format!("| `LATCHKEY_{}` |", d.name)), "{}", d.name);
        }
        assert!(table.contains("`LATCHKEY_<NAME>_FILE`") && table.contains("`LATCHKEY_LOG`"));
        assert!(!table.contains("LATCHKEY_TEST_DATABASE_URL"));
    }

    #[test]
    fn test_settings_are_the_defaults_but_cheap() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings::for_tests("sqlite::memory:", dir.path());
        let (defaults, _) = Settings::from_sources(None, &[]).unwrap();
        assert_eq!(s.database_url.expose(), "sqlite::memory:");
        assert_eq!(s.listen.port(), 0);
        assert_eq!(s.password_hash_concurrency, 4);
        assert!(s.argon2_memory_kib < OWASP_ARGON2_MEMORY_KIB && s.master_key.is_some());
        assert_eq!(s.access_token_ttl, defaults.access_token_ttl);
        assert_eq!(s.db_statement_timeout, defaults.db_statement_timeout);
    }

    #[test]
    fn database_url_debug_hides_the_password() {
        let url = DatabaseUrl::new("postgres://app:s3cret@db.internal:5432/latchkey");
        assert_eq!(format!("{url:?}"), "DatabaseUrl(postgres://app:***@db.internal:5432/latchkey)");
        assert!(!url.to_string().contains("s3cret"));
        let no_password = DatabaseUrl::new("postgres://app@db/x");
        assert_eq!(no_password.redacted(), "postgres://app@db/x");
        let sqlite = DatabaseUrl::new("sqlite://./data/latchkey.db?mode=rwc");
        assert_eq!(sqlite.redacted(), "sqlite://./data/latchkey.db?mode=rwc");
    }
}
