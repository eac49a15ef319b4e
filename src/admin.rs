//! The admin listener: purge, stats, metrics and health for operators.
//!
//! | route | auth | what |
//! | --- | --- | --- |
//! | `GET /healthz` | none | 200 while the process serves |
//! | `GET /readyz` | none | 200 when the listeners are up and the index is open, else 503 |
//! | `POST /purge` | bearer | purge URLs, prefixes, tags or everything; soft or hard; fan-out |
//! | `GET /stats` | bearer | JSON summary: tiers, hit ratio, origin load, fills in flight |
//! | `GET /metrics` | bearer | Prometheus text format |
//!
//! "bearer" means `Authorization: Bearer <token>` when `[admin]` configures a token
//! (compared in constant time); without one these routes are open, which config allows
//! only on a loopback listener.

pub mod client;
mod cluster;
mod purge;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

pub use self::cluster::{FORWARDED, PeerResult, Peers};
pub use self::purge::{PurgeReport, PurgeRequest, Purged};

use crate::metrics::tier_stats;
use crate::server::AppState;

/// What the admin handlers share: the edge's state and the peer client.
#[derive(Clone)]
struct Admin {
    state: AppState,
    peers: Arc<Peers>,
}

/// The admin router over `state`.
pub fn router(state: AppState) -> Router {
    let peers = Arc::new(Peers::new(&state.config.cluster));
    let admin = Admin { state, peers };
    let guarded = Router::new()
        .route("/purge", post(purge_handler))
        .route("/stats", get(stats))
        .route("/metrics", get(metrics))
        .route_layer(middleware::from_fn_with_state(admin.clone(), require_token));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .merge(guarded)
        .with_state(admin)
}

/// Refuses a request without the configured bearer token (401, nothing done).
async fn require_token(State(admin): State<Admin>, request: Request, next: Next) -> Response {
    let Some(token) = &admin.state.config.admin.token else {
        return next.run(request).await;
    };
    let presented = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented {
        Some(p) if constant_time_eq(p.as_bytes(), token.expose().as_bytes()) => {
            next.run(request).await
        }
        Some(_) => unauthorized("the bearer token does not match"),
        None => unauthorized("an `Authorization: Bearer <token>` header is required"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut response = error(StatusCode::UNAUTHORIZED, message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static("Bearer realm=\"edge-admin\""),
    );
    response
}

/// A JSON error body: `{"error": message}`.
fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

/// Compares `presented` with `expected` in time that depends only on the length of
/// `expected`, so that response timing does not reveal how much of a guess was right.
pub fn constant_time_eq(presented: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(presented.len() != expected.len());
    for (i, e) in expected.iter().enumerate() {
        diff |= e ^ presented.get(i).copied().unwrap_or(0);
    }
    std::hint::black_box(diff) == 0
}

/// 200 when the listeners are up and, with a disk tier configured, its index is open
/// and healthy; else 503 saying which is missing.
async fn readyz(State(admin): State<Admin>) -> Response {
    let state = &admin.state;
    if !state.metrics.is_ready() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: listeners are not up\n",
        )
            .into_response();
    }
    if state.config.cache.disk > 0 && !state.cache.has_disk() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: the disk index is not open\n",
        )
            .into_response();
    }
    (StatusCode::OK, "ready\n").into_response()
}

async fn purge_handler(State(admin): State<Admin>, headers: HeaderMap, body: Bytes) -> Response {
    let request = match PurgeRequest::parse(&body) {
        Ok(r) => r,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    let plan = match request.plan(&admin.state.sites()) {
        Ok(plan) => plan,
        Err(message) => return error(StatusCode::BAD_REQUEST, &message),
    };
    // A purge another node forwarded stops here: forwarding again could loop.
    let forward = !headers.contains_key(FORWARDED);
    // In a task of its own, so that a client hanging up cannot leave a purge half done
    // or unforwarded.
    let task = tokio::spawn(async move {
        let state = &admin.state;
        let mut report = plan
            .apply(&state.cache, &state.metrics, state.clock.now())
            .await;
        if forward {
            report.peers = admin.peers.forward(&body).await;
        }
        report
    });
    let report = match task.await {
        Ok(report) => report,
        Err(e) => {
            tracing::error!(target: "edge::admin", error = %e, "purge task failed");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "the purge failed; see the log",
            );
        }
    };
    tracing::info!(
        target: "edge::admin",
        soft = report.soft,
        url = report.purged.url,
        prefix = report.purged.prefix,
        tag = report.purged.tag,
        all = report.purged.all,
        micros = report.duration_us,
        peers_failed = report.peers.iter().filter(|p| !p.ok).count(),
        "purge"
    );
    (StatusCode::OK, axum::Json(report)).into_response()
}

async fn stats(State(admin): State<Admin>) -> Response {
    let state = &admin.state;
    let totals = state.metrics.totals();
    let tiers: serde_json::Map<String, serde_json::Value> = tier_stats(&state.cache)
        .into_iter()
        .map(|t| {
            let v = json!({ "entries": t.entries, "bytes": t.bytes, "charged": t.charged, "evictions": t.evictions });
            (t.tier.to_owned(), v)
        })
        .collect();
    let requests: serde_json::Map<String, serde_json::Value> = totals
        .outcomes
        .iter()
        .map(|(name, n)| ((*name).to_owned(), json!(n)))
        .collect();
    let body = json!({
        "tiers": tiers,
        "requests": requests,
        "hit_ratio": totals.hit_ratio(),
        "origin": { "fetches": totals.origin_fetches, "errors": totals.origin_errors },
        "compression": {
            "variants": totals.compression_variants,
            "saved_bytes": totals.compression_saved_bytes,
        },
        "fills_in_flight": state.cache.flights().in_flight(),
        "fill_memory_bytes": state.fills.held(),
        "generation": state.cache.generation(),
        "disk": {
            "open": state.cache.has_disk(),
            "corrupt_blobs": state.cache.corrupt_blobs(),
            "skipped_stores": state.cache.disk_skipped(),
        },
    });
    axum::Json(body).into_response()
}

async fn metrics(State(admin): State<Admin>) -> Response {
    let text = admin.state.metrics.encode();
    ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response()
}

#[cfg(test)]
mod tests {
    use super::constant_time_eq;

    #[test]
    fn constant_time_eq_accepts_only_the_exact_token() {
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
        assert!(!constant_time_eq(b"s3cre", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret!", b"s3cret"));
        assert!(!constant_time_eq(b"S3cret", b"s3cret"));
        assert!(!constant_time_eq(b"", b"s3cret"));
        assert!(!constant_time_eq(b"s3cret\0", b"s3cret"));
    }
}
