//! The `edge` binary: parse flags, load config, start tracing, run.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge::config::Config;

/// A static-asset CDN edge node.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve with a configuration file (the default command).
    Serve {
        /// Path to the configuration.
        #[arg(long, default_value = "edge.toml")]
        config: PathBuf,
    },
    /// Validate a configuration and print it, or print every error with its key.
    CheckConfig {
        /// Path to the configuration.
        #[arg(long, default_value = "edge.toml")]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command.unwrap_or(Command::Serve {
        config: PathBuf::from("edge.toml"),
    }) {
        Command::Serve { config } => serve(config),
        Command::CheckConfig { config } => check(config),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config = Arc::new(Config::load(&path)?);
    let runtime = tokio::runtime::Runtime::new().context("starting the runtime")?;
    runtime
        .block_on(edge::server::run(config))
        .with_context(|| format!("serving {}", path.display()))
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    println!("{} is valid:\n{config:#?}", path.display());
    Ok(())
}
