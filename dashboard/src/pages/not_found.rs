//! The page for unknown addresses.

use yew::prelude::*;
use yew_router::prelude::*;

use crate::routes::Route;

/// "Not found" with a way back.
#[component]
pub fn NotFound() -> Html {
    html! {
        <div class="card empty" data-testid="not-found">
            <h2>{ "Page not found" }</h2>
            <p>{ "There is nothing at this address." }</p>
            <Link<Route> to={Route::Overview} classes="btn">{ "Back to the overview" }</Link<Route>>
        </div>
    }
}
