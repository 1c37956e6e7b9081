//! One client connection of the server: its socket, its message decoder, one send buffer, and
//! the bookkeeping that lets it be closed safely while the kernel may still use its buffers.

use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use crate::net::codec::{wrong_cluster_eviction_header, Decoder, MessageBuffer};
use crate::vsr::header::Command;

/// Where a connection is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConnectionState {
    /// Unused.
    Free,
    /// Serving.
    Open,
    /// Shut down; closed once no operation is in flight on it.
    Closing,
}

/// A connection slot, allocated at start and reused.
pub struct Connection {
    /// The state.
    pub state: ConnectionState,
    /// The socket (valid unless `Free`).
    pub fd: RawFd,
    /// The client this connection belongs to: the first that sent a request on it (0 before).
    pub client: u128,
    /// When the connection last received a message, in messages received by the server: of two
    /// connections of one client (it reconnected), the newer is where its replies go.
    pub client_stamp: u64,
    /// Received bytes, assembled into validated messages.
    pub decoder: Decoder,
    /// A receive is in flight into the decoder.
    pub recv_in_flight: bool,
    /// A send is in flight from the send buffer.
    pub send_in_flight: bool,
    /// When the request this connection waits for an answer to arrived (request latency).
    pub request_received_at: Option<Instant>,
    send_buffer: MessageBuffer,
    send_size: usize,
    send_offset: usize,
    /// Shut down once the send buffer is sent (after a message that ends the connection).
    shutdown_after_send: bool,
    last_activity: Instant,
    partial_since: Option<Instant>,
}

impl Connection {
    /// A free slot with its buffers.
    pub fn new(cluster: u128) -> Connection {
        Connection {
            state: ConnectionState::Free,
            fd: -1,
            client: 0,
            client_stamp: 0,
            decoder: Decoder::new(cluster),
            recv_in_flight: false,
            send_in_flight: false,
            request_received_at: None,
            send_buffer: MessageBuffer::new(),
            send_size: 0,
            send_offset: 0,
            shutdown_after_send: false,
            last_activity: Instant::now(),
            partial_since: None,
        }
    }

    /// Starts serving the accepted socket `fd`.
    pub fn open(&mut self, fd: RawFd, now: Instant) {
        assert_eq!(self.state, ConnectionState::Free);
        assert!(!self.recv_in_flight && !self.send_in_flight);
        self.state = ConnectionState::Open;
        self.fd = fd;
        self.client = 0;
        self.client_stamp = 0;
        self.request_received_at = None;
        self.decoder.reset();
        self.send_size = 0;
        self.send_offset = 0;
        self.shutdown_after_send = false;
        self.last_activity = now;
        self.partial_since = None;
    }

    /// A description of the peer for the log.
    pub fn peer(&self) -> String {
        // SAFETY: a zeroed sockaddr_storage is a valid out-parameter of the right size.
        let mut address: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut size = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: `address` and `size` are valid for writes; `fd` is this connection's socket.
        let ok = unsafe {
            libc::getpeername(self.fd, (&mut address as *mut libc::sockaddr_storage).cast(), &mut size)
        };
        if ok != 0 || address.ss_family != libc::AF_INET as libc::sa_family_t {
            return format!("client {:#x}", self.client);
        }
        // SAFETY: the family says this is a sockaddr_in.
        let inet: libc::sockaddr_in =
            unsafe { std::ptr::read((&address as *const libc::sockaddr_storage).cast()) };
        let ip = std::net::Ipv4Addr::from(u32::from_be(inet.sin_addr.s_addr));
        format!("{ip}:{}, client {:#x}", u16::from_be(inet.sin_port), self.client)
    }

    /// Records `count` received bytes.
    pub fn received(&mut self, count: usize, now: Instant) {
        self.decoder.advance(count);
        self.last_activity = now;
        if self.partial_since.is_none() {
            self.partial_since = Some(now);
        }
    }

    /// Records that a complete message was taken from the decoder: what follows is a new message.
    pub fn message_completed(&mut self) {
        self.partial_since = None;
    }

    /// True while a message is queued or being sent: the connection's messages are not handled
    /// meanwhile (back-pressure), so each answer has the send buffer to itself.
    pub fn sending(&self) -> bool {
        self.send_offset < self.send_size
    }

    /// Queues `message` to be sent on connection `index`. The send buffer holds one message: a
    /// message that finds it busy is never dropped silently — the connection is closed with a
    /// log line instead (its client reconnects and retries, and gets its stored reply). That
    /// happens only to a connection carrying several clients' requests at once, as the
    /// connection's own messages wait while it sends. On a connection already closing there is
    /// nobody to tell.
    pub fn send(&mut self, message: &[u8], index: usize) {
        if self.state != ConnectionState::Open {
            return;
        }
        if self.sending() {
            eprintln!(
                "warning: closing connection {index} ({}): a second message to send while one is being \
                 sent (one request in flight per connection)",
                self.peer()
            );
            self.shutdown();
            self.close_if_idle();
            return;
        }
        self.send_buffer.as_bytes_mut()[..message.len()].copy_from_slice(message);
        self.send_size = message.len();
        self.send_offset = 0;
    }

    /// The rest of the message to send, if any and no send is in flight.
    pub fn send_pending(&self) -> Option<(*const u8, u32)> {
        if self.send_in_flight || self.send_offset >= self.send_size || self.state != ConnectionState::Open {
            return None;
        }
        let bytes = &self.send_buffer.as_bytes()[self.send_offset..self.send_size];
        Some((bytes.as_ptr(), bytes.len() as u32))
    }

    /// Records `count` bytes sent.
    pub fn sent(&mut self, count: usize) {
        self.send_offset += count;
        assert!(self.send_offset <= self.send_size);
        if self.shutdown_after_send && self.send_offset == self.send_size {
            self.shutdown();
        }
    }

    /// After the decoder rejected a message with `FrameError::Cluster`: if the message was an
    /// intact request, a client configured with another cluster sent it, so it is told so with
    /// a `wrong_cluster` eviction (`docs/protocol.md`) before the connection is shut down, and
    /// this returns true. Otherwise nothing is sent and this returns false: close as usual.
    pub fn reject_wrong_cluster(&mut self, index: usize) -> bool {
        let Some(request) = self.decoder.foreign_header() else { return false };
        if request.command() != Some(Command::Request) {
            return false;
        }
        if !self.shutdown_after_send {
            // The decoder's error is sticky: a later receive on this connection lands here again.
            let mut eviction = wrong_cluster_eviction_header(request, self.decoder.cluster());
            eviction.set_body(&[]);
            eviction.set_checksum();
            eprintln!(
                "warning: closing connection {index} ({}): a request for cluster {}, not {}; sent a \
                 wrong_cluster eviction first",
                self.peer(),
                request.cluster,
                eviction.cluster
            );
            // Messages are handled only while nothing is being sent: the buffer is free.
            assert!(!self.sending());
            self.send(bytemuck::bytes_of(&eviction), index);
            self.shutdown_after_send = true;
        }
        true
    }

    /// Stops the connection: pending receives and sends complete, then it is closed.
    pub fn shutdown(&mut self) {
        if self.state == ConnectionState::Open {
            // SAFETY: `fd` is this connection's open socket.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
            self.state = ConnectionState::Closing;
        }
    }

    /// Closes the socket once nothing is in flight on it.
    pub fn close_if_idle(&mut self) {
        if self.state == ConnectionState::Closing && !self.recv_in_flight && !self.send_in_flight {
            // SAFETY: no operation uses `fd` any more, and it is closed exactly once.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
            self.state = ConnectionState::Free;
        }
    }

    /// Shuts the connection down if it was silent, or held a partial message, for `timeout`
    /// (a client that connects and never sends, or sends a byte a second).
    pub fn close_if_stale(&mut self, now: Instant, timeout: Duration) {
        if self.state != ConnectionState::Open {
            return;
        }
        if !self.decoder.has_partial() {
            self.partial_since = None;
        }
        let silent = now.duration_since(self.last_activity) > timeout && self.send_offset >= self.send_size;
        let slow = self.partial_since.is_some_and(|since| now.duration_since(since) > timeout);
        if silent || slow {
            eprintln!(
                "info: closing connection ({}): {} for {timeout:?}",
                self.peer(),
                if slow { "a partial message" } else { "idle" }
            );
            self.shutdown();
            self.close_if_idle();
        }
    }

    /// Closes the socket at shutdown (the loop is gone, so nothing is in flight).
    pub fn force_close(&mut self) {
        if self.state != ConnectionState::Free {
            // SAFETY: the ring that used `fd` was dropped; it is closed exactly once.
            unsafe { libc::close(self.fd) };
            self.state = ConnectionState::Free;
            self.recv_in_flight = false;
            self.send_in_flight = false;
        }
    }
}
