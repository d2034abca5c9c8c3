//! Compiles the polaroid.v1 `.proto` files with protox (pure Rust: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/polaroid/v1/dataframe.proto",
        "proto/polaroid/v1/expr.proto",
        "proto/polaroid/v1/plan.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        // Maps encode in key order, so equal plans encode to equal bytes (content addressing).
        .btree_map(".")
        .compile_fds(descriptors)?;
    Ok(())
}
