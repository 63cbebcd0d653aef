//! `/login`: username and password → `AuthService.Login`; the token goes to sessionStorage.

use web_sys::HtmlInputElement;
use yew::prelude::*;
use yew_router::prelude::*;

use crate::context::{Session, use_ctx};
use crate::routes::Route;

/// The sign-in form.
#[component]
pub fn Login() -> Html {
    let ctx = use_ctx();
    let username = use_node_ref();
    let password = use_node_ref();
    let error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    if ctx.session.is_some() {
        return html! { <Redirect<Route> to={Route::Overview} /> };
    }
    let onsubmit = {
        let (username, password) = (username.clone(), password.clone());
        let (error, busy) = (error.clone(), busy.clone());
        let api = ctx.api.clone();
        let set_session = ctx.set_session.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let value = |r: &NodeRef| {
                r.cast::<HtmlInputElement>()
                    .map(|i| i.value())
                    .unwrap_or_default()
            };
            let (user, pass) = (value(&username), value(&password));
            if user.is_empty() || pass.is_empty() {
                error.set(Some("Enter a username and a password.".into()));
                return;
            }
            busy.set(true);
            error.set(None);
            let (api, error, busy, set_session) = (
                api.clone(),
                error.clone(),
                busy.clone(),
                set_session.clone(),
            );
            wasm_bindgen_futures::spawn_local(async move {
                match api.login(&user, &pass).await {
                    Ok(token) => set_session.emit(Some(Session {
                        token,
                        username: user,
                    })),
                    Err(e) => {
                        error.set(Some(e.message));
                        busy.set(false);
                    }
                }
            });
        })
    };
    html! {
        <div class="login-page">
            <form class="card login-card" onsubmit={onsubmit} data-testid="login-form">
                <div class="brand brand-big">{ "Exile" }</div>
                <p class="muted">{ "Sign in to the control plane." }</p>
                if let Some(m) = &ctx.login_message {
                    <div class="banner banner-warn" data-testid="login-message">{ m.clone() }</div>
                }
                if let Some(e) = &*error {
                    <div class="banner banner-bad" data-testid="login-error" role="alert">{ e.clone() }</div>
                }
                <label>{ "Username" }
                    <input ref={username} name="username" autocomplete="username" data-testid="login-username" />
                </label>
                <label>{ "Password" }
                    <input ref={password} name="password" type="password" autocomplete="current-password" data-testid="login-password" />
                </label>
                <button class="btn btn-primary" type="submit" disabled={*busy} data-testid="login-submit">
                    { if *busy { "Signing in…" } else { "Sign in" } }
                </button>
            </form>
        </div>
    }
}
