//! The outbound address policy of every channel that makes HTTP requests (webhooks, SMS
//! gateways): unless the endpoint sets `allow_private: true`, Tocsin never connects to an
//! address that is not globally reachable — loopback, private, link-local, shared (CGNAT),
//! documentation, benchmarking and the other special-purpose ranges — so a config or a DNS
//! answer cannot turn a notification into a request to the host's own services or network.
//!
//! The ranges are IANA's IPv4 and IPv6 Special-Purpose Address Registries
//! (<https://www.iana.org/assignments/iana-ipv4-special-registry>,
//! <https://www.iana.org/assignments/iana-ipv6-special-registry>), each entry with its
//! "Globally Reachable" column: an address is refused when the most specific entry covering it
//! is not globally reachable. Beyond the registries: multicast (both families), IPv6 outside
//! global unicast (`2000::/3`), and the deprecated IPv4-compatible (`::a.b.c.d`) and
//! site-local (`fec0::/10`) forms are refused; an IPv6 address that carries an IPv4 one
//! (IPv4-mapped `::ffff:a.b.c.d`, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`) is judged by the
//! IPv4 address it reaches.
//!
//! How it is enforced: the host is resolved by us and only the permitted addresses are handed
//! to the connector, from that same lookup, so a DNS answer that changes between check and
//! connect (rebinding) cannot slip through; an address written in the URL is never resolved
//! and is checked before sending. No proxy is used (it would connect on our behalf, past the
//! guard) and redirects are never followed. `allow_private: true` turns the address checks
//! off for that endpoint (the system resolver); proxies from the environment
//! (`HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY`) are ignored by every channel all the same.
//! `tocsin check` reports a URL whose host is such an address, or `localhost` and its
//! synonyms; other names can only be checked when they are resolved, at delivery.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::{SendError, classify_reqwest, client_builder, redact_url_text};

/// `(range, name, globally reachable)`: the registries' entries (names shortened), plus the
/// ranges named in the module documentation.
const RANGES: &[(&str, &str, bool)] = &[
    // IPv4 Special-Purpose Address Registry.
    ("0.0.0.0/8", "\"this network\"", false),
    ("0.0.0.0/32", "\"this host on this network\"", false),
    ("10.0.0.0/8", "private-use", false),
    ("100.64.0.0/10", "shared (CGNAT)", false),
    ("127.0.0.0/8", "loopback", false),
    ("169.254.0.0/16", "link-local", false),
    ("172.16.0.0/12", "private-use", false),
    ("192.0.0.0/24", "IETF protocol assignments", false),
    ("192.0.0.0/29", "IPv4 service continuity", false),
    ("192.0.0.8/32", "IPv4 dummy", false),
    ("192.0.0.9/32", "PCP anycast", true),
    ("192.0.0.10/32", "TURN anycast", true),
    ("192.0.0.170/32", "NAT64/DNS64 discovery", false),
    ("192.0.0.171/32", "NAT64/DNS64 discovery", false),
    ("192.0.2.0/24", "documentation (TEST-NET-1)", false),
    ("192.31.196.0/24", "AS112-v4", true),
    ("192.52.193.0/24", "AMT", true),
    ("192.88.99.0/24", "deprecated 6to4 relay anycast", false),
    ("192.168.0.0/16", "private-use", false),
    ("192.175.48.0/24", "AS112 direct delegation", true),
    ("198.18.0.0/15", "benchmarking", false),
    ("198.51.100.0/24", "documentation (TEST-NET-2)", false),
    ("203.0.113.0/24", "documentation (TEST-NET-3)", false),
    ("240.0.0.0/4", "reserved", false),
    ("255.255.255.255/32", "limited broadcast", false),
    // Not in the registry: the multicast registry's block.
    ("224.0.0.0/4", "multicast", false),
    // IPv6 Special-Purpose Address Registry.
    ("::1/128", "loopback", false),
    ("::/128", "unspecified", false),
    ("64:ff9b:1::/48", "local-use IPv4/IPv6 translation", false),
    ("100::/64", "discard-only", false),
    ("100:0:0:1::/64", "dummy IPv6 prefix", false),
    ("2001::/23", "IETF protocol assignments", false),
    ("2001::/32", "Teredo", false),
    ("2001:1::1/128", "PCP anycast", true),
    ("2001:1::2/128", "TURN anycast", true),
    ("2001:1::3/128", "DNS-SD SRP anycast", true),
    ("2001:2::/48", "benchmarking", false),
    ("2001:3::/32", "AMT", true),
    ("2001:4:112::/48", "AS112-v6", true),
    ("2001:10::/28", "deprecated ORCHID", false),
    ("2001:20::/28", "ORCHIDv2", true),
    ("2001:30::/28", "drone remote ID", true),
    ("2001:db8::/32", "documentation", false),
    ("2620:4f:8000::/48", "AS112 direct delegation", true),
    ("3fff::/20", "documentation", false),
    ("5f00::/16", "segment routing SIDs", false),
    ("fc00::/7", "unique-local (private)", false),
    ("fe80::/10", "link-local", false),
    // Not in the registry: deprecated forms and multicast.
    ("::/96", "IPv4-compatible (deprecated)", false),
    ("fec0::/10", "site-local (deprecated)", false),
    ("ff00::/8", "multicast", false),
];

static TABLE: LazyLock<Vec<(IpNet, &'static str, bool)>> = LazyLock::new(|| {
    RANGES
        .iter()
        .map(|(net, name, global)| (net.parse().expect("a valid range in RANGES"), *name, *global))
        .collect()
});

/// Why an address is refused without `allow_private` (the range's name), or `None` if it may
/// be used.
pub fn forbidden_range(ip: IpAddr) -> Option<&'static str> {
    let ip = match ip {
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        },
        v4 => v4,
    };
    let most_specific = TABLE
        .iter()
        .filter(|(net, _, _)| net.contains(&ip))
        .max_by_key(|(net, _, _)| net.prefix_len());
    match (most_specific, ip) {
        (Some((_, _, true)), _) => None,
        (Some((_, name, false)), _) => Some(name),
        (None, IpAddr::V6(v6)) if v6.segments()[0] & 0xe000 != 0x2000 => {
            Some("reserved (outside global unicast 2000::/3)")
        }
        (None, _) => None,
    }
}

/// The IPv4 address an IPv6 one reaches when it carries one: IPv4-mapped, NAT64's well-known
/// prefix, 6to4.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    if let Some(v4) = v6.to_ipv4_mapped() {
        return Some(v4);
    }
    let s = v6.segments();
    let v4 = |hi: u16, lo: u16| {
        let ([a, b], [c, d]) = (hi.to_be_bytes(), lo.to_be_bytes());
        Ipv4Addr::new(a, b, c, d)
    };
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        Some(v4(s[6], s[7]))
    } else if s[0] == 0x2002 {
        Some(v4(s[1], s[2]))
    } else {
        None
    }
}

/// `localhost` and the names systems map to the loopback address (RFC 6761 reserves every
/// `*.localhost`; Debian's hosts file adds the `ip6-` ones).
pub fn is_local_host_name(host: &str) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    host == "localhost"
        || host.ends_with(".localhost")
        || matches!(
            host.as_str(),
            "localhost.localdomain"
                | "localhost6"
                | "localhost6.localdomain6"
                | "ip6-localhost"
                | "ip6-loopback"
        )
}

/// What `tocsin check` says about `url` for an endpoint without `allow_private`: a problem
/// when its host is an address the guard refuses or a local host name. Other names are
/// checked when they are resolved, at delivery.
pub fn check_url(url: &str) -> Option<String> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let shown = redact_url_text(url);
    let fix = "set allow_private: true on this endpoint if it really is internal";
    if let Some(ip) = literal_ip(&parsed) {
        let range = forbidden_range(ip)?;
        return Some(format!(
            "`{shown}` is a {range} address ({ip}): outgoing requests refuse it; {fix}"
        ));
    }
    let host = parsed.host_str()?;
    is_local_host_name(host).then(|| {
        format!("`{shown}` names this host ({host}): outgoing requests refuse loopback; {fix}")
    })
}

/// The address written in a URL's host, if it is one. The URL parser has already turned
/// spellings like `2130706433` or `0x7f.1` into dotted form.
pub fn literal_ip(url: &reqwest::Url) -> Option<IpAddr> {
    url.host_str()?.trim_start_matches('[').trim_end_matches(']').parse().ok()
}

/// The HTTP client of an endpoint: [`super::http_client`]'s settings, and unless
/// `allow_private`, the guarded resolver (no proxy either way). `what` names the endpoint in refusals
/// (`webhook`, `SMS gateway`).
pub(crate) fn client(
    timeout: Duration,
    allow_private: bool,
    what: &'static str,
) -> Result<reqwest::Client, String> {
    let builder = client_builder(timeout);
    let builder = if allow_private {
        builder
    } else {
        builder.dns_resolver(Arc::new(GuardedResolver { what }))
    };
    builder.build().map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Refuses a URL whose host is a forbidden address literal (never resolved, so the resolver
/// does not see it).
pub(crate) fn check_literal(
    url: &reqwest::Url,
    allow_private: bool,
    what: &'static str,
) -> Result<(), SendError> {
    match literal_ip(url).filter(|_| !allow_private) {
        Some(ip) => match forbidden_range(ip) {
            Some(range) => {
                Err(SendError::Permanent { reason: refusal(what, &ip.to_string(), ip, range) })
            }
            None => Ok(()),
        },
        None => Ok(()),
    }
}

/// Our own refusal is `Permanent` (retrying cannot change the address ranges, and nothing was
/// sent); anything else goes through the shared table.
pub(crate) fn classify(err: &reqwest::Error) -> SendError {
    let mut source = std::error::Error::source(err);
    while let Some(inner) = source {
        if let Some(refused) = inner.downcast_ref::<Refused>() {
            return SendError::Permanent { reason: refused.to_string() };
        }
        source = inner.source();
    }
    classify_reqwest(err, true)
}

fn refusal(what: &str, host: &str, ip: IpAddr, range: &str) -> String {
    format!(
        "refusing to connect to {host}: {ip} is {} {range} address; set allow_private: true on \
         this {what} if it really is an internal endpoint",
        crate::error::a_or_an(range)
    )
}

/// The guard's refusal, carried through reqwest's error chain to [`classify`].
#[derive(Debug)]
struct Refused {
    what: &'static str,
    host: String,
    ip: IpAddr,
    range: &'static str,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&refusal(self.what, &self.host, self.ip, self.range))
    }
}

impl std::error::Error for Refused {}

/// Resolves with the system resolver, then keeps only permitted addresses. reqwest connects
/// to exactly what this returns: the check and the connection use one lookup.
struct GuardedResolver {
    what: &'static str,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        let what = self.what;
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed = permitted(what, &host, found)?;
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

/// The permitted addresses; an error naming the first refused one when none is left.
fn permitted(
    what: &'static str,
    host: &str,
    found: Vec<SocketAddr>,
) -> Result<Vec<SocketAddr>, Refused> {
    let mut first_refused = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|addr| match forbidden_range(addr.ip()) {
            Some(range) => {
                first_refused.get_or_insert((addr.ip(), range));
                false
            }
            None => true,
        })
        .collect();
    match (allowed.is_empty(), first_refused) {
        (true, Some((ip, range))) => Err(Refused { what, host: host.to_string(), ip, range }),
        _ => Ok(allowed),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_special_purpose_range_is_refused_and_global_ones_are_not() {
        let refused = [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private-use"),
            ("172.16.0.1", "private-use"),
            ("172.31.255.255", "private-use"),
            ("192.168.1.1", "private-use"),
            ("169.254.169.254", "link-local"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("100.127.255.255", "shared (CGNAT)"),
            ("0.0.0.0", "\"this host on this network\""),
            ("0.1.2.3", "\"this network\""),
            ("192.0.0.1", "IPv4 service continuity"),
            ("192.0.0.100", "IETF protocol assignments"),
            ("192.0.0.170", "NAT64/DNS64 discovery"),
            ("192.0.2.10", "documentation (TEST-NET-1)"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("198.51.100.7", "documentation (TEST-NET-2)"),
            ("203.0.113.9", "documentation (TEST-NET-3)"),
            ("192.88.99.1", "deprecated 6to4 relay anycast"),
            ("224.0.0.1", "multicast"),
            ("239.255.255.250", "multicast"),
            ("240.0.0.1", "reserved"),
            ("255.255.255.255", "limited broadcast"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("::127.0.0.1", "IPv4-compatible (deprecated)"),
            ("::8.8.8.8", "IPv4-compatible (deprecated)"),
            ("::ffff:10.0.0.1", "private-use"),
            ("::ffff:127.0.0.1", "loopback"),
            ("64:ff9b::7f00:1", "loopback"),
            ("64:ff9b:1::1", "local-use IPv4/IPv6 translation"),
            ("2002:7f00:1::1", "loopback"),
            ("2002:a00:1::", "private-use"),
            ("100::1", "discard-only"),
            ("2001::1", "Teredo"),
            ("2001:2::1", "benchmarking"),
            ("2001:db8::1", "documentation"),
            ("3fff::1", "documentation"),
            ("5f00::1", "segment routing SIDs"),
            ("fc00::1", "unique-local (private)"),
            ("fd12:3456::1", "unique-local (private)"),
            ("fe80::1", "link-local"),
            ("fec0::1", "site-local (deprecated)"),
            ("ff02::1", "multicast"),
            ("4000::1", "reserved (outside global unicast 2000::/3)"),
        ];
        for (ip, range) in refused {
            assert_eq!(forbidden_range(ip.parse().unwrap()), Some(range), "{ip}");
        }
        let allowed = [
            "8.8.8.8",
            "1.1.1.1",
            "172.32.0.1",
            "100.128.0.1",
            "192.169.0.1",
            "198.20.0.1",
            "192.0.0.9",
            "192.31.196.1",
            "2606:4700:4700::1111",
            "2a00:1450:4001:80b::200e",
            "64:ff9b::808:808",
            "::ffff:8.8.8.8",
            "2002:808:808::1",
            "2001:4:112::1",
            "2001:1::1",
        ];
        for ip in allowed {
            assert_eq!(forbidden_range(ip.parse().unwrap()), None, "{ip} should be allowed");
        }
    }

    #[test]
    fn mixed_answers_keep_only_public_addresses() {
        let public = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(93, 184, 215, 14)), 0);
        let private = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 0);
        let loopback = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), 0);
        assert_eq!(permitted("webhook", "h", vec![private, public, loopback]).unwrap(), [public]);
        let err = permitted("webhook", "h", vec![private, loopback]).unwrap_err();
        assert_eq!((err.ip, err.range), (private.ip(), "private-use"));
    }

    #[test]
    fn refusals_read_with_the_right_article() {
        let refused = |ip: &str| {
            let ip: IpAddr = ip.parse().unwrap();
            refusal("webhook", "h", ip, forbidden_range(ip).unwrap())
        };
        assert!(refused("::").contains(":: is an unspecified address"), "{}", refused("::"));
        assert!(refused("127.0.0.1").contains("127.0.0.1 is a loopback address"));
    }

    #[test]
    fn check_time_catches_literals_and_local_names_only() {
        for url in [
            "http://127.0.0.1/sms",
            "http://127.1:8080/x",
            "http://2130706433/x",
            "http://0x7f.0.0.1/x",
            "http://[::1]/x",
            "http://[::ffff:127.0.0.1]/x",
            "http://[::127.0.0.1]/x",
            "http://10.0.0.8/hook",
            "http://192.0.0.1/x",
            "http://198.18.0.5/x",
            "http://localhost:9/x",
            "http://LOCALHOST./x",
            "http://api.localhost/x",
            "http://ip6-localhost/x",
        ] {
            let problem = check_url(url).unwrap_or_else(|| panic!("{url} passed"));
            assert!(problem.contains("allow_private"), "{problem}");
        }
        for url in ["https://api.twilio.com/x", "https://8.8.8.8/x", "https://hooks.example.com/x"]
        {
            assert_eq!(check_url(url), None, "{url}");
        }
        // A secret in the path never reaches the message.
        let problem = check_url("http://127.0.0.1/services/T0/B0/pathsecret123").unwrap();
        assert!(!problem.contains("pathsecret123"), "{problem}");
    }
}
