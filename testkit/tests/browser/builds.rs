//! The builds page in the browser: an admin uploads a real build archive (the demo game and
//! its `exile-build.toml`) through the file input, sees it listed with its SHA-256, activates
//! it, is told why the master refuses to delete an active build, deletes another version
//! through the confirm dialog and starts a rollout; a viewer sees the list without controls.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use exile_api::v1 as pb;
use exile_testkit::{Bearer, Sandbox, connect, demo_game_bin};
use fantoccini::{Client, Locator};
use pb::build_service_client::BuildServiceClient;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{click, screenshot, text_of, type_into, until};

/// The manifest inside the test archive: how a spawner starts the demo game from it.
const MANIFEST: &str = "[run]\ncommand = \"{build_dir}/exile-demo-game --port {port}\"\n";

/// Writes `dir/file_name`, a tar.gz holding the demo game and `exile-build.toml`, and returns
/// its path and SHA-256 (lowercase hex).
fn demo_archive(dir: &Path, file_name: &str) -> Result<(PathBuf, String)> {
    let game = std::fs::read(demo_game_bin()?)?;
    let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let mut add = |name: &str, mode: u32, data: &[u8]| -> Result<()> {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(mode);
        h.set_cksum();
        tar.append_data(&mut h, name, data)
            .with_context(|| format!("add {name} to the archive"))
    };
    add("exile-demo-game", 0o755, &game)?;
    add("exile-build.toml", 0o644, MANIFEST.as_bytes())?;
    let bytes = tar.into_inner()?.finish()?;
    let path = dir.join(file_name);
    std::fs::File::create(&path)?.write_all(&bytes)?;
    let sha: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok((path, sha))
}

/// CSS of the row of build `reference` (`name@version`).
fn row(reference: &str) -> String {
    format!("[data-testid=build-row][data-build={reference:?}]")
}

/// The value of the input `css`, as a JS expression.
fn value_of(css: &str) -> String {
    format!("(document.querySelector({css:?})?.value ?? '')")
}

/// Replaces the text of the input `css`. The page's inputs follow state, which only input
/// events change: WebDriver's clear fires none, so the next redraw would put the old text
/// back under the typed one. Emptying it with an input event, as a person's Backspace does,
/// keeps state and field in step.
pub async fn replace_text(c: &Client, css: &str, text: &str) -> Result<()> {
    c.execute(
        &format!(
            "const e = document.querySelector({css:?}); e.value = '';
             e.dispatchEvent(new InputEvent('input', {{ bubbles: true }})); return null;"
        ),
        vec![],
    )
    .await?;
    c.find(Locator::Css(css)).await?.send_keys(text).await?;
    Ok(())
}

/// Chooses `path` in the page's file input, as a person picking it in the file dialog would.
async fn choose_file(c: &Client, path: &Path) -> Result<()> {
    c.find(Locator::Css("[data-testid=upload-file]"))
        .await?
        .send_keys(&path.display().to_string())
        .await?;
    Ok(())
}

/// Uploads the chosen file through the form and waits for the master to have stored it.
async fn upload(c: &Client) -> Result<()> {
    click(c, "[data-testid=upload-submit]").await?;
    let phase = until(
        c,
        "the upload to end",
        "const p = document.querySelector('[data-testid=upload-progress]')?.dataset.phase;
         return ['done', 'failed', 'cancelled'].includes(p) && p;",
    )
    .await?;
    let status = c
        .execute(
            &format!("return {};", text_of("[data-testid=upload-status]")),
            vec![],
        )
        .await?;
    anyhow::ensure!(phase == "done", "the upload ended {phase}: {status}");
    Ok(())
}

/// Opens the actions of build `reference` and picks `action` (`activate`, `rollout`, `delete`).
async fn build_action(c: &Client, reference: &str, action: &str) -> Result<()> {
    let r = row(reference);
    click(c, &format!("{r} [data-testid=build-actions]")).await?;
    click(c, &format!("{r} [data-testid=action-{action}]")).await
}

/// The admin's walk through the builds page (signed in on entry).
pub async fn builds_page(sb: &Sandbox, c: &Client) -> Result<()> {
    let dir = tempfile::tempdir()?;
    let (first, first_sha) = demo_archive(dir.path(), "demo-1.0.tar.gz")?;
    let (second, _) = demo_archive(dir.path(), "demo-1.1.tar.gz")?;
    let mut builds = BuildServiceClient::with_interceptor(
        connect(sb.master_addr()).await?,
        Bearer::new(sb.admin_token())?,
    );

    click(c, "[data-testid=nav-builds]").await?;
    until(
        c,
        "the builds page for an admin, empty, with its rollout panel",
        "const p = document.querySelector('[data-testid=builds-page]');
         return location.pathname === '/builds' && p?.dataset.role === 'admin'
            && !!document.querySelector('[data-testid=builds-empty]')
            && !!document.querySelector('[data-testid=rollouts-panel]')
            && !!document.querySelector('[data-testid=build-upload]');",
    )
    .await?;

    // Picking the file fills name and version from its name; a bad version is refused in
    // the form, before any byte is sent.
    choose_file(c, &first).await?;
    until(
        c,
        "name and version taken from the file name",
        &format!(
            "return {} === 'demo' && {} === '1.0' && {}.includes('demo-1.0.tar.gz');",
            value_of("[data-testid=upload-name]"),
            value_of("[data-testid=upload-version]"),
            text_of("[data-testid=upload-file-chosen]")
        ),
    )
    .await?;
    replace_text(c, "[data-testid=upload-version]", "../1").await?;
    click(c, "[data-testid=upload-submit]").await?;
    until(
        c,
        "the version refused inline",
        &format!(
            "return /build version/.test({}) && !document.querySelector('[data-testid=upload-progress]');",
            text_of("[data-testid=upload-version-error]")
        ),
    )
    .await?;

    replace_text(c, "[data-testid=upload-version]", "1.0").await?;
    upload(c).await?;
    let r1 = row("demo@1.0");
    let shown = until(
        c,
        "demo@1.0 listed with its SHA-256",
        &format!(
            "const r = document.querySelector({r1:?}); if (!r) return false;
             const s = r.querySelector('[data-testid=build-sha]');
             return [r.dataset.sha256, s.getAttribute('title'), s.textContent];"
        ),
    )
    .await?;
    let shown: Vec<String> = serde_json::from_value(shown)?;
    assert_eq!(shown[0], first_sha, "the row's hash is the archive's");
    assert_eq!(shown[1], first_sha, "the full hash is in the tooltip");
    assert_eq!(shown[2], format!("{}…", &first_sha[..12]));
    let stored = builds
        .get_build(pb::GetBuildRequest {
            build: "demo@1.0".into(),
        })
        .await?
        .into_inner()
        .build
        .context("GetBuild answered without a build")?;
    assert_eq!(stored.sha256, first_sha);
    assert_eq!(stored.manifest, MANIFEST, "the manifest inside the archive");
    screenshot(c, "builds-upload").await?;

    // Activate it for a region the sandbox's spawners are not in: the rest of the scenario
    // spawns instances of their own host build, which an activation there would replace.
    build_action(c, "demo@1.0", "activate").await?;
    until(
        c,
        "the activate dialog",
        "return !!document.querySelector('[data-testid=activate-dialog]');",
    )
    .await?;
    type_into(c, "[data-testid=activate-selector]", "region=eu").await?;
    click(c, "[data-testid=activate-dialog-ok]").await?;
    until(
        c,
        "demo@1.0 active on region=eu",
        &format!(
            "return {}.includes('region=eu') && /demo@1\\.0 is now the active version/.test({});",
            text_of(&format!("{r1} [data-testid=build-active]")),
            text_of("[data-testid=action-notice]")
        ),
    )
    .await?;

    // An active build cannot be deleted: the master's sentence is shown and the row stays.
    build_action(c, "demo@1.0", "delete").await?;
    click(c, "[data-testid=confirm-ok]").await?;
    let refusal = until(
        c,
        "the refusal to delete an active build",
        &format!(
            "const t = {}; return /active version/.test(t) && t;",
            text_of("[data-testid=action-error]")
        ),
    )
    .await?;
    assert!(
        c.find(Locator::Css(&r1)).await.is_ok(),
        "demo@1.0 was refused ({refusal}) yet left the list"
    );

    // A second version, unused, goes through the confirm dialog.
    choose_file(c, &second).await?;
    until(
        c,
        "the version taken from the second file",
        &format!(
            "return {} === '1.1';",
            value_of("[data-testid=upload-version]")
        ),
    )
    .await?;
    upload(c).await?;
    let r2 = row("demo@1.1");
    until(
        c,
        "demo@1.1 listed",
        &format!("return !!document.querySelector({r2:?});"),
    )
    .await?;
    build_action(c, "demo@1.1", "delete").await?;
    until(
        c,
        "the delete confirmation",
        &format!(
            "return /Delete demo@1\\.1/.test({});",
            text_of("[data-testid=confirm-dialog]")
        ),
    )
    .await?;
    click(c, "[data-testid=confirm-ok]").await?;
    until(
        c,
        "demo@1.1 gone",
        &format!(
            "return !document.querySelector({r2:?}) && /Deleted demo@1\\.1/.test({});",
            text_of("[data-testid=action-notice]")
        ),
    )
    .await?;
    let gone = builds
        .get_build(pb::GetBuildRequest {
            build: "demo@1.1".into(),
        })
        .await;
    assert_eq!(
        gone.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::NotFound)
    );

    // A rollout to demo@1.0, its canary share checked in the dialog first.
    build_action(c, "demo@1.0", "rollout").await?;
    until(
        c,
        "the rollout dialog",
        "return !!document.querySelector('[data-testid=rollout-dialog]');",
    )
    .await?;
    replace_text(c, "[data-testid=rollout-canary]", "150").await?;
    click(c, "[data-testid=rollout-dialog-ok]").await?;
    until(
        c,
        "the canary share refused in the dialog",
        &format!(
            "return /canary/.test({});",
            text_of("[data-testid=rollout-dialog-error]")
        ),
    )
    .await?;
    replace_text(c, "[data-testid=rollout-canary]", "50").await?;
    click(c, "[data-testid=rollout-dialog-ok]").await?;
    // No instance runs another version of demo, so it has nothing to replace and ends at once.
    let state = until(
        c,
        "the rollout in the panel and the start notice",
        &format!(
            "const r = document.querySelector('[data-testid=rollout-row][data-build=\"demo@1.0\"]');
             return !!r && /Rollout \\S+ to demo@1\\.0 started/.test({}) && r.dataset.state;",
            text_of("[data-testid=action-notice]")
        ),
    )
    .await?;
    assert!(
        ["Running", "Succeeded"].contains(&state.as_str().unwrap_or_default()),
        "rollout of demo@1.0 is {state}"
    );
    screenshot(c, "builds").await?;

    // On a phone the form stacks and fits the screen; the table scrolls sideways.
    c.set_window_size(390, 844).await?;
    until(
        c,
        "the upload form within a phone's width",
        "const b = document.querySelector('[data-testid=upload-submit]')?.getBoundingClientRect();
         const v = document.querySelector('[data-testid=upload-version]')?.getBoundingClientRect();
         return !!b && !!v && b.right <= window.innerWidth && v.right <= window.innerWidth && b.width > 0;",
    )
    .await?;
    screenshot(c, "builds-phone").await?;
    c.set_window_size(1280, 800).await?;
    Ok(())
}

/// A viewer sees the builds but no upload form and no actions (signed in as a viewer on entry).
pub async fn builds_viewer(base: &str, c: &Client) -> Result<()> {
    c.goto(&format!("{base}/builds")).await?;
    until(
        c,
        "the builds page for a viewer",
        &format!(
            "return document.querySelector('[data-testid=builds-page]')?.dataset.role === 'viewer'
                && !!document.querySelector({:?});",
            row("demo@1.0")
        ),
    )
    .await?;
    let controls = c
        .execute(
            "return ['build-upload', 'build-actions', 'rollout-cancel']
                .filter(t => document.querySelector(`[data-testid=${t}]`));",
            vec![],
        )
        .await?;
    assert_eq!(controls, Value::Array(vec![]), "controls shown to a viewer");
    screenshot(c, "builds-viewer").await?;
    Ok(())
}
