//! Generated Exile v1 protocol types, clients and (with the `server` feature) servers.

/// Everything generated from `proto/exile/v1`.
#[cfg(feature = "proto")]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod v1 {
    tonic::include_proto!("exile.v1");
}

/// The Agones game-server SDK interface (`proto/agones`), which the spawner serves to the
/// instances of builds written against an Agones client SDK.
#[cfg(feature = "proto")]
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod agones {
    tonic::include_proto!("agones.dev.sdk");

    /// Agones' player tracking (`agones.dev.sdk.alpha`).
    pub mod alpha {
        tonic::include_proto!("agones.dev.sdk.alpha");
    }

    /// Agones' counters and lists (`agones.dev.sdk.beta`).
    pub mod beta {
        tonic::include_proto!("agones.dev.sdk.beta");
    }
}

#[cfg(feature = "proto")]
pub mod build;
#[cfg(not(target_arch = "wasm32"))]
pub mod cargo_env;
#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "proto")]
pub mod counts;
#[cfg(feature = "proto")]
pub mod fleet;
#[cfg(feature = "proto")]
pub mod format;
#[cfg(not(target_arch = "wasm32"))]
pub mod fs;
#[cfg(feature = "proto")]
pub mod limits;
pub mod secret;
#[cfg(feature = "server")]
pub mod serve;
#[cfg(feature = "proto")]
pub mod settings;
#[cfg(feature = "proto")]
pub mod state;
#[cfg(feature = "transport")]
pub mod tls;

/// Encoded `FileDescriptorSet` of the whole API, for gRPC reflection.
#[cfg(feature = "proto")]
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("exile_descriptor");

/// Unix time in milliseconds, the time unit used across the API.
pub fn now_unix_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
