//! The server page in the browser: the master's figures (two spawner links, this page's own
//! Watch stream) and its error log, which shows a call the test made fail (a viewer's
//! StopInstance) and finds it again through the filters.

use anyhow::{Result, ensure};
use exile_api::v1 as pb;
use exile_testkit::{Sandbox, clients, connect};
use fantoccini::Client;

use super::{click, screenshot, text_of, type_into, until};

/// Signed in as the admin on entry and on return.
pub async fn server_page(sb: &Sandbox, c: &Client) -> Result<()> {
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
    let admin = sb.admin().await?;
    let secret = admin
        .auth
        .clone()
        .create_api_token(pb::CreateApiTokenRequest {
            name: "error-log-viewer".into(),
            role: pb::Role::Viewer as i32,
            ttl_seconds: 600,
        })
        .await?
        .into_inner()
        .secret;
    let viewer = clients(connect(sb.master_addr()).await?, &secret)?;
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
