//! `/spawners`: every spawner, live.

use yew::prelude::*;

use crate::components::spawner_table::SpawnerTable;
use crate::context::use_ctx;

/// The spawner list.
#[component]
pub fn Spawners() -> Html {
    let ctx = use_ctx();
    if !ctx.live.fleet.loaded {
        return html! { <div class="loading">{ "Loading…" }</div> };
    }
    html! { <SpawnerTable spawners={ctx.live.fleet.spawners_sorted()} /> }
}
