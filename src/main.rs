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
    /// Purge through a node's admin API and print its JSON answer. Exits 1 when the
    /// node refuses (non-2xx), 2 when it purged but a cluster peer failed.
    #[command(group = clap::ArgGroup::new("what").required(true).multiple(true))]
    Purge {
        /// An absolute URL to purge, with every representation and Vary variant
        /// (repeatable).
        #[arg(long = "url", value_name = "URL", group = "what")]
        urls: Vec<String>,
        /// An absolute URL prefix, e.g. `http://example.com/static/` (repeatable).
        #[arg(long = "prefix", value_name = "URL", group = "what")]
        prefixes: Vec<String>,
        /// A surrogate key (`Surrogate-Key` / `Cache-Tag` value), in every site
        /// (repeatable).
        #[arg(long = "tag", value_name = "TAG", group = "what")]
        tags: Vec<String>,
        /// Purge everything.
        #[arg(long, group = "what")]
        all: bool,
        /// Mark stale instead of removing: the next request revalidates.
        #[arg(long)]
        soft: bool,
        /// The node's admin base URL.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9090")]
        admin: String,
        /// The environment variable holding the admin bearer token.
        #[arg(long, value_name = "VAR", default_value = "EDGE_ADMIN_TOKEN")]
        token_env: String,
    },
}

/// mimalloc: the hit path allocates a few small objects per request (hyper, headers,
/// bodies); glibc malloc cost ~8% of CPU per 1 KB hit in a profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
        Command::Purge {
            urls,
            prefixes,
            tags,
            all,
            soft,
            admin,
            token_env,
        } => {
            let request = edge::admin::PurgeRequest {
                urls,
                prefixes,
                tags,
                all,
                soft,
            };
            return purge(&request, &admin, &token_env);
        }
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
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if config.server.workers > 0 {
        builder.worker_threads(config.server.workers);
    }
    let runtime = builder
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime
        .block_on(edge::server::run(config, path.clone()))
        .with_context(|| format!("serving {}", path.display()))
}

fn purge(request: &edge::admin::PurgeRequest, admin: &str, token_env: &str) -> ExitCode {
    let token = std::env::var(token_env)
        .ok()
        .filter(|t| !t.trim().is_empty());
    let body = serde_json::to_vec(request).expect("a purge request serialises");
    let answer = tokio::runtime::Runtime::new()
        .context("starting the runtime")
        .and_then(|rt| {
            rt.block_on(async {
                let client = edge::admin::client::client(std::time::Duration::from_secs(10));
                let post = edge::admin::client::post_purge(
                    &client,
                    admin,
                    token.as_deref(),
                    body.into(),
                    false,
                );
                tokio::time::timeout(std::time::Duration::from_secs(120), post)
                    .await
                    .map_err(|_| anyhow::anyhow!("no answer from {admin} within 120s"))?
                    .map_err(anyhow::Error::msg)
            })
        });
    let (status, answer) = match answer {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    match serde_json::from_slice::<serde_json::Value>(&answer) {
        Ok(json) => println!(
            "{}",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
        Err(_) => println!("{}", String::from_utf8_lossy(&answer).trim_end()),
    }
    if !(200..300).contains(&status) {
        eprintln!("error: {admin} answered {status}");
        return ExitCode::FAILURE;
    }
    let report: Option<edge::admin::PurgeReport> = serde_json::from_slice(&answer).ok();
    let failed: Vec<String> = report
        .iter()
        .flat_map(|r| r.peers.iter().filter(|p| !p.ok).map(|p| p.peer.clone()))
        .collect();
    if !failed.is_empty() {
        eprintln!(
            "warning: purged here, but these peers failed: {}",
            failed.join(", ")
        );
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}

fn check(path: PathBuf) -> anyhow::Result<()> {
    let config = Config::load(&path)?;
    let errors = edge::tls::check(&config);
    if !errors.is_empty() {
        let path = path.display().to_string();
        return Err(edge::config::ConfigErrors { path, errors }.into());
    }
    println!("{} is valid:\n{config:#?}", path.display());
    Ok(())
}
