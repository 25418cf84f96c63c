//! Permission scopes: the six spec scopes as a bit set, the Full / Read only / Custom presets, and
//! parsing and printing of the spec's scope strings.

use core::fmt;

bitflags::bitflags! {
    /// A set of permission scopes. Each key holds one or more; each route requires some.
    ///
    /// Print and parse with the spec's names: `Scopes::VPS_READ.to_string() == "vps:read"`, and a
    /// set prints as its names separated by single spaces, in the order of the spec's table.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    pub struct Scopes: u8 {
        /// `vps:read`: list servers, view status and metrics.
        const VPS_READ = 1 << 0;
        /// `vps:write`: start, stop, reboot, reinstall, mount ISO, SSH execution.
        const VPS_WRITE = 1 << 1;
        /// `vps:manage`: create, upgrade, and delete servers.
        const VPS_MANAGE = 1 << 2;
        /// `domains:read`: list domains and view DNS records.
        const DOMAINS_READ = 1 << 3;
        /// `domains:write`: edit DNS records and domain settings.
        const DOMAINS_WRITE = 1 << 4;
        /// `domains:manage`: register, transfer, and delete domains.
        const DOMAINS_MANAGE = 1 << 5;
    }
}

/// Each single scope with its spec name, in the order of the spec's table.
const NAMES: [(Scopes, &str); 6] = [
    (Scopes::VPS_READ, "vps:read"),
    (Scopes::VPS_WRITE, "vps:write"),
    (Scopes::VPS_MANAGE, "vps:manage"),
    (Scopes::DOMAINS_READ, "domains:read"),
    (Scopes::DOMAINS_WRITE, "domains:write"),
    (Scopes::DOMAINS_MANAGE, "domains:manage"),
];

/// Longest part of a rejected scope name kept in an error message.
const MAX_ECHO: usize = 64;

impl Scopes {
    /// Full access: all six scopes.
    pub const FULL: Self = Self::all();
    /// Read only: `vps:read` and `domains:read`.
    pub const READ_ONLY: Self = Self::VPS_READ.union(Self::DOMAINS_READ);

    /// Looks up one scope by its exact spec name (`"vps:read"`, ...).
    ///
    /// # Errors
    ///
    /// [`ScopeParseError`] for an empty or unknown name.
    pub fn parse_name(name: &str) -> Result<Self, ScopeParseError> {
        if name.is_empty() {
            return Err(ScopeParseError::EmptyName);
        }
        NAMES
            .iter()
            .find(|(_, n)| *n == name)
            .map(|(s, _)| *s)
            .ok_or_else(|| ScopeParseError::unknown(name))
    }

    /// Parses one scope name or a list separated by commas and/or whitespace
    /// (`"vps:read,domains:read"`, `"vps:read domains:read"`, `"vps:read, domains:read"`).
    ///
    /// The result is never empty.
    ///
    /// # Errors
    ///
    /// [`ScopeParseError`] for an empty list, an empty item (as in `"vps:read,,vps:write"`), or
    /// an unknown name, which the error quotes (cut to 64 bytes).
    pub fn parse_list(text: &str) -> Result<Self, ScopeParseError> {
        if text.trim().is_empty() {
            return Err(ScopeParseError::EmptyList);
        }
        let mut scopes = Self::empty();
        for item in text.split(',') {
            let mut names = item.split_ascii_whitespace().peekable();
            if names.peek().is_none() {
                return Err(ScopeParseError::EmptyName);
            }
            for name in names {
                scopes |= Self::parse_name(name)?;
            }
        }
        Ok(scopes)
    }

    /// The spec names of the scopes in this set, in the order of the spec's table.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        NAMES
            .iter()
            .filter(move |(s, _)| self.contains(*s))
            .map(|(_, n)| *n)
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, name) in self.names().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            f.write_str(name)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

impl core::str::FromStr for Scopes {
    type Err = ScopeParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse_list(s)
    }
}

/// A scope string was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScopeParseError {
    /// The text names no scope at all.
    #[error("scope list is empty")]
    EmptyList,
    /// An item of the list is empty, as between two commas.
    #[error("scope list has an empty item")]
    EmptyName,
    /// A name is not one of the six spec scopes.
    #[error("unknown scope {name:?}")]
    Unknown {
        /// The rejected name, cut to at most 64 bytes.
        name: String,
    },
}

impl ScopeParseError {
    fn unknown(name: &str) -> Self {
        let mut end = name.len().min(MAX_ECHO);
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        Self::Unknown {
            name: name[..end].to_owned(),
        }
    }
}

/// The scope choices offered when a key is created: Full access, Read only, or Custom.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Preset {
    /// All scopes ([`Scopes::FULL`]).
    Full,
    /// `vps:read` and `domains:read` ([`Scopes::READ_ONLY`]).
    ReadOnly,
    /// Any non-empty set of individually picked scopes.
    Custom(CustomScopes),
}

impl Preset {
    /// A Custom preset with the given scopes.
    ///
    /// # Errors
    ///
    /// [`EmptyScopes`] when `scopes` is empty: every key holds at least one scope.
    pub fn custom(scopes: Scopes) -> Result<Self, EmptyScopes> {
        CustomScopes::new(scopes).map(Self::Custom)
    }

    /// The scopes this preset grants.
    #[must_use]
    pub const fn scopes(self) -> Scopes {
        match self {
            Self::Full => Scopes::FULL,
            Self::ReadOnly => Scopes::READ_ONLY,
            Self::Custom(c) => c.0,
        }
    }

    /// Parses a preset name: `full` or `read_only` (also `read-only` and `readonly`).
    /// A custom set is built with [`Preset::custom`].
    ///
    /// # Errors
    ///
    /// [`UnknownPreset`] for any other text.
    pub fn from_name(name: &str) -> Result<Self, UnknownPreset> {
        match name {
            "full" => Ok(Self::Full),
            "read_only" | "read-only" | "readonly" => Ok(Self::ReadOnly),
            _ => Err(UnknownPreset),
        }
    }
}

impl From<Preset> for Scopes {
    fn from(p: Preset) -> Self {
        p.scopes()
    }
}

/// A non-empty scope set, the content of [`Preset::Custom`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CustomScopes(Scopes);

impl CustomScopes {
    /// Wraps a set after checking it is not empty.
    ///
    /// # Errors
    ///
    /// [`EmptyScopes`] when `scopes` is empty.
    pub fn new(scopes: Scopes) -> Result<Self, EmptyScopes> {
        if scopes.is_empty() {
            Err(EmptyScopes)
        } else {
            Ok(Self(scopes))
        }
    }

    /// The scopes in the set.
    #[must_use]
    pub const fn scopes(self) -> Scopes {
        self.0
    }
}

/// A key must hold at least one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a key must hold at least one scope")]
pub struct EmptyScopes;

/// The preset name is not `full` or `read_only`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown preset, expected \"full\" or \"read_only\"")]
pub struct UnknownPreset;

#[cfg(feature = "serde")]
mod serde_impls {
    use super::Scopes;
    use serde::de::{SeqAccess, Visitor};
    use serde::ser::SerializeSeq;
    use serde::{Deserializer, Serialize, Serializer};

    /// Serialized as a list of spec names: `["vps:read", "domains:read"]`.
    impl Serialize for Scopes {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut seq = s.serialize_seq(Some(self.bits().count_ones() as usize))?;
            for name in self.names() {
                seq.serialize_element(name)?;
            }
            seq.end()
        }
    }

    /// Deserialized from a list of spec names; unknown names are an error and so is an empty
    /// list. Duplicates are allowed. At most 64 items are read.
    impl<'de> serde::Deserialize<'de> for Scopes {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct ListVisitor;
            impl<'de> Visitor<'de> for ListVisitor {
                type Value = Scopes;
                fn expecting(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                    f.write_str("a non-empty list of scope names such as \"vps:read\"")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Scopes, A::Error> {
                    let mut scopes = Scopes::empty();
                    let mut count = 0usize;
                    while let Some(name) = seq.next_element::<std::borrow::Cow<'de, str>>()? {
                        count += 1;
                        if count > 64 {
                            return Err(serde::de::Error::custom("too many scopes in the list"));
                        }
                        scopes |= Scopes::parse_name(&name).map_err(serde::de::Error::custom)?;
                    }
                    if scopes.is_empty() {
                        return Err(serde::de::Error::custom("scopes must not be empty"));
                    }
                    Ok(scopes)
                }
            }
            d.deserialize_seq(ListVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_names_round_trip() {
        for (scope, name) in NAMES {
            assert_eq!(scope.to_string(), name);
            assert_eq!(Scopes::parse_name(name).unwrap(), scope);
        }
    }

    #[test]
    fn presets_match_the_spec() {
        assert_eq!(
            Preset::Full.scopes().to_string(),
            "vps:read vps:write vps:manage domains:read domains:write domains:manage"
        );
        assert_eq!(
            Preset::ReadOnly.scopes().to_string(),
            "vps:read domains:read"
        );
        assert_eq!(
            Preset::custom(Scopes::VPS_WRITE).unwrap().scopes(),
            Scopes::VPS_WRITE
        );
        assert_eq!(Preset::custom(Scopes::empty()), Err(EmptyScopes));
        assert_eq!(Preset::from_name("full"), Ok(Preset::Full));
        assert_eq!(Preset::from_name("read_only"), Ok(Preset::ReadOnly));
        assert_eq!(Preset::from_name("all"), Err(UnknownPreset));
    }

    #[test]
    fn list_separators() {
        let both = Scopes::VPS_READ | Scopes::DOMAINS_WRITE;
        for text in [
            "vps:read,domains:write",
            "vps:read domains:write",
            "vps:read, domains:write",
            " vps:read\tdomains:write ",
            "domains:write,vps:read,vps:read",
        ] {
            assert_eq!(Scopes::parse_list(text).unwrap(), both, "{text:?}");
        }
    }

    #[test]
    fn list_errors_name_the_bad_input() {
        assert_eq!(Scopes::parse_list(""), Err(ScopeParseError::EmptyList));
        assert_eq!(Scopes::parse_list("  "), Err(ScopeParseError::EmptyList));
        assert_eq!(
            Scopes::parse_list("vps:read,,vps:write"),
            Err(ScopeParseError::EmptyName)
        );
        assert_eq!(
            Scopes::parse_list("vps:read,"),
            Err(ScopeParseError::EmptyName)
        );
        let err = Scopes::parse_list("vps:read,vps:admin").unwrap_err();
        assert_eq!(err.to_string(), "unknown scope \"vps:admin\"");
        assert_eq!(
            Scopes::parse_list("VPS:READ").unwrap_err().to_string(),
            "unknown scope \"VPS:READ\""
        );
        let long = "é".repeat(100);
        match Scopes::parse_list(&long).unwrap_err() {
            ScopeParseError::Unknown { name } => assert!(name.len() <= 64),
            other => panic!("unexpected {other:?}"),
        }
    }
}
