//! `ledger start`: one replica serving clients over TCP on the io_uring loop.
//!
//! One thread does everything: accepts connections, receives and validates messages (the
//! `net::codec` decoder, one per connection), turns requests into prepares through the
//! [`ReplicaState`] (WAL write + `fdatasync`, commit, reply), and sends replies. Every buffer is
//! allocated at start: a fixed number of connections, each with one receive and one send buffer,
//! and a request queue with one slot per possible client plus the replica's own pulse.
//!
//! Hostile input never reaches the ledger: a message that fails validation closes its connection
//! (one log line); an invalid request from a registered client evicts it, as the protocol says;
//! a connection that sends nothing, or leaves a message half-sent, for `idle_timeout` is closed.

pub mod clock;
mod connection;
mod metrics;
mod peers;
mod signals;
mod stage_io;
mod warning;

use std::net::{SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clock::Clock;
use connection::{Connection, ConnectionState};
use metrics::Metrics;
use peers::Peer;
pub use signals::stop_on_signals;
use stage_io::StageIo;
use warning::Warning;

use crate::constants::{
    CONNECTIONS_MAX, FILE_DESCRIPTORS_RESERVED, HEADER_SIZE, PEER_SEND_BUFFER_MESSAGES, SECTOR_SIZE,
    WARNING_INTERVAL_NS,
};
use crate::io::{IoLoop, Operation as IoOperation};
use crate::net::codec::FrameError;
use crate::storage::{Storage, Write};
use crate::vsr::admission::Admission;
use crate::vsr::header::{Command, EvictionReason, Header};
use crate::vsr::outbox::Destination;
use crate::vsr::replica::{Replica, Status};
use crate::vsr::replica_state::{ReplicaState, ReplicaStateError};
use crate::vsr::write_stage::{Stream, STAGE_WRITES_MAX, STREAMS};

/// Why [`Server::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// The stop flag was set (a signal): everything in flight finished.
    Signal,
    /// The replica installed a peer's checkpoint (state sync): its data file must be opened
    /// again ([`Server::into_state`], then `ReplicaState::open`) and served anew.
    Synced,
}

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServerOptions {
    /// The address to listen on.
    pub address: SocketAddr,
    /// The most simultaneous client connections.
    pub connections_max: usize,
    /// A connection idle (or holding a partial message) this long is closed.
    pub idle_timeout: Duration,
    /// How often the replica checks for pending transfers to expire (and the timer's tick).
    pub pulse_interval: Duration,
    /// The other replicas of the cluster: index and address (none for a cluster of one).
    pub peers: Vec<(u8, SocketAddr)>,
    /// Where to serve the metrics (Prometheus text format), if anywhere.
    pub metrics_address: Option<SocketAddr>,
}

impl ServerOptions {
    /// Checks every option against its bound, before anything is allocated or served.
    pub fn validate(&self) -> Result<(), ServerError> {
        if !(1..=CONNECTIONS_MAX).contains(&self.connections_max) {
            return Err(ServerError::Option {
                name: "connections-max",
                value: self.connections_max as u64,
                range: format!("1..={CONNECTIONS_MAX} (each connection holds 2 MiB of message buffers)"),
            });
        }
        if self.idle_timeout < Duration::from_secs(1) {
            return Err(ServerError::Option {
                name: "idle-timeout-s",
                value: self.idle_timeout.as_secs(),
                range: "at least 1".to_string(),
            });
        }
        assert!(!self.pulse_interval.is_zero());
        Ok(())
    }
}

/// Why the server stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The address could not be bound.
    #[error("cannot listen on {address}: {source}")]
    Listen {
        /// The address.
        address: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
    /// io_uring failed.
    #[error("io_uring: {0}")]
    Io(String),
    /// An option is out of its range.
    #[error("--{name} {value} is out of range: it must be {range}")]
    Option {
        /// The option's name.
        name: &'static str,
        /// The value given.
        value: u64,
        /// The range it must be in, and why.
        range: String,
    },
    /// The process may not open enough file descriptors for its connections.
    #[error(
        "--connections-max {connections_max} needs {needed} file descriptors, but this process may open \
         only {limit} (ulimit -n; hard limit {limit_hard}): raise the limit or lower --connections-max"
    )]
    FileDescriptors {
        /// The connections asked for.
        connections_max: usize,
        /// The descriptors they need.
        needed: u64,
        /// The soft limit after trying to raise it.
        limit: u64,
        /// The hard limit.
        limit_hard: u64,
    },
    /// The data file failed (fatal: a failed fsync may have lost writes).
    #[error("{0}")]
    Replica(#[from] ReplicaStateError),
}

/// Tags of the operations on the loop: the kind in the top byte, the connection below.
const TAG_ACCEPT: u64 = 1 << 56;
const TAG_RECV: u64 = 2 << 56;
const TAG_SEND: u64 = 3 << 56;
const TAG_TIMEOUT: u64 = 4 << 56;
/// The write streams' stages: `TAG_STAGE + (stream index << 56)`, in `STREAMS` order.
const TAG_STAGE: u64 = 5 << 56;
/// A peer connection's connect and sends: the peer's position in `peers` below.
const TAG_PEER_CONNECT: u64 = 8 << 56;
const TAG_PEER_SEND: u64 = 9 << 56;
/// The metrics scrape's accept, receive and sends.
const TAG_METRICS_ACCEPT: u64 = 10 << 56;
const TAG_METRICS_RECV: u64 = 11 << 56;
const TAG_METRICS_SEND: u64 = 12 << 56;
const METRICS_TAGS: metrics::Tags =
    metrics::Tags { accept: TAG_METRICS_ACCEPT, recv: TAG_METRICS_RECV, send: TAG_METRICS_SEND };
const TAG_KIND: u64 = 0xFF << 56;

const _: () = assert!(TAG_STAGE + ((STREAMS.len() as u64) << 56) <= TAG_PEER_CONNECT);

/// What to do about one received message.
enum Action {
    /// Nothing now (queued, or a request that needs no answer).
    None,
    /// Close the connection: the message broke the protocol.
    Close(String),
    /// Close the connection: a message of another cluster that is not a client's request (a
    /// replica of another cluster, which reconnects again and again): logged at most once per
    /// interval.
    CloseForeign(String),
}

/// The running server.
pub struct Server<S: Storage + AsRawFd> {
    replica: Replica<S>,
    /// Each write stream's stage in flight on `ring`, if any (indexed as `STREAMS`).
    stages: [StageIo; STREAMS.len()],
    /// Stopping: only the journal's stages go on, to make what is prepared durable.
    stopping: bool,
    options: ServerOptions,
    ring: IoLoop,
    listener: TcpListener,
    connections: Vec<Connection>,
    /// Messages received so far: stamps which connection a client used last.
    messages_received: u64,
    clock: Clock,
    /// `accept` failed and rests until the next tick, instead of spinning on the error.
    accept_resting: bool,
    warnings: Warnings,
    /// Bytes of memory allocated at start, for the log.
    memory_size: u64,
    /// The connections to the other replicas (empty in a cluster of one).
    peers: Vec<Peer>,
    /// A fatal error of the replica met where it could not be returned (a peer's message
    /// handled while draining a connection): the loop stops with it.
    fatal: Option<ReplicaStateError>,
    /// A peer's message may have let ops commit.
    commit_due: bool,
    /// The status, view and primary last logged.
    status_logged: Option<(Status, u32, bool, bool)>,
    /// The peer formatted otherwise last logged.
    mismatch_logged: Option<u8>,
    /// When the replica began syncing its state (for the log line at its end).
    sync_started: Option<Instant>,
    /// The scrubber's counts last logged (found, repaired).
    scrub_logged: (u64, u64),
    /// The metrics listener, if asked for.
    metrics: Option<Metrics>,
    /// Ops executed since start (a metric).
    ops_committed: u64,
    /// From a request's arrival to its reply (a metric).
    request_latency: metrics::Histogram,
}

/// The server's recurring warnings, each rate-limited.
struct Warnings {
    foreign_cluster: Warning,
    accept_failed: Warning,
    connection_refused: Warning,
    clock_out_of_range: Warning,
    table_full: Warning,
}

impl<S: Storage + AsRawFd> Server<S> {
    /// Binds the listener and allocates every buffer.
    pub fn new(ledger: ReplicaState<S>, options: ServerOptions) -> Result<Server<S>, ServerError> {
        options.validate()?;
        raise_file_descriptor_limit(options.connections_max)?;
        let listener = TcpListener::bind(options.address)
            .map_err(|source| ServerError::Listen { address: options.address, source })?;
        let superblock = *ledger.data_file().superblock();
        let cluster = superblock.cluster;
        let fd = ledger.data_file().storage().as_raw_fd();
        if options.peers.len() + 1 != usize::from(superblock.replica_count)
            || options
                .peers
                .iter()
                .any(|(index, _)| *index == superblock.replica || *index >= superblock.replica_count)
        {
            return Err(ServerError::Io(format!(
                "replica {} of {}: the peers given are not the other replicas of the cluster",
                superblock.replica, superblock.replica_count
            )));
        }
        // Room for a pipeline of the largest prepares, and for a grid block (repair, state sync).
        let block_message = (HEADER_SIZE as u64 + superblock.block_size).next_multiple_of(SECTOR_SIZE as u64);
        let buffer_size =
            PEER_SEND_BUFFER_MESSAGES * (superblock.message_size_max.max(block_message) as usize);
        let now = Instant::now();
        let peers = options
            .peers
            .iter()
            .map(|(index, address)| Peer::new(*index, *address, buffer_size, now))
            .collect::<Result<Vec<Peer>, String>>()
            .map_err(ServerError::Io)?;
        let stages = STREAMS.map(|stream| StageIo::new(fd, TAG_STAGE + ((stream.index() as u64) << 56)));
        let replica = Replica::new(ledger);
        // Each connection has at most a receive and a send in flight; plus accept, timer, and
        // a stage of each write stream (its writes, then its sync).
        // Each peer has at most a connect or a send in flight.
        let stage_operations = STREAMS.len() * STAGE_WRITES_MAX;
        let peer_operations = 2 * peers.len();
        // The metrics scrape has at most one operation in flight.
        let ring_entries = ((options.connections_max * 2 + 3 + stage_operations + peer_operations) as u32)
            .next_power_of_two();
        let metrics = match options.metrics_address {
            Some(address) => {
                Some(Metrics::bind(address).map_err(|source| ServerError::Listen { address, source })?)
            }
            None => None,
        };
        let ring = IoLoop::new(ring_entries).map_err(|error| ServerError::Io(error.to_string()))?;
        let connections: Vec<Connection> =
            (0..options.connections_max).map(|_| Connection::new(cluster)).collect();
        let message_buffers = (options.connections_max * 2 + replica.queue_max()) as u64;
        let memory_size = message_buffers * crate::constants::MESSAGE_SIZE_MAX as u64
            + (2 * buffer_size * peers.len()) as u64;
        Ok(Server {
            replica,
            stages,
            stopping: false,
            options,
            ring,
            listener,
            connections,
            messages_received: 0,
            clock: Clock::new(),
            accept_resting: false,
            warnings: Warnings {
                foreign_cluster: Warning::new(Duration::from_nanos(WARNING_INTERVAL_NS)),
                accept_failed: Warning::new(Duration::from_nanos(WARNING_INTERVAL_NS)),
                connection_refused: Warning::new(Duration::from_nanos(WARNING_INTERVAL_NS)),
                clock_out_of_range: Warning::new(Duration::from_nanos(WARNING_INTERVAL_NS)),
                table_full: Warning::new(Duration::from_nanos(WARNING_INTERVAL_NS)),
            },
            memory_size,
            peers,
            fatal: None,
            commit_due: false,
            status_logged: None,
            mismatch_logged: None,
            sync_started: None,
            scrub_logged: (0, 0),
            metrics,
            ops_committed: 0,
            request_latency: metrics::Histogram::default(),
        })
    }

    /// The address the metrics are served on, if they are.
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|metrics| metrics.local_address().ok())
    }

    /// The address the server listens on (useful with port 0).
    pub fn local_address(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Bytes of message buffers allocated at start.
    pub fn memory_size(&self) -> u64 {
        self.memory_size
    }

    /// Serves until `stop` is set, then finishes what is in flight and returns
    /// [`Stopped::Signal`]; or until the replica finished a state sync ([`Stopped::Synced`]):
    /// its data file must then be opened again, and served by a new server.
    pub fn run(&mut self, stop: &AtomicBool) -> Result<Stopped, ServerError> {
        self.queue_accept()?;
        self.queue_timeout()?;
        if let Some(metrics) = self.metrics.as_mut() {
            metrics
                .queue_accept(&mut self.ring, TAG_METRICS_ACCEPT)
                .map_err(|error| ServerError::Io(error.to_string()))?;
        }
        while !stop.load(Ordering::Relaxed) {
            if signals::hangup_received() {
                eprintln!("info: SIGHUP received and ignored (stop the replica with SIGTERM or SIGINT)");
            }
            self.ring.submit_and_wait(1).map_err(|error| ServerError::Io(error.to_string()))?;
            while let Some(completion) = self.ring.pop_completion() {
                let index = (completion.tag & !TAG_KIND) as usize;
                match completion.tag & TAG_KIND {
                    TAG_ACCEPT => self.on_accept(completion.result)?,
                    TAG_RECV => self.on_recv(index, completion.result),
                    TAG_SEND => self.on_send(index, completion.result),
                    TAG_TIMEOUT => self.on_tick()?,
                    TAG_PEER_CONNECT => self.peers[index].on_connect(completion.result, Instant::now()),
                    TAG_PEER_SEND => self.peers[index].on_send(completion.result, Instant::now()),
                    TAG_METRICS_ACCEPT | TAG_METRICS_RECV | TAG_METRICS_SEND => {
                        self.on_metrics(completion.tag & TAG_KIND, completion.result)?
                    }
                    kind => self.on_stage(kind, index, completion.result)?,
                }
                if let Some(error) = self.fatal.take() {
                    return Err(error.into());
                }
            }
            if self.replica.synced() {
                // A sync ends with no stage in flight: nothing is left on the replica's buffers.
                assert!(!self.stages.iter().any(StageIo::in_flight));
                let (op, fetched, intact) = self.replica.sync_progress().expect("syncing");
                eprintln!(
                    "info: replica {}: installed the checkpoint at op {}: {fetched} grid block(s) fetched from peers, \
                     {intact} found intact here, in {:.3} s",
                    self.replica.index(),
                    op.unwrap_or(0),
                    self.sync_started.map_or(0.0, |started| started.elapsed().as_secs_f64())
                );
                return Ok(Stopped::Synced);
            }
            if std::mem::take(&mut self.commit_due) {
                self.commit()?;
            }
            self.prepare_queued()?;
            self.stages_start()?;
            self.queue_io()?;
        }
        // Let the stages in flight finish (the journal's committing what they make durable;
        // no new grid or reply stage begins): then every prepared op is durable with its
        // header, and no write is left in flight on the replica's buffers.
        self.stopping = true;
        self.stages_start()?;
        while self.stages.iter().any(StageIo::in_flight) {
            self.ring.submit_and_wait(1).map_err(|error| ServerError::Io(error.to_string()))?;
            while let Some(completion) = self.ring.pop_completion() {
                let (kind, index) = (completion.tag & TAG_KIND, (completion.tag & !TAG_KIND) as usize);
                if (TAG_STAGE..TAG_PEER_CONNECT).contains(&kind) {
                    self.on_stage(kind, index, completion.result)?;
                }
            }
        }
        self.replica.state_mut().flush()?;
        Ok(Stopped::Signal)
    }

    /// Prepares what the replica has queued, as far as its pipeline has room.
    fn prepare_queued(&mut self) -> Result<(), ServerError> {
        let prepared = self.replica.prepare_queued(&self.clock);
        self.outbox_drain();
        match prepared {
            Ok(()) => Ok(()),
            // Nothing was prepared: the requests were dropped (their clients retry, and are
            // served once the clock is right); keep serving.
            Err(error @ ReplicaStateError::ClockOutOfRange { .. }) => {
                if let Some(count) = self.warnings.clock_out_of_range.due(Instant::now()) {
                    eprintln!("error: {error} ({count} time(s) in the last interval)");
                }
                Ok(())
            }
            Err(error) => Err(error.into()),
        }
    }

    /// Puts each write stream's next stage in flight, where none is and the replica has one,
    /// and submits them at once, so that the disk works while the loop executes.
    fn stages_start(&mut self) -> Result<(), ServerError> {
        let mut started = false;
        for stream in STREAMS {
            let stage_io = &mut self.stages[stream.index()];
            if stage_io.in_flight() || (self.stopping && stream != Stream::Journal) {
                continue;
            }
            let mut writes = [Write { offset: 0, data: &[] }; STAGE_WRITES_MAX];
            let Some(stage) = self.replica.stage_begin(stream, &mut writes)? else { continue };
            stage_io.start(&mut self.ring, stage, &writes[..stage.count])?;
            started = true;
        }
        if started {
            self.ring.submit().map_err(|error| ServerError::Io(error.to_string()))?;
        }
        Ok(())
    }

    /// A completion of a stage in flight (`kind` is its stream's tag): once the stage is done,
    /// the replica ends it, the next stages go in flight, then what the stage made durable
    /// (or stopped waiting for) is committed and answered, overlapping those stages' I/O.
    fn on_stage(&mut self, kind: u64, index: usize, result: i32) -> Result<(), ServerError> {
        let stream = STREAMS
            .get(((kind - TAG_STAGE) >> 56) as usize)
            .copied()
            .unwrap_or_else(|| unreachable!("unknown tag {kind:#x}"));
        if !self.stages[stream.index()].on_completion(&mut self.ring, index, result)? {
            return Ok(());
        }
        self.replica.stage_end(stream);
        self.outbox_drain();
        if !self.stopping {
            self.prepare_queued()?;
        }
        self.stages_start()?;
        self.commit()?;
        self.stages_start()
    }

    fn queue_accept(&mut self) -> Result<(), ServerError> {
        let fd = self.listener.as_raw_fd();
        // SAFETY: the listener outlives the loop's use of it (both live in `self`).
        unsafe { self.ring.queue(TAG_ACCEPT, IoOperation::Accept { fd }) }
            .map_err(|error| ServerError::Io(error.to_string()))
    }

    fn queue_timeout(&mut self) -> Result<(), ServerError> {
        let duration = self.options.pulse_interval;
        // SAFETY: a timeout references no caller memory.
        unsafe { self.ring.queue(TAG_TIMEOUT, IoOperation::Timeout { duration }) }
            .map_err(|error| ServerError::Io(error.to_string()))
    }

    fn on_accept(&mut self, result: i32) -> Result<(), ServerError> {
        if result < 0 {
            // Out of file descriptors (EMFILE, ENFILE) or memory: accepting again at once would
            // fail again at once. Rest until the next tick; pending connections wait in the
            // listen backlog.
            self.accept_resting = true;
            if let Some(count) = self.warnings.accept_failed.due(Instant::now()) {
                eprintln!(
                    "warning: accept failed {count} time(s) in the last {}s: {}; accepting again every {:?}",
                    WARNING_INTERVAL_NS / crate::constants::NS_PER_S,
                    std::io::Error::from_raw_os_error(-result),
                    self.options.pulse_interval,
                );
            }
            return Ok(());
        }
        self.queue_accept()?;
        let fd = result;
        let Some(index) =
            self.connections.iter().position(|connection| connection.state == ConnectionState::Free)
        else {
            if let Some(count) = self.warnings.connection_refused.due(Instant::now()) {
                eprintln!(
                    "warning: {count} connection(s) refused in the last {}s: all {} connections are in use (--connections-max)",
                    WARNING_INTERVAL_NS / crate::constants::NS_PER_S,
                    self.connections.len()
                );
            }
            // SAFETY: `fd` was just accepted and is owned by nobody else.
            unsafe { libc::close(fd) };
            return Ok(());
        };
        self.connections[index].open(fd, Instant::now());
        Ok(())
    }

    fn on_recv(&mut self, index: usize, result: i32) {
        let connection = &mut self.connections[index];
        connection.recv_in_flight = false;
        if connection.state != ConnectionState::Open {
            connection.close_if_idle();
            return;
        }
        if result <= 0 {
            // 0: the peer closed; negative: the connection failed.
            connection.shutdown();
            connection.close_if_idle();
            return;
        }
        connection.received(result as usize, Instant::now());
        self.drain_messages(index);
    }

    /// Handles every complete message the connection holds, while nothing is being sent on it:
    /// an answer waits for the one before it to be sent (back-pressure; the rest of the
    /// client's messages wait in the decoder and the socket), so none is ever dropped.
    fn drain_messages(&mut self, index: usize) {
        loop {
            let Server { replica, connections, .. } = self;
            let connection = &mut connections[index];
            if connection.state != ConnectionState::Open || connection.sending() {
                return;
            }
            let action = match connection.decoder.next_message() {
                Ok(None) => return,
                Ok(Some(message)) if is_peer_command(message.header().command()) => {
                    // Another replica's message (its connection carries no client).
                    let header = *message.header();
                    if self.peers.is_empty() {
                        Action::Close(format!(
                            "a replica's {:?} message to a cluster of one",
                            header.command()
                        ))
                    } else {
                        match replica.on_peer_message(&header, message.body(), &self.clock) {
                            Ok(_) => {
                                self.commit_due = true;
                                Action::None
                            }
                            Err(error) => {
                                self.fatal = Some(error);
                                return;
                            }
                        }
                    }
                }
                Ok(Some(message)) => {
                    let header = *message.header();
                    let other_client = connection.client != 0 && header.client != connection.client;
                    let action = if header.command() != Some(Command::Request) {
                        Action::Close(format!("unexpected {:?} message", header.command()))
                    } else if other_client {
                        // Replies are routed by client id: a connection belongs to the first
                        // client that sends on it (as TigerBeetle's message bus requires).
                        Action::Close(format!(
                            "a request of client {:#x} on client {:#x}'s connection",
                            header.client, connection.client
                        ))
                    } else {
                        match replica.on_request(&header, message.body()) {
                            Admission::Prepare(_) => {
                                connection.request_received_at = Some(Instant::now());
                                Action::None
                            }
                            // A stored reply or an eviction is in the replica's outbox.
                            Admission::Drop | Admission::Reply(_) | Admission::Evict(_) => Action::None,
                            Admission::Close(reason) => Action::Close(reason.to_string()),
                        }
                    };
                    if connection.client == 0 {
                        connection.client = header.client;
                    }
                    action
                }
                Err(error) => {
                    // A client of another cluster is told so before the connection closes.
                    let foreign = matches!(error, FrameError::Cluster { .. });
                    if foreign && connection.reject_wrong_cluster(index) {
                        return;
                    }
                    if foreign {
                        Action::CloseForeign(error.to_string())
                    } else {
                        Action::Close(error.to_string())
                    }
                }
            };
            self.messages_received += 1;
            connection.client_stamp = self.messages_received;
            connection.message_completed();
            // Routed by client id, after the stamp: this connection is its client's newest.
            let Server { replica, connections, peers, request_latency, .. } = self;
            replica.outbox_drain(|to, message| send(connections, peers, request_latency, to, message));
            let connection = &mut self.connections[index];
            match action {
                Action::None => {}
                Action::Close(_) | Action::CloseForeign(_) => {
                    match action {
                        Action::Close(reason) => {
                            eprintln!("warning: closing connection {index} ({}): {reason}", connection.peer())
                        }
                        Action::CloseForeign(reason) => {
                            if let Some(count) = self.warnings.foreign_cluster.due(Instant::now()) {
                                eprintln!(
                                    "warning: closed {count} connection(s) in the last {}s for messages of another \
                                     cluster (the latest from {}: {reason}): a replica or client configured with \
                                     another cluster id",
                                    WARNING_INTERVAL_NS / crate::constants::NS_PER_S,
                                    connection.peer()
                                );
                            }
                        }
                        Action::None => unreachable!(),
                    }
                    // The receive that brought this message has completed; a send may still be
                    // in flight. Free the slot now if nothing is, or else on that completion.
                    connection.shutdown();
                    connection.close_if_idle();
                    return;
                }
            }
        }
    }

    fn on_tick(&mut self) -> Result<(), ServerError> {
        self.queue_timeout()?;
        if self.accept_resting {
            self.accept_resting = false;
            self.queue_accept()?;
        }
        let jump = self.replica.on_tick(&self.clock)?;
        self.outbox_drain();
        self.status_log();
        let now = Instant::now();
        if let Some(metrics) = self.metrics.as_mut() {
            metrics.tick(now);
        }
        for (position, peer) in self.peers.iter_mut().enumerate() {
            peer.connect_if_due(&mut self.ring, TAG_PEER_CONNECT | position as u64, now)
                .map_err(|error| ServerError::Io(error.to_string()))?;
        }
        if let Some(jump) = jump {
            eprintln!(
                "warning: the system clock stepped {} by {:.3}s; timestamps stay monotonic, but pending \
                 transfers' timeouts are measured on this clock (docs/operating.md, \"The clock\")",
                if jump > 0 { "forward" } else { "backward" },
                jump.unsigned_abs() as f64 / 1e9,
            );
        }
        let now = Instant::now();
        for connection in &mut self.connections {
            connection.close_if_stale(now, self.options.idle_timeout);
            // A slot stays `Closing` only while an operation on it is in flight: otherwise no
            // completion would ever free it, leaking it and its socket until a restart.
            assert!(
                connection.state != ConnectionState::Closing
                    || connection.recv_in_flight
                    || connection.send_in_flight
            );
        }
        Ok(())
    }

    /// A completion of the metrics scrape: accepted, request received (the answer is rendered
    /// now), or answer sent.
    fn on_metrics(&mut self, kind: u64, result: i32) -> Result<(), ServerError> {
        let sample = self.metrics_sample();
        let Some(metrics) = self.metrics.as_mut() else {
            unreachable!("a metrics completion without metrics")
        };
        let ring = &mut self.ring;
        let queued = match kind {
            TAG_METRICS_ACCEPT => metrics.on_accept(result, ring, METRICS_TAGS),
            TAG_METRICS_RECV => metrics.on_recv(result, &sample, ring, METRICS_TAGS),
            _ => metrics.on_send(result, ring, METRICS_TAGS),
        };
        queued.map_err(|error| ServerError::Io(error.to_string()))
    }

    /// The replica's numbers now, for a scrape.
    fn metrics_sample(&self) -> metrics::Sample {
        let replica = &self.replica;
        let superblock = replica.state().data_file().superblock();
        metrics::Sample {
            replica: superblock.replica,
            replica_count: superblock.replica_count,
            view: replica.view(),
            log_view: replica.log_view(),
            normal: replica.status() == Status::Normal,
            primary: replica.is_primary(),
            op: replica.state().op(),
            commit_min: replica.state().commit_min(),
            commit_max: replica.state().commit_max(),
            ops_committed: self.ops_committed,
            messages_received: self.messages_received,
            peers_connected: self
                .peers
                .iter()
                .filter(|peer| peer.state == peers::PeerState::Connected)
                .count() as u64,
            peer_messages_dropped: self.peers.iter().map(|peer| peer.dropped).sum(),
            clock_synchronized: replica.clock().synchronized(),
            recovering_head: replica.recovering_head().is_some(),
            syncing: replica.syncing(),
            replies_restored: replica.replies_restored(),
            request_latency: self.request_latency,
            journal_write_latency: self.stages[Stream::Journal.index()].write_latency,
            journal_sync_latency: self.stages[Stream::Journal.index()].sync_latency,
        }
    }

    /// Carries out the replica's outbox.
    fn outbox_drain(&mut self) {
        let Server { replica, connections, peers, request_latency, .. } = self;
        replica.outbox_drain(|to, message| send(connections, peers, request_latency, to, message));
    }

    /// Logs a line when the replica's status, view or role changes, and when its scrubber found
    /// or repaired a damaged grid block (a cluster only).
    fn status_log(&mut self) {
        if self.peers.is_empty() {
            return;
        }
        if let Some(peer) = self.replica.format_mismatch().filter(|peer| Some(*peer) != self.mismatch_logged)
        {
            self.mismatch_logged = Some(peer);
            eprintln!(
                "warning: replica {}: replica {peer}'s data file was formatted with other options (WAL, grid or \
                 capacities) than this one: they cannot work together (its pings go unanswered, its checkpoints \
                 are not installed). Every replica of a cluster must be formatted alike (`ledger recover` takes \
                 the options `ledger format` did)",
                self.replica.index()
            );
        }
        let scrubbed = self.replica.blocks_scrubbed();
        if scrubbed != self.scrub_logged {
            self.scrub_logged = scrubbed;
            let (found, repaired) = scrubbed;
            eprintln!(
                "info: replica {}: the scrubber found {found} damaged grid block(s) since start; {repaired} \
                 repaired from peers",
                self.replica.index()
            );
        }
        let current =
            (self.replica.status(), self.replica.view(), self.replica.is_primary(), self.replica.syncing());
        if self.status_logged == Some(current) {
            return;
        }
        self.status_logged = Some(current);
        let (status, view, primary, syncing) = current;
        let elect = view % (self.peers.len() as u32 + 1);
        let replica = self.replica.index();
        let (log_view, op, commit) =
            (self.replica.log_view(), self.replica.state().op(), self.replica.state().commit_min());
        // Formatted straight to stderr: no allocation, even on the loop's thread.
        match status {
            _ if syncing => {
                self.sync_started = Some(Instant::now());
                eprintln!(
                "info: replica {replica}: syncing its state from its peers (it fell further behind than their WALs \
                 reach, or its checkpoint is damaged): it installs a peer's checkpoint and takes no part until \
                 then; op {op}, commit {commit}"
                )
            }
            Status::Normal if primary => {
                eprintln!("info: replica {replica}: primary in view {view} (log view {log_view}), op {op}, commit {commit}")
            }
            Status::Normal => eprintln!(
                "info: replica {replica}: backup (primary: replica {elect}) in view {view} (log view {log_view}), \
                 op {op}, commit {commit}"
            ),
            Status::ViewChange if self.replica.recovering_head().is_some() => eprintln!(
                "info: replica {replica}: recovering its log from its peers (takes no part in view changes until \
                 it holds one's log) in view {view} (log view {log_view}), op {op}, commit {commit}"
            ),
            Status::ViewChange => eprintln!(
                "info: replica {replica}: changing views (primary-elect: replica {elect}) in view {view} (log view \
                 {log_view}), op {op}, commit {commit}"
            ),
        }
    }

    /// Has the replica commit every durable op, and carries out what it reports: replies and
    /// evictions routed to their clients' connections, full tables logged.
    fn commit(&mut self) -> Result<(), ServerError> {
        let Server { replica, connections, peers, warnings, request_latency, .. } = self;
        let committed = replica.commit();
        replica.outbox_drain(|to, message| send(connections, peers, request_latency, to, message));
        let report = committed?;
        self.ops_committed += report.ops;
        if let Some(table) = report.table_full_last {
            for _ in 0..report.table_full {
                if let Some(count) = warnings.table_full.due(Instant::now()) {
                    eprintln!(
                        "warning: the {table:?} table is full: {count} request(s) rejected whole in the last {}s \
                         (docs/operating.md, \"Capacity\")",
                        WARNING_INTERVAL_NS / crate::constants::NS_PER_S
                    );
                }
            }
        }
        Ok(())
    }

    fn on_send(&mut self, index: usize, result: i32) {
        let connection = &mut self.connections[index];
        connection.send_in_flight = false;
        if result < 0 {
            connection.shutdown();
        } else {
            connection.sent(result as usize);
        }
        connection.close_if_idle();
        // Sent in full: the messages that waited behind it are handled now.
        self.drain_messages(index);
    }

    /// Queues a receive for every open connection without one, and the rest of every send
    /// (to clients and to peers).
    fn queue_io(&mut self) -> Result<(), ServerError> {
        for (position, peer) in self.peers.iter_mut().enumerate() {
            peer.queue_send(&mut self.ring, TAG_PEER_SEND | position as u64)
                .map_err(|error| ServerError::Io(error.to_string()))?;
        }
        for (index, connection) in self.connections.iter_mut().enumerate() {
            if connection.state != ConnectionState::Open {
                continue;
            }
            if !connection.recv_in_flight {
                let spare = connection.decoder.spare();
                if !spare.is_empty() {
                    let (buffer, size) = (spare.as_mut_ptr(), spare.len() as u32);
                    let operation = IoOperation::Recv { fd: connection.fd, buffer, size };
                    // SAFETY: the decoder's buffer is heap memory owned by the connection, which
                    // lives as long as the loop; nothing touches it until the completion.
                    unsafe { self.ring.queue(TAG_RECV | index as u64, operation) }
                        .map_err(|error| ServerError::Io(error.to_string()))?;
                    connection.recv_in_flight = true;
                }
            }
            if let Some((buffer, size)) = connection.send_pending() {
                let operation = IoOperation::Send { fd: connection.fd, buffer, size };
                // SAFETY: the send buffer is owned by the connection and not written until the
                // completion.
                unsafe { self.ring.queue(TAG_SEND | index as u64, operation) }
                    .map_err(|error| ServerError::Io(error.to_string()))?;
                connection.send_in_flight = true;
            }
        }
        Ok(())
    }

    /// Stops serving: closes every connection.
    pub fn into_state(self) -> ReplicaState<S> {
        let Server { replica, ring, mut connections, mut peers, mut metrics, .. } = self;
        // Dropping the ring waits for (or cancels) every operation on the connections' buffers.
        drop(ring);
        for connection in &mut connections {
            connection.force_close();
        }
        for peer in &mut peers {
            peer.force_close();
        }
        if let Some(metrics) = metrics.as_mut() {
            metrics.force_close();
        }
        replica.into_state()
    }
}

/// The open connection client `client` sent its latest message on, if any: where its replies
/// go (a client that reconnected is answered on its new connection).
fn route(connections: &[Connection], client: u128) -> Option<usize> {
    connections
        .iter()
        .enumerate()
        .filter(|(_, connection)| connection.state == ConnectionState::Open && connection.client == client)
        .max_by_key(|(_, connection)| connection.client_stamp)
        .map(|(index, _)| index)
}

/// True if `command` is one replicas send each other (not a client's request, nor what only
/// clients receive). A `reply` reaches a replica only from a peer, answering `request_reply`.
fn is_peer_command(command: Option<Command>) -> bool {
    !matches!(command, None | Some(Command::Reserved | Command::Request | Command::Eviction))
}

/// Sends `message` from the replica's outbox to its destination: a peer replica's connection,
/// or a client's newest connection (nobody to tell if it has none). An eviction is logged.
fn send(
    connections: &mut [Connection],
    peers: &mut [Peer],
    latency: &mut metrics::Histogram,
    to: Destination,
    message: &[u8],
) {
    let client = match to {
        Destination::Client(client) => client,
        Destination::Replica(replica) => {
            let peer = peers.iter_mut().find(|peer| peer.index == replica);
            peer.expect("the replica sends only to replicas of its cluster").send(message);
            return;
        }
    };
    let Some(index) = route(connections, client) else { return };
    let header: Header = bytemuck::pod_read_unaligned(&message[..HEADER_SIZE]);
    if header.command() == Some(Command::Eviction) {
        let reason = EvictionReason::from_u8(header.status).expect("the replica's own eviction");
        eprintln!("info: evicting client {client} on connection {index}: {reason:?}");
    }
    if header.command() == Some(Command::Reply) {
        if let Some(received_at) = connections[index].request_received_at.take() {
            latency.observe(received_at.elapsed());
        }
    }
    connections[index].send(message, index);
}

/// Raises this process's soft limit of open file descriptors (up to its hard limit) so that
/// every connection slot can be used; refuses the options if even the hard limit is too low.
/// Without this, accepting fails with EMFILE long before `connections_max` is reached.
fn raise_file_descriptor_limit(connections_max: usize) -> Result<(), ServerError> {
    let needed = (connections_max + FILE_DESCRIPTORS_RESERVED) as u64;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `limit` is a valid out-parameter.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(ServerError::Io(format!("getrlimit: {}", std::io::Error::last_os_error())));
    }
    if limit.rlim_cur >= needed {
        return Ok(());
    }
    let raised = libc::rlimit { rlim_cur: needed.min(limit.rlim_max), rlim_max: limit.rlim_max };
    // SAFETY: `raised` is a valid limit no higher than the hard limit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        limit = raised;
    }
    if limit.rlim_cur < needed {
        return Err(ServerError::FileDescriptors {
            connections_max,
            needed,
            limit: limit.rlim_cur,
            limit_hard: limit.rlim_max,
        });
    }
    Ok(())
}
