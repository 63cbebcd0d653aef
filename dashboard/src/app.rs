//! The application shell: the live watch stream with reconnect backoff, the master stats
//! poll, and the layout around every page (routes in `routes`, the context in `context`).

use std::cell::Cell;
use std::rc::Rc;

use exile_api::v1 as pb;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::admin::{is_admin, role_name};
use crate::api::{Api, ApiError};
use crate::components::drawer::Drawer;
use crate::context::{Ctx, Session, load_session, store_session, use_ctx};
use crate::pages::{
    audit::AuditPage, builds::BuildsPage, config::ConfigPage, fleet::FleetPage, fleets::FleetsPage,
    instance::InstancePage, login::Login, not_found::NotFound, overview::Overview,
    performance::PerformancePage, server::ServerPage, spawner::SpawnerPage, spawners::Spawners,
    users::UsersPage,
};
use crate::routes::Route;
use crate::state::{Live, LiveAction, backoff_ms};

/// The root component.
#[component]
pub fn App() -> Html {
    let session = use_state(load_session);
    let login_message = use_state(|| None::<String>);
    let live = use_reducer(Live::default);
    let stats = use_state(|| None::<pb::GetStatsResponse>);
    let role = use_state(|| None::<i32>);
    let api = Api::new(session.as_ref().map(|s| s.token.clone()));

    let set_session = {
        let session = session.clone();
        let login_message = login_message.clone();
        let live = live.dispatcher();
        Callback::from(move |s: Option<Session>| {
            store_session(s.as_ref());
            if s.is_some() {
                login_message.set(None);
            } else {
                live.dispatch(LiveAction::Reset);
            }
            session.set(s);
        })
    };
    let on_error = {
        let set_session = set_session.clone();
        let login_message = login_message.clone();
        Callback::from(move |e: ApiError| {
            if e.unauthenticated {
                set_session.emit(None);
                login_message.set(Some(
                    "Your session has expired or was revoked. Please sign in again.".into(),
                ));
            }
        })
    };

    // The watch stream: snapshot then deltas, reopened with backoff whenever it breaks.
    {
        let live = live.dispatcher();
        let on_error = on_error.clone();
        let api = api.clone();
        use_effect_with(session.as_ref().map(|s| s.token.clone()), move |token| {
            let stop = Rc::new(Cell::new(false));
            if token.is_some() {
                spawn_watch(api, live, on_error, stop.clone());
            }
            move || stop.set(true)
        });
    }
    // Master figures (uptime, requests) change every second, so they are polled, not streamed.
    {
        let stats = stats.clone();
        let on_error = on_error.clone();
        let api = api.clone();
        use_effect_with(session.as_ref().map(|s| s.token.clone()), move |token| {
            let stop = Rc::new(Cell::new(false));
            if token.is_some() {
                let stop = stop.clone();
                wasm_bindgen_futures::spawn_local(async move {
                    while !stop.get() {
                        match api.stats().await {
                            Ok(s) => stats.set(Some(s)),
                            Err(e) => on_error.emit(e),
                        }
                        gloo_timers::future::TimeoutFuture::new(3_000).await;
                    }
                });
            }
            move || stop.set(true)
        });
    }

    // The role decides which pages and controls are offered; the master enforces it anyway.
    {
        let role = role.clone();
        let on_error = on_error.clone();
        let api = api.clone();
        use_effect_with(session.as_ref().map(|s| s.token.clone()), move |token| {
            role.set(None);
            let stop = Rc::new(Cell::new(false));
            if token.is_some() {
                let stop = stop.clone();
                // Pages wait for the role; a failed WhoAmI (the master restarting, a dropped
                // connection) is asked again with backoff rather than leaving them waiting.
                // An UNAUTHENTICATED answer ends the session through on_error instead.
                wasm_bindgen_futures::spawn_local(async move {
                    let mut attempt = 0;
                    while !stop.get() {
                        match api.whoami().await {
                            Ok(w) => return role.set(Some(w.role)),
                            Err(e) => {
                                let done = e.unauthenticated;
                                on_error.emit(e);
                                if done {
                                    return;
                                }
                            }
                        }
                        gloo_timers::future::TimeoutFuture::new(backoff_ms(attempt)).await;
                        attempt += 1;
                    }
                });
            }
            move || stop.set(true)
        });
    }

    let ctx = Ctx {
        session: (*session).clone(),
        api,
        live: Rc::new((*live).clone()),
        stats: (*stats).clone(),
        role: *role,
        login_message: (*login_message).clone(),
        set_session,
        on_error,
    };
    html! {
        <ContextProvider<Ctx> context={ctx}>
            <BrowserRouter>
                <Switch<Route> render={switch} />
            </BrowserRouter>
        </ContextProvider<Ctx>>
    }
}

fn spawn_watch(
    api: Api,
    live: UseReducerDispatcher<Live>,
    on_error: Callback<ApiError>,
    stop: Rc<Cell<bool>>,
) {
    wasm_bindgen_futures::spawn_local(async move {
        let mut attempt = 0u32;
        while !stop.get() {
            match api.watch().await {
                Ok(mut stream) => loop {
                    match stream.message().await {
                        Ok(Some(ev)) => {
                            if stop.get() {
                                return;
                            }
                            // A `Lagged` event is followed by a fresh snapshot on the same
                            // stream (control.proto), which the reducer takes whole: no
                            // reconnect needed.
                            if matches!(ev.kind, Some(pb::watch_event::Kind::Snapshot(_))) {
                                attempt = 0;
                            }
                            live.dispatch(LiveAction::Event(Box::new(ev)));
                        }
                        Ok(None) => break,
                        Err(s) => {
                            let e = ApiError::from(s);
                            if e.unauthenticated {
                                on_error.emit(e);
                                return;
                            }
                            break;
                        }
                    }
                },
                Err(e) if e.unauthenticated => {
                    on_error.emit(e);
                    return;
                }
                Err(_) => {}
            }
            if stop.get() {
                return;
            }
            live.dispatch(LiveAction::Disconnected);
            gloo_timers::future::TimeoutFuture::new(backoff_ms(attempt)).await;
            attempt = attempt.saturating_add(1);
        }
    });
}

fn switch(route: Route) -> Html {
    match route {
        Route::Login => html! { <Login /> },
        Route::Overview => html! { <Shell title="Overview"><Overview /></Shell> },
        Route::Spawners => html! { <Shell title="Spawners"><Spawners /></Shell> },
        Route::Spawner { id } => {
            html! { <Shell title="Spawner"><SpawnerPage id={id} /></Shell> }
        }
        Route::Builds => html! { <Shell title="Builds"><BuildsPage /></Shell> },
        Route::Fleets => html! { <Shell title="Fleets"><FleetsPage /></Shell> },
        Route::Fleet { name } => {
            html! { <Shell title="Fleet"><FleetPage name={name} /></Shell> }
        }
        Route::Server => html! { <Shell title="Server"><ServerPage /></Shell> },
        Route::Performance => html! { <Shell title="Performance"><PerformancePage /></Shell> },
        Route::Config => html! { <Shell title="Settings"><ConfigPage /></Shell> },
        Route::ConfigCategory { category } => {
            html! { <Shell title="Settings"><ConfigPage category={category} /></Shell> }
        }
        Route::Users => html! { <Shell title="Users"><UsersPage /></Shell> },
        Route::Audit => html! { <Shell title="Audit log"><AuditPage /></Shell> },
        Route::Instance { id } => {
            html! { <Shell title="Instance"><InstancePage id={id} /></Shell> }
        }
        Route::NotFound => html! { <Shell title="Not found"><NotFound /></Shell> },
    }
}

/// Props of [`Shell`].
#[derive(Properties, PartialEq)]
pub struct ShellProps {
    /// Page heading.
    pub title: AttrValue,
    /// The page.
    pub children: Html,
}

/// Layout of signed-in pages: sidebar (a drawer on phones), top bar, reconnect banner.
/// Without a session it sends the user to `/login`.
#[component]
pub fn Shell(props: &ShellProps) -> Html {
    let ctx = use_ctx();
    let drawer_open = use_state(|| false);
    let route = use_route::<Route>();
    let Some(session) = ctx.session.clone() else {
        return html! { <Redirect<Route> to={Route::Login} /> };
    };
    let logout = {
        let api = ctx.api.clone();
        let set_session = ctx.set_session.clone();
        Callback::from(move |_| {
            let api = api.clone();
            let set_session = set_session.clone();
            wasm_bindgen_futures::spawn_local(async move {
                // Clear the tab's session whatever the master says.
                let _ = api.logout().await;
                set_session.emit(None);
            });
        })
    };
    let close = {
        let d = drawer_open.clone();
        Callback::from(move |()| d.set(false))
    };
    let open = {
        let d = drawer_open.clone();
        Callback::from(move |_| d.set(true))
    };
    let link = |to: Route, label: &str, testid: &str| {
        let active = match (&route, &to) {
            (Some(Route::Spawner { .. } | Route::Instance { .. }), Route::Spawners) => true,
            (Some(Route::Fleet { .. }), Route::Fleets) => true,
            (Some(Route::ConfigCategory { .. }), Route::Config) => true,
            (Some(r), t) => r == t,
            _ => false,
        };
        html! {
            <Link<Route> to={to} classes={classes!("nav-link", active.then_some("active"))}>
                <span data-testid={testid.to_owned()}>{ label.to_owned() }</span>
            </Link<Route>>
        }
    };
    let admin = is_admin(ctx.role);
    let nav = html! {
        <nav class="nav" onclick={close.reform(|_: MouseEvent| ())}>
            <div class="brand">{ "Exile" }</div>
            { link(Route::Overview, "Overview", "nav-overview") }
            { link(Route::Spawners, "Spawners", "nav-spawners") }
            { link(Route::Builds, "Builds", "nav-builds") }
            { link(Route::Fleets, "Fleets", "nav-fleets") }
            { link(Route::Server, "Server", "nav-server") }
            { link(Route::Performance, "Performance", "nav-performance") }
            { link(Route::Config, "Settings", "nav-config") }
            if admin {
                { link(Route::Users, "Users", "nav-users") }
                { link(Route::Audit, "Audit log", "nav-audit") }
            }
            <div class="nav-foot">
                <div class="whoami" data-testid="whoami" data-role={ctx.role.map_or("loading", role_name)}>{ session.username.clone() }</div>
                <button class="btn btn-ghost" data-testid="logout" onclick={logout}>{ "Sign out" }</button>
            </div>
        </nav>
    };
    html! {
        <div class="layout">
            <aside class="sidebar">{ nav.clone() }</aside>
            <Drawer open={*drawer_open} on_close={close}>{ nav }</Drawer>
            <div class="main">
                <header class="topbar">
                    <button class="btn btn-ghost menu-button" data-testid="menu" aria-label="Menu" onclick={open}>{ "☰" }</button>
                    <h1>{ props.title.clone() }</h1>
                    <span class={classes!("live-dot", ctx.live.connected.then_some("on"))}
                        title={if ctx.live.connected { "Live" } else { "Offline" }}></span>
                </header>
                if ctx.live.reconnecting {
                    <div id="reconnecting" class="banner banner-warn" data-testid="reconnecting-banner" role="status">
                        { "Reconnecting to the master…" }
                    </div>
                }
                <main class="content">{ props.children.clone() }</main>
            </div>
        </div>
    }
}
