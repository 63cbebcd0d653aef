//! `/audit` (admin): the audit log, newest first, filtered on the master by actor, action,
//! target, outcome and time range, a page at a time.

use exile_api::format::rfc3339_secs;
use exile_api::v1 as pb;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::admin::{AuditFilters, AuditPager, is_admin};
use crate::context::use_ctx;

/// A `datetime-local` value in the browser's time zone → Unix ms; blank → None.
fn local_time(raw: &str) -> Result<Option<i64>, String> {
    if raw.trim().is_empty() {
        return Ok(None);
    }
    let ms = js_sys::Date::new(&raw.into()).get_time();
    if ms.is_nan() {
        return Err(format!("time {raw:?} is not a date and time"));
    }
    Ok(Some(ms as i64))
}

/// The audit log page.
#[component]
pub fn AuditPage() -> Html {
    let ctx = use_ctx();
    let filters = use_state(AuditFilters::default);
    let pager = use_state(AuditPager::default);
    let entries = use_state(|| None::<Vec<pb::AuditEntry>>);
    let error = use_state(|| None::<String>);
    let loading = use_state(|| false);
    let (actor, action, target, outcome, from, to) = (
        use_node_ref(),
        use_node_ref(),
        use_node_ref(),
        use_node_ref(),
        use_node_ref(),
        use_node_ref(),
    );
    let admin = is_admin(ctx.role);

    {
        let (entries, error, loading, api, on_error) = (
            entries.clone(),
            error.clone(),
            loading.clone(),
            ctx.api.clone(),
            ctx.on_error.clone(),
        );
        let req = filters.request(pager.current());
        use_effect_with((req, admin), move |(req, admin)| {
            if *admin {
                match req.clone() {
                    Ok(req) => {
                        loading.set(true);
                        wasm_bindgen_futures::spawn_local(async move {
                            match api.audit_log(req).await {
                                Ok(v) => {
                                    error.set(None);
                                    entries.set(Some(v));
                                }
                                Err(e) => {
                                    error.set(Some(e.message.clone()));
                                    on_error.emit(e);
                                }
                            }
                            loading.set(false);
                        });
                    }
                    Err(m) => error.set(Some(m)),
                }
            }
        });
    }

    if ctx.role.is_none() {
        return html! { <div class="loading">{ "Loading…" }</div> };
    }
    if !admin {
        return html! { <div class="card empty" data-testid="admin-only">{ "Only admins read the audit log." }</div> };
    }

    let apply = {
        let (filters, pager, error) = (filters.clone(), pager.clone(), error.clone());
        let refs = (
            actor.clone(),
            action.clone(),
            target.clone(),
            outcome.clone(),
            from.clone(),
            to.clone(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let text = |r: &NodeRef| {
                r.cast::<HtmlInputElement>()
                    .map(|i| i.value())
                    .unwrap_or_default()
            };
            let (from_ms, to_ms) = match (local_time(&text(&refs.4)), local_time(&text(&refs.5))) {
                (Ok(a), Ok(b)) => (a, b),
                (Err(m), _) | (_, Err(m)) => return error.set(Some(m)),
            };
            filters.set(AuditFilters {
                actor: text(&refs.0),
                action: text(&refs.1),
                target: text(&refs.2),
                outcome: refs
                    .3
                    .cast::<HtmlSelectElement>()
                    .map(|s| s.value())
                    .unwrap_or_default(),
                from_ms,
                to_ms,
            });
            pager.set(AuditPager::default());
        })
    };
    let list = (*entries).clone().unwrap_or_default();
    let older = {
        let (pager, list) = (pager.clone(), list.clone());
        Callback::from(move |_: MouseEvent| {
            let mut p = (*pager).clone();
            p.older(&list);
            pager.set(p);
        })
    };
    let newer = {
        let pager = pager.clone();
        Callback::from(move |_: MouseEvent| {
            let mut p = (*pager).clone();
            if p.newer() {
                pager.set(p);
            }
        })
    };
    let has_older = AuditPager::has_older(&list);

    html! {
        <div data-testid="audit-page">
            <form class="card" onsubmit={apply} data-testid="audit-filters">
                <div class="form-grid">
                    <label class="field">{ "Actor" }<input ref={actor} autocomplete="off" placeholder="admin" data-testid="audit-actor" /></label>
                    <label class="field">{ "Action" }<input ref={action} autocomplete="off" placeholder="CreateFleet" data-testid="audit-action" /></label>
                    <label class="field">{ "Target" }<input ref={target} autocomplete="off" data-testid="audit-target" /></label>
                    <label class="field">{ "Outcome" }
                        <select ref={outcome} data-testid="audit-outcome">
                            <option value="" selected={true}>{ "Any" }</option>
                            <option value="ok">{ "Succeeded" }</option>
                            <option value="failed">{ "Failed" }</option>
                        </select>
                    </label>
                    <label class="field">{ "From" }<input ref={from} type="datetime-local" data-testid="audit-from" /></label>
                    <label class="field">{ "Until" }<input ref={to} type="datetime-local" data-testid="audit-to" /></label>
                </div>
                <div class="modal-actions"><button type="submit" class="btn btn-primary" data-testid="audit-apply">{ "Filter" }</button></div>
            </form>
            if let Some(e) = &*error {
                <div class="banner banner-bad" data-testid="action-error" role="alert">{ e.clone() }</div>
            }
            <div class="toolbar">
                <h2 class="section">{ format!("Entries — page {}", pager.page()) }</h2>
                <div class="segmented">
                    <button class="btn btn-small" data-testid="audit-newer" disabled={pager.page() == 1} onclick={newer}>{ "Newer" }</button>
                    <button class="btn btn-small" data-testid="audit-older" disabled={!has_older} onclick={older}>{ "Older" }</button>
                </div>
            </div>
            if entries.is_none() || (*loading && list.is_empty()) {
                <div class="loading">{ "Loading…" }</div>
            } else if list.is_empty() {
                <div class="card empty" data-testid="audit-empty">{ "No entries match." }</div>
            } else {
                <div class="table-wrap card">
                    <table class="table" data-testid="audit-table">
                        <thead><tr>
                            <th>{ "When (UTC)" }</th><th>{ "Actor" }</th><th>{ "Action" }</th><th>{ "Target" }</th>
                            <th>{ "Outcome" }</th><th>{ "Detail" }</th><th>{ "From" }</th>
                        </tr></thead>
                        <tbody>
                            { for list.iter().map(|e| {
                                let ok = e.result == "ok";
                                html! {
                                    <tr data-testid="audit-row" data-action={e.action.clone()} data-actor={e.actor.clone()}
                                        data-target={e.target.clone()} data-result={e.result.clone()} key={e.id.to_string()}>
                                        <td>{ rfc3339_secs(e.at_unix_ms).unwrap_or_default() }</td>
                                        <td>{ e.actor.clone() }</td>
                                        <td class="mono">{ e.action.clone() }</td>
                                        <td class="mono">{ e.target.clone() }</td>
                                        <td><span class={classes!("badge", if ok { "ok" } else { "bad" })}>{ if ok { "ok".to_owned() } else { e.result.clone() } }</span></td>
                                        <td class="muted">{ e.detail.clone() }</td>
                                        <td class="mono muted">{ e.peer.clone() }</td>
                                    </tr>
                                }
                            }) }
                        </tbody>
                    </table>
                </div>
            }
        </div>
    }
}
