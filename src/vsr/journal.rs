//! The write-ahead log: `journal_slot_count` slots of one prepare each (op `n` lives in slot
//! `n % journal_slot_count`), plus a ring of redundant copies of their headers.
//!
//! Durability protocol. Prepares are appended in groups; each group is written and made durable
//! with one `fdatasync`, and only *after* that sync are the group's redundant headers written
//! and synced — both before the group is acknowledged. So a valid redundant header for op `n`
//! proves that prepare `n` was once durable, and every acknowledged prepare has one: if the
//! prepare is then found damaged, that is corruption, never a torn append, and recovery refuses
//! to guess. A damaged prepare whose redundant header was never written is a torn append at the
//! head: it was never acknowledged, and recovery cuts the log there.
//!
//! Empty slots hold a *reserved* header (valid checksum, command `Reserved`, op = slot index),
//! written at format, so "never written" is told apart from "damaged".

use super::header::{Command, Header};
use crate::constants::{HEADER_SIZE, SECTOR_SIZE};
use crate::storage::layout::Layout;
use crate::storage::{AlignedBuffer, Storage, StorageError, Write};

/// Why the log cannot be recovered as is.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// Reading or writing failed.
    #[error("journal I/O: {0}")]
    Storage(#[from] StorageError),
    /// A prepare that was durable is damaged; a single replica cannot repair it.
    #[error(
        "WAL entry for op {op} (slot {slot}, file offset {offset}) is corrupted, but its redundant \
         header proves it was durable: refusing to start without it (a cluster repairs it from a peer)"
    )]
    Corrupt {
        /// The op whose prepare is damaged.
        op: u64,
        /// Its slot.
        slot: u64,
        /// The file offset of the slot.
        offset: u64,
    },
}

/// What recovery found in the log.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Recovered {
    /// The first op after the checkpoint.
    pub op_min: u64,
    /// The last intact op of the chain (`op_min − 1` if none).
    pub op_head: u64,
    /// The checksum of the head prepare (the parent of the next op).
    pub head_checksum: u128,
    /// The timestamp of the head prepare (or the checkpoint's).
    pub head_timestamp: u64,
    /// True if the op after the head was found damaged with no proof it was durable: a torn
    /// append, cut away.
    pub torn_head: bool,
}

/// A recovery of the log in progress ([`Journal::replay_start`]).
pub struct Replay {
    recovered: Recovered,
    /// The last op the log can hold above the checkpoint.
    op_max: u64,
    ended: bool,
    /// The message of the op just replayed.
    buffer: AlignedBuffer,
}

impl Replay {
    /// What has been recovered so far (all of it, once the replay has ended).
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }
}

/// The write-ahead log of one replica.
pub struct Journal {
    layout: Layout,
    cluster: u128,
    /// The redundant headers ring, as written to disk (sector-aligned).
    headers: AlignedBuffer,
    /// Redundant headers may only be written after their prepare was synced: these are the
    /// sectors holding such headers, to be written with the next append or flush.
    headers_ready: Vec<bool>,
}

/// What a WAL slot holds for the op asked for.
// The header is returned by value on a cold path (recovery, inspect): boxing it buys nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotRead {
    /// An intact prepare of that op (header and body checksums valid).
    Intact(Header),
    /// A reserved header or an intact prepare of another op: nothing was written for this op.
    Empty,
    /// Neither: a torn or corrupted write.
    Damaged,
}

/// The most prepares one append writes (the replica's pipeline).
pub const APPEND_PREPARES_MAX: usize = crate::constants::PIPELINE_PREPARE_MAX;

/// The most redundant-header sectors one append writes along with its prepares.
const APPEND_HEADER_SECTORS_MAX: usize = 8;

/// Headers per sector of the headers ring.
const HEADERS_PER_SECTOR: u64 = (SECTOR_SIZE / HEADER_SIZE) as u64;

impl Journal {
    /// An in-memory journal for `layout`, with every slot reserved.
    pub fn new(layout: Layout, cluster: u128) -> Journal {
        layout.assert_valid();
        let mut headers = AlignedBuffer::new(layout.wal_headers_size() as usize);
        for slot in 0..layout.journal_slot_count {
            let header = reserved_header(cluster, slot);
            headers[slot as usize * HEADER_SIZE..][..HEADER_SIZE]
                .copy_from_slice(bytemuck::bytes_of(&header));
        }
        let sectors = (layout.wal_headers_size() / SECTOR_SIZE as u64) as usize;
        Journal { layout, cluster, headers, headers_ready: vec![false; sectors] }
    }

    /// The number of slots.
    pub fn slot_count(&self) -> u64 {
        self.layout.journal_slot_count
    }

    /// Writes the empty log of a new data file: reserved headers in the ring and at the start of
    /// every prepare slot.
    pub fn format(&self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        storage.write(&[Write { offset: self.layout.wal_headers_offset(), data: &self.headers }])?;
        let mut sector = AlignedBuffer::new(SECTOR_SIZE);
        for slot in 0..self.layout.journal_slot_count {
            let header = reserved_header(self.cluster, slot);
            sector[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
            storage.write(&[Write { offset: self.layout.wal_prepare_offset(slot), data: &sector }])?;
        }
        storage.sync()
    }

    /// The redundant header of `slot` as held in memory.
    pub fn header(&self, slot: u64) -> Header {
        bytemuck::pod_read_unaligned(&self.headers[slot as usize * HEADER_SIZE..][..HEADER_SIZE])
    }

    /// Appends a group of prepares; on return every one of them *and its redundant header* is
    /// durable, so the group may be acknowledged. Two write submissions, each followed by an
    /// `fdatasync`: first the prepares (sector-padded sealed messages), then the headers-ring
    /// sectors holding their headers. A header is never written before its prepare is durable,
    /// so a valid redundant header proves a durable prepare. Header sectors left ready by
    /// recovery ride along with the first write, a few at a time.
    pub fn append(&mut self, storage: &mut dyn Storage, prepares: &[&[u8]]) -> Result<(), StorageError> {
        assert!(!prepares.is_empty() && prepares.len() <= APPEND_PREPARES_MAX);
        // Fixed arrays, not vectors: appending is on the hot path and allocates nothing.
        let mut writes = [Write { offset: 0, data: &[] }; APPEND_PREPARES_MAX + APPEND_HEADER_SECTORS_MAX];
        let mut count = 0;
        let mut op_previous = None;
        for prepare in prepares {
            let header: Header = bytemuck::pod_read_unaligned(&prepare[..HEADER_SIZE]);
            assert!(header.valid_checksum());
            assert_eq!(header.command(), Some(Command::Prepare));
            assert_eq!(header.cluster, self.cluster);
            // A group is consecutive ops: its headers then span few sectors of the ring.
            assert!(op_previous.is_none_or(|previous: u64| header.op == previous + 1));
            op_previous = Some(header.op);
            let size = (header.size as usize).next_multiple_of(SECTOR_SIZE);
            assert!(size <= prepare.len() && size as u64 <= self.layout.message_size_max);
            let slot = header.op % self.layout.journal_slot_count;
            writes[count] = Write { offset: self.layout.wal_prepare_offset(slot), data: &prepare[..size] };
            count += 1;
        }
        let mut sectors_written = [usize::MAX; APPEND_HEADER_SECTORS_MAX];
        let ready =
            self.headers_ready.iter().enumerate().filter(|(_, ready)| **ready).map(|(sector, _)| sector);
        for (written, sector) in sectors_written.iter_mut().zip(ready) {
            writes[count] = self.header_sector_write(sector);
            count += 1;
            *written = sector;
        }
        storage.write_and_sync(&writes[..count])?;
        for sector in sectors_written.into_iter().filter(|sector| *sector != usize::MAX) {
            self.headers_ready[sector] = false;
        }
        // The prepares are durable: now their headers, before anyone is told.
        let mut sectors = [usize::MAX; APPEND_PREPARES_MAX];
        let mut sector_count = 0;
        for prepare in prepares {
            let header: Header = bytemuck::pod_read_unaligned(&prepare[..HEADER_SIZE]);
            self.set_header(&header);
            let sector = ((header.op % self.layout.journal_slot_count) / HEADERS_PER_SECTOR) as usize;
            if !sectors[..sector_count].contains(&sector) {
                sectors[sector_count] = sector;
                sector_count += 1;
            }
        }
        let mut header_writes = [Write { offset: 0, data: &[] }; APPEND_PREPARES_MAX];
        for (write, sector) in header_writes.iter_mut().zip(&sectors[..sector_count]) {
            *write = self.header_sector_write(*sector);
        }
        storage.write_and_sync(&header_writes[..sector_count])?;
        for sector in &sectors[..sector_count] {
            self.headers_ready[*sector] = false;
        }
        Ok(())
    }

    /// The write of headers-ring sector `sector` as held in memory.
    fn header_sector_write(&self, sector: usize) -> Write<'_> {
        let offset = sector * SECTOR_SIZE;
        Write {
            offset: self.layout.wal_headers_offset() + offset as u64,
            data: &self.headers[offset..offset + SECTOR_SIZE],
        }
    }

    /// Adds a write for each headers-ring sector whose prepares are durable.
    fn ready_header_writes<'a>(&'a self, writes: &mut Vec<Write<'a>>) {
        for (sector, ready) in self.headers_ready.iter().enumerate() {
            if *ready {
                writes.push(self.header_sector_write(sector));
            }
        }
    }

    /// Writes (and syncs) the redundant headers of durable prepares not yet written, so that an
    /// idle log carries proof of all its durable entries.
    pub fn flush_headers(&mut self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        let mut writes = Vec::new();
        self.ready_header_writes(&mut writes);
        if writes.is_empty() {
            return Ok(());
        }
        storage.write_and_sync(&writes)?;
        self.headers_ready.iter_mut().for_each(|ready| *ready = false);
        Ok(())
    }

    /// Reads the slot of `op` into `buffer` (at least `message_size_max` bytes).
    pub fn read_prepare(
        &self,
        storage: &mut dyn Storage,
        op: u64,
        buffer: &mut [u8],
    ) -> Result<SlotRead, StorageError> {
        let slot = op % self.layout.journal_slot_count;
        let offset = self.layout.wal_prepare_offset(slot);
        storage.read(offset, &mut buffer[..SECTOR_SIZE])?;
        let header: Header = bytemuck::pod_read_unaligned(&buffer[..HEADER_SIZE]);
        if !header.valid_checksum() || header.cluster != self.cluster {
            return Ok(SlotRead::Damaged);
        }
        match header.command() {
            Some(Command::Reserved) if header.op == slot => return Ok(SlotRead::Empty),
            Some(Command::Prepare) if header.op % self.layout.journal_slot_count == slot => {}
            // A valid header of the wrong kind or slot: a misdirected write.
            _ => return Ok(SlotRead::Damaged),
        }
        let size = header.size as usize;
        if size < HEADER_SIZE || size as u64 > self.layout.message_size_max {
            return Ok(SlotRead::Damaged);
        }
        let size_sectors = size.next_multiple_of(SECTOR_SIZE);
        if size_sectors > SECTOR_SIZE {
            storage.read(offset + SECTOR_SIZE as u64, &mut buffer[SECTOR_SIZE..size_sectors])?;
        }
        if !header.valid_checksum_body(&buffer[HEADER_SIZE..size]) {
            return Ok(SlotRead::Damaged);
        }
        Ok(if header.op == op { SlotRead::Intact(header) } else { SlotRead::Empty })
    }

    /// Recovers the log after a checkpoint at `checkpoint_op` (whose prepare has checksum
    /// `checkpoint_checksum`): loads the redundant headers, then follows the hash chain from
    /// `checkpoint_op + 1`, calling `replay(header, message)` for each intact op in order.
    pub fn recover(
        &mut self,
        storage: &mut dyn Storage,
        checkpoint_op: u64,
        checkpoint_checksum: u128,
        checkpoint_timestamp: u64,
        mut replay: impl FnMut(&Header, &[u8]),
    ) -> Result<Recovered, JournalError> {
        let mut replaying =
            self.replay_start(storage, checkpoint_op, checkpoint_checksum, checkpoint_timestamp)?;
        while let Some((header, message)) = self.replay_next(storage, &mut replaying)? {
            replay(&header, message);
        }
        Ok(replaying.recovered)
    }

    /// Starts recovering the log after a checkpoint at `checkpoint_op` (whose prepare has
    /// checksum `checkpoint_checksum`): loads the redundant headers. Continue with
    /// [`Journal::replay_next`], which lets the caller act between ops (commit, checkpoint).
    pub fn replay_start(
        &mut self,
        storage: &mut dyn Storage,
        checkpoint_op: u64,
        checkpoint_checksum: u128,
        checkpoint_timestamp: u64,
    ) -> Result<Replay, JournalError> {
        storage.read(self.layout.wal_headers_offset(), &mut self.headers)?;
        self.headers_ready.iter_mut().for_each(|ready| *ready = false);
        Ok(Replay {
            recovered: Recovered {
                op_min: checkpoint_op + 1,
                op_head: checkpoint_op,
                head_checksum: checkpoint_checksum,
                head_timestamp: checkpoint_timestamp,
                torn_head: false,
            },
            op_max: checkpoint_op + self.layout.journal_slot_count,
            ended: false,
            buffer: AlignedBuffer::new(self.layout.message_size_max as usize),
        })
    }

    /// The next intact op of the hash chain (its header and whole message), or `None` where the
    /// chain ends; then [`Replay::recovered`] says where and why. An op that the redundant
    /// headers prove durable but that is damaged is an error: it cannot be cut.
    pub fn replay_next<'r>(
        &mut self,
        storage: &mut dyn Storage,
        replay: &'r mut Replay,
    ) -> Result<Option<(Header, &'r [u8])>, JournalError> {
        let recovered = &mut replay.recovered;
        let op = recovered.op_head + 1;
        if replay.ended || op > replay.op_max {
            replay.ended = true;
            return Ok(None);
        }
        let read = self.read_prepare(storage, op, &mut replay.buffer)?;
        if let SlotRead::Intact(header) = read {
            if header.parent == recovered.head_checksum {
                recovered.op_head = op;
                recovered.head_checksum = header.checksum;
                recovered.head_timestamp = header.timestamp;
                // Read back intact, so durable: its redundant header may be (re)written.
                self.set_header(&header);
                return Ok(Some((header, &replay.buffer[..header.size as usize])));
            }
        }
        // The chain ends here. Prepares become durable in op order (a group is synced before
        // the next is written), so a redundant header of this op or of any later op proves
        // this op was durable: then it is damaged, not torn, and cannot be cut.
        replay.ended = true;
        if self.durable_at_or_after(op).is_some() {
            let slot = op % self.layout.journal_slot_count;
            return Err(JournalError::Corrupt { op, slot, offset: self.layout.wal_prepare_offset(slot) });
        }
        recovered.torn_head = read != SlotRead::Empty;
        Ok(None)
    }

    /// The lowest op `≥ op` whose redundant header (exactly that op, not an older wrap's)
    /// proves a durable prepare.
    fn durable_at_or_after(&self, op: u64) -> Option<u64> {
        let slot_count = self.layout.journal_slot_count;
        (op..op + slot_count)
            .find(|candidate| self.proves_durable(&self.header(candidate % slot_count), *candidate))
    }

    /// True if `header`, a redundant header, proves that the prepare of `op` was durable: it
    /// is exactly that op's prepare header (not an older wrap's), intact. Read-only; also used
    /// by `inspect` on the ring as read from disk.
    pub(crate) fn proves_durable(&self, header: &Header, op: u64) -> bool {
        header.valid_checksum()
            && header.command() == Some(Command::Prepare)
            && header.cluster == self.cluster
            && header.op == op
    }

    /// Records `header` as the redundant header of its slot, to be written with the next append
    /// or flush; its prepare must be durable.
    fn set_header(&mut self, header: &Header) {
        let slot = header.op % self.layout.journal_slot_count;
        if self.header(slot) != *header {
            self.headers[slot as usize * HEADER_SIZE..][..HEADER_SIZE]
                .copy_from_slice(bytemuck::bytes_of(header));
            self.headers_ready[(slot / HEADERS_PER_SECTOR) as usize] = true;
        }
    }
}

/// The header of an empty slot: valid, command `Reserved`, op = slot index (so a misdirected
/// read or write shows up as a slot/op mismatch).
fn reserved_header(cluster: u128, slot: u64) -> Header {
    let mut header = Header { op: slot, ..Header::new(Command::Reserved, cluster) };
    header.set_checksum();
    header
}
