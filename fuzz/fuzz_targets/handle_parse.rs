//! Fuzzes the handle parser: no input panics, and whatever parses re-encodes to itself and
//! yields only key segments that cannot name a path.
//! Run: `scripts/fuzz.sh handle_parse` (fuzz/README.md).
#![no_main]

use libfuzzer_sys::fuzz_target;
use polaroid_store::{Handle, validate_key};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(handle) = Handle::parse(text) {
        assert_eq!(handle.to_string(), text);
        let id = handle.id_hex();
        assert!(validate_key(&id).is_ok());
        assert!(!id.contains(['/', '.', '%', '\\']));
    }
});
