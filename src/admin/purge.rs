//! `POST /purge`: the JSON request, its validation into a plan of cache keys, prefixes
//! and tags, and the report of what was purged.
//!
//! ```json
//! {"urls": ["http://example.com/app.css"], "prefixes": ["http://example.com/static/"],
//!  "tags": ["product-42"], "all": false, "soft": false}
//! ```
//!
//! URLs and prefixes are absolute (`http://` or `https://`; the scheme does not matter):
//! the host picks the site exactly as a client request's `Host` would, and the path and
//! query are matched as stored. A URL purges every representation and `Vary` variant of
//! that URL; a prefix purges every URL of that host starting with it. Tags are purged
//! across all sites. The whole request is validated before anything is purged, so a
//! 400 purges nothing.

use std::time::{Instant, SystemTime};

use serde::{Deserialize, Serialize};

use super::cluster::PeerResult;
use crate::cache::Cache;
use crate::cache::key::CacheKey;
use crate::metrics::Metrics;
use crate::server::Sites;

/// The body of `POST /purge`; at least one of `urls`, `prefixes`, `tags` or `all`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PurgeRequest {
    /// Absolute URLs; each purges every representation and `Vary` variant.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub urls: Vec<String>,
    /// Absolute URL prefixes, e.g. `http://example.com/static/`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prefixes: Vec<String>,
    /// Surrogate keys (`Surrogate-Key` / `Cache-Tag` values), across all sites.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    /// Purge everything (O(1): a generation bump).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub all: bool,
    /// Mark entries stale instead of removing them: the next request revalidates, and
    /// `stale-if-error` may still serve them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub soft: bool,
}

/// How many entries each kind of purge touched.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Purged {
    /// Entries removed (or invalidated) by `urls`.
    pub url: u64,
    /// Entries removed (or invalidated) by `prefixes`.
    pub prefix: u64,
    /// Entries removed (or invalidated) by `tags`.
    pub tag: u64,
    /// Whether everything was purged.
    pub all: bool,
}

/// The response of `POST /purge`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PurgeReport {
    /// Whether this was a soft purge.
    pub soft: bool,
    /// What was purged on this node.
    pub purged: Purged,
    /// The purge-all generation after a hard `all` purge.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<u64>,
    /// Time to apply the purge on this node, in microseconds.
    pub duration_us: u64,
    /// Each peer's result; empty when no peers are configured or this purge was
    /// forwarded by another node.
    #[serde(default)]
    pub peers: Vec<PeerResult>,
}

/// A validated purge: what to remove, in cache terms.
#[derive(Debug, Clone)]
pub(super) struct Plan {
    urls: Vec<CacheKey>,
    prefixes: Vec<String>,
    tags: Vec<String>,
    all: bool,
    soft: bool,
}

impl PurgeRequest {
    /// Parses a JSON body; the error names the problem (unknown fields included).
    pub fn parse(body: &[u8]) -> Result<Self, String> {
        let request: PurgeRequest =
            serde_json::from_slice(body).map_err(|e| format!("invalid purge request: {e}"))?;
        if request.urls.is_empty()
            && request.prefixes.is_empty()
            && request.tags.is_empty()
            && !request.all
        {
            return Err("invalid purge request: nothing to purge (give `urls`, `prefixes`, `tags` or `all`)".into());
        }
        Ok(request)
    }

    /// Resolves every URL and prefix to a site's keys; the first problem is the error.
    pub(super) fn plan(&self, sites: &Sites) -> Result<Plan, String> {
        let urls = self
            .urls
            .iter()
            .map(|u| key_of(u, sites, true).map_err(|m| format!("urls: {m}")))
            .collect::<Result<Vec<_>, _>>()?;
        let prefixes = self
            .prefixes
            .iter()
            .map(|p| {
                key_of(p, sites, false)
                    .map(|k| k.as_str().to_owned())
                    .map_err(|m| format!("prefixes: {m}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        for tag in &self.tags {
            if tag.is_empty()
                || tag.len() > 1024
                || tag.contains([' ', ','])
                || tag.chars().any(char::is_control)
            {
                return Err(format!(
                    "tags: `{tag}` is not a surrogate key (1 to 1024 characters, no spaces or commas)"
                ));
            }
        }
        Ok(Plan {
            urls,
            prefixes,
            tags: self.tags.clone(),
            all: self.all,
            soft: self.soft,
        })
    }
}

/// The key an absolute URL (or URL prefix) names: its site by host, as a client
/// request's `Host` selects it, then the path and query, normalised as a request's are
/// (dot segments, percent-encoding, the site's query policy) when `normalise`, or as
/// given (a prefix: normalising would change what it is a prefix of).
fn key_of(text: &str, sites: &Sites, normalise: bool) -> Result<CacheKey, String> {
    let uri: http::Uri = text
        .parse()
        .map_err(|_| format!("`{text}` is not a URL (use `http://host/path`)"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.authority().is_none() {
        return Err(format!(
            "`{text}` is not an absolute http:// or https:// URL"
        ));
    }
    let host = uri
        .host()
        .and_then(crate::proxy::host_name)
        .ok_or_else(|| format!("`{text}` has no host"))?;
    let site = sites
        .by_host(&host)
        .ok_or_else(|| format!("`{text}`: no site serves host `{host}`"))?;
    let path_and_query = uri
        .path_and_query()
        .map(|p| p.as_str())
        .filter(|p| p.starts_with('/'))
        .unwrap_or("/");
    let target = match normalise {
        true => crate::http::path::normalise_target(path_and_query, &site.query),
        false => path_and_query.into(),
    };
    Ok(CacheKey::new(&site.name, &host, &target))
}

impl Plan {
    /// Applies the purge to `cache` at `now` and records it in `metrics`. Kinds are
    /// applied in the order urls, prefixes, tags, all; when this returns, the purge is
    /// committed to the disk index.
    pub(super) async fn apply(
        self,
        cache: &Cache,
        metrics: &Metrics,
        now: SystemTime,
    ) -> PurgeReport {
        let started = Instant::now();
        let soft = self.soft;
        let mut purged = Purged::default();
        let mut generation = None;
        if !self.urls.is_empty() {
            let t = Instant::now();
            for key in &self.urls {
                purged.url += cache.purge_url(key, soft).await;
            }
            metrics.purge("url", purged.url, t.elapsed());
        }
        if !self.prefixes.is_empty() {
            let t = Instant::now();
            for prefix in &self.prefixes {
                purged.prefix += cache.purge_prefix(prefix, soft).await;
            }
            metrics.purge("prefix", purged.prefix, t.elapsed());
        }
        if !self.tags.is_empty() {
            let t = Instant::now();
            for tag in &self.tags {
                purged.tag += cache.purge_tag(tag, soft).await;
            }
            metrics.purge("tag", purged.tag, t.elapsed());
        }
        if self.all {
            let t = Instant::now();
            let g = cache.purge_everything(soft, now).await;
            generation = (!soft).then_some(g);
            purged.all = true;
            metrics.purge("all", 0, t.elapsed());
        }
        // Removals are queued for the disk writer: answer once they are committed.
        cache.flush().await;
        PurgeReport {
            soft,
            purged,
            generation,
            duration_us: started.elapsed().as_micros() as u64,
            peers: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_fields_and_empty_requests_are_rejected_with_a_reason() {
        let e = PurgeRequest::parse(br#"{"url": ["http://a/"]}"#).unwrap_err();
        assert!(e.contains("unknown field `url`"), "{e}");
        let e = PurgeRequest::parse(b"{}").unwrap_err();
        assert!(e.contains("nothing to purge"), "{e}");
        let e = PurgeRequest::parse(b"{\"tags\": \"x\"}").unwrap_err();
        assert!(e.contains("invalid type"), "{e}");
        let e = PurgeRequest::parse(b"not json").unwrap_err();
        assert!(e.contains("expected"), "{e}");
    }

    #[test]
    fn a_request_round_trips_through_json() {
        let r = PurgeRequest {
            tags: vec!["a".into()],
            soft: true,
            ..Default::default()
        };
        let text = serde_json::to_vec(&r).unwrap();
        assert_eq!(PurgeRequest::parse(&text).unwrap(), r);
    }
}
