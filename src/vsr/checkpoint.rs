//! Checkpoints: the state machine's persisted arrays, stored as pages in the grid.
//!
//! Each array is cut into pages of one grid block. A checkpoint writes only the pages whose
//! content changed since the previous checkpoint (new transfers, accounts whose balances moved,
//! changed pending statuses), each to a *free* block — never over a block the durable checkpoint
//! references — then writes a new manifest (the list of every page's block reference) and flips
//! the superblock. Blocks the old checkpoint referenced and the new one does not are released
//! only after the superblock is durable, so a crash at any point leaves the old checkpoint whole.
//!
//! Which pages changed is found by hashing: append-only arrays (transfers, history, burned ids)
//! only change at their tail, and the mutable ones (accounts, pending statuses) are hashed page
//! by page and compared with the manifest's checksums. No dirty tracking burdens the hot path.

use xxhash_rust::xxh3::xxh3_128;

use super::client_table::CLIENT_SESSION_SIZE;
use super::superblock::{BlockReference, Checkpoint, SuperBlock, MANIFEST_BLOCKS_MAX};
use super::write_stage::Stage;
use crate::state_machine::{PERSISTED_ARRAYS, PERSISTED_RECORD_SIZES};
use crate::storage::layout::{Layout, SUPERBLOCK_COPIES, SUPERBLOCK_COPY_SIZE};
use crate::storage::{AlignedBuffer, Storage, StorageError, Write};

/// The arrays of a checkpoint: the state machine's, then the client sessions.
pub const CHECKPOINT_ARRAYS: usize = PERSISTED_ARRAYS + 1;

/// The record size of each checkpointed array.
pub const RECORD_SIZES: [usize; CHECKPOINT_ARRAYS] = {
    let mut sizes = [CLIENT_SESSION_SIZE; CHECKPOINT_ARRAYS];
    let mut index = 0;
    while index < PERSISTED_ARRAYS {
        sizes[index] = PERSISTED_RECORD_SIZES[index];
        index += 1;
    }
    sizes
};

/// Whether each array only grows at its end (so its full pages never change).
const APPEND_ONLY: [bool; CHECKPOINT_ARRAYS] = [false, true, false, true, true, false];

/// Blocks staged in memory before they are submitted as one batch of writes.
const STAGING_BLOCKS: usize = crate::constants::GRID_STAGE_BLOCKS_MAX;

/// The most writes of one grid stage ([`Grid::stage_begin`]).
pub const GRID_STAGE_WRITES_MAX: usize = STAGING_BLOCKS;

/// Why a checkpoint could not be written or loaded.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// I/O failed.
    #[error("checkpoint I/O: {0}")]
    Storage(#[from] StorageError),
    /// The grid has no free block: the data file was formatted too small for this state.
    #[error("the grid is full ({blocks} blocks): the data file is too small for the ledger's state")]
    GridFull {
        /// The grid's block count.
        blocks: u64,
    },
    /// The state needs more manifest blocks than the superblock can reference.
    #[error("the checkpoint needs {needed} manifest blocks; at most {MANIFEST_BLOCKS_MAX} fit (use a larger block size)")]
    ManifestFull {
        /// Manifest blocks needed.
        needed: usize,
    },
    /// A block read back does not match its reference.
    #[error("grid block {address} (file offset {offset}) is corrupted: its checksum does not match the checkpoint")]
    Corrupt {
        /// The block address.
        address: u64,
        /// Its file offset.
        offset: u64,
    },
    /// A reference points outside the grid.
    #[error("the checkpoint references block {address}, outside the grid of {blocks} blocks")]
    BadReference {
        /// The address.
        address: u64,
        /// The grid's block count.
        blocks: u64,
    },
}

impl CheckpointError {
    /// True if the error is damage of the checkpoint's blocks on this disk (corrupted,
    /// misplaced, or unreadable), which a peer's copies can repair.
    pub fn is_damage(&self) -> bool {
        match self {
            CheckpointError::Corrupt { .. } | CheckpointError::BadReference { .. } => true,
            CheckpointError::Storage(error) => error.is_media_read_error(),
            CheckpointError::GridFull { .. } | CheckpointError::ManifestFull { .. } => false,
        }
    }
}

/// What each checkpointed array holds, for messages.
pub const ARRAY_NAMES: [&str; CHECKPOINT_ARRAYS] = [
    "accounts",
    "transfers",
    "transfer pending statuses",
    "history snapshots",
    "burned transfer ids",
    "client sessions",
];

/// Which block of a checkpoint a grid block is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockRole {
    /// Manifest block `index` (in the superblock's order).
    Manifest {
        /// Its index in the superblock's list.
        index: usize,
    },
    /// Page `page` of checkpointed array `array` (see [`ARRAY_NAMES`]).
    Page {
        /// The array.
        array: usize,
        /// The page within it.
        page: usize,
    },
}

impl std::fmt::Display for BlockRole {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BlockRole::Manifest { index } => write!(f, "manifest block {index}"),
            BlockRole::Page { array, page } => write!(f, "page {page} of the {}", ARRAY_NAMES[*array]),
        }
    }
}

/// A damaged checkpoint block, found by [`Grid::verify`].
#[derive(Debug)]
pub struct BlockDamage {
    /// What the block holds.
    pub role: BlockRole,
    /// How it is damaged: [`CheckpointError::Corrupt`] or [`CheckpointError::BadReference`].
    pub error: CheckpointError,
}

/// What one checkpoint wrote.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CheckpointStats {
    /// Pages whose content changed and were written.
    pub pages_written: u64,
    /// Pages unchanged and kept.
    pub pages_kept: u64,
    /// Manifest blocks written.
    pub manifest_blocks: u64,
}

/// The grid: block allocation and the durable checkpoint's page references.
pub struct Grid {
    layout: Layout,
    /// Per block (`address − 1`): referenced by the durable checkpoint or acquired since.
    acquired: Vec<bool>,
    /// The durable checkpoint's page references, per array.
    pages: [Vec<BlockReference>; CHECKPOINT_ARRAYS],
    /// The durable checkpoint's manifest blocks.
    manifest: Vec<BlockReference>,
    /// Where the next free-block search starts (keeps allocation O(1) amortised within a
    /// checkpoint); back to the first block at each checkpoint's start, so that where a
    /// checkpoint's blocks go depends only on the durable checkpoint and the state — the same
    /// on every replica at the same op, whatever its history of crashes (peers repair a block
    /// by address and checksum).
    search_start: u64,
    /// The checkpoint being written, if any.
    pending: Option<Pending>,
    /// Copies of the pages that may change before the checkpoint in progress writes them.
    copies: Vec<u8>,
    /// Blocks on their way to the disk, written `STAGING_BLOCKS` at a time.
    staging: Staging,
    /// The superblock copy on its way to the disk.
    superblock_copy: AlignedBuffer,
}

/// A sector-aligned staging area for blocks on their way to the disk.
struct Staging {
    buffer: AlignedBuffer,
    /// The block address each staged block goes to.
    addresses: [u64; STAGING_BLOCKS],
}

impl Staging {
    /// Copies `content` (zero-padded to a block) into staging slot `index`, bound for block
    /// `address`.
    fn put(&mut self, index: usize, block_size: usize, address: u64, content: &[u8]) {
        assert!(index < STAGING_BLOCKS && content.len() <= block_size && address > 0);
        let slot = &mut self.buffer[index * block_size..][..block_size];
        slot[..content.len()].copy_from_slice(content);
        slot[content.len()..].fill(0);
        self.addresses[index] = address;
    }
}

/// Where a checkpoint in progress is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Writing its pages.
    Pages,
    /// Writing its manifest: `written` blocks are.
    Manifest { written: usize },
    /// Writing superblock copy `copy` (each synced before the next).
    Superblock { copy: u64 },
}

/// What the grid stage in flight completes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum InFlight {
    /// The pages up to `end` (of `Pending::writes`).
    Pages { end: usize },
    /// The manifest blocks up to `end`, synced with everything before if that is the last.
    Manifest { end: usize },
    /// Superblock copy `copy`, synced.
    Superblock { copy: u64 },
}

/// A checkpoint whose pages are being written.
struct Pending {
    op: u64,
    prepare_checksum: u128,
    timestamp: u64,
    lengths: [u64; CHECKPOINT_ARRAYS],
    /// The new checkpoint's page references, per array.
    pages: [Vec<BlockReference>; CHECKPOINT_ARRAYS],
    /// The pages to write, in order; `written` of them are.
    writes: Vec<PageWrite>,
    written: usize,
    /// Blocks of the durable checkpoint this one replaces: freed once it is durable.
    released: Vec<u64>,
    stats: CheckpointStats,
    phase: Phase,
    in_flight: Option<InFlight>,
    /// The manifest (every page's reference, in array order) and its blocks, once the pages
    /// are written.
    manifest_bytes: Vec<u8>,
    manifest_new: Vec<BlockReference>,
    /// The superblock that makes this checkpoint durable, once the manifest is laid out.
    superblock: Option<SuperBlock>,
}

/// One page to write: to `address`, from `copies[copy..]` or, if none, from the live array.
#[derive(Clone, Copy, Debug)]
struct PageWrite {
    address: u64,
    array: usize,
    page: usize,
    copy: Option<usize>,
}

impl Grid {
    /// An empty grid (a freshly formatted data file).
    pub fn new(layout: Layout) -> Grid {
        Grid {
            layout,
            acquired: vec![false; layout.grid_block_count as usize],
            pages: Default::default(),
            manifest: Vec::new(),
            search_start: 0,
            pending: None,
            copies: Vec::new(),
            staging: Staging {
                buffer: AlignedBuffer::new(layout.block_size as usize * STAGING_BLOCKS),
                addresses: [0; STAGING_BLOCKS],
            },
            superblock_copy: AlignedBuffer::new(SUPERBLOCK_COPY_SIZE as usize),
        }
    }

    /// Loads the checkpoint of `superblock`: reads and verifies its manifest and every page,
    /// and returns the persisted arrays (16-byte aligned, as `StateMachine::restore` wants).
    pub fn open(
        storage: &mut dyn Storage,
        superblock: &SuperBlock,
    ) -> Result<(Grid, [Vec<u128>; CHECKPOINT_ARRAYS]), CheckpointError> {
        Grid::load(storage, superblock, None)
    }

    /// Reads every block of the checkpoint of `superblock` and reports *each* damaged one
    /// (where [`Grid::open`] stops at the first), for `inspect`. Read-only. The arrays returned
    /// are as read: whole only if no block is damaged (if a manifest block is, no page is read).
    pub(crate) fn verify(
        storage: &mut dyn Storage,
        superblock: &SuperBlock,
    ) -> Result<([Vec<u128>; CHECKPOINT_ARRAYS], Vec<BlockDamage>), CheckpointError> {
        let mut damage = Vec::new();
        let (_, arrays) = Grid::load(storage, superblock, Some(&mut damage))?;
        Ok((arrays, damage))
    }

    /// [`Grid::open`] if `damage` is `None`; else records damaged blocks there and goes on.
    fn load(
        storage: &mut dyn Storage,
        superblock: &SuperBlock,
        mut damage: Option<&mut Vec<BlockDamage>>,
    ) -> Result<(Grid, [Vec<u128>; CHECKPOINT_ARRAYS]), CheckpointError> {
        let layout = superblock.layout();
        let checkpoint = &superblock.checkpoint;
        let mut grid = Grid::new(layout);
        let block_size = layout.block_size as usize;
        let mut block = AlignedBuffer::new(block_size);
        let mut manifest_bytes = Vec::with_capacity(checkpoint.manifest_size as usize);
        let manifest = &checkpoint.manifest[..checkpoint.manifest_block_count as usize];
        for (index, reference) in manifest.iter().enumerate() {
            grid.read_block_or_record(
                storage,
                reference,
                &mut block,
                BlockRole::Manifest { index },
                &mut damage,
            )?;
            let take = (checkpoint.manifest_size as usize - manifest_bytes.len()).min(block_size);
            manifest_bytes.extend_from_slice(&block[..take]);
            grid.manifest.push(*reference);
        }
        let mut arrays: [Vec<u128>; CHECKPOINT_ARRAYS] = Default::default();
        if damage.as_ref().is_some_and(|damage| !damage.is_empty()) {
            // A damaged manifest names no pages that could be trusted.
            return Ok((grid, arrays));
        }
        let references = manifest_references(&manifest_bytes);
        let mut next = 0;
        for array in 0..CHECKPOINT_ARRAYS {
            let size = checkpoint.array_lengths[array] as usize * RECORD_SIZES[array];
            let page_count = size.div_ceil(block_size);
            let Some(page_references) = references.get(next..next + page_count) else {
                return Err(CheckpointError::BadReference { address: 0, blocks: layout.grid_block_count });
            };
            next += page_count;
            let mut data = vec![0u128; page_count * block_size / 16];
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut data);
            for (page, reference) in page_references.iter().enumerate() {
                let role = BlockRole::Page { array, page };
                grid.read_block_or_record(storage, reference, &mut block, role, &mut damage)?;
                bytes[page * block_size..][..block_size].copy_from_slice(&block);
            }
            data.truncate(size.div_ceil(16));
            grid.pages[array] = page_references.to_vec();
            arrays[array] = data;
        }
        Ok((grid, arrays))
    }

    /// [`Grid::read_block`]; with a `damage` list, a damaged block is recorded there instead of
    /// failing (an I/O error still fails).
    fn read_block_or_record(
        &mut self,
        storage: &mut dyn Storage,
        reference: &BlockReference,
        block: &mut AlignedBuffer,
        role: BlockRole,
        damage: &mut Option<&mut Vec<BlockDamage>>,
    ) -> Result<(), CheckpointError> {
        match (self.read_block(storage, reference, block), damage.as_deref_mut()) {
            (
                Err(error @ (CheckpointError::Corrupt { .. } | CheckpointError::BadReference { .. })),
                Some(damage),
            ) => {
                damage.push(BlockDamage { role, error });
                Ok(())
            }
            (outcome, _) => outcome,
        }
    }

    /// Reads the block `reference` names into `block`, verifying it, and marks it acquired.
    fn read_block(
        &mut self,
        storage: &mut dyn Storage,
        reference: &BlockReference,
        block: &mut AlignedBuffer,
    ) -> Result<(), CheckpointError> {
        let blocks = self.layout.grid_block_count;
        if reference.address == 0 || reference.address > blocks {
            return Err(CheckpointError::BadReference { address: reference.address, blocks });
        }
        let offset = self.layout.block_offset(reference.address);
        storage.read(offset, block)?;
        if xxh3_128(block) != reference.checksum {
            return Err(CheckpointError::Corrupt { address: reference.address, offset });
        }
        self.acquired[reference.address as usize - 1] = true;
        Ok(())
    }

    /// Writes a checkpoint of `arrays` (the state after op `op`) and makes it the superblock's,
    /// all at once. On return the new checkpoint is durable and the old one's unneeded blocks
    /// are free.
    pub fn checkpoint(
        &mut self,
        storage: &mut dyn Storage,
        superblock: &mut SuperBlock,
        arrays: [&[u8]; CHECKPOINT_ARRAYS],
        op: u64,
        prepare_checksum: u128,
        timestamp: u64,
    ) -> Result<CheckpointStats, CheckpointError> {
        self.begin(superblock, arrays, op, prepare_checksum, timestamp)?;
        Ok(self.run(storage, superblock, arrays, usize::MAX)?.expect("an unlimited run finishes"))
    }

    /// Starts a checkpoint of `arrays` (the state after op `op`) without writing anything: finds
    /// the changed pages, takes a block for each, and copies the pages that may still change (of
    /// the mutable arrays, and the partial last page of the others). Full pages of append-only
    /// arrays never change again, so they are written later straight from `arrays`. Write them
    /// stage by stage ([`Grid::stage_begin`]) or here and now ([`Grid::run`]).
    pub fn begin(
        &mut self,
        superblock: &SuperBlock,
        arrays: [&[u8]; CHECKPOINT_ARRAYS],
        op: u64,
        prepare_checksum: u128,
        timestamp: u64,
    ) -> Result<(), CheckpointError> {
        assert!(self.pending.is_none(), "one checkpoint at a time");
        assert!(op >= superblock.checkpoint.op);
        self.search_start = 0;
        let block_size = self.layout.block_size as usize;
        let mut pending = Pending {
            op,
            prepare_checksum,
            timestamp,
            lengths: [0; CHECKPOINT_ARRAYS],
            pages: Default::default(),
            writes: Vec::new(),
            written: 0,
            released: Vec::new(),
            stats: CheckpointStats::default(),
            phase: Phase::Pages,
            in_flight: None,
            manifest_bytes: Vec::new(),
            manifest_new: Vec::new(),
            superblock: None,
        };
        self.copies.clear();
        for (array, bytes) in arrays.iter().enumerate() {
            pending.lengths[array] = (bytes.len() / RECORD_SIZES[array]) as u64;
            let old = std::mem::take(&mut self.pages[array]);
            let old_size = superblock.checkpoint.array_lengths[array] as usize * RECORD_SIZES[array];
            assert!(bytes.len() >= old_size || !APPEND_ONLY[array]);
            let mut references = Vec::with_capacity(bytes.len().div_ceil(block_size));
            let outcome = self.begin_array(array, bytes, &old, old_size, &mut references, &mut pending);
            // Arrays never shrink, so every old page is either kept or replaced.
            assert!(outcome.is_err() || references.len() >= old.len());
            self.pages[array] = old;
            outcome?;
            pending.pages[array] = references;
        }
        self.pending = Some(pending);
        Ok(())
    }

    /// Plans the pages of one array for [`Grid::begin`].
    fn begin_array(
        &mut self,
        array: usize,
        bytes: &[u8],
        old: &[BlockReference],
        old_size: usize,
        references: &mut Vec<BlockReference>,
        pending: &mut Pending,
    ) -> Result<(), CheckpointError> {
        let block_size = self.layout.block_size as usize;
        for (page, content) in bytes.chunks(block_size).enumerate() {
            let unchanged_by_construction = APPEND_ONLY[array] && (page + 1) * block_size <= old_size;
            if unchanged_by_construction {
                references.push(old[page]);
                pending.stats.pages_kept += 1;
                continue;
            }
            let checksum = page_checksum(content, block_size);
            if old.get(page).is_some_and(|reference| reference.checksum == checksum) {
                references.push(old[page]);
                pending.stats.pages_kept += 1;
                continue;
            }
            if let Some(reference) = old.get(page) {
                pending.released.push(reference.address);
            }
            let address = self.acquire()?;
            let immutable = APPEND_ONLY[array] && content.len() == block_size;
            let copy = if immutable {
                None
            } else {
                let at = self.copies.len();
                self.copies.extend_from_slice(content);
                self.copies.resize(at + block_size, 0);
                Some(at)
            };
            pending.writes.push(PageWrite { address, array, page, copy });
            references.push(BlockReference { checksum, address, reserved: 0 });
            pending.stats.pages_written += 1;
        }
        Ok(())
    }

    /// Carries out the checkpoint in progress here and now, stage by stage, writing at most
    /// `pages_max` more pages: returns its stats if that made it durable (then `superblock` is
    /// the new one). `arrays` must be the live arrays (their full append-only pages are the
    /// checkpoint's).
    pub fn run(
        &mut self,
        storage: &mut dyn Storage,
        superblock: &mut SuperBlock,
        arrays: [&[u8]; CHECKPOINT_ARRAYS],
        pages_max: usize,
    ) -> Result<Option<CheckpointStats>, CheckpointError> {
        let mut pages_left = pages_max;
        loop {
            let mut writes = [Write { offset: 0, data: &[] }; GRID_STAGE_WRITES_MAX];
            let Some(stage) = self.stage_begin(superblock, arrays, pages_left, true, &mut writes)? else {
                return Ok(None);
            };
            if stage.count > 0 {
                storage.write(&writes[..stage.count])?;
            }
            if stage.sync {
                storage.sync()?;
            }
            pages_left -= self.stage_pages();
            if let Some((durable, stats)) = self.stage_end() {
                *superblock = durable;
                return Ok(Some(stats));
            }
        }
    }

    /// The op of the checkpoint in progress and the pages it has left to write, if any.
    pub fn in_progress(&self) -> Option<(u64, usize)> {
        self.pending.as_ref().map(|pending| (pending.op, pending.writes.len() - pending.written))
    }

    /// True if the checkpoint in progress has built the superblock that will make it durable
    /// (its manifest is laid out): until that superblock is written, no other may be.
    pub fn superblock_built(&self) -> bool {
        self.pending.as_ref().is_some_and(|pending| pending.superblock.is_some())
    }

    /// Drops the checkpoint in progress, if any (a syncing replica installs a peer's instead):
    /// true if it had built its superblock, some copies of which may be on disk.
    pub fn abandon(&mut self) -> bool {
        assert!(!self.stage_in_flight(), "no stage in flight on the buffers it drops");
        let built = self.superblock_built();
        self.pending = None;
        built
    }

    /// True if a stage of the checkpoint is in flight.
    pub fn stage_in_flight(&self) -> bool {
        self.pending.as_ref().is_some_and(|pending| pending.in_flight.is_some())
    }

    /// Pages the stage in flight writes (0 for its manifest and superblock stages).
    fn stage_pages(&self) -> usize {
        match self.pending.as_ref().and_then(|pending| pending.in_flight) {
            Some(InFlight::Pages { end }) => end - self.pending.as_ref().map_or(0, |pending| pending.written),
            _ => 0,
        }
    }

    /// Begins the next stage of the checkpoint in progress, if there is one to write now:
    /// up to `pages_max` pages (at most a staging area's worth); once every page is written and
    /// `may_finish` (the caller's own preconditions hold: the replies the checkpointed sessions
    /// name are written), the manifest and its `fdatasync`, then each superblock copy with its
    /// own `fdatasync` (one copy at a time, so a crash tears at most one). The stage's buffers
    /// are the grid's own and the immutable pages of `arrays`; none changes until
    /// [`Grid::stage_end`]. `superblock` is the durable one, which the new one follows.
    pub fn stage_begin<'a>(
        &'a mut self,
        superblock: &SuperBlock,
        arrays: [&'a [u8]; CHECKPOINT_ARRAYS],
        pages_max: usize,
        may_finish: bool,
        writes: &mut [Write<'a>],
    ) -> Result<Option<Stage>, CheckpointError> {
        assert!(writes.len() >= GRID_STAGE_WRITES_MAX);
        let block_size = self.layout.block_size as usize;
        let Some(mut pending) = self.pending.take() else { return Ok(None) };
        assert!(pending.in_flight.is_none(), "one grid stage at a time");
        if pending.phase == Phase::Pages && pending.written == pending.writes.len() {
            if !may_finish {
                self.pending = Some(pending);
                return Ok(None);
            }
            if let Err(error) = self.manifest_build(&mut pending, superblock) {
                self.pending = Some(pending);
                return Err(error);
            }
        }
        let (in_flight, blocks, sync) = match pending.phase {
            Phase::Pages => {
                let end = pending.writes.len().min(pending.written + pages_max.min(STAGING_BLOCKS));
                if end == pending.written {
                    // Paced: no page is due yet.
                    self.pending = Some(pending);
                    return Ok(None);
                }
                for (index, write) in pending.writes[pending.written..end].iter().enumerate() {
                    let content = match write.copy {
                        Some(at) => &self.copies[at..at + block_size],
                        None => &arrays[write.array][write.page * block_size..][..block_size],
                    };
                    self.staging.put(index, block_size, write.address, content);
                }
                (InFlight::Pages { end }, end - pending.written, false)
            }
            Phase::Manifest { written } => {
                let end = pending.manifest_new.len().min(written + STAGING_BLOCKS);
                let contents = pending.manifest_bytes.chunks(block_size).skip(written);
                for (index, (reference, content)) in
                    pending.manifest_new[written..end].iter().zip(contents).enumerate()
                {
                    self.staging.put(index, block_size, reference.address, content);
                }
                // The last manifest stage syncs every page and manifest block before any
                // superblock copy names them (an empty manifest still needs that sync).
                (InFlight::Manifest { end }, end - written, end == pending.manifest_new.len())
            }
            Phase::Superblock { copy } => {
                let durable = pending.superblock.as_mut().expect("built with the manifest");
                let write = durable.seal_copy(copy, &mut self.superblock_copy);
                let (offset, size) = (write.offset, write.data.len());
                pending.in_flight = Some(InFlight::Superblock { copy });
                self.pending = Some(pending);
                let this: &'a Grid = self;
                writes[0] = Write { offset, data: &this.superblock_copy[..size] };
                return Ok(Some(Stage::new(1, true)));
            }
        };
        pending.in_flight = Some(in_flight);
        self.pending = Some(pending);
        let this: &'a Grid = self;
        for (index, write) in writes[..blocks].iter_mut().enumerate() {
            *write = Write {
                offset: this.layout.block_offset(this.staging.addresses[index]),
                data: &this.staging.buffer[index * block_size..][..block_size],
            };
        }
        Ok(Some(Stage::new(blocks, sync)))
    }

    /// Ends the stage in flight, whose writes (and sync) succeeded. Returns the new superblock
    /// and the checkpoint's stats once its last superblock copy is durable: the checkpoint is
    /// then the durable one, and the blocks only the old one used are free again.
    pub fn stage_end(&mut self) -> Option<(SuperBlock, CheckpointStats)> {
        let pending = self.pending.as_mut().expect("a checkpoint in progress");
        let done = pending.in_flight.take().expect("a grid stage in flight");
        match done {
            InFlight::Pages { end } => {
                assert!(end > pending.written && end <= pending.writes.len());
                pending.written = end;
                None
            }
            InFlight::Manifest { end } => {
                pending.phase = if end == pending.manifest_new.len() {
                    Phase::Superblock { copy: 0 }
                } else {
                    Phase::Manifest { written: end }
                };
                None
            }
            InFlight::Superblock { copy } if copy + 1 < SUPERBLOCK_COPIES => {
                pending.phase = Phase::Superblock { copy: copy + 1 };
                None
            }
            InFlight::Superblock { .. } => {
                let mut pending = self.pending.take().expect("a checkpoint in progress");
                // The new checkpoint is durable: the old one's replaced blocks are free again.
                pending.released.extend(self.manifest.iter().map(|reference| reference.address));
                for address in &pending.released {
                    assert!(self.acquired[*address as usize - 1]);
                    self.acquired[*address as usize - 1] = false;
                }
                self.pages = pending.pages;
                self.manifest = pending.manifest_new;
                Some((pending.superblock.expect("built with the manifest"), pending.stats))
            }
        }
    }

    /// Once every page is written: lays out the manifest (every page's reference), takes its
    /// blocks, and builds the superblock that will reference it, following `superblock`.
    fn manifest_build(
        &mut self,
        pending: &mut Pending,
        superblock: &SuperBlock,
    ) -> Result<(), CheckpointError> {
        let block_size = self.layout.block_size as usize;
        let manifest_bytes: Vec<u8> =
            pending.pages.iter().flatten().flat_map(|r| bytemuck::bytes_of(r).to_vec()).collect();
        let manifest_block_count = manifest_bytes.len().div_ceil(block_size);
        if manifest_block_count > MANIFEST_BLOCKS_MAX {
            return Err(CheckpointError::ManifestFull { needed: manifest_block_count });
        }
        let mut manifest_new: Vec<BlockReference> = Vec::with_capacity(manifest_block_count);
        for content in manifest_bytes.chunks(block_size) {
            let address = match self.acquire() {
                Ok(address) => address,
                Err(error) => {
                    // Nothing references the blocks taken so far: give them back.
                    for reference in &manifest_new {
                        self.acquired[reference.address as usize - 1] = false;
                    }
                    return Err(error);
                }
            };
            manifest_new.push(BlockReference {
                checksum: page_checksum(content, block_size),
                address,
                reserved: 0,
            });
            pending.stats.manifest_blocks += 1;
        }
        let mut durable = *superblock;
        let checkpoint = &mut durable.checkpoint;
        checkpoint.op = pending.op;
        checkpoint.prepare_checksum = pending.prepare_checksum;
        checkpoint.timestamp = pending.timestamp;
        checkpoint.array_lengths = pending.lengths;
        checkpoint.manifest_size = manifest_bytes.len() as u64;
        checkpoint.manifest_block_count = manifest_block_count as u32;
        checkpoint.manifest = [BlockReference::default(); MANIFEST_BLOCKS_MAX];
        checkpoint.manifest[..manifest_block_count].copy_from_slice(&manifest_new);
        durable.parent = superblock.checksum;
        durable.sequence = superblock.sequence + 1;
        pending.superblock = Some(durable);
        pending.manifest_bytes = manifest_bytes;
        pending.manifest_new = manifest_new;
        pending.phase = Phase::Manifest { written: 0 };
        Ok(())
    }

    /// How many blocks the durable checkpoint references: its manifest's, then its pages'.
    pub fn durable_block_count(&self) -> usize {
        self.manifest.len() + self.pages.iter().map(Vec::len).sum::<usize>()
    }

    /// The durable checkpoint's block `index` of [`Grid::durable_block_count`] (manifest first,
    /// then each array's pages), for the scrubber.
    pub fn durable_block(&self, index: usize) -> Option<BlockReference> {
        let mut index = index;
        for references in std::iter::once(&self.manifest).chain(self.pages.iter()) {
            if index < references.len() {
                return Some(references[index]);
            }
            index -= references.len();
        }
        None
    }

    /// True if the durable checkpoint references `reference` (address and checksum): a block
    /// no checkpoint in progress may write over.
    pub fn durable_holds(&self, reference: &BlockReference) -> bool {
        std::iter::once(&self.manifest).chain(self.pages.iter()).flatten().any(|held| held == reference)
    }

    /// The number of blocks in use (referenced by the durable checkpoint).
    pub fn blocks_acquired(&self) -> u64 {
        self.acquired.iter().filter(|acquired| **acquired).count() as u64
    }

    /// Takes a free block: one that neither the durable checkpoint nor this checkpoint uses.
    fn acquire(&mut self) -> Result<u64, CheckpointError> {
        let count = self.acquired.len() as u64;
        for step in 0..count {
            let index = (self.search_start + step) % count;
            if !self.acquired[index as usize] {
                self.acquired[index as usize] = true;
                self.search_start = (index + 1) % count;
                return Ok(index + 1);
            }
        }
        Err(CheckpointError::GridFull { blocks: count })
    }
}

/// The block references a manifest's bytes hold, in order.
fn manifest_references(manifest: &[u8]) -> Vec<BlockReference> {
    manifest.chunks_exact(core::mem::size_of::<BlockReference>()).map(bytemuck::pod_read_unaligned).collect()
}

/// Every page `checkpoint` references (each array's, in order), from its manifest's bytes
/// (`manifest_size` of them, read from its manifest blocks): `None` if the manifest names fewer
/// pages than the array lengths need (written by a faulty build; refused).
pub fn checkpoint_pages(
    checkpoint: &Checkpoint,
    manifest: &[u8],
    block_size: u64,
) -> Option<Vec<BlockReference>> {
    let pages: usize = (0..CHECKPOINT_ARRAYS)
        .map(|array| {
            let size = checkpoint.array_lengths[array] as usize * RECORD_SIZES[array];
            size.div_ceil(block_size as usize)
        })
        .sum();
    let mut references = manifest_references(manifest.get(..checkpoint.manifest_size as usize)?);
    if references.len() < pages {
        return None;
    }
    references.truncate(pages);
    Some(references)
}

/// The checksum of a page as stored: its content zero-padded to a whole block.
fn page_checksum(content: &[u8], block_size: usize) -> u128 {
    if content.len() == block_size {
        return xxh3_128(content);
    }
    let mut padded = vec![0u8; block_size];
    padded[..content.len()].copy_from_slice(content);
    xxh3_128(&padded)
}
