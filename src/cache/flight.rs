//! Request coalescing: concurrent misses for one key make one origin request. The first
//! caller becomes the leader and fills; the others follow and wait, with a timeout, for
//! the leader's outcome. A leader dropped without an outcome releases its followers as
//! `Abandoned`, and they try again. A leader whose body streams while it is stored
//! offers followers a [`Tap`] on it before the outcome.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use tokio::sync::{mpsc, oneshot, watch};

use super::Entry;
use super::key::CacheKey;
use super::meta::Meta;

/// What a fill ended in, as followers see it.
#[derive(Clone)]
pub enum Outcome {
    /// Stored: respond from this entry.
    Stored(Arc<Entry>),
    /// The response could not be stored (private, too large, …): fetch for yourself.
    Pass,
    /// The origin failed; followers answer with the same error status and detail.
    Failed(crate::error::OriginFailure, String),
    /// The leader went away without an outcome: try again.
    Abandoned,
    /// Not an outcome yet: the leader's response is streaming while the fill stores
    /// it, and a follower that takes the whole response may stream it too.
    Streaming(Tap),
}

/// A way into a fill's body while it is read: the response's head, and a body from
/// its first byte for each follower that asks.
#[derive(Clone)]
pub struct Tap {
    /// The response as it will be stored (its body's hash and length not yet known).
    pub meta: Arc<Meta>,
    /// The length the origin declared, if it did.
    pub declared: Option<u64>,
    requests: mpsc::UnboundedSender<oneshot::Sender<Body>>,
}

/// The fill's end of a [`Tap`]: one request per follower, answered with its body.
pub type TapRequests = mpsc::UnboundedReceiver<oneshot::Sender<Body>>;

impl Tap {
    /// A tap on the fill of the response `meta` describes.
    pub fn new(meta: Arc<Meta>, declared: Option<u64>) -> (Tap, TapRequests) {
        let (requests, rx) = mpsc::unbounded_channel();
        let tap = Tap {
            meta,
            declared,
            requests,
        };
        (tap, rx)
    }

    /// The whole body, from its first byte, as the fill reads it; `None` once the fill
    /// no longer hands bodies out (it ended, or goes on without storing).
    pub async fn body(&self) -> Option<Body> {
        let (tx, rx) = oneshot::channel();
        self.requests.send(tx).ok()?;
        rx.await.ok()
    }
}

impl Outcome {
    /// A short name for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Stored(_) => "stored",
            Outcome::Pass => "pass",
            Outcome::Failed(..) => "failed",
            Outcome::Abandoned => "abandoned",
            Outcome::Streaming(_) => "streaming",
        }
    }

    fn is_final(outcome: &Option<Outcome>) -> bool {
        !matches!(outcome, None | Some(Outcome::Streaming(_)))
    }
}

type Slot = watch::Receiver<Option<Outcome>>;

/// The table of fills in progress.
#[derive(Clone, Default)]
pub struct Flights {
    inner: Arc<Mutex<HashMap<CacheKey, Slot>>>,
}

/// The caller's role for one key.
pub enum Flight {
    /// You fill; finish with [`Leader::finish`].
    Leader(Leader),
    /// Someone else fills; wait with [`Follower::wait`].
    Follower(Follower),
}

/// Held by the one caller filling a key. Dropping it without finishing releases the
/// followers as [`Outcome::Abandoned`].
pub struct Leader {
    key: CacheKey,
    tx: Option<watch::Sender<Option<Outcome>>>,
    flights: Flights,
}

/// A caller waiting for a leader.
pub struct Follower {
    rx: Slot,
}

impl Flights {
    /// Joins the flight for `key`, becoming its leader when there is none.
    pub fn join(&self, key: &CacheKey) -> Flight {
        let mut table = self.inner.lock().expect("flight table poisoned");
        if let Some(rx) = table.get(key) {
            // A finished flight whose leader has not yet removed it is as good as none.
            if !Outcome::is_final(&rx.borrow()) && rx.has_changed().is_ok() {
                return Flight::Follower(Follower { rx: rx.clone() });
            }
        }
        let (tx, rx) = watch::channel(None);
        table.insert(key.clone(), rx);
        Flight::Leader(Leader {
            key: key.clone(),
            tx: Some(tx),
            flights: self.clone(),
        })
    }

    /// Fills in progress.
    pub fn in_flight(&self) -> usize {
        self.inner.lock().expect("flight table poisoned").len()
    }
}

impl Leader {
    /// Offers the followers a tap on the body while the fill goes on; the flight lasts
    /// until [`Leader::finish`].
    pub fn streaming(&self, tap: Tap) {
        if let Some(tx) = &self.tx {
            let _ = tx.send(Some(Outcome::Streaming(tap)));
        }
    }

    /// Publishes the outcome to every follower and ends the flight.
    pub fn finish(mut self, outcome: Outcome) {
        self.complete(outcome);
    }

    fn complete(&mut self, outcome: Outcome) {
        if let Some(tx) = self.tx.take() {
            // Remove first so that a caller arriving now starts afresh (or hits the cache).
            self.flights
                .inner
                .lock()
                .expect("flight table poisoned")
                .remove(&self.key);
            let _ = tx.send(Some(outcome));
        }
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        self.complete(Outcome::Abandoned);
    }
}

impl Follower {
    /// Waits at most `limit` for the leader's outcome; `None` on timeout. Never
    /// [`Outcome::Streaming`].
    pub async fn wait(mut self, limit: Duration) -> Option<Outcome> {
        self.wait_until(limit, Outcome::is_final).await
    }

    /// Waits at most `limit` for the leader's outcome or its [`Outcome::Streaming`].
    pub async fn wait_or_tap(&mut self, limit: Duration) -> Option<Outcome> {
        self.wait_until(limit, Option::is_some).await
    }

    async fn wait_until(
        &mut self,
        limit: Duration,
        ready: fn(&Option<Outcome>) -> bool,
    ) -> Option<Outcome> {
        let waited = tokio::time::timeout(limit, self.rx.wait_for(ready)).await;
        match waited {
            Ok(Ok(outcome)) => outcome.clone(),
            // The sender vanished without sending: treat as abandoned.
            Ok(Err(_)) => Some(Outcome::Abandoned),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> CacheKey {
        CacheKey::new("s", "h", "/a")
    }

    #[tokio::test]
    async fn second_caller_follows_and_sees_the_outcome() {
        let flights = Flights::default();
        let Flight::Leader(leader) = flights.join(&key()) else {
            panic!("first caller must lead")
        };
        let Flight::Follower(follower) = flights.join(&key()) else {
            panic!("second caller must follow")
        };
        let waiting = tokio::spawn(follower.wait(Duration::from_secs(5)));
        leader.finish(Outcome::Pass);
        assert!(matches!(waiting.await.unwrap(), Some(Outcome::Pass)));
        assert_eq!(flights.in_flight(), 0);
    }

    #[tokio::test]
    async fn dropped_leader_releases_followers_as_abandoned() {
        let flights = Flights::default();
        let leader = flights.join(&key());
        let Flight::Follower(follower) = flights.join(&key()) else {
            panic!("second caller must follow")
        };
        drop(leader);
        assert!(matches!(
            follower.wait(Duration::from_secs(5)).await,
            Some(Outcome::Abandoned)
        ));
        assert!(matches!(flights.join(&key()), Flight::Leader(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn follower_gives_up_after_its_limit() {
        let flights = Flights::default();
        let _leader = flights.join(&key());
        let Flight::Follower(follower) = flights.join(&key()) else {
            panic!("second caller must follow")
        };
        assert!(follower.wait(Duration::from_secs(1)).await.is_none());
    }
}
