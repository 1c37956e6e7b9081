//! The replica's connections to the other replicas of its cluster. Each replica sends to each
//! peer on one outgoing TCP connection of its own, and receives on the connections its peers
//! open to it (accepted like a client's; their messages are told apart by command). So every
//! pair of replicas has two connections, each carrying one direction, and neither side ever
//! waits for the other to connect.
//!
//! A peer connection is (re)connected with backoff while the peer is down. What the replica
//! sends a peer is copied into a bounded queue: two buffers, one in flight on the socket while
//! the other fills, each with room for a pipeline of the largest prepares and a few small
//! messages. A message that finds no room — or no connection — is dropped and counted: VSR
//! resends what matters (prepares, heartbeats, votes), so a slow or dead peer costs memory it
//! was given at start and nothing else.

use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::constants::{PEER_RECONNECT_NS_MAX, PEER_RECONNECT_NS_MIN};
use crate::io::{IoLoop, Operation as IoOperation, RingFull};

/// Where a peer connection is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerState {
    /// No socket: connect once `retry_at` has passed.
    Disconnected,
    /// A connect is in flight.
    Connecting,
    /// Sending.
    Connected,
    /// Shut down: the socket is closed once nothing is in flight on it.
    Closing,
}

/// One other replica.
pub struct Peer {
    /// Its index in the cluster.
    pub index: u8,
    address: SocketAddr,
    /// Its address as the kernel reads it, for `connect` (stable: the peer never moves).
    sockaddr: libc::sockaddr_in,
    /// The state of the connection.
    pub state: PeerState,
    fd: RawFd,
    connect_in_flight: bool,
    send_in_flight: bool,
    /// The buffer on the socket, sent up to `sending_offset`.
    sending: Vec<u8>,
    sending_offset: usize,
    /// The buffer filling while `sending` is in flight.
    pending: Vec<u8>,
    retry_at: Instant,
    backoff: Duration,
    /// The connection failed since it was last up (so each outage is logged once).
    failed_logged: bool,
    /// Messages dropped for want of room or of a connection, since start.
    pub dropped: u64,
}

impl Peer {
    /// Peer `index` at `address`, with send buffers of `buffer_size` bytes each (allocated now).
    pub fn new(index: u8, address: SocketAddr, buffer_size: usize, now: Instant) -> Result<Peer, String> {
        let SocketAddr::V4(v4) = address else {
            return Err(format!("replica {index}'s address {address}: only IPv4 addresses are supported"));
        };
        Ok(Peer {
            index,
            address,
            sockaddr: sockaddr_in(v4),
            state: PeerState::Disconnected,
            fd: -1,
            connect_in_flight: false,
            send_in_flight: false,
            sending: Vec::with_capacity(buffer_size),
            sending_offset: 0,
            pending: Vec::with_capacity(buffer_size),
            retry_at: now,
            backoff: Duration::from_nanos(PEER_RECONNECT_NS_MIN),
            failed_logged: false,
            dropped: 0,
        })
    }

    /// Starts connecting if the peer is disconnected and its retry is due: a new socket, and
    /// its `connect` queued on `ring` with `tag`.
    pub fn connect_if_due(&mut self, ring: &mut IoLoop, tag: u64, now: Instant) -> Result<(), RingFull> {
        if self.state != PeerState::Disconnected || now < self.retry_at {
            return Ok(());
        }
        // SAFETY: plain socket creation; the descriptor is owned by this peer from here.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            self.failed(now, &format!("socket: {}", std::io::Error::last_os_error()));
            return Ok(());
        }
        let one: libc::c_int = 1;
        // SAFETY: `one` is a valid c_int option value for TCP_NODELAY on a TCP socket.
        unsafe {
            libc::setsockopt(
                fd,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let operation = IoOperation::Connect {
            fd,
            address: (&self.sockaddr as *const libc::sockaddr_in).cast(),
            address_size: std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        };
        // SAFETY: `sockaddr` lives in this peer, which the server keeps (unmoved) while the loop
        // runs; the kernel copies it when it consumes the entry.
        if let Err(full) = unsafe { ring.queue(tag, operation) } {
            // SAFETY: the socket was never handed to the kernel's ring.
            unsafe { libc::close(fd) };
            return Err(full);
        }
        self.fd = fd;
        self.state = PeerState::Connecting;
        self.connect_in_flight = true;
        Ok(())
    }

    /// The connect completed with `result`.
    pub fn on_connect(&mut self, result: i32, now: Instant) {
        self.connect_in_flight = false;
        if self.state != PeerState::Connecting {
            self.close_if_idle();
            return;
        }
        if result < 0 {
            self.failed(now, &std::io::Error::from_raw_os_error(-result).to_string());
            return;
        }
        eprintln!("info: connected to replica {} at {}", self.index, self.address);
        self.state = PeerState::Connected;
        self.backoff = Duration::from_nanos(PEER_RECONNECT_NS_MIN);
        self.failed_logged = false;
        self.sending.clear();
        self.sending_offset = 0;
        self.pending.clear();
    }

    /// Queues `message` to be sent, or drops it (no connection, or no room: counted).
    pub fn send(&mut self, message: &[u8]) {
        if self.state != PeerState::Connected || self.pending.len() + message.len() > self.pending.capacity()
        {
            self.dropped += 1;
            return;
        }
        self.pending.extend_from_slice(message);
    }

    /// The bytes to send next, if connected and no send is in flight: the rest of the buffer
    /// on the socket, or the one that filled meanwhile.
    pub fn send_next(&mut self) -> Option<(*const u8, u32)> {
        if self.state != PeerState::Connected || self.send_in_flight {
            return None;
        }
        if self.sending_offset == self.sending.len() && !self.pending.is_empty() {
            std::mem::swap(&mut self.sending, &mut self.pending);
            self.pending.clear();
            self.sending_offset = 0;
        }
        let rest = &self.sending[self.sending_offset..];
        if rest.is_empty() {
            return None;
        }
        // A send moves at most what a u32 counts; the rest goes on the next one.
        let size = rest.len().min(u32::MAX as usize) as u32;
        Some((rest.as_ptr(), size))
    }

    /// Puts the next send in flight on `ring` with `tag`, if there is one.
    pub fn queue_send(&mut self, ring: &mut IoLoop, tag: u64) -> Result<(), RingFull> {
        let Some((buffer, size)) = self.send_next() else { return Ok(()) };
        let operation = IoOperation::Send { fd: self.fd, buffer, size };
        // SAFETY: `sending` is not touched (swapped, cleared or written) while a send is in
        // flight: `send` appends to `pending` only, and the swap waits for the completion.
        unsafe { ring.queue(tag, operation) }?;
        self.send_in_flight = true;
        Ok(())
    }

    /// A send completed with `result` (bytes sent, or an error: the connection is lost).
    pub fn on_send(&mut self, result: i32, now: Instant) {
        self.send_in_flight = false;
        if self.state != PeerState::Connected {
            self.close_if_idle();
            return;
        }
        if result <= 0 {
            let reason = if result == 0 {
                "the connection closed".to_string()
            } else {
                std::io::Error::from_raw_os_error(-result).to_string()
            };
            self.failed(now, &reason);
            return;
        }
        self.sending_offset += result as usize;
        assert!(self.sending_offset <= self.sending.len());
    }

    /// The connection failed: it is shut down, closed once idle, and retried after a backoff
    /// that doubles up to its maximum. Logged once per outage.
    fn failed(&mut self, now: Instant, reason: &str) {
        if !self.failed_logged {
            let verb = if self.state == PeerState::Connected {
                "lost the connection to"
            } else {
                "cannot connect to"
            };
            eprintln!("warning: {verb} replica {} at {} ({reason}); retrying", self.index, self.address);
            self.failed_logged = true;
        }
        if self.fd >= 0 {
            // SAFETY: `fd` is this peer's socket; shutting it down ends what is in flight.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
        self.state = PeerState::Closing;
        self.retry_at = now + self.backoff;
        self.backoff = (self.backoff * 2).min(Duration::from_nanos(PEER_RECONNECT_NS_MAX));
        self.close_if_idle();
    }

    /// Closes the socket once nothing is in flight on it.
    fn close_if_idle(&mut self) {
        if self.state != PeerState::Closing || self.connect_in_flight || self.send_in_flight {
            return;
        }
        if self.fd >= 0 {
            // SAFETY: no operation uses `fd` any more, and it is closed exactly once.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
        }
        self.state = PeerState::Disconnected;
    }

    /// Closes the socket at shutdown (the loop is gone, so nothing is in flight).
    pub fn force_close(&mut self) {
        if self.fd >= 0 {
            // SAFETY: the ring that used `fd` was dropped; it is closed exactly once.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
        }
        self.state = PeerState::Disconnected;
    }
}

fn sockaddr_in(address: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*address.ip()).to_be() },
        sin_zero: [0; 8],
    }
}
