//! LogViewer: follows one instance's output (`StreamLogs`) into a capped view that keeps to the
//! bottom unless the user scrolled up. The stream lives exactly as long as the viewer: it is
//! aborted when the viewer goes away and reopened with backoff if it ends while shown.

use std::cell::RefCell;
use std::rc::Rc;

use futures::future::abortable;
use yew::prelude::*;

use crate::api::{Api, ApiError};
use crate::context::use_ctx;
use crate::logs::{DEFAULT_MAX_LINES, LogBuffer};
use crate::state::{backoff_ms, format_bytes};

/// Props of [`LogViewer`].
#[derive(Properties, PartialEq)]
pub struct LogViewerProps {
    /// Instance whose output is shown.
    pub instance_id: AttrValue,
    /// Lines of history to show first.
    #[prop_or(200)]
    pub tail_lines: u32,
    /// A shorter view (under the console input).
    #[prop_or_default]
    pub compact: bool,
    /// Test id of the text area.
    #[prop_or(AttrValue::Static("log-view"))]
    pub testid: AttrValue,
}

/// Where the stream stands, for the status chip.
#[derive(Clone, Debug, PartialEq)]
enum Link {
    Connecting,
    Live,
    /// The stream ended or failed; the next attempt is scheduled (with the reason, if any).
    Retrying(Option<String>),
    /// The user's role may not read logs; no retry (the master's sentence says why).
    Denied(String),
}

/// Distance from the bottom (px) that still counts as "at the bottom".
const STICK_SLACK: i32 = 8;

/// The log view.
#[component]
pub fn LogViewer(p: &LogViewerProps) -> Html {
    let ctx = use_ctx();
    let buf = use_mut_ref(|| LogBuffer::new(DEFAULT_MAX_LINES));
    let redraw = use_force_update();
    let link = use_state_eq(|| Link::Connecting);
    let stick = use_state_eq(|| true);
    let view = use_node_ref();

    {
        let (buf, redraw, link) = (buf.clone(), redraw.clone(), link.clone());
        let (api, on_error) = (ctx.api.clone(), ctx.on_error.clone());
        use_effect_with(
            (p.instance_id.clone(), p.tail_lines, api),
            move |(id, tail, api)| {
                buf.borrow_mut().clear();
                link.set(Link::Connecting);
                let (task, handle) = abortable(follow(
                    api.clone(),
                    id.to_string(),
                    *tail,
                    buf,
                    Callback::from(move |l: Link| {
                        link.set(l);
                        redraw.force_update();
                    }),
                    on_error,
                ));
                wasm_bindgen_futures::spawn_local(async move {
                    let _ = task.await;
                });
                // Aborting drops the stream, which aborts the fetch under it.
                move || handle.abort()
            },
        );
    }
    // Keep to the newest line after every render, unless the user scrolled up.
    {
        let (view, stick) = (view.clone(), *stick);
        use_effect(move || {
            if stick && let Some(el) = view.cast::<web_sys::Element>() {
                el.set_scroll_top(el.scroll_height());
            }
        });
    }
    let onscroll = {
        let (view, stick) = (view.clone(), stick.clone());
        Callback::from(move |_: Event| {
            if let Some(el) = view.cast::<web_sys::Element>() {
                stick.set(el.scroll_top() + el.client_height() + STICK_SLACK >= el.scroll_height());
            }
        })
    };
    let to_bottom = {
        let stick = stick.clone();
        Callback::from(move |_: MouseEvent| stick.set(true))
    };

    let b = buf.borrow();
    let (chip, tone) = match &*link {
        Link::Connecting => ("Connecting…".to_owned(), "warn"),
        Link::Live => ("Following".to_owned(), "ok"),
        Link::Retrying(None) => ("Reconnecting…".to_owned(), "warn"),
        Link::Retrying(Some(why)) => (format!("Reconnecting… ({why})"), "bad"),
        Link::Denied(_) => ("Not allowed".to_owned(), "bad"),
    };
    html! {
        <div class={classes!("log-viewer", p.compact.then_some("compact"))}>
            <div class="log-head">
                <span class={classes!("badge", tone)} data-testid="log-status">{ chip }</span>
                if b.dropped_lines() > 0 {
                    <span class="muted">{ format!("showing the last {} lines", b.len()) }</span>
                }
                if !*stick {
                    <button class="btn btn-small" data-testid="log-follow" onclick={to_bottom}>{ "↓ Follow" }</button>
                }
            </div>
            if let Link::Denied(why) = &*link {
                <div class="banner banner-bad" data-testid="log-denied" role="alert">{ why.clone() }</div>
            }
            if b.skipped_bytes() > 0 {
                <div class="banner banner-warn" data-testid="log-skipped" role="status">
                    { format!("{} of output could not be shown (the log rotated or the viewer fell behind).",
                        format_bytes(b.skipped_bytes())) }
                </div>
            }
            <pre ref={view} class="log-view mono" data-testid={p.testid.clone()} onscroll={onscroll}>
                if b.is_empty() {
                    <span class="muted">{ if matches!(*link, Link::Denied(_)) { "No output to show." } else { "Waiting for output…" } }</span>
                } else {
                    { b.text() }
                }
            </pre>
        </div>
    }
}

/// Opens the stream and feeds the buffer until aborted, reopening it with backoff when it
/// ends (unless the session or the role is refused: retrying would not change that). Reopened streams ask for no tail: the lines before the break are already shown.
async fn follow(
    api: Api,
    id: String,
    tail_lines: u32,
    buf: Rc<RefCell<LogBuffer>>,
    set_link: Callback<Link>,
    on_error: Callback<ApiError>,
) {
    let mut attempt = 0u32;
    let mut opened = false;
    loop {
        let tail = if opened { 0 } else { tail_lines };
        let why = match api.stream_logs(&id, tail).await {
            Ok(mut stream) => {
                if opened {
                    buf.borrow_mut().note(
                        "— log stream reconnected; output written meanwhile may be missing —",
                    );
                }
                opened = true;
                set_link.emit(Link::Live);
                loop {
                    match stream.message().await {
                        Ok(Some(chunk)) => {
                            attempt = 0;
                            buf.borrow_mut().push(&chunk.data, chunk.skipped_bytes);
                            set_link.emit(Link::Live);
                        }
                        Ok(None) => break None,
                        Err(s) => break Some(ApiError::from(s)),
                    }
                }
            }
            Err(e) => Some(e),
        };
        if let Some(e) = &why {
            if e.unauthenticated {
                on_error.emit(e.clone());
                return;
            }
            if e.denied {
                set_link.emit(Link::Denied(e.message.clone()));
                return;
            }
        }
        set_link.emit(Link::Retrying(why.map(|e| e.message)));
        gloo_timers::future::TimeoutFuture::new(backoff_ms(attempt)).await;
        attempt = attempt.saturating_add(1);
    }
}
