//! `spawner …`: the spawner registry, drain/undrain/remove, and enrollment tokens.

use anyhow::{Result, bail};
use exile_api::v1::{
    self as pb, CreateEnrollmentTokenRequest, DrainSpawnerRequest, GetSpawnerRequest,
    ListEnrollmentTokensRequest, ListSpawnersRequest, RemoveSpawnerRequest,
    RevokeEnrollmentTokenRequest, UndrainSpawnerRequest,
};

use super::instance::instance_table;
use super::{Ctx, confirm};
use crate::cli::{EnrollmentTokenCommand, SpawnerCommand};
use crate::client::RpcResult;
use crate::output::{self, emit, fields, print_line};
use crate::view::{
    EnrollmentTokenView, NewEnrollmentTokenView, SpawnerDetailView, SpawnerView, spawner_state,
};

pub async fn run(ctx: &Ctx, cmd: SpawnerCommand) -> Result<()> {
    let mut client = ctx.session.spawners();
    match cmd {
        SpawnerCommand::Token(c) => enrollment(ctx, c).await,
        SpawnerCommand::List {
            region,
            watch: true,
        } => super::list_watch::spawners(ctx, region.unwrap_or_default()).await,
        SpawnerCommand::List { region, .. } => {
            let r = client
                .list_spawners(ListSpawnersRequest {
                    region: region.unwrap_or_default(),
                })
                .await
                .or_explain(&ctx.session)?;
            let views: Vec<SpawnerView> = r.spawners.iter().cloned().map(Into::into).collect();
            emit(ctx.format, &views, |_| spawner_table(&r.spawners))
        }
        SpawnerCommand::Get { id } => {
            let r = client
                .get_spawner(GetSpawnerRequest { id })
                .await
                .or_explain(&ctx.session)?;
            let view = SpawnerDetailView::from(r.clone());
            emit(ctx.format, &view, |_| {
                let mut out = r.spawner.as_ref().map(spawner_fields).unwrap_or_default();
                out.push_str("\n\n");
                out.push_str(&held_builds(
                    r.spawner.as_ref().map_or(&[][..], |s| s.builds.as_slice()),
                ));
                out.push_str("\n\n");
                if r.instances.is_empty() {
                    out.push_str("No instances.");
                } else {
                    out.push_str(&instance_table(&r.instances));
                }
                out
            })
        }
        SpawnerCommand::Drain { id } => {
            let r = client
                .drain_spawner(DrainSpawnerRequest { id: id.clone() })
                .await
                .or_explain(&ctx.session)?;
            changed(
                ctx,
                r.spawner,
                &format!("Spawner {id} drained: no new instances will be placed on it."),
            )
        }
        SpawnerCommand::Undrain { id } => {
            let r = client
                .undrain_spawner(UndrainSpawnerRequest { id: id.clone() })
                .await
                .or_explain(&ctx.session)?;
            changed(
                ctx,
                r.spawner,
                &format!("Spawner {id} takes placements again."),
            )
        }
        SpawnerCommand::Remove { id, yes } => {
            if !yes {
                let question =
                    format!("Remove spawner {id}, revoke its credential and forget its instances?");
                if !confirm(&question)? {
                    bail!("not removed");
                }
            }
            client
                .remove_spawner(RemoveSpawnerRequest { id: id.clone() })
                .await
                .or_explain(&ctx.session)?;
            print_line(&format!("Removed spawner {id}."))
        }
    }
}

fn changed(ctx: &Ctx, spawner: Option<pb::Spawner>, sentence: &str) -> Result<()> {
    let view = spawner.map(SpawnerView::from);
    emit(ctx.format, &view, |_| sentence.to_owned())
}

async fn enrollment(ctx: &Ctx, cmd: EnrollmentTokenCommand) -> Result<()> {
    let mut client = ctx.session.spawners();
    let now = exile_api::now_unix_ms();
    match cmd {
        EnrollmentTokenCommand::Create { ttl, description } => {
            let r = client
                .create_enrollment_token(CreateEnrollmentTokenRequest {
                    ttl_seconds: ttl.as_secs().max(1),
                    description,
                })
                .await
                .or_explain(&ctx.session)?;
            let expires = r.token.as_ref().map_or(0, |t| t.expires_at_unix_ms);
            let view = NewEnrollmentTokenView {
                command: format!(
                    "exile-spawner --master {} --enrollment-token {}",
                    ctx.session.master, r.secret
                ),
                token: r.token.map(Into::into),
                secret: r.secret,
            };
            emit(ctx.format, &view, |v| {
                let id = v.token.as_ref().map_or("", |t| t.id.as_str());
                format!(
                    "Created enrollment token {id}, single use, expires {}.\n\
                     Secret (shown once):\n{}\n\n\
                     On the new host, run:\n  {}",
                    super::auth::when(expires),
                    v.secret,
                    v.command
                )
            })
        }
        EnrollmentTokenCommand::List => {
            let r = client
                .list_enrollment_tokens(ListEnrollmentTokensRequest {})
                .await
                .or_explain(&ctx.session)?;
            let views: Vec<EnrollmentTokenView> =
                r.tokens.iter().cloned().map(Into::into).collect();
            emit(ctx.format, &views, |_| {
                let mut t =
                    output::table(&["ID", "DESCRIPTION", "CREATED", "EXPIRES", "BY", "STATUS"]);
                for tok in &r.tokens {
                    let status = if tok.revoked {
                        "revoked".to_owned()
                    } else if !tok.used_by_spawner.is_empty() {
                        format!("used by {}", tok.used_by_spawner)
                    } else if tok.expires_at_unix_ms > 0 && tok.expires_at_unix_ms <= now {
                        "expired".to_owned()
                    } else {
                        "unused".to_owned()
                    };
                    t.add_row([
                        tok.id.clone(),
                        output::or_dash(&tok.description),
                        output::ago(tok.created_at_unix_ms, now),
                        output::ago(tok.expires_at_unix_ms, now),
                        output::or_dash(&tok.created_by),
                        status,
                    ]);
                }
                output::render(&t)
            })
        }
        EnrollmentTokenCommand::Revoke { id } => {
            client
                .revoke_enrollment_token(RevokeEnrollmentTokenRequest { id: id.clone() })
                .await
                .or_explain(&ctx.session)?;
            print_line(&format!("Revoked enrollment token {id}."))
        }
    }
}

/// The builds a spawner holds on disk, for `spawner get`.
pub fn held_builds(builds: &[pb::HeldBuild]) -> String {
    if builds.is_empty() {
        return "No uploaded builds on disk.".into();
    }
    let now = exile_api::now_unix_ms();
    let mut t = output::table(&[
        "BUILD",
        "SHA256",
        "ON DISK",
        "INSTANCES",
        "FETCHED",
        "INSTALLED",
    ]);
    for b in builds {
        t.add_row([
            format!("{}@{}", b.name, b.version),
            b.sha256.chars().take(12).collect(),
            output::bytes(b.disk_bytes),
            b.instance_count.to_string(),
            output::bytes(b.fetched_bytes),
            output::ago(b.installed_at_unix_ms, now),
        ]);
    }
    output::render(&t)
}

/// The `spawner list` table.
pub fn spawner_table(spawners: &[pb::Spawner]) -> String {
    if spawners.is_empty() {
        return "No spawners.".into();
    }
    let now = exile_api::now_unix_ms();
    let mut t = output::table(&[
        "ID",
        "NAME",
        "REGION",
        "STATE",
        "INSTANCES",
        "CPU",
        "MEMORY",
        "LAST SEEN",
    ]);
    for s in spawners {
        let r = s.resources.unwrap_or_default();
        t.add_row([
            s.id.clone(),
            output::or_dash(&s.name),
            output::or_dash(&s.region),
            output::title(&spawner_state(s.state)),
            format!("{}/{}", s.instance_count, s.capacity),
            output::host_cpu(&r),
            memory(&r),
            output::ago(s.last_seen_unix_ms, now),
        ]);
    }
    output::render(&t)
}

fn memory(r: &pb::Resources) -> String {
    if r.memory_total_bytes > 0 {
        format!(
            "{} / {}",
            output::bytes(r.memory_bytes),
            output::bytes(r.memory_total_bytes)
        )
    } else {
        output::bytes(r.memory_bytes)
    }
}

fn spawner_fields(s: &pb::Spawner) -> String {
    let now = exile_api::now_unix_ms();
    let r = s.resources.unwrap_or_default();
    let mut labels: Vec<String> = s.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
    labels.sort();
    fields(&[
        ("ID", s.id.clone()),
        ("Name", output::or_dash(&s.name)),
        ("State", output::title(&spawner_state(s.state))),
        ("Drained", if s.drained { "yes" } else { "no" }.into()),
        ("Region", output::or_dash(&s.region)),
        ("Host", output::or_dash(&s.host)),
        ("Address", output::or_dash(&s.advertised_address)),
        ("Instances", format!("{}/{}", s.instance_count, s.capacity)),
        ("Labels", output::or_dash(&output::clean(&labels.join(",")))),
        ("Agent", output::or_dash(&s.agent_version)),
        ("Host build", output::or_dash(&s.active_build)),
        ("CPU", output::host_cpu(&r)),
        ("Memory", memory(&r)),
        (
            "Disk",
            format!(
                "{} / {}",
                output::bytes(r.disk_used_bytes),
                output::bytes(r.disk_total_bytes)
            ),
        ),
        ("Last seen", output::ago(s.last_seen_unix_ms, now)),
        ("Enrolled", output::ago(s.enrolled_at_unix_ms, now)),
        (
            "Settings",
            if s.settings_error.is_empty() {
                format!("version {}", s.settings_version)
            } else {
                format!(
                    "version {} (not applied: {})",
                    s.settings_version,
                    output::clean(&s.settings_error)
                )
            },
        ),
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spawner_get_lists_the_builds_it_holds() {
        let out = held_builds(&[pb::HeldBuild {
            name: "openarena".into(),
            version: "0.8.9".into(),
            sha256: "0123456789abcdef".repeat(4),
            disk_bytes: 9 << 20,
            instance_count: 2,
            fetched_bytes: 1536,
            installed_at_unix_ms: 0,
        }]);
        let row = out.lines().nth(1).unwrap();
        assert!(row.starts_with("openarena@0.8.9 "), "{out}");
        for want in [" 0123456789ab ", " 9.0 MiB ", " 2 ", " 1.5 KiB "] {
            assert!(row.contains(want), "{want:?} missing in:\n{out}");
        }
        assert_eq!(held_builds(&[]), "No uploaded builds on disk.");
    }
}
