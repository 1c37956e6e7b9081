//! A simulated client: registers, then sends one request at a time (random bodies from
//! [`Requests`]) and retries it, byte for byte, until it is answered. Now and then it also sends
//! what a faulty or slow network or client produces: a duplicate of the request in flight, a
//! retry of the latest answered request (answered from the session), an older request number, a
//! number far ahead, an altered copy of the latest request, and a request with the session it
//! was evicted from. Only the next request of the session may ever execute; the checkers hold
//! the replica to that.
//!
//! In a cluster it sends to the primary of the newest view it learned from a reply, and each
//! retry of a request to the next replica in turn, as the client library does: only the
//! primary of a normal view answers, so a client finds the new primary after a view change.

use super::network::{Address, Packet};
use super::requests::{RequestBody, Requests};
use crate::constants::HEADER_SIZE;
use crate::net::codec::{request_header, MessageBuffer};
use crate::operation::Operation;
use crate::prng::Prng;
use crate::vsr::header::{Command, EvictionReason, Header};

/// How far ahead a "skipping" request number jumps: more requests than any run sends, so that
/// it can never become the session's next request while it is in flight.
pub const REQUEST_SKIP_AHEAD: u32 = 1 << 20;

/// How a client behaves, per tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientOptions {
    /// Percent chance per tick that an idle, registered client sends its next request.
    pub request_percent: u64,
    /// Percent chance per tick that a client sends a noise message (see the module docs).
    pub noise_percent: u64,
    /// The fewest ticks before a request in flight is retried.
    pub retry_ticks_min: u64,
    /// The most ticks before a request in flight is retried.
    pub retry_ticks_max: u64,
}

/// One message a client sends.
pub struct Send {
    /// The sealed message.
    pub packet: Packet,
    /// Whether it is a new request of the session (the only kind that may execute), as opposed
    /// to a retry or noise.
    pub next: bool,
}

/// The request in flight.
struct InFlight {
    message: Vec<u8>,
    checksum: u128,
    retry_tick: u64,
}

/// One simulated client.
pub struct SimClient {
    id: u128,
    cluster: u128,
    replica_count: u8,
    /// The replica it sends to next.
    replica: u8,
    /// The newest view a reply carried.
    view: u32,
    options: ClientOptions,
    /// The session (the op its register committed at); 0 before a register is answered.
    session: u64,
    /// The session this client was evicted from last, if any.
    session_evicted: Option<u64>,
    /// The latest request number sent as a next request (0: the register).
    request: u32,
    in_flight: Option<InFlight>,
    /// The latest answered request, for retries answered from the session.
    answered: Option<Vec<u8>>,
    replies: u64,
    evictions: u64,
}

impl SimClient {
    /// A client with id `id` (never 0) of `cluster`.
    pub fn new(id: u128, cluster: u128, replica_count: u8, options: ClientOptions) -> SimClient {
        assert_ne!(id, 0);
        assert!(replica_count >= 1);
        assert!(options.retry_ticks_min >= 1 && options.retry_ticks_min <= options.retry_ticks_max);
        SimClient {
            id,
            cluster,
            replica_count,
            replica: 0,
            view: 0,
            options,
            session: 0,
            session_evicted: None,
            request: 0,
            in_flight: None,
            answered: None,
            replies: 0,
            evictions: 0,
        }
    }

    /// The client's id.
    pub fn id(&self) -> u128 {
        self.id
    }

    /// Replies to its own requests received.
    pub fn replies(&self) -> u64 {
        self.replies
    }

    /// The number of the request in flight (not yet answered), if any.
    pub fn in_flight(&self) -> Option<u32> {
        self.in_flight.as_ref().map(|_| self.request)
    }

    /// Evictions received.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Acts at tick `now`: sends, retries or makes noise into `sends`. With `start_new`
    /// false it starts no new request (the run is draining: what is in flight completes).
    pub fn tick(
        &mut self,
        now: u64,
        start_new: bool,
        prng: &mut Prng,
        requests: &mut Requests,
        sealer: &mut MessageBuffer,
        sends: &mut Vec<Send>,
    ) {
        if let Some(in_flight) = &mut self.in_flight {
            // A duplicate now and then, as a client that reconnects may send.
            if now >= in_flight.retry_tick || prng.chance(1, 50) {
                if now >= in_flight.retry_tick {
                    // No answer: perhaps not the primary (any more). The next one in turn.
                    self.replica = (self.replica + 1) % self.replica_count;
                }
                in_flight.retry_tick =
                    now + prng.range_inclusive(self.options.retry_ticks_min, self.options.retry_ticks_max);
                let message = in_flight.message.clone();
                sends.push(self.send(message, false));
            }
        } else if !start_new {
        } else if self.session == 0 {
            if prng.chance(1, 4) {
                let message =
                    seal(sealer, request_header(self.cluster, self.id, 0, 0, Operation::Register), &[]);
                self.request = 0;
                self.start(now, prng, message, sends);
            }
        } else if prng.chance(self.options.request_percent, 100) {
            let RequestBody { operation, body } = requests.generate();
            self.request += 1;
            assert!(self.request < REQUEST_SKIP_AHEAD, "a run sends fewer requests per session");
            let header = request_header(self.cluster, self.id, self.session, self.request, operation);
            let message = seal(sealer, header, &body);
            self.start(now, prng, message, sends);
        }
        if prng.chance(self.options.noise_percent, 100) {
            self.noise(prng, requests, sealer, sends);
        }
    }

    /// Sends `message` as the next request and keeps it in flight.
    fn start(&mut self, now: u64, prng: &mut Prng, message: Vec<u8>, sends: &mut Vec<Send>) {
        let header: Header = bytemuck::pod_read_unaligned(&message[..HEADER_SIZE]);
        let retry_tick =
            now + prng.range_inclusive(self.options.retry_ticks_min, self.options.retry_ticks_max);
        self.in_flight = Some(InFlight { message: message.clone(), checksum: header.checksum, retry_tick });
        sends.push(self.send(message, true));
    }

    /// One message that must not execute anything new.
    fn noise(
        &mut self,
        prng: &mut Prng,
        requests: &mut Requests,
        sealer: &mut MessageBuffer,
        sends: &mut Vec<Send>,
    ) {
        let choice = prng.below(4);
        if choice == 0 {
            // A retry of the latest answered request: its stored reply comes back (or, once a
            // newer one committed, nothing). Not a register: once the session has moved on, a
            // register is a new session, not a retry.
            if let Some(message) = self.answered.clone() {
                let header: Header = bytemuck::pod_read_unaligned(&message[..HEADER_SIZE]);
                if header.request >= 1 {
                    sends.push(self.send(message, false));
                }
            }
            return;
        }
        let (session, number) = match choice {
            // After an eviction: a request of the old session. (Numbered far ahead, in case the
            // session is still alive: an eviction for another session's request resets the
            // client too.)
            1 => match self.session_evicted {
                Some(session) => (session, REQUEST_SKIP_AHEAD),
                None => return,
            },
            // An older request number, or one far ahead.
            2 if self.session != 0 && self.request >= 2 => {
                (self.session, prng.range_inclusive(1, u64::from(self.request) - 1) as u32)
            }
            2 if self.session != 0 => (self.session, self.request + REQUEST_SKIP_AHEAD),
            // The latest answered number with other bytes: dropped, never executed.
            3 if self.session != 0 && self.in_flight.is_none() && self.request >= 1 => {
                (self.session, self.request)
            }
            _ => return,
        };
        let RequestBody { operation, body } = requests.generate();
        let message = seal(sealer, request_header(self.cluster, self.id, session, number, operation), &body);
        sends.push(self.send(message, false));
    }

    fn send(&self, message: Vec<u8>, next: bool) -> Send {
        let to = Address::Replica(self.replica);
        Send { packet: Packet { from: Address::Client(self.id), to, message }, next }
    }

    /// Takes a message from the replica (already checked by the reply checker if a reply).
    pub fn on_message(&mut self, header: &Header) {
        assert_eq!(header.client, self.id, "the network delivers to the addressee");

        match header.command() {
            Some(Command::Reply) => {
                if header.view > self.view {
                    self.view = header.view;
                    self.replica = crate::vsr::quorums::primary_index(self.view, self.replica_count);
                }
                let Some(in_flight) = &self.in_flight else { return };
                if header.context != in_flight.checksum {
                    return; // A late or duplicate reply to an earlier request.
                }
                if header.operation == Operation::Register as u8 {
                    self.session = header.op;
                }
                self.answered = self.in_flight.take().map(|in_flight| in_flight.message);
                self.replies += 1;
            }
            Some(Command::Eviction)
                if header.status == EvictionReason::SessionTooLow as u8
                    && header.request == REQUEST_SKIP_AHEAD =>
            {
                // The answer to this client's noise of a session it left (a real client sends
                // nothing of an old session): it says nothing of the current one. Taking it
                // for the current session's eviction, the client registered again, got its
                // current session back (a register is answered from the session), and sent a
                // second, different request 1 in it, which the replica rightly never executes:
                // a client stuck forever (seed 642, found by the liveness checker).
            }
            Some(Command::Eviction) => {
                // A real client gives up its session on any eviction and registers again.
                if self.session != 0 {
                    self.session_evicted = Some(self.session);
                }
                self.session = 0;
                self.request = 0;
                self.in_flight = None;
                self.answered = None;
                self.evictions += 1;
            }
            command => panic!("a replica sent a client {command:?}"),
        }
    }
}

/// Seals a request with `body` and returns its bytes.
fn seal(sealer: &mut MessageBuffer, mut header: Header, body: &[u8]) -> Vec<u8> {
    header.set_body(body);
    sealer.seal_with_body(header, body);
    sealer.as_bytes()[..HEADER_SIZE + body.len()].to_vec()
}
