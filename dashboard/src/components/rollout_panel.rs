//! RolloutPanel: running and recent rollouts with their progress (replaced of total, in
//! progress, held back for allocated instances, failed), message and state; Cancel on a
//! running one for those allowed to.

use exile_api::v1 as pb;
use yew::prelude::*;

use crate::builds::{
    format_age, format_selector, rollout_percent, rollout_running, rollout_state_label,
    rollout_summary, rollout_tone,
};

/// Props of [`RolloutPanel`].
#[derive(Properties, PartialEq)]
pub struct RolloutPanelProps {
    /// Rollouts in display order.
    pub rollouts: Vec<pb::Rollout>,
    /// Browser clock, for start ages.
    pub now_ms: i64,
    /// Offer Cancel on running rollouts.
    pub can_cancel: bool,
    /// Id of a rollout whose cancel is in flight.
    #[prop_or_default]
    pub busy: Option<AttrValue>,
    /// Cancel was pressed for a rollout id.
    pub on_cancel: Callback<String>,
}

/// The panel.
#[component]
pub fn RolloutPanel(p: &RolloutPanelProps) -> Html {
    let running = p.rollouts.iter().filter(|r| rollout_running(r)).count();
    html! {
        <div class="card rollouts" data-testid="rollouts-panel">
            <h3>{ format!("Rollouts · {running} running") }</h3>
            if p.rollouts.is_empty() {
                <div class="muted" data-testid="rollouts-empty">{ "No rollouts yet. Start one from a build's actions to move running instances to it." }</div>
            }
            { for p.rollouts.iter().map(|r| {
                let label = rollout_state_label(r.state);
                let pct = rollout_percent(r);
                let is_running = rollout_running(r);
                let busy = p.busy.as_deref() == Some(r.id.as_str());
                let cancel = {
                    let cb = p.on_cancel.clone();
                    let id = r.id.clone();
                    Callback::from(move |_: MouseEvent| cb.emit(id.clone()))
                };
                let mut who = format!("started {} by {}", format_age(p.now_ms, r.started_at_unix_ms), r.created_by);
                if !r.spawner_selector.is_empty() {
                    who.push_str(&format!(" · on {}", format_selector(&r.spawner_selector)));
                }
                html! {
                    <div class="rollout" data-testid="rollout-row" data-rollout-id={r.id.clone()} data-state={label}
                        data-build={format!("{}@{}", r.build_name, r.to_version)}>
                        <div class="rollout-head">
                            <span class="strong">{ format!("{} → {}", r.build_name, r.to_version) }</span>
                            <span class={classes!("badge", rollout_tone(r.state))} data-testid="rollout-state">{ label }</span>
                            <span class="muted rollout-who">{ who }</span>
                            if is_running && p.can_cancel {
                                <button class="btn btn-small" data-testid="rollout-cancel" disabled={busy} onclick={cancel}>
                                    { "Cancel" }
                                    if busy { <span class="spinner"></span> }
                                </button>
                            }
                        </div>
                        <div class="progress" title={format!("{pct:.0}% replaced")}>
                            <span class={classes!("progress-fill", rollout_tone(r.state))} style={format!("width: {pct:.1}%")}></span>
                        </div>
                        <div class="muted rollout-figures" data-testid="rollout-figures">{ rollout_summary(r) }</div>
                        if !r.message.is_empty() {
                            <div class="rollout-message" data-testid="rollout-message">{ r.message.clone() }</div>
                        }
                    </div>
                }
            }) }
        </div>
    }
}
