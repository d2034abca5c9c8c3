//! What the coordinator reads of a forwarded call: a client's gRPC-framed request (its
//! first message routes the call) and a worker's response prefixes, checked against the
//! response limit (`polaroid_coordinator::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(init: polaroid_fuzz::init(), |data: &[u8]| {
    polaroid_fuzz::run(|| polaroid_coordinator::fuzzing::frames(data));
});
