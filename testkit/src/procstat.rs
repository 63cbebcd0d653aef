//! CPU time and memory of a process from Linux's /proc, for the load tools' figures.

use anyhow::{Result, anyhow};

/// CPU ticks (user + system, USER_HZ) and resident bytes of a process.
pub fn proc_usage(pid: u32) -> Result<(u64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, a)| a)
        .ok_or_else(|| anyhow!("bad stat"))?;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = f.get(11).and_then(|u| u.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|s| s.parse::<u64>().ok()).unwrap_or(0);
    Ok((ticks, status_kib(pid, "VmRSS:")? * 1024))
}

/// Peak resident bytes of a process so far (`VmHWM`).
pub fn peak_rss(pid: u32) -> Result<u64> {
    Ok(status_kib(pid, "VmHWM:")? * 1024)
}

fn status_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    Ok(status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0))
}

/// Resident bytes of a process now (`VmRSS`).
pub fn rss(pid: u32) -> Result<u64> {
    Ok(status_kib(pid, "VmRSS:")? * 1024)
}

/// Parent process id of a process.
pub fn parent_pid(pid: u32) -> Result<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat
        .rsplit_once(')')
        .map(|(_, a)| a)
        .ok_or_else(|| anyhow!("bad stat"))?;
    // Fields after the name: state, then ppid.
    after
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| anyhow!("no parent in /proc/{pid}/stat"))
}

/// CPU use of a process from a starting point, in percent of one core.
#[derive(Debug)]
pub struct CpuMeter {
    pid: u32,
    ticks: u64,
    at: std::time::Instant,
}

impl CpuMeter {
    /// Starts counting the CPU time of `pid` now.
    pub fn start(pid: u32) -> Result<CpuMeter> {
        Ok(CpuMeter {
            pid,
            ticks: proc_usage(pid)?.0,
            at: std::time::Instant::now(),
        })
    }

    /// Percent of one core used since the start (USER_HZ is 100 on Linux).
    pub fn percent(&self) -> Result<f64> {
        let (t, _) = proc_usage(self.pid)?;
        #[allow(clippy::cast_precision_loss)]
        let secs = t.saturating_sub(self.ticks) as f64 / 100.0;
        Ok(secs / self.at.elapsed().as_secs_f64().max(1e-3) * 100.0)
    }
}

/// The environment of process `pid` as `NAME=value` strings, read once its exec has
/// finished. A parent's `spawn` returns as soon as the kernel has switched the child to the
/// new program, a moment before the kernel lays out the new environment; until then
/// `/proc/<pid>/environ` reads empty.
pub fn environ(pid: u32) -> Result<Vec<String>> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let raw = std::fs::read(format!("/proc/{pid}/environ"))?;
        if !raw.is_empty() || std::time::Instant::now() > deadline {
            return Ok(raw
                .split(|b| *b == 0)
                .filter(|kv| !kv.is_empty())
                .map(|kv| String::from_utf8_lossy(kv).into_owned())
                .collect());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}
