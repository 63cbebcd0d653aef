//! How a build's manifest (`exile-build.toml`, schema and checks in
//! [`exile_api::build::manifest`]) becomes what one instance runs: its command, ports,
//! environment, stop signal and grace, restart policy and health check. A spawn's own settings
//! win over the manifest, and the manifest wins over the spawner's flags, field by field.
//!
//! The host build (`--build-command` in `--build-dir`) reads its manifest from `--build-dir`
//! at start, where a malformed one stops the spawner; an uploaded build arrives with its
//! manifest already parsed.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use exile_api::build::Manifest;

use crate::error::{Error, Result};
use crate::health::HealthCheck;
use crate::restart::RestartPolicy;
use crate::state::{BuildRun, HeldPort};

pub use exile_api::build::MANIFEST_FILE as FILE_NAME;

/// Reads `exile-build.toml` from `build_dir`; an empty manifest (every default) when there is
/// none. A manifest that cannot be used is an [`Error::Manifest`] naming the file and the line.
pub fn load(build_dir: &Path) -> Result<Manifest> {
    let path = build_dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Manifest::default()),
        Err(e) => return Err(Error::io("could not read the build manifest", path, e)),
    };
    Manifest::parse(&text).map_err(|e| Error::Manifest {
        path,
        problem: e.to_string(),
    })
}

/// The restart policy of spawns that name none: the manifest's fields over `flags`. The
/// error is a sentence naming the manifest's fields.
pub fn restart_default(
    manifest: &Manifest,
    flags: &RestartPolicy,
) -> std::result::Result<RestartPolicy, String> {
    RestartPolicy::resolve(Some(&manifest.restart), flags).map_err(|_| {
        let r = &manifest.restart;
        let base = if r.backoff_base_ms == 0 {
            flags.backoff_base
        } else {
            Duration::from_millis(u64::from(r.backoff_base_ms))
        };
        let max = if r.backoff_max_ms == 0 {
            flags.backoff_max
        } else {
            Duration::from_millis(u64::from(r.backoff_max_ms))
        };
        format!(
            "restart.backoff_ms ({} ms) must not exceed restart.backoff_max_ms ({} ms, counting the spawner's default)",
            base.as_millis(),
            max.as_millis()
        )
    })
}

/// The health check of spawns that name none: the manifest's fields over `flags`.
pub fn health_default(
    manifest: &Manifest,
    flags: &HealthCheck,
) -> std::result::Result<HealthCheck, String> {
    HealthCheck::resolve(Some(&manifest.health), flags)
        .map_err(|e| e.to_string().replace("health_check.", "health."))
}

/// Checks that the host manifest's defaults combine with the flags, so a bad combination stops
/// the spawner at start rather than failing every spawn.
pub fn check_host(
    build_dir: &Path,
    manifest: &Manifest,
    restart_flags: &RestartPolicy,
    health_flags: &HealthCheck,
) -> Result<()> {
    let malformed = |problem| Error::Manifest {
        path: build_dir.join(FILE_NAME),
        problem,
    };
    let restart = restart_default(manifest, restart_flags).map_err(malformed)?;
    let health = health_default(manifest, health_flags).map_err(malformed)?;
    if *manifest != Manifest::default() {
        tracing::info!(manifest = %build_dir.join(FILE_NAME).display(), ?restart, ?health, "host build defaults from its build manifest");
    }
    Ok(())
}

/// A build as an instance is spawned from it: where it is, its manifest, and the spawner's
/// own command as the fallback when the manifest names none.
pub(crate) struct BuildSource<'a> {
    /// Name of the uploaded build; empty for the host build.
    pub name: &'a str,
    /// Version, for messages.
    pub version: &'a str,
    /// Its directory.
    pub dir: &'a Path,
    /// Its manifest.
    pub manifest: &'a Manifest,
    /// The spawner's `--build-command` words, if it has them.
    pub fallback_command: Option<&'a [String]>,
}

/// Everything an instance takes from its build, resolved once at its spawn.
#[derive(Debug)]
pub(crate) struct Resolved {
    /// What it runs.
    pub run: BuildRun,
    /// Its ports, numbers not yet chosen.
    pub ports: Vec<HeldPort>,
    /// Its restart policy.
    pub restart: RestartPolicy,
    /// Its health check.
    pub health: HealthCheck,
    /// Whether its build speaks the Agones SDK.
    pub agones: bool,
}

/// Resolves what an instance of `build` runs: the manifest's command (else the spawner's),
/// ports, environment and stop settings, and the spawn's restart policy and health check over
/// the manifest's over the spawner's flags.
pub(crate) fn resolve(
    build: &BuildSource<'_>,
    spawner: &str,
    requested_restart: Option<&exile_api::v1::RestartPolicy>,
    requested_health: Option<&exile_api::v1::HealthCheck>,
    flags: (&RestartPolicy, &HealthCheck),
    default_grace: Duration,
) -> Result<Resolved> {
    let m = build.manifest;
    let what = if build.name.is_empty() {
        format!("the host build of spawner {spawner}")
    } else {
        format!("build {}@{}", build.name, build.version)
    };
    let command = match (&m.command, build.fallback_command) {
        (Some(words), _) => words.clone(),
        (None, Some(words)) => words.to_vec(),
        (None, None) => {
            return Err(Error::FailedPrecondition(format!(
                "{what} has no run.command in its {FILE_NAME} and spawner {spawner} has no --build-command to run it with"
            )));
        }
    };
    let bad_manifest =
        |problem: String| Error::FailedPrecondition(format!("the manifest of {what}: {problem}"));
    let restart = restart_default(m, flags.0).map_err(bad_manifest)?;
    let health = health_default(m, flags.1).map_err(bad_manifest)?;
    let restart = RestartPolicy::resolve(requested_restart, &restart)?;
    let health = HealthCheck::resolve(requested_health, &health)?;
    let ports = m
        .ports
        .iter()
        .map(|p| HeldPort {
            name: p.name.clone(),
            protocol: p.protocol.into(),
            port: 0,
        })
        .collect::<Vec<_>>();
    let ports = if ports.is_empty() {
        vec![HeldPort::game(0)]
    } else {
        ports
    };
    Ok(Resolved {
        run: BuildRun {
            name: build.name.to_owned(),
            dir: PathBuf::from(build.dir),
            command,
            env: m.env.clone(),
            stop_signal: m.stop_signal.number(),
            stop_grace: m
                .stop_grace_secs
                .map_or(default_grace, |s| Duration::from_secs(u64::from(s))),
            agones_counts: m.agones.clone(),
            caps: m.limits,
        },
        ports,
        restart,
        health,
        agones: m.sdk == exile_api::build::SdkKind::Agones,
    })
}

/// The environment an instance gets from its build's manifest, then its spawn (whose
/// variables win).
pub(crate) fn merged_env(
    build: &BTreeMap<String, String>,
    spawn: &BTreeMap<String, String>,
) -> Vec<(String, String)> {
    let mut env = build.clone();
    env.extend(spawn.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.into_iter().collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::restart::RestartMode;

    fn source<'a>(manifest: &'a Manifest, fallback: Option<&'a [String]>) -> BuildSource<'a> {
        BuildSource {
            name: "arena",
            version: "1.2",
            dir: Path::new("/data/builds/arena/1.2"),
            manifest,
            fallback_command: fallback,
        }
    }

    fn resolve_plain(source: &BuildSource<'_>) -> Result<Resolved> {
        resolve(
            source,
            "s1",
            None,
            None,
            (&RestartPolicy::default(), &HealthCheck::default()),
            Duration::from_secs(10),
        )
    }

    #[test]
    fn a_full_manifest_gives_the_instance_its_command_ports_env_and_stop() {
        let m = Manifest::parse(
            r#"
[run]
command = "./srv --port {port:game} --query {port:query}"
[env]
MODE = "ctf"
[[ports]]
name = "game"
protocol = "udp"
[[ports]]
name = "query"
protocol = "tcp"
[stop]
signal = "SIGINT"
grace_secs = 20
[restart]
policy = "always"
"#,
        )
        .unwrap();
        let fallback = vec!["host-game".to_owned()];
        let r = resolve_plain(&source(&m, Some(&fallback))).unwrap();
        assert_eq!(r.run.command[0], "./srv");
        assert_eq!(r.run.dir, Path::new("/data/builds/arena/1.2"));
        assert_eq!(r.run.env["MODE"], "ctf");
        assert_eq!(r.run.stop_signal, 2);
        assert_eq!(r.run.stop_grace, Duration::from_secs(20));
        assert_eq!(r.ports.len(), 2);
        assert_eq!(r.ports[0].protocol, crate::ports::Protocol::Udp);
        assert_eq!(r.ports[1].name, "query");
        assert_eq!(r.restart.mode, RestartMode::Always);
    }

    #[test]
    fn without_run_command_the_spawner_command_runs_and_without_either_it_is_refused() {
        let m = Manifest::default();
        let fallback = vec!["game".to_owned(), "{build_dir}".to_owned()];
        let r = resolve_plain(&source(&m, Some(&fallback))).unwrap();
        assert_eq!(r.run.command, fallback);
        assert_eq!(r.run.stop_signal, 15);
        assert_eq!(r.run.stop_grace, Duration::from_secs(10));
        assert_eq!(r.ports, [HeldPort::game(0)]);
        let err = resolve_plain(&source(&m, None)).unwrap_err().to_string();
        assert!(
            err.contains("build arena@1.2 has no run.command") && err.contains("--build-command"),
            "{err}"
        );
    }

    #[test]
    fn the_spawn_wins_over_the_manifest_which_wins_over_the_flags() {
        let m = Manifest::parse("[restart]\npolicy = \"on-failure\"\nmax_restarts = 3\n").unwrap();
        let asked = exile_api::v1::RestartPolicy {
            max_restarts: 7,
            ..Default::default()
        };
        let flags = RestartPolicy {
            backoff_base: Duration::from_millis(5),
            ..Default::default()
        };
        let r = resolve(
            &source(&m, Some(&["g".to_owned()])),
            "s1",
            Some(&asked),
            None,
            (&flags, &HealthCheck::default()),
            Duration::from_secs(1),
        )
        .unwrap();
        assert_eq!(r.restart.mode, RestartMode::OnFailure);
        assert_eq!(r.restart.max_restarts, 7);
        assert_eq!(r.restart.backoff_base, Duration::from_millis(5));
    }

    #[test]
    fn a_manifest_backoff_over_the_flags_maximum_is_named() {
        let m = Manifest::parse("[restart]\nbackoff_ms = 90000\n").unwrap();
        let err = restart_default(&m, &RestartPolicy::default()).unwrap_err();
        assert!(
            err.contains("restart.backoff_ms (90000 ms)") && err.contains("60000 ms"),
            "{err}"
        );
        let err = check_host(
            Path::new("/b"),
            &m,
            &RestartPolicy::default(),
            &HealthCheck::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("the build manifest /b/exile-build.toml is malformed: restart."),
            "{err}"
        );
    }

    #[test]
    fn a_malformed_file_is_one_sentence_naming_the_file_and_the_line() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load(dir.path()).unwrap(), Manifest::default());
        for (text, expect) in [
            ("[restart]\ncolour = 1\n", "line 2: unknown field `colour`"),
            (
                "[restart]\npolicy = \"sometimes\"\n",
                "restart.policy: \"sometimes\" is not one of: never, on-failure, always",
            ),
            ("[health]\nperiod_secs = \"5\"\n", "line 2: invalid type"),
            ("[helth]\n", "line 1: unknown field `helth`"),
            ("[restart\n", "line 1"),
            ("[health]\nperiod_secs = 0\n", "health.period_ms"),
            ("[restart]\nwindow_secs = 0\n", "restart.window_secs"),
        ] {
            std::fs::write(dir.path().join(FILE_NAME), text).unwrap();
            let err = load(dir.path()).unwrap_err().to_string();
            let head = format!(
                "the build manifest {} is malformed: ",
                dir.path().join(FILE_NAME).display()
            );
            assert!(err.starts_with(&head), "{err}");
            assert!(err.contains(expect), "{text:?}: {err}");
            assert!(!err.trim_end().contains('\n'), "not one line: {err}");
        }
    }

    #[test]
    fn the_example_in_deploy_is_a_valid_manifest() {
        let m = Manifest::parse(include_str!("../../deploy/config/exile-build.toml")).unwrap();
        assert!(m.command.is_some());
        assert_eq!(m.ports.len(), 2);
        let fallback = vec!["unused".to_owned()];
        let mut s = source(&m, Some(&fallback));
        s.name = "";
        let r = resolve_plain(&s).unwrap();
        // The caps ride with the instance's build for its life.
        assert_eq!(r.run.caps.memory_bytes, Some(2 << 30));
        assert_eq!(r.run.caps.cpu_millicores, Some(1500));
    }

    #[test]
    fn the_spawn_env_goes_over_the_build_env() {
        let build = BTreeMap::from([("A".into(), "1".into()), ("B".into(), "1".into())]);
        let spawn = BTreeMap::from([("B".into(), "2".into())]);
        assert_eq!(
            merged_env(&build, &spawn),
            [("A".into(), "1".into()), ("B".into(), "2".into())]
        );
    }
}
