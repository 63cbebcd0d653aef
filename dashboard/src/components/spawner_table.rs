//! SpawnerTable: every spawner with its state, load and host resources; a row opens the
//! spawner's page.

use exile_api::v1 as pb;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::components::resource_progress_bar::ResourceProgressBar;
use crate::routes::Route;
use crate::state::{format_bytes, host_cpu_percent, percent, spawner_state_label, state_tone};

/// Props of [`SpawnerTable`].
#[derive(Properties, PartialEq)]
pub struct SpawnerTableProps {
    /// Spawners, in display order.
    pub spawners: Vec<pb::Spawner>,
}

/// The table (scrolls sideways on phones).
#[component]
pub fn SpawnerTable(p: &SpawnerTableProps) -> Html {
    let nav = use_navigator();
    if p.spawners.is_empty() {
        return html! { <div class="empty card" data-testid="spawner-table-empty">{ "No spawners yet. Enroll one with exilectl spawner token create." }</div> };
    }
    html! {
        <div class="table-wrap card">
            <table class="table" data-testid="spawner-table">
                <thead><tr>
                    <th>{ "Name" }</th><th class="hide-sm">{ "Region" }</th><th>{ "State" }</th><th class="hide-sm">{ "Address" }</th>
                    <th>{ "Instances" }</th><th class="res-col">{ "Resources" }</th>
                </tr></thead>
                <tbody>
                { for p.spawners.iter().map(|s| {
                    let id = s.id.clone();
                    let nav = nav.clone();
                    let onclick = Callback::from(move |_: MouseEvent| {
                        if let Some(n) = &nav { n.push(&Route::Spawner { id: id.clone() }); }
                    });
                    let label = spawner_state_label(s.state);
                    let r = s.resources.unwrap_or_default();
                    html! {
                        <tr class="clickable" data-testid="spawner-row" data-spawner-id={s.id.clone()}
                            data-spawner-name={s.name.clone()} onclick={onclick}>
                            <td class="strong">{ s.name.clone() }</td>
                            <td class="hide-sm">{ s.region.clone() }</td>
                            <td><span class={classes!("badge", state_tone(label))} data-testid="spawner-state">{ label }</span>
                                if s.drained && label != "Draining" { <span class="badge warn">{ "drained" }</span> }</td>
                            <td class="mono hide-sm">{ s.advertised_address.clone() }</td>
                            <td data-testid="spawner-load">{ format!("{}/{}", s.instance_count, s.capacity) }</td>
                            <td class="res-col">
                                <ResourceProgressBar label="CPU" percent={host_cpu_percent(&r)} />
                                <ResourceProgressBar label="Mem" percent={percent(r.memory_bytes as f64, r.memory_total_bytes as f64)}
                                    text={format_bytes(r.memory_bytes)} />
                                <ResourceProgressBar label="Disk" percent={percent(r.disk_used_bytes as f64, r.disk_total_bytes as f64)}
                                    text={format_bytes(r.disk_used_bytes)} />
                            </td>
                        </tr>
                    }
                }) }
                </tbody>
            </table>
        </div>
    }
}
