//! One simulated run: a cluster of 1–6 replicas, its clients, the network between them,
//! simulated time, and the checkers, all driven by one seed.
//!
//! Each tick: packets due are delivered (to a replica: admission of a request, or the VSR
//! message of a peer; to a client: the reply checker first); clients act; each running replica
//! ticks (pulses, heartbeats, resends, repair) and steps its write stages (or, in a cluster of
//! one, with `commit_percent` chance commits what is queued, waiting for the disk); after every
//! commit the replica's reference model is advanced with the ops it logged, and the state,
//! hash-chain, commits-agree and op-number checkers run. Crashes are armed at random and hit at
//! a later I/O (or at once, between I/Os); the replica stays down a few ticks, and recovery may
//! itself crash; in a cluster any replica crashes, the primary included, and partitions cut
//! replicas off, and a minority of replicas' wall clocks may be faulty. A quiet phase without
//! crashes, partitions or faulty clocks ends the run, after which every replica must have
//! caught up with the cluster's commits and every client been answered.

use super::checkers::checkpoints::CheckpointsChecker;
use super::checkers::commits::CommitsChecker;
use super::checkers::hash_chain::HashChain;
use super::checkers::op_numbers::{OpNumbers, OpNumbersChecker};
use super::checkers::replies::RepliesChecker;
use super::checkers::views::ViewsChecker;
use super::checkers::{clocks, convergence, grid, liveness, progress, sessions, state, wal, Failure};
use super::client::{Send, SimClient};
use super::disk::DiskDamage;
use super::network::{Address, Network, Packet};
use super::node::{Node, NodeError, Received};
use super::options::{SimOptions, CLOCK_OFFSET_GOOD_NS_MAX, PARTITION_TICKS_MAX};
use super::oracle::Oracle;
use super::requests::Requests;
use super::time::{ClockSkew, SimTime};
use super::trace::{Trace, TraceEvent};
use super::wal::{read_prepare, read_prepare_intended, read_redundant_header, slot_write_faulted};
use crate::constants::{HEADER_SIZE, SECTOR_SIZE};
use crate::net::codec::MessageBuffer;
use crate::operation::Operation;
use crate::prng::Prng;
use crate::state_machine::StateMachine;
use crate::storage::layout::{Layout, SUPERBLOCK_COPIES};
use crate::storage::{CrashMode, SimFaults, SimStorage};
use crate::vsr::admission::Admission;
use crate::vsr::data_file::root_checksum;
use crate::vsr::header::{Command, Header};
use crate::vsr::replica::PeerMessage;

/// The most steps (writes and syncs) ahead at which an armed crash hits.
const CRASH_STEPS_AHEAD_MAX: u64 = 48;

/// The most ticks a crashed replica stays down.
const DOWN_TICKS_MAX: u64 = 20;

/// The most crashes during one recovery; the next attempt runs without one.
const RECOVERY_CRASHES_MAX: u32 = 3;

/// What one run did.
#[derive(Clone, Debug)]
pub struct RunReport {
    /// The seed.
    pub seed: u64,
    /// The configuration, in one line.
    pub configuration: String,
    /// Ops committed (executed by the reference model from the log), over all replicas.
    pub commits: u64,
    /// Crashes of replicas (live and during recovery).
    pub crashes: u64,
    /// What else the run did, to show that it exercised what it claims to.
    pub stats: RunStats,
    /// Replies checked against the model.
    pub replies: u64,
    /// Evictions received by clients.
    pub evictions: u64,
    /// The hash of every event of the run.
    pub trace_hash: u64,
    /// `Ok`, or the checker that fired.
    pub result: Result<(), Failure>,
}

/// Counts of what a run exercised.
#[derive(Clone, Copy, Debug, Default)]
pub struct RunStats {
    /// `commit_queued` calls, or staged steps that committed, each followed by a full state
    /// comparison.
    pub commit_calls: u64,
    /// Those that committed exactly one op.
    pub commit_calls_single: u64,
    /// Crashes during recovery.
    pub recovery_crashes: u64,
    /// Pulses committed (pending transfers expired by the replica's own clock).
    pub pulses: u64,
    /// Requests answered with the session's stored reply (retries of the latest request).
    pub replies_resent: u64,
    /// Requests the replica dropped (stale, skipping ahead, altered, or already queued).
    pub requests_dropped: u64,
    /// Write stages completed in a staged run, per stream (journal, grid, replies).
    pub stages: [u64; 3],
    /// Times committing waited for a stage in a staged run.
    pub commit_waits: u64,
    /// Messages between replicas sent (each copy the network delivers counts), and lost.
    pub peer_sent: u64,
    /// Messages between replicas lost by the network.
    pub peer_lost: u64,
    /// Messages between replicas the receiver acted on.
    pub peer_handled: u64,
    /// Messages between replicas the receiver ignored (stale, duplicates, ahead of a gap).
    pub peer_ignored: u64,
    /// State syncs completed: a replica that fell further behind than a WAL reaches, or found
    /// its checkpoint damaged at start, installed a peer's checkpoint.
    pub syncs: u64,
    /// Grid blocks of a down atlas replica's durable checkpoint damaged (its restart syncs).
    pub checkpoints_damaged: u64,
    /// Data files of down atlas replicas lost and replaced by `ledger recover`'s.
    pub data_files_replaced: u64,
    /// Superblock copies of down atlas replicas damaged (one at a time: a replica that opens
    /// writes every copy again).
    pub superblocks_damaged: u64,
    /// Writes of atlas replicas stored corrupted (WAL, client replies, grid) or misdirected
    /// (grid).
    pub write_faults: u64,
    /// Partitions of the replicas begun.
    pub partitions: u64,
    /// View changes completed (a replica entering normal status in a new view), over all
    /// replicas, and the newest view any replica reached.
    pub view_changes: u64,
    /// See `view_changes`.
    pub view_max: u32,
    /// Ticks of running replicas that knew the cluster's time.
    pub clock_synchronized_ticks: u64,
    /// Ops of chosen logs that new primaries truncated on a nack quorum.
    pub nack_truncations: u64,
    /// Sectors of WALs damaged while their replica was down (the fault atlas's).
    pub wal_damages: u64,
    /// Recoveries that found the WAL damaged: the replica repaired its log from its peers.
    pub recovering_heads: u64,
    /// Sessions' latest replies lost at recoveries and restored from peers, over all replicas.
    pub replies_restored: u64,
    /// Reads of atlas replicas' WALs and client replies that failed or returned a flipped bit.
    pub read_faults: u64,
    /// Grid blocks of atlas replicas' durable checkpoints damaged at the quiet phase's start
    /// (latent sector errors), and blocks their scrubbers found damaged and repaired from peers.
    pub blocks_damaged: u64,
    /// See `blocks_damaged`.
    pub blocks_repaired: u64,
}

/// What the checkers remember of one replica.
struct Checked {
    oracle: Oracle,
    chain: HashChain,
    op_numbers: OpNumbersChecker,
    /// When a crashed replica restarts.
    restart_tick: Option<u64>,
    views: ViewsChecker,
    /// The newest view the replica entered normal status in.
    view_normal: u32,
    /// The replica's count of nack truncations at the last check (since its start).
    nacked: u64,
    /// The replica's count of replies restored at the last check (since its start).
    replies_restored: u64,
    /// The replica's count of blocks repaired at the last check (since its start).
    blocks_repaired: u64,
}

/// A run in progress.
pub struct Cluster {
    options: SimOptions,
    prng: Prng,
    time: SimTime,
    network: Network,
    nodes: Vec<Node>,
    checked: Vec<Checked>,
    clients: Vec<SimClient>,
    requests: Requests,
    replies: RepliesChecker,
    trace: Trace,
    sealer: MessageBuffer,
    /// Which prepare each op committed as, across replicas.
    committed: CommitsChecker,
    /// Which checkpoint each checkpoint op is, across replicas.
    checkpoints: CheckpointsChecker,
    /// When the partition in force (if any) heals.
    partition_until: Option<u64>,
    /// The newest op committed when clients stopped starting requests (the second half of
    /// the quiet phase): every replica must reach it by the end.
    drain_op: Option<u64>,
    /// Every committed prepare (op `n` at `n − 1`), as the first replica to commit it logged
    /// it: what a replica that synced past ops its WAL never held is checked with.
    history: Vec<(Header, Vec<u8>)>,
    /// Replicas with a superblock copy damaged since their last successful open (a bit each).
    superblock_damaged: u8,
    commits: u64,
    crashes: u64,
    stats: RunStats,
}

impl Cluster {
    /// A cluster of freshly formatted replicas and its clients, as `options` say.
    pub fn new(options: SimOptions) -> Cluster {
        let mut prng = Prng::new(options.seed);
        let time = SimTime::new(&mut prng);
        let network = Network::new(options.network, prng.next_u64());
        let batch_size_limit = (options.format.message_size_max as usize) - HEADER_SIZE;
        let mut nodes = Vec::new();
        let mut checked = Vec::new();
        for index in 0..options.replica_count {
            let file_size = options.format.layout().file_size();
            let mut storage = SimStorage::new(file_size, prng.next_u64(), SimFaults::default());
            storage.set_latency(options.latency.clone());
            let format = crate::vsr::data_file::FormatOptions { replica: index, ..options.format };
            let mut node = Node::format(index, &format, storage);
            node.set_bug(options.bug);
            node.set_clock_skew(options.clock_skews[usize::from(index)]);
            node.disk().take_elapsed_ns(); // Formatting is not part of the run's time.
            if options.wal_damage & (1 << index) != 0 {
                node.disk().with(|storage| storage.set_faults(atlas_faults(&options)));
            }
            nodes.push(node);
            checked.push(Checked {
                oracle: Oracle::new(&options.format.config, batch_size_limit),
                chain: HashChain::new(0, root_checksum(options.format.cluster)),
                op_numbers: OpNumbersChecker::new(options.replica_count > 1),
                restart_tick: None,
                views: ViewsChecker::default(),
                view_normal: 0,
                nacked: 0,
                replies_restored: 0,
                blocks_repaired: 0,
            });
        }
        let clients = (0..options.client_count)
            .map(|_| {
                SimClient::new(
                    prng.next_u128() | 1,
                    options.format.cluster,
                    options.replica_count,
                    options.client,
                )
            })
            .collect();
        let requests = Requests::new(prng.next_u64(), options.account_id_max, options.invalid_percent);
        Cluster {
            options,
            prng,
            time,
            network,
            nodes,
            checked,
            clients,
            requests,
            replies: RepliesChecker::new(),
            trace: Trace::new(),
            sealer: MessageBuffer::new(),
            committed: CommitsChecker::new(),
            checkpoints: CheckpointsChecker::new(),
            partition_until: None,
            drain_op: None,
            history: Vec::new(),
            superblock_damaged: 0,
            commits: 0,
            crashes: 0,
            stats: RunStats::default(),
        }
    }

    /// Runs the whole simulation and reports it.
    pub fn run(mut self) -> RunReport {
        let result = self.run_checked();
        for node in &self.nodes {
            let counts = node.disk().with(|storage| storage.fault_counts());
            self.stats.read_faults += counts.read_faults + counts.read_corruptions;
            self.stats.write_faults +=
                counts.write_corruptions + counts.write_misdirections + counts.write_losses;
        }
        RunReport {
            seed: self.options.seed,
            configuration: self.options.describe(),
            commits: self.commits,
            crashes: self.crashes,
            stats: self.stats,
            replies: self.replies.replies_checked(),
            evictions: self.clients.iter().map(SimClient::evictions).sum(),
            trace_hash: self.trace.hash(),
            result,
        }
    }

    fn run_checked(&mut self) -> Result<(), Failure> {
        for index in 0..self.nodes.len() {
            self.recover(index)?;
        }
        let ticks = self.options.ticks + self.options.ticks_quiet;
        let drain_tick = ticks - self.options.ticks_quiet / 2;
        for _ in 0..ticks {
            self.time.advance_tick();
            if self.time.tick() == drain_tick {
                self.drain_op = Some(self.committed.op_max());
            }
            if self.time.tick() == self.options.ticks + 1 {
                self.quiet_begin();
            }
            self.partitions_act();
            self.deliver()?;
            self.clients_act();
            for index in 0..self.nodes.len() {
                self.node_act(index)?;
            }
        }
        self.replies.finish()?;
        progress::check(self.commits)?;
        if self.nodes.len() > 1 && self.stats.view_changes == 0 {
            return Err(Failure::new("progress", "a cluster run completed no view change".into()));
        }
        let in_flight: Vec<(u128, Option<u32>)> =
            self.clients.iter().map(|client| (client.id(), client.in_flight())).collect();
        liveness::check(&in_flight)?;
        let commit_mins: Vec<Option<u64>> =
            self.nodes.iter().map(|node| node.is_up().then(|| node.replica().state().commit_min())).collect();
        convergence::check(&commit_mins, self.drain_op.expect("the run drained"))?;
        self.wal_check()
    }

    /// The WAL checker over every running replica: each op it committed after its checkpoint
    /// is intact in its WAL, as the cluster committed it.
    fn wal_check(&self) -> Result<(), Failure> {
        let layout = self.options.format.layout();
        for (index, node) in self.nodes.iter().enumerate() {
            if !node.is_up() || node.replica().recovering_head().is_some() {
                continue;
            }
            let state = node.replica().state();
            for op in state.data_file().checkpoint_op() + 1..=state.commit_min() {
                if slot_write_faulted(node.disk(), &layout, op) {
                    // Corrupted as it was written: the replica finds out when it reads the slot
                    // (a restart, a peer's repair), not before.
                    continue;
                }
                let (prepare, body) = read_prepare(node.disk(), &layout, op);
                let redundant = read_redundant_header(node.disk(), &layout, op);
                let committed =
                    self.committed.checksum(op).expect("a committed op is in the commits checker");
                wal::check_slot(index as u8, op, &prepare, &body, &redundant, committed)?;
            }
            sessions::check(index as u8, state.clients())?;
            let grid = state.data_file().grid();
            let layout = state.data_file().superblock().layout();
            let mut block = crate::storage::AlignedBuffer::new(layout.block_size as usize);
            for block_index in 0..grid.durable_block_count() {
                let reference = grid.durable_block(block_index).expect("within the count");
                node.disk().peek(layout.block_offset(reference.address), &mut block);
                grid::check_block(index as u8, &reference, &block)?;
            }
        }
        Ok(())
    }

    /// Begins and heals partitions of the replicas (in the safety phase only): symmetric, two
    /// groups that cannot reach each other, or asymmetric, one group that cannot reach the
    /// other while it hears from it.
    fn partitions_act(&mut self) {
        let now = self.time.tick();
        if let Some(until) = self.partition_until {
            if now >= until || !self.faulty() {
                self.network.heal();
                self.partition_until = None;
            }
            return;
        }
        // (No draw for a cluster of one: its runs stay what they were before partitions.)
        if self.nodes.len() == 1
            || !self.faulty()
            || !self.prng.chance(self.options.partition_per_mille, 1000)
        {
            return;
        }
        let count = self.options.replica_count;
        // A group: a non-empty proper subset of the replicas.
        let group = 1 + self.prng.below((1u64 << count) - 2) as u8;
        let inside = move |replica: u8| group & (1 << replica) != 0;
        if self.prng.chance(1, 2) {
            self.network.partition(count, |from, to| inside(from) != inside(to));
        } else {
            self.network.partition(count, |from, to| inside(from) && !inside(to));
        }
        self.partition_until = Some(now + 1 + self.prng.below(PARTITION_TICKS_MAX));
        self.stats.partitions += 1;
        self.trace.record(TraceEvent::Partitioned, &[u128::from(now), u128::from(group)]);
    }

    /// The quiet phase begins. Faulty wall clocks are set right (as an operator fixes NTP), so
    /// that a faulty clock and a replica stopped behind together — two faults of a cluster of
    /// three — do not leave fewer agreeing clocks than a quorum for the liveness check. Crashes
    /// armed on disks and not yet reached are disarmed: one reached at the end of the run would
    /// leave its replica down for the convergence check.
    fn quiet_begin(&mut self) {
        self.grid_damage();
        for node in &mut self.nodes {
            if !node.disk().crashed() {
                node.disk().crash_disarm();
                node.disk().with(|storage| storage.set_faults(SimFaults::default()));
            }
            let skew = node.clock_skew();
            if skew.offset_ns.unsigned_abs() > CLOCK_OFFSET_GOOD_NS_MAX {
                node.set_clock_skew(ClockSkew { offset_ns: 0, ..skew });
            }
        }
    }

    /// Whether crashes may happen now (not in the quiet phase).
    fn faulty(&self) -> bool {
        self.time.tick() <= self.options.ticks
    }

    fn deliver(&mut self) -> Result<(), Failure> {
        let now = self.time.tick();
        while let Some(packet) = self.network.deliver(now) {
            let header: Header = bytemuck::pod_read_unaligned(&packet.message[..HEADER_SIZE]);
            self.trace
                .record(TraceEvent::Delivered, &[u128::from(now), address_code(packet.to), header.checksum]);
            match packet.to {
                Address::Replica(index) => {
                    let index = index as usize;
                    let mut outbox = Vec::new();
                    let received = self.nodes[index].on_message(&self.time, &packet.message, &mut outbox);
                    self.send_all(outbox);
                    match received {
                        Ok(Received::Admitted(Admission::Reply(_))) => self.stats.replies_resent += 1,
                        Ok(Received::Admitted(Admission::Drop)) => self.stats.requests_dropped += 1,
                        Ok(Received::Admitted(Admission::Close(reason))) => {
                            return Err(Failure::new(
                                "replica",
                                format!("closed a simulated client: {reason}"),
                            ));
                        }
                        Ok(Received::Invalid) => {
                            return Err(Failure::new(
                                "replica",
                                "a simulated message's framing was refused".into(),
                            ));
                        }
                        Ok(Received::Peer(peer, committed)) => {
                            match peer {
                                PeerMessage::Handled => self.stats.peer_handled += 1,
                                PeerMessage::Ignored(_) => self.stats.peer_ignored += 1,
                            }
                            if committed > 0 {
                                self.stats.commit_calls += 1;
                                self.stats.commit_calls_single += u64::from(committed == 1);
                                self.catch_up(index)?;
                            }
                        }
                        Ok(Received::Down | Received::Admitted(_)) => {}
                        Err(NodeError::Crashed) => self.crash(index),
                        Err(NodeError::Fatal(message)) => {
                            return Err(Failure::new(
                                "replica",
                                format!("replica {index} failed: {message}"),
                            ));
                        }
                    }
                }
                Address::Client(id) => {
                    let client = self.clients.iter_mut().find(|client| client.id() == id);
                    let client = client.expect("packets go to existing clients");
                    if header.command() == Some(Command::Reply) {
                        self.replies.received(id, &header, &packet.message[HEADER_SIZE..])?;
                    }
                    client.on_message(&header);
                }
            }
        }
        Ok(())
    }

    fn clients_act(&mut self) {
        let now = self.time.tick();
        let start_new = self.drain_op.is_none();
        let mut sends: Vec<Send> = Vec::new();
        for client in &mut self.clients {
            client.tick(now, start_new, &mut self.prng, &mut self.requests, &mut self.sealer, &mut sends);
        }
        for send in sends {
            let header: Header = bytemuck::pod_read_unaligned(&send.packet.message[..HEADER_SIZE]);
            if send.next {
                self.replies.sent(header.checksum, &send.packet.message[HEADER_SIZE..]);
            }
            self.trace.record(TraceEvent::Sent, &[u128::from(now), header.client, header.checksum]);
            self.network.send(now, send.packet);
        }
    }

    fn send_all(&mut self, outbox: Vec<Packet>) {
        for packet in outbox {
            let between_replicas =
                matches!(packet.to, Address::Replica(_)) && matches!(packet.from, Address::Replica(_));
            let copies = self.network.send(self.time.tick(), packet);
            if between_replicas {
                self.stats.peer_sent += copies as u64;
                self.stats.peer_lost += u64::from(copies == 0);
            }
        }
    }

    /// Whether replica `index` may crash: any replica, the primary included (a view change
    /// replaces it).
    fn crashable(&self, index: usize) -> bool {
        index < self.nodes.len()
    }

    fn node_act(&mut self, index: usize) -> Result<(), Failure> {
        if !self.nodes[index].is_up() {
            if self.checked[index].restart_tick.is_some_and(|tick| tick <= self.time.tick()) {
                self.recover(index)?;
            }
            return Ok(());
        }
        if self.faulty() && self.crashable(index) && self.prng.chance(self.options.crash_per_mille, 1000) {
            if self.prng.chance(1, 8) {
                // At once, between two I/Os (unsynced writes are then at the mercy of the crash).
                self.crash(index);
                return Ok(());
            }
            if !self.nodes[index].disk().crashed() {
                let steps = self.prng.below(CRASH_STEPS_AHEAD_MAX + 1);
                self.nodes[index].disk().crash_after(steps);
            }
        }
        let mut outbox = Vec::new();
        match self.nodes[index].on_tick(&self.time, &mut outbox) {
            Ok(()) => {}
            Err(NodeError::Crashed) => {
                self.send_all(outbox);
                self.crash(index);
                return Ok(());
            }
            Err(NodeError::Fatal(message)) => {
                return Err(Failure::new("replica", format!("replica {index} failed: {message}")));
            }
        }
        if let Some(op) = self.nodes[index].take_synced() {
            self.synced(index, op)?;
        }
        self.views_check(index)?;
        let node = &self.nodes[index];
        let synchronized = node.replica().clock().realtime_synchronized(&self.time.skewed(node.clock_skew()));
        self.stats.clock_synchronized_ticks += u64::from(synchronized.is_some());
        clocks::check_synchronized(index as u8, synchronized, self.time.realtime())?;
        let committed = match self.options.stage_latency_ticks_max {
            Some(latency) => {
                let stepped = self.nodes[index].step(&self.time, &mut self.prng, latency, &mut outbox);
                stepped.map(|stepped| {
                    let ops = stepped.committed;
                    self.stats.commit_calls += u64::from(ops > 0);
                    self.stats.commit_calls_single += u64::from(ops == 1);
                    for (count, stages) in self.stats.stages.iter_mut().zip(stepped.stages) {
                        *count += stages;
                    }
                    self.stats.commit_waits += stepped.commit_waits;
                    ops > 0
                })
            }
            None => {
                if !self.nodes[index].has_queued() || !self.prng.chance(self.options.commit_percent, 100) {
                    return Ok(());
                }
                let op_before = self.nodes[index].replica().state().commit_min();
                let committed = self.nodes[index].commit(&self.time, &mut outbox);
                if committed.is_ok() {
                    let ops = self.nodes[index].replica().state().commit_min() - op_before;
                    self.stats.commit_calls += 1;
                    self.stats.commit_calls_single += u64::from(ops == 1);
                }
                committed.map(|()| true)
            }
        };
        self.time.advance_ns(self.nodes[index].disk().take_elapsed_ns());
        for packet in &outbox {
            let header: Header = bytemuck::pod_read_unaligned(&packet.message[..HEADER_SIZE]);
            // (A reply to a replica is a peer's lost reply restored, not an acknowledgement.)
            if header.command() == Some(Command::Reply) && matches!(packet.to, Address::Client(_)) {
                self.checked[index].op_numbers.acknowledged(header.op);
            }
        }
        self.send_all(outbox);
        match committed {
            Ok(true) => self.catch_up(index),
            Ok(false) => Ok(()),
            Err(NodeError::Crashed) => {
                self.crash(index);
                Ok(())
            }
            Err(NodeError::Fatal(message)) => Err(Failure::new(
                "replica",
                format!("replica {index}: commit failed without a crash: {message}"),
            )),
        }
    }

    /// Checks the views of running replica `index`, and counts the view changes it completed.
    fn views_check(&mut self, index: usize) -> Result<(), Failure> {
        let replica = self.nodes[index].replica();
        let (view, log_view) = (replica.view(), replica.log_view());
        let normal = replica.status() == crate::vsr::replica::Status::Normal;
        let nacked = replica.nack_truncations();
        let checked = &mut self.checked[index];
        checked.views.check(view, log_view)?;
        // The replica's count starts again from 0 when it restarts (and so do the others).
        self.stats.nack_truncations += nacked - checked.nacked;
        checked.nacked = nacked;
        let (_, repaired) = replica.blocks_scrubbed();
        self.stats.blocks_repaired += repaired - checked.blocks_repaired;
        checked.blocks_repaired = repaired;
        let restored = replica.replies_restored();
        self.stats.replies_restored += restored - checked.replies_restored;
        checked.replies_restored = restored;
        self.stats.view_max = self.stats.view_max.max(view);
        if normal && view > checked.view_normal {
            checked.view_normal = view;
            self.stats.view_changes += 1;
            self.trace.record(
                TraceEvent::ViewNormal,
                &[u128::from(self.time.tick()), index as u128, u128::from(view)],
            );
        }
        Ok(())
    }

    /// Replica `index` finished a state sync and runs again from the checkpoint at `op`: the
    /// checkers catch up with the checkpoint (its ops from the cluster's history: its WAL does
    /// not hold them), and its state must equal the model's there ("a replica that synced
    /// equals the model").
    fn synced(&mut self, index: usize, op: u64) -> Result<(), Failure> {
        self.stats.syncs += 1;
        self.trace.record(TraceEvent::Synced, &[u128::from(self.time.tick()), index as u128, u128::from(op)]);
        let state = self.nodes[index].replica().state();
        let numbers =
            OpNumbers { op: state.op(), commit_min: state.commit_min(), commit_max: state.commit_max() };
        let checked = &mut self.checked[index];
        // Its running numbers and counts start again, as at a restart.
        checked.op_numbers.crashed();
        checked.nacked = 0;
        checked.replies_restored = 0;
        checked.blocks_repaired = 0;
        checked.op_numbers.check_recovered(numbers)?;
        self.catch_up(index)
    }

    /// Takes replica `index` down: its disk keeps, loses or tears the unsynced writes.
    fn crash(&mut self, index: usize) {
        let mode = match self.prng.below(8) {
            0 => CrashMode::LoseAll,
            1 => CrashMode::KeepAll,
            _ => CrashMode::Torn { seed: self.prng.next_u64() },
        };
        let node = &mut self.nodes[index];
        let op = if node.is_up() { node.replica().state().op() } else { 0 };
        // A block of its durable checkpoint, which the damage may hit.
        let grid = node.is_up().then(|| node.replica().state().data_file().grid());
        let count = grid.map_or(0, |grid| grid.durable_block_count() as u64);
        let block =
            grid.filter(|_| count > 0).map(|grid| grid.durable_block(self.prng.below(count) as usize));
        let block = block.map(|block| block.expect("within the count"));
        node.crash(mode);
        // The restart of the disk healed its faults; an atlas replica's come back.
        let damageable = self.options.wal_damage & (1 << index) != 0 && self.faulty();
        if damageable {
            let faults = atlas_faults(&self.options);
            self.nodes[index].disk().with(|storage| storage.set_faults(faults));
        }
        self.crashes += 1;
        if damageable && self.prng.chance(1, 2) {
            self.wal_damage(index, op);
        }
        if damageable && self.superblock_damaged & (1 << index) == 0 && self.prng.chance(1, 8) {
            // One copy of four: the newest sequence stays intact in two or more.
            let copy = self.prng.below(SUPERBLOCK_COPIES);
            let damage = match self.prng.below(3) {
                0 => DiskDamage::Flip,
                1 => DiskDamage::Zero,
                _ => DiskDamage::CopyFrom(Layout::superblock_offset((copy + 1) % SUPERBLOCK_COPIES)),
            };
            self.nodes[index].disk().damage(Layout::superblock_offset(copy), damage);
            self.superblock_damaged |= 1 << index;
            self.stats.superblocks_damaged += 1;
        }
        if damageable && self.prng.chance(1, 32) {
            // Its data file is lost: `ledger recover` writes a new one with an unknown log.
            self.nodes[index].replace_data_file(&self.options.format);
            self.stats.data_files_replaced += 1;
            // The new replica starts from view 0, as a new process: its views are checked
            // from there (it takes part in no view change with a log until it holds one's).
            self.checked[index].views = ViewsChecker::default();
        } else if let (true, Some(block)) = (damageable, block) {
            if self.prng.chance(1, 8) {
                // Its restart finds the checkpoint damaged and syncs it from its peers.
                let offset = self.options.format.layout().block_offset(block.address);
                self.nodes[index].disk().damage(offset, DiskDamage::Flip);
                self.stats.checkpoints_damaged += 1;
            }
        }
        self.trace
            .record(TraceEvent::Crashed, &[u128::from(self.time.tick()), index as u128, u128::from(op)]);
        self.network.drop_to(Address::Replica(index as u8));
        let checked = &mut self.checked[index];
        checked.op_numbers.crashed();
        checked.nacked = 0;
        checked.replies_restored = 0;
        checked.blocks_repaired = 0;
        checked.restart_tick = Some(self.time.tick() + 1 + self.prng.below(DOWN_TICKS_MAX));
    }

    /// Latent sector errors in the grid: one block of the durable checkpoint of each atlas
    /// replica that runs, with a bit flipped, as the quiet phase begins (no crash follows, so
    /// no restart needs the block before the scrubber finds it and a peer's copy repairs it).
    fn grid_damage(&mut self) {
        for index in 0..self.nodes.len() {
            let node = &self.nodes[index];
            if self.options.wal_damage & (1 << index) == 0 || !node.is_up() {
                continue;
            }
            let grid = node.replica().state().data_file().grid();
            let count = grid.durable_block_count() as u64;
            if count == 0 {
                continue;
            }
            let reference = grid.durable_block(self.prng.below(count) as usize).expect("within the count");
            let offset = self.options.format.layout().block_offset(reference.address);
            node.disk().damage(offset, DiskDamage::Flip);
            self.stats.blocks_damaged += 1;
        }
    }

    /// Damages one to three sectors of the WAL (or the client replies) of replica `index`,
    /// which is down and had prepared up to `op`: a redundant header sector or one of a
    /// prepare's first two sectors — half the time of one of its newest four ops, whose
    /// acknowledgements matter most — or, one time in four, a client-reply slot's first
    /// sector, with a bit flipped, zeroed, or overwritten by another such sector (a misdirected
    /// write).
    fn wal_damage(&mut self, index: usize, op: u64) {
        let layout = self.options.format.layout();
        let sector = SECTOR_SIZE as u64;
        let pick = |prng: &mut Prng| {
            if prng.chance(1, 4) {
                return layout.client_reply_offset(prng.below(layout.clients_max));
            }
            let slot = if prng.chance(1, 2) {
                op.saturating_sub(prng.below(4)) % layout.journal_slot_count
            } else {
                prng.below(layout.journal_slot_count)
            };
            if prng.chance(1, 2) {
                let offset = layout.wal_headers_offset() + slot * HEADER_SIZE as u64;
                offset - offset % sector
            } else {
                layout.wal_prepare_offset(slot) + prng.below(2) * sector
            }
        };
        for _ in 0..1 + self.prng.below(3) {
            let offset = pick(&mut self.prng);
            let damage = match self.prng.below(3) {
                0 => DiskDamage::Flip,
                1 => DiskDamage::Zero,
                _ => DiskDamage::CopyFrom(pick(&mut self.prng)),
            };
            if damage == DiskDamage::CopyFrom(offset) {
                continue;
            }
            self.nodes[index].disk().damage(offset, damage);
            self.stats.wal_damages += 1;
            self.trace.record(
                TraceEvent::Damaged,
                &[u128::from(self.time.tick()), index as u128, u128::from(offset)],
            );
        }
    }

    /// Starts replica `index`, crashing its recovery up to `RECOVERY_CRASHES_MAX` times, then
    /// catches the checkers up with what it recovered.
    fn recover(&mut self, index: usize) -> Result<(), Failure> {
        let mut recovery_crashes = 0;
        loop {
            let crash_armed = recovery_crashes < RECOVERY_CRASHES_MAX
                && self.faulty()
                && self.crashable(index)
                && self.prng.chance(1, 4);
            if crash_armed {
                let steps = self.prng.below(CRASH_STEPS_AHEAD_MAX + 1);
                self.nodes[index].disk().crash_after(steps);
            }
            let opened = self.nodes[index].open();
            self.time.advance_ns(self.nodes[index].disk().take_elapsed_ns());
            match opened {
                Ok(()) => break,
                Err(NodeError::Crashed) => {
                    recovery_crashes += 1;
                    self.stats.recovery_crashes += 1;
                    self.crash(index);
                }
                Err(NodeError::Fatal(message)) => {
                    return Err(Failure::new("recovery", format!("replica {index} cannot start: {message}")));
                }
            }
        }
        assert!(!self.nodes[index].disk().crashed(), "an open that succeeded did not hit its crash");
        // Its open wrote every superblock copy again.
        self.superblock_damaged &= !(1 << index);
        if self.nodes[index].replica().recovering_head().is_some() {
            assert!(self.options.wal_damage & (1 << index) != 0, "only a damaged WAL leaves a head in doubt");
            self.stats.recovering_heads += 1;
        }
        // A crash armed for recovery that recovery did not reach stays armed for the run.
        let checked = &mut self.checked[index];
        checked.restart_tick = None;
        let state = self.nodes[index].replica().state();
        let numbers =
            OpNumbers { op: state.op(), commit_min: state.commit_min(), commit_max: state.commit_max() };
        self.trace.record(
            TraceEvent::Recovered,
            &[u128::from(self.time.tick()), index as u128, u128::from(numbers.commit_min)],
        );
        // A backup executes after a restart only what its log proves committed; the rest it
        // executes again once its primary says so (deterministically: the same state).
        if numbers.commit_min < checked.chain.op() && self.nodes.len() == 1 {
            return Err(Failure::new(
                "op numbers",
                format!(
                    "replica {index} recovered to commit_min {}, below op {}, which was committed durably",
                    numbers.commit_min,
                    checked.chain.op()
                ),
            ));
        }
        checked.op_numbers.check_recovered(numbers)?;
        self.catch_up(index)
    }

    /// Advances the model of replica `index` through every op it committed since the last
    /// check, read from its WAL, and checks the state, the chain and the op numbers.
    fn catch_up(&mut self, index: usize) -> Result<(), Failure> {
        let node = &self.nodes[index];
        let checked = &mut self.checked[index];
        let replica = node.replica();
        checked.views.check(replica.view(), replica.log_view())?;
        if replica.syncing() {
            return Ok(()); // Its state is not loaded: it is checked once the sync ends.
        }
        let state = replica.state();
        let checkpoint = state.data_file().superblock().checkpoint;
        self.checkpoints.check(index as u8, checkpoint.op, checkpoint.id())?;
        let layout = state.data_file().superblock().layout();
        let commit_min = state.commit_min();
        let numbers = OpNumbers { op: state.op(), commit_min, commit_max: state.commit_max() };
        if commit_min < checked.chain.op() {
            // A restarted backup executing again what it executed before its crash: its state
            // is compared once it is past the ops the model has seen.
            return checked.op_numbers.check(numbers);
        }
        let op_first = checked.chain.op() + 1;
        // Every op since the last check is still in the WAL (a commit takes at most the queue),
        // but those a state sync installed with its checkpoint: the checkpoint's identity
        // (`checkpoints agree`) vouches for them, and the cluster's history holds them.
        let synced_ops = checkpoint.op.saturating_sub(checked.chain.op());
        assert!(
            commit_min + 1 - op_first <= layout.journal_slot_count + synced_ops,
            "the checkers fell behind the WAL"
        );
        for op in op_first..=commit_min {
            let (header, body) = match self.history.get(op as usize - 1) {
                Some((header, body)) if op <= checkpoint.op => (*header, body.clone()),
                _ => read_prepare_intended(node.disk(), &layout, op),
            };
            if op <= checkpoint.op && header.op != op {
                // Synced from a checkpoint whose ops no replica's check has logged yet (the
                // replica that made it crashed before its check): checked at the next call.
                return Ok(());
            }
            checked.chain.check(&header, &body)?;
            let operation = Operation::from_u8(header.operation).ok_or_else(|| {
                Failure::new("hash chain", format!("op {op}: unknown operation {}", header.operation))
            })?;
            let body_valid = matches!(operation, Operation::Pulse | Operation::Register)
                || StateMachine::input_valid(
                    operation,
                    &body,
                    layout.message_size_max as usize - HEADER_SIZE,
                )
                .is_ok();
            if !body_valid {
                return Err(Failure::new(
                    "hash chain",
                    format!("op {op}: the logged body is not a valid request"),
                ));
            }
            let expected = checked.oracle.apply(operation, header.timestamp, &body);
            if self.committed.committed(index as u8, op, header.checksum)? {
                self.history.push((header, body.clone()));
                clocks::check_timestamp(op, header.timestamp, self.time.realtime())?;
                self.replies.committed(&header, &body, expected)?;
                self.stats.pulses += u64::from(operation == Operation::Pulse);
            }
            self.trace.record(
                TraceEvent::Committed,
                &[u128::from(op), header.checksum, u128::from(header.timestamp)],
            );
            self.commits += 1;
        }
        state::check(state.state_machine(), checked.oracle.model(), commit_min)?;
        checked.op_numbers.check(numbers)
    }
}

/// The faults of an atlas replica's disk while it runs: transient read faults (failed reads,
/// and reads that return a flipped bit) within its WAL and client replies, 1 % of reads each;
/// writes stored with a flipped bit in its WAL, client replies and grid, 2 % of writes; and in
/// its grid, writes stored at another offset of the grid (a misdirected write, which damages
/// what it lands on), 2 %; and writes lost (reported done, nothing stored), 1 %, anywhere but
/// in the redundant headers. (Nor misdirection in the WAL: a prepare and its redundant header
/// both lost, or misdirected away, would leave the slot as if never written — an
/// acknowledgement forgotten without a trace, which no protocol can tell from a torn append:
/// beyond the fault model. One of the two always survives here, and recovery finds the other
/// damaged.)
fn atlas_faults(options: &SimOptions) -> SimFaults {
    let layout = options.format.layout();
    SimFaults {
        read_fault_ppm: 10_000,
        read_corruption_ppm: 10_000,
        write_corruption_ppm: 20_000,
        write_misdirection_ppm: 20_000,
        faulty_area: Some(layout.wal_headers_offset()..layout.grid_offset()),
        write_faulty_area: Some(layout.wal_headers_offset()..layout.file_size()),
        misdirection_area: Some(layout.grid_offset()..layout.file_size()),
        write_loss_ppm: 10_000,
        loss_area: Some(layout.wal_prepare_offset(0)..layout.file_size()),
    }
}

/// A number for `address` in the trace.
fn address_code(address: Address) -> u128 {
    match address {
        Address::Replica(index) => u128::from(index),
        Address::Client(id) => id,
    }
}

/// Runs seed `seed`.
pub fn run_seed(seed: u64) -> RunReport {
    Cluster::new(SimOptions::of_seed(seed)).run()
}
