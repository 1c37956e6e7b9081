//! The replica: one member of a cluster of 1–6 replicas running Viewstamped Replication
//! (docs/vsr.md). The primary takes client requests (admission, spec §7), queues them, schedules
//! its own pulses, and has its durable state ([`ReplicaState`]) prepare them, a pipeline's worth
//! at a time, while it sends each prepare to every backup ([`normal`]); an op commits once a
//! replication quorum holds it durable. Backups take the primary's prepares into their own WAL,
//! acknowledge them once durable, and commit what the primary tells them is committed.
//!
//! It never touches a socket, a disk's ring or a clock: the loop around it (the server, the
//! simulator) hands it messages, a [`Time`] to read on every tick, and the completions of the
//! write stages it handed out, and empties its outbox after every call: messages addressed to
//! a client id or a replica index, which the loop routes to connections.

mod clock_sync;
mod log_target;
mod normal;
mod scrub;
mod sync;
mod view_change;

use super::admission::{admit, Admission};
use super::clock::Clock;
use super::header::{Command, EvictionReason, Header};
use super::journal::Damage;
use super::message_pool::MessagePool;
use super::outbox::{Destination, Envelope, Outbox, Payload};
use super::quorums::{primary_index, Quorums};
use super::replica_state::{PendingRequest, ReplicaState, ReplicaStateError, PIPELINE_PREPARE_MAX};
use super::time::{ClockWatch, Time};
use super::write_stage::{Stage, Stream, STREAMS};
use crate::constants::{HEADER_SIZE, OUTBOX_COPIES_MAX, OUTBOX_MESSAGES_MAX, REPLICAS_MAX};
use crate::net::codec::eviction_header;
use crate::operation::Operation;
use crate::state_machine::{ExecuteError, Table};
use crate::storage::{Storage, Write};
use clock_sync::ClockSync;
use log_target::LogTarget;
pub use normal::PeerMessage;
use normal::{Acks, Deadlines};
use scrub::Scrub;
use sync::Sync;
pub use view_change::Status;
use view_change::ViewChange;

/// A known bug the simulator can plant in a replica, to prove that its checkers catch it
/// (`simulator --inject-bug`). Never planted outside the simulator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InjectedBug {
    /// The primary commits an op on one acknowledgement fewer than a replication quorum.
    CommitQuorumMinusOne,
    /// The primary stamps prepares with its own wall clock, ignoring the cluster's time (and
    /// takes requests without it).
    ClockIgnored,
    /// A new primary truncates an op it lacks on one nack fewer than a nack quorum.
    NackQuorumMinusOne,
    /// A replica whose WAL recovery found damaged trusts the head of its log anyway (as if the
    /// damage were a torn write) and takes part in view changes at once.
    DamageTrusted,
    /// A syncing replica installs a peer's checkpoint as the state after the op following its
    /// own (an off-by-one in the checkpoint op it records).
    SyncOffByOne,
}

/// What a call to [`Replica::commit`] did, beyond the messages in the outbox.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Ops committed.
    pub ops: u64,
    /// Requests rejected whole because a table is full (their replies say so too).
    pub table_full: u64,
    /// The last table found full.
    pub table_full_last: Option<Table>,
}

impl CommitReport {
    fn add(&mut self, other: CommitReport) {
        self.ops += other.ops;
        self.table_full += other.table_full;
        self.table_full_last = other.table_full_last.or(self.table_full_last);
    }
}

/// One replica: its durable core, the requests waiting for it, and its part in the cluster.
pub struct Replica<S: Storage> {
    state: ReplicaState<S>,
    /// Requests in arrival order, not yet prepared, each in a message of the state's pool (a
    /// prepared request's message is its prepare, in the pipeline): at most one per client
    /// session (each has at most one request in flight) and the pulse.
    queue: Vec<PendingRequest>,
    /// The clocks' readings at the last tick, to notice a step of the wall clock.
    clock_watch: ClockWatch,
    /// The most requests queued and prepared at once.
    queue_max: usize,
    /// A pulse is queued or in the pipeline.
    pulse_queued: bool,
    /// What to send, emptied by the loop after every call that fills it.
    outbox: Outbox,
    /// This replica's index, and the cluster's size and quorums.
    replica: u8,
    replica_count: u8,
    quorums: Quorums,
    /// The view this replica is in (its primary is `view mod replica_count`), and the latest
    /// view in which its log was normal (both as the superblock holds them).
    view: u32,
    log_view: u32,
    /// Normal, or changing views.
    status: Status,
    /// The view change in progress.
    view_change: ViewChange,
    /// The log being adopted in a view change.
    target: LogTarget,
    /// The primary's count of which replicas hold each op of its pipeline durable.
    acks: Acks,
    /// The primary's knowledge of how far each replica's log reaches (its newest op known
    /// durable there, on the primary's log): it prepares no further ahead of a view-change
    /// quorum than those replicas can still catch up by repair ([`Replica::prepare_limit`]).
    progress: [u64; REPLICAS_MAX as usize],
    /// A backup's knowledge of its primary's newest op (from prepares and heartbeats): what it
    /// must repair up to.
    op_primary: u64,
    /// When the timeouts of normal operation fire next.
    deadlines: Deadlines,
    /// The cluster's time as this replica knows it, and its pings.
    clock: Clock,
    clock_sync: ClockSync,
    /// The injected bug [`InjectedBug::ClockIgnored`].
    clock_ignored: bool,
    /// Recovery found its WAL damaged (`Recovered::damaged`): the replica cannot vouch for the
    /// head of its log, which may have lost ops it acknowledged. Until it holds a view's log
    /// (from that view's `start_view`, repaired from its peers) it sends no log in a view
    /// change — no nack can come from it — and never leads one; it still votes, so that its
    /// cluster's views move on (spec §4, `recovering_head`).
    recovering_head: Option<Damage>,
    /// While recovering its head: the nonce its `request_start_view`s carry, drawn from its
    /// clocks at its first tick (0 before), which the `start_view` it adopts must echo.
    recovering_nonce: u128,
    /// Sessions' latest replies its recovery lost and peers restored (a statistic).
    replies_restored: u64,
    /// The grid scrubber (a cluster's replica).
    scrub: Scrub,
    /// The state sync in progress, if the replica is syncing (it then takes no part in the
    /// cluster until the loop opens its data file again).
    sync: Option<Sync>,
    /// The injected bug [`InjectedBug::SyncOffByOne`].
    sync_off_by_one: bool,
    /// The latest peer found formatted with other options than this replica's data file (its
    /// pings, or the checkpoint it offered a sync, say so): the loop tells the operator.
    format_mismatch: Option<u8>,
}

impl<S: Storage> Replica<S> {
    /// A replica serving `state`, in the view its superblock holds; allocates its request
    /// queue.
    pub fn new(state: ReplicaState<S>) -> Replica<S> {
        let recovered_uncommitted = (state.op() - state.commit_min()) as usize;
        assert_eq!(
            state.pool().available() + recovered_uncommitted,
            state.pool().capacity(),
            "a new replica holds no message but its pipeline's"
        );
        let superblock = *state.data_file().superblock();
        let queue_max = state.clients().sessions().len() + 1;
        let slot_count = state.data_file().journal().slot_count();
        // Every queued request, the pipeline and the copies of one outbox have their messages.
        assert!(state.pool().capacity() > queue_max + PIPELINE_PREPARE_MAX + OUTBOX_COPIES_MAX);
        let mut replica = Replica {
            queue: Vec::with_capacity(queue_max),
            clock_watch: ClockWatch::default(),
            queue_max,
            pulse_queued: false,
            outbox: Outbox::new(OUTBOX_MESSAGES_MAX),
            replica: superblock.replica,
            replica_count: superblock.replica_count,
            quorums: Quorums::of(superblock.replica_count),
            view: superblock.view,
            log_view: superblock.log_view,
            status: if superblock.view == superblock.log_view { Status::Normal } else { Status::ViewChange },
            view_change: ViewChange::new(),
            target: LogTarget::new(slot_count, superblock.cluster),
            acks: Acks::default(),
            progress: [0; REPLICAS_MAX as usize],
            op_primary: state.op(),
            deadlines: Deadlines::default(),
            clock: Clock::new(
                superblock.replica,
                superblock.replica_count,
                Quorums::of(superblock.replica_count).replication,
            ),
            clock_sync: ClockSync::default(),
            clock_ignored: false,
            recovering_head: state.recovered().damaged,
            recovering_nonce: 0,
            replies_restored: 0,
            scrub: Scrub::new(superblock.block_size as usize),
            sync: None,
            sync_off_by_one: false,
            format_mismatch: None,
            state,
        };
        assert!(replica.replica < replica.replica_count);
        if replica.replica_count > 1 && replica.status == Status::Normal && replica.is_primary() {
            // It may have sent prepares it lost in the crash: it must never prepare those ops
            // again in this view, so it leaves the view before anything else.
            replica.status = Status::ViewChange;
            replica.view_change.due = true;
        }
        if replica.recovering_head.is_some() {
            assert!(replica.replica_count > 1, "a replica alone refuses to start on a damaged WAL");
            // Not normal in any view until it adopts one's log: it asks for the start_view of
            // the view its peers run (their heartbeats name it).
            replica.status = Status::ViewChange;
        }
        // Ops recovered but not known committed: this replica holds them durable.
        for op in replica.state.commit_max() + 1..=replica.state.op() {
            let message = replica.state.pipeline_message(op).expect("a recovered op's message");
            let checksum = replica.state.pool().header(message).checksum;
            replica.acks.prepared(op, checksum);
            replica.acks.record(op, checksum, replica.replica);
        }
        if replica.state.data_file().checkpoint_damage().is_some() {
            // Its checkpoint's blocks are damaged: it fetches them (or a newer checkpoint's)
            // from its peers before anything else.
            replica.sync_begin(superblock.checkpoint.op, 0);
        }
        replica
    }

    /// Plants `bug` (the simulator's proof that its checkers bite; see [`InjectedBug`]).
    pub fn inject_bug(&mut self, bug: InjectedBug) {
        match bug {
            InjectedBug::CommitQuorumMinusOne => {
                assert!(self.quorums.replication > 1, "a quorum of one has no acknowledgement to spare");
                self.quorums.replication -= 1;
            }
            InjectedBug::ClockIgnored => self.clock_ignored = true,
            InjectedBug::NackQuorumMinusOne => {
                assert!(self.quorums.nack > 1, "a nack quorum of one has no nack to spare");
                self.quorums.nack -= 1;
            }
            InjectedBug::DamageTrusted => {
                if self.recovering_head.take().is_some()
                    && self.view == self.log_view
                    && !self.view_change.due
                {
                    self.status = Status::Normal;
                }
            }
            InjectedBug::SyncOffByOne => self.sync_off_by_one = true,
        }
    }

    /// The most requests queued at once.
    pub fn queue_max(&self) -> usize {
        self.queue_max
    }

    /// The durable core.
    pub fn state(&self) -> &ReplicaState<S> {
        &self.state
    }

    /// The durable core, mutably (to flush at a clean stop).
    pub fn state_mut(&mut self) -> &mut ReplicaState<S> {
        &mut self.state
    }

    /// Stops the replica, returning its durable core.
    pub fn into_state(self) -> ReplicaState<S> {
        self.state
    }

    /// This replica's index in the cluster.
    pub fn index(&self) -> u8 {
        self.replica
    }

    /// The view this replica is in.
    pub fn view(&self) -> u32 {
        self.view
    }

    /// The latest view in which this replica's log was normal.
    pub fn log_view(&self) -> u32 {
        self.log_view
    }

    /// The cluster's time as this replica knows it.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Normal, or changing views.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The WAL damage this replica is recovering its log from, until it holds a view's log
    /// ([`Replica`]'s `recovering_head`).
    pub fn recovering_head(&self) -> Option<Damage> {
        self.recovering_head
    }

    /// How many view changes this replica completed (entered normal status in a new view)
    /// since it started.
    pub fn view_changes(&self) -> u64 {
        self.view_change.completed
    }

    /// How many ops of chosen logs this replica truncated on a nack quorum, as a new primary,
    /// since it started.
    pub fn nack_truncations(&self) -> u64 {
        self.view_change.nacked
    }

    /// How many grid blocks the scrubber found damaged, and how many peers' copies repaired,
    /// since start.
    pub fn blocks_scrubbed(&self) -> (u64, u64) {
        (self.scrub.found, self.scrub.repaired)
    }

    /// How many sessions' latest replies, lost at recovery, peers restored since start.
    pub fn replies_restored(&self) -> u64 {
        self.replies_restored
    }

    /// True if this replica is the primary of its view and the view is normal: it takes
    /// requests and prepares them.
    pub fn is_primary(&self) -> bool {
        self.status == Status::Normal && primary_index(self.view, self.replica_count) == self.replica
    }

    /// Drops every queued request (a replica that stops being a normal primary): their
    /// clients retry with the new primary.
    fn queue_release(&mut self) {
        for queued in self.queue.drain(..) {
            let message = queued.message.expect("an unprepared request's message");
            self.state.pool_mut().release(message);
        }
        self.pulse_queued = false;
    }

    /// The latest peer found formatted with other options (WAL, grid or capacities) than this
    /// replica's data file, if any: replicas of a cluster must be formatted alike.
    pub fn format_mismatch(&self) -> Option<u8> {
        self.format_mismatch
    }

    /// True if requests wait to be prepared or ops to be committed.
    pub fn has_queued(&self) -> bool {
        self.sync.is_none() && (!self.queue.is_empty() || self.state.commit_min() < self.state.op())
    }

    /// Takes a request whose framing and checksums are valid: decides what to do with it
    /// ([`admit`]), queues it if it is to be prepared, and puts the answer due now in the
    /// outbox: its stored reply to a retry, or its eviction. The loop carries out a `Close`.
    /// A backup drops every request: only the primary orders requests, and the client
    /// retries.
    pub fn on_request(&mut self, header: &Header, body: &[u8]) -> Admission {
        assert!(self.outbox.is_empty(), "the loop empties the outbox after every call");
        if !self.is_primary() || !self.clock_accepts_requests() {
            return Admission::Drop;
        }
        // Already queued or prepared: the reply will come. (Checked first: its session has
        // not committed it yet, so admission would take it for a new request.)
        if header.client != 0
            && (self.queue.iter().any(|queued| queued.header.client == header.client)
                || self.state.pipeline_has_client(header.client))
        {
            return Admission::Drop;
        }
        let admission = admit(self.state.clients(), header, body, self.state.batch_size_limit());
        match admission {
            Admission::Prepare(_) => {
                // Room exists unless more clients than sessions are talking: this one then
                // waits for its retry.
                if self.queued() == self.queue_max {
                    return Admission::Drop;
                }
                let pool = self.state.pool_mut();
                let message = pool.acquire().expect("a message for every queued request");
                let buffer = pool.bytes_mut(&message);
                assert_eq!(header.size as usize, HEADER_SIZE + body.len());
                buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(header));
                buffer[HEADER_SIZE..HEADER_SIZE + body.len()].copy_from_slice(body);
                self.queue.push(PendingRequest { header: *header, message: Some(message) });
            }
            Admission::Reply(slot) => {
                let (clients, pool) = self.state.clients_and_pool_mut();
                let message = message_of(pool, clients.reply(slot));
                self.send(Destination::Client(header.client), Payload::Message(message));
            }
            Admission::Evict(reason) => {
                let message = eviction(self.state.pool_mut(), header, reason);
                self.send(Destination::Client(header.client), Payload::Message(message));
            }
            Admission::Drop | Admission::Close(_) => {}
        }
        admission
    }

    /// Requests queued or prepared and not yet committed.
    fn queued(&self) -> usize {
        self.queue.len() + (self.state.op() - self.state.commit_min()) as usize
    }

    fn send(&mut self, to: Destination, payload: Payload) {
        self.outbox.push(Envelope { to, payload });
    }

    /// Hands every message of the outbox to `send` (its destination and bytes, valid during
    /// the call), oldest first, and gives each pooled one back to the pool. The loop calls it
    /// after every call that may fill the outbox (`on_request`, `on_peer_message`, `on_tick`,
    /// `prepare_queued`, `stage_end`, `commit`).
    pub fn outbox_drain(&mut self, mut send: impl FnMut(Destination, &[u8])) {
        while let Some(envelope) = self.outbox.pop() {
            match envelope.payload {
                Payload::Message(message) => {
                    let pool = self.state.pool_mut();
                    let size = pool.header(&message).size as usize;
                    send(envelope.to, &pool.bytes(&message)[..size]);
                    pool.release(message);
                }
                Payload::Header(header) => {
                    assert_eq!(header.size as usize, HEADER_SIZE);
                    send(envelope.to, bytemuck::bytes_of(&header));
                }
            }
        }
    }

    /// The loop's tick: the primary queues a pulse if a pending transfer is due to expire (on
    /// the wall clock of `time`) and none is queued yet; the timeouts of normal operation fire
    /// (heartbeats, resends, repair). Returns by how much the wall clock stepped since the
    /// last tick, if beyond the tolerance (the loop tells the operator: timestamps stay
    /// monotonic, but expiry is measured on that clock). An error is fatal: a backup that
    /// fell further behind than its peers' WALs reach cannot catch up by repair.
    pub fn on_tick(&mut self, time: &impl Time) -> Result<Option<i128>, ReplicaStateError> {
        assert!(self.outbox.is_empty(), "the loop empties the outbox after every call");
        let jump = self.clock_watch.jump(time);
        if jump.is_some() {
            self.clock.stepped(time);
        }
        self.clock_tick(time);
        if self.sync.is_some() {
            self.sync_tick(time.monotonic())?;
            return Ok(jump);
        }
        if self.recovering_head.is_some() && self.recovering_nonce == 0 {
            // Unique to this run of the replica: its clocks, its index and its superblock.
            let seed = [
                u128::from(time.monotonic()),
                u128::from(time.realtime()),
                u128::from(self.replica),
                self.state.data_file().superblock().checksum,
            ];
            self.recovering_nonce = xxhash_rust::xxh3::xxh3_128(bytemuck::cast_slice(&seed)) | 1;
        }
        if self.is_primary() {
            if let Some(realtime) = self.realtime_synchronized(time) {
                self.pulse_queue(realtime);
            }
        }
        self.timeouts(time.monotonic())?;
        Ok(jump)
    }

    /// Queues a pulse if a pending transfer is due at `realtime` and none is queued yet.
    fn pulse_queue(&mut self, realtime: u64) {
        let due = self.state.state_machine().expiry_next().is_some_and(|expires_at| expires_at <= realtime);
        if !due || self.pulse_queued {
            return;
        }
        if self.queued() == self.queue_max {
            return;
        }
        let cluster = self.state.data_file().superblock().cluster;
        let pool = self.state.pool_mut();
        let message = pool.acquire().expect("a message for every queued request");
        let mut header =
            Header { operation: Operation::Pulse as u8, ..Header::new(Command::Request, cluster) };
        // The replica's own request: no client, so no request checksum to echo (context 0).
        header.set_body(&[]);
        pool.bytes_mut(&message)[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        self.queue.push(PendingRequest { header, message: Some(message) });
        self.pulse_queued = true;
    }

    /// The primary prepares the queued requests, as many as the pipeline has room for, at the
    /// wall clock of `time`, and sends each prepare to every backup. With a clock beyond the
    /// timestamp range nothing is prepared: those requests are dropped (their clients retry)
    /// and [`ReplicaStateError::ClockOutOfRange`] is returned; the replica can go on.
    pub fn prepare_queued(&mut self, time: &impl Time) -> Result<(), ReplicaStateError> {
        assert!(self.outbox.is_empty(), "the loop empties the outbox after every call");
        let room = self.prepare_limit().saturating_sub(self.state.op());
        let count = self.queue.len().min(self.state.pipeline_room()).min(room as usize);
        if count == 0 {
            return Ok(());
        }
        assert!(self.is_primary(), "only the primary queues requests");
        let Some(realtime) = self.realtime_synchronized(time) else {
            // It lost the cluster's time (an epoch expired): the requests wait, and the
            // abdication timeout runs.
            self.clock_sync.refused = true;
            return Ok(());
        };
        let op_before = self.state.op();
        match self.state.prepare(&mut self.queue[..count], realtime) {
            Ok(()) => {
                for queued in self.queue.drain(..count) {
                    assert!(queued.message.is_none(), "a prepared request's message is its prepare's");
                }
                for op in op_before + 1..=self.state.op() {
                    self.prepare_send(op);
                }
                Ok(())
            }
            Err(error) => {
                for queued in self.queue.drain(..) {
                    if queued.header.client == 0 {
                        self.pulse_queued = false;
                    }
                    let message = queued.message.expect("an unprepared request's message");
                    self.state.pool_mut().release(message);
                }
                Err(error)
            }
        }
    }

    /// Begins the next write stage of `stream` ([`ReplicaState::stage_begin`]).
    pub fn stage_begin<'a>(
        &'a mut self,
        stream: Stream,
        writes: &mut [Write<'a>],
    ) -> Result<Option<Stage>, ReplicaStateError> {
        if self.sync.is_some() {
            return Ok(None); // The data file is being replaced.
        }
        self.state.stage_begin(stream, writes)
    }

    /// Ends the write stage of `stream` in flight ([`ReplicaState::stage_end`]). The ops a
    /// journal stage made durable are acknowledged: the primary counts itself, a backup sends
    /// `prepare_ok` (the outbox then holds them).
    pub fn stage_end(&mut self, stream: Stream) {
        assert!(self.outbox.is_empty(), "the loop empties the outbox after every call");
        let durable_before = self.state.op_durable();
        self.state.stage_end(stream);
        self.durable(durable_before);
    }

    /// True if a stage of `stream` is in flight.
    pub fn stage_in_flight(&self, stream: Stream) -> bool {
        self.state.stage_in_flight(stream)
    }

    /// Commits every committed op this replica holds durable, and the primary puts each
    /// reply, and the eviction of each session a `register` replaced, in the outbox (at most
    /// two messages per op, a pipeline of ops; a backup's clients hear from the primary). An
    /// error is fatal.
    pub fn commit(&mut self) -> Result<CommitReport, ReplicaStateError> {
        assert!(self.outbox.is_empty(), "the loop empties the outbox after every call");
        let mut report = CommitReport::default();
        if self.sync.is_some() {
            return Ok(report); // Its state is about to be replaced.
        }
        let primary = self.is_primary();
        let outbox = &mut self.outbox;
        let cluster = self.state.data_file().superblock().cluster;
        let mut pulse_committed = false;
        let result = self.state.commit(|committed, reply, pool| {
            report.ops += 1;
            if let Err(ExecuteError::TableFull { table }) = committed.result {
                report.table_full += 1;
                report.table_full_last = Some(table);
            }
            pulse_committed |= committed.client == 0;
            if !primary {
                return;
            }
            if committed.client != 0 {
                let message = message_of(pool, reply);
                let to = Destination::Client(committed.client);
                outbox.push(Envelope { to, payload: Payload::Message(message) });
            }
            if let Some(client) = committed.evicted {
                let request = Header { client, ..Header::new(Command::Request, cluster) };
                let message = eviction(pool, &request, EvictionReason::NoSession);
                outbox.push(Envelope { to: Destination::Client(client), payload: Payload::Message(message) });
            }
        });
        if pulse_committed {
            self.pulse_queued = false;
        }
        result.map(|()| report)
    }

    /// Prepares and commits every queued request, a pipeline's worth per group, waiting for
    /// the disk (the composition of [`Replica::prepare_queued`], the stages of every stream
    /// carried out on the replica's storage, [`Replica::commit`] and
    /// [`Replica::outbox_drain`] into `send`), for a cluster of one (it waits for no peer).
    /// Errors as those.
    pub fn commit_queued(
        &mut self,
        time: &impl Time,
        mut send: impl FnMut(Destination, &[u8]),
    ) -> Result<CommitReport, ReplicaStateError> {
        assert_eq!(self.replica_count, 1, "commit_queued waits for no peer: a cluster of one");
        assert!(STREAMS.iter().all(|stream| !self.state.stage_in_flight(*stream)));
        let mut report = CommitReport::default();
        while !self.queue.is_empty() || self.state.commit_min() < self.state.op() {
            self.prepare_queued(time)?;
            let durable_before = self.state.op_durable();
            self.state.journal_sync()?;
            self.durable(durable_before);
            loop {
                let committed = self.commit();
                self.outbox_drain(&mut send);
                report.add(committed?);
                self.state.storage_run()?;
                if self.state.commit_min() == self.state.commit_max() {
                    break;
                }
            }
        }
        Ok(report)
    }
}

/// A pooled message holding `header`, sealed over `body`, then `body`: an answer to a peer.
/// `None` if the pool has no free message (the peer asks again).
pub(super) fn message_sealed(
    pool: &mut MessagePool,
    mut header: Header,
    body: &[u8],
) -> Option<super::message_pool::Message> {
    header.set_body(body);
    header.set_checksum();
    let message = pool.acquire()?;
    let buffer = pool.bytes_mut(&message);
    buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
    buffer[HEADER_SIZE..HEADER_SIZE + body.len()].copy_from_slice(body);
    Some(message)
}

/// A pooled message holding a copy of `bytes` (a sealed message).
pub(super) fn message_of(pool: &mut MessagePool, bytes: &[u8]) -> super::message_pool::Message {
    let message = pool.acquire().expect("a message for every message of the outbox");
    pool.bytes_mut(&message)[..bytes.len()].copy_from_slice(bytes);
    assert_eq!(pool.header(&message).size as usize, bytes.len());
    message
}

/// A pooled message holding the sealed eviction answering `request`.
fn eviction(
    pool: &mut MessagePool,
    request: &Header,
    reason: EvictionReason,
) -> super::message_pool::Message {
    let mut header = eviction_header(request, reason);
    header.set_body(&[]);
    header.set_checksum();
    message_of(pool, bytemuck::bytes_of(&header))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::{NS_PER_S, TIMESTAMP_MAX};
    use crate::multi_batch::encode_single;
    use crate::net::codec::{request_header, MessageBuffer};
    use crate::state_machine::Config;
    use crate::storage::{SimFaults, SimStorage};
    use crate::types::{Account, Transfer, TransferFlags};
    use crate::vsr::data_file::{DataFile, FormatOptions};
    use crate::vsr::header::RegisterResult;
    use crate::vsr::outbox::Destination;

    const CLUSTER: u128 = 3;

    /// A wall clock fixed at its value (the monotonic clock stands still).
    pub(super) struct Wall(pub(super) u64);

    impl Time for Wall {
        fn monotonic(&self) -> u64 {
            0
        }
        fn realtime(&self) -> u64 {
            self.0
        }
    }
    const CLIENT: u128 = 41;

    fn replica() -> Replica<SimStorage> {
        replica_of(CLUSTER, 0, 1)
    }

    /// Replica `replica` of a cluster of `replica_count`, on a fresh simulated disk.
    pub(super) fn replica_of(cluster: u128, replica: u8, replica_count: u8) -> Replica<SimStorage> {
        let options = FormatOptions {
            cluster,
            replica,
            replica_count,
            journal_slot_count: 32,
            message_size_max: 64 * 1024,
            clients_max: 2,
            block_size: 4096,
            config: Config { accounts_max: 16, transfers_max: 64, expiries_max: 16, history_max: 16 },
        };
        let storage = SimStorage::new(options.layout().file_size(), 1, SimFaults::default());
        let storage = DataFile::format(storage, &options).expect("format").into_storage();
        Replica::new(ReplicaState::open(storage, Some(cluster)).expect("open"))
    }

    /// A sealed request of `CLIENT` and its body.
    fn request<T: bytemuck::Pod>(
        session: u64,
        number: u32,
        operation: Operation,
        events: &[T],
    ) -> (Header, Vec<u8>) {
        let mut body = vec![0u8; 64 * 1024];
        let size = if operation == Operation::Register {
            0
        } else {
            body[..std::mem::size_of_val(events)].copy_from_slice(bytemuck::cast_slice(events));
            encode_single(&mut body, std::mem::size_of::<T>(), events.len())
        };
        body.truncate(size);
        let mut message = MessageBuffer::new();
        message.seal_with_body(request_header(CLUSTER, CLIENT, session, number, operation), &body);
        (bytemuck::pod_read_unaligned(&message.as_bytes()[..256]), body)
    }

    /// Commits what is queued; returns the headers of the replies to `CLIENT`, and how many
    /// other messages were sent. Every message is back in the pool afterwards.
    fn commit(replica: &mut Replica<SimStorage>, realtime: u64) -> (Vec<Header>, usize) {
        let (mut replies, mut others) = (Vec::new(), 0);
        replica
            .commit_queued(&Wall(realtime), |to, message| {
                let header: Header = bytemuck::pod_read_unaligned(&message[..256]);
                assert_eq!(header.size as usize, message.len());
                if to == Destination::Client(CLIENT) && header.command == Command::Reply as u8 {
                    replies.push(header);
                } else {
                    others += 1;
                }
            })
            .expect("commit");
        let pool = replica.state().pool();
        assert_eq!(pool.available(), pool.capacity(), "every message is back in the pool");
        (replies, others)
    }

    /// The messages in the outbox: (destination, header).
    fn sent(replica: &mut Replica<SimStorage>) -> Vec<(Destination, Header)> {
        let mut sent = Vec::new();
        replica.outbox_drain(|to, message| sent.push((to, bytemuck::pod_read_unaligned(&message[..256]))));
        sent
    }

    #[test]
    fn a_request_is_queued_committed_once_and_its_retry_answered_from_the_session() {
        let mut replica = replica();
        let (register, _) = request::<u8>(0, 0, Operation::Register, &[]);
        assert_eq!(replica.on_request(&register, &[]), Admission::Prepare(Operation::Register));
        assert_eq!(replica.on_request(&register, &[]), Admission::Drop, "already queued");
        let (replies, _) = commit(&mut replica, NS_PER_S);
        assert_eq!(replies.len(), 1);
        let session = replies[0].op;
        assert!(!replica.has_queued());
        assert_eq!(replica.on_request(&register, &[]), Admission::Reply(0), "a retried register");
        let stored: Header = bytemuck::pod_read_unaligned(&replica.state().clients().reply(0)[..256]);
        assert_eq!(stored.checksum, replies[0].checksum, "the stored reply is the one sent");
        assert_eq!(stored.size as usize, 256 + std::mem::size_of::<RegisterResult>());
        let resent = sent(&mut replica);
        assert_eq!(resent.len(), 1, "the stored reply is in the outbox");
        assert_eq!(resent[0], (Destination::Client(CLIENT), stored));

        let accounts = [Account { id: 1, ledger: 1, code: 1, ..Account::default() }];
        let (create, body) = request(session, 1, Operation::CreateAccounts, &accounts);
        assert_eq!(replica.on_request(&create, &body), Admission::Prepare(Operation::CreateAccounts));
        let (replies, _) = commit(&mut replica, 2 * NS_PER_S);
        assert_eq!(replies[0].context, create.checksum, "the reply answers the request");
        assert_eq!(
            replica.on_request(&create, &body),
            Admission::Reply(0),
            "the retry is not executed again"
        );
        assert_eq!(sent(&mut replica)[0].1.checksum, replies[0].checksum);
        assert_eq!(replica.state().state_machine().accounts().len(), 1);
    }

    #[test]
    fn evictions_go_through_the_outbox_to_the_evicted_client() {
        let mut replica = replica();
        // A request without a session is answered by an eviction, at once.
        let accounts = [Account { id: 1, ledger: 1, code: 1, ..Account::default() }];
        let (create, body) = request(7, 1, Operation::CreateAccounts, &accounts);
        assert_eq!(replica.on_request(&create, &body), Admission::Evict(EvictionReason::NoSession));
        let evicted = sent(&mut replica);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].0, Destination::Client(CLIENT));
        assert_eq!(evicted[0].1.command, Command::Eviction as u8);
        assert_eq!(evicted[0].1.status, EvictionReason::NoSession as u8);
        assert!(evicted[0].1.valid_checksum());
        // Two sessions fit (clients_max = 2): a third client's register evicts the oldest.
        for client in [CLIENT, CLIENT + 1, CLIENT + 2] {
            let (mut register, _) = request::<u8>(0, 0, Operation::Register, &[]);
            register.client = client;
            register.set_checksum();
            assert_eq!(replica.on_request(&register, &[]), Admission::Prepare(Operation::Register));
            let (replies, others) = commit(&mut replica, NS_PER_S * (1 + client as u64 - CLIENT as u64));
            let first = client == CLIENT;
            assert_eq!(
                (replies.len(), others),
                if first { (1, 0) } else { (0, 1 + usize::from(client == CLIENT + 2)) }
            );
        }
        assert!(replica.state().clients().get(CLIENT).is_none(), "the oldest session was evicted");
    }

    #[test]
    fn a_pulse_is_queued_when_a_pending_transfer_is_due_and_a_bad_clock_prepares_nothing() {
        let mut replica = replica();
        let (register, _) = request::<u8>(0, 0, Operation::Register, &[]);
        replica.on_request(&register, &[]);
        let session = commit(&mut replica, NS_PER_S).0[0].op;
        let accounts: Vec<Account> =
            (1..=2).map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect();
        let (create, body) = request(session, 1, Operation::CreateAccounts, &accounts);
        replica.on_request(&create, &body);
        commit(&mut replica, 2 * NS_PER_S);
        let pending = Transfer {
            id: 9,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 5,
            ledger: 1,
            code: 1,
            timeout: 1,
            flags: TransferFlags::PENDING,
            ..Transfer::default()
        };
        let (transfer, body) = request(session, 2, Operation::CreateTransfers, &[pending]);
        replica.on_request(&transfer, &body);
        commit(&mut replica, 3 * NS_PER_S);
        replica.on_tick(&Wall(3 * NS_PER_S)).expect("a tick");
        assert!(!replica.has_queued(), "not due yet");
        // A clock past the timestamp range: the pulse is queued, then dropped unprepared.
        replica.on_tick(&Wall(TIMESTAMP_MAX + 1)).expect("a tick");
        assert!(replica.has_queued());
        let op = replica.state().commit_min();
        let error =
            replica.commit_queued(&Wall(TIMESTAMP_MAX + 1), |_, _| panic!("nothing commits")).unwrap_err();
        assert!(matches!(error, ReplicaStateError::ClockOutOfRange { .. }));
        assert!(!replica.has_queued());
        assert_eq!(replica.state().commit_min(), op);
        // With the clock right again, the pulse expires the transfer.
        replica.on_tick(&Wall(5 * NS_PER_S)).expect("a tick");
        assert!(replica.has_queued());
        let (replies, _) = commit(&mut replica, 5 * NS_PER_S);
        assert!(replies.is_empty(), "a pulse has no client");
        assert_eq!(replica.state().commit_min(), op + 1);
        assert_eq!(replica.state().state_machine().accounts()[0].debits_pending, 0, "expired");
    }
}
