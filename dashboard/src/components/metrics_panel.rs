//! MetricsPanel: the resource history of one spawner's host or one instance over the chart
//! window (CPU, memory, players; a host's disk too), polled while it is mounted, so a page
//! shows it only where it is open (the instance page's Metrics tab, the spawner page).

use std::cell::Cell;
use std::rc::Rc;

use exile_api::v1 as pb;
use yew::prelude::*;

use crate::chart::{Unit, WINDOW_MS};
use crate::components::line_chart::LineChart;
use crate::components::players_chart::PlayersChart;
use crate::components::resource_history_chart::ResourceHistoryChart;
use crate::context::{now_ms, use_ctx};

/// How often the charts are refreshed.
const EVERY_MS: u32 = 10_000;
/// Refresh sooner while the series is still empty (a freshly started instance).
const EMPTY_EVERY_MS: u32 = 2_000;
/// Older samples come at one-minute resolution; a gap wider than a few of those is real.
const CHART_GAP_MS: i64 = 150_000;

/// The history on show.
#[derive(Clone, Debug, PartialEq)]
struct History {
    points: Rc<Vec<pb::MetricPoint>>,
    from_ms: i64,
    to_ms: i64,
}

/// Props of [`MetricsPanel`].
#[derive(Properties, PartialEq)]
pub struct MetricsPanelProps {
    /// Spawner or instance.
    pub target: pb::MetricsTarget,
    /// Its id.
    pub id: AttrValue,
}

/// The charts, laid out two by two.
#[component]
pub fn MetricsPanel(p: &MetricsPanelProps) -> Html {
    let ctx = use_ctx();
    let history = use_state(|| None::<History>);
    let error = use_state_eq(|| None::<String>);
    {
        let (history, error) = (history.clone(), error.clone());
        let (api, on_error) = (ctx.api.clone(), ctx.on_error.clone());
        use_effect_with((p.target, p.id.clone(), api), move |(target, id, api)| {
            let stop = Rc::new(Cell::new(false));
            history.set(None);
            let (stop2, target, id, api) = (stop.clone(), *target, id.to_string(), api.clone());
            wasm_bindgen_futures::spawn_local(async move {
                while !stop2.get() {
                    let to_ms = now_ms();
                    let from_ms = to_ms - WINDOW_MS;
                    let mut empty = true;
                    match api.metrics_history(target, &id, from_ms, to_ms).await {
                        Ok(points) if !stop2.get() => {
                            empty = points.is_empty();
                            error.set(None);
                            history.set(Some(History {
                                points: Rc::new(points),
                                from_ms,
                                to_ms,
                            }));
                        }
                        Ok(_) => return,
                        Err(e) => {
                            error.set(Some(e.message.clone()));
                            on_error.emit(e);
                        }
                    }
                    let wait = if empty { EMPTY_EVERY_MS } else { EVERY_MS };
                    gloo_timers::future::TimeoutFuture::new(wait).await;
                }
            });
            move || stop.set(true)
        });
    }
    let host = p.target == pb::MetricsTarget::Spawner;
    html! {
        <div data-testid={if host { "spawner-metrics" } else { "instance-metrics" }}>
            if let Some(e) = &*error {
                <div class="banner banner-bad" data-testid="metrics-error" role="alert">{ e.clone() }</div>
            }
            if let Some(h) = (*history).clone() {
                <div class="grid2 charts">
                    <ResourceHistoryChart points={h.points.clone()} from_ms={h.from_ms} to_ms={h.to_ms} gap_ms={CHART_GAP_MS} />
                    <PlayersChart points={h.points.clone()} from_ms={h.from_ms} to_ms={h.to_ms} gap_ms={CHART_GAP_MS} />
                    if host {
                        <LineChart title="Disk used" testid="chart-disk" unit={Unit::Bytes}
                            series={Rc::new(h.points.iter().map(|x| (x.at_unix_ms, x.disk_used_bytes as f64)).collect::<Vec<_>>())}
                            from_ms={h.from_ms} to_ms={h.to_ms} gap_ms={CHART_GAP_MS} />
                    }
                </div>
            } else {
                <div class="loading">{ "Loading…" }</div>
            }
        </div>
    }
}
