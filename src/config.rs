//! Settings: typed, flat, one field per `LATCHKEY_*` variable.
//!
//! Sources, later ones winning: built-in defaults, an optional TOML file
//! (`LATCHKEY_CONFIG`, keys are the variable names without the prefix, in any
//! case), then the environment. Every value is parsed from text by the same
//! per-field parser, so an error always names the variable it came from, and a
//! numeric-looking password stays a string. `validate` rejects nonsense in one
//! line; `main` prints it and exits non-zero.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;
use secrecy::{ExposeSecret, SecretString};

use crate::refresh::ContextPolicy;
use crate::scope::ScopeSet;

/// Environment variables that configure the process but are not settings.
const NON_SETTING_VARS: &[&str] = &["LATCHKEY_CONFIG", "LATCHKEY_LOG", "LATCHKEY_TEST_DATABASE_URL"];

/// The OWASP Password Storage Cheat Sheet minimum for argon2id.
pub const OWASP_ARGON2_MEMORY_KIB: u32 = 19_456;
pub const OWASP_ARGON2_ITERATIONS: u32 = 2;
/// The largest argon2 parameters latchkey hashes with, or checks a stored
/// hash with: beyond them a PHC string is refused, not computed.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 4 * 1024 * 1024;
pub const MAX_ARGON2_ITERATIONS: u32 = 16;
pub const MAX_ARGON2_PARALLELISM: u32 = 16;

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

/// Every setting of the server. Built by [`Settings::load`] in production and
/// by [`Settings::for_tests`] in tests (which never read the environment).
#[derive(Clone, Debug)]
pub struct Settings {
    /// `LATCHKEY_DATABASE_URL`; default a SQLite file in `data_dir`.
    pub database_url: DatabaseUrl,
    /// `LATCHKEY_DATA_DIR`: the SQLite default and the generated master key live here.
    pub data_dir: PathBuf,
    /// `LATCHKEY_LISTEN`.
    pub listen: SocketAddr,
    /// `LATCHKEY_ISSUER`; `None` means `http://` + the bound address.
    pub issuer: Option<String>,
    /// `LATCHKEY_AUDIENCE`: default `aud` of access tokens.
    pub audience: String,
    pub access_token_ttl: Duration,
    /// Absolute lifetime of a refresh family.
    pub refresh_token_ttl: Duration,
    /// A family unused for this long ends.
    pub refresh_idle_timeout: Duration,
    /// How long the previous refresh token of a family still returns the current one.
    pub refresh_grace_period: Duration,
    /// Live refresh families per user; the oldest ends beyond this.
    pub max_sessions_per_user: u32,
    /// A refresh from outside this IPv4 prefix of the last one is a context change.
    pub refresh_context_ipv4_prefix: u8,
    /// A refresh from outside this IPv6 prefix of the last one is a context change.
    pub refresh_context_ipv6_prefix: u8,
    /// What a context change does: audit it, or also end the session.
    pub refresh_context_policy: ContextPolicy,
    pub signing_alg: SigningAlg,
    pub master_key: Option<SecretString>,
    pub admin_username: Option<String>,
    pub admin_password: Option<SecretString>,
    /// Automatic signing-key rotation period.
    pub key_rotation_interval: Duration,
    /// Upper bound of the JWKS `Cache-Control: max-age`.
    pub jwks_max_age: Duration,
    /// How often each replica reloads keys from the database.
    pub key_reload_interval: Duration,
    /// Password hashes computed at once (defaults to the number of CPUs).
    pub password_hash_concurrency: usize,
    /// Logins allowed to wait for a hashing slot before new ones get 503.
    pub password_hash_queue: usize,
    pub argon2_memory_kib: u32,
    pub argon2_iterations: u32,
    pub argon2_parallelism: u32,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<IpNet>,
    /// `LATCHKEY_CORS_ORIGINS`: exact origins (`scheme://host[:port]`, as a
    /// browser serializes them) whose pages may call the token, revoke,
    /// userinfo and `/auth/*` endpoints with credentials, and use cookie mode.
    pub cors_origins: Vec<String>,
    /// `LATCHKEY_ADMIN_CORS_ORIGINS`: exact origins whose pages may call `/admin/*`.
    pub admin_cors_origins: Vec<String>,
    pub log_format: LogFormat,
    pub db_max_connections: u32,
    /// `LATCHKEY_MIGRATE_ON_START`: `serve` applies pending migrations
    /// (default). `false` for a role that may not change the schema: `serve`
    /// then only checks that the schema is current, and `latchkey migrate`
    /// runs separately as the owner role.
    pub migrate_on_start: bool,
    /// Scopes a user may be granted by a password login.
    pub user_scopes: ScopeSet,
    /// Whether `POST /auth/register` is open to anyone.
    pub allow_registration: bool,
    /// Lifetime of authorization codes.
    pub auth_code_ttl: Duration,
    /// Lifetime of the sign-in page's browser session.
    pub session_ttl: Duration,
    /// How long a rotated client secret keeps working.
    pub client_secret_overlap: Duration,
    /// Serve HTTPS with this PEM certificate chain and private key.
    pub tls: Option<TlsFiles>,
    /// How often the TLS files are checked for changes (zero: only on `SIGHUP`).
    pub tls_reload_interval: Duration,
    /// `Strict-Transport-Security: max-age` when the issuer is https.
    pub hsts_max_age: Duration,
    /// Password checks per minute per client address (0: unlimited).
    pub login_rate_per_ip: u32,
    /// Token-endpoint and refresh requests per minute per client address (0: unlimited).
    pub token_rate_per_ip: u32,
    /// `POST /auth/register` requests per hour per client address (0: unlimited).
    pub register_rate_per_ip: u32,
    /// Failed logins per minute for one username before failing addresses must wait.
    pub username_failure_rate: u32,
    /// Failures of one username from one address before that pair is locked (0: never).
    pub lockout_threshold: u32,
    pub lockout_duration: Duration,
    /// How often the purge job runs.
    pub purge_interval: Duration,
    /// How long revoked and expired rows are kept before the purge deletes them.
    pub purge_retention: Duration,
    /// How long audit events are kept.
    pub audit_retention: Duration,
    /// When set, `GET /metrics` needs `Authorization: Bearer <token>`.
    pub metrics_token: Option<SecretString>,
    /// `LATCHKEY_METRICS_LISTEN`: serve `GET /metrics` on this address only
    /// (plain HTTP), and answer 404 for it on the main listener.
    pub metrics_listen: Option<SocketAddr>,
    /// After SIGTERM, how long to keep serving with `/readyz` answering 503,
    /// so load balancers stop sending traffic before the listener closes.
    pub shutdown_delay: Duration,
    /// After the listener closes, how long in-flight requests may take.
    pub shutdown_grace: Duration,
    /// Connections the pool keeps open even when idle.
    pub db_min_connections: u32,
    /// An idle connection above the minimum is closed after this (zero: never).
    pub db_idle_timeout: Duration,
    /// A connection is replaced after this age (zero: never).
    pub db_max_lifetime: Duration,
    /// How long a query waits for a free connection before failing.
    pub db_acquire_timeout: Duration,
    /// PostgreSQL `statement_timeout`: a longer statement is cancelled (zero: no limit).
    pub db_statement_timeout: Duration,
    /// Accept argon2 parameters below OWASP. Only `for_tests` sets it; no variable does.
    pub allow_weak_password_hashing: bool,
}

/// Raw values by setting name (without the `LATCHKEY_` prefix, upper case).
type RawValues = BTreeMap<String, (String, &'static str)>;

/// Names accepted from the environment and the file, each with its default.
const SETTINGS: &[(&str, Option<&str>)] = &[
    ("DATABASE_URL", None),
    ("DATA_DIR", Some("./data")),
    ("LISTEN", Some("127.0.0.1:8080")),
    ("ISSUER", None),
    ("AUDIENCE", Some("latchkey")),
    ("ACCESS_TOKEN_TTL", Some("900")),
    ("REFRESH_TOKEN_TTL", Some("2592000")),
    ("REFRESH_IDLE_TIMEOUT", Some("1209600")),
    ("REFRESH_GRACE_PERIOD", Some("15")),
    ("MAX_SESSIONS_PER_USER", Some("20")),
    ("REFRESH_CONTEXT_IPV4_PREFIX", Some("16")),
    ("REFRESH_CONTEXT_IPV6_PREFIX", Some("48")),
    ("REFRESH_CONTEXT_POLICY", Some("audit")),
    ("SIGNING_ALG", Some("ES256")),
    ("MASTER_KEY", None),
    ("ADMIN_USERNAME", None),
    ("ADMIN_PASSWORD", None),
    ("KEY_ROTATION_INTERVAL", Some("2592000")),
    ("JWKS_MAX_AGE", Some("3600")),
    ("KEY_RELOAD_INTERVAL", Some("30")),
    ("PASSWORD_HASH_CONCURRENCY", None),
    ("PASSWORD_HASH_QUEUE", Some("256")),
    ("ARGON2_MEMORY_KIB", Some("19456")),
    ("ARGON2_ITERATIONS", Some("2")),
    ("ARGON2_PARALLELISM", Some("1")),
    ("BODY_LIMIT", Some("65536")),
    ("TRUSTED_PROXIES", Some("")),
    ("CORS_ORIGINS", Some("")),
    ("ADMIN_CORS_ORIGINS", Some("")),
    ("LOG_FORMAT", Some("text")),
    ("USER_SCOPES", Some("openid profile email")),
    ("ALLOW_REGISTRATION", Some("true")),
    ("MIGRATE_ON_START", Some("true")),
    ("AUTH_CODE_TTL", Some("60")),
    ("SESSION_TTL", Some("43200")),
    ("CLIENT_SECRET_OVERLAP", Some("86400")),
    ("LOGIN_RATE_PER_IP", Some("30")),
    ("TOKEN_RATE_PER_IP", Some("300")),
    ("REGISTER_RATE_PER_IP", Some("20")),
    ("USERNAME_FAILURE_RATE", Some("10")),
    ("LOCKOUT_THRESHOLD", Some("5")),
    ("LOCKOUT_DURATION", Some("900")),
    ("PURGE_INTERVAL", Some("3600")),
    ("PURGE_RETENTION", Some("604800")),
    ("AUDIT_RETENTION", Some("7776000")),
    ("METRICS_TOKEN", None),
    ("TLS_CERT", None),
    ("TLS_KEY", None),
    ("TLS_RELOAD_INTERVAL", Some("5")),
    ("HSTS_MAX_AGE", Some("63072000")),
    ("DB_MAX_CONNECTIONS", Some("10")),
    ("DB_MIN_CONNECTIONS", Some("0")),
    ("DB_IDLE_TIMEOUT", Some("600")),
    ("DB_MAX_LIFETIME", Some("1800")),
    ("DB_ACQUIRE_TIMEOUT", Some("10")),
    ("DB_STATEMENT_TIMEOUT", Some("30")),
    ("METRICS_LISTEN", None),
    ("SHUTDOWN_DELAY", Some("5")),
    ("SHUTDOWN_GRACE", Some("30")),
];

/// Secrets that may instead be given as a file (`LATCHKEY_<NAME>_FILE`),
/// as container secrets are: the file's content, without a trailing newline.
pub const FILE_SECRETS: &[&str] = &["MASTER_KEY", "ADMIN_PASSWORD", "METRICS_TOKEN", "DATABASE_URL"];

/// Everything `load` found that deserves a warning once logging is up.
#[derive(Debug, Default)]
pub struct LoadReport {
    pub warnings: Vec<String>,
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
        let mut report = LoadReport::default();
        let mut raw: RawValues = BTreeMap::new();
        if let Some(text) = file_toml {
            let table: toml::Table =
                text.parse().map_err(|e| ConfigError(format!("invalid configuration file: {e}")))?;
            for (key, value) in table {
                let name = key.to_ascii_uppercase();
                if !SETTINGS.iter().any(|(n, _)| *n == name) {
                    report.warnings.push(format!("unknown key {key:?} in the configuration file is ignored"));
                    continue;
                }
                raw.insert(name, (toml_to_text(&key, value)?, "file"));
            }
        }
        let mut from_files = Vec::new();
        for (key, value) in env {
            let Some(name) = key.strip_prefix("LATCHKEY_") else { continue };
            if NON_SETTING_VARS.contains(&key.as_str()) {
                continue;
            }
            if let Some(secret) = name.strip_suffix("_FILE").filter(|n| FILE_SECRETS.contains(n)) {
                from_files.push((secret, value));
                continue;
            }
            if !SETTINGS.iter().any(|(n, _)| *n == name) {
                report.warnings.push(format!("unknown environment variable {key} is ignored"));
                continue;
            }
            raw.insert(name.to_owned(), (value.clone(), "env"));
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
            raw.insert(name.to_owned(), (text.trim_end_matches(['\n', '\r']).to_owned(), "file"));
        }
        let settings = Self::from_raw(&raw)?;
        settings.validate()?;
        if let Some(w) = settings.issuer_warning() {
            report.warnings.push(w);
        }
        Ok((settings, report))
    }

    fn from_raw(raw: &RawValues) -> Result<Settings, ConfigError> {
        let get = |name: &str| -> Option<String> {
            raw.get(name)
                .map(|(v, _)| v.clone())
                .or_else(|| SETTINGS.iter().find(|(n, _)| *n == name).and_then(|(_, d)| d.map(str::to_owned)))
        };
        let parse =
            |name: &str| -> Result<String, ConfigError> { get(name).ok_or_else(|| invalid(name, "missing")) };
        let non_empty = |name: &str| get(name).filter(|v| !v.is_empty());
        let number = |name: &str| -> Result<u64, ConfigError> {
            let v = parse(name)?;
            v.trim()
                .parse::<u64>()
                .map_err(|_| invalid(name, format!("expected a non-negative integer, got {v:?}")))
        };
        let small = |name: &str| -> Result<u32, ConfigError> {
            u32::try_from(number(name)?).map_err(|_| invalid(name, "too large"))
        };
        let seconds = |name: &str| number(name).map(Duration::from_secs);
        let boolean = |name: &str| -> Result<bool, ConfigError> {
            match parse(name)?.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                other => Err(invalid(name, format!("expected true or false, got {other:?}"))),
            }
        };

        let data_dir = PathBuf::from(parse("DATA_DIR")?);
        let database_url = match non_empty("DATABASE_URL") {
            Some(url) => DatabaseUrl::new(url),
            None => DatabaseUrl::new(format!("sqlite://{}?mode=rwc", data_dir.join("latchkey.db").display())),
        };
        let listen_raw = parse("LISTEN")?;
        let listen = listen_raw
            .parse::<SocketAddr>()
            .map_err(|_| invalid("LISTEN", format!("expected address:port, got {listen_raw:?}")))?;
        let signing_alg =
            parse("SIGNING_ALG")?.parse::<SigningAlg>().map_err(|e| invalid("SIGNING_ALG", e))?;
        let log_format = match parse("LOG_FORMAT")?.as_str() {
            "text" => LogFormat::Text,
            "json" => LogFormat::Json,
            other => return Err(invalid("LOG_FORMAT", format!("expected text or json, got {other:?}"))),
        };
        let trusted_proxies = parse("TRUSTED_PROXIES")?
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                s.parse::<IpNet>()
                    .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                    .map_err(|_| invalid("TRUSTED_PROXIES", format!("{s:?} is not an IP address or CIDR")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let prefix = |name: &str, max: u8| -> Result<u8, ConfigError> {
            u8::try_from(number(name)?)
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| invalid(name, format!("must be a prefix length between 0 and {max}")))
        };
        let refresh_context_policy = parse("REFRESH_CONTEXT_POLICY")?
            .trim()
            .parse::<ContextPolicy>()
            .map_err(|e| invalid("REFRESH_CONTEXT_POLICY", e))?;
        let metrics_listen = non_empty("METRICS_LISTEN")
            .map(|v| {
                v.trim()
                    .parse::<SocketAddr>()
                    .map_err(|_| invalid("METRICS_LISTEN", format!("expected address:port, got {v:?}")))
            })
            .transpose()?;
        let password_hash_concurrency = match non_empty("PASSWORD_HASH_CONCURRENCY") {
            Some(_) => usize::try_from(number("PASSWORD_HASH_CONCURRENCY")?)
                .map_err(|_| invalid("PASSWORD_HASH_CONCURRENCY", "too large"))?,
            None => std::thread::available_parallelism().map_or(2, |n| n.get().min(512)),
        };

        Ok(Settings {
            database_url,
            data_dir,
            listen,
            issuer: non_empty("ISSUER").map(|s| s.trim_end_matches('/').to_owned()),
            audience: parse("AUDIENCE")?,
            access_token_ttl: seconds("ACCESS_TOKEN_TTL")?,
            refresh_token_ttl: seconds("REFRESH_TOKEN_TTL")?,
            refresh_idle_timeout: seconds("REFRESH_IDLE_TIMEOUT")?,
            refresh_grace_period: seconds("REFRESH_GRACE_PERIOD")?,
            max_sessions_per_user: small("MAX_SESSIONS_PER_USER")?,
            refresh_context_ipv4_prefix: prefix("REFRESH_CONTEXT_IPV4_PREFIX", 32)?,
            refresh_context_ipv6_prefix: prefix("REFRESH_CONTEXT_IPV6_PREFIX", 128)?,
            refresh_context_policy,
            signing_alg,
            master_key: non_empty("MASTER_KEY").map(SecretString::from),
            admin_username: non_empty("ADMIN_USERNAME"),
            admin_password: non_empty("ADMIN_PASSWORD").map(SecretString::from),
            key_rotation_interval: seconds("KEY_ROTATION_INTERVAL")?,
            jwks_max_age: seconds("JWKS_MAX_AGE")?,
            key_reload_interval: seconds("KEY_RELOAD_INTERVAL")?,
            password_hash_concurrency,
            password_hash_queue: usize::try_from(number("PASSWORD_HASH_QUEUE")?)
                .map_err(|_| invalid("PASSWORD_HASH_QUEUE", "too large"))?,
            argon2_memory_kib: small("ARGON2_MEMORY_KIB")?,
            argon2_iterations: small("ARGON2_ITERATIONS")?,
            argon2_parallelism: small("ARGON2_PARALLELISM")?,
            body_limit: usize::try_from(number("BODY_LIMIT")?)
                .map_err(|_| invalid("BODY_LIMIT", "too large"))?,
            trusted_proxies,
            cors_origins: parse_origins("CORS_ORIGINS", &parse("CORS_ORIGINS")?)?,
            admin_cors_origins: parse_origins("ADMIN_CORS_ORIGINS", &parse("ADMIN_CORS_ORIGINS")?)?,
            log_format,
            db_max_connections: small("DB_MAX_CONNECTIONS")?,
            user_scopes: ScopeSet::parse(&parse("USER_SCOPES")?).map_err(|e| invalid("USER_SCOPES", e))?,
            allow_registration: boolean("ALLOW_REGISTRATION")?,
            migrate_on_start: boolean("MIGRATE_ON_START")?,
            auth_code_ttl: seconds("AUTH_CODE_TTL")?,
            session_ttl: seconds("SESSION_TTL")?,
            client_secret_overlap: seconds("CLIENT_SECRET_OVERLAP")?,
            login_rate_per_ip: small("LOGIN_RATE_PER_IP")?,
            token_rate_per_ip: small("TOKEN_RATE_PER_IP")?,
            register_rate_per_ip: small("REGISTER_RATE_PER_IP")?,
            username_failure_rate: small("USERNAME_FAILURE_RATE")?,
            lockout_threshold: small("LOCKOUT_THRESHOLD")?,
            lockout_duration: seconds("LOCKOUT_DURATION")?,
            purge_interval: seconds("PURGE_INTERVAL")?,
            purge_retention: seconds("PURGE_RETENTION")?,
            audit_retention: seconds("AUDIT_RETENTION")?,
            metrics_token: non_empty("METRICS_TOKEN").map(SecretString::from),
            metrics_listen,
            shutdown_delay: seconds("SHUTDOWN_DELAY")?,
            shutdown_grace: seconds("SHUTDOWN_GRACE")?,
            db_min_connections: small("DB_MIN_CONNECTIONS")?,
            db_idle_timeout: seconds("DB_IDLE_TIMEOUT")?,
            db_max_lifetime: seconds("DB_MAX_LIFETIME")?,
            db_acquire_timeout: seconds("DB_ACQUIRE_TIMEOUT")?,
            db_statement_timeout: seconds("DB_STATEMENT_TIMEOUT")?,
            tls: match (non_empty("TLS_CERT"), non_empty("TLS_KEY")) {
                (Some(cert), Some(key)) => Some(TlsFiles { cert: cert.into(), key: key.into() }),
                (None, None) => None,
                _ => {
                    return Err(ConfigError(
                        "invalid configuration: LATCHKEY_TLS_CERT and LATCHKEY_TLS_KEY must be set together"
                            .into(),
                    ));
                }
            },
            tls_reload_interval: seconds("TLS_RELOAD_INTERVAL")?,
            hsts_max_age: seconds("HSTS_MAX_AGE")?,
            allow_weak_password_hashing: false,
        })
    }

    /// Reject values that parse but make no sense. One line per problem.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = &self.database_url;
        if !url.is_sqlite() && !url.is_postgres() {
            return Err(invalid(
                "DATABASE_URL",
                format!("expected a postgres:// or sqlite:// URL, got {}", url.redacted()),
            ));
        }
        if let Some(issuer) = &self.issuer {
            validate_issuer(issuer).map_err(|e| invalid("ISSUER", e))?;
        }
        if self.audience.trim().is_empty() || self.audience.contains(char::is_whitespace) {
            return Err(invalid("AUDIENCE", "must be a non-empty string without spaces"));
        }
        range("ACCESS_TOKEN_TTL", self.access_token_ttl, 30, 86_400)?;
        range("REFRESH_TOKEN_TTL", self.refresh_token_ttl, 60, 400 * 86_400)?;
        range("REFRESH_IDLE_TIMEOUT", self.refresh_idle_timeout, 60, 400 * 86_400)?;
        range("REFRESH_GRACE_PERIOD", self.refresh_grace_period, 0, 300)?;
        range("KEY_ROTATION_INTERVAL", self.key_rotation_interval, 3_600, 400 * 86_400)?;
        range("JWKS_MAX_AGE", self.jwks_max_age, 0, 86_400)?;
        range("KEY_RELOAD_INTERVAL", self.key_reload_interval, 1, 3_600)?;
        range("AUTH_CODE_TTL", self.auth_code_ttl, 10, 600)?;
        range("SESSION_TTL", self.session_ttl, 60, 90 * 86_400)?;
        range("CLIENT_SECRET_OVERLAP", self.client_secret_overlap, 0, 90 * 86_400)?;
        range("LOCKOUT_DURATION", self.lockout_duration, 1, 86_400)?;
        range("PURGE_INTERVAL", self.purge_interval, 1, 86_400)?;
        range("PURGE_RETENTION", self.purge_retention, 0, 400 * 86_400)?;
        range("AUDIT_RETENTION", self.audit_retention, 86_400, 10 * 366 * 86_400)?;
        range("TLS_RELOAD_INTERVAL", self.tls_reload_interval, 0, 86_400)?;
        if self.key_rotation_interval < self.publish_lead() * 2 {
            return Err(invalid(
                "KEY_ROTATION_INTERVAL",
                "must be at least twice LATCHKEY_JWKS_MAX_AGE + LATCHKEY_KEY_RELOAD_INTERVAL, so a key is published long enough before it signs",
            ));
        }
        if self.max_sessions_per_user == 0 {
            return Err(invalid("MAX_SESSIONS_PER_USER", "must be at least 1"));
        }
        // One dedicated thread (and one argon2 working memory) each.
        if !(1..=512).contains(&self.password_hash_concurrency) {
            return Err(invalid("PASSWORD_HASH_CONCURRENCY", "must be between 1 and 512"));
        }
        if !self.allow_weak_password_hashing {
            if self.argon2_memory_kib < OWASP_ARGON2_MEMORY_KIB {
                return Err(invalid(
                    "ARGON2_MEMORY_KIB",
                    format!("must be at least {OWASP_ARGON2_MEMORY_KIB} (OWASP minimum)"),
                ));
            }
            if self.argon2_iterations < OWASP_ARGON2_ITERATIONS {
                return Err(invalid(
                    "ARGON2_ITERATIONS",
                    format!("must be at least {OWASP_ARGON2_ITERATIONS} (OWASP minimum)"),
                ));
            }
        }
        if self.argon2_memory_kib > MAX_ARGON2_MEMORY_KIB {
            return Err(invalid(
                "ARGON2_MEMORY_KIB",
                format!("must be at most {MAX_ARGON2_MEMORY_KIB} (4 GiB)"),
            ));
        }
        if !(1..=MAX_ARGON2_PARALLELISM).contains(&self.argon2_parallelism) {
            return Err(invalid(
                "ARGON2_PARALLELISM",
                format!("must be between 1 and {MAX_ARGON2_PARALLELISM}"),
            ));
        }
        if !(1..=MAX_ARGON2_ITERATIONS).contains(&self.argon2_iterations) {
            return Err(invalid(
                "ARGON2_ITERATIONS",
                format!("must be between 1 and {MAX_ARGON2_ITERATIONS}"),
            ));
        }
        if !(1024..=16 * 1024 * 1024).contains(&self.body_limit) {
            return Err(invalid("BODY_LIMIT", "must be between 1024 and 16777216 bytes"));
        }
        if self.db_max_connections == 0 {
            return Err(invalid("DB_MAX_CONNECTIONS", "must be at least 1"));
        }
        if self.db_min_connections > self.db_max_connections {
            return Err(invalid("DB_MIN_CONNECTIONS", "must not exceed LATCHKEY_DB_MAX_CONNECTIONS"));
        }
        range("DB_IDLE_TIMEOUT", self.db_idle_timeout, 0, 86_400)?;
        range("DB_MAX_LIFETIME", self.db_max_lifetime, 0, 7 * 86_400)?;
        range("DB_ACQUIRE_TIMEOUT", self.db_acquire_timeout, 1, 300)?;
        range("DB_STATEMENT_TIMEOUT", self.db_statement_timeout, 0, 86_400)?;
        range("SHUTDOWN_DELAY", self.shutdown_delay, 0, 300)?;
        range("SHUTDOWN_GRACE", self.shutdown_grace, 1, 3_600)?;
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

    /// Settings for tests: port 0, cheap argon2, short grace window, the given
    /// database, no environment.
    pub fn for_tests(database_url: &str, data_dir: &Path) -> Settings {
        Settings {
            database_url: DatabaseUrl::new(database_url),
            data_dir: data_dir.to_path_buf(),
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            issuer: None,
            audience: "latchkey".into(),
            access_token_ttl: Duration::from_secs(900),
            refresh_token_ttl: Duration::from_secs(2_592_000),
            refresh_idle_timeout: Duration::from_secs(1_209_600),
            refresh_grace_period: Duration::from_secs(5),
            max_sessions_per_user: 20,
            refresh_context_ipv4_prefix: 16,
            refresh_context_ipv6_prefix: 48,
            refresh_context_policy: ContextPolicy::Audit,
            signing_alg: SigningAlg::Es256,
            master_key: Some(SecretString::from(
                "dGVzdC1tYXN0ZXIta2V5LW5vdC1mb3ItcHJvZHVjdGlvbiE".to_owned(),
            )),
            admin_username: None,
            admin_password: None,
            key_rotation_interval: Duration::from_secs(2_592_000),
            jwks_max_age: Duration::from_secs(300),
            key_reload_interval: Duration::from_secs(1),
            password_hash_concurrency: 4,
            password_hash_queue: 256,
            argon2_memory_kib: 64,
            argon2_iterations: 1,
            argon2_parallelism: 1,
            body_limit: 65_536,
            trusted_proxies: Vec::new(),
            cors_origins: Vec::new(),
            admin_cors_origins: Vec::new(),
            log_format: LogFormat::Text,
            db_max_connections: 10,
            user_scopes: ScopeSet::from_stored("openid profile email tasks:read tasks:write"),
            allow_registration: true,
            migrate_on_start: true,
            auth_code_ttl: Duration::from_secs(60),
            session_ttl: Duration::from_secs(43_200),
            client_secret_overlap: Duration::from_secs(86_400),
            tls: None,
            tls_reload_interval: Duration::from_secs(5),
            hsts_max_age: Duration::from_secs(63_072_000),
            login_rate_per_ip: 0,
            token_rate_per_ip: 0,
            register_rate_per_ip: 0,
            username_failure_rate: 0,
            lockout_threshold: 0,
            lockout_duration: Duration::from_secs(900),
            purge_interval: Duration::from_secs(3600),
            purge_retention: Duration::from_secs(604_800),
            audit_retention: Duration::from_secs(7_776_000),
            metrics_token: None,
            metrics_listen: None,
            // Tests stop servers often: no load balancer to wait for.
            shutdown_delay: Duration::ZERO,
            shutdown_grace: Duration::from_secs(10),
            db_min_connections: 0,
            db_idle_timeout: Duration::from_secs(600),
            db_max_lifetime: Duration::from_secs(1800),
            db_acquire_timeout: Duration::from_secs(10),
            db_statement_timeout: Duration::from_secs(30),
            allow_weak_password_hashing: true,
        }
    }
}

fn range(var: &str, value: Duration, min: u64, max: u64) -> Result<(), ConfigError> {
    let secs = value.as_secs();
    if secs < min || secs > max {
        return Err(invalid(var, format!("must be between {min} and {max} seconds, got {secs}")));
    }
    Ok(())
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

/// A comma-separated list of exact origins; empty entries are skipped.
fn parse_origins(var: &str, text: &str) -> Result<Vec<String>, ConfigError> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| parse_origin(s).map_err(|e| invalid(var, e)))
        .collect()
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
