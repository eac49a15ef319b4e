//! Live configuration reload (SIGHUP): re-read the file edge started with; if it is
//! valid and every site's certificate loads, new requests and handshakes use the new
//! sites (hosts, origins, per-site policy, certificates) while open connections and the
//! cache carry on. An invalid file changes nothing and every error is logged. Settings
//! that belong to listeners, the cache or other process-wide parts need a restart: a
//! difference in them is logged and the running values stay.

use std::path::Path;

use crate::config::{Config, ConfigErrors};
use crate::server::AppState;
use crate::tls::{self, CertReload};

/// What a reload did.
#[derive(Debug)]
pub enum Reload {
    /// The new sites are in service. The sections named differ from the running ones
    /// and were left as they are: they take effect at the next restart.
    Applied {
        /// Top-level sections such as `server`, `admin`, `cache` or `compression`.
        restart_needed: Vec<String>,
    },
    /// Nothing changed: the file, or a certificate it names, is invalid.
    Rejected(ConfigErrors),
}

impl Reload {
    /// The outcome's name, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Reload::Applied { .. } => "applied",
            Reload::Rejected(_) => "rejected",
        }
    }
}

/// Reloads the configuration of `state` from `path` and logs what happened. Blocking:
/// it reads the file and the certificates.
pub fn reload(state: &AppState, path: &Path) -> Reload {
    let outcome = apply(state, path);
    match &outcome {
        Reload::Applied { restart_needed } => {
            if !restart_needed.is_empty() {
                tracing::warn!(
                    sections = ?restart_needed,
                    "these settings changed but need a restart; the running values are unchanged"
                );
            }
            tracing::info!(config = %path.display(), sites = state.sites().iter().count(), "configuration reloaded");
        }
        Reload::Rejected(errors) => {
            for error in &errors.errors {
                tracing::error!(config = %errors.path, key = %error.key, "{}", error.message);
            }
            tracing::error!(
                config = %errors.path,
                errors = errors.errors.len(),
                "configuration not reloaded; the running one stays in service"
            );
        }
    }
    outcome
}

fn apply(state: &AppState, path: &Path) -> Reload {
    let config = match Config::load(path) {
        Ok(config) => config,
        Err(errors) => return Reload::Rejected(errors),
    };
    if let Err(errors) = state.replace_sites(&config) {
        return Reload::Rejected(ConfigErrors {
            path: path.display().to_string(),
            errors,
        });
    }
    Reload::Applied {
        restart_needed: restart_needed(&state.config, &config),
    }
}

/// The sections of `new` that differ from the `running` ones and take effect only at
/// start: every top-level section but `[[site]]` and `[origin]` (listeners and client
/// limits, the admin API, the cluster, the cache's sizes and directory, compression).
fn restart_needed(running: &Config, new: &Config) -> Vec<String> {
    let (old_text, new_text) = (sections(running), sections(new));
    let mut names: Vec<String> = old_text
        .iter()
        .filter(|(name, _)| name != "sites" && name != "origin")
        .filter(|(name, text)| new_text.iter().all(|(n, t)| n != name || t != text))
        .map(|(name, _)| name.clone())
        .collect();
    // Secrets print redacted: compare them themselves.
    for (name, changed) in [
        ("admin", running.admin.token != new.admin.token),
        (
            "cluster",
            running.cluster.peer_token != new.cluster.peer_token,
        ),
    ] {
        if changed && !names.iter().any(|n| n == name) {
            names.push(name.to_owned());
        }
    }
    names
}

/// Each top-level field of `config` with its `Debug` text, so that every section,
/// including ones added later, is compared without listing them here.
fn sections(config: &Config) -> Vec<(String, String)> {
    let text = format!("{config:#?}");
    let mut sections: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        let top = line
            .strip_prefix("    ")
            .filter(|rest| !rest.starts_with(' '));
        match top.and_then(|rest| rest.split_once(": ")) {
            Some((name, value)) => sections.push((name.to_owned(), value.to_owned())),
            None => {
                if let Some((_, value)) = sections.last_mut() {
                    value.push_str(line);
                }
            }
        }
    }
    sections
}

/// Reloads on every SIGHUP until the process stops: the configuration, and when it is
/// rejected, the running sites' certificates (so that a renewed certificate is picked up
/// even while the file has an error).
#[cfg(unix)]
pub async fn on_sighup(
    state: AppState,
    path: std::path::PathBuf,
    mut hangup: tokio::signal::unix::Signal,
) {
    while hangup.recv().await.is_some() {
        tracing::info!(config = %path.display(), "SIGHUP: reloading");
        let state = state.clone();
        let path = path.clone();
        let _ = tokio::task::spawn_blocking(move || {
            if let Reload::Rejected(_) = reload(&state, &path) {
                let failed = tls::reload_certs(&state.sites(), true)
                    .iter()
                    .filter(|(_, outcome)| matches!(outcome, CertReload::Failed(_)))
                    .count();
                tracing::info!(failed, "certificates of the running sites re-read");
            }
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(extra: &str) -> Config {
        let text = format!("{extra}\n[[site]]\nhosts = [\"*\"]\norigin = \"http://127.0.0.1:1\"\n");
        Config::parse(&text, Path::new("/tmp")).unwrap()
    }

    #[test]
    fn only_sections_read_at_start_need_a_restart() {
        let running = parse("");
        assert!(restart_needed(&running, &parse("")).is_empty());
        let new = parse(
            "[server]\nlisten = \"127.0.0.1:9999\"\n[origin]\nconnect_timeout = \"2s\"\n\
             [compression]\nenabled = false",
        );
        assert_eq!(restart_needed(&running, &new), ["server", "compression"]);
        let mut sites_only = running.clone();
        sites_only.sites[0].max_variants = 3;
        assert!(restart_needed(&running, &sites_only).is_empty());
    }
}
