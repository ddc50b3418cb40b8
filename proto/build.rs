//! Compiles the .proto files with protox (pure Rust), so no system protoc is needed.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/orc/machine/v1/machine.proto",
        "proto/orc/container/v1/container.proto",
        "proto/orc/shim/v1/shim.proto",
        "proto/orc/raft/v1/raft.proto",
        "proto/orc/cluster/v1/cluster.proto",
        "proto/orc/dispatcher/v1/dispatcher.proto",
    ];
    for f in files {
        println!("cargo:rerun-if-changed={f}");
    }
    let fds = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure().build_client(true).build_server(true).compile_fds(fds)?;
    Ok(())
}
