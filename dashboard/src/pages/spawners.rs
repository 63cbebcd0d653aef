//! `/spawners`: every spawner, live.

use yew::prelude::*;

use crate::app::use_ctx;
use crate::components::spawner_table::SpawnerTable;

/// The spawner list.
#[component]
pub fn Spawners() -> Html {
    let ctx = use_ctx();
    if !ctx.live.fleet.loaded {
        return html! { <div class="loading">{ "Loading…" }</div> };
    }
    html! { <SpawnerTable spawners={ctx.live.fleet.spawners_sorted()} /> }
}
