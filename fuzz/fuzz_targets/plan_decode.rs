//! A stored `polaroid.v1.PlanNode`, decoded and its step built over in-memory inputs into a
//! Polars plan, explained and collected (`polaroid_worker::fuzzing`). Sources are skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use polaroid_worker::fuzzing;

fuzz_target!(init: polaroid_fuzz::init(), |data: &[u8]| {
    polaroid_fuzz::run(|| {
        let _ = polaroid_fuzz::on_runtime_stack(|| fuzzing::plan_node(data));
    });
});
