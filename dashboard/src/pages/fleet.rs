//! `/fleets/:name`: one fleet, live: its counts, spec and autoscaler, its instances (with
//! their actions), and for operators a scale input, an Allocate form that shows where players
//! connect, and delete with confirmation.

use exile_api::v1 as pb;
use web_sys::HtmlInputElement;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::admin::can_operate;
use crate::api::{ApiResult, InstanceAction};
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::instance_row::InstanceRow;
use crate::context::{now_ms, use_ctx};
use crate::fleets::{
    AllocateForm, autoscaler_text, build_text, counts, parse_replicas, placement_text, ports_text,
};
use crate::routes::Route;

/// A call run by the page: resolves to a note for the user, or the error to show.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ApiResult<String>>>>;

/// Props of [`FleetPage`].
#[derive(Properties, PartialEq)]
pub struct FleetPageProps {
    /// Fleet name from the route.
    pub name: AttrValue,
}

/// What the page asks before doing.
#[derive(Clone, Debug, PartialEq)]
enum Confirm {
    DeleteFleet,
    Instance(InstanceAction, String),
}

/// The fleet page.
#[component]
pub fn FleetPage(p: &FleetPageProps) -> Html {
    let ctx = use_ctx();
    let busy = use_state(|| None::<String>);
    let error = use_state(|| None::<String>);
    let notice = use_state(|| None::<String>);
    let confirm = use_state(|| None::<Confirm>);
    let scale_to = use_state(|| None::<String>);
    let alloc_form = use_state(AllocateForm::default);
    let allocation = use_state(|| None::<pb::AllocateResponse>);
    let navigator = use_navigator();
    let now = use_state(now_ms);
    {
        let now = now.clone();
        use_effect_with((), move |_| {
            let t = gloo_timers::callback::Interval::new(1_000, move || now.set(now_ms()));
            move || drop(t)
        });
    }

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

    let Some(f) = ctx.live.fleet.fleets.get(p.name.as_str()).cloned() else {
        return if ctx.live.fleet.loaded {
            html! {
                <div class="card empty" data-testid="fleet-missing">
                    { format!("No fleet {}. ", p.name) }
                    <Link<Route> to={Route::Fleets}>{ "All fleets" }</Link<Route>>
                </div>
            }
        } else {
            html! { <div class="loading">{ "Loading…" }</div> }
        };
    };
    let can = can_operate(ctx.role);
    let c = counts(&f);
    let spec = f.spec.clone().unwrap_or_default();
    let status = f.status.clone().unwrap_or_default();
    let instances = ctx.live.fleet.instances_of_fleet(&f.name);
    let name = f.name.clone();

    let act = {
        let (run, api) = (run.clone(), ctx.api.clone());
        move |a: InstanceAction, id: String| {
            let api = api.clone();
            run.emit((
                format!("{} {id}", a.progressive()),
                Box::pin(async move {
                    api.instance_action(a, &id).await?;
                    Ok(format!("{} {id}: done.", a.title()))
                }),
            ));
        }
    };
    let on_action = {
        let (confirm, act) = (confirm.clone(), act.clone());
        Callback::from(move |(a, id): (InstanceAction, String)| {
            if a.destructive() {
                confirm.set(Some(Confirm::Instance(a, id)));
            } else {
                act(a, id);
            }
        })
    };
    let scale_value = (*scale_to).clone().unwrap_or_else(|| c.desired.to_string());
    let on_scale_input = {
        let scale_to = scale_to.clone();
        Callback::from(move |e: InputEvent| {
            scale_to.set(Some(e.target_unchecked_into::<HtmlInputElement>().value()));
        })
    };
    let scale = {
        let (run, api, error, scale_to) = (
            run.clone(),
            ctx.api.clone(),
            error.clone(),
            scale_to.clone(),
        );
        let (name, raw) = (name.clone(), scale_value.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let n = match parse_replicas(&raw) {
                Ok(n) => n,
                Err(m) => return error.set(Some(m)),
            };
            scale_to.set(None);
            let (api, name) = (api.clone(), name.clone());
            run.emit((
                format!("Scaling {name} to {n}"),
                Box::pin(async move {
                    let f = api.scale_fleet(&name, n).await?;
                    let r = f.spec.map_or(n, |s| s.replicas);
                    Ok(format!("{name} scaled to {r}."))
                }),
            ));
        })
    };
    let edit_alloc = |set: fn(&mut AllocateForm, String)| {
        let form = alloc_form.clone();
        Callback::from(move |e: InputEvent| {
            let mut f = (*form).clone();
            set(
                &mut f,
                e.target_unchecked_into::<HtmlInputElement>().value(),
            );
            form.set(f);
        })
    };
    let allocate = {
        let (busy, error, notice, allocation) = (
            busy.clone(),
            error.clone(),
            notice.clone(),
            allocation.clone(),
        );
        let (api, on_error, form, name) = (
            ctx.api.clone(),
            ctx.on_error.clone(),
            alloc_form.clone(),
            name.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let req = match form.request(&name) {
                Ok(r) => r,
                Err(m) => return error.set(Some(m)),
            };
            busy.set(Some("Allocating".into()));
            error.set(None);
            notice.set(None);
            let (busy, error, allocation, api, on_error) = (
                busy.clone(),
                error.clone(),
                allocation.clone(),
                api.clone(),
                on_error.clone(),
            );
            wasm_bindgen_futures::spawn_local(async move {
                match api.allocate(req).await {
                    Ok(a) => allocation.set(Some(a)),
                    Err(e) => {
                        allocation.set(None);
                        error.set(Some(e.message.clone()));
                        on_error.emit(e);
                    }
                }
                busy.set(None);
            });
        })
    };
    let ask_delete = {
        let confirm = confirm.clone();
        Callback::from(move |_: MouseEvent| confirm.set(Some(Confirm::DeleteFleet)))
    };

    let dialog = (*confirm).clone().map(|what| {
        let cancel = {
            let c = confirm.clone();
            Callback::from(move |()| c.set(None))
        };
        match what {
            Confirm::DeleteFleet => {
                let ok = {
                    let (c, busy, error, api, on_error) = (
                        confirm.clone(),
                        busy.clone(),
                        error.clone(),
                        ctx.api.clone(),
                        ctx.on_error.clone(),
                    );
                    let (name, navigator) = (name.clone(), navigator.clone());
                    Callback::from(move |()| {
                        c.set(None);
                        busy.set(Some(format!("Deleting {name}")));
                        let (busy, error, api, on_error, name, navigator) = (
                            busy.clone(),
                            error.clone(),
                            api.clone(),
                            on_error.clone(),
                            name.clone(),
                            navigator.clone(),
                        );
                        wasm_bindgen_futures::spawn_local(async move {
                            match api.delete_fleet(&name).await {
                                Ok(()) => {
                                    if let Some(n) = navigator {
                                        n.push(&Route::Fleets);
                                    }
                                }
                                Err(e) => {
                                    error.set(Some(e.message.clone()));
                                    on_error.emit(e);
                                }
                            }
                            busy.set(None);
                        });
                    })
                };
                html! {
                    <ConfirmDialog title={format!("Delete fleet {name}?")}
                        message="Its Ready and starting instances are removed; Allocated ones are left to finish their match."
                        confirm_label="Delete" on_confirm={ok} on_cancel={cancel} />
                }
            }
            Confirm::Instance(a, id) => {
                let ok = {
                    let (c, act) = (confirm.clone(), act.clone());
                    let id = id.clone();
                    Callback::from(move |()| {
                        c.set(None);
                        act(a, id.clone());
                    })
                };
                let message = match a {
                    InstanceAction::Remove => {
                        format!("{id} will be forgotten; the fleet starts a replacement.")
                    }
                    _ => format!("{id} will be stopped; connected players are disconnected."),
                };
                html! { <ConfirmDialog title={format!("{} instance?", a.title())} message={message}
                    confirm_label={a.title()} on_confirm={ok} on_cancel={cancel} /> }
            }
        }
    });

    let busy_id = busy
        .as_ref()
        .and_then(|b| b.split_whitespace().nth(1).map(str::to_owned));
    let autoscaler = spec.autoscaler.clone();
    let mut labels: Vec<_> = spec
        .labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    labels.sort();

    html! {
        <div data-testid="fleet-page" data-fleet={f.name.clone()}>
            <div class="page-head">
                <div>
                    <div class="crumbs"><Link<Route> to={Route::Fleets}>{ "Fleets" }</Link<Route>></div>
                    <h2 class="title" data-testid="fleet-name-title">{ f.name.clone() }</h2>
                    <div class="muted mono">{ build_text(Some(&spec)) }</div>
                </div>
                <div class="head-actions">
                    <span class={classes!("badge", "big", if c.ready + c.allocated >= c.desired { "ok" } else { "warn" })}
                        data-testid="fleet-counts" data-ready={c.ready.to_string()} data-allocated={c.allocated.to_string()}
                        data-desired={c.desired.to_string()}>
                        { format!("{} ready · {} allocated · {} wanted", c.ready, c.allocated, c.desired) }
                    </span>
                    if can {
                        <button class="btn btn-danger" data-testid="fleet-delete" disabled={busy.is_some()} onclick={ask_delete}>{ "Delete" }</button>
                    }
                </div>
            </div>
            if !status.message.is_empty() {
                <div class="banner banner-warn" data-testid="fleet-status-message">{ status.message.clone() }</div>
            }
            <div class="grid2">
                <div class="card">
                    <h3>{ "Spec" }</h3>
                    <dl class="facts">
                        <dt>{ "Replicas" }</dt><dd data-testid="fleet-desired">{ c.desired }</dd>
                        <dt>{ "Current" }</dt><dd>{ format!("{} ({} starting, {} unknown)", c.current, c.starting, status.unknown) }</dd>
                        <dt>{ "Placement" }</dt><dd>{ placement_text(spec.placement.as_ref()) }</dd>
                        <dt>{ "Labels" }</dt><dd>{ if labels.is_empty() { "—".to_owned() } else { labels.join(", ") } }</dd>
                    </dl>
                </div>
                <div class="card" data-testid="fleet-autoscaler">
                    <h3>{ "Autoscaler" }</h3>
                    if let Some(a) = &autoscaler {
                        <dl class="facts">
                            <dt>{ "Policy" }</dt><dd>{ autoscaler_text(Some(a)) }</dd>
                            <dt>{ "Bounds" }</dt><dd>{ format!("{} to {} replicas", a.min_replicas, a.max_replicas) }</dd>
                            <dt>{ "Interval" }</dt><dd>{ format!("{}s", if a.sync_interval_seconds == 0 { 5 } else { a.sync_interval_seconds }) }</dd>
                        </dl>
                    } else {
                        <p class="muted">{ "Off: the replica count is set by hand." }</p>
                    }
                </div>
            </div>
            if can {
                <div class="grid2">
                    <form class="card" onsubmit={scale} data-testid="scale-form">
                        <h3>{ "Scale" }</h3>
                        <div class="spawn-form">
                            <input type="number" min="0" value={scale_value} oninput={on_scale_input}
                                aria-label="Replicas" data-testid="fleet-scale-input" />
                            <button type="submit" class="btn btn-primary" data-testid="fleet-scale-button" disabled={busy.is_some()}>{ "Scale" }</button>
                        </div>
                        if autoscaler.is_some() {
                            <p class="muted small">{ "The autoscaler may move it again within its bounds." }</p>
                        }
                    </form>
                    <form class="card" onsubmit={allocate} data-testid="allocate-form">
                        <h3>{ "Allocate" }</h3>
                        <div class="form-grid">
                            <label class="field">{ "Labels (k=v)" }
                                <input value={alloc_form.labels.clone()} oninput={edit_alloc(|f, v| f.labels = v)}
                                    placeholder="map=dust" data-testid="allocate-labels" autocomplete="off" />
                            </label>
                            <label class="field">{ "Free player slots" }
                                <input value={alloc_form.min_free_players.clone()} oninput={edit_alloc(|f, v| f.min_free_players = v)}
                                    inputmode="numeric" placeholder="0" data-testid="allocate-min-free" />
                            </label>
                        </div>
                        <div class="modal-actions">
                            <button type="submit" class="btn btn-primary" data-testid="allocate-button" disabled={busy.is_some()}>{ "Allocate" }</button>
                        </div>
                        if let Some(a) = &*allocation {
                            <dl class="facts" data-testid="allocation-result" data-instance-id={a.instance_id.clone()}>
                                <dt>{ "Instance" }</dt><dd class="mono" data-testid="allocation-instance">{ a.instance_id.clone() }</dd>
                                <dt>{ "Address" }</dt><dd class="mono" data-testid="allocation-address">{ a.address.clone() }</dd>
                                <dt>{ "Ports" }</dt><dd class="mono" data-testid="allocation-ports">{ ports_text(&a.ports) }</dd>
                            </dl>
                        }
                    </form>
                </div>
            }
            if let Some(b) = &*busy {
                <div class="banner banner-info" data-testid="action-progress" role="status"><span class="spinner"></span>{ format!("{b}…") }</div>
            }
            if let Some(e) = &*error {
                <div class="banner banner-bad" data-testid="action-error" role="alert">{ e.clone() }</div>
            }
            if let Some(n) = &*notice {
                <div class="banner banner-ok" data-testid="action-notice">{ n.clone() }</div>
            }
            <h2 class="section">{ format!("Instances ({})", instances.len()) }</h2>
            if instances.is_empty() {
                <div class="card empty" data-testid="instances-empty">{ "No instances yet." }</div>
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
                                html! { <InstanceRow key={key} instance={i} now_ms={*now} busy={is_busy}
                                    on_action={on_action.clone()} can_act={can} /> }
                            }) }
                        </tbody>
                    </table>
                </div>
            }
            { for dialog }
        </div>
    }
}
