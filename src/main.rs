//! The `edge` binary: parse flags, load config, start tracing, run.

use std::io::{BufWriter, IsTerminal, Stdout, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use edge::config::Config;
use edge::server::SPARE_FILES;
use tracing_subscriber::EnvFilter;

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
    let command = cli.command.unwrap_or(Command::Serve {
        config: PathBuf::from("edge.toml"),
    });
    if !matches!(command, Command::Serve { .. }) {
        init_logging(true);
    }
    let result = match command {
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
            let code = purge(&request, &admin, &token_env);
            flush_log();
            return code;
        }
    };
    flush_log();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// What is logged: `RUST_LOG` (`env`; `info` when unset or invalid), without the
/// access log when `[server] access_log` is false, whatever `RUST_LOG` says.
fn log_filter(env: Option<&str>, access_log: bool) -> EnvFilter {
    let filter = env
        .and_then(|env| EnvFilter::try_new(env).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    if access_log {
        filter
    } else {
        filter.add_directive("edge::access=off".parse().expect("a valid directive"))
    }
}

/// How long a log line may wait in [`LOG`] before it is written.
const LOG_FLUSH: std::time::Duration = std::time::Duration::from_millis(200);

/// Log lines on their way to stdout, written when 64 KiB have gathered or every
/// [`LOG_FLUSH`], not one `write` each: with the access log on, a write per request was
/// 9% of a 1 KB hit's CPU (`perf`). A crash loses at most that long's lines, as
/// nginx's `access_log … buffer= flush=` does.
static LOG: std::sync::LazyLock<Mutex<BufWriter<Stdout>>> =
    std::sync::LazyLock::new(|| Mutex::new(BufWriter::with_capacity(64 << 10, std::io::stdout())));

/// Writes a log line into [`LOG`].
struct LogLine;

impl Write for LogLine {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap_or_else(|e| e.into_inner()).write(buf)
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        LOG.lock().unwrap_or_else(|e| e.into_inner()).write_all(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        LOG.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// Writes out what [`LOG`] holds.
fn flush_log() {
    let _ = LogLine.flush();
}

/// Installs the log subscriber on stdout, in colour only on a terminal (a file or the
/// journal gets plain text), a thread that flushes it every [`LOG_FLUSH`], and a panic
/// hook that flushes it first.
fn init_logging(access_log: bool) {
    let env = std::env::var(EnvFilter::DEFAULT_ENV).ok();
    tracing_subscriber::fmt()
        .with_env_filter(log_filter(env.as_deref(), access_log))
        .with_ansi(std::io::stdout().is_terminal())
        .with_writer(|| LogLine)
        .init();
    // A panic that ends the process must not take the last lines with it.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Ok(mut log) = LOG.try_lock() {
            let _ = log.flush();
        }
        report(info);
    }));
    let _ = std::thread::Builder::new()
        .name("edge-log".into())
        .spawn(|| {
            loop {
                std::thread::sleep(LOG_FLUSH);
                flush_log();
            }
        });
}

/// Raises the soft open-file limit to the hard one, as nginx's `worker_rlimit_nofile`
/// and Go's runtime do: each client connection is a descriptor, and many systems start
/// processes with a soft limit of 1,024 below a much higher hard one. Returns the limit
/// now in force (`None`: unlimited, or unknown).
fn raise_open_files() -> Option<u64> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if let (Some(current), Some(maximum)) = (limit.current, limit.maximum)
        && current < maximum
    {
        let raised = rustix::process::Rlimit {
            current: Some(maximum),
            maximum: Some(maximum),
        };
        if let Err(error) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(%error, current, maximum, "could not raise the open-file limit");
        }
    }
    getrlimit(Resource::Nofile).current
}

/// Raises the open-file limit and warns when `max_connections` still does not fit in it:
/// past it, accepting fails (and is retried every 50 ms) instead of queueing.
fn check_open_files(max_connections: usize) {
    let limit = raise_open_files();
    if let Some(limit) = limit
        && (max_connections as u64).saturating_add(SPARE_FILES) > limit
    {
        tracing::warn!(
            open_files = limit,
            max_connections,
            "the open-file limit is below server.max_connections + {SPARE_FILES}: raise it \
             (systemd LimitNOFILE=, ulimit -n) or lower max_connections"
        );
    }
}

fn serve(path: PathBuf) -> anyhow::Result<()> {
    let config = Arc::new(Config::load(&path)?);
    init_logging(config.server.access_log);
    check_open_files(config.server.limits.max_connections);
    let runtime = runtime(config.server.workers)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime
        .block_on(edge::server::run(config, path.clone()))
        .with_context(|| format!("serving {}", path.display()))
}

/// The runtime for `workers` threads (0: one per CPU this process may use), built so
/// that ready connections are served in turn, as an nginx worker serves each
/// `epoll_wait` batch whole. One thread gets tokio's single-threaded runtime, whose run
/// queue is first in, first out. Several get the multi-threaded one, told to poll the
/// sockets only every [`EVENT_INTERVAL`] tasks: by default it polls every 61, and a
/// thread's run queue holds 256 tasks and spills the rest to a shared queue it looks
/// at far less often, so under 1,000 busy connections some were served many times
/// while others waited. Measured with wrk, 1,000 connections, 1 KB hits: p99 160 ms →
/// 20 ms on one pinned thread (nginx 22 ms in the same run), 59–63 ms → 22–25 ms on two
/// threads; with 64 connections, throughput and p99 did not move beyond the noise.
fn runtime(workers: usize) -> tokio::runtime::Builder {
    let one = match workers {
        // Left to tokio, which also honours TOKIO_WORKER_THREADS.
        0 => {
            std::env::var_os("TOKIO_WORKER_THREADS").is_none()
                && !std::thread::available_parallelism().is_ok_and(|n| n.get() > 1)
        }
        n => n == 1,
    };
    if one {
        return tokio::runtime::Builder::new_current_thread();
    }
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if workers > 0 {
        builder.worker_threads(workers);
    }
    builder.event_interval(EVENT_INTERVAL);
    builder
}

/// Tasks a worker thread runs between polls of the sockets when it has several threads.
const EVENT_INTERVAL: u32 = 1024;

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

#[cfg(test)]
mod tests {
    use super::*;

    /// A log destination the test can read back.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// What one access-log line and one operational line leave in the log.
    fn logged(env: Option<&str>, access_log: bool) -> String {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter(log_filter(env, access_log))
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(target: "edge::access", "GET /a");
            tracing::info!(target: "edge::server", "edge listening");
        });
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn the_soft_open_file_limit_is_raised_to_the_hard_one() {
        use rustix::process::{Resource, getrlimit};
        let now = raise_open_files();
        let limit = getrlimit(Resource::Nofile);
        assert_eq!(now, limit.current);
        if limit.maximum.is_some() {
            assert_eq!(limit.current, limit.maximum);
        }
    }

    #[test]
    fn access_log_false_drops_only_the_access_log_whatever_rust_log_says() {
        let on = logged(None, true);
        assert!(
            on.contains("GET /a") && on.contains("edge listening"),
            "{on}"
        );
        let off = logged(None, false);
        assert!(
            !off.contains("GET /a") && off.contains("edge listening"),
            "{off}"
        );
        let asked = logged(Some("info,edge::access=info"), false);
        assert!(!asked.contains("GET /a"), "{asked}");
        let quiet = logged(Some("warn"), true);
        assert!(quiet.is_empty(), "{quiet}");
        let invalid = logged(Some("=-="), true);
        assert!(
            invalid.contains("edge listening"),
            "falls back to info: {invalid}"
        );
    }
}
