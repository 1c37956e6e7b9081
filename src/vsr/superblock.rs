//! The superblock: the replica's root of trust, in [`SUPERBLOCK_COPIES`] copies at the start of
//! the data file. It holds what the data file is (cluster, replica, layout, capacities), the
//! view state VSR must never forget, and the latest checkpoint (op, hash-chain link, timestamp,
//! and the references to the checkpoint's manifest blocks in the grid).
//!
//! An update writes the copies one at a time, each followed by `fdatasync`, so that a torn
//! write damages at most one copy. Opening picks the highest sequence found intact in at least
//! two copies: a lone newest copy may be the torn start of an update that never finished (the
//! replica only relies on an update once every copy is written), and trusting a single copy
//! would let one misdirected read hide the newest state.

use bytemuck::{Pod, Zeroable};
use xxhash_rust::xxh3::xxh3_128;

use crate::constants::{
    BLOCK_SIZE_MAX, CLIENTS_MAX, HEADER_SIZE, JOURNAL_SLOT_COUNT, MESSAGE_SIZE_MAX, SECTOR_SIZE,
};
use crate::state_machine::Config;
use crate::storage::layout::{Layout, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
use crate::storage::{AlignedBuffer, Storage, StorageError, Write};

/// Identifies a ledger data file.
pub const MAGIC: [u8; 8] = *b"LEDGERDB";

/// The data file format version.
/// Version 2 added the view head (`view_head_op`, `view_head_checksum`) after the checkpoint.
pub const VERSION: u32 = 2;

pub use crate::constants::MANIFEST_BLOCKS_MAX;

/// A reference to a grid block: where it is and what it must hash to. Kept outside the block,
/// so a misdirected write (the right block at the wrong place) is detected.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct BlockReference {
    /// xxh3-128 of the whole block.
    pub checksum: u128,
    /// The block address (1-based; 0 is no block).
    pub address: u64,
    /// Must be zero.
    pub reserved: u64,
}

/// The latest checkpoint: the state after committing `op`, stored in the grid.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Checkpoint {
    /// The checksum of op `op`'s prepare header: the parent of op `op + 1`.
    pub prepare_checksum: u128,
    /// The last op applied to the checkpointed state.
    pub op: u64,
    /// The timestamp of op `op` (the cluster clock never goes back below it).
    pub timestamp: u64,
    /// Records in each checkpointed array: accounts, transfers, transfer pending statuses,
    /// history, burned ids, client sessions.
    pub array_lengths: [u64; 6],
    /// The manifest's size in bytes.
    pub manifest_size: u64,
    /// How many of `manifest` are used.
    pub manifest_block_count: u32,
    /// Must be zero.
    pub reserved: u32,
    /// The manifest blocks, in order.
    pub manifest: [BlockReference; MANIFEST_BLOCKS_MAX],
}

impl Checkpoint {
    /// The checkpoint's identity: xxh3-128 of all its fields (op, prepare checksum, timestamp,
    /// array lengths, and the manifest's block references, which name every page by checksum
    /// and address). The same on every replica at the same checkpoint op: the grid places a
    /// checkpoint's blocks by the durable checkpoint and the state alone (`Grid::begin`), and
    /// the client sessions are replicated state (the simulator's `checkpoints agree`).
    pub fn id(&self) -> u128 {
        xxh3_128(bytemuck::bytes_of(self))
    }
}

/// One superblock copy.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct SuperBlock {
    /// xxh3-128 of every byte after `copy`.
    pub checksum: u128,
    /// Which copy this is (excluded from the checksum: the copies are otherwise identical).
    pub copy: u64,
    /// Must be zero.
    pub reserved_copy: u64,
    /// The checksum of the previous sequence's superblock.
    pub parent: u128,
    /// The cluster this replica belongs to.
    pub cluster: u128,
    /// [`MAGIC`].
    pub magic: [u8; 8],
    /// Increases by one with every update.
    pub sequence: u64,
    /// The layout of the file.
    pub journal_slot_count: u64,
    /// See [`Layout`].
    pub message_size_max: u64,
    /// See [`Layout`].
    pub clients_max: u64,
    /// See [`Layout`].
    pub block_size: u64,
    /// See [`Layout`].
    pub grid_block_count: u64,
    /// The op of the last prepare known committed (VSR state).
    pub commit_max: u64,
    /// [`VERSION`].
    pub version: u32,
    /// The state machine's capacities.
    pub accounts_max: u32,
    /// See [`Config`].
    pub transfers_max: u32,
    /// See [`Config`].
    pub expiries_max: u32,
    /// See [`Config`].
    pub history_max: u32,
    /// The latest view this replica took part in (VSR state).
    pub view: u32,
    /// The latest view in which this replica's log was normal (VSR state).
    pub log_view: u32,
    /// This replica's index in the cluster.
    pub replica: u8,
    /// The number of replicas in the cluster.
    pub replica_count: u8,
    /// Must be zero.
    pub reserved: [u8; 2],
    /// The latest checkpoint.
    pub checkpoint: Checkpoint,
    /// The checksum of the head op of the log this replica adopted when it entered `log_view`
    /// (the new primary's log at the view change): every op after `view_head_op` in this
    /// replica's WAL was prepared in `log_view` itself, and recovery cuts the WAL at the
    /// first op after it that was not (a leftover of a log the view change truncated).
    pub view_head_checksum: u128,
    /// The op of that head (VSR state).
    pub view_head_op: u64,
    /// Must be zero.
    pub reserved_view: u64,
}

const _: () = assert!(core::mem::size_of::<SuperBlock>() as u64 <= SUPERBLOCK_COPY_SIZE);
const _: () = assert!(core::mem::size_of::<SuperBlock>().is_multiple_of(16));
// The byte layout documented in docs/data-file.md.
const _: () = assert!(core::mem::size_of::<SuperBlock>() == 3360);
const _: () = assert!(core::mem::offset_of!(SuperBlock, view_head_checksum) == 3328);
const _: () = assert!(core::mem::offset_of!(SuperBlock, checkpoint) == 160);
const _: () = assert!(core::mem::offset_of!(SuperBlock, view) == 148);
const _: () = assert!(core::mem::size_of::<Checkpoint>() == 96 + 32 * MANIFEST_BLOCKS_MAX);

/// Why no superblock could be used.
#[derive(Debug, thiserror::Error)]
pub enum SuperBlockError {
    /// Reading failed.
    #[error("reading the superblock: {0}")]
    Storage(#[from] StorageError),
    /// No copy carries the data-file magic: not a ledger data file.
    #[error(
        "not a ledger data file: no superblock copy has the magic \"LEDGERDB\" at offset {}; {}",
        core::mem::offset_of!(SuperBlock, magic),
        describe_start(.start)
    )]
    NotADataFile {
        /// The file's first bytes, where most formats keep their own magic: to recognise it by.
        start: [u8; 8],
    },
    /// Copies exist but no sequence is intact in two of them.
    #[error("the superblock is corrupt: no sequence is intact in at least two of its {SUPERBLOCK_COPIES} copies ({valid} copies valid)")]
    Corrupt {
        /// How many copies passed their checksum.
        valid: usize,
    },
    /// A copy verifies but its fields cannot describe a data file: written by a faulty build
    /// (the checksum only proves the bytes are the ones written). Refused rather than let a
    /// size or count drive an allocation, an offset or an assertion.
    #[error("the superblock verifies but is inconsistent: {field} {value} {expected}; refusing to use it")]
    Inconsistent {
        /// The field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What it must be.
        expected: String,
    },
    /// The file was written by another format version.
    #[error("data file format version {found} is not supported (this build reads version {VERSION})")]
    Version {
        /// The version in the file.
        found: u32,
    },
}

/// A foreign file's first bytes as an operator can recognise them: printable ASCII as is,
/// anything else escaped (`"PK\x03\x04..."` is a zip archive, `"SQLite f..."` a database).
fn describe_start(start: &[u8; 8]) -> String {
    if start.iter().all(|byte| *byte == 0) {
        return "the file starts with zero bytes (never formatted, or its start was overwritten)".to_string();
    }
    format!("found magic \"{}...\" at offset 0", start.escape_ascii())
}

impl SuperBlock {
    /// The layout this superblock describes.
    pub fn layout(&self) -> Layout {
        Layout {
            journal_slot_count: self.journal_slot_count,
            message_size_max: self.message_size_max,
            clients_max: self.clients_max,
            block_size: self.block_size,
            grid_block_count: self.grid_block_count,
        }
    }

    /// A fingerprint of what the data file was formatted with (its layout and the state
    /// machine's capacities), which every replica of a cluster shares: a checkpoint installs
    /// only into a data file formatted alike (its blocks' addresses, its tables' limits).
    pub fn format_fingerprint(&self) -> u64 {
        let fields = [
            self.journal_slot_count,
            self.message_size_max,
            self.clients_max,
            self.block_size,
            self.grid_block_count,
            u64::from(self.accounts_max),
            u64::from(self.transfers_max),
            u64::from(self.expiries_max),
            u64::from(self.history_max),
        ];
        xxhash_rust::xxh3::xxh3_64(bytemuck::cast_slice(&fields))
    }

    /// The state machine capacities this superblock describes.
    pub fn config(&self) -> Config {
        Config {
            accounts_max: self.accounts_max,
            transfers_max: self.transfers_max,
            expiries_max: self.expiries_max,
            history_max: self.history_max,
        }
    }

    /// Checks that the fields describe a data file of at most `file_size` bytes that this build
    /// can open: every size, count and length within the bounds that the code using them
    /// relies on.
    pub fn check(&self, file_size: u64) -> Result<(), SuperBlockError> {
        let inconsistent = |field, value: u64, expected: String| {
            Err(SuperBlockError::Inconsistent { field, value, expected })
        };
        let slots = self.journal_slot_count;
        if !(4..=JOURNAL_SLOT_COUNT).contains(&slots) {
            return inconsistent("journal_slot_count", slots, format!("must be 4..={JOURNAL_SLOT_COUNT}"));
        }
        let message = self.message_size_max;
        let message_min = (HEADER_SIZE + SECTOR_SIZE) as u64;
        if !(message_min..=MESSAGE_SIZE_MAX as u64).contains(&message)
            || !message.is_multiple_of(SECTOR_SIZE as u64)
        {
            let expected =
                format!("must be a multiple of {SECTOR_SIZE} in {message_min}..={MESSAGE_SIZE_MAX}");
            return inconsistent("message_size_max", message, expected);
        }
        if !(1..=CLIENTS_MAX).contains(&self.clients_max) {
            return inconsistent("clients_max", self.clients_max, format!("must be 1..={CLIENTS_MAX}"));
        }
        let block = self.block_size;
        if !block.is_power_of_two() || !(SECTOR_SIZE as u64..=BLOCK_SIZE_MAX).contains(&block) {
            let expected = format!("must be a power of two in {SECTOR_SIZE}..={BLOCK_SIZE_MAX}");
            return inconsistent("block_size", block, expected);
        }
        // The grid must fit the file (this also keeps every offset computation from overflowing).
        if self.grid_block_count == 0 || self.grid_block_count > file_size / block {
            let expected = format!("must be 1..={} for a file of {file_size} bytes", file_size / block);
            return inconsistent("grid_block_count", self.grid_block_count, expected);
        }
        if self.replica_count == 0 || self.replica >= self.replica_count {
            let expected = format!("must be below replica_count {}", self.replica_count);
            return inconsistent("replica", u64::from(self.replica), expected);
        }
        let config = self.config();
        if let Some((field, value)) = config.capacity_invalid() {
            return inconsistent(field, u64::from(value), format!("must be 1..={}", Config::CAPACITY_MAX));
        }
        if self.log_view > self.view {
            let expected = format!("must be at most view {}", self.view);
            return inconsistent("log_view", u64::from(self.log_view), expected);
        }
        if self.reserved_view != 0 {
            return inconsistent("reserved_view", self.reserved_view, "must be 0".into());
        }
        let checkpoint = &self.checkpoint;
        let blocks = checkpoint.manifest_block_count as usize;
        if blocks > MANIFEST_BLOCKS_MAX {
            return inconsistent(
                "manifest_block_count",
                blocks as u64,
                format!("must be at most {MANIFEST_BLOCKS_MAX}"),
            );
        }
        if checkpoint.manifest_size > blocks as u64 * block {
            let expected = format!("must fit its {blocks} blocks of {block} bytes");
            return inconsistent("manifest_size", checkpoint.manifest_size, expected);
        }
        // Accounts, transfers, pending statuses (one per transfer), history, burned ids (which
        // count as transfers), client sessions.
        let transfers = u64::from(config.transfers_max);
        let lengths_max = [
            u64::from(config.accounts_max),
            transfers,
            transfers,
            u64::from(config.history_max),
            transfers,
            self.clients_max,
        ];
        let names = ["accounts", "transfers", "pending statuses", "history", "burned ids", "client sessions"];
        for ((length, max), name) in checkpoint.array_lengths.iter().zip(lengths_max).zip(names) {
            if *length > max {
                return inconsistent(name, *length, format!("records must be at most {max}"));
            }
        }
        Ok(())
    }

    fn checksum_compute(&self) -> u128 {
        xxh3_128(&bytemuck::bytes_of(self)[32..])
    }

    /// True if the copy is intact.
    pub fn valid_checksum(&self) -> bool {
        self.checksum == self.checksum_compute()
    }

    /// Reads every copy; returns the copies (intact or not) and the chosen superblock.
    pub fn read(storage: &mut dyn Storage) -> Result<(Vec<Option<SuperBlock>>, SuperBlock), SuperBlockError> {
        let mut buffer = AlignedBuffer::new(SUPERBLOCK_COPY_SIZE as usize);
        let mut copies = Vec::with_capacity(SUPERBLOCK_COPIES as usize);
        let mut magic_seen = false;
        let mut start = [0; 8];
        for copy in 0..SUPERBLOCK_COPIES {
            storage.read(Layout::superblock_offset(copy), &mut buffer)?;
            let superblock: SuperBlock =
                bytemuck::pod_read_unaligned(&buffer[..core::mem::size_of::<SuperBlock>()]);
            magic_seen |= superblock.magic == MAGIC;
            if copy == 0 {
                start.copy_from_slice(&buffer[..8]);
            }
            // A copy found at the wrong position was misdirected: not trusted.
            let intact = superblock.valid_checksum() && superblock.magic == MAGIC && superblock.copy == copy;
            copies.push(intact.then_some(superblock));
        }
        let valid = copies.iter().flatten().count();
        let chosen = copies
            .iter()
            .flatten()
            .filter(|candidate| {
                copies.iter().flatten().filter(|other| other.checksum == candidate.checksum).count() >= 2
            })
            .max_by_key(|candidate| candidate.sequence)
            .copied();
        match chosen {
            Some(superblock) if superblock.version != VERSION => {
                Err(SuperBlockError::Version { found: superblock.version })
            }
            Some(superblock) => {
                superblock.check(storage.size())?;
                Ok((copies, superblock))
            }
            None if !magic_seen && valid == 0 => Err(SuperBlockError::NotADataFile { start }),
            None => Err(SuperBlockError::Corrupt { valid }),
        }
    }

    /// Writes `self` as the next sequence to every copy, one copy per `fdatasync`. `self` must
    /// be the current superblock with its fields updated; `sequence` and `parent` are set here.
    pub fn write_next(&mut self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        self.parent = self.checksum;
        self.sequence += 1;
        self.write_copies(storage)
    }

    /// Writes `self` (sequence and parent as they are) to every copy, one `fdatasync` each.
    pub fn write_copies(&mut self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        let mut buffer = AlignedBuffer::new(SUPERBLOCK_COPY_SIZE as usize);
        for copy in 0..SUPERBLOCK_COPIES {
            let write = self.seal_copy(copy, &mut buffer);
            storage.write_and_sync(&[write])?;
        }
        Ok(())
    }

    /// Seals `self` as copy `copy` into `buffer` (one copy's size) and returns its write.
    pub fn seal_copy<'a>(&mut self, copy: u64, buffer: &'a mut AlignedBuffer) -> Write<'a> {
        assert!(copy < SUPERBLOCK_COPIES);
        assert_eq!(buffer.len(), SUPERBLOCK_COPY_SIZE as usize);
        self.copy = copy;
        self.checksum = self.checksum_compute();
        buffer[..core::mem::size_of::<SuperBlock>()].copy_from_slice(bytemuck::bytes_of(self));
        buffer[core::mem::size_of::<SuperBlock>()..].fill(0);
        Write { offset: Layout::superblock_offset(copy), data: buffer }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::{CrashMode, SimFaults, SimStorage};

    fn superblock() -> SuperBlock {
        SuperBlock {
            magic: MAGIC,
            version: VERSION,
            cluster: 9,
            journal_slot_count: 8,
            message_size_max: 8192,
            clients_max: 2,
            block_size: 4096,
            grid_block_count: 4,
            replica_count: 1,
            accounts_max: 1,
            transfers_max: 1,
            expiries_max: 1,
            history_max: 1,
            ..Zeroable::zeroed()
        }
    }

    #[test]
    fn a_verified_copy_with_fields_no_data_file_can_have_is_refused_not_used() {
        type Break = fn(&mut SuperBlock);
        let cases: [(&str, Break); 11] = [
            ("journal_slot_count", |sb| sb.journal_slot_count = 0),
            ("journal_slot_count", |sb| sb.journal_slot_count = u64::MAX),
            ("message_size_max", |sb| sb.message_size_max = 8193),
            ("clients_max", |sb| sb.clients_max = 1 << 40),
            ("block_size", |sb| sb.block_size = 3 * 4096),
            ("grid_block_count", |sb| sb.grid_block_count = u64::MAX / 2),
            ("replica", |sb| sb.replica = 1),
            ("accounts-max", |sb| sb.accounts_max = 0),
            ("manifest_block_count", |sb| sb.checkpoint.manifest_block_count = 97),
            ("manifest_size", |sb| sb.checkpoint.manifest_size = 4097),
            ("transfers", |sb| sb.checkpoint.array_lengths[1] = 2),
        ];
        for (field, damage) in cases {
            let mut storage = SimStorage::new(64 * 1024, 1, SimFaults::default());
            let mut sb = superblock();
            damage(&mut sb);
            sb.write_next(&mut storage).unwrap();
            match SuperBlock::read(&mut storage) {
                Err(error @ SuperBlockError::Inconsistent { field: found, .. }) => {
                    assert_eq!(found, field, "{error}");
                    assert!(error.to_string().contains("inconsistent"), "{error}");
                }
                other => panic!("{field}: expected a refusal, got {:?}", other.map(|(_, sb)| sb.sequence)),
            }
        }
        // The undamaged superblock is used.
        let mut storage = SimStorage::new(64 * 1024, 1, SimFaults::default());
        superblock().write_next(&mut storage).unwrap();
        assert!(SuperBlock::read(&mut storage).is_ok());
    }

    #[test]
    fn an_update_torn_at_any_step_leaves_the_old_or_the_new_sequence() {
        for crash_step in 0..=8u64 {
            for mode in [CrashMode::LoseAll, CrashMode::KeepAll, CrashMode::Torn { seed: crash_step }] {
                let mut storage = SimStorage::new(64 * 1024, 1, SimFaults::default());
                let mut old = superblock();
                old.write_next(&mut storage).unwrap();
                let mut new = old;
                new.commit_max = 77;
                storage.crash_at_step(storage.steps() + crash_step);
                let finished = new.write_next(&mut storage).is_ok();
                storage.restart(mode);
                let (_, chosen) = SuperBlock::read(&mut storage).unwrap();
                assert!(chosen.sequence == 1 || chosen.sequence == 2, "step {crash_step}");
                assert_eq!(chosen.commit_max, if chosen.sequence == 2 { 77 } else { 0 });
                if finished {
                    assert_eq!(chosen.sequence, 2);
                }
            }
        }
    }

    #[test]
    fn one_corrupt_copy_is_tolerated_and_garbage_is_not_a_data_file() {
        let mut storage = SimStorage::new(64 * 1024, 1, SimFaults::default());
        let mut sb = superblock();
        sb.write_next(&mut storage).unwrap();
        storage.corrupt(Layout::superblock_offset(2), 4096);
        let (copies, chosen) = SuperBlock::read(&mut storage).unwrap();
        assert_eq!(chosen.sequence, 1);
        assert!(copies[2].is_none());

        let mut empty = SimStorage::new(64 * 1024, 1, SimFaults::default());
        assert!(matches!(SuperBlock::read(&mut empty), Err(SuperBlockError::NotADataFile { .. })));

        for copy in 0..3 {
            storage.corrupt(Layout::superblock_offset(copy), 4096);
        }
        assert!(matches!(SuperBlock::read(&mut storage), Err(SuperBlockError::Corrupt { valid: 1 })));
    }
}
