//! Where the middleware reads the current time.

use std::sync::Arc;

pub use sitequest_auth::SystemClock;
use sitequest_auth::TimeProvider;

/// A shared [`TimeProvider`], as [`AuthMiddleware::with_clock`](crate::AuthMiddleware::with_clock)
/// takes one.
pub type Clock = Arc<dyn TimeProvider>;
