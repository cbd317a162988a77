//! Who a request comes from, and budgets for failed attempts per client, for the routes that
//! need no credential to reach (sign-in, acknowledge links, SMS replies).
//!
//! The client is the connection's peer, unless that peer is a trusted proxy
//! (`limits.trusted_proxies`): then `X-Forwarded-For` is read from the right, skipping trusted
//! proxies, and the first address that is not one is the client. Anyone can send the header,
//! so it is believed only from those proxies, and only as far as they vouch for it.
//!
//! A [`FailureBudget`] charges only failures (a wrong password, a link that does not verify, an
//! unsigned SMS reply) to the client that made them. Valid requests are never charged, and one
//! client's failures never spend another's budget: a flood of bad requests cannot starve the
//! good ones that arrive from elsewhere.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::HeaderMap;
use axum::http::request::Parts;

use crate::http::app::App;
use crate::http::connections::AddrKey;

/// The client a request comes from (see the module documentation). Unspecified (`0.0.0.0`)
/// when the request did not come through a connection (in-process calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Client(pub IpAddr);

impl FromRequestParts<Arc<App>> for Client {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> Result<Client, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip());
        let rt = app.runtime.load();
        Ok(Client(client_address(peer, &parts.headers, &rt.config.limits.trusted_proxies)))
    }
}

/// The client behind `peer`: `peer` itself, or, when `peer` is a trusted proxy, the rightmost
/// `X-Forwarded-For` address that is not a trusted proxy.
pub fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[ipnet::IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    let mut client = peer;
    for hop in hops.iter().rev() {
        // A hop that is not an address (`unknown`, garbage): the proxy that added it is the
        // last thing known.
        let Some(ip) = parse_hop(hop) else { break };
        client = ip;
        if !is_trusted(&ip) {
            break;
        }
    }
    client
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:443`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse() {
        return Some(ip);
    }
    hop.parse::<SocketAddr>().ok().map(|s| s.ip())
}

/// Failed attempts each client may make: `burst` at once, then one per `every` (a leaky
/// bucket per client key: [`AddrKey`], an IPv4 address or an IPv6 /64, optionally with a
/// name). While a client's budget is spent, its attempts are refused before they are looked
/// at, so guessing is slow whatever the guesses are; its successes are never charged.
pub struct FailureBudget<K = AddrKey> {
    burst: u32,
    every: Duration,
    /// Key → when its debt is paid off (GCRA's theoretical arrival time).
    debts: Mutex<HashMap<K, Instant>>,
}

/// Keys kept at most; past it, those that owe nothing are forgotten first, then the ones that
/// owe least (a flood from many addresses cannot grow the table without bound).
const MAX_KEYS: usize = 65_536;

impl<K: std::hash::Hash + Eq + Clone> FailureBudget<K> {
    pub fn new(burst: u32, every: Duration) -> FailureBudget<K> {
        FailureBudget { burst: burst.max(1), every, debts: Mutex::new(HashMap::new()) }
    }

    /// `Some(wait)` while `key` may not try again (its budget is spent), else `None`.
    pub fn blocked(&self, key: &K) -> Option<Duration> {
        let now = Instant::now();
        let debts = self.debts.lock().unwrap_or_else(|p| p.into_inner());
        let paid_off = *debts.get(key)?;
        // Up to `burst` failures may be owed at once.
        let allowed = self.every * (self.burst - 1);
        let owed = paid_off.saturating_duration_since(now);
        (owed > allowed).then(|| owed - allowed)
    }

    /// Charges one failure to `key`.
    pub fn fail(&self, key: K) {
        let now = Instant::now();
        let mut debts = self.debts.lock().unwrap_or_else(|p| p.into_inner());
        if debts.len() >= MAX_KEYS && !debts.contains_key(&key) {
            debts.retain(|_, paid_off| *paid_off > now);
            if debts.len() >= MAX_KEYS {
                let mut by_debt: Vec<Instant> = debts.values().copied().collect();
                by_debt.sort_unstable();
                let cut = by_debt[by_debt.len() / 2];
                debts.retain(|_, paid_off| *paid_off > cut);
            }
        }
        let paid_off = debts.entry(key).or_insert(now);
        *paid_off = (*paid_off).max(now) + self.every;
    }
}

/// Whole seconds for a `Retry-After` header (at least 1).
pub fn retry_after_secs(wait: Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let trusted: Vec<ipnet::IpNet> =
            vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()];
        let mut h = HeaderMap::new();
        h.append("x-forwarded-for", HeaderValue::from_static("203.0.113.9, 198.51.100.7"));
        h.append("x-forwarded-for", HeaderValue::from_static("10.1.1.1"));
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        // From a stranger: the header is ignored.
        assert_eq!(client_address(ip("192.0.2.5"), &h, &trusted), ip("192.0.2.5"));
        // From a proxy: the rightmost hop that is not a proxy (the one before it was not
        // vouched for by us).
        assert_eq!(client_address(ip("10.0.0.2"), &h, &trusted), ip("198.51.100.7"));
        assert_eq!(client_address(ip("::1"), &h, &trusted), ip("198.51.100.7"));
        // No header: the proxy itself.
        assert_eq!(client_address(ip("10.0.0.2"), &HeaderMap::new(), &trusted), ip("10.0.0.2"));
        // Garbage in a hop: the last address known.
        let mut g = HeaderMap::new();
        g.insert("x-forwarded-for", HeaderValue::from_static("203.0.113.9, unknown, 10.2.2.2"));
        assert_eq!(client_address(ip("10.0.0.2"), &g, &trusted), ip("10.2.2.2"));
        let mut p = HeaderMap::new();
        p.insert("x-forwarded-for", HeaderValue::from_static("[2001:db8::7]:443"));
        assert_eq!(client_address(ip("10.0.0.2"), &p, &trusted), ip("2001:db8::7"));
    }

    #[test]
    fn only_failures_are_charged_and_only_to_their_client() {
        let budget: FailureBudget<u8> = FailureBudget::new(3, Duration::from_secs(60));
        assert_eq!(budget.blocked(&1), None);
        for _ in 0..3 {
            assert_eq!(budget.blocked(&1), None);
            budget.fail(1);
        }
        let wait = budget.blocked(&1).expect("spent");
        assert!(wait > Duration::from_secs(55) && wait <= Duration::from_secs(60), "{wait:?}");
        assert_eq!(budget.blocked(&2), None, "another client is not affected");
    }

    #[test]
    fn the_budget_refills() {
        let budget: FailureBudget<u8> = FailureBudget::new(2, Duration::from_millis(50));
        budget.fail(1);
        budget.fail(1);
        assert!(budget.blocked(&1).is_some());
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(budget.blocked(&1), None);
    }
}
