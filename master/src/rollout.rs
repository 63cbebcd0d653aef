//! Rollouts: replacing the running instances of a build by another version of it.

pub mod plan;
