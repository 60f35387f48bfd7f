//! Build, then serve.
//!
//! [`Application::build`] connects, migrates, opens the keys and binds the
//! listener, reporting the bound port before serving (tests bind port 0).
//! [`Application::run_until_stopped`] serves until SIGTERM or Ctrl-C, then
//! drains in-flight requests.

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
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

/// Connect to the configured database. SQLite runs in WAL mode with a busy
/// timeout, so concurrent writers wait instead of failing.
pub async fn connect(settings: &Settings) -> anyhow::Result<DatabaseConnection> {
    let url = &settings.database_url;
    if url.is_sqlite() {
        ensure_sqlite_dir(url.expose())?;
    }
    let mut options = ConnectOptions::new(url.expose().to_owned());
    options
        .max_connections(settings.db_max_connections)
        .connect_timeout(Duration::from_secs(5))
        .acquire_timeout(Duration::from_secs(10))
        .sqlx_logging(false)
        .map_sqlx_sqlite_opts(|o| {
            use sea_orm::sqlx::sqlite::{SqliteJournalMode, SqliteSynchronous};
            o.journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .busy_timeout(Duration::from_secs(10))
                .foreign_keys(true)
        });
    Database::connect(options)
        .await
        .with_context(|| format!("cannot connect to the database {}", url.redacted()))
}

fn ensure_sqlite_dir(url: &str) -> anyhow::Result<()> {
    let path = url
        .trim_start_matches("sqlite://")
        .trim_start_matches("sqlite:")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path.starts_with(':') {
        return Ok(());
    }
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the database directory {}", parent.display()))?;
    }
    Ok(())
}

/// Apply pending migrations.
pub async fn migrate(db: &DatabaseConnection) -> anyhow::Result<()> {
    Migrator::up(db, None).await.context("cannot migrate the database")
}

/// Make the schema current before serving: apply pending migrations, or,
/// with `LATCHKEY_MIGRATE_ON_START=false` (a role that may not change the
/// schema), refuse to start while any is pending.
pub async fn prepare_schema(db: &DatabaseConnection, settings: &Settings) -> anyhow::Result<()> {
    if settings.migrate_on_start {
        return migrate(db).await;
    }
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
        MasterKeySource::File(path) => tracing::info!(path = %path.display(), "master key loaded from file"),
        MasterKeySource::Environment => {}
    }
    Ok(Arc::new(key))
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

pub struct Application {
    acceptor: BoxAcceptor,
    address: SocketAddr,
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
        let address = acceptor
            .local_addr()
            .into_iter()
            .find_map(|a| a.as_socket_addr().copied())
            .context("the listener has no socket address")?;
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
        let state = AppState::new(Inner {
            login_guard,
            token_limiter: RateLimiter::per_minute(settings.token_rate_per_ip),
            register_limiter: RateLimiter::per_hour(settings.register_rate_per_ip),
            metrics: Metrics::new().context("cannot set up metrics")?,
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
        });
        ensure_admin(&state).await?;
        Ok(Application { acceptor, address, state })
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn state(&self) -> AppState {
        self.state.clone()
    }

    /// Serve until SIGTERM or Ctrl-C.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        self.run_until(shutdown_signal()).await
    }

    /// Serve until `stop` completes, then drain for up to 10 seconds.
    pub async fn run_until(self, stop: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let reloader = tokio::spawn(reload_keys(self.state.clone()));
        let purger = tokio::spawn(purge(self.state.clone()));
        tracing::info!(address = %self.address, issuer = %self.state.issuer(), "latchkey is listening");
        let result = poem::Server::new_with_acceptor(self.acceptor)
            .run_with_graceful_shutdown(crate::http::routes(self.state), stop, Some(Duration::from_secs(10)))
            .await;
        reloader.abort();
        purger.abort();
        result
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
