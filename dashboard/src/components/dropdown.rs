//! Dropdown: a button opening a small menu of actions.

use yew::prelude::*;

/// One entry of a [`Dropdown`].
#[derive(Clone, PartialEq)]
pub struct DropdownItem {
    /// Text.
    pub label: AttrValue,
    /// Test hook.
    pub testid: AttrValue,
    /// Shown in red (destructive).
    pub danger: bool,
    /// Chosen.
    pub on_select: Callback<()>,
}

/// Props of [`Dropdown`].
#[derive(Properties, PartialEq)]
pub struct DropdownProps {
    /// Button text.
    pub label: AttrValue,
    /// Test hook of the button.
    pub testid: AttrValue,
    /// Entries.
    pub items: Vec<DropdownItem>,
    /// Greys the button out.
    #[prop_or_default]
    pub disabled: bool,
}

/// Where the open menu goes, as inline CSS: fixed to the viewport beside the button, so a
/// scrolling table around it cannot clip it; below the button, or above when the button is
/// near the bottom of the window.
type MenuPos = String;

fn menu_pos(e: &MouseEvent) -> MenuPos {
    use wasm_bindgen::JsCast;
    const MENU_HEIGHT: f64 = 110.0;
    // Yew delegates events to the root, so the button is found from the target, not from
    // current_target.
    let rect = e
        .target()
        .and_then(|t| t.dyn_into::<web_sys::Element>().ok())
        .and_then(|el| el.closest("button").ok().flatten())
        .map(|el| el.get_bounding_client_rect());
    let window = web_sys::window();
    let size = |v: Option<wasm_bindgen::JsValue>| v.and_then(|v| v.as_f64()).unwrap_or(0.0);
    let width = size(window.as_ref().and_then(|w| w.inner_width().ok()));
    let height = size(window.as_ref().and_then(|w| w.inner_height().ok()));
    let Some(r) = rect else {
        return String::new();
    };
    let right = (width - r.right()).max(4.0);
    if r.bottom() + MENU_HEIGHT > height && r.top() > MENU_HEIGHT {
        format!(
            "bottom: {:.0}px; right: {right:.0}px",
            height - r.top() + 4.0
        )
    } else {
        format!("top: {:.0}px; right: {right:.0}px", r.bottom() + 4.0)
    }
}

/// Closed until the button is clicked; closes again on a choice or a click outside the menu.
#[component]
pub fn Dropdown(p: &DropdownProps) -> Html {
    let open = use_state(|| None::<MenuPos>);
    let toggle = {
        let open = open.clone();
        Callback::from(move |e: MouseEvent| {
            open.set(if open.is_some() {
                None
            } else {
                Some(menu_pos(&e))
            })
        })
    };
    let close = {
        let open = open.clone();
        Callback::from(move |_: MouseEvent| open.set(None))
    };
    html! {
        <div class="dropdown">
            <button class="btn btn-small" data-testid={p.testid.clone()} disabled={p.disabled}
                aria-haspopup="menu" aria-expanded={open.is_some().to_string()} onclick={toggle}>
                { p.label.clone() }{ " ▾" }
            </button>
            if let Some(pos) = (*open).clone() {
                <div class="dropdown-catcher" onclick={close.clone()}></div>
                <div class="dropdown-menu" role="menu" style={pos}>
                    { for p.items.iter().map(|it| {
                        let sel = it.on_select.clone();
                        let open = open.clone();
                        html! {
                            <button role="menuitem" class={classes!("dropdown-item", it.danger.then_some("danger"))}
                                data-testid={it.testid.clone()}
                                onclick={Callback::from(move |_: MouseEvent| { open.set(None); sel.emit(()); })}>
                                { it.label.clone() }
                            </button>
                        }
                    }) }
                </div>
            }
        </div>
    }
}
