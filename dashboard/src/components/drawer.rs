//! Drawer: a panel sliding in from the left on narrow screens (holds the navigation).

use yew::prelude::*;

/// Props of [`Drawer`].
#[derive(Properties, PartialEq)]
pub struct DrawerProps {
    /// Shown or not.
    pub open: bool,
    /// Backdrop clicked.
    pub on_close: Callback<()>,
    /// Content.
    pub children: Html,
}

/// The drawer and its backdrop (CSS hides both on wide screens).
#[component]
pub fn Drawer(p: &DrawerProps) -> Html {
    let close = p.on_close.reform(|_: MouseEvent| ());
    html! {
        <div class={classes!("drawer", p.open.then_some("open"))} data-testid="drawer">
            <div class="drawer-backdrop" onclick={close}></div>
            <div class="drawer-panel">{ p.children.clone() }</div>
        </div>
    }
}
