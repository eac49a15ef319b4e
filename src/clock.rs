//! Wall-clock time that follows tokio's clock, so that tests under
//! `tokio::time::pause()` can move time forward without sleeping.

use std::time::SystemTime;

use tokio::time::Instant;

/// The clock every freshness decision reads. Cheap to copy.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    wall: SystemTime,
    mono: Instant,
}

impl Clock {
    /// A clock reading the system time now and advancing with tokio's clock.
    pub fn new() -> Self {
        Clock {
            wall: SystemTime::now(),
            mono: Instant::now(),
        }
    }

    /// The current time.
    pub fn now(&self) -> SystemTime {
        self.wall + self.mono.elapsed()
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
