//! Dashboard sessions: a random cookie per sign-in, kept in memory by its SHA-256, with its CSRF
//! token, its expiry, and at most one new key waiting to be shown once.

use std::collections::HashMap;

use parking_lot::Mutex;
use rand::RngCore;
use sha2::{Digest, Sha256};
use sitequest_auth::UnixTime;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// The session cookie's name.
pub const COOKIE: &str = "sq_dashboard";
/// How long a session lasts: 12 hours.
pub const LIFETIME_SECS: u64 = 12 * 3600;
/// Most sessions at once; past it, expired ones are dropped, then the oldest.
pub const MAX_SESSIONS: usize = 1024;
/// How long a new key waits to be shown: its page is the next one the browser loads, so a key
/// not shown by then never will be.
pub const REVEAL_SECS: u64 = 600;
/// Most new keys waiting to be shown in one session (two forms sent before the page showed the
/// first key); past it the oldest is dropped, and zeroized.
pub const MAX_REVEALS: usize = 8;

/// A new key to show once: its plaintext, id and name.
pub struct Reveal {
    /// The plaintext key, zeroized when dropped.
    pub key: Zeroizing<String>,
    /// The key's id.
    pub id: String,
    /// The key's name.
    pub name: String,
}

impl std::fmt::Debug for Reveal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reveal")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

struct Session {
    csrf: String,
    created: UnixTime,
    expires: UnixTime,
    reveals: Vec<(Reveal, UnixTime)>,
}

/// The signed-in sessions.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<[u8; 32], Session>>,
}

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("open", &self.map.lock().len())
            .finish()
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn digest(cookie: &str) -> [u8; 32] {
    Sha256::digest(cookie.as_bytes()).into()
}

impl Sessions {
    /// Opens a session at `now`: the cookie value to send (the only copy kept is its digest).
    pub fn open(&self, now: UnixTime) -> String {
        let cookie = random_hex();
        let mut map = self.map.lock();
        if map.len() >= MAX_SESSIONS {
            map.retain(|_, s| s.expires > now);
            if map.len() >= MAX_SESSIONS {
                if let Some(oldest) = map.iter().min_by_key(|(_, s)| s.created).map(|(k, _)| *k) {
                    map.remove(&oldest);
                }
            }
        }
        map.insert(
            digest(&cookie),
            Session {
                csrf: random_hex(),
                created: now,
                expires: now.plus_secs(LIFETIME_SECS),
                reveals: Vec::new(),
            },
        );
        cookie
    }

    /// The CSRF token of the live session with this cookie.
    pub fn csrf(&self, cookie: &str, now: UnixTime) -> Option<String> {
        let mut map = self.map.lock();
        let key = digest(cookie);
        match map.get(&key) {
            Some(s) if s.expires > now => Some(s.csrf.clone()),
            Some(_) => {
                map.remove(&key);
                None
            }
            None => None,
        }
    }

    /// Whether `token` is the CSRF token of the live session with this cookie (compared in
    /// constant time).
    pub fn check_csrf(&self, cookie: &str, token: &str, now: UnixTime) -> bool {
        self.csrf(cookie, now)
            .is_some_and(|csrf| bool::from(csrf.as_bytes().ct_eq(token.as_bytes())))
    }

    /// Keeps a new key to show once on the session's next page that asks for it, for at most
    /// [`REVEAL_SECS`] from `now`.
    pub fn set_reveal(&self, cookie: &str, reveal: Reveal, now: UnixTime) {
        if let Some(s) = self.map.lock().get_mut(&digest(cookie)) {
            if s.reveals.len() == MAX_REVEALS {
                s.reveals.remove(0);
            }
            s.reveals.push((reveal, now.plus_secs(REVEAL_SECS)));
        }
    }

    /// Takes the new keys waiting to be shown that are still due at `now`, oldest first: none
    /// is ever shown twice.
    pub fn take_reveals(&self, cookie: &str, now: UnixTime) -> Vec<Reveal> {
        self.map
            .lock()
            .get_mut(&digest(cookie))
            .map(|s| std::mem::take(&mut s.reveals))
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, until)| now < *until)
            .map(|(reveal, _)| reveal)
            .collect()
    }

    /// Ends the session.
    pub fn close(&self, cookie: &str) {
        self.map.lock().remove(&digest(cookie));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: UnixTime = UnixTime::from_secs(1_800_000_000);

    #[test]
    fn sessions_expire_and_reveal_once() {
        let s = Sessions::default();
        let c = s.open(T);
        let csrf = s.csrf(&c, T).unwrap();
        assert!(s.check_csrf(&c, &csrf, T));
        assert!(!s.check_csrf(&c, "nope", T));
        assert!(!s.check_csrf("other", &csrf, T));
        let reveal = || Reveal {
            key: Zeroizing::new("k".into()),
            id: "kid".into(),
            name: "n".into(),
        };
        s.set_reveal(&c, reveal(), T);
        s.set_reveal(&c, reveal(), T);
        assert_eq!(s.take_reveals(&c, T).len(), 2);
        assert!(s.take_reveals(&c, T).is_empty());
        s.set_reveal(&c, reveal(), T);
        assert!(s.take_reveals(&c, T.plus_secs(REVEAL_SECS)).is_empty());
        for _ in 0..MAX_REVEALS + 3 {
            s.set_reveal(&c, reveal(), T);
        }
        assert_eq!(s.take_reveals(&c, T).len(), MAX_REVEALS);
        assert!(s.csrf(&c, T.plus_secs(LIFETIME_SECS)).is_none());
        s.close(&c);
    }

    #[test]
    fn the_number_of_sessions_is_bounded() {
        let s = Sessions::default();
        for i in 0..(MAX_SESSIONS as u64 + 10) {
            s.open(T.plus_secs(i));
        }
        assert_eq!(s.map.lock().len(), MAX_SESSIONS);
    }
}
