//! [`KeyName`]: a key's name as the store keeps it and hands it out.

use core::fmt;
use core::ops::Deref;

use smol_str::SmolStr;

/// A key's name, as the store keeps it in a key's entry and [`KeyStore::name`](crate::KeyStore::name)
/// hands it out (the adapters give it to handlers with the granted key). Dereferences to `str`.
///
/// A name of up to [`KeyName::INLINE_BYTES`] bytes is held inline, so handing it out copies 24
/// bytes and allocates nothing. A longer name is shared by reference count with the store.
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct KeyName(SmolStr);

impl KeyName {
    /// Names up to this many bytes are held inline.
    pub const INLINE_BYTES: usize = 23;

    /// The name `name`.
    #[must_use]
    pub fn new(name: &str) -> Self {
        Self(SmolStr::new(name))
    }

    /// The name as a string slice.
    #[must_use]
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl Deref for KeyName {
    type Target = str;

    fn deref(&self) -> &str {
        self.0.as_str()
    }
}

impl AsRef<str> for KeyName {
    fn as_ref(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Display for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

impl fmt::Debug for KeyName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0.as_str(), f)
    }
}

impl From<&str> for KeyName {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl From<String> for KeyName {
    fn from(name: String) -> Self {
        Self(SmolStr::from(name))
    }
}

impl From<KeyName> for String {
    fn from(name: KeyName) -> Self {
        name.0.to_string()
    }
}

impl PartialEq<str> for KeyName {
    fn eq(&self, other: &str) -> bool {
        self.0.as_str() == other
    }
}

impl PartialEq<&str> for KeyName {
    fn eq(&self, other: &&str) -> bool {
        self.0.as_str() == *other
    }
}

impl PartialEq<KeyName> for str {
    fn eq(&self, other: &KeyName) -> bool {
        self == other.0.as_str()
    }
}

impl PartialEq<KeyName> for &str {
    fn eq(&self, other: &KeyName) -> bool {
        *self == other.0.as_str()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_long_names_read_back() {
        let short = KeyName::new("deploy");
        let long = KeyName::new(&"🔑".repeat(128));
        assert_eq!(short, "deploy");
        assert_eq!(&*long, "🔑".repeat(128));
        assert_eq!(format!("{short} {short:?}"), "deploy \"deploy\"");
        assert_eq!(String::from(long.clone()), "🔑".repeat(128));
        assert_eq!(std::mem::size_of::<KeyName>(), 24);
    }
}
