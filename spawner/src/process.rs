//! OS-level process handling: the build command template, launching a game server under its
//! supervisor (see [`crate::supervisor`]), signalling groups and reading `/proc`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

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
    /// Where its supervisor comes from.
    pub supervisors: Supervisors,
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

/// A supervisor started ahead of need (`exile-supervisor --standby`), waiting on stdin for
/// its instance; see [`crate::supervisor`].
struct Standby {
    child: Child,
    pid: u32,
    ticks: Option<u64>,
}

impl Standby {
    /// Starts one. Like every supervisor it outlives the spawner once it has an instance, and
    /// needs nothing of the spawner's environment (which may hold the spawner's secrets) but
    /// what the game inherits.
    fn start(bin: &Path) -> Result<Self> {
        let mut command = Command::new(bin);
        command
            .arg(crate::supervisor::STANDBY_FLAG)
            .env_clear()
            .envs(
                crate::isolation::INHERITED_ENV
                    .iter()
                    .filter_map(|name| std::env::var_os(name).map(|v| (*name, v))),
            )
            // Out of every directory until it has an instance: it keeps none busy meanwhile.
            .current_dir("/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            // Until it opens the instance's `supervisor.log`, it has nothing to say.
            .stderr(Stdio::null())
            .kill_on_drop(false);
        let child = command.spawn().map_err(|source| Error::Launch {
            program: bin.display().to_string(),
            source,
        })?;
        let pid = child.id().unwrap_or(0);
        Ok(Self {
            child,
            pid,
            ticks: start_ticks(pid),
        })
    }

    /// Still waiting for an instance. (Our child, not yet reaped: its pid is its own.)
    fn is_waiting(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

/// The spawner's supervisors: the binary, and the one kept on standby so a spawn does not wait
/// for a process to start (its exec and the dynamic loader are most of a supervisor's cost).
/// Dropping the last clone ends the standby (it reads the end of its stdin and exits).
#[derive(Clone)]
pub struct Supervisors {
    bin: PathBuf,
    standby: Arc<Mutex<Option<Standby>>>,
}

impl std::fmt::Debug for Supervisors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Supervisors")
            .field("bin", &self.bin)
            .finish_non_exhaustive()
    }
}

impl Supervisors {
    /// Supervisors from `bin`, one kept on standby (the first made soon after this call,
    /// inside a Tokio runtime).
    pub fn new(bin: PathBuf) -> Self {
        let this = Self {
            bin,
            standby: Arc::default(),
        };
        this.refill();
        this
    }

    /// The binary.
    pub fn bin(&self) -> &Path {
        &self.bin
    }

    /// The pid of the supervisor on standby, if one is waiting.
    pub fn standby_pid(&self) -> Option<u32> {
        let mut slot = self.standby.lock().ok()?;
        let standby = slot.as_mut()?;
        standby.is_waiting().then_some(standby.pid)
    }

    /// The standby if it still waits, else a supervisor started now. The next standby starts
    /// at once, on another thread: on a machine with a core to spare its start overlaps this
    /// launch, and it is ready long before the next.
    fn take(&self) -> Result<Standby> {
        let taken = self.standby.lock().ok().and_then(|mut slot| slot.take());
        self.refill();
        match taken {
            Some(mut s) => {
                if s.is_waiting() {
                    Ok(s)
                } else {
                    Standby::start(&self.bin)
                }
            }
            None => Standby::start(&self.bin),
        }
    }

    /// Makes a standby ready, unless one is by then.
    fn refill(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let this = self.clone();
        runtime.spawn(async move {
            let Ok(mut slot) = this.standby.lock() else {
                return;
            };
            if slot.as_mut().is_some_and(Standby::is_waiting) {
                return;
            }
            match Standby::start(&this.bin) {
                Ok(s) => *slot = Some(s),
                Err(e) => tracing::warn!(error = %e, "could not start a supervisor on standby"),
            }
        });
    }
}

/// The supervisor's flags for `spec` (the instance's; the environment travels apart).
fn supervisor_args(spec: &LaunchSpec) -> Vec<String> {
    let mut args = vec![
        format!("--dir={}", spec.dir.display()),
        format!("--cwd={}", spec.cwd.display()),
        format!("--log-max-bytes={}", spec.log_max_bytes),
        format!("--log-files={}", spec.log_files),
        format!("--max-open-files={}", spec.max_open_files),
        format!("--max-processes={}", spec.max_processes),
    ];
    if let Some(uid) = spec.uid {
        args.push(format!("--uid={uid}"));
    }
    if let Some(cgroup) = &spec.cgroup {
        args.push(format!("--cgroup={}", cgroup.display()));
    }
    args.push("--".into());
    args.push(spec.program.clone());
    args.extend(spec.args.iter().cloned());
    args
}

/// Hands the instance to a supervisor (the standby, or one started now), which starts the
/// game in its own process group and owns its stdin and output; waits for its `started <pid>`
/// line.
pub async fn launch(spec: &LaunchSpec) -> Result<Launched> {
    let log_dir = crate::layout::InstanceDir::at(&spec.dir).logs();
    std::fs::create_dir_all(&log_dir).map_err(|e| Error::io("could not create", &log_dir, e))?;
    // Absolute: the supervisor reads them from outside the spawner's working directory.
    let absolute =
        |p: &Path| std::path::absolute(p).map_err(|e| Error::io("could not resolve", p, e));
    let spec = &LaunchSpec {
        dir: absolute(&spec.dir)?,
        cwd: absolute(&spec.cwd)?,
        ..spec.clone()
    };
    // The instance, with its environment (which may hold secrets), goes through a pipe, not
    // the command line.
    let instructions = serde_json::to_vec(&crate::supervisor::Instructions {
        args: supervisor_args(spec),
        env: spec.env.clone(),
    })
    .map_err(|e| Error::Internal(format!("could not encode the instance: {e}")))?;
    if let Some(launched) = hand_over(spec, spec.supervisors.take()?, &instructions).await? {
        return Ok(launched);
    }
    // The standby died unheard (killed, out of memory) as it was handed the instance: one
    // started for it now gets it instead.
    let fresh = Standby::start(spec.supervisors.bin())?;
    hand_over(spec, fresh, &instructions)
        .await?
        .ok_or_else(|| Error::Launch {
            program: spec.program.clone(),
            source: std::io::Error::other("the supervisor exited without starting it"),
        })
}

/// Gives `supervisor` its `instructions` (closing its stdin) and reads its first line: the
/// game started, or `None` when the supervisor was gone before it said anything.
async fn hand_over(
    spec: &LaunchSpec,
    supervisor: Standby,
    instructions: &[u8],
) -> Result<Option<Launched>> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt};
    let Standby {
        mut child,
        pid: supervisor_pid,
        ticks: supervisor_ticks,
    } = supervisor;
    let bin = spec.supervisors.bin();
    let (Some(mut stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        let _ = child.start_kill();
        return Err(Error::Internal(
            "the supervisor has no stdin or stdout".into(),
        ));
    };
    match tokio::time::timeout(SUPERVISOR_START, stdin.write_all(instructions)).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => {
            let _ = child.start_kill();
            return Ok(None);
        }
        Err(_) => {
            let _ = child.start_kill();
            return Err(Error::Internal(format!(
                "`{}` did not take its instance within {SUPERVISOR_START:?}",
                bin.display()
            )));
        }
    }
    drop(stdin);
    let mut first = String::new();
    let mut stdout = tokio::io::BufReader::new(stdout);
    let read = stdout.read_line(&mut first);
    match tokio::time::timeout(SUPERVISOR_START, read).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => return Err(Error::io("could not read from", bin, e)),
        Err(_) => {
            let _ = child.start_kill();
            return Err(Error::Internal(format!(
                "`{}` did not report within {SUPERVISOR_START:?}",
                bin.display()
            )));
        }
    }
    let first = first.trim_end();
    if let Some(pid) = first.strip_prefix("started ").and_then(|p| p.parse().ok()) {
        return Ok(Some(Launched {
            child,
            supervisor_pid,
            supervisor_ticks,
            pid,
            start_ticks: start_ticks(pid),
        }));
    }
    let _ = child.wait().await;
    if first.is_empty() {
        return Ok(None);
    }
    let message = first.strip_prefix("error ").unwrap_or(first);
    Err(Error::Launch {
        program: spec.program.clone(),
        source: std::io::Error::other(message.to_owned()),
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
