//! Write stages: how the replica hands its writes to the loop around it without doing I/O.
//!
//! The replica writes three independent streams: the journal (prepares and their redundant
//! headers), the grid (the checkpoint in progress: pages, manifest, superblock copies) and the
//! client replies (each session's latest reply, in its slot). Each stream has at most one
//! stage in flight: the replica fills a list of writes whose buffers it will not touch until
//! the stage ends, the loop carries them out in any order (on io_uring, on the simulated disk,
//! or here and now), then an `fdatasync` if the stage asks for one, and ends the stage. A
//! failed write or sync is fatal: the process stops (see `StorageError::SyncFailed`).
//!
//! Streams overlap: a journal stage may be in flight while a grid stage is. Nothing in one
//! stream waits on another's I/O, except where the replica says so before it begins a stage
//! (a checkpoint's final sync waits until the replies it names are written).

use super::checkpoint::GRID_STAGE_WRITES_MAX;
use super::journal::JOURNAL_STAGE_WRITES_MAX;
use crate::constants::CLIENTS_MAX;

/// The replica's write streams.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stream {
    /// Prepares and redundant headers; every stage ends with an `fdatasync`.
    Journal,
    /// The checkpoint in progress.
    Grid,
    /// Client reply slots; never synced on their own (a checkpoint's sync covers them, and the
    /// WAL can regenerate any reply a durable checkpoint does not yet cover).
    Replies,
}

/// Every stream, in the order the loop offers them stages.
pub const STREAMS: [Stream; 3] = [Stream::Journal, Stream::Grid, Stream::Replies];

impl Stream {
    /// The stream's index in [`STREAMS`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A stage to carry out: `count` writes (the first `count` of the list filled), then an
/// `fdatasync` if `sync`. A stage may have no writes (a sync alone) but never neither.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stage {
    /// Writes filled in.
    pub count: usize,
    /// An `fdatasync` follows the writes.
    pub sync: bool,
}

impl Stage {
    /// A stage of `count` writes, then a sync if `sync`.
    pub fn new(count: usize, sync: bool) -> Stage {
        assert!(count > 0 || sync, "an empty stage");
        assert!(count <= STAGE_WRITES_MAX);
        Stage { count, sync }
    }
}

/// The most reply writes of one stage: every session's slot at once.
pub const REPLIES_STAGE_WRITES_MAX: usize = CLIENTS_MAX as usize;

/// The most writes of any stage: the length of the list the loop hands to `stage_begin`.
pub const STAGE_WRITES_MAX: usize = {
    let mut max = JOURNAL_STAGE_WRITES_MAX;
    if GRID_STAGE_WRITES_MAX > max {
        max = GRID_STAGE_WRITES_MAX;
    }
    if REPLIES_STAGE_WRITES_MAX > max {
        max = REPLIES_STAGE_WRITES_MAX;
    }
    max
};
