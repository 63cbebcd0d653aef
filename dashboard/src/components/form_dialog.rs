//! FormDialog: a modal holding a small form (fields as children) with Cancel and a confirming
//! button; Enter submits, the backdrop and Cancel dismiss it.

use yew::prelude::*;

/// Props of [`FormDialog`].
#[derive(Properties, PartialEq)]
pub struct FormDialogProps {
    /// Heading.
    pub title: AttrValue,
    /// Test hook of the dialog; its buttons are `<testid>-ok` and `<testid>-cancel`.
    pub testid: AttrValue,
    /// Label of the confirming button ("Activate").
    pub confirm_label: AttrValue,
    /// What is wrong with the fields, shown above the buttons.
    #[prop_or_default]
    pub error: Option<AttrValue>,
    /// Submitted.
    pub on_confirm: Callback<()>,
    /// Dismissed.
    pub on_cancel: Callback<()>,
    /// The fields.
    pub children: Html,
}

/// The dialog.
#[component]
pub fn FormDialog(p: &FormDialogProps) -> Html {
    let cancel = p.on_cancel.reform(|_: MouseEvent| ());
    let submit = {
        let ok = p.on_confirm.clone();
        Callback::from(move |e: SubmitEvent| {
            e.prevent_default();
            ok.emit(());
        })
    };
    html! {
        <div class="modal-backdrop" onclick={cancel.clone()}>
            <form class="modal form-dialog" role="dialog" aria-modal="true" data-testid={p.testid.clone()}
                onclick={Callback::from(|e: MouseEvent| e.stop_propagation())} onsubmit={submit}>
                <h2>{ p.title.clone() }</h2>
                { p.children.clone() }
                if let Some(e) = &p.error {
                    <div class="banner banner-bad" data-testid={format!("{}-error", p.testid)} role="alert">{ e.clone() }</div>
                }
                <div class="modal-actions">
                    <button type="button" class="btn" data-testid={format!("{}-cancel", p.testid)} onclick={cancel}>{ "Cancel" }</button>
                    <button type="submit" class="btn btn-primary" data-testid={format!("{}-ok", p.testid)}>{ p.confirm_label.clone() }</button>
                </div>
            </form>
        </div>
    }
}
