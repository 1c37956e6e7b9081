//! One replica as the simulator runs it: its disk, and the replica while it is up. This is the
//! only code that calls into `Replica` (`on_request`, `on_tick`, `commit_queued`) and carries out
//! what it decides, the way `server` does over sockets: an admission's stored reply or eviction
//! is sent back, a close drops the message, and the replies and evictions that commits report
//! are sent to their clients. When the replica gets its asynchronous I/O-completion interface,
//! this is the module that changes.

use super::disk::SimDisk;
use super::network::{Address, Packet};
use crate::constants::HEADER_SIZE;
use crate::net::codec::{eviction_header, validate_body, validate_header, MessageBuffer};
use crate::storage::{CrashMode, SimStorage};
use crate::vsr::admission::Admission;
use crate::vsr::data_file::{DataFile, FormatOptions};
use crate::vsr::header::{Command, EvictionReason, Header};
use crate::vsr::replica::{Event, Replica};
use crate::vsr::replica_state::ReplicaState;

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
    /// The replica's admission decision (already carried out).
    Admitted(Admission),
}

/// A replica and its disk.
pub struct Node {
    index: u8,
    cluster: u128,
    disk: SimDisk,
    replica: Option<Replica<SimDisk>>,
    /// Where a received message is copied, as the server's decoder holds it: 16-byte aligned.
    receive: MessageBuffer,
}

impl Node {
    /// Replica `index` on a freshly formatted `storage` (not yet started: call [`Node::open`]).
    pub fn format(index: u8, options: &FormatOptions, storage: SimStorage) -> Node {
        let disk = SimDisk::new(storage);
        DataFile::format(disk.clone(), options).expect("formatting a fault-free simulated disk succeeds");
        Node { index, cluster: options.cluster, disk, replica: None, receive: MessageBuffer::new() }
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
                self.replica = Some(Replica::new(state));
                Ok(())
            }
            Err(error) => Err(self.error(error.to_string())),
        }
    }

    /// Stops the replica (its process died) and restarts its disk: unsynced writes are lost,
    /// kept or torn as `mode` says.
    pub fn crash(&mut self, mode: CrashMode) {
        self.replica = None;
        self.disk.restart(mode);
    }

    /// Hands the replica one message from `from`, and queues what it answers in `outbox`.
    pub fn on_message(&mut self, from: Address, message: &[u8], outbox: &mut Vec<Packet>) -> Received {
        let Some(replica) = self.replica.as_mut() else { return Received::Down };
        if message.len() < HEADER_SIZE || message.len() > self.receive.as_bytes().len() {
            return Received::Invalid;
        }
        self.receive.as_bytes_mut()[..message.len()].copy_from_slice(message);
        let header: Header = bytemuck::pod_read_unaligned(&message[..HEADER_SIZE]);
        let body = &self.receive.as_bytes()[HEADER_SIZE..message.len()];
        let framed = validate_header(&header, self.cluster).is_ok()
            && header.size as usize == message.len()
            && validate_body(&header, body).is_ok();
        if !framed || header.command() != Some(Command::Request) {
            return Received::Invalid;
        }
        let admission = replica.on_request(&header, body);
        let from_replica = Address::Replica(self.index);
        match admission {
            Admission::Prepare(_) | Admission::Drop | Admission::Close(_) => {}
            Admission::Reply(slot) => {
                let reply = replica.state().clients().reply(slot).to_vec();
                outbox.push(Packet { from: from_replica, to: from, message: reply });
            }
            Admission::Evict(reason) => {
                outbox.push(Packet { from: from_replica, to: from, message: eviction(&header, reason) });
            }
        }
        Received::Admitted(admission)
    }

    /// The replica's tick with the cluster clock (it may queue a pulse).
    pub fn on_tick(&mut self, realtime: u64) {
        if let Some(replica) = self.replica.as_mut() {
            replica.on_tick(realtime);
        }
    }

    /// Whether requests wait to be committed.
    pub fn has_queued(&self) -> bool {
        self.replica.as_ref().is_some_and(|replica| replica.has_queued())
    }

    /// Commits what is queued at the cluster clock `realtime`, and queues the replies and
    /// evictions it reports in `outbox`.
    pub fn commit(&mut self, realtime: u64, outbox: &mut Vec<Packet>) -> Result<(), NodeError> {
        let replica = self.replica.as_mut().expect("the replica is up");
        let (cluster, from) = (self.cluster, Address::Replica(self.index));
        let committed = replica.commit_queued(realtime, |event| match event {
            Event::Reply { client, message } => {
                outbox.push(Packet { from, to: Address::Client(client), message: message.to_vec() });
            }
            Event::Evicted { client } => {
                let header = Header { client, ..Header::new(Command::Request, cluster) };
                outbox.push(Packet {
                    from,
                    to: Address::Client(client),
                    message: eviction(&header, EvictionReason::NoSession),
                });
            }
            Event::TableFull { .. } => {} // The reply says so too; the server only logs it.
        });
        committed.map_err(|error| self.error(error.to_string()))
    }

    /// Classifies an error of the replica: a crash of the disk, or a bug.
    fn error(&mut self, message: String) -> NodeError {
        if self.disk.crashed() {
            self.replica = None;
            NodeError::Crashed
        } else {
            NodeError::Fatal(message)
        }
    }
}

/// The sealed eviction answering `request`, as the server sends it.
fn eviction(request: &Header, reason: EvictionReason) -> Vec<u8> {
    let mut header = eviction_header(request, reason);
    header.set_body(&[]);
    header.set_checksum();
    bytemuck::bytes_of(&header).to_vec()
}
