//! ResourceProgressBar: a labelled bar for CPU, memory or disk use.

use yew::prelude::*;

/// Props of [`ResourceProgressBar`].
#[derive(Properties, PartialEq)]
pub struct ResourceProgressBarProps {
    /// Short name ("CPU").
    pub label: AttrValue,
    /// Fill, 0..=100.
    pub percent: f64,
    /// Text beside the bar; the percentage when empty.
    #[prop_or_default]
    pub text: AttrValue,
}

/// A bar that turns amber above 70 % and red above 90 %.
#[component]
pub fn ResourceProgressBar(p: &ResourceProgressBarProps) -> Html {
    let pct = p.percent.clamp(0.0, 100.0);
    let tone = if pct >= 90.0 {
        "bad"
    } else if pct >= 70.0 {
        "warn"
    } else {
        "ok"
    };
    let text = if p.text.is_empty() {
        format!("{pct:.0}%")
    } else {
        p.text.to_string()
    };
    html! {
        <div class="rbar" title={format!("{} {pct:.1}%", p.label)}>
            <span class="rbar-label">{ p.label.clone() }</span>
            <span class="rbar-track">
                <span class={classes!("rbar-fill", tone)} style={format!("width: {pct:.1}%")}></span>
            </span>
            <span class="rbar-text">{ text }</span>
        </div>
    }
}
