//! The command line.
//!
//! `latchkey` (or `latchkey serve`) runs the server; the other commands work
//! on the same database and master key as the server, so they can run next
//! to a live deployment.

use std::io::{BufRead, IsTerminal};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};

use crate::clients::{self, ClientMetadata};
use crate::clock::{Clock, SystemClock};
use crate::config::Settings;
use crate::keys::{self, KeyPolicy};
use crate::passwords::{Password, PasswordHasher, PasswordPolicy};
use crate::startup::{self, Application};
use crate::users::{self, Email, NewUser, Role, Username};

#[derive(Parser, Debug)]
#[command(name = "latchkey", version, about = "A standalone identity provider", long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the server (the default).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Print the OpenAPI document.
    Openapi,
    /// Exit 0 when the server configured here answers `GET /healthz` with
    /// 200 (a container HEALTHCHECK: the runtime image has no shell or curl).
    Healthcheck,
    /// Manage users.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Manage signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage OAuth clients.
    #[command(subcommand)]
    Clients(ClientsCommand),
}

#[derive(Subcommand, Debug)]
pub enum ClientsCommand {
    /// Register an OAuth client (RFC 7591 metadata names) and print its id
    /// and, for a confidential client, its secret (shown once).
    Create {
        #[arg(long)]
        name: String,
        /// Exact redirect URI (repeatable).
        #[arg(long = "redirect-uri")]
        redirect_uris: Vec<String>,
        /// authorization_code, refresh_token, client_credentials, password (repeatable).
        #[arg(long = "grant-type")]
        grant_types: Vec<String>,
        /// Space-separated scopes the client may request.
        #[arg(long)]
        scope: Option<String>,
        /// client_secret_basic (default), client_secret_post or none.
        #[arg(long = "auth-method")]
        auth_method: Option<String>,
        /// true (default): the code flow needs PKCE. false lets a legacy
        /// confidential client go without it (never a public client).
        #[arg(long = "require-pkce", value_name = "BOOL")]
        require_pkce: Option<bool>,
        /// true: tokens only for sign-ins with a second factor (default false).
        #[arg(long = "require-mfa", value_name = "BOOL")]
        require_mfa: Option<bool>,
    },
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Create a user. The password is read from stdin, or prompted for on a
    /// terminal; it is never taken from the command line.
    Create {
        #[arg(long)]
        username: String,
        #[arg(long)]
        email: Option<String>,
        /// A role to grant (repeatable), e.g. `--role admin`.
        #[arg(long = "role")]
        roles: Vec<String>,
    },
    /// Remove every second factor (authenticator app, passkeys, recovery
    /// codes) of a user who lost them, and end all their sessions: for an
    /// admin no other admin can reset. Audited as `mfa_factors_reset` by `cli`.
    ResetMfa {
        #[arg(long)]
        username: String,
    },
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Start signing with the next keys as soon as that is safe.
    Rotate,
    /// List signing keys and their states.
    List,
}

impl Cli {
    /// Does this command need settings (and a database)?
    pub fn needs_settings(&self) -> bool {
        !matches!(self.command, Some(Command::Openapi))
    }
}

/// Run a parsed command with loaded settings.
pub async fn run(cli: Cli, settings: Settings) -> anyhow::Result<()> {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            let app = Application::build(settings, clock).await?;
            app.run_until_stopped().await.context("server error")?;
        }
        Command::Migrate => {
            let db = startup::connect(&settings).await?;
            startup::migrate(&db).await?;
            println!("database is up to date");
        }
        Command::Openapi => print!("{}", crate::http::spec_json()),
        Command::Healthcheck => healthcheck(&settings).await?,
        Command::Users(UsersCommand::Create { username, email, roles }) => {
            create_user(&settings, clock.as_ref(), &username, email.as_deref(), &roles).await?;
        }
        Command::Users(UsersCommand::ResetMfa { username }) => {
            reset_mfa(&settings, clock.as_ref(), &username).await?;
        }
        Command::Clients(ClientsCommand::Create {
            name,
            redirect_uris,
            grant_types,
            scope,
            auth_method,
            require_pkce,
            require_mfa,
        }) => {
            let db = startup::connect(&settings).await?;
            startup::prepare_schema(&db, &settings).await?;
            let meta = ClientMetadata {
                client_name: Some(name),
                redirect_uris: Some(redirect_uris),
                grant_types: (!grant_types.is_empty()).then_some(grant_types),
                response_types: None,
                scope,
                token_endpoint_auth_method: auth_method,
                id_token_signed_response_alg: None,
                require_pkce,
                require_mfa,
            };
            let (client, secret) =
                clients::create(&db, clock.now(), meta, &clients::id_token_algs(settings.signing_alg))
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!("client_id: {}", client.client_id);
            if let Some(secret) = secret {
                println!("client_secret: {secret}");
                eprintln!("store the secret now: it is not shown again");
            }
        }
        Command::Keys(command) => {
            let db = startup::connect(&settings).await?;
            startup::prepare_schema(&db, &settings).await?;
            let policy = KeyPolicy::from_settings(&settings);
            match command {
                KeysCommand::Rotate => {
                    let master = startup::master_key(&settings)?;
                    let now = clock.now();
                    let plans = keys::rotate(&db, &policy, &master, now).await.map_err(|e| e.0)?;
                    crate::audit::keys_created(&db, now, &crate::refresh::Origin::default(), "cli", &plans)
                        .await;
                    for plan in plans {
                        println!(
                            "{} key {} ({}) signs from {}",
                            plan.purpose.as_str(),
                            plan.kid,
                            plan.alg,
                            plan.activates_at.to_rfc3339()
                        );
                    }
                    println!(
                        "running servers pick this up within {}s",
                        settings.key_reload_interval.as_secs()
                    );
                }
                KeysCommand::List => {
                    let rows = keys::list(&db, &policy, clock.now()).await.map_err(|e| e.0)?;
                    println!(
                        "{:<44} {:<9} {:<6} {:<9} {:<26} RETIRES",
                        "KID", "PURPOSE", "ALG", "STATE", "ACTIVATES"
                    );
                    for (meta, status) in rows {
                        println!(
                            "{:<44} {:<9} {:<6} {:<9} {:<26} {}",
                            meta.kid,
                            meta.purpose.as_str(),
                            meta.alg.as_str(),
                            status.state.as_str(),
                            meta.activates_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                            status
                                .retires_at
                                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                                .unwrap_or_else(|| "-".into())
                        );
                    }
                }
            }
        }
    }
    Ok(())
}

fn read_password() -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    if stdin.is_terminal() {
        let first = rpassword::prompt_password("Password: ").context("cannot read the password")?;
        let second = rpassword::prompt_password("Repeat password: ").context("cannot read the password")?;
        if first != second {
            bail!("the passwords do not match");
        }
        return Ok(first);
    }
    let mut line = String::new();
    stdin.lock().read_line(&mut line).context("cannot read the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

async fn create_user(
    settings: &Settings,
    clock: &dyn Clock,
    username: &str,
    email: Option<&str>,
    roles: &[String],
) -> anyhow::Result<()> {
    let username = Username::parse(username)?;
    let email = email.map(Email::parse).transpose()?;
    let roles = roles.iter().map(|r| Role::parse(r)).collect::<Result<Vec<_>, _>>()?;
    let password = Password::new(&read_password()?)?;
    let db = startup::connect(settings).await?;
    startup::prepare_schema(&db, settings).await?;
    let hasher =
        PasswordHasher::new(PasswordPolicy::from_settings(settings)?, 1, 1).await.map_err(|e| e.0)?;
    let user = users::register(&db, &hasher, clock.now(), NewUser { username, email, password, roles })
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("created user {} ({})", user.username, user.id);
    Ok(())
}

async fn reset_mfa(settings: &Settings, clock: &dyn Clock, username: &str) -> anyhow::Result<()> {
    let db = startup::connect(settings).await?;
    startup::prepare_schema(&db, settings).await?;
    let key = crate::users::username::comparison_key(username);
    let Some(user) = crate::users::repo::by_username_key(&db, &key).await? else {
        bail!("no user {username:?}");
    };
    let tokens = crate::tokens::TokenSettings {
        issuer: settings.issuer_for(settings.listen),
        audience: settings.audience.clone(),
        access_ttl: crate::clock::delta(settings.access_token_ttl),
    };
    let reach = crate::revocation::Reach::new(clock.now(), &tokens);
    let origin = crate::refresh::Origin::default();
    let (removed, ended) = crate::mfa::flow::reset(&db, reach, &origin, "cli", user.id)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    println!("removed {removed} second factor(s) of {} and ended {ended} session(s)", user.username);
    Ok(())
}

/// `GET /healthz` on the configured listen address (loopback when it is a
/// wildcard). Plain HTTP: behind a proxy that terminates TLS, as in
/// `compose.yaml`; with built-in TLS, point the check at the proxy instead.
async fn healthcheck(settings: &Settings) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if settings.tls.is_some() {
        bail!(
            "healthcheck speaks plain HTTP, and LATCHKEY_TLS_CERT is set: check through the TLS endpoint instead"
        );
    }
    let mut address = settings.listen;
    if address.ip().is_unspecified() {
        address.set_ip(match address {
            std::net::SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            std::net::SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    let check = async {
        let mut stream = tokio::net::TcpStream::connect(address).await?;
        stream.write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").await?;
        let mut head = vec![0; 64];
        let n = stream.read(&mut head).await?;
        Ok::<_, std::io::Error>(
            String::from_utf8_lossy(head.get(..n).unwrap_or_default())
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
        )
    };
    let status_line = tokio::time::timeout(std::time::Duration::from_secs(5), check)
        .await
        .with_context(|| format!("no answer from {address} within 5 seconds"))?
        .with_context(|| format!("cannot reach {address}"))?;
    if status_line.starts_with("HTTP/1.1 200") {
        println!("healthy");
        Ok(())
    } else {
        bail!("unhealthy: {address} answered {status_line:?}")
    }
}
