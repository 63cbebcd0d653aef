//! End-to-end tests of the real `exilectl` binary against an in-process sandbox
//! (master + 2 spawners + the demo game). Needs `exile-demo-game` built
//! (`cargo build --workspace --bins`).

mod auth;
mod backups;
mod builds;
mod cli;
mod config;
mod console;
mod harness;
mod hostile;
mod instances;
mod rename;
mod spawner_logs;
mod tls;
mod tmux;
mod top;
mod watch;
