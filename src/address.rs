//! Client addresses: [`Cidr`] ranges, a key's [`IpAllowlist`], and [`TrustedProxies`], which
//! finds the client's address behind the operator's own proxies.

use core::fmt;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;

use ipnet::IpNet;

/// Most ranges a key's [`IpAllowlist`] may hold.
pub const MAX_ALLOWED_RANGES: usize = 32;

/// Most hops of `X-Forwarded-For` that [`TrustedProxies::client_address`] walks back through.
pub const MAX_FORWARDED_HOPS: usize = 32;

/// Longest text of a range read, and quoted back in an error (the longest valid one, a fully
/// written IPv4-mapped IPv6 range such as `0000:0000:0000:0000:0000:ffff:192.168.100.0/120`, is
/// 49 bytes).
const QUOTE_LEN: usize = 64;

/// An IPv4 or IPv6 address range in CIDR notation, such as `203.0.113.0/24` or `2001:db8::/32`;
/// a bare address is the range of that address alone.
///
/// IPv4-mapped IPv6 addresses (`::ffff:203.0.113.7`, as a dual-stack socket reports IPv4
/// clients) are matched as the IPv4 addresses they are.
///
/// ```
/// use sitequest_auth::Cidr;
/// let office: Cidr = "203.0.113.0/24".parse().unwrap();
/// assert!(office.contains("203.0.113.7".parse().unwrap()));
/// assert!(office.contains("::ffff:203.0.113.7".parse().unwrap()));
/// assert!(!office.contains("198.51.100.1".parse().unwrap()));
/// assert_eq!(
///     "203.0.113.7/24".parse::<Cidr>().unwrap_err().to_string(),
///     "\"203.0.113.7/24\" has bits set past its prefix length: the range is 203.0.113.0/24"
/// );
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr(IpNet);

impl Cidr {
    /// Parses `address/prefix` or a bare address.
    ///
    /// # Errors
    ///
    /// [`CidrParseError::Malformed`] for text that is neither, and [`CidrParseError::HostBits`]
    /// for a range with bits set past its prefix (`10.1.2.3/8`), which is more often a mistake
    /// than a way to write `10.0.0.0/8`.
    pub fn parse(text: &str) -> Result<Self, CidrParseError> {
        let malformed = || CidrParseError::Malformed { text: quote(text) };
        if text.len() > QUOTE_LEN {
            return Err(malformed());
        }
        let net = match text.split_once('/') {
            None => IpNet::from(text.parse::<IpAddr>().map_err(|_| malformed())?),
            Some((addr, prefix)) => {
                // `IpNet`'s parser would accept a sign or leading zeros in the prefix.
                if prefix.is_empty()
                    || prefix.len() > 3
                    || !prefix.bytes().all(|b| b.is_ascii_digit())
                {
                    return Err(malformed());
                }
                let addr: IpAddr = addr.parse().map_err(|_| malformed())?;
                let prefix: u8 = prefix.parse().map_err(|_| malformed())?;
                IpNet::new(addr, prefix).map_err(|_| malformed())?
            }
        };
        let net = canonical_net(net);
        if net.trunc() != net {
            return Err(CidrParseError::HostBits {
                text: quote(text),
                range: Self(net.trunc()),
            });
        }
        Ok(Self(net))
    }

    /// Whether `ip` is in this range.
    #[must_use]
    #[inline]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(&ip.to_canonical())
    }

    /// The first address of the range.
    #[must_use]
    pub fn network(&self) -> IpAddr {
        self.0.network()
    }

    /// The prefix length.
    #[must_use]
    pub fn prefix_len(&self) -> u8 {
        self.0.prefix_len()
    }
}

/// An IPv4-mapped IPv6 range (`::ffff:10.0.0.0/104`) as the IPv4 range it is.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), true) = (v6.addr().to_ipv4_mapped(), v6.prefix_len() >= 96) {
            if let Ok(n) = IpNet::new(IpAddr::V4(v4), v6.prefix_len() - 96) {
                return n;
            }
        }
    }
    net
}

fn quote(text: &str) -> String {
    let mut end = text.len().min(QUOTE_LEN);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

impl FromStr for Cidr {
    type Err = CidrParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Cidr({})", self.0)
    }
}

/// An address range list could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CidrParseError {
    /// Not an address or a range (the text is quoted, cut at 64 bytes).
    #[error(
        "{text:?} is not an IP address or CIDR range (such as 203.0.113.0/24 or 2001:db8::/32)"
    )]
    Malformed {
        /// The text, cut at 64 bytes.
        text: String,
    },
    /// A range with bits set past its prefix length.
    #[error("{text:?} has bits set past its prefix length: the range is {range}")]
    HostBits {
        /// The text, cut at 64 bytes.
        text: String,
        /// The range it would name with those bits cleared.
        range: Cidr,
    },
    /// More ranges than [`MAX_ALLOWED_RANGES`].
    #[error("a key may be limited to at most 32 address ranges, got more")]
    TooMany,
}

/// The addresses a key may be used from: any address when empty, else only addresses in one of
/// at most [`MAX_ALLOWED_RANGES`] ranges.
///
/// A request to a key with ranges is refused when the host did not name the client's address
/// (it fails closed).
///
/// ```
/// use sitequest_auth::IpAllowlist;
/// let list = IpAllowlist::parse_list(["203.0.113.0/24", "2001:db8::/32"]).unwrap();
/// assert!(list.allows(Some("2001:db8::1".parse().unwrap())));
/// assert!(!list.allows(Some("198.51.100.1".parse().unwrap())));
/// assert!(!list.allows(None));
/// assert!(IpAllowlist::default().allows(None));
/// assert_eq!(list.to_string(), "203.0.113.0/24, 2001:db8::/32");
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct IpAllowlist(Box<[Cidr]>);

impl IpAllowlist {
    /// A list of `ranges`, sorted, without duplicates.
    ///
    /// # Errors
    ///
    /// [`CidrParseError::TooMany`] past [`MAX_ALLOWED_RANGES`] ranges (counted before duplicates
    /// are dropped; nothing past the limit is read).
    pub fn new(ranges: impl IntoIterator<Item = Cidr>) -> Result<Self, CidrParseError> {
        let mut list = Vec::new();
        for range in ranges {
            if list.len() == MAX_ALLOWED_RANGES {
                return Err(CidrParseError::TooMany);
            }
            list.push(range);
        }
        list.sort_unstable();
        list.dedup();
        Ok(Self(list.into_boxed_slice()))
    }

    /// Parses each text with [`Cidr::parse`].
    ///
    /// # Errors
    ///
    /// The first text that is not a range, or [`CidrParseError::TooMany`].
    pub fn parse_list<'a>(
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, CidrParseError> {
        let mut list = Vec::new();
        for text in texts {
            if list.len() == MAX_ALLOWED_RANGES {
                return Err(CidrParseError::TooMany);
            }
            list.push(Cidr::parse(text)?);
        }
        Self::new(list)
    }

    /// Parses ranges separated by commas (and optional spaces), as on a command line; an empty
    /// text is the empty list.
    ///
    /// # Errors
    ///
    /// As [`IpAllowlist::parse_list`].
    pub fn parse(text: &str) -> Result<Self, CidrParseError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        Self::parse_list(text.split(',').map(str::trim))
    }

    /// The ranges joined by commas without spaces (`10.0.0.0/8,2001:db8::/32`), empty for the
    /// empty list: how a data file can store the list in one text column, and the order in
    /// which [`KeyRecord::merged_with`](crate::KeyRecord::merged_with) breaks a tie.
    #[must_use]
    pub fn joined(&self) -> String {
        let mut text = String::new();
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&r.to_string());
        }
        text
    }

    /// Whether the list is empty (the key may be used from anywhere).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges, sorted.
    #[must_use]
    pub fn ranges(&self) -> &[Cidr] {
        &self.0
    }

    /// Whether a request from `client` may use the key: always for an empty list; else only
    /// from a known address in one of the ranges.
    #[must_use]
    #[inline]
    pub fn allows(&self, client: Option<IpAddr>) -> bool {
        if self.0.is_empty() {
            return true;
        }
        client.is_some_and(|ip| self.0.iter().any(|r| r.contains(ip)))
    }
}

impl fmt::Display for IpAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt::Display::fmt(r, f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for IpAllowlist {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

/// The operator's own proxies, whose `X-Forwarded-For` entries are believed.
///
/// Without trusted proxies the client's address is the connection's peer and `X-Forwarded-For`
/// is ignored, since any client can send it.
///
/// ```
/// use sitequest_auth::TrustedProxies;
/// let proxies = TrustedProxies::parse_list(["10.0.0.0/8"]).unwrap();
/// let peer = "10.0.0.2".parse().unwrap();
/// // The proxy appended the address it saw; what the client wrote before it is not believed.
/// let xff: [&[u8]; 1] = [b"192.0.2.66, 198.51.100.7, 10.0.0.9"];
/// assert_eq!(proxies.client_address(peer, xff), "198.51.100.7".parse::<std::net::IpAddr>().unwrap());
/// // From a peer that is not a trusted proxy, the header is ignored.
/// let direct = "198.51.100.20".parse().unwrap();
/// assert_eq!(proxies.client_address(direct, xff), direct);
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Box<[Cidr]>);

impl TrustedProxies {
    /// Trusts proxies in `ranges`.
    #[must_use]
    pub fn new(ranges: impl IntoIterator<Item = Cidr>) -> Self {
        let mut list: Vec<Cidr> = ranges.into_iter().collect();
        list.sort_unstable();
        list.dedup();
        Self(list.into_boxed_slice())
    }

    /// Parses each text with [`Cidr::parse`].
    ///
    /// # Errors
    ///
    /// The first text that is not a range.
    pub fn parse_list<'a>(
        texts: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, CidrParseError> {
        let ranges = texts
            .into_iter()
            .map(Cidr::parse)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::new(ranges))
    }

    /// Whether no proxy is trusted.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `ip` is a trusted proxy.
    #[must_use]
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|r| r.contains(ip))
    }

    /// The client's address: the connection's `peer`, unless it is a trusted proxy; then the
    /// `X-Forwarded-For` field values (in the order received) are read from the right, and the
    /// first address that is not a trusted proxy is the client's. Entries are addresses, with
    /// or without a port (`203.0.113.7`, `203.0.113.7:4711`, `[2001:db8::7]:4711`). The walk
    /// stops at an entry that is not an address, and after [`MAX_FORWARDED_HOPS`] entries, at
    /// the last address it believed. Allocates nothing.
    #[must_use]
    pub fn client_address<'a, I>(&self, peer: IpAddr, forwarded_for: I) -> IpAddr
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: DoubleEndedIterator,
    {
        let mut client = peer.to_canonical();
        if !self.contains(client) {
            return client;
        }
        let mut hops = 0;
        for field in forwarded_for.into_iter().rev() {
            for entry in field.rsplit(|&b| b == b',') {
                hops += 1;
                let Some(ip) = (hops <= MAX_FORWARDED_HOPS)
                    .then(|| parse_hop(entry))
                    .flatten()
                else {
                    return client;
                };
                client = ip;
                if !self.contains(client) {
                    return client;
                }
            }
        }
        client
    }
}

fn parse_hop(entry: &[u8]) -> Option<IpAddr> {
    let text = core::str::from_utf8(entry.trim_ascii()).ok()?;
    if text.len() > 64 {
        return None;
    }
    let ip = text
        .parse::<IpAddr>()
        .or_else(|_| text.parse::<SocketAddr>().map(|a| a.ip()))
        .ok()?;
    Some(ip.to_canonical())
}

impl fmt::Debug for TrustedProxies {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.0.iter()).finish()
    }
}

#[cfg(feature = "serde")]
mod serde_impls {
    use super::{Cidr, IpAllowlist, MAX_ALLOWED_RANGES};
    use core::fmt;
    use serde::de::{Error, SeqAccess, Visitor};
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    impl Serialize for Cidr {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_str(self)
        }
    }

    impl<'de> Deserialize<'de> for Cidr {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
            Cidr::parse(&text).map_err(D::Error::custom)
        }
    }

    /// A list of ranges as strings, `["203.0.113.0/24"]`.
    impl Serialize for IpAllowlist {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.ranges())
        }
    }

    impl<'de> Deserialize<'de> for IpAllowlist {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct ListVisitor;
            impl<'de> Visitor<'de> for ListVisitor {
                type Value = IpAllowlist;
                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a list of IP addresses or CIDR ranges")
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<IpAllowlist, A::Error> {
                    let mut list = Vec::new();
                    while let Some(range) = seq.next_element::<Cidr>()? {
                        if list.len() == MAX_ALLOWED_RANGES {
                            return Err(A::Error::custom(super::CidrParseError::TooMany));
                        }
                        list.push(range);
                    }
                    IpAllowlist::new(list).map_err(A::Error::custom)
                }
            }
            d.deserialize_seq(ListVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn parses_ranges_and_bare_addresses() {
        assert_eq!(Cidr::parse("10.0.0.0/8").unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(Cidr::parse("10.1.2.3").unwrap().to_string(), "10.1.2.3/32");
        assert_eq!(
            Cidr::parse("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert_eq!(Cidr::parse("::1").unwrap().to_string(), "::1/128");
        assert_eq!(Cidr::parse("0.0.0.0/0").unwrap().to_string(), "0.0.0.0/0");
        assert_eq!(
            Cidr::parse("0000:0000:0000:0000:0000:ffff:192.168.100.0/120")
                .unwrap()
                .to_string(),
            "192.168.100.0/24"
        );
        assert_eq!(
            Cidr::parse("::ffff:10.0.0.0/104").unwrap().to_string(),
            "10.0.0.0/8"
        );
    }

    #[test]
    fn refuses_malformed_ranges_by_name() {
        for bad in [
            "",
            "/",
            "10.0.0.0/",
            "10.0.0.0/33",
            "10.0.0.0/+8",
            "10.0.0.0/08x",
            "10.0.0/8",
            "2001:db8::/129",
            "10.0.0.0/8/8",
            " 10.0.0.0/8",
            "host.example",
            "10.0.0.0/0008",
        ] {
            let err = Cidr::parse(bad).unwrap_err();
            assert!(
                matches!(err, CidrParseError::Malformed { .. }),
                "{bad:?}: {err}"
            );
            assert!(
                err.to_string().starts_with(&format!("{bad:?} is not")),
                "{err}"
            );
        }
        let long = "1".repeat(1000);
        let err = Cidr::parse(&long).unwrap_err().to_string();
        assert!(err.len() < 200, "{err}");
    }

    #[test]
    fn refuses_host_bits() {
        assert_eq!(
            Cidr::parse("10.1.2.3/8").unwrap_err(),
            CidrParseError::HostBits {
                text: "10.1.2.3/8".into(),
                range: Cidr::parse("10.0.0.0/8").unwrap()
            }
        );
    }

    #[test]
    fn matches_mapped_addresses_as_ipv4() {
        let r = Cidr::parse("203.0.113.0/24").unwrap();
        assert!(r.contains(ip("::ffff:203.0.113.9")));
        assert!(!r.contains(ip("2001:db8::1")));
        let v6 = Cidr::parse("2001:db8::/32").unwrap();
        assert!(!v6.contains(ip("203.0.113.9")));
    }

    #[test]
    fn allowlist_limits_and_sorts() {
        let texts: Vec<String> = (0..33).map(|i| format!("10.0.{i}.0/24")).collect();
        assert_eq!(
            IpAllowlist::parse_list(texts.iter().map(String::as_str)),
            Err(CidrParseError::TooMany)
        );
        let ok = IpAllowlist::parse_list(texts[..32].iter().map(String::as_str)).unwrap();
        assert_eq!(ok.ranges().len(), 32);
        let list = IpAllowlist::parse("10.0.1.0/24, 10.0.0.0/24,10.0.1.0/24").unwrap();
        assert_eq!(list.to_string(), "10.0.0.0/24, 10.0.1.0/24");
        assert!(IpAllowlist::parse(" ").unwrap().is_empty());
        assert!(matches!(
            IpAllowlist::parse("10.0.0.0/24,,10.0.1.0/24"),
            Err(CidrParseError::Malformed { .. })
        ));
    }

    #[test]
    fn forwarded_for_is_read_only_behind_trusted_proxies() {
        let none = TrustedProxies::default();
        let xff: [&[u8]; 1] = [b"198.51.100.7"];
        assert_eq!(none.client_address(ip("10.0.0.2"), xff), ip("10.0.0.2"));

        let proxies = TrustedProxies::parse_list(["10.0.0.0/8", "2001:db8::/32"]).unwrap();
        // Two proxies, and a forged entry in front.
        let fields: [&[u8]; 2] = [b"6.6.6.6, 198.51.100.7", b"10.0.0.5,2001:db8::1"];
        assert_eq!(
            proxies.client_address(ip("10.0.0.2"), fields),
            ip("198.51.100.7")
        );
        // No header: the proxy itself.
        assert_eq!(
            proxies.client_address(ip("10.0.0.2"), [] as [&[u8]; 0]),
            ip("10.0.0.2")
        );
        // Ports and brackets.
        let ported: [&[u8]; 1] = [b"[2001:db9::7]:4711, 198.51.100.7:80"];
        assert_eq!(
            proxies.client_address(ip("10.0.0.2"), ported),
            ip("198.51.100.7")
        );
        // Garbage after a trusted hop stops at the last believed address.
        let garbage: [&[u8]; 1] = [b"198.51.100.7, nonsense, 10.0.0.3"];
        assert_eq!(
            proxies.client_address(ip("10.0.0.2"), garbage),
            ip("10.0.0.3")
        );
        // A dual-stack socket's mapped peer.
        let xff: [&[u8]; 1] = [b"198.51.100.7"];
        assert_eq!(
            proxies.client_address(ip("::ffff:10.0.0.2"), xff),
            ip("198.51.100.7")
        );
        // Every hop trusted: the leftmost.
        let all: [&[u8]; 1] = [b"10.9.9.9, 10.0.0.3"];
        assert_eq!(proxies.client_address(ip("10.0.0.2"), all), ip("10.9.9.9"));
        // A long chain of trusted hops stops after MAX_FORWARDED_HOPS.
        let chain = vec!["10.1.1.1"; 100].join(",");
        let chain = [chain.as_bytes()];
        assert_eq!(
            proxies.client_address(ip("10.0.0.2"), chain),
            ip("10.1.1.1")
        );
    }
}
