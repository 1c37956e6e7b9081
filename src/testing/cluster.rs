//! One simulated run: a cluster of replicas (one today, in a `Vec` so that the cluster issue
//! adds more without reshaping anything), its clients, the network between them, simulated
//! time, and the checkers, all driven by one seed.
//!
//! Each tick: packets due are delivered (to a replica: admission; to a client: the reply checker
//! first); clients act; each running replica ticks (pulses) and, with `commit_percent` chance,
//! commits what is queued; after every commit the reference model is advanced with the ops the
//! replica logged, and the state, hash-chain and op-number checkers run. Crashes are armed at
//! random and hit at a later I/O (or at once, between I/Os); the replica stays down a few ticks,
//! and recovery may itself crash. A quiet phase without crashes ends the run.

use super::checkers::hash_chain::HashChain;
use super::checkers::op_numbers::{OpNumbers, OpNumbersChecker};
use super::checkers::replies::RepliesChecker;
use super::checkers::{progress, state, Failure};
use super::client::{Send, SimClient};
use super::network::{Address, Network, Packet};
use super::node::{Node, NodeError, Received};
use super::options::SimOptions;
use super::oracle::Oracle;
use super::requests::Requests;
use super::time::SimTime;
use super::trace::{Trace, TraceEvent};
use super::wal::read_prepare;
use crate::constants::HEADER_SIZE;
use crate::net::codec::MessageBuffer;
use crate::operation::Operation;
use crate::prng::Prng;
use crate::state_machine::StateMachine;
use crate::storage::{CrashMode, SimFaults, SimStorage};
use crate::vsr::admission::Admission;
use crate::vsr::data_file::root_checksum;
use crate::vsr::header::{Command, Header};

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
}

/// What the checkers remember of one replica.
struct Checked {
    oracle: Oracle,
    chain: HashChain,
    op_numbers: OpNumbersChecker,
    /// When a crashed replica restarts.
    restart_tick: Option<u64>,
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
    commits: u64,
    crashes: u64,
    stats: RunStats,
}

impl Cluster {
    /// A cluster of one freshly formatted replica and its clients, as `options` say.
    pub fn new(options: SimOptions) -> Cluster {
        let mut prng = Prng::new(options.seed);
        let time = SimTime::new(&mut prng);
        let network = Network::new(options.network, prng.next_u64());
        let mut storage =
            SimStorage::new(options.format.layout().file_size(), prng.next_u64(), SimFaults::default());
        storage.set_latency(options.latency.clone());
        let node = Node::format(0, &options.format, storage);
        node.disk().take_elapsed_ns(); // Formatting is not part of the run's time.
        let batch_size_limit = (options.format.message_size_max as usize) - HEADER_SIZE;
        let checked = Checked {
            oracle: Oracle::new(&options.format.config, batch_size_limit),
            chain: HashChain::new(0, root_checksum(options.format.cluster)),
            op_numbers: OpNumbersChecker::new(),
            restart_tick: None,
        };
        let clients = (0..options.client_count)
            .map(|_| SimClient::new(prng.next_u128() | 1, options.format.cluster, options.client))
            .collect();
        let requests = Requests::new(prng.next_u64(), options.account_id_max, options.invalid_percent);
        Cluster {
            options,
            prng,
            time,
            network,
            nodes: vec![node],
            checked: vec![checked],
            clients,
            requests,
            replies: RepliesChecker::new(),
            trace: Trace::new(),
            sealer: MessageBuffer::new(),
            commits: 0,
            crashes: 0,
            stats: RunStats::default(),
        }
    }

    /// Runs the whole simulation and reports it.
    pub fn run(mut self) -> RunReport {
        let result = self.run_checked();
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
        for _ in 0..ticks {
            self.time.advance_tick();
            self.deliver()?;
            self.clients_act();
            for index in 0..self.nodes.len() {
                self.node_act(index)?;
            }
        }
        self.replies.finish()?;
        progress::check(self.commits)
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
                    let mut outbox = Vec::new();
                    match self.nodes[index as usize].on_message(&packet.message, &mut outbox) {
                        Received::Admitted(Admission::Reply(_)) => self.stats.replies_resent += 1,
                        Received::Admitted(Admission::Drop) => self.stats.requests_dropped += 1,
                        Received::Admitted(Admission::Close(reason)) => {
                            return Err(Failure::new(
                                "replica",
                                format!("closed a simulated client: {reason}"),
                            ));
                        }
                        Received::Invalid => {
                            return Err(Failure::new(
                                "replica",
                                "a simulated client's framing was refused".into(),
                            ));
                        }
                        Received::Down | Received::Admitted(_) => {}
                    }
                    self.send_all(outbox);
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
        let mut sends: Vec<Send> = Vec::new();
        for client in &mut self.clients {
            client.tick(now, &mut self.prng, &mut self.requests, &mut self.sealer, &mut sends);
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
            self.network.send(self.time.tick(), packet);
        }
    }

    fn node_act(&mut self, index: usize) -> Result<(), Failure> {
        if !self.nodes[index].is_up() {
            if self.checked[index].restart_tick.is_some_and(|tick| tick <= self.time.tick()) {
                self.recover(index)?;
            }
            return Ok(());
        }
        if self.faulty() && self.prng.chance(self.options.crash_per_mille, 1000) {
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
        self.nodes[index].on_tick(&self.time);
        let mut outbox = Vec::new();
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
            if header.command() == Some(Command::Reply) {
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
            Err(NodeError::Fatal(message)) => {
                Err(Failure::new("replica", format!("commit failed without a crash: {message}")))
            }
        }
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
        node.crash(mode);
        self.crashes += 1;
        self.trace
            .record(TraceEvent::Crashed, &[u128::from(self.time.tick()), index as u128, u128::from(op)]);
        self.network.drop_to(Address::Replica(index as u8));
        let checked = &mut self.checked[index];
        checked.op_numbers.crashed();
        checked.restart_tick = Some(self.time.tick() + 1 + self.prng.below(DOWN_TICKS_MAX));
    }

    /// Starts replica `index`, crashing its recovery up to `RECOVERY_CRASHES_MAX` times, then
    /// catches the checkers up with what it recovered.
    fn recover(&mut self, index: usize) -> Result<(), Failure> {
        let mut recovery_crashes = 0;
        loop {
            let crash_armed =
                recovery_crashes < RECOVERY_CRASHES_MAX && self.faulty() && self.prng.chance(1, 4);
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
        if numbers.commit_min < checked.chain.op() {
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
        let state = node.replica().state();
        let layout = state.data_file().superblock().layout();
        let commit_min = state.commit_min();
        let op_first = checked.chain.op() + 1;
        // Every op since the last check is still in the WAL (a commit takes at most the queue).
        assert!(commit_min + 1 - op_first <= layout.journal_slot_count, "the checkers fell behind the WAL");
        for op in op_first..=commit_min {
            let (header, body) = read_prepare(node.disk(), &layout, op);
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
            self.replies.committed(&header, &body, expected)?;
            self.stats.pulses += u64::from(operation == Operation::Pulse);
            self.trace.record(
                TraceEvent::Committed,
                &[u128::from(op), header.checksum, u128::from(header.timestamp)],
            );
            self.commits += 1;
        }
        state::check(state.state_machine(), checked.oracle.model(), commit_min)?;
        let numbers = OpNumbers { op: state.op(), commit_min, commit_max: state.commit_max() };
        checked.op_numbers.check(numbers)
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
