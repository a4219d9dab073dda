//! Which client a request comes from, for per-IP rate limits and allowlists.
//!
//! The client is the socket peer, unless the peer is one of your **trusted
//! proxies** ([`Networks`]). Then the forwarding header those proxies write
//! ([`ProxyHeader`]) is read from the right, the end the proxies append to:
//! trusted hops are skipped and the first hop that is not trusted is the
//! client. Everything to its left was written by the client itself (or by
//! proxies it chose), so it is never looked at:
//!
//! ```text
//! X-Forwarded-For: 1.1.1.1, 203.0.113.7, 10.0.0.2      peer 10.0.0.3
//!                  ^ sent   ^ client     ^ trusted      ^ trusted
//!                    by the client
//! ```
//!
//! A hop that cannot be read (garbage, `unknown`, an obfuscated
//! identifier, non-ASCII bytes, an empty entry, or past the limits of 64
//! hops and 8 KiB) stops the walk, and the client is the nearest address to
//! its right: the last trusted hop, or the peer. It is never a value taken
//! from further left, so a client cannot choose the address it is counted
//! under by sending a malformed header. At worst it shares the bucket of
//! the proxy in front of it.
//!
//! IPv4-mapped IPv6 addresses (`::ffff:192.0.2.1`, as a dual-stack socket
//! reports IPv4 peers) are treated as the IPv4 address everywhere.
//!
//! ```
//! use webhook_guard::{Networks, ProxyHeader};
//!
//! // The load balancers' subnets, e.g. from an environment variable.
//! let trusted: Networks = "10.0.0.0/8, 2001:db8::/32, 192.0.2.10".parse()?;
//! assert_eq!(trusted.len(), 3);
//! assert!(trusted.contains("10.1.2.3".parse()?));
//! assert!(trusted.contains("::ffff:10.1.2.3".parse()?));
//! assert!(!trusted.contains("203.0.113.7".parse()?));
//!
//! // They append the peer they saw to `X-Forwarded-For`.
//! let header = ProxyHeader::default();
//! assert_eq!(header, ProxyHeader::XForwardedFor);
//!
//! // No trusted proxies: the socket peer is the client, headers are ignored.
//! assert!(Networks::none().is_empty());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::response::{IntoResponse, Response};
use http::header::{ValueIter, FORWARDED};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use ipnet::{IpNet, Ipv4Net};

use crate::ConfigError;

/// At most this many hops are looked at; the next one counts as unparsable.
const MAX_HOPS: usize = 64;

/// At most this many bytes of header values are looked at, counted from the
/// right; a hop that reaches past them counts as unparsable.
const MAX_HEADER_BYTES: usize = 8 * 1024;

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");

/// Optional whitespace around list entries and parameters.
const OWS: [char; 2] = [' ', '\t'];

/// A list of IP networks (CIDRs), such as your trusted proxies or an
/// allowlist. Cheap to clone.
///
/// Parse it from a comma-separated list with [`Networks::parse`] (or
/// [`str::parse`]); [`Display`](fmt::Display) writes it back in the same
/// form. Networks are not secret, so they are shown in full.
#[derive(Clone, PartialEq, Eq)]
pub struct Networks {
    nets: Arc<[IpNet]>,
}

impl Networks {
    /// The empty list: contains no address.
    pub fn none() -> Self {
        Self {
            nets: Arc::from(Vec::new()),
        }
    }

    /// Parses a comma-separated list of networks.
    ///
    /// Each entry is trimmed, and is either a CIDR (`10.0.0.0/8`,
    /// `2001:db8::/32`) or a bare address, which stands for that one host
    /// (`/32` or `/128`). Empty entries are skipped, so an empty string (or
    /// one of only whitespace and commas) is the empty list.
    ///
    /// - Host bits under the prefix are cleared: `10.0.0.1/8` is accepted as
    ///   `10.0.0.0/8`, the way Docker and cloud consoles often write
    ///   subnets. [`Display`](fmt::Display) shows the cleared form, so check
    ///   it at start-up if you meant a single host.
    /// - An IPv4-mapped IPv6 network (`::ffff:10.0.0.0/104`, or a bare
    ///   `::ffff:10.0.0.1`) is stored as the IPv4 network it maps.
    /// - Other IPv6 networks never contain an IPv4 address, even when they
    ///   span `::ffff:0:0/96` (`::/0` means every IPv6 address, not every
    ///   address: write `0.0.0.0/0, ::/0` for that).
    ///
    /// ```
    /// use webhook_guard::{ConfigError, Networks};
    ///
    /// let nets = Networks::parse(" 10.0.0.0/8 , 2001:db8::/32, 192.0.2.1 ,")?;
    /// assert_eq!(nets.to_string(), "10.0.0.0/8, 2001:db8::/32, 192.0.2.1/32");
    /// assert!(nets.contains("2001:db8::1".parse()?));
    /// assert!(!nets.contains("192.0.2.2".parse()?));
    ///
    /// assert!(Networks::parse("")?.is_empty());
    /// assert_eq!(
    ///     Networks::parse("10.0.0.0/8, 10.0.0.0/33"),
    ///     Err(ConfigError::InvalidNetwork { value: "10.0.0.0/33".into() })
    /// );
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    ///
    /// # Errors
    ///
    /// [`ConfigError::InvalidNetwork`] naming the first entry that is not an
    /// address or a CIDR network (the entry as written, trimmed).
    pub fn parse(list: &str) -> Result<Self, ConfigError> {
        let mut nets = Vec::new();
        for entry in list.split(',').map(|e| e.trim()).filter(|e| !e.is_empty()) {
            let net = match entry.parse::<IpNet>() {
                Ok(net) => net.trunc(),
                Err(_) => match entry.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(ConfigError::InvalidNetwork {
                            value: entry.to_string(),
                        })
                    }
                },
            };
            nets.push(canonical_net(net));
        }
        Ok(Self { nets: nets.into() })
    }

    /// Whether `ip` is in one of the networks. An IPv4-mapped IPv6 address
    /// is looked up as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|net| net.contains(&ip))
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// How many networks the list holds.
    pub fn len(&self) -> usize {
        self.nets.len()
    }
}

/// An IPv4-mapped IPv6 network as the IPv4 network it maps; others as they are.
fn canonical_net(net: IpNet) -> IpNet {
    if let IpNet::V6(v6) = net {
        if let (Some(v4), Some(len)) = (v6.network().to_ipv4_mapped(), v6.prefix_len().checked_sub(96)) {
            if let Ok(v4) = Ipv4Net::new(v4, len) {
                return IpNet::V4(v4);
            }
        }
    }
    net
}

impl Default for Networks {
    /// The empty list, same as [`Networks::none`].
    fn default() -> Self {
        Self::none()
    }
}

impl FromStr for Networks {
    type Err = ConfigError;

    /// Same as [`Networks::parse`].
    fn from_str(list: &str) -> Result<Self, Self::Err> {
        Self::parse(list)
    }
}

impl<'a> TryFrom<&'a str> for Networks {
    type Error = ConfigError;

    /// Same as [`Networks::parse`].
    fn try_from(list: &'a str) -> Result<Self, Self::Error> {
        Self::parse(list)
    }
}

impl fmt::Display for Networks {
    /// The networks in CIDR form, separated by `", "`; parses back to the
    /// same list.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.nets.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            fmt::Display::fmt(net, f)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Networks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Networks").field(&format_args!("{self}")).finish()
    }
}

/// Which forwarding header your trusted proxies write.
///
/// Whatever the choice, the header is read only when the socket peer is a
/// trusted proxy, and only from the right (see the [module](self) docs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProxyHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2`. Every header line is read,
    /// in order, each split on commas. Entries may be plain IPv4 or IPv6
    /// addresses, `[v6]`, `[v6]:port` or `v4:port`.
    #[default]
    XForwardedFor,
    /// RFC 7239 `Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::17]:4711"`.
    /// Every header line is read, in order, its elements split on commas,
    /// and the `for=` parameter of each element is the hop (the name in any
    /// case, the value quoted or not, with or without a port). `unknown`,
    /// obfuscated identifiers (`_hidden`) and elements without `for=` are
    /// unparsable hops.
    ///
    /// Values with a comma or a semicolon inside quotes are not supported
    /// (no IP address needs one): such an element is read as unparsable
    /// hops. Elements are split from the right, so a malformed prefix sent
    /// by a client (an unterminated quote) cannot swallow the elements
    /// your proxies appended.
    Forwarded,
    /// `X-Forwarded-For` when the request carries it, `Forwarded` otherwise.
    ///
    /// Use this only when **every** trusted proxy strips, or overwrites,
    /// the header it does not write. Otherwise a client behind a
    /// `Forwarded` proxy sends its own `X-Forwarded-For`, which then wins
    /// and names any address the client likes.
    XForwardedForThenForwarded,
}

/// The client address webhook-guard resolved for a request: the socket
/// peer, or the address your trusted proxies forwarded (see the
/// [module](self) docs).
///
/// The rate limiter puts it in the request's extensions; take it as an
/// axum extractor. IPv4-mapped IPv6 addresses are given as IPv4.
///
/// ```
/// use webhook_guard::ClientIp;
///
/// async fn handle(client: ClientIp) -> String {
///     format!("hello, {client}")
/// }
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ClientIp(IpAddr);

impl ClientIp {
    pub(crate) fn new(ip: IpAddr) -> Self {
        Self(ip.to_canonical())
    }

    /// The client's address.
    pub fn ip(&self) -> IpAddr {
        self.0
    }
}

impl fmt::Display for ClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// The [`ClientIp`] extractor's error: the router is not served through the
/// rate limiter's `into_make_service`, so no client address was resolved.
/// This is a server configuration mistake, answered with 500.
#[derive(Debug, Clone, Copy)]
pub struct MissingClientIp;

impl fmt::Display for MissingClientIp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("this router is not served through the rate limiter's into_make_service")
    }
}

impl std::error::Error for MissingClientIp {}

impl IntoResponse for MissingClientIp {
    fn into_response(self) -> Response {
        tracing::error!(
            target: "webhook_guard",
            "ClientIp extracted on a router not served through the rate limiter's into_make_service"
        );
        (StatusCode::INTERNAL_SERVER_ERROR, self.to_string()).into_response()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = MissingClientIp;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Self>().copied().ok_or(MissingClientIp)
    }
}

/// How to find the client: the trusted proxies and which header they write.
#[derive(Clone, Debug, Default)]
pub(crate) struct ClientIpConfig {
    pub(crate) trusted: Networks,
    pub(crate) header: ProxyHeader,
}

impl ClientIpConfig {
    /// The client IP of a request that arrived from socket peer `peer`.
    ///
    /// Headers are read only when `peer` is trusted, from the right; the
    /// result is never a hop to the left of the first untrusted or
    /// unparsable one. IPv4-mapped addresses come out as IPv4.
    pub(crate) fn resolve(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if self.trusted.is_empty() || !self.trusted.contains(peer) {
            return peer;
        }
        let (name, kind) = match self.header {
            ProxyHeader::XForwardedFor => (&X_FORWARDED_FOR, HopKind::XForwardedFor),
            ProxyHeader::Forwarded => (&FORWARDED, HopKind::Forwarded),
            ProxyHeader::XForwardedForThenForwarded => {
                if headers.contains_key(&X_FORWARDED_FOR) {
                    (&X_FORWARDED_FOR, HopKind::XForwardedFor)
                } else {
                    (&FORWARDED, HopKind::Forwarded)
                }
            }
        };
        let hops = Hops::new(headers.get_all(name).iter(), kind);
        let mut nearest = peer;
        for hop in hops {
            match hop.map(|ip| ip.to_canonical()) {
                Some(ip) if self.trusted.contains(ip) => nearest = ip,
                Some(ip) => return ip,
                // Never further left than an unreadable hop: the client
                // wrote everything there, and must not pick its bucket.
                None => return nearest,
            }
        }
        nearest
    }
}

/// The rate-limit bucket of an address: an IPv4 address (IPv4-mapped
/// included) on its own, an IPv6 address by its /64 prefix, since one host
/// usually holds a whole /64.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum IpKey {
    /// A whole IPv4 address.
    V4(u32),
    /// The upper 64 bits of an IPv6 address.
    V6(u64),
}

impl IpKey {
    /// The bucket of `ip`.
    pub(crate) fn of(ip: IpAddr) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => Self::V4(u32::from(v4)),
            IpAddr::V6(v6) => Self::V6((u128::from(v6) >> 64) as u64),
        }
    }
}

/// How a hop is written in the chosen header.
#[derive(Clone, Copy, Debug)]
enum HopKind {
    XForwardedFor,
    Forwarded,
}

/// The hops of a forwarding header, from the rightmost (the last line's last
/// entry) to the left: `Some(address)`, or `None` for an unparsable hop,
/// after which it ends. Looks at no more than [`MAX_HOPS`] hops and
/// [`MAX_HEADER_BYTES`] bytes; what lies beyond counts as unparsable.
struct Hops<'a> {
    lines: ValueIter<'a, HeaderValue>,
    kind: HopKind,
    /// The part of the current line not yet split, if a line is open.
    rest: Option<&'a [u8]>,
    /// The current line was cut to the byte budget: its leftmost piece is
    /// not a whole hop.
    cut: bool,
    budget: usize,
    seen: usize,
    done: bool,
}

impl<'a> Hops<'a> {
    fn new(lines: ValueIter<'a, HeaderValue>, kind: HopKind) -> Self {
        Self {
            lines,
            kind,
            rest: None,
            cut: false,
            budget: MAX_HEADER_BYTES,
            seen: 0,
            done: false,
        }
    }

    /// The next piece between commas, from the right; `None` when the
    /// piece is cut by the byte budget. `Err` when there are no more lines.
    fn next_piece(&mut self) -> Result<Option<&'a [u8]>, ()> {
        loop {
            if let Some(rest) = self.rest {
                return Ok(match rest.iter().rposition(|&b| b == b',') {
                    Some(i) => {
                        self.rest = rest.get(..i);
                        rest.get(i + 1..)
                    }
                    None => {
                        self.rest = None;
                        (!self.cut).then_some(rest)
                    }
                });
            }
            let line = self.lines.next_back().ok_or(())?.as_bytes();
            let start = line.len().saturating_sub(self.budget);
            self.cut = start > 0;
            self.rest = line.get(start..);
            self.budget -= line.len() - start;
        }
    }
}

impl Iterator for Hops<'_> {
    type Item = Option<IpAddr>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let piece = self.next_piece().ok()?;
        self.seen += 1;
        let hop = match piece {
            Some(piece) if self.seen <= MAX_HOPS => parse_hop(piece, self.kind),
            _ => None,
        };
        self.done = hop.is_none();
        Some(hop)
    }
}

/// The address of one hop, if it has a readable one.
fn parse_hop(piece: &[u8], kind: HopKind) -> Option<IpAddr> {
    if !piece.is_ascii() {
        return None;
    }
    let piece = std::str::from_utf8(piece).ok()?.trim_matches(OWS);
    match kind {
        HopKind::XForwardedFor => parse_node(piece, false),
        HopKind::Forwarded => forwarded_for(piece),
    }
}

/// The address in the `for=` parameter of a `Forwarded` element.
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let mut value = None;
    for pair in element.split(';').map(|p| p.trim_matches(OWS)) {
        if pair.is_empty() {
            continue;
        }
        let (name, v) = pair.split_once('=')?;
        if name.trim_matches(OWS).eq_ignore_ascii_case("for") {
            if value.is_some() {
                // RFC 7239: a parameter occurs at most once per element.
                return None;
            }
            value = Some(v.trim_matches(OWS));
        }
    }
    let value = value?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    parse_node(value, true)
}

/// An address written as `v4`, `v6`, `[v6]`, `[v6]:port` or `v4:port`.
/// `obfuscated_port` also accepts RFC 7239's `_port` identifiers.
fn parse_node(node: &str, obfuscated_port: bool) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Some(rest) = node.strip_prefix('[') {
        let (inner, after) = rest.split_once(']')?;
        let ip = inner.parse::<Ipv6Addr>().ok()?;
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| is_port(p, obfuscated_port));
        return port_ok.then_some(IpAddr::V6(ip));
    }
    let (host, port) = node.split_once(':')?;
    if !is_port(port, obfuscated_port) {
        return None;
    }
    host.parse::<Ipv4Addr>().ok().map(IpAddr::V4)
}

fn is_port(port: &str, obfuscated: bool) -> bool {
    let numeric = !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) && port.parse::<u16>().is_ok();
    let hidden = obfuscated
        && port.strip_prefix('_').is_some_and(|id| {
            !id.is_empty()
                && id
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        });
    numeric || hidden
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|_| panic!("bad test address {s}"))
    }

    fn nets(s: &str) -> Networks {
        Networks::parse(s).unwrap_or_else(|e| panic!("bad test networks {s}: {e}"))
    }

    fn config(trusted: &str, header: ProxyHeader) -> ClientIpConfig {
        ClientIpConfig {
            trusted: nets(trusted),
            header,
        }
    }

    fn headers(lines: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in lines {
            let value = HeaderValue::from_str(value).unwrap_or_else(|_| panic!("bad header {value}"));
            map.append(HeaderName::from_static(name), value);
        }
        map
    }

    fn xff(lines: &[&str]) -> HeaderMap {
        headers(&lines.iter().map(|l| ("x-forwarded-for", *l)).collect::<Vec<_>>())
    }

    fn fwd(lines: &[&str]) -> HeaderMap {
        headers(&lines.iter().map(|l| ("forwarded", *l)).collect::<Vec<_>>())
    }

    const PROXY: &str = "10.0.0.3";

    fn xff_client(lines: &[&str]) -> IpAddr {
        config("10.0.0.0/8", ProxyHeader::XForwardedFor).resolve(ip(PROXY), &xff(lines))
    }

    fn fwd_client(lines: &[&str]) -> IpAddr {
        config("10.0.0.0/8, 2001:db8:ffff::/48", ProxyHeader::Forwarded).resolve(ip(PROXY), &fwd(lines))
    }

    #[test]
    fn untrusted_peer_ignores_headers() {
        let cfg = config("10.0.0.0/8", ProxyHeader::XForwardedFor);
        let h = xff(&["1.1.1.1"]);
        assert_eq!(cfg.resolve(ip("203.0.113.9"), &h), ip("203.0.113.9"));
        // No trusted proxies at all: the same.
        let cfg = config("", ProxyHeader::XForwardedFor);
        assert_eq!(cfg.resolve(ip("10.0.0.3"), &h), ip("10.0.0.3"));
        assert_eq!(
            ClientIpConfig::default().resolve(ip("10.0.0.3"), &h),
            ip("10.0.0.3")
        );
    }

    #[test]
    fn absent_header_is_the_peer() {
        assert_eq!(xff_client(&[]), ip(PROXY));
        // The other header does not count.
        let cfg = config("10.0.0.0/8", ProxyHeader::XForwardedFor);
        assert_eq!(cfg.resolve(ip(PROXY), &fwd(&["for=1.2.3.4"])), ip(PROXY));
    }

    #[test]
    fn trusted_peer_takes_rightmost_untrusted_hop() {
        assert_eq!(xff_client(&["203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(
            xff_client(&["198.51.100.1, 203.0.113.7, 10.0.0.2"]),
            ip("203.0.113.7")
        );
        assert_eq!(xff_client(&[" 2001:db8::7 ,10.9.9.9 "]), ip("2001:db8::7"));
    }

    #[test]
    fn spoofed_leftmost_entries_never_win() {
        // The client sent `X-Forwarded-For: 1.1.1.1`; the proxy appended
        // the address it saw, on the same line or on a new one.
        assert_eq!(xff_client(&["1.1.1.1, 203.0.113.7"]), ip("203.0.113.7"));
        assert_eq!(xff_client(&["1.1.1.1", "203.0.113.7"]), ip("203.0.113.7"));
        // Even a spoofed "trusted" address on the left does not help.
        assert_eq!(xff_client(&["10.0.0.1, 203.0.113.7"]), ip("203.0.113.7"));
        // Nor does garbage or an oversized prefix.
        assert_eq!(xff_client(&["nonsense, 203.0.113.7"]), ip("203.0.113.7"));
        let huge = format!("{}, 203.0.113.7", "1.1.1.1,".repeat(2000));
        assert_eq!(xff_client(&[&huge]), ip("203.0.113.7"));
        let mut headers = xff(&["1.1.1.1"]);
        headers.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes(b"\xff\xfe, 203.0.113.7").unwrap_or_else(|_| panic!("header")),
        );
        let cfg = config("10.0.0.0/8", ProxyHeader::XForwardedFor);
        assert_eq!(cfg.resolve(ip(PROXY), &headers), ip("203.0.113.7"));
    }

    #[test]
    fn multiple_header_lines_in_order() {
        assert_eq!(
            xff_client(&["203.0.113.1, 10.0.0.5", "10.0.0.4"]),
            ip("203.0.113.1")
        );
        assert_eq!(
            xff_client(&["10.0.0.6", "203.0.113.2", "10.0.0.5, 10.0.0.4"]),
            ip("203.0.113.2")
        );
        // The last line's last entry is the rightmost hop.
        assert_eq!(xff_client(&["203.0.113.1", "203.0.113.2"]), ip("203.0.113.2"));
    }

    #[test]
    fn all_trusted_chain_is_the_leftmost() {
        assert_eq!(xff_client(&["10.0.0.9, 10.0.0.8", "10.0.0.7"]), ip("10.0.0.9"));
    }

    #[test]
    fn unparsable_hop_stops_at_the_nearest_trusted_hop() {
        assert_eq!(xff_client(&["203.0.113.1, garbage, 10.0.0.4"]), ip("10.0.0.4"));
        assert_eq!(xff_client(&["203.0.113.1, garbage"]), ip(PROXY));
        assert_eq!(xff_client(&["203.0.113.1, , 10.0.0.4"]), ip("10.0.0.4"));
        assert_eq!(xff_client(&["203.0.113.1,"]), ip(PROXY));
        assert_eq!(xff_client(&["203.0.113.1", ""]), ip(PROXY));
        assert_eq!(xff_client(&["203.0.113.1, unknown, 10.0.0.4"]), ip("10.0.0.4"));
        assert_eq!(xff_client(&["203.0.113.1, 10.0.0.4:99999"]), ip(PROXY));
        assert_eq!(xff_client(&["203.0.113.1, 10.0.0.4:+80"]), ip(PROXY));
        assert_eq!(xff_client(&["203.0.113.1, [10.0.0.4]"]), ip(PROXY));
        assert_eq!(xff_client(&["203.0.113.1, 10.0.0.4:_hidden"]), ip(PROXY));
        let mut h = xff(&["203.0.113.1", "10.0.0.4"]);
        h.append(
            X_FORWARDED_FOR,
            HeaderValue::from_bytes("10.0.0.5, caf\u{e9}, 10.0.0.6".as_bytes())
                .unwrap_or_else(|_| panic!("header")),
        );
        let cfg = config("10.0.0.0/8", ProxyHeader::XForwardedFor);
        assert_eq!(cfg.resolve(ip(PROXY), &h), ip("10.0.0.6"));
    }

    #[test]
    fn xff_ports_and_brackets() {
        assert_eq!(xff_client(&["203.0.113.1:8080"]), ip("203.0.113.1"));
        assert_eq!(xff_client(&["[2001:db8::1]"]), ip("2001:db8::1"));
        assert_eq!(
            xff_client(&["[2001:db8::1]:443, 10.0.0.4:1234"]),
            ip("2001:db8::1")
        );
        assert_eq!(xff_client(&["\t203.0.113.1 "]), ip("203.0.113.1"));
    }

    #[test]
    fn hop_limit() {
        let trusted_hops = vec!["10.0.0.1"; MAX_HOPS].join(", ");
        // 64 trusted hops and the client: the client is past the limit.
        let line = format!("203.0.113.1, {trusted_hops}");
        assert_eq!(xff_client(&[&line]), ip("10.0.0.1"));
        // 63 trusted hops and the client: within it.
        let line = format!("203.0.113.1, {}", vec!["10.0.0.1"; MAX_HOPS - 1].join(", "));
        assert_eq!(xff_client(&[&line]), ip("203.0.113.1"));
    }

    #[test]
    fn byte_limit() {
        // The budget is counted from the right and spans lines: a long line
        // on the right pushes the one left of it out of reach.
        let right = format!("{}10.0.0.2", " ".repeat(MAX_HEADER_BYTES - 5 - 8));
        assert_eq!(right.len(), MAX_HEADER_BYTES - 5);
        assert_eq!(xff_client(&["203.0.113.1", &right]), ip("10.0.0.2"));
        assert_eq!(xff_client(&["203.0.113.1", &right[10..]]), ip("203.0.113.1"));
        // A line right at the budget is read whole; one byte more, and its
        // leftmost hop is cut, so unparsable.
        let exact = format!("{}203.0.113.1", " ".repeat(MAX_HEADER_BYTES - 11));
        assert_eq!(exact.len(), MAX_HEADER_BYTES);
        assert_eq!(xff_client(&[&exact]), ip("203.0.113.1"));
        let over = format!(" {exact}");
        assert_eq!(xff_client(&[&over]), ip(PROXY));
        let over = format!("198.51.100.1, {exact}, 10.0.0.4");
        assert_eq!(xff_client(&[&over]), ip("10.0.0.4"));
    }

    #[test]
    fn forwarded_elements_and_lines() {
        assert_eq!(fwd_client(&["for=203.0.113.1"]), ip("203.0.113.1"));
        assert_eq!(
            fwd_client(&["for=198.51.100.1, for=203.0.113.1;proto=https;by=10.0.0.3, For=10.0.0.4"]),
            ip("203.0.113.1")
        );
        assert_eq!(
            fwd_client(&["for=203.0.113.1", "for=10.0.0.5, FOR=\"10.0.0.4\""]),
            ip("203.0.113.1")
        );
        assert_eq!(
            fwd_client(&["proto=http;for=\"192.0.2.1:8080\";host=example.com"]),
            ip("192.0.2.1")
        );
        assert_eq!(fwd_client(&["for=\"[2001:db8::1]:4711\""]), ip("2001:db8::1"));
        assert_eq!(fwd_client(&["for=\"[2001:db8::1]\""]), ip("2001:db8::1"));
        assert_eq!(fwd_client(&["for=\"203.0.113.1:_port\""]), ip("203.0.113.1"));
        assert_eq!(
            fwd_client(&["for=203.0.113.1, for=\"[2001:db8:ffff::2]:80\""]),
            ip("203.0.113.1")
        );
        // All trusted: the leftmost.
        assert_eq!(fwd_client(&["for=10.0.0.9, for=10.0.0.8"]), ip("10.0.0.9"));
    }

    #[test]
    fn forwarded_unparsable_hops() {
        assert_eq!(
            fwd_client(&["for=203.0.113.1, for=unknown, for=10.0.0.4"]),
            ip("10.0.0.4")
        );
        assert_eq!(fwd_client(&["for=203.0.113.1, for=_hidden"]), ip(PROXY));
        assert_eq!(fwd_client(&["for=203.0.113.1, proto=https"]), ip(PROXY));
        assert_eq!(
            fwd_client(&["for=203.0.113.1, for=10.0.0.4;for=10.0.0.5"]),
            ip(PROXY)
        );
        assert_eq!(fwd_client(&["for=203.0.113.1, for=\"10.0.0.4"]), ip(PROXY));
        assert_eq!(fwd_client(&["for=203.0.113.1, for="]), ip(PROXY));
        assert_eq!(fwd_client(&["for=203.0.113.1, garbage"]), ip(PROXY));
        // An unterminated quote sent by the client does not swallow what the
        // proxy appended.
        assert_eq!(
            fwd_client(&["for=1.1.1.1;x=\"abc, for=203.0.113.1"]),
            ip("203.0.113.1")
        );
    }

    #[test]
    fn x_forwarded_for_then_forwarded() {
        let cfg = config("10.0.0.0/8", ProxyHeader::XForwardedForThenForwarded);
        let both = headers(&[
            ("x-forwarded-for", "203.0.113.1"),
            ("forwarded", "for=203.0.113.2"),
        ]);
        assert_eq!(cfg.resolve(ip(PROXY), &both), ip("203.0.113.1"));
        assert_eq!(
            cfg.resolve(ip(PROXY), &fwd(&["for=203.0.113.2"])),
            ip("203.0.113.2")
        );
        assert_eq!(cfg.resolve(ip(PROXY), &xff(&["203.0.113.1"])), ip("203.0.113.1"));
        assert_eq!(cfg.resolve(ip(PROXY), &HeaderMap::new()), ip(PROXY));
    }

    #[test]
    fn ipv4_mapped_addresses_are_ipv4() {
        let cfg = config("10.0.0.0/8", ProxyHeader::XForwardedFor);
        let h = xff(&["::ffff:203.0.113.1, ::ffff:10.0.0.4"]);
        assert_eq!(cfg.resolve(ip("::ffff:10.0.0.3"), &h), ip("203.0.113.1"));
        // An untrusted mapped peer comes out as IPv4.
        assert_eq!(cfg.resolve(ip("::ffff:203.0.113.9"), &h), ip("203.0.113.9"));
        let trusted = nets("127.0.0.0/8");
        assert!(trusted.contains(ip("::ffff:127.0.0.1")));
        // Mapped entries match plain IPv4 addresses.
        let mapped = nets("::ffff:10.0.0.0/104, ::ffff:192.0.2.1");
        assert_eq!(mapped.to_string(), "10.0.0.0/8, 192.0.2.1/32");
        assert!(mapped.contains(ip("10.1.2.3")));
        assert!(mapped.contains(ip("::ffff:192.0.2.1")));
        // Other IPv6 networks never hold IPv4 addresses.
        assert!(!nets("::/0").contains(ip("192.0.2.1")));
        assert!(nets("::/0").contains(ip("2001:db8::1")));
    }

    #[test]
    fn ip_key_buckets() {
        assert_eq!(
            IpKey::of(ip("2001:db8:1:2::1")),
            IpKey::of(ip("2001:db8:1:2:ffff::9"))
        );
        assert_ne!(IpKey::of(ip("2001:db8:1:2::1")), IpKey::of(ip("2001:db8:1:3::1")));
        assert_eq!(IpKey::of(ip("::ffff:1.2.3.4")), IpKey::of(ip("1.2.3.4")));
        assert_eq!(IpKey::of(ip("1.2.3.4")), IpKey::V4(0x0102_0304));
        assert_ne!(IpKey::of(ip("1.2.3.4")), IpKey::of(ip("1.2.3.5")));
        assert_eq!(IpKey::of(ip("2001:db8::1")), IpKey::V6(0x2001_0db8_0000_0000));
    }

    #[test]
    fn networks_parse() {
        assert!(nets("").is_empty());
        assert!(nets(" , ,\t").is_empty());
        assert_eq!(Networks::default().len(), 0);
        assert!(!Networks::none().contains(ip("10.0.0.1")));
        let n = nets("192.0.2.1, 2001:db8::1");
        assert_eq!(n.len(), 2);
        assert!(n.contains(ip("192.0.2.1")));
        assert!(!n.contains(ip("192.0.2.2")));
        assert!(n.contains(ip("2001:db8::1")));
        assert!(!n.contains(ip("2001:db8::2")));
        // Host bits are cleared.
        assert_eq!(nets("10.0.0.1/8").to_string(), "10.0.0.0/8");
        for (list, bad) in [
            ("10.0.0.0/8, nonsense", "nonsense"),
            ("10.0.0.0/33", "10.0.0.0/33"),
            (" 1.2.3.4/ , 10.0.0.0/8", "1.2.3.4/"),
            ("2001:db8::/129", "2001:db8::/129"),
            ("fe80::1%eth0", "fe80::1%eth0"),
            ("10.0.0.0 /8", "10.0.0.0 /8"),
        ] {
            let err = Networks::parse(list).err();
            assert_eq!(
                err,
                Some(ConfigError::InvalidNetwork { value: bad.into() }),
                "{list}"
            );
        }
        let err = Networks::parse("bad").err().map(|e| e.to_string());
        assert_eq!(
            err.as_deref(),
            Some("\"bad\" is not an IP address or a CIDR network")
        );
        assert_eq!("10.0.0.0/8".parse::<Networks>(), Networks::try_from("10.0.0.0/8"));
    }

    #[test]
    fn networks_display_round_trips() {
        let n = nets("10.0.0.0/8,2001:db8::/32, 192.0.2.1, ::1, 0.0.0.0/0");
        let shown = n.to_string();
        assert_eq!(
            shown,
            "10.0.0.0/8, 2001:db8::/32, 192.0.2.1/32, ::1/128, 0.0.0.0/0"
        );
        assert_eq!(nets(&shown), n);
        assert_eq!(format!("{n:?}"), format!("Networks({shown})"));
        assert_eq!(Networks::none().to_string(), "");
        assert_eq!(nets(""), Networks::none());
    }

    #[test]
    fn client_ip_extractor() {
        let rt = tokio::runtime::Builder::new_current_thread().build();
        let Ok(rt) = rt else { panic!("runtime") };
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let missing = rt.block_on(ClientIp::from_request_parts(&mut parts, &()));
        let Err(rejection) = missing else {
            panic!("extracted without an extension")
        };
        assert_eq!(
            rejection.into_response().status(),
            StatusCode::INTERNAL_SERVER_ERROR
        );
        parts.extensions.insert(ClientIp::new(ip("::ffff:192.0.2.1")));
        let found = rt.block_on(ClientIp::from_request_parts(&mut parts, &()));
        assert_eq!(found.ok().map(|c| c.ip()), Some(ip("192.0.2.1")));
        assert_eq!(ClientIp::new(ip("2001:db8::1")).to_string(), "2001:db8::1");
    }
}
