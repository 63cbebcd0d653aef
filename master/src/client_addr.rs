//! Where a call comes from: the socket's peer address, or, when that peer is a trusted
//! proxy (`--trusted-proxy`), the client X-Forwarded-For names.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

/// An IP network, `10.0.0.0/8` or `2001:db8::/32`; a bare address is a network of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    net: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| {
            format!("{s:?} is not an IP network: write an address and a prefix length, e.g. 10.0.0.0/8 or fd00::/8")
        })?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(p) if p <= max => p,
                _ => return Err(format!("{s:?}: the prefix length must be 0 to {max}")),
            },
        };
        let cidr = Cidr { net, prefix };
        if cidr.masked(net) != net {
            return Err(format!(
                "{s:?} has bits set past its prefix; did you mean {}/{prefix}?",
                cidr.masked(net)
            ));
        }
        Ok(cidr)
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.net, self.prefix)
    }
}

impl Cidr {
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(a) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V4((u32::from(a) & mask).into())
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                IpAddr::V6((u128::from(a) & mask).into())
            }
        }
    }

    /// Whether `ip` is in this network (an IPv4 address mapped into IPv6 counts as IPv4).
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && self.masked(ip) == self.net
    }
}

/// The proxies whose X-Forwarded-For is believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// From the `--trusted-proxy` networks.
    pub fn new(nets: Vec<Cidr>) -> Self {
        TrustedProxies(nets)
    }

    pub fn trusts(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The client's address: the socket peer, unless it is a trusted proxy; then the last
    /// X-Forwarded-For hop that is not itself a trusted proxy (hops further left were
    /// written by the client and prove nothing). A header that cannot be read leaves the
    /// proxy's own address.
    pub fn client(&self, peer: IpAddr, headers: &http::HeaderMap) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let mut hops = Vec::new();
        for v in headers.get_all("x-forwarded-for") {
            let Ok(v) = v.to_str() else { return peer };
            for hop in v.split(',') {
                match parse_hop(hop) {
                    Some(ip) => hops.push(ip),
                    None => return peer,
                }
            }
        }
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            client = hop;
            if !self.trusts(hop) {
                break;
            }
        }
        client
    }
}

/// The source a client address is throttled as: the address itself for IPv4, its /64 for
/// IPv6 (one host usually holds a whole /64, so single addresses would be free to rotate).
/// Anything that is not an address is its own source.
pub fn throttle_source(peer: &str) -> String {
    match peer.parse::<IpAddr>().map(|ip| ip.to_canonical()) {
        Ok(IpAddr::V6(a)) => {
            let net = u128::from(a) & (u128::MAX << 64);
            format!("{}/64", std::net::Ipv6Addr::from(net))
        }
        Ok(ip) => ip.to_string(),
        Err(_) => peer.to_owned(),
    }
}

/// One X-Forwarded-For entry: an address, possibly with a port (`1.2.3.4:5678`,
/// `[2001:db8::1]:80`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip.to_canonical());
    }
    hop.parse::<std::net::SocketAddr>()
        .ok()
        .map(|s| s.ip().to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> http::HeaderMap {
        let mut h = http::HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn networks_parse_and_match() {
        let n: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(n.contains(ip("10.1.200.3")));
        assert!(!n.contains(ip("10.2.0.1")));
        assert!(n.contains(ip("::ffff:10.1.0.9")), "mapped IPv4 counts");
        let one: Cidr = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        assert!(one.contains(ip("127.0.0.1")) && !one.contains(ip("127.0.0.2")));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")) && !all.contains(ip("::1")));
        let v6: Cidr = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        for bad in [
            "10.0.0.0/33",
            "10.0.0.1/8",
            "ten/8",
            "",
            "::/129",
            "10.0.0.0/x",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
        let e = "10.0.0.1/8".parse::<Cidr>().unwrap_err();
        assert!(e.contains("10.0.0.0/8"), "{e}");
    }

    #[test]
    fn ipv6_clients_are_throttled_by_their_64() {
        assert_eq!(throttle_source("2001:db8:1:2:aaaa::1"), "2001:db8:1:2::/64");
        assert_eq!(
            throttle_source("2001:db8:1:2:ffff::9"),
            throttle_source("2001:db8:1:2::1")
        );
        assert_ne!(
            throttle_source("2001:db8:1:3::1"),
            throttle_source("2001:db8:1:2::1")
        );
        assert_eq!(throttle_source("::ffff:192.0.2.1"), "192.0.2.1");
        assert_eq!(throttle_source("192.0.2.1"), "192.0.2.1");
        assert_eq!(throttle_source("unknown"), "unknown");
    }

    #[test]
    fn forwarded_for_is_believed_only_from_a_trusted_proxy() {
        let proxies = TrustedProxies::new(vec!["10.0.0.0/8".parse().unwrap()]);
        let h = xff(&["6.6.6.6, 203.0.113.7"]);
        // Untrusted peer: its header is ignored.
        assert_eq!(proxies.client(ip("198.51.100.1"), &h), ip("198.51.100.1"));
        // Trusted peer: the last hop it names.
        assert_eq!(proxies.client(ip("10.0.0.5"), &h), ip("203.0.113.7"));
        // Trusted hops are skipped, left of them the client's own claims are not believed.
        let chain = xff(&["1.1.1.1", "203.0.113.7, 10.9.9.9"]);
        assert_eq!(proxies.client(ip("10.0.0.5"), &chain), ip("203.0.113.7"));
        // Ports, IPv6 in brackets.
        let ported = xff(&["[2001:db8::1]:443"]);
        assert_eq!(proxies.client(ip("10.0.0.5"), &ported), ip("2001:db8::1"));
        // No header, or garbage: the proxy's own address.
        assert_eq!(proxies.client(ip("10.0.0.5"), &xff(&[])), ip("10.0.0.5"));
        let junk = xff(&["not an address"]);
        assert_eq!(proxies.client(ip("10.0.0.5"), &junk), ip("10.0.0.5"));
        // Nobody trusted: the socket always.
        let none = TrustedProxies::default();
        assert_eq!(none.client(ip("10.0.0.5"), &h), ip("10.0.0.5"));
    }
}
