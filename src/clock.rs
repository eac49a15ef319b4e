//! Wall-clock time for every freshness decision: the system time at start, advanced by
//! tokio's monotonic clock (so `tokio::time::pause()` stops it), plus an offset that
//! tests move forward with [`Clock::advance`] instead of sleeping.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::time::Instant;

/// The clock freshness reads. Cheap to clone; clones share the offset.
#[derive(Debug, Clone)]
pub struct Clock {
    wall: SystemTime,
    mono: Instant,
    offset_ms: Arc<AtomicU64>,
}

impl Clock {
    /// A clock reading the system time now and advancing with tokio's clock.
    pub fn new() -> Self {
        Clock {
            wall: SystemTime::now(),
            mono: Instant::now(),
            offset_ms: Arc::new(AtomicU64::new(0)),
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        self.wall
            + self.mono.elapsed()
            + Duration::from_millis(self.offset_ms.load(Ordering::Relaxed))
    }

    /// Moves this clock (and its clones) forward by `by`, for tests of expiry.
    pub fn advance(&self, by: Duration) {
        self.offset_ms
            .fetch_add(by.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn clock_follows_paused_tokio_time_and_manual_advance() {
        let clock = Clock::new();
        let start = clock.now();
        tokio::time::advance(Duration::from_secs(10)).await;
        assert_eq!(clock.now().duration_since(start).unwrap().as_secs(), 10);
        clock.clone().advance(Duration::from_secs(5));
        assert_eq!(clock.now().duration_since(start).unwrap().as_secs(), 15);
    }
}
