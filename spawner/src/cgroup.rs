//! Memory and CPU caps of games through cgroups v2: finding a subtree of the cgroup v2
//! hierarchy this spawner may write, and one cgroup per capped instance in it.
//!
//! # The tree
//! The spawner lives in a cgroup of its own (systemd `Delegate=yes` hands a service its cgroup
//! and the right to make children), or an operator names one it may write with
//! `--cgroup-root`. That cgroup is the root of Exile's tree:
//!
//! ```text
//! <root>/                  memory and cpu enabled in cgroup.subtree_control
//! <root>/spawner/          the spawner, its supervisors, and games without caps
//! <root>/exile-<id>/       one capped game and everything it forks (memory.max, cpu.max)
//! ```
//!
//! A cgroup that enables controllers for its children may hold no processes itself (the
//! kernel's "no internal processes" rule), so a spawner that starts in the root moves itself
//! into the `spawner` leaf first; one that starts in a leaf named `spawner` (systemd's
//! `DelegateSubgroup=spawner`, or a spawner restarted under the same tree) takes its parent as
//! the root.
//!
//! A game joins its cgroup between fork and exec (the supervisor writes `0` to the cgroup's
//! `cgroup.procs` through a descriptor opened before the fork), so the caps bind it and all it
//! forks from its first instruction; the supervisor itself stays outside, where a game that
//! runs out of memory cannot take it down. The cgroup outlives spawner restarts like the game
//! does, and goes when the instance is removed.
//!
//! Everything here works over paths, so the tests run it against a fake tree in a directory.

use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use exile_api::limits::ResourceCaps;
use nix::errno::Errno;

/// The controllers caps need.
pub const CONTROLLERS: [&str; 2] = ["memory", "cpu"];
/// The leaf the spawner and its supervisors live in.
pub const SPAWNER_LEAF: &str = "spawner";
/// Period of `cpu.max`, microseconds: the kernel's default, 100 ms.
pub const CPU_PERIOD_US: u64 = 100_000;
/// Prefix of an instance's cgroup name.
const INSTANCE_PREFIX: &str = "exile-";

/// Whether games can be capped on this spawner.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cgroups {
    /// A tree with memory and cpu enabled for its children.
    Available(CgroupTree),
    /// Why not, as a sentence for operators.
    Unsupported(String),
}

impl Default for Cgroups {
    fn default() -> Self {
        Self::Unsupported("cgroups were not looked for".into())
    }
}

impl Cgroups {
    /// Looks for a tree on this host: `explicit` (`--cgroup-root`) or the spawner's own
    /// cgroup, from `/proc/self/cgroup` and `/proc/self/mountinfo`; moves this process into
    /// the tree's `spawner` leaf when it sits in the root. Never fails: what stands in the
    /// way is the `Unsupported` reason.
    pub fn detect(explicit: Option<&Path>) -> Self {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let own = locate_own(&read("/proc/self/cgroup"), &read("/proc/self/mountinfo"));
        let (root, own) = match (explicit, own) {
            (Some(root), own) => (root.to_owned(), own.ok()),
            (None, Ok(own)) => (tree_root(&own), Some(own)),
            (None, Err(reason)) => return Self::Unsupported(reason),
        };
        match CgroupTree::set_up(&root, own.as_deref(), std::process::id()) {
            Ok(tree) => Self::Available(tree),
            Err(reason) => Self::Unsupported(reason),
        }
    }
}

/// The root of the tree for a spawner whose cgroup is `own`: its parent when it already sits
/// in a `spawner` leaf, else its own cgroup.
pub fn tree_root(own: &Path) -> PathBuf {
    match (own.file_name(), own.parent()) {
        (Some(name), Some(parent)) if name == SPAWNER_LEAF => parent.to_owned(),
        _ => own.to_owned(),
    }
}

/// The directory of this process's cgroup v2, from the texts of `/proc/self/cgroup` and
/// `/proc/self/mountinfo`; the error says why there is none.
pub fn locate_own(proc_cgroup: &str, mountinfo: &str) -> Result<PathBuf, String> {
    let own = proc_cgroup
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("this host runs cgroup v1 only (/proc/self/cgroup has no cgroup v2 entry)")?;
    // A cgroup left behind by a move shows as "/path (deleted)"; nothing can be made there.
    if own.ends_with(" (deleted)") {
        return Err(format!("the spawner's cgroup {own} is gone"));
    }
    let mounts = cgroup2_mounts(mountinfo);
    if mounts.is_empty() {
        return Err("no cgroup2 file system is mounted (/proc/self/mountinfo)".into());
    }
    // The mount that shows the deepest part of the hierarchy holding our cgroup.
    mounts
        .iter()
        .filter_map(|(root, point)| {
            let rest = if root == "/" {
                own.strip_prefix('/')
            } else {
                own.strip_prefix(root.as_str())
                    .filter(|r| r.is_empty() || r.starts_with('/'))
                    .map(|r| r.trim_start_matches('/'))
            }?;
            Some((root.len(), point.join(rest)))
        })
        .max_by_key(|(depth, _)| *depth)
        .map(|(_, dir)| dir)
        .ok_or_else(|| {
            format!("the spawner's cgroup {own} is under no mounted cgroup2 file system")
        })
}

/// `(root in the hierarchy, mount point)` of every cgroup2 mount in a mountinfo text.
fn cgroup2_mounts(mountinfo: &str) -> Vec<(String, PathBuf)> {
    mountinfo
        .lines()
        .filter_map(|line| {
            let (fields, fs) = line.split_once(" - ")?;
            if fs.split_whitespace().next()? != "cgroup2" {
                return None;
            }
            let mut f = fields.split_whitespace();
            let root = f.nth(3)?;
            let point = f.next()?;
            Some((unescape(root), PathBuf::from(unescape(point))))
        })
        .collect()
}

/// Mountinfo writes space, tab, newline and backslash as `\ooo` octal.
fn unescape(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        let octal = b
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match (b[i], octal) {
            (b'\\', Some(d)) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A cgroup v2 subtree with memory and cpu enabled for its children, where capped games get
/// a cgroup each.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupTree {
    root: PathBuf,
}

impl CgroupTree {
    /// Makes `root` ready: memory and cpu offered to it (`cgroup.controllers`), no process
    /// of its own (this one, `pid`, moves into the `spawner` leaf when `own` is the root;
    /// others there make it unusable), and both enabled for its children. The error is the
    /// reason for operators.
    pub fn set_up(root: &Path, own: Option<&Path>, pid: u32) -> Result<Self, String> {
        let shown = root.display();
        let offered = std::fs::read_to_string(root.join("cgroup.controllers")).map_err(|e| {
            format!("{shown} is not a cgroup v2 directory (cgroup.controllers: {e})")
        })?;
        let offered: Vec<&str> = offered.split_whitespace().collect();
        let missing: Vec<&str> = CONTROLLERS
            .into_iter()
            .filter(|c| !offered.contains(c))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "the cgroup v2 {shown} is not given the {} controller{} (it has: {}); {}",
                missing.join(" and "),
                if missing.len() > 1 { "s" } else { "" },
                if offered.is_empty() {
                    "none".to_owned()
                } else {
                    offered.join(" ")
                },
                "on a host that mounts them as cgroup v1 boot with systemd.unified_cgroup_hierarchy=1; otherwise run the spawner under systemd with Delegate=yes, or give --cgroup-root a subtree they are delegated to"
            ));
        }
        if own == Some(root) {
            let others: Vec<u32> = read_pids(&root.join("cgroup.procs"))
                .map_err(|e| format!("could not read {shown}/cgroup.procs: {e}"))?
                .into_iter()
                .filter(|p| *p != pid)
                .collect();
            if !others.is_empty() {
                return Err(format!(
                    "the spawner's cgroup {shown} holds {} other process{} (e.g. pid {}), so it cannot hand memory and cpu to cgroups below it; run the spawner in a cgroup of its own (its systemd unit with Delegate=yes) or give --cgroup-root",
                    others.len(),
                    if others.len() > 1 { "es" } else { "" },
                    others[0]
                ));
            }
            let leaf = root.join(SPAWNER_LEAF);
            make_dir(&leaf)
                .map_err(|e| format!("could not create the cgroup {}: {e}", leaf.display()))?;
            write(&leaf.join("cgroup.procs"), &pid.to_string())
                .map_err(|e| format!("could not move the spawner into {}: {e}", leaf.display()))?;
            tracing::info!(cgroup = %leaf.display(), "the spawner moved into its own leaf cgroup");
        }
        let control = root.join("cgroup.subtree_control");
        let enabled = std::fs::read_to_string(&control).unwrap_or_default();
        if !CONTROLLERS
            .iter()
            .all(|c| enabled.split_whitespace().any(|e| e == *c))
        {
            write(&control, "+memory +cpu").map_err(|e| {
                let why = match e.raw_os_error().map(Errno::from_raw) {
                    Some(Errno::EBUSY) => " (processes live in it: move them into a child cgroup)",
                    Some(Errno::EACCES | Errno::EPERM | Errno::EROFS) => {
                        " (not delegated to the spawner's user: systemd Delegate=yes, or root)"
                    }
                    _ => "",
                };
                format!(
                    "could not enable memory and cpu in {}: {e}{why}",
                    control.display()
                )
            })?;
        }
        Ok(Self {
            root: root.to_owned(),
        })
    }

    /// The root of the tree.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The cgroup of instance `id` (an id the API checked: no `/`, never `.` or `..`).
    pub fn instance(&self, id: &str) -> PathBuf {
        self.root.join(format!("{INSTANCE_PREFIX}{id}"))
    }

    /// Creates (or keeps) instance `id`'s cgroup and writes `caps` into it: `memory.max`
    /// (with no swap beyond it where the host has swap accounting) and `cpu.max`; an unset
    /// cap is written as `max`, so a cap taken away by a new build goes too. Returns the
    /// cgroup's directory, for the game to join.
    pub fn create(&self, id: &str, caps: &ResourceCaps) -> io::Result<PathBuf> {
        let dir = self.instance(id);
        make_dir(&dir)?;
        let memory = caps
            .memory_bytes
            .map_or_else(|| "max".to_owned(), |m| m.to_string());
        write(&dir.join("memory.max"), &memory)?;
        let swap = dir.join("memory.swap.max");
        if swap.exists() {
            write(
                &swap,
                if caps.memory_bytes.is_some() {
                    "0"
                } else {
                    "max"
                },
            )?;
        }
        write(&dir.join("cpu.max"), &cpu_max(caps.cpu_millicores))?;
        Ok(dir)
    }

    /// Removes instance `id`'s cgroup: kills what is left in it (`cgroup.kill`, a game's
    /// process that left its group), waits for it to empty and removes it. Nothing to do
    /// when it does not exist.
    pub fn remove(&self, id: &str) -> io::Result<()> {
        let dir = self.instance(id);
        if !dir.exists() {
            return Ok(());
        }
        let kill = dir.join("cgroup.kill");
        if kill.exists() {
            write(&kill, "1")?;
        }
        // The kill is asynchronous: the cgroup is busy until the last process is reaped.
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            match remove_cgroup_dir(&dir) {
                Ok(()) => return Ok(()),
                Err(e)
                    if e.raw_os_error() == Some(Errno::EBUSY as i32)
                        && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// `cpu.max` for a cap in thousandths of a core: `"<quota> <period>"` in microseconds.
pub fn cpu_max(millicores: Option<u32>) -> String {
    match millicores {
        Some(m) => format!("{} {CPU_PERIOD_US}", u64::from(m) * CPU_PERIOD_US / 1000),
        None => format!("max {CPU_PERIOD_US}"),
    }
}

fn make_dir(dir: &Path) -> io::Result<()> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}

/// Writes `value` into a cgroup file in one `write`, as the kernel wants. A cgroup's files
/// exist with it; creating one is for the plain directories standing in for cgroups in tests.
fn write(file: &Path, value: &str) -> io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .create(cfg!(test))
        .open(file)?;
    f.write_all(value.as_bytes())
}

/// Removing a cgroup takes its interface files with it; a plain directory standing in for
/// one in tests needs them removed by hand.
fn remove_cgroup_dir(dir: &Path) -> io::Result<()> {
    if cfg!(test) {
        std::fs::remove_dir_all(dir)
    } else {
        std::fs::remove_dir(dir)
    }
}

fn read_pids(file: &Path) -> io::Result<Vec<u32>> {
    Ok(std::fs::read_to_string(file)?
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    const V1_CGROUP: &str = "12:memory:/user.slice\n4:cpu,cpuacct:/user.slice\n1:name=systemd:/user.slice/session-3.scope\n";
    const V1_MOUNTINFO: &str = "25 1 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755\n30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    const HYBRID_CGROUP: &str = "4:memory:/system.slice/exile-spawner.service\n1:name=systemd:/system.slice/exile-spawner.service\n0::/system.slice/exile-spawner.service\n";
    const HYBRID_MOUNTINFO: &str = "25 1 0:22 / /sys/fs/cgroup ro - tmpfs tmpfs ro,mode=755\n41 25 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n30 25 0:26 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
    const V2_CGROUP: &str = "0::/system.slice/exile-spawner.service\n";
    const V2_MOUNTINFO: &str = "22 1 0:21 / / rw - ext4 /dev/sda1 rw\n35 22 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec - cgroup2 cgroup2 rw,nsdelegate\n";

    #[test]
    fn the_own_cgroup_is_found_on_v2_and_hybrid_hosts_and_refused_on_v1() {
        assert_eq!(
            locate_own(V2_CGROUP, V2_MOUNTINFO).unwrap(),
            Path::new("/sys/fs/cgroup/system.slice/exile-spawner.service")
        );
        assert_eq!(
            locate_own(HYBRID_CGROUP, HYBRID_MOUNTINFO).unwrap(),
            Path::new("/sys/fs/cgroup/unified/system.slice/exile-spawner.service")
        );
        let e = locate_own(V1_CGROUP, V1_MOUNTINFO).unwrap_err();
        assert!(e.contains("cgroup v1 only"), "{e}");
        let e = locate_own(V2_CGROUP, V1_MOUNTINFO).unwrap_err();
        assert!(e.contains("no cgroup2 file system"), "{e}");
        // A container whose cgroup namespace shows its own cgroup as the root.
        assert_eq!(
            locate_own("0::/\n", V2_MOUNTINFO).unwrap(),
            Path::new("/sys/fs/cgroup/")
        );
        // A bind mount of part of the hierarchy, with a space in its mount point.
        let bind = "50 22 0:30 /system.slice /srv/cg\\040tree rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            locate_own(V2_CGROUP, &format!("{V2_MOUNTINFO}{bind}")).unwrap(),
            Path::new("/srv/cg tree/exile-spawner.service")
        );
        let e = locate_own("0::/gone (deleted)\n", V2_MOUNTINFO).unwrap_err();
        assert!(e.contains("gone"), "{e}");
    }

    #[test]
    fn a_spawner_already_in_its_leaf_takes_the_parent_as_root() {
        assert_eq!(
            tree_root(Path::new("/sys/fs/cgroup/x.service/spawner")),
            Path::new("/sys/fs/cgroup/x.service")
        );
        assert_eq!(
            tree_root(Path::new("/sys/fs/cgroup/x.service")),
            Path::new("/sys/fs/cgroup/x.service")
        );
    }

    /// A directory laid out like a delegated cgroup v2 the kernel offers `controllers` to,
    /// holding `procs`.
    fn fake(controllers: &str, procs: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("exile-spawner.service");
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("cgroup.controllers"), controllers).unwrap();
        std::fs::write(root.join("cgroup.subtree_control"), "").unwrap();
        std::fs::write(root.join("cgroup.procs"), procs).unwrap();
        (dir, root)
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn a_delegated_cgroup_becomes_a_tree_with_the_spawner_in_its_leaf() {
        let (_dir, root) = fake("cpuset cpu io memory pids\n", "4242\n");
        let tree = CgroupTree::set_up(&root, Some(&root), 4242).unwrap();
        assert_eq!(tree.root(), root);
        assert_eq!(read(&root.join("spawner/cgroup.procs")), "4242");
        assert_eq!(read(&root.join("cgroup.subtree_control")), "+memory +cpu");

        // Restarted in its leaf: nothing moves, the controllers stay enabled.
        std::fs::write(root.join("cgroup.subtree_control"), "cpu memory\n").unwrap();
        std::fs::write(root.join("spawner/cgroup.procs"), "sentinel").unwrap();
        let own = root.join("spawner");
        let again = CgroupTree::set_up(&tree_root(&own), Some(&own), 5000).unwrap();
        assert_eq!(again, tree);
        assert_eq!(read(&root.join("spawner/cgroup.procs")), "sentinel");
        assert_eq!(read(&root.join("cgroup.subtree_control")), "cpu memory\n");
    }

    #[test]
    fn a_tree_without_the_controllers_or_shared_with_others_is_refused_with_the_reason() {
        // A hybrid host's cgroup2 has only what v1 did not take.
        let (_dir, root) = fake("hugetlb\n", "4242\n");
        let e = CgroupTree::set_up(&root, Some(&root), 4242).unwrap_err();
        assert!(
            e.contains("not given the memory and cpu controllers (it has: hugetlb)"),
            "{e}"
        );
        assert!(e.contains("Delegate=yes"), "{e}");
        assert!(!root.join("spawner").exists(), "nothing is touched");
        let (_dir, root) = fake("memory pids\n", "4242\n");
        let e = CgroupTree::set_up(&root, Some(&root), 4242).unwrap_err();
        assert!(e.contains("not given the cpu controller"), "{e}");
        // A cgroup the spawner shares (a login session's scope) is left as it is.
        let (_dir, root) = fake("cpu memory\n", "17\n4242\n99\n");
        let e = CgroupTree::set_up(&root, Some(&root), 4242).unwrap_err();
        assert!(e.contains("holds 2 other processes (e.g. pid 17)"), "{e}");
        assert!(!root.join("spawner").exists());
        assert_eq!(read(&root.join("cgroup.subtree_control")), "");
        let e = CgroupTree::set_up(&root.join("nope"), None, 1).unwrap_err();
        assert!(e.contains("is not a cgroup v2 directory"), "{e}");
    }

    #[test]
    fn an_explicit_root_the_spawner_is_not_in_is_used_as_it_is() {
        let (_dir, root) = fake("cpu memory io\n", "17\n");
        let tree = CgroupTree::set_up(&root, Some(Path::new("/elsewhere")), 4242).unwrap();
        assert!(!root.join("spawner").exists());
        assert_eq!(read(&root.join("cgroup.subtree_control")), "+memory +cpu");
        assert_eq!(tree.instance("a-1"), root.join("exile-a-1"));
    }

    #[test]
    fn an_instance_cgroup_holds_its_caps_and_goes_with_the_instance() {
        let (_dir, root) = fake("cpu memory\n", "");
        let tree = CgroupTree::set_up(&root, None, 1).unwrap();
        // Swap accounting present: no swap beyond the memory cap.
        std::fs::create_dir(root.join("exile-a")).unwrap();
        std::fs::write(root.join("exile-a/memory.swap.max"), "max\n").unwrap();
        let caps = ResourceCaps {
            memory_bytes: Some(2 << 30),
            cpu_millicores: Some(1500),
        };
        let dir = tree.create("a", &caps).unwrap();
        assert_eq!(dir, root.join("exile-a"));
        assert_eq!(read(&dir.join("memory.max")), "2147483648");
        assert_eq!(read(&dir.join("memory.swap.max")), "0");
        assert_eq!(read(&dir.join("cpu.max")), "150000 100000");

        // A new build without a memory cap: the old one goes; no swap file, none written.
        let only_cpu = ResourceCaps {
            memory_bytes: None,
            cpu_millicores: Some(10),
        };
        let b = tree.create("b", &only_cpu).unwrap();
        assert!(!b.join("memory.swap.max").exists());
        let dir = tree.create("a", &only_cpu).unwrap();
        assert_eq!(read(&dir.join("memory.max")), "max");
        assert_eq!(read(&dir.join("memory.swap.max")), "max");
        assert_eq!(read(&dir.join("cpu.max")), "1000 100000");

        // Removal kills what is left first.
        std::fs::write(dir.join("cgroup.kill"), "").unwrap();
        tree.remove("a").unwrap();
        assert!(!dir.exists());
        assert!(b.exists());
        tree.remove("a").unwrap();
        assert_eq!(cpu_max(None), "max 100000");
    }
}
