//! `/users` (admin): users (create, change role, reset password, delete), API tokens (create
//! with a role and a TTL, the secret shown once; revoke) and spawner enrollment tokens (create
//! with a TTL, copy, revoke), over AuthService and SpawnerService.

use exile_api::format::rfc3339_secs;
use exile_api::v1 as pb;
use wasm_bindgen::JsCast;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;

use crate::admin::{is_admin, parse_role, parse_ttl, role_name};
use crate::api::ApiResult;
use crate::components::confirm_dialog::ConfirmDialog;
use crate::components::form_dialog::FormDialog;
use crate::context::use_ctx;

/// A call run by the page: resolves to a note for the user, or the error to show.
type Job = std::pin::Pin<Box<dyn std::future::Future<Output = ApiResult<String>>>>;

/// What the page lists.
#[derive(Clone, Debug, Default, PartialEq)]
struct Lists {
    users: Vec<pb::User>,
    api_tokens: Vec<pb::ApiToken>,
    enrollment_tokens: Vec<pb::EnrollmentToken>,
}

/// A secret the master showed once.
#[derive(Clone, Debug, PartialEq)]
struct Secret {
    what: String,
    value: String,
}

/// An open dialog.
#[derive(Clone, Debug, PartialEq)]
enum Dialog {
    ResetPassword(String),
    DeleteUser(String),
    RevokeApiToken(String, String),
    RevokeEnrollment(String),
}

fn when(ms: i64) -> String {
    rfc3339_secs(ms).unwrap_or_else(|| "—".into())
}

/// Copies `text` to the clipboard when the browser offers one (secure origins).
fn copy(text: &str) {
    let Some(nav) = web_sys::window().map(|w| w.navigator()) else {
        return;
    };
    // Looked up at run time: the Clipboard API is not in every browser (nor over plain http).
    let Ok(clip) = js_sys::Reflect::get(&nav, &"clipboard".into()) else {
        return;
    };
    if let Ok(f) = js_sys::Reflect::get(&clip, &"writeText".into())
        && let Ok(f) = f.dyn_into::<js_sys::Function>()
    {
        let _ = f.call1(&clip, &text.into());
    }
}

fn input(r: &NodeRef) -> String {
    r.cast::<HtmlInputElement>()
        .map(|i| i.value())
        .unwrap_or_default()
}

fn select(r: &NodeRef) -> String {
    r.cast::<HtmlSelectElement>()
        .map(|i| i.value())
        .unwrap_or_default()
}

/// The users page.
#[component]
pub fn UsersPage() -> Html {
    let ctx = use_ctx();
    let lists = use_state(|| None::<Lists>);
    let reload = use_state(|| 0u32);
    let busy = use_state(|| None::<String>);
    let error = use_state(|| None::<String>);
    let notice = use_state(|| None::<String>);
    let secret = use_state(|| None::<Secret>);
    let dialog = use_state(|| None::<Dialog>);
    let dialog_error = use_state(|| None::<String>);
    let (u_name, u_pass, u_role) = (use_node_ref(), use_node_ref(), use_node_ref());
    let (t_name, t_role, t_ttl) = (use_node_ref(), use_node_ref(), use_node_ref());
    let (e_desc, e_ttl) = (use_node_ref(), use_node_ref());
    let reset_ref = use_node_ref();
    let admin = is_admin(ctx.role);

    {
        let (lists, error, api, on_error) = (
            lists.clone(),
            error.clone(),
            ctx.api.clone(),
            ctx.on_error.clone(),
        );
        use_effect_with((*reload, admin), move |(_, admin)| {
            if *admin {
                wasm_bindgen_futures::spawn_local(async move {
                    let got = async {
                        Ok::<_, crate::api::ApiError>(Lists {
                            users: api.list_users().await?,
                            api_tokens: api.list_api_tokens().await?,
                            enrollment_tokens: api.list_enrollment_tokens().await?,
                        })
                    }
                    .await;
                    match got {
                        Ok(l) => lists.set(Some(l)),
                        Err(e) => {
                            error.set(Some(e.message.clone()));
                            on_error.emit(e);
                        }
                    }
                });
            }
        });
    }

    // Runs one call, then reloads the lists.
    let run = {
        let (busy, error, notice, reload) =
            (busy.clone(), error.clone(), notice.clone(), reload.clone());
        let on_error = ctx.on_error.clone();
        Callback::from(move |(what, fut): (String, Job)| {
            busy.set(Some(what));
            error.set(None);
            notice.set(None);
            let (busy, error, notice, reload, on_error) = (
                busy.clone(),
                error.clone(),
                notice.clone(),
                reload.clone(),
                on_error.clone(),
            );
            wasm_bindgen_futures::spawn_local(async move {
                match fut.await {
                    Ok(m) => notice.set(Some(m)),
                    Err(e) => {
                        error.set(Some(e.message.clone()));
                        on_error.emit(e);
                    }
                }
                busy.set(None);
                reload.set(*reload + 1);
            });
        })
    };

    if ctx.role.is_none() {
        return html! { <div class="loading">{ "Loading…" }</div> };
    }
    if !admin {
        return html! { <div class="card empty" data-testid="admin-only">{ "Only admins manage users and tokens." }</div> };
    }

    let create_user = {
        let (run, api, error) = (run.clone(), ctx.api.clone(), error.clone());
        let (n, p, r) = (u_name.clone(), u_pass.clone(), u_role.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(role) = parse_role(&select(&r)) else {
                return error.set(Some("role: choose one".into()));
            };
            let req = pb::CreateUserRequest {
                username: input(&n).trim().to_owned(),
                password: input(&p),
                role: role as i32,
            };
            if let Some(i) = p.cast::<HtmlInputElement>() {
                i.set_value("");
            }
            let api = api.clone();
            run.emit((
                format!("Creating user {}", req.username),
                Box::pin(async move {
                    let name = req.username.clone();
                    api.create_user(req).await?;
                    Ok(format!("User {name} created."))
                }),
            ));
        })
    };
    let create_token = {
        let (run, api, error, secret) =
            (run.clone(), ctx.api.clone(), error.clone(), secret.clone());
        let (n, r, t) = (t_name.clone(), t_role.clone(), t_ttl.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let ttl = match parse_ttl(&input(&t)) {
                Ok(v) => v,
                Err(m) => return error.set(Some(m)),
            };
            let Some(role) = parse_role(&select(&r)) else {
                return error.set(Some("role: choose one".into()));
            };
            let req = pb::CreateApiTokenRequest {
                name: input(&n).trim().to_owned(),
                role: role as i32,
                ttl_seconds: ttl,
            };
            let (api, secret) = (api.clone(), secret.clone());
            run.emit((
                format!("Creating API token {}", req.name),
                Box::pin(async move {
                    let name = req.name.clone();
                    let r = api.create_api_token(req).await?;
                    secret.set(Some(Secret {
                        what: format!("API token {name}"),
                        value: r.secret,
                    }));
                    Ok(format!("API token {name} created."))
                }),
            ));
        })
    };
    let create_enrollment = {
        let (run, api, error, secret) =
            (run.clone(), ctx.api.clone(), error.clone(), secret.clone());
        let (d, t) = (e_desc.clone(), e_ttl.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let ttl = match parse_ttl(&input(&t)) {
                Ok(v) => v,
                Err(m) => return error.set(Some(m)),
            };
            let req = pb::CreateEnrollmentTokenRequest {
                ttl_seconds: ttl,
                description: input(&d).trim().to_owned(),
            };
            let (api, secret) = (api.clone(), secret.clone());
            run.emit((
                "Creating an enrollment token".into(),
                Box::pin(async move {
                    let r = api.create_enrollment_token(req).await?;
                    let id = r.token.map(|t| t.id).unwrap_or_default();
                    secret.set(Some(Secret {
                        what: format!("Enrollment token {id}"),
                        value: r.secret,
                    }));
                    Ok(format!("Enrollment token {id} created."))
                }),
            ));
        })
    };
    let set_role = |username: String| {
        let (run, api) = (run.clone(), ctx.api.clone());
        Callback::from(move |e: Event| {
            let v = e.target_unchecked_into::<HtmlSelectElement>().value();
            let Some(role) = parse_role(&v) else { return };
            let (api, username) = (api.clone(), username.clone());
            run.emit((
                format!("Changing {username}'s role"),
                Box::pin(async move {
                    api.update_user(pb::UpdateUserRequest {
                        username: username.clone(),
                        role: role as i32,
                        new_password: String::new(),
                    })
                    .await?;
                    Ok(format!("{username} is now {}.", role_name(role as i32)))
                }),
            ));
        })
    };
    let open = |d: Dialog| {
        let (dialog, dialog_error) = (dialog.clone(), dialog_error.clone());
        Callback::from(move |_: MouseEvent| {
            dialog_error.set(None);
            dialog.set(Some(d.clone()));
        })
    };
    let close = {
        let dialog = dialog.clone();
        Callback::from(move |()| dialog.set(None))
    };

    let dialog_html = (*dialog).clone().map(|d| {
        let (run, api, dlg) = (run.clone(), ctx.api.clone(), dialog.clone());
        match d {
            Dialog::ResetPassword(username) => {
                let (field, fail) = (reset_ref.clone(), dialog_error.clone());
                let ok = Callback::from(move |()| {
                    let pw = input(&field);
                    if pw.chars().count() < 8 {
                        return fail.set(Some("password: at least 8 characters".into()));
                    }
                    dlg.set(None);
                    let (api, username) = (api.clone(), username.clone());
                    run.emit((
                        format!("Resetting {username}'s password"),
                        Box::pin(async move {
                            api.update_user(pb::UpdateUserRequest {
                                username: username.clone(),
                                role: 0,
                                new_password: pw,
                            })
                            .await?;
                            Ok(format!(
                                "{username}'s password was reset; their sessions ended."
                            ))
                        }),
                    ));
                });
                html! {
                    <FormDialog title="Reset password" testid="reset-dialog" confirm_label="Reset"
                        error={(*dialog_error).clone().map(AttrValue::from)} on_confirm={ok} on_cancel={close.clone()}>
                        <label class="field">{ "New password (at least 8 characters)" }
                            <input ref={reset_ref.clone()} type="password" autocomplete="new-password" data-testid="reset-password" />
                        </label>
                    </FormDialog>
                }
            }
            Dialog::DeleteUser(username) => {
                let message = format!("{username} is deleted and signed out everywhere.");
                let ok = Callback::from(move |()| {
                    dlg.set(None);
                    let (api, username) = (api.clone(), username.clone());
                    run.emit((
                        format!("Deleting {username}"),
                        Box::pin(async move {
                            api.delete_user(&username).await?;
                            Ok(format!("User {username} deleted."))
                        }),
                    ));
                });
                html! { <ConfirmDialog title="Delete user?" message={message} confirm_label="Delete" on_confirm={ok} on_cancel={close.clone()} /> }
            }
            Dialog::RevokeApiToken(id, name) => {
                let message = format!("Services using {name} are refused from now on.");
                let ok = Callback::from(move |()| {
                    dlg.set(None);
                    let (api, id) = (api.clone(), id.clone());
                    run.emit((
                        format!("Revoking {id}"),
                        Box::pin(async move {
                            api.revoke_api_token(&id).await?;
                            Ok(format!("API token {id} revoked."))
                        }),
                    ));
                });
                html! { <ConfirmDialog title="Revoke API token?" message={message} confirm_label="Revoke" on_confirm={ok} on_cancel={close.clone()} /> }
            }
            Dialog::RevokeEnrollment(id) => {
                let ok = Callback::from(move |()| {
                    dlg.set(None);
                    let (api, id) = (api.clone(), id.clone());
                    run.emit((
                        format!("Revoking {id}"),
                        Box::pin(async move {
                            api.revoke_enrollment_token(&id).await?;
                            Ok(format!("Enrollment token {id} revoked."))
                        }),
                    ));
                });
                html! { <ConfirmDialog title="Revoke enrollment token?" message="A spawner can no longer enroll with it."
                    confirm_label="Revoke" on_confirm={ok} on_cancel={close.clone()} /> }
            }
        }
    });

    let me = ctx
        .session
        .as_ref()
        .map(|s| s.username.clone())
        .unwrap_or_default();
    let role_options = |current: &str, with_allocator: bool| {
        let roles: &[&str] = if with_allocator {
            &["viewer", "operator", "admin", "allocator"]
        } else {
            &["viewer", "operator", "admin"]
        };
        roles
            .iter()
            .map(|r| html! { <option value={*r} selected={*r == current}>{ *r }</option> })
            .collect::<Html>()
    };
    let l = (*lists).clone().unwrap_or_default();
    let is_busy = busy.is_some();

    html! {
        <div data-testid="users-page">
            if let Some(b) = &*busy {
                <div class="banner banner-info" data-testid="action-progress" role="status"><span class="spinner"></span>{ format!("{b}…") }</div>
            }
            if let Some(e) = &*error {
                <div class="banner banner-bad" data-testid="action-error" role="alert">{ e.clone() }</div>
            }
            if let Some(n) = &*notice {
                <div class="banner banner-ok" data-testid="action-notice">{ n.clone() }</div>
            }
            if let Some(s) = &*secret {
                <div class="card" data-testid="secret-card">
                    <h3>{ format!("{}: copy the secret now", s.what) }</h3>
                    <p class="muted">{ "It is shown once; the master keeps only its hash." }</p>
                    <div class="spawn-form">
                        <input class="mono" readonly={true} value={s.value.clone()} data-testid="secret-value" />
                        <button class="btn" data-testid="secret-copy" onclick={{ let v = s.value.clone(); Callback::from(move |_: MouseEvent| copy(&v)) }}>{ "Copy" }</button>
                        <button class="btn btn-ghost" data-testid="secret-dismiss" onclick={{ let s = secret.clone(); Callback::from(move |_: MouseEvent| s.set(None)) }}>{ "Done" }</button>
                    </div>
                </div>
            }

            <div class="toolbar"><h2 class="section">{ format!("Users ({})", l.users.len()) }</h2></div>
            <form class="card" onsubmit={create_user} data-testid="user-form">
                <div class="form-grid">
                    <label class="field">{ "User name" }<input ref={u_name} autocomplete="off" data-testid="user-name" /></label>
                    <label class="field">{ "Password" }<input ref={u_pass} type="password" autocomplete="new-password" data-testid="user-password" /></label>
                    <label class="field">{ "Role" }<select ref={u_role} data-testid="user-role">{ role_options("viewer", false) }</select></label>
                </div>
                <div class="modal-actions"><button type="submit" class="btn btn-primary" disabled={is_busy} data-testid="user-create">{ "Create user" }</button></div>
            </form>
            <div class="table-wrap card">
                <table class="table" data-testid="user-table">
                    <thead><tr><th>{ "User" }</th><th>{ "Role" }</th><th>{ "Created" }</th><th></th></tr></thead>
                    <tbody>
                        { for l.users.iter().map(|u| {
                            let name = u.username.clone();
                            let own = name == me;
                            html! {
                                <tr data-testid="user-row" data-user={name.clone()} data-role={role_name(u.role)} key={name.clone()}>
                                    <td class="strong">{ name.clone() }</td>
                                    <td>
                                        <select data-testid="user-role-select" disabled={is_busy || own} onchange={set_role(name.clone())}
                                            aria-label={format!("Role of {name}")}>
                                            { role_options(role_name(u.role), false) }
                                        </select>
                                    </td>
                                    <td>{ when(u.created_at_unix_ms) }</td>
                                    <td class="actions">
                                        <button class="btn btn-small" data-testid="user-reset" disabled={is_busy} onclick={open(Dialog::ResetPassword(name.clone()))}>{ "Reset password" }</button>
                                        if !own {
                                            <button class="btn btn-small btn-danger" data-testid="user-delete" disabled={is_busy} onclick={open(Dialog::DeleteUser(name.clone()))}>{ "Delete" }</button>
                                        }
                                    </td>
                                </tr>
                            }
                        }) }
                    </tbody>
                </table>
            </div>

            <div class="toolbar"><h2 class="section">{ format!("API tokens ({})", l.api_tokens.len()) }</h2></div>
            <form class="card" onsubmit={create_token} data-testid="token-form">
                <div class="form-grid">
                    <label class="field">{ "Name" }<input ref={t_name} autocomplete="off" placeholder="matchmaker" data-testid="token-name" /></label>
                    <label class="field">{ "Role" }<select ref={t_role} data-testid="token-role">{ role_options("allocator", true) }</select></label>
                    <label class="field">{ "TTL (e.g. 30d; empty: 90 days)" }<input ref={t_ttl} autocomplete="off" placeholder="30d" data-testid="token-ttl" /></label>
                </div>
                <div class="modal-actions"><button type="submit" class="btn btn-primary" disabled={is_busy} data-testid="token-create">{ "Create token" }</button></div>
            </form>
            <div class="table-wrap card">
                <table class="table" data-testid="token-table">
                    <thead><tr><th>{ "Name" }</th><th>{ "Role" }</th><th>{ "By" }</th><th>{ "Expires" }</th><th>{ "State" }</th><th></th></tr></thead>
                    <tbody>
                        { for l.api_tokens.iter().map(|t| html! {
                            <tr data-testid="token-row" data-token={t.name.clone()} key={t.id.clone()}>
                                <td class="strong" title={t.id.clone()}>{ t.name.clone() }</td>
                                <td>{ role_name(t.role) }</td>
                                <td>{ t.created_by.clone() }</td>
                                <td>{ when(t.expires_at_unix_ms) }</td>
                                <td>
                                    <span class={classes!("badge", if t.revoked { "idle" } else { "ok" })}>{ if t.revoked { "Revoked" } else { "Active" } }</span>
                                </td>
                                <td class="actions">
                                    if !t.revoked {
                                        <button class="btn btn-small btn-danger" data-testid="token-revoke" disabled={is_busy}
                                            onclick={open(Dialog::RevokeApiToken(t.id.clone(), t.name.clone()))}>{ "Revoke" }</button>
                                    }
                                </td>
                            </tr>
                        }) }
                    </tbody>
                </table>
            </div>

            <div class="toolbar"><h2 class="section">{ format!("Enrollment tokens ({})", l.enrollment_tokens.len()) }</h2></div>
            <form class="card" onsubmit={create_enrollment} data-testid="enrollment-form">
                <div class="form-grid">
                    <label class="field">{ "Note" }<input ref={e_desc} autocomplete="off" placeholder="rack 4" data-testid="enrollment-description" /></label>
                    <label class="field">{ "TTL (e.g. 1h; empty: 1 hour)" }<input ref={e_ttl} autocomplete="off" placeholder="1h" data-testid="enrollment-ttl" /></label>
                </div>
                <div class="modal-actions"><button type="submit" class="btn btn-primary" disabled={is_busy} data-testid="enrollment-create">{ "Create enrollment token" }</button></div>
            </form>
            <div class="table-wrap card">
                <table class="table" data-testid="enrollment-table">
                    <thead><tr><th>{ "Id" }</th><th>{ "Note" }</th><th>{ "Expires" }</th><th>{ "Used by" }</th><th>{ "State" }</th><th></th></tr></thead>
                    <tbody>
                        { for l.enrollment_tokens.iter().map(|t| html! {
                            <tr data-testid="enrollment-row" key={t.id.clone()}>
                                <td class="mono">{ t.id.clone() }</td>
                                <td>{ t.description.clone() }</td>
                                <td>{ when(t.expires_at_unix_ms) }</td>
                                <td class="mono">{ if t.used_by_spawner.is_empty() { "—".to_owned() } else { t.used_by_spawner.clone() } }</td>
                                <td>
                                    <span class={classes!("badge", if t.revoked { "idle" } else { "ok" })}>{ if t.revoked { "Revoked" } else { "Active" } }</span>
                                </td>
                                <td class="actions">
                                    if !t.revoked && t.used_by_spawner.is_empty() {
                                        <button class="btn btn-small btn-danger" data-testid="enrollment-revoke" disabled={is_busy}
                                            onclick={open(Dialog::RevokeEnrollment(t.id.clone()))}>{ "Revoke" }</button>
                                    }
                                </td>
                            </tr>
                        }) }
                    </tbody>
                </table>
            </div>
            { for dialog_html }
        </div>
    }
}
