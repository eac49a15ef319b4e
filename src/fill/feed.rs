//! The bodies a streaming fill hands out while it reads: one for the client that
//! started the fill and one for each follower that taps it ([`Tap`]). Each body gets
//! every byte the fill reads, in order, and ends the way the fill does: whole, or with
//! an error, never a clean end to a short body.
//!
//! The fill never waits for a client while it stores. A client [`STREAM_WINDOW`]
//! behind gets no more frames until it has taken half of what it holds; then it
//! catches up from the fill's buffer, a copy of a quarter window at a time, and takes
//! frames again once it has every byte read. A follower that taps in late starts that
//! way, from byte 0. A client still behind when the body is whole reads the rest from
//! the whole body. At most [`MAX_CLIENTS`] clients stream from one fill.
//!
//! [`Tap`]: crate::cache::flight::Tap

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::body::Body;
use bytes::Bytes;
use tokio::sync::{Notify, mpsc, oneshot, watch};

use crate::cache::flight::TapRequests;

/// How far a client may fall behind the fill before it stops getting frames. With
/// [`MAX_CLIENTS`], it bounds what one fill's clients hold beside its buffer: each
/// holds at most a window of frames (shared with the others where their positions
/// overlap), or, catching up, three quarters of one in copies.
pub(super) const STREAM_WINDOW: usize = 1024 * 1024;

/// The most clients one fill streams to; followers past it wait for the stored entry.
pub(super) const MAX_CLIENTS: usize = 64;

/// Every client of one streaming fill.
pub(super) struct Feeds {
    feeds: Vec<Feed>,
    /// Woken when a client's queue falls to half a window.
    taken: Arc<Notify>,
    /// Followers asking for a body; `None` once no more are taken.
    requests: Option<TapRequests>,
}

/// What a fill waiting on its clients was woken for.
pub(super) enum Event {
    /// A client took enough to be handed more.
    Taken,
    /// A follower asks for a body.
    Tapped(oneshot::Sender<Body>),
}

impl Feeds {
    pub(super) fn new(requests: TapRequests) -> Feeds {
        Feeds {
            feeds: Vec::new(),
            taken: Arc::new(Notify::new()),
            requests: Some(requests),
        }
    }

    /// A new client's body, from byte 0 of `read` (the body so far) on.
    pub(super) fn add(&mut self, read: &[u8]) -> Body {
        let (mut feed, body) = Feed::new(self.taken.clone());
        feed.behind = true;
        feed.catch_up(read);
        self.feeds.push(feed);
        body
    }

    /// Answers a follower's request for a body (from byte 0 of `read`, the body so
    /// far), unless the fill already streams to [`MAX_CLIENTS`]: that follower then
    /// waits for the stored entry.
    pub(super) fn tapped(&mut self, reply: oneshot::Sender<Body>, read: &[u8]) {
        self.feeds.retain(|feed| !feed.frames.is_closed());
        if self.feeds.len() < MAX_CLIENTS {
            let _ = reply.send(self.add(read));
        }
    }

    /// Hands `data`, the last bytes of `read`, to every client.
    pub(super) fn offer(&mut self, data: &Bytes, read: &[u8]) {
        self.feeds.retain(|feed| !feed.frames.is_closed());
        for feed in &mut self.feeds {
            feed.offer(data, read);
        }
    }

    /// Hands what it can to each client that fell behind.
    pub(super) fn catch_up(&mut self, read: &[u8]) {
        for feed in &mut self.feeds {
            feed.catch_up(read);
        }
    }

    /// Waits until a client can take more or a follower taps in.
    pub(super) async fn event(&mut self) -> Event {
        let taken = self.taken.clone();
        match &mut self.requests {
            Some(requests) => tokio::select! {
                Some(reply) = requests.recv() => Event::Tapped(reply),
                _ = taken.notified() => Event::Taken,
            },
            None => {
                taken.notified().await;
                Event::Taken
            }
        }
    }

    /// The body will not be stored: followers can no longer tap in, and each client
    /// gets the rest of `read` (what it has not had) at once.
    pub(super) fn unbuffered(&mut self, read: Bytes) {
        self.requests = None;
        for feed in &mut self.feeds {
            if feed.behind {
                feed.behind = false;
                feed.push(read.slice(feed.sent as usize..));
            }
        }
    }

    /// Hands `data` to every client once each has taken all but [`STREAM_WINDOW`]
    /// bytes; false when every client is gone.
    pub(super) async fn paced(&mut self, data: Bytes) -> bool {
        loop {
            self.feeds.retain(|feed| !feed.frames.is_closed());
            if self.feeds.is_empty() {
                return false;
            }
            let taken = self.taken.notified();
            if self.feeds.iter().all(|feed| feed.queued() <= STREAM_WINDOW) {
                break;
            }
            taken.await;
        }
        for feed in &mut self.feeds {
            feed.push(data.clone());
        }
        true
    }

    /// The body is read whole: these are all its bytes.
    pub(super) fn complete(self, bytes: Bytes) {
        for feed in self.feeds {
            let _ = feed.end.send(End::Complete(bytes.clone()));
        }
    }

    /// The body was cut short.
    pub(super) fn fail(self, error: &str) {
        let error: Arc<str> = error.into();
        for feed in self.feeds {
            let _ = feed.end.send(End::Failed(error.clone()));
        }
    }
}

/// How a streamed body ended, as its reader learns it.
#[derive(Clone)]
enum End {
    /// Still being read.
    Reading,
    /// Read whole: these are all its bytes.
    Complete(Bytes),
    /// Cut short.
    Failed(Arc<str>),
}

/// The fill's side of one client's body.
struct Feed {
    frames: mpsc::UnboundedSender<Bytes>,
    /// Bytes handed over and not yet taken by the client.
    queued: Arc<AtomicUsize>,
    end: watch::Sender<End>,
    /// Bytes handed over in all.
    sent: u64,
    /// Whether frames stopped because the client fell behind.
    behind: bool,
}

impl Feed {
    fn new(taken: Arc<Notify>) -> (Feed, Body) {
        let (frames, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let (end, end_rx) = watch::channel(End::Reading);
        let reader = FeedReader {
            frames: rx,
            queued: queued.clone(),
            taken,
            end: end_rx,
            offset: 0,
            done: false,
            fill_gone: false,
        };
        let feed = Feed {
            frames,
            queued,
            end,
            sent: 0,
            behind: false,
        };
        (feed, Body::from_stream(reader.into_stream()))
    }

    fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    fn offer(&mut self, data: &Bytes, read: &[u8]) {
        if !self.behind {
            if self.queued() + data.len() <= STREAM_WINDOW {
                self.push(data.clone());
                return;
            }
            self.behind = true;
        }
        self.catch_up(read);
    }

    /// Copies of `read` while the client holds at most half a window: it then holds
    /// more than half, and taking it back to half wakes the fill ([`FeedReader`]).
    fn catch_up(&mut self, read: &[u8]) {
        while self.behind && self.queued() <= STREAM_WINDOW / 2 {
            let from = self.sent as usize;
            let to = read.len().min(from + STREAM_WINDOW / 4);
            self.push(Bytes::copy_from_slice(&read[from..to]));
            self.behind = to < read.len();
        }
    }

    fn push(&mut self, data: Bytes) {
        if data.is_empty() {
            return;
        }
        self.queued.fetch_add(data.len(), Ordering::AcqRel);
        self.sent += data.len() as u64;
        let _ = self.frames.send(data);
    }
}

/// The client's side of its body.
struct FeedReader {
    frames: mpsc::UnboundedReceiver<Bytes>,
    queued: Arc<AtomicUsize>,
    taken: Arc<Notify>,
    end: watch::Receiver<End>,
    /// Bytes taken so far.
    offset: u64,
    done: bool,
    /// The fill went away without saying how the body ended.
    fill_gone: bool,
}

/// A client gone may be the one a pacing fill waits for.
impl Drop for FeedReader {
    fn drop(&mut self) {
        self.taken.notify_one();
    }
}

impl FeedReader {
    fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
        futures_util::stream::unfold(self, |mut reader| async move {
            let item = reader.next().await?;
            Some((item, reader))
        })
    }

    async fn next(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.done {
            return None;
        }
        loop {
            let ended = self.fill_gone || !matches!(*self.end.borrow(), End::Reading);
            // Frames handed over come first; the end is read once none are left.
            let frame = if ended {
                self.frames.try_recv().ok()
            } else {
                tokio::select! {
                    biased;
                    frame = self.frames.recv() => frame,
                    changed = self.end.changed() => {
                        self.fill_gone = changed.is_err();
                        continue;
                    }
                }
            };
            if let Some(frame) = frame {
                let before = self.queued.fetch_sub(frame.len(), Ordering::AcqRel);
                if before > STREAM_WINDOW / 2 && before - frame.len() <= STREAM_WINDOW / 2 {
                    self.taken.notify_one();
                }
                self.offset += frame.len() as u64;
                return Some(Ok(frame));
            }
            let end = self.end.borrow().clone();
            self.done = true;
            return match end {
                End::Complete(bytes) if (bytes.len() as u64) > self.offset => {
                    Some(Ok(bytes.slice(self.offset as usize..)))
                }
                End::Complete(_) => None,
                End::Failed(error) => Some(Err(std::io::Error::other(error.to_string()))),
                End::Reading => Some(Err(std::io::Error::other("the fill stopped"))),
            };
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::BodyExt;

    use super::*;
    use crate::cache::flight::Tap;

    fn patterned(len: usize) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ (i >> 8) as u8)
            .collect()
    }

    fn new_feeds() -> (Feeds, Tap) {
        let now = std::time::SystemTime::now();
        let key = crate::cache::key::CacheKey::new("s", "h", "/a");
        let meta = super::super::build_meta(
            &key,
            200,
            http::HeaderMap::new(),
            &Bytes::new(),
            false,
            now,
            now,
        );
        let (tap, requests) = Tap::new(Arc::new(meta), None);
        (Feeds::new(requests), tap)
    }

    /// Takes frames from `body` until nothing handed to it is left.
    async fn take_queued(feeds: &Feeds, body: &mut Body, got: &mut Vec<u8>) {
        while feeds.feeds.iter().any(|feed| feed.queued() > 0) {
            let frame = body.frame().await.unwrap().unwrap();
            got.extend_from_slice(&frame.into_data().unwrap());
        }
    }

    async fn take_rest(body: &mut Body, got: &mut Vec<u8>) -> Result<(), axum::Error> {
        while let Some(frame) = body.frame().await {
            got.extend_from_slice(&frame?.into_data().unwrap());
        }
        Ok(())
    }

    #[tokio::test]
    async fn a_lagging_client_catches_up_from_the_body_read_so_far() {
        let (mut feeds, _tap) = new_feeds();
        let whole = patterned(5 * STREAM_WINDOW);
        let (mut read, mut got) = (Vec::new(), Vec::new());
        let mut body = feeds.add(&read);
        let frames: Vec<&[u8]> = whole.chunks(64 * 1024).collect();
        // Two windows more than the client holds: several rounds of catching up.
        let (lagged, rest) = frames.split_at(frames.len() * 3 / 5);
        for chunk in lagged {
            read.extend_from_slice(chunk);
            feeds.offer(&Bytes::copy_from_slice(chunk), &read);
        }
        assert!(feeds.feeds[0].behind, "3 windows read, nothing taken");
        assert!(feeds.feeds[0].queued() <= STREAM_WINDOW);
        for chunk in rest {
            // Taking what it holds wakes the fill to hand more over before its next
            // frame (an origin that pauses must not stall a client catching up).
            while feeds.feeds[0].behind {
                take_queued(&feeds, &mut body, &mut got).await;
                let woken = tokio::time::timeout(Duration::from_secs(5), feeds.event()).await;
                assert!(matches!(woken, Ok(Event::Taken)), "the fill was not woken");
                feeds.catch_up(&read);
            }
            read.extend_from_slice(chunk);
            feeds.offer(&Bytes::copy_from_slice(chunk), &read);
        }
        assert!(
            !feeds.feeds[0].behind,
            "caught up while the fill still read"
        );
        feeds.complete(Bytes::from(read));
        take_rest(&mut body, &mut got).await.unwrap();
        assert_eq!(got, whole);
    }

    #[tokio::test]
    async fn a_client_behind_at_the_end_reads_the_rest_from_the_whole_body() {
        let (mut feeds, _tap) = new_feeds();
        let whole = patterned(2 * STREAM_WINDOW + 1000);
        let mut read = Vec::new();
        let mut body = feeds.add(&read);
        for chunk in whole.chunks(100_000) {
            read.extend_from_slice(chunk);
            feeds.offer(&Bytes::copy_from_slice(chunk), &read);
        }
        assert!(feeds.feeds[0].behind);
        feeds.complete(Bytes::from(read));
        let mut got = Vec::new();
        take_rest(&mut body, &mut got).await.unwrap();
        assert_eq!(got, whole);
    }

    #[tokio::test]
    async fn a_follower_tapping_in_late_gets_every_byte_from_the_first() {
        let (mut feeds, tap) = new_feeds();
        let whole = patterned(STREAM_WINDOW + 12345);
        let (first, second) = whole.split_at(whole.len() / 2);
        let mut read = first.to_vec();
        let mut leader = feeds.add(&read);
        let mut follower = tap_in(&mut feeds, &tap, &read)
            .await
            .expect("a body while the fill reads");
        read.extend_from_slice(second);
        feeds.offer(&Bytes::copy_from_slice(second), &read);
        feeds.complete(Bytes::from(read));
        for body in [&mut leader, &mut follower] {
            let mut got = Vec::new();
            take_rest(body, &mut got).await.unwrap();
            assert_eq!(got, whole);
        }
    }

    /// A follower asks through `tap`; the fill answers as it would.
    async fn tap_in(feeds: &mut Feeds, tap: &Tap, read: &[u8]) -> Option<Body> {
        let tap = tap.clone();
        let asked = tokio::spawn(async move { tap.body().await });
        // A client that left wakes the fill too.
        loop {
            if let Event::Tapped(reply) = feeds.event().await {
                feeds.tapped(reply, read);
                return asked.await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn followers_past_the_most_clients_get_no_body() {
        let (mut feeds, tap) = new_feeds();
        let mut bodies: Vec<Body> = (0..MAX_CLIENTS).map(|_| feeds.add(b"abc")).collect();
        assert!(
            tap_in(&mut feeds, &tap, b"abc").await.is_none(),
            "it waits for the entry instead"
        );
        // A client gone makes room.
        bodies.pop();
        let mut body = tap_in(&mut feeds, &tap, b"abc")
            .await
            .expect("room for one more");
        feeds.complete(Bytes::from_static(b"abc"));
        let mut got = Vec::new();
        take_rest(&mut body, &mut got).await.unwrap();
        assert_eq!(got, b"abc");
    }

    #[tokio::test]
    async fn a_fill_pacing_its_clients_goes_on_when_the_slowest_leaves() {
        let (mut feeds, _tap) = new_feeds();
        let fast = feeds.add(b"");
        let slow = feeds.add(b"");
        feeds.unbuffered(Bytes::new());
        let frame = Bytes::from(patterned(STREAM_WINDOW + 1));
        assert!(feeds.paced(frame.clone()).await);
        // Both hold more than a window: the next frame waits for them.
        let paced = tokio::spawn(async move {
            let sent = feeds.paced(frame).await;
            (sent, feeds)
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!paced.is_finished());
        drop((fast, slow));
        let (sent, _) = tokio::time::timeout(Duration::from_secs(5), paced)
            .await
            .expect("woken when its clients left")
            .unwrap();
        assert!(!sent, "no client left to send to");
    }

    #[tokio::test]
    async fn a_tap_after_the_fill_stopped_handing_out_bodies_gets_none() {
        let (mut feeds, tap) = new_feeds();
        feeds.unbuffered(Bytes::new());
        assert!(tap.body().await.is_none());
        drop(feeds);
        assert!(tap.body().await.is_none());
    }

    #[tokio::test]
    async fn a_failed_or_dropped_fill_ends_every_body_with_an_error() {
        let (mut feeds, _tap) = new_feeds();
        let mut bodies = [feeds.add(b""), feeds.add(b"")];
        feeds.offer(&Bytes::from_static(b"first"), b"first");
        feeds.fail("origin reset");
        for body in &mut bodies {
            let mut got = Vec::new();
            assert!(take_rest(body, &mut got).await.is_err());
            assert_eq!(got, b"first", "what was handed over comes before the error");
        }

        let (mut feeds, _tap) = new_feeds();
        let mut body = feeds.add(b"");
        feeds.offer(&Bytes::from_static(b"first"), b"first");
        drop(feeds);
        let mut got = Vec::new();
        assert!(take_rest(&mut body, &mut got).await.is_err());
        assert_eq!(got, b"first");
    }
}
