//! `/`: master figures and the spawner table, live.

use yew::prelude::*;

use crate::components::spawner_table::SpawnerTable;
use crate::components::stats_card::StatsCard;
use crate::components::top_consumers::TopConsumers;
use crate::context::use_ctx;
use crate::state::format_duration;

/// The overview.
#[component]
pub fn Overview() -> Html {
    let ctx = use_ctx();
    let c = ctx.live.fleet.counts();
    let (uptime, version, requests, errors) = match &ctx.stats {
        Some(s) => (
            format_duration(s.uptime_seconds),
            format!("version {}", s.version),
            s.requests_total.to_string(),
            format!("{} errors", s.errors_total),
        ),
        None => ("…".into(), String::new(), "…".into(), String::new()),
    };
    html! {
        <>
            <div class="stats-row">
                <StatsCard id="uptime" title="Master uptime" value={uptime} detail={version} />
                <StatsCard id="spawners" title="Spawners online"
                    value={format!("{}/{}", c.spawners_online, c.spawners_total)} />
                <StatsCard id="instances" title="Instances running"
                    value={format!("{}/{}", c.instances_running, c.instances_total)}
                    detail={format!("{} players", c.players)} />
                <StatsCard id="requests" title="Requests" value={requests} detail={errors} />
            </div>
            <TopConsumers />
            <h2 class="section">{ "Spawners" }</h2>
            if ctx.live.fleet.loaded {
                <SpawnerTable spawners={ctx.live.fleet.spawners_sorted()} />
            } else {
                <div class="loading">{ "Loading…" }</div>
            }
        </>
    }
}
