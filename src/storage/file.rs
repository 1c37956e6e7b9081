//! [`FileStorage`]: the data file on a real disk, driven by io_uring.
//!
//! Each call submits all of its I/O in one system call and returns only once every operation has
//! completed, so the caller's buffers are never used by the kernel after a call returns.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::{assert_aligned, AlignedBuffer, Storage, StorageError, Write};
use crate::constants::SECTOR_SIZE;
use crate::io::{Completion, IoLoop, Operation, SetupError};

/// Operations in flight at most: one window of writes plus its fdatasync.
const RING_ENTRIES: u32 = 128;

/// The most writes submitted together; a larger batch is written window by window.
const WINDOW_WRITES_MAX: usize = RING_ENTRIES as usize - 1;

/// The most bytes asked of one read or write: Linux transfers at most 2 GiB − 4 KiB per call,
/// and the ring's length field is a `u32`. Larger I/Os are split, as short ones are resumed.
const IO_SIZE_MAX: usize = 1 << 30;

/// The size of each zero-filling write at creation, and how many are in flight at once: large
/// enough to run at the disk's sequential bandwidth.
const FILL_WRITE_SIZE: usize = 1024 * 1024;
const FILL_WRITES_IN_FLIGHT: usize = 8;

/// A file with less than this many tenths of its size allocated is reported as sparse: a data
/// file is written in full at creation, so anything well below its size lost its allocation
/// (a tenth of slack covers filesystems that count blocks a little differently).
const SPARSE_ALLOCATED_TENTHS_MIN: u64 = 9;

/// The tag of the fdatasync that follows a window of writes (write tags are window indexes).
const SYNC_TAG: u64 = u64::MAX;

const _: () = assert!(FILL_WRITE_SIZE.is_multiple_of(SECTOR_SIZE));
const _: () = assert!(IO_SIZE_MAX.is_multiple_of(SECTOR_SIZE) && IO_SIZE_MAX <= u32::MAX as usize);
const _: () = assert!(FILL_WRITES_IN_FLIGHT <= WINDOW_WRITES_MAX);

/// How the data file is read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoMode {
    /// `O_DIRECT`: bypasses the page cache, so a write that `fdatasync` made durable is on the
    /// disk, and a failed sync cannot silently drop cached pages. For production.
    Direct,
    /// Through the page cache: for filesystems without `O_DIRECT` (tmpfs before Linux 6.6,
    /// ramfs, some network filesystems), in development only (`--development`).
    Buffered,
}

/// Why a data file could not be created or opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// `create` found a file at the path.
    #[error("data file {path} already exists; refusing to overwrite (remove it first)")]
    Exists {
        /// The data file.
        path: PathBuf,
    },
    /// `open` found no file at the path.
    #[error("data file {path} does not exist; create it first with `ledger format`")]
    NotFound {
        /// The data file.
        path: PathBuf,
    },
    /// `create` found no directory to create the file in.
    #[error("cannot create data file {path}: its directory does not exist")]
    DirectoryNotFound {
        /// The data file.
        path: PathBuf,
    },
    /// The file or its directory may not be read or written by this user.
    #[error("{path}: permission denied ({source}); check the owner and mode of the file and its directory")]
    PermissionDenied {
        /// The data file.
        path: PathBuf,
        /// The error from `open`.
        source: io::Error,
    },
    /// The filesystem refused `O_DIRECT`.
    #[error(
        "{path}: the filesystem does not support O_DIRECT ({source}); use --development to allow \
         buffered I/O"
    )]
    DirectIoUnsupported {
        /// The data file.
        path: PathBuf,
        /// The error from `open` (EINVAL).
        source: io::Error,
    },
    /// Another process has the data file open (a running replica, or `inspect`).
    #[error("data file {path} is in use by another process (is a replica running on it?)")]
    InUse {
        /// The data file.
        path: PathBuf,
    },
    /// The path names a directory, device or other non-regular file.
    #[error(
        "{path} is not a regular file (it is {kind}); a data file is a regular file made by `ledger format`"
    )]
    NotAFile {
        /// The data file.
        path: PathBuf,
        /// What it is instead: "a directory", "a character device", "a FIFO", ...
        kind: &'static str,
    },
    /// io_uring, which all I/O goes through, cannot be used.
    #[error("cannot use data file {path}: {source}")]
    IoUringUnavailable {
        /// The data file.
        path: PathBuf,
        /// Why.
        source: SetupError,
    },
    /// `create` could not write zeros over the new file (for example, the disk is full); the
    /// partial file is removed.
    #[error("writing zeros over the new data file {path} failed: {source}")]
    Fill {
        /// The data file.
        path: PathBuf,
        /// The failed write or sync; `StorageError::NoSpace` when the disk is full.
        source: StorageError,
    },
    /// Another operating-system error.
    #[error("{operation} {path} failed: {source}")]
    Io {
        /// The data file.
        path: PathBuf,
        /// What failed, for example "open" or "sync the directory of".
        operation: &'static str,
        /// The error.
        source: io::Error,
    },
}

impl Drop for FileStorage {
    /// Releases the lock now: the ring's teardown may keep the file referenced a while longer.
    fn drop(&mut self) {
        // SAFETY: `flock` on the descriptor this storage owns; no memory is involved.
        unsafe { libc::flock(self.file.as_raw_fd(), libc::LOCK_UN) };
    }
}

/// A data file of fixed size, read and written through io_uring.
pub struct FileStorage {
    // Declared before `file` so that the ring, which waits for in-flight I/O when dropped, goes
    // first, while the descriptor is still open.
    ring: IoLoop,
    file: File,
    path: PathBuf,
    size: u64,
    /// The bytes the filesystem has allocated to the file (`st_blocks × 512`) when opened.
    allocated_size: u64,
    mode: IoMode,
    /// Bytes written so far by each write of the current window, indexed by tag.
    window_progress: Box<[usize]>,
    /// Set by a failed fdatasync, after which nothing written can be trusted.
    sync_failed: bool,
}

impl FileStorage {
    /// Creates the data file at `path` with `size` bytes of zeros, and makes it durable.
    ///
    /// Refuses to overwrite an existing file. Writing zeros over the whole file once makes
    /// every later write an overwrite of allocated blocks, which the filesystem syncs without a
    /// metadata update (measured: about twice as fast as writing into a growing or
    /// fallocated file). On failure, no file is left behind.
    pub fn create(path: impl AsRef<Path>, size: u64, mode: IoMode) -> Result<FileStorage, OpenError> {
        FileStorage::create_announced(path, size, mode, || {})
    }

    /// [`FileStorage::create`], calling `created` once the file exists and is locked, just before
    /// the zeros are written: so that a caller announces the (long) work only once it really
    /// starts, and never before an error such as [`OpenError::Exists`].
    pub fn create_announced(
        path: impl AsRef<Path>,
        size: u64,
        mode: IoMode,
        created: impl FnOnce(),
    ) -> Result<FileStorage, OpenError> {
        let path = path.as_ref();
        assert!(size > 0 && size.is_multiple_of(SECTOR_SIZE as u64), "bad data file size {size}");
        // The ring first: without io_uring there is no point in creating the file.
        let ring = new_ring(path)?;
        let file = open_file(path, mode, true)?;
        created();
        // Every byte is written below, so all of it is allocated.
        let mut storage = FileStorage::new(ring, file, path, size, size, mode);
        if let Err(source) = storage.fill_with_zeros() {
            drop(storage);
            // Best effort: a partial data file is useless, and would make a retry fail with
            // `Exists`.
            let _ = std::fs::remove_file(path);
            return Err(OpenError::Fill { path: path.to_path_buf(), source });
        }
        sync_directory_of(path)?;
        Ok(storage)
    }

    /// Opens the existing data file at `path`; its size is the file's size.
    pub fn open(path: impl AsRef<Path>, mode: IoMode) -> Result<FileStorage, OpenError> {
        let path = path.as_ref();
        // Checked before `open`, whose errors for these are misleading: EINVAL for O_DIRECT on
        // /dev/null or a FIFO (not the filesystem's fault), EISDIR for a directory. Checked
        // again on the opened file below, which is what counts.
        if let Ok(metadata) = std::fs::metadata(path) {
            if !metadata.is_file() {
                return Err(OpenError::NotAFile { path: path.to_path_buf(), kind: file_kind(&metadata) });
            }
        }
        let ring = new_ring(path)?;
        let file = open_file(path, mode, false)?;
        let metadata = file.metadata().map_err(|source| OpenError::Io {
            path: path.to_path_buf(),
            operation: "read the metadata of",
            source,
        })?;
        if !metadata.is_file() {
            return Err(OpenError::NotAFile { path: path.to_path_buf(), kind: file_kind(&metadata) });
        }
        let allocated_size = std::os::unix::fs::MetadataExt::blocks(&metadata).saturating_mul(512);
        Ok(FileStorage::new(ring, file, path, metadata.len(), allocated_size, mode))
    }

    /// The bytes the filesystem had allocated to the file when it was opened (`st_blocks ×
    /// 512`); see [`FileStorage::is_sparse`].
    pub fn allocated_size(&self) -> u64 {
        self.allocated_size
    }

    /// True if far fewer bytes are allocated than the file's size: a copy that lost its
    /// preallocation (`cp --sparse=always`, a file extended with `truncate`), whose holes are
    /// allocated only when first written — so a later write can fail with ENOSPC and stop the
    /// replica mid-write, although `format` had reserved the space.
    ///
    /// Filesystems that compress or deduplicate (ZFS, btrfs with compression) also store zeros
    /// in almost no blocks, so this is a warning sign, not proof.
    pub fn is_sparse(&self) -> bool {
        self.allocated_size < self.size / 10 * SPARSE_ALLOCATED_TENTHS_MIN
    }

    /// The path the file was opened at.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How the file is read and written.
    pub fn mode(&self) -> IoMode {
        self.mode
    }

    fn new(
        ring: IoLoop,
        file: File,
        path: &Path,
        size: u64,
        allocated_size: u64,
        mode: IoMode,
    ) -> FileStorage {
        FileStorage {
            ring,
            file,
            path: path.to_path_buf(),
            size,
            allocated_size,
            mode,
            window_progress: vec![0; WINDOW_WRITES_MAX].into_boxed_slice(),
            sync_failed: false,
        }
    }

    fn fd(&self) -> RawFd {
        self.file.as_raw_fd()
    }

    fn fill_with_zeros(&mut self) -> Result<(), StorageError> {
        let zeros = AlignedBuffer::new(FILL_WRITE_SIZE);
        let mut offset = 0;
        while offset < self.size {
            // Several writes from the same buffer: the kernel only reads it.
            let mut writes = [Write { offset: 0, data: &[] }; FILL_WRITES_IN_FLIGHT];
            let mut count = 0;
            while count < FILL_WRITES_IN_FLIGHT && offset < self.size {
                let size = FILL_WRITE_SIZE.min(usize::try_from(self.size - offset).unwrap_or(usize::MAX));
                writes[count] = Write { offset, data: &zeros[..size] };
                offset += size as u64;
                count += 1;
            }
            self.write(&writes[..count])?;
        }
        self.sync()
    }

    fn check_writes(&self, writes: &[Write<'_>]) {
        assert!(!self.sync_failed, "{}: I/O after a failed fdatasync", self.path.display());
        for write in writes {
            assert_aligned(write.offset, write.data);
            let end = write.offset.checked_add(write.data.len() as u64);
            assert!(end.is_some_and(|end| end <= self.size), "write at {} past the end", write.offset);
        }
    }

    /// Writes one window of at most `WINDOW_WRITES_MAX` writes and, if `sync`, an fdatasync
    /// after all of them, in one submission. Short writes are resumed from where they stopped.
    ///
    /// The fdatasync is queued with `IOSQE_IO_DRAIN` rather than linked: a link chain runs its
    /// writes one after another, and a short write would cancel the rest of the chain. Drained,
    /// the writes run concurrently and the sync starts once all have completed, whatever their
    /// results; a failed write is then reported as an error even though the sync succeeded, and
    /// a resumed short write (which runs after the sync) is followed by a second sync. The
    /// ring belongs to this file alone, so the drain waits for nothing else.
    fn write_window(&mut self, writes: &[Write<'_>], sync: bool) -> Result<(), StorageError> {
        assert!(writes.len() <= WINDOW_WRITES_MAX);
        for (index, write) in writes.iter().enumerate() {
            self.window_progress[index] = 0;
            if !write.data.is_empty() {
                self.queue_write(index, write);
            }
        }
        if sync {
            let operation = Operation::Fsync { fd: self.fd() };
            // SAFETY: an fdatasync points to no memory; the file outlives the operation.
            let queued = unsafe { self.ring.queue_after_all(SYNC_TAG, operation) };
            assert!(queued.is_ok(), "the ring holds a window and its sync");
        }
        let mut write_error = None;
        let mut sync_error = None;
        let mut resumed = false;
        while self.ring.in_flight_count() > 0 {
            let completion = self.wait_for_completion();
            if completion.tag == SYNC_TAG {
                sync_error = completion.outcome().err();
                continue;
            }
            let index = usize::try_from(completion.tag).expect("write tags are window indexes");
            match self.write_completed(&writes[index], index, completion) {
                Ok(true) if write_error.is_none() => {
                    self.queue_write(index, &writes[index]);
                    resumed = true;
                }
                Ok(_) => {}
                Err(error) => write_error = write_error.or(Some(error)),
            }
        }
        // A failed sync comes first: it is fatal, a failed write is not.
        if let Some(source) = sync_error {
            self.sync_failed = true;
            return Err(StorageError::SyncFailed { source });
        }
        if let Some(error) = write_error {
            return Err(error);
        }
        if sync && resumed {
            self.sync()?;
        }
        Ok(())
    }

    /// Accounts one write completion; returns whether the write has bytes left to write.
    fn write_completed(
        &mut self,
        write: &Write<'_>,
        index: usize,
        completion: Completion,
    ) -> Result<bool, StorageError> {
        let done = self.window_progress[index];
        let offset = write.offset + done as u64;
        let size = write.data.len() - done;
        match completion.outcome() {
            Err(source) => Err(write_error(offset, size, source)),
            // A write that makes no progress would be resumed forever.
            Ok(0) => Err(StorageError::Io {
                operation: "write",
                offset,
                size,
                source: io::Error::from(io::ErrorKind::WriteZero),
            }),
            Ok(written) => {
                self.window_progress[index] = done + written as usize;
                assert!(self.window_progress[index] <= write.data.len());
                Ok(self.window_progress[index] < write.data.len())
            }
        }
    }

    /// Queues what is left of write `index` of the window (all of it, at first).
    fn queue_write(&mut self, index: usize, write: &Write<'_>) {
        let done = self.window_progress[index];
        let rest = &write.data[done..];
        let operation = Operation::Write {
            fd: self.fd(),
            offset: write.offset + done as u64,
            buffer: rest.as_ptr(),
            size: rest.len().min(IO_SIZE_MAX) as u32,
        };
        // SAFETY: `write.data` is borrowed for the whole call that queued it, and that call
        // returns only once the ring has no operation in flight; the file outlives the ring.
        let queued = unsafe { self.ring.queue(index as u64, operation) };
        assert!(queued.is_ok(), "the ring holds a window and its sync");
    }

    /// Submits what is queued and pops one completion, waiting for it if need be.
    fn wait_for_completion(&mut self) -> Completion {
        loop {
            if let Some(completion) = self.ring.pop_completion() {
                return completion;
            }
            if let Err(error) = self.ring.submit_and_wait(1) {
                // The kernel may still read or write the caller's buffers: neither returning an
                // error nor unwinding (which frees them) is safe.
                eprintln!(
                    "{}: io_uring_enter failed with {} operations in flight: {error}; aborting",
                    self.path.display(),
                    self.ring.in_flight_count()
                );
                std::process::abort();
            }
        }
    }
}

/// The file's descriptor, for a loop that carries out the journal's writes on its own ring.
impl AsRawFd for FileStorage {
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

impl Storage for FileStorage {
    fn size(&self) -> u64 {
        self.size
    }

    /// Fills `buffer` from `offset`, resuming short reads; a read that reaches the end of the
    /// file first is a `ShortRead`.
    fn read(&mut self, offset: u64, buffer: &mut [u8]) -> Result<(), StorageError> {
        assert!(!self.sync_failed, "{}: I/O after a failed fdatasync", self.path.display());
        assert_aligned(offset, buffer);
        let mut done = 0;
        while done < buffer.len() {
            let rest = &mut buffer[done..];
            let operation = Operation::Read {
                fd: self.fd(),
                offset: offset + done as u64,
                buffer: rest.as_mut_ptr(),
                size: rest.len().min(IO_SIZE_MAX) as u32,
            };
            // SAFETY: `buffer` is borrowed mutably until this function returns, and it returns
            // only after the read's completion; the file outlives the ring.
            let queued = unsafe { self.ring.queue(0, operation) };
            assert!(queued.is_ok(), "the ring is empty between calls");
            match self.wait_for_completion().outcome() {
                Err(source) => {
                    let size = buffer.len() - done;
                    return Err(StorageError::Io {
                        operation: "read",
                        offset: offset + done as u64,
                        size,
                        source,
                    });
                }
                Ok(0) => return Err(StorageError::ShortRead { offset, size: buffer.len(), read: done }),
                Ok(read) => done += read as usize,
            }
        }
        assert_eq!(done, buffer.len());
        Ok(())
    }

    fn write(&mut self, writes: &[Write<'_>]) -> Result<(), StorageError> {
        self.check_writes(writes);
        for window in writes.chunks(WINDOW_WRITES_MAX) {
            self.write_window(window, false)?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        assert!(!self.sync_failed, "{}: I/O after a failed fdatasync", self.path.display());
        // SAFETY: an fdatasync points to no memory; the file outlives the ring.
        let queued = unsafe { self.ring.queue(SYNC_TAG, Operation::Fsync { fd: self.fd() }) };
        assert!(queued.is_ok(), "the ring is empty between calls");
        if let Err(source) = self.wait_for_completion().outcome() {
            self.sync_failed = true;
            return Err(StorageError::SyncFailed { source });
        }
        Ok(())
    }

    /// Submits the writes and the fdatasync together (the sync drained behind the writes).
    fn write_and_sync(&mut self, writes: &[Write<'_>]) -> Result<(), StorageError> {
        self.check_writes(writes);
        if writes.is_empty() {
            return self.sync();
        }
        let window_count = writes.len().div_ceil(WINDOW_WRITES_MAX);
        for (window_index, window) in writes.chunks(WINDOW_WRITES_MAX).enumerate() {
            // Earlier windows are complete before the last one starts, so one sync behind the
            // last window covers them all.
            self.write_window(window, window_index + 1 == window_count)?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for FileStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileStorage")
            .field("path", &self.path)
            .field("size", &self.size)
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

fn new_ring(path: &Path) -> Result<IoLoop, OpenError> {
    IoLoop::new(RING_ENTRIES)
        .map_err(|source| OpenError::IoUringUnavailable { path: path.to_path_buf(), source })
}

fn open_file(path: &Path, mode: IoMode, create: bool) -> Result<File, OpenError> {
    let mut options = OpenOptions::new();
    options.read(true).write(true).create_new(create);
    if mode == IoMode::Direct {
        options.custom_flags(libc::O_DIRECT);
    }
    let file = options.open(path).map_err(|source| open_error(path, mode, create, source))?;
    // Two processes writing one data file would corrupt it: the first holds an exclusive lock
    // for as long as it has the file open (the kernel drops it when the process dies).
    // A process that just exited may still hold the lock for a moment while the kernel tears
    // down its io_uring (which keeps file references until then): retry briefly. A live
    // holder keeps it far longer and is reported.
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1000);
    loop {
        // SAFETY: `flock` on a descriptor we own; no memory is involved.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Ok(file);
        }
        let source = io::Error::last_os_error();
        if source.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(OpenError::Io { path: path.to_path_buf(), operation: "lock", source });
        }
        if std::time::Instant::now() >= deadline {
            return Err(OpenError::InUse { path: path.to_path_buf() });
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// What a non-regular file is, for [`OpenError::NotAFile`].
fn file_kind(metadata: &std::fs::Metadata) -> &'static str {
    use std::os::unix::fs::FileTypeExt;
    let file_type = metadata.file_type();
    if file_type.is_dir() {
        "a directory"
    } else if file_type.is_char_device() {
        "a character device"
    } else if file_type.is_block_device() {
        "a block device"
    } else if file_type.is_fifo() {
        "a FIFO"
    } else if file_type.is_socket() {
        "a socket"
    } else {
        "a special file"
    }
}

fn open_error(path: &Path, mode: IoMode, create: bool, source: io::Error) -> OpenError {
    let path_buf = path.to_path_buf();
    if source.raw_os_error() == Some(libc::EISDIR) {
        return OpenError::NotAFile { path: path_buf, kind: "a directory" };
    }
    match source.kind() {
        io::ErrorKind::AlreadyExists => OpenError::Exists { path: path_buf },
        io::ErrorKind::NotFound if create => OpenError::DirectoryNotFound { path: path_buf },
        io::ErrorKind::NotFound => OpenError::NotFound { path: path_buf },
        io::ErrorKind::PermissionDenied => OpenError::PermissionDenied { path: path_buf, source },
        _ if mode == IoMode::Direct && source.raw_os_error() == Some(libc::EINVAL) => {
            if create {
                // The kernel creates the file before it checks O_DIRECT, and O_EXCL proves
                // the file is ours: remove it, so that a retry in buffered mode can create it.
                let _ = std::fs::remove_file(path);
            }
            OpenError::DirectIoUnsupported { path: path_buf, source }
        }
        _ => OpenError::Io { path: path_buf, operation: "open", source },
    }
}

/// Makes the new file's directory entry durable: without this, a crash could lose the file
/// itself although its contents were synced.
fn sync_directory_of(path: &Path) -> Result<(), OpenError> {
    let directory = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    File::open(directory).and_then(|directory| directory.sync_all()).map_err(|source| OpenError::Io {
        path: path.to_path_buf(),
        operation: "sync the directory of",
        source,
    })
}

/// A failed write as a [`StorageError`]: a full disk or file-size limit is [`StorageError::NoSpace`].
pub(crate) fn write_error(offset: u64, size: usize, source: io::Error) -> StorageError {
    match source.raw_os_error() {
        Some(libc::ENOSPC | libc::EFBIG | libc::EDQUOT) => StorageError::NoSpace { offset, size, source },
        _ => StorageError::Io { operation: "write", offset, size, source },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_disk_and_file_size_limit_errors_are_no_space() {
        for errno in [libc::ENOSPC, libc::EFBIG, libc::EDQUOT] {
            let error = write_error(8192, 4096, io::Error::from_raw_os_error(errno));
            assert!(matches!(error, StorageError::NoSpace { offset: 8192, size: 4096, .. }), "{error}");
        }
        let error = write_error(0, 4096, io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(error, StorageError::Io { operation: "write", offset: 0, size: 4096, .. }));
    }

    #[test]
    fn open_errors_name_the_path_and_what_to_do() {
        let path = Path::new("/nonexistent/ledger.data");
        let einval = || io::Error::from_raw_os_error(libc::EINVAL);
        let direct = open_error(path, IoMode::Direct, false, einval());
        assert!(matches!(direct, OpenError::DirectIoUnsupported { .. }));
        assert!(direct.to_string().contains("/nonexistent/ledger.data"), "{direct}");
        assert!(direct.to_string().contains("--development"), "{direct}");
        // In buffered mode EINVAL has nothing to do with O_DIRECT.
        assert!(matches!(open_error(path, IoMode::Buffered, false, einval()), OpenError::Io { .. }));
        let missing = || io::Error::from_raw_os_error(libc::ENOENT);
        assert!(matches!(open_error(path, IoMode::Direct, false, missing()), OpenError::NotFound { .. }));
        let no_directory = open_error(path, IoMode::Direct, true, missing());
        assert!(matches!(no_directory, OpenError::DirectoryNotFound { .. }));
        let exists = open_error(path, IoMode::Direct, true, io::Error::from_raw_os_error(libc::EEXIST));
        assert_eq!(
            exists.to_string(),
            "data file /nonexistent/ledger.data already exists; refusing to overwrite (remove it first)"
        );
        let denied = open_error(path, IoMode::Direct, true, io::Error::from_raw_os_error(libc::EACCES));
        assert!(matches!(denied, OpenError::PermissionDenied { .. }));
    }
}
