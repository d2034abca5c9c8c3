//! What the fuzz targets share: how a panic is judged, and the expression trees that
//! `expr_tree` generates.
//!
//! A panic inside the engine's own guard (`catch_panic`, around every Polars call a
//! request makes) is answered INTERNAL and the worker goes on, exactly as in production;
//! the targets accept it unless `POLAROID_FUZZ_PANICS=abort`, the mode for hunting the
//! panics behind such answers. A panic that escapes the guard, a stack overflow, an abort
//! or memory past libFuzzer's `-rss_limit_mb` fails the run in both modes.

use std::panic::{AssertUnwindSafe, PanicHookInfo};
use std::sync::Mutex;

pub mod tree;

/// The last panic seen, printed when one escapes.
static LAST_PANIC: Mutex<String> = Mutex::new(String::new());

fn describe(info: &PanicHookInfo<'_>) -> String {
    let message = info
        .payload()
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| info.payload().downcast_ref::<String>().cloned())
        .unwrap_or_default();
    let location = info
        .location()
        .map(|l| format!("{}:{}", l.file(), l.line()))
        .unwrap_or_default();
    format!("{message} at {location}")
}

/// Call from each target's `init`, after libFuzzer's own hook (which aborts on any panic).
pub fn init() {
    if std::env::var("POLAROID_FUZZ_PANICS").as_deref() == Ok("abort") {
        return;
    }
    std::panic::set_hook(Box::new(|info| {
        if let Ok(mut last) = LAST_PANIC.lock() {
            *last = describe(info);
        }
    }));
}

/// Runs one input; a panic that gets out of `work` aborts, naming the panic.
pub fn run(work: impl FnOnce()) {
    if std::panic::catch_unwind(AssertUnwindSafe(work)).is_err() {
        let last = LAST_PANIC.lock().map(|s| s.clone()).unwrap_or_default();
        eprintln!("a panic escaped every guard (it would take the process down): {last}");
        std::process::abort();
    }
}
