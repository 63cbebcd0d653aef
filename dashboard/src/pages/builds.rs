//! `/builds`: uploaded builds, live from the watch stream, with upload, activate, rollout and
//! delete for those allowed to (the master's refusal is shown as it says it), and the panel
//! of running and recent rollouts.

use std::collections::BTreeMap;

use exile_api::v1 as pb;
use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::api::ApiResult;
use crate::builds::{
    BuildOrder, RolloutForm, abilities, arrange, format_selector, panel_rollouts, parse_selector,
    usage,
};
use crate::components::build_table::{BuildAction, BuildTable};
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::form_dialog::FormDialog;
use crate::components::rollout_panel::RolloutPanel;
use crate::components::upload_panel::UploadPanel;
use crate::context::{now_ms, use_ctx};
use crate::state::format_bytes;

/// A call run by the page: resolves to a note for the user, or the error to show.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ApiResult<String>>>>;

/// What the page learnt of the user's role.
#[derive(Clone, Copy, Debug, PartialEq)]
enum RoleState {
    /// WhoAmI has not answered yet: no controls are shown.
    Loading,
    /// The role WhoAmI reported.
    Known(i32),
    /// WhoAmI failed: every control is shown and the master decides.
    Unknown,
}

/// An open dialog, for a build (`name@version`).
#[derive(Clone, Debug, PartialEq)]
enum Dialog {
    Activate(String),
    Rollout(String),
    Delete(String),
}

/// The builds page.
#[component]
pub fn BuildsPage() -> Html {
    let ctx = use_ctx();
    let role = use_state(|| RoleState::Loading);
    let order = use_state(BuildOrder::default);
    let busy = use_state(|| None::<(String, String)>);
    let error = use_state(|| None::<String>);
    let notice = use_state(|| None::<String>);
    let dialog = use_state(|| None::<Dialog>);
    let dialog_error = use_state(|| None::<String>);
    let selector_ref = use_node_ref();
    // Controlled, so the page's once-a-second redraw never puts back a default over a value
    // being typed.
    let rollout_form = use_state(RolloutForm::default);
    let now = use_state(now_ms);
    {
        let now = now.clone();
        use_effect_with((), move |_| {
            let t = gloo_timers::callback::Interval::new(1_000, move || now.set(now_ms()));
            move || drop(t)
        });
    }
    {
        let (role, api, on_error) = (role.clone(), ctx.api.clone(), ctx.on_error.clone());
        use_effect_with(ctx.session.as_ref().map(|s| s.token.clone()), move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                match api.whoami().await {
                    Ok(w) => role.set(RoleState::Known(w.role)),
                    Err(e) => {
                        role.set(RoleState::Unknown);
                        on_error.emit(e);
                    }
                }
            });
        });
    }

    // Runs one call for `target` (a build or rollout) with progress and error reporting.
    let run = {
        let (busy, error, notice) = (busy.clone(), error.clone(), notice.clone());
        let on_error = ctx.on_error.clone();
        Callback::from(move |(what, target, fut): (String, String, Job)| {
            busy.set(Some((what, target)));
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

    let can = match *role {
        RoleState::Loading => Default::default(),
        RoleState::Known(r) => abilities(Some(r)),
        RoleState::Unknown => abilities(None),
    };
    let fleet = &ctx.live.fleet;
    let groups = arrange(fleet.builds.values().cloned(), *order);
    let usage_by_id: BTreeMap<String, _> = fleet
        .builds
        .values()
        .map(|b| (b.id.clone(), usage(fleet, b)))
        .collect();
    let rollouts = panel_rollouts(fleet);

    let on_action = {
        let (dialog, dialog_error) = (dialog.clone(), dialog_error.clone());
        let rollout_form = rollout_form.clone();
        Callback::from(move |(a, build): (BuildAction, String)| {
            dialog_error.set(None);
            rollout_form.set(RolloutForm::default());
            dialog.set(Some(match a {
                BuildAction::Activate => Dialog::Activate(build),
                BuildAction::Rollout => Dialog::Rollout(build),
                BuildAction::Delete => Dialog::Delete(build),
            }));
        })
    };
    let on_cancel_rollout = {
        let (run, api) = (run.clone(), ctx.api.clone());
        Callback::from(move |id: String| {
            let api = api.clone();
            let target = id.clone();
            run.emit((
                format!("Cancelling rollout {id}"),
                target,
                Box::pin(async move {
                    api.cancel_rollout(&id).await?;
                    Ok(format!(
                        "Rollout {id} cancelled: replaced instances stay replaced."
                    ))
                }),
            ));
        })
    };
    let close = {
        let dialog = dialog.clone();
        Callback::from(move |()| dialog.set(None))
    };
    let value = |r: &NodeRef| {
        r.cast::<HtmlInputElement>()
            .map(|i| i.value())
            .unwrap_or_default()
    };

    let dialog_html = (*dialog).clone().map(|d| match d {
        Dialog::Activate(build) => {
            let ok = {
                let (run, api, dialog, dialog_error) = (
                    run.clone(),
                    ctx.api.clone(),
                    dialog.clone(),
                    dialog_error.clone(),
                );
                let (selector_ref, build) = (selector_ref.clone(), build.clone());
                Callback::from(move |()| {
                    let selector = match parse_selector(&value(&selector_ref)) {
                        Ok(s) => s,
                        Err(m) => return dialog_error.set(Some(m)),
                    };
                    dialog.set(None);
                    let (api, build) = (api.clone(), build.clone());
                    let target = build.clone();
                    let scope = format_selector(&selector);
                    run.emit((
                        format!("Activating {build}"),
                        target,
                        Box::pin(async move {
                            api.activate_build(&build, selector).await?;
                            Ok(format!(
                                "{build} is now the active version on {scope} for new instances."
                            ))
                        }),
                    ));
                })
            };
            html! {
                <FormDialog title={format!("Activate {build}?")} testid="activate-dialog" confirm_label="Activate"
                    error={(*dialog_error).clone().map(AttrValue::from)} on_confirm={ok} on_cancel={close.clone()}>
                    <p>{ "New instances on the chosen spawners start this version. Running instances keep theirs: a rollout moves them." }</p>
                    <label class="field">
                        { "Spawners (k=v pairs; empty: all)" }
                        <input ref={selector_ref.clone()} placeholder="region=eu" data-testid="activate-selector" autocomplete="off" />
                    </label>
                </FormDialog>
            }
        }
        Dialog::Rollout(build) => {
            let ok = {
                let (run, api, dialog, dialog_error) = (
                    run.clone(),
                    ctx.api.clone(),
                    dialog.clone(),
                    dialog_error.clone(),
                );
                let (form, build) = (rollout_form.clone(), build.clone());
                Callback::from(move |()| {
                    let req = match form.request(&build) {
                        Ok(r) => r,
                        Err(m) => return dialog_error.set(Some(m)),
                    };
                    dialog.set(None);
                    let (api, build) = (api.clone(), build.clone());
                    let target = build.clone();
                    run.emit((
                        format!("Starting a rollout to {build}"),
                        target,
                        Box::pin(async move {
                            let r = api.start_rollout(req).await?;
                            Ok(format!(
                                "Rollout {} to {build} started: {} instances to replace.",
                                r.id, r.total
                            ))
                        }),
                    ));
                })
            };
            let d = (*rollout_form).clone();
            // One input handler per field of the form.
            let edit = |set: fn(&mut RolloutForm, String)| {
                let form = rollout_form.clone();
                Callback::from(move |e: InputEvent| {
                    let mut f = (*form).clone();
                    set(&mut f, e.target_unchecked_into::<HtmlInputElement>().value());
                    form.set(f);
                })
            };
            let toggle = {
                let form = rollout_form.clone();
                Callback::from(move |e: Event| {
                    let mut f = (*form).clone();
                    f.activate = e.target_unchecked_into::<HtmlInputElement>().checked();
                    form.set(f);
                })
            };
            html! {
                <FormDialog title={format!("Roll out {build}?")} testid="rollout-dialog" confirm_label="Start rollout"
                    error={(*dialog_error).clone().map(AttrValue::from)} on_confirm={ok} on_cancel={close.clone()}>
                    <p>{ "Running instances of this build name are replaced by this version, a few at a time. Allocated instances wait until they are free." }</p>
                    <div class="form-grid">
                        <label class="field">{ "Max unavailable" }
                            <input value={d.max_unavailable} oninput={edit(|f, v| f.max_unavailable = v)} inputmode="numeric" data-testid="rollout-max-unavailable" />
                        </label>
                        <label class="field">{ "Canary %" }
                            <input value={d.canary} oninput={edit(|f, v| f.canary = v)} inputmode="numeric" data-testid="rollout-canary" />
                        </label>
                        <label class="field">{ "Failure threshold" }
                            <input value={d.failure_threshold} oninput={edit(|f, v| f.failure_threshold = v)} inputmode="numeric" data-testid="rollout-failure-threshold" />
                        </label>
                    </div>
                    <label class="field">
                        { "Spawners (k=v pairs; empty: all)" }
                        <input value={d.selector} oninput={edit(|f, v| f.selector = v)} placeholder="region=eu" data-testid="rollout-selector" autocomplete="off" />
                    </label>
                    <label class="check">
                        <input type="checkbox" checked={d.activate} onchange={toggle} data-testid="rollout-activate" />
                        { "Also activate it for new instances" }
                    </label>
                </FormDialog>
            }
        }
        Dialog::Delete(build) => {
            let ok = {
                let (run, api, dialog) = (run.clone(), ctx.api.clone(), dialog.clone());
                let build = build.clone();
                Callback::from(move |()| {
                    dialog.set(None);
                    let (api, build) = (api.clone(), build.clone());
                    let target = build.clone();
                    run.emit((
                        format!("Deleting {build}"),
                        target,
                        Box::pin(async move {
                            let r = api.delete_build(&build).await?;
                            Ok(format!(
                                "Deleted {build}: {} chunks ({}) freed.",
                                r.freed_chunks,
                                format_bytes(r.freed_bytes)
                            ))
                        }),
                    ));
                })
            };
            html! {
                <ConfirmDialog title={format!("Delete {build}?")}
                    message="The archive is removed from the master. The master refuses while an instance, an activation or a running rollout uses it."
                    confirm_label="Delete" on_confirm={ok} on_cancel={close.clone()} />
            }
        }
    });

    let set_order = |o: BuildOrder| {
        let order = order.clone();
        Callback::from(move |_: MouseEvent| order.set(o))
    };
    let busy_target = busy.as_ref().map(|(_, t)| AttrValue::from(t.clone()));
    let count = fleet.builds.len();

    let role_name = match *role {
        RoleState::Loading => "loading",
        RoleState::Unknown => "unknown",
        RoleState::Known(r) => match pb::Role::try_from(r) {
            Ok(pb::Role::Admin) => "admin",
            Ok(pb::Role::Operator) => "operator",
            Ok(pb::Role::Viewer) => "viewer",
            _ => "none",
        },
    };

    html! {
        <div class="builds-page" data-testid="builds-page" data-role={role_name}>
            if can.operate {
                <UploadPanel />
            }
            if let Some((what, _)) = &*busy {
                <div class="banner banner-info" data-testid="action-progress" role="status"><span class="spinner"></span>{ format!("{what}…") }</div>
            }
            if let Some(e) = &*error {
                <div class="banner banner-bad" data-testid="action-error" role="alert">{ e.clone() }</div>
            }
            if let Some(n) = &*notice {
                <div class="banner banner-ok" data-testid="action-notice">{ n.clone() }</div>
            }
            if !fleet.loaded {
                <div class="loading">{ "Loading…" }</div>
            } else {
                <RolloutPanel rollouts={rollouts} now_ms={*now} can_cancel={can.operate}
                    busy={busy_target.clone()} on_cancel={on_cancel_rollout} />
                <div class="toolbar">
                    <h2 class="section">{ format!("Builds ({count})") }</h2>
                    <div class="segmented" role="group" aria-label="Order">
                        <button class={classes!("btn", "btn-small", (*order == BuildOrder::Newest).then_some("on"))}
                            data-testid="order-newest" aria-pressed={(*order == BuildOrder::Newest).to_string()}
                            onclick={set_order(BuildOrder::Newest)}>{ "Newest" }</button>
                        <button class={classes!("btn", "btn-small", (*order == BuildOrder::ByName).then_some("on"))}
                            data-testid="order-name" aria-pressed={(*order == BuildOrder::ByName).to_string()}
                            onclick={set_order(BuildOrder::ByName)}>{ "By name" }</button>
                    </div>
                </div>
                <BuildTable groups={groups} usage={usage_by_id} now_ms={*now} can_operate={can.operate}
                    can_delete={can.delete} busy={busy_target} on_action={on_action} />
            }
            { for dialog_html }
        </div>
    }
}
