//! Where the middleware reads the current time.

use std::sync::Arc;
use std::time::SystemTime;

use sitequest_auth::{TimeProvider, UnixTime};

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl TimeProvider for SystemClock {
    fn now(&self) -> UnixTime {
        UnixTime::from_system_time(SystemTime::now())
    }
}

/// A shared [`TimeProvider`], as [`AuthMiddleware::with_clock`](crate::AuthMiddleware::with_clock)
/// takes one.
pub type Clock = Arc<dyn TimeProvider>;
