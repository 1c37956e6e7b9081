//! `ledger inspect`: what an operator needs to see when something is wrong — every superblock
//! copy, the checkpoint, a slot-by-slot summary of the WAL, the client replies — and every
//! checksum verified, read without changing anything.
//!
//! It decides as `start` does, by running the same code: the superblock choice
//! ([`SuperBlock::read`]), the checkpoint's blocks ([`Grid::verify`], which reads like
//! [`Grid::open`] but reports every damaged block), the restore of the state, and WAL recovery
//! ([`Journal::recover`], which only reads the disk). On top of that it looks at what `start`
//! does not need but a disk should not lose: every WAL slot against the redundant headers ring,
//! and the reply of every live session. Each finding is an error (`start` would refuse the
//! file, or data is corrupt) or a warning (a torn write that recovery cuts, reduced
//! redundancy); `ledger inspect` exits non-zero if there is any error.

use std::fmt;

use super::checkpoint::{BlockRole, CheckpointError, Grid, RECORD_SIZES};
use super::client_table::{ClientSession, CLIENT_SESSION_SIZE};
use super::data_file::DataFileError;
use super::header::{Command, Header};
use super::journal::{Journal, JournalError, SlotRead, ViewHead, APPEND_PREPARES_MAX};
use super::superblock::SuperBlock;
use crate::constants::{HEADER_SIZE, SECTOR_SIZE};
use crate::operation::Operation;
use crate::state_machine::StateMachine;
use crate::storage::layout::{Layout, REPLY_SIZE_MAX, SUPERBLOCK_COPIES};
use crate::storage::{AlignedBuffer, Storage, StorageError};

/// The checkpointed array of client sessions (after the state machine's).
const SESSIONS_ARRAY: usize = RECORD_SIZES.len() - 1;

/// How bad a finding is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Worth knowing, but `start` serves the file and no acknowledged data is lost.
    Warning,
    /// `start` would refuse the file, or data on it is corrupt.
    Error,
}

/// One thing `inspect` found wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    /// How bad it is.
    pub severity: Severity,
    /// What and where (op, slot, file offset, block address), and what it means.
    pub message: String,
}

/// What `inspect` found.
#[derive(Debug)]
pub struct Report {
    /// Per copy: `Some(superblock)` if intact.
    pub copies: Vec<Option<SuperBlock>>,
    /// The superblock a replica would use.
    pub superblock: SuperBlock,
    /// Copies identical to the superblock in force.
    pub copies_in_force: usize,
    /// Checkpoint blocks (manifest and pages) that verified.
    pub blocks_verified: u64,
    /// xxh3-128 of the checkpointed state's records, array after array (accounts, transfers,
    /// pending statuses, history, burned ids, client sessions), if every block verified: the
    /// same on every replica at the same checkpoint op exactly when their states are the same,
    /// wherever their grids placed the blocks.
    pub state_checksum: Option<u128>,
    /// WAL slots holding a reserved (never written) header.
    pub slots_empty: u64,
    /// WAL slots holding an intact prepare.
    pub slots_intact: u64,
    /// WAL slots that are torn or corrupted: (slot, file offset).
    pub slots_damaged: Vec<(u64, u64)>,
    /// The lowest and highest op among intact prepares.
    pub ops_intact: Option<(u64, u64)>,
    /// Redundant headers that verify.
    pub headers_valid: u64,
    /// Ops after the checkpoint that chain from it without a break (what `start` replays).
    pub ops_replayable: u64,
    /// Live client sessions, and how many of their replies verified.
    pub sessions_live: u64,
    /// See `sessions_live`.
    pub replies_intact: u64,
    /// Everything wrong, in the order found.
    pub findings: Vec<Finding>,
}

impl Report {
    /// The findings that make `inspect` fail.
    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|finding| finding.severity == Severity::Error)
    }

    fn error(&mut self, message: String) {
        self.findings.push(Finding { severity: Severity::Error, message });
    }

    fn warning(&mut self, message: String) {
        self.findings.push(Finding { severity: Severity::Warning, message });
    }
}

/// What the WAL replay (as `start` would run it) touched.
#[derive(Default)]
struct Replay {
    /// The last op of the hash chain from the checkpoint.
    op_head: u64,
    /// The clients of replayed prepares: their reply slots are rewritten at `start`.
    clients: Vec<u128>,
    /// Whether a replayed prepare registers a client (which may evict any session).
    registers: bool,
}

/// Reads a data file, verifies everything it can, and summarises it. Fails only if the file
/// cannot be read as a data file at all (no usable superblock, truncated, I/O errors).
pub fn inspect(storage: &mut dyn Storage) -> Result<Report, DataFileError> {
    let (copies, superblock) = SuperBlock::read(storage)?;
    let layout = superblock.layout();
    if storage.size() < layout.file_size() {
        return Err(DataFileError::Truncated { size: storage.size(), needed: layout.file_size() });
    }
    let copies_in_force = copies.iter().flatten().filter(|copy| copy.checksum == superblock.checksum).count();
    let mut report = Report {
        copies,
        superblock,
        copies_in_force,
        blocks_verified: 0,
        state_checksum: None,
        slots_empty: 0,
        slots_intact: 0,
        slots_damaged: Vec::new(),
        ops_intact: None,
        headers_valid: 0,
        ops_replayable: 0,
        sessions_live: 0,
        replies_intact: 0,
        findings: Vec::new(),
    };
    check_superblock(&mut report);
    let sessions = check_checkpoint(storage, &mut report)?;
    let replay = check_wal(storage, &mut report)?;
    check_replies(storage, &mut report, &sessions, &replay)?;
    Ok(report)
}

/// Redundancy of the superblock, and what `start` refuses in it.
fn check_superblock(report: &mut Report) {
    let copies_total = SUPERBLOCK_COPIES as usize;
    if report.copies_in_force < copies_total {
        // Not an error: a torn superblock update leaves exactly this, and the next update
        // (every checkpoint) rewrites all four copies. But one or two more losses make the
        // file unusable.
        let others: Vec<String> = (0..copies_total)
            .filter(|copy| {
                report.copies[*copy].is_none_or(|other| other.checksum != report.superblock.checksum)
            })
            .map(|copy| format!("{copy} (offset {})", Layout::superblock_offset(copy as u64)))
            .collect();
        report.warning(format!(
            "superblock redundancy reduced: {} of {copies_total} copies intact (not in force: copy {}); \
             the next checkpoint rewrites all of them",
            report.copies_in_force,
            others.join(", copy ")
        ));
    }
}

/// Verifies every block of the checkpoint and restores its state as `start` would; returns
/// the checkpointed client sessions (none if the checkpoint is damaged).
fn check_checkpoint(
    storage: &mut dyn Storage,
    report: &mut Report,
) -> Result<Vec<ClientSession>, DataFileError> {
    let superblock = report.superblock;
    let checkpoint = &superblock.checkpoint;
    // In a cluster, `start` fetches a damaged checkpoint's blocks from the peers (state sync).
    let cluster = superblock.replica_count > 1;
    let (arrays, damage) = match Grid::verify(storage, &superblock) {
        Ok(verified) => verified,
        Err(CheckpointError::Storage(error)) => return Err(error.into()),
        Err(error) if cluster => {
            report.warning(format!(
                "checkpoint of op {}: {error}; start fetches the checkpoint from its peers (state sync)",
                checkpoint.op
            ));
            return Ok(Vec::new());
        }
        Err(error) => {
            report.error(format!("checkpoint of op {}: {error}; start refuses it", checkpoint.op));
            return Ok(Vec::new());
        }
    };
    // A damaged manifest names no pages, so none were read.
    let manifest_damaged = damage.iter().any(|block| matches!(block.role, BlockRole::Manifest { .. }));
    let pages_read: u64 = match manifest_damaged {
        true => 0,
        false => (0..RECORD_SIZES.len())
            .map(|array| {
                (checkpoint.array_lengths[array] * RECORD_SIZES[array] as u64).div_ceil(superblock.block_size)
            })
            .sum(),
    };
    report.blocks_verified = u64::from(checkpoint.manifest_block_count) + pages_read - damage.len() as u64;
    for block in &damage {
        let message = format!("checkpoint of op {}: {}: {}", checkpoint.op, block.role, block.error);
        if cluster {
            report.warning(format!("{message}; start fetches it from its peers (state sync)"));
        } else {
            report.error(format!("{message}; start refuses it"));
        }
    }
    let lengths = checkpoint.array_lengths;
    let bytes = |index: usize| {
        let bytes: &[u8] = bytemuck::cast_slice(arrays[index].as_slice());
        &bytes[..lengths[index] as usize * RECORD_SIZES[index]]
    };
    let sessions =
        |bytes: &[u8]| bytes.chunks_exact(CLIENT_SESSION_SIZE).map(bytemuck::pod_read_unaligned).collect();
    if !damage.is_empty() {
        // The replies can still be checked if the session table is intact.
        let sessions_damaged = damage.iter().any(|block| match block.role {
            BlockRole::Manifest { .. } => true,
            BlockRole::Page { array, .. } => array == SESSIONS_ARRAY,
        });
        return Ok(if sessions_damaged { Vec::new() } else { sessions(bytes(SESSIONS_ARRAY)) });
    }
    let mut state = xxhash_rust::xxh3::Xxh3::new();
    for array in 0..RECORD_SIZES.len() {
        state.update(bytes(array));
    }
    report.state_checksum = Some(state.digest128());
    // The same restore as `start`, which checks the arrays' consistency.
    let restored =
        StateMachine::restore(superblock.config(), [bytes(0), bytes(1), bytes(2), bytes(3), bytes(4)]);
    if let Err(error) = restored {
        report.error(format!("checkpoint of op {}: {error}; start refuses it", checkpoint.op));
    }
    Ok(sessions(bytes(SESSIONS_ARRAY)))
}

/// Recovers the WAL as `start` would (read-only), then looks at every slot and its redundant
/// header.
fn check_wal(storage: &mut dyn Storage, report: &mut Report) -> Result<Replay, DataFileError> {
    let superblock = report.superblock;
    let layout = superblock.layout();
    let checkpoint = superblock.checkpoint;
    let mut journal = Journal::new(layout, superblock.cluster);
    let mut replay = Replay::default();
    let recovered = journal.recover(
        storage,
        checkpoint.op,
        checkpoint.prepare_checksum,
        checkpoint.timestamp,
        ViewHead { head_op: superblock.view_head_op, log_view: superblock.log_view },
        |header, _| {
            replay.clients.push(header.client);
            replay.registers |= header.operation == Operation::Register as u8;
        },
    );
    // The op `start` refuses for, if any: reported once, here, not again slot by slot.
    let mut op_refused = None;
    replay.op_head = match recovered {
        Ok(recovered) => recovered.op_head,
        Err(JournalError::Storage(error)) => return Err(error.into()),
        // Only `ReplicaState::open` refuses unreadable headers; the ring's read below reports them.
        Err(JournalError::HeadersUnreadable { .. }) => {
            unreachable!("recovery takes unreadable headers as damaged")
        }
        Err(JournalError::Corrupt { op, slot, offset }) if report.superblock.replica_count > 1 => {
            report.warning(format!(
                "WAL entry for op {op} (slot {slot}, file offset {offset}) is damaged or missing, but a \
                 redundant header proves it was durable: start recovers this replica's log from its peers \
                 (it takes no part in view changes until it holds its view's log)"
            ));
            op_refused = Some(op);
            op - 1
        }
        Err(JournalError::Corrupt { op, slot, offset }) => {
            report.error(format!(
                "WAL entry for op {op} (slot {slot}, file offset {offset}) is damaged or missing, but a \
                 redundant header proves it was durable: start refuses the file (a replica alone has no \
                 peer to repair it from)"
            ));
            op_refused = Some(op);
            op - 1
        }
    };
    report.ops_replayable = replay.op_head - checkpoint.op;
    let mut ring = AlignedBuffer::new(layout.wal_headers_size() as usize);
    storage.read(layout.wal_headers_offset(), &mut ring).map_err(DataFileError::Storage)?;
    let mut buffer = AlignedBuffer::new(layout.message_size_max as usize);
    let mut headers_damaged = Vec::new();
    for slot in 0..layout.journal_slot_count {
        let header: Header =
            bytemuck::pod_read_unaligned(&ring[slot as usize * HEADER_SIZE..][..HEADER_SIZE]);
        if header.valid_checksum() {
            report.headers_valid += 1;
        } else {
            headers_damaged.push(slot.to_string());
        }
        let read =
            slot_header(storage, &journal, &layout, slot, &mut buffer).map_err(DataFileError::Storage)?;
        check_slot(report, &journal, &replay, op_refused, slot, &header, read);
    }
    if !headers_damaged.is_empty() {
        // A torn write of a ring sector looks the same; an intact prepare vouches for itself,
        // and recovery rewrites the headers of the ops it replays.
        report.warning(format!(
            "the redundant headers of {} WAL slots are damaged (slots {}; the ring starts at file offset {}): \
             they prove nothing; recovery rewrites them from intact prepares",
            headers_damaged.len(),
            headers_damaged.join(", "),
            layout.wal_headers_offset()
        ));
    }
    Ok(replay)
}

/// Classifies one WAL slot, given its redundant header as on disk (`ring`) and what
/// [`slot_header`] read; `op_refused` is the op recovery refused for, if any.
fn check_slot(
    report: &mut Report,
    journal: &Journal,
    replay: &Replay,
    op_refused: Option<u64>,
    slot: u64,
    ring: &Header,
    read: SlotRead,
) {
    let layout = report.superblock.layout();
    let slot_count = layout.journal_slot_count;
    let op_first = report.superblock.checkpoint.op + 1;
    // The op this slot is for in the log's window after the checkpoint.
    let op_window = op_first + (slot + slot_count - op_first % slot_count) % slot_count;
    let offset = layout.wal_prepare_offset(slot);
    let ring_offset = layout.wal_headers_offset() + slot * HEADER_SIZE as u64;
    // Recovery cuts the log at the first op after the head; a group of prepares written
    // together may be torn anywhere from there.
    let op_cut = replay.op_head + 1;
    let torn_possible = op_window >= op_cut && op_window < op_cut + APPEND_PREPARES_MAX as u64;
    match read {
        SlotRead::Empty => report.slots_empty += 1,
        SlotRead::Intact(prepare) => {
            report.slots_intact += 1;
            let (low, high) = report.ops_intact.unwrap_or((prepare.op, prepare.op));
            report.ops_intact = Some((low.min(prepare.op), high.max(prepare.op)));
            if journal.proves_durable(ring, prepare.op) && ring.checksum != prepare.checksum {
                report.error(format!(
                    "WAL slot {slot} (file offset {offset}) holds an intact prepare of op {}, but its redundant \
                     header (file offset {ring_offset}) is of another prepare of that op: one of them was \
                     misdirected or corrupted",
                    prepare.op
                ));
            }
            if prepare.op > replay.op_head && op_refused.is_none() {
                report.warning(format!(
                    "WAL slot {slot} (file offset {offset}) holds op {}, after the end of the log at op {}: \
                     never acknowledged; recovery cuts it and later writes overwrite it",
                    prepare.op, replay.op_head
                ));
            }
        }
        SlotRead::Damaged => {
            report.slots_damaged.push((slot, offset));
            let cluster = report.superblock.replica_count > 1;
            if op_refused == Some(op_window) {
                // Reported by recovery.
            } else if journal.proves_durable(ring, op_window) && cluster {
                report.warning(format!(
                    "WAL entry for op {op_window} (slot {slot}, file offset {offset}) is corrupted, but its \
                     redundant header proves it was durable: start recovers this replica's log from its peers"
                ));
            } else if journal.proves_durable(ring, op_window) {
                report.error(format!(
                    "WAL entry for op {op_window} (slot {slot}, file offset {offset}) is corrupted, but its \
                     redundant header proves it was durable"
                ));
            } else if torn_possible {
                report.warning(format!(
                    "WAL slot {slot} (file offset {offset}) is torn at the head of the log (op {op_window}, \
                     nothing proves it durable): never acknowledged; recovery cuts the log before op {op_cut}"
                ));
            } else if cluster {
                report.warning(format!(
                    "WAL slot {slot} (file offset {offset}) is corrupted: it is not at the head of the log, so \
                     no torn write explains it; no redundant header proves a durable op there, so this \
                     replica needs nothing from it (the log overwrites it when it reaches the slot)"
                ));
            } else {
                report.error(format!(
                    "WAL slot {slot} (file offset {offset}) is corrupted: it is not at the head of the log, so \
                     no torn write explains it (no redundant header proves a durable op there: start does not \
                     need it)"
                ));
            }
        }
    }
}

/// What the slot holds, whatever op it is for.
fn slot_header(
    storage: &mut dyn Storage,
    journal: &Journal,
    layout: &Layout,
    slot: u64,
    buffer: &mut [u8],
) -> Result<SlotRead, StorageError> {
    storage.read(layout.wal_prepare_offset(slot), &mut buffer[..SECTOR_SIZE])?;
    let header: Header = bytemuck::pod_read_unaligned(&buffer[..HEADER_SIZE]);
    if header.valid_checksum() && header.command() == Some(Command::Prepare) {
        // Read it as the op it claims to be: checks the body too.
        return journal.read_prepare(storage, header.op, buffer);
    }
    journal.read_prepare(storage, slot, buffer).map(|read| match read {
        SlotRead::Intact(_) => SlotRead::Damaged,
        other => other,
    })
}

/// Verifies the reply of every live session against the checksum the session table keeps.
fn check_replies(
    storage: &mut dyn Storage,
    report: &mut Report,
    sessions: &[ClientSession],
    replay: &Replay,
) -> Result<(), DataFileError> {
    let layout = report.superblock.layout();
    let mut buffer = AlignedBuffer::new(REPLY_SIZE_MAX as usize);
    for (slot, session) in sessions.iter().enumerate().filter(|(_, session)| session.client != 0) {
        report.sessions_live += 1;
        let offset = layout.client_reply_offset(slot as u64);
        let size = (session.reply_size as usize).next_multiple_of(SECTOR_SIZE).min(buffer.len());
        storage.read(offset, &mut buffer[..size]).map_err(DataFileError::Storage)?;
        if session.reply_intact(&buffer[..size]) {
            report.replies_intact += 1;
        } else if replay.registers || replay.clients.contains(&session.client) {
            // A newer reply may have been written (unsynced) after the checkpoint; the WAL
            // replay at `start` regenerates and rewrites it.
            report.warning(format!(
                "client reply slot {slot} (file offset {offset}, client {}) does not match its checkpointed \
                 session; the WAL replay at start rewrites it",
                session.client
            ));
        } else {
            report.error(format!(
                "client reply slot {slot} (file offset {offset}, client {}) is corrupted: it does not match the \
                 checksum in the session table, so start ends that session (the client must register again)",
                session.client
            ));
        }
    }
    Ok(())
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sb = &self.superblock;
        let layout = sb.layout();
        writeln!(f, "superblock copies:")?;
        for (copy, superblock) in self.copies.iter().enumerate() {
            match superblock {
                Some(superblock) => writeln!(
                    f,
                    "  copy {copy}: ok, sequence {}, checksum {:032x}{}",
                    superblock.sequence,
                    superblock.checksum,
                    if superblock.checksum == sb.checksum { "" } else { " (not in force)" }
                )?,
                None => writeln!(
                    f,
                    "  copy {copy}: CORRUPT or missing (offset {})",
                    Layout::superblock_offset(copy as u64)
                )?,
            }
        }
        writeln!(
            f,
            "in force: sequence {}, in {} of {SUPERBLOCK_COPIES} copies",
            sb.sequence, self.copies_in_force
        )?;
        writeln!(f, "cluster: {}", sb.cluster)?;
        writeln!(f, "replica: {} of {}", sb.replica, sb.replica_count)?;
        let role = if sb.replica_count == 1 {
            "the only replica"
        } else if sb.view % u32::from(sb.replica_count) == u32::from(sb.replica) {
            "primary of its view when it stopped, if the view was running (a restart leaves it)"
        } else {
            "a backup in its view"
        };
        writeln!(
            f,
            "view: {}, log view: {} (its head: op {}), commit max: {}; role: {role}",
            sb.view, sb.log_view, sb.view_head_op, sb.commit_max
        )?;
        writeln!(
            f,
            "capacity: {} accounts, {} transfers, {} expiries, {} history snapshots",
            sb.accounts_max, sb.transfers_max, sb.expiries_max, sb.history_max
        )?;
        writeln!(
            f,
            "layout: {} WAL slots of {} bytes, {} client reply slots, grid {} blocks of {} bytes, file {} bytes",
            layout.journal_slot_count,
            layout.message_size_max,
            layout.clients_max,
            layout.grid_block_count,
            layout.block_size,
            layout.file_size()
        )?;
        let checkpoint = &sb.checkpoint;
        let lengths = checkpoint.array_lengths;
        writeln!(
            f,
            "checkpoint: op {}, timestamp {}, id {:#034x}",
            checkpoint.op,
            checkpoint.timestamp,
            checkpoint.id()
        )?;
        writeln!(
            f,
            "  {} accounts, {} transfers, {} history snapshots, {} burned ids; manifest {} bytes in {} blocks",
            lengths[0], lengths[1], lengths[3], lengths[4], checkpoint.manifest_size, checkpoint.manifest_block_count
        )?;
        if let Some(checksum) = self.state_checksum {
            writeln!(
                f,
                "  state checksum: {checksum:#034x} (replicas at the same checkpoint op agree on it)"
            )?;
        }
        writeln!(f, "  grid blocks verified: {}", self.blocks_verified)?;
        writeln!(f, "WAL:")?;
        writeln!(
            f,
            "  slots: {} intact, {} never written, {} damaged",
            self.slots_intact,
            self.slots_empty,
            self.slots_damaged.len()
        )?;
        if let Some((low, high)) = self.ops_intact {
            writeln!(f, "  intact ops: {low}..={high}")?;
        }
        for (slot, offset) in &self.slots_damaged {
            writeln!(f, "  DAMAGED slot {slot} at offset {offset}")?;
        }
        writeln!(f, "  redundant headers: {} of {} valid", self.headers_valid, layout.journal_slot_count)?;
        writeln!(
            f,
            "  hash chain from the checkpoint: {} ops replayable (ops {}..={})",
            self.ops_replayable,
            checkpoint.op + 1,
            checkpoint.op + self.ops_replayable
        )?;
        writeln!(
            f,
            "client replies: {} of {} live sessions intact",
            self.replies_intact, self.sessions_live
        )?;
        for finding in &self.findings {
            let label = match finding.severity {
                Severity::Error => "ERROR",
                Severity::Warning => "warning",
            };
            writeln!(f, "{label}: {}", finding.message)?;
        }
        let errors = self.errors().count();
        let warnings = self.findings.len() - errors;
        match errors {
            0 => writeln!(f, "verdict: ok ({warnings} warnings)"),
            _ => writeln!(f, "verdict: DAMAGED ({errors} errors, {warnings} warnings): see the ERROR lines"),
        }
    }
}
