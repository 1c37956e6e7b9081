//! One replica as the simulator runs it: its disk, and the replica while it is up. This is the
//! only code that calls into `Replica` and carries out what it decides, the way `server` does
//! over sockets and io_uring: an admission's stored reply or eviction is sent back, a close
//! drops the message, and the replies and evictions that commits report are sent to their
//! clients.
//!
//! Two ways to drive the disk, both of them the replica's real interfaces:
//! - [`Node::commit`]: `commit_queued`, which waits for every write (tests and tools do this).
//! - [`Node::step`]: as the server does, one stage of each write stream in flight at a time,
//!   each completing after a seeded number of ticks, stages of different streams completing
//!   in any order, and the replica executing and answering while they are in flight. A stage's
//!   writes reach the disk when it completes, from the replica's own buffers; each buffer's
//!   checksum taken when the stage began must still match then (a replica that changed a
//!   buffer under a write in flight would tear real data on a real disk).

use xxhash_rust::xxh3::xxh3_128;

use super::disk::SimDisk;
use super::network::{Address, Packet};
use super::time::{ClockSkew, SimTime};
use crate::constants::HEADER_SIZE;
use crate::net::codec::{validate_body, validate_header, MessageBuffer};
use crate::prng::Prng;
use crate::storage::{CrashMode, SimStorage};
use crate::storage::{Storage, Write};
use crate::vsr::admission::Admission;
use crate::vsr::data_file::{DataFile, FormatOptions};
use crate::vsr::header::{Command, Header};
use crate::vsr::outbox::Destination;
use crate::vsr::replica::{InjectedBug, PeerMessage, Replica};
use crate::vsr::replica_state::ReplicaState;
use crate::vsr::write_stage::{Stream, STAGE_WRITES_MAX, STREAMS};

/// Why a replica stopped.
#[derive(Debug)]
pub enum NodeError {
    /// The simulated disk crashed the process (an armed crash): restart it.
    Crashed,
    /// Anything else: a bug (the simulated disk injects no other fault today).
    Fatal(String),
}

/// What happened to one message a replica received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// The replica was down: the message was lost.
    Down,
    /// The framing was invalid: the connection would be closed.
    Invalid,
    /// The replica's admission decision on a request (already carried out).
    Admitted(Admission),
    /// What the replica made of another replica's message (its answers are in the outbox),
    /// and how many ops it committed after it (a `prepare_ok` or a commit point can let it).
    Peer(PeerMessage, u64),
}

/// A replica and its disk.
pub struct Node {
    index: u8,
    cluster: u128,
    disk: SimDisk,
    replica: Option<Replica<SimDisk>>,
    /// Where a received message is copied, as the server's decoder holds it: 16-byte aligned.
    receive: MessageBuffer,
    /// The stages in flight ([`Node::step`]), at most one per stream.
    in_flight: Vec<StageInFlight>,
    /// A bug planted in the replica at every start.
    bug: Option<InjectedBug>,
    /// How the replica's wall clock departs from true time.
    skew: ClockSkew,
    /// The harness stepped the wall clock since the replica's last tick (it may report it).
    clock_stepped: bool,
    /// The replica finished a state sync and was opened again on the checkpoint of this op,
    /// not yet taken by the harness ([`Node::take_synced`]).
    synced: Option<u64>,
}

/// What one [`Node::step`] did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stepped {
    /// Ops committed.
    pub committed: u64,
    /// Stages completed, per stream (indexed as `STREAMS`).
    pub stages: [u64; 3],
    /// Times committing stopped to wait for a stage (a reply slot's write, or a checkpoint).
    pub commit_waits: u64,
}

/// One write of a stage in flight: where it goes, and the replica's buffer it comes from.
struct WriteInFlight {
    offset: u64,
    data: *const u8,
    size: usize,
    /// The buffer's checksum when the stage began.
    checksum: u128,
}

/// A stage of one write stream on its way to the disk.
struct StageInFlight {
    stream: Stream,
    writes: Vec<WriteInFlight>,
    sync: bool,
    /// The tick at which it completes.
    done_tick: u64,
}

impl Node {
    /// Replica `index` on a freshly formatted `storage` (not yet started: call [`Node::open`]).
    pub fn format(index: u8, options: &FormatOptions, storage: SimStorage) -> Node {
        let disk = SimDisk::new(storage);
        DataFile::format(disk.clone(), options).expect("formatting a fault-free simulated disk succeeds");
        Node {
            index,
            cluster: options.cluster,
            disk,
            replica: None,
            receive: MessageBuffer::new(),
            in_flight: Vec::new(),
            bug: None,
            skew: ClockSkew::default(),
            clock_stepped: false,
            synced: None,
        }
    }

    /// The replica's data file is lost (the replica is down): its disk is replaced by a blank
    /// one, on which `ledger recover` writes a data file for `options` with an unknown log
    /// ([`DataFile::format_recovering`]).
    pub fn replace_data_file(&mut self, options: &FormatOptions) {
        assert!(self.replica.is_none(), "the replica is down");
        // A new file on a new disk: written whole, whatever faults its replica's disk has later.
        // A new file on a new disk: zeros, not the lost file's bytes (writes that blank it could
        // be lost by the disk's faults, leaving the old file's prepares in place).
        let size = self.disk.size();
        self.disk.with(|storage| storage.zero(0, size));
        let options = FormatOptions { replica: self.index, ..*options };
        DataFile::format_recovering(self.disk.clone(), &options)
            .expect("formatting a simulated disk succeeds");
    }

    /// Sets how the replica's wall clock departs from true time (a step of its clock, if it
    /// runs: it may notice at its next tick).
    pub fn set_clock_skew(&mut self, skew: ClockSkew) {
        self.clock_stepped = skew != self.skew;
        self.skew = skew;
    }

    /// How the replica's wall clock departs from true time.
    pub fn clock_skew(&self) -> ClockSkew {
        self.skew
    }

    /// Plants `bug` in the replica at every start from now on.
    pub fn set_bug(&mut self, bug: Option<InjectedBug>) {
        self.bug = bug;
    }

    /// The replica's index.
    pub fn index(&self) -> u8 {
        self.index
    }

    /// The disk.
    pub fn disk(&self) -> &SimDisk {
        &self.disk
    }

    /// Whether the replica is running.
    pub fn is_up(&self) -> bool {
        self.replica.is_some()
    }

    /// The running replica.
    pub fn replica(&self) -> &Replica<SimDisk> {
        self.replica.as_ref().expect("the replica is up")
    }

    /// Starts the replica: opens the data file (recovery). A crash armed on the disk may hit
    /// recovery itself; then the replica stays down.
    pub fn open(&mut self) -> Result<(), NodeError> {
        assert!(self.replica.is_none(), "the replica is already up");
        match ReplicaState::open(self.disk.clone(), Some(self.cluster)) {
            Ok(state) => {
                let mut replica = Replica::new(state);
                if let Some(bug) = self.bug {
                    replica.inject_bug(bug);
                }
                self.replica = Some(replica);
                Ok(())
            }
            Err(error) => Err(self.error(error.to_string())),
        }
    }

    /// Stops the replica (its process died) and restarts its disk: unsynced writes are lost,
    /// kept or torn as `mode` says.
    pub fn crash(&mut self, mode: CrashMode) {
        // Writes still in flight never reached the disk (their buffers die with the replica).
        self.in_flight.clear();
        self.replica = None;
        self.disk.restart(mode);
    }

    /// Hands the replica one message (a client's request or another replica's message) at
    /// simulated `time`, and queues what it answers in `outbox`.
    pub fn on_message(
        &mut self,
        time: &SimTime,
        message: &[u8],
        outbox: &mut Vec<Packet>,
    ) -> Result<Received, NodeError> {
        let Some(replica) = self.replica.as_mut() else { return Ok(Received::Down) };
        if message.len() < HEADER_SIZE || message.len() > self.receive.as_bytes().len() {
            return Ok(Received::Invalid);
        }
        self.receive.as_bytes_mut()[..message.len()].copy_from_slice(message);
        let header: Header = bytemuck::pod_read_unaligned(&message[..HEADER_SIZE]);
        let body = &self.receive.as_bytes()[HEADER_SIZE..message.len()];
        let framed = validate_header(&header, self.cluster).is_ok()
            && header.size as usize == message.len()
            && validate_body(&header, body).is_ok();
        if !framed {
            return Ok(Received::Invalid);
        }
        let received = match header.command() {
            Some(Command::Request) => Received::Admitted(replica.on_request(&header, body)),
            Some(Command::Reserved | Command::Eviction) | None => return Ok(Received::Invalid),
            Some(_) => match replica.on_peer_message(&header, body, &time.skewed(self.skew)) {
                Ok(peer) => Received::Peer(peer, 0),
                Err(error) => return Err(self.error(error.to_string())),
            },
        };
        let replica = self.replica.as_mut().expect("the replica is up");
        let from_replica = Address::Replica(self.index);
        replica.outbox_drain(|to, message| outbox.push(packet(from_replica, to, message)));
        let Received::Peer(peer, _) = received else { return Ok(received) };
        let commit_min = replica.state().commit_min();
        self.commit_ready(outbox).map_err(|error| self.error(error))?;
        Ok(Received::Peer(peer, self.replica().state().commit_min() - commit_min))
    }

    /// The replica's tick at simulated `time` (it may queue a pulse, and its timeouts send
    /// to `outbox`). The simulated wall clock steps only when the harness sets it, so the
    /// replica must report no other step.
    pub fn on_tick(&mut self, time: &SimTime, outbox: &mut Vec<Packet>) -> Result<(), NodeError> {
        let stepped = std::mem::take(&mut self.clock_stepped);
        let Some(replica) = self.replica.as_mut() else { return Ok(()) };
        let ticked = replica.on_tick(&time.skewed(self.skew));
        let from = Address::Replica(self.index);
        replica.outbox_drain(|to, message| outbox.push(packet(from, to, message)));
        match ticked {
            Ok(jump) => {
                assert!(jump.is_none() || stepped, "the replica saw a step of its wall clock that never was");
            }
            Err(error) => return Err(self.error(error.to_string())),
        }
        if self.replica().synced() {
            // As the server does: the data file opens again, on the checkpoint it installed.
            assert!(self.in_flight.is_empty(), "a sync ends with no stage in flight");
            self.replica = None;
            self.open()?;
            self.synced = Some(self.replica().state().data_file().checkpoint_op());
        }
        Ok(())
    }

    /// The checkpoint op of a state sync the replica finished since the last call, if any: it
    /// then runs again from that checkpoint.
    pub fn take_synced(&mut self) -> Option<u64> {
        self.synced.take()
    }

    /// Whether requests wait to be committed.
    pub fn has_queued(&self) -> bool {
        self.replica.as_ref().is_some_and(|replica| replica.has_queued())
    }

    /// Commits what is queued at simulated `time`, and queues the replies and evictions it
    /// reports in `outbox`.
    pub fn commit(&mut self, time: &SimTime, outbox: &mut Vec<Packet>) -> Result<(), NodeError> {
        let replica = self.replica.as_mut().expect("the replica is up");
        let from = Address::Replica(self.index);
        let time = time.skewed(self.skew);
        let committed = replica.commit_queued(&time, |to, message| outbox.push(packet(from, to, message)));
        committed.map(drop).map_err(|error| self.error(error.to_string()))
    }

    /// One tick of a replica driven as the server drives it, at simulated `time`: the stages
    /// due complete (in an order drawn from `prng`: writes, then sync,
    /// then the replica ends the stage and commits what it may), queued requests are
    /// prepared, and every stream without a stage in flight begins its next one, which will
    /// complete after 0 to `latency_ticks_max` ticks. Replies and evictions go to `outbox`.
    pub fn step(
        &mut self,
        time: &SimTime,
        prng: &mut Prng,
        latency_ticks_max: u64,
        outbox: &mut Vec<Packet>,
    ) -> Result<Stepped, NodeError> {
        let now = time.tick();
        let commit_min = self.replica().state().commit_min();
        let mut stepped = Stepped::default();
        while let Some(position) = self.due(now, prng) {
            let stage = self.in_flight.swap_remove(position);
            if let Err(error) = self.complete(&stage) {
                return Err(self.error(error));
            }
            let replica = self.replica.as_mut().expect("the replica is up");
            replica.stage_end(stage.stream);
            let from = Address::Replica(self.index);
            replica.outbox_drain(|to, message| outbox.push(packet(from, to, message)));
            stepped.stages[stage.stream.index()] += 1;
            self.commit_ready(outbox).map_err(|error| self.error(error))?;
            stepped.commit_waits += u64::from(self.replica().state().commit_waits());
        }
        let replica = self.replica.as_mut().expect("the replica is up");
        let prepared = replica.prepare_queued(&time.skewed(self.skew));
        let from = Address::Replica(self.index);
        replica.outbox_drain(|to, message| outbox.push(packet(from, to, message)));
        prepared.map_err(|error| self.error(error.to_string()))?;
        for stream in STREAMS {
            if self.in_flight.iter().any(|stage| stage.stream == stream) {
                continue;
            }
            let replica = self.replica.as_mut().expect("the replica is up");
            let mut writes = [Write { offset: 0, data: &[] }; STAGE_WRITES_MAX];
            let begun = replica.stage_begin(stream, &mut writes);
            let stage = match begun {
                Ok(Some(stage)) => stage,
                Ok(None) => continue,
                Err(error) => {
                    let error = error.to_string();
                    return Err(self.error(error));
                }
            };
            let writes = writes[..stage.count]
                .iter()
                .map(|write| WriteInFlight {
                    offset: write.offset,
                    data: write.data.as_ptr(),
                    size: write.data.len(),
                    checksum: xxh3_128(write.data),
                })
                .collect();
            let done_tick = now + prng.below(latency_ticks_max + 1);
            self.in_flight.push(StageInFlight { stream, writes, sync: stage.sync, done_tick });
        }
        stepped.committed = self.replica().state().commit_min() - commit_min;
        Ok(stepped)
    }

    /// The position of a stage in flight that is due at `now`, drawn at random among those.
    fn due(&self, now: u64, prng: &mut Prng) -> Option<usize> {
        let due = self.in_flight.iter().filter(|stage| stage.done_tick <= now).count() as u64;
        if due == 0 {
            return None;
        }
        let pick = prng.below(due) as usize;
        self.in_flight
            .iter()
            .enumerate()
            .filter(|(_, stage)| stage.done_tick <= now)
            .nth(pick)
            .map(|(at, _)| at)
    }

    /// Carries out a completed stage on the disk: its writes (from the replica's buffers, which
    /// must be unchanged), then its sync.
    fn complete(&mut self, stage: &StageInFlight) -> Result<(), String> {
        let mut writes = Vec::with_capacity(stage.writes.len());
        for write in &stage.writes {
            // SAFETY: the buffer is the replica's (alive: a crash clears `in_flight` with it),
            // heap memory that does not move, and the replica does not free it while the
            // stage is in flight; whether it changed is what the checksum below checks.
            let data = unsafe { std::slice::from_raw_parts(write.data, write.size) };
            if xxh3_128(data) != write.checksum {
                return Err(format!(
                    "the buffer of a {:?} write at offset {} changed while the write was in flight",
                    stage.stream, write.offset
                ));
            }
            writes.push(Write { offset: write.offset, data });
        }
        if !writes.is_empty() {
            self.disk.write(&writes).map_err(|error| error.to_string())?;
        }
        if stage.sync {
            self.disk.sync().map_err(|error| error.to_string())?;
        }
        Ok(())
    }

    /// Commits what the replica may now, queueing its replies and evictions in `outbox`.
    fn commit_ready(&mut self, outbox: &mut Vec<Packet>) -> Result<(), String> {
        let replica = self.replica.as_mut().expect("the replica is up");
        let from = Address::Replica(self.index);
        let committed = replica.commit();
        replica.outbox_drain(|to, message| outbox.push(packet(from, to, message)));
        committed.map(drop).map_err(|error| error.to_string())
    }

    /// Classifies an error of the replica: a crash of the disk, or a bug.
    fn error(&mut self, message: String) -> NodeError {
        if self.disk.crashed() {
            self.in_flight.clear();
            self.replica = None;
            NodeError::Crashed
        } else {
            NodeError::Fatal(message)
        }
    }
}

/// The packet carrying `message` from the replica's outbox to its destination.
fn packet(from: Address, to: Destination, message: &[u8]) -> Packet {
    let to = match to {
        Destination::Client(client) => Address::Client(client),
        Destination::Replica(replica) => Address::Replica(replica),
    };
    Packet { from, to, message: message.to_vec() }
}
