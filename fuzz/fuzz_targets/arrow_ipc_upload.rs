//! An upload: Arrow IPC bytes as `UploadArrow` and `CreateFromArrow` take them, or Flight
//! `DoPut` messages put together within a limit; decoded, then encoded back for `Collect`
//! and Flight (`polaroid_worker::fuzzing`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use polaroid_worker::fuzzing;

fuzz_target!(init: polaroid_fuzz::init(), |data: &[u8]| {
    polaroid_fuzz::run(|| {
        let _ = polaroid_fuzz::on_runtime_stack(|| fuzzing::arrow_ipc(data));
    });
});
