//! `/spawners/:id`: one spawner's host, labels and state, drain/undrain, its instances with
//! their actions (destructive ones confirmed first), a Spawn button and the host's resource
//! history (CPU, memory, disk, players).

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::{ApiResult, InstanceAction};
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::instance_row::InstanceRow;
use crate::components::metrics_panel::MetricsPanel;
use crate::components::resource_progress_bar::ResourceProgressBar;
use crate::context::{now_ms, use_ctx};
use crate::state::{
    format_bytes, host_cpu_percent, parse_labels, percent, spawner_state_label, state_tone,
};

/// A call run by the page: resolves to a note for the user, or the error to show.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ApiResult<String>>>>;

/// Props of [`SpawnerPage`].
#[derive(Properties, PartialEq)]
pub struct SpawnerPageProps {
    /// Spawner id from the route.
    pub id: AttrValue,
}

/// The spawner page.
#[component]
pub fn SpawnerPage(p: &SpawnerPageProps) -> Html {
    let ctx = use_ctx();
    let busy = use_state(|| None::<String>);
    let error = use_state(|| None::<String>);
    let notice = use_state(|| None::<String>);
    let confirm = use_state(|| None::<(InstanceAction, String)>);
    let labels_ref = use_node_ref();
    // Ticks once a second so uptimes move between events.
    let now = use_state(now_ms);
    {
        let now = now.clone();
        use_effect_with((), move |_| {
            let t = gloo_timers::callback::Interval::new(1_000, move || now.set(now_ms()));
            move || drop(t)
        });
    }

    // Runs one call with progress and error reporting.
    let run = {
        let (busy, error, notice) = (busy.clone(), error.clone(), notice.clone());
        let on_error = ctx.on_error.clone();
        Callback::from(move |(what, fut): (String, Job)| {
            busy.set(Some(what));
            error.set(None);
            notice.set(None);
            let (busy, error, notice, on_error) = (
                busy.clone(),
                error.clone(),
                notice.clone(),
                on_error.clone(),
            );
            wasm_bindgen_futures::spawn_local(async move {
                match fut.await {
                    Ok(m) => notice.set(Some(m)),
                    Err(e) => {
                        error.set(Some(e.message.clone()));
                        on_error.emit(e);
                    }
                }
                busy.set(None);
            });
        })
    };

    let Some(s) = ctx.live.fleet.spawners.get(p.id.as_str()).cloned() else {
        return if ctx.live.fleet.loaded {
            html! { <div class="card empty" data-testid="spawner-missing">{ format!("No spawner {}.", p.id) }</div> }
        } else {
            html! { <div class="loading">{ "Loading…" }</div> }
        };
    };
    let instances = ctx.live.fleet.instances_of(&s.id);
    let label = spawner_state_label(s.state);
    let r = s.resources.unwrap_or_default();

    let act = {
        let run = run.clone();
        let api = ctx.api.clone();
        move |a: InstanceAction, id: String| {
            let api = api.clone();
            let what = format!("{} {id}", a.progressive());
            run.emit((
                what,
                Box::pin(async move {
                    api.instance_action(a, &id).await?;
                    Ok(format!("{} {id}: done.", a.title()))
                }),
            ));
        }
    };
    let on_action = {
        let confirm = confirm.clone();
        let act = act.clone();
        Callback::from(move |(a, id): (InstanceAction, String)| {
            if a.destructive() {
                confirm.set(Some((a, id)));
            } else {
                act(a, id);
            }
        })
    };
    let spawn = {
        let run = run.clone();
        let api = ctx.api.clone();
        let labels_ref = labels_ref.clone();
        let error = error.clone();
        let id = s.id.clone();
        Callback::from(move |_: MouseEvent| {
            let raw = labels_ref
                .cast::<HtmlInputElement>()
                .map(|i| i.value())
                .unwrap_or_default();
            let labels = match parse_labels(&raw) {
                Ok(l) => l.into_iter().collect(),
                Err(m) => {
                    error.set(Some(m));
                    return;
                }
            };
            let (api, id) = (api.clone(), id.clone());
            run.emit((
                "Spawning an instance".into(),
                Box::pin(async move {
                    let i = api.spawn(&id, labels).await?;
                    Ok(format!("Spawned {}.", i.id))
                }),
            ));
        })
    };
    let drain = {
        let run = run.clone();
        let api = ctx.api.clone();
        let id = s.id.clone();
        let to = !s.drained;
        Callback::from(move |_: MouseEvent| {
            let (api, id) = (api.clone(), id.clone());
            run.emit((
                if to { "Draining" } else { "Undraining" }.into(),
                Box::pin(async move {
                    api.set_drained(&id, to).await?;
                    Ok(if to {
                        "Drained: no new instances will be placed here."
                    } else {
                        "Undrained."
                    }
                    .into())
                }),
            ));
        })
    };
    let busy_id = busy
        .as_ref()
        .and_then(|b| b.split_whitespace().nth(1).map(str::to_owned));
    let dialog = confirm.as_ref().map(|(a, id)| {
        let cancel = {
            let c = confirm.clone();
            Callback::from(move |_| c.set(None))
        };
        let ok = {
            let c = confirm.clone();
            let act = act.clone();
            let (a, id) = (*a, id.clone());
            Callback::from(move |_| {
                c.set(None);
                act(a, id.clone());
            })
        };
        let title = format!("{} instance?", a.title());
        let message = match a {
            InstanceAction::Remove => format!("{id} will be forgotten. This cannot be undone."),
            _ => format!("{id} will be stopped; connected players are disconnected."),
        };
        html! { <ConfirmDialog title={title} message={message} confirm_label={a.title()} on_confirm={ok} on_cancel={cancel} /> }
    });

    html! {
        <>
            <div class="page-head">
                <div>
                    <h2 class="title" data-testid="spawner-name">{ s.name.clone() }</h2>
                    <div class="muted mono">{ s.id.clone() }</div>
                </div>
                <div class="head-actions">
                    <span class={classes!("badge", "big", state_tone(label))} data-testid="spawner-state">{ label }</span>
                    <button class="btn" data-testid={if s.drained { "undrain" } else { "drain" }}
                        disabled={busy.is_some()} onclick={drain}>{ if s.drained { "Undrain" } else { "Drain" } }</button>
                </div>
            </div>
            <div class="grid2">
                <div class="card">
                    <h3>{ "Host" }</h3>
                    <dl class="facts">
                        <dt>{ "Host" }</dt><dd>{ s.host.clone() }</dd>
                        <dt>{ "Address" }</dt><dd class="mono">{ s.advertised_address.clone() }</dd>
                        <dt>{ "Region" }</dt><dd>{ s.region.clone() }</dd>
                        <dt>{ "Instances" }</dt><dd data-testid="spawner-load">{ format!("{}/{}", s.instance_count, s.capacity) }</dd>
                        <dt>{ "Host build" }</dt><dd>{ if s.active_build.is_empty() { "—".to_owned() } else { s.active_build.clone() } }</dd>
                        <dt>{ "Agent" }</dt><dd>{ s.agent_version.clone() }</dd>
                    </dl>
                    <div class="labels">
                        { for s.labels.iter().map(|(k, v)| html! { <span class="chip">{ format!("{k}={v}") }</span> }) }
                    </div>
                </div>
                <div class="card">
                    <h3>{ "Resources" }</h3>
                    <ResourceProgressBar label="CPU" percent={host_cpu_percent(&r)} text={exile_api::format::host_cpu(&r)} />
                    <ResourceProgressBar label="Mem" percent={percent(r.memory_bytes as f64, r.memory_total_bytes as f64)}
                        text={format!("{} / {}", format_bytes(r.memory_bytes), format_bytes(r.memory_total_bytes))} />
                    <ResourceProgressBar label="Disk" percent={percent(r.disk_used_bytes as f64, r.disk_total_bytes as f64)}
                        text={format!("{} / {}", format_bytes(r.disk_used_bytes), format_bytes(r.disk_total_bytes))} />
                </div>
            </div>
            <div class="toolbar">
                <h2 class="section">{ format!("Instances ({})", instances.len()) }</h2>
                <div class="spawn-form">
                    <input ref={labels_ref} placeholder="labels: mode=ctf, map=dust" data-testid="spawn-labels" />
                    <button class="btn btn-primary" data-testid="spawn-button" disabled={busy.is_some()} onclick={spawn}>{ "Spawn" }</button>
                </div>
            </div>
            if let Some(b) = &*busy {
                <div class="banner banner-info" data-testid="action-progress" role="status"><span class="spinner"></span>{ format!("{b}…") }</div>
            }
            if let Some(e) = &*error {
                <div class="banner banner-bad" data-testid="action-error" role="alert">{ e.clone() }</div>
            }
            if let Some(n) = &*notice {
                <div class="banner banner-ok" data-testid="action-notice">{ n.clone() }</div>
            }
            if instances.is_empty() {
                <div class="card empty" data-testid="instances-empty">{ "No instances on this spawner." }</div>
            } else {
                <div class="table-wrap card">
                    <table class="table" data-testid="instance-table">
                        <thead><tr>
                            <th>{ "Instance" }</th><th>{ "State" }</th><th>{ "Port" }</th><th>{ "Uptime" }</th>
                            <th class="res-col">{ "CPU" }</th><th>{ "Memory" }</th><th>{ "Players" }</th><th></th>
                        </tr></thead>
                        <tbody>
                            { for instances.into_iter().map(|i| {
                                let is_busy = busy_id.as_deref() == Some(i.id.as_str());
                                let key = i.id.clone();
                                html! { <InstanceRow key={key} instance={i} now_ms={*now} busy={is_busy} on_action={on_action.clone()} /> }
                            }) }
                        </tbody>
                    </table>
                </div>
            }
            <h2 class="section">{ "Host history (15 minutes)" }</h2>
            <MetricsPanel target={exile_api::v1::MetricsTarget::Spawner} id={p.id.clone()} />
            { for dialog }
        </>
    }
}
