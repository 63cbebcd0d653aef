//! PlayersChart: players connected to an instance over the chart window.

use std::rc::Rc;

use exile_api::v1 as pb;
use yew::prelude::*;

use crate::chart::Unit;
use crate::components::line_chart::LineChart;

/// Props of [`PlayersChart`].
#[derive(Properties, PartialEq)]
pub struct PlayersChartProps {
    /// Samples in time order.
    pub points: Rc<Vec<pb::MetricPoint>>,
    /// Window start, Unix ms.
    pub from_ms: i64,
    /// Window end, Unix ms.
    pub to_ms: i64,
    /// Samples further apart are not joined.
    pub gap_ms: i64,
}

/// The players chart.
#[component]
pub fn PlayersChart(p: &PlayersChartProps) -> Html {
    let players: Rc<Vec<_>> = Rc::new(
        p.points
            .iter()
            .map(|x| (x.at_unix_ms, f64::from(x.players)))
            .collect(),
    );
    html! {
        <LineChart title="Players" testid="chart-players" unit={Unit::Count} series={players}
            from_ms={p.from_ms} to_ms={p.to_ms} gap_ms={p.gap_ms} />
    }
}
