//! UploadPanel: the upload form (drop zone or file input, name, version, optional manifest)
//! and the upload itself. The file is read in slices, never whole: a first pass computes its
//! SHA-256, then the parts go to the master one by one (`BeginUpload`, `UploadPart`,
//! `FinishUpload`: browsers cannot send client streams), resuming at the offset the master
//! reports after a failed part. The rules live in `builds::Upload`; this file reads and calls.

use std::cell::Cell;
use std::ops::Range;
use std::rc::Rc;

use exile_api::v1 as pb;
use wasm_bindgen::JsCast;
use web_sys::{HtmlInputElement, HtmlTextAreaElement};
use yew::prelude::*;

use crate::api::{Api, ApiError};
use crate::builds::{
    ArchiveHasher, Phase, Retry, Upload, UploadErrors, UploadForm, check_upload, classify,
    guess_name_version, upload_summary,
};
use crate::context::{now_ms, use_ctx};
use crate::state::format_bytes;

/// The progress line is redrawn at most this often (a GiB upload has a thousand parts).
const REDRAW_MS: f64 = 150.0;

/// The upload card.
#[component]
pub fn UploadPanel() -> Html {
    let ctx = use_ctx();
    let file = use_state(|| None::<web_sys::File>);
    let name = use_state(String::new);
    let version = use_state(String::new);
    let errors = use_state(UploadErrors::default);
    let upload = use_state(|| None::<Upload>);
    let dragging = use_state(|| false);
    let manifest_ref = use_node_ref();
    let input_ref = use_node_ref();
    let cancel_flag = use_mut_ref(|| Rc::new(Cell::new(false)));
    // Leaving the page stops an upload in flight (the master drops it after 10 idle minutes).
    {
        let cancel_flag = cancel_flag.clone();
        use_effect_with((), move |_| move || cancel_flag.borrow().set(true));
    }
    let active = upload.as_ref().is_some_and(Upload::active);

    let pick = {
        let (file, name, version, errors, upload) = (
            file.clone(),
            name.clone(),
            version.clone(),
            errors.clone(),
            upload.clone(),
        );
        Callback::from(move |f: web_sys::File| {
            let (n, v) = guess_name_version(&f.name());
            if name.is_empty() {
                name.set(n);
            }
            if version.is_empty() {
                version.set(v);
            }
            errors.set(UploadErrors {
                file: None,
                ..(*errors).clone()
            });
            upload.set(None);
            file.set(Some(f));
        })
    };
    let on_file = {
        let pick = pick.clone();
        Callback::from(move |e: Event| {
            let input: HtmlInputElement = e.target_unchecked_into();
            if let Some(f) = input.files().and_then(|l| l.get(0)) {
                pick.emit(f);
            }
        })
    };
    let on_drag_over = {
        let dragging = dragging.clone();
        Callback::from(move |e: DragEvent| {
            // Without this the browser would open the file instead of dropping it here.
            e.prevent_default();
            dragging.set(true);
        })
    };
    let on_drag_leave = {
        let dragging = dragging.clone();
        Callback::from(move |_: DragEvent| dragging.set(false))
    };
    let on_drop = {
        let (dragging, pick) = (dragging.clone(), pick.clone());
        Callback::from(move |e: DragEvent| {
            e.prevent_default();
            dragging.set(false);
            if active {
                return;
            }
            if let Some(f) = e
                .data_transfer()
                .and_then(|d| d.files())
                .and_then(|l| l.get(0))
            {
                pick.emit(f);
            }
        })
    };
    let text_input = |s: &UseStateHandle<String>| {
        let s = s.clone();
        Callback::from(move |e: InputEvent| {
            s.set(e.target_unchecked_into::<HtmlInputElement>().value())
        })
    };

    let submit = {
        let (file, name, version, errors, upload) = (
            file.clone(),
            name.clone(),
            version.clone(),
            errors.clone(),
            upload.clone(),
        );
        let (manifest_ref, input_ref) = (manifest_ref.clone(), input_ref.clone());
        let cancel_flag = cancel_flag.clone();
        let (api, on_error) = (ctx.api.clone(), ctx.on_error.clone());
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let manifest = manifest_ref
                .cast::<HtmlTextAreaElement>()
                .map(|t| t.value())
                .unwrap_or_default();
            let form = UploadForm {
                name: name.trim().to_owned(),
                version: version.trim().to_owned(),
                manifest,
                file_size: file.as_ref().map(|f| f.size() as u64),
            };
            let problems = check_upload(&form);
            let ok = problems.is_empty();
            errors.set(problems);
            let Some(f) = file.as_ref().filter(|_| ok).cloned() else {
                return;
            };
            let flag = Rc::new(Cell::new(false));
            *cancel_flag.borrow_mut() = flag.clone();
            let meta = pb::UploadBuildMetadata {
                name: form.name,
                version: form.version,
                sha256: String::new(),
                size: f.size() as u64,
                file_name: f.name(),
                manifest: form.manifest,
            };
            let publish = {
                let upload = upload.clone();
                let (file, version, input_ref) = (file.clone(), version.clone(), input_ref.clone());
                Callback::from(move |u: Upload| {
                    if matches!(u.phase, Phase::Done(_)) {
                        // Ready for the next version of the same name, even from the same file.
                        file.set(None);
                        version.set(String::new());
                        if let Some(i) = input_ref.cast::<HtmlInputElement>() {
                            i.set_value("");
                        }
                    }
                    upload.set(Some(u));
                })
            };
            wasm_bindgen_futures::spawn_local(drive(
                api.clone(),
                f,
                meta,
                flag,
                publish,
                on_error.clone(),
            ));
        })
    };
    let cancel = {
        let cancel_flag = cancel_flag.clone();
        Callback::from(move |_: MouseEvent| cancel_flag.borrow().set(true))
    };

    let field_error = |e: &Option<String>, testid: &str| {
        e.as_ref().map(|m| {
            html! { <div class="field-error" data-testid={testid.to_owned()} role="alert">{ m.clone() }</div> }
        })
    };
    let progress = upload.as_ref().map(|u| {
        let phase = match &u.phase {
            Phase::Hashing => "hashing",
            Phase::Beginning | Phase::Sending => "sending",
            Phase::Finishing => "finishing",
            Phase::Done(_) => "done",
            Phase::Failed(_) => "failed",
            Phase::Cancelled => "cancelled",
        };
        let tone = match &u.phase {
            Phase::Done(_) => "ok",
            Phase::Failed(_) => "bad",
            Phase::Cancelled => "idle",
            _ => "",
        };
        let pct = u.percent();
        html! {
            <div class={classes!("upload-progress", tone)} data-testid="upload-progress" data-phase={phase}>
                if u.active() {
                    <div class="progress" title={format!("{pct:.0}%")}>
                        <span class={classes!("progress-fill", (u.phase == Phase::Hashing).then_some("hash"))}
                            style={format!("width: {pct:.1}%")}></span>
                    </div>
                }
                <div class="upload-status">
                    <span data-testid="upload-status" role={if u.active() { "status" } else { "alert" }}>{ u.status() }</span>
                    if u.active() {
                        <button type="button" class="btn btn-small" data-testid="upload-cancel" onclick={cancel.clone()}>{ "Cancel" }</button>
                    }
                </div>
                if let Some(r) = &u.retrying {
                    <div class="muted" data-testid="upload-retrying">{ format!("Retrying ({}): {r}", u.retries) }</div>
                }
            </div>
        }
    });
    let chosen = file.as_ref().map(|f| {
        html! {
            <div class="drop-file" data-testid="upload-file-chosen">
                <span class="strong">{ f.name() }</span>
                <span class="muted">{ format!(" · {}", format_bytes(f.size() as u64)) }</span>
            </div>
        }
    });

    html! {
        <form class="card upload" data-testid="build-upload" onsubmit={submit}>
            <h3>{ "Upload a build" }</h3>
            <div class={classes!("drop-zone", dragging.then_some("dragging"), errors.file.is_some().then_some("invalid"))}
                data-testid="upload-drop" ondragenter={on_drag_over.clone()} ondragover={on_drag_over}
                ondragleave={on_drag_leave} ondrop={on_drop}>
                { for chosen }
                <div class="muted">{ "Drop a .zip, .tar.gz, .tar.zst or .tar here, or choose one:" }</div>
                <input ref={input_ref} class="file-input" type="file" data-testid="upload-file" disabled={active}
                    accept=".zip,.tar.gz,.tgz,.tar.zst,.tzst,.tar,application/zip,application/gzip,application/x-tar"
                    onchange={on_file} />
            </div>
            { for field_error(&errors.file, "upload-file-error") }
            <div class="upload-fields">
                <label>
                    { "Name" }
                    <input value={(*name).clone()} oninput={text_input(&name)} placeholder="openarena"
                        data-testid="upload-name" disabled={active} autocomplete="off" />
                    { for field_error(&errors.name, "upload-name-error") }
                </label>
                <label>
                    { "Version" }
                    <input value={(*version).clone()} oninput={text_input(&version)} placeholder="0.8.9"
                        data-testid="upload-version" disabled={active} autocomplete="off" />
                    { for field_error(&errors.version, "upload-version-error") }
                </label>
            </div>
            <details class="manifest" open={errors.manifest.is_some()}>
                <summary>{ "Manifest (optional: replaces an exile-build.toml inside the archive)" }</summary>
                <textarea ref={manifest_ref} rows="6" class="mono" data-testid="upload-manifest" disabled={active}
                    placeholder={"[run]\ncommand = \"./server --port {port}\""} />
                { for field_error(&errors.manifest, "upload-manifest-error") }
            </details>
            <div class="upload-actions">
                <button type="submit" class="btn btn-primary" data-testid="upload-submit" disabled={active}>{ "Upload" }</button>
            </div>
            { for progress }
        </form>
    }
}

/// Reads bytes `r` of the file (one slice, so memory stays flat however large the file).
async fn read(file: &web_sys::File, r: Range<u64>) -> Result<Vec<u8>, String> {
    let why = |e: wasm_bindgen::JsValue| {
        let detail = e
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| e.as_string())
            .unwrap_or_else(|| "the browser could not read it".into());
        format!("could not read {}: {detail}", file.name())
    };
    let blob = file
        .slice_with_f64_and_f64(r.start as f64, r.end as f64)
        .map_err(why)?;
    let buf = wasm_bindgen_futures::JsFuture::from(blob.array_buffer())
        .await
        .map_err(why)?;
    let data = js_sys::Uint8Array::new(&buf).to_vec();
    if data.len() as u64 != r.end - r.start {
        return Err(format!(
            "{} changed while it was being read; choose it again",
            file.name()
        ));
    }
    Ok(data)
}

/// Runs one upload to its end, publishing its progress; `cancel` stops it between calls.
async fn drive(
    api: Api,
    file: web_sys::File,
    mut meta: pb::UploadBuildMetadata,
    cancel: Rc<Cell<bool>>,
    publish: Callback<Upload>,
    on_error: Callback<ApiError>,
) {
    let mut u = Upload::new(&file.name(), meta.size);
    publish.emit(u.clone());
    let mut drawn = now_ms() as f64;
    let mut redraw = |u: &Upload, force: bool| {
        let now = now_ms() as f64;
        if force || now - drawn >= REDRAW_MS {
            drawn = now;
            publish.emit(u.clone());
        }
    };

    let mut hasher = ArchiveHasher::default();
    while let Some(r) = u.next_hash_slice() {
        if cancel.get() {
            u.cancel();
            break;
        }
        match read(&file, r).await {
            Ok(data) => {
                hasher.update(&data);
                u.hashed_bytes(data.len() as u64);
            }
            Err(m) => u.fail(m),
        }
        redraw(&u, !u.active());
    }
    meta.sha256 = hasher.finish();

    let mut upload_id = String::new();
    while u.active() {
        if cancel.get() {
            u.cancel();
            break;
        }
        let before = u.phase.clone();
        let result: Result<(), ApiError> = match u.phase {
            Phase::Beginning => api.begin_upload(meta.clone()).await.map(|id| {
                upload_id = id;
                u.begun();
            }),
            Phase::Sending => match u.next_part() {
                Some(r) => match read(&file, r.clone()).await {
                    Ok(data) => api
                        .upload_part(&upload_id, r.start, data)
                        .await
                        .map(|received| u.part_sent(r.start, received)),
                    Err(m) => {
                        u.fail(m);
                        Ok(())
                    }
                },
                None => {
                    u.fail("the file has no bytes to send".into());
                    Ok(())
                }
            },
            Phase::Finishing => api
                .finish_upload(&upload_id)
                .await
                .map(|resp| u.done(upload_summary(&resp))),
            _ => Ok(()),
        };
        if let Err(e) = result {
            if cancel.get() {
                continue;
            }
            if e.unauthenticated {
                on_error.emit(e.clone());
            }
            if let Retry::After(ms) = u.failed(classify(e.code, &e.message)) {
                redraw(&u, true);
                if ms > 0 {
                    gloo_timers::future::TimeoutFuture::new(ms).await;
                }
            }
        }
        redraw(&u, u.phase != before);
    }
    publish.emit(u);
}
