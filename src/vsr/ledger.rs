//! The durable core of a replica: turns requests into prepares (op number, hash chain,
//! timestamp), makes each group of prepares durable in the WAL with one `fdatasync`, commits
//! them to the state machine in op order, and checkpoints periodically so WAL slots can be
//! reused. With one replica, "durable on this replica" is the commit quorum.

use super::checkpoint::CheckpointError;
use super::data_file::{DataFile, DataFileError};
use super::header::{Command, Header};
use super::journal::Recovered;
use crate::constants::{HEADER_SIZE, MESSAGE_BODY_SIZE_MAX, PULSE_EXPIRIES_MAX, SECTOR_SIZE};
use crate::multi_batch::MultiBatch;
use crate::operation::Operation;
use crate::state_machine::{ExecuteError, StateMachine};
use crate::storage::{AlignedBuffer, Storage, StorageError};

/// The most prepares made durable together with one `fdatasync`.
pub const PIPELINE_PREPARE_MAX: usize = 8;

/// Why a request could not be committed. Storage errors are fatal: the caller must stop.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Writing the WAL failed.
    #[error("WAL write failed: {0}")]
    Storage(#[from] StorageError),
    /// Writing a checkpoint failed.
    #[error("checkpoint failed: {0}")]
    Checkpoint(#[from] CheckpointError),
}

/// One committed request's outcome.
#[derive(Debug)]
pub struct Committed {
    /// The op number.
    pub op: u64,
    /// The op timestamp.
    pub timestamp: u64,
    /// The reply body size in the reply buffer, or why the request was rejected as a whole.
    pub result: Result<usize, ExecuteError>,
}

/// A request to prepare: operation and (validated) body.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The operation.
    pub operation: Operation,
    /// The multi-batch body (empty for `pulse`).
    pub body: &'a [u8],
    /// The client (0 for the replica's own requests).
    pub client: u128,
    /// The client's request number.
    pub request: u32,
}

/// A single replica's log and state.
pub struct Ledger<S: Storage> {
    data_file: DataFile<S>,
    state: StateMachine,
    op_head: u64,
    head_checksum: u128,
    timestamp_head: u64,
    checkpoint_interval: u64,
    prepares: Vec<AlignedBuffer>,
    reply: AlignedBuffer,
    recovered: Recovered,
}

impl<S: Storage> Ledger<S> {
    /// Opens (recovers) the data file on `storage`.
    pub fn open(storage: S, cluster: Option<u128>) -> Result<Ledger<S>, DataFileError> {
        let (data_file, state, recovered) = DataFile::open(storage, cluster)?;
        let layout = data_file.superblock().layout();
        let pipeline = (PIPELINE_PREPARE_MAX as u64).min(layout.journal_slot_count / 2);
        let prepares = (0..pipeline).map(|_| AlignedBuffer::new(layout.message_size_max as usize)).collect();
        Ok(Ledger {
            data_file,
            state,
            op_head: recovered.op_head,
            head_checksum: recovered.head_checksum,
            timestamp_head: recovered.head_timestamp,
            checkpoint_interval: layout.journal_slot_count - pipeline,
            prepares,
            reply: AlignedBuffer::new(MESSAGE_BODY_SIZE_MAX.next_multiple_of(SECTOR_SIZE)),
            recovered,
        })
    }

    /// What recovery found when the ledger was opened.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// The state machine (read-only: only committed prepares change it).
    pub fn state(&self) -> &StateMachine {
        &self.state
    }

    /// The last op committed.
    pub fn op_head(&self) -> u64 {
        self.op_head
    }

    /// The timestamp of the last op.
    pub fn timestamp_head(&self) -> u64 {
        self.timestamp_head
    }

    /// The data file.
    pub fn data_file(&self) -> &DataFile<S> {
        &self.data_file
    }

    /// The data file, mutably (tests inject faults through its storage).
    pub fn data_file_mut(&mut self) -> &mut DataFile<S> {
        &mut self.data_file
    }

    /// The most requests [`Ledger::submit`] takes at once.
    pub fn pipeline_max(&self) -> usize {
        self.prepares.len()
    }

    /// Prepares `requests` as consecutive ops, makes them durable with one WAL write and one
    /// `fdatasync`, and commits them in order; `realtime` is the cluster clock (ns). Calls
    /// `reply(committed, reply_body)` for each. Checkpoints when the WAL needs room.
    pub fn submit(
        &mut self,
        requests: &[Request<'_>],
        realtime: u64,
        mut reply: impl FnMut(&Committed, &[u8]),
    ) -> Result<(), LedgerError> {
        assert!(!requests.is_empty() && requests.len() <= self.prepares.len());
        // A slot is reused only once a durable checkpoint covers its previous op.
        let op_last = self.op_head + requests.len() as u64;
        if op_last > self.data_file.checkpoint_op() + self.data_file.journal().slot_count() {
            self.checkpoint()?;
        }
        let mut op = self.op_head;
        let mut parent = self.head_checksum;
        let mut timestamp = self.timestamp_head;
        for (request, buffer) in requests.iter().zip(self.prepares.iter_mut()) {
            op += 1;
            timestamp = timestamp.max(realtime.saturating_sub(1)) + 1 + timestamp_delta(request);
            let header = prepare(buffer, self.data_file.superblock().cluster, request, op, parent, timestamp);
            parent = header.checksum;
        }
        let prepares: Vec<&[u8]> = self.prepares[..requests.len()].iter().map(|buffer| &buffer[..]).collect();
        self.data_file.append(&prepares)?;
        for index in 0..requests.len() {
            let header: Header = bytemuck::pod_read_unaligned(&self.prepares[index][..HEADER_SIZE]);
            let operation = requests[index].operation;
            let body = &self.prepares[index][HEADER_SIZE..header.size as usize];
            let result = self.state.execute(operation, header.timestamp, body, &mut self.reply);
            self.op_head = header.op;
            self.head_checksum = header.checksum;
            self.timestamp_head = header.timestamp;
            let committed = Committed { op: header.op, timestamp: header.timestamp, result };
            let size = *committed.result.as_ref().unwrap_or(&0);
            reply(&committed, &self.reply[..size]);
        }
        if self.op_head - self.data_file.checkpoint_op() >= self.checkpoint_interval {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// Checkpoints the state after the head op now.
    pub fn checkpoint(&mut self) -> Result<(), LedgerError> {
        if self.op_head > self.data_file.checkpoint_op() {
            self.data_file.checkpoint(&self.state, self.op_head, self.head_checksum, self.timestamp_head)?;
        }
        Ok(())
    }

    /// Writes pending redundant WAL headers (call when idle).
    pub fn flush(&mut self) -> Result<(), LedgerError> {
        Ok(self.data_file.flush()?)
    }

    /// Closes the ledger, returning its storage.
    pub fn into_storage(self) -> S {
        self.data_file.into_storage()
    }
}

/// The timestamps a request reserves beyond its prepare timestamp (spec §11).
fn timestamp_delta(request: &Request<'_>) -> u64 {
    match request.operation {
        Operation::Pulse => PULSE_EXPIRIES_MAX as u64,
        operation if operation.is_create() => MultiBatch::decode(request.body, operation.event_size())
            .map(|batches| batches.element_count() as u64)
            .unwrap_or(0),
        _ => 0,
    }
}

/// Writes a sealed prepare of `request` into `buffer`; returns its header.
fn prepare(
    buffer: &mut [u8],
    cluster: u128,
    request: &Request<'_>,
    op: u64,
    parent: u128,
    timestamp: u64,
) -> Header {
    let body_size = request.body.len();
    assert!(HEADER_SIZE + body_size <= buffer.len());
    buffer[HEADER_SIZE..HEADER_SIZE + body_size].copy_from_slice(request.body);
    let size_padded = (HEADER_SIZE + body_size).next_multiple_of(SECTOR_SIZE);
    // Zero the sector padding: the WAL slot's bytes are then a pure function of the prepare.
    buffer[HEADER_SIZE + body_size..size_padded].fill(0);
    let mut header = Header {
        op,
        parent,
        timestamp,
        client: request.client,
        request: request.request,
        operation: request.operation as u8,
        ..Header::new(Command::Prepare, cluster)
    };
    header.set_body(&buffer[HEADER_SIZE..HEADER_SIZE + body_size]);
    header.set_checksum();
    buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
    header
}
