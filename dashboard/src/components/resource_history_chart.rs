//! ResourceHistoryChart: an instance's CPU and memory over the chart window.

use std::rc::Rc;

use exile_api::v1 as pb;
use yew::prelude::*;

use crate::chart::Unit;
use crate::components::line_chart::LineChart;

/// Props of [`ResourceHistoryChart`].
#[derive(Properties, PartialEq)]
pub struct ResourceHistoryChartProps {
    /// Samples in time order.
    pub points: Rc<Vec<pb::MetricPoint>>,
    /// Window start, Unix ms.
    pub from_ms: i64,
    /// Window end, Unix ms.
    pub to_ms: i64,
    /// Samples further apart are not joined.
    pub gap_ms: i64,
}

/// Two chart cards, laid out by the page's grid.
#[component]
pub fn ResourceHistoryChart(p: &ResourceHistoryChartProps) -> Html {
    let cpu: Rc<Vec<_>> = Rc::new(
        p.points
            .iter()
            .map(|x| (x.at_unix_ms, x.cpu_percent))
            .collect(),
    );
    let mem: Rc<Vec<_>> = Rc::new(
        p.points
            .iter()
            .map(|x| (x.at_unix_ms, x.memory_bytes as f64))
            .collect(),
    );
    html! {
        <>
            <LineChart title="CPU" testid="chart-cpu" unit={Unit::Percent} series={cpu}
                from_ms={p.from_ms} to_ms={p.to_ms} gap_ms={p.gap_ms} />
            <LineChart title="Memory" testid="chart-memory" unit={Unit::Bytes} series={mem}
                from_ms={p.from_ms} to_ms={p.to_ms} gap_ms={p.gap_ms} />
        </>
    }
}
