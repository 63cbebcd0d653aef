//! Compiles `proto/exile/v1/*.proto` and the Agones SDK interface in `proto/agones/*.proto` with
//! protox (no system protoc) and tonic-prost-build. Without the `proto` feature (xtask's
//! use: only the std helpers) there is nothing to generate.

#[cfg(not(feature = "proto"))]
fn main() {}

#[cfg(feature = "proto")]
fn main() -> Result<(), Box<dyn std::error::Error>> {
    use std::path::PathBuf;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../proto");
    let mut files = Vec::new();
    for dir in [root.join("exile/v1"), root.join("agones")] {
        let mut found: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "proto"))
            .collect();
        found.sort();
        println!("cargo:rerun-if-changed={}", dir.display());
        files.extend(found);
    }
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
    }
    let fds = protox::compile(&files, [&root])?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let server = std::env::var_os("CARGO_FEATURE_SERVER").is_some();
    let transport = std::env::var_os("CARGO_FEATURE_TRANSPORT").is_some();
    // The descriptor set feeds gRPC reflection; compile_fds does not write it, so do it here.
    std::fs::write(
        out.join("exile_descriptor.bin"),
        prost::Message::encode_to_vec(&fds),
    )?;
    tonic_prost_build::configure()
        .build_server(server)
        .build_client(true)
        .build_transport(transport)
        .compile_fds(fds)?;
    Ok(())
}
