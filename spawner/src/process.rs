//! OS-level process handling: the build command template, launching a game server under its
//! supervisor (see [`crate::supervisor`]), signalling groups and reading `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::error::{Error, Result};
use crate::state::HeldPort;

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

    /// The words, placeholders still in.
    pub fn words(&self) -> &[String] {
        &self.words
    }

    /// The build directory `{build_dir}` stands for.
    pub fn build_dir(&self) -> &Path {
        &self.build_dir
    }

    /// Program and arguments for one instance, with placeholders filled in (`{port}` is the
    /// first of `ports`, `{port:NAME}` the one named so) and `extra` appended. A relative
    /// program path with a slash is resolved against the build dir, because the process runs
    /// in its data directory (`game_dir`, which is `{data_dir}`).
    pub fn expand(
        &self,
        ports: &[HeldPort],
        instance_id: &str,
        game_dir: &Path,
        extra: &[String],
    ) -> (String, Vec<String>) {
        let first = ports
            .first()
            .map(|p| p.port.to_string())
            .unwrap_or_default();
        let named: Vec<(String, String)> = ports
            .iter()
            .map(|p| (format!("{{port:{}}}", p.name), p.port.to_string()))
            .collect();
        let data_dir = game_dir.to_string_lossy();
        let build_dir = self.build_dir.to_string_lossy();
        let fill = |word: &str| {
            let mut word = word.replace("{port}", &first);
            for (placeholder, port) in &named {
                word = word.replace(placeholder, port);
            }
            word.replace("{instance_id}", instance_id)
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

/// Everything needed to launch one game-server process under its supervisor.
#[derive(Debug, Clone)]
pub struct LaunchSpec {
    /// The `exile-supervisor` binary.
    pub supervisor: PathBuf,
    /// Program to run.
    pub program: String,
    /// Its arguments.
    pub args: Vec<String>,
    /// The instance directory, where the supervisor keeps its socket, logs and exit file.
    pub dir: PathBuf,
    /// The game's working directory, its data (`{data_dir}`).
    pub cwd: PathBuf,
    /// Environment added to the spawner's, for the game only.
    pub env: Vec<(String, String)>,
    /// Size of one log file before rotation.
    pub log_max_bytes: u64,
    /// Rotated log files kept.
    pub log_files: u32,
    /// The user the game runs as; the supervisor's own when `None`.
    pub uid: Option<u32>,
    /// The game's RLIMIT_NOFILE.
    pub max_open_files: u64,
    /// The game's RLIMIT_NPROC (applied only with a `uid`).
    pub max_processes: u64,
    /// The cgroup the game joins before it runs (its caps are written there already).
    pub cgroup: Option<PathBuf>,
}

/// A freshly launched instance: the supervisor (our child) and the game (its child).
#[derive(Debug)]
pub struct Launched {
    /// The supervisor's child handle (waits on its exit, which follows the game's).
    pub child: Child,
    /// The supervisor's pid.
    pub supervisor_pid: u32,
    /// The supervisor's start time in clock ticks since boot.
    pub supervisor_ticks: Option<u64>,
    /// The game's pid, which is also its process group id.
    pub pid: u32,
    /// The game's start time in clock ticks since boot.
    pub start_ticks: Option<u64>,
}

/// How long a supervisor may take to report the game started.
const SUPERVISOR_START: std::time::Duration = std::time::Duration::from_secs(10);

/// Starts the supervisor, which starts the game in its own process group and owns its stdin
/// and output; waits for its `started <pid>` line.
pub async fn launch(spec: &LaunchSpec) -> Result<Launched> {
    use tokio::io::AsyncBufReadExt;
    let log_dir = crate::layout::InstanceDir::at(&spec.dir).logs();
    std::fs::create_dir_all(&log_dir).map_err(|e| Error::io("could not create", &log_dir, e))?;
    let sup_log = log_dir.join("supervisor.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&sup_log)
        .map_err(|e| Error::io("could not open", &sup_log, e))?;
    let mut command = Command::new(&spec.supervisor);
    command
        .arg(format!("--dir={}", spec.dir.display()))
        .arg(format!("--cwd={}", spec.cwd.display()))
        .arg(format!("--log-max-bytes={}", spec.log_max_bytes))
        .arg(format!("--log-files={}", spec.log_files))
        .arg(format!("--max-open-files={}", spec.max_open_files))
        .arg(format!("--max-processes={}", spec.max_processes));
    if let Some(uid) = spec.uid {
        command.arg(format!("--uid={uid}"));
    }
    if let Some(cgroup) = &spec.cgroup {
        command.arg(format!("--cgroup={}", cgroup.display()));
    }
    // The supervisor outlives the spawner and needs nothing of its environment (which may
    // hold the spawner's secrets) but what the game inherits.
    command.env_clear().envs(
        crate::isolation::INHERITED_ENV
            .iter()
            .filter_map(|name| std::env::var_os(name).map(|v| (*name, v))),
    );
    command
        .arg("--env-from-stdin")
        .arg("--")
        .arg(&spec.program)
        .args(&spec.args)
        .current_dir(&spec.dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(stderr))
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(|source| Error::Launch {
        program: spec.supervisor.display().to_string(),
        source,
    })?;
    // The environment (which may hold secrets) goes through a pipe, not the command line.
    if let Some(mut stdin) = child.stdin.take() {
        use tokio::io::AsyncWriteExt;
        let env = serde_json::to_vec(&spec.env)
            .map_err(|e| Error::Internal(format!("could not encode the environment: {e}")))?;
        let written = tokio::time::timeout(SUPERVISOR_START, stdin.write_all(&env)).await;
        if !matches!(written, Ok(Ok(()))) {
            let _ = child.start_kill();
            return Err(Error::Internal(
                "could not hand the environment to the supervisor".into(),
            ));
        }
    }
    let supervisor_pid = child.id().unwrap_or(0);
    let supervisor_ticks = start_ticks(supervisor_pid);
    let Some(stdout) = child.stdout.take() else {
        return Err(Error::Internal("the supervisor has no stdout".into()));
    };
    let mut first = String::new();
    let mut stdout = tokio::io::BufReader::new(stdout);
    let read = stdout.read_line(&mut first);
    match tokio::time::timeout(SUPERVISOR_START, read).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(Error::io("could not read from", &spec.supervisor, e)),
        Err(_) => {
            let _ = child.start_kill();
            return Err(Error::Internal(format!(
                "`{}` did not report within {SUPERVISOR_START:?}",
                spec.supervisor.display()
            )));
        }
    }
    let first = first.trim_end();
    if let Some(pid) = first.strip_prefix("started ").and_then(|p| p.parse().ok()) {
        return Ok(Launched {
            child,
            supervisor_pid,
            supervisor_ticks,
            pid,
            start_ticks: start_ticks(pid),
        });
    }
    let _ = child.wait().await;
    let message = first.strip_prefix("error ").unwrap_or(first);
    Err(Error::Launch {
        program: spec.program.clone(),
        source: std::io::Error::other(if message.is_empty() {
            "the supervisor exited without starting it".to_owned()
        } else {
            message.to_owned()
        }),
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
            &[HeldPort::game(7801)],
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
        assert_eq!(plain.expand(&[], "x", Path::new("/d"), &[]).0, "game");
    }

    #[test]
    fn named_ports_fill_their_placeholders() {
        let template = CommandTemplate::new(
            vec![
                "srv".into(),
                "+port={port}".into(),
                "--game={port:game}".into(),
                "--query".into(),
                "{port:query}".into(),
            ],
            PathBuf::from("/b"),
        );
        let ports = [
            HeldPort::game(9000),
            HeldPort {
                name: "query".into(),
                protocol: crate::ports::Protocol::Tcp,
                port: 9001,
            },
        ];
        let (_, args) = template.expand(&ports, "x", Path::new("/d"), &[]);
        assert_eq!(args, ["+port=9000", "--game=9000", "--query", "9001"]);
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
