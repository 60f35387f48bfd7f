//! Structured logs with `tracing`.
//!
//! Nothing secret is ever recorded: handlers and services are instrumented
//! with `skip_all` and name the fields they log (user id, family id, kid),
//! never passwords, tokens or secrets.

use std::io::IsTerminal;

use tracing_appender::non_blocking::{NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Install the global subscriber. The filter comes from `LATCHKEY_LOG`
/// (then `RUST_LOG`), defaulting to `info` for latchkey and `warn` elsewhere.
///
/// Lines are formatted on the thread that logs but written by a thread of
/// their own, through a buffer flushed whenever that thread has drained what
/// was queued: under load, many lines cost one `write`; when idle, each line
/// is written at once. Nothing is dropped (a full queue makes loggers wait).
/// Hold the returned guard until the process exits: dropping it writes out
/// what is left. `None` when a subscriber was already installed (tests).
#[must_use = "dropping the guard stops the log writer"]
pub fn init(format: LogFormat) -> Option<WorkerGuard> {
    let filter = std::env::var("LATCHKEY_LOG")
        .ok()
        .or_else(|| std::env::var("RUST_LOG").ok())
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("warn,latchkey=info"));
    let registry = tracing_subscriber::registry().with(filter);
    let writer = NonBlockingBuilder::default().lossy(false).thread_name("latchkey-log");
    let installed = match format {
        LogFormat::Json => {
            let (writer, guard) = writer.finish(std::io::BufWriter::new(std::io::stdout()));
            registry
                .with(fmt::layer().json().with_current_span(false).with_writer(writer))
                .try_init()
                .map(|()| guard)
        }
        LogFormat::Text => {
            let ansi = std::io::stderr().is_terminal();
            let (writer, guard) = writer.finish(std::io::BufWriter::new(std::io::stderr()));
            registry.with(fmt::layer().with_writer(writer).with_ansi(ansi)).try_init().map(|()| guard)
        }
    };
    // A second init (tests) is harmless, so the error is ignored on purpose.
    installed.ok()
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
