//! Generates the event stream's protobuf types from `proto/` (issue 6).
//!
//! protox parses the `.proto` files in pure Rust, so building needs no
//! `protoc` download; prost-build turns the descriptors into Rust code in
//! `OUT_DIR`. The descriptor set is written there too
//! (`events_descriptor.bin`), for tests that decode by reflection.

use std::path::PathBuf;

const PROTOS: [&str; 2] = [
    "proto/eventssidecar/v1/events.proto",
    "proto/shardmq/events/v1/native.proto",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let mut compiler = protox::Compiler::new(["proto"])?;
    compiler.include_source_info(true).include_imports(true);
    compiler.open_files(PROTOS)?;
    std::fs::write(
        out.join("events_descriptor.bin"),
        compiler.encode_file_descriptor_set(),
    )?;
    let fds = compiler.file_descriptor_set();
    prost_build::Config::new()
        // Payloads stay `Bytes`: converting an event shares the broker's
        // buffer instead of copying it.
        .bytes(["."])
        // Sorted maps encode deterministically (same event, same bytes).
        .btree_map(["."])
        .compile_fds(fds)?;
    Ok(())
}
