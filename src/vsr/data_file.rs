//! The data file as a whole: format, open (superblock → checkpoint → WAL replay), append,
//! checkpoint. `docs/data-file.md` describes the bytes.

use super::checkpoint::{CheckpointError, CheckpointStats, Grid};
use super::header::{Command, Header};
use super::journal::{Journal, JournalError, Recovered};
use super::superblock::{Checkpoint, SuperBlock, SuperBlockError, MAGIC, MANIFEST_BLOCKS_MAX, VERSION};
use crate::constants::{HEADER_SIZE, MESSAGE_BODY_SIZE_MAX};
use crate::operation::Operation;
use crate::state_machine::{Config, RestoreError, StateMachine, PERSISTED_RECORD_SIZES};
use crate::storage::layout::Layout;
use crate::storage::{AlignedBuffer, Storage, StorageError};

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
        let pages = state_pages_max(&self.config, self.block_size);
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

/// The grid pages the persisted arrays take at full capacity.
fn state_pages_max(config: &Config, block_size: u64) -> u64 {
    let counts = [
        u64::from(config.accounts_max),
        u64::from(config.transfers_max),
        u64::from(config.transfers_max),
        u64::from(config.history_max),
        u64::from(config.transfers_max),
    ];
    counts
        .iter()
        .zip(PERSISTED_RECORD_SIZES)
        .map(|(count, size)| (count * size as u64).div_ceil(block_size))
        .sum()
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
}

impl<S: Storage> DataFile<S> {
    /// Writes an empty data file (superblock, empty WAL, empty checkpoint) onto `storage`, which
    /// must be exactly `options.layout().file_size()` bytes.
    pub fn format(mut storage: S, options: &FormatOptions) -> Result<DataFile<S>, DataFileError> {
        let layout = options.layout();
        layout.assert_valid();
        assert_eq!(storage.size(), layout.file_size());
        let needed =
            manifest_blocks(state_pages_max(&options.config, options.block_size), options.block_size);
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
        superblock.write_next(&mut storage)?;
        Ok(DataFile { storage, superblock, journal, grid: Grid::new(layout) })
    }

    /// Opens a data file: picks the superblock, loads its checkpoint, and replays the WAL after
    /// it into the state machine. `cluster`, if given, must match the file's.
    pub fn open(
        mut storage: S,
        cluster: Option<u128>,
    ) -> Result<(DataFile<S>, StateMachine, Recovered), DataFileError> {
        let (_, superblock) = SuperBlock::read(&mut storage)?;
        if let Some(expected) = cluster {
            if expected != superblock.cluster {
                return Err(DataFileError::WrongCluster { expected, found: superblock.cluster });
            }
        }
        let layout = superblock.layout();
        if storage.size() < layout.file_size() {
            return Err(DataFileError::Truncated { size: storage.size(), needed: layout.file_size() });
        }
        let (grid, arrays) = Grid::open(&mut storage, &superblock)?;
        let bytes = arrays.each_ref().map(|array| {
            let bytes: &[u8] = bytemuck::cast_slice(array.as_slice());
            bytes
        });
        let lengths = superblock.checkpoint.array_lengths;
        let mut sized = bytes;
        for (index, slice) in sized.iter_mut().enumerate() {
            *slice = &slice[..lengths[index] as usize * PERSISTED_RECORD_SIZES[index]];
        }
        let mut state = StateMachine::restore(superblock.config(), sized)?;
        drop(arrays);
        let mut journal = Journal::new(layout, superblock.cluster);
        let checkpoint = superblock.checkpoint;
        let mut reply = AlignedBuffer::new(MESSAGE_BODY_SIZE_MAX.next_multiple_of(4096));
        let recovered = journal.recover(
            &mut storage,
            checkpoint.op,
            checkpoint.prepare_checksum,
            checkpoint.timestamp,
            |header, message| {
                replay(&mut state, header, &message[HEADER_SIZE..], &mut reply);
            },
        )?;
        Ok((DataFile { storage, superblock, journal, grid }, state, recovered))
    }

    /// Appends prepares (sealed messages, sector-padded) to the WAL; durable on return.
    pub fn append(&mut self, prepares: &[&[u8]]) -> Result<(), StorageError> {
        for prepare in prepares {
            let header: Header = bytemuck::pod_read_unaligned(&prepare[..HEADER_SIZE]);
            // A WAL slot may only be reused once a durable checkpoint covers its previous op.
            assert!(header.op > self.superblock.checkpoint.op);
            assert!(header.op <= self.superblock.checkpoint.op + self.journal.slot_count());
        }
        self.journal.append(&mut self.storage, prepares)
    }

    /// Writes the redundant headers of durable prepares still pending (when idle).
    pub fn flush(&mut self) -> Result<(), StorageError> {
        self.journal.flush_headers(&mut self.storage)
    }

    /// Checkpoints `state`, which is the state after op `op` (prepare checksum and timestamp
    /// given), and makes it the durable checkpoint.
    pub fn checkpoint(
        &mut self,
        state: &StateMachine,
        op: u64,
        prepare_checksum: u128,
        timestamp: u64,
    ) -> Result<CheckpointStats, CheckpointError> {
        // Redundant headers of ops the new checkpoint covers must reach the disk first: after
        // the checkpoint their slots may be reused, and recovery reads proof from them.
        self.journal.flush_headers(&mut self.storage)?;
        self.grid.checkpoint(
            &mut self.storage,
            &mut self.superblock,
            state.persisted(),
            op,
            prepare_checksum,
            timestamp,
        )
    }

    /// The superblock in force.
    pub fn superblock(&self) -> &SuperBlock {
        &self.superblock
    }

    /// The op of the durable checkpoint.
    pub fn checkpoint_op(&self) -> u64 {
        self.superblock.checkpoint.op
    }

    /// The WAL.
    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// The grid blocks in use.
    pub fn grid_blocks_acquired(&self) -> u64 {
        self.grid.blocks_acquired()
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

/// Applies one recovered prepare to the state machine, exactly as it was applied when it
/// committed (the reply is rebuilt and dropped: replies are the replica's concern).
fn replay(state: &mut StateMachine, header: &Header, body: &[u8], reply: &mut [u8]) {
    assert_eq!(header.command(), Some(Command::Prepare));
    // Only state machine operations reach the WAL in this build; anything else is a bug.
    let operation = Operation::from_u8(header.operation).expect("a WAL prepare carries a known operation");
    let _ = state.execute(operation, header.timestamp, body, reply);
}

/// The parent of op 1: a checksum derived from the cluster, so logs of different clusters never
/// chain into each other.
pub fn root_checksum(cluster: u128) -> u128 {
    xxhash_rust::xxh3::xxh3_128(&cluster.to_le_bytes())
}
