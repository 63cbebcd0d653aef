//! Who is on the other end of a loopback TCP connection: the socket's inode from
//! `/proc/net/tcp` (or `tcp6`), the process holding that inode among its descriptors, and
//! whether that process belongs to an instance (its game, or a descendant of it, or a member
//! of its process group). The Agones SDK carries no secret, so this is what keeps one
//! instance (or any other local process) off another instance's SDK ports.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// How many parents are followed at most when looking for the game among a process's
/// ancestors (a loop guard; real chains are a handful deep).
const MAX_ANCESTRY: usize = 64;

/// The inode of the TCP socket whose local end is `peer` and remote end is `ours`, from the
/// `/proc/net` tables under `proc_net`; `None` when no such socket is listed.
pub fn socket_inode(proc_net: &Path, peer: SocketAddr, ours: SocketAddr) -> Option<u64> {
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = std::fs::read_to_string(proc_net.join(table)).ok()?;
        find_inode(&text, peer, ours)
    })
}

/// The inode of the row of a `/proc/net/tcp{,6}` table whose local address is `local` and
/// remote address `remote`. IPv4 addresses also match their IPv4-mapped IPv6 form, as a
/// dual-stack socket lists them in `tcp6`.
pub fn find_inode(table: &str, local: SocketAddr, remote: SocketAddr) -> Option<u64> {
    table.lines().skip(1).find_map(|line| {
        let mut fields = line.split_whitespace();
        let _slot = fields.next()?;
        let row_local = parse_addr(fields.next()?)?;
        let row_remote = parse_addr(fields.next()?)?;
        if !same(row_local, local) || !same(row_remote, remote) {
            return None;
        }
        // st, tx:rx, tr:when, retrnsmt, uid, timeout, then the inode.
        fields.nth(6)?.parse().ok()
    })
}

/// Whether two socket addresses are the same, an IPv4 one matching its IPv4-mapped form.
fn same(a: SocketAddr, b: SocketAddr) -> bool {
    let canon = |ip: IpAddr| match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    a.port() == b.port() && canon(a.ip()) == canon(b.ip())
}

/// One `ADDR:PORT` of a `/proc/net/tcp{,6}` row: the address as the kernel's 32-bit words in
/// host byte order (hex), the port in hex.
fn parse_addr(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(
            u32::from_str_radix(addr, 16).ok()?.to_ne_bytes(),
        )),
        32 => {
            let mut bytes = [0u8; 16];
            for (i, chunk) in bytes.chunks_mut(4).enumerate() {
                let word = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
                chunk.copy_from_slice(&word.to_ne_bytes());
            }
            IpAddr::V6(Ipv6Addr::from(bytes))
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

/// The process (under `proc_root`) that holds socket `inode` among its open descriptors;
/// `None` when none this spawner may look at does.
pub fn socket_owner(proc_root: &Path, inode: u64) -> Option<u32> {
    let wanted = format!("socket:[{inode}]");
    let entries = std::fs::read_dir(proc_root).ok()?;
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|pid| {
            let Ok(fds) = std::fs::read_dir(proc_root.join(pid.to_string()).join("fd")) else {
                return false;
            };
            fds.filter_map(Result::ok).any(|fd| {
                std::fs::read_link(fd.path())
                    .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            })
        })
}

/// The parent pid and process group of `pid`, from `/proc/<pid>/stat`.
fn parent_and_group(proc_root: &Path, pid: u32) -> Option<(u32, u32)> {
    let stat = std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields follow its last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let _state = fields.next()?;
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((ppid, pgrp))
}

/// Whether `pid` belongs to the instance whose game is `game`: the game itself, one of its
/// descendants, or a member of its process group (the spawner starts every game as the leader
/// of its own group, and a stop ends the whole group).
pub fn belongs_to(proc_root: &Path, pid: u32, game: u32) -> bool {
    if game == 0 {
        return false;
    }
    let mut current = pid;
    for _ in 0..MAX_ANCESTRY {
        if current == game {
            return true;
        }
        let Some((parent, group)) = parent_and_group(proc_root, current) else {
            return false;
        };
        if group == game {
            return true;
        }
        if parent <= 1 {
            return false;
        }
        current = parent;
    }
    false
}

/// The verdict on one caller of an instance's SDK ports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// One of the instance's processes.
    Instance(u32),
    /// A process outside the instance.
    Outsider(u32),
    /// No process this spawner may see holds the other end (another user's, or gone).
    Unknown,
}

/// Identifies the caller connected from `peer` to our `ours`, for the instance whose game is
/// `game`, reading the live `/proc`.
pub fn identify(peer: SocketAddr, ours: SocketAddr, game: Option<u32>) -> Caller {
    let proc_root = Path::new("/proc");
    let Some(inode) = socket_inode(&proc_root.join("net"), peer, ours) else {
        return Caller::Unknown;
    };
    let Some(pid) = socket_owner(proc_root, inode) else {
        return Caller::Unknown;
    };
    match game {
        Some(game) if belongs_to(proc_root, pid, game) => Caller::Instance(pid),
        _ => Caller::Outsider(pid),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TCP: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:2481 00000000:0000 0A 00000000:00000000 00:00000000 00000000  1000        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:C350 0100007F:2481 01 00000000:00000000 00:00000000 00000000  1000        0 222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:2481 0100007F:C350 01 00000000:00000000 00:00000000 00000000  1000        0 333 1 0000000000000000 20 4 30 10 -1
";

    #[test]
    fn the_row_is_found_by_both_ends() {
        let server: SocketAddr = "127.0.0.1:9345".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(find_inode(TCP, client, server), Some(222));
        assert_eq!(find_inode(TCP, server, client), Some(333));
        assert_eq!(
            find_inode(TCP, "127.0.0.1:50001".parse().unwrap(), server),
            None
        );
    }

    #[test]
    fn ipv6_rows_and_mapped_addresses_are_read() {
        // ::ffff:127.0.0.1 port 50000 talking to ::ffff:127.0.0.1 port 9345, as a dual-stack
        // socket lists it.
        let table = "  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000100007F:C350 0000000000000000FFFF00000100007F:2481 01 00000000:00000000 00:00000000 00000000  1000        0 444 1 0000000000000000 20 4 30 10 -1
";
        let server: SocketAddr = "127.0.0.1:9345".parse().unwrap();
        let client: SocketAddr = "127.0.0.1:50000".parse().unwrap();
        assert_eq!(find_inode(table, client, server), Some(444));
        assert_eq!(
            parse_addr("00000000000000000000000001000000:0050"),
            Some("[::1]:80".parse().unwrap())
        );
    }

    #[test]
    fn a_live_connection_is_traced_to_this_process() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        let client = std::net::TcpStream::connect(server).unwrap();
        let (_accepted, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let me = std::process::id();
        let inode = socket_inode(Path::new("/proc/net"), peer, server).unwrap();
        assert_eq!(socket_owner(Path::new("/proc"), inode), Some(me));
        assert_eq!(identify(peer, server, Some(me)), Caller::Instance(me));
        // Nobody else's: an instance whose game is some other process refuses it.
        let other = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert_eq!(
            identify(peer, server, Some(other.id())),
            Caller::Outsider(me)
        );
        assert_eq!(identify(peer, server, None), Caller::Outsider(me));
        // And the child belongs to us, its parent, but not the other way round.
        assert!(belongs_to(Path::new("/proc"), other.id(), me));
        assert!(!belongs_to(Path::new("/proc"), me, other.id()));
        let mut other = other;
        other.kill().unwrap();
        other.wait().unwrap();
    }
}
