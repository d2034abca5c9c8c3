//! Confines file access to the configured data roots.
//!
//! A client path is resolved against the first root when relative, then canonicalized
//! (symlinks followed); it must land inside one of the roots. Writes resolve the parent
//! directory the same way, so a symlinked directory cannot lead out either.

use std::path::{Component, Path, PathBuf};

use crate::error::{EngineError, EngineResult};
use polaroid_proto::excerpt;

/// Linux's PATH_MAX and NAME_MAX: longer paths and names fail to resolve with
/// ENAMETOOLONG, which would reach the client as an INTERNAL i/o error.
const MAX_PATH_BYTES: usize = 4096;
const MAX_NAME_BYTES: usize = 255;

/// The directories files may be read from and written to.
#[derive(Debug, Clone)]
pub struct DataRoots {
    roots: Vec<PathBuf>,
}

impl DataRoots {
    /// Canonicalizes each root; a root that does not exist is an error at startup.
    pub fn new(roots: &[PathBuf]) -> std::io::Result<Self> {
        if roots.is_empty() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "at least one data root is required",
            ));
        }
        let roots = roots
            .iter()
            .map(|root| {
                root.canonicalize().map_err(|e| {
                    std::io::Error::new(e.kind(), format!("data root {}: {e}", root.display()))
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { roots })
    }

    pub fn roots(&self) -> &[PathBuf] {
        &self.roots
    }

    /// The same roots narrowed to one tenant's directory in each (`<root>/tenants/<dir>`),
    /// made on first use. A tenant's paths resolve there, and absolute paths must land
    /// there too: another tenant's files are outside its roots.
    pub fn narrowed(&self, dir: &str) -> std::io::Result<Self> {
        let roots = self
            .roots
            .iter()
            .map(|root| {
                let narrowed = root.join("tenants").join(dir);
                std::fs::create_dir_all(&narrowed)?;
                narrowed.canonicalize()
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { roots })
    }

    fn joined(&self, requested: &str) -> EngineResult<PathBuf> {
        if requested.is_empty() {
            return Err(EngineError::invalid("path is empty"));
        }
        if requested.len() > MAX_PATH_BYTES {
            return Err(EngineError::invalid(format!(
                "a path is at most {MAX_PATH_BYTES} bytes; this one has {}",
                requested.len()
            )));
        }
        if requested.contains('\0') {
            return Err(EngineError::invalid("path contains a NUL byte"));
        }
        let path = Path::new(requested);
        if path
            .components()
            .any(|c| c.as_os_str().len() > MAX_NAME_BYTES)
        {
            return Err(EngineError::invalid(format!(
                "a path's names are at most {MAX_NAME_BYTES} bytes each: `{}`",
                excerpt(requested)
            )));
        }
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(EngineError::OutsideDataRoots(format!(
                "`{}`: `..` is not allowed in paths",
                excerpt(requested)
            )));
        }
        Ok(if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.roots[0].join(path)
        })
    }

    fn check_inside(&self, requested: &str, canonical: &Path) -> EngineResult<()> {
        if self.roots.iter().any(|root| canonical.starts_with(root)) {
            Ok(())
        } else {
            Err(EngineError::OutsideDataRoots(format!(
                "`{}` is outside the configured data roots",
                excerpt(requested)
            )))
        }
    }

    /// Checks that a path that does not exist would be inside a root: its nearest existing
    /// ancestor, symlinks followed, must be (the rest has no `..`, see `joined`).
    fn check_missing_inside(&self, requested: &str, missing: &Path) -> EngineResult<()> {
        let resolved = missing
            .ancestors()
            .skip(1)
            .find_map(|ancestor| {
                let canonical = ancestor.canonicalize().ok()?;
                let rest = missing.strip_prefix(ancestor).ok()?;
                Some(canonical.join(rest))
            })
            .unwrap_or_else(|| missing.to_path_buf());
        self.check_inside(requested, &resolved)
    }

    /// Resolves a path to read: it must exist inside a root.
    pub fn read_path(&self, requested: &str) -> EngineResult<PathBuf> {
        let joined = self.joined(requested)?;
        let canonical = match joined.canonicalize() {
            Ok(path) => path,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Say "outside" rather than "missing" for paths that could never be read,
                // so that whether a file exists outside the roots is never told.
                self.check_missing_inside(requested, &joined)?;
                return Err(EngineError::FileNotFound(excerpt(requested).to_string()));
            }
            Err(e) => return Err(EngineError::io("resolve path")(e)),
        };
        self.check_inside(requested, &canonical)?;
        Ok(canonical)
    }

    /// Resolves a path to write: its parent directory must exist inside a root, and the
    /// file itself, when it exists, must not be a symlink.
    pub fn write_path(&self, requested: &str) -> EngineResult<PathBuf> {
        let joined = self.joined(requested)?;
        let file_name = joined
            .file_name()
            .ok_or_else(|| {
                EngineError::invalid(format!("`{}` does not name a file", excerpt(requested)))
            })?
            .to_owned();
        let parent = joined.parent().unwrap_or(Path::new("/"));
        let parent = match parent.canonicalize() {
            Ok(path) => path,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.check_missing_inside(requested, parent)?;
                return Err(EngineError::FileNotFound(format!(
                    "directory of `{}`",
                    excerpt(requested)
                )));
            }
            Err(e) => return Err(EngineError::io("resolve path")(e)),
        };
        self.check_inside(requested, &parent)?;
        let target = parent.join(file_name);
        if target
            .symlink_metadata()
            .is_ok_and(|meta| meta.file_type().is_symlink())
        {
            return Err(EngineError::OutsideDataRoots(format!(
                "`{}` is a symlink; refusing to write through it",
                excerpt(requested)
            )));
        }
        Ok(target)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confines_reads_and_writes() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(root.path().join("a.csv"), "x\n1\n").unwrap();
        std::fs::write(outside.path().join("secret.csv"), "x\n1\n").unwrap();
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).unwrap();
        let roots = DataRoots::new(&[root.path().to_path_buf()]).unwrap();

        assert!(roots.read_path("a.csv").is_ok());
        let absolute = root.path().join("a.csv");
        assert!(roots.read_path(absolute.to_str().unwrap()).is_ok());
        let denied = |r: EngineResult<PathBuf>| matches!(r, Err(EngineError::OutsideDataRoots(_)));
        assert!(denied(roots.read_path("../x.csv")));
        assert!(denied(
            roots.read_path(outside.path().join("secret.csv").to_str().unwrap())
        ));
        assert!(denied(roots.read_path("link/secret.csv")));
        // Missing files behind a link that leaves the root are outside too, not missing.
        assert!(denied(roots.read_path("link/missing.csv")));
        assert!(denied(roots.read_path("link/no/such/dir/missing.csv")));
        assert!(denied(roots.write_path("link/no/such/dir/new.csv")));
        assert!(matches!(
            roots.read_path("no/such/dir/missing.csv"),
            Err(EngineError::FileNotFound(_))
        ));
        assert!(denied(roots.write_path("link/new.csv")));
        assert!(denied(roots.write_path("/etc/new.csv")));
        assert!(matches!(
            roots.read_path("missing.csv"),
            Err(EngineError::FileNotFound(_))
        ));
        assert!(roots.write_path("out.parquet").is_ok());
    }

    #[test]
    fn over_long_paths_are_invalid_and_not_echoed() {
        let root = tempfile::tempdir().unwrap();
        let roots = DataRoots::new(&[root.path().to_path_buf()]).unwrap();
        for path in ["a".repeat(100_000), format!("d/{}.csv", "n".repeat(300))] {
            for result in [roots.read_path(&path), roots.write_path(&path)] {
                let error = result.expect_err("over-long");
                assert_eq!(error.code(), polaroid_proto::ErrorCode::InvalidArgument);
                assert!(error.to_string().len() < 300, "{error}");
            }
        }
    }
}
