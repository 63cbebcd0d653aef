//! The fleets pages in the browser: an operator creates a fleet of 2 from the demo build in
//! the form, sees both instances Ready live, scales it to 3, allocates one through the
//! Allocate form (instance, address and ports shown; the instance turns Allocated) and
//! deletes the fleet through the confirm dialog. Everything arrives over Watch: no reload.

use anyhow::Result;
use exile_api::v1 as pb;
use exile_testkit::Sandbox;
use fantoccini::Client;
use serde_json::Value;

use super::builds::replace_text;
use super::{click, screenshot, text_of, type_into, until};

/// JS: the number of instance rows in state `state`.
fn rows_in(state: &str) -> String {
    format!("document.querySelectorAll('[data-testid=instance-row][data-state={state}]').length")
}

/// Signed in as the admin on entry; demo@1.0 was uploaded by the builds test.
pub async fn fleets_page(sb: &Sandbox, c: &Client) -> Result<()> {
    click(c, "[data-testid=nav-fleets]").await?;
    until(
        c,
        "the fleets page",
        "return location.pathname === '/fleets' && !!document.querySelector('[data-testid=fleet-new]');",
    )
    .await?;
    c.execute("window.__sameDocument = true; return null;", vec![])
        .await?;

    // A bad name is refused in the dialog, before any call.
    click(c, "[data-testid=fleet-new]").await?;
    type_into(c, "[data-testid=fleet-name]", "bad name").await?;
    click(c, "[data-testid=fleet-dialog-ok]").await?;
    until(
        c,
        "the name refused in the dialog",
        &format!(
            "return /fleet name/.test({});",
            text_of("[data-testid=fleet-dialog-error]")
        ),
    )
    .await?;
    replace_text(c, "[data-testid=fleet-name]", "arena").await?;
    type_into(c, "[data-testid=fleet-build]", "demo@1.0").await?;
    replace_text(c, "[data-testid=fleet-replicas]", "2").await?;
    type_into(c, "[data-testid=fleet-labels]", "mode=ctf").await?;
    screenshot(c, "fleet-create").await?;
    click(c, "[data-testid=fleet-dialog-ok]").await?;

    // The new fleet's page: two instances come up Ready, live.
    until(
        c,
        "two Ready instances of arena",
        &format!(
            "return location.pathname === '/fleets/arena' && {} === 2
                && document.querySelector('[data-testid=fleet-counts]')?.dataset.ready === '2';",
            rows_in("Ready")
        ),
    )
    .await?;
    let admin = sb.admin().await?;
    let spec = admin
        .fleets
        .clone()
        .get_fleet(pb::GetFleetRequest {
            name: "arena".into(),
        })
        .await?
        .into_inner()
        .fleet
        .and_then(|f| f.spec)
        .unwrap_or_default();
    assert_eq!(spec.build, "demo@1.0");
    assert_eq!(spec.replicas, 2);
    assert_eq!(spec.labels.get("mode").map(String::as_str), Some("ctf"));

    // Scale to 3 with the number input.
    replace_text(c, "[data-testid=fleet-scale-input]", "3").await?;
    click(c, "[data-testid=fleet-scale-button]").await?;
    until(
        c,
        "three Ready instances",
        &format!(
            "return {} === 3 && document.querySelector('[data-testid=fleet-desired]')?.textContent === '3';",
            rows_in("Ready")
        ),
    )
    .await?;

    // Allocate one: the answer names the instance, its address and ports, and its row turns
    // Allocated.
    click(c, "[data-testid=allocate-button]").await?;
    let id = until(
        c,
        "the allocation answer",
        "return document.querySelector('[data-testid=allocation-result]')?.dataset.instanceId;",
    )
    .await?;
    let id = id.as_str().unwrap_or_default().to_owned();
    let answer = until(
        c,
        "the allocated row",
        &format!(
            "const r = document.querySelector('[data-testid=instance-row][data-instance-id={id:?}]');
             return r?.dataset.state === 'Allocated' && [{}, {}];",
            text_of("[data-testid=allocation-address]"),
            text_of("[data-testid=allocation-ports]")
        ),
    )
    .await?;
    let answer: Vec<String> = serde_json::from_value(answer)?;
    assert!(!answer[0].is_empty(), "no address in {answer:?}");
    assert!(
        answer[1].chars().any(|c| c.is_ascii_digit()),
        "no port in {answer:?}"
    );
    let inst = sb
        .instances()
        .await?
        .into_iter()
        .find(|i| i.id == id)
        .ok_or_else(|| anyhow::anyhow!("allocated instance {id} unknown to the master"))?;
    assert_eq!(inst.state, pb::InstanceState::Allocated as i32);
    assert_eq!(
        inst.ports.first().map(|p| p.port.to_string()),
        answer[1]
            .split(|c: char| !c.is_ascii_digit())
            .find(|s| !s.is_empty())
            .map(str::to_owned)
    );
    screenshot(c, "fleet").await?;

    // The list shows the counts.
    click(c, "[data-testid=nav-fleets]").await?;
    until(
        c,
        "arena listed with 1 allocated",
        "const r = document.querySelector('[data-testid=fleet-row][data-fleet=arena]');
         return !!r && r.querySelector('[data-testid=fleet-allocated]').textContent === '1'
             && r.querySelector('[data-testid=fleet-replicas-cell]').textContent.startsWith('3 /');",
    )
    .await?;
    screenshot(c, "fleets").await?;

    // Phone width: the fleet page's forms fit the screen.
    click(
        c,
        "[data-testid=fleet-row][data-fleet=arena] [data-testid=fleet-link]",
    )
    .await?;
    c.set_window_size(390, 844).await?;
    until(
        c,
        "the fleet page within a phone's width",
        "const b = document.querySelector('[data-testid=allocate-button]')?.getBoundingClientRect();
         const s = document.querySelector('[data-testid=fleet-scale-button]')?.getBoundingClientRect();
         return !!b && !!s && b.width > 0 && b.right <= window.innerWidth && s.right <= window.innerWidth;",
    )
    .await?;
    screenshot(c, "fleet-phone").await?;
    c.set_window_size(1280, 800).await?;

    // Delete asks first, then the fleet leaves the list.
    click(c, "[data-testid=fleet-delete]").await?;
    until(
        c,
        "the delete confirmation",
        &format!(
            "return /Delete fleet arena/.test({});",
            text_of("[data-testid=confirm-dialog]")
        ),
    )
    .await?;
    click(c, "[data-testid=confirm-ok]").await?;
    until(
        c,
        "arena gone from the list",
        "return location.pathname === '/fleets'
            && !document.querySelector('[data-testid=fleet-row][data-fleet=arena]');",
    )
    .await?;
    let gone = admin
        .fleets
        .clone()
        .get_fleet(pb::GetFleetRequest {
            name: "arena".into(),
        })
        .await;
    assert_eq!(
        gone.map(|_| ()).map_err(|s| s.code()),
        Err(tonic::Code::NotFound)
    );
    assert_eq!(
        c.execute("return window.__sameDocument === true;", vec![])
            .await?,
        Value::Bool(true)
    );
    Ok(())
}
