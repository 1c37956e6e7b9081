//! The data file as a whole: format, open (superblock → checkpoint → WAL replay), append,
//! checkpoint. `docs/data-file.md` describes the bytes.

use super::checkpoint::{CheckpointError, CheckpointStats, Grid, CHECKPOINT_ARRAYS};
use super::client_table::CLIENT_SESSION_SIZE;
use super::header::Header;
use super::journal::{
    Journal, JournalError, Recovered, Replay, SlotRead, ViewHead, JOURNAL_STAGE_WRITES_MAX,
};
use super::superblock::{
    BlockReference, Checkpoint, SuperBlock, SuperBlockError, MAGIC, MANIFEST_BLOCKS_MAX, VERSION,
};
use super::write_stage::Stage;
use crate::constants::{HEADER_SIZE, REPLICAS_MAX};
use crate::state_machine::{Config, RestoreError, StateMachine, PERSISTED_RECORD_SIZES};
use crate::storage::layout::Layout;
use crate::storage::{Storage, StorageError, Write};
use xxhash_rust::xxh3::xxh3_128;

/// What a new data file is for and how large its parts are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FormatOptions {
    /// The cluster id.
    pub cluster: u128,
    /// This replica's index.
    pub replica: u8,
    /// The number of replicas.
    pub replica_count: u8,
    /// WAL slots.
    pub journal_slot_count: u64,
    /// The largest message.
    pub message_size_max: u64,
    /// Client sessions (reply slots).
    pub clients_max: u64,
    /// The grid block size.
    pub block_size: u64,
    /// The state machine's capacities.
    pub config: Config,
}

impl FormatOptions {
    /// The layout these options give: a grid large enough for two copies of the state at full
    /// capacity (a checkpoint writes new pages before it frees the old ones) and its manifest.
    pub fn layout(&self) -> Layout {
        let pages = state_pages_max(&self.config, self.clients_max, self.block_size);
        let manifest = manifest_blocks(pages, self.block_size);
        Layout {
            journal_slot_count: self.journal_slot_count,
            message_size_max: self.message_size_max,
            clients_max: self.clients_max,
            block_size: self.block_size,
            grid_block_count: 2 * (pages + manifest) + 8,
        }
    }
}

impl FormatOptions {
    /// Checks, before anything is written, that these options make a data file that `start`
    /// serves and the state machine can work with. The relations checked here are otherwise
    /// assertions (`StateMachine::new`, `AccountTransfers::new`) or refusals at `start`.
    pub fn validate(&self) -> Result<(), FormatOptionsError> {
        if !(1..=REPLICAS_MAX).contains(&self.replica_count) {
            return Err(FormatOptionsError::ReplicaCount { replica_count: self.replica_count });
        }
        if self.replica >= self.replica_count {
            return Err(FormatOptionsError::Replica {
                replica: self.replica,
                replica_count: self.replica_count,
            });
        }
        let config = &self.config;
        if let Some((option, value)) = config.capacity_invalid() {
            let (value, max) = (u64::from(value), u64::from(CAPACITY_MAX));
            return Err(FormatOptionsError::Capacity { option, value, max });
        }
        // A pending transfer waiting to expire is a transfer.
        if config.expiries_max > config.transfers_max {
            return Err(FormatOptionsError::ExpiriesAboveTransfers {
                expiries_max: config.expiries_max,
                transfers_max: config.transfers_max,
            });
        }
        // Each account's transfer list is built of chunks numbered by u32 (see
        // `AccountTransfers::new`).
        let chunks = (2 * u64::from(config.transfers_max)).div_ceil(13) + u64::from(config.accounts_max);
        let pages = state_pages_max(config, self.clients_max, self.block_size);
        let needed = manifest_blocks(pages, self.block_size);
        if chunks >= u64::from(u32::MAX) || needed > MANIFEST_BLOCKS_MAX as u64 {
            return Err(FormatOptionsError::TooLarge { pages, pages_max: self.pages_max() });
        }
        Ok(())
    }

    /// The most grid pages a checkpoint's manifest can reference with this block size.
    fn pages_max(&self) -> u64 {
        MANIFEST_BLOCKS_MAX as u64 * self.block_size
            / core::mem::size_of::<super::superblock::BlockReference>() as u64
    }
}

/// The largest value of a capacity option (`u32::MAX` marks "none" in the state machine).
pub const CAPACITY_MAX: u32 = Config::CAPACITY_MAX;

/// Why [`FormatOptions`] cannot make a working data file. Messages name the `ledger format`
/// options.
#[derive(Debug, thiserror::Error)]
pub enum FormatOptionsError {
    /// A cluster has 1 to 6 replicas.
    #[error("--replica-count {replica_count} is out of range: a cluster has 1 to {REPLICAS_MAX} replicas")]
    ReplicaCount {
        /// The replica count asked for.
        replica_count: u8,
    },
    /// The replica index is beyond the cluster.
    #[error("--replica {replica} must be below --replica-count {replica_count}")]
    Replica {
        /// The index asked for.
        replica: u8,
        /// The replica count.
        replica_count: u8,
    },
    /// A capacity is out of range.
    #[error("--{option} {value} is out of range: it must be from 1 to {max}")]
    Capacity {
        /// The option, as `ledger format` spells it.
        option: &'static str,
        /// Its value.
        value: u64,
        /// Its largest value.
        max: u64,
    },
    /// More expiries than transfers could never be used.
    #[error(
        "--expiries-max {expiries_max} is above --transfers-max {transfers_max}: each expiry is a \
         pending transfer, so it must be at most --transfers-max"
    )]
    ExpiriesAboveTransfers {
        /// The expiries asked for.
        expiries_max: u32,
        /// The transfers asked for.
        transfers_max: u32,
    },
    /// The state at full capacity is too large to checkpoint.
    #[error(
        "these capacities need {pages} grid pages at full capacity, more than the {pages_max} a \
         checkpoint can reference: lower --accounts-max, --transfers-max or --history-max"
    )]
    TooLarge {
        /// The pages needed.
        pages: u64,
        /// The most pages a checkpoint can reference.
        pages_max: u64,
    },
}

/// The grid pages the persisted arrays take at full capacity.
fn state_pages_max(config: &Config, clients_max: u64, block_size: u64) -> u64 {
    let counts = [
        u64::from(config.accounts_max),
        u64::from(config.transfers_max),
        u64::from(config.transfers_max),
        u64::from(config.history_max),
        u64::from(config.transfers_max),
    ];
    let state: u64 = counts
        .iter()
        .zip(PERSISTED_RECORD_SIZES)
        .map(|(count, size)| (count * size as u64).div_ceil(block_size))
        .sum();
    state + (clients_max * CLIENT_SESSION_SIZE as u64).div_ceil(block_size)
}

fn manifest_blocks(pages: u64, block_size: u64) -> u64 {
    (pages * core::mem::size_of::<super::superblock::BlockReference>() as u64).div_ceil(block_size)
}

/// Why a data file cannot be formatted or opened.
#[derive(Debug, thiserror::Error)]
pub enum DataFileError {
    /// I/O failed.
    #[error("{0}")]
    Storage(#[from] StorageError),
    /// The superblock is unusable.
    #[error("{0}")]
    SuperBlock(#[from] SuperBlockError),
    /// The checkpoint is unusable.
    #[error("{0}")]
    Checkpoint(#[from] CheckpointError),
    /// The checkpointed state is inconsistent.
    #[error("{0}")]
    Restore(#[from] RestoreError),
    /// The WAL is unusable.
    #[error("{0}")]
    Journal(#[from] JournalError),
    /// The file belongs to another cluster.
    #[error("the data file belongs to cluster {found}, not cluster {expected}")]
    WrongCluster {
        /// The cluster expected.
        expected: u128,
        /// The cluster in the file.
        found: u128,
    },
    /// The file is smaller than its superblock says.
    #[error("the data file is {size} bytes but its layout needs {needed} bytes: it was truncated")]
    Truncated {
        /// The file size.
        size: u64,
        /// The size the layout needs.
        needed: u64,
    },
    /// An intact prepare in the WAL cannot be applied (written by a faulty build or clock).
    #[error(
        "WAL entry for op {op} (slot {slot}, file offset {offset}) is intact but cannot be applied: \
         {reason}; refusing to start rather than apply it"
    )]
    PrepareInvalid {
        /// The op.
        op: u64,
        /// Its slot.
        slot: u64,
        /// The file offset of the slot.
        offset: u64,
        /// What is wrong with it.
        reason: super::replica_state::PrepareInvalid,
    },
    /// The capacities cannot be checkpointed with this block size.
    #[error("these capacities need {needed} manifest blocks, more than {MANIFEST_BLOCKS_MAX}: use a larger block size")]
    TooLarge {
        /// Manifest blocks needed.
        needed: u64,
    },
}

/// An open data file.
pub struct DataFile<S: Storage> {
    storage: S,
    superblock: SuperBlock,
    journal: Journal,
    grid: Grid,
    /// In a cluster, why the checkpoint could not be loaded (a damaged or unreadable block):
    /// the replica fetches its blocks from its peers before it can open (state sync).
    checkpoint_damage: Option<String>,
}

impl<S: Storage> DataFile<S> {
    /// Writes an empty data file (superblock, empty WAL, empty checkpoint) onto `storage`, which
    /// must be exactly `options.layout().file_size()` bytes.
    pub fn format(mut storage: S, options: &FormatOptions) -> Result<DataFile<S>, DataFileError> {
        let layout = options.layout();
        layout.assert_valid();
        assert_eq!(storage.size(), layout.file_size());
        let pages = state_pages_max(&options.config, options.clients_max, options.block_size);
        let needed = manifest_blocks(pages, options.block_size);
        if needed > MANIFEST_BLOCKS_MAX as u64 {
            return Err(DataFileError::TooLarge { needed });
        }
        let journal = Journal::new(layout, options.cluster);
        journal.format(&mut storage)?;
        let mut superblock = SuperBlock {
            magic: MAGIC,
            version: VERSION,
            cluster: options.cluster,
            replica: options.replica,
            replica_count: options.replica_count,
            journal_slot_count: layout.journal_slot_count,
            message_size_max: layout.message_size_max,
            clients_max: layout.clients_max,
            block_size: layout.block_size,
            grid_block_count: layout.grid_block_count,
            accounts_max: options.config.accounts_max,
            transfers_max: options.config.transfers_max,
            expiries_max: options.config.expiries_max,
            history_max: options.config.history_max,
            ..bytemuck::Zeroable::zeroed()
        };
        superblock.checkpoint =
            Checkpoint { prepare_checksum: root_checksum(options.cluster), ..bytemuck::Zeroable::zeroed() };
        superblock.view_head_checksum = root_checksum(options.cluster);
        superblock.write_next(&mut storage)?;
        Ok(DataFile { storage, superblock, journal, grid: Grid::new(layout), checkpoint_damage: None })
    }

    /// Writes a data file for a replica that replaces one whose data file was lost (`ledger
    /// recover`): an empty data file as [`DataFile::format`] writes, whose log is unknown (every
    /// redundant header damaged, [`Journal::headers_unknown`]). Started, the replica never
    /// takes part in a view change with a log of its own until it holds a view's log from its
    /// peers (it recovers its head), and syncs the cluster's state when that log is further
    /// ahead than a WAL. Only for a replica of a cluster.
    pub fn format_recovering(storage: S, options: &FormatOptions) -> Result<DataFile<S>, DataFileError> {
        assert!(options.replica_count > 1, "a replica alone has no peers to recover from");
        let mut data_file = DataFile::format(storage, options)?;
        data_file.journal.headers_unknown(&mut data_file.storage)?;
        Ok(data_file)
    }

    /// Opens a data file: picks the superblock and loads its checkpoint, returning the
    /// checkpointed arrays (state machine arrays, then client sessions), each trimmed to its
    /// length and 16-byte aligned. `cluster`, if given, must match the file's. The WAL after the
    /// checkpoint is replayed next, with [`DataFile::recover`]. In a cluster, a checkpoint with
    /// a damaged or unreadable block opens with no arrays and [`DataFile::checkpoint_damage`]
    /// saying why: its replica fetches the blocks from its peers (a replica alone refuses).
    pub fn open(
        mut storage: S,
        cluster: Option<u128>,
    ) -> Result<(DataFile<S>, [Vec<u128>; CHECKPOINT_ARRAYS]), DataFileError> {
        let (copies, mut superblock) = SuperBlock::read(&mut storage)?;
        if let Some(expected) = cluster {
            if expected != superblock.cluster {
                return Err(DataFileError::WrongCluster { expected, found: superblock.cluster });
            }
        }
        let layout = superblock.layout();
        if storage.size() < layout.file_size() {
            return Err(DataFileError::Truncated { size: storage.size(), needed: layout.file_size() });
        }
        // A torn update (or a damaged copy) leaves copies that are not the chosen superblock,
        // possibly two of an older sequence. The chosen one goes to every copy before anything
        // else is written: else the next checkpoint could reuse the blocks of that older
        // checkpoint (freed by the chosen one), and a torn update of its own would leave the
        // older sequence as the only one with two copies, referencing overwritten blocks.
        // (Intact copies of one superblock share its checksum, which excludes the copy index.)
        if !copies.iter().all(|copy| copy.is_some_and(|copy| copy.checksum == superblock.checksum)) {
            superblock.write_copies(&mut storage)?;
        }
        let (grid, arrays, checkpoint_damage) = match Grid::open(&mut storage, &superblock) {
            Ok((grid, arrays)) => (grid, arrays, None),
            Err(error) if superblock.replica_count > 1 && error.is_damage() => {
                (Grid::new(layout), Default::default(), Some(error.to_string()))
            }
            Err(error) => return Err(error.into()),
        };
        let journal = Journal::new(layout, superblock.cluster);
        Ok((DataFile { storage, superblock, journal, grid, checkpoint_damage }, arrays))
    }

    /// Why the checkpoint could not be loaded, if it could not ([`DataFile::open`]).
    pub fn checkpoint_damage(&self) -> Option<&str> {
        self.checkpoint_damage.as_deref()
    }

    /// Makes `checkpoint` (a peer's, newer than this replica's) the one the superblock names,
    /// here and now: state sync. Any checkpoint in progress is dropped; the view state stays.
    /// Its blocks may not be here yet: until they are ([`DataFile::block_install`]), opening
    /// the data file finds them damaged and the replica goes on fetching them. No stage of any
    /// stream may be in flight; the data file must be opened again before it is used otherwise.
    pub fn sync_install(&mut self, checkpoint: &Checkpoint) -> Result<(), StorageError> {
        assert!(!self.grid.stage_in_flight() && !self.journal.stage_in_flight());
        assert!(checkpoint.op > self.superblock.checkpoint.op);
        let mut superblock = self.superblock;
        if self.grid.abandon() {
            // Some copies of the dropped checkpoint's superblock (the next sequence) may be on
            // disk: this one goes past it, so that no two superblocks share a sequence.
            superblock.sequence += 1;
        }
        superblock.checkpoint = *checkpoint;
        superblock.commit_max = superblock.commit_max.max(checkpoint.op);
        superblock.write_next(&mut self.storage)?;
        self.superblock = superblock;
        self.checkpoint_damage = Some(format!("state sync to the checkpoint at op {}", checkpoint.op));
        Ok(())
    }

    /// Writes `block` (a peer's copy) at the address `reference` names, here and now, if it is
    /// that block (its checksum): a block of the checkpoint being synced. True if written. Not
    /// synced: the sync ends with one `fdatasync` before the data file opens on the checkpoint
    /// ([`DataFile::sync_blocks_durable`]); a crash before then finds the unsynced blocks
    /// missing, and the replica fetches them again.
    pub fn block_install(&mut self, reference: &BlockReference, block: &[u8]) -> Result<bool, StorageError> {
        let layout = self.superblock.layout();
        assert_eq!(block.len() as u64, layout.block_size);
        assert!(self.checkpoint_damage.is_some(), "only while the checkpoint is not loaded");
        if xxh3_128(block) != reference.checksum
            || reference.address == 0
            || reference.address > layout.grid_block_count
        {
            return Ok(false);
        }
        let offset = layout.block_offset(reference.address);
        self.storage.write(&[Write { offset, data: block }])?;
        Ok(true)
    }

    /// Makes every block a sync installed durable (one `fdatasync`; a failure is fatal).
    pub fn sync_blocks_durable(&mut self) -> Result<(), StorageError> {
        assert!(self.checkpoint_damage.is_some(), "only while the checkpoint is not loaded");
        self.storage.sync()
    }

    /// The pages the superblock's checkpoint references, read from its manifest blocks
    /// (`block` is a block's buffer): `None` if a manifest block is not intact here, or the
    /// manifest names too few pages.
    pub fn checkpoint_pages(
        &mut self,
        block: &mut [u8],
    ) -> Result<Option<Vec<BlockReference>>, StorageError> {
        let checkpoint = self.superblock.checkpoint;
        let mut manifest = Vec::with_capacity(checkpoint.manifest_size as usize);
        for reference in &checkpoint.manifest[..checkpoint.manifest_block_count as usize] {
            if !self.block_read(reference, block)? {
                return Ok(None);
            }
            manifest.extend_from_slice(block);
        }
        Ok(super::checkpoint::checkpoint_pages(&checkpoint, &manifest, self.superblock.block_size))
    }

    /// Starts replaying the WAL after the checkpoint; continue with [`DataFile::replay_next`].
    pub fn replay_start(&mut self) -> Result<Replay, DataFileError> {
        let checkpoint = self.superblock.checkpoint;
        let view_head = self.view_head();
        Ok(self.journal.replay_start(
            &mut self.storage,
            checkpoint.op,
            checkpoint.prepare_checksum,
            checkpoint.timestamp,
            view_head,
        )?)
    }

    /// The next intact prepare of the WAL's hash chain (header and message), or `None` where it
    /// ends.
    pub fn replay_next<'r>(
        &mut self,
        replay: &'r mut Replay,
    ) -> Result<Option<(Header, &'r [u8])>, DataFileError> {
        Ok(self.journal.replay_next(&mut self.storage, replay)?)
    }

    /// Replays the WAL after the checkpoint: calls `replay(header, message)` for each intact
    /// prepare of the hash chain, in op order.
    pub fn recover(&mut self, replay: impl FnMut(&Header, &[u8])) -> Result<Recovered, DataFileError> {
        let checkpoint = self.superblock.checkpoint;
        let view_head = self.view_head();
        Ok(self.journal.recover(
            &mut self.storage,
            checkpoint.op,
            checkpoint.prepare_checksum,
            checkpoint.timestamp,
            view_head,
            replay,
        )?)
    }

    /// What recovery checks the WAL against: the view head and log view of the superblock.
    fn view_head(&self) -> ViewHead {
        ViewHead { head_op: self.superblock.view_head_op, log_view: self.superblock.log_view }
    }

    /// Forgets the WAL's ops after `op` ([`Journal::truncate`]): their redundant headers are
    /// reserved again on disk before this returns.
    pub fn truncate(&mut self, op: u64) -> Result<u64, StorageError> {
        assert!(op >= self.superblock.checkpoint.op);
        self.journal.truncate(&mut self.storage, op)
    }

    /// Writes a client's latest reply (sector-padded) into its slot of the client-replies zone.
    /// Not synced here: the next WAL append or checkpoint syncs it, and until a checkpoint
    /// covers its op, the WAL can regenerate it.
    pub fn write_reply(&mut self, slot: u64, reply: &[u8]) -> Result<(), StorageError> {
        let offset = self.superblock.layout().client_reply_offset(slot);
        self.storage.write(&[Write { offset, data: reply }])
    }

    /// Reads client reply slot `slot` into `buffer`.
    pub fn read_reply(&mut self, slot: u64, buffer: &mut [u8]) -> Result<(), StorageError> {
        let offset = self.superblock.layout().client_reply_offset(slot);
        self.storage.read(offset, buffer)
    }

    /// The grid (the scrubber's list of the durable checkpoint's blocks).
    pub fn grid(&self) -> &Grid {
        &self.grid
    }

    /// Reads the grid block `reference` names into `block` (a block, sector-aligned): true if
    /// it is intact (its checksum); false if damaged or unreadable (`EIO`).
    pub fn block_read(&mut self, reference: &BlockReference, block: &mut [u8]) -> Result<bool, StorageError> {
        let layout = self.superblock.layout();
        assert_eq!(block.len() as u64, layout.block_size);
        if reference.address == 0 || reference.address > layout.grid_block_count {
            return Ok(false);
        }
        match self.storage.read(layout.block_offset(reference.address), block) {
            Ok(()) => Ok(xxh3_128(block) == reference.checksum),
            Err(error) if error.is_media_read_error() => Ok(false),
            Err(error) => Err(error),
        }
    }

    /// Writes `block` (a block, sector-aligned: a peer's copy) back over the damaged block
    /// `reference` names, here and now, if it is that block (its checksum) and the durable
    /// checkpoint still references it (else a checkpoint may have reused the address). True
    /// if written and synced.
    pub fn block_repair(&mut self, reference: &BlockReference, block: &[u8]) -> Result<bool, StorageError> {
        let layout = self.superblock.layout();
        assert_eq!(block.len() as u64, layout.block_size);
        if xxh3_128(block) != reference.checksum || !self.grid.durable_holds(reference) {
            return Ok(false);
        }
        let offset = layout.block_offset(reference.address);
        self.storage.write_and_sync(&[Write { offset, data: block }])?;
        Ok(true)
    }

    /// Reads the WAL slot of `op` into `buffer` ([`Journal::read_prepare`]).
    pub fn read_prepare(&mut self, op: u64, buffer: &mut [u8]) -> Result<SlotRead, StorageError> {
        self.journal.read_prepare(&mut self.storage, op, buffer)
    }

    /// Begins the WAL's next write stage ([`Journal::stage_begin`]): the writes to carry out,
    /// then `fdatasync`, then [`DataFile::stage_end`].
    pub fn stage_begin<'a>(&'a mut self, prepares: &[&'a [u8]], writes: &mut [Write<'a>]) -> Option<usize> {
        self.assert_slots_free(prepares);
        self.journal.stage_begin(prepares, writes)
    }

    /// Ends the stage in flight ([`Journal::stage_end`]): returns the newest op now durable
    /// with its redundant header.
    pub fn stage_end(&mut self) -> Option<u64> {
        self.journal.stage_end()
    }

    /// Carries out the WAL's next write stage here and now (write, `fdatasync`, end): returns
    /// the newest op it made durable with its redundant header, if any.
    pub fn stage_run(&mut self, prepares: &[&[u8]]) -> Result<Option<u64>, StorageError> {
        self.assert_slots_free(prepares);
        let mut writes = [Write { offset: 0, data: &[] }; JOURNAL_STAGE_WRITES_MAX];
        let Some(count) = self.journal.stage_begin(prepares, &mut writes) else { return Ok(None) };
        self.storage.write_and_sync(&writes[..count])?;
        Ok(self.journal.stage_end())
    }

    /// Appends prepares (sealed messages, sector-padded, the ops after the last appended) to
    /// the WAL, durable with their redundant headers on return: two stages, each synced.
    pub fn append(&mut self, prepares: &[&[u8]]) -> Result<(), StorageError> {
        assert!(!prepares.is_empty() && !self.journal.stage_in_flight());
        self.stage_run(prepares)?;
        let durable = self.stage_run(&[])?;
        let last: Header = bytemuck::pod_read_unaligned(&prepares[prepares.len() - 1][..HEADER_SIZE]);
        assert_eq!(durable, Some(last.op));
        Ok(())
    }

    /// A WAL slot may only be reused once a durable checkpoint covers its previous op.
    fn assert_slots_free(&self, prepares: &[&[u8]]) {
        for prepare in prepares {
            let header: Header = bytemuck::pod_read_unaligned(&prepare[..HEADER_SIZE]);
            assert!(header.op > self.superblock.checkpoint.op);
            assert!(header.op <= self.superblock.checkpoint.op + self.journal.slot_count());
        }
    }

    /// Writes the redundant headers of durable prepares still pending (when idle).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.journal.flush_headers(&mut self.storage)
    }

    /// Checkpoints `state` and the client sessions `sessions`, the state after op `op` (prepare
    /// checksum and timestamp given), and makes it the durable checkpoint.
    pub fn checkpoint(
        &mut self,
        state: &StateMachine,
        sessions: &[u8],
        op: u64,
        prepare_checksum: u128,
        timestamp: u64,
    ) -> Result<CheckpointStats, CheckpointError> {
        // Redundant headers of ops the new checkpoint covers must reach the disk first: after
        // the checkpoint their slots may be reused, and recovery reads proof from them.
        self.journal.flush_headers(&mut self.storage)?;
        let arrays = checkpoint_arrays(state, sessions);
        self.grid.checkpoint(&mut self.storage, &mut self.superblock, arrays, op, prepare_checksum, timestamp)
    }

    /// Starts a checkpoint of `state` and `sessions` after op `op` (see [`Grid::begin`]): nothing
    /// is written yet. Continue with [`DataFile::checkpoint_advance`].
    pub fn checkpoint_begin(
        &mut self,
        state: &StateMachine,
        sessions: &[u8],
        op: u64,
        prepare_checksum: u128,
        timestamp: u64,
    ) -> Result<(), CheckpointError> {
        self.grid.begin(&self.superblock, checkpoint_arrays(state, sessions), op, prepare_checksum, timestamp)
    }

    /// Carries out the checkpoint in progress here and now, writing at most `pages_max` more
    /// pages (`state` and `sessions` are the live ones); returns its stats if it became durable.
    pub fn checkpoint_run(
        &mut self,
        state: &StateMachine,
        sessions: &[u8],
        pages_max: usize,
    ) -> Result<Option<CheckpointStats>, CheckpointError> {
        if self.grid.in_progress().is_some_and(|(_, remaining)| remaining <= pages_max) {
            // Redundant headers of ops the new checkpoint covers must reach the disk first:
            // after the checkpoint their slots may be reused, and recovery reads proof from them.
            self.journal.flush_headers(&mut self.storage)?;
        }
        let arrays = checkpoint_arrays(state, sessions);
        self.grid.run(&mut self.storage, &mut self.superblock, arrays, pages_max)
    }

    /// Begins the next grid stage of the checkpoint in progress ([`Grid::stage_begin`]): at
    /// most `pages_max` pages, and its manifest and superblock only if `may_finish`.
    ///
    /// [`Grid::stage_begin`]: super::checkpoint::Grid::stage_begin
    pub fn grid_stage_begin<'a>(
        &'a mut self,
        state: &'a StateMachine,
        sessions: &'a [u8],
        pages_max: usize,
        may_finish: bool,
        writes: &mut [Write<'a>],
    ) -> Result<Option<Stage>, CheckpointError> {
        let finishing = self.grid.in_progress().is_some_and(|(_, remaining)| remaining == 0);
        if finishing && may_finish {
            // Every op the checkpoint covers was committed, so each is durable with its
            // redundant header (the journal's stages), and `open` flushed what recovery left.
            let op = self.grid.in_progress().map_or(0, |(op, _)| op);
            assert!(self.journal.headers_durable_through(op));
        }
        let arrays = checkpoint_arrays(state, sessions);
        self.grid.stage_begin(&self.superblock, arrays, pages_max, may_finish, writes)
    }

    /// Ends the grid stage in flight; once the checkpoint is durable its superblock is the
    /// one in force, and its stats are returned.
    pub fn grid_stage_end(&mut self) -> Option<CheckpointStats> {
        let (superblock, stats) = self.grid.stage_end()?;
        assert_eq!(superblock.sequence, self.superblock.sequence + 1);
        self.superblock = superblock;
        Some(stats)
    }

    /// True if [`DataFile::view_write`] may write the superblock now: no checkpoint in
    /// progress has built the superblock that will make it durable (that one follows the
    /// superblock in force when it was built, and is written a copy per grid stage).
    pub fn view_write_ready(&self) -> bool {
        !self.grid.superblock_built()
    }

    /// Makes the replica's view state durable in the superblock, here and now (every copy,
    /// each with its `fdatasync`), before the replica acts on it: its `view`, its `log_view`
    /// with the head of the log it adopted for it, and `commit_max`. Neither view goes back.
    /// (Synchronous, unlike the WAL's and the grid's staged writes: view changes are rare,
    /// and the replica must not act before it returns; docs/vsr.md.)
    pub fn view_write(&mut self, view: ViewState) -> Result<(), StorageError> {
        assert!(self.view_write_ready());
        let superblock = &mut self.superblock;
        assert!(view.view >= superblock.view && view.log_view >= superblock.log_view);
        assert!(view.log_view <= view.view);
        assert!(view.log_view > superblock.log_view || view.head_op == superblock.view_head_op);
        superblock.view = view.view;
        superblock.log_view = view.log_view;
        superblock.view_head_op = view.head_op;
        superblock.view_head_checksum = view.head_checksum;
        superblock.commit_max = superblock.commit_max.max(view.commit_max);
        superblock.write_next(&mut self.storage)
    }

    /// True if a grid stage is in flight.
    pub fn grid_stage_in_flight(&self) -> bool {
        self.grid.stage_in_flight()
    }

    /// The op of the checkpoint being written, and its pages left to write, if any.
    pub fn checkpoint_in_progress(&self) -> Option<(u64, usize)> {
        self.grid.in_progress()
    }

    /// The superblock in force.
    pub fn superblock(&self) -> &SuperBlock {
        &self.superblock
    }

    /// The op of the durable checkpoint.
    pub fn checkpoint_op(&self) -> u64 {
        self.superblock.checkpoint.op
    }

    /// The WAL, to restore a damaged header ([`Journal::header_restore`]).
    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// The write-ahead log.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The grid blocks in use.
    pub fn grid_blocks_acquired(&self) -> u64 {
        self.grid.blocks_acquired()
    }

    /// The storage.
    pub fn storage(&self) -> &S {
        &self.storage
    }

    /// The storage underneath (for tests and `inspect`).
    pub fn storage_mut(&mut self) -> &mut S {
        &mut self.storage
    }

    /// Gives the storage back (closing the data file).
    pub fn into_storage(self) -> S {
        self.storage
    }
}

/// The arrays a checkpoint stores: the state machine's, then the client sessions.
fn checkpoint_arrays<'a>(state: &'a StateMachine, sessions: &'a [u8]) -> [&'a [u8]; CHECKPOINT_ARRAYS] {
    let [accounts, transfers, pending, history, burned] = state.persisted();
    [accounts, transfers, pending, history, burned, sessions]
}

/// The parent of op 1: a checksum derived from the cluster, so logs of different clusters never
/// chain into each other.
pub fn root_checksum(cluster: u128) -> u128 {
    xxhash_rust::xxh3::xxh3_128(&cluster.to_le_bytes())
}

/// The view state [`DataFile::view_write`] makes durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViewState {
    /// The latest view the replica takes part in.
    pub view: u32,
    /// The latest view in which its log was normal.
    pub log_view: u32,
    /// The head of the log it adopted on entering `log_view`: op and checksum.
    pub head_op: u64,
    /// See `head_op`.
    pub head_checksum: u128,
    /// The newest op known committed.
    pub commit_max: u64,
}
