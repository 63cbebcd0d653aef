//! `/performance`: the master's CPU, memory, request and error rates, p50/p99 latency,
//! heartbeats per second, spawner links and Watch streams, and the fleet's aggregate CPU,
//! memory and players, over a chosen window (15 minutes to 24 hours), refreshed while open.

use std::cell::Cell;
use std::rc::Rc;

use exile_api::v1 as pb;
use yew::prelude::*;

use crate::chart::Unit;
use crate::components::line_chart::LineChart;
use crate::context::{now_ms, use_ctx};

/// Windows offered, (label, ms).
const WINDOWS: &[(&str, i64)] = &[
    ("15 min", 15 * 60_000),
    ("1 h", 3_600_000),
    ("6 h", 6 * 3_600_000),
    ("24 h", 24 * 3_600_000),
];

/// How often the page asks again.
const REFRESH_MS: u32 = 5_000;

#[derive(Clone, PartialEq)]
struct Loaded {
    points: Rc<Vec<pb::MasterPoint>>,
    from_ms: i64,
    to_ms: i64,
    gap_ms: i64,
}

/// One series of the points.
fn series(pts: &[pb::MasterPoint], f: impl Fn(&pb::MasterPoint) -> f64) -> Rc<Vec<(i64, f64)>> {
    Rc::new(pts.iter().map(|p| (p.at_unix_ms, f(p))).collect())
}

/// The performance page.
#[component]
pub fn PerformancePage() -> Html {
    let ctx = use_ctx();
    let window = use_state(|| WINDOWS[0].1);
    let loaded = use_state(|| None::<Loaded>);
    let error = use_state(|| None::<String>);
    {
        let (loaded, error, api, on_error) = (
            loaded.clone(),
            error.clone(),
            ctx.api.clone(),
            ctx.on_error.clone(),
        );
        use_effect_with(*window, move |w| {
            let w = *w;
            let stop = Rc::new(Cell::new(false));
            {
                let stop = stop.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    while !stop.get() {
                        let to_ms = now_ms();
                        let from_ms = to_ms - w;
                        match api.master_history(from_ms, to_ms).await {
                            Ok(r) if !stop.get() => {
                                error.set(None);
                                let step = i64::try_from(r.step_ms).unwrap_or(0);
                                loaded.set(Some(Loaded {
                                    points: Rc::new(r.points),
                                    from_ms,
                                    to_ms,
                                    // Points further apart than three buckets are not joined.
                                    gap_ms: step.max(1) * 3,
                                }));
                            }
                            Ok(_) => return,
                            Err(e) => {
                                error.set(Some(e.message.clone()));
                                on_error.emit(e);
                            }
                        }
                        gloo_timers::future::TimeoutFuture::new(REFRESH_MS).await;
                    }
                });
            }
            move || stop.set(true)
        });
    }
    let pick = |label: &'static str, ms: i64| {
        let w = window.clone();
        let on = *window == ms;
        html! {
            <button class={classes!("btn", "btn-small", on.then_some("on"))} data-testid={format!("perf-window-{}", ms / 60_000)}
                onclick={Callback::from(move |_: MouseEvent| w.set(ms))}>{ label }</button>
        }
    };
    let charts = match &*loaded {
        None => html! { <div class="loading">{ "Loading…" }</div> },
        Some(l) => {
            let p = &l.points;
            let chart =
                |title: &'static str, id: &'static str, unit: Unit, s: Rc<Vec<(i64, f64)>>| {
                    html! {
                        <LineChart title={title} testid={id} unit={unit} series={s}
                            from_ms={l.from_ms} to_ms={l.to_ms} gap_ms={l.gap_ms} />
                    }
                };
            html! {
                <div class="grid2 charts" data-testid="perf-charts" data-points={p.len().to_string()}>
                    { chart("Master CPU", "chart-master-cpu", Unit::Percent, series(p, |x| x.cpu_percent)) }
                    { chart("Master memory", "chart-master-memory", Unit::Bytes, series(p, |x| x.memory_bytes as f64)) }
                    { chart("Requests", "chart-requests", Unit::PerSecond, series(p, |x| x.requests_per_sec)) }
                    { chart("Errors", "chart-errors", Unit::PerSecond, series(p, |x| x.errors_per_sec)) }
                    { chart("Latency p50", "chart-p50", Unit::Millis, series(p, |x| x.p50_ms)) }
                    { chart("Latency p99", "chart-p99", Unit::Millis, series(p, |x| x.p99_ms)) }
                    { chart("Heartbeats", "chart-heartbeats", Unit::PerSecond, series(p, |x| x.heartbeats_per_sec)) }
                    { chart("Spawner links", "chart-links", Unit::Count, series(p, |x| f64::from(x.links))) }
                    { chart("Fleet CPU (hosts)", "chart-fleet-cpu", Unit::Percent, series(p, |x| x.fleet_cpu_percent)) }
                    { chart("Fleet memory (hosts)", "chart-fleet-memory", Unit::Bytes, series(p, |x| x.fleet_memory_bytes as f64)) }
                    { chart("Players", "chart-players", Unit::Count, series(p, |x| f64::from(x.players))) }
                    { chart("Watch streams", "chart-watchers", Unit::Count, series(p, |x| f64::from(x.watchers))) }
                </div>
            }
        }
    };
    html! {
        <div data-testid="performance-page">
            <div class="toolbar">
                <p class="muted small">{ "Sampled by the master; kept in its memory for 24 hours." }</p>
                <div class="segmented">
                    { for WINDOWS.iter().map(|(l, ms)| pick(l, *ms)) }
                </div>
            </div>
            if let Some(e) = &*error {
                <div class="banner banner-bad" role="alert">{ e.clone() }</div>
            }
            { charts }
        </div>
    }
}
