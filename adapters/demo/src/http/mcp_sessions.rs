//! Which key opened each open MCP session, within the limits: the table the MCP endpoint keeps,
//! apart from it so that the server's state can hold it.

use axum::http::StatusCode;

/// How many MCP sessions may be open, and for how long a silent one is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionLimits {
    /// Open sessions in all (`--mcp-max-sessions`).
    pub total: usize,
    /// Open sessions per key (`--mcp-max-sessions-per-key`).
    pub per_key: usize,
    /// A session without any request for this long is closed.
    pub idle: std::time::Duration,
}

impl SessionLimits {
    /// 1,000 sessions in all, 16 per key, closed after 5 minutes without a request.
    pub const DEFAULT: Self = Self {
        total: 1_000,
        per_key: 16,
        idle: std::time::Duration::from_secs(300),
    };
}

/// Why a new session was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SessionRefusal {
    /// The key has [`SessionLimits::per_key`] sessions open.
    #[error(
        "this key has {0} MCP sessions open, the most allowed: end one (DELETE) or let one expire"
    )]
    Key(usize),
    /// The server has [`SessionLimits::total`] sessions open.
    #[error("the server has {0} MCP sessions open, the most allowed: try again later")]
    Server(usize),
    /// No authenticated key on the request.
    #[error("no authenticated key")]
    NoKey,
}

impl SessionRefusal {
    pub(crate) fn status(self) -> StatusCode {
        match self {
            Self::Key(_) => StatusCode::TOO_MANY_REQUESTS,
            Self::Server(_) | Self::NoKey => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// Which key opened each open MCP session: a session answers only the key that opened it. Live
/// sessions are never evicted: past a limit new ones are refused, and an entry leaves when its
/// session ends (closed by the client, idle, or failed).
#[derive(Debug)]
pub struct SessionOwners {
    pub(crate) limits: SessionLimits,
    inner: parking_lot::Mutex<Owners>,
}

#[derive(Debug, Default)]
struct Owners {
    by_session: std::collections::HashMap<String, sitequest_auth::KeyId>,
    /// Open and opening sessions per key.
    per_key: std::collections::HashMap<sitequest_auth::KeyId, usize>,
    /// Open and opening sessions in all.
    total: usize,
}

impl SessionOwners {
    /// An empty table under `limits`.
    #[must_use]
    pub fn new(limits: SessionLimits) -> Self {
        Self {
            limits,
            inner: parking_lot::Mutex::default(),
        }
    }

    pub(crate) fn owner(&self, session: &str) -> Option<sitequest_auth::KeyId> {
        self.inner.lock().by_session.get(session).copied()
    }

    /// Whether `key` may open one more session now.
    pub(crate) fn room_for(&self, key: sitequest_auth::KeyId) -> Result<(), SessionRefusal> {
        self.refusal(&self.inner.lock(), key)
    }

    /// Holds a place for a session `key` is opening.
    pub(crate) fn reserve(&self, key: sitequest_auth::KeyId) -> Result<(), SessionRefusal> {
        let mut owners = self.inner.lock();
        self.refusal(&owners, key)?;
        *owners.per_key.entry(key).or_insert(0) += 1;
        owners.total += 1;
        Ok(())
    }

    /// Why `key` may not open one more session in `owners`, if it may not.
    fn refusal(&self, owners: &Owners, key: sitequest_auth::KeyId) -> Result<(), SessionRefusal> {
        if owners.per_key.get(&key).copied().unwrap_or(0) >= self.limits.per_key {
            return Err(SessionRefusal::Key(self.limits.per_key));
        }
        if owners.total >= self.limits.total {
            return Err(SessionRefusal::Server(self.limits.total));
        }
        Ok(())
    }

    /// Gives back a place held by [`SessionOwners::reserve`].
    pub(crate) fn release(&self, key: sitequest_auth::KeyId) {
        let mut owners = self.inner.lock();
        Self::forget(&mut owners, key);
    }

    fn forget(owners: &mut Owners, key: sitequest_auth::KeyId) {
        owners.total = owners.total.saturating_sub(1);
        if let std::collections::hash_map::Entry::Occupied(mut e) = owners.per_key.entry(key) {
            *e.get_mut() -= 1;
            if *e.get() == 0 {
                e.remove();
            }
        }
    }

    pub(crate) fn bind(&self, session: String, key: sitequest_auth::KeyId) {
        self.inner.lock().by_session.insert(session, key);
    }

    /// Forgets an ended session.
    pub(crate) fn remove(&self, session: &str) {
        let mut owners = self.inner.lock();
        if let Some(key) = owners.by_session.remove(session) {
            Self::forget(&mut owners, key);
        }
    }

    /// Open sessions in all.
    #[must_use]
    pub fn open(&self) -> usize {
        self.inner.lock().by_session.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_refused_past_the_limits_never_evicted() {
        let owners = SessionOwners::new(SessionLimits {
            total: 3,
            per_key: 2,
            idle: std::time::Duration::from_secs(1),
        });
        let k = sitequest_auth::KeyId::from_u64;
        for (s, key) in [("a1", 1), ("a2", 1)] {
            owners.reserve(k(key)).unwrap();
            owners.bind(s.into(), k(key));
        }
        assert_eq!(owners.reserve(k(1)), Err(SessionRefusal::Key(2)));
        owners.reserve(k(2)).unwrap();
        owners.bind("b1".into(), k(2));
        assert_eq!(owners.reserve(k(3)), Err(SessionRefusal::Server(3)));
        assert_eq!(owners.owner("a1"), Some(k(1)));
        owners.remove("a1");
        assert_eq!(owners.owner("a1"), None);
        owners.reserve(k(1)).unwrap();
        owners.release(k(1));
        owners.remove("a2");
        owners.remove("b1");
        owners.remove("b1");
        let inner = owners.inner.lock();
        assert!(inner.by_session.is_empty() && inner.per_key.is_empty() && inner.total == 0);
    }
}
