//! StatsCard: one headline figure with a caption.

use yew::prelude::*;

/// Props of [`StatsCard`].
#[derive(Properties, PartialEq)]
pub struct StatsCardProps {
    /// What the figure is.
    pub title: AttrValue,
    /// The figure.
    pub value: AttrValue,
    /// A smaller line under it.
    #[prop_or_default]
    pub detail: AttrValue,
    /// Test hook suffix (`stats-<id>`).
    pub id: AttrValue,
}

/// A card with a figure.
#[component]
pub fn StatsCard(p: &StatsCardProps) -> Html {
    html! {
        <div class="card stats-card" data-testid={format!("stats-{}", p.id)}>
            <div class="stats-title">{ p.title.clone() }</div>
            <div class="stats-value" data-testid={format!("stats-{}-value", p.id)}>{ p.value.clone() }</div>
            if !p.detail.is_empty() {
                <div class="stats-detail">{ p.detail.clone() }</div>
            }
        </div>
    }
}
