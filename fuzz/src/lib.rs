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
    handle_overflows_on_their_own_stack();
    // libFuzzer runs each input on this thread (the targets move the work to a runtime
    // stack, but a panic's unwinding and libFuzzer's own work stay here).
    std::mem::forget(SignalStack::new());
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

/// Runs `work` on a thread with a runtime thread's stack (`fuzzing::on_runtime_stack`)
/// and a signal stack of its own, so that a stack overflow there is reported by libFuzzer
/// with the input that caused it.
pub fn on_runtime_stack<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    polaroid_worker::fuzzing::on_runtime_stack(|| {
        let _signal_stack = SignalStack::new();
        work()
    })
}

/// libFuzzer reports a crash from its SIGSEGV handler, which runs on the faulting thread's
/// stack unless the handler it replaces ran on a signal stack (it keeps `SA_ONSTACK`). A
/// Rust program's runtime sets that up, but a fuzz target's `main` is libFuzzer's, so
/// without this an overflow killed the process before libFuzzer could write the input.
/// `init` runs before libFuzzer installs its handlers.
fn handle_overflows_on_their_own_stack() {
    for signal in [libc::SIGSEGV, libc::SIGBUS] {
        // SAFETY: a zeroed `sigaction` is valid; only the default disposition and flags
        // are set, and no handler of ours runs.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = libc::SIG_DFL;
            action.sa_flags = libc::SA_ONSTACK;
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
}

/// A signal stack for the current thread while it lives.
struct SignalStack {
    _memory: Vec<u8>,
}

impl SignalStack {
    const SIZE: usize = 256 * 1024;

    fn new() -> Self {
        let mut memory = vec![0u8; Self::SIZE];
        let stack = libc::stack_t {
            ss_sp: memory.as_mut_ptr().cast(),
            ss_flags: 0,
            ss_size: Self::SIZE,
        };
        // SAFETY: the memory outlives the registration, which `drop` removes.
        unsafe { libc::sigaltstack(&stack, std::ptr::null_mut()) };
        Self { _memory: memory }
    }
}

impl Drop for SignalStack {
    fn drop(&mut self) {
        let disable = libc::stack_t {
            ss_sp: std::ptr::null_mut(),
            ss_flags: libc::SS_DISABLE,
            ss_size: 0,
        };
        // SAFETY: disables this thread's signal stack before its memory is freed.
        unsafe { libc::sigaltstack(&disable, std::ptr::null_mut()) };
    }
}
