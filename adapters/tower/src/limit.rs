//! Limiters that live outside the process: the trait is core's, so that a backend depends on
//! `sitequest-auth` alone; re-exported here for hosts that name it through this crate.

pub use sitequest_auth::{AsyncLimiter, LimitFuture, LimiterUnavailable};
