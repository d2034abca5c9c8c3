//! Compiles the polaroid.v1 `.proto` files with protox (pure Rust: no system `protoc`).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/polaroid/v1/dataframe.proto",
        "proto/polaroid/v1/expr.proto",
        "proto/polaroid/v1/plan.proto",
        "proto/polaroid/v1/cluster.proto",
        "proto/polaroid/v1/jobs.proto",
        "proto/arrow/flight/protocol/flight.proto",
        "proto/externalscaler/externalscaler.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    // Served by gRPC reflection on every process.
    let out_dir = std::path::PathBuf::from(std::env::var("OUT_DIR")?);
    std::fs::write(
        out_dir.join("polaroid_descriptor.bin"),
        prost::Message::encode_to_vec(&descriptors),
    )?;
    tonic_prost_build::configure()
        // Maps encode in key order, so equal plans encode to equal bytes (content addressing).
        .btree_map(".")
        // Written by hand: its Arrow payload is aligned within the message.
        .extern_path(".polaroid.v1.ArrowBatch", "crate::arrow_batch::ArrowBatch")
        // Written by hand: it also reads (and writes back unchanged) the shape stored plans
        // have from before the established contract's.
        .extern_path(".polaroid.v1.WindowExpr", "crate::window_expr::WindowExpr")
        // Uploaded Arrow payloads move from the wire to Arrow without a copy.
        .bytes(".polaroid.v1.CreateFromArrowRequest.arrow_ipc")
        .bytes(".polaroid.v1.UploadArrowChunk.data")
        // Flight's Arrow messages, tickets and schemas move between Arrow and the wire
        // without a copy.
        .bytes(".arrow.flight.protocol")
        .codec_path("crate::codec::PresizedProstCodec")
        .compile_fds(descriptors)?;
    Ok(())
}
