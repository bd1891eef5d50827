//! `host:port` entries of `network.allow`.

use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

/// One entry of an allow list: a host (DNS name, optionally `*.`-prefixed, IPv4 address or
/// bracketed IPv6 address) and a TCP port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    host: String,
    port: u16,
}

impl Endpoint {
    /// Parse `host:port`.
    ///
    /// # Errors
    /// A message naming what is wrong with `text`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| format!("{text:?} is not host:port ({why})");
        let (host, port) = if let Some(rest) = text.strip_prefix('[') {
            let (addr, after) = rest.split_once(']').ok_or_else(|| bad("unclosed `[`"))?;
            addr.parse::<Ipv6Addr>()
                .map_err(|_| bad("not an IPv6 address inside `[…]`"))?;
            let port = after
                .strip_prefix(':')
                .ok_or_else(|| bad("missing `:port`"))?;
            (format!("[{}]", addr.to_ascii_lowercase()), port)
        } else {
            let (host, port) = text
                .rsplit_once(':')
                .ok_or_else(|| bad("missing `:port`"))?;
            if host.parse::<Ipv4Addr>().is_err() && !is_dns_name(host) {
                return Err(bad("the host is not a DNS name or IPv4 address"));
            }
            (host.to_ascii_lowercase(), port)
        };
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| bad("the port must be a number from 1 to 65535"))?;
        Ok(Self { host, port })
    }

    /// The host as written (lower-cased). Advisory for Landlock, which enforces ports only.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The TCP port: the part Landlock enforces.
    pub fn port(&self) -> u16 {
        self.port
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

fn is_dns_name(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn good_endpoints() {
        for (text, host, port) in [
            ("api.github.com:443", "api.github.com", 443),
            ("127.0.0.1:8080", "127.0.0.1", 8080),
            ("[::1]:8080", "[::1]", 8080),
            ("*.crates.io:443", "*.crates.io", 443),
            ("PyPI.org:443", "pypi.org", 443),
            ("localhost:1", "localhost", 1),
        ] {
            let e = Endpoint::parse(text).unwrap();
            assert_eq!((e.host(), e.port()), (host, port), "{text}");
        }
    }

    #[test]
    fn bad_endpoints() {
        for text in [
            "api.github.com",
            "api.github.com:0",
            "api.github.com:65536",
            "api.github.com:https",
            ":443",
            "exa mple.com:443",
            "-bad.com:443",
            "a..b:443",
            "[::1:80",
            "[zz]:80",
            "::1:80",
            "https://x.com:443",
        ] {
            assert!(Endpoint::parse(text).is_err(), "{text} accepted");
        }
    }
}
