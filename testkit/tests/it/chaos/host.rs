//! Host-level faults for the chaos tests: a network namespace joined to the host by a veth
//! pair, and a small tmpfs. Each is undone by a Drop guard, so a failing test leaves nothing
//! behind. Where the host cannot do it (not root, no `ip`), the test says so loudly and passes,
//! except under CI, where a chaos test that cannot run is a failure.

use std::io::Write;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

/// A chaos test cannot run on this host: a loud skip, or under CI a failure.
pub fn skip(why: &str) {
    crate::support::cannot_run(
        "chaos test",
        &format!("{why} (CI runs as root with iproute2 installed)"),
    );
}

/// Runs a command; Err carries what it printed.
fn run(program: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Tells guards of one test binary apart (tests run in parallel).
static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace with a veth pair to the host on a private /30 (10.213.x.y).
pub struct NetNs {
    /// Namespace name, for `ip netns exec`.
    pub name: String,
    host_if: String,
    /// Address of the host end.
    pub host_ip: Ipv4Addr,
    /// Address of the namespace end.
    pub ns_ip: Ipv4Addr,
}

impl NetNs {
    /// Creates the namespace and the link; Err says why the host cannot.
    pub fn create() -> Result<NetNs, String> {
        run("ip", &["-V"]).map_err(|e| format!("no `ip` (iproute2): {e}"))?;
        let pid = std::process::id();
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // Interface names are at most 15 bytes: "exh" + pid (≤ 7 digits) + "x" + n.
        let (host_if, ns_if) = (format!("exh{pid}x{n}"), format!("exn{pid}x{n}"));
        // A /30 chosen by pid so parallel runs on one host rarely share a subnet.
        let k = (pid.wrapping_mul(7).wrapping_add(n)) % 16_384;
        let (third, base) = ((k / 64) as u8, ((k % 64) * 4) as u8);
        let ns = NetNs {
            name: format!("exile-chaos-{pid}-{n}"),
            host_if,
            host_ip: Ipv4Addr::new(10, 213, third, base + 1),
            ns_ip: Ipv4Addr::new(10, 213, third, base + 2),
        };
        // Without root (CAP_SYS_ADMIN) this is where it fails, and the error says so.
        run("ip", &["netns", "add", &ns.name])
            .map_err(|e| format!("cannot create a network namespace: {e}"))?;
        // From here on, Drop removes whatever was made.
        let (h, nsn) = (ns.host_if.clone(), ns.name.clone());
        let (host_cidr, ns_cidr) = (format!("{}/30", ns.host_ip), format!("{}/30", ns.ns_ip));
        run(
            "ip",
            &[
                "link", "add", &h, "type", "veth", "peer", "name", &ns_if, "netns", &nsn,
            ],
        )?;
        run("ip", &["addr", "add", &host_cidr, "dev", &h])?;
        run("ip", &["link", "set", &h, "up"])?;
        run("ip", &["-n", &nsn, "addr", "add", &ns_cidr, "dev", &ns_if])?;
        run("ip", &["-n", &nsn, "link", "set", &ns_if, "up"])?;
        // The spawner's SDK endpoint and its games talk over the namespace's own loopback.
        run("ip", &["-n", &nsn, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// Prefix that runs a program inside the namespace.
    pub fn exec_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.name.clone(),
        ]
    }

    /// Partitions the namespace from the host (the link goes down; sockets stay open).
    pub fn cut(&self) -> Result<(), String> {
        run("ip", &["link", "set", &self.host_if, "down"])
    }

    /// Heals the partition.
    pub fn heal(&self) -> Result<(), String> {
        run("ip", &["link", "set", &self.host_if, "up"])
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        // Deleting one end of a veth pair deletes both.
        let _ = run("ip", &["link", "del", &self.host_if]);
        let _ = run("ip", &["netns", "del", &self.name]);
    }
}

/// A tmpfs of a fixed size mounted on a temporary directory.
pub struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs of `mib` MiB; Err says why the host cannot.
    pub fn mount(mib: u32) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| format!("no temporary directory: {e}"))?;
        let path = dir.path().to_string_lossy().into_owned();
        run(
            "mount",
            &[
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0700"),
                "tmpfs",
                &path,
            ],
        )
        .map_err(|e| format!("cannot mount a tmpfs: {e}"))?;
        Ok(Tmpfs { dir })
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills it up with `<path>/filler` until the kernel says it is full; returns that file.
    pub fn fill(&self) -> std::io::Result<PathBuf> {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path)?;
        let chunk = vec![0xa5u8; 1 << 20];
        loop {
            match f.write_all(&chunk) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e),
            }
        }
        // Whatever room the last partial chunk left, take it too.
        loop {
            match f.write(&chunk[..512]) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => return Err(e),
            }
        }
        Ok(path)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process of a failed test may still hold a file open in it.
        let _ = run("umount", &["-l", &self.path().to_string_lossy()]);
    }
}
