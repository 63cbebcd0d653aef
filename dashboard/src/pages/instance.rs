//! `/instances/:id`: one instance, with its live log, its console and its resource history on
//! tabs. Only the open tab streams or polls, so leaving a tab (or the page) stops its calls.

use std::cell::Cell;
use std::rc::Rc;

use exile_api::v1 as pb;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::chart::WINDOW_MS;
use crate::components::log_viewer::LogViewer;
use crate::components::players_chart::PlayersChart;
use crate::components::resource_history_chart::ResourceHistoryChart;
use crate::components::terminal::Terminal;
use crate::context::{now_ms, use_ctx};
use crate::routes::Route;
use crate::state::{instance_state_label, instance_uptime, state_tone};

/// How often the charts are refreshed.
const METRICS_EVERY_MS: u32 = 10_000;
/// Refresh sooner while the series is still empty (a freshly started instance).
const METRICS_EMPTY_EVERY_MS: u32 = 2_000;
/// Older samples come at one-minute resolution; a gap wider than a few of those is real.
const CHART_GAP_MS: i64 = 150_000;

/// A tab of the page.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tab {
    Logs,
    Console,
    Metrics,
}

impl Tab {
    const ALL: [Tab; 3] = [Tab::Logs, Tab::Console, Tab::Metrics];

    fn title(self) -> &'static str {
        match self {
            Tab::Logs => "Logs",
            Tab::Console => "Console",
            Tab::Metrics => "Metrics",
        }
    }

    fn testid(self) -> &'static str {
        match self {
            Tab::Logs => "tab-logs",
            Tab::Console => "tab-console",
            Tab::Metrics => "tab-metrics",
        }
    }
}

/// The resource history shown by the Metrics tab.
#[derive(Clone, Debug, PartialEq)]
struct History {
    points: Rc<Vec<pb::MetricPoint>>,
    from_ms: i64,
    to_ms: i64,
}

/// Props of [`InstancePage`].
#[derive(Properties, PartialEq)]
pub struct InstancePageProps {
    /// Instance id from the route.
    pub id: AttrValue,
}

/// The instance page.
#[component]
pub fn InstancePage(p: &InstancePageProps) -> Html {
    let ctx = use_ctx();
    let tab = use_state_eq(|| Tab::Logs);
    let history = use_state(|| None::<History>);
    let history_error = use_state_eq(|| None::<String>);
    let now = use_state(now_ms);
    {
        let now = now.clone();
        use_effect_with((), move |_| {
            let t = gloo_timers::callback::Interval::new(1_000, move || now.set(now_ms()));
            move || drop(t)
        });
    }
    // The Metrics tab polls the last 15 minutes while it is open.
    {
        let (history, history_error) = (history.clone(), history_error.clone());
        let (api, on_error) = (ctx.api.clone(), ctx.on_error.clone());
        use_effect_with(
            (p.id.clone(), *tab == Tab::Metrics, api),
            move |(id, open, api)| {
                let stop = Rc::new(Cell::new(false));
                history.set(None);
                if *open {
                    let (stop, id, api) = (stop.clone(), id.to_string(), api.clone());
                    wasm_bindgen_futures::spawn_local(async move {
                        while !stop.get() {
                            let to_ms = now_ms();
                            let from_ms = to_ms - WINDOW_MS;
                            let mut empty = true;
                            match api.instance_metrics(&id, from_ms, to_ms).await {
                                Ok(points) if !stop.get() => {
                                    empty = points.is_empty();
                                    history_error.set(None);
                                    history.set(Some(History {
                                        points: Rc::new(points),
                                        from_ms,
                                        to_ms,
                                    }));
                                }
                                Ok(_) => return,
                                Err(e) => {
                                    history_error.set(Some(e.message.clone()));
                                    on_error.emit(e);
                                }
                            }
                            let wait = if empty {
                                METRICS_EMPTY_EVERY_MS
                            } else {
                                METRICS_EVERY_MS
                            };
                            gloo_timers::future::TimeoutFuture::new(wait).await;
                        }
                    });
                }
                move || stop.set(true)
            },
        );
    }

    let Some(i) = ctx.live.fleet.instances.get(p.id.as_str()).cloned() else {
        return if ctx.live.fleet.loaded {
            html! { <div class="card empty" data-testid="instance-missing">{ format!("No instance {}.", p.id) }</div> }
        } else {
            html! { <div class="loading">{ "Loading…" }</div> }
        };
    };
    let label = instance_state_label(i.state);
    let running = pb::InstanceState::from_wire(i.state).accepts_console();
    let spawner_name = ctx
        .live
        .fleet
        .spawners
        .get(&i.spawner_id)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| i.spawner_id.clone());
    let port = i
        .ports
        .first()
        .map(|x| x.port.to_string())
        .unwrap_or_else(|| "—".into());

    let tabs = Tab::ALL.into_iter().map(|t| {
        let select = {
            let tab = tab.clone();
            Callback::from(move |_: MouseEvent| tab.set(t))
        };
        let on = *tab == t;
        html! {
            <button role="tab" aria-selected={on.to_string()} data-testid={t.testid()}
                class={classes!("tab", on.then_some("active"))} onclick={select}>{ t.title() }</button>
        }
    });
    let body = match *tab {
        Tab::Logs => html! {
            <div class="card" data-testid="instance-logs">
                <LogViewer instance_id={p.id.clone()} tail_lines={200} />
            </div>
        },
        Tab::Console => html! {
            <div class="card" data-testid="instance-console">
                <Terminal instance_id={p.id.clone()} running={running} />
            </div>
        },
        Tab::Metrics => {
            let h = (*history).clone();
            html! {
                <div data-testid="instance-metrics">
                    if let Some(e) = &*history_error {
                        <div class="banner banner-bad" data-testid="metrics-error" role="alert">{ e.clone() }</div>
                    }
                    if let Some(h) = h {
                        <div class="grid2 charts">
                            <ResourceHistoryChart points={h.points.clone()} from_ms={h.from_ms} to_ms={h.to_ms} gap_ms={CHART_GAP_MS} />
                            <PlayersChart points={h.points} from_ms={h.from_ms} to_ms={h.to_ms} gap_ms={CHART_GAP_MS} />
                        </div>
                    } else {
                        <div class="loading">{ "Loading…" }</div>
                    }
                </div>
            }
        }
    };

    html! {
        <>
            <div class="page-head">
                <div>
                    <div class="crumbs">
                        <Link<Route> to={Route::Spawner { id: i.spawner_id.clone() }}>
                            <span data-testid="instance-spawner-link">{ format!("← {spawner_name}") }</span>
                        </Link<Route>>
                    </div>
                    <h2 class="title mono" data-testid="instance-id">{ i.id.clone() }</h2>
                    <div class="muted">
                        { format!("port {port} · up {} · {}/{} players", instance_uptime(&i, *now), i.players, i.max_players) }
                    </div>
                </div>
                <div class="head-actions">
                    <span class={classes!("badge", "big", state_tone(label))} data-testid="instance-state">{ label }</span>
                </div>
            </div>
            <div class="tabs" role="tablist">{ for tabs }</div>
            { body }
        </>
    }
}
