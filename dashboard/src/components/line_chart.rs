//! LineChart: one series over the chart window as inline SVG, with axis labels and the newest
//! value; the resource and player charts are built from it.

use std::rc::Rc;

use yew::prelude::*;

use crate::chart::{Frame, Unit, last_point, line_path, nice_max, time_ticks, value_ticks};

/// Props of [`LineChart`].
#[derive(Properties, PartialEq)]
pub struct LineChartProps {
    /// Heading ("CPU").
    pub title: AttrValue,
    /// Test id of the chart card.
    pub testid: AttrValue,
    /// How values read.
    pub unit: Unit,
    /// `(unix ms, value)` in time order.
    pub series: Rc<Vec<(i64, f64)>>,
    /// Window start, Unix ms.
    pub from_ms: i64,
    /// Window end, Unix ms.
    pub to_ms: i64,
    /// Samples further apart are not joined.
    pub gap_ms: i64,
}

/// The chart card.
#[component]
pub fn LineChart(p: &LineChartProps) -> Html {
    let f = Frame::CHART;
    let max = p.series.iter().map(|(_, v)| *v).fold(0.0, f64::max);
    let y_max = nice_max(max, p.unit);
    let path = line_path(&p.series, p.from_ms, p.to_ms, y_max, p.gap_ms, &f);
    let dot = last_point(&p.series, p.from_ms, p.to_ms, y_max, &f);
    let now = p
        .series
        .last()
        .map(|(_, v)| p.unit.format(*v))
        .unwrap_or_else(|| "—".into());
    let view_box = format!("0 0 {} {}", f.width, f.height);
    html! {
        <div class="card chart" data-testid={p.testid.clone()}>
            <div class="chart-head">
                <h3>{ p.title.clone() }</h3>
                <span class="chart-now" data-testid="chart-now">{ now }</span>
            </div>
            <svg class="chart-svg" viewBox={view_box} role="img" aria-label={p.title.clone()}>
                { for value_ticks(y_max, p.unit, &f).into_iter().map(|(y, label)| html! {
                    <>
                        <line class="chart-grid" x1={f.x0().to_string()} x2={f.x1().to_string()}
                            y1={y.to_string()} y2={y.to_string()} />
                        <text class="chart-label" x={(f.x0() - 6.0).to_string()} y={(y + 4.0).to_string()}
                            text-anchor="end">{ label }</text>
                    </>
                }) }
                { for time_ticks(p.from_ms, p.to_ms, &f).into_iter().map(|(x, label)| html! {
                    <text class="chart-label" x={x.to_string()} y={(f.height - 4.0).to_string()}
                        text-anchor="middle">{ label }</text>
                }) }
                if let Some((x, y)) = dot {
                    <circle class="chart-dot" cx={x.to_string()} cy={y.to_string()} r="3.5" />
                }
                if let Some(d) = path {
                    <path class="chart-line" data-testid="chart-line" d={d} />
                } else {
                    <text class="chart-empty" data-testid="chart-empty"
                        x={((f.x0() + f.x1()) / 2.0).to_string()} y={((f.y0() + f.y1()) / 2.0).to_string()}
                        text-anchor="middle">{ "No samples yet" }</text>
                }
            </svg>
        </div>
    }
}
