//! Exile web dashboard: a Yew app over grpc-web, served by the master from the bundle that
//! `cargo xtask dashboard` writes to `dist/`.

mod api;
mod app;
mod components;
mod pages;
mod state;

#[cfg(target_arch = "wasm32")]
fn main() {
    yew::Renderer::<app::App>::new().render();
}

/// The dashboard only runs in a browser; on the host this crate exists for its unit tests
/// (and so `cargo clippy --workspace` checks it).
#[cfg(not(target_arch = "wasm32"))]
fn main() {
    eprintln!("exile-dashboard runs in a browser: build it with `cargo xtask dashboard`");
}
