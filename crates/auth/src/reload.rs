//! The token file as it is now: read at start, read again when it changes (a Kubernetes
//! Secret update swaps the file under a symlink) or on SIGHUP, so tokens are rotated
//! without a restart. A version that does not parse is refused and the last good one stays.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::{Duration, SystemTime};

use crate::AuthError;
use crate::tokens::TokenTable;

/// What tells one version of the file from the next without reading it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    // Follows symlinks: a Secret's update replaces the file they point at.
    let metadata = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&metadata);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        modified: metadata.modified().ok(),
        len: metadata.len(),
        inode,
    })
}

/// The tokens of one file, kept current.
#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    table: RwLock<Arc<TokenTable>>,
    seen: Mutex<Option<Stamp>>,
}

impl Tokens {
    /// Reads `path`; an unreadable or malformed file is an error at start.
    pub fn load(path: &Path) -> Result<Arc<Self>, AuthError> {
        let seen = stamp(path).ok();
        let table = read(path)?;
        tracing::info!(path = %path.display(), tokens = table.len(), "tokens loaded");
        metrics::gauge!("polaroid_auth_tokens").set(table.len() as f64);
        Ok(Arc::new(Self {
            path: path.to_owned(),
            table: RwLock::new(Arc::new(table)),
            seen: Mutex::new(seen),
        }))
    }

    /// The tokens now.
    pub fn current(&self) -> Arc<TokenTable> {
        self.table
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Reads the file again if it changed (or always, with `force`). Returns whether a new
    /// version was taken; a version that fails to read or parse is an error, and the
    /// tokens stay as they were.
    pub fn reload(&self, force: bool) -> Result<bool, AuthError> {
        let now = stamp(&self.path).ok();
        {
            let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
            if !force && *seen == now {
                return Ok(false);
            }
        }
        let outcome = read(&self.path);
        // Remembered either way: a bad version is reported once, not at every poll.
        *self.seen.lock().unwrap_or_else(|p| p.into_inner()) = now;
        let table = match outcome {
            Ok(table) => table,
            Err(e) => {
                metrics::counter!("polaroid_auth_token_reloads_total", "outcome" => "error")
                    .increment(1);
                return Err(e);
            }
        };
        metrics::counter!("polaroid_auth_token_reloads_total", "outcome" => "ok").increment(1);
        metrics::gauge!("polaroid_auth_tokens").set(table.len() as f64);
        tracing::info!(path = %self.path.display(), tokens = table.len(), "tokens reloaded");
        *self.table.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(table);
        Ok(true)
    }

    /// Reloads every `interval` when the file changed, and at once on SIGHUP, for as long
    /// as these tokens are in use.
    pub fn watch(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        let tokens: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            #[cfg(unix)]
            let mut hangups =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
            loop {
                #[cfg(unix)]
                let forced = match hangups.as_mut() {
                    Some(hangups) => tokio::select! {
                        _ = tokio::time::sleep(interval) => false,
                        _ = hangups.recv() => true,
                    },
                    None => {
                        tokio::time::sleep(interval).await;
                        false
                    }
                };
                #[cfg(not(unix))]
                let forced = {
                    tokio::time::sleep(interval).await;
                    false
                };
                let Some(tokens) = tokens.upgrade() else {
                    return;
                };
                if let Err(e) = tokens.reload(forced) {
                    tracing::error!(error = %e, "the token file was not reloaded; the previous tokens stay");
                }
            }
        })
    }
}

fn read(path: &Path) -> Result<TokenTable, AuthError> {
    let text = std::fs::read_to_string(path).map_err(|source| AuthError::TokensFile {
        path: path.to_owned(),
        source,
    })?;
    TokenTable::parse(&text).map_err(|source| AuthError::TokensParse {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::tokens::{new_token, token_line};
    use crate::{Caller, Role};

    #[test]
    fn a_changed_file_is_taken_and_a_broken_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("tokens");
        let (first, second) = (new_token(), new_token());
        std::fs::write(&path, token_line(&first, "a", Role::User, "")).unwrap();
        let tokens = Tokens::load(&path).unwrap();
        assert!(tokens.current().authenticate(&first).is_some());
        assert!(!tokens.reload(false).unwrap(), "unchanged: not read again");

        // Rotation: the second token replaces the first.
        std::fs::write(
            &path,
            format!("{}\n", token_line(&second, "a", Role::Admin, "")),
        )
        .unwrap();
        assert!(tokens.reload(true).unwrap());
        assert_eq!(tokens.current().authenticate(&first), None);
        assert_eq!(
            tokens.current().authenticate(&second),
            Some(Caller {
                tenant: "a".into(),
                role: Role::Admin
            })
        );

        std::fs::write(&path, "garbage\n").unwrap();
        assert!(tokens.reload(true).is_err());
        assert!(tokens.current().authenticate(&second).is_some());
        std::fs::remove_file(&path).unwrap();
        assert!(tokens.reload(true).is_err());
        assert!(tokens.current().authenticate(&second).is_some());
    }

    #[test]
    fn a_missing_or_broken_file_fails_the_start() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            Tokens::load(&dir.path().join("none")),
            Err(AuthError::TokensFile { .. })
        ));
        let path = dir.path().join("tokens");
        std::fs::write(&path, "sha256:00 t user\n").unwrap();
        assert!(matches!(
            Tokens::load(&path),
            Err(AuthError::TokensParse { .. })
        ));
    }
}
