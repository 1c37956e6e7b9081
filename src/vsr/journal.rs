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
    /// A sector of redundant headers cannot be read: a replica alone cannot tell a torn
    /// append from a lost acknowledged op without them.
    #[error(
        "the WAL's redundant headers at file offset {offset} cannot be read (I/O error): refusing to start \
         without them (a cluster repairs its log from a peer)"
    )]
    HeadersUnreadable {
        /// The file offset of the sector.
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
    /// True if the chain went on past the head with a prepare of another view than the log
    /// view, after the view's head: a leftover of a log a view change truncated, cut away.
    pub stale_cut: bool,
    /// Damage found in a cluster's replica, which cannot trust the head of its log (it may
    /// have acknowledged ops after it): it recovers its log from its peers
    /// (`ReplicaState::open`; a replica alone refuses to start instead).
    pub damaged: Option<Damage>,
}

/// WAL damage that leaves a replica unable to vouch for the head of its log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Damage {
    /// The prepare of `op` was durable (a redundant header proves it) and is damaged.
    Prepare {
        /// The op.
        op: u64,
        /// Its slot.
        slot: u64,
        /// The file offset of the slot's prepare.
        offset: u64,
    },
    /// The redundant header of `slot` is neither reserved nor a prepare's header for that slot:
    /// whatever it proved durable is unknown.
    Header {
        /// The slot.
        slot: u64,
        /// The file offset of the header.
        offset: u64,
    },
}

impl std::fmt::Display for Damage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Damage::Prepare { op, slot, offset } => {
                write!(f, "the prepare of op {op} (WAL slot {slot}, file offset {offset}) is corrupted, but its redundant header proves it was durable")
            }
            Damage::Header { slot, offset } => {
                write!(f, "the redundant header of WAL slot {slot} (file offset {offset}) is corrupted")
            }
        }
    }
}

/// The view state recovery checks the log against (from the superblock): every op after
/// `head_op` was prepared in `log_view`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ViewHead {
    /// The head op of the log adopted on entering `log_view`.
    pub head_op: u64,
    /// The view in which the log was last normal.
    pub log_view: u32,
}

/// A recovery of the log in progress ([`Journal::replay_start`]).
pub struct Replay {
    recovered: Recovered,
    /// The last op the log can hold above the checkpoint.
    op_max: u64,
    view_head: ViewHead,
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
    /// The stage in flight, if any.
    stage: Option<Stage>,
    /// The ops whose prepares are durable but whose headers are not yet (first, last).
    headers_pending: Option<(u64, u64)>,
    /// The newest op whose prepare a stage has written (or is writing).
    op_staged: Option<u64>,
    /// The first sector of redundant headers recovery could not read, if any (its headers are
    /// taken as damaged).
    headers_unreadable: Option<u64>,
}

/// A write stage of the log in flight ([`Journal::stage_begin`]).
struct Stage {
    /// The newest op whose header this stage writes (prepares durable when it began).
    headers_through: Option<u64>,
    /// The headers of the prepares this stage writes: set in the ring once they are durable.
    prepares: [Header; APPEND_PREPARES_MAX],
    prepare_count: usize,
    /// The headers-ring sectors this stage writes.
    sectors: [usize; STAGE_HEADER_SECTORS_MAX],
    sector_count: usize,
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

/// The most redundant-header sectors one stage writes: those of its pending headers (a
/// pipeline of consecutive ops spans at most two) and a few left ready by recovery.
const STAGE_HEADER_SECTORS_MAX: usize = 8;

/// The most writes of one stage ([`Journal::stage_begin`]).
pub const JOURNAL_STAGE_WRITES_MAX: usize = APPEND_PREPARES_MAX + STAGE_HEADER_SECTORS_MAX;

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
        Journal {
            layout,
            cluster,
            headers,
            headers_ready: vec![false; sectors],
            stage: None,
            headers_pending: None,
            op_staged: None,
            headers_unreadable: None,
        }
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

    /// Overwrites every redundant header with zeros, synced: no header vouches for anything, so
    /// recovery finds each one damaged (`Journal::header_damaged`). For `ledger recover`: the
    /// replica's log is unknown (it may have acknowledged ops its lost file held), and it must
    /// recover its head from its peers before it takes part in a view change.
    pub fn headers_unknown(&self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        let zeros = AlignedBuffer::new(self.headers.len());
        storage.write(&[Write { offset: self.layout.wal_headers_offset(), data: &zeros }])?;
        storage.sync()
    }

    /// The redundant header of `slot` as held in memory.
    pub fn header(&self, slot: u64) -> Header {
        bytemuck::pod_read_unaligned(&self.headers[slot as usize * HEADER_SIZE..][..HEADER_SIZE])
    }

    /// Begins the next write stage of the log: the redundant headers of every prepare made
    /// durable by the previous stage, and `prepares` (sealed messages, sector-padded, the ops
    /// after those of the previous stage). Fills `writes` and returns how many there are, or
    /// `None` with nothing to write. The caller writes them all, then `fdatasync`s, then calls
    /// [`Journal::stage_end`]; a failure of either is fatal.
    ///
    /// Why stages: a header may only be written once its prepare is durable, so each group of
    /// prepares takes two stages, and the prepares of one group ride with the headers of the
    /// one before — one `fdatasync` per group under load, and the log's I/O of the next group
    /// is in flight while the durable group executes. A valid redundant header still proves a
    /// durable prepare, and at most one stage's prepares are durable without their headers.
    pub fn stage_begin<'a>(&'a mut self, prepares: &[&'a [u8]], writes: &mut [Write<'a>]) -> Option<usize> {
        assert!(self.stage.is_none(), "one stage at a time");
        assert!(prepares.len() <= APPEND_PREPARES_MAX);
        assert!(writes.len() >= JOURNAL_STAGE_WRITES_MAX);
        if prepares.is_empty() && self.headers_pending.is_none() {
            return None;
        }
        let mut stage = Stage {
            headers_through: self.headers_pending.map(|(_, last)| last),
            prepares: [Header::new(Command::Reserved, 0); APPEND_PREPARES_MAX],
            prepare_count: prepares.len(),
            sectors: [0; STAGE_HEADER_SECTORS_MAX],
            sector_count: 0,
        };
        let mut op_previous = self.op_staged;
        for (prepare, staged) in prepares.iter().zip(stage.prepares.iter_mut()) {
            let header: Header = bytemuck::pod_read_unaligned(&prepare[..HEADER_SIZE]);
            assert!(header.valid_checksum());
            assert_eq!(header.command(), Some(Command::Prepare));
            assert_eq!(header.cluster, self.cluster);
            // Consecutive ops: their headers then span few sectors of the ring.
            assert!(op_previous.is_none_or(|previous: u64| header.op == previous + 1));
            op_previous = Some(header.op);
            let size = (header.size as usize).next_multiple_of(SECTOR_SIZE);
            assert!(size <= prepare.len() && size as u64 <= self.layout.message_size_max);
            *staged = header;
        }
        // The sectors of the pending headers first (the stage exists for them), then sectors
        // left ready by recovery, a few per stage.
        if let Some((first, last)) = self.headers_pending {
            for op in first..=last {
                let sector = self.sector_of(op);
                if self.headers_ready[sector] && !stage.sectors[..stage.sector_count].contains(&sector) {
                    stage.sectors[stage.sector_count] = sector;
                    stage.sector_count += 1;
                }
            }
        }
        for sector in 0..self.headers_ready.len() {
            if stage.sector_count == STAGE_HEADER_SECTORS_MAX {
                break;
            }
            if self.headers_ready[sector] && !stage.sectors[..stage.sector_count].contains(&sector) {
                stage.sectors[stage.sector_count] = sector;
                stage.sector_count += 1;
            }
        }
        if let Some(last) = op_previous.filter(|_| !prepares.is_empty()) {
            self.op_staged = Some(last);
        }
        self.stage = Some(stage);
        let this: &'a Journal = self;
        let stage = this.stage.as_ref().expect("just begun");
        let mut count = 0;
        for prepare in prepares {
            let header = &stage.prepares[count];
            let size = (header.size as usize).next_multiple_of(SECTOR_SIZE);
            let slot = header.op % this.layout.journal_slot_count;
            writes[count] = Write { offset: this.layout.wal_prepare_offset(slot), data: &prepare[..size] };
            count += 1;
        }
        for sector in &stage.sectors[..stage.sector_count] {
            writes[count] = this.header_sector_write(*sector);
            count += 1;
        }
        Some(count)
    }

    /// Ends the stage in flight, whose writes and `fdatasync` succeeded: its prepares are
    /// durable (their headers go to the ring, for the next stage) and so are its headers.
    /// Returns the newest op now durable with its redundant header (acknowledgeable), if the
    /// stage made one so.
    pub fn stage_end(&mut self) -> Option<u64> {
        let stage = self.stage.take().expect("a stage in flight");
        for sector in &stage.sectors[..stage.sector_count] {
            self.headers_ready[*sector] = false;
        }
        self.headers_pending = None;
        for header in &stage.prepares[..stage.prepare_count] {
            self.set_header(header);
            let first = self.headers_pending.map_or(header.op, |(first, _)| first);
            self.headers_pending = Some((first, header.op));
        }
        stage.headers_through
    }

    /// True if every op up to `op` whose prepare a stage made durable has its redundant
    /// header durable too (none of them waits for a stage to write its header).
    pub fn headers_durable_through(&self, op: u64) -> bool {
        self.headers_pending.is_none_or(|(first, _)| first > op)
    }

    /// Forgets every op after `op` (a view change truncated them, or recovery cut them as
    /// stale): the next stage writes the op after `op`, and the redundant headers of the ops
    /// forgotten are reserved again on disk, here and now (written and synced), before any
    /// other prepare can reach their slots — else a later recovery would find a durable
    /// header of an op the chain no longer reaches and take it for a damaged prepare. No stage
    /// may be in flight. Returns how many headers were reserved.
    pub fn truncate(&mut self, storage: &mut dyn Storage, op: u64) -> Result<u64, StorageError> {
        assert!(self.stage.is_none(), "no stage in flight while the log is truncated");
        self.op_staged = self.op_staged.map(|staged| staged.min(op));
        self.headers_pending = match self.headers_pending {
            Some((first, _)) if first > op => None,
            Some((first, last)) => Some((first, last.min(op))),
            None => None,
        };
        let mut sectors = vec![false; self.headers_ready.len()];
        let mut reserved = 0;
        for slot in 0..self.layout.journal_slot_count {
            let header = self.header(slot);
            // Damaged headers go too: the log is known up to `op` now (recovery's evidence of
            // lost ops is needed no longer once the replica holds a view's log).
            if (header.command() == Some(Command::Prepare) && header.op > op) || !self.header_intact(slot) {
                let empty = reserved_header(self.cluster, slot);
                self.headers[slot as usize * HEADER_SIZE..][..HEADER_SIZE]
                    .copy_from_slice(bytemuck::bytes_of(&empty));
                sectors[(slot / HEADERS_PER_SECTOR) as usize] = true;
                reserved += 1;
            }
        }
        let writes: Vec<Write<'_>> = (0..sectors.len())
            .filter(|sector| sectors[*sector])
            .map(|sector| self.header_sector_write(sector))
            .collect();
        if !writes.is_empty() {
            storage.write_and_sync(&writes)?;
        }
        for (ready, written) in self.headers_ready.iter_mut().zip(sectors) {
            *ready &= !written;
        }
        Ok(reserved)
    }

    /// True if a stage is in flight.
    pub fn stage_in_flight(&self) -> bool {
        self.stage.is_some()
    }

    /// The headers-ring sector of `op`'s header.
    fn sector_of(&self, op: u64) -> usize {
        ((op % self.layout.journal_slot_count) / HEADERS_PER_SECTOR) as usize
    }

    /// The write of headers-ring sector `sector` as held in memory.
    fn header_sector_write(&self, sector: usize) -> Write<'_> {
        let offset = sector * SECTOR_SIZE;
        Write {
            offset: self.layout.wal_headers_offset() + offset as u64,
            data: &self.headers[offset..offset + SECTOR_SIZE],
        }
    }

    /// Writes (and syncs) the redundant headers of durable prepares not yet written, so that an
    /// idle log carries proof of all its durable entries.
    /// (A stage in flight writes its own sectors: those are left to it.)
    pub fn flush_headers(&mut self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        let mut flushed = self.headers_ready.clone();
        if let Some(stage) = &self.stage {
            for sector in &stage.sectors[..stage.sector_count] {
                flushed[*sector] = false;
            }
        }
        let writes: Vec<Write<'_>> = (0..flushed.len())
            .filter(|sector| flushed[*sector])
            .map(|sector| self.header_sector_write(sector))
            .collect();
        if writes.is_empty() {
            return Ok(());
        }
        storage.write_and_sync(&writes)?;
        for (ready, flushed) in self.headers_ready.iter_mut().zip(flushed) {
            *ready &= !flushed;
        }
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
        // A slot the medium cannot read is damaged, like one that reads corrupted.
        let readable = |result: Result<(), StorageError>| match result {
            Err(error) if error.is_media_read_error() => Ok(false),
            other => other.map(|()| true),
        };
        if !readable(storage.read(offset, &mut buffer[..SECTOR_SIZE]))? {
            return Ok(SlotRead::Damaged);
        }
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
        if size_sectors > SECTOR_SIZE
            && !readable(storage.read(offset + SECTOR_SIZE as u64, &mut buffer[SECTOR_SIZE..size_sectors]))?
        {
            return Ok(SlotRead::Damaged);
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
        view_head: ViewHead,
        mut replay: impl FnMut(&Header, &[u8]),
    ) -> Result<Recovered, JournalError> {
        let mut replaying =
            self.replay_start(storage, checkpoint_op, checkpoint_checksum, checkpoint_timestamp, view_head)?;
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
        view_head: ViewHead,
    ) -> Result<Replay, JournalError> {
        assert!(self.stage.is_none() && self.headers_pending.is_none());
        self.headers_read(storage)?;
        self.headers_ready.iter_mut().for_each(|ready| *ready = false);
        self.op_staged = None;
        Ok(Replay {
            recovered: Recovered {
                op_min: checkpoint_op + 1,
                op_head: checkpoint_op,
                head_checksum: checkpoint_checksum,
                head_timestamp: checkpoint_timestamp,
                torn_head: false,
                stale_cut: false,
                damaged: None,
            },
            op_max: checkpoint_op + self.layout.journal_slot_count,
            view_head,
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
            let slot = op % self.layout.journal_slot_count;
            let redundant = self.header(slot);
            if redundant.valid_checksum()
                && redundant.command() == Some(Command::Prepare)
                && redundant.op == op
                && redundant.checksum != header.checksum
            {
                // The redundant header proves another prepare of this op durable: the one in
                // the slot is older (a log a view change replaced) and the newer one's write
                // was lost. Damage: neither this prepare nor a cut here is the truth.
                replay.ended = true;
                return Err(JournalError::Corrupt { op, slot, offset: self.layout.wal_prepare_offset(slot) });
            }
            if header.parent == recovered.head_checksum
                && op > replay.view_head.head_op
                && header.view != replay.view_head.log_view
            {
                // After the head of the log it adopted for its log view, a replica's log holds
                // only prepares of that view: this one is of a log the view change truncated
                // (this replica's acknowledgements of it, if any, were not needed to commit).
                replay.ended = true;
                recovered.stale_cut = true;
                return Ok(None);
            }
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

    /// Reads the redundant headers ring into memory; a sector the medium cannot read is taken as
    /// zeroes, which are no valid header: damaged (`Journal::header_damaged`).
    fn headers_read(&mut self, storage: &mut dyn Storage) -> Result<(), StorageError> {
        let offset = self.layout.wal_headers_offset();
        self.headers_unreadable = None;
        match storage.read(offset, &mut self.headers) {
            Err(error) if error.is_media_read_error() => {}
            other => return other,
        }
        for (index, sector) in self.headers.chunks_exact_mut(SECTOR_SIZE).enumerate() {
            let sector_offset = offset + (index * SECTOR_SIZE) as u64;
            match storage.read(sector_offset, sector) {
                Err(error) if error.is_media_read_error() => {
                    sector.fill(0);
                    self.headers_unreadable = self.headers_unreadable.or(Some(sector_offset));
                }
                other => other?,
            }
        }
        Ok(())
    }

    /// The first sector of redundant headers the last recovery could not read, if any.
    pub fn headers_unreadable(&self) -> Option<u64> {
        self.headers_unreadable
    }

    /// The first slot whose redundant header, as held in memory, is damaged: neither reserved
    /// (op = the slot) nor a prepare's header of an op of that slot, intact and of this
    /// cluster. Only storage faults leave one: every header written is one of those, and a
    /// header lies within one sector, which a torn write leaves old or new.
    pub fn header_damaged(&self) -> Option<Damage> {
        (0..self.layout.journal_slot_count).find(|slot| !self.header_intact(*slot)).map(|slot| {
            Damage::Header { slot, offset: self.layout.wal_headers_offset() + slot * HEADER_SIZE as u64 }
        })
    }

    /// True if the redundant header of `slot` in memory is reserved, or an intact prepare
    /// header of an op of the slot.
    fn header_intact(&self, slot: u64) -> bool {
        let header = self.header(slot);
        let fits = match header.command() {
            Some(Command::Reserved) => header.op == slot,
            Some(Command::Prepare) => header.op % self.layout.journal_slot_count == slot,
            _ => false,
        };
        fits && header.valid_checksum() && header.cluster == self.cluster
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

    /// Restores the redundant header of an op this replica executed whose header recovery found
    /// damaged, from a peer's copy that the caller verified against the op's checksum: it is
    /// written with the next stage or flush.
    pub fn header_restore(&mut self, header: &Header) {
        assert!(header.valid_checksum() && header.command() == Some(Command::Prepare));
        assert_eq!(header.cluster, self.cluster);
        self.set_header(header);
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
