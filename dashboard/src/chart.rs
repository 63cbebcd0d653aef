//! Geometry of the resource charts: value units, "nice" axis ranges, ticks and the SVG path of
//! a series. Pure, so it is unit-tested on the host; the chart components only draw it.

use crate::state::format_bytes;

/// Width of the time window the charts show.
pub const WINDOW_MS: i64 = 15 * 60 * 1000;

/// How a series' values read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    /// CPU percent of one core (a busy 2-thread game shows 200 %).
    Percent,
    /// Bytes, shown in binary units.
    Bytes,
    /// A whole number (players).
    Count,
    /// Events per second.
    PerSecond,
    /// Milliseconds.
    Millis,
}

impl Unit {
    /// A value as the axis and the "now" figure show it.
    pub fn format(self, v: f64) -> String {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        match self {
            Unit::Percent if v > 0.0 && v < 10.0 => format!("{v:.1}%"),
            Unit::Percent => format!("{v:.0}%"),
            Unit::Bytes => format_bytes(v as u64),
            Unit::Count => format!("{v:.0}"),
            Unit::PerSecond if v > 0.0 && v < 10.0 => format!("{v:.1}/s"),
            Unit::PerSecond => format!("{v:.0}/s"),
            Unit::Millis if v > 0.0 && v < 10.0 => format!("{v:.1} ms"),
            Unit::Millis => format!("{v:.0} ms"),
        }
    }

    /// The smallest top of the value axis, so an idle series does not fill the chart.
    fn floor(self) -> f64 {
        match self {
            Unit::Percent => 10.0,
            Unit::Bytes => 1024.0 * 1024.0,
            Unit::Count => 4.0,
            Unit::PerSecond | Unit::Millis => 1.0,
        }
    }
}

/// Top of the value axis: at least `max`, rounded up to 1, 2 or 5 times a power of ten (for
/// bytes, to a power of two; for counts, to 1, 2, 4 or 10 times a power of ten) so the tick
/// labels are round.
pub fn nice_max(max: f64, unit: Unit) -> f64 {
    let v = if max.is_finite() { max } else { 0.0 }.max(unit.floor());
    let base: f64 = if unit == Unit::Bytes { 1024.0 } else { 10.0 };
    // The largest power of `base` not above v, then 1/2/5 (or 1/2/4/8 for bytes) of the next.
    let mut p = 1.0;
    while p * base <= v {
        p *= base;
    }
    let steps: &[f64] = match unit {
        Unit::Bytes => &[
            1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
        ],
        // The middle tick is half the top: keep it a whole number of players.
        Unit::Count => &[1.0, 2.0, 4.0, 10.0],
        Unit::Percent | Unit::PerSecond | Unit::Millis => &[1.0, 2.0, 5.0, 10.0],
    };
    steps
        .iter()
        .map(|s| s * p)
        .find(|c| *c >= v)
        .unwrap_or(p * base)
}

/// Where the plot sits inside the SVG's view box (units are view-box pixels).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Frame {
    /// View-box width.
    pub width: f64,
    /// View-box height.
    pub height: f64,
    /// Room for the value labels.
    pub left: f64,
    /// Margin on the right.
    pub right: f64,
    /// Margin on top.
    pub top: f64,
    /// Room for the time labels.
    pub bottom: f64,
}

impl Frame {
    /// The frame every chart uses.
    pub const CHART: Frame = Frame {
        width: 600.0,
        height: 160.0,
        left: 70.0,
        right: 14.0,
        top: 10.0,
        bottom: 22.0,
    };

    /// Left edge of the plot.
    pub fn x0(&self) -> f64 {
        self.left
    }

    /// Right edge of the plot.
    pub fn x1(&self) -> f64 {
        self.width - self.right
    }

    /// Top edge of the plot.
    pub fn y0(&self) -> f64 {
        self.top
    }

    /// Bottom edge of the plot (the zero line).
    pub fn y1(&self) -> f64 {
        self.height - self.bottom
    }

    /// Horizontal position of time `at` in the window `from..to`, clamped to the plot.
    pub fn x(&self, at: i64, from: i64, to: i64) -> f64 {
        let span = (to - from).max(1) as f64;
        let f = ((at - from) as f64 / span).clamp(0.0, 1.0);
        self.x0() + f * (self.x1() - self.x0())
    }

    /// Vertical position of value `v` on an axis from 0 to `max`, clamped to the plot.
    pub fn y(&self, v: f64, max: f64) -> f64 {
        let f = if max > 0.0 && v.is_finite() {
            (v / max).clamp(0.0, 1.0)
        } else {
            0.0
        };
        self.y1() - f * (self.y1() - self.y0())
    }
}

/// The SVG path (`d`) of a series of `(unix ms, value)` in time order, or None when no sample
/// falls in the window. Samples further apart than `gap_ms` are not joined, so an instance
/// that was stopped for a while shows a gap rather than a made-up slope.
pub fn line_path(
    series: &[(i64, f64)],
    from: i64,
    to: i64,
    y_max: f64,
    gap_ms: i64,
    frame: &Frame,
) -> Option<String> {
    let mut d = String::new();
    let mut last: Option<i64> = None;
    for &(at, v) in series.iter().filter(|(at, _)| (from..=to).contains(at)) {
        let cmd = match last {
            Some(prev) if at - prev <= gap_ms => 'L',
            _ => 'M',
        };
        if !d.is_empty() {
            d.push(' ');
        }
        d.push_str(&format!(
            "{cmd}{:.1},{:.1}",
            frame.x(at, from, to),
            frame.y(v, y_max)
        ));
        last = Some(at);
    }
    (!d.is_empty()).then_some(d)
}

/// Where the newest sample in the window sits, for the dot that marks the current value (a
/// young series is only a few pixels wide at the right edge and would be hard to see).
pub fn last_point(
    series: &[(i64, f64)],
    from: i64,
    to: i64,
    y_max: f64,
    frame: &Frame,
) -> Option<(f64, f64)> {
    series
        .iter()
        .rev()
        .find(|(at, _)| (from..=to).contains(at))
        .map(|&(at, v)| (frame.x(at, from, to), frame.y(v, y_max)))
}

/// Time-axis labels: one every five minutes back from `to`, as `(x, "-10m")`, ending at "now".
pub fn time_ticks(from: i64, to: i64, frame: &Frame) -> Vec<(f64, String)> {
    const STEP: i64 = 5 * 60 * 1000;
    let mut out = Vec::new();
    let mut back = 0;
    while to - back >= from {
        let label = if back == 0 {
            "now".to_owned()
        } else {
            format!("-{}m", back / 60_000)
        };
        out.push((frame.x(to - back, from, to), label));
        back += STEP;
    }
    out.reverse();
    out
}

/// Value-axis labels at 0, half and the top, as `(y, "50%")`.
pub fn value_ticks(y_max: f64, unit: Unit, frame: &Frame) -> Vec<(f64, String)> {
    [0.0, 0.5, 1.0]
        .into_iter()
        .map(|f| (frame.y(y_max * f, y_max), unit.format(y_max * f)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const F: Frame = Frame {
        width: 110.0,
        height: 60.0,
        left: 10.0,
        right: 0.0,
        top: 0.0,
        bottom: 10.0,
    };

    #[test]
    fn nice_max_rounds_up_to_round_numbers() {
        assert_eq!(nice_max(0.0, Unit::Percent), 10.0);
        assert_eq!(nice_max(12.0, Unit::Percent), 20.0);
        assert_eq!(nice_max(20.0, Unit::Percent), 20.0);
        assert_eq!(nice_max(37.0, Unit::Percent), 50.0);
        assert_eq!(nice_max(140.0, Unit::Percent), 200.0);
        assert_eq!(nice_max(0.0, Unit::Count), 4.0);
        assert_eq!(nice_max(7.0, Unit::Count), 10.0);
        assert_eq!(nice_max(33.0, Unit::Count), 40.0);
        assert_eq!(nice_max(f64::NAN, Unit::Count), 4.0);
        let mib = 1024.0 * 1024.0;
        assert_eq!(nice_max(3.0 * mib, Unit::Bytes), 4.0 * mib);
        assert_eq!(nice_max(300.0 * mib, Unit::Bytes), 512.0 * mib);
        assert_eq!(nice_max(10.0, Unit::Bytes), mib);
    }

    #[test]
    fn units_format_like_the_rest_of_the_dashboard() {
        assert_eq!(Unit::Percent.format(3.24), "3.2%");
        assert_eq!(Unit::Percent.format(57.6), "58%");
        assert_eq!(Unit::Bytes.format(1536.0), "1.5 KiB");
        assert_eq!(Unit::Count.format(3.0), "3");
        assert_eq!(Unit::Count.format(-1.0), "0");
    }

    #[test]
    fn frame_maps_time_and_value_into_the_plot() {
        assert_eq!(F.x(0, 0, 1000), 10.0);
        assert_eq!(F.x(500, 0, 1000), 60.0);
        assert_eq!(F.x(2000, 0, 1000), 110.0);
        assert_eq!(F.y(0.0, 10.0), 50.0);
        assert_eq!(F.y(10.0, 10.0), 0.0);
        assert_eq!(F.y(50.0, 10.0), 0.0);
        assert_eq!(F.y(5.0, 0.0), 50.0);
    }

    #[test]
    fn path_joins_samples_and_breaks_at_gaps() {
        let s = [(0, 0.0), (100, 10.0), (200, 5.0), (900, 5.0), (1000, 0.0)];
        assert_eq!(
            line_path(&s, 0, 1000, 10.0, 150, &F).as_deref(),
            Some("M10.0,50.0 L20.0,0.0 L30.0,25.0 M100.0,25.0 L110.0,50.0")
        );
    }

    #[test]
    fn path_ignores_samples_outside_the_window() {
        let s = [(-500, 1.0), (500, 1.0)];
        assert_eq!(
            line_path(&s, 0, 1000, 2.0, 10_000, &F).as_deref(),
            Some("M60.0,25.0")
        );
        assert_eq!(line_path(&s[..1], 0, 1000, 2.0, 10_000, &F), None);
        assert_eq!(last_point(&s, 0, 1000, 2.0, &F), Some((60.0, 25.0)));
        assert_eq!(last_point(&s[..1], 0, 1000, 2.0, &F), None);
        assert_eq!(line_path(&[], 0, 1000, 2.0, 10_000, &F), None);
    }

    #[test]
    fn ticks_label_the_window() {
        let t = time_ticks(0, WINDOW_MS, &F);
        let labels: Vec<_> = t.iter().map(|(_, l)| l.as_str()).collect();
        assert_eq!(labels, ["-15m", "-10m", "-5m", "now"]);
        assert_eq!(t.first().map(|t| t.0), Some(10.0));
        assert_eq!(t.last().map(|t| t.0), Some(110.0));
        let v = value_ticks(20.0, Unit::Percent, &F);
        assert_eq!(
            v,
            [
                (50.0, "0%".to_owned()),
                (25.0, "10%".to_owned()),
                (0.0, "20%".to_owned())
            ]
        );
    }
}
