//! Port allocation over the configured range: never a port an instance holds, never one
//! another process has bound (checked for both TCP and UDP).

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, UdpSocket};
use std::ops::RangeInclusive;

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

    /// A port outside `held` that is free on the host, or `None` when every port is taken.
    pub fn allocate(&mut self, held: &HashSet<u16>) -> Option<u16> {
        self.allocate_with(held, is_port_free)
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
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port);
    TcpListener::bind(addr).is_ok() && UdpSocket::bind(addr).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(alloc.allocate(&HashSet::new()), None);
        drop(tcp);
        let udp = UdpSocket::bind(("0.0.0.0", port)).unwrap();
        assert!(!is_port_free(port));
        drop(udp);
        assert!(is_port_free(port));
        assert_eq!(alloc.allocate(&HashSet::new()), Some(port));
    }
}
