//! Exile web dashboard: a Yew app over grpc-web, served by the master from the bundle that
//! `cargo xtask dashboard` writes to `dist/`.

// On the host only the reducer tests run and the app is never mounted, so its pieces look
// unused there; on wasm32 the dead-code lint applies in full.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

mod admin;
mod api;
mod app;
mod builds;
mod chart;
mod components;
mod context;
mod fleets;
mod logs;
mod pages;
mod routes;
mod server;
mod settings;
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
