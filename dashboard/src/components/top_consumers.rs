//! TopConsumers: the instances using the most CPU or memory right now, live from Watch, each
//! a link to its instance page.

use yew::prelude::*;
use yew_router::prelude::*;

use crate::context::use_ctx;
use crate::routes::Route;
use crate::state::{Consumption, format_bytes};

/// How many instances the list shows.
const SHOWN: usize = 5;

/// The top consumers card.
#[component]
pub fn TopConsumers() -> Html {
    let ctx = use_ctx();
    let by = use_state(|| Consumption::Cpu);
    let fleet = &ctx.live.fleet;
    let top = fleet.top_consumers(*by, SHOWN);
    let pick = |what: Consumption, label: &str, id: &str| {
        let by2 = by.clone();
        html! {
            <button class={classes!("btn", "btn-small", (*by == what).then_some("on"))} data-testid={id.to_owned()}
                onclick={Callback::from(move |_: MouseEvent| by2.set(what))}>{ label.to_owned() }</button>
        }
    };
    html! {
        <div class="card" data-testid="top-consumers">
            <div class="toolbar">
                <h3>{ "Top consumers" }</h3>
                <div class="segmented">
                    { pick(Consumption::Cpu, "CPU", "top-by-cpu") }
                    { pick(Consumption::Memory, "Memory", "top-by-memory") }
                </div>
            </div>
            if top.is_empty() {
                <p class="muted">{ "No instance is running." }</p>
            } else {
                <table class="table">
                    <thead><tr><th>{ "Instance" }</th><th>{ "Spawner" }</th><th>{ "CPU" }</th><th>{ "Memory" }</th></tr></thead>
                    <tbody>
                        { for top.iter().map(|i| {
                            let r = i.resources.unwrap_or_default();
                            let spawner = fleet.spawners.get(&i.spawner_id).map_or_else(|| i.spawner_id.clone(), |s| s.name.clone());
                            let name = if i.display_name.is_empty() { i.id.clone() } else { i.display_name.clone() };
                            html! {
                                <tr data-testid="top-row" data-instance-id={i.id.clone()} key={i.id.clone()}>
                                    <td><Link<Route> to={Route::Instance { id: i.id.clone() }} classes="row-link">{ name }</Link<Route>></td>
                                    <td class="muted">{ spawner }</td>
                                    <td class="mono">{ format!("{:.1}%", r.cpu_percent) }</td>
                                    <td class="mono">{ format_bytes(r.memory_bytes) }</td>
                                </tr>
                            }
                        }) }
                    </tbody>
                </table>
            }
        </div>
    }
}
