//! Grammar of `exilectl build …`: push, list, get, activate, delete, rollouts and rollback.

use std::collections::HashMap;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use exile_api::build::{BuildSpec, check_name, check_version};

use super::parse_key_val;

/// `exilectl build …`.
#[derive(Debug, Subcommand)]
pub enum BuildCommand {
    /// Upload an archive (.zip, .tar.gz, .tar.zst or .tar) as a new version (operator).
    // `--version` names the build's version here, not exilectl's.
    #[command(disable_version_flag = true)]
    Push(PushArgs),
    /// List builds, newest first.
    #[command(visible_alias = "ls")]
    List {
        /// Only versions of this build name.
        #[arg(long, value_parser = parse_name)]
        name: Option<String>,
    },
    /// Show one build: its manifest's command and ports, where it is active, who uses it.
    Get {
        /// `name@version`, or the build id (bld-…).
        #[arg(value_name = "NAME@VERSION", value_parser = parse_ref_or_id)]
        build: String,
    },
    /// Make a version the default of its name for new spawns (operator).
    Activate {
        /// Version to activate.
        #[arg(value_name = "NAME@VERSION", value_parser = parse_exact)]
        build: String,
        #[command(flatten)]
        spawners: SpawnerSelector,
    },
    /// Delete a version and the chunks no other build uses (admin); refused while an
    /// instance, an activation or a running rollout uses it.
    #[command(visible_alias = "rm")]
    Delete {
        /// Version to delete.
        #[arg(value_name = "NAME@VERSION", value_parser = parse_exact)]
        build: String,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Replace the running instances of a build name with another version (operator); or
    /// `status`, `cancel` and `list` of rollouts.
    Rollout(RolloutArgs),
    /// Activate the version that was active before the current one and roll instances back
    /// to it (operator).
    Rollback {
        /// Build name.
        #[arg(value_parser = parse_name)]
        name: String,
        #[command(flatten)]
        spawners: SpawnerSelector,
        /// Most instances out of service at once (default: the setting
        /// builds.rollout_max_unavailable, 1 unless set).
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        max_unavailable: Option<u32>,
    },
}

impl BuildCommand {
    /// Whether the command may run longer than one call's deadline (an upload, or following
    /// a rollout), so its connection must not bound every call by `--timeout`.
    pub fn is_long(&self) -> bool {
        match self {
            Self::Push(_) => true,
            Self::Rollout(r) => match &r.command {
                Some(RolloutCommand::Status { watch, .. }) => *watch,
                Some(_) => false,
                None => r.start.wait,
            },
            _ => false,
        }
    }
}

/// `exilectl build push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Archive to upload; its format is detected from its bytes.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// Build name, e.g. openarena.
    #[arg(long, value_parser = parse_name)]
    pub name: String,
    /// Version, e.g. 0.8.9.
    #[arg(long, value_parser = parse_version)]
    pub version: String,
    /// An exile-build.toml to use instead of the one inside the archive.
    #[arg(long, value_name = "FILE")]
    pub manifest: Option<PathBuf>,
    /// Draw no progress bar (one is drawn only when standard error is a terminal).
    #[arg(long)]
    pub no_progress: bool,
}

/// Spawners an activation, rollout or rollback applies to.
#[derive(Debug, Args)]
pub struct SpawnerSelector {
    /// Only spawners matching every KEY=VALUE (`region` matches the spawner's region, other
    /// keys its labels); repeat or separate with commas. Default: every spawner.
    #[arg(
        long = "spawners",
        value_name = "KEY=VALUE",
        value_parser = parse_key_val,
        value_delimiter = ','
    )]
    pub pairs: Vec<(String, String)>,
}

impl SpawnerSelector {
    /// The selector as the API takes it; a key given twice with two values is refused (no
    /// spawner could match both).
    pub fn to_map(&self) -> Result<HashMap<String, String>, String> {
        let mut map = HashMap::new();
        for (k, v) in &self.pairs {
            if let Some(old) = map.insert(k.clone(), v.clone())
                && old != *v
            {
                return Err(format!(
                    "--spawners names {k} twice ({k}={old} and {k}={v}): no spawner matches both"
                ));
            }
        }
        Ok(map)
    }

    /// `region=eu,gpu=yes` (sorted), or `every spawner`.
    pub fn describe(map: &HashMap<String, String>) -> String {
        if map.is_empty() {
            return "every spawner".into();
        }
        let mut pairs: Vec<String> = map.iter().map(|(k, v)| format!("{k}={v}")).collect();
        pairs.sort();
        format!("spawners {}", pairs.join(","))
    }
}

/// `exilectl build rollout …`: start one, or a subcommand.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct RolloutArgs {
    #[command(subcommand)]
    pub command: Option<RolloutCommand>,
    #[command(flatten)]
    pub start: StartRolloutArgs,
}

/// `exilectl build rollout NAME@VERSION`.
#[derive(Debug, Args)]
pub struct StartRolloutArgs {
    /// Version the instances move to.
    #[arg(value_name = "NAME@VERSION", required = true, value_parser = parse_exact)]
    pub build: Option<String>,
    /// Most instances out of service at once (default: the setting
    /// builds.rollout_max_unavailable, 1 unless set).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub max_unavailable: Option<u32>,
    /// Replace this share of the instances first and go on only when those run, e.g. 10%.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent)]
    pub canary: Option<u32>,
    /// New instances that may fail before the rollout rolls back on its own (default 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub failure_threshold: Option<u32>,
    #[command(flatten)]
    pub spawners: SpawnerSelector,
    /// Also make the version the default for new spawns on those spawners.
    #[arg(long)]
    pub activate: bool,
    /// Follow the rollout until it ends; exit 1 unless it succeeds.
    #[arg(long)]
    pub wait: bool,
}

/// `exilectl build rollout status|cancel|list`.
#[derive(Debug, Subcommand)]
pub enum RolloutCommand {
    /// Show a rollout's progress: by id, or the newest of a build name; without either, the
    /// running ones.
    Status {
        /// Build name or rollout id (rol-…).
        #[arg(value_name = "NAME|ROLLOUT_ID")]
        target: Option<String>,
        /// Follow it until it ends; exit 1 when it rolled back, failed or was cancelled.
        #[arg(long, short = 'w')]
        watch: bool,
    },
    /// Stop a running rollout where it is: replaced instances stay replaced (operator).
    Cancel {
        /// Rollout id (rol-…).
        #[arg(value_name = "ROLLOUT_ID")]
        id: String,
    },
    /// List rollouts, newest first.
    #[command(visible_alias = "ls")]
    List {
        /// Only rollouts of this build name.
        #[arg(long, value_parser = parse_name)]
        name: Option<String>,
    },
}

/// What `rollout status` names: a rollout id or a build name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RolloutTarget {
    /// `rol-…`.
    Id(String),
    /// The newest rollout of this build name.
    Name(String),
}

impl RolloutTarget {
    /// `rol-…` is an id; anything else must be a build name.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.starts_with("rol-") {
            Ok(Self::Id(s.to_owned()))
        } else {
            check_name(s).map_err(|e| format!("{e} (or give a rollout id, rol-…)"))?;
            Ok(Self::Name(s.to_owned()))
        }
    }
}

fn parse_name(s: &str) -> Result<String, String> {
    check_name(s).map(|()| s.to_owned())
}

fn parse_version(s: &str) -> Result<String, String> {
    check_version(s).map(|()| s.to_owned())
}

/// `name@version`, checked, as typed.
pub fn parse_exact(s: &str) -> Result<String, String> {
    BuildSpec::parse_exact(s).map(|(n, v)| format!("{n}@{v}"))
}

fn parse_ref_or_id(s: &str) -> Result<String, String> {
    if s.starts_with("bld-") {
        Ok(s.to_owned())
    } else {
        parse_exact(s)
    }
}

/// A share in percent: `10%` or `10`, 0 to 100.
pub fn parse_percent(s: &str) -> Result<u32, String> {
    let t = s.trim();
    let digits = t.strip_suffix('%').unwrap_or(t).trim_end();
    match digits.parse::<u32>() {
        Ok(p) if p <= 100 => Ok(p),
        _ => Err(format!("`{s}` is not a share from 0% to 100%, e.g. 10%")),
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::cli::{Cli, Command};

    fn parse(args: &[&str]) -> Result<BuildCommand, clap::Error> {
        let cli = Cli::try_parse_from([&["exilectl", "build"], args].concat())?;
        match cli.command {
            Command::Build(b) => Ok(b),
            other => panic!("parsed as {other:?}"),
        }
    }

    #[test]
    fn percent_takes_a_sign_or_a_bare_number() {
        assert_eq!(parse_percent("10%"), Ok(10));
        assert_eq!(parse_percent("10"), Ok(10));
        assert_eq!(parse_percent(" 25 % "), Ok(25));
        assert_eq!(parse_percent("0"), Ok(0));
        assert_eq!(parse_percent("100%"), Ok(100));
        for bad in ["101%", "-5", "%", "", "ten", "10%%", "1.5%"] {
            assert!(parse_percent(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn push_reads_name_version_and_manifest() {
        let BuildCommand::Push(p) = parse(&[
            "push",
            "./oa.zip",
            "--name",
            "openarena",
            "--version",
            "0.8.9+r2",
            "--manifest",
            "exile-build.toml",
            "--no-progress",
        ])
        .unwrap() else {
            panic!("not push");
        };
        assert_eq!(p.file, PathBuf::from("./oa.zip"));
        assert_eq!(
            (p.name.as_str(), p.version.as_str()),
            ("openarena", "0.8.9+r2")
        );
        assert_eq!(p.manifest, Some(PathBuf::from("exile-build.toml")));
        assert!(p.no_progress);
        assert!(parse(&["push", "x.zip", "--name", "../x", "--version", "1"]).is_err());
        assert!(parse(&["push", "x.zip", "--name", "x", "--version", "a/b"]).is_err());
        assert!(parse(&["push", "x.zip", "--name", "x"]).is_err());
    }

    #[test]
    fn references_need_a_version_where_one_is_changed() {
        assert!(parse(&["activate", "openarena"]).is_err());
        assert!(parse(&["delete", "openarena", "--yes"]).is_err());
        assert!(parse(&["rollout", "openarena"]).is_err());
        assert!(parse(&["get", "openarena@1"]).is_ok());
        assert!(parse(&["get", "bld-0193"]).is_ok());
        assert!(parse(&["get", "openarena"]).is_err());
        assert!(parse(&["rollback", "openarena"]).is_ok());
        assert!(parse(&["rollback", "openarena@1"]).is_err());
    }

    #[test]
    fn selectors_repeat_or_use_commas_and_refuse_contradictions() {
        let BuildCommand::Activate { build, spawners } = parse(&[
            "activate",
            "openarena@0.8.9",
            "--spawners",
            "region=eu,gpu=yes",
            "--spawners",
            "tier=2",
        ])
        .unwrap() else {
            panic!("not activate");
        };
        assert_eq!(build, "openarena@0.8.9");
        let map = spawners.to_map().unwrap();
        assert_eq!(map.len(), 3);
        assert_eq!(map["region"], "eu");
        assert_eq!(map["tier"], "2");
        assert_eq!(
            SpawnerSelector::describe(&map),
            "spawners gpu=yes,region=eu,tier=2"
        );
        assert_eq!(SpawnerSelector::describe(&HashMap::new()), "every spawner");
        let BuildCommand::Activate { spawners, .. } = parse(&[
            "activate",
            "a@1",
            "--spawners",
            "region=eu",
            "--spawners",
            "region=us",
        ])
        .unwrap() else {
            panic!("not activate");
        };
        let e = spawners.to_map().unwrap_err();
        assert!(e.contains("region=eu and region=us"), "{e}");
        assert!(parse(&["activate", "a@1", "--spawners", "novalue"]).is_err());
    }

    #[test]
    fn rollout_starts_or_takes_a_subcommand() {
        let BuildCommand::Rollout(r) =
            parse(&["rollout", "openarena@0.8.9", "--canary", "10"]).unwrap()
        else {
            panic!("not rollout");
        };
        assert!(r.command.is_none());
        assert_eq!(r.start.canary, Some(10));
        assert_eq!(
            r.start.max_unavailable, None,
            "the master's setting decides"
        );
        assert!(!r.start.wait);

        let BuildCommand::Rollout(r) = parse(&["rollout", "status", "rol-7", "--watch"]).unwrap()
        else {
            panic!("not rollout");
        };
        let Some(RolloutCommand::Status { target, watch }) = &r.command else {
            panic!("not status: {r:?}");
        };
        assert_eq!(target.as_deref(), Some("rol-7"));
        assert!(*watch);
        assert!(BuildCommand::Rollout(r).is_long());

        assert!(parse(&["rollout", "cancel", "rol-7"]).is_ok());
        assert!(parse(&["rollout", "list", "--name", "openarena"]).is_ok());
        assert!(parse(&["rollout"]).is_err());
        assert!(parse(&["rollout", "a@1", "--max-unavailable", "0"]).is_err());
        assert!(parse(&["rollout", "a@1", "--canary", "150%"]).is_err());
        assert!(parse(&["rollout", "a@1", "--failure-threshold", "0"]).is_err());
        assert!(!parse(&["rollout", "a@1"]).unwrap().is_long());
        assert!(parse(&["rollout", "a@1", "--wait"]).unwrap().is_long());
        assert!(
            parse(&["push", "f", "--name", "a", "--version", "1"])
                .unwrap()
                .is_long()
        );
        assert!(!parse(&["list"]).unwrap().is_long());
    }

    #[test]
    fn rollout_targets_are_ids_or_build_names() {
        assert_eq!(
            RolloutTarget::parse("rol-01"),
            Ok(RolloutTarget::Id("rol-01".into()))
        );
        assert_eq!(
            RolloutTarget::parse("openarena"),
            Ok(RolloutTarget::Name("openarena".into()))
        );
        let e = RolloutTarget::parse("open arena").unwrap_err();
        assert!(e.contains("rol-"), "{e}");
    }
}
