//! The settings pages in the browser: the admin changes a spawner setting in
//! /config/spawners, a bad value is refused inline with the key and the bound (on the page)
//! or with the master's reason (a heartbeat not below the TTL), both
//! connected spawners acknowledge the new version on the page, the history names the admin,
//! and a reset brings the default back; a viewer sees values but cannot change them.

use anyhow::{Result, ensure};
use exile_api::settings::HEARTBEAT_INTERVAL;
use exile_api::v1 as pb;
use exile_testkit::Sandbox;
use fantoccini::Client;
use serde_json::Value;

use super::{click, screenshot, text_of, type_into, until};

/// CSS of the heartbeat setting's card.
fn row() -> String {
    format!("[data-testid=setting][data-key='{HEARTBEAT_INTERVAL}']")
}

/// Signed in as the admin on entry and on return.
pub async fn config_page(sb: &Sandbox, c: &Client) -> Result<()> {
    let row = row();
    click(c, "[data-testid=nav-config]").await?;
    until(
        c,
        "the settings page with every category",
        "return document.querySelectorAll('[data-testid=config-category]').length >= 4
            && document.querySelectorAll('[data-testid=setting]').length > 5;",
    )
    .await?;
    screenshot(c, "config").await?;

    // One category, deep-linkable: only its settings.
    click(c, "[data-testid=config-tab-spawners]").await?;
    until(
        c,
        "/config/spawners alone",
        "const cats = [...document.querySelectorAll('[data-testid=config-category]')].map(s => s.dataset.category);
         return location.pathname === '/config/spawners' && cats.length === 1 && cats[0] === 'spawners';",
    )
    .await?;
    until(
        c,
        "both spawners listed with their acknowledgement",
        "return document.querySelectorAll('[data-testid=settings-ack]').length === 2;",
    )
    .await?;

    // Out of bounds: refused on the page with the key and the bound, Save stays off.
    type_into(c, &format!("{row} [data-testid=setting-input]"), "1ms").await?;
    until(
        c,
        "the bound shown inline",
        &format!(
            "const t = {}; const save = document.querySelector(\"{row} [data-testid=setting-save]\");
             return t.includes('{HEARTBEAT_INTERVAL}') && t.includes('100ms') && save.disabled && t;",
            text_of(&format!("{row} [data-testid=setting-error]"))
        ),
    )
    .await?;

    let before = c
        .execute(
            &format!("return document.querySelector(\"{row}\").dataset.value;"),
            vec![],
        )
        .await?;
    let before = before.as_str().unwrap_or_default().to_owned();

    // Within the bounds but refused by the master (not below the sandbox's 1.5 s heartbeat
    // TTL): the master's own sentence is shown inline and nothing changes.
    type_into(c, &format!("{row} [data-testid=setting-input]"), "2s").await?;
    click(c, &format!("{row} [data-testid=setting-save]")).await?;
    until(
        c,
        "the master's refusal inline",
        &format!(
            "const t = {}; return t.includes('heartbeat_ttl') && t;",
            text_of(&format!("{row} [data-testid=setting-error]"))
        ),
    )
    .await?;

    // A good value: saved, applied by both spawners at the page's version.
    type_into(c, &format!("{row} [data-testid=setting-input]"), "1s").await?;
    click(c, &format!("{row} [data-testid=setting-save]")).await?;
    let version = until(
        c,
        "the new value in force and acknowledged by both spawners",
        &format!(
            "const r = document.querySelector(\"{row}\");
             const page = document.querySelector('[data-testid=config-page]');
             const v = page.dataset.version;
             const acks = [...document.querySelectorAll('[data-testid=settings-ack]')];
             return r.dataset.value === '1s' && r.dataset.dirty === 'false' && v !== '0'
                 && acks.length === 2 && acks.every(a => a.dataset.ack === 'applied' && a.dataset.version === v)
                 && Number(v);"
        ),
    )
    .await?;
    screenshot(c, "config-spawners").await?;
    let version = version.as_u64().unwrap_or(0);
    let admin = sb.admin().await?;
    let entry = admin
        .settings
        .clone()
        .get_setting(pb::GetSettingRequest {
            key: HEARTBEAT_INTERVAL.into(),
        })
        .await?
        .into_inner();
    ensure!(entry.value == "1s" && entry.is_set, "{entry:?}");
    let spawners = admin
        .spawners
        .clone()
        .list_spawners(pb::ListSpawnersRequest::default())
        .await?
        .into_inner()
        .spawners;
    ensure!(
        spawners.len() == 2 && spawners.iter().all(|s| s.settings_version == version),
        "spawners do not report version {version}: {spawners:?}"
    );

    // The history names who changed it.
    click(c, &format!("{row} [data-testid=setting-history-toggle]")).await?;
    until(
        c,
        "the change in the history",
        &format!(
            "const t = {}; return t.includes('admin') && t.includes('1s');",
            text_of(&format!("{row} [data-testid=setting-history]"))
        ),
    )
    .await?;

    // Reset: the default (this master's flag) is in force again.
    click(c, &format!("{row} [data-testid=setting-reset]")).await?;
    until(
        c,
        "the default back",
        &format!(
            "const r = document.querySelector(\"{row}\");
             return r.dataset.value === {before:?} && !r.querySelector('[data-testid=badge-set]')
                 && r.querySelector('[data-testid=setting-input]').value === {before:?};"
        ),
    )
    .await?;

    // A phone's width: no sideways scrolling.
    c.set_window_size(390, 844).await?;
    until(
        c,
        "the settings page within a phone's width",
        "return document.documentElement.scrollWidth <= window.innerWidth
            && !!document.querySelector('[data-testid=setting-save]');",
    )
    .await?;
    screenshot(c, "config-phone").await?;
    c.set_window_size(1280, 800).await?;
    Ok(())
}

/// Signed in as a viewer: values shown, nothing changeable.
pub async fn config_as_viewer(sb: &Sandbox, c: &Client) -> Result<()> {
    c.goto(&format!("{}/config/spawners", sb.master_url()))
        .await?;
    until(
        c,
        "the read-only settings page",
        &format!(
            "return !!document.querySelector('[data-testid=config-read-only]')
                && !!document.querySelector(\"{} [data-testid=setting-input]\");",
            row()
        ),
    )
    .await?;
    let editable = c
        .execute(
            "return [...document.querySelectorAll('[data-testid=setting-input]')].some(i => !i.disabled)
                || !!document.querySelector('[data-testid=setting-save]');",
            vec![],
        )
        .await?;
    ensure!(
        editable == Value::Bool(false),
        "a viewer is offered a settings control"
    );
    Ok(())
}
