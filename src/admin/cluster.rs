//! Cluster fan-out: a purge a client sent is forwarded to every `[cluster] peers` admin
//! URL at once, each with a timeout and retries, and each peer's result is reported.
//! Forwarded requests carry [`FORWARDED`], and a node never forwards such a request
//! again, so a purge cannot loop around a cluster however its peers are configured.

use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Uri;
use serde::{Deserialize, Serialize};

use super::client::{self, AdminClient};
use crate::config::{Cluster, Secret};

/// The header marking a purge forwarded by another node.
pub const FORWARDED: &str = "x-edge-forwarded";

/// The peers of this node and a client to reach them.
pub struct Peers {
    peers: Vec<Uri>,
    timeout: Duration,
    retries: u32,
    token: Option<Secret>,
    client: AdminClient,
}

/// How forwarding a purge to one peer went.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeerResult {
    /// The peer's admin base URL.
    pub peer: String,
    /// Whether the peer answered 2xx.
    pub ok: bool,
    /// The status of the last answer, if any arrived.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Requests sent (1 + retries used).
    pub attempts: u32,
    /// Time from the first attempt to the result, in microseconds.
    pub duration_us: u64,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The peer's own report (its JSON answer), when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<serde_json::Value>,
}

impl Peers {
    /// A client for the peers of `config`.
    pub fn new(config: &Cluster) -> Self {
        Peers {
            peers: config.peers.clone(),
            timeout: config.timeout,
            retries: config.retries,
            token: config.peer_token.clone(),
            client: client::client(config.timeout),
        }
    }

    /// Forwards a purge body to every peer concurrently; one result per peer, in
    /// configuration order.
    pub async fn forward(&self, body: &Bytes) -> Vec<PeerResult> {
        let calls = self
            .peers
            .iter()
            .map(|peer| self.forward_to(peer, body.clone()));
        futures_util::future::join_all(calls).await
    }

    async fn forward_to(&self, peer: &Uri, body: Bytes) -> PeerResult {
        let started = Instant::now();
        let name = peer.to_string().trim_end_matches('/').to_owned();
        let mut attempts = 0;
        loop {
            attempts += 1;
            let token = self.token.as_ref().map(Secret::expose);
            let send = client::post_purge(&self.client, &name, token, body.clone(), true);
            let outcome = tokio::time::timeout(self.timeout, send).await;
            let (status, error, response) = match outcome {
                Err(_) => (
                    None,
                    Some(format!("timed out after {:?}", self.timeout)),
                    None,
                ),
                Ok(Err(e)) => (None, Some(e), None),
                Ok(Ok((status, answer))) => {
                    let response = serde_json::from_slice(&answer).ok();
                    let error = (!(200..300).contains(&status)).then(|| {
                        let text = String::from_utf8_lossy(&answer[..answer.len().min(512)]);
                        format!("answered {status}: {}", text.trim())
                    });
                    (Some(status), error, response)
                }
            };
            // 4xx answers (bad token, bad body) will not change on retry.
            let retryable = error.is_some() && !status.is_some_and(|s| (400..500).contains(&s));
            if retryable && attempts <= self.retries {
                tracing::debug!(target: "edge::admin", peer = %name, attempts, ?error, "retrying a forwarded purge");
                tokio::time::sleep(Duration::from_millis(100) * attempts).await;
                continue;
            }
            if let Some(error) = &error {
                tracing::warn!(target: "edge::admin", peer = %name, attempts, %error, "forwarding a purge failed");
            }
            return PeerResult {
                peer: name,
                ok: error.is_none(),
                status,
                attempts,
                duration_us: started.elapsed().as_micros() as u64,
                error,
                response,
            };
        }
    }
}
