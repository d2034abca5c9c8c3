//! Compiles the established contract (`crates/proto/contract/seed.proto`, written from
//! shared/SEED-CONTRACT.md) into a client of its own, as a client built from that contract
//! has it: `polaroid_tests::seed`, for the tests that talk the established client's
//! language (tests/contract.rs). Pure Rust (protox), as crates/proto/build.rs: no `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = "../crates/proto/contract";
    println!("cargo:rerun-if-changed={dir}/seed.proto");
    let descriptors = protox::compile(["seed.proto"], [dir])?;
    tonic_prost_build::configure()
        .build_server(false)
        .compile_fds(descriptors)?;
    Ok(())
}
