//! The `latchkey` binary: parse, configure, log, dispatch. Nothing else.

use clap::Parser;
use latchkey::cli::Cli;
use latchkey::config::{LogFormat, Settings};

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    // Held until `main` returns: dropping it writes out the last log lines.
    let _log_writer;
    let settings = if cli.needs_settings() {
        match Settings::load() {
            Ok((settings, report)) => {
                _log_writer = latchkey::telemetry::init(settings.log_format);
                for warning in report.warnings {
                    tracing::warn!("{warning}");
                }
                settings
            }
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    } else {
        _log_writer = latchkey::telemetry::init(LogFormat::Text);
        match Settings::from_sources(None, &[]) {
            Ok((settings, _)) => settings,
            Err(e) => {
                eprintln!("error: {e}");
                return std::process::ExitCode::FAILURE;
            }
        }
    };
    match latchkey::cli::run(cli, settings).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
