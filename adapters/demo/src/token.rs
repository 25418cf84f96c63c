//! The admin token: from the environment, or generated once and kept in a 0600 file.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Checks presented admin tokens in constant time. Keeps only the token's SHA-256.
pub struct AdminToken {
    digest: [u8; 32],
    /// The plaintext, only when this start generated it, so it can be shown once.
    created: Option<Zeroizing<String>>,
}

impl std::fmt::Debug for AdminToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminToken(<redacted>)")
    }
}

fn digest(token: &[u8]) -> [u8; 32] {
    Sha256::digest(token).into()
}

impl AdminToken {
    /// Uses the given token (at least 16 characters).
    pub fn new(token: &str) -> Result<Self> {
        if token.trim().len() < 16 {
            bail!("the admin token must be at least 16 characters long");
        }
        Ok(Self {
            digest: digest(token.trim().as_bytes()),
            created: None,
        })
    }

    /// Reads the token file, or creates it (mode 0600) with a new random token. Returns the
    /// token and whether it was created now.
    pub fn from_file(path: &Path) -> Result<(Self, bool)> {
        match std::fs::read_to_string(path) {
            Ok(text) => Ok((Self::new(&text)?, false)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = Zeroizing::new([0u8; 32]);
                rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
                let token = Zeroizing::new(format!("sq_admin_{}", hex::encode(&bytes[..])));
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .with_context(|| format!("cannot create {}", path.display()))?;
                file.write_all(token.as_bytes())?;
                file.sync_all()?;
                let mut t = Self::new(&token)?;
                t.created = Some(token);
                Ok((t, true))
            }
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    /// The generated token, if this start created it.
    #[must_use]
    pub fn created(&self) -> Option<&str> {
        self.created.as_deref().map(String::as_str)
    }

    /// Whether a raw `Authorization` value is `Bearer <the admin token>`, compared in constant
    /// time (over SHA-256 digests, so the token's length does not leak either).
    #[must_use]
    pub fn check(&self, authorization: Option<&[u8]>) -> bool {
        let Some(value) = authorization else {
            return false;
        };
        let value = value.trim_ascii();
        if value.len() < 7 || !value[..7].eq_ignore_ascii_case(b"bearer ") {
            return false;
        }
        let presented = digest(value[7..].trim_ascii());
        presented.ct_eq(&self.digest).into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_check() {
        let t = AdminToken::new("0123456789abcdef0123").unwrap();
        assert!(t.check(Some(b"Bearer 0123456789abcdef0123")));
        assert!(t.check(Some(b"bearer   0123456789abcdef0123 ")));
        assert!(!t.check(Some(b"Bearer 0123456789abcdef012")));
        assert!(!t.check(Some(b"0123456789abcdef0123")));
        assert!(!t.check(None));
        assert!(AdminToken::new("short").is_err());
    }
}
