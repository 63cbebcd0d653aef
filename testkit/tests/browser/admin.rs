//! The admin pages in the browser: the admin creates a viewer and an enrollment token in
//! /users, finds its CreateUser in /audit through the filters, then the viewer signs in and
//! is offered no admin page and no fleet controls (phone width included).

use anyhow::Result;
use exile_api::v1 as pb;
use exile_testkit::Sandbox;
use fantoccini::Client;
use serde_json::Value;

use super::{click, screenshot, text_of, type_into, until};

const VIEWER: &str = "vera";
const VIEWER_PASSWORD: &str = "vera-password-1";

/// Signed in as the admin on entry; signed in as the viewer on return.
pub async fn users_and_audit(sb: &Sandbox, c: &Client) -> Result<()> {
    until(
        c,
        "the admin's role known",
        "return document.querySelector('[data-testid=whoami]')?.dataset.role === 'admin';",
    )
    .await?;
    click(c, "[data-testid=nav-users]").await?;
    until(
        c,
        "the users page with the admin listed",
        "return !!document.querySelector('[data-testid=user-row][data-user=admin]');",
    )
    .await?;

    // A viewer, created in the form.
    type_into(c, "[data-testid=user-name]", VIEWER).await?;
    type_into(c, "[data-testid=user-password]", VIEWER_PASSWORD).await?;
    c.execute(
        "const s = document.querySelector('[data-testid=user-role]'); s.value = 'viewer';
         s.dispatchEvent(new Event('change', { bubbles: true })); return null;",
        vec![],
    )
    .await?;
    click(c, "[data-testid=user-create]").await?;
    until(
        c,
        "the viewer listed",
        &format!(
            "return document.querySelector('[data-testid=user-row][data-user={VIEWER}]')?.dataset.role === 'viewer'
                && /User {VIEWER} created/.test({});",
            text_of("[data-testid=action-notice]")
        ),
    )
    .await?;
    let users = sb
        .admin()
        .await?
        .auth
        .clone()
        .list_users(pb::ListUsersRequest {})
        .await?
        .into_inner()
        .users;
    assert!(
        users
            .iter()
            .any(|u| u.username == VIEWER && u.role == pb::Role::Viewer as i32),
        "{users:?}"
    );

    // An enrollment token: its secret is shown once, and it is listed.
    type_into(c, "[data-testid=enrollment-description]", "rack 4").await?;
    type_into(c, "[data-testid=enrollment-ttl]", "1h").await?;
    click(c, "[data-testid=enrollment-create]").await?;
    until(
        c,
        "the enrollment secret and row",
        "const v = document.querySelector('[data-testid=secret-value]')?.value ?? '';
         return v.length > 16 && [...document.querySelectorAll('[data-testid=enrollment-row]')]
             .some(r => r.textContent.includes('rack 4'));",
    )
    .await?;
    screenshot(c, "users").await?;

    // The audit log, filtered to this test's CreateUser.
    click(c, "[data-testid=nav-audit]").await?;
    until(
        c,
        "the audit page",
        "return !!document.querySelector('[data-testid=audit-table]');",
    )
    .await?;
    type_into(c, "[data-testid=audit-action]", "createuser").await?;
    type_into(c, "[data-testid=audit-target]", VIEWER).await?;
    click(c, "[data-testid=audit-apply]").await?;
    let rows = until(
        c,
        "only the viewer's creation listed",
        &format!(
            "const rows = [...document.querySelectorAll('[data-testid=audit-row]')];
             return rows.length > 0 && rows.every(r => r.dataset.action === 'CreateUser' && r.dataset.target === '{VIEWER}')
                 && rows.map(r => [r.dataset.actor, r.dataset.result]);"
        ),
    )
    .await?;
    let rows: Vec<(String, String)> = serde_json::from_value(rows)?;
    assert_eq!(rows, [("admin".to_owned(), "ok".to_owned())]);
    screenshot(c, "audit").await?;

    // The viewer signs in: no admin pages in the menu, none reachable, no fleet controls.
    click(c, "[data-testid=logout]").await?;
    until(
        c,
        "the login form",
        "return !!document.querySelector('[data-testid=login-username]');",
    )
    .await?;
    type_into(c, "[data-testid=login-username]", VIEWER).await?;
    type_into(c, "[data-testid=login-password]", VIEWER_PASSWORD).await?;
    click(c, "[data-testid=login-submit]").await?;
    until(
        c,
        "the viewer's role known",
        "return document.querySelector('[data-testid=whoami]')?.dataset.role === 'viewer';",
    )
    .await?;
    let admin_links = c
        .execute(
            "return ['nav-users', 'nav-audit'].filter(t => document.querySelector(`[data-testid=${t}]`));",
            vec![],
        )
        .await?;
    assert_eq!(
        admin_links,
        Value::Array(vec![]),
        "admin pages offered to a viewer"
    );
    c.goto(&format!("{}/users", sb.master_url())).await?;
    until(
        c,
        "/users refused to a viewer",
        "return !!document.querySelector('[data-testid=admin-only]') && !document.querySelector('[data-testid=user-form]');",
    )
    .await?;
    // The page is not kept in the back/forward cache (with its Watch stream still holding one
    // of the six connections a browser allows a host), so page loads never queue behind them;
    // and it carries its security headers (the whole walk runs under that CSP).
    let headers = c
        .execute_async(
            "const done = arguments[0];
             fetch('/audit', { cache: 'no-store' }).then(r => done(['cache-control', 'content-security-policy',
                 'x-content-type-options', 'x-frame-options', 'referrer-policy'].map(h => r.headers.get(h))),
                 e => done(String(e)));",
            vec![],
        )
        .await?;
    let headers: Vec<Option<String>> = serde_json::from_value(headers)?;
    assert_eq!(headers[0].as_deref(), Some("no-store"));
    let csp = headers[1].clone().unwrap_or_default();
    assert!(
        csp.contains("script-src 'self' 'wasm-unsafe-eval'")
            && csp.contains("frame-ancestors 'none'"),
        "{csp}"
    );
    assert_eq!(headers[2].as_deref(), Some("nosniff"));
    assert_eq!(headers[3].as_deref(), Some("DENY"));
    assert_eq!(headers[4].as_deref(), Some("no-referrer"));
    c.goto(&format!("{}/audit", sb.master_url())).await?;
    until(
        c,
        "/audit refused to a viewer",
        "return !!document.querySelector('[data-testid=admin-only]') && !document.querySelector('[data-testid=audit-table]');",
    )
    .await?;
    click(c, "[data-testid=nav-fleets]").await?;
    until(
        c,
        "the fleets page for a viewer",
        "return !!document.querySelector('[data-testid=fleets-page]')
            && document.querySelector('[data-testid=whoami]')?.dataset.role === 'viewer';",
    )
    .await?;
    assert_eq!(
        c.execute(
            "return !!document.querySelector('[data-testid=fleet-new]');",
            vec![]
        )
        .await?,
        Value::Bool(false),
        "New fleet offered to a viewer"
    );

    // Phone width, menu open: the viewer's drawer lists no admin page.
    c.set_window_size(390, 844).await?;
    click(c, "[data-testid=menu]").await?;
    until(
        c,
        "the drawer",
        "return document.querySelector('[data-testid=drawer]').classList.contains('open')
            && !!document.querySelector('[data-testid=drawer] [data-testid=nav-fleets]')
            && !document.querySelector('[data-testid=drawer] [data-testid=nav-users]');",
    )
    .await?;
    screenshot(c, "viewer-phone-drawer").await?;
    click(c, "[data-testid=drawer] [data-testid=nav-fleets]").await?;
    c.set_window_size(1280, 800).await?;
    Ok(())
}
