//! Compiles the `.proto` files with protox (pure Rust), so no system `protoc`
//! is needed, then generates prost messages and tonic services from the
//! resulting descriptor set.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let protos = [
        "proto/spoor/v1/catalog.proto",
        "proto/spoor/v1/cluster.proto",
        "proto/spoor/v1/control.proto",
        "proto/spoor/v1/raft.proto",
    ];
    println!("cargo:rerun-if-changed=proto");
    let descriptors = protox::compile(protos, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
