//! `/config` and `/config/:category`: every run-time setting by category, with its
//! description, type-aware input, default, bounds and badges ("needs restart", "read-only",
//! "applied by spawners"), a dirty state with Save / Revert / Reset to default (admins), the
//! master's error shown inline, a setting's history, and each spawner's acknowledgement of the
//! settings version in force (live over Watch).

use exile_api::format::rfc3339_secs;
use exile_api::v1 as pb;
use web_sys::{HtmlInputElement, HtmlSelectElement};
use yew::prelude::*;
use yew_router::prelude::*;

use crate::admin::is_admin;
use crate::context::use_ctx;
use crate::routes::Route;
use crate::settings::{Ack, ack, ack_counts, categories, check, is_dirty};
use crate::state::spawner_state_label;

/// Properties of the settings page.
#[derive(Properties, PartialEq)]
pub struct ConfigProps {
    /// One category (`/config/:category`), or every one (`/config`).
    #[prop_or_default]
    pub category: Option<String>,
}

/// The settings page.
#[component]
pub fn ConfigPage(props: &ConfigProps) -> Html {
    let ctx = use_ctx();
    let list = use_state(|| None::<pb::ListSettingsResponse>);
    let error = use_state(|| None::<String>);
    let reload = use_state(|| 0u32);

    {
        let (list, error, api, on_error) = (
            list.clone(),
            error.clone(),
            ctx.api.clone(),
            ctx.on_error.clone(),
        );
        use_effect_with(*reload, move |_| {
            wasm_bindgen_futures::spawn_local(async move {
                match api.list_settings().await {
                    Ok(v) => {
                        error.set(None);
                        list.set(Some(v));
                    }
                    Err(e) => {
                        error.set(Some(e.message.clone()));
                        on_error.emit(e);
                    }
                }
            });
        });
    }

    let known = categories();
    if let Some(c) = &props.category
        && !known.contains(&c.as_str())
    {
        return html! {
            <div class="card empty" data-testid="config-unknown-category">
                { format!("There is no settings category {c:?}. Categories: {}.", known.join(", ")) }
            </div>
        };
    }
    let Some(resp) = (*list).clone() else {
        return match &*error {
            Some(e) => {
                html! { <div class="banner banner-bad" data-testid="action-error" role="alert">{ e.clone() }</div> }
            }
            None => html! { <div class="loading">{ "Loading…" }</div> },
        };
    };

    // A saved entry replaces its old self and may move the version forward.
    let on_saved = {
        let list = list.clone();
        Callback::from(move |entry: pb::SettingEntry| {
            if let Some(mut l) = (*list).clone() {
                l.version = l.version.max(entry.version);
                if let Some(slot) = l.settings.iter_mut().find(|s| s.key == entry.key) {
                    *slot = entry;
                }
                list.set(Some(l));
            }
        })
    };
    let editable = is_admin(ctx.role);
    let shown: Vec<&pb::SettingEntry> = resp
        .settings
        .iter()
        .filter(|s| props.category.as_deref().is_none_or(|c| s.category == c))
        .collect();
    let spawner_settings = shown.iter().any(|s| s.applied_by == "spawners");
    let spawners = ctx.live.fleet.spawners_sorted();
    let (applied, connected) = ack_counts(&spawners, resp.version);
    let tab = |to: Route, label: &str, active: bool, id: &str| {
        html! {
            <Link<Route> to={to} classes={classes!("tab", active.then_some("active"))}>
                <span data-testid={id.to_owned()}>{ label.to_owned() }</span>
            </Link<Route>>
        }
    };
    let refresh = {
        let reload = reload.clone();
        Callback::from(move |_: MouseEvent| reload.set(*reload + 1))
    };

    html! {
        <div data-testid="config-page" data-version={resp.version.to_string()}>
            <div class="tabs config-tabs" role="tablist" data-testid="config-tabs">
                    { tab(Route::Config, "All", props.category.is_none(), "config-tab-all") }
                    { for known.iter().map(|c| tab(
                        Route::ConfigCategory { category: (*c).to_owned() },
                        c,
                        props.category.as_deref() == Some(*c),
                        &format!("config-tab-{c}"),
                )) }
            </div>
            <div class="toolbar">
                <span class="muted small" data-testid="config-version">{ format!("Settings version {}", resp.version) }</span>
                <button class="btn btn-small" data-testid="config-reload" onclick={refresh}>{ "Reload" }</button>
            </div>
            if let Some(e) = &*error {
                <div class="banner banner-bad" role="alert">{ e.clone() }</div>
            }
            if !editable {
                <div class="banner banner-info" data-testid="config-read-only">{ "Only admins change settings; you see their values." }</div>
            }
            if spawner_settings {
                <div class="card" data-testid="settings-acks">
                    <h3>{ "Spawners" }</h3>
                    <p class="muted small" data-testid="settings-ack-summary">
                        { format!("{applied} of {connected} connected spawners applied version {}. Spawners that are not connected get it when they reconnect.", resp.version) }
                    </p>
                    if spawners.is_empty() {
                        <p class="muted">{ "No spawner has enrolled." }</p>
                    } else {
                        <div class="table-wrap">
                            <table class="table">
                                <thead><tr><th>{ "Spawner" }</th><th>{ "State" }</th><th>{ "Applied" }</th><th>{ "Version" }</th></tr></thead>
                                <tbody>
                                    { for spawners.iter().map(|s| {
                                        let a = ack(s, resp.version);
                                        let detail = match &a {
                                            Ack::Failed(m) => m.clone(),
                                            _ => String::new(),
                                        };
                                        html! {
                                            <tr data-testid="settings-ack" data-spawner={s.id.clone()} data-ack={a.word()}
                                                data-version={s.settings_version.to_string()} key={s.id.clone()}>
                                                <td><Link<Route> to={Route::Spawner { id: s.id.clone() }}>{ s.name.clone() }</Link<Route>></td>
                                                <td>{ spawner_state_label(s.state) }</td>
                                                <td>
                                                    <span class={classes!("badge", a.tone())}>{ a.word() }</span>
                                                    if !detail.is_empty() { <div class="field-error">{ detail }</div> }
                                                </td>
                                                <td class="mono">{ s.settings_version }</td>
                                            </tr>
                                        }
                                    }) }
                                </tbody>
                            </table>
                        </div>
                    }
                </div>
            }
            { for known.iter().filter(|c| props.category.as_deref().is_none_or(|x| x == **c)).map(|c| {
                let rows: Vec<&pb::SettingEntry> = shown.iter().copied().filter(|s| s.category == *c).collect();
                html! {
                    <section data-testid="config-category" data-category={(*c).to_owned()} key={(*c).to_owned()}>
                        <h2 class="section">{ c.to_owned() }</h2>
                        if rows.is_empty() {
                            <div class="card empty">{ "Nothing declared in this category." }</div>
                        } else {
                            <div class="settings-list">
                                { for rows.into_iter().map(|s| html! {
                                    <SettingRow key={s.key.clone()} entry={s.clone()} editable={editable} on_saved={on_saved.clone()} />
                                }) }
                            </div>
                        }
                    </section>
                }
            }) }
        </div>
    }
}

/// Properties of one setting's row.
#[derive(Properties, PartialEq)]
struct RowProps {
    entry: pb::SettingEntry,
    editable: bool,
    on_saved: Callback<pb::SettingEntry>,
}

/// One setting: its facts, its input and its history.
#[component]
fn SettingRow(props: &RowProps) -> Html {
    let ctx = use_ctx();
    // None: showing the value in force; Some: what the user typed.
    let draft = use_state(|| None::<String>);
    let server_error = use_state(|| None::<String>);
    let busy = use_state(|| false);
    let history = use_state(|| None::<Vec<pb::SettingChange>>);
    let field = use_node_ref();
    let e = &props.entry;
    // The value in force goes into the text input when the row appears and whenever it
    // changes (a save, a reset, a reload), replacing any draft.
    {
        let (field, draft) = (field.clone(), draft.clone());
        use_effect_with(e.value.clone(), move |v| {
            if let Some(i) = field.cast::<HtmlInputElement>() {
                i.set_value(v);
            }
            draft.set(None);
        });
    }
    let text = (*draft).clone().unwrap_or_else(|| e.value.clone());
    let dirty = draft.is_some() && is_dirty(e, &text);
    let local = if dirty {
        check(&e.key, &text).err()
    } else {
        None
    };
    let can_edit = props.editable && !e.read_only;

    let on_input = {
        let (draft, server_error) = (draft.clone(), server_error.clone());
        Callback::from(move |v: String| {
            server_error.set(None);
            draft.set(Some(v));
        })
    };
    let text_input =
        on_input.reform(|ev: InputEvent| ev.target_unchecked_into::<HtmlInputElement>().value());
    let select_input =
        on_input.reform(|ev: Event| ev.target_unchecked_into::<HtmlSelectElement>().value());
    let run = |reset: bool| {
        let (draft, server_error, busy, api, on_error, on_saved, key, value) = (
            draft.clone(),
            server_error.clone(),
            busy.clone(),
            ctx.api.clone(),
            ctx.on_error.clone(),
            props.on_saved.clone(),
            e.key.clone(),
            text.clone(),
        );
        let history = history.clone();
        Callback::from(move |ev: MouseEvent| {
            ev.prevent_default();
            let (draft, server_error, busy, api, on_error, on_saved, key, value) = (
                draft.clone(),
                server_error.clone(),
                busy.clone(),
                api.clone(),
                on_error.clone(),
                on_saved.clone(),
                key.clone(),
                value.clone(),
            );
            let history = history.clone();
            busy.set(true);
            wasm_bindgen_futures::spawn_local(async move {
                let r = if reset {
                    api.reset_setting(&key).await
                } else {
                    api.set_setting(&key, &value).await
                };
                match r {
                    Ok(entry) => {
                        draft.set(None);
                        server_error.set(None);
                        history.set(None);
                        on_saved.emit(entry);
                    }
                    Err(err) => {
                        server_error.set(Some(err.message.clone()));
                        on_error.emit(err);
                    }
                }
                busy.set(false);
            });
        })
    };
    let save = run(false);
    let reset = run(true);
    let revert = {
        let (draft, server_error, field, value) = (
            draft.clone(),
            server_error.clone(),
            field.clone(),
            e.value.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            // The text input has no `value` binding (see below): put the value back by hand.
            if let Some(i) = field.cast::<HtmlInputElement>() {
                i.set_value(&value);
            }
            draft.set(None);
            server_error.set(None);
        })
    };
    let toggle_history = {
        let (history, api, key, on_error) = (
            history.clone(),
            ctx.api.clone(),
            e.key.clone(),
            ctx.on_error.clone(),
        );
        Callback::from(move |_: MouseEvent| {
            if history.is_some() {
                history.set(None);
                return;
            }
            let (history, api, key, on_error) =
                (history.clone(), api.clone(), key.clone(), on_error.clone());
            wasm_bindgen_futures::spawn_local(async move {
                match api.setting_history(&key).await {
                    Ok(v) => history.set(Some(v)),
                    Err(err) => on_error.emit(err),
                }
            });
        })
    };

    let input = match e.r#type.as_str() {
        "bool" => html! {
            <select data-testid="setting-input" disabled={!can_edit} onchange={select_input} aria-label={e.key.clone()}>
                { for ["true", "false"].iter().map(|v| html! { <option value={*v} selected={text == *v}>{ *v }</option> }) }
            </select>
        },
        "enum" => html! {
            <select data-testid="setting-input" disabled={!can_edit} onchange={select_input} aria-label={e.key.clone()}>
                { for e.allowed.iter().map(|v| html! { <option value={v.clone()} selected={text == *v}>{ v.clone() }</option> }) }
            </select>
        },
        // The text input is not given a `value`: Yew would write it back into the field on
        // every render (each live event re-renders the page) and clobber what is being typed.
        // The value in force is put in by hand when it changes (below) and on Revert.
        ty => html! {
            <input ref={field.clone()} data-testid="setting-input" disabled={!can_edit} oninput={text_input}
                inputmode={if ty == "int" { "numeric" } else { "text" }} autocomplete="off"
                placeholder={e.default_value.clone()} aria-label={e.key.clone()} />
        },
    };

    html! {
        <div class={classes!("card", "setting", dirty.then_some("dirty"))} data-testid="setting" data-key={e.key.clone()}
            data-value={e.value.clone()} data-dirty={dirty.to_string()}>
            <div class="setting-head">
                <span class="mono setting-key">{ e.key.clone() }</span>
                <span class="badge muted">{ e.r#type.clone() }</span>
                if e.needs_restart { <span class="badge warn" data-testid="badge-restart">{ "needs restart" }</span> }
                if e.read_only { <span class="badge muted" data-testid="badge-read-only">{ "read-only" }</span> }
                if e.applied_by == "spawners" { <span class="badge info">{ "applied by spawners" }</span> }
                if e.is_set { <span class="badge ok" data-testid="badge-set">{ "set" }</span> } else { <span class="badge muted">{ "default" }</span> }
            </div>
            <p class="muted setting-desc">{ e.description.clone() }</p>
            <div class="setting-edit">
                { input }
                if can_edit {
                    <button class="btn btn-primary btn-small" data-testid="setting-save" disabled={!dirty || local.is_some() || *busy} onclick={save}>{ "Save" }</button>
                    if dirty {
                        <button class="btn btn-small" data-testid="setting-revert" disabled={*busy} onclick={revert}>{ "Revert" }</button>
                    }
                    if e.is_set && !dirty {
                        <button class="btn btn-small" data-testid="setting-reset" disabled={*busy} onclick={reset}>{ "Reset to default" }</button>
                    }
                }
                <button class="btn btn-small" data-testid="setting-history-toggle" onclick={toggle_history}>
                    { if history.is_some() { "Hide history" } else { "History" } }
                </button>
            </div>
            if let Some(m) = local.or_else(|| (*server_error).clone()) {
                <div class="field-error" data-testid="setting-error" role="alert">{ m }</div>
            }
            <dl class="facts setting-facts">
                <dt>{ "Default" }</dt><dd class="mono">{ e.default_value.clone() }</dd>
                if !e.bounds.is_empty() { <dt>{ "Bounds" }</dt><dd class="mono">{ e.bounds.clone() }</dd> }
                if !e.overrides.is_empty() {
                    <dt>{ "Overrides" }</dt>
                    <dd>{ for e.overrides.iter().map(|o| html! { <span class="chip">{ format!("{} = {}", o.scope, o.value) }</span> }) }</dd>
                }
            </dl>
            if let Some(h) = &*history {
                if h.is_empty() {
                    <p class="muted small" data-testid="setting-history">{ "Never changed." }</p>
                } else {
                    <table class="table setting-history" data-testid="setting-history">
                        <thead><tr><th>{ "When (UTC)" }</th><th>{ "Who" }</th><th>{ "Scope" }</th><th>{ "Old" }</th><th>{ "New" }</th></tr></thead>
                        <tbody>
                            { for h.iter().map(|c| html! {
                                <tr key={c.version.to_string()}>
                                    <td>{ rfc3339_secs(c.at_unix_ms).unwrap_or_default() }</td>
                                    <td>{ c.actor.clone() }</td>
                                    <td class="mono">{ if c.scope.is_empty() { "global".to_owned() } else { c.scope.clone() } }</td>
                                    <td class="mono">{ if c.had_old { c.old_value.clone() } else { "(default)".to_owned() } }</td>
                                    <td class="mono">{ if c.has_new { c.new_value.clone() } else { "(default)".to_owned() } }</td>
                                </tr>
                            }) }
                        </tbody>
                    </table>
                }
            }
        </div>
    }
}
