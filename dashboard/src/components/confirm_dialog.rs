//! ConfirmDialog: a modal that asks before a destructive action.

use yew::prelude::*;

/// Props of [`ConfirmDialog`].
#[derive(Properties, PartialEq)]
pub struct ConfirmDialogProps {
    /// Heading.
    pub title: AttrValue,
    /// What will happen.
    pub message: AttrValue,
    /// Label of the confirming button ("Stop").
    pub confirm_label: AttrValue,
    /// Confirmed.
    pub on_confirm: Callback<()>,
    /// Dismissed.
    pub on_cancel: Callback<()>,
}

/// The dialog; the backdrop and Cancel both dismiss it.
#[component]
pub fn ConfirmDialog(p: &ConfirmDialogProps) -> Html {
    let cancel = p.on_cancel.reform(|_: MouseEvent| ());
    let confirm = p.on_confirm.reform(|_: MouseEvent| ());
    html! {
        <div class="modal-backdrop" onclick={cancel.clone()}>
            <div class="modal" role="dialog" aria-modal="true" data-testid="confirm-dialog"
                onclick={Callback::from(|e: MouseEvent| e.stop_propagation())}>
                <h2>{ p.title.clone() }</h2>
                <p>{ p.message.clone() }</p>
                <div class="modal-actions">
                    <button class="btn" data-testid="confirm-cancel" onclick={cancel}>{ "Cancel" }</button>
                    <button class="btn btn-danger" data-testid="confirm-ok" onclick={confirm}>{ p.confirm_label.clone() }</button>
                </div>
            </div>
        </div>
    }
}
