//! `/server`: the master's own figures (uptime, version, request and error rates, memory,
//! spawner links, Watch streams, bytes in and out), its error log (the recent failed calls,
//! filterable, refreshed every few seconds; operators) and the builds with upload.

use exile_api::format::{bytes, percent, rfc3339_secs};
use exile_api::v1 as pb;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::admin::can_operate;
use crate::components::stats_card::StatsCard;
use crate::context::{now_ms, use_ctx};
use crate::pages::builds::BuildsPage;
use crate::server::{Rates, Sample, error_share, rates};
use crate::state::format_duration;

/// Status codes an operator filters the error log by.
const CODES: &[&str] = &[
    "InvalidArgument",
    "NotFound",
    "AlreadyExists",
    "PermissionDenied",
    "Unauthenticated",
    "ResourceExhausted",
    "FailedPrecondition",
    "Unavailable",
    "DeadlineExceeded",
    "Internal",
];

/// The server page.
#[component]
pub fn ServerPage() -> Html {
    let ctx = use_ctx();
    // The last two stats answers, for rates.
    let samples = use_state(|| (None::<Sample>, None::<Sample>));
    {
        let samples = samples.clone();
        use_effect_with(ctx.stats.clone(), move |s| {
            if let Some(s) = s {
                let cur = Sample {
                    at_ms: now_ms(),
                    stats: s.clone(),
                };
                samples.set((samples.1.clone(), Some(cur)));
            }
        });
    }
    let rate = match &*samples {
        (Some(a), Some(b)) => rates(a, b),
        _ => None,
    };
    let per_sec = |f: fn(&Rates) -> f64, unit: &str| {
        rate.as_ref()
            .map_or_else(|| "…".to_owned(), |r| format!("{:.1} {unit}/s", f(r)))
    };

    let cards = match &ctx.stats {
        None => html! { <div class="loading">{ "Loading…" }</div> },
        Some(s) => html! {
            <div class="stats-row" data-testid="server-stats" data-requests={s.requests_total.to_string()}
                data-errors={s.errors_total.to_string()} data-links={s.open_links.to_string()}
                data-watchers={s.watch_subscribers.to_string()}>
                <StatsCard id="server-uptime" title="Uptime" value={format_duration(s.uptime_seconds)}
                    detail={format!("version {}", s.version)} />
                <StatsCard id="server-requests" title="Requests" value={per_sec(|r| r.requests, "req")}
                    detail={format!("{} since start", s.requests_total)} />
                <StatsCard id="server-errors" title="Errors" value={per_sec(|r| r.errors, "err")}
                    detail={format!("{} since start · {} of calls", s.errors_total, percent(error_share(s)))} />
                <StatsCard id="server-memory" title="Memory" value={bytes(s.memory_bytes)} detail="resident" />
                <StatsCard id="server-links" title="Spawner links" value={s.open_links.to_string()}
                    detail={format!("{} of {} spawners online", s.spawners_online, s.spawners_total)} />
                <StatsCard id="server-watchers" title="Watch streams" value={s.watch_subscribers.to_string()}
                    detail="dashboards, exilectl watch/top, services" />
                <StatsCard id="server-in" title="Received" value={per_sec(|r| r.bytes_in / 1024.0, "KiB")}
                    detail={format!("{} since start", bytes(s.bytes_in))} />
                <StatsCard id="server-out" title="Sent" value={per_sec(|r| r.bytes_out / 1024.0, "KiB")}
                    detail={format!("{} since start", bytes(s.bytes_out))} />
            </div>
        },
    };

    html! {
        <div data-testid="server-page">
            { cards }
            <h2 class="section">{ "Error log" }</h2>
            if can_operate(ctx.role) {
                <ErrorLog />
            } else if ctx.role.is_some() {
                <div class="card empty" data-testid="errors-operator-only">{ "Operators and admins read the error log." }</div>
            }
            <h2 class="section">{ "Builds" }</h2>
            <BuildsPage />
        </div>
    }
}

/// The master's recent failed calls with filters, refreshed every 5 s.
#[component]
fn ErrorLog() -> Html {
    let ctx = use_ctx();
    let filter = use_state(pb::ListErrorsRequest::default);
    let answer = use_state(|| None::<pb::ListErrorsResponse>);
    let error = use_state(|| None::<String>);
    let tick = use_state(|| 0u32);
    let (method, code) = (use_node_ref(), use_node_ref());
    {
        let tick = tick.clone();
        use_effect_with((), move |_| {
            let t = gloo_timers::callback::Interval::new(5_000, move || tick.set(*tick + 1));
            move || drop(t)
        });
    }
    {
        let (answer, error, api) = (answer.clone(), error.clone(), ctx.api.clone());
        let on_error = ctx.on_error.clone();
        use_effect_with(((*filter).clone(), *tick), move |(req, _)| {
            let req = req.clone();
            wasm_bindgen_futures::spawn_local(async move {
                match api.list_errors(req).await {
                    Ok(v) => {
                        error.set(None);
                        answer.set(Some(v));
                    }
                    Err(e) => {
                        error.set(Some(e.message.clone()));
                        on_error.emit(e);
                    }
                }
            });
        });
    }
    let apply = {
        let (filter, method, code) = (filter.clone(), method.clone(), code.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            filter.set(pb::ListErrorsRequest {
                limit: 100,
                method: method
                    .cast::<HtmlInputElement>()
                    .map(|i| i.value().trim().to_owned())
                    .unwrap_or_default(),
                code: code
                    .cast::<HtmlSelectElement>()
                    .map(|s| s.value())
                    .unwrap_or_default(),
            });
        })
    };
    html! {
        <div data-testid="error-log">
            <form class="card" onsubmit={apply} data-testid="errors-filters">
                <div class="form-grid">
                    <label class="field">{ "Method contains" }
                        <input ref={method} autocomplete="off" placeholder="StopInstance" data-testid="errors-method" />
                    </label>
                    <label class="field">{ "Status" }
                        <select ref={code} data-testid="errors-code">
                            <option value="" selected={true}>{ "Any" }</option>
                            { for CODES.iter().map(|c| html! { <option value={*c}>{ *c }</option> }) }
                        </select>
                    </label>
                </div>
                <div class="modal-actions"><button type="submit" class="btn btn-primary" data-testid="errors-apply">{ "Filter" }</button></div>
            </form>
            if let Some(e) = &*error {
                <div class="banner banner-bad" role="alert">{ e.clone() }</div>
            }
            {
                match &*answer {
                    None => html! { <div class="loading">{ "Loading…" }</div> },
                    Some(a) if a.errors.is_empty() => html! {
                        <div class="card empty" data-testid="errors-empty">
                            { format!("No failed call matches ({} since start; the last {} are kept).", a.errors_total, a.capacity) }
                        </div>
                    },
                    Some(a) => html! {
                        <div class="table-wrap card">
                            <table class="table" data-testid="errors-table">
                                <thead><tr>
                                    <th>{ "When (UTC)" }</th><th>{ "Method" }</th><th>{ "Status" }</th>
                                    <th>{ "Client" }</th><th>{ "Message" }</th>
                                </tr></thead>
                                <tbody>
                                    { for a.errors.iter().map(|e| html! {
                                        <tr data-testid="error-row" data-method={e.method.clone()} data-code={e.code.clone()}>
                                            <td>{ rfc3339_secs(e.at_unix_ms).unwrap_or_default() }</td>
                                            <td class="mono">{ e.method.clone() }</td>
                                            <td><span class="badge bad">{ e.code.clone() }</span></td>
                                            <td class="mono muted">{ e.peer.clone() }</td>
                                            <td class="muted">{ e.message.clone() }</td>
                                        </tr>
                                    }) }
                                </tbody>
                            </table>
                        </div>
                    },
                }
            }
        </div>
    }
}
