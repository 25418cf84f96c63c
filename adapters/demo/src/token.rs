//! The admin token: from the environment, or generated once and kept in a 0600 file; and the
//! rule every secret file follows.
//!
//! The token file is a password to every key, so it must be private to the server's user, and it
//! is created atomically so that no crash can leave it empty or half written. The sync secret
//! file is read with the same check ([`read_private_file`]): with write access to Redis it signs
//! keys of any scope.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use rand::RngCore;
use rustix::process::geteuid;
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
        if token.trim().chars().count() < 16 {
            bail!("the admin token must be at least 16 characters long");
        }
        Ok(Self {
            digest: digest(token.trim().as_bytes()),
            created: None,
        })
    }

    /// Reads the token file, or creates it (mode 0600) with a new random token. Returns the
    /// token and whether it was created now.
    ///
    /// # Errors
    ///
    /// When the file cannot be read or created, holds fewer than 16 characters, or is not
    /// private to this server: owned by another user, or with any permission bit for its group
    /// or others. A token others can read lets them manage every key, so the server refuses to
    /// start rather than use it; the error says how to fix the file.
    pub fn from_file(path: &Path) -> Result<(Self, bool)> {
        loop {
            match std::fs::File::open(path) {
                Ok(file) => {
                    let bytes = read_open_private(path, "admin token", file)?;
                    let text = std::str::from_utf8(&bytes)
                        .with_context(|| format!("cannot read {}", path.display()))?;
                    return Ok((Self::new(text)?, false));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand::rngs::OsRng.fill_bytes(&mut bytes[..]);
            let token = Zeroizing::new(format!("sq_admin_{}", hex::encode(&bytes[..])));
            if write_new_atomically(path, token.as_bytes())? {
                let mut t = Self::new(&token)?;
                t.created = Some(token);
                return Ok((t, true));
            }
            // Another process created the file first: use its token.
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
        // The scheme is parsed by core's one bearer parser, as for API keys.
        let Some(Ok(token)) = authorization.map(sitequest_auth::bearer_token) else {
            return false;
        };
        let presented = digest(token);
        presented.ct_eq(&self.digest).into()
    }
}

/// Reads the secret file at `path` (the `what` file: "sync secret" names it "the sync secret
/// file" in errors) after checking that it is private to this server, as the admin token file
/// is: owned by the effective user, with no permission bit for its group or others.
///
/// # Errors
///
/// When the file cannot be read, or is not private; the error names the file and the command
/// that fixes it (`chmod 600 PATH`, `chown UID PATH`), never its contents.
pub fn read_private_file(path: &Path, what: &str) -> Result<Zeroizing<Vec<u8>>> {
    let file = std::fs::File::open(path)
        .with_context(|| format!("cannot read the {what} file {}", path.display()))?;
    read_open_private(path, what, file)
}

/// Reads an open secret file after checking, on the open file itself (so it cannot be swapped
/// in between), that it is private to this user.
fn read_open_private(
    path: &Path,
    what: &str,
    mut file: std::fs::File,
) -> Result<Zeroizing<Vec<u8>>> {
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", path.display()))?;
    check_private(path, what, meta.uid(), meta.mode(), geteuid().as_raw())?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.read_to_end(&mut bytes)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(bytes)
}

/// Refuses a secret file that another user owns or that its group or others may use at all.
fn check_private(path: &Path, what: &str, owner: u32, mode: u32, euid: u32) -> Result<()> {
    if owner != euid {
        bail!(
            "the {what} file {} is owned by uid {owner}, not by this server's user (uid {euid}): \
             run `chown {euid} {}` or start the server as its owner",
            path.display(),
            path.display()
        );
    }
    if mode & 0o077 != 0 {
        bail!(
            "the {what} file {} has mode {:04o}, so other users may read or change it: \
             run `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    Ok(())
}

/// Writes `contents` to `path` so that `path` never exists with partial contents, even after a
/// crash: into a new 0600 file in the same directory, synced, then linked in its place and the
/// directory synced. Returns `false`, writing nothing, when `path` already exists.
///
/// The final step is `link`, not `rename`: it fails when `path` exists, where `rename` would
/// silently replace a token another process created (and showed) a moment earlier.
fn write_new_atomically(path: &Path, contents: &[u8]) -> Result<bool> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let temp = dir.join(format!(".{name}.{}.tmp", hex::encode(suffix)));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&temp)
        .with_context(|| format!("cannot create {}", temp.display()))?;
    let linked = file
        .write_all(contents)
        .and_then(|()| file.sync_all())
        .and_then(|()| std::fs::hard_link(&temp, path));
    let removed = std::fs::remove_file(&temp);
    match linked {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(e).with_context(|| format!("cannot create {}", path.display())),
    }
    removed.with_context(|| format!("cannot remove {}", temp.display()))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

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

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().mode() & 0o7777
    }

    #[test]
    fn a_created_token_file_is_private_complete_and_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("demo.db.admin-token");
        let (token, created) = AdminToken::from_file(&path).unwrap();
        assert!(created);
        let shown = token.created().unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), shown);
        assert_eq!(mode(&path), 0o600);
        // The temporary file is gone: the directory holds the token file alone.
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [path.file_name().unwrap()]);

        let (again, created) = AdminToken::from_file(&path).unwrap();
        assert!(!created && again.created().is_none());
        assert!(again.check(Some(format!("Bearer {shown}").as_bytes())));
    }

    #[test]
    fn a_token_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t");
        std::fs::write(&path, "0123456789abcdef0123").unwrap();
        for bits in [0o644, 0o640, 0o604, 0o660, 0o602, 0o610] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
            let e = format!("{:#}", AdminToken::from_file(&path).unwrap_err());
            assert_eq!(
                e,
                format!(
                    "the admin token file {p} has mode {bits:04o}, so other users may read or \
                     change it: run `chmod 600 {p}`",
                    p = path.display()
                )
            );
            assert!(!e.contains("0123456789abcdef0123"));
        }
        for bits in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
            let (t, created) = AdminToken::from_file(&path).unwrap();
            assert!(!created);
            assert!(t.check(Some(b"Bearer 0123456789abcdef0123")));
        }
    }

    #[test]
    fn a_token_file_of_another_user_is_refused() {
        let path = Path::new("/srv/demo.db.admin-token");
        assert!(check_private(path, "admin token", 1000, 0o100600, 1000).is_ok());
        assert_eq!(
            check_private(path, "admin token", 0, 0o100600, 1000)
                .unwrap_err()
                .to_string(),
            "the admin token file /srv/demo.db.admin-token is owned by uid 0, not by this \
             server's user (uid 1000): run `chown 1000 /srv/demo.db.admin-token` or start the \
             server as its owner"
        );
        // Ownership is checked on the real file too, where this test may change it (as root).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t");
        std::fs::write(&file, "0123456789abcdef0123").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        if std::os::unix::fs::chown(&file, Some(65534), None).is_ok() {
            let e = AdminToken::from_file(&file).unwrap_err().to_string();
            assert!(e.contains("is owned by uid 65534"), "{e}");
            let e = read_private_file(&file, "sync secret")
                .unwrap_err()
                .to_string();
            assert!(
                e.starts_with(&format!(
                    "the sync secret file {} is owned by uid 65534",
                    file.display()
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn a_secret_file_others_may_read_is_refused_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sync-secret");
        std::fs::write(&path, b"0123456789abcdef0123456789abcdef").unwrap();
        for bits in [0o644, 0o640, 0o604, 0o620, 0o601] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
            let e = format!("{:#}", read_private_file(&path, "sync secret").unwrap_err());
            assert_eq!(
                e,
                format!(
                    "the sync secret file {p} has mode {bits:04o}, so other users may read or \
                     change it: run `chmod 600 {p}`",
                    p = path.display()
                )
            );
        }
        for bits in [0o600, 0o400] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(bits)).unwrap();
            let bytes = read_private_file(&path, "sync secret").unwrap();
            assert_eq!(&bytes[..], b"0123456789abcdef0123456789abcdef");
        }
        let missing = dir.path().join("missing");
        let e = read_private_file(&missing, "sync secret").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("cannot read the sync secret file {}", missing.display())
        );
    }
}
