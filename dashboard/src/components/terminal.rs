//! Terminal: an instance's console. Enter sends the line (`SendConsoleCommand`); the game
//! answers on its output, so the live log is shown right above the input, and the lines sent
//! from this tab are listed with how each went.

use web_sys::HtmlInputElement;
use yew::prelude::*;

use crate::components::log_viewer::LogViewer;
use crate::context::use_ctx;

/// Props of [`Terminal`].
#[derive(Properties, PartialEq)]
pub struct TerminalProps {
    /// Instance whose console this is.
    pub instance_id: AttrValue,
    /// The game process is live; the input is disabled otherwise.
    pub running: bool,
}

/// How a sent line fared.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pending,
    Delivered,
    Failed(String),
}

/// A line sent from this tab.
#[derive(Clone, Debug, PartialEq)]
struct Sent {
    line: String,
    outcome: Outcome,
}

/// Lines of the sent list kept (older ones are dropped).
const MAX_SENT: usize = 50;

/// The console.
#[component]
pub fn Terminal(p: &TerminalProps) -> Html {
    let ctx = use_ctx();
    let sent = use_mut_ref(Vec::<Sent>::new);
    // Sends that have left since the component was made, so an answer finds its entry even
    // after older entries were dropped from the front.
    let total = use_mut_ref(|| 0usize);
    let redraw = use_force_update();
    let input = use_node_ref();

    let onsubmit = {
        let (sent, total, redraw, input) =
            (sent.clone(), total.clone(), redraw.clone(), input.clone());
        let (api, on_error, id) = (
            ctx.api.clone(),
            ctx.on_error.clone(),
            p.instance_id.to_string(),
        );
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            let Some(el) = input.cast::<HtmlInputElement>() else {
                return;
            };
            let line = el.value();
            if line.trim().is_empty() {
                return;
            }
            el.set_value("");
            let seq = {
                let mut s = sent.borrow_mut();
                s.push(Sent {
                    line: line.clone(),
                    outcome: Outcome::Pending,
                });
                if s.len() > MAX_SENT {
                    s.remove(0);
                }
                let mut t = total.borrow_mut();
                *t += 1;
                *t
            };
            redraw.force_update();
            let (sent, total, redraw, api, on_error, id) = (
                sent.clone(),
                total.clone(),
                redraw.clone(),
                api.clone(),
                on_error.clone(),
                id.clone(),
            );
            wasm_bindgen_futures::spawn_local(async move {
                let outcome = match api.send_console(&id, &line).await {
                    Ok(()) => Outcome::Delivered,
                    Err(e) => {
                        let msg = e.message.clone();
                        on_error.emit(e);
                        Outcome::Failed(msg)
                    }
                };
                let back = *total.borrow() - seq;
                let mut s = sent.borrow_mut();
                let len = s.len();
                if back < len
                    && let Some(entry) = s.get_mut(len - 1 - back)
                {
                    entry.outcome = outcome;
                }
                drop(s);
                redraw.force_update();
            });
        })
    };

    let sent = sent.borrow();
    let last_error = sent.iter().rev().find_map(|s| match &s.outcome {
        Outcome::Failed(m) => Some(m.clone()),
        _ => None,
    });
    html! {
        <div class="terminal" data-testid="terminal">
            <LogViewer instance_id={p.instance_id.clone()} tail_lines={50} compact=true testid="console-log" />
            if !sent.is_empty() {
                <ul class="terminal-sent mono">
                    { for sent.iter().map(|s| {
                        let (class, note) = match &s.outcome {
                            Outcome::Pending => ("pending", "sending…"),
                            Outcome::Delivered => ("ok", "sent"),
                            Outcome::Failed(_) => ("bad", "refused"),
                        };
                        html! {
                            <li data-testid="terminal-sent" class={class}>
                                <span class="prompt">{ "› " }</span>{ s.line.clone() }
                                <span class="terminal-note">{ note }</span>
                            </li>
                        }
                    }) }
                </ul>
            }
            if let Some(m) = last_error {
                <div class="banner banner-bad" data-testid="terminal-error" role="alert">{ m }</div>
            }
            <form class="terminal-input" onsubmit={onsubmit}>
                <span class="prompt mono">{ "›" }</span>
                <input ref={input} class="mono" data-testid="terminal-input" disabled={!p.running}
                    autocomplete="off" spellcheck="false"
                    placeholder={if p.running { "say hello" } else { "not running" }} />
                <button class="btn btn-primary" type="submit" data-testid="terminal-send" disabled={!p.running}>{ "Send" }</button>
            </form>
            if !p.running {
                <div class="muted" data-testid="terminal-disabled">{ "The console takes commands while the instance is running." }</div>
            }
        </div>
    }
}
