//! What every page reaches through the context: the session (sessionStorage, per tab), the
//! API clients, the live fleet and the master figures; and the browser clock.

use std::rc::Rc;

use exile_api::v1 as pb;
use yew::prelude::*;

use crate::api::{Api, ApiError};
use crate::state::Live;

const SESSION_KEY: &str = "exile.session";

/// A signed-in user of this tab.
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    /// Session token (sent as `authorization: Bearer …`).
    pub token: String,
    /// Who signed in.
    pub username: String,
}

fn storage() -> Option<web_sys::Storage> {
    web_sys::window()?.session_storage().ok()?
}

pub(crate) fn load_session() -> Option<Session> {
    let raw = storage()?.get_item(SESSION_KEY).ok()??;
    let (username, token) = raw.split_once('\n')?;
    Some(Session {
        token: token.to_owned(),
        username: username.to_owned(),
    })
}

pub(crate) fn store_session(s: Option<&Session>) {
    if let Some(st) = storage() {
        let _ = match s {
            Some(s) => st.set_item(SESSION_KEY, &format!("{}\n{}", s.username, s.token)),
            None => st.remove_item(SESSION_KEY),
        };
    }
}

/// What every page can reach through the context.
#[derive(Clone, PartialEq)]
pub struct Ctx {
    /// The signed-in user, if any.
    pub session: Option<Session>,
    /// Clients carrying the session token.
    pub api: Api,
    /// Live fleet and stream state.
    pub live: Rc<Live>,
    /// Latest master figures.
    pub stats: Option<pb::GetStatsResponse>,
    /// The session's role as WhoAmI reported it; None until it answers (or if it failed).
    pub role: Option<i32>,
    /// A note for the login page ("your session expired").
    pub login_message: Option<String>,
    /// Signs in (Some) or out (None).
    pub set_session: Callback<Option<Session>>,
    /// Reports a failed call: an UNAUTHENTICATED answer ends the session.
    pub on_error: Callback<ApiError>,
}

/// The context of the current page (panics only if used outside `App`, a programming error).
#[hook]
pub fn use_ctx() -> Ctx {
    #[allow(clippy::expect_used)]
    use_context::<Ctx>().expect("page rendered outside App")
}

/// Milliseconds since the Unix epoch from the browser clock (std's clock does not exist on wasm).
pub fn now_ms() -> i64 {
    js_sys::Date::now() as i64
}
