//! The performance page in the browser: every chart drawn from the master's samples, the
//! spawner links chart at 2, a different window asked for.

use anyhow::Result;
use fantoccini::Client;

use super::{click, screenshot, until};

/// Signed in as the admin on entry and on return.
pub async fn performance_page(c: &Client) -> Result<()> {
    click(c, "[data-testid=nav-performance]").await?;
    until(
        c,
        "every chart with a line, links at 2",
        "const charts = [...document.querySelectorAll('[data-testid=perf-charts] .chart')];
         const links = document.querySelector('[data-testid=chart-links] [data-testid=chart-now]')?.textContent;
         return charts.length === 12 && charts.every(ch => !!ch.querySelector('[data-testid=chart-line]'))
             && links === '2';",
    )
    .await?;
    until(
        c,
        "requests and heartbeats counted",
        "const now = id => document.querySelector(`[data-testid=${id}] [data-testid=chart-now]`)?.textContent ?? '';
         return /[1-9]/.test(now('chart-requests')) && /[1-9]/.test(now('chart-heartbeats'));",
    )
    .await?;
    screenshot(c, "performance").await?;
    click(c, "[data-testid=perf-window-360]").await?;
    until(
        c,
        "the 6 h window",
        "return document.querySelector('[data-testid=perf-window-360]').classList.contains('on')
            && !!document.querySelector('[data-testid=chart-master-cpu] [data-testid=chart-line]');",
    )
    .await?;
    c.set_window_size(390, 844).await?;
    until(
        c,
        "the performance page within a phone's width",
        "return document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await?;
    screenshot(c, "performance-phone").await?;
    c.set_window_size(1280, 800).await?;
    Ok(())
}
