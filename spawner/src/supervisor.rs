//! The per-instance supervisor (`exile-supervisor`), and the spawner's side of talking to it.
//!
//! # Why a supervisor process
//! The spawner must be restartable (upgrades, crashes, `kill -9`) without touching the games
//! it runs. Whoever holds a game's stdin pipe, its stdout/stderr pipes and its exit status
//! (only its parent can `wait` for it) loses them when it dies. So, as containerd-shim and
//! podman's conmon do for containers, each instance gets a tiny process of its own that:
//!
//! - starts the game in its own process group, and is itself a session leader (`setsid`), so a
//!   signal to the spawner's group or terminal reaches neither;
//! - keeps the game's stdin open and writes console lines into it;
//! - pumps stdout/stderr into a size-rotated log with a total cap ([`logfile`]), so logs keep
//!   flowing while the spawner is down and a flooding game cannot fill the disk;
//! - `wait`s for the game, kills what is left of its group, and records the exit code or
//!   signal in `exit.json` (atomic write) before exiting, so a game that ends while the
//!   spawner is down still has its exit status known;
//! - answers requests on a Unix socket in the instance directory (`supervisor.sock`, guarded by
//!   the directory's permissions): a console line, or a stop (the build's stop signal to the
//!   game's group, a grace period, SIGKILL to the group) that it carries out even if the
//!   spawner dies meanwhile.
//!
//! The spawner records the supervisor's pid and start time next to the game's; on restart it
//! re-adopts an instance whose supervisor is still alive (pid + `/proc` start time match) and
//! never launches a second one. The supervisor is synchronous std code with two pump threads
//! and a socket thread: a few hundred KiB of RSS per instance, no runtime.
//!
//! Protocol: one request line per connection, one answer line (`ok[ detail]` or
//! `err <message>`): `console <line>`, `stop <grace_ms> [<signal number>]` (SIGTERM when no
//! signal is given, the form supervisors started by older spawners understand), `ping`.
//!
//! # Standby
//! Starting a process (exec, the dynamic loader, the runtime's start) is the largest part of
//! a spawn that is not the game's own. So the spawner keeps one supervisor started ahead of
//! need: `exile-supervisor --standby` waits on stdin for its [`Instructions`] (the flags below
//! and the game's environment), then moves into the instance directory, sends its own
//! complaints to the instance's `logs/supervisor.log` and runs as if started with them. A
//! standby whose spawner goes away reads the end of its stdin and exits. Its command line
//! names no instance; its working directory (`/proc/<pid>/cwd`) is the instance's.

pub mod logfile;
pub mod protocol;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::process::signal_group;
use logfile::{LogLimits, RotatingLog};
pub use protocol::{Answer, Request};

use crate::layout::InstanceDir;
/// Longest console line accepted, in bytes: the one limit every part applies.
pub use exile_api::limits::MAX_CONSOLE_LINE;

/// How the game ended, as written to `exit.json`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    /// Exit code when the game exited by itself.
    pub code: Option<i32>,
    /// Signal number when a signal ended it.
    pub signal: Option<i32>,
    /// Whether a stop had been requested before it ended.
    pub stop_requested: bool,
    /// When it ended, Unix ms.
    pub exited_at_unix_ms: i64,
}

impl ExitRecord {
    /// Whether the game ended as intended: asked to stop, or exited by itself with code 0.
    pub fn is_clean(&self) -> bool {
        self.stop_requested || self.code == Some(0)
    }

    /// A sentence for the instance message.
    pub fn describe(&self) -> String {
        match (self.code, self.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => {
                let name = Signal::try_from(signal)
                    .map(|s| format!(" ({s})"))
                    .unwrap_or_default();
                format!("killed by signal {signal}{name}")
            }
            (None, None) => "exited".to_owned(),
        }
    }

    /// Reads `exit.json` from an instance directory, if the supervisor wrote one.
    pub fn read(instance_dir: &Path) -> Option<Self> {
        let bytes = std::fs::read(InstanceDir::at(instance_dir).exit_file()).ok()?;
        serde_json::from_slice(&bytes).ok()
    }
}

/// What the supervisor is told on its command line (or, on standby, in its instructions).
#[derive(clap::Parser, Debug)]
#[command(
    name = "exile-supervisor",
    about = "Runs one Exile game-server instance (started by exile-spawner).",
    after_help = "Started as `exile-supervisor --standby`, it waits for these flags and the \
                  game's environment as one JSON document on stdin."
)]
pub struct SupervisorArgs {
    /// Instance directory: holds the socket, logs and exit file.
    #[arg(long)]
    pub dir: PathBuf,
    /// The game's working directory (its data); the instance directory when not given.
    #[arg(long)]
    pub cwd: Option<PathBuf>,
    /// Largest size of one log file, in bytes.
    #[arg(long, default_value_t = 8 << 20)]
    pub log_max_bytes: u64,
    /// Rotated log files kept besides the live one.
    #[arg(long, default_value_t = 4)]
    pub log_files: u32,
    /// Read the game's extra environment as a JSON list of [key, value] pairs from stdin.
    /// Not on the command line, which every local user can read; and not the supervisor's own
    /// environment, so only the game carries EXILE_INSTANCE_ID.
    #[arg(long)]
    pub env_from_stdin: bool,
    /// Runs the game as this uid, with the same number as its group and no supplementary
    /// groups; the game runs as the supervisor's user when not given.
    #[arg(long)]
    pub uid: Option<u32>,
    /// The game's RLIMIT_NOFILE.
    #[arg(long, default_value_t = 65_536)]
    pub max_open_files: u64,
    /// The game's RLIMIT_NPROC, set only with --uid (the limit counts all the user's
    /// processes).
    #[arg(long, default_value_t = 4_096)]
    pub max_processes: u64,
    /// A cgroup v2 directory the game joins before it runs, so its caps bind it and all it
    /// forks; the supervisor itself stays where it is.
    #[arg(long)]
    pub cgroup: Option<PathBuf>,
    /// The game's program and arguments.
    #[arg(last = true, required = true)]
    pub command: Vec<String>,
}

/// What a standby supervisor reads on stdin (all of it, to the end): the flags it would have
/// been started with (no program name, no `--env-from-stdin`) and the game's environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Instructions {
    /// Flags and the game's command, as on the command line.
    pub args: Vec<String>,
    /// The game's environment beyond the inherited one.
    pub env: Vec<(String, String)>,
}

/// The flag that starts a supervisor on standby.
pub const STANDBY_FLAG: &str = "--standby";

/// The supervisor binary's entry point: on standby, or with its flags; returns the process
/// exit code.
pub fn main() -> i32 {
    use clap::Parser;
    let mut argv = std::env::args_os().skip(1);
    if let (Some(first), None) = (argv.next(), argv.next())
        && first == STANDBY_FLAG
    {
        return standby();
    }
    let args = SupervisorArgs::parse();
    let env = if args.env_from_stdin {
        let mut text = String::new();
        match std::io::stdin().read_to_string(&mut text).map(|_| {
            serde_json::from_str::<Vec<(String, String)>>(&text)
                .map_err(|e| format!("bad environment on stdin: {e}"))
        }) {
            Ok(Ok(env)) => env,
            Ok(Err(e)) => return report_error(&args.dir, &e),
            Err(e) => return report_error(&args.dir, &e.to_string()),
        }
    } else {
        Vec::new()
    };
    run(args, env)
}

/// Waits for the instance, then runs it.
fn standby() -> i32 {
    use clap::Parser;
    // Own session at once: from now on nothing sent to the spawner's group reaches it.
    let _ = nix::unistd::setsid();
    let mut text = String::new();
    if std::io::stdin().read_to_string(&mut text).is_err() || text.trim().is_empty() {
        // The spawner went away (or changed its mind) before it had an instance for us.
        return 0;
    }
    let instructions: Instructions = match serde_json::from_str(&text) {
        Ok(i) => i,
        Err(e) => return say_error(&format!("bad instructions: {e}")),
    };
    let argv = std::iter::once("exile-supervisor".to_owned()).chain(instructions.args);
    let args = match SupervisorArgs::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => {
            let text = e.to_string();
            return say_error(text.lines().next().unwrap_or("bad flags"));
        }
    };
    if let Err(e) = std::env::set_current_dir(&args.dir) {
        return say_error(&format!("could not enter {}: {e}", args.dir.display()));
    }
    let log = InstanceDir::at(&args.dir).logs().join("supervisor.log");
    let redirected = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .and_then(|f| nix::unistd::dup2_stderr(&f).map_err(std::io::Error::from));
    if let Err(e) = redirected {
        return say_error(&format!("could not open {}: {e}", log.display()));
    }
    run(args, instructions.env)
}

/// The first line of stdout when the game could not be started.
fn say_error(message: &str) -> i32 {
    println!("error {message}");
    let _ = std::io::stdout().flush();
    1
}

/// [`say_error`], with the socket of a supervisor that got as far as binding it removed.
fn report_error(dir: &Path, message: &str) -> i32 {
    let _ = std::fs::remove_file(InstanceDir::at(dir).socket());
    say_error(message)
}

struct Shared {
    game_pid: u32,
    stdin: Mutex<Option<std::process::ChildStdin>>,
    exited: AtomicBool,
    stop_requested: AtomicBool,
}

/// Runs the supervisor until the game has exited; returns the process exit code.
///
/// The first line on stdout is `started <game pid>` or `error <message>`; nothing is written
/// there afterwards (the spawner that reads it may be gone).
pub fn run(args: SupervisorArgs, env: Vec<(String, String)>) -> i32 {
    // Own session: not in the spawner's group or terminal. Fails only if we already lead a
    // group (a standby made itself one), which is harmless.
    let _ = nix::unistd::setsid();
    match start(&args, env) {
        Ok(started) => {
            // Said before the threads are made: the spawner waits for this line, and the
            // game's output waits in its pipes meanwhile, requests in the socket's backlog.
            println!("started {}", started.shared.game_pid);
            let _ = std::io::stdout().flush();
            let Started {
                mut child,
                shared,
                listener,
                log,
            } = started;
            let mut pumps = Vec::new();
            if let Some(out) = child.stdout.take() {
                pumps.push(pump(out, log.clone()));
            }
            if let Some(err) = child.stderr.take() {
                pumps.push(pump(err, log));
            }
            let s = shared.clone();
            std::thread::spawn(move || serve(listener, &s));
            supervise(&args.dir, child, &shared, pumps);
            0
        }
        Err(e) => report_error(&args.dir, &e.to_string()),
    }
}

type Pumps = Vec<std::thread::JoinHandle<()>>;

/// A game just started, before its supervisor's threads run.
struct Started {
    child: std::process::Child,
    shared: Arc<Shared>,
    listener: UnixListener,
    log: Arc<Mutex<RotatingLog>>,
}

/// What a game may not do, set in its process between fork and exec (after its user has
/// been switched).
#[derive(Clone)]
struct GameLimits {
    open_files: u64,
    /// Only for a game with a user of its own: the limit counts every process of the user.
    processes: Option<u64>,
    /// The `cgroup.procs` of the game's cgroup, opened before the fork by the supervisor
    /// (whose credentials the kernel checks, not the game's after its user switch).
    cgroup_procs: Option<Arc<std::fs::File>>,
}

/// Has `limits` applied in the game's process between fork and exec.
///
/// The one unsafe call of the spawner: std offers no other hook into the child between fork
/// and exec (`CommandExt::pre_exec`), and `no_new_privs` and resource limits must be set
/// there, by the game's own process, to bind it and what it runs.
#[allow(unsafe_code)]
fn confine(command: &mut Command, limits: GameLimits) {
    // SAFETY: the hook runs in the forked child before exec and only makes the system calls
    // of `GameLimits::apply` (write on an open descriptor, umask, getrlimit, setrlimit,
    // prctl), which are async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || limits.apply());
    }
}

impl GameLimits {
    /// `no_new_privs` (no setuid program gives the game more than it has), no core dumps
    /// (they would hold the game's secrets), and the open-file and process limits.
    fn apply(&self) -> std::io::Result<()> {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        // First, so the caps hold from the game's first instruction and for all it forks.
        // `0` is "the writing process".
        if let Some(procs) = &self.cgroup_procs {
            nix::unistd::write(&**procs, b"0")?;
        }
        // Never above the hard limit the game inherits: it may no longer raise it.
        let limit = |resource, n: u64| {
            let (_, hard) = getrlimit(resource)?;
            let n = n.min(hard);
            setrlimit(resource, n, n)
        };
        nix::sys::prctl::set_no_new_privs()?;
        // The usual umask for the game, not the spawner's private one: its files are its
        // own, in a directory only its user may enter when it has a user of its own.
        nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o022));
        setrlimit(Resource::RLIMIT_CORE, 0, 0)?;
        limit(Resource::RLIMIT_NOFILE, self.open_files)?;
        if let Some(n) = self.processes {
            limit(Resource::RLIMIT_NPROC, n)?;
        }
        Ok(())
    }
}

fn start(args: &SupervisorArgs, env: Vec<(String, String)>) -> std::io::Result<Started> {
    let dir = InstanceDir::at(&args.dir);
    let _ = std::fs::remove_file(dir.exit_file());
    let socket_path = dir.socket();
    let _ = std::fs::remove_file(&socket_path);
    let listener = UnixListener::bind(&socket_path)?;
    // Only the spawner's user may ask for a stop or write to the console, whatever the umask.
    std::fs::set_permissions(&socket_path, std::fs::Permissions::from_mode(0o600))?;
    let log = RotatingLog::open(
        &dir.logs(),
        LogLimits {
            max_bytes: args.log_max_bytes,
            keep: args.log_files,
        },
    )?;
    let log = Arc::new(Mutex::new(log));
    let (program, rest) = args
        .command
        .split_first()
        .ok_or_else(|| std::io::Error::other("no program given"))?;
    let mut command = Command::new(program);
    command
        .args(rest)
        .current_dir(args.cwd.as_deref().unwrap_or(dir.runtime()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own group: a stop reaches every process of the game and nothing else.
        .process_group(0)
        // A clean environment: nothing of the spawner's but where programs are and how text
        // and time are shown; the game's own variables follow.
        .env_clear()
        .envs(
            crate::isolation::INHERITED_ENV
                .iter()
                .filter_map(|name| std::env::var_os(name).map(|v| (*name, v))),
        )
        .env("HOME", args.cwd.as_deref().unwrap_or(dir.runtime()));
    command.envs(env);
    if let Some(uid) = args.uid {
        // std drops the supplementary groups when root changes user.
        command.uid(uid).gid(uid);
    }
    let cgroup_procs = match &args.cgroup {
        Some(dir) => {
            let path = dir.join("cgroup.procs");
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| {
                    std::io::Error::new(e.kind(), format!("could not open {}: {e}", path.display()))
                })?;
            Some(Arc::new(file))
        }
        None => None,
    };
    let limits = GameLimits {
        open_files: args.max_open_files,
        processes: args.uid.map(|_| args.max_processes),
        cgroup_procs,
    };
    confine(&mut command, limits);
    let mut child = command
        .spawn()
        .map_err(|e| std::io::Error::new(e.kind(), format!("could not start `{program}`: {e}")))?;
    let shared = Arc::new(Shared {
        game_pid: child.id(),
        stdin: Mutex::new(child.stdin.take()),
        exited: AtomicBool::new(false),
        stop_requested: AtomicBool::new(false),
    });
    Ok(Started {
        child,
        shared,
        listener,
        log,
    })
}

fn pump(
    mut from: impl Read + Send + 'static,
    log: Arc<Mutex<RotatingLog>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    // Short section, never across a blocking read: a std Mutex is right.
                    if let Ok(mut log) = log.lock() {
                        // A full disk must not stop the pump, or the game blocks on write.
                        let _ = log.write(&buf[..n]);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    })
}

fn supervise(dir: &Path, mut child: std::process::Child, shared: &Shared, pumps: Pumps) {
    use std::os::unix::process::ExitStatusExt;
    let status = loop {
        match child.wait() {
            Ok(status) => break Some(status),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => break None,
        }
    };
    shared.exited.store(true, Ordering::SeqCst);
    // Whatever the game left in its group goes with it.
    let _ = signal_group(shared.game_pid, Signal::SIGKILL);
    // Drain the pipes, but do not hang on a process that escaped the group and holds them.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for p in pumps {
            let _ = p.join();
        }
        let _ = tx.send(());
    });
    let _ = rx.recv_timeout(Duration::from_secs(2));
    let record = ExitRecord {
        code: status.and_then(|s| s.code()),
        signal: status.and_then(|s| s.signal()),
        stop_requested: shared.stop_requested.load(Ordering::SeqCst),
        exited_at_unix_ms: exile_api::now_unix_ms(),
    };
    if let Ok(bytes) = serde_json::to_vec(&record) {
        let _ = crate::state::write_atomic(&InstanceDir::at(dir).exit_file(), &bytes, 0o644);
    }
    let _ = std::fs::remove_file(InstanceDir::at(dir).socket());
}

fn serve(listener: UnixListener, shared: &Arc<Shared>) {
    for conn in listener.incoming() {
        let Ok(mut conn) = conn else { continue };
        // A thread per request: a console write blocked on a game that stopped reading its
        // stdin must never hold up a stop.
        let shared = shared.clone();
        std::thread::spawn(move || {
            let _ = conn.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = conn.set_write_timeout(Some(Duration::from_secs(5)));
            let answer = match read_request(&conn) {
                Ok(line) => match Request::parse(&line) {
                    Ok(request) => handle(request, &shared),
                    Err(e) => Answer::Err(e),
                },
                Err(e) => Answer::Err(e.to_string()),
            };
            let _ = conn.write_all(format!("{}\n", answer.to_line()).as_bytes());
        });
    }
}

fn read_request(conn: &UnixStream) -> std::io::Result<String> {
    let mut line = Vec::new();
    BufReader::new(conn)
        .take(MAX_CONSOLE_LINE as u64 + 64)
        .read_until(b'\n', &mut line)?;
    if line.last() != Some(&b'\n') {
        return Err(std::io::Error::other(
            "request too long or not ended by a newline",
        ));
    }
    line.pop();
    String::from_utf8(line).map_err(|_| std::io::Error::other("request is not UTF-8"))
}

fn handle(request: Request, shared: &Arc<Shared>) -> Answer {
    match request {
        Request::Ping => Answer::Ok(shared.game_pid.to_string()),
        Request::Console(line) => {
            if shared.exited.load(Ordering::SeqCst) {
                return Answer::Err("the game server has exited".into());
            }
            let Ok(mut stdin) = shared.stdin.lock() else {
                return Answer::Err("stdin is unavailable".into());
            };
            match stdin.as_mut() {
                Some(pipe) => match pipe.write_all(format!("{line}\n").as_bytes()) {
                    Ok(()) => Answer::Ok(String::new()),
                    Err(e) => Answer::Err(format!("could not write to the game's stdin: {e}")),
                },
                None => Answer::Err("the game's stdin is closed".into()),
            }
        }
        Request::Stop { grace, signal } => {
            shared.stop_requested.store(true, Ordering::SeqCst);
            let s = shared.clone();
            std::thread::spawn(move || stop(&s, grace, signal));
            Answer::Ok(String::new())
        }
    }
}

fn stop(shared: &Shared, grace: Duration, signal: Signal) {
    let _ = signal_group(shared.game_pid, signal);
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if shared.exited.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = signal_group(shared.game_pid, Signal::SIGKILL);
}

/// Sends one request to the supervisor of the instance in `instance_dir` and returns the text
/// after `ok`.
pub async fn request(instance_dir: &Path, request: &Request) -> crate::Result<String> {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
    let path = InstanceDir::at(instance_dir).socket();
    let talk = async {
        let mut stream = tokio::net::UnixStream::connect(&path).await?;
        stream
            .write_all(format!("{}\n", request.to_line()).as_bytes())
            .await?;
        let mut answer = String::new();
        tokio::io::BufReader::new(stream.take(4096))
            .read_line(&mut answer)
            .await?;
        Ok::<_, std::io::Error>(answer)
    };
    let answer = tokio::time::timeout(Duration::from_secs(5), talk)
        .await
        .map_err(|_| crate::Error::Internal("the instance supervisor did not answer".into()))?
        .map_err(|e| crate::Error::io("could not talk to the supervisor at", &path, e))?;
    match Answer::parse(&answer) {
        Some(Answer::Ok(value)) => Ok(value),
        Some(Answer::Err(msg)) => Err(crate::Error::FailedPrecondition(msg)),
        None => Err(crate::Error::Internal(format!(
            "unexpected supervisor answer `{}`",
            answer.trim_end()
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        SupervisorArgs::command().debug_assert();
    }

    #[test]
    fn exits_are_described_and_classified() {
        let code = |code, stop| ExitRecord {
            code: Some(code),
            signal: None,
            stop_requested: stop,
            exited_at_unix_ms: 0,
        };
        assert_eq!(code(3, false).describe(), "exited with code 3");
        assert!(!code(3, false).is_clean());
        assert!(code(0, false).is_clean());
        assert!(code(3, true).is_clean());
        let killed = ExitRecord {
            code: None,
            signal: Some(9),
            stop_requested: false,
            exited_at_unix_ms: 0,
        };
        assert_eq!(killed.describe(), "killed by signal 9 (SIGKILL)");
        assert!(!killed.is_clean());
    }
}
