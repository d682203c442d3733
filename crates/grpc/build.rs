//! Compiles the gRPC contracts (CSI's Node service subset and volsec's own agent API)
//! with protox, a pure-Rust protobuf compiler, so no system `protoc` is needed.

use std::path::Path;

const PROTOS: &[&str] = &["src/csi/csi.proto", "src/agent/volsec.proto"];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    for proto in PROTOS {
        println!("cargo:rerun-if-changed={proto}");
    }
    let includes: Vec<&str> = PROTOS
        .iter()
        .filter_map(|p| Path::new(p).parent()?.to_str())
        .collect();
    let descriptors = protox::compile(PROTOS, &includes)?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
