//! Normal operation of VSR (spec §2, docs/vsr.md): the primary sends every prepare to every
//! backup (star replication) while it writes it to its own WAL; a backup writes it and answers
//! `prepare_ok` once the prepare and its redundant header are durable; the primary commits an
//! op when a replication quorum (itself included) holds it and every earlier op committed, and
//! tells the backups through later prepares and a `commit` heartbeat. A backup that missed
//! prepares (lost messages, a restart) asks for them (`request_prepare`) and any replica that
//! holds one answers from its pipeline or its WAL.
//!
//! Timeouts: the primary resends a prepare to the backups that have not acknowledged it, and
//! sends its heartbeat, at fixed intervals; a backup asks again for what it lacks at a fixed
//! interval. All of them run on the monotonic clock read at each tick.

use super::view_change::Status;
use super::{Payload, Replica};
use crate::constants::{
    COMMIT_HEARTBEAT_NS, HEADER_SIZE, PIPELINE_PREPARE_MAX, PREPARE_RESEND_NS, PRIMARY_ABDICATE_NS,
    REPAIR_INTERVAL_NS, SCRUB_INTERVAL_NS, VIEW_CHANGE_RESEND_NS, VIEW_CHANGE_TIMEOUT_NS,
};
use crate::storage::Storage;
use crate::vsr::header::{Command, Header};
use crate::vsr::outbox::Destination;
use crate::vsr::quorums::primary_index;
use crate::vsr::replica_state::ReplicaStateError;
use crate::vsr::time::Time;

/// What a replica made of a message from another replica.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerMessage {
    /// It changed what the replica knows or answered it.
    Handled,
    /// It was of no use now (stale, a duplicate, ahead of a gap, or malformed): why.
    Ignored(&'static str),
}

/// The primary's record of which replicas hold each op of its pipeline durable, at
/// `op mod PIPELINE_PREPARE_MAX` (the pipeline never holds more ops).
#[derive(Clone, Copy, Debug, Default)]
pub struct Acks {
    slots: [AckSlot; PIPELINE_PREPARE_MAX],
}

#[derive(Clone, Copy, Debug, Default)]
struct AckSlot {
    op: u64,
    /// The prepare's checksum: an acknowledgement of another prepare of the op counts not.
    checksum: u128,
    /// One bit per replica.
    replicas: u8,
}

impl Acks {
    /// Starts counting the acknowledgements of `op`, whose prepare has `checksum`.
    pub fn prepared(&mut self, op: u64, checksum: u128) {
        self.slots[op as usize % PIPELINE_PREPARE_MAX] = AckSlot { op, checksum, replicas: 0 };
    }

    /// Records that `replica` holds `op` (prepare `checksum`) durable; false if the op is not
    /// being counted or the checksum is another prepare's.
    pub fn record(&mut self, op: u64, checksum: u128, replica: u8) -> bool {
        let slot = &mut self.slots[op as usize % PIPELINE_PREPARE_MAX];
        if slot.op != op || slot.checksum != checksum {
            return false;
        }
        slot.replicas |= 1 << replica;
        true
    }

    /// True if `replica` holds `op` durable.
    pub fn holds(&self, op: u64, replica: u8) -> bool {
        let slot = &self.slots[op as usize % PIPELINE_PREPARE_MAX];
        slot.op == op && slot.replicas & (1 << replica) != 0
    }

    /// How many replicas hold `op` durable.
    pub fn count(&self, op: u64) -> u8 {
        let slot = &self.slots[op as usize % PIPELINE_PREPARE_MAX];
        if slot.op == op {
            slot.replicas.count_ones() as u8
        } else {
            0
        }
    }
}

/// When each timeout fires next, on the monotonic clock (0: at the next tick, or for the
/// timeouts that give up on a peer, not yet set).
#[derive(Clone, Copy, Debug, Default)]
pub struct Deadlines {
    heartbeat: u64,
    resend: u64,
    repair: u64,
    /// A backup gives up on its primary (starts a view change) if it hears nothing by then.
    primary: u64,
    /// The backup heard its primary since the last tick.
    primary_heard: bool,
    /// The primary abdicates if `commit_max` is still `abdicate_commit` by then, with ops
    /// uncommitted.
    abdicate: u64,
    abdicate_commit: u64,
    /// When a replica asks again for the `start_view` of a newer view it saw.
    start_view: u64,
    /// When the scrubber takes its next step.
    scrub: u64,
    /// When a replica asks a peer again for a session's reply its recovery lost, and how many
    /// times it asked (which peer is next).
    reply_repair: u64,
    reply_repair_round: u64,
}

impl<S: Storage> Replica<S> {
    /// The primary of the replica's view.
    pub(super) fn primary(&self) -> u8 {
        primary_index(self.view, self.replica_count)
    }

    /// A sealed header-only message of `command` from this replica, in its view.
    pub(super) fn header(&self, command: Command, op: u64, commit: u64, context: u128) -> Header {
        let cluster = self.state.data_file().superblock().cluster;
        let mut header = Header {
            op,
            commit,
            context,
            view: self.view,
            replica: self.replica,
            ..Header::new(command, cluster)
        };
        header.set_body(&[]);
        header.set_checksum();
        header
    }

    /// The primary starts counting the acknowledgements of its new `op`, and sends the prepare
    /// to every backup: a reference to the pipeline's message each, no copy.
    pub(super) fn prepare_send(&mut self, op: u64) {
        let message = self.state.pipeline_message(op).expect("a prepared op's message");
        let checksum = self.state.pool().header(message).checksum;
        self.acks.prepared(op, checksum);
        for backup in peers(self.replica, self.replica_count) {
            self.prepare_reference_send(op, Destination::Replica(backup));
        }
    }

    /// Sends `op`'s prepare, from the pipeline, to `to`.
    fn prepare_reference_send(&mut self, op: u64, to: Destination) {
        let message = self.state.pipeline_reference(op).expect("a prepared op's message");
        self.send(to, Payload::Message(message));
    }

    /// Acknowledges the ops that became durable here since `durable_before`: the primary
    /// counts itself (and may commit), a backup sends `prepare_ok` to its primary.
    pub(super) fn durable(&mut self, durable_before: u64) {
        if self.status != Status::Normal {
            // A log being adopted may be complete now: the next tick looks.
            self.view_change.check = true;
            return;
        }
        let durable = self.state.op_durable();
        for op in durable_before + 1..=durable {
            let Some(message) = self.state.pipeline_message(op) else { continue };
            let checksum = self.state.pool().header(message).checksum;
            if self.is_primary() {
                self.acks.record(op, checksum, self.replica);
            } else {
                let prepare_ok = self.header(Command::PrepareOk, op, 0, checksum);
                self.send(Destination::Replica(self.primary()), Payload::Header(prepare_ok));
            }
        }
        if self.is_primary() {
            self.commit_max_advance();
        }
    }

    /// The newest op the primary may prepare: half a WAL past the log of the replica a
    /// view-change quorum reaches (the `view_change`-th furthest, itself included). Without
    /// state sync, a replica further behind than a WAL can never catch up; were a primary with
    /// a replication quorum smaller than a view-change quorum (4 or 6 replicas) to leave that
    /// many behind, the cluster could never change views again. With 1, 2, 3 or 5 replicas the
    /// quorums are equal and a commit already keeps them this close.
    pub(super) fn prepare_limit(&self) -> u64 {
        if self.quorums.view_change <= self.quorums.replication {
            return u64::MAX;
        }
        let mut progress = self.progress;
        progress[self.replica as usize] = self.state.op();
        let progress = &mut progress[..self.replica_count as usize];
        progress.sort_unstable_by(|a, b| b.cmp(a));
        let reach = progress[self.quorums.view_change as usize - 1];
        reach + self.state.data_file().journal().slot_count() / 2
    }

    /// The primary raises `commit_max` over every op, in order, that a replication quorum
    /// holds durable, itself included (it executes only what its own WAL holds).
    pub(super) fn commit_max_advance(&mut self) {
        let mut commit = self.state.commit_max();
        while commit < self.state.op()
            && self.acks.holds(commit + 1, self.replica)
            && self.acks.count(commit + 1) >= self.quorums.replication
        {
            commit += 1;
        }
        self.state.commit_max_raise(commit);
    }

    /// The timeouts due at `now` (monotonic ns).
    pub(super) fn timeouts(&mut self, now: u64) -> Result<(), ReplicaStateError> {
        if self.replica_count == 1 {
            return Ok(());
        }
        if self.view_change.due {
            let view = self.view;
            self.view_change.due = false;
            self.view_change_start(view + 1)?;
            // Not yet if a checkpoint is writing the superblock: at the next tick.
            self.view_change.due = self.view == view;
            return Ok(());
        }
        if now >= self.deadlines.start_view {
            self.deadlines.start_view = now + VIEW_CHANGE_RESEND_NS;
            self.start_view_request();
        }
        if now >= self.deadlines.reply_repair {
            self.deadlines.reply_repair = now + REPAIR_INTERVAL_NS;
            self.reply_repair_request();
        }
        if now >= self.deadlines.scrub {
            self.deadlines.scrub = now + SCRUB_INTERVAL_NS;
            self.scrub_step()?;
        }
        match self.status {
            Status::ViewChange => self.view_change_timeouts(now),
            Status::Normal if self.is_primary() => self.primary_timeouts(now),
            Status::Normal => self.backup_timeouts(now),
        }
    }

    /// The primary's heartbeat and resends; it abdicates if it cannot commit.
    fn primary_timeouts(&mut self, now: u64) -> Result<(), ReplicaStateError> {
        if self.clock_abdicates(now) {
            return self.view_change_start(self.view + 1);
        }
        let commit_max = self.state.commit_max();
        let unset = self.deadlines.abdicate == 0;
        if unset || self.state.op() == commit_max || commit_max != self.deadlines.abdicate_commit {
            self.deadlines.abdicate_commit = commit_max;
            self.deadlines.abdicate = now + PRIMARY_ABDICATE_NS;
        } else if now >= self.deadlines.abdicate {
            // Its backups may hear it (so they never time out) while it does not hear them.
            return self.view_change_start(self.view + 1);
        }
        if now >= self.deadlines.heartbeat {
            self.deadlines.heartbeat = now + COMMIT_HEARTBEAT_NS;
            let heartbeat = self.header(Command::Commit, self.state.op(), self.state.commit_max(), 0);
            for backup in peers(self.replica, self.replica_count) {
                self.send(Destination::Replica(backup), Payload::Header(heartbeat));
            }
        }
        if now >= self.deadlines.resend {
            self.deadlines.resend = now + PREPARE_RESEND_NS;
            for op in self.state.commit_max() + 1..=self.state.op() {
                for backup in peers(self.replica, self.replica_count) {
                    if !self.acks.holds(op, backup) {
                        self.prepare_reference_send(op, Destination::Replica(backup));
                    }
                }
            }
        }
        Ok(())
    }

    /// A backup gives up on a silent primary, and repairs what it lacks.
    fn backup_timeouts(&mut self, now: u64) -> Result<(), ReplicaStateError> {
        if self.deadlines.primary_heard || self.deadlines.primary == 0 {
            self.deadlines.primary_heard = false;
            self.deadlines.primary = now + self.view_change_timeout(VIEW_CHANGE_TIMEOUT_NS);
        } else if now >= self.deadlines.primary {
            return self.view_change_start(self.view + 1);
        }
        let slot_count = self.state.data_file().journal().slot_count();
        if self.state.op() + 1 + slot_count <= self.op_primary {
            // The primary has reused the WAL slot of the next op this replica lacks, and so has
            // every replica as far along: no peer can repair it. A newer checkpoint can.
            self.sync_begin(self.state.commit_min() + 1, now);
            return Ok(());
        }
        if now >= self.deadlines.repair {
            self.deadlines.repair = now + REPAIR_INTERVAL_NS;
            let target = self.state.commit_max().max(self.op_primary);
            let last = target.min(self.state.commit_min() + self.state.pipeline_max() as u64);
            // The primary holds its WAL's worth of ops, unless it synced past some (its WAL
            // does not hold those its installed checkpoint covers): every other round asks
            // another peer.
            let round = now / REPAIR_INTERVAL_NS;
            for op in self.state.op() + 1..=last {
                let to = if round.is_multiple_of(2) {
                    self.primary()
                } else {
                    let index = (round / 2 + op) as usize % (usize::from(self.replica_count) - 1);
                    peers(self.replica, self.replica_count)
                        .nth(index)
                        .expect("a peer of a cluster of two or more")
                };
                let request = self.header(Command::RequestPrepare, op, 0, 0);
                self.send(Destination::Replica(to), Payload::Header(request));
            }
        }
        Ok(())
    }

    /// Takes a message of another replica whose framing and checksums are valid, and puts
    /// what it answers in the outbox. Nothing a peer sends can stop a healthy replica: what
    /// does not fit is ignored (and said why). An error is fatal (a WAL read failed).
    /// `time` is read for a clock sample (`pong`) and to answer a `ping`.
    pub fn on_peer_message(
        &mut self,
        header: &Header,
        body: &[u8],
        time: &impl Time,
    ) -> Result<PeerMessage, ReplicaStateError> {
        assert!(self.outbox.is_empty(), "the loop empties the outbox after every call");
        assert_eq!(header.size as usize, HEADER_SIZE + body.len());
        if header.replica >= self.replica_count {
            return Ok(PeerMessage::Ignored("from a replica index beyond the cluster"));
        }
        let command = header.command();
        let with_body = matches!(
            command,
            Some(
                Command::Prepare
                    | Command::DoViewChange
                    | Command::StartView
                    | Command::Headers
                    | Command::Reply
                    | Command::Block
                    | Command::SyncCheckpoint
            )
        );
        if !with_body && !body.is_empty() {
            return Ok(PeerMessage::Ignored("a body on a header-only message"));
        }
        // A prepare names the replica that prepared it, which a repair may bring back; a reply
        // names no replica (it is the same on every one).
        if !matches!(command, Some(Command::Prepare | Command::Reply)) && header.replica == self.replica {
            return Ok(PeerMessage::Ignored("from this replica's own index"));
        }
        match command {
            // Clocks are sampled whatever the views and statuses.
            Some(Command::Ping) => return Ok(self.on_ping(header, time)),
            Some(Command::Pong) => return Ok(self.on_pong(header, time)),
            _ => {}
        }
        if self.sync.is_some() {
            let now = time.monotonic();
            return match command {
                Some(Command::SyncCheckpoint) => Ok(self.on_sync_checkpoint(header, body, now)),
                Some(Command::Block) => self.sync_on_block(header, body, now),
                _ => Ok(PeerMessage::Ignored("syncing its state: it takes no part until it is done")),
            };
        }
        if self.view_change.due {
            return Ok(PeerMessage::Ignored("restarted as its view's primary: leaving the view first"));
        }
        Ok(match command {
            Some(Command::Prepare) => self.on_prepare(header, body),
            Some(Command::PrepareOk) if header.view != self.view => PeerMessage::Ignored("of another view"),
            Some(Command::PrepareOk) => self.on_prepare_ok(header),
            Some(Command::Commit) => self.on_commit(header),
            Some(Command::RequestPrepare) => self.on_request_prepare(header)?,
            Some(Command::StartViewChange) => self.on_start_view_change(header)?,
            Some(Command::DoViewChange) => self.on_do_view_change(header, body)?,
            Some(Command::StartView) => self.on_start_view(header, body)?,
            Some(Command::RequestStartView) => self.on_request_start_view(header),
            Some(Command::RequestHeaders) => self.on_request_headers(header),
            Some(Command::Headers) => self.on_headers(body)?,
            Some(Command::RequestReply) => self.on_request_reply(header),
            Some(Command::Reply) => self.on_reply_restore(header, body),
            Some(Command::RequestBlock) => self.on_request_block(header)?,
            Some(Command::Block) => self.on_block(header, body)?,
            Some(Command::RequestSyncCheckpoint) => self.on_request_sync_checkpoint(header),
            Some(Command::SyncCheckpoint) => PeerMessage::Ignored("not syncing"),
            _ => PeerMessage::Ignored("not a replica-to-replica command"),
        })
    }

    /// Asks one peer (another at each round) for the first session's latest reply that this
    /// replica's recovery lost, by its checksum. A peer that has moved the session on holds a
    /// newer reply instead: then this replica gets the newer one when it executes that op.
    fn reply_repair_request(&mut self) {
        let clients = self.state.clients();
        let Some(slot) = clients.reply_lost_first() else { return };
        let session = clients.sessions()[slot];
        self.deadlines.reply_repair_round += 1;
        let round = self.deadlines.reply_repair_round as usize % (usize::from(self.replica_count) - 1);
        let peer =
            peers(self.replica, self.replica_count).nth(round).expect("a peer of a cluster of two or more");
        let mut request = self.header(Command::RequestReply, session.op, 0, session.reply_checksum);
        request.client = session.client;
        request.set_checksum();
        self.send(Destination::Replica(peer), Payload::Header(request));
    }

    /// Any replica answers a peer's request for a session's latest reply, if it holds that
    /// very reply (the same on every replica: its header names no replica or view of its own).
    fn on_request_reply(&mut self, header: &Header) -> PeerMessage {
        let clients = self.state.clients();
        let Some((slot, session)) = clients.get(header.client) else {
            return PeerMessage::Ignored("a reply of a session this replica does not hold");
        };
        if session.reply_checksum != header.context || clients.reply_lost(slot) {
            return PeerMessage::Ignored("a reply this replica does not hold");
        }
        let (clients, pool) = self.state.clients_and_pool_mut();
        let message = super::message_of(pool, clients.reply(slot));
        self.send(Destination::Replica(header.replica), Payload::Message(message));
        PeerMessage::Handled
    }

    /// A replica takes a peer's copy of a session's latest reply that its recovery lost.
    fn on_reply_restore(&mut self, header: &Header, body: &[u8]) -> PeerMessage {
        // Checked whole against the session's reply checksum (`ClientTable::reply_restore`).
        if self.state.reply_restore(header.client, header, body) {
            self.replies_restored += 1;
            PeerMessage::Handled
        } else {
            PeerMessage::Ignored("a reply this replica did not lose, or another one")
        }
    }

    /// A message of a newer view than this replica's: it asks that view's primary for its
    /// `start_view` (at the next tick).
    fn view_newer(&mut self, view: u32) -> PeerMessage {
        self.view_change.view_wanted = self.view_change.view_wanted.max(view);
        PeerMessage::Ignored("of a newer view")
    }

    /// A replica takes the next prepare of the log it follows into its pipeline, to be written
    /// by the next journal stage: in normal status a backup takes its primary's prepares (sent
    /// by the primary, or by any replica answering a repair request); in a view change, the
    /// prepares of the log it adopts. It acknowledges a duplicate it already holds durable
    /// again (the primary resends what it has no acknowledgement for).
    fn on_prepare(&mut self, header: &Header, body: &[u8]) -> PeerMessage {
        if header.view > self.view {
            return self.view_newer(header.view);
        }
        let normal = self.status == Status::Normal;
        if normal && self.is_primary() {
            return PeerMessage::Ignored("a primary takes no prepares of its own view");
        }
        let from_primary = header.view == self.view && header.replica == self.primary();
        if normal && !from_primary {
            return PeerMessage::Ignored("a prepare not made by the view's primary");
        }
        if normal {
            self.deadlines.primary_heard = true;
            // The primary had committed this far when it prepared the op.
            self.state.commit_max_raise(header.commit.min(header.op));
            self.op_primary = self.op_primary.max(header.op);
        }
        let op = header.op;
        if op <= self.state.op() {
            let Some(held) = self.state.header_of(op) else {
                return PeerMessage::Ignored("an op already committed here");
            };
            if held.checksum != header.checksum {
                return PeerMessage::Ignored("another prepare of an op held here");
            }
            if op > self.state.op_durable() {
                return PeerMessage::Ignored("a duplicate of an op not yet durable here");
            }
            if !normal || op <= self.state.commit_min() {
                return PeerMessage::Ignored("a duplicate of an op held here");
            }
            let prepare_ok = self.header(Command::PrepareOk, op, 0, header.checksum);
            self.send(Destination::Replica(self.primary()), Payload::Header(prepare_ok));
            return PeerMessage::Handled;
        }
        if !normal && !self.adopt_accepts(header) {
            return PeerMessage::Ignored("not a prepare of the log being adopted");
        }
        if op > self.state.op() + 1 {
            // Ops are missing before it: ask for them at the next tick.
            self.deadlines.repair = 0;
            return PeerMessage::Ignored("a gap before it");
        }
        if !self.state.prepare_fits(header, body) {
            return PeerMessage::Ignored("it does not fit the log or the pipeline now");
        }
        if !normal {
            // Its primary had committed this far in the log it chains to, the adopted one.
            self.state.commit_max_raise(header.commit.min(header.op));
            self.view_change.progressed();
        }
        let pool = self.state.pool_mut();
        let Some(message) = pool.acquire() else { return PeerMessage::Ignored("no free message") };
        let buffer = pool.bytes_mut(&message);
        buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(header));
        buffer[HEADER_SIZE..HEADER_SIZE + body.len()].copy_from_slice(body);
        self.state.prepare_accept(message);
        PeerMessage::Handled
    }

    /// The primary counts a backup's acknowledgement, and commits what a quorum now holds.
    fn on_prepare_ok(&mut self, header: &Header) -> PeerMessage {
        if !self.is_primary() {
            return PeerMessage::Ignored("a backup counts no acknowledgements");
        }
        if self.state.header_of(header.op).is_some_and(|held| held.checksum == header.context) {
            let progress = &mut self.progress[header.replica as usize];
            *progress = (*progress).max(header.op);
        }
        if header.op <= self.state.commit_max() || header.op > self.state.op() {
            return PeerMessage::Ignored("an op not in the pipeline");
        }
        if !self.acks.record(header.op, header.context, header.replica) {
            return PeerMessage::Ignored("an acknowledgement of another prepare");
        }
        self.commit_max_advance();
        PeerMessage::Handled
    }

    /// A backup learns its primary's commit point and newest op.
    fn on_commit(&mut self, header: &Header) -> PeerMessage {
        if header.view > self.view {
            return self.view_newer(header.view);
        }
        if header.view < self.view {
            return PeerMessage::Ignored("of another view");
        }
        if header.replica != self.primary() || self.is_primary() {
            return PeerMessage::Ignored("a heartbeat not from the view's primary");
        }
        if self.status != Status::Normal {
            if self.view_change.adopting() {
                // The view's primary is alive while this replica catches up with its log.
                self.view_change.primary_heard = true;
                self.view_change.commit_max_learn(header.commit.min(header.op));
                return PeerMessage::Handled;
            }
            // The view started without this replica hearing it: it asks for the start_view.
            return self.view_newer(header.view);
        }
        self.deadlines.primary_heard = true;
        self.state.commit_max_raise(header.commit.min(header.op));
        self.op_primary = self.op_primary.max(header.op);
        // It tells the primary how far its log reaches (the primary's prepare limit): its
        // newest durable op, acknowledged again.
        let durable = self.state.op_durable();
        if let Some(held) = self.state.header_of(durable) {
            let prepare_ok = self.header(Command::PrepareOk, durable, 0, held.checksum);
            self.send(Destination::Replica(self.primary()), Payload::Header(prepare_ok));
        }
        PeerMessage::Handled
    }

    /// Any replica answers a peer's request for a prepare it holds: from its pipeline, or read
    /// back from its WAL.
    fn on_request_prepare(&mut self, header: &Header) -> Result<PeerMessage, ReplicaStateError> {
        let to = Destination::Replica(header.replica);
        let op = header.op;
        if let Some(message) = self.state.pipeline_message(op) {
            let checksum = self.state.pool().header(message).checksum;
            if header.context != 0 && header.context != checksum {
                return Ok(PeerMessage::Ignored("a request for another prepare of the op"));
            }
            self.prepare_reference_send(op, to);
            return Ok(PeerMessage::Handled);
        }
        let Some(message) = self.state.prepare_read(op)? else {
            return Ok(PeerMessage::Ignored("an op this replica does not hold"));
        };
        let checksum = self.state.pool().header(&message).checksum;
        if header.context != 0 && header.context != checksum {
            self.state.pool_mut().release(message);
            return Ok(PeerMessage::Ignored("a request for another prepare of the op"));
        }
        self.send(to, Payload::Message(message));
        Ok(PeerMessage::Handled)
    }
}

/// The replicas of a cluster of `replica_count` other than `replica`, in index order.
pub(super) fn peers(replica: u8, replica_count: u8) -> impl Iterator<Item = u8> {
    (0..replica_count).filter(move |index| *index != replica)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::NS_PER_S;
    use crate::net::codec::{request_header, MessageBuffer};
    use crate::operation::Operation;
    use crate::storage::SimStorage;
    use crate::vsr::admission::Admission;
    use crate::vsr::time::Time;

    use super::tests_support::CLUSTER;
    const CLIENT: u128 = 77;

    /// A change to a header, for a message that is resealed after it.
    type Change = dyn Fn(&mut Header);

    struct Clock {
        monotonic: u64,
    }

    impl Time for Clock {
        fn monotonic(&self) -> u64 {
            self.monotonic
        }
        fn realtime(&self) -> u64 {
            NS_PER_S + self.monotonic
        }
    }

    fn cluster(replica_count: u8) -> Vec<Replica<SimStorage>> {
        super::tests_support::cluster_of(replica_count)
    }

    /// Makes what replica `replica` has in its pipeline durable, as a journal stage would.
    fn journal(replica: &mut Replica<SimStorage>) {
        let before = replica.state.op_durable();
        replica.state.journal_sync().expect("journal");
        replica.durable(before);
    }

    /// The outbox of `replica`: (destination, message).
    fn sent(replica: &mut Replica<SimStorage>) -> Vec<(Destination, Vec<u8>)> {
        let mut sent = Vec::new();
        replica.outbox_drain(|to, message| sent.push((to, message.to_vec())));
        sent
    }

    fn header_of(message: &[u8]) -> Header {
        bytemuck::pod_read_unaligned(&message[..HEADER_SIZE])
    }

    /// Hands `message` to `replica` as a peer's.
    fn deliver(replica: &mut Replica<SimStorage>, message: &[u8]) -> PeerMessage {
        let header = header_of(message);
        assert!(header.valid_checksum() && header.valid_checksum_body(&message[HEADER_SIZE..]));
        replica
            .on_peer_message(&header, &message[HEADER_SIZE..], &Clock { monotonic: 0 })
            .expect("no storage error")
    }

    fn register(replica: &mut Replica<SimStorage>) {
        let mut message = MessageBuffer::new();
        message.seal_with_body(request_header(CLUSTER, CLIENT, 0, 0, Operation::Register), &[]);
        let header = header_of(message.as_bytes());
        assert_eq!(replica.on_request(&header, &[]), Admission::Prepare(Operation::Register));
    }

    #[test]
    fn an_op_commits_on_a_replication_quorum_and_a_backup_commits_what_the_primary_tells_it() {
        let mut replicas = cluster(3);
        assert!(replicas[0].is_primary() && !replicas[1].is_primary());
        register(&mut replicas[0]);
        replicas[0].prepare_queued(&Clock { monotonic: 0 }).expect("prepare");
        let prepares = sent(&mut replicas[0]);
        let to: Vec<Destination> = prepares.iter().map(|(to, _)| *to).collect();
        assert_eq!(to, [Destination::Replica(1), Destination::Replica(2)], "star replication");
        let prepare = prepares[0].1.clone();
        assert_eq!(header_of(&prepare).command(), Some(Command::Prepare));
        // Durable on the primary alone: one of the quorum of two.
        journal(&mut replicas[0]);
        assert_eq!((replicas[0].state.op_durable(), replicas[0].state.commit_max()), (1, 0));
        // A backup takes the prepare and acknowledges it once durable, not before.
        assert_eq!(deliver(&mut replicas[1], &prepare), PeerMessage::Handled);
        assert!(sent(&mut replicas[1]).is_empty(), "no prepare_ok before the prepare is durable");
        journal(&mut replicas[1]);
        let ok = sent(&mut replicas[1]);
        assert_eq!(ok.len(), 1);
        assert_eq!(ok[0].0, Destination::Replica(0));
        assert_eq!(header_of(&ok[0].1).command(), Some(Command::PrepareOk));
        assert_eq!(header_of(&ok[0].1).context, header_of(&prepare).checksum);
        assert_eq!(replicas[1].commit().expect("commit").ops, 0, "not known committed yet");
        // The quorum: the primary commits and answers the client.
        assert_eq!(deliver(&mut replicas[0], &ok[0].1), PeerMessage::Handled);
        assert_eq!(deliver(&mut replicas[0], &ok[0].1), PeerMessage::Ignored("an op not in the pipeline"));
        assert_eq!(replicas[0].state.commit_max(), 1);
        assert_eq!(replicas[0].commit().expect("commit").ops, 1);
        let replies = sent(&mut replicas[0]);
        assert_eq!(replies.len(), 1);
        assert_eq!(replies[0].0, Destination::Client(CLIENT));
        // The heartbeat tells the backup; it commits, and says nothing to the client.
        replicas[0].on_tick(&Clock { monotonic: 1 }).expect("tick");
        let heartbeats = sent(&mut replicas[0]);
        let heartbeat = &heartbeats
            .iter()
            .find(|(to, message)| {
                *to == Destination::Replica(1) && header_of(message).command() == Some(Command::Commit)
            })
            .expect("a heartbeat")
            .1;
        assert_eq!(header_of(heartbeat).command(), Some(Command::Commit));
        assert_eq!(deliver(&mut replicas[1], heartbeat), PeerMessage::Handled);
        // It answers with how far its log reaches: its newest durable op, acknowledged again.
        let reach = sent(&mut replicas[1]);
        assert_eq!(reach.len(), 1);
        assert_eq!(
            (header_of(&reach[0].1).command(), header_of(&reach[0].1).op),
            (Some(Command::PrepareOk), 1)
        );
        assert_eq!(replicas[1].commit().expect("commit").ops, 1);
        assert!(sent(&mut replicas[1]).is_empty(), "a backup sends no reply");
        assert_eq!(replicas[1].state.state_machine().accounts().len(), 0);
        assert_eq!(replicas[1].state.clients().get(CLIENT).map(|(_, session)| session.session), Some(1));

        // Replica 2 never got the prepare: the heartbeat tells it what it lacks, it asks, and
        // the primary answers from its WAL (the op left its pipeline when it committed).
        assert_eq!(deliver(&mut replicas[2], heartbeat), PeerMessage::Handled);
        assert!(sent(&mut replicas[2]).is_empty(), "no op durable to acknowledge");
        replicas[2].on_tick(&Clock { monotonic: 1 }).expect("tick");
        let mut requests = sent(&mut replicas[2]);
        // Its clock pings every peer at its first tick, besides.
        requests.retain(|(_, message)| header_of(message).command() != Some(Command::Ping));
        assert_eq!(requests.len(), 1);
        assert_eq!(header_of(&requests[0].1).command(), Some(Command::RequestPrepare));
        assert!(replicas[0].state.pipeline_message(1).is_none());
        assert_eq!(deliver(&mut replicas[0], &requests[0].1), PeerMessage::Handled);
        let repaired = sent(&mut replicas[0]);
        assert_eq!(repaired.len(), 1);
        assert_eq!(repaired[0].0, Destination::Replica(2));
        assert_eq!(repaired[0].1, prepare, "the very prepare, read back from the WAL");
        assert_eq!(deliver(&mut replicas[2], &repaired[0].1), PeerMessage::Handled);
        journal(&mut replicas[2]);
        sent(&mut replicas[2]);
        assert_eq!(replicas[2].commit().expect("commit").ops, 1);
        let pool = replicas[0].state.pool();
        assert_eq!(pool.available(), pool.capacity(), "every message is back in the primary's pool");
    }

    #[test]
    fn what_does_not_fit_is_ignored_and_a_duplicate_prepare_is_acknowledged_again() {
        let mut replicas = cluster(3);
        register(&mut replicas[0]);
        replicas[0].prepare_queued(&Clock { monotonic: 0 }).expect("prepare");
        let prepare = sent(&mut replicas[0])[0].1.clone();
        let reseal = |message: &[u8], change: &Change| {
            let mut header = header_of(message);
            change(&mut header);
            header.set_checksum();
            let mut bytes = message.to_vec();
            bytes[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
            bytes
        };
        let cases: [(&Change, &str); 4] = [
            (&|header| header.replica = 3, "from a replica index beyond the cluster"),
            (&|header| header.view = 1, "of a newer view"),
            (&|header| header.replica = 2, "a prepare not made by the view's primary"),
            (&|header| header.op = 3, "a gap before it"),
        ];
        for (change, reason) in cases {
            assert_eq!(deliver(&mut replicas[1], &reseal(&prepare, change)), PeerMessage::Ignored(reason));
        }
        // A prepare that does not chain to the head.
        let unchained = reseal(&prepare, &|header| header.parent ^= 1);
        assert_eq!(
            deliver(&mut replicas[1], &unchained),
            PeerMessage::Ignored("it does not fit the log or the pipeline now")
        );
        assert_eq!(
            deliver(&mut replicas[0], &prepare),
            PeerMessage::Ignored("a primary takes no prepares of its own view")
        );
        assert_eq!(deliver(&mut replicas[1], &prepare), PeerMessage::Handled);
        assert_eq!(
            deliver(&mut replicas[1], &prepare),
            PeerMessage::Ignored("a duplicate of an op not yet durable here")
        );
        journal(&mut replicas[1]);
        let ok = sent(&mut replicas[1]);
        // The primary's resend: acknowledged again.
        assert_eq!(deliver(&mut replicas[1], &prepare), PeerMessage::Handled);
        assert_eq!(sent(&mut replicas[1]), ok);
        // An acknowledgement of another prepare of the op does not count.
        let forged = reseal(&ok[0].1, &|header| header.context ^= 1);
        assert_eq!(
            deliver(&mut replicas[0], &forged),
            PeerMessage::Ignored("an acknowledgement of another prepare")
        );
        journal(&mut replicas[0]);
        assert_eq!(replicas[0].state.commit_max(), 0, "the primary alone is no quorum of three");
        assert_eq!(deliver(&mut replicas[0], &ok[0].1), PeerMessage::Handled);
        assert_eq!(replicas[0].state.commit_max(), 1);
    }
}

/// What the tests of this file share.
#[cfg(test)]
mod tests_support {
    use super::super::view_change::Status;
    use super::super::Replica;
    use crate::storage::SimStorage;

    /// The cluster of the tests.
    pub const CLUSTER: u128 = 9;

    /// A cluster of fresh replicas in view 0, normal (as if the primary had started it, not
    /// restarted into it: a restarted primary leaves its view first).
    pub fn cluster_of(replica_count: u8) -> Vec<Replica<SimStorage>> {
        (0..replica_count)
            .map(|replica| {
                let mut replica = super::super::tests::replica_of(CLUSTER, replica, replica_count);
                replica.status = Status::Normal;
                replica.view_change.due = false;
                replica.clock.assume_synchronized(&super::super::tests::Wall(0));
                replica
            })
            .collect()
    }
}

#[cfg(test)]
mod prepare_limit_tests {
    use super::tests_support::cluster_of;

    #[test]
    fn a_primary_of_four_prepares_no_further_than_half_a_wal_past_a_view_change_quorum() {
        // 4 replicas: a replication quorum of 2, a view-change quorum of 3; a WAL of 32 slots.
        let mut replicas = cluster_of(4);
        let primary = &mut replicas[0];
        assert_eq!(primary.prepare_limit(), 16, "no backup known: half a WAL past op 0");
        primary.progress[1] = 10;
        assert_eq!(primary.prepare_limit(), 16, "one backup is no view-change quorum");
        primary.progress[2] = 5;
        assert_eq!(primary.prepare_limit(), 16, "the third furthest log is the primary's own, op 0");
        primary.progress[3] = 7;
        assert_eq!(primary.prepare_limit(), 16 + 5, "the third furthest log now ends at op 5");
        // 3 replicas: the quorums are equal, and commits already keep a view-change quorum close.
        assert_eq!(cluster_of(3)[0].prepare_limit(), u64::MAX);
    }
}
