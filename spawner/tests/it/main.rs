//! Integration tests of the spawner: the instance manager against real processes (the demo
//! game and small shell scripts), persistence and re-adoption, the link against a fake
//! master, and uploaded builds fetched from it.

// Helpers outside #[test] fns are test code too; clippy.toml's test allowance misses them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod backups;
mod build_run;
mod builds;
mod instances;
mod link;
mod logs;
mod persistence;
mod restart;
mod sdk;
mod sdk_http;
mod support;
