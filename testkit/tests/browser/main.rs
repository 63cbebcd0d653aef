#![allow(clippy::unwrap_used)]
//! Browser tests of the web dashboard: a real master and two spawners (Sandbox) serve the
//! built bundle (`dist/`), and Debian's headless Chromium, driven through chromedriver
//! (WebDriver), uses it the way a person would. Skipped, loudly, when Chromium, chromedriver
//! or the bundle is missing; `cargo xtask test` builds the bundle and CI installs both.
//!
//! `cargo xtask test` runs this binary beside the other tests and leaves it out of their pass
//! with `--skip headless_chromium`: every test here has that in its name.

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use exile_api::v1 as pb;
use exile_testkit::{Sandbox, SandboxOptions};
use fantoccini::{Client, ClientBuilder, Locator, key::Key};
use serde_json::{Value, json};

mod admin;
mod builds;
mod fleets;
mod performance;
mod server;
mod settings;

/// How long any condition may take to show up in the page.
const WAIT: Duration = Duration::from_secs(30);

/// Writes past the test harness's output capture, so skips and screenshot paths are seen.
fn shout(msg: &str) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn which(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|n| {
        std::env::split_paths(&path)
            .map(|d| d.join(n))
            .find(|p| p.is_file())
    })
}

/// target/ of this build (target/<profile>/deps/<test binary> → target/).
fn target_dir() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|e| e.ancestors().nth(3).map(Path::to_path_buf))
        .unwrap_or_else(|| workspace_root().join("target"))
}

struct Tools {
    chromium: PathBuf,
    chromedriver: PathBuf,
    dist: PathBuf,
}

fn tools() -> Option<Tools> {
    let skip = |why: &str| {
        shout(&format!(
            "\n!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n\
             BROWSER TESTS SKIPPED: {why}\n\
             !!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!\n"
        ));
        None
    };
    let Some(found) = which(&["chromium", "chromium-browser", "google-chrome"]) else {
        return skip("chromium not found (apt-get install chromium chromium-driver)");
    };
    // Debian's /usr/bin/chromium is a wrapper script; prefer the real binary behind it.
    let real = Path::new("/usr/lib/chromium/chromium");
    let chromium = if real.is_file() {
        real.to_path_buf()
    } else {
        found
    };
    let Some(chromedriver) = which(&["chromedriver"]) else {
        return skip("chromedriver not found (apt-get install chromium-driver)");
    };
    let dist = workspace_root().join("dist");
    if !dist.join("index.html").is_file() {
        return skip("dist/index.html is missing (run `cargo xtask dashboard`)");
    }
    Some(Tools {
        chromium,
        chromedriver,
        dist,
    })
}

/// chromedriver on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start(bin: &Path) -> Result<Driver> {
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = Command::new(bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("start chromedriver")?;
        let driver = Driver {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("chromedriver did not listen on port {port} within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(driver)
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Evaluates `body` (a JS function body) until it returns something other than
/// null/undefined/false, then returns that value.
async fn until(c: &Client, what: &str, body: &str) -> Result<Value> {
    let deadline = Instant::now() + WAIT;
    let script = format!("return (function() {{ {body} }})() ?? null;");
    loop {
        let v = c.execute(&script, vec![]).await?;
        if !v.is_null() && v != Value::Bool(false) {
            return Ok(v);
        }
        if Instant::now() > deadline {
            let text = c
                .execute("return document.body.innerText", vec![])
                .await
                .unwrap_or_default();
            let url = c
                .current_url()
                .await
                .map(|u| u.to_string())
                .unwrap_or_default();
            bail!("timed out after {WAIT:?} waiting for {what}; page {url} shows:\n{text}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Clicks `css` once it is shown and enabled (the page re-renders on every live event, so a
/// click that lands mid-render is retried until the deadline).
async fn click(c: &Client, css: &str) -> Result<()> {
    let deadline = Instant::now() + WAIT;
    loop {
        until(c, &format!("{css} to be visible"), &format!(
            "const e = document.querySelector({css:?}); if (!e) return false;
             const r = e.getBoundingClientRect(); return r.width > 0 && r.height > 0 && !e.disabled;"
        ))
        .await?;
        let res = match c.find(Locator::Css(css)).await {
            Ok(e) => e.click().await,
            Err(e) => Err(e),
        };
        match res {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                tracing::debug!(%css, error = %e, "click did not land; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => return Err(e).with_context(|| format!("click {css}")),
        }
    }
}

async fn type_into(c: &Client, css: &str, text: &str) -> Result<()> {
    let e = c.find(Locator::Css(css)).await?;
    e.clear().await?;
    e.send_keys(text).await?;
    Ok(())
}

async fn screenshot(c: &Client, name: &str) -> Result<PathBuf> {
    let dir = target_dir().join("browser-screenshots");
    std::fs::create_dir_all(&dir)?;
    let path = dir.join(format!("{name}.png"));
    std::fs::write(&path, c.screenshot().await?)?;
    shout(&format!("screenshot: {}", path.display()));
    Ok(path)
}

/// States of the spawner rows, by spawner name.
const SPAWNER_STATES: &str =
    "return Object.fromEntries([...document.querySelectorAll('[data-testid=spawner-row]')]
    .map(r => [r.dataset.spawnerName, r.querySelector('[data-testid=spawner-state]').innerText]));";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_in_headless_chromium() -> Result<()> {
    let Some(tools) = tools() else {
        return Ok(());
    };
    let mut sb = Sandbox::start(SandboxOptions {
        dashboard_dir: Some(tools.dist.clone()),
        // /performance gets a point every half second instead of every ten.
        master_args: vec!["--performance-sample-ms=500".into()],
        ..Default::default()
    })
    .await?;
    let driver = Driver::start(&tools.chromedriver)?;
    let profile = tempfile::tempdir()?;
    let caps = json!({
        "goog:chromeOptions": {
            "binary": tools.chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--disable-dev-shm-usage", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.path().display()),
            ],
        }
    });
    let mut builder = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
    builder.capabilities(caps.as_object().cloned().unwrap());
    let c = builder
        .connect(&driver.url)
        .await
        .context("open a Chromium session")?;
    let outcome = scenario(&mut sb, &c).await;
    if outcome.is_err() {
        let _ = screenshot(&c, "failure").await;
    }
    let _ = c.close().await;
    drop(driver);
    sb.shutdown().await;
    outcome
}

async fn scenario(sb: &mut Sandbox, c: &Client) -> Result<()> {
    let base = sb.master_url();

    // Without a session every page sends the user to /login.
    c.goto(&format!("{base}/spawners")).await?;
    until(
        c,
        "the login form",
        "return !!document.querySelector('[data-testid=login-form]');",
    )
    .await?;
    assert!(c.current_url().await?.path().ends_with("/login"));

    // A wrong password is refused with a readable message.
    type_into(c, "[data-testid=login-username]", "admin").await?;
    type_into(c, "[data-testid=login-password]", "not-the-password").await?;
    click(c, "[data-testid=login-submit]").await?;
    let err = until(
        c,
        "a login error",
        "const e = document.querySelector('[data-testid=login-error]'); return e && e.innerText;",
    )
    .await?;
    assert!(!err.as_str().unwrap_or_default().is_empty());
    assert!(c.current_url().await?.path().ends_with("/login"));

    // The right one reaches the overview, where both spawners show up Online, live.
    type_into(c, "[data-testid=login-password]", sb.admin_password()).await?;
    click(c, "[data-testid=login-submit]").await?;
    let states = until(
        c,
        "both spawners Online",
        &format!(
            "const s = (function() {{ {SPAWNER_STATES} }})();
         return s['spawner-0'] === 'Online' && s['spawner-1'] === 'Online' && s;"
        ),
    )
    .await?;
    assert_eq!(states.as_object().map(|o| o.len()), Some(2));
    until(
        c,
        "the spawner count card",
        "return document.querySelector('[data-testid=stats-spawners-value]')?.innerText === '2/2';",
    )
    .await?;
    until(c, "master stats", "return /\\d/.test(document.querySelector('[data-testid=stats-requests-value]')?.innerText ?? '');").await?;
    screenshot(c, "overview").await?;

    // A row opens the spawner's page.
    click(c, "[data-testid=spawner-row][data-spawner-name=spawner-0]").await?;
    until(
        c,
        "the spawner page",
        "return document.querySelector('[data-testid=spawner-name]')?.innerText === 'spawner-0';",
    )
    .await?;
    let ids = sb.spawner_ids().await?;
    assert!(
        c.current_url()
            .await?
            .path()
            .ends_with(&format!("/spawners/{}", ids[0]))
    );

    // Spawning from the UI makes a new instance appear as Running, with no reload: a marker
    // set on the window now must still be there afterwards.
    c.execute("window.__sameDocument = true; return null;", vec![])
        .await?;
    type_into(c, "[data-testid=spawn-labels]", "mode=ctf").await?;
    click(c, "[data-testid=spawn-button]").await?;
    let id = until(c, "a new instance Running", "const r = [...document.querySelectorAll('[data-testid=instance-row]')]
        .find(r => ['Running', 'Ready'].includes(r.dataset.state)); return r && r.dataset.instanceId;").await?;
    let id = id.as_str().unwrap().to_owned();
    assert_eq!(
        c.execute("return window.__sameDocument === true;", vec![])
            .await?,
        Value::Bool(true)
    );
    let inst = sb
        .instances()
        .await?
        .into_iter()
        .find(|i| i.id == id)
        .context("instance unknown to the master")?;
    assert_eq!(inst.spawner_id, ids[0]);
    assert_eq!(inst.labels.get("mode").map(String::as_str), Some("ctf"));
    until(
        c,
        "the spawn notice",
        "return !!document.querySelector('[data-testid=action-notice]');",
    )
    .await?;
    // The host's history: CPU, memory, players and disk charts drawn from its heartbeats.
    until(
        c,
        "the host history charts",
        "const m = document.querySelector('[data-testid=spawner-metrics]');
         return !!m && ['chart-cpu', 'chart-memory', 'chart-disk']
             .every(t => !!m.querySelector(`[data-testid=${t}] [data-testid=chart-line]`));",
    )
    .await?;
    screenshot(c, "spawner").await?;
    let row = format!("[data-testid=instance-row][data-instance-id={id:?}]");

    instance_page(c, &row, &id).await?;
    unhealthy_keeps_its_controls(sb, c, &ids[0]).await?;

    // Stop asks first; confirming stops it.
    click(c, &format!("{row} [data-testid=instance-actions]")).await?;
    click(c, &format!("{row} [data-testid=action-stop]")).await?;
    until(
        c,
        "the confirm dialog",
        "return !!document.querySelector('[data-testid=confirm-dialog]');",
    )
    .await?;
    screenshot(c, "confirm-stop").await?;
    click(c, "[data-testid=confirm-ok]").await?;
    until(
        c,
        "the instance Stopped",
        &format!("return document.querySelector({row:?})?.dataset.state === 'Stopped';"),
    )
    .await?;

    // A stopped master shows "Reconnecting" and the page recovers when it is back.
    sb.stop_master().await?;
    until(c, "the reconnecting banner", "const b = document.getElementById('reconnecting'); return !!b && /Reconnecting/.test(b.innerText);").await?;
    screenshot(c, "reconnecting").await?;
    sb.start_master().await?;
    until(
        c,
        "the banner to go away",
        "return !document.getElementById('reconnecting');",
    )
    .await?;
    until(
        c,
        "the instance to be listed again",
        &format!("return !!document.querySelector({row:?});"),
    )
    .await?;
    assert_eq!(
        c.execute("return window.__sameDocument === true;", vec![])
            .await?,
        Value::Bool(true)
    );

    // Phone width: the sidebar folds into a drawer behind the menu button.
    c.set_window_size(390, 844).await?;
    c.goto(&format!("{base}/")).await?;
    until(
        c,
        "the overview on a phone",
        "return document.querySelectorAll('[data-testid=spawner-row]').length === 2;",
    )
    .await?;
    click(c, "[data-testid=menu]").await?;
    until(
        c,
        "the drawer",
        "return document.querySelector('[data-testid=drawer]').classList.contains('open');",
    )
    .await?;
    screenshot(c, "overview-phone-drawer").await?;
    click(c, "[data-testid=drawer] [data-testid=nav-spawners]").await?;
    until(c, "the spawners page", "return location.pathname === '/spawners' && !document.querySelector('[data-testid=drawer].open');").await?;
    screenshot(c, "spawners-phone").await?;
    c.set_window_size(1280, 800).await?;

    // Unknown addresses get the not-found page.
    c.goto(&format!("{base}/no/such/page")).await?;
    until(
        c,
        "the not-found page",
        "return !!document.querySelector('[data-testid=not-found]');",
    )
    .await?;

    // A session the master no longer accepts sends the user back to /login with a message.
    c.execute(
        "sessionStorage.setItem('exile.session', 'admin\\nrevoked-token'); return null;",
        vec![],
    )
    .await?;
    c.goto(&format!("{base}/")).await?;
    until(
        c,
        "the expired-session message",
        "return !!document.querySelector('[data-testid=login-message]');",
    )
    .await?;

    // Sign out clears the tab's session.
    type_into(c, "[data-testid=login-username]", "admin").await?;
    type_into(c, "[data-testid=login-password]", sb.admin_password()).await?;
    click(c, "[data-testid=login-submit]").await?;
    click(c, "[data-testid=logout]").await?;
    until(
        c,
        "the login page after sign-out",
        "return !!document.querySelector('[data-testid=login-form]');",
    )
    .await?;
    let stored = c
        .execute("return sessionStorage.getItem('exile.session');", vec![])
        .await?;
    assert_eq!(stored, Value::Null);

    // Builds, signed in as the admin again.
    type_into(c, "[data-testid=login-username]", "admin").await?;
    type_into(c, "[data-testid=login-password]", sb.admin_password()).await?;
    click(c, "[data-testid=login-submit]").await?;
    builds::builds_page(sb, c).await?;
    fleets::fleets_page(sb, c).await?;
    settings::config_page(sb, c).await?;
    server::server_page(sb, c).await?;
    performance::performance_page(c).await?;
    admin::users_and_audit(sb, c).await?;
    settings::config_as_viewer(sb, c).await?;

    viewer_is_refused(sb, c).await
}

/// Text of the element `css`, as a JS expression ('' when absent).
fn text_of(css: &str) -> String {
    format!("(document.querySelector({css:?})?.textContent ?? '')")
}

/// The instance page reached from its row: the game's own output in the log, a console
/// command answered in the log under the input, and the resource charts drawn.
async fn instance_page(c: &Client, row: &str, id: &str) -> Result<()> {
    click(c, &format!("{row} [data-testid=instance-link]")).await?;
    until(
        c,
        "the instance page",
        &format!(
            "return location.pathname === '/instances/{id}' && {} === {id:?};",
            text_of("[data-testid=instance-id]")
        ),
    )
    .await?;

    // The demo game prints its port, then "ready" once the SDK call went through.
    until(
        c,
        "the game's startup lines in the log",
        &format!(
            "const t = {}; return /listening on port \\d+/.test(t) && t.includes('ready (instance {id})');",
            text_of("[data-testid=log-view]")
        ),
    )
    .await?;
    screenshot(c, "instance-logs").await?;

    // Enter sends a console line; the game's answer shows up in the log above the input.
    click(c, "[data-testid=tab-console]").await?;
    until(
        c,
        "the console input enabled",
        "const i = document.querySelector('[data-testid=terminal-input]'); return !!i && !i.disabled;",
    )
    .await?;
    let said = "hello from the dashboard";
    type_into(c, "[data-testid=terminal-input]", &format!("say {said}")).await?;
    c.find(Locator::Css("[data-testid=terminal-input]"))
        .await?
        .send_keys(&Key::Enter.to_string())
        .await?;
    until(
        c,
        "the console answer in the log",
        &format!(
            "return {}.includes('[console] {said}');",
            text_of("[data-testid=console-log]")
        ),
    )
    .await?;
    until(
        c,
        "the sent line marked as sent",
        &format!(
            "const l = document.querySelector('[data-testid=terminal-sent].ok'); return !!l && l.textContent.includes('say {said}');"
        ),
    )
    .await?;
    let input = c
        .execute(
            "return document.querySelector('[data-testid=terminal-input]').value;",
            vec![],
        )
        .await?;
    assert_eq!(
        input,
        Value::String(String::new()),
        "input cleared after Enter"
    );
    screenshot(c, "instance-console").await?;

    // The Sandbox's spawners report every 200 ms, so a running instance has samples by now:
    // each chart draws a line and shows a current value.
    click(c, "[data-testid=tab-metrics]").await?;
    let now = until(
        c,
        "CPU, memory and players charts with a line",
        "const ids = ['chart-cpu', 'chart-memory', 'chart-players'];
         const cards = ids.map(i => document.querySelector(`[data-testid=${i}]`));
         if (cards.some(c => !c)) return false;
         const lines = cards.map(c => c.querySelector('path[data-testid=chart-line]')?.getAttribute('d') ?? '');
         if (!lines.every(d => /^M[\\d.]+,[\\d.]+/.test(d))) return false;
         return cards.map(c => c.querySelector('[data-testid=chart-now]').textContent);",
    )
    .await?;
    let now: Vec<String> = serde_json::from_value(now)?;
    assert!(now[0].ends_with('%'), "CPU now: {now:?}");
    assert!(now[1].ends_with('B'), "memory now: {now:?}");
    assert_eq!(now[2], "0", "players now: {now:?}");
    screenshot(c, "instance-metrics").await?;

    // Back to the spawner through the page's own link, still without a reload.
    click(c, "[data-testid=instance-spawner-link]").await?;
    until(
        c,
        "the spawner page again",
        &format!(
            "return {} === 'spawner-0' && !!document.querySelector({row:?});",
            text_of("[data-testid=spawner-name]")
        ),
    )
    .await?;
    Ok(())
}

/// An instance that stopped its health pings is Unhealthy but still running: its row offers
/// Stop and Restart, never Start or Remove, and its console stays open (the states' rules in
/// exile_api::state, which the dashboard once got wrong). Its pings back make it Ready again.
async fn unhealthy_keeps_its_controls(sb: &Sandbox, c: &Client, spawner: &str) -> Result<()> {
    let admin = sb.admin().await?;
    let id = admin
        .instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            spawner_id: spawner.to_owned(),
            health_check: Some(pb::HealthCheck {
                // The demo game pings every second.
                period_ms: Some(1000),
                failure_threshold: Some(3),
                ..Default::default()
            }),
            ..Default::default()
        })
        .await?
        .into_inner()
        .instance
        .context("no instance in the spawn answer")?
        .id;
    let row = format!("[data-testid=instance-row][data-instance-id={id:?}]");
    let state_is = |state: &str| {
        format!("return document.querySelector({row:?})?.dataset.state === {state:?};")
    };
    until(c, "the new instance Ready", &state_is("Ready")).await?;
    let console = |line: &str| {
        let mut instances = admin.instances.clone();
        let req = pb::SendConsoleCommandRequest {
            id: id.clone(),
            line: line.to_owned(),
        };
        async move { instances.send_console_command(req).await }
    };
    console("health off").await?;
    until(c, "the silent instance Unhealthy", &state_is("Unhealthy")).await?;
    click(c, &format!("{row} [data-testid=instance-actions]")).await?;
    let offered = until(
        c,
        "the actions of an Unhealthy instance",
        &format!(
            "const items = [...document.querySelectorAll({:?})].map(e => e.dataset.testid);
             return items.length > 0 && items;",
            format!("{row} [data-testid^=action-]")
        ),
    )
    .await?;
    let offered: Vec<String> = serde_json::from_value(offered)?;
    for verb in ["action-stop", "action-restart"] {
        assert!(
            offered.iter().any(|a| a == verb),
            "{verb} missing: {offered:?}"
        );
    }
    for verb in ["action-start", "action-remove"] {
        assert!(
            !offered.iter().any(|a| a == verb),
            "{verb} offered: {offered:?}"
        );
    }
    screenshot(c, "instance-unhealthy").await?;
    // Close the menu (a click beside it), then the console of the running game stays usable.
    click(c, ".dropdown-catcher").await?;
    click(c, &format!("{row} [data-testid=instance-link]")).await?;
    click(c, "[data-testid=tab-console]").await?;
    until(
        c,
        "the console of an Unhealthy instance enabled",
        "const i = document.querySelector('[data-testid=terminal-input]'); return !!i && !i.disabled;",
    )
    .await?;
    console("health on").await?;
    until(
        c,
        "the instance Ready again",
        &format!(
            "return {} === 'Ready';",
            text_of("[data-testid=instance-state]")
        ),
    )
    .await?;
    admin
        .instances
        .clone()
        .stop_instance(pb::StopInstanceRequest {
            id: id.clone(),
            ..Default::default()
        })
        .await?;
    click(c, "[data-testid=instance-spawner-link]").await?;
    until(
        c,
        "the spawner page again",
        &format!("return !!document.querySelector({row:?});"),
    )
    .await?;
    Ok(())
}

/// A viewer may not read logs or type into a console: both say so with the master's sentence
/// instead of failing silently or retrying forever; on the builds page it gets no controls.
async fn viewer_is_refused(sb: &Sandbox, c: &Client) -> Result<()> {
    let admin = sb.admin().await?;
    let token = admin
        .auth
        .clone()
        .create_api_token(pb::CreateApiTokenRequest {
            name: "dashboard-viewer".into(),
            role: pb::Role::Viewer as i32,
            ttl_seconds: 600,
        })
        .await?
        .into_inner()
        .secret;
    let ids = sb.spawner_ids().await?;
    let inst = admin
        .instances
        .clone()
        .spawn_instance(pb::SpawnInstanceRequest {
            spawner_id: ids[1].clone(),
            ..Default::default()
        })
        .await?
        .into_inner()
        .instance
        .context("spawn answered without an instance")?;
    c.execute(
        &format!("sessionStorage.setItem('exile.session', 'viewer\\n' + {token:?}); return null;"),
        vec![],
    )
    .await?;
    c.goto(&format!("{}/instances/{}", sb.master_url(), inst.id))
        .await?;
    until(
        c,
        "the log refused for a viewer",
        &format!(
            "return /operator/.test({});",
            text_of("[data-testid=log-denied]")
        ),
    )
    .await?;
    click(c, "[data-testid=tab-console]").await?;
    until(
        c,
        "the console input enabled",
        "const i = document.querySelector('[data-testid=terminal-input]'); return !!i && !i.disabled;",
    )
    .await?;
    type_into(c, "[data-testid=terminal-input]", "say hi").await?;
    c.find(Locator::Css("[data-testid=terminal-input]"))
        .await?
        .send_keys(&Key::Enter.to_string())
        .await?;
    until(
        c,
        "the console refused for a viewer",
        &format!(
            "return /operator/.test({}) && !!document.querySelector('[data-testid=terminal-sent].bad');",
            text_of("[data-testid=terminal-error]")
        ),
    )
    .await?;
    screenshot(c, "instance-console-viewer").await?;
    builds::builds_viewer(&sb.master_url(), c).await
}
