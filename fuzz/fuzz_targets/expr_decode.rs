//! A `polaroid.v1.Expression` (after one byte that picks the request it rides in: select,
//! filter, with_columns, an aggregation, a sort key, with_column), decoded and built into a
//! Polars plan over a small frame, explained and collected (`polaroid_worker::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use polaroid_worker::fuzzing;

fuzz_target!(init: polaroid_fuzz::init(), |data: &[u8]| {
    polaroid_fuzz::run(|| {
        let _ = polaroid_fuzz::on_runtime_stack(|| fuzzing::expression(data));
    });
});
