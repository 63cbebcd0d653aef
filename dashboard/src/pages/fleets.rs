//! `/fleets`: every fleet, live from the watch stream (desired, current, ready, allocated,
//! starting; placement; autoscaler), and the create-fleet form for operators.

use web_sys::HtmlInputElement;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::admin::can_operate;
use crate::builds::build_ref;
use crate::components::form_dialog::FormDialog;
use crate::context::use_ctx;
use crate::fleets::{FleetForm, autoscaler_text, build_text, counts, placement_text};
use crate::routes::Route;

/// The fleet list.
#[component]
pub fn FleetsPage() -> Html {
    let ctx = use_ctx();
    let open = use_state(|| false);
    let form = use_state(FleetForm::default);
    let form_error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let navigator = use_navigator();

    let can = can_operate(ctx.role);
    let fleet = &ctx.live.fleet;

    let edit = |set: fn(&mut FleetForm, String)| {
        let form = form.clone();
        Callback::from(move |e: InputEvent| {
            let mut f = (*form).clone();
            set(
                &mut f,
                e.target_unchecked_into::<HtmlInputElement>().value(),
            );
            form.set(f);
        })
    };
    let toggle_packed = {
        let form = form.clone();
        Callback::from(move |e: Event| {
            let mut f = (*form).clone();
            f.packed = e.target_unchecked_into::<HtmlInputElement>().checked();
            form.set(f);
        })
    };
    let show = {
        let (open, form, form_error) = (open.clone(), form.clone(), form_error.clone());
        Callback::from(move |_: MouseEvent| {
            form.set(FleetForm::default());
            form_error.set(None);
            open.set(true);
        })
    };
    let close = {
        let open = open.clone();
        Callback::from(move |()| open.set(false))
    };
    let create = {
        let (open, form, form_error, busy) =
            (open.clone(), form.clone(), form_error.clone(), busy.clone());
        let (api, on_error) = (ctx.api.clone(), ctx.on_error.clone());
        Callback::from(move |()| {
            if *busy {
                return;
            }
            let (name, spec) = match form.request() {
                Ok(r) => r,
                Err(m) => return form_error.set(Some(m)),
            };
            busy.set(true);
            let (open, form_error, busy, api, on_error, navigator) = (
                open.clone(),
                form_error.clone(),
                busy.clone(),
                api.clone(),
                on_error.clone(),
                navigator.clone(),
            );
            wasm_bindgen_futures::spawn_local(async move {
                match api.create_fleet(&name, spec).await {
                    Ok(f) => {
                        open.set(false);
                        if let Some(n) = navigator {
                            n.push(&Route::Fleet { name: f.name });
                        }
                    }
                    Err(e) => {
                        form_error.set(Some(e.message.clone()));
                        on_error.emit(e);
                    }
                }
                busy.set(false);
            });
        })
    };

    let f = (*form).clone();
    let dialog = open.then(|| {
        html! {
            <FormDialog title="New fleet" testid="fleet-dialog" confirm_label={if *busy { "Creating…" } else { "Create" }}
                error={(*form_error).clone().map(AttrValue::from)} on_confirm={create.clone()} on_cancel={close.clone()}>
                <p>{ "The master keeps this many instances of the build running, placed on the spawners that match." }</p>
                <div class="form-grid">
                    <label class="field">{ "Name" }
                        <input value={f.name.clone()} oninput={edit(|f, v| f.name = v)} placeholder="arena" data-testid="fleet-name" autocomplete="off" />
                    </label>
                    <label class="field">{ "Build" }
                        <input value={f.build.clone()} oninput={edit(|f, v| f.build = v)} list="fleet-builds"
                            placeholder="name@version" data-testid="fleet-build" autocomplete="off" />
                    </label>
                    <label class="field">{ "Replicas" }
                        <input type="number" min="0" value={f.replicas.clone()} oninput={edit(|f, v| f.replicas = v)} data-testid="fleet-replicas" />
                    </label>
                </div>
                <datalist id="fleet-builds">
                    { for fleet.builds.values().map(|b| html! { <option value={build_ref(b)} /> }) }
                </datalist>
                <div class="form-grid">
                    <label class="field">{ "Regions (comma separated; empty: any)" }
                        <input value={f.regions.clone()} oninput={edit(|f, v| f.regions = v)} placeholder="eu, us" data-testid="fleet-regions" autocomplete="off" />
                    </label>
                    <label class="field">{ "Spawners (k=v pairs)" }
                        <input value={f.selector.clone()} oninput={edit(|f, v| f.selector = v)} placeholder="gpu=no" data-testid="fleet-selector" autocomplete="off" />
                    </label>
                    <label class="field">{ "Instance labels (k=v pairs)" }
                        <input value={f.labels.clone()} oninput={edit(|f, v| f.labels = v)} placeholder="mode=ctf" data-testid="fleet-labels" autocomplete="off" />
                    </label>
                </div>
                <label class="check">
                    <input type="checkbox" checked={f.packed} onchange={toggle_packed} data-testid="fleet-packed" />
                    { "Fill hosts (packed) instead of spreading" }
                </label>
            </FormDialog>
        }
    });

    let mut fleets: Vec<_> = fleet.fleets.values().cloned().collect();
    fleets.sort_by(|a, b| a.name.cmp(&b.name));
    html! {
        <div data-testid="fleets-page">
            <div class="toolbar">
                <h2 class="section">{ format!("Fleets ({})", fleets.len()) }</h2>
                if can {
                    <button class="btn btn-primary" data-testid="fleet-new" onclick={show}>{ "New fleet" }</button>
                }
            </div>
            if !fleet.loaded {
                <div class="loading">{ "Loading…" }</div>
            } else if fleets.is_empty() {
                <div class="card empty" data-testid="fleets-empty">{ "No fleets yet." }</div>
            } else {
                <div class="table-wrap card">
                    <table class="table" data-testid="fleet-table">
                        <thead><tr>
                            <th>{ "Fleet" }</th><th>{ "Build" }</th><th title="desired / current">{ "Replicas" }</th>
                            <th>{ "Ready" }</th><th>{ "Allocated" }</th><th>{ "Starting" }</th>
                            <th>{ "Placement" }</th><th>{ "Autoscaler" }</th>
                        </tr></thead>
                        <tbody>
                            { for fleets.into_iter().map(|f| {
                                let c = counts(&f);
                                let message = f.status.as_ref().map(|s| s.message.clone()).unwrap_or_default();
                                html! {
                                    <tr data-testid="fleet-row" data-fleet={f.name.clone()} key={f.name.clone()}>
                                        <td class="strong">
                                            <Link<Route> to={Route::Fleet { name: f.name.clone() }} classes="row-link">
                                                <span data-testid="fleet-link">{ f.name.clone() }</span>
                                            </Link<Route>>
                                            if !message.is_empty() {
                                                <div class="muted small" data-testid="fleet-message">{ message }</div>
                                            }
                                        </td>
                                        <td class="mono">{ build_text(f.spec.as_ref()) }</td>
                                        <td data-testid="fleet-replicas-cell">{ format!("{} / {}", c.desired, c.current) }</td>
                                        <td data-testid="fleet-ready">{ c.ready }</td>
                                        <td data-testid="fleet-allocated">{ c.allocated }</td>
                                        <td>{ c.starting }</td>
                                        <td>{ placement_text(f.spec.as_ref().and_then(|s| s.placement.as_ref())) }</td>
                                        <td>{ autoscaler_text(f.spec.as_ref().and_then(|s| s.autoscaler.as_ref())) }</td>
                                    </tr>
                                }
                            }) }
                        </tbody>
                    </table>
                </div>
            }
            { for dialog }
        </div>
    }
}
