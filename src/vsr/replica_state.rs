//! The durable core of a replica: turns requests into prepares (op number, hash chain,
//! timestamp) or takes in the prepares of its primary, makes each group of prepares durable in
//! the WAL with one `fdatasync`, commits them in op order — to the state machine and to the
//! client sessions — and checkpoints periodically so WAL slots can be reused. What is committed
//! is not decided here: the replica ([`super::replica`]) raises `commit_max` when a replication
//! quorum holds an op, and this core executes up to it, as far as its own WAL holds the ops.
//!
//! Committing is a pure function of the prepare and the state before it, so recovery replays
//! the WAL through the very same `commit` and rebuilds the identical state, sessions and replies.

use super::checkpoint::CheckpointError;
use super::client_table::{ClientSession, ClientTable, CLIENT_SESSION_SIZE};
use super::data_file::{DataFile, DataFileError};
use super::header::{Command, Header, RegisterResult, ReplyStatus};
use super::journal::{Damage, JournalError, Recovered, SlotRead};
use super::message_pool::{Message, MessagePool};
use super::reply_writes::ReplyWrites;
use super::write_stage::{Stage, Stream, REPLIES_STAGE_WRITES_MAX};
use crate::constants::{
    CHECKPOINT_PAGES_PER_COMMIT_MIN, GRID_STAGE_BLOCKS_PACED, HEADER_SIZE, MESSAGE_BODY_SIZE_MAX, NS_PER_S,
    OUTBOX_COPIES_MAX, PULSE_EXPIRIES_MAX, SECTOR_SIZE, TIMESTAMP_MAX,
};
use crate::multi_batch::MultiBatch;
use crate::operation::Operation;
use crate::state_machine::{ExecuteError, InvalidRequest, StateMachine, Table};
use crate::storage::layout::{Layout, REPLY_SIZE_MAX};
use crate::storage::{AlignedBuffer, Storage, StorageError, Write};

/// The most prepares made durable together with one `fdatasync`.
pub use crate::constants::PIPELINE_PREPARE_MAX;

/// Why a request could not be committed. Storage errors are fatal: the caller must stop.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaStateError {
    /// Writing the WAL failed.
    #[error("WAL write failed: {0}")]
    Storage(#[from] StorageError),
    /// Writing a checkpoint failed.
    #[error("checkpoint failed: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The cluster clock is beyond the range of timestamps: nothing was prepared or written.
    /// Not fatal: the requests can be retried once the clock is right.
    #[error(
        "the system clock reads {realtime} ns since 1970 (about the year {year}), but timestamps \
         must stay below 2^63 ns (the year 2262): refusing to prepare; fix the system clock",
        year = 1970 + realtime / (NS_PER_S * 31_556_952)
    )]
    ClockOutOfRange {
        /// The cluster clock (ns since the Unix epoch).
        realtime: u64,
    },
}

/// Why an intact prepare read from the WAL cannot be applied. The primary checks all of this
/// before it prepares, so only a faulty build could have logged one; recovery refuses it
/// rather than letting the state machine's assertions stop every restart.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PrepareInvalid {
    /// The operation code is unknown.
    #[error("unknown operation {0}")]
    Operation(u8),
    /// The timestamp does not follow the previous op's, leaving room for its events.
    #[error(
        "timestamp {timestamp} does not follow the previous op's {previous} (with {delta} event timestamps)"
    )]
    TimestampOrder {
        /// The prepare's timestamp.
        timestamp: u64,
        /// The previous op's timestamp.
        previous: u64,
        /// The timestamps its events take.
        delta: u64,
    },
    /// The timestamp is beyond the range of timestamps.
    #[error("timestamp {0} is beyond the largest timestamp 2^63 - 1")]
    TimestampRange(u64),
    /// The body is not a valid request of its operation.
    #[error("invalid body: {0}")]
    Body(InvalidRequest),
    /// The commit point it carries is more than a pipeline behind it: no primary prepares so
    /// far ahead of what it committed.
    #[error("its commit point {commit} is more than a pipeline behind it")]
    CommitBehind {
        /// The commit point the prepare carries.
        commit: u64,
    },
}

/// One committed request's outcome.
#[derive(Debug)]
pub struct Committed {
    /// The op number.
    pub op: u64,
    /// The op timestamp.
    pub timestamp: u64,
    /// The client (0 for the replica's own requests).
    pub client: u128,
    /// The reply body size, or why the request was rejected as a whole.
    pub result: Result<usize, ExecuteError>,
    /// A client whose session was evicted by this `register`, if any.
    pub evicted: Option<u128>,
}

/// A request to prepare given as bytes: operation and (validated) body. For callers that wait
/// for the disk ([`ReplicaState::submit`]); the replica's own path keeps requests in pooled
/// messages ([`PendingRequest`]).
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// The operation.
    pub operation: Operation,
    /// The multi-batch body (empty for `pulse` and `register`).
    pub body: &'a [u8],
    /// The client (0 for the replica's own requests).
    pub client: u128,
    /// The client's request number.
    pub request: u32,
    /// The checksum of the client's request header (echoed in the reply's `context`).
    pub checksum: u128,
}

impl Request<'_> {
    /// The request header that describes this request of `cluster` (what the replica would
    /// have received: `checksum` is the given one, `checksum_body` is computed).
    pub fn header(&self, cluster: u128) -> Header {
        let mut header = Header {
            client: self.client,
            request: self.request,
            operation: self.operation as u8,
            ..Header::new(Command::Request, cluster)
        };
        header.set_body(self.body);
        header.checksum = self.checksum;
        header
    }
}

/// A request waiting to be prepared: the client's request header as received (both checksums
/// verified), and the pooled message holding it, header and body. [`ReplicaState::prepare`]
/// takes the message and turns it into the prepare in place.
#[derive(Debug)]
pub struct PendingRequest {
    /// The request's header.
    pub header: Header,
    /// The message holding the request; `None` once prepared.
    pub message: Option<Message>,
}

/// A single replica's log, state and sessions.
pub struct ReplicaState<S: Storage> {
    data_file: DataFile<S>,
    core: Core,
    /// The VSR op numbers (see [`ReplicaState::op`] and [`ReplicaState::commit_max`]; the
    /// third, `commit_min`, lives with the state it describes).
    op: u64,
    /// The checksum and timestamp of op `op` (the parent and clock floor of the next).
    op_checksum: u128,
    op_timestamp: u64,
    /// The newest op handed to a journal write stage.
    op_staged: u64,
    /// The newest op whose prepare and redundant header are durable in this replica's WAL
    /// (every op up to it is: prepares become durable in op order).
    op_durable: u64,
    commit_max: u64,
    checkpoint_interval: u64,
    /// Pages of the checkpoint in progress that its pacing lets the grid write now.
    grid_pages_due: usize,
    /// Reply slots still to write.
    replies: ReplyWrites,
    /// Every message buffer of the replica: requests waiting, and the pipeline's prepares.
    pool: MessagePool,
    /// The prepares of ops `commit_min + 1..=op`, op `n` at `n % pipeline.len()`.
    pipeline: Vec<Option<Message>>,
    recovered: Recovered,
}

/// What committing changes: the state machine, the sessions, and the head of the log.
struct Core {
    state: StateMachine,
    clients: ClientTable,
    /// `commit_min`: the newest op executed.
    commit_min: u64,
    head_checksum: u128,
    timestamp_head: u64,
    /// The reply message being built: header, then the state machine's results.
    reply: AlignedBuffer,
    /// The largest request body: a WAL slot less the header.
    batch_size_limit: usize,
}

impl<S: Storage> ReplicaState<S> {
    /// Opens the data file on `storage`: loads the checkpoint, replays the WAL after it, and
    /// reloads every session's latest reply.
    pub fn open(storage: S, cluster: Option<u128>) -> Result<ReplicaState<S>, DataFileError> {
        let (data_file, arrays) = DataFile::open(storage, cluster)?;
        let superblock = *data_file.superblock();
        let layout = superblock.layout();
        // A cluster's replica whose checkpoint has damaged blocks starts empty, to fetch them
        // from its peers (state sync): then it opens again.
        let syncing = data_file.checkpoint_damage().is_some();
        let lengths = if syncing { [0; 6] } else { superblock.checkpoint.array_lengths };
        let record_sizes = super::checkpoint::RECORD_SIZES;
        let bytes = |index: usize| {
            let bytes: &[u8] = bytemuck::cast_slice(arrays[index].as_slice());
            &bytes[..lengths[index] as usize * record_sizes[index]]
        };
        let state =
            StateMachine::restore(superblock.config(), [bytes(0), bytes(1), bytes(2), bytes(3), bytes(4)])?;
        let mut clients = ClientTable::new(layout.clients_max as usize, REPLY_SIZE_MAX as usize);
        if lengths[5] != 0 {
            clients.restore(bytemuck::cast_slice(
                &bytes(5)[..layout.clients_max as usize * CLIENT_SESSION_SIZE],
            ));
        }
        drop(arrays);
        let pipeline = (PIPELINE_PREPARE_MAX as u64).min(layout.journal_slot_count / 2);
        let mut ledger = ReplicaState {
            data_file,
            op: superblock.checkpoint.op,
            op_checksum: superblock.checkpoint.prepare_checksum,
            op_timestamp: superblock.checkpoint.timestamp,
            op_staged: superblock.checkpoint.op,
            op_durable: superblock.checkpoint.op,
            commit_max: superblock.checkpoint.op.max(superblock.commit_max),
            core: Core {
                state,
                clients,
                commit_min: superblock.checkpoint.op,
                head_checksum: superblock.checkpoint.prepare_checksum,
                timestamp_head: superblock.checkpoint.timestamp,
                reply: AlignedBuffer::new(
                    (HEADER_SIZE + MESSAGE_BODY_SIZE_MAX).next_multiple_of(SECTOR_SIZE),
                ),
                batch_size_limit: layout.message_size_max as usize - HEADER_SIZE,
            },
            // Half the WAL's room above the pipeline: a checkpoint begins at every multiple of
            // it, and has the next interval to be written before the WAL needs its slots.
            checkpoint_interval: (layout.journal_slot_count - pipeline) / 2,
            grid_pages_due: 0,
            replies: ReplyWrites::new(layout.clients_max as usize, superblock.checkpoint.op),
            // A message holds a request (at most the data file's message size) or a reply,
            // which may be larger: a lookup's results outweigh its ids.
            pool: MessagePool::new(
                messages_max(layout.clients_max),
                (layout.message_size_max as usize).max(REPLY_SIZE_MAX as usize),
            ),
            pipeline: (0..pipeline).map(|_| None).collect(),
            recovered: Recovered::default(),
        };
        if syncing {
            return Ok(ledger);
        }
        // Replay the WAL through the same commit path as live requests, checkpointing at the
        // same fixed ops (each checkpoint replayed past is written before going on, so the
        // durable checkpoint is the newest one at or below the head, as if no crash happened).
        //
        // Only ops proved committed are executed: in a cluster of one, every durable op (its
        // own quorum); otherwise the ops up to the newest commit point that a prepare of the
        // chain carries (its primary had committed them when it prepared it). The ops after
        // that wait in the pipeline for the cluster to say whether they committed; a primary
        // prepares at most a pipeline beyond its commit point, so they fit.
        let cluster_of_one = superblock.replica_count == 1;
        let mut replay = ledger.data_file.replay_start()?;
        let mut replayed = Vec::new();
        let mut unwritten = Vec::new();
        let mut damaged = None;
        loop {
            let (header, message) = match ledger.data_file.replay_next(&mut replay) {
                Ok(Some(next)) => next,
                Ok(None) => break,
                // In a cluster, a damaged durable prepare ends the chain and the replica
                // recovers its log from its peers (protocol-aware recovery, docs/vsr.md).
                Err(DataFileError::Journal(JournalError::Corrupt { op, slot, offset }))
                    if !cluster_of_one =>
                {
                    damaged = Some(Damage::Prepare { op, slot, offset });
                    break;
                }
                Err(error) => return Err(error),
            };
            let op = header.op;
            let slot = op % layout.journal_slot_count;
            let offset = layout.wal_prepare_offset(slot);
            let body = &message[HEADER_SIZE..];
            if let Err(reason) =
                Core::applicable(&header, body, ledger.op_timestamp, ledger.core.batch_size_limit)
            {
                return Err(DataFileError::PrepareInvalid { op, slot, offset, reason });
            }
            // The ops before it that its commit point proves committed make room for it.
            let committed = if cluster_of_one { op } else { header.commit.min(op) };
            ledger.commit_max = ledger.commit_max.max(committed);
            while ledger.core.commit_min < ledger.commit_max.min(ledger.op) {
                ledger.replay_commit(&mut replayed, &mut unwritten)?;
            }
            if op - ledger.core.commit_min > ledger.pipeline.len() as u64 {
                let reason = PrepareInvalid::CommitBehind { commit: header.commit };
                return Err(DataFileError::PrepareInvalid { op, slot, offset, reason });
            }
            let message_pooled = ledger.pool.acquire().expect("a free message for the pipeline");
            ledger.pool.bytes_mut(&message_pooled)[..message.len()].copy_from_slice(message);
            let index = (op % ledger.pipeline.len() as u64) as usize;
            assert!(ledger.pipeline[index].is_none());
            ledger.pipeline[index] = Some(message_pooled);
            (ledger.op, ledger.op_checksum, ledger.op_timestamp) = (op, header.checksum, header.timestamp);
            while ledger.core.commit_min < ledger.commit_max.min(ledger.op) {
                ledger.replay_commit(&mut replayed, &mut unwritten)?;
            }
        }
        ledger.recovered = replay.recovered();
        if let (true, Some(offset)) = (cluster_of_one, ledger.data_file.journal().headers_unreadable()) {
            return Err(DataFileError::Journal(JournalError::HeadersUnreadable { offset }));
        }
        if !cluster_of_one {
            ledger.recovered.damaged = damaged.or_else(|| ledger.data_file.journal().header_damaged());
        }
        ledger.op_staged = ledger.op;
        ledger.op_durable = ledger.op;
        if ledger.recovered.stale_cut && ledger.recovered.damaged.is_none() {
            // The ops cut as stale keep no durable redundant header behind. (Not while the log
            // is damaged: the truncation would reserve the damaged headers too, the evidence
            // that keeps the replica from trusting its head after another crash; the replica
            // truncates once it holds its view's log.)
            ledger.data_file.truncate(ledger.op)?;
        }
        // Replies regenerated by the replay go back to their slots; the others are on disk.
        ledger.write_replies(&mut unwritten)?;
        replayed.sort_unstable();
        replayed.dedup();
        ledger.load_replies(&replayed, cluster_of_one)?;
        // Headers recovery repaired go to disk now: from here on every committed op is durable
        // with its redundant header (a checkpoint's stages rely on it).
        ledger.data_file.flush()?;
        ledger.replies = ReplyWrites::new(layout.clients_max as usize, ledger.core.commit_min);
        Ok(ledger)
    }

    /// Executes the op after `commit_min` from the pipeline during the replay (and
    /// checkpoints after it if due), noting the session slots whose replies it changed.
    fn replay_commit(
        &mut self,
        replayed: &mut Vec<usize>,
        unwritten: &mut Vec<usize>,
    ) -> Result<(), DataFileError> {
        let index = ((self.core.commit_min + 1) % self.pipeline.len() as u64) as usize;
        let message = self.pipeline[index].take().expect("a replayed op's message");
        let buffer = self.pool.bytes(&message);
        let header: Header = bytemuck::pod_read_unaligned(&buffer[..HEADER_SIZE]);
        let (_, slot) = self.core.commit(&header, &buffer[HEADER_SIZE..header.size as usize]);
        self.pool.release(message);
        if let Some(slot) = slot {
            replayed.push(slot);
            unwritten.push(slot);
        }
        if self.checkpoint_due(header.op) {
            // The checkpointed sessions name their latest replies: those go to disk first.
            self.write_replies(unwritten)?;
            self.checkpoint_begin()?;
            self.checkpoint_finish()?;
        }
        Ok(())
    }

    /// Writes the replies of the session slots in `slots` (each once) and empties the list.
    fn write_replies(&mut self, slots: &mut Vec<usize>) -> Result<(), StorageError> {
        slots.sort_unstable();
        slots.dedup();
        for slot in slots.drain(..) {
            self.write_reply(slot)?;
        }
        Ok(())
    }

    /// Reads the reply of each session the replay did not touch from the client-replies zone
    /// (the WAL may have been cut before a newer reply's op; then the slot holds that newer
    /// reply). A reply that does not match its session is never sent: in a replica alone it
    /// ends the session (the client must register again); in a cluster the session stays, as
    /// it does on every peer (the sessions are replicated state), and the reply is repaired
    /// from a peer (`ClientTable::reply_lose`).
    fn load_replies(&mut self, replayed: &[usize], cluster_of_one: bool) -> Result<(), DataFileError> {
        let clients = &mut self.core.clients;
        for slot in 0..clients.sessions().len() {
            let session: ClientSession = clients.sessions()[slot];
            if session.client == 0 || replayed.contains(&slot) {
                continue;
            }
            let size = (session.reply_size as usize).next_multiple_of(SECTOR_SIZE);
            let buffer = clients.reply_buffer_mut(slot);
            let readable = match self.data_file.read_reply(slot as u64, &mut buffer[..size]) {
                Ok(()) => true,
                // A reply the medium cannot read is damaged, like one that reads corrupted.
                Err(error) if error.is_media_read_error() => false,
                Err(error) => return Err(error.into()),
            };
            if readable && session.reply_intact(&buffer[..size]) {
                continue;
            }
            if cluster_of_one {
                clients.evict_slot(slot);
            } else {
                clients.reply_lose(slot);
            }
        }
        Ok(())
    }

    /// The largest request body this data file takes (its WAL slot less the header).
    pub fn batch_size_limit(&self) -> usize {
        self.core.batch_size_limit
    }

    /// Commits the state machine's memory now, so the process does not grow under load.
    pub fn prefault(&mut self) {
        self.core.state.prefault();
    }

    /// What recovery found when the ledger was opened.
    pub fn recovered(&self) -> &Recovered {
        &self.recovered
    }

    /// The state machine (read-only: only committed prepares change it).
    pub fn state_machine(&self) -> &StateMachine {
        &self.core.state
    }

    /// The client sessions.
    pub fn clients(&self) -> &ClientTable {
        &self.core.clients
    }

    /// `op`: the newest op prepared (sealed into the log, maybe not yet durable).
    pub fn op(&self) -> u64 {
        self.op
    }

    /// `commit_min`: the newest op executed by the state machine. Ops commit in order, so every
    /// op up to it has been executed exactly once.
    pub fn commit_min(&self) -> u64 {
        self.core.commit_min
    }

    /// `commit_max`: the newest op known committed (durable on a replication quorum).
    /// `commit_min <= commit_max`; beyond `op` on a backup that missed prepares.
    pub fn commit_max(&self) -> u64 {
        self.commit_max
    }

    /// The timestamp of the last op.
    pub fn timestamp_head(&self) -> u64 {
        self.core.timestamp_head
    }

    /// The data file.
    pub fn data_file(&self) -> &DataFile<S> {
        &self.data_file
    }

    /// The data file, mutably (tests inject faults through its storage).
    pub fn data_file_mut(&mut self) -> &mut DataFile<S> {
        &mut self.data_file
    }

    /// The most requests [`ReplicaState::submit`] takes at once.
    pub fn pipeline_max(&self) -> usize {
        self.pipeline.len()
    }

    /// How many more requests [`ReplicaState::prepare`] takes now: the pipeline less the ops
    /// prepared and not yet committed.
    pub fn pipeline_room(&self) -> usize {
        self.pipeline.len() - (self.op - self.core.commit_min) as usize
    }

    /// The replica's message buffers.
    pub fn pool(&self) -> &MessagePool {
        &self.pool
    }

    /// The replica's message buffers, mutably (to take a request in, or give one back).
    pub fn pool_mut(&mut self) -> &mut MessagePool {
        &mut self.pool
    }

    /// The client sessions and the message buffers, at once (to copy a stored reply into a
    /// message).
    pub fn clients_and_pool_mut(&mut self) -> (&ClientTable, &mut MessagePool) {
        (&self.core.clients, &mut self.pool)
    }

    /// Prepares `requests` as the next consecutive ops at the cluster clock `realtime` (ns):
    /// op number, hash chain and timestamp, each sealed in place over its request's message,
    /// which moves into the pipeline. Nothing is written: the journal stages do that
    /// ([`ReplicaState::stage_begin`]). With a clock beyond the timestamp range nothing is
    /// prepared and every message stays with its request ([`ReplicaStateError::ClockOutOfRange`]).
    pub fn prepare(
        &mut self,
        requests: &mut [PendingRequest],
        realtime: u64,
    ) -> Result<(), ReplicaStateError> {
        assert!(!requests.is_empty() && requests.len() <= self.pipeline_room());
        let cluster = self.data_file.superblock().cluster;
        // Timestamps only grow and must stay in range: with a clock beyond it, nothing is
        // prepared or written (a prepare the state machine cannot apply would poison the WAL).
        let mut timestamps = [0u64; PIPELINE_PREPARE_MAX];
        let mut timestamp = self.op_timestamp;
        for (request, slot) in requests.iter().zip(timestamps.iter_mut()) {
            let header = &request.header;
            assert_eq!(header.command, Command::Request as u8);
            assert_eq!(header.cluster, cluster);
            let message = request.message.as_ref().expect("a request not yet prepared");
            let operation = Operation::from_u8(header.operation).expect("an admitted operation");
            let body = &self.pool.bytes(message)[HEADER_SIZE..header.size as usize];
            let delta = 1 + timestamp_delta(operation, body);
            let next = timestamp.max(realtime.saturating_sub(1)).checked_add(delta);
            let Some(next) = next.filter(|next| *next <= TIMESTAMP_MAX) else {
                return Err(ReplicaStateError::ClockOutOfRange { realtime });
            };
            (timestamp, *slot) = (next, next);
        }
        // A slot is reused only once a durable checkpoint covers its previous op. The fixed
        // checkpoint schedule guarantees it: a checkpoint begins at every multiple of
        // `checkpoint_interval` after the previous one finished, and the WAL has room for two
        // intervals and a pipeline above the durable checkpoint.
        let op_last = self.op + requests.len() as u64;
        assert!(op_last <= self.data_file.checkpoint_op() + self.data_file.journal().slot_count());
        let (view, replica) = (self.data_file.superblock().view, self.data_file.superblock().replica);
        let pipeline = self.pipeline.len() as u64;
        for (request, timestamp) in requests.iter_mut().zip(timestamps) {
            let op = self.op + 1;
            let message = request.message.take().expect("a request not yet prepared");
            let buffer = self.pool.bytes_mut(&message);
            let chain =
                Chain { op, parent: self.op_checksum, timestamp, commit: self.commit_max, view, replica };
            let header = seal_prepare_in_place(buffer, &request.header, chain);
            let slot = &mut self.pipeline[(op % pipeline) as usize];
            assert!(slot.is_none(), "the pipeline slot of op {op} is still in use");
            *slot = Some(message);
            (self.op, self.op_checksum, self.op_timestamp) = (op, header.checksum, timestamp);
        }
        Ok(())
    }

    /// Prepares `requests`, given as bytes: copies each into a pooled message, then as
    /// [`ReplicaState::prepare`] (on an error every message goes back to the pool). For callers
    /// that build requests themselves (tests, benches, tools).
    pub fn prepare_requests(
        &mut self,
        requests: &[Request<'_>],
        realtime: u64,
    ) -> Result<(), ReplicaStateError> {
        let mut pending = self.pending_requests(requests);
        let result = self.prepare(&mut pending[..requests.len()], realtime);
        for message in pending.iter_mut().filter_map(|request| request.message.take()) {
            assert!(result.is_err(), "a prepared request's message is in the pipeline");
            self.pool.release(message);
        }
        result
    }

    /// Copies `requests` into pooled messages, for [`ReplicaState::prepare`].
    fn pending_requests(&mut self, requests: &[Request<'_>]) -> [PendingRequest; PIPELINE_PREPARE_MAX] {
        assert!(requests.len() <= PIPELINE_PREPARE_MAX);
        let cluster = self.data_file.superblock().cluster;
        let mut pending: [PendingRequest; PIPELINE_PREPARE_MAX] = std::array::from_fn(|_| PendingRequest {
            header: Header::new(Command::Reserved, cluster),
            message: None,
        });
        for (request, pending) in requests.iter().zip(pending.iter_mut()) {
            // The pool holds at least a pipeline's worth, and the pipeline has room for these.
            let message = self.pool.acquire().expect("a free message for the pipeline");
            let buffer = self.pool.bytes_mut(&message);
            buffer[HEADER_SIZE..HEADER_SIZE + request.body.len()].copy_from_slice(request.body);
            *pending = PendingRequest { header: request.header(cluster), message: Some(message) };
        }
        pending
    }

    /// Begins the next stage of `stream`, if none of it is in flight and it has one to write
    /// now: fills `writes` (at least [`STAGE_WRITES_MAX`] long) and says how many, and whether
    /// an `fdatasync` follows. The caller carries the stage out, then calls
    /// [`ReplicaState::stage_end`]; a failed write or sync is fatal. The buffers written are
    /// the replica's and do not change until the stage ends.
    ///
    /// - Journal: the prepares not yet staged and the redundant headers of durable ones (see
    ///   [`Journal::stage_begin`] for why a group of prepares takes two stages).
    /// - Grid: the checkpoint in progress, as far as its pacing allows (all of it if a commit
    ///   waits for it); its final sync only once the replies it names are written.
    /// - Replies: every queued reply slot.
    ///
    /// [`Journal::stage_begin`]: super::journal::Journal::stage_begin
    /// [`STAGE_WRITES_MAX`]: super::write_stage::STAGE_WRITES_MAX
    pub fn stage_begin<'a>(
        &'a mut self,
        stream: Stream,
        writes: &mut [Write<'a>],
    ) -> Result<Option<Stage>, ReplicaStateError> {
        if self.stage_in_flight(stream) {
            return Ok(None);
        }
        match stream {
            Stream::Journal => Ok(self.journal_stage_begin(writes).map(|count| Stage::new(count, true))),
            Stream::Grid => {
                let Some((op, _)) = self.data_file.checkpoint_in_progress() else { return Ok(None) };
                // Paced stages stay small (they queue at the disk ahead of the journal's next
                // stage); a checkpoint a commit waits for goes as fast as the staging area allows.
                let pages_max = if self.commit_waits_for_checkpoint() {
                    usize::MAX
                } else {
                    self.grid_pages_due.min(GRID_STAGE_BLOCKS_PACED)
                };
                let may_finish = self.replies.written_through(op);
                let core = &self.core;
                let sessions = core.clients.persisted();
                Ok(self.data_file.grid_stage_begin(&core.state, sessions, pages_max, may_finish, writes)?)
            }
            Stream::Replies => {
                let Some(slots) = self.replies.stage_begin() else { return Ok(None) };
                let layout = self.data_file.superblock().layout();
                let count = reply_writes(&self.core.clients, layout, slots, writes);
                Ok(Some(Stage::new(count, false)))
            }
        }
    }

    /// Ends the stage of `stream` in flight, after its writes (and sync) succeeded. A journal
    /// stage moves `op_durable` to the newest op it made durable with its redundant header; the
    /// last grid stage of a checkpoint makes it the durable one.
    pub fn stage_end(&mut self, stream: Stream) {
        assert!(self.stage_in_flight(stream));
        match stream {
            Stream::Journal => {
                if let Some(durable) = self.data_file.stage_end() {
                    self.op_durable_advance(durable);
                }
            }
            Stream::Grid => {
                let remaining =
                    |state: &Self| state.data_file.checkpoint_in_progress().map_or(0, |(_, left)| left);
                let before = remaining(self);
                self.data_file.grid_stage_end();
                let written = before - remaining(self);
                self.grid_pages_due = self.grid_pages_due.saturating_sub(written);
            }
            Stream::Replies => self.replies.stage_end(),
        }
    }

    /// True if a stage of `stream` is in flight.
    pub fn stage_in_flight(&self, stream: Stream) -> bool {
        match stream {
            Stream::Journal => self.data_file.journal().stage_in_flight(),
            Stream::Grid => self.data_file.grid_stage_in_flight(),
            Stream::Replies => self.replies.stage_in_flight(),
        }
    }

    /// The journal's next stage: the prepares not yet staged, and headers of durable ones.
    fn journal_stage_begin<'a>(&'a mut self, writes: &mut [Write<'a>]) -> Option<usize> {
        let (first, last) = (self.op_staged + 1, self.op);
        self.op_staged = last;
        let (messages, count) = pipeline_prepares(&self.pool, &self.pipeline, first, last);
        self.data_file.stage_begin(&messages[..count], writes)
    }

    /// Carries out the grid's and the replies' stages here and now, as far as each has one
    /// to write (the replies first: a checkpoint's final sync waits for them). For callers
    /// that wait for the disk; the server keeps these stages in flight on its ring instead.
    pub fn storage_run(&mut self) -> Result<(), ReplicaStateError> {
        assert!(!self.stage_in_flight(Stream::Replies) && !self.stage_in_flight(Stream::Grid));
        if let Some(slots) = self.replies.stage_begin() {
            let layout = self.data_file.superblock().layout();
            let mut writes = [Write { offset: 0, data: &[] }; REPLIES_STAGE_WRITES_MAX];
            let count = reply_writes(&self.core.clients, layout, slots, &mut writes);
            self.data_file.storage_mut().write(&writes[..count])?;
            self.replies.stage_end();
        }
        if let Some((_, before)) = self.data_file.checkpoint_in_progress() {
            let pages_max = if self.commit_waits_for_checkpoint() { usize::MAX } else { self.grid_pages_due };
            let core = &self.core;
            self.data_file.checkpoint_run(&core.state, core.clients.persisted(), pages_max)?;
            let after = self.data_file.checkpoint_in_progress().map_or(0, |(_, left)| left);
            self.grid_pages_due = self.grid_pages_due.saturating_sub(before - after);
        }
        Ok(())
    }

    /// Carries out journal stages here and now until every op in the pipeline is durable.
    pub fn journal_sync(&mut self) -> Result<(), StorageError> {
        assert!(!self.stage_in_flight(Stream::Journal));
        // Each group takes two stages: its prepares, then its headers.
        while self.op_durable < self.op {
            let (first, last) = (self.op_staged + 1, self.op);
            self.op_staged = last;
            let (messages, count) = pipeline_prepares(&self.pool, &self.pipeline, first, last);
            if let Some(durable) = self.data_file.stage_run(&messages[..count])? {
                self.op_durable_advance(durable);
            }
        }
        Ok(())
    }

    fn op_durable_advance(&mut self, durable: u64) {
        assert!(durable > self.op_durable && durable <= self.op_staged);
        self.op_durable = durable;
    }

    /// `op_durable`: the newest op whose prepare and redundant header are durable in this
    /// replica's WAL, and so may be acknowledged (`commit_min <= op_durable <= op` on a
    /// replica that is not behind its primary's commits).
    pub fn op_durable(&self) -> u64 {
        self.op_durable
    }

    /// Raises `commit_max` to `commit` (if higher): the replica learned that every op up to it
    /// committed in the cluster (a replication quorum holds it). It may be beyond `op`: a
    /// backup that missed prepares learns that they committed before it has them.
    pub fn commit_max_raise(&mut self, commit: u64) {
        self.commit_max = self.commit_max.max(commit);
    }

    /// The newest op [`ReplicaState::commit`] may execute now: committed, and durable here.
    fn commit_limit(&self) -> u64 {
        self.commit_max.min(self.op_durable)
    }

    /// True if `header`, a prepare of this cluster whose checksums verified, is the op after
    /// `op` and may join the pipeline now: it chains to the head, its timestamp and body are
    /// applicable, the pipeline has room, and its WAL slot is free (its previous op is covered
    /// by the durable checkpoint). A backup takes its primary's prepares only this way.
    pub fn prepare_fits(&self, header: &Header, body: &[u8]) -> bool {
        assert_eq!(header.command(), Some(Command::Prepare));
        header.op == self.op + 1
            && header.parent == self.op_checksum
            && header.op - self.core.commit_min <= self.pipeline.len() as u64
            && header.op <= self.data_file.checkpoint_op() + self.data_file.journal().slot_count()
            && Core::applicable(header, body, self.op_timestamp, self.core.batch_size_limit).is_ok()
    }

    /// Takes `message`, a prepare that [`ReplicaState::prepare_fits`] (checked by the caller),
    /// into the pipeline as the new head, to be written by the next journal stage.
    pub fn prepare_accept(&mut self, message: Message) {
        let header = self.pool.header(&message);
        assert_eq!(header.op, self.op + 1);
        assert_eq!(header.parent, self.op_checksum);
        assert!(header.timestamp > self.op_timestamp);
        let index = (header.op % self.pipeline.len() as u64) as usize;
        assert!(self.pipeline[index].is_none(), "the pipeline slot of op {} is still in use", header.op);
        self.pipeline[index] = Some(message);
        (self.op, self.op_checksum, self.op_timestamp) = (header.op, header.checksum, header.timestamp);
    }

    /// The header of `op`'s prepare in this replica's log: from the pipeline, or for an op
    /// already executed, the redundant header its WAL slot holds in memory (while the slot
    /// has not been reused, and is intact: recovery may have found it damaged). `None` for op
    /// 0, an op beyond the head, or one no longer held.
    pub fn header_of(&self, op: u64) -> Option<Header> {
        if op == 0 || op > self.op {
            return None;
        }
        if let Some(message) = self.pipeline_message(op) {
            return Some(self.pool.header(message));
        }
        let journal = self.data_file.journal();
        let header = journal.header(op % journal.slot_count());
        (header.command() == Some(Command::Prepare) && header.op == op && header.valid_checksum())
            .then_some(header)
    }

    /// Restores the lost latest reply of `client`'s session from a peer's copy (`header` and
    /// `body`), if it is that very reply and its buffer is not being written; queues it for its
    /// slot on disk. True if restored.
    pub fn reply_restore(&mut self, client: u128, header: &Header, body: &[u8]) -> bool {
        let Some((slot, _)) = self.core.clients.get(client) else { return false };
        if self.replies.in_flight(slot) {
            return false;
        }
        let Some(slot) = self.core.clients.reply_restore(client, header, body) else { return false };
        self.replies.queue_restored(slot);
        true
    }

    /// Restores the header of op `commit_min` where recovery found its redundant header damaged
    /// (its op executed, its slot's header lost), from `header`, a peer's copy: taken only if it
    /// is the very prepare executed (its checksum). True if restored.
    pub fn header_restore(&mut self, header: &Header) -> bool {
        let op = self.core.commit_min;
        if header.op != op || header.checksum != self.core.head_checksum || self.header_of(op).is_some() {
            return false;
        }
        self.data_file.journal_mut().header_restore(header);
        true
    }

    /// Forgets the ops after `op` (at least `commit_min`): a view change chose a log without
    /// them. Their messages go back to the pool, the head becomes `op`, and the WAL reserves
    /// their redundant headers again, here and now ([`DataFile::truncate`]). No journal stage
    /// may be in flight (its writes would come from the messages released).
    pub fn truncate(&mut self, op: u64) -> Result<(), StorageError> {
        assert!(op >= self.core.commit_min && op <= self.op);
        assert!(!self.stage_in_flight(Stream::Journal), "no journal stage in flight");
        let pipeline = self.pipeline.len() as u64;
        for truncated in op + 1..=self.op {
            let message =
                self.pipeline[(truncated % pipeline) as usize].take().expect("a prepared op's message");
            self.pool.release(message);
        }
        let (checksum, timestamp) = if op == self.core.commit_min {
            (self.core.head_checksum, self.core.timestamp_head)
        } else {
            let header = self.header_of(op).expect("an op of the pipeline");
            (header.checksum, header.timestamp)
        };
        (self.op, self.op_checksum, self.op_timestamp) = (op, checksum, timestamp);
        self.op_staged = self.op_staged.min(op);
        self.op_durable = self.op_durable.min(op);
        self.data_file.truncate(op)?;
        Ok(())
    }

    /// The checksum of op `commit_min`'s prepare (the newest op executed).
    pub fn commit_min_checksum(&self) -> u128 {
        self.core.head_checksum
    }

    /// The checksum of the head op's prepare (the parent of the next op).
    pub fn op_checksum(&self) -> u128 {
        self.op_checksum
    }

    /// The pipeline's message of `op`, if the op is in it (prepared and not yet executed).
    pub fn pipeline_message(&self, op: u64) -> Option<&Message> {
        if op <= self.core.commit_min || op > self.op {
            return None;
        }
        self.pipeline[(op % self.pipeline.len() as u64) as usize].as_ref()
    }

    /// Another reference to the pipeline's message of `op` (to send it), if the op is in it.
    pub fn pipeline_reference(&mut self, op: u64) -> Option<Message> {
        if op <= self.core.commit_min || op > self.op {
            return None;
        }
        let message = self.pipeline[(op % self.pipeline.len() as u64) as usize].as_ref()?;
        Some(self.pool.reference(message))
    }

    /// True if a prepare of `client` is in the pipeline (prepared, not yet executed).
    pub fn pipeline_has_client(&self, client: u128) -> bool {
        assert_ne!(client, 0);
        self.pipeline.iter().flatten().any(|message| self.pool.header(message).client == client)
    }

    /// The prepare of `op` read back from the WAL into a pooled message, if this replica holds
    /// it durable and intact (its slot not yet reused by a later op), to send to a peer that
    /// lacks it. `None` if not, or if no message is free.
    pub fn prepare_read(&mut self, op: u64) -> Result<Option<Message>, StorageError> {
        let slot_count = self.data_file.journal().slot_count();
        if op == 0 || op > self.op_durable || op + slot_count <= self.op {
            return Ok(None);
        }
        // The prepare this replica holds durable at `op`, as its headers say (if they do).
        let expected = self.header_of(op).map(|header| header.checksum);
        let Some(message) = self.pool.acquire() else { return Ok(None) };
        let buffer = self.pool.bytes_mut(&message);
        match self.data_file.read_prepare(op, buffer)? {
            // (Another prepare of `op` than its header names: the newer one's write was lost.)
            SlotRead::Intact(header)
                if header.op == op && expected.is_none_or(|checksum| checksum == header.checksum) =>
            {
                Ok(Some(message))
            }
            // An older op of the slot, intact, where op `op` was written durable: the write was
            // lost (a storage fault). Damage, like a corrupted slot: the peer asks another.
            SlotRead::Intact(_) | SlotRead::Empty | SlotRead::Damaged => {
                self.pool.release(message);
                Ok(None)
            }
        }
    }

    /// Commits every op up to `commit_max` not yet executed that this WAL holds durable, in op
    /// order: executes it, records
    /// the reply in its client's session (queued for the replies stream), and calls
    /// `reply(committed, reply_message, pool)` for each (the message is empty for the replica's
    /// own requests; the pool is the replica's, to put the reply in a message of its own); begins a checkpoint at each checkpoint op. Stops early, with
    /// [`ReplicaState::commit_waits`] true, where going on would change a buffer that a write in
    /// flight is writing, or begin a checkpoint before the one in progress is durable: the
    /// stages then in flight (or due) end the wait.
    pub fn commit(
        &mut self,
        mut reply: impl FnMut(&Committed, &[u8], &mut MessagePool),
    ) -> Result<(), ReplicaStateError> {
        if self.core.commit_min >= self.commit_limit() {
            return Ok(());
        }
        let pipeline = self.pipeline.len() as u64;
        let mut result: Result<(), ReplicaStateError> = Ok(());
        let commit_min_before = self.core.commit_min;
        while self.core.commit_min < self.commit_limit() {
            let index = ((self.core.commit_min + 1) % pipeline) as usize;
            let message = self.pipeline[index].as_ref().expect("a prepared op's message");
            let buffer = self.pool.bytes(message);
            let header: Header = bytemuck::pod_read_unaligned(&buffer[..HEADER_SIZE]);
            let body = &buffer[HEADER_SIZE..header.size as usize];
            if self.waits(&header) {
                break;
            }
            // The server admitted only valid requests; a failure here is a bug, caught before
            // the state machine could half-apply it.
            let core = &self.core;
            assert_eq!(Core::applicable(&header, body, core.timestamp_head, core.batch_size_limit), Ok(()));
            let (committed, slot) = self.core.commit(&header, body);
            // Executed: the prepare is durable, and its message is needed no more.
            let message = self.pipeline[index].take().expect("a prepared op's message");
            self.pool.release(message);
            if let Some(slot) = slot {
                self.replies.queue(slot, header.op);
            }
            let size = if committed.client == 0 { 0 } else { reply_size(&self.core.reply) };
            reply(&committed, &self.core.reply[..size], &mut self.pool);
            if self.checkpoint_due(header.op) {
                if let Err(error) = self.checkpoint_begin() {
                    result = Err(error.into());
                    break;
                }
            }
        }
        result?;
        self.checkpoint_pace(self.core.commit_min - commit_min_before);
        Ok(())
    }

    /// True if [`ReplicaState::commit`] stopped short of `commit_max` and waits for a stage:
    /// the checkpoint in progress to become durable, or a reply slot's write.
    pub fn commit_waits(&self) -> bool {
        if self.core.commit_min >= self.commit_limit() {
            return false;
        }
        let pipeline = self.pipeline.len() as u64;
        let message = self.pipeline[((self.core.commit_min + 1) % pipeline) as usize].as_ref();
        self.waits(&self.pool.header(message.expect("a prepared op's message")))
    }

    /// True if committing `header` (the op after `commit_min`) must wait for a stage.
    fn waits(&self, header: &Header) -> bool {
        assert_eq!(header.op, self.core.commit_min + 1);
        if self.checkpoint_due(header.op) && self.data_file.checkpoint_in_progress().is_some() {
            return true;
        }
        if header.client == 0 || !self.replies.stage_in_flight() {
            return false;
        }
        // A register may take (evict) any session's slot; a request changes its own slot's.
        let register = header.operation == Operation::Register as u8;
        match self.core.clients.get(header.client) {
            Some((slot, _)) if !register => self.replies.in_flight(slot),
            _ => true,
        }
    }

    /// True if the next op to commit waits for the checkpoint in progress: the grid then
    /// writes it as fast as it can, paced no more.
    fn commit_waits_for_checkpoint(&self) -> bool {
        self.core.commit_min < self.commit_limit()
            && self.checkpoint_due(self.core.commit_min + 1)
            && self.data_file.checkpoint_in_progress().is_some()
    }

    /// Prepares `requests` as consecutive ops, makes them durable in the WAL (two stages: the
    /// prepares, then their headers, each with one `fdatasync`), commits them in order, and
    /// carries out the grid and reply writes that committing makes due; the composition of
    /// [`ReplicaState::prepare_requests`], [`ReplicaState::journal_sync`], [`ReplicaState::commit`] and
    /// [`ReplicaState::storage_run`] for callers that wait for the disk (tests, benches, tools).
    pub fn submit(
        &mut self,
        requests: &[Request<'_>],
        realtime: u64,
        mut reply: impl FnMut(&Committed, &[u8]),
    ) -> Result<(), ReplicaStateError> {
        assert!(self.core.commit_min == self.commit_max && self.commit_max == self.op);
        assert_eq!(self.data_file.superblock().replica_count, 1, "submit serves a cluster of one");
        self.prepare_requests(requests, realtime)?;
        self.journal_sync()?;
        // A cluster of one: durable on this replica is a replication quorum.
        self.commit_max_raise(self.op_durable);
        self.commit_sync(&mut reply)
    }

    /// Commits up to `commit_max`, carrying out the grid and reply stages here and now
    /// whenever committing waits for them, and those due once it is done.
    pub fn commit_sync(&mut self, mut reply: impl FnMut(&Committed, &[u8])) -> Result<(), ReplicaStateError> {
        loop {
            self.commit(|committed, message, _| reply(committed, message))?;
            self.storage_run()?;
            if self.core.commit_min >= self.commit_limit() {
                return Ok(());
            }
            assert!(!self.commit_waits(), "the stages just run end every wait");
        }
    }

    /// True if a checkpoint of the state after `op` is due: checkpoint ops are the multiples
    /// of `checkpoint_interval`, a function of the op alone, so that every replica (with the
    /// same WAL size) checkpoints the same states.
    fn checkpoint_due(&self, op: u64) -> bool {
        op.is_multiple_of(self.checkpoint_interval)
    }

    /// Begins a checkpoint of the state after the head op (nothing is written yet): the one
    /// before is durable (a commit waits for that).
    fn checkpoint_begin(&mut self) -> Result<(), CheckpointError> {
        assert!(self.data_file.checkpoint_in_progress().is_none());
        let core = &self.core;
        let (op, checksum, timestamp) = (core.commit_min, core.head_checksum, core.timestamp_head);
        let sessions = core.clients.persisted();
        self.data_file.checkpoint_begin(&core.state, sessions, op, checksum, timestamp)?;
        self.grid_pages_due = 0;
        Ok(())
    }

    /// Writes the rest of the checkpoint in progress here and now, if any, and makes it
    /// durable (the replies it names must be written).
    fn checkpoint_finish(&mut self) -> Result<(), CheckpointError> {
        assert!(!self.stage_in_flight(Stream::Grid));
        let core = &self.core;
        if let Some((op, _)) = self.data_file.checkpoint_in_progress() {
            assert!(self.replies.written_through(op));
            self.data_file.checkpoint_run(&core.state, core.clients.persisted(), usize::MAX)?;
        }
        assert!(self.data_file.checkpoint_in_progress().is_none());
        Ok(())
    }

    /// Lets the checkpoint in progress write more pages after `committed` more ops: a share
    /// of what is left, sized so that its pages are written within three quarters of the
    /// interval and it is durable before the next checkpoint op (where a commit would wait for
    /// it) — the replica never stops for a whole checkpoint, and the grid's writes are spread
    /// thin beside the journal's.
    fn checkpoint_pace(&mut self, committed: u64) {
        let Some((op, remaining)) = self.data_file.checkpoint_in_progress() else { return };
        let deadline = op + (self.checkpoint_interval * 3 / 4).max(1);
        let ops_left = deadline.saturating_sub(self.core.commit_min).max(1) as usize;
        let share = remaining.div_ceil(ops_left).max(CHECKPOINT_PAGES_PER_COMMIT_MIN);
        let due = self.grid_pages_due + share * committed.max(1) as usize;
        self.grid_pages_due = due.min(remaining);
    }

    /// Writes the reply of session `slot` into its slot of the client-replies zone.
    fn write_reply(&mut self, slot: usize) -> Result<(), StorageError> {
        let clients = &self.core.clients;
        let size = (clients.sessions()[slot].reply_size as usize).next_multiple_of(SECTOR_SIZE);
        self.data_file.write_reply(slot as u64, &clients.reply_buffer(slot)[..size])
    }

    /// Finishes any checkpoint in progress, then checkpoints the state and sessions after the
    /// head op, all before returning. This checkpoint is off the fixed schedule (which goes on
    /// from it unchanged): for tests and benches that need a durable checkpoint at a known
    /// point; a replica of a cluster never calls it, as its peers would not have the same one.
    pub fn checkpoint(&mut self) -> Result<(), ReplicaStateError> {
        // Replies first (the checkpoint names them), then a checkpoint in progress: it is the
        // older state, and one checkpoint is written at a time.
        self.storage_run()?;
        self.checkpoint_finish()?;
        let core = &self.core;
        if core.commit_min > self.data_file.checkpoint_op() {
            self.data_file.checkpoint(
                &core.state,
                core.clients.persisted(),
                core.commit_min,
                core.head_checksum,
                core.timestamp_head,
            )?;
        }
        Ok(())
    }

    /// Writes pending redundant WAL headers (call when idle).
    pub fn flush(&mut self) -> Result<(), ReplicaStateError> {
        Ok(self.data_file.flush()?)
    }

    /// Closes the ledger, returning its storage.
    pub fn into_storage(self) -> S {
        self.data_file.into_storage()
    }
}

impl Core {
    /// Checks that a prepare can be committed after an op of timestamp `timestamp_previous`
    /// without tripping the state machine's assertions: a known operation, a valid body (for
    /// requests of at most `batch_size_limit` bytes), and a timestamp in range that follows the
    /// previous one with room for the prepare's events.
    fn applicable(
        header: &Header,
        body: &[u8],
        timestamp_previous: u64,
        batch_size_limit: usize,
    ) -> Result<(), PrepareInvalid> {
        let operation =
            Operation::from_u8(header.operation).ok_or(PrepareInvalid::Operation(header.operation))?;
        match operation {
            Operation::Register | Operation::Pulse if !body.is_empty() => {
                return Err(PrepareInvalid::Body(InvalidRequest::Operation(operation)));
            }
            Operation::Register | Operation::Pulse => {}
            _ => {
                StateMachine::input_valid(operation, body, batch_size_limit).map_err(PrepareInvalid::Body)?
            }
        }
        if header.timestamp > TIMESTAMP_MAX {
            return Err(PrepareInvalid::TimestampRange(header.timestamp));
        }
        let delta = timestamp_delta(operation, body);
        let follows = header.timestamp.checked_sub(delta).is_some_and(|first| first > timestamp_previous);
        if !follows {
            return Err(PrepareInvalid::TimestampOrder {
                timestamp: header.timestamp,
                previous: timestamp_previous,
                delta,
            });
        }
        Ok(())
    }

    /// Applies one durable prepare (checked by [`Core::applicable`]): executes it, builds the reply in `self.reply`, and records it
    /// in the client's session. Returns the outcome and the session slot whose reply changed.
    fn commit(&mut self, header: &Header, body: &[u8]) -> (Committed, Option<usize>) {
        assert_eq!(header.command(), Some(Command::Prepare));
        assert_eq!(header.op, self.commit_min + 1);
        assert!(header.timestamp > self.timestamp_head || header.op == 1);
        // Only operations the primary validated reach the log.
        let operation = Operation::from_u8(header.operation).expect("a prepare carries a known operation");
        // The results go after the reply header, which `seal_reply` writes once they are known.
        let output = &mut self.reply[HEADER_SIZE..];
        let result = match operation {
            Operation::Register => {
                let register = RegisterResult::new(self.batch_size_limit as u32);
                output[..16].copy_from_slice(bytemuck::bytes_of(&register));
                Ok(16)
            }
            _ => self.state.execute(operation, header.timestamp, body, &mut output[..MESSAGE_BODY_SIZE_MAX]),
        };
        self.commit_min = header.op;
        self.head_checksum = header.checksum;
        self.timestamp_head = header.timestamp;
        let mut committed = Committed {
            op: header.op,
            timestamp: header.timestamp,
            client: header.client,
            result,
            evicted: None,
        };
        if header.client == 0 {
            return (committed, None);
        }
        let reply_header = self.seal_reply(header, &committed.result);
        let size = reply_header.size as usize;
        let update = self.clients.commit(
            header.client,
            operation == Operation::Register,
            header.op,
            header.request,
            &self.reply[..size],
            reply_header.checksum,
        );
        committed.evicted = update.and_then(|update| update.evicted);
        (committed, update.map(|update| update.slot))
    }

    /// Writes the reply header for the committed prepare into `self.reply`.
    fn seal_reply(&mut self, prepare: &Header, result: &Result<usize, ExecuteError>) -> Header {
        let (status, body_size) = match result {
            Ok(size) => (ReplyStatus::Ok, *size),
            Err(ExecuteError::TableFull { table }) => (table_full_status(*table), 0),
            // The primary validated the body before preparing it.
            Err(ExecuteError::InvalidRequest(reason)) => {
                panic!("op {} invalid in the log: {reason}", prepare.op)
            }
        };
        let mut header = Header {
            client: prepare.client,
            request: prepare.request,
            operation: prepare.operation,
            op: prepare.op,
            // The view the op was prepared in: the same reply on every replica, and a view
            // the client may send its next request to (it learns newer ones as they come).
            view: prepare.view,
            timestamp: prepare.timestamp,
            context: prepare.context,
            status: status as u8,
            ..Header::new(Command::Reply, prepare.cluster)
        };
        header.set_body(&self.reply[HEADER_SIZE..HEADER_SIZE + body_size]);
        header.set_checksum();
        self.reply[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        header
    }
}

/// The sealed prepares of ops `first..=last` (none if `first > last`) from the pipeline's
/// buffers, and how many.
fn pipeline_prepares<'a>(
    pool: &'a MessagePool,
    pipeline: &'a [Option<Message>],
    first: u64,
    last: u64,
) -> ([&'a [u8]; PIPELINE_PREPARE_MAX], usize) {
    let length = pipeline.len() as u64;
    let mut messages: [&[u8]; PIPELINE_PREPARE_MAX] = [&[]; PIPELINE_PREPARE_MAX];
    for (message, op) in messages.iter_mut().zip(first..=last) {
        let prepare = pipeline[(op % length) as usize].as_ref().expect("a prepared op's message");
        *message = pool.bytes(prepare);
    }
    (messages, (last + 1 - first) as usize)
}

/// Fills `writes` with the writes of reply slots `slots` (each its session's latest reply,
/// sector-padded, from the session's reply buffer); returns how many.
fn reply_writes<'a>(
    clients: &'a ClientTable,
    layout: Layout,
    slots: &[usize],
    writes: &mut [Write<'a>],
) -> usize {
    assert!(slots.len() <= writes.len());
    for (write, slot) in writes.iter_mut().zip(slots) {
        let size = (clients.sessions()[*slot].reply_size as usize).next_multiple_of(SECTOR_SIZE);
        let offset = layout.client_reply_offset(*slot as u64);
        *write = Write { offset, data: &clients.reply_buffer(*slot)[..size] };
    }
    slots.len()
}

/// The size of the sealed reply message in `reply`.
fn reply_size(reply: &[u8]) -> usize {
    let header: Header = bytemuck::pod_read_unaligned(&reply[..HEADER_SIZE]);
    header.size as usize
}

fn table_full_status(table: Table) -> ReplyStatus {
    match table {
        Table::Accounts => ReplyStatus::AccountsFull,
        Table::Transfers => ReplyStatus::TransfersFull,
        Table::Expiries => ReplyStatus::ExpiriesFull,
        Table::History => ReplyStatus::HistoryFull,
    }
}

/// The timestamps a request reserves beyond its prepare timestamp (spec §11).
fn timestamp_delta(operation: Operation, body: &[u8]) -> u64 {
    match operation {
        Operation::Pulse => PULSE_EXPIRIES_MAX as u64,
        operation if operation.is_create() => MultiBatch::decode(body, operation.event_size())
            .map(|batches| batches.element_count() as u64)
            .unwrap_or(0),
        _ => 0,
    }
}

/// How many message buffers a replica of `clients_max` sessions needs: one per session (each
/// has at most one request in flight) and one for the replica's own pulse, waiting to be
/// prepared; the pipeline's prepares (a request's message becomes its prepare, but a backup's
/// and a new primary's prepares came from the network); the copies of one outbox
/// ([`OUTBOX_COPIES_MAX`]); and one prepare read back from the WAL for a peer.
pub fn messages_max(clients_max: u64) -> usize {
    clients_max as usize + 1 + PIPELINE_PREPARE_MAX + OUTBOX_COPIES_MAX + 1
}

/// Writes a sealed prepare of `request` (op `op`, chained to `parent`, stamped `timestamp`) into
/// `buffer`, sector-padded with zeros, as the primary of a cluster of one makes it (view 0,
/// every earlier op committed); returns its header. Public for benches and tools that
/// build WAL entries directly.
pub fn seal_prepare(
    buffer: &mut [u8],
    cluster: u128,
    request: &Request<'_>,
    op: u64,
    parent: u128,
    timestamp: u64,
) -> Header {
    assert!(HEADER_SIZE + request.body.len() <= buffer.len());
    buffer[HEADER_SIZE..HEADER_SIZE + request.body.len()].copy_from_slice(request.body);
    let chain = Chain { op, parent, timestamp, commit: op - 1, view: 0, replica: 0 };
    seal_prepare_in_place(buffer, &request.header(cluster), chain)
}

/// Where a prepare goes in the log, and who made it when: the fields a primary sets.
#[derive(Clone, Copy, Debug)]
struct Chain {
    op: u64,
    /// The checksum of op `op − 1`'s prepare.
    parent: u128,
    timestamp: u64,
    /// The primary's `commit_max` when it prepared the op.
    commit: u64,
    view: u32,
    /// The primary.
    replica: u8,
}

/// Turns the request in `buffer` (described by `request`, its body after the header) into its
/// prepare at `chain`, sector-padded with zeros; returns the prepare's header. The body is the request's, byte for byte, so `checksum_body` is the
/// request's, verified when it arrived, and is not computed again (recovery and the simulator
/// verify it against the bytes in the WAL).
fn seal_prepare_in_place(buffer: &mut [u8], request: &Header, chain: Chain) -> Header {
    let size = request.size as usize;
    assert!(size >= HEADER_SIZE && size <= buffer.len());
    // Zero the sector padding: the WAL slot's bytes are then a pure function of the prepare.
    let size_padded = size.next_multiple_of(SECTOR_SIZE);
    buffer[size..size_padded].fill(0);
    let mut header = Header {
        op: chain.op,
        parent: chain.parent,
        timestamp: chain.timestamp,
        commit: chain.commit,
        view: chain.view,
        replica: chain.replica,
        client: request.client,
        request: request.request,
        context: request.checksum,
        operation: request.operation,
        size: request.size,
        checksum_body: request.checksum_body,
        ..Header::new(Command::Prepare, request.cluster)
    };
    header.set_checksum();
    buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
    header
}
