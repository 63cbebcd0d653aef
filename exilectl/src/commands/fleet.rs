//! `fleet …` and `allocate`: fleets of instances the master keeps, and allocation.

use anyhow::{Result, bail};
use exile_api::v1::{self as pb, PlacementStrategy};

use super::{Ctx, confirm};
use crate::cli::fleet::FleetSpecArgs;
use crate::cli::{AllocateArgs, FleetCommand};
use crate::client::RpcResult;
use crate::output::{self, emit, fields, print_line};
use crate::view::{AllocationView, FleetView};

pub async fn run(ctx: &Ctx, cmd: FleetCommand) -> Result<()> {
    let mut client = ctx.session.fleets();
    match cmd {
        FleetCommand::Create { name, spec } => {
            let mut s = pb::FleetSpec {
                replicas: 1,
                ..Default::default()
            };
            apply(&mut s, spec, false)?;
            let r = client
                .create_fleet(pb::CreateFleetRequest {
                    name,
                    spec: Some(s),
                })
                .await
                .or_explain(&ctx.session)?;
            show(ctx, r.fleet)
        }
        FleetCommand::Update {
            name,
            spec,
            no_autoscaler,
        } => {
            let current = client
                .get_fleet(pb::GetFleetRequest { name: name.clone() })
                .await
                .or_explain(&ctx.session)?
                .fleet
                .and_then(|f| f.spec)
                .unwrap_or_default();
            let mut s = current;
            apply(&mut s, spec, no_autoscaler)?;
            let r = client
                .update_fleet(pb::UpdateFleetRequest {
                    name,
                    spec: Some(s),
                })
                .await
                .or_explain(&ctx.session)?;
            show(ctx, r.fleet)
        }
        FleetCommand::Scale { name, replicas } => {
            let r = client
                .scale_fleet(pb::ScaleFleetRequest { name, replicas })
                .await
                .or_explain(&ctx.session)?;
            show(ctx, r.fleet)
        }
        FleetCommand::Get { name } => {
            let r = client
                .get_fleet(pb::GetFleetRequest { name })
                .await
                .or_explain(&ctx.session)?;
            show(ctx, r.fleet)
        }
        FleetCommand::List => {
            let r = client
                .list_fleets(pb::ListFleetsRequest {})
                .await
                .or_explain(&ctx.session)?;
            let views: Vec<FleetView> = r.fleets.into_iter().map(Into::into).collect();
            emit(ctx.format, &views, |v| fleet_table(v))
        }
        FleetCommand::Delete { name, yes } => {
            if !yes
                && !confirm(&format!(
                    "Delete fleet {name} and remove its instances that are not Allocated?"
                ))?
            {
                bail!("not confirmed");
            }
            client
                .delete_fleet(pb::DeleteFleetRequest { name: name.clone() })
                .await
                .or_explain(&ctx.session)?;
            print_line(&format!("Fleet {name} deleted."))
        }
    }
}

/// Sets the spec fields the flags name; `no_autoscaler` drops the autoscaler.
fn apply(s: &mut pb::FleetSpec, a: FleetSpecArgs, no_autoscaler: bool) -> Result<()> {
    if let Some(b) = a.build {
        s.build = b;
    }
    if let Some(r) = a.replicas {
        s.replicas = r;
    }
    let placement = s.placement.get_or_insert_with(Default::default);
    if !a.regions.is_empty() {
        placement.regions = a.regions;
    }
    if !a.selectors.is_empty() {
        placement.spawner_selector = a.selectors.into_iter().collect();
    }
    if let Some(st) = a.strategy {
        placement.strategy = PlacementStrategy::from(st) as i32;
    }
    if !a.labels.is_empty() {
        s.labels = a.labels.into_iter().collect();
    }
    if !a.env.is_empty() {
        s.env = a.env.into_iter().collect();
    }
    if a.max_surge.is_some() || a.max_unavailable.is_some() {
        let r = s.rollout.get_or_insert_with(Default::default);
        if let Some(n) = a.max_surge {
            r.max_surge = n;
        }
        if let Some(n) = a.max_unavailable {
            r.max_unavailable = n;
        }
    }
    if no_autoscaler {
        s.autoscaler = None;
        return Ok(());
    }
    let policy = if let Some(n) = a.buffer {
        Some(pb::fleet_autoscaler::Policy::Buffer(pb::BufferPolicy {
            buffer_size: n,
            buffer_percent: 0,
        }))
    } else if let Some(p) = a.buffer_percent {
        Some(pb::fleet_autoscaler::Policy::Buffer(pb::BufferPolicy {
            buffer_size: 0,
            buffer_percent: p,
        }))
    } else {
        a.webhook.map(|url| {
            pb::fleet_autoscaler::Policy::Webhook(pb::WebhookPolicy {
                url,
                timeout_ms: a.webhook_timeout_ms.unwrap_or(0),
            })
        })
    };
    let touches =
        policy.is_some() || a.min.is_some() || a.max.is_some() || a.sync_interval.is_some();
    if !touches {
        return Ok(());
    }
    let auto = match (&mut s.autoscaler, policy.is_some()) {
        (Some(auto), _) => auto,
        (None, true) => s.autoscaler.insert(pb::FleetAutoscaler {
            min_replicas: 0,
            max_replicas: s.replicas.max(1) * 10,
            ..Default::default()
        }),
        (None, false) => bail!(
            "--min, --max and --sync-interval need an autoscaler: give --buffer, --buffer-percent or --webhook"
        ),
    };
    if let Some(p) = policy {
        auto.policy = Some(p);
    }
    if let Some(m) = a.min {
        auto.min_replicas = m;
    }
    if let Some(m) = a.max {
        auto.max_replicas = m;
    }
    if let Some(i) = a.sync_interval {
        auto.sync_interval_seconds = i;
    }
    Ok(())
}

fn show(ctx: &Ctx, fleet: Option<pb::Fleet>) -> Result<()> {
    let Some(f) = fleet else {
        bail!("the master answered without the fleet");
    };
    let view = FleetView::from(f);
    emit(ctx.format, &view, fleet_fields)
}

fn fleet_fields(v: &FleetView) -> String {
    let c = |s: &str| output::or_dash(&output::clean(s));
    let kv = |m: &std::collections::BTreeMap<String, String>| {
        m.iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let autoscaler = v.autoscaler.as_ref().map_or_else(String::new, |a| {
        let what = match (a.buffer_size, a.buffer_percent, &a.webhook_url) {
            (Some(n), _, _) => format!("buffer {n}"),
            (_, Some(p), _) => format!("buffer {p}%"),
            (_, _, Some(url)) => format!("webhook {url}"),
            _ => a.policy.clone(),
        };
        format!("{what}, {}..={} replicas", a.min_replicas, a.max_replicas)
    });
    fields(&[
        ("Name", c(&v.name)),
        (
            "Build",
            c(if v.build.is_empty() {
                "host build"
            } else {
                &v.build
            }),
        ),
        ("Replicas", v.replicas.to_string()),
        (
            "Instances",
            format!(
                "{} counted: {} ready, {} allocated, {} starting, {} unknown",
                v.current, v.ready, v.allocated, v.starting, v.unknown
            ),
        ),
        (
            "Rollout",
            format!(
                "max surge {}, max unavailable {}{}",
                v.max_surge,
                v.max_unavailable,
                if v.outdated > 0 {
                    format!("; {} on an older build", v.outdated)
                } else {
                    String::new()
                }
            ),
        ),
        ("Regions", c(&v.regions.join(","))),
        ("Spawners", c(&kv(&v.spawner_selector))),
        ("Strategy", v.strategy.clone()),
        ("Labels", c(&kv(&v.labels))),
        ("Autoscaler", c(&autoscaler)),
        ("Message", c(&v.message)),
    ])
}

fn fleet_table(views: &[FleetView]) -> String {
    if views.is_empty() {
        return "No fleets.".into();
    }
    let mut t = output::table(&[
        "NAME",
        "BUILD",
        "REPLICAS",
        "CURRENT",
        "READY",
        "ALLOCATED",
        "AUTOSCALER",
        "MESSAGE",
    ]);
    for v in views {
        t.add_row(vec![
            output::clean(&v.name),
            output::or_dash(&output::clean(&v.build)),
            v.replicas.to_string(),
            v.current.to_string(),
            v.ready.to_string(),
            v.allocated.to_string(),
            v.autoscaler
                .as_ref()
                .map_or_else(|| "-".into(), |a| a.policy.clone()),
            output::or_dash(&output::clean(&v.message)),
        ]);
    }
    t.to_string()
}

pub async fn allocate(ctx: &Ctx, a: AllocateArgs) -> Result<()> {
    let req = pb::AllocateRequest {
        required: Some(pb::AllocationSelector {
            fleet: a.fleet.unwrap_or_default(),
            labels: a.selectors.into_iter().collect(),
            min_free_players: a.min_free_players.unwrap_or(0),
        }),
        preferred: vec![],
        strategy: a
            .strategy
            .map_or(PlacementStrategy::Unspecified, PlacementStrategy::from)
            as i32,
        labels: a.labels.into_iter().collect(),
        annotations: a.annotations.into_iter().collect(),
        idempotency_key: a.idempotency_key.unwrap_or_default(),
        metadata: a.metadata.map(String::into_bytes).unwrap_or_default(),
    };
    let r = ctx
        .session
        .allocations()
        .allocate(req)
        .await
        .or_explain(&ctx.session)?;
    let view = AllocationView::from(r);
    emit(ctx.format, &view, |v| {
        let ports = v
            .ports
            .iter()
            .map(|p| format!("{}={}/{}", p.name, p.port, p.protocol))
            .collect::<Vec<_>>()
            .join(" ");
        fields(&[
            ("Instance", output::clean(&v.instance_id)),
            ("Fleet", output::or_dash(&output::clean(&v.fleet))),
            ("Spawner", output::clean(&v.spawner_id)),
            ("Address", output::or_dash(&output::clean(&v.address))),
            ("Ports", output::or_dash(&output::clean(&ports))),
            ("Replayed", v.replayed.to_string()),
        ])
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollout_flags_reach_the_spec_and_fleet_get_shows_the_roll() {
        let mut spec = pb::FleetSpec {
            build: "demo@1".into(),
            replicas: 6,
            ..Default::default()
        };
        let args = FleetSpecArgs {
            build: Some("demo".into()),
            max_surge: Some(2),
            ..Default::default()
        };
        apply(&mut spec, args, false).unwrap();
        assert_eq!(spec.build, "demo");
        let r = spec.rollout.unwrap();
        assert_eq!((r.max_surge, r.max_unavailable), (2, 0));
        // Only the flag given changes.
        let args = FleetSpecArgs {
            max_unavailable: Some(1),
            ..Default::default()
        };
        apply(&mut spec, args, false).unwrap();
        let r = spec.rollout.unwrap();
        assert_eq!((r.max_surge, r.max_unavailable), (2, 1));
        let view = FleetView::from(pb::Fleet {
            name: "ctf".into(),
            spec: Some(spec),
            status: Some(pb::FleetStatus {
                current: 6,
                ready: 4,
                allocated: 2,
                outdated: 2,
                ..Default::default()
            }),
            ..Default::default()
        });
        let out = fleet_fields(&view);
        assert!(
            out.contains("max surge 2, max unavailable 1; 2 on an older build"),
            "{out}"
        );
        // No rollout settings: one extra at a time, nothing outdated.
        let view = FleetView::from(pb::Fleet {
            name: "ctf".into(),
            spec: Some(pb::FleetSpec::default()),
            ..Default::default()
        });
        let out = fleet_fields(&view);
        assert!(out.contains("max surge 1, max unavailable 0\n"), "{out}");
    }
}
