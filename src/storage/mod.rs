//! The data file as the replica sees it: a fixed-size array of sectors that can be read,
//! written and made durable. Two implementations share the [`Storage`] trait: [`FileStorage`]
//! (a real file, `O_DIRECT`, driven by io_uring) and [`SimStorage`] (deterministic, in memory,
//! with crashes, torn, lost, misdirected and corrupted writes for tests).
//!
//! Every offset, length and buffer address is a multiple of [`SECTOR_SIZE`]: direct I/O
//! requires it, and the simulator tears writes at sector boundaries as a real disk may.

mod aligned;
mod file;
pub mod layout;
mod sim;

pub use aligned::AlignedBuffer;
pub(crate) use file::write_error;
pub use file::{FileStorage, IoMode, OpenError};
pub use sim::{CrashMode, SimFaultCounts, SimFaults, SimLatency, SimStorage};

use crate::constants::SECTOR_SIZE;

/// One write of a batch: `data` at byte `offset` of the file.
#[derive(Clone, Copy, Debug)]
pub struct Write<'a> {
    /// Byte offset in the file; sector-aligned.
    pub offset: u64,
    /// The bytes; sector-aligned address and length.
    pub data: &'a [u8],
}

/// Why an I/O failed.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The operating system failed a read or write.
    #[error("{operation} of {size} bytes at offset {offset} failed: {source}")]
    Io {
        /// "read", "write" or "fdatasync".
        operation: &'static str,
        /// The file offset.
        offset: u64,
        /// The size of the I/O.
        size: usize,
        /// The error from the kernel.
        source: std::io::Error,
    },
    /// The disk (or the file size limit) is full.
    #[error("no space left for a write of {size} bytes at offset {offset}: {source}")]
    NoSpace {
        /// The file offset.
        offset: u64,
        /// The size of the write.
        size: usize,
        /// The error from the kernel (ENOSPC, EFBIG or EDQUOT).
        source: std::io::Error,
    },
    /// A read returned fewer bytes than asked: the file is shorter than its layout says.
    #[error(
        "read of {size} bytes at offset {offset} returned only {read} bytes: the data file is truncated"
    )]
    ShortRead {
        /// The file offset.
        offset: u64,
        /// The size asked.
        size: usize,
        /// The bytes read.
        read: usize,
    },
    /// `fdatasync` failed: the kernel may have dropped the written pages, so nothing written
    /// since the last successful sync can be trusted. The process must stop.
    #[error("fdatasync failed: {source}; stopping, because the kernel may have dropped unsynced writes")]
    SyncFailed {
        /// The error from the kernel.
        source: std::io::Error,
    },
    /// The simulator crashed the process at this I/O (tests only).
    #[error("simulated crash")]
    Crashed,
    /// The simulator failed this read (tests only).
    #[error("simulated read fault at offset {offset}")]
    ReadFault {
        /// The file offset.
        offset: u64,
    },
}

impl StorageError {
    /// True if a read failed on the medium (`EIO`: a latent sector error, or the simulator's
    /// read fault): the sectors read are unreadable, which recovery treats as damage, to be
    /// repaired from a peer in a cluster, rather than as a failure of the process.
    pub fn is_media_read_error(&self) -> bool {
        match self {
            StorageError::Io { operation: "read", source, .. } => source.raw_os_error() == Some(libc::EIO),
            StorageError::ReadFault { .. } => true,
            _ => false,
        }
    }
}

/// A fixed-size, sector-addressed, durable byte array.
pub trait Storage {
    /// The size of the storage in bytes.
    fn size(&self) -> u64;

    /// Fills `buffer` from `offset`.
    fn read(&mut self, offset: u64, buffer: &mut [u8]) -> Result<(), StorageError>;

    /// Writes every entry of `writes`, submitted together; on return all are written (not
    /// necessarily durable). Writes of one batch must not overlap.
    fn write(&mut self, writes: &[Write<'_>]) -> Result<(), StorageError>;

    /// Makes every completed write durable (`fdatasync`).
    fn sync(&mut self) -> Result<(), StorageError>;

    /// Writes `writes` and then syncs; an implementation may submit both at once.
    fn write_and_sync(&mut self, writes: &[Write<'_>]) -> Result<(), StorageError> {
        self.write(writes)?;
        self.sync()
    }
}

/// Asserts the direct-I/O alignment rules for one I/O (programmer errors, not input errors).
pub fn assert_aligned(offset: u64, buffer: &[u8]) {
    assert!(offset.is_multiple_of(SECTOR_SIZE as u64), "offset {offset} is not sector-aligned");
    assert!(buffer.len().is_multiple_of(SECTOR_SIZE), "length {} is not sector-aligned", buffer.len());
    assert!((buffer.as_ptr() as usize).is_multiple_of(SECTOR_SIZE), "buffer is not sector-aligned");
}
