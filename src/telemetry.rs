//! Structured logs with `tracing`.
//!
//! Nothing secret is ever recorded: handlers and services are instrumented
//! with `skip_all` and name the fields they log (user id, family id, kid),
//! never passwords, tokens or secrets.

use std::io::IsTerminal;

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Install the global subscriber. The filter comes from `LATCHKEY_LOG`
/// (then `RUST_LOG`), defaulting to `info` for latchkey and `warn` elsewhere.
pub fn init(format: LogFormat) {
    let filter = std::env::var("LATCHKEY_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn,latchkey=info"));
    let registry = tracing_subscriber::registry().with(filter);
    // A second init (tests) is harmless, so the error is ignored on purpose.
    let _ = match format {
        LogFormat::Json => registry.with(fmt::layer().json().with_current_span(false)).try_init(),
        LogFormat::Text => registry
            .with(fmt::layer().with_writer(std::io::stderr).with_ansi(std::io::stderr().is_terminal()))
            .try_init(),
    };
}

/// Run CPU-heavy work (argon2, RSA key generation) on the blocking pool,
/// keeping the caller's span so its logs stay attributed.
pub fn spawn_blocking_in_span<F, R>(f: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let span = tracing::Span::current();
    tokio::task::spawn_blocking(move || span.in_scope(f))
}
