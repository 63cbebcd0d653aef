//! One component per route.

pub mod builds;
pub mod instance;
pub mod login;
pub mod not_found;
pub mod overview;
pub mod spawner;
pub mod spawners;
