//! The view change of VSR (spec §3, docs/vsr.md): when a backup hears nothing from its
//! primary for a while (or the primary cannot commit), replicas vote to leave the view
//! (`start_view_change`); with a view-change quorum of votes each sends its log to the primary
//! of the new view (`do_view_change`: log view, head, commit point, its newest headers); the new
//! primary, with a view-change quorum of logs (its own included), takes the one of the highest
//! log view and, on a tie, the longest, repairs what it lacks of it, and starts the view
//! (`start_view`) once it holds all of it durable; the backups adopt that log the same way.
//!
//! What is persisted when: `view` reaches the superblock before a replica sends anything in the
//! new view; `log_view` (with the head of the adopted log) only once the replica holds that
//! whole log durable, so a log of log view `v` is always complete, never missing an op its
//! headers name, and recovery cuts every op after that head that was not prepared in `v`.
//!
//! Adopting a log: the replica keeps its own ops as far as they match the adopted chain (the
//! ops it executed always do: every committed op is in the chosen log), truncates the rest
//! (never an op it executed), extends the chain backwards with `request_headers` while it does
//! not reach down to its own ops, and repairs forwards with `request_prepare`, accepting only
//! prepares whose checksum the chain names.

use super::log_target::chain_valid;
use super::{message_sealed, Payload, Replica};
use crate::constants::{
    HEADER_SIZE, REPAIR_INTERVAL_NS, REPLICAS_MAX, VIEW_CHANGE_RESEND_NS, VIEW_CHANGE_STAGGER_NS,
    VIEW_CHANGE_STATUS_TIMEOUT_NS, VIEW_HEADERS_MAX,
};
use crate::storage::Storage;
use crate::vsr::data_file::ViewState;
use crate::vsr::header::{Command, Header};
use crate::vsr::message_pool::Message;
use crate::vsr::outbox::Destination;
use crate::vsr::quorums::primary_index;
use crate::vsr::replica_state::ReplicaStateError;
use crate::vsr::write_stage::Stream;

use super::normal::{peers, PeerMessage};

/// What a replica is doing in its view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// The view is running: the primary prepares, the backups follow.
    Normal,
    /// The replica left its log view and is taking part in the change to `view`.
    ViewChange,
}

/// One replica's `do_view_change`, as the new primary keeps it.
struct Dvc {
    present: bool,
    log_view: u32,
    op: u64,
    commit_max: u64,
    /// Newest first.
    headers: Vec<Header>,
}

/// The state of the view change in progress.
pub struct ViewChange {
    /// One bit per replica whose `start_view_change` for the view this replica holds.
    votes: u8,
    /// The new primary's `do_view_change` messages, per replica.
    dvcs: Vec<Dvc>,
    /// The log to adopt is chosen (the new primary's choice, or a backup's `start_view`).
    chosen: bool,
    /// The replica is the primary of the view it changes to.
    primary_elect: bool,
    /// A replica restarted as the primary of its view: it must leave that view before it
    /// does anything (it may have lost prepares it sent; never prepare them again in it).
    pub(super) due: bool,
    /// The adopted log may be complete now (a journal stage ended): check at the next tick.
    pub(super) check: bool,
    /// When the view change times out (0: not yet set), and when its messages go again.
    timeout: u64,
    resend: u64,
    resends: u64,
    /// The newest view of a message this replica could not act on: it asks that view's
    /// primary for its `start_view`.
    pub(super) view_wanted: u32,
    /// Views this replica entered normal status in (a statistic).
    pub(super) completed: u64,
    /// Ops of chosen logs this replica truncated as the new primary on a nack quorum (a
    /// statistic).
    pub(super) nacked: u64,
    /// The adopted log's commit point, as learned ([`ViewChange::commit_max_learn`]).
    commit_max: u64,
    /// A backup adopting its view's log heard the view's primary since the last timeout.
    pub(super) primary_heard: bool,
}

impl ViewChange {
    /// No view change in progress.
    pub fn new() -> ViewChange {
        let dvc = || Dvc {
            present: false,
            log_view: 0,
            op: 0,
            commit_max: 0,
            headers: Vec::with_capacity(VIEW_HEADERS_MAX),
        };
        ViewChange {
            votes: 0,
            dvcs: (0..REPLICAS_MAX).map(|_| dvc()).collect(),
            chosen: false,
            primary_elect: false,
            due: false,
            check: false,
            timeout: 0,
            resend: 0,
            resends: 0,
            view_wanted: 0,
            completed: 0,
            nacked: 0,
            commit_max: 0,
            primary_heard: false,
        }
    }

    /// True if a backup is adopting the log of its view's `start_view`: the view runs, this
    /// replica catches up with it.
    pub(super) fn adopting(&self) -> bool {
        self.chosen && !self.primary_elect
    }

    /// Learns that the adopted log is committed up to `commit`: it applies to this replica's
    /// log only once that log is a prefix of the adopted one (its own uncommitted ops beyond
    /// the match may be other prepares of those ops), so it is held here until then.
    pub(super) fn commit_max_learn(&mut self, commit: u64) {
        self.commit_max = self.commit_max.max(commit);
    }

    /// The adoption moved on: the view change does not time out while it does.
    pub(super) fn progressed(&mut self) {
        if self.adopting() {
            self.timeout = 0;
        }
    }

    /// Forgets the chosen log (a backup starting its adoption over), keeping its votes.
    fn restart(&mut self) {
        assert!(self.adopting());
        self.chosen = false;
        self.commit_max = 0;
    }

    fn reset(&mut self) {
        self.votes = 0;
        for dvc in &mut self.dvcs {
            dvc.present = false;
            dvc.headers.clear();
        }
        self.chosen = false;
        self.primary_elect = false;
        self.check = false;
        self.timeout = 0;
        self.resend = 0;
        self.commit_max = 0;
        self.primary_heard = false;
    }
}

/// The headers of a `do_view_change`, `start_view` or `headers` body, if it is a valid chain
/// (newest first) of at most [`VIEW_HEADERS_MAX`] prepares ending at `op` (none for op 0).
fn body_headers(body: &[u8], op: Option<u64>) -> Option<Vec<Header>> {
    if !body.len().is_multiple_of(HEADER_SIZE) || body.len() / HEADER_SIZE > VIEW_HEADERS_MAX {
        return None;
    }
    let headers: Vec<Header> = body.chunks_exact(HEADER_SIZE).map(bytemuck::pod_read_unaligned).collect();
    if !chain_valid(&headers) {
        return None;
    }
    match op {
        Some(0) => headers.is_empty().then_some(headers),
        Some(op) => (headers.first().map(|header| header.op) == Some(op)).then_some(headers),
        None => (!headers.is_empty()).then_some(headers),
    }
}

impl<S: Storage> Replica<S> {
    /// `timeout` (the silence of the primary, or a view change's own) staggered for this
    /// replica, so that replicas do not all give up at once, and in the order of the views
    /// they would lead: the primary of the next view first (a view change it starts completes
    /// at once, the others joining on its vote), then the one after it, and so on.
    pub(super) fn view_change_timeout(&self, timeout: u64) -> u64 {
        let next_primary = primary_index(self.view + 1, self.replica_count);
        let distance = (self.replica + self.replica_count - next_primary) % self.replica_count;
        timeout + u64::from(distance) * VIEW_CHANGE_STAGGER_NS
    }

    /// Moves to `view` in view-change status, once the superblock holds the new view (nothing
    /// is sent in it before). False if the superblock cannot be written now (a checkpoint is
    /// writing its own): the caller tries again later.
    fn view_enter(&mut self, view: u32) -> Result<bool, ReplicaStateError> {
        assert!(view > self.view);
        if !self.state.data_file().view_write_ready() {
            return Ok(false);
        }
        let superblock = *self.state.data_file().superblock();
        assert_eq!(superblock.view, self.view, "the superblock holds the view the replica is in");
        assert_eq!(superblock.log_view, self.log_view);
        let state = ViewState {
            view,
            log_view: self.log_view,
            head_op: superblock.view_head_op,
            head_checksum: superblock.view_head_checksum,
            // Not this replica's commit_max: its log on disk may hold other prepares of ops up
            // to it (a truncation in memory is not on disk), which recovery would execute.
            commit_max: superblock.commit_max,
        };
        self.state.data_file_mut().view_write(state)?;
        self.view = view;
        self.status = Status::ViewChange;
        self.queue_release();
        self.view_change.reset();
        self.target.clear();
        Ok(true)
    }

    /// Starts the change to `view`: enters it, votes for it and says so to every peer.
    pub(super) fn view_change_start(&mut self, view: u32) -> Result<(), ReplicaStateError> {
        if !self.view_enter(view)? {
            return Ok(());
        }
        self.view_change.votes |= 1 << self.replica;
        self.view_change_send();
        self.view_change_progress()
    }

    /// Sends this replica's messages of the view change: its vote, and once a quorum voted,
    /// its log to the new primary.
    fn view_change_send(&mut self) {
        let vote = self.header(Command::StartViewChange, 0, 0, 0);
        for peer in peers(self.replica, self.replica_count) {
            self.send(Destination::Replica(peer), Payload::Header(vote));
        }
        let primary = self.primary();
        // A replica recovering its head sends no log: its head may be short of ops it
        // acknowledged, which the new primary would take for nacks.
        let quorum = self.view_change.votes.count_ones() as u8 >= self.quorums.view_change;
        if primary != self.replica && quorum && self.recovering_head.is_none() {
            let message = self.log_message(Command::DoViewChange, 0);
            self.send(Destination::Replica(primary), Payload::Message(message));
        }
    }

    /// The votes and log again, while no log is chosen.
    fn view_change_send_again(&mut self) {
        if !self.view_change.chosen {
            self.view_change_send();
        }
    }

    /// A pooled message of `command` carrying this replica's log: head in `op`, `commit_max`
    /// in `commit`, log view in `request`, `context` (a `start_view`'s answer to a request's
    /// nonce), and its newest headers (newest first).
    fn log_message(&mut self, command: Command, context: u128) -> Message {
        let cluster = self.state.data_file().superblock().cluster;
        let op = self.state.op();
        let mut headers = [Header::new(Command::Reserved, cluster); VIEW_HEADERS_MAX];
        let mut count = 0;
        while count < VIEW_HEADERS_MAX && (count as u64) < op {
            let Some(header) = self.state.header_of(op - count as u64) else { break };
            headers[count] = header;
            count += 1;
        }
        let mut header = Header {
            op,
            commit: self.state.commit_max(),
            request: self.log_view,
            view: self.view,
            replica: self.replica,
            context,
            ..Header::new(command, cluster)
        };
        let body: &[u8] = bytemuck::cast_slice(&headers[..count]);
        header.set_body(body);
        header.set_checksum();
        let pool = self.state.pool_mut();
        let message = pool.acquire().expect("a message for the view change");
        let buffer = pool.bytes_mut(&message);
        buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        buffer[HEADER_SIZE..HEADER_SIZE + body.len()].copy_from_slice(body);
        message
    }

    /// Takes a peer's vote to leave its view: a vote for a newer view starts the change to it.
    pub(super) fn on_start_view_change(&mut self, header: &Header) -> Result<PeerMessage, ReplicaStateError> {
        if header.view < self.view || (header.view == self.view && self.status == Status::Normal) {
            return Ok(PeerMessage::Ignored("a vote to leave an older view"));
        }
        if header.view > self.view {
            self.view_change_start(header.view)?;
            if header.view != self.view {
                return Ok(PeerMessage::Ignored("cannot leave its view yet"));
            }
        }
        let vote = 1 << header.replica;
        if self.view_change.votes & vote != 0 {
            return Ok(PeerMessage::Ignored("a vote counted already"));
        }
        self.view_change.votes |= vote;
        if self.view_change.votes.count_ones() as u8 == self.quorums.view_change {
            // The quorum just formed: the log goes to the new primary now, not at the resend.
            self.view_change_send();
        }
        self.view_change_progress()?;
        Ok(PeerMessage::Handled)
    }

    /// The new primary takes a replica's log.
    pub(super) fn on_do_view_change(
        &mut self,
        header: &Header,
        body: &[u8],
    ) -> Result<PeerMessage, ReplicaStateError> {
        if primary_index(header.view, self.replica_count) != self.replica {
            return Ok(PeerMessage::Ignored("a log for another view's primary"));
        }
        if header.view < self.view || (header.view == self.view && self.status == Status::Normal) {
            return Ok(PeerMessage::Ignored("a log for an older view"));
        }
        let Some(headers) = body_headers(body, Some(header.op)) else {
            return Ok(PeerMessage::Ignored("a malformed log"));
        };
        if header.request >= header.view {
            return Ok(PeerMessage::Ignored("a log view not below the view"));
        }
        if header.view > self.view {
            self.view_change_start(header.view)?;
            if header.view != self.view {
                return Ok(PeerMessage::Ignored("cannot leave its view yet"));
            }
        }
        if self.view_change.chosen {
            return Ok(PeerMessage::Ignored("the log is chosen already"));
        }
        let dvc = &mut self.view_change.dvcs[header.replica as usize];
        dvc.present = true;
        dvc.log_view = header.request;
        dvc.op = header.op;
        dvc.commit_max = header.commit.min(header.op);
        dvc.headers.clear();
        dvc.headers.extend_from_slice(&headers);
        self.view_change_progress()?;
        Ok(PeerMessage::Handled)
    }

    /// A backup takes the new primary's log.
    pub(super) fn on_start_view(
        &mut self,
        header: &Header,
        body: &[u8],
    ) -> Result<PeerMessage, ReplicaStateError> {
        if header.replica != primary_index(header.view, self.replica_count) {
            return Ok(PeerMessage::Ignored("a start_view not from the view's primary"));
        }
        if header.view < self.view || (header.view == self.view && self.status == Status::Normal) {
            return Ok(PeerMessage::Ignored("a start_view of a view entered already"));
        }
        let Some(headers) = body_headers(body, Some(header.op)) else {
            return Ok(PeerMessage::Ignored("a malformed log"));
        };
        if self.recovering_head.is_some()
            && (self.recovering_nonce == 0 || header.context != self.recovering_nonce)
        {
            // Only a log made after this replica's restart holds every op it may have
            // acknowledged before (a start_view from before, delayed, may end short of them).
            return Ok(PeerMessage::Ignored(
                "a start_view that does not answer this recovering replica's request",
            ));
        }
        if header.view > self.view && !self.view_enter(header.view)? {
            return Ok(PeerMessage::Ignored("cannot leave its view yet"));
        }
        if self.view_change.chosen {
            return Ok(PeerMessage::Ignored("adopting the view's log already"));
        }
        self.view_change.chosen = true;
        // The view runs: its log gets a whole timeout to be adopted from here (the view change
        // may have taken most of the one begun when this replica entered the view).
        self.view_change.progressed();
        self.target_set(header.replica, &headers, header.commit.min(header.op));
        self.op_primary = header.op;
        self.adopt()?;
        self.adopt_repair();
        Ok(PeerMessage::Handled)
    }

    /// The primary sends its `start_view` to a replica that asks for it.
    pub(super) fn on_request_start_view(&mut self, header: &Header) -> PeerMessage {
        if header.view != self.view || !self.is_primary() {
            return PeerMessage::Ignored("a request for a view this replica is not the primary of");
        }
        // The request's nonce goes back: a replica recovering its head takes only a start_view
        // that answers its own request (made after its restart).
        let message = self.log_message(Command::StartView, header.context);
        self.send(Destination::Replica(header.replica), Payload::Message(message));
        PeerMessage::Handled
    }

    /// Any replica answers a request for headers of its log (newest first).
    pub(super) fn on_request_headers(&mut self, header: &Header) -> PeerMessage {
        let (first, last) = (header.commit, header.op.min(self.state.op()));
        if first == 0 || first > last {
            return PeerMessage::Ignored("a request for headers this replica does not hold");
        }
        let cluster = self.state.data_file().superblock().cluster;
        let mut headers = [Header::new(Command::Reserved, cluster); VIEW_HEADERS_MAX];
        let mut count = 0;
        let mut op = last;
        while count < VIEW_HEADERS_MAX && op >= first {
            let Some(header) = self.state.header_of(op) else { break };
            headers[count] = header;
            count += 1;
            op -= 1;
        }
        if count == 0 {
            return PeerMessage::Ignored("a request for headers this replica does not hold");
        }
        let answer = Header {
            op: last,
            view: self.view,
            replica: self.replica,
            ..Header::new(Command::Headers, cluster)
        };
        let body: &[u8] = bytemuck::cast_slice(&headers[..count]);
        let Some(message) = message_sealed(self.state.pool_mut(), answer, body) else {
            return PeerMessage::Ignored("no free message");
        };
        self.send(Destination::Replica(header.replica), Payload::Message(message));
        PeerMessage::Handled
    }

    /// A replica adopting a log takes the headers that extend its chain backwards.
    pub(super) fn on_headers(&mut self, body: &[u8]) -> Result<PeerMessage, ReplicaStateError> {
        // Checked first: a late answer reaching a replica back in normal status costs nothing.
        if self.status != Status::ViewChange || !self.target.active() {
            return Ok(PeerMessage::Ignored("headers while adopting no log"));
        }
        let Some(headers) = body_headers(body, None) else {
            return Ok(PeerMessage::Ignored("malformed headers"));
        };
        let mut extended = false;
        for header in &headers {
            extended |= self.target.extend(header);
        }
        if !extended {
            return Ok(PeerMessage::Ignored("headers that do not extend the chain"));
        }
        self.view_change.progressed();
        self.adopt()?;
        self.adopt_repair();
        Ok(PeerMessage::Handled)
    }

    /// Starts adopting the log of `headers` (newest first), repaired from `source`, committed
    /// up to `commit_max`.
    fn target_set(&mut self, source: u8, headers: &[Header], commit_max: u64) {
        if headers.is_empty() {
            self.target.reset_empty(source);
        } else {
            // A WAL's worth at most: older ops cannot be repaired from a peer anyway.
            let headers = &headers[..headers.len().min(self.target.capacity())];
            self.target.reset(source, headers);
            // The primary that prepared the head had committed this far.
            self.view_change.commit_max_learn(headers[0].commit.min(headers[0].op));
        }
        self.view_change.commit_max_learn(commit_max);
    }

    /// Moves the view change on as far as it can now: the new primary chooses the log once it
    /// has a quorum of them; a replica adopting a log truncates and finishes.
    pub(super) fn view_change_progress(&mut self) -> Result<(), ReplicaStateError> {
        if self.status != Status::ViewChange || self.view_change.due {
            return Ok(());
        }
        if self.primary() == self.replica && !self.view_change.chosen {
            if self.recovering_head.is_some() {
                // It cannot lead with a log it cannot vouch for: the view change times out and
                // the next view's primary leads.
                return Ok(());
            }
            let logs = self.view_change.dvcs.iter().filter(|dvc| dvc.present).count() + 1;
            if logs < usize::from(self.quorums.view_change) {
                return Ok(());
            }
            self.primary_choose();
            self.adopt()?;
            self.adopt_repair();
            return Ok(());
        }
        if self.target.active() {
            self.adopt()?;
        }
        Ok(())
    }

    /// The new primary chooses the log: the highest log view, then the highest op (its own on
    /// a tie: nothing to repair); the commit point is the highest any log knows. A replica that
    /// cannot name its own head's header (it synced: its head is the installed checkpoint's op,
    /// whose prepare its WAL never held) takes a peer's log on a tie, and chooses nothing if
    /// its own would win: the view change then times out and moves to another primary.
    fn primary_choose(&mut self) {
        assert!(!self.view_change.chosen);
        let op = self.state.op();
        let own_known = op == 0 || self.state.header_of(op).is_some();
        let mut best: Option<usize> = None;
        let mut best_key = (self.log_view, op);
        let mut commit_max = self.state.commit_max();
        for (replica, dvc) in self.view_change.dvcs.iter().enumerate() {
            if !dvc.present {
                continue;
            }
            commit_max = commit_max.max(dvc.commit_max);
            let better = (dvc.log_view, dvc.op) > best_key;
            let tie_taken = !own_known && best.is_none() && (dvc.log_view, dvc.op) == best_key;
            if better || tie_taken {
                best = Some(replica);
                best_key = (dvc.log_view, dvc.op);
            }
        }
        if best.is_none() && !own_known {
            return;
        }
        self.view_change.chosen = true;
        self.view_change.primary_elect = true;
        match best {
            Some(replica) => {
                let mut headers = std::mem::take(&mut self.view_change.dvcs[replica].headers);
                let nacked = self.nacked(&headers, best_key.0, commit_max);
                self.view_change.nacked += nacked as u64;
                headers.drain(..nacked);
                if headers.is_empty() && nacked > 0 {
                    // Every header truncated: the log ends at the op below them, which this
                    // replica holds (`nacked` checked), or is empty.
                    let below = best_key.1 - nacked as u64;
                    headers.extend(self.state.header_of(below));
                }
                self.target_set(replica as u8, &headers, commit_max);
                self.view_change.dvcs[replica].headers = headers;
            }
            None => {
                let op = self.state.op();
                let mut headers = Vec::with_capacity(VIEW_HEADERS_MAX);
                while headers.len() < VIEW_HEADERS_MAX && (headers.len() as u64) < op {
                    let Some(header) = self.state.header_of(op - headers.len() as u64) else { break };
                    headers.push(header);
                }
                self.target_set(self.replica, &headers, commit_max);
            }
        }
    }

    /// How many of the chosen log's newest ops (`headers`, newest first, of log view
    /// `log_view`) the new primary truncates: those it lacks that a nack quorum of the logs
    /// (its own included) proves were never acknowledged — a suffix, above `commit_max`, and
    /// all of `headers` only if this replica holds the op below them (or it is op 0).
    ///
    /// A log of log view `w` and head `h` nacks op `o` prepared in view `u` if `u > w` (a
    /// replica acknowledges only in normal status, in its log view, and its log view never goes
    /// back: it was never normal in `u`), or if `w` is the chosen log view and `h < o` (its log
    /// was that view's whole log once it entered it, and grows while it is normal; a partial
    /// adoption of a later view's log keeps every op that log holds, which includes every
    /// committed op). A committed op was acknowledged by a replication quorum, none of which
    /// can nack it; so at most `n − replication` logs nack it, fewer than a nack quorum.
    fn nacked(&self, headers: &[Header], log_view: u32, commit_max: u64) -> usize {
        let nacks = |header: &Header| -> u8 {
            let nack = |log_view_r: u32, op_r: u64| {
                header.view > log_view_r || (log_view_r == log_view && op_r < header.op)
            };
            let peers =
                self.view_change.dvcs.iter().filter(|dvc| dvc.present && nack(dvc.log_view, dvc.op)).count();
            peers as u8 + u8::from(nack(self.log_view, self.state.op()))
        };
        let holds =
            |op: u64, checksum: u128| self.state.header_of(op).is_some_and(|own| own.checksum == checksum);
        let mut count = 0;
        while count < headers.len() {
            let header = &headers[count];
            if header.op <= commit_max
                || holds(header.op, header.checksum)
                || nacks(header) < self.quorums.nack
            {
                break;
            }
            let last = count + 1 == headers.len();
            if last && header.op > 1 && !holds(header.op - 1, header.parent) {
                break; // The new head's header would be unknown.
            }
            count += 1;
        }
        count
    }

    /// Brings this replica's log to the adopted one as far as it can now: truncates what does
    /// not match (once no journal stage is in flight), and finishes the view change once the
    /// whole log is durable here. What must be fetched is asked for by [`Self::adopt_repair`].
    pub(super) fn adopt(&mut self) -> Result<(), ReplicaStateError> {
        assert!(self.status == Status::ViewChange && self.target.active());
        let head = self.target.head_op();
        let commit_min = self.state.commit_min();
        assert!(head >= commit_min, "the adopted log holds every op this replica executed");

        if commit_min > 0 {
            if let Some(checksum) = self.target.checksum(commit_min) {
                assert_eq!(
                    checksum,
                    self.state.commit_min_checksum(),
                    "the executed ops are the adopted log's"
                );
            }
        }
        let Some(matched) = self.adopt_match() else { return Ok(()) };
        if let Some(header) = self.target.header(commit_min) {
            // Recovery may have found the redundant header of the newest op executed damaged
            // (the checkpoint's op): the adopted log's copy restores it, else a log that ends
            // there could not be sent in a view change.
            let header = *header;
            self.state.header_restore(&header);
        }
        if self.state.op() > matched {
            if self.state.stage_in_flight(Stream::Journal) {
                return Ok(()); // Truncated at the next tick.
            }
            self.state.truncate(matched)?;
        }
        // This replica's log is a prefix of the adopted one now: its commit point applies.
        self.state.commit_max_raise(self.view_change.commit_max.min(head));
        if self.state.op() == head && self.state.op_durable() == head {
            self.view_change_finish()?;
        }
        Ok(())
    }

    /// The newest op of this replica's log that the adopted chain shows it shares (at least
    /// `commit_min`), or `None` if the known chain does not reach down to its log yet.
    fn adopt_match(&self) -> Option<u64> {
        let commit_min = self.state.commit_min();
        let known_from = self.target.known_from();
        let mut op = self.state.op().min(self.target.head_op());
        while op > commit_min && op >= known_from {
            let own = self.state.header_of(op).map(|header| header.checksum);
            if own.is_some() && own == self.target.checksum(op) {
                return Some(op);
            }
            op -= 1;
        }
        (known_from <= commit_min + 1).then_some(commit_min)
    }

    /// Asks the source of the adopted log for what this replica lacks of it: older headers
    /// while the chain does not reach its log, else the prepares after its head (as many as
    /// its pipeline and WAL have room for), each by checksum.
    pub(super) fn adopt_repair(&mut self) {
        if self.status != Status::ViewChange || !self.target.active() {
            return;
        }
        let source = self.target.source();
        if source == self.replica {
            return;
        }
        let head = self.target.head_op();
        if self.adopt_match().is_none() {
            let last = self.target.known_from() - 1;
            let first = (self.state.commit_min() + 1).max(last.saturating_sub(VIEW_HEADERS_MAX as u64 - 1));
            let request = self.header(Command::RequestHeaders, last, first, 0);
            self.adopt_request(last, head, request);
            return;
        }
        let room = self.state.commit_min() + self.state.pipeline_max() as u64;
        let wal = self.state.data_file().checkpoint_op() + self.state.data_file().journal().slot_count();
        let last = head.min(room).min(wal);
        for op in self.state.op() + 1..=last {
            let checksum = self.target.checksum(op).expect("the chain reaches down to the log");
            let request = self.header(Command::RequestPrepare, op, 0, checksum);
            self.adopt_request(op, head, request);
        }
    }

    /// Sends a repair request for `op` of the log of head `head`: to the log's source, which
    /// holds the WAL's worth of ops before its head — unless it synced past them (its WAL does
    /// not hold the ops its installed checkpoint covers), so every other round goes to another
    /// peer instead; for an older op, to another peer at each round (one that lags may still
    /// hold it). One round sends at most a request per op and the outbox stays within its
    /// bound. Any peer's answer will do: headers are checked link by link against the chain,
    /// prepares by checksum.
    fn adopt_request(&mut self, op: u64, head: u64, request: Header) {
        let slot_count = self.state.data_file().journal().slot_count();
        let to = if op + slot_count > head && self.view_change.resends.is_multiple_of(2) {
            self.target.source()
        } else {
            let round = (op + self.view_change.resends) as usize % (usize::from(self.replica_count) - 1);
            peers(self.replica, self.replica_count).nth(round).expect("a peer of a cluster of two or more")
        };
        self.send(Destination::Replica(to), Payload::Header(request));
    }

    /// True if this replica's adoption of its view's log stalled while the ops it lacks are
    /// further back than a WAL before the log's head: no peer as far along holds them, and
    /// none that lags answered. It needs a newer checkpoint (state sync).
    fn adopt_behind(&self) -> bool {
        let head = self.target.head_op();
        let slot_count = self.state.data_file().journal().slot_count();
        let op = self.adopt_match().unwrap_or(self.state.op()).min(self.state.op());
        op + 1 + slot_count <= head
    }

    /// True if `header` (a prepare of `op == op + 1`) is the adopted log's next op.
    pub(super) fn adopt_accepts(&self, header: &Header) -> bool {
        self.status == Status::ViewChange && self.target.checksum(header.op) == Some(header.checksum)
    }

    /// The replica holds the whole adopted log durable: it makes the view its log view in the
    /// superblock, and enters normal status. The new primary starts counting acknowledgements
    /// of its uncommitted ops and sends its `start_view`; a backup acknowledges those ops.
    fn view_change_finish(&mut self) -> Result<(), ReplicaStateError> {
        let truncating = self.recovering_head.is_some() && self.state.stage_in_flight(Stream::Journal);
        if !self.state.data_file().view_write_ready() || truncating {
            self.view_change.check = true;
            return Ok(());
        }
        let head = self.state.op();
        // A replica recovering its head may adopt the log of the view it was normal in already:
        // that view's head stays (the ops after it were all prepared in the view).
        let superblock = self.state.data_file().superblock();
        let (head_op, head_checksum) = if self.log_view == self.view {
            assert!(
                self.recovering_head.is_some(),
                "only a recovering replica adopts its log view's log again"
            );
            (superblock.view_head_op, superblock.view_head_checksum)
        } else {
            (head, self.state.op_checksum())
        };
        let state = ViewState {
            view: self.view,
            log_view: self.view,
            head_op,
            head_checksum,
            commit_max: self.state.commit_max(),
        };
        self.state.data_file_mut().view_write(state)?;
        if self.recovering_head.take().is_some() {
            // It holds the view's log now, durable and in its superblock: what its WAL held
            // beyond (damaged headers, ops of the log it lost) is evidence needed no longer.
            // (Not before the superblock write: a crash in between would leave a WAL without
            // evidence of the damage, whose head the replica would trust.)
            self.state.truncate(head)?;
        }
        // How far the logs of the view change reach (for the new primary's prepare limit):
        // each sender's head, as far as it knew it committed (its ops beyond may be other
        // prepares).
        self.progress = [0; REPLICAS_MAX as usize];
        for (replica, dvc) in self.view_change.dvcs.iter().enumerate() {
            if dvc.present {
                self.progress[replica] = dvc.op.min(dvc.commit_max);
            }
        }
        self.log_view = self.view;
        self.status = Status::Normal;
        self.target.clear();
        self.view_change.reset();
        self.view_change.completed += 1;
        self.deadlines = Default::default();
        self.op_primary = head;
        let uncommitted = self.state.commit_max() + 1..=head;
        if self.primary() == self.replica {
            for op in uncommitted {
                let checksum = self.state.header_of(op).expect("an uncommitted op's prepare").checksum;
                self.acks.prepared(op, checksum);
                self.acks.record(op, checksum, self.replica);
            }
            let message = self.log_message(Command::StartView, 0);
            for backup in peers(self.replica, self.replica_count) {
                let reference = self.state.pool_mut().reference(&message);
                self.send(Destination::Replica(backup), Payload::Message(reference));
            }
            self.state.pool_mut().release(message);
            self.commit_max_advance();
        } else {
            for op in uncommitted {
                let checksum = self.state.header_of(op).expect("an uncommitted op's prepare").checksum;
                let prepare_ok = self.header(Command::PrepareOk, op, 0, checksum);
                self.send(Destination::Replica(self.primary()), Payload::Header(prepare_ok));
            }
        }
        Ok(())
    }

    /// The timeouts of a replica in a view change, at `now`: its messages again, the repair of
    /// the adopted log, and after the view change's timeout, the change to the next view.
    pub(super) fn view_change_timeouts(&mut self, now: u64) -> Result<(), ReplicaStateError> {
        assert_eq!(self.status, Status::ViewChange);
        if self.view_change.timeout == 0 {
            self.view_change.timeout = now + self.view_change_timeout(VIEW_CHANGE_STATUS_TIMEOUT_NS);
        } else if now >= self.view_change.timeout {
            if self.view_change.adopting() && self.adopt_behind() {
                self.sync_begin(self.state.commit_min() + 1, now);
                return Ok(());
            }
            if self.view_change.adopting() && std::mem::take(&mut self.view_change.primary_heard) {
                // The view runs, but this replica's adoption of its log stalled (a source that
                // no longer holds what it asks for, lost answers): it starts over from a fresh
                // start_view rather than disturb a healthy view.
                self.view_change.restart();
                self.target.clear();
                self.view_change.view_wanted = self.view;
                self.view_change.timeout = now + self.view_change_timeout(VIEW_CHANGE_STATUS_TIMEOUT_NS);
                return Ok(());
            }
            if self.recovering_head.is_some() {
                // It cannot complete a view change itself, so it does not push its peers to
                // newer views: it asks again for the start_view of the view it is in (its vote
                // for that view goes again at each resend, which draws peers of older views).
                if self.view_change.adopting() {
                    self.view_change.restart();
                    self.target.clear();
                }
                self.view_change.view_wanted = self.view_change.view_wanted.max(self.view);
                self.view_change.timeout = now + self.view_change_timeout(VIEW_CHANGE_STATUS_TIMEOUT_NS);
                return Ok(());
            }
            return self.view_change_start(self.view + 1);
        }
        if self.view_change.check {
            self.view_change.check = false;
            self.view_change_progress()?;
            if self.status != Status::ViewChange {
                return Ok(());
            }
        }
        if now >= self.view_change.resend {
            // Repair goes at the pace of a backup's; the votes and logs again less often.
            self.view_change.resend = now + REPAIR_INTERVAL_NS;
            self.view_change.resends += 1;
            if self.view_change.resends.is_multiple_of(VIEW_CHANGE_RESEND_NS / REPAIR_INTERVAL_NS) {
                self.view_change_send_again();
            }
            if self.target.active() {
                self.adopt()?;
                self.adopt_repair();
            }
        }
        Ok(())
    }

    /// Asks the primary of the newest view seen in a message this replica could not act on
    /// for that view's `start_view`.
    pub(super) fn start_view_request(&mut self) {
        let view = std::mem::take(&mut self.view_change.view_wanted);
        let adopting = self.status == Status::ViewChange && self.view_change.chosen;
        if view < self.view || (view == self.view && (self.status == Status::Normal || adopting)) {
            return;
        }
        let primary = primary_index(view, self.replica_count);
        if primary == self.replica {
            return;
        }
        let mut request = self.header(Command::RequestStartView, 0, 0, self.recovering_nonce);
        request.view = view;
        request.set_checksum();
        self.send(Destination::Replica(primary), Payload::Header(request));
    }
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

    const CLUSTER: u128 = 11;
    const CLIENT: u128 = 99;

    /// A replica's clocks at true time `now`: its wall clock `offset_ns` off.
    struct Clock {
        now: u64,
        offset_ns: i64,
    }

    impl Time for Clock {
        fn monotonic(&self) -> u64 {
            self.now
        }
        fn realtime(&self) -> u64 {
            (REALTIME_START as i64 + self.now as i64 + self.offset_ns) as u64
        }
    }

    /// True wall-clock time at `now` 0.
    const REALTIME_START: u64 = 1_700_000_000 * NS_PER_S;

    /// A lossless cluster stepped by hand: each step ticks every running replica, makes its
    /// pipeline durable (as a journal stage), commits, and delivers every message sent.
    struct Cluster {
        replicas: Vec<Option<Replica<SimStorage>>>,
        now: u64,
        /// Each replica's wall-clock offset from true time.
        offsets_ns: Vec<i64>,
        /// Replies to `CLIENT`: (op, timestamp).
        replies: Vec<(u64, u64)>,
    }

    impl Cluster {
        /// A fresh cluster whose clocks are right and already synchronized.
        fn new(replica_count: u8) -> Cluster {
            let mut cluster = Cluster::with_clocks(&vec![0; usize::from(replica_count)]);
            for replica in cluster.replicas.iter_mut().flatten() {
                replica.clock.assume_synchronized(&Clock { now: 0, offset_ns: 0 });
            }
            cluster
        }

        /// A fresh cluster whose wall clocks are `offsets_ns` off true time, not yet
        /// synchronized.
        fn with_clocks(offsets_ns: &[i64]) -> Cluster {
            let replica_count = offsets_ns.len() as u8;
            let replicas = (0..replica_count)
                .map(|replica| Some(super::super::tests::replica_of(CLUSTER, replica, replica_count)))
                .collect();
            Cluster { replicas, now: 0, offsets_ns: offsets_ns.to_vec(), replies: Vec::new() }
        }

        fn clock(&self, index: usize) -> Clock {
            Clock { now: self.now, offset_ns: self.offsets_ns[index] }
        }

        fn replica(&mut self, index: usize) -> &mut Replica<SimStorage> {
            self.replicas[index].as_mut().expect("a running replica")
        }

        fn step(&mut self) {
            self.now += 10_000_000;
            let mut messages: Vec<(Destination, Vec<u8>)> = Vec::new();
            for (index, replica) in self.replicas.iter_mut().enumerate() {
                let Some(replica) = replica.as_mut() else { continue };
                let clock = Clock { now: self.now, offset_ns: self.offsets_ns[index] };
                replica.on_tick(&clock).expect("tick");
                replica.outbox_drain(|to, message| messages.push((to, message.to_vec())));
                replica.prepare_queued(&clock).expect("prepare");
                replica.outbox_drain(|to, message| messages.push((to, message.to_vec())));
                let before = replica.state.op_durable();
                replica.state.journal_sync().expect("journal");
                replica.durable(before);
                replica.outbox_drain(|to, message| messages.push((to, message.to_vec())));
                replica.commit().expect("commit");
                replica.outbox_drain(|to, message| messages.push((to, message.to_vec())));
                replica.state.storage_run().expect("storage");
            }
            for (to, message) in messages {
                self.deliver(to, message);
            }
        }

        /// Delivers `message` at once: a reply is recorded; a replica takes the message,
        /// commits what it may, and what it answers is delivered in turn (depth first).
        fn deliver(&mut self, to: Destination, message: Vec<u8>) {
            let header: Header = bytemuck::pod_read_unaligned(&message[..HEADER_SIZE]);
            let index = match to {
                Destination::Client(_) => {
                    if header.command() == Some(Command::Reply) {
                        self.replies.push((header.op, header.timestamp));
                    }
                    return;
                }
                Destination::Replica(index) => index as usize,
            };
            let clock = self.clock(index);
            let Some(replica) = self.replicas[index].as_mut() else { return };
            replica.on_peer_message(&header, &message[HEADER_SIZE..], &clock).expect("peer message");
            let mut answers = Vec::new();
            replica.outbox_drain(|to, message| answers.push((to, message.to_vec())));
            replica.commit().expect("commit");
            replica.outbox_drain(|to, message| answers.push((to, message.to_vec())));
            for (to, answer) in answers {
                self.deliver(to, answer);
            }
        }

        /// Steps until `done` holds, at most `steps` times.
        fn run_until(&mut self, steps: usize, mut done: impl FnMut(&Cluster) -> bool) {
            for _ in 0..steps {
                if done(self) {
                    return;
                }
                self.step();
            }
            assert!(done(self), "not done after {steps} steps");
        }

        /// The index of the normal primary, if one runs.
        fn primary(&self) -> Option<usize> {
            self.replicas
                .iter()
                .position(|replica| replica.as_ref().is_some_and(|replica| replica.is_primary()))
        }
    }

    fn register(replica: &mut Replica<SimStorage>) -> Admission {
        let mut message = MessageBuffer::new();
        message.seal_with_body(request_header(CLUSTER, CLIENT, 0, 0, Operation::Register), &[]);
        let header: Header = bytemuck::pod_read_unaligned(&message.as_bytes()[..HEADER_SIZE]);
        replica.on_request(&header, &[])
    }

    #[test]
    fn a_fresh_cluster_leaves_view_0_and_a_crashed_primary_is_replaced_without_losing_its_commits() {
        let mut cluster = Cluster::new(3);
        // Replica 0 starts as the primary of view 0, which it cannot know it never served
        // before a crash: it leaves the view, and view 1 starts with replica 1 as its primary.
        assert_eq!(cluster.replica(0).status(), Status::ViewChange);
        cluster.run_until(20, |cluster| cluster.primary().is_some());
        assert_eq!(cluster.primary(), Some(1));
        for index in 0..3 {
            let replica = cluster.replica(index);
            assert_eq!((replica.view(), replica.log_view(), replica.status()), (1, 1, Status::Normal));
            assert_eq!(replica.state.data_file().superblock().log_view, 1, "persisted before acted on");
        }
        // An op commits in view 1.
        assert_eq!(register(cluster.replica(1)), Admission::Prepare(Operation::Register));
        cluster.run_until(20, |cluster| !cluster.replies.is_empty());
        assert_eq!(cluster.replies[0].0, 1);
        // The primary crashes: the backups time out, and view 2's primary (replica 2) takes
        // over with the committed op.
        cluster.replicas[1] = None;
        cluster.run_until(200, |cluster| cluster.primary().is_some());
        assert_eq!(cluster.primary(), Some(2));
        let new_primary = cluster.replica(2);
        assert_eq!(new_primary.view(), 2);
        assert_eq!(new_primary.state.op(), 1, "the committed op is in the new view's log");
        cluster
            .run_until(20, |cluster| cluster.replicas[2].as_ref().is_some_and(|r| r.state.commit_min() == 1));
        // The new primary takes the retry of a committed request from the session, and a new
        // client's request commits on a quorum of the two replicas left.
        assert_eq!(register(cluster.replica(2)), Admission::Reply(0));
        let mut resent = 0;
        cluster.replica(2).outbox_drain(|_, _| resent += 1);
        assert_eq!(resent, 1, "the stored reply");
        let mut message = MessageBuffer::new();
        message.seal_with_body(request_header(CLUSTER, CLIENT + 1, 0, 0, Operation::Register), &[]);
        let header: Header = bytemuck::pod_read_unaligned(&message.as_bytes()[..HEADER_SIZE]);
        assert_eq!(cluster.replica(2).on_request(&header, &[]), Admission::Prepare(Operation::Register));
        cluster.replies.clear();
        cluster.run_until(50, |cluster| cluster.replies.iter().any(|(op, _)| *op == 2));
        // The backup learns of the commit from the heartbeat, and executes it too.
        cluster
            .run_until(50, |cluster| cluster.replicas[0].as_ref().is_some_and(|r| r.state.commit_min() == 2));
    }

    #[test]
    fn a_primary_takes_requests_once_its_clock_agrees_with_a_quorum_and_stamps_the_cluster_time() {
        use crate::constants::{CLOCK_OFFSET_TOLERANCE_NS, CLOCK_WINDOW_MIN_NS};
        // View 1's primary (replica 1) has a wall clock an hour fast; the backups' are right.
        let hour = 3600 * NS_PER_S as i64;
        let mut cluster = Cluster::with_clocks(&[0, hour, 0]);
        cluster.run_until(20, |cluster| cluster.primary() == Some(1));
        assert!(!cluster.replica(1).clock().synchronized());
        assert_eq!(register(cluster.replica(1)), Admission::Drop, "no cluster time yet");
        // Pings and pongs: after a window, replica 1 knows the cluster's time.
        let steps = (CLOCK_WINDOW_MIN_NS / 10_000_000) as usize + 10;
        cluster.run_until(steps, |cluster| {
            cluster.replicas.iter().flatten().all(|replica| replica.clock().synchronized())
        });
        assert_eq!(cluster.primary(), Some(1), "it did not abdicate: its first window was still open");
        assert_eq!(register(cluster.replica(1)), Admission::Prepare(Operation::Register));
        cluster.run_until(20, |cluster| !cluster.replies.is_empty());
        // Its timestamp is within the tolerance of true time, not an hour ahead.
        let (op, timestamp) = cluster.replies[0];
        let truth = REALTIME_START + cluster.now;
        assert_eq!(op, 1);
        assert!(timestamp.abs_diff(truth) <= CLOCK_OFFSET_TOLERANCE_NS + NS_PER_S, "{timestamp} vs {truth}");
        assert!(timestamp < truth + hour as u64 / 2);
    }

    #[test]
    fn a_primary_that_cannot_learn_the_cluster_time_abdicates_and_the_cluster_serves_once_clocks_agree() {
        use crate::constants::CLOCK_WINDOW_MAX_NS;
        // Three clocks an hour apart each: no two agree, nobody knows the cluster's time.
        let hour = 3600 * NS_PER_S as i64;
        let mut cluster = Cluster::with_clocks(&[0, hour, -hour]);
        cluster.run_until(20, |cluster| cluster.primary() == Some(1));
        let window_steps = (CLOCK_WINDOW_MAX_NS / 10_000_000) as usize;
        for _ in 0..window_steps + 200 {
            if let Some(primary) = cluster.primary() {
                // Clients keep trying the primary.
                assert_eq!(register(cluster.replica(primary)), Admission::Drop);
            }
            cluster.step();
        }
        assert!(cluster.replicas.iter().flatten().all(|replica| replica.view() > 1), "the primary abdicated");
        assert!(cluster.replicas.iter().flatten().all(|replica| replica.state.op() == 0), "nothing prepared");
        // The operator fixes two clocks: the next window agrees, and a primary serves.
        cluster.offsets_ns = vec![0, 0, -hour];
        cluster.run_until(window_steps + 200, |cluster| {
            cluster.primary().is_some_and(|primary| {
                cluster.replicas[primary].as_ref().is_some_and(|r| r.clock().synchronized())
            })
        });
        let primary = cluster.primary().expect("a primary");
        assert_eq!(register(cluster.replica(primary)), Admission::Prepare(Operation::Register));
        cluster.run_until(50, |cluster| !cluster.replies.is_empty());
    }

    #[test]
    fn a_new_primary_truncates_an_op_it_lacks_on_a_nack_quorum_and_the_cluster_goes_on() {
        // Two replicas: a replication quorum of 2 and a nack quorum of 1.
        let mut cluster = Cluster::new(2);
        cluster.run_until(20, |cluster| cluster.primary() == Some(1));
        // Replica 0 is cut off: replica 1 prepares op 1, which only it holds, and abdicates
        // when it cannot commit it.
        let zero = cluster.replicas[0].take();
        assert_eq!(register(cluster.replica(1)), Admission::Prepare(Operation::Register));
        cluster.run_until(200, |cluster| {
            cluster.replicas[1].as_ref().is_some_and(|r| r.status() == Status::ViewChange)
        });
        assert_eq!((cluster.replica(1).state.op(), cluster.replica(1).state.commit_max()), (1, 0));
        // Replica 0 is back: it becomes view 2's primary. The chosen log is replica 1's (op 1);
        // replica 0 lacks op 1, and its own log (log view 1, head 0) is a nack: it was never
        // acknowledged by a replication quorum, so it is truncated rather than repaired.
        cluster.replicas[0] = zero;
        cluster.run_until(200, |cluster| cluster.primary() == Some(0));
        assert_eq!(cluster.replica(0).nack_truncations(), 1);
        assert_eq!(cluster.replica(0).state.op(), 0);
        // Replica 1 adopts the view's log, truncating its op, and the client's retry commits.
        cluster.run_until(100, |cluster| {
            cluster.replicas[1].as_ref().is_some_and(|r| r.status() == Status::Normal && r.view() == 2)
        });
        assert_eq!(cluster.replica(1).state.op(), 0);
        assert_eq!(register(cluster.replica(0)), Admission::Prepare(Operation::Register));
        cluster.run_until(50, |cluster| !cluster.replies.is_empty());
        assert_eq!(cluster.replies[0].0, 1);
    }

    #[test]
    fn a_backup_with_a_stale_suffix_truncates_it_and_adopts_the_new_primarys_log() {
        let mut cluster = Cluster::new(3);
        cluster.run_until(20, |cluster| cluster.primary() == Some(1));
        // Replica 1 prepares an op that only it holds (its messages are lost: the others are
        // down), then crashes; replicas 0 and 2 start view 2 without it.
        let (zero, two) = (cluster.replicas[0].take(), cluster.replicas[2].take());
        assert_eq!(register(cluster.replica(1)), Admission::Prepare(Operation::Register));
        cluster.step();
        let stale = cluster.replicas[1].take().expect("replica 1");
        assert_eq!((stale.state.op(), stale.state.op_durable(), stale.state.commit_max()), (1, 1, 0));
        (cluster.replicas[0], cluster.replicas[2]) = (zero, two);
        cluster.run_until(200, |cluster| cluster.primary() == Some(2));
        let mut message = MessageBuffer::new();
        message.seal_with_body(request_header(CLUSTER, CLIENT + 1, 0, 0, Operation::Register), &[]);
        let header: Header = bytemuck::pod_read_unaligned(&message.as_bytes()[..HEADER_SIZE]);
        assert_eq!(cluster.replica(2).on_request(&header, &[]), Admission::Prepare(Operation::Register));
        cluster.run_until(50, |cluster| cluster.replies.iter().any(|(op, _)| *op == 1));
        let committed = cluster.replica(2).state.commit_min_checksum();
        // Replica 1 restarts: its op 1 is another prepare than the one committed. It leaves
        // view 1, learns view 2's log, truncates its op and repairs the committed one.
        let storage = stale.into_state().into_storage();
        let state = crate::vsr::replica_state::ReplicaState::open(storage, Some(CLUSTER)).expect("open");
        assert_eq!(state.op(), 1, "its unacknowledged op is still in its WAL");
        cluster.replicas[1] = Some(Replica::new(state));
        cluster.run_until(200, |cluster| {
            cluster.replicas[1]
                .as_ref()
                .is_some_and(|replica| replica.status() == Status::Normal && replica.state.commit_min() == 1)
        });
        assert_eq!(cluster.replica(1).state.commit_min_checksum(), committed);
        assert!(cluster.replica(1).view() >= 2);
    }
}
