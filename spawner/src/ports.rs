//! Port allocation over the configured range: never a port an instance holds, never one
//! another process has bound (checked for the protocols the port is for).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::ops::RangeInclusive;

use exile_api::v1;
use serde::{Deserialize, Serialize};

/// Protocols a port is reserved for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// TCP only.
    Tcp,
    /// UDP only.
    Udp,
    /// The same number for TCP and UDP.
    #[default]
    TcpUdp,
}

impl Protocol {
    /// Lower-case name used in messages: `tcp`, `udp` or `tcp+udp`.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::TcpUdp => "tcp+udp",
        }
    }
}

impl From<v1::Protocol> for Protocol {
    fn from(p: v1::Protocol) -> Self {
        match p {
            v1::Protocol::Tcp => Protocol::Tcp,
            v1::Protocol::Udp => Protocol::Udp,
            // Unspecified is never sent on purpose: reserve both, the safe reading.
            v1::Protocol::TcpUdp | v1::Protocol::Unspecified => Protocol::TcpUdp,
        }
    }
}

impl From<Protocol> for v1::Protocol {
    fn from(p: Protocol) -> Self {
        match p {
            Protocol::Tcp => v1::Protocol::Tcp,
            Protocol::Udp => v1::Protocol::Udp,
            Protocol::TcpUdp => v1::Protocol::TcpUdp,
        }
    }
}

/// Hands out ports from a range, round-robin so a port just freed is not reused at once.
#[derive(Debug)]
pub struct PortAllocator {
    range: RangeInclusive<u16>,
    next: u16,
}

impl PortAllocator {
    /// An allocator over `range` (both ends included).
    pub fn new(range: RangeInclusive<u16>) -> Self {
        let next = *range.start();
        Self { range, next }
    }

    /// The configured range.
    pub fn range(&self) -> &RangeInclusive<u16> {
        &self.range
    }

    /// A port outside `held` that is free on the host for `protocol`, or `None` when every
    /// port is taken.
    pub fn allocate(&mut self, held: &HashSet<u16>, protocol: Protocol) -> Option<u16> {
        self.allocate_with(held, |p| is_free(p, protocol))
    }

    /// Like [`allocate`](Self::allocate) with a custom free-port probe (for tests).
    pub fn allocate_with(
        &mut self,
        held: &HashSet<u16>,
        mut is_free: impl FnMut(u16) -> bool,
    ) -> Option<u16> {
        let (start, end) = (*self.range.start(), *self.range.end());
        let len = u32::from(end - start) + 1;
        let offset = u32::from(self.next.clamp(start, end) - start);
        for i in 0..len {
            let candidate = start + u16::try_from((offset + i) % len).ok()?;
            if held.contains(&candidate) || !is_free(candidate) {
                continue;
            }
            self.next = if candidate == end {
                start
            } else {
                candidate + 1
            };
            return Some(candidate);
        }
        None
    }
}

/// Whether `port` can be bound on all interfaces for both TCP and UDP right now.
pub fn is_port_free(port: u16) -> bool {
    is_free(port, Protocol::TcpUdp)
}

/// Whether `port` can be bound on all interfaces for `protocol` right now.
pub fn is_free(port: u16, protocol: Protocol) -> bool {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    let tcp = || TcpListener::bind(addr).is_ok();
    let udp = || UdpSocket::bind(addr).is_ok();
    match protocol {
        Protocol::Tcp => tcp(),
        Protocol::Udp => udp(),
        Protocol::TcpUdp => tcp() && udp(),
    }
}

/// The kernel's range for outgoing connections' local ports (`ip_local_port_range`), when
/// it can be read.
pub fn ephemeral_range() -> Option<RangeInclusive<u16>> {
    let text = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok()?;
    parse_ephemeral_range(&text)
}

fn parse_ephemeral_range(text: &str) -> Option<RangeInclusive<u16>> {
    let mut words = text.split_whitespace().map(str::parse::<u16>);
    let (Some(Ok(lo)), Some(Ok(hi))) = (words.next(), words.next()) else {
        return None;
    };
    (lo <= hi).then_some(lo..=hi)
}

/// Whether two port ranges share a port.
pub fn overlap(a: &RangeInclusive<u16>, b: &RangeInclusive<u16>) -> bool {
    a.start() <= b.end() && b.start() <= a.end()
}

/// How many ports of `range` the kernel may also hand to outgoing connections: a game whose
/// port was taken that way between allocation and its bind fails to start.
pub fn ephemeral_overlap(range: &RangeInclusive<u16>, ephemeral: &RangeInclusive<u16>) -> usize {
    let lo = (*range.start()).max(*ephemeral.start());
    let hi = (*range.end()).min(*ephemeral.end());
    if lo > hi { 0 } else { usize::from(hi - lo) + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_overlap_when_they_share_a_port() {
        assert!(overlap(&(7800..=7999), &(7999..=8100)));
        assert!(overlap(&(9357..=9556), &(9000..=9999)));
        assert!(!overlap(&(7800..=7999), &(8000..=8100)));
        assert!(!overlap(&(9357..=9556), &(7800..=7999)));
    }

    #[test]
    fn the_ephemeral_range_is_read_and_overlaps_counted() {
        assert_eq!(parse_ephemeral_range("32768\t60999\n"), Some(32768..=60999));
        assert_eq!(parse_ephemeral_range("60999 32768"), None);
        assert_eq!(parse_ephemeral_range("x 1"), None);
        assert_eq!(parse_ephemeral_range(""), None);
        let eph = 32768..=60999;
        assert_eq!(ephemeral_overlap(&(7000..=7999), &eph), 0);
        assert_eq!(ephemeral_overlap(&(32000..=32768), &eph), 1);
        assert_eq!(ephemeral_overlap(&(40000..=40099), &eph), 100);
        assert_eq!(ephemeral_overlap(&(60999..=65535), &eph), 1);
    }

    #[test]
    fn skips_held_ports_and_wraps_around() {
        let mut alloc = PortAllocator::new(100..=103);
        let all_free = |_| true;
        let mut held = HashSet::new();
        for expected in [100, 101, 102, 103] {
            let port = alloc.allocate_with(&held, all_free).unwrap();
            assert_eq!(port, expected);
            held.insert(port);
        }
        assert_eq!(alloc.allocate_with(&held, all_free), None);
        held.remove(&101);
        assert_eq!(alloc.allocate_with(&held, all_free), Some(101));
    }

    #[test]
    fn round_robin_does_not_reuse_a_just_freed_port() {
        let mut alloc = PortAllocator::new(100..=109);
        let mut held = HashSet::new();
        let a = alloc.allocate_with(&held, |_| true).unwrap();
        held.insert(a);
        held.remove(&a);
        let b = alloc.allocate_with(&held, |_| true).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn skips_ports_the_probe_reports_busy() {
        let mut alloc = PortAllocator::new(100..=102);
        let port = alloc.allocate_with(&HashSet::new(), |p| p == 102);
        assert_eq!(port, Some(102));
        assert_eq!(alloc.allocate_with(&HashSet::new(), |_| false), None);
    }

    #[test]
    fn single_port_range_at_the_top_of_the_port_space() {
        let mut alloc = PortAllocator::new(65535..=65535);
        assert_eq!(alloc.allocate_with(&HashSet::new(), |_| true), Some(65535));
        assert_eq!(alloc.allocate_with(&HashSet::new(), |_| true), Some(65535));
    }

    #[test]
    fn real_probe_sees_tcp_and_udp_binds() {
        // Find a port free for both protocols, then occupy each protocol in turn.
        let port = (0..50)
            .find_map(|_| {
                let l = TcpListener::bind("127.0.0.1:0").ok()?;
                let p = l.local_addr().ok()?.port();
                drop(l);
                is_port_free(p).then_some(p)
            })
            .expect("no free port found");
        let tcp = TcpListener::bind(("0.0.0.0", port)).unwrap();
        assert!(!is_port_free(port));
        let mut alloc = PortAllocator::new(port..=port);
        assert_eq!(alloc.allocate(&HashSet::new(), Protocol::TcpUdp), None);
        assert_eq!(alloc.allocate(&HashSet::new(), Protocol::Tcp), None);
        // A UDP-only port does not care about the TCP listener.
        assert_eq!(alloc.allocate(&HashSet::new(), Protocol::Udp), Some(port));
        drop(tcp);
        let udp = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        assert!(!is_port_free(port));
        assert_eq!(alloc.allocate(&HashSet::new(), Protocol::Udp), None);
        assert_eq!(alloc.allocate(&HashSet::new(), Protocol::Tcp), Some(port));
        drop(udp);
        assert!(is_port_free(port));
        assert_eq!(
            alloc.allocate(&HashSet::new(), Protocol::TcpUdp),
            Some(port)
        );
    }
}
