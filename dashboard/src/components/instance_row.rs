//! InstanceRow: one game-server instance with its figures and an actions dropdown; its id
//! links to the instance page (logs, console, metrics).

use exile_api::v1 as pb;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::api::InstanceAction;
use crate::components::dropdown::{Dropdown, DropdownItem};
use crate::components::resource_progress_bar::ResourceProgressBar;
use crate::routes::Route;
use crate::state::{
    format_bytes, instance_is_live, instance_state_label, instance_uptime, state_tone,
};

/// Props of [`InstanceRow`].
#[derive(Properties, PartialEq)]
pub struct InstanceRowProps {
    /// The instance.
    pub instance: pb::Instance,
    /// Browser clock, for the uptime.
    pub now_ms: i64,
    /// An action of this row is in flight.
    #[prop_or_default]
    pub busy: bool,
    /// An action was chosen.
    pub on_action: Callback<(InstanceAction, String)>,
    /// The user may act on it (a viewer sees no actions).
    #[prop_or(true)]
    pub can_act: bool,
}

/// A table row.
#[component]
pub fn InstanceRow(p: &InstanceRowProps) -> Html {
    let i = &p.instance;
    let label = instance_state_label(i.state);
    let live = instance_is_live(i.state);
    let r = i.resources.unwrap_or_default();
    let port = i
        .ports
        .first()
        .map(|x| x.port.to_string())
        .unwrap_or_else(|| "—".into());
    // What the state allows, by the rules every client shares (exile_api::state): a game
    // that still runs (Unhealthy included) is stopped or restarted, never started or removed.
    let state = pb::InstanceState::from_wire(i.state);
    let mut actions: Vec<InstanceAction> = Vec::new();
    if state.can_stop() {
        actions.extend([InstanceAction::Restart, InstanceAction::Stop]);
    }
    if state.can_start() {
        actions.push(InstanceAction::Start);
    }
    if state.can_remove() {
        actions.push(InstanceAction::Remove);
    }
    let items = actions
        .into_iter()
        .map(|a| {
            let id = i.id.clone();
            let cb = p.on_action.clone();
            let verb = a.verb();
            DropdownItem {
                label: a.title().into(),
                testid: format!("action-{verb}").into(),
                danger: a.destructive(),
                on_select: Callback::from(move |_| cb.emit((a, id.clone()))),
            }
        })
        .collect::<Vec<_>>();
    html! {
        <tr data-testid="instance-row" data-instance-id={i.id.clone()} data-state={label}>
            <td class="mono strong">
                <Link<Route> to={Route::Instance { id: i.id.clone() }} classes="row-link">
                    <span data-testid="instance-link" title="Logs, console and metrics">{ i.id.clone() }</span>
                </Link<Route>>
            </td>
            <td>
                <span class={classes!("badge", state_tone(label))} data-testid="instance-state">{ label }</span>
                if p.busy { <span class="spinner" data-testid="instance-busy"></span> }
            </td>
            <td class="mono">{ port }</td>
            <td>{ instance_uptime(i, p.now_ms) }</td>
            <td class="res-col">
                if live {
                    <ResourceProgressBar label="CPU" percent={r.cpu_percent} />
                }
            </td>
            <td>{ if live { format_bytes(r.memory_bytes) } else { "—".into() } }</td>
            <td>{ format!("{}/{}", i.players, i.max_players) }</td>
            <td class="actions">
                if p.can_act {
                    <Dropdown label="Actions" testid="instance-actions" items={items} disabled={p.busy} />
                }
            </td>
        </tr>
    }
}
