//! Build, then serve.
//!
//! [`Application::build`] connects, migrates, opens the keys and binds the
//! listener, reporting the bound port before serving (tests bind port 0).
//! [`Application::run_until_stopped`] serves until SIGTERM or Ctrl-C, goes
//! unready for a while, then closes the listener and drains in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use migration::{Migrator, MigratorTrait};
use poem::listener::{Acceptor, AcceptorExt, BoxAcceptor, Listener, TcpListener};
use sea_orm::{ConnectOptions, Database, DatabaseConnection};

use crate::clock::Clock;
use crate::config::Settings;
use crate::keys::master::{MasterKey, MasterKeySource};
use crate::keys::{KeyPolicy, KeyRing};
use crate::metrics::Metrics;
use crate::passwords::{Password, PasswordHasher, PasswordPolicy};
use crate::ratelimit::{LoginGuard, LoginLimits, RateLimiter};
use crate::refresh::{FamilyPolicy, RefreshTokenCodec};
use crate::state::{AppState, Inner};
use crate::tokens::TokenSettings;
use crate::users::{self, NewUser, Role, Username};

/// Connect to the configured database, with the pool sized and timed as
/// configured. SQLite runs in WAL mode with a busy timeout, so concurrent
/// writers wait instead of failing; PostgreSQL sessions get the configured
/// `statement_timeout`.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = &settings.database_url;
    if let Some(path) = sqlite_file_to_create(url.expose()) {
        crate::files::create_private_file(&path)
            .with_context(|| format!("cannot create the database file {}", path.display()))?;
    }
    let unless_zero = |d: Duration| (!d.is_zero()).then_some(d);
    let mut options = ConnectOptions::new(url.expose().to_owned());
    options
        .max_connections(settings.db_max_connections)
        .min_connections(settings.db_min_connections)
        .acquire_timeout(settings.db_acquire_timeout)
        .idle_timeout(unless_zero(settings.db_idle_timeout))
        .max_lifetime(unless_zero(settings.db_max_lifetime))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    if let Some(timeout) = unless_zero(settings.db_statement_timeout) {
        // Sent with the connection's startup packet; SQLite ignores it.
        options.statement_timeout(timeout);
    }
    Database::connect(options).await.map_err(|e| match sqlite_trouble(&e) {
        Some(why) => anyhow::anyhow!(why),
        None => anyhow::Error::new(e).context(format!("cannot connect to the database {}", url.redacted())),
    })
}

/// The file a SQLite URL names, when latchkey should create it (mode 0600,
/// in directories it creates 0700) before connecting: with `mode=rwc` or no
/// mode at all, so `sqlite:///var/lib/latchkey/db.sqlite` works like the
/// default URL. `mode=rw` and `mode=ro` open an existing file only, and an
/// in-memory database has no file.
///
/// Creating the file ourselves also decides its mode: SQLite creates files
/// `0644`, and gives the `-wal` and `-shm` files the database file's mode.
fn sqlite_file_to_create(url: &str) -> Option<PathBuf> {
    use std::str::FromStr;
    let rest = url.strip_prefix("sqlite://").or_else(|| url.strip_prefix("sqlite:"))?;
    let (database, params) = rest.split_once('?').unwrap_or((rest, ""));
    if database.is_empty() || database == ":memory:" {
        return None;
    }
    // The last `mode` wins, as in sqlx.
    let mode = url::form_urlencoded::parse(params.as_bytes())
        .filter(|(key, _)| key == "mode")
        .last()
        .map(|(_, value)| value.into_owned());
    if !matches!(mode.as_deref(), None | Some("rwc")) {
        return None;
    }
    // sqlx's own reading of the path (percent-decoding included).
    let options = sea_orm::sqlx::sqlite::SqliteConnectOptions::from_str(url).ok()?;
    Some(options.get_filename().to_path_buf())
}

/// Apply pending migrations.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    check_sqlite_writable(db).await?;
    Migrator::up(db, None).await.context("cannot migrate the database")
}

/// On SQLite, take the write lock once and let go, so that a file this
/// process may not write, or one another process holds locked, stops the
/// start with a line that says so, instead of the first login failing.
/// (SQLite opens a file it may not write read-only without complaint.)
pub async fn check_sqlite_writable(db: &DatabaseConnection) -> anyhow::Result<()> {
    use sea_orm::{ConnectionTrait, TransactionTrait};
    if db.get_database_backend() != sea_orm::DatabaseBackend::Sqlite {
        return Ok(());
    }
    let probe = async {
        let txn = db.begin().await?;
        txn.execute_unprepared("CREATE TABLE latchkey_write_probe (x INTEGER)").await?;
        txn.rollback().await
    };
    match probe.await {
        Ok(()) => Ok(()),
        Err(e) => match sqlite_trouble(&e) {
            Some(why) => Err(anyhow::anyhow!(why)),
            None => Err(e).context("cannot write to the SQLite database"),
        },
    }
}

/// What to tell the operator about a SQLite file latchkey cannot use.
fn sqlite_trouble(e: &sea_orm::DbErr) -> Option<&'static str> {
    match crate::error::sqlite_primary_code(e)? {
        crate::error::SQLITE_READONLY => Some(
            "the SQLite database is read-only for this process: latchkey writes to it; give the user it runs as write access to the file and its directory (SQLite writes -wal and -shm files beside it), and do not open it with mode=ro",
        ),
        crate::error::SQLITE_BUSY | crate::error::SQLITE_LOCKED => Some(
            "the SQLite database is locked by another process (another latchkey on the same file, or a tool holding a write transaction): SQLite has one writer at a time; stop the other process, or use PostgreSQL for more than one replica",
        ),
        _ => None,
    }
}

/// Make the schema current before serving: apply pending migrations, or,
/// with `LATCHKEY_MIGRATE_ON_START=false` (a role that may not change the
/// schema), refuse to start while any is pending.
pub async fn prepare_schema(db: &DatabaseConnection, settings: &Settings) -> anyhow::Result<()> {
    if settings.migrate_on_start {
        return migrate(db).await;
    }
    check_sqlite_writable(db).await?;
    // Read the migrations table directly: sea-orm-migration's own check
    // would first try to create it, which this role may not do.
    use migration::seaql_migrations;
    use sea_orm::EntityTrait;
    let applied: Vec<String> = match seaql_migrations::Entity::find().all(db).await {
        Ok(rows) => rows.into_iter().map(|m| m.version).collect(),
        // A database never migrated has no migrations table.
        Err(e) if e.to_string().contains("does not exist") || e.to_string().contains("no such table") => {
            Vec::new()
        }
        Err(e) => return Err(e).context("cannot read the schema version from seaql_migrations"),
    };
    let pending: Vec<String> = Migrator::migrations()
        .iter()
        .map(|m| m.name().to_owned())
        .filter(|name| !applied.contains(name))
        .collect();
    match pending.first() {
        None => Ok(()),
        Some(next) => anyhow::bail!(
            "the database schema is behind: {} migration(s) pending, starting with {next}; run `latchkey migrate` with LATCHKEY_DATABASE_URL set to the schema owner's role, then start again",
            pending.len()
        ),
    }
}

/// Load the master key, warning loudly when it had to be generated.
pub fn master_key(settings: &Settings) -> anyhow::Result<Arc<MasterKey>> {
    use secrecy::ExposeSecret;
    let configured = settings.master_key.as_ref().map(|k| k.expose_secret());
    let (key, source) = MasterKey::load_or_generate(configured, &settings.data_dir)?;
    match source {
        MasterKeySource::Generated(path) => tracing::warn!(
            path = %path.display(),
            "generated a new master key: back this file up, and give every replica the same key with LATCHKEY_MASTER_KEY; losing it invalidates all signing keys and refresh tokens"
        ),
        MasterKeySource::File(path) => {
            tracing::info!(path = %path.display(), "master key loaded from file");
            warn_if_shared(&path);
        }
        MasterKeySource::Environment => {}
    }
    Ok(Arc::new(key))
}

/// Warn when the master key file can be read by anyone but its owner.
fn warn_if_shared(path: &Path) {
    match crate::files::shared_mode(path) {
        Ok(Some(mode)) => tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:o}"),
            "the master key file is readable by group or others: restrict it with chmod 600"
        ),
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "cannot check the master key file's mode")
        }
    }
}

/// Bind the listener, with TLS when configured.
async fn bind(settings: &Settings) -> anyhow::Result<BoxAcceptor> {
    let listener = TcpListener::bind(settings.listen);
    let listen_error = || format!("cannot listen on {}", settings.listen);
    match &settings.tls {
        None => Ok(listener.into_acceptor().await.with_context(listen_error)?.boxed()),
        Some(files) => {
            let loaded = crate::tls::load(files).await?;
            tracing::info!(sha256 = %loaded.fingerprint, "TLS certificate loaded");
            let configs = crate::tls::configs(files.clone(), loaded, settings.tls_reload_interval);
            let mut acceptor = listener.rustls(configs).into_acceptor().await.with_context(|| {
                format!("cannot listen with TLS on {} (check the certificate and key)", settings.listen)
            })?;
            // poem's rustls acceptor loads its configuration inside the first
            // `accept()` and resets any connection that wins that race. Poll it
            // once now, before anyone knows the port, so the configuration is
            // in place when serving starts.
            let _ = futures_util::FutureExt::now_or_never(acceptor.accept());
            Ok(acceptor.boxed())
        }
    }
}

/// Bind the metrics listener (`LATCHKEY_METRICS_LISTEN`): plain HTTP, meant
/// for a private interface.
async fn bind_metrics(addr: SocketAddr) -> anyhow::Result<(BoxAcceptor, SocketAddr)> {
    let error = || format!("cannot listen on {addr} (LATCHKEY_METRICS_LISTEN)");
    let acceptor = TcpListener::bind(addr).into_acceptor().await.with_context(error)?;
    let bound = socket_address(&acceptor).with_context(error)?;
    Ok((acceptor.boxed(), bound))
}

fn socket_address(acceptor: &impl Acceptor) -> Option<SocketAddr> {
    acceptor.local_addr().into_iter().find_map(|a| a.as_socket_addr().copied())
}

pub struct Application {
    acceptor: BoxAcceptor,
    address: SocketAddr,
    /// The metrics listener, when `LATCHKEY_METRICS_LISTEN` is set.
    metrics: Option<(BoxAcceptor, SocketAddr)>,
    state: AppState,
}

impl Application {
    /// Everything up to a bound listener. Fails with a one-line error when
    /// the database, the master key or the address is unusable.
    pub async fn build(settings: Settings, clock: Arc<dyn Clock>) -> anyhow::Result<Application> {
        let db = connect(&settings).await?;
        prepare_schema(&db, &settings).await?;
        let master = master_key(&settings)?;
        let keyring =
            KeyRing::start(&db, KeyPolicy::from_settings(&settings), Arc::clone(&master), clock.now())
                .await
                .map_err(|e| e.0)
                .context("cannot load the signing keys")?;
        let policy = PasswordPolicy::from_settings(&settings)?;
        let hasher =
            PasswordHasher::new(policy, settings.password_hash_concurrency, settings.password_hash_queue)
                .await
                .map_err(|e| e.0)?;
        let acceptor = bind(&settings).await?;
        let address = socket_address(&acceptor).context("the listener has no socket address")?;
        let metrics = match settings.metrics_listen {
            Some(addr) => Some(bind_metrics(addr).await?),
            None => None,
        };
        let tokens = TokenSettings {
            issuer: settings.issuer_for(address),
            audience: settings.audience.clone(),
            access_ttl: crate::clock::delta(settings.access_token_ttl),
        };
        let login_guard = LoginGuard::new(LoginLimits {
            per_address_per_minute: settings.login_rate_per_ip,
            username_failures_per_minute: settings.username_failure_rate,
            lockout_threshold: settings.lockout_threshold,
            lockout: crate::clock::delta(settings.lockout_duration),
        });
        let webauthn = crate::mfa::passkeys::relying_party(&tokens.issuer);
        if let Err(why) = &webauthn {
            tracing::info!(%why, "passkeys are off");
        }
        let state = AppState::new(Inner {
            login_guard,
            mfa_limiter: RateLimiter::per_minute(settings.mfa_rate_per_ip),
            passkey_begin_limiter: RateLimiter::per_minute(settings.mfa_rate_per_ip),
            webauthn,
            token_limiter: RateLimiter::per_minute(settings.token_rate_per_ip),
            register_limiter: RateLimiter::per_hour(settings.register_rate_per_ip),
            metrics: Metrics::new().context("cannot set up metrics")?,
            memory: crate::memory::Memory::new(
                db.clone(),
                Arc::clone(&clock),
                settings.db_acquire_timeout + settings.db_statement_timeout.max(Duration::from_secs(30)),
            ),
            refresh_codec: RefreshTokenCodec::new(&master),
            families: FamilyPolicy::from_settings(&settings),
            keyring: Arc::new(keyring),
            master,
            hasher,
            issuer_origin: crate::http::authorize::csrf::issuer_origin(&tokens.issuer),
            tokens,
            clock,
            db,
            settings,
            shutting_down: std::sync::atomic::AtomicBool::new(false),
        });
        ensure_admin(&state).await?;
        Ok(Application { acceptor, address, metrics, state })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The bound metrics listener, when `LATCHKEY_METRICS_LISTEN` is set.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(|(_, a)| *a)
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serve until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serve until `stop` completes. Then keep serving for
    /// `LATCHKEY_SHUTDOWN_DELAY` with `/readyz` answering 503, so load
    /// balancers take this replica out of rotation while it still answers;
    /// then close the listeners and let in-flight requests finish for up to
    /// `LATCHKEY_SHUTDOWN_GRACE`.
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        use std::sync::atomic::Ordering;
        let reloader = tokio::spawn(reload_keys(self.state.clone()));
        let purger = tokio::spawn(purge(self.state.clone()));
        let publisher = tokio::spawn(publish_revocations(self.state.clone()));
        let (delay, grace) = (self.state.settings.shutdown_delay, self.state.settings.shutdown_grace);
        let (closing, closed) = tokio::sync::watch::channel(false);
        let state = self.state.clone();
        let close = async move {
            stop.await;
            state.shutting_down.store(true, Ordering::Release);
            if !delay.is_zero() {
                tracing::info!(seconds = delay.as_secs(), "not ready: waiting before closing the listener");
                tokio::time::sleep(delay).await;
            }
            tracing::info!(grace_seconds = grace.as_secs(), "closing the listener, draining requests");
            let _ = closing.send(true);
        };
        let metrics_server = self.metrics.map(|(acceptor, metrics_address)| {
            tracing::info!(%metrics_address, "metrics are served on their own listener");
            let mut closed = closed.clone();
            let signal = async move {
                let _ = closed.wait_for(|c| *c).await;
            };
            poem::Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
                crate::http::metrics_routes(self.state.clone()),
                signal,
                Some(grace),
            )
        });
        tracing::info!(address = %self.address, issuer = %self.state.issuer(), "latchkey is listening");
        let main_server = poem::Server::new_with_acceptor(self.acceptor).run_with_graceful_shutdown(
            crate::http::routes(self.state),
            close,
            Some(grace),
        );
        let (result, metrics_result) = match metrics_server {
            Some(metrics_server) => {
                let (main, metrics) = tokio::join!(main_server, metrics_server);
                (main, metrics)
            }
            None => (main_server.await, Ok(())),
        };
        reloader.abort();
        purger.abort();
        publisher.abort();
        let _ = tokio::task::spawn_blocking(crate::http::middleware::flush_access_log).await;
        result.and(metrics_result)
    }
}

/// Reload keys from the database periodically: picks up rotations made by
/// other replicas or the CLI, creates next keys, retires old ones.
async fn reload_keys(state: AppState) {
    let mut interval = tokio::time::interval(state.settings.key_reload_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    interval.tick().await;
    loop {
        interval.tick().await;
        let now = state.now();
        match state.keyring.reload(&state.db, now).await {
            Ok(created) => {
                let origin = crate::refresh::Origin::default();
                crate::audit::keys_created(&state.db, now, &origin, "system", &created).await;
            }
            Err(e) => {
                tracing::error!(
                    error = format!("{:#}", e.0),
                    "signing key reload failed; serving the previous keys"
                )
            }
        }
    }
}

/// Once a second, move revocations left pending onto the feed (their
/// writer died between its commit and its move; see
/// [`crate::revocation::feed::publish`]). On SQLite nothing is ever pending.
async fn publish_revocations(state: AppState) {
    if !state.settings.database_url.is_postgres() {
        return;
    }
    let mut interval = tokio::time::interval(Duration::from_secs(1));
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        crate::revocation::feed::publish(&state.db).await;
    }
}

/// Delete dead rows periodically (see [`crate::purge`]).
async fn purge(state: AppState) {
    let retention = crate::purge::Retention {
        dead_rows: crate::clock::delta(state.settings.purge_retention),
        audit: crate::clock::delta(state.settings.audit_retention),
        idle_timeout: state.families.idle_timeout,
    };
    let mut interval = tokio::time::interval(state.settings.purge_interval);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        match crate::purge::run(&state.db, state.now(), &retention).await {
            Ok(report) if report != crate::purge::PurgeReport::default() => {
                tracing::info!(?report, "purged dead rows");
            }
            Ok(_) => {}
            Err(e) => tracing::error!(error = format!("{:#}", e.0), "purge failed"),
        }
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutting down");
}

/// Create the configured admin if no user of that name exists.
async fn ensure_admin(state: &AppState) -> anyhow::Result<()> {
    use secrecy::ExposeSecret;
    let (Some(name), Some(password)) = (&state.settings.admin_username, &state.settings.admin_password)
    else {
        return Ok(());
    };
    let username = Username::parse(name).context("invalid LATCHKEY_ADMIN_USERNAME")?;
    if users::repo::by_username_key(&state.db, username.key()).await.map_err(|e| e.0)?.is_some() {
        return Ok(());
    }
    let password = Password::new(password.expose_secret()).context("invalid LATCHKEY_ADMIN_PASSWORD")?;
    let new = NewUser { username, email: None, password, roles: vec![Role::admin()] };
    match users::register(&state.db, &state.hasher, state.now(), new).await {
        Ok(user) => {
            tracing::info!(user_id = %user.id, "admin user created from LATCHKEY_ADMIN_USERNAME");
            Ok(())
        }
        // Another replica created it first.
        Err(users::RegisterError::UsernameTaken) => Ok(()),
        Err(e) => Err(anyhow::anyhow!("cannot create the admin user: {e}")),
    }
}
