//! `ledger inspect`: what an operator needs to see when something is wrong — every superblock
//! copy, the checkpoint, and a slot-by-slot summary of the WAL — read without changing anything.

use std::fmt;

use super::data_file::DataFileError;
use super::header::{Command, Header};
use super::journal::{Journal, SlotRead};
use super::superblock::SuperBlock;
use crate::constants::HEADER_SIZE;
use crate::storage::layout::Layout;
use crate::storage::{AlignedBuffer, Storage, StorageError};

/// What `inspect` found.
#[derive(Debug)]
pub struct Report {
    /// Per copy: `Some(superblock)` if intact.
    pub copies: Vec<Option<SuperBlock>>,
    /// The superblock a replica would use.
    pub superblock: SuperBlock,
    /// WAL slots holding a reserved (never written) header.
    pub slots_empty: u64,
    /// WAL slots holding an intact prepare.
    pub slots_intact: u64,
    /// WAL slots that are torn or corrupted.
    pub slots_damaged: Vec<(u64, u64)>,
    /// The lowest and highest op among intact prepares.
    pub ops_intact: Option<(u64, u64)>,
    /// Redundant headers that verify.
    pub headers_valid: u64,
    /// Ops after the checkpoint that chain from it without a break.
    pub ops_replayable: u64,
}

/// Reads a data file and summarises it.
pub fn inspect(storage: &mut dyn Storage) -> Result<Report, DataFileError> {
    let (copies, superblock) = SuperBlock::read(storage)?;
    let layout = superblock.layout();
    if storage.size() < layout.file_size() {
        return Err(DataFileError::Truncated { size: storage.size(), needed: layout.file_size() });
    }
    let journal = Journal::new(layout, superblock.cluster);
    let mut buffer = AlignedBuffer::new(layout.message_size_max as usize);
    let mut headers = AlignedBuffer::new(layout.wal_headers_size() as usize);
    storage.read(layout.wal_headers_offset(), &mut headers).map_err(DataFileError::Storage)?;
    let headers_valid = (0..layout.journal_slot_count)
        .filter(|slot| {
            let header: Header =
                bytemuck::pod_read_unaligned(&headers[*slot as usize * HEADER_SIZE..][..HEADER_SIZE]);
            header.valid_checksum()
        })
        .count() as u64;
    let mut report = Report {
        copies,
        superblock,
        slots_empty: 0,
        slots_intact: 0,
        slots_damaged: Vec::new(),
        ops_intact: None,
        headers_valid,
        ops_replayable: 0,
    };
    for slot in 0..layout.journal_slot_count {
        match slot_header(storage, &journal, &layout, slot, &mut buffer).map_err(DataFileError::Storage)? {
            SlotRead::Intact(header) => {
                report.slots_intact += 1;
                let (low, high) = report.ops_intact.unwrap_or((header.op, header.op));
                report.ops_intact = Some((low.min(header.op), high.max(header.op)));
            }
            SlotRead::Empty => report.slots_empty += 1,
            SlotRead::Damaged => report.slots_damaged.push((slot, layout.wal_prepare_offset(slot))),
        }
    }
    let mut parent = superblock.checkpoint.prepare_checksum;
    for op in superblock.checkpoint.op + 1..=superblock.checkpoint.op + layout.journal_slot_count {
        match journal.read_prepare(storage, op, &mut buffer).map_err(DataFileError::Storage)? {
            SlotRead::Intact(header) if header.parent == parent => {
                parent = header.checksum;
                report.ops_replayable += 1;
            }
            _ => break,
        }
    }
    Ok(report)
}

/// What the slot holds, whatever op it is for.
fn slot_header(
    storage: &mut dyn Storage,
    journal: &Journal,
    layout: &Layout,
    slot: u64,
    buffer: &mut [u8],
) -> Result<SlotRead, StorageError> {
    storage.read(layout.wal_prepare_offset(slot), &mut buffer[..4096])?;
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

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sb = &self.superblock;
        let layout = sb.layout();
        writeln!(f, "superblock copies:")?;
        for (copy, superblock) in self.copies.iter().enumerate() {
            match superblock {
                Some(superblock) => writeln!(
                    f,
                    "  copy {copy}: ok, sequence {}, checksum {:032x}",
                    superblock.sequence, superblock.checksum
                )?,
                None => writeln!(
                    f,
                    "  copy {copy}: CORRUPT or missing (offset {})",
                    Layout::superblock_offset(copy as u64)
                )?,
            }
        }
        writeln!(f, "in force: sequence {}", sb.sequence)?;
        writeln!(f, "cluster: {}", sb.cluster)?;
        writeln!(f, "replica: {} of {}", sb.replica, sb.replica_count)?;
        writeln!(f, "view: {}, log view: {}, commit max: {}", sb.view, sb.log_view, sb.commit_max)?;
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
        writeln!(f, "checkpoint: op {}, timestamp {}", checkpoint.op, checkpoint.timestamp)?;
        writeln!(
            f,
            "  {} accounts, {} transfers, {} history snapshots, {} burned ids; manifest {} bytes in {} blocks",
            lengths[0], lengths[1], lengths[3], lengths[4], checkpoint.manifest_size, checkpoint.manifest_block_count
        )?;
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
        )
    }
}
