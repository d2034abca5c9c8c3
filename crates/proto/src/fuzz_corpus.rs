//! The fuzz targets' committed corpus (`fuzz/corpus/<target>/`), for the tests that replay
//! it and keep its seeds current (`polaroid_worker::fuzzing`, `polaroid_coordinator::fuzzing`).
#![doc(hidden)]

use std::path::PathBuf;

/// The corpus directory of `target`.
pub fn dir(target: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/corpus")
        .join(target)
}

/// Every input of `target`'s corpus, in name order; panics when there is none.
pub fn inputs(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = dir(target);
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("a corpus entry").path())
        .collect();
    paths.sort();
    assert!(!paths.is_empty(), "{} has no inputs", dir.display());
    paths
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).expect("a corpus file");
            (path, bytes)
        })
        .collect()
}

/// Panics unless `fuzz/corpus/<target>/seed-<name>` holds `bytes`; with
/// `POLAROID_WRITE_FUZZ_SEEDS=1`, writes it first.
pub fn check_seed(target: &str, name: &str, bytes: &[u8]) {
    let path = dir(target).join(format!("seed-{name}"));
    if std::env::var_os("POLAROID_WRITE_FUZZ_SEEDS").is_some() {
        std::fs::create_dir_all(dir(target)).expect("making the corpus directory");
        std::fs::write(&path, bytes).expect("writing a seed");
    }
    let committed = std::fs::read(&path).unwrap_or_default();
    assert!(
        committed == bytes,
        "{} is not the seed it should be: run the test with POLAROID_WRITE_FUZZ_SEEDS=1",
        path.display()
    );
}
