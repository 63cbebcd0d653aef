//! `/instances/:id`: one instance, with its live log, its console and its resource history on
//! tabs. Only the open tab streams or polls, so leaving a tab (or the page) stops its calls.

use exile_api::v1 as pb;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::components::log_viewer::LogViewer;
use crate::components::metrics_panel::MetricsPanel;
use crate::components::terminal::Terminal;
use crate::context::{now_ms, use_ctx};
use crate::routes::Route;
use crate::state::{instance_state_label, instance_uptime, state_tone};

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
    let now = use_state(now_ms);
    {
        let now = now.clone();
        use_effect_with((), move |_| {
            let t = gloo_timers::callback::Interval::new(1_000, move || now.set(now_ms()));
            move || drop(t)
        });
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
        Tab::Metrics => html! {
            <MetricsPanel target={pb::MetricsTarget::Instance} id={p.id.clone()} />
        },
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
