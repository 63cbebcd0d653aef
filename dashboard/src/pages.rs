//! One component per route.

pub mod audit;
pub mod builds;
pub mod config;
pub mod fleet;
pub mod fleets;
pub mod instance;
pub mod login;
pub mod not_found;
pub mod overview;
pub mod performance;
pub mod server;
pub mod spawner;
pub mod spawners;
pub mod users;
