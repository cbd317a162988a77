//! `limits:`: request body and header deadlines, the connection caps and the trusted proxies
//! that [`super::settings`] and the ingest handlers enforce.

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::config::Validator;

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Largest accepted request body; larger gets 413.
    pub max_body_bytes: usize,
    /// A client must finish sending its request headers within this time; a connection that
    /// sends no request for this long (a new one included) is closed.
    pub header_read_timeout: Duration,
    /// A request body must arrive within this time.
    pub request_timeout: Duration,
    /// Connections served at once; `None`: derived from the descriptor limit at start
    /// (see [`crate::http::connections`]).
    pub max_connections: Option<usize>,
    /// Connections from one client address (an IPv6 /64) at once; `None`: a quarter of
    /// `max_connections`. Trusted proxies are exempt.
    pub max_connections_per_address: Option<usize>,
    /// Reverse proxies whose `X-Forwarded-For` names the client for per-address limits.
    pub trusted_proxies: Vec<ipnet::IpNet>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 512 * 1024,
            header_read_timeout: Duration::from_secs(30),
            request_timeout: Duration::from_secs(30),
            max_connections: None,
            max_connections_per_address: None,
            trusted_proxies: Vec::new(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_body_bytes: Option<Spanned<u64>>,
    pub header_read_timeout: Option<Spanned<String>>,
    pub request_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<u64>>,
    pub max_connections_per_address: Option<Spanned<u64>>,
    pub trusted_proxies: Option<Spanned<Vec<Spanned<String>>>>,
}

/// Above this a single request body stops being an alert and starts being a memory problem.
const MAX_BODY_BYTES_LIMIT: u64 = 64 * 1024 * 1024;

/// `limits:`; each key left out keeps its default.
pub fn validate(cx: &mut Validator<'_>, raw: Option<Spanned<RawLimits>>) -> Limits {
    /// More connections than this would need more descriptors than most systems allow.
    const MAX_CONNECTIONS_LIMIT: u64 = 1_000_000;
    let defaults = Limits::default();
    let Some(raw) = raw.map(|s| s.value) else {
        return defaults;
    };
    let max_body_bytes = match raw.max_body_bytes {
        None => defaults.max_body_bytes,
        Some(s) => {
            if s.value == 0 || s.value > MAX_BODY_BYTES_LIMIT {
                cx.err(
                    s.referenced,
                    "limits.max_body_bytes",
                    format!("must be from 1 to {MAX_BODY_BYTES_LIMIT} (64 MiB), not {}", s.value),
                );
            }
            usize::try_from(s.value).unwrap_or(defaults.max_body_bytes)
        }
    };
    let mut count = |raw: Option<Spanned<u64>>, path: &str| {
        let s = raw?;
        if s.value == 0 || s.value > MAX_CONNECTIONS_LIMIT {
            cx.err(
                s.referenced,
                path,
                format!("must be from 1 to {MAX_CONNECTIONS_LIMIT}, not {}", s.value),
            );
            return None;
        }
        usize::try_from(s.value).ok()
    };
    let max_connections = count(raw.max_connections, "limits.max_connections");
    let max_connections_per_address =
        count(raw.max_connections_per_address, "limits.max_connections_per_address");
    let mut trusted_proxies = Vec::new();
    for (i, entry) in
        raw.trusted_proxies.map(|l| l.value).unwrap_or_default().into_iter().enumerate()
    {
        // A bare address is a network of one.
        let parsed = entry
            .value
            .parse::<ipnet::IpNet>()
            .or_else(|_| entry.value.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(net) => trusted_proxies.push(net.trunc()),
            Err(_) => cx.err(
                entry.referenced,
                &format!("limits.trusted_proxies[{i}]"),
                format!("`{}` is not an address or CIDR network (10.0.0.0/8, ::1)", entry.value),
            ),
        }
    }
    Limits {
        max_body_bytes,
        header_read_timeout: cx.duration(
            raw.header_read_timeout,
            "limits.header_read_timeout",
            defaults.header_read_timeout,
        ),
        request_timeout: cx.duration(
            raw.request_timeout,
            "limits.request_timeout",
            defaults.request_timeout,
        ),
        max_connections,
        max_connections_per_address,
        trusted_proxies,
    }
}

#[cfg(test)]
mod tests {
    use crate::config::testing::{env_of, find, load_text};

    #[test]
    fn body_limit_above_64_mib_is_rejected() {
        let errors = load_text("limits: { max_body_bytes: 67108865 }\n", &env_of(&[])).unwrap_err();
        assert!(find(&errors, "limits.max_body_bytes").message.contains("64 MiB"));
        let ok = load_text("limits: { max_body_bytes: 67108864 }\n", &env_of(&[])).unwrap();
        assert_eq!(ok.limits.max_body_bytes, 64 * 1024 * 1024);
    }
}
