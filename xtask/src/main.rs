//! Build chores and the local dev runner: `cargo xtask run` starts a master and an enrolled
//! local spawner, and pushes the demo game to it as an uploaded build, all on embedded SQLite
//! under `.exile-dev/`.

mod demo_build;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "xtask", about = "Exile build chores")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run master + a local spawner + the demo game until Ctrl-C.
    Run {
        /// Address of the master.
        #[arg(long, default_value = "127.0.0.1:7700")]
        listen: String,
        /// State directory (database, spawner data, credentials).
        #[arg(long, default_value = ".exile-dev")]
        dir: PathBuf,
        /// Build in release mode.
        #[arg(long)]
        release: bool,
        /// Bundle the dashboard in debug mode (faster to build, much larger).
        #[arg(long)]
        debug_dashboard: bool,
    },
    /// Build the web dashboard (wasm32) and bundle it into `dist/`.
    Dashboard {
        /// Optimised build (smaller, slower to compile).
        #[arg(long)]
        release: bool,
    },
    /// Build the dashboard and every binary, then run every test of the workspace, then the
    /// benchmark in its quick mode (with the debug binaries just built).
    Test,
    /// Build the release binaries and print the performance targets as ratios: each figure,
    /// the baseline measured in the same run, the ratio, the target and pass/miss.
    Bench {
        /// Seconds and small sizes, as `cargo xtask test` runs it.
        #[arg(long)]
        quick: bool,
        /// Use debug binaries (quicker to build; the figures are not a release's).
        #[arg(long)]
        debug: bool,
        /// More flags for `exile-bench`, after `--` (e.g. `-- --only scale --spawners 1000`).
        #[arg(last = true)]
        rest: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    match Cli::parse().cmd {
        Cmd::Run {
            listen,
            dir,
            release,
            debug_dashboard,
        } => {
            dashboard(!debug_dashboard)?;
            dev_run(&listen, &dir, release)
        }
        Cmd::Dashboard { release } => dashboard(release),
        Cmd::Test => test(),
        Cmd::Bench { quick, debug, rest } => bench(quick, !debug, &rest),
    }
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

struct Children(Vec<(String, Child)>);

impl Drop for Children {
    fn drop(&mut self) {
        // Spawner first (it leaves game servers running by design; the dev runner stops them
        // through --stop-instances-on-shutdown), then the master.
        for (name, child) in self.0.iter_mut().rev() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(15);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            if let Ok(None) = child.try_wait() {
                eprintln!("{name} did not stop in time; killing it");
                let _ = child.kill();
            }
        }
    }
}

fn dev_run(listen: &str, dir: &Path, release: bool) -> Result<()> {
    let root = workspace_root();
    let mut build = cargo_command();
    build.current_dir(&root).args([
        "build",
        "--bins",
        "-p",
        "exile-master",
        "-p",
        "exile-spawner",
        "-p",
        "exile-sdk",
        "-p",
        "exilectl",
    ]);
    if release {
        build.arg("--release");
    }
    if !build.status().context("cargo build")?.success() {
        bail!("build failed");
    }
    let bin = root
        .join("target")
        .join(if release { "release" } else { "debug" });
    let dir = if dir.is_absolute() {
        dir.to_path_buf()
    } else {
        root.join(dir)
    };
    std::fs::create_dir_all(&dir)?;
    let pw_file = dir.join("admin-password");
    let password = match std::fs::read_to_string(&pw_file) {
        Ok(p) => p.trim().to_owned(),
        Err(_) => {
            let p = random_password()?;
            write_private(&pw_file, &p)?;
            p
        }
    };
    // Packed before anything starts, so a failure to pack leaves nothing running.
    let demo = demo_build::pack(&bin.join("exile-demo-game"), &dir.join("builds"))?;
    let token_file = dir.join("enrollment.token");
    let _ = std::fs::remove_file(&token_file);
    let mut children = Children(Vec::new());
    let mut master = Command::new(bin.join("exile-master"));
    master
        .arg(format!("--listen={listen}"))
        .arg(format!("--data-dir={}", dir.join("master").display()))
        .arg(format!(
            "--dev-enrollment-token-file={}",
            token_file.display()
        ))
        .env("EXILE_MASTER_ADMIN_PASSWORD", &password);
    let dashboard = root.join("dist");
    if dashboard.join("index.html").is_file() {
        master.arg(format!("--dashboard-dir={}", dashboard.display()));
    }
    children.0.push((
        "master".into(),
        master.spawn().context("start exile-master")?,
    ));
    let deadline = Instant::now() + Duration::from_secs(30);
    while !token_file.is_file() {
        if Instant::now() > deadline {
            bail!("the master did not start within 30 s");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let spawner = Command::new(bin.join("exile-spawner"))
        .arg(format!("--master=http://{listen}"))
        .arg(format!("--data-dir={}", dir.join("spawner").display()))
        .arg(format!("--enrollment-token-file={}", token_file.display()))
        .arg("--name=local")
        .arg("--region=local")
        .arg("--capacity=20")
        .arg("--port-range=7800-7999")
        // No --build-command: the spawner runs the builds pushed to the master.
        .arg("--stop-instances-on-shutdown")
        .spawn()
        .context("start exile-spawner")?;
    children.0.push(("spawner".into(), spawner));
    let ctl = bin.join("exilectl");
    demo_build::push_and_activate(
        &ctl,
        &dir.join("exilectl/config.toml"),
        &format!("http://{listen}"),
        &password,
        &demo,
    )?;
    println!();
    println!(
        "Exile is running: master at http://{listen} with one local spawner (demo game build)."
    );
    println!(
        "  Demo build: {} pushed and active ({})",
        demo.reference(),
        demo.archive.display()
    );
    println!(
        "  Dashboard:  http://{listen}/   (user admin, password in {})",
        pw_file.display()
    );
    println!(
        "  Log in:     {} login --master http://{listen} --username admin --password-stdin < {}",
        ctl.display(),
        pw_file.display()
    );
    println!(
        "  Then try:   {} spawner list   |   {} instance spawn   |   {} watch",
        ctl.display(),
        ctl.display(),
        ctl.display()
    );
    println!(
        "  Builds:     {} build list   |   {} build get {}",
        ctl.display(),
        ctl.display(),
        demo.reference()
    );
    println!("Press Ctrl-C to stop.");
    println!();
    // Wait until a child exits (Ctrl-C reaches the whole process group, so children see it too).
    loop {
        for (name, child) in &mut children.0 {
            if let Some(status) = child.try_wait()? {
                bail!("{name} exited: {status}");
            }
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A cargo command as a developer's shell would run it: without the variables `cargo xtask`
/// set for xtask itself (`exile_api::cargo_env`), which would have it compile ring, rustls and
/// tonic again, and the next plain `cargo` call after it.
fn cargo_command() -> Command {
    let mut cargo = Command::new(env!("CARGO"));
    exile_api::cargo_env::nested(&mut cargo);
    cargo
}

fn cargo(args: &[&str]) -> Result<()> {
    cargo_with(args, &[])
}

/// Runs cargo with `args` and extra environment variables.
fn cargo_with(args: &[&str], env: &[(&str, &str)]) -> Result<()> {
    let status = cargo_command()
        .current_dir(workspace_root())
        .args(args)
        .envs(env.iter().copied())
        .status()?;
    if !status.success() {
        bail!("cargo {} failed", args.join(" "));
    }
    Ok(())
}

/// Static files shipped beside the generated code (index.html, style.css, favicon).
const DASHBOARD_STATIC: &str = "dashboard/static";

/// The wasm target the dashboard is compiled for.
const WASM_TARGET: &str = "wasm32-unknown-unknown";

/// Makes sure the toolchain has the wasm32 standard library. rust-toolchain.toml lists the
/// target, but a rustup that does not install missing targets on its own (or a toolchain
/// installed some other way) leaves it out, and cargo then fails with a bare
/// "can't find crate for `core`".
fn ensure_wasm_target() -> Result<()> {
    let sysroot = Command::new("rustc")
        .current_dir(workspace_root())
        .args(["--print", "sysroot"])
        .output()
        .context("run rustc --print sysroot")?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_owned();
    if Path::new(&sysroot)
        .join("lib/rustlib")
        .join(WASM_TARGET)
        .is_dir()
    {
        return Ok(());
    }
    eprintln!("the {WASM_TARGET} target is missing from {sysroot}; adding it with rustup");
    let added = Command::new("rustup")
        .current_dir(workspace_root())
        .args(["target", "add", WASM_TARGET])
        .status();
    match added {
        Ok(status) if status.success() => Ok(()),
        _ => bail!(
            "the dashboard needs the {WASM_TARGET} target and it could not be added; run \
             `rustup target add {WASM_TARGET}` (or install that target's standard library for \
             the toolchain at {sysroot})"
        ),
    }
}

/// Builds the dashboard for wasm32, runs wasm-bindgen on it and writes `dist/`.
fn dashboard(release: bool) -> Result<()> {
    ensure_wasm_target()?;
    let root = workspace_root();
    let mut args = vec!["build", "-p", "exile-dashboard", "--target", WASM_TARGET];
    if release {
        args.push("--release");
    }
    cargo(&args)?;
    let wasm = root
        .join("target")
        .join(WASM_TARGET)
        .join(if release { "release" } else { "debug" })
        .join("exile-dashboard.wasm");
    let dist = root.join("dist");
    // Start from an empty folder so no stale file of an older build is served.
    if dist.exists() {
        std::fs::remove_dir_all(&dist).with_context(|| format!("clear {}", dist.display()))?;
    }
    std::fs::create_dir_all(&dist)?;
    wasm_bindgen_cli_support::Bindgen::new()
        .input_path(&wasm)
        .out_name("exile_dashboard")
        .web(true)?
        // Without the default module path, init() has no URL to fetch the wasm from.
        .omit_default_module_path(false)
        // Function names only serve debuggers and panics' stack traces; a release bundle
        // leaves them out (a fifth of the wasm).
        .remove_name_section(release)
        .remove_producers_section(release)
        .generate(&dist)
        .context("wasm-bindgen")?;
    for entry in std::fs::read_dir(root.join(DASHBOARD_STATIC))? {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            std::fs::copy(entry.path(), dist.join(entry.file_name()))?;
        }
    }
    // The master serves `name.gz` to browsers that accept gzip (most of the bundle is wasm,
    // which shrinks to about a third), so the bundle is compressed once here, not per request.
    let mut raw_total = 0u64;
    let mut gz_total = 0u64;
    for entry in std::fs::read_dir(&dist)? {
        let path = entry?.path();
        let compressible = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "wasm" | "js" | "css" | "html" | "svg"));
        if !compressible {
            continue;
        }
        let data = std::fs::read(&path)?;
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &data)?;
        let gz = gz.finish()?;
        let mut name = path.as_os_str().to_owned();
        name.push(".gz");
        std::fs::write(&name, &gz)
            .with_context(|| format!("write {}", Path::new(&name).display()))?;
        raw_total += data.len() as u64;
        gz_total += gz.len() as u64;
    }
    const BUNDLE_TARGET: u64 = 1024 * 1024;
    println!(
        "dashboard bundled into {} ({} build): {} KiB, {} KiB gzip-compressed as served (target \
         ≤ {} KiB compressed: {})",
        dist.display(),
        if release { "release" } else { "debug" },
        raw_total / 1024,
        gz_total / 1024,
        BUNDLE_TARGET / 1024,
        if gz_total <= BUNDLE_TARGET {
            "pass"
        } else {
            "miss"
        }
    );
    Ok(())
}

fn test() -> Result<()> {
    // The browser tests load the bundle, so it is built first (debug: quicker to compile,
    // and the tests do not care about size).
    dashboard(false)?;
    // The system tests run the real binaries (master, spawner, supervisor, demo game,
    // exilectl), so they are built first. Building them together with the tests resolves
    // features exactly as `cargo test` does (dev-dependencies included), so the test run reuses
    // every artifact instead of compiling the dependency tree a second time. xtask is left
    // out of both: it has no tests, and its bundler dependencies could change the resolution.
    const PACKAGES: [&str; 3] = ["--workspace", "--exclude", "xtask"];
    cargo(&[&["build"], &PACKAGES[..], &["--bins", "--tests"]].concat())?;
    // The spawner's tests take the demo game just built, with the workspace's features; on
    // their own they build it under `-p exile-sdk`, whose features differ, and so compile
    // tokio, tonic and the rest a second time.
    let demo_game = workspace_root().join("target/debug/exile-demo-game");
    let demo_game = demo_game.to_string_lossy().into_owned();
    let env = [("EXILE_TEST_DEMO_GAME", demo_game.as_str())];
    // Beside the other tests, which mostly wait on the processes they start: the Agones Rust
    // SDK game's build (the test that runs it waits for this build's lock), and the browser
    // test (one test, most of its time in Chromium), with the same packages and environment
    // so nothing is compiled again.
    let rust_game = agones_rust_game()?;
    let browser = Beside::start(
        "browser tests",
        cargo_command()
            .args([&["test"], &PACKAGES[..], &["--test", "browser"]].concat())
            .envs(env),
    )?;
    let tests = cargo_with(
        &[
            &["test"],
            &PACKAGES[..],
            &[
                "--no-fail-fast",
                "--",
                "--skip",
                BROWSER_TEST,
                "--skip",
                PARTITION_TEST,
            ],
        ]
        .concat(),
        &env,
    );
    // A representative part of the system tests again with every sandbox serving TLS (a CA
    // and certificate generated for the run; clients and spawners trust only that CA):
    // instance lifecycle, uploads, the authorization walk and the attacks on login, and what
    // tools and browsers get on the port. The tls:: tests run TLS in both passes anyway. Run from here, with the same
    // packages and environment as the pass above, so nothing is compiled again.
    let tls = cargo_with(
        &[
            &["test"],
            &PACKAGES[..],
            &[
                "--test",
                "it",
                "--",
                "lifecycle::",
                "access::",
                "interfaces::",
                "security::",
            ],
            &[
                "builds::push_list",
                "builds::hostile_archives",
                "builds::a_cut_or_short",
            ],
        ]
        .concat(),
        &[("EXILE_TEST_TLS", "1")],
    );
    let browser = browser.finish();
    let rust_game = rust_game.map_or(Ok(()), Beside::finish);
    // Only once Chromium is done: the partition test adds and cuts a veth pair, and Chromium,
    // seeing the host's network change, drops the page it was loading. Beside the bench,
    // which runs on loopback.
    let partition = Beside::start(
        "network partition test",
        cargo_command()
            .args(
                [
                    &["test"],
                    &PACKAGES[..],
                    &["--test", "it", "--", PARTITION_TEST],
                ]
                .concat(),
            )
            .envs(env),
    )?;
    // The benchmark's quick mode on the debug binaries just built, so it cannot rot. It fails
    // on errors only: a missed target on a shared CI machine says little.
    let bench = run_bench(false, &["--quick".to_owned()]);
    let partition = partition.finish();
    tests?;
    tls?;
    browser?;
    rust_game?;
    partition?;
    bench
}

/// The chaos test that partitions a spawner in a network namespace of its own.
const PARTITION_TEST: &str = "chaos::partition::";

/// In the name of every test of `testkit/tests/browser`, which `cargo xtask test` runs
/// beside the others (and so skips in their pass).
const BROWSER_TEST: &str = "headless_chromium";

/// A command run beside others, its output kept in a file under `target/` and shown, whole,
/// when it has ended (so it does not interleave with what runs in front).
struct Beside {
    name: &'static str,
    child: std::process::Child,
    log: PathBuf,
    started: Instant,
}

impl Beside {
    fn start(name: &'static str, command: &mut Command) -> Result<Self> {
        let dir = workspace_root().join("target/xtask");
        std::fs::create_dir_all(&dir)?;
        let log = dir.join(format!("{}.log", name.replace(' ', "-")));
        let out =
            std::fs::File::create(&log).with_context(|| format!("create {}", log.display()))?;
        let child = command
            .current_dir(workspace_root())
            .stdin(std::process::Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("start the {name}"))?;
        println!(
            "{name}: started beside the rest (output in {})",
            log.display()
        );
        Ok(Self {
            name,
            child,
            log,
            started: Instant::now(),
        })
    }

    fn finish(mut self) -> Result<()> {
        let status = self.child.wait()?;
        let output = std::fs::read_to_string(&self.log).unwrap_or_default();
        println!(
            "\n== {} ({status}, {:.0} s):\n{output}",
            self.name,
            self.started.elapsed().as_secs_f64()
        );
        if !status.success() {
            bail!("the {} failed", self.name);
        }
        Ok(())
    }
}

/// Starts the build of the Agones Rust SDK test game (`testkit/agones-rust-game`, its own
/// Cargo project, lock file and target directory) beside the tests; the test's own build of
/// it (same command as `rust_game` in `testkit/tests/it/agones.rs`) waits for this one's lock
/// and finds it done. Without protoc (the `agones` crate's build script needs it) the test
/// reports that itself.
fn agones_rust_game() -> Result<Option<Beside>> {
    let have_protoc = Command::new("protoc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_protoc {
        return Ok(None);
    }
    let root = workspace_root();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), PathBuf::from)
        .join("agones-rust-game");
    Beside::start(
        "Agones Rust SDK game build",
        cargo_command()
            .args(["build", "--locked", "--manifest-path"])
            .arg(root.join("testkit/agones-rust-game/Cargo.toml"))
            .arg("--target-dir")
            .arg(&target)
            // The workspace's compile wrapper (CI's clippy-driver) is not for this project.
            .env_remove("RUSTC_WORKSPACE_WRAPPER")
            .env_remove("CLIPPY_ARGS"),
    )
    .map(Some)
}

/// The binaries `exile-bench` runs: master, spawner (with the supervisor), the demo game, and
/// the bench itself.
const BENCH_PACKAGES: [&str; 8] = [
    "-p",
    "exile-master",
    "-p",
    "exile-spawner",
    "-p",
    "exile-sdk",
    "-p",
    "exile-testkit",
];

fn bench(quick: bool, release: bool, rest: &[String]) -> Result<()> {
    let mut build = vec!["build", "--bins"];
    build.extend(BENCH_PACKAGES);
    if release {
        build.push("--release");
    }
    cargo(&build)?;
    let mut args = rest.to_vec();
    if quick {
        args.push("--quick".into());
    }
    run_bench(release, &args)
}

/// Runs the built `exile-bench` (release or debug) with `args`.
fn run_bench(release: bool, args: &[String]) -> Result<()> {
    let bin = workspace_root()
        .join("target")
        .join(if release { "release" } else { "debug" })
        .join("exile-bench");
    let t = Instant::now();
    let status = Command::new(&bin)
        .args(args)
        .status()
        .with_context(|| format!("run {}", bin.display()))?;
    println!("exile-bench took {:.0} s", t.elapsed().as_secs_f64());
    if !status.success() {
        bail!("exile-bench failed ({status})");
    }
    Ok(())
}

fn random_password() -> Result<String> {
    use std::io::Read;
    let mut bytes = [0u8; 12];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

fn write_private(path: &Path, contents: &str) -> Result<()> {
    exile_api::fs::write_private(path, contents.as_bytes())
        .with_context(|| format!("could not write {}", path.display()))
}
