//! Compiles `proto/fedrisk/v1/fedrisk.proto` at build time.
//!
//! A fresh machine has no system `protoc`, so the statically linked one shipped by
//! `protoc-bin-vendored` is used unless `$PROTOC` names another. The path is handed to
//! the prost `Config` instead of exporting `PROTOC`, because `std::env::set_var` is
//! `unsafe` in edition 2024 (and racy in a build script's threads).

use std::error::Error;

const PROTO: &str = "proto/fedrisk/v1/fedrisk.proto";

fn main() -> Result<(), Box<dyn Error>> {
    println!("cargo:rerun-if-changed={PROTO}");
    println!("cargo:rerun-if-env-changed=PROTOC");

    let mut config = tonic_prost_build::Config::new();
    match std::env::var_os("PROTOC") {
        Some(protoc) => config.protoc_executable(protoc),
        None => config.protoc_executable(protoc_bin_vendored::protoc_bin_path()?),
    };
    // A session's certificates are queued to every stream, its task bytes and broadcast
    // secagg messages to every invited agent, and a lineage record is served to every agent:
    // as `Bytes`, every queue and reply shares one buffer instead of holding a copy.
    tonic_prost_build::configure()
        .bytes(".fedrisk.v1.PeerIdentity.certificate_der")
        .bytes(".fedrisk.v1.SecAggDelivery.payload")
        .bytes(".fedrisk.v1.Content.content")
        // Uploads wait in the session's inbox until the engine takes them: as `Bytes` they
        // stay slices of the request's buffer instead of a copy of it.
        .bytes(".fedrisk.v1.SecAggUpload.payload")
        .bytes(".fedrisk.v1.ComputeTask.task")
        .bytes(".fedrisk.v1.SecAggParams.crl")
        .codec_path("crate::SmallBufferCodec")
        .build_client(true)
        .build_server(true)
        .compile_with_config(config, &[PROTO], &["proto"])?;
    Ok(())
}
