//! The filesystem store's write-ahead journal: a new small object becomes durable with
//! one `fdatasync` of an append-only log instead of two `fsync`s of its own file.
//!
//! Why: a put that makes its own file durable (temp file, `fsync`, rename, directory
//! `fsync`) took 314–596 µs at p50 on this project's ext4 disk, against 102–130 µs to
//! append the same 600 bytes to a log and `fdatasync` it (docs/benchmarks.md, "The
//! filesystem store's journal"). Every call that makes a handle writes two such records,
//! so the two `fsync`s were most of a trivial call.
//!
//! How a journaled put goes ([`Journal::put`]): the value is written to a temp file (no
//! `fsync`), an entry holding the key, the temp file's identity and the value is
//! appended to the active segment and `fdatasync`ed (concurrent puts share one: group
//! commit), and the temp file is renamed over the key. Readers, in this process or any
//! other sharing the directory, see the file as soon as it is renamed. A background
//! checkpoint then `fsync`s the files and their directories in one batch, moves appends
//! to the other segment and retires the first (a new generation number in its header
//! makes its entries stale).
//!
//! What a crash leaves is repaired by the next store opened on the root: it replays
//! every journal whose owner is gone (the owner holds a `flock` on it while alive). An
//! entry is applied when its key's file is missing, or when the file there is still the
//! one the entry wrote but its content was lost; any other file was put there later and
//! is left alone, so a replay never undoes a newer write. A file is known by its inode
//! number *and* its birth time (`statx`): ext4 hands a freed inode number out again at
//! once, so a file rewritten twice can have the number of the one it replaced (a review
//! caught a replay that resurrected a dropped handle that way). Where the filesystem
//! keeps no birth time, an entry is applied only where its file is missing.
//!
//! Only creates are journaled (a key with no file yet, value up to
//! [`MAX_JOURNALED_VALUE`]): every key the catalog creates is new or content-addressed,
//! so replaying one cannot lose an update. Replacing an existing file keeps the direct
//! durable path. Known gap: a key another process deletes within a checkpoint interval
//! of its creation comes back if its creator crashes before that checkpoint (the store
//! deletes only what the collector found past its grace period, which is minutes).
//!
//! For local filesystems. On NFS `flock` becomes a lease the server can give away while
//! its owner lives: the owner checks at each checkpoint that its journal is still its own
//! and otherwise stops journaling.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// The largest value a put may journal; larger ones go straight to their file, where the
/// data's own write dwarfs the two `fsync`s.
pub(crate) const MAX_JOURNALED_VALUE: usize = 256 * 1024;
/// A segment's size limit; a put that does not fit takes the direct path and wakes the
/// checkpoint, which empties a segment.
const SEGMENT_BYTES: u64 = 8 << 20;
/// How far ahead of its entries a segment is written with zeros. An append that grows the
/// file makes its `fdatasync` commit the filesystem's journal as well (about 130 against
/// 100 µs here, and queued behind any other commit); a segment reused after retirement
/// is already written.
const ZERO_FILL_STEP: u64 = 256 * 1024;
/// The header: magic, generation, CRC of both. Entries start at the next 4 KiB.
const HEADER_BYTES: u64 = 4096;
const MAGIC: [u8; 8] = *b"PLRDJRN1";
/// Generation 0: a segment with no valid entries.
const RETIRED: u64 = 0;
/// crc (4), generation (8), kind (1), inode (8), birth time (8), key length (2), value
/// length (4).
const ENTRY_FIXED: usize = 35;
const KIND_PUT: u8 = 1;
const KIND_TOMBSTONE: u8 = 2;
/// How often written files are made durable in a batch and a segment is retired.
pub(crate) const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(500);
/// The directory under the store's root holding one journal per open store. Its name
/// starts with `.`, which no key segment may: listings and keys never see it.
const JOURNALS_DIRECTORY: &str = ".journal";

/// One open store's journal; dropping it checkpoints, retires and removes it.
pub(crate) struct Journal {
    shared: Arc<Shared>,
    checkpointer: Option<std::thread::JoinHandle<()>>,
}

struct Shared {
    root: PathBuf,
    directory: PathBuf,
    segments: [File; 2],
    /// Held (flock) while this journal's owner is alive; recovery skips locked journals.
    lock: File,
    state: Mutex<State>,
    /// Signalled when a put appended to a segment has renamed its file (or failed).
    settled: Condvar,
    /// Group commit: per segment, the generation and offset known to be on disk.
    synced: Mutex<[(u64, u64); 2]>,
    checkpoint: Mutex<Checkpoint>,
    wake: Condvar,
    /// Held for a whole checkpoint: two at once would switch segments twice.
    checkpointing: Mutex<()>,
}

struct State {
    active: usize,
    generations: [u64; 2],
    /// The end of what was written to each segment (its next append offset).
    written: [u64; 2],
    /// How far each segment's file has been written at least once (with zeros ahead of
    /// the entries): below it an append changes no file size, so its `fdatasync` flushes
    /// data only and commits no filesystem journal.
    allocated: [u64; 2],
    /// Keys written through each segment whose files are not yet known durable.
    pending: [HashSet<String>; 2],
    /// Puts appended to each segment that have not yet renamed their file.
    in_flight: [usize; 2],
    next_generation: u64,
    /// A failed journal write or sync: every later put takes the direct path.
    broken: bool,
}

#[derive(Default)]
struct Checkpoint {
    stop: bool,
    urgent: bool,
    /// Set by tests that simulate a crash: no final checkpoint, the journal stays.
    abandon: bool,
}

/// A put appended to a segment, until its file is renamed into place.
struct Appended<'a> {
    shared: &'a Shared,
    segment: usize,
    generation: u64,
    end: u64,
}

impl Drop for Appended<'_> {
    fn drop(&mut self) {
        let mut state = self.shared.lock_state();
        state.in_flight[self.segment] -= 1;
        drop(state);
        self.shared.settled.notify_all();
    }
}

struct Entry {
    kind: u8,
    file: FileIdentity,
    key: String,
    value: Vec<u8>,
}

/// Which file a key's name pointed at: its inode number and birth time, in nanoseconds
/// since the epoch (0 where the filesystem does not keep one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct FileIdentity {
    inode: u64,
    born_nanos: u64,
}

impl FileIdentity {
    fn of(metadata: &std::fs::Metadata) -> Self {
        let born_nanos = metadata
            .created()
            .ok()
            .and_then(|born| born.duration_since(std::time::UNIX_EPOCH).ok())
            .map_or(0, |since| u64::try_from(since.as_nanos()).unwrap_or(0));
        Self {
            inode: metadata.ino(),
            born_nanos,
        }
    }

    /// Whether `metadata` is this very file; never when its birth time is unknown.
    fn is(&self, metadata: &std::fs::Metadata) -> bool {
        self.born_nanos != 0 && Self::of(metadata) == *self
    }
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("directory", &self.shared.directory)
            .finish_non_exhaustive()
    }
}

impl Journal {
    /// Replays the journals of stores on `root` that are no longer open, then opens one
    /// for this store with a checkpoint every `interval`.
    pub(crate) fn open(root: &Path, interval: Duration) -> io::Result<Self> {
        let journals = root.join(JOURNALS_DIRECTORY);
        std::fs::create_dir_all(&journals)?;
        recover(root, &journals)?;
        let directory = journals.join(format!("{:016x}", rand::random::<u64>()));
        std::fs::create_dir(&directory)?;
        let mut segments = Vec::with_capacity(2);
        for (index, generation) in [(0usize, 1u64), (1, 2)] {
            let segment = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create_new(true)
                .open(directory.join(index.to_string()))?;
            write_header(&segment, generation)?;
            segments.push(segment);
        }
        // Locked under another name, then renamed into place: a recovery running meanwhile
        // finds no lock and leaves the directory alone, or finds it locked.
        let unlocked = directory.join("lock.new");
        let lock = File::create_new(&unlocked)?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(std::fs::TryLockError::Error(e)) => return Err(e),
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(io::Error::other("a new journal's lock is already held"));
            }
        }
        std::fs::rename(&unlocked, directory.join("lock"))?;
        sync_directory(&directory)?;
        sync_directory(&journals)?;
        sync_directory(root)?;
        let [first, second]: [File; 2] = segments
            .try_into()
            .map_err(|_| io::Error::other("two segments"))?;
        let shared = Arc::new(Shared {
            root: root.to_path_buf(),
            directory,
            segments: [first, second],
            lock,
            state: Mutex::new(State {
                active: 0,
                generations: [1, 2],
                written: [HEADER_BYTES; 2],
                allocated: [HEADER_BYTES; 2],
                pending: [HashSet::new(), HashSet::new()],
                in_flight: [0; 2],
                next_generation: 3,
                broken: false,
            }),
            settled: Condvar::new(),
            synced: Mutex::new([(1, HEADER_BYTES), (2, HEADER_BYTES)]),
            checkpoint: Mutex::new(Checkpoint::default()),
            wake: Condvar::new(),
            checkpointing: Mutex::new(()),
        });
        let worker = Arc::clone(&shared);
        let checkpointer = std::thread::Builder::new()
            .name("polaroid-fs-journal".into())
            .spawn(move || worker.run_checkpoints(interval))?;
        Ok(Self {
            shared,
            checkpointer: Some(checkpointer),
        })
    }

    /// Makes `value` durable under `key` (whose file is `target`) through the journal.
    /// Returns `false`, having written nothing, when the journal cannot take it (full,
    /// or broken by an earlier failure): the caller writes the file durably itself.
    pub(crate) fn put(&self, key: &str, target: &Path, value: &[u8]) -> io::Result<bool> {
        let shared = &*self.shared;
        let directory = target.parent().unwrap_or(Path::new("/"));
        std::fs::create_dir_all(directory)?;
        let temp = crate::fs::temp_path(target);
        let identity = match (|| {
            let mut file = File::create_new(&temp)?;
            file.write_all(value)?;
            Ok::<_, io::Error>(FileIdentity::of(&file.metadata()?))
        })() {
            Ok(identity) => identity,
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        let appended = match shared.append(KIND_PUT, key, identity, value) {
            Ok(Some(appended)) => appended,
            Ok(None) => {
                let _ = std::fs::remove_file(&temp);
                return Ok(false);
            }
            Err(e) => {
                let _ = std::fs::remove_file(&temp);
                return Err(e);
            }
        };
        if let Err(e) = shared.commit(&appended) {
            // Whether the entry reached the disk is unknown: the caller writes the value
            // durably itself, as a new file a replay will not take for this entry's.
            tracing::warn!(error = %e, "journal commit failed; writing the file durably instead");
            let _ = std::fs::remove_file(&temp);
            return Ok(false);
        }
        if let Err(e) = std::fs::rename(&temp, target) {
            let _ = std::fs::remove_file(&temp);
            // Best effort, not synced: a replay after a crash may still create the key
            // whose put failed here, which only a caller that retries would see.
            let _ = shared.append(KIND_TOMBSTONE, key, FileIdentity::default(), &[]);
            return Err(e);
        }
        Ok(true)
    }

    /// Records that `key` was deleted, when a replay could otherwise bring it back (its
    /// create is still in this journal).
    pub(crate) fn deleted(&self, key: &str) {
        let journaled = {
            let state = self.shared.lock_state();
            state.pending.iter().any(|keys| keys.contains(key))
        };
        if journaled {
            // Not synced: a delete is made durable by the next checkpoint (its directory's
            // `fsync`), as before the journal.
            let _ = self
                .shared
                .append(KIND_TOMBSTONE, key, FileIdentity::default(), &[]);
        }
    }

    /// Makes every journaled file durable and retires their entries now.
    #[cfg(test)]
    pub(crate) fn checkpoint_now(&self) -> io::Result<()> {
        self.shared.checkpoint_once()
    }

    /// Simulates its process dying: the lock goes, the journal stays as it is on disk.
    #[cfg(test)]
    pub(crate) fn abandon(self) {
        self.shared.lock_checkpoint().abandon = true;
        drop(self);
    }

    #[cfg(test)]
    pub(crate) fn directory(&self) -> &Path {
        &self.shared.directory
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.shared.lock_checkpoint().stop = true;
        self.shared.wake.notify_all();
        if let Some(checkpointer) = self.checkpointer.take() {
            let _ = checkpointer.join();
        }
        if self.shared.lock_checkpoint().abandon {
            return;
        }
        let closed = self.shared.checkpoint_once().and_then(|()| {
            let state = self.shared.lock_state();
            if state.pending.iter().all(HashSet::is_empty) {
                Ok(())
            } else {
                Err(io::Error::other("entries not yet made durable remain"))
            }
        });
        match closed {
            // Nothing left to replay: the journal can go. Its lock goes with the file.
            Ok(()) => {
                if let Err(e) = std::fs::remove_dir_all(&self.shared.directory) {
                    tracing::warn!(directory = %self.shared.directory.display(), error = %e,
                        "could not remove a closed store journal; the next store opened here replays it");
                }
            }
            Err(e) => tracing::error!(directory = %self.shared.directory.display(), error = %e,
                "final journal checkpoint failed; the next store opened here replays it"),
        }
    }
}

impl Shared {
    fn lock_state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn lock_checkpoint(&self) -> MutexGuard<'_, Checkpoint> {
        self.checkpoint
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Appends an entry to the active segment (not yet synced). `None` when it does not
    /// fit or the journal is broken.
    fn append(
        &self,
        kind: u8,
        key: &str,
        file: FileIdentity,
        value: &[u8],
    ) -> io::Result<Option<Appended<'_>>> {
        let mut state = self.lock_state();
        let segment = state.active;
        let generation = state.generations[segment];
        let entry = encode_entry(generation, kind, file, key, value)?;
        let start = state.written[segment];
        if state.broken || start + entry.len() as u64 > SEGMENT_BYTES {
            if !state.broken {
                drop(state);
                self.lock_checkpoint().urgent = true;
                self.wake.notify_all();
            }
            return Ok(None);
        }
        let end = start + entry.len() as u64;
        if end > state.allocated[segment] {
            let from = state.allocated[segment];
            let to = (end + ZERO_FILL_STEP).min(SEGMENT_BYTES);
            let zeros = vec![0u8; usize::try_from(to - from).unwrap_or(0)];
            if let Err(e) = self.segments[segment].write_all_at(&zeros, from) {
                state.broken = true;
                return Err(e);
            }
            state.allocated[segment] = to;
        }
        if let Err(e) = self.segments[segment].write_all_at(&entry, start) {
            state.broken = true;
            return Err(e);
        }
        state.written[segment] = end;
        if kind == KIND_PUT {
            state.pending[segment].insert(key.to_owned());
        }
        state.in_flight[segment] += 1;
        Ok(Some(Appended {
            shared: self,
            segment,
            generation,
            end,
        }))
    }

    /// Waits until the appended entry is on disk; one `fdatasync` covers every entry
    /// written before it started.
    fn commit(&self, appended: &Appended<'_>) -> io::Result<()> {
        let mut synced = self
            .synced
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (generation, offset) = synced[appended.segment];
        if generation == appended.generation && offset >= appended.end {
            return Ok(());
        }
        let (written, broken) = {
            let state = self.lock_state();
            (state.written[appended.segment], state.broken)
        };
        if broken {
            // After a failed `fdatasync` Linux reports the error once: a second call may
            // succeed with the entry's pages dropped, so nothing after it is trusted.
            return Err(io::Error::other(
                "the journal failed since this entry was written",
            ));
        }
        if let Err(e) = self.segments[appended.segment].sync_data() {
            self.lock_state().broken = true;
            return Err(e);
        }
        synced[appended.segment] = (appended.generation, written);
        Ok(())
    }

    fn run_checkpoints(&self, interval: Duration) {
        let mut checkpoint = self.lock_checkpoint();
        loop {
            if checkpoint.stop {
                return;
            }
            if !checkpoint.urgent {
                checkpoint = self
                    .wake
                    .wait_timeout(checkpoint, interval)
                    .map_or_else(|poisoned| poisoned.into_inner().0, |(guard, _)| guard);
                if checkpoint.stop {
                    return;
                }
            }
            checkpoint.urgent = false;
            drop(checkpoint);
            if let Err(e) = self.checkpoint_once() {
                // The entries stay in their segment, so a replay still has them.
                tracing::error!(directory = %self.directory.display(), error = %e,
                    "journal checkpoint failed; puts now write their files durably themselves");
                self.lock_state().broken = true;
            }
            checkpoint = self.lock_checkpoint();
        }
    }

    /// Makes the files written through the active segment durable and retires it, after
    /// moving appends to the other one; first retries a segment an earlier checkpoint
    /// could not retire (its entries stay replayable until it is).
    fn checkpoint_once(&self) -> io::Result<()> {
        let _checkpointing = self
            .checkpointing
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let owned = self.still_owned();
        let mut state = self.lock_state();
        let inactive = 1 - state.active;
        if !state.pending[inactive].is_empty() {
            drop(state);
            self.retire(inactive)?;
            state = self.lock_state();
        }
        let old = state.active;
        if state.pending[old].is_empty() && state.in_flight[old] == 0 {
            // Both segments retired: what made the journal fail no longer matters to
            // anything it holds, so it may take puts again.
            if state.broken && owned {
                tracing::info!(directory = %self.directory.display(), "journal usable again");
                state.broken = false;
            }
            return Ok(());
        }
        state.active = inactive;
        while state.in_flight[old] > 0 {
            state = self
                .settled
                .wait(state)
                .unwrap_or_else(|poisoned| poisoned.into_inner());
        }
        drop(state);
        self.retire(old)
    }

    /// Makes the files written through `segment` durable, then gives it a new generation,
    /// which makes its entries stale. No put may be appending to it.
    fn retire(&self, segment: usize) -> io::Result<()> {
        // Kept in `pending` until retired, so a delete meanwhile still leaves a tombstone.
        let keys = self.lock_state().pending[segment].clone();
        make_durable(&self.root, keys.iter().map(String::as_str))?;
        let generation = {
            let mut state = self.lock_state();
            state.next_generation += 1;
            state.next_generation - 1
        };
        write_header(&self.segments[segment], generation)?;
        let mut state = self.lock_state();
        state.generations[segment] = generation;
        state.written[segment] = HEADER_BYTES;
        state.pending[segment].clear();
        Ok(())
    }

    /// Whether this journal's lock file is still the one this store holds. On NFS a lock
    /// is a lease: a server that thinks the owner gone lets another store recover and
    /// remove a journal still in use. Then puts stop journaling.
    fn still_owned(&self) -> bool {
        let held = self.lock.metadata();
        let named = std::fs::metadata(self.directory.join("lock"));
        let owned = matches!((held, named), (Ok(held), Ok(named))
            if (held.dev(), held.ino()) == (named.dev(), named.ino()));
        if !owned {
            let mut state = self.lock_state();
            if !state.broken {
                tracing::error!(directory = %self.directory.display(),
                    "this store's journal was recovered by another store (a lost lock lease?); puts now write their files durably themselves");
            }
            state.broken = true;
        }
        owned
    }
}

/// Up to this many files, a checkpoint `fsync`s each (and their directories); more, and
/// it flushes the whole filesystem once (`syncfs`). On ext4 every `fsync` is a journal
/// commit that the next put's `fdatasync` queues behind: a checkpoint of 200 records one
/// by one (270 µs each) took the trivial call from 1.1 to 1.6 ms at p50 (docs/benchmarks.md).
const FSYNC_EACH_UP_TO: usize = 4;

/// Makes each key's file durable, with every directory from it up to `root` (directories
/// a put created are new entries in their parents too).
fn make_durable<'a>(root: &Path, keys: impl Iterator<Item = &'a str>) -> io::Result<()> {
    let keys: Vec<&str> = keys.collect();
    if keys.is_empty() {
        return Ok(());
    }
    if keys.len() > FSYNC_EACH_UP_TO {
        match sync_filesystem(root) {
            Ok(()) => return Ok(()),
            // Not on this system: one by one.
            Err(e) if e.kind() == io::ErrorKind::Unsupported => {}
            Err(e) => return Err(e),
        }
    }
    let mut directories = BTreeSet::new();
    for key in keys {
        let path = root.join(key);
        match File::open(&path) {
            Ok(file) => file.sync_all()?,
            // Deleted since: the directory's sync below makes that durable.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        let mut directory = path.parent();
        while let Some(current) = directory {
            if !current.starts_with(root) || !directories.insert(current.to_path_buf()) {
                break;
            }
            directory = current.parent();
        }
    }
    // Deepest first, so a parent is synced after the entries it gained below it.
    for directory in directories.iter().rev() {
        match sync_directory(directory) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        }
    }
    Ok(())
}

fn sync_directory(directory: &Path) -> io::Result<()> {
    File::open(directory)?.sync_all()
}

/// Writes back every dirty page and inode of the filesystem holding `path` and commits its
/// journal. Linux reports writeback errors from `syncfs` since 5.8.
fn sync_filesystem(path: &Path) -> io::Result<()> {
    rustix::fs::syncfs(File::open(path)?).map_err(io::Error::from)
}

fn write_header(segment: &File, generation: u64) -> io::Result<()> {
    let mut header = [0u8; 20];
    header[..8].copy_from_slice(&MAGIC);
    header[8..16].copy_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&header[..16]);
    header[16..].copy_from_slice(&crc.to_le_bytes());
    segment.write_all_at(&header, 0)?;
    segment.sync_data()
}

fn encode_entry(
    generation: u64,
    kind: u8,
    file: FileIdentity,
    key: &str,
    value: &[u8],
) -> io::Result<Vec<u8>> {
    let key_length = u16::try_from(key.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "key too long to journal"))?;
    let value_length = u32::try_from(value.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "value too large to journal"))?;
    let mut entry = Vec::with_capacity(ENTRY_FIXED + key.len() + value.len());
    entry.extend_from_slice(&[0; 4]);
    entry.extend_from_slice(&generation.to_le_bytes());
    entry.push(kind);
    entry.extend_from_slice(&file.inode.to_le_bytes());
    entry.extend_from_slice(&file.born_nanos.to_le_bytes());
    entry.extend_from_slice(&key_length.to_le_bytes());
    entry.extend_from_slice(&value_length.to_le_bytes());
    entry.extend_from_slice(key.as_bytes());
    entry.extend_from_slice(value);
    let crc = crc32fast::hash(&entry[4..]);
    entry[..4].copy_from_slice(&crc.to_le_bytes());
    Ok(entry)
}

/// The generation and the valid entries of a segment file: those after the header that
/// carry its generation and a matching CRC, up to the first that does not.
fn read_segment(path: &Path) -> io::Result<(u64, Vec<Entry>)> {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((RETIRED, Vec::new())),
        Err(e) => return Err(e),
    };
    let generation = match bytes.get(..20) {
        Some(header)
            if header[..8] == MAGIC
                && crc32fast::hash(&header[..16]).to_le_bytes() == header[16..20] =>
        {
            u64::from_le_bytes(header[8..16].try_into().unwrap_or_default())
        }
        _ => return Ok((RETIRED, Vec::new())),
    };
    let mut entries = Vec::new();
    if generation == RETIRED {
        return Ok((generation, entries));
    }
    let mut offset = HEADER_BYTES as usize;
    while let Some(fixed) = bytes.get(offset..offset + ENTRY_FIXED) {
        let number = |range: std::ops::Range<usize>| {
            let mut buffer = [0u8; 8];
            buffer[..range.len()].copy_from_slice(&fixed[range]);
            u64::from_le_bytes(buffer)
        };
        let key_length = number(29..31) as usize;
        let value_length = number(31..35) as usize;
        let end = offset + ENTRY_FIXED + key_length + value_length;
        let Some(whole) = bytes.get(offset..end) else {
            break;
        };
        if number(4..12) != generation || crc32fast::hash(&whole[4..]).to_le_bytes() != whole[..4] {
            break;
        }
        let key = &whole[ENTRY_FIXED..ENTRY_FIXED + key_length];
        let Ok(key) = std::str::from_utf8(key) else {
            break;
        };
        entries.push(Entry {
            kind: whole[12],
            file: FileIdentity {
                inode: number(13..21),
                born_nanos: number(21..29),
            },
            key: key.to_owned(),
            value: whole[ENTRY_FIXED + key_length..].to_vec(),
        });
        offset = end;
    }
    Ok((generation, entries))
}

/// The keys of a segment's valid entries, in order (tests look into journals with it).
#[cfg(test)]
pub(crate) fn read_segment_keys(path: &Path) -> Vec<String> {
    read_segment(path)
        .map(|(_, entries)| entries.into_iter().map(|entry| entry.key).collect())
        .unwrap_or_default()
}

/// Replays and removes every journal under `journals` whose store is no longer open. One
/// that cannot be replayed is logged and left for the next store opened here: refusing to
/// open would stop the worker, and the journal loses nothing by waiting.
fn recover(root: &Path, journals: &Path) -> io::Result<()> {
    for journal in std::fs::read_dir(journals)? {
        let journal = journal?;
        if !journal.file_type()?.is_dir() {
            continue;
        }
        let directory = journal.path();
        if let Err(e) = recover_one(root, &directory) {
            tracing::error!(journal = %directory.display(), error = %e,
                "could not replay the journal of a store that did not close; left for the next store opened here");
        }
    }
    sync_directory(journals)
}

fn recover_one(root: &Path, directory: &Path) -> io::Result<()> {
    let lock = match File::open(directory.join("lock")) {
        Ok(lock) => lock,
        // Being removed by its owner or another recovery, or being created (the lock is
        // renamed into place last, already locked).
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match lock.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => return Ok(()),
        Err(std::fs::TryLockError::Error(e)) => return Err(e),
    }
    // Locked after another recovery removed it: its segments are retired or gone, so
    // what follows finds nothing to do.
    let replayed = replay(root, directory)?;
    if replayed > 0 {
        tracing::info!(journal = %directory.display(), replayed,
            "replayed the journal of a store that did not close");
    }
    // Stale for anyone who opened it before it goes.
    for index in 0..2 {
        match std::fs::OpenOptions::new()
            .write(true)
            .open(directory.join(index.to_string()))
        {
            Ok(segment) => write_header(&segment, RETIRED)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    match std::fs::remove_dir_all(directory) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Applies a journal's entries in order; returns how many keys it wrote.
fn replay(root: &Path, directory: &Path) -> io::Result<usize> {
    let mut segments = [
        read_segment(&directory.join("0"))?,
        read_segment(&directory.join("1"))?,
    ];
    segments.sort_by_key(|(generation, _)| *generation);
    let entries: Vec<Entry> = segments
        .into_iter()
        .flat_map(|(_, entries)| entries)
        .collect();
    let mut last_tombstone = std::collections::HashMap::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.kind == KIND_TOMBSTONE {
            last_tombstone.insert(entry.key.as_str(), index);
        }
    }
    let mut written = 0;
    let mut touched = Vec::new();
    for (index, entry) in entries.iter().enumerate() {
        if entry.kind != KIND_PUT
            || last_tombstone
                .get(entry.key.as_str())
                .is_some_and(|&tombstone| tombstone > index)
            // Written by this project, but never trust a path read back from disk.
            || crate::validate_key(&entry.key).is_err()
        {
            continue;
        }
        let path = root.join(&entry.key);
        let apply = match std::fs::symlink_metadata(&path) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => true,
            Err(e) => return Err(e),
            // Put there later (or unknowable): that one wins.
            Ok(metadata) if !entry.file.is(&metadata) => false,
            Ok(_) => std::fs::read(&path)? != entry.value,
        };
        if apply {
            crate::fs::FsStore::put_durably(&path, &entry.value)?;
            written += 1;
        }
        // Written here or not, its file and every directory up to the root (replay may
        // have made them) are made durable before the journal goes.
        touched.push(entry.key.as_str());
    }
    make_durable(root, touched.into_iter())?;
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_round_trip_and_a_torn_tail_ends_the_segment() {
        let directory = tempfile::tempdir().unwrap();
        let path = directory.path().join("0");
        let segment = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap();
        write_header(&segment, 7).unwrap();
        let file = FileIdentity {
            inode: 42,
            born_nanos: 1_765_000_000_123_456_789,
        };
        let first = encode_entry(7, KIND_PUT, file, "t/a/handles/x", b"value").unwrap();
        let second = encode_entry(
            7,
            KIND_TOMBSTONE,
            FileIdentity::default(),
            "t/a/handles/x",
            b"",
        )
        .unwrap();
        segment.write_all_at(&first, HEADER_BYTES).unwrap();
        let second_at = HEADER_BYTES + first.len() as u64;
        segment.write_all_at(&second, second_at).unwrap();
        let (generation, entries) = read_segment(&path).unwrap();
        assert_eq!(generation, 7);
        assert_eq!(entries.len(), 2);
        assert_eq!(
            (entries[0].kind, entries[0].file, entries[0].key.as_str()),
            (KIND_PUT, file, "t/a/handles/x")
        );
        assert_eq!(entries[0].value, b"value");
        assert_eq!(entries[1].kind, KIND_TOMBSTONE);

        // A torn second entry: only the first is valid.
        segment
            .write_all_at(&second[..second.len() - 1], second_at)
            .unwrap();
        segment.write_all_at(&[0xff], second_at + 5).unwrap();
        assert_eq!(read_segment(&path).unwrap().1.len(), 1);

        // Entries of another generation (a segment reused after retirement) are stale.
        write_header(&segment, 8).unwrap();
        assert_eq!(read_segment(&path).unwrap(), (8, Vec::new()));
        write_header(&segment, RETIRED).unwrap();
        assert_eq!(read_segment(&path).unwrap().0, RETIRED);
    }

    impl PartialEq for Entry {
        fn eq(&self, other: &Self) -> bool {
            (self.kind, self.file, &self.key, &self.value)
                == (other.kind, other.file, &other.key, &other.value)
        }
    }

    impl std::fmt::Debug for Entry {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "{}:{}@{:?}", self.kind, self.key, self.file)
        }
    }
}
