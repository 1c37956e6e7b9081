//! The undo log of an open linked chain: what to restore if a later event of the chain fails.
//!
//! Only chained events record undo entries, so unlinked events pay nothing. Inserts are undone
//! by removing the newest object (objects are appended in timestamp order, and a chain's objects
//! are the newest), updates by restoring the saved record.

use crate::constants::PULSE_EXPIRIES_MAX;
use crate::types::{Account, TransferPendingStatus};

/// One change made by a chained event.
#[derive(Clone, Copy, Debug)]
pub enum Undo {
    /// An account was appended.
    AccountInserted,
    /// A transfer was appended.
    TransferInserted,
    /// An account's balances or flags changed; `old` is the record before.
    Account {
        /// The account's index.
        index: u32,
        /// The account before the change.
        old: Account,
    },
    /// A pending transfer's status changed.
    PendingStatus {
        /// The pending transfer's index.
        index: u32,
        /// The status before the change.
        old: TransferPendingStatus,
    },
}

/// The most undo entries one event records: a transfer insert, two account updates and a
/// pending status change.
const UNDO_PER_EVENT_MAX: usize = 4;

/// A fixed-capacity log of [`Undo`] entries for the chain being executed.
pub struct UndoLog {
    entries: Vec<Undo>,
    recording: bool,
}

impl UndoLog {
    /// An empty log with room for a chain spanning a whole batch.
    pub fn new() -> UndoLog {
        UndoLog { entries: Vec::with_capacity(PULSE_EXPIRIES_MAX * UNDO_PER_EVENT_MAX), recording: false }
    }

    /// True while a chain is open and its changes must be recorded.
    pub fn recording(&self) -> bool {
        self.recording
    }

    /// Starts recording a new chain.
    pub fn begin(&mut self) {
        assert!(!self.recording);
        assert!(self.entries.is_empty());
        self.recording = true;
    }

    /// Ends the chain, keeping its changes.
    pub fn commit(&mut self) {
        assert!(self.recording);
        self.entries.clear();
        self.recording = false;
    }

    /// Stops recording to roll the chain back: the caller then undoes [`UndoLog::pop`]'s
    /// entries, newest first, until it returns `None`.
    pub fn abort(&mut self) {
        assert!(self.recording);
        self.recording = false;
    }

    /// The newest entry not yet undone (only after [`UndoLog::abort`]).
    pub fn pop(&mut self) -> Option<Undo> {
        assert!(!self.recording);
        self.entries.pop()
    }

    /// Records one change.
    pub fn push(&mut self, entry: Undo) {
        assert!(self.recording);
        assert!(self.entries.len() < self.entries.capacity());
        self.entries.push(entry);
    }
}
