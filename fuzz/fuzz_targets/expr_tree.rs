//! Expression trees generated whole (`polaroid_fuzz::tree`): every node kind, function
//! name, column and type name is one a client can send, so the fuzzer spends its time in
//! the translation and in Polars rather than in finding valid protobuf. The tree is built
//! as it is, not through the decoder: its depth is bounded by the engine, not by prost.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polaroid_fuzz::tree::Request;
use polaroid_worker::fuzzing;

fuzz_target!(init: polaroid_fuzz::init(), |request: Request| {
    polaroid_fuzz::run(|| {
        let (context, expr) = request.into_parts();
        let _ = polaroid_fuzz::on_runtime_stack(|| fuzzing::step(fuzzing::expression_step(context, expr)));
    });
});
