//! BuildTable: every uploaded build with its hash, size, contents, uploader, where it is
//! active and who uses it, newest first or grouped by name; an actions dropdown per build for
//! those allowed to act.

use std::collections::BTreeMap;

use yew::prelude::*;

use crate::builds::{
    BuildGroup, Usage, active_where, build_ref, contents_summary, format_age, short_sha,
};
use crate::components::dropdown::{Dropdown, DropdownItem};
use crate::state::format_bytes;

/// An action offered on a build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BuildAction {
    /// Make it the active version for some spawners.
    Activate,
    /// Replace running instances of its name with it.
    Rollout,
    /// Delete it.
    Delete,
}

/// Props of [`BuildTable`].
#[derive(Properties, PartialEq)]
pub struct BuildTableProps {
    /// Builds in display order (one unnamed group when not grouped by name).
    pub groups: Vec<BuildGroup>,
    /// Who uses each build, by build id.
    pub usage: BTreeMap<String, Usage>,
    /// Browser clock, for upload ages.
    pub now_ms: i64,
    /// Offer activate and rollout.
    pub can_operate: bool,
    /// Offer delete.
    pub can_delete: bool,
    /// `name@version` of a build whose action is in flight.
    #[prop_or_default]
    pub busy: Option<AttrValue>,
    /// An action was chosen for a build (`name@version`).
    pub on_action: Callback<(BuildAction, String)>,
}

/// The table (scrolls sideways on phones).
#[component]
pub fn BuildTable(p: &BuildTableProps) -> Html {
    if p.groups.is_empty() {
        return html! {
            <div class="card empty" data-testid="builds-empty">
                <h2>{ "No builds yet" }</h2>
                { "Upload a game-server archive (.zip or .tar.gz) to run it on the spawners." }
            </div>
        };
    }
    let acts = p.can_operate || p.can_delete;
    let columns = if acts { 8 } else { 7 };
    let rows = p.groups.iter().map(|g| {
        let head = (!g.name.is_empty()).then(|| {
            let n = g.builds.len();
            html! {
                <tr class="group-row" data-testid="build-group" data-name={g.name.clone()}>
                    <td colspan={columns.to_string()}>
                        <span class="strong">{ g.name.clone() }</span>
                        <span class="muted">{ format!(" · {n} {}", if n == 1 { "version" } else { "versions" }) }</span>
                    </td>
                </tr>
            }
        });
        let builds = g.builds.iter().map(|b| {
            let reference = build_ref(b);
            let u = p.usage.get(&b.id).cloned().unwrap_or_default();
            let active = active_where(b);
            let busy = p.busy.as_deref() == Some(reference.as_str());
            let mut items = Vec::new();
            let mut item = |a: BuildAction, label: &str, testid: &str, danger: bool| {
                let cb = p.on_action.clone();
                let r = reference.clone();
                items.push(DropdownItem {
                    label: label.to_owned().into(),
                    testid: testid.to_owned().into(),
                    danger,
                    on_select: Callback::from(move |_| cb.emit((a, r.clone()))),
                });
            };
            if p.can_operate {
                item(BuildAction::Activate, "Activate…", "action-activate", false);
                item(BuildAction::Rollout, "Start rollout…", "action-rollout", false);
            }
            if p.can_delete {
                item(BuildAction::Delete, "Delete", "action-delete", true);
            }
            let spawners_title = if u.spawners.is_empty() {
                "No spawner holds it".to_owned()
            } else {
                format!("Held by {}", u.spawners.join(", "))
            };
            html! {
                <tr data-testid="build-row" data-build={reference.clone()} data-build-id={b.id.clone()}
                    data-sha256={b.sha256.clone()}>
                    <td title={build_title(b)}>
                        <span class="strong" data-testid="build-name">{ b.name.clone() }</span>
                        <span class="muted">{ "@" }</span>
                        <span class="strong" data-testid="build-version">{ b.version.clone() }</span>
                        if busy { <span class="spinner" data-testid="build-busy"></span> }
                    </td>
                    <td><span class="mono" data-testid="build-sha" title={b.sha256.clone()}>{ format!("{}…", short_sha(&b.sha256)) }</span></td>
                    <td>
                        <div data-testid="build-size">{ format_bytes(b.size) }</div>
                        <div class="muted small" title="Files in the archive and the bytes they unpack to">{ contents_summary(b) }</div>
                    </td>
                    <td class="hide-sm">
                        <div>{ b.created_by.clone() }</div>
                        <div class="muted" title={iso_time(b.created_at_unix_ms)}>{ format_age(p.now_ms, b.created_at_unix_ms) }</div>
                    </td>
                    <td data-testid="build-active">
                        if active.is_empty() {
                            <span class="muted">{ "—" }</span>
                        } else {
                            { for active.into_iter().map(|a| html! { <span class="chip">{ a }</span> }) }
                        }
                    </td>
                    <td data-testid="build-instances" title={format!("{} instances, {} running", u.instances, u.running)}>
                        { format!("{}/{}", u.running, u.instances) }
                    </td>
                    <td data-testid="build-spawners" title={spawners_title}>{ u.spawners.len() }</td>
                    if acts {
                        <td class="actions">
                            <Dropdown label="Actions" testid="build-actions" items={items} disabled={busy} />
                        </td>
                    }
                </tr>
            }
        });
        html! { <>{ for head }{ for builds }</> }
    });
    html! {
        <div class="table-wrap card">
            <table class="table" data-testid="build-table">
                <thead><tr>
                    <th>{ "Build" }</th><th>{ "SHA-256" }</th><th>{ "Size" }</th>
                    <th class="hide-sm">{ "Uploaded" }</th><th>{ "Active on" }</th>
                    <th title="Running / all instances of this version">{ "Instances" }</th>
                    <th title="Spawners holding it on disk">{ "Spawners" }</th>
                    if acts { <th></th> }
                </tr></thead>
                <tbody>{ for rows }</tbody>
            </table>
        </div>
    }
}

/// Tooltip of a build's name: its id and, when its manifest has one, its start command.
fn build_title(b: &exile_api::v1::Build) -> String {
    if b.command.is_empty() {
        b.id.clone()
    } else {
        format!("{}\nstarts: {}", b.id, b.command)
    }
}

/// A Unix-millisecond time as the browser's local date and time.
fn iso_time(ms: i64) -> String {
    js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64))
        .to_locale_string("default", &wasm_bindgen::JsValue::UNDEFINED)
        .into()
}
