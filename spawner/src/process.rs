//! OS-level process handling: the build command template, launching a game server in its own
//! process group with file-backed logs, signalling groups and reading `/proc`.

use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, ChildStdin, Command};

use crate::error::{Error, Result};

/// The build command split into words, with placeholders still in.
#[derive(Debug, Clone)]
pub struct CommandTemplate {
    words: Vec<String>,
    build_dir: PathBuf,
}

impl CommandTemplate {
    /// A template from already-split words (the first is the program) and the build directory.
    pub fn new(words: Vec<String>, build_dir: PathBuf) -> Self {
        Self { words, build_dir }
    }

    /// Program and arguments for one instance, with placeholders filled in and `extra`
    /// appended. A relative program path with a slash is resolved against the build dir,
    /// because the process runs in the instance directory.
    pub fn expand(
        &self,
        port: u16,
        instance_id: &str,
        instance_dir: &Path,
        extra: &[String],
    ) -> (String, Vec<String>) {
        let port = port.to_string();
        let data_dir = instance_dir.to_string_lossy();
        let build_dir = self.build_dir.to_string_lossy();
        let fill = |word: &str| {
            word.replace("{port}", &port)
                .replace("{instance_id}", instance_id)
                .replace("{data_dir}", &data_dir)
                .replace("{build_dir}", &build_dir)
        };
        let mut words = self.words.iter().map(|w| fill(w));
        let mut program = words.next().unwrap_or_default();
        if program.contains('/') && Path::new(&program).is_relative() {
            program = self.build_dir.join(&program).to_string_lossy().into_owned();
        }
        let mut args: Vec<String> = words.collect();
        args.extend(extra.iter().cloned());
        (program, args)
    }
}

/// Everything needed to launch one game-server process.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// Program to run.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// Working directory (the instance directory).
    pub cwd: PathBuf,
    /// Environment added to the spawner's.
    pub env: Vec<(String, String)>,
    /// Directory for `stdout.log` and `stderr.log`.
    pub log_dir: PathBuf,
}

/// A freshly launched process.
#[derive(Debug)]
pub struct Launched {
    /// The child handle (waits on exit).
    pub child: Child,
    /// Its pid, which is also its process group id.
    pub pid: u32,
    /// Its start time in clock ticks since boot.
    pub start_ticks: Option<u64>,
    /// Write end of its stdin, kept open while the spawner owns the process.
    pub stdin: Option<ChildStdin>,
}

/// Launches the process in its own process group, logs appended to files so they outlive the
/// spawner, stdin a pipe.
pub fn launch(spec: &LaunchSpec) -> Result<Launched> {
    std::fs::create_dir_all(&spec.log_dir)
        .map_err(|e| Error::io("could not create", &spec.log_dir, e))?;
    let open_log = |name: &str| {
        let path = spec.log_dir.join(name);
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io("could not open", path, e))
    };
    let stdout = open_log("stdout.log")?;
    let stderr = open_log("stderr.log")?;
    let mut command = Command::new(&spec.program);
    command
        .args(&spec.args)
        .current_dir(&spec.cwd)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::from(stdout))
        .stderr(Stdio::from(stderr))
        // Own group: a stop reaches every process of the game, and a Ctrl-C on the spawner's
        // terminal reaches none of them.
        .process_group(0)
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(|source| Error::Launch {
        program: spec.program.clone(),
        source,
    })?;
    let Some(pid) = child.id() else {
        return Err(Error::Internal(format!(
            "`{}` exited before its pid could be read",
            spec.program
        )));
    };
    let stdin = child.stdin.take();
    Ok(Launched {
        child,
        pid,
        start_ticks: start_ticks(pid),
        stdin,
    })
}

/// Start time of a live (non-zombie) process in clock ticks since boot, from
/// `/proc/<pid>/stat` field 22; `None` when the process is gone or a zombie.
pub fn start_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat)
}

/// Parses a `/proc/<pid>/stat` line into the start time, `None` for a zombie or dead process.
fn parse_stat(stat: &str) -> Option<u64> {
    // The command name (field 2) may hold spaces and parentheses: skip to the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?; // field 3
    if state == "Z" || state == "X" {
        return None;
    }
    // Field 22 is the 19th field after field 3.
    fields.nth(18)?.parse().ok()
}

/// Whether the process `pid` is alive and is the one that started at `ticks`.
pub fn is_alive(pid: u32, ticks: Option<u64>) -> bool {
    match (start_ticks(pid), ticks) {
        (Some(now), Some(saved)) => now == saved,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Sends `signal` to the process group `pgid`; `Ok(false)` when the group is gone.
pub fn signal_group(pgid: u32, signal: Signal) -> Result<bool> {
    let Ok(raw) = i32::try_from(pgid) else {
        return Ok(false);
    };
    if raw <= 1 {
        // Never signal "every process" or init by accident.
        return Err(Error::Internal(format!(
            "refusing to signal process group {pgid}"
        )));
    }
    match killpg(Pid::from_raw(raw), signal) {
        Ok(()) => Ok(true),
        Err(nix::errno::Errno::ESRCH) => Ok(false),
        Err(e) => Err(Error::Internal(format!(
            "could not send {signal} to process group {pgid}: {e}"
        ))),
    }
}

/// Whether any process of the group `pgid` still exists.
pub fn group_alive(pgid: u32) -> bool {
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    raw > 1 && killpg(Pid::from_raw(raw), None).is_ok()
}

/// Exit code (when the process exited normally) and a sentence for an exit status.
pub fn describe_exit(status: ExitStatus) -> (Option<i32>, String) {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => (Some(code), format!("exited with code {code}")),
        (None, Some(signal)) => {
            let name = Signal::try_from(signal)
                .map(|s| format!(" ({s})"))
                .unwrap_or_default();
            (None, format!("killed by signal {signal}{name}"))
        }
        (None, None) => (None, "exited".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn template_fills_placeholders_and_appends_args() {
        let template = CommandTemplate::new(
            vec![
                "./bin/game".into(),
                "--port={port}".into(),
                "--id".into(),
                "{instance_id}".into(),
                "--save".into(),
                "{data_dir}/save".into(),
                "{build_dir}".into(),
            ],
            PathBuf::from("/builds/v1"),
        );
        let (program, args) = template.expand(
            7801,
            "i-1",
            Path::new("/data/instances/i-1"),
            &["-x".into()],
        );
        assert_eq!(program, "/builds/v1/./bin/game");
        assert_eq!(
            args,
            [
                "--port=7801",
                "--id",
                "i-1",
                "--save",
                "/data/instances/i-1/save",
                "/builds/v1",
                "-x"
            ]
        );
        let plain = CommandTemplate::new(vec!["game".into()], PathBuf::from("/b"));
        assert_eq!(plain.expand(1, "x", Path::new("/d"), &[]).0, "game");
    }

    #[test]
    fn stat_parsing_handles_odd_names_and_zombies() {
        let tail = "S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 777 19 20";
        assert_eq!(parse_stat(&format!("12 (my game) x) {tail}")), Some(777));
        let zombie = tail.replacen('S', "Z", 1);
        assert_eq!(parse_stat(&format!("12 (game) {zombie}")), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn own_process_is_alive_with_its_start_time() {
        let pid = std::process::id();
        let ticks = start_ticks(pid).unwrap();
        assert!(is_alive(pid, Some(ticks)));
        assert!(!is_alive(pid, Some(ticks + 1)));
    }

    #[test]
    fn refuses_to_signal_group_one() {
        assert!(signal_group(1, Signal::SIGTERM).is_err());
        assert!(signal_group(0, Signal::SIGTERM).is_err());
    }
}
