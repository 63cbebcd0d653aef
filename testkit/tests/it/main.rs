//! System tests: a real master, real spawners and real demo-game processes on loopback.

// Helpers outside #[test] functions unwrap too: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used)]

mod access;
mod agones;
mod allocation;
mod builds;
mod chaos;
mod fleets;
mod interfaces;
mod isolation;
mod lifecycle;
mod metrics;
mod resilience;
mod revocation;
mod rollouts;
mod security;
mod server;
mod settings;
mod spawner_logs;
mod supervision;
mod support;
mod tls;
mod validation;
