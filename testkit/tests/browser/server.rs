//! The server page in the browser: the master's figures (two spawner links, this page's own
//! Watch stream) and its error log, which shows a call the test made fail (a viewer's
//! StopInstance) and finds it again through the filters.

use anyhow::{Context, Result, ensure};
use exile_api::v1 as pb;
use exile_testkit::Sandbox;
use fantoccini::Client;

use super::{click, screenshot, text_of, type_into, until};

/// Signed in as the admin on entry and on return.
pub async fn server_page(sb: &Sandbox, c: &Client) -> Result<()> {
    // The overview's top consumers list a running instance, by CPU and by memory, live.
    let admin = sb.admin().await?;
    let ids = sb.spawner_ids().await?;
    let inst = admin
        .instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            spawner_id: ids[0].clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .instance
        .context("spawn answered without an instance")?;
    click(c, "[data-testid=nav-overview]").await?;
    let row = format!(
        "[data-testid=top-consumers] [data-testid=top-row][data-instance-id='{}']",
        inst.id
    );
    until(
        c,
        "the new instance among the top consumers",
        &format!("return !!document.querySelector(\"{row}\");"),
    )
    .await?;
    click(c, "[data-testid=top-by-memory]").await?;
    until(
        c,
        "the list ranked by memory",
        &format!("return document.querySelector('[data-testid=top-by-memory]').classList.contains('on') && !!document.querySelector(\"{row}\");"),
    )
    .await?;
    screenshot(c, "overview-top-consumers").await?;

    click(c, "[data-testid=nav-server]").await?;
    until(
        c,
        "the master's figures with both spawner links and a Watch stream",
        "const s = document.querySelector('[data-testid=server-stats]');
         return !!s && s.dataset.links === '2' && Number(s.dataset.watchers) >= 1
             && /req\\/s/.test(document.querySelector('[data-testid=stats-server-requests-value]').textContent);",
    )
    .await?;

    // The bundle came gzip-compressed (`cargo xtask dashboard` writes the .gz copies).
    let sizes = until(
        c,
        "the wasm's transfer sizes",
        "const e = performance.getEntriesByType('resource').find(r => r.name.endsWith('.wasm'));
         return !!e && e.decodedBodySize > 0 && [e.encodedBodySize, e.decodedBodySize];",
    )
    .await?;
    let sizes: (u64, u64) = serde_json::from_value(sizes)?;
    ensure!(
        sizes.0 * 2 < sizes.1,
        "the wasm was not served compressed: {} bytes sent for {} bytes",
        sizes.0,
        sizes.1
    );

    // A call that fails: a viewer may not stop instances.
    let (viewer, _) = sb
        .clients_with_role("error-log-viewer", pb::Role::Viewer)
        .await?;
    let denied = viewer
        .instances
        .clone()
        .stop_instance(pb::StopInstanceRequest {
            id: "error-log-probe".into(),
            ..Default::default()
        })
        .await;
    ensure!(
        matches!(&denied, Err(s) if s.code() == tonic::Code::PermissionDenied),
        "a viewer's StopInstance was not refused: {denied:?}"
    );

    type_into(c, "[data-testid=errors-method]", "stopinstance").await?;
    c.execute(
        "const s = document.querySelector('[data-testid=errors-code]'); s.value = 'PermissionDenied';
         s.dispatchEvent(new Event('change', { bubbles: true })); return null;",
        vec![],
    )
    .await?;
    click(c, "[data-testid=errors-apply]").await?;
    until(
        c,
        "the denied StopInstance in the error log, alone",
        &format!(
            "const rows = [...document.querySelectorAll('[data-testid=error-row]')];
             return rows.length > 0 && rows.every(r => r.dataset.method === '/exile.v1.InstanceService/StopInstance'
                 && r.dataset.code === 'PermissionDenied') && {}.includes('127.0.0.1');",
            text_of("[data-testid=errors-table]")
        ),
    )
    .await?;
    until(
        c,
        "the builds list on the same page",
        "return !!document.querySelector('[data-testid=server-page] [data-testid=build-table], [data-testid=server-page] [data-testid=builds-empty]');",
    )
    .await?;
    screenshot(c, "server").await?;

    c.set_window_size(390, 844).await?;
    until(
        c,
        "the server page within a phone's width",
        "return document.documentElement.scrollWidth <= window.innerWidth;",
    )
    .await?;
    screenshot(c, "server-phone").await?;
    c.set_window_size(1280, 800).await?;
    Ok(())
}
