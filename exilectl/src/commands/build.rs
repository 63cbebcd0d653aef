//! `build …`: list, inspect, activate, delete and roll back uploaded builds; `push` and
//! `rollout` live in their own modules.

mod push;
mod rollout;

use std::collections::HashMap;
use std::future::Future;

use anyhow::{Result, anyhow, bail};
use exile_api::v1::{
    self as pb, ActivateBuildRequest, DeleteBuildRequest, GetBuildRequest, ListBuildsRequest,
    RollbackBuildRequest,
};

use super::{Ctx, confirm};
use crate::cli::GlobalArgs;
use crate::cli::build::{BuildCommand, SpawnerSelector};
use crate::client::RpcResult;
use crate::output::{self, emit, fields};
use crate::view::{BuildView, DeletedBuildView, PortView, RollbackView, archive_format};

pub async fn run(global: &GlobalArgs, cmd: BuildCommand) -> Result<()> {
    let ctx = Ctx::connect(global, cmd.is_long()).await?;
    let ctx = &ctx;
    match cmd {
        BuildCommand::Push(args) => push::run(ctx, args).await,
        BuildCommand::List { name } => {
            let r = call(
                ctx,
                ctx.session.builds().list_builds(ListBuildsRequest {
                    name: name.unwrap_or_default(),
                }),
            )
            .await?;
            let views: Vec<BuildView> = r.builds.iter().cloned().map(Into::into).collect();
            emit(ctx.format, &views, |_| build_table(&r.builds))
        }
        BuildCommand::Get { build } => {
            let r = call(
                ctx,
                ctx.session.builds().get_build(GetBuildRequest { build }),
            )
            .await?;
            let b = r
                .build
                .ok_or_else(|| anyhow!("the master answered without the build"))?;
            emit(ctx.format, &BuildView::from(b.clone()), |_| {
                build_fields(&b)
            })
        }
        BuildCommand::Activate { build, spawners } => {
            let selector = spawners.to_map().map_err(|e| anyhow!(e))?;
            let r = call(
                ctx,
                ctx.session.builds().activate_build(ActivateBuildRequest {
                    build: build.clone(),
                    spawner_selector: selector.clone(),
                }),
            )
            .await?;
            let view = r.build.map(BuildView::from);
            emit(ctx.format, &view, |_| {
                format!(
                    "Activated {build} for new spawns on {}.",
                    SpawnerSelector::describe(&selector)
                )
            })
        }
        BuildCommand::Delete { build, yes } => {
            if !yes
                && !confirm(&format!(
                    "Delete build {build} and the chunks no other build uses?"
                ))?
            {
                bail!("not deleted");
            }
            let r = call(
                ctx,
                ctx.session.builds().delete_build(DeleteBuildRequest {
                    build: build.clone(),
                }),
            )
            .await?;
            let view = DeletedBuildView {
                build,
                freed_chunks: r.freed_chunks,
                freed_bytes: r.freed_bytes,
            };
            emit(ctx.format, &view, |v| {
                format!(
                    "Deleted build {}: freed {} chunks ({}).",
                    v.build,
                    v.freed_chunks,
                    output::bytes(v.freed_bytes)
                )
            })
        }
        BuildCommand::Rollout(args) => rollout::run(ctx, args).await,
        BuildCommand::Rollback {
            name,
            spawners,
            max_unavailable,
        } => {
            let selector = spawners.to_map().map_err(|e| anyhow!(e))?;
            let r = call(
                ctx,
                ctx.session.builds().rollback_build(RollbackBuildRequest {
                    name: name.clone(),
                    spawner_selector: selector.clone(),
                    max_unavailable: max_unavailable.unwrap_or(0),
                }),
            )
            .await?;
            let view = RollbackView {
                build: r.build.clone().map(Into::into),
                rollout: r.rollout.clone().map(Into::into),
            };
            emit(ctx.format, &view, |_| {
                rollback_sentence(&name, &selector, &r)
            })
        }
    }
}

/// Runs one unary call within `--timeout`, also on a connection opened for long streams
/// (which carries no per-call deadline of its own), and explains a failure.
pub(super) async fn call<T>(
    ctx: &Ctx,
    fut: impl Future<Output = Result<tonic::Response<T>, tonic::Status>>,
) -> Result<T> {
    match tokio::time::timeout(ctx.timeout, fut).await {
        Ok(r) => r.or_explain(&ctx.session),
        Err(_) => bail!(
            "the master at {} did not answer in time (see --timeout)",
            ctx.session.master
        ),
    }
}

fn rollback_sentence(
    name: &str,
    selector: &HashMap<String, String>,
    r: &pb::RollbackBuildResponse,
) -> String {
    let active = r
        .build
        .as_ref()
        .map_or_else(|| name.to_owned(), |b| format!("{}@{}", b.name, b.version));
    let moving = match &r.rollout {
        Some(ro) => format!(
            "rollout {} moves {} instances back (follow it with `exilectl build rollout status {} --watch`)",
            ro.id, ro.total, ro.id
        ),
        None => "no instance ran another version".into(),
    };
    format!(
        "{active} is active again on {}; {moving}.",
        SpawnerSelector::describe(selector)
    )
}

/// Where a build is active, e.g. `all` or `region=eu; gpu=yes,region=us`.
fn activations(b: &pb::Build) -> String {
    let scopes: Vec<String> = b
        .activations
        .iter()
        .map(|a| {
            if a.selector.is_empty() {
                "all".to_owned()
            } else {
                let mut pairs: Vec<String> =
                    a.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
                pairs.sort();
                pairs.join(",")
            }
        })
        .collect();
    output::clean(&scopes.join("; "))
}

/// `zip`, `tar.gz`, `tar.zst`, `tar`.
fn format_label(format: i32) -> String {
    match archive_format(format).as_str() {
        "unspecified" => "-".into(),
        word => word.replace('_', "."),
    }
}

/// `game/udp,query/tcp`.
fn port_list(ports: &[pb::Port]) -> String {
    let list: Vec<String> = ports
        .iter()
        .map(|p| {
            let v = PortView::from(p.clone());
            format!("{}/{}", v.name, v.protocol.replace('_', "+"))
        })
        .collect();
    output::or_dash(&output::clean(&list.join(",")))
}

/// The `build list` table.
pub fn build_table(builds: &[pb::Build]) -> String {
    if builds.is_empty() {
        return "No builds.".into();
    }
    let now = exile_api::now_unix_ms();
    let mut t = output::table(&[
        "BUILD",
        "ID",
        "SIZE",
        "FORMAT",
        "ACTIVE",
        "INSTANCES",
        "SPAWNERS",
        "SHA256",
        "AGE",
    ]);
    for b in builds {
        t.add_row([
            format!("{}@{}", b.name, b.version),
            b.id.clone(),
            output::bytes(b.size),
            format_label(b.format),
            output::or_dash(&activations(b)),
            b.instance_count.to_string(),
            b.spawner_count.to_string(),
            b.sha256.chars().take(12).collect(),
            output::ago(b.created_at_unix_ms, now)
                .trim_end_matches(" ago")
                .to_owned(),
        ]);
    }
    output::render(&t)
}

/// `build get` for people: the figures, then the manifest.
fn build_fields(b: &pb::Build) -> String {
    let now = exile_api::now_unix_ms();
    let active: Vec<String> = b
        .activations
        .iter()
        .map(|a| {
            let mut pairs: Vec<String> =
                a.selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
            pairs.sort();
            let scope = if pairs.is_empty() {
                "every spawner".to_owned()
            } else {
                pairs.join(",")
            };
            output::clean(&format!(
                "{scope} (activated {} by {})",
                output::ago(a.activated_at_unix_ms, now),
                output::or_dash(&a.activated_by)
            ))
        })
        .collect();
    let mut out = fields(&[
        ("ID", b.id.clone()),
        ("Build", format!("{}@{}", b.name, b.version)),
        ("SHA-256", b.sha256.clone()),
        (
            "Size",
            format!("{} ({})", output::bytes(b.size), format_label(b.format)),
        ),
        (
            "Unpacked",
            format!(
                "{} in {} file{}",
                output::bytes(b.unpacked_bytes),
                b.file_count,
                if b.file_count == 1 { "" } else { "s" }
            ),
        ),
        ("Chunks", b.chunk_count.to_string()),
        (
            "Command",
            if b.command.is_empty() {
                "- (the spawner's --build-command)".into()
            } else {
                output::clean(&b.command)
            },
        ),
        ("Ports", port_list(&b.ports)),
        (
            "Active on",
            if active.is_empty() {
                "-".into()
            } else {
                active.join("; ")
            },
        ),
        ("Instances", b.instance_count.to_string()),
        ("Spawners", format!("{} hold it on disk", b.spawner_count)),
        (
            "Created",
            format!(
                "{} by {}",
                output::ago(b.created_at_unix_ms, now),
                output::or_dash(&output::clean(&b.created_by))
            ),
        ),
    ]);
    if b.manifest.trim().is_empty() {
        out.push_str("\n\nNo exile-build.toml: instances take the spawner's defaults.");
    } else {
        out.push_str("\n\nexile-build.toml:\n");
        for line in output::clean_text(b.manifest.trim_end()).lines() {
            out.push_str("  ");
            out.push_str(line);
            out.push('\n');
        }
        out.truncate(out.trim_end().len());
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn build() -> pb::Build {
        pb::Build {
            id: "bld-1".into(),
            name: "openarena".into(),
            version: "0.8.9".into(),
            sha256: "0123456789abcdef".repeat(4),
            size: 3 << 20,
            format: pb::ArchiveFormat::TarGz as i32,
            manifest: "[run]\ncommand = \"./oa --port {port:game} --query {port:query}\"\n".into(),
            command: "./oa --port {port:game} --query {port:query}".into(),
            ports: vec![
                pb::Port {
                    name: "game".into(),
                    port: 0,
                    protocol: pb::Protocol::Udp as i32,
                },
                pb::Port {
                    name: "query".into(),
                    port: 0,
                    protocol: pb::Protocol::Tcp as i32,
                },
            ],
            activations: vec![
                pb::BuildActivation {
                    selector: HashMap::new(),
                    ..Default::default()
                },
                pb::BuildActivation {
                    selector: HashMap::from([
                        ("region".into(), "eu".into()),
                        ("gpu".into(), "yes".into()),
                    ]),
                    ..Default::default()
                },
            ],
            instance_count: 3,
            spawner_count: 2,
            file_count: 12,
            unpacked_bytes: 9 << 20,
            chunk_count: 4,
            ..Default::default()
        }
    }

    #[test]
    fn list_table_shows_reference_scopes_and_short_hash() {
        let out = build_table(&[build()]);
        let row = out.lines().nth(1).unwrap();
        assert!(row.starts_with("openarena@0.8.9 "), "{out}");
        assert!(row.contains("3.0 MiB"), "{out}");
        assert!(row.contains(" tar.gz "), "{out}");
        assert!(row.contains("all; gpu=yes,region=eu"), "{out}");
        assert!(row.contains(" 0123456789ab "), "{out}");
        assert!(!row.contains("0123456789abc"), "{out}");
        assert_eq!(build_table(&[]), "No builds.");
    }

    #[test]
    fn get_shows_command_ports_counts_and_manifest() {
        let out = build_fields(&build());
        for want in [
            "Command:",
            "./oa --port {port:game} --query {port:query}",
            "game/udp,query/tcp",
            "9.0 MiB in 12 files",
            "every spawner (activated",
            "gpu=yes,region=eu (activated",
            "2 hold it on disk",
            "exile-build.toml:\n  [run]\n  command = ",
        ] {
            assert!(out.contains(want), "{want:?} missing in:\n{out}");
        }
        let bare = build_fields(&pb::Build {
            name: "x".into(),
            version: "1".into(),
            ..Default::default()
        });
        assert!(bare.contains("the spawner's --build-command"), "{bare}");
        assert!(bare.contains("No exile-build.toml"), "{bare}");
    }

    #[test]
    fn a_hostile_command_is_shown_escaped() {
        let out = build_fields(&pb::Build {
            command: "./x \u{1b}]0;pwned\u{7}".into(),
            manifest: "a = \"\u{1b}[2J\"\n".into(),
            ..Default::default()
        });
        assert!(!out.contains('\u{1b}'), "{out:?}");
        assert!(out.contains("\\u{1b}]0;pwned"), "{out}");
    }

    #[test]
    fn rollback_sentence_names_the_version_and_the_rollout() {
        let r = pb::RollbackBuildResponse {
            build: Some(pb::Build {
                name: "openarena".into(),
                version: "0.8.8".into(),
                ..Default::default()
            }),
            rollout: Some(pb::Rollout {
                id: "rol-7".into(),
                total: 4,
                ..Default::default()
            }),
        };
        let s = rollback_sentence("openarena", &HashMap::new(), &r);
        assert!(
            s.starts_with("openarena@0.8.8 is active again on every spawner; rollout rol-7 moves 4 instances back"),
            "{s}"
        );
        let none = rollback_sentence(
            "openarena",
            &HashMap::from([("region".into(), "eu".into())]),
            &pb::RollbackBuildResponse {
                build: r.build.clone(),
                rollout: None,
            },
        );
        assert_eq!(
            none,
            "openarena@0.8.8 is active again on spawners region=eu; no instance ran another version."
        );
    }
}
