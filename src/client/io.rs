//! The client I/O thread: it owns the connection, the session and the one request in flight.
//!
//! The loop alternates between two states. With no request in flight it waits for calls,
//! then starts a request: `register` if there is no session, else the oldest call's operation
//! with every later call of that operation that fits ([`Packer`]). With a request in flight it
//! connects if needed, sends the sealed request bytes once per connection, and reads until the
//! matching reply or eviction arrives or the attempt's retry interval passes; then it drops the
//! connection, moves to the next address and sends the same bytes again — unless the replica
//! answered with a `wrong_cluster` eviction, after which every call fails and nothing is sent.
//!
//! Blocking I/O with short timeouts (at most [`TICK`]) keeps the loop responsive to
//! [`super::Client::close`]; callers enforce their own timeouts.

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use super::coalesce::{Packer, BATCH_SIZE_LIMIT_MIN};
use super::{ClientError, ClientOptions, LinkError, Shared, Table};
use crate::constants::MESSAGE_BODY_SIZE_MAX;
use crate::multi_batch::{MultiBatch, MultiBatchEncoder};
use crate::net::codec::{request_header, Decoder, MessageBuffer, RegisterResult};
use crate::operation::Operation;
use crate::vsr::header::{Command, EvictionReason, Header, ReplyStatus};

/// The longest the I/O thread blocks before checking whether the client was closed.
const TICK: Duration = Duration::from_millis(50);

/// The most calls the I/O thread holds besides the channel's [`super::CALLS_QUEUED_MAX`].
const CALLS_PENDING_MAX: usize = super::CALLS_QUEUED_MAX;

/// One caller's batch, waiting for its results.
pub(super) struct Call {
    pub(super) operation: Operation,
    pub(super) events: Vec<u8>,
    pub(super) event_count: usize,
    /// The most results the batch can produce (what the reply reserves for it).
    pub(super) result_count_max: usize,
    /// When the caller stops waiting.
    pub(super) deadline: Instant,
    pub(super) reply: Sender<Result<Vec<u8>, ClientError>>,
}

impl Call {
    fn fail(self, error: ClientError) {
        // The caller may have timed out and gone: then nobody needs the answer.
        let _ = self.reply.send(Err(error));
    }
}

/// A caller waiting to learn the cluster's `batch_size_limit`.
pub(super) struct LimitWaiter {
    pub(super) deadline: Instant,
    pub(super) reply: Sender<Result<usize, ClientError>>,
}

/// What callers send to the I/O thread.
pub(super) enum Submission {
    Call(Call),
    Limit(LimitWaiter),
}

#[derive(Clone, Copy, Debug)]
struct Session {
    number: u64,
    batch_size_limit: usize,
}

enum InflightKind {
    Register,
    Calls { operation: Operation, calls: Vec<Call> },
}

struct Inflight {
    kind: InflightKind,
    /// The request number.
    request: u32,
    /// The request header's checksum: a reply's `context`.
    checksum: u128,
    /// Whether the request was sent on the current connection.
    sent: bool,
    /// How many times the request was sent; the retry interval doubles with each.
    attempt_count: u32,
    /// When the current attempt gives up waiting for the reply.
    reply_deadline: Instant,
}

/// The connection and the retry policy.
struct Link {
    addresses: Vec<SocketAddr>,
    options: ClientOptions,
    stream: Option<TcpStream>,
    decoder: Decoder,
    address_index: usize,
    /// The address whose replica answered last (the primary, in a cluster), until it fails:
    /// an attempt there waits the retry interval; anywhere else, only the rotation interval
    /// (a backup drops requests, so waiting longer there finds nothing).
    answered_index: Option<usize>,
    /// Consecutive failed connections or attempts: drives the back-off.
    failure_count: usize,
    reconnect_at: Instant,
}

/// Everything but the connection: calls, session, the request in flight.
struct State {
    cluster: u128,
    client: u128,
    shared: Arc<Shared>,
    submissions: Receiver<Submission>,
    pending: VecDeque<Call>,
    limit_waiters: Vec<LimitWaiter>,
    session: Option<Session>,
    /// The number of the latest request of the session that was answered.
    request_number: u32,
    inflight: Option<Inflight>,
    /// The in-flight request's bytes, sent identically on every attempt.
    request: MessageBuffer,
    /// A spare list of calls, reused so that starting a request does not allocate.
    calls_spare: Vec<Call>,
    /// Set once a replica said it belongs to another cluster: every call fails with this error
    /// and nothing is sent again, because no retry can fix the client's configuration.
    fatal: Option<ClientError>,
    /// The newest view a reply carried, and whether the client has yet to move to its
    /// primary.
    view: u32,
    view_newer: bool,
}

/// What a received message meant.
enum Received {
    /// Not for the request in flight (a late duplicate): ignored.
    Ignored,
    /// It answered the request in flight.
    Answered,
    /// The peer broke the protocol: drop the connection.
    Violation(&'static str),
}

/// The client I/O thread's state; [`IoThread::run`] is the thread's body.
pub(super) struct IoThread {
    link: Link,
    state: State,
}

impl IoThread {
    pub(super) fn new(
        cluster: u128,
        client: u128,
        addresses: Vec<SocketAddr>,
        options: ClientOptions,
        submissions: Receiver<Submission>,
        shared: Arc<Shared>,
    ) -> IoThread {
        assert!(!addresses.is_empty());
        assert_ne!(client, 0);
        let link = Link {
            addresses,
            options,
            stream: None,
            decoder: Decoder::new(cluster),
            address_index: 0,
            answered_index: None,
            failure_count: 0,
            reconnect_at: Instant::now(),
        };
        let state = State {
            cluster,
            client,
            shared,
            submissions,
            pending: VecDeque::with_capacity(CALLS_PENDING_MAX),
            limit_waiters: Vec::new(),
            session: None,
            request_number: 0,
            inflight: None,
            request: MessageBuffer::new(),
            calls_spare: Vec::new(),
            fatal: None,
            view: 0,
            view_newer: false,
        };
        IoThread { link, state }
    }

    /// Runs until the client is closed or dropped; then fails every call left.
    pub(super) fn run(mut self) {
        while !self.state.shared.closed.load(Ordering::Acquire) {
            if self.state.inflight.is_none() {
                if !self.state.receive_submissions() {
                    break;
                }
                match self.state.fatal.clone() {
                    Some(error) => self.state.fail_all(|_| error.clone()),
                    None => self.state.start_request(),
                }
            } else {
                self.drive();
            }
        }
        self.state.fail_all(|_| ClientError::ShuttingDown);
    }

    /// One step of the request in flight: connect, send, or wait for the reply.
    fn drive(&mut self) {
        let now = Instant::now();
        if self.link.stream.is_none() {
            if now < self.link.reconnect_at {
                std::thread::sleep((self.link.reconnect_at - now).min(TICK));
            } else {
                self.connect();
            }
            return;
        }
        let inflight = self.state.inflight.as_mut().expect("drive needs a request in flight");
        if !inflight.sent {
            let stream = self.link.stream.as_mut().expect("connected");
            if let Err(error) = stream.write_all(self.state.request.message().bytes()) {
                self.link_failed(Some(("sending a request to", error)));
                return;
            }
            inflight.sent = true;
            // Each round over the addresses waits twice as long as the one before. At the
            // replica that answered last, an attempt waits the retry interval; at another, the
            // rotation interval: in a cluster only the primary answers, so after a failover
            // the client tries the replicas in turn, quickly, until one does.
            let round = (inflight.attempt_count as usize / self.link.addresses.len()).min(16) as u32;
            let base = if self.link.answered_index == Some(self.link.address_index) {
                self.link.options.retry_interval_min
            } else {
                self.link.options.rotation_interval.min(self.link.options.retry_interval_min)
            };
            let interval = base.saturating_mul(1u32 << round);
            inflight.reply_deadline = now + interval.min(self.link.options.retry_interval_max);
            inflight.attempt_count += 1;
        }
        if now >= inflight.reply_deadline {
            // No reply within the retry interval: try again, on the next address.
            self.link_failed(None);
            return;
        }
        let wait = (inflight.reply_deadline - now).min(TICK);
        self.receive(wait);
    }

    fn connect(&mut self) {
        let address = self.link.addresses[self.link.address_index];
        match TcpStream::connect_timeout(&address, self.link.options.connect_timeout) {
            Ok(stream) => {
                // Connection failures count while consecutive: a replica that is down costs
                // nothing more than its refusal while the others can be reached.
                self.link.failure_count = 0;
                // Requests are written whole; waiting to fill a segment only adds latency.
                let _ = stream.set_nodelay(true);
                if let Err(error) = stream.set_write_timeout(Some(self.link.options.retry_interval_max)) {
                    self.link_failed(Some(("configuring the connection to", error)));
                    return;
                }
                self.link.stream = Some(stream);
                self.link.decoder.reset();
                self.state.shared.set_link_error(None);
                if let Some(inflight) = self.state.inflight.as_mut() {
                    inflight.sent = false;
                }
            }
            Err(error) => {
                let error = LinkError { address, context: None, source: Arc::new(error) };
                self.state.shared.set_link_error(Some(error));
                self.backoff();
            }
        }
    }

    /// Reads for at most `wait` and handles every complete message.
    fn receive(&mut self, wait: Duration) {
        assert!(wait > Duration::ZERO);
        let Link { stream, decoder, .. } = &mut self.link;
        let stream = stream.as_mut().expect("connected");
        if let Err(error) = stream.set_read_timeout(Some(wait)) {
            self.link_failed(Some(("configuring the connection to", error)));
            return;
        }
        let spare = decoder.spare();
        // Every complete message was handled after the previous read, so there is room.
        assert!(!spare.is_empty());
        match stream.read(spare) {
            Ok(0) => {
                let error = io::Error::new(io::ErrorKind::UnexpectedEof, "the replica closed the connection");
                self.link_failed(Some(("reading from", error)));
            }
            Ok(count) => {
                decoder.advance(count);
                self.handle_messages();
            }
            Err(error)
                if matches!(
                    error.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
                ) => {}
            Err(error) => self.link_failed(Some(("reading from", error))),
        }
    }

    /// Handles every complete message the decoder holds.
    fn handle_messages(&mut self) {
        loop {
            let received = match self.link.decoder.next_message() {
                Ok(None) => return,
                Ok(Some(message)) => self.state.on_message(message.header(), message.body()),
                Err(error) => {
                    if let Some(found) = self.link.wrong_cluster(self.state.client) {
                        self.wrong_cluster(found);
                        return;
                    }
                    let error = io::Error::new(io::ErrorKind::InvalidData, error);
                    self.link_failed(Some(("receiving a message from", error)));
                    return;
                }
            };
            match received {
                Received::Ignored => {}
                Received::Answered => {
                    self.link.failure_count = 0;
                    self.link.answered_index = Some(self.link.address_index);
                    if std::mem::take(&mut self.state.view_newer) && self.view_follow() {
                        return;
                    }
                }
                Received::Violation(reason) => {
                    let error = io::Error::new(io::ErrorKind::InvalidData, reason);
                    self.link_failed(Some(("receiving a message from", error)));
                    return;
                }
            }
        }
    }

    /// After a reply of a newer view: moves to that view's primary (`view mod` the number of
    /// addresses, which list the cluster's replicas in replica order), if it is not the replica
    /// at hand. True if it dropped the connection for it. (Only a change of view moves the
    /// client: a cluster of one stays in view 0, so its addresses are still tried in turn.)
    fn view_follow(&mut self) -> bool {
        let primary = self.state.view as usize % self.link.addresses.len();
        if primary == self.link.address_index {
            return false;
        }
        self.link.address_index = primary;
        self.link.stream = None;
        self.link.decoder.reset();
        self.link.reconnect_at = Instant::now();
        true
    }

    /// The replica at the current address belongs to cluster `found`: fails every call, now and
    /// later, and drops the connection for good.
    fn wrong_cluster(&mut self, found: u128) {
        let address = self.link.addresses[self.link.address_index];
        let error = ClientError::WrongCluster { address, expected: self.state.cluster, found };
        self.link.stream = None;
        self.link.decoder.reset();
        self.state.session = None;
        self.state.fail_all(|_| error.clone());
        assert!(self.state.inflight.is_none());
        self.state.fatal = Some(error);
    }

    /// Drops the connection after a failure (`None`: no reply in time) and plans the next one.
    fn link_failed(&mut self, failure: Option<(&'static str, io::Error)>) {
        let address = self.link.addresses[self.link.address_index];
        let connection_failed = failure.is_some();
        if let Some((context, error)) = failure {
            let error = LinkError { address, context: Some(context), source: Arc::new(error) };
            self.state.shared.set_link_error(Some(error));
        }
        self.link.stream = None;
        self.link.decoder.reset();
        // It failed, or did not answer in time: it is the primary no longer, as far as known.
        self.link.answered_index = None;
        if let Some(inflight) = self.state.inflight.as_mut() {
            inflight.sent = false;
        }
        if connection_failed {
            self.backoff();
        } else {
            // No reply in time: the attempt's own wait spaced it (in a cluster, usually a
            // backup that dropped the request); the next replica is tried at once.
            self.link.address_index = (self.link.address_index + 1) % self.link.addresses.len();
            self.link.reconnect_at = Instant::now();
        }
    }

    /// Moves to the next address. The first round of consecutive connection failures over the
    /// addresses is immediate; each later round waits twice as long, up to the maximum retry
    /// interval.
    fn backoff(&mut self) {
        let link = &mut self.link;
        link.failure_count += 1;
        link.address_index = (link.address_index + 1) % link.addresses.len();
        let round = (link.failure_count - 1) / link.addresses.len();
        let delay = if round == 0 {
            Duration::ZERO
        } else {
            let factor = 1u32 << (round - 1).min(16) as u32;
            link.options.retry_interval_min.saturating_mul(factor).min(link.options.retry_interval_max)
        };
        link.reconnect_at = Instant::now() + delay;
    }
}

impl Link {
    /// After the decoder rejected a message of another cluster: that cluster, if the message is
    /// an intact `wrong_cluster` eviction for `client` (the replica refused this client's cluster).
    fn wrong_cluster(&self, client: u128) -> Option<u128> {
        let header = self.decoder.foreign_header()?;
        let eviction = header.command() == Some(Command::Eviction)
            && EvictionReason::from_u8(header.status) == Some(EvictionReason::WrongCluster);
        (eviction && header.client == client).then_some(header.cluster)
    }
}

impl State {
    /// Waits (one tick at most) for calls when there is nothing to do, then takes every queued
    /// call. Returns false once every [`super::Client`] handle is gone.
    fn receive_submissions(&mut self) -> bool {
        if self.pending.is_empty() && self.limit_waiters.is_empty() {
            match self.submissions.recv_timeout(TICK) {
                Ok(submission) => self.accept(submission),
                Err(RecvTimeoutError::Timeout) => return true,
                Err(RecvTimeoutError::Disconnected) => return false,
            }
        }
        while self.pending.len() + self.limit_waiters.len() < CALLS_PENDING_MAX {
            match self.submissions.try_recv() {
                Ok(submission) => self.accept(submission),
                Err(_) => break,
            }
        }
        true
    }

    fn accept(&mut self, submission: Submission) {
        match submission {
            Submission::Call(call) => self.pending.push_back(call),
            Submission::Limit(waiter) => self.limit_waiters.push(waiter),
        }
    }

    /// Starts the next request, if any call waits: `register` first if there is no session.
    fn start_request(&mut self) {
        assert!(self.inflight.is_none());
        let now = Instant::now();
        // Callers that timed out have gone; their calls are not sent.
        self.pending.retain(|call| call.deadline > now);
        self.limit_waiters.retain(|waiter| waiter.deadline > now);
        let session = match self.session {
            Some(session) if self.request_number < u32::MAX => session,
            _ => {
                if !self.pending.is_empty() || !self.limit_waiters.is_empty() {
                    self.start_register();
                }
                return;
            }
        };
        for waiter in self.limit_waiters.drain(..) {
            let _ = waiter.reply.send(Ok(session.batch_size_limit));
        }
        self.start_calls(session);
    }

    fn start_register(&mut self) {
        self.session = None;
        self.request_number = 0;
        let header = request_header(self.cluster, self.client, 0, 0, Operation::Register);
        self.request.seal(header, 0);
        self.inflight = Some(Inflight::new(InflightKind::Register, &self.request));
    }

    /// Packs the oldest call and the later calls of its operation that fit into one request.
    fn start_calls(&mut self, session: Session) {
        let limit = session.batch_size_limit;
        // A call too large for this cluster's request limit can never be sent.
        let mut index = 0;
        while index < self.pending.len() {
            let call = &self.pending[index];
            if Packer::new(call.operation, limit).fits_alone(call.event_count, call.result_count_max) {
                index += 1;
                continue;
            }
            let call = self.pending.remove(index).expect("index is in range");
            let (operation, count) = (call.operation, call.event_count);
            call.fail(ClientError::InvalidBatch {
                operation,
                count,
                max: Packer::event_max(operation, limit),
            });
        }
        let Some(front) = self.pending.front() else { return };
        let operation = front.operation;
        let mut packer = Packer::new(operation, limit);
        let mut calls = std::mem::take(&mut self.calls_spare);
        assert!(calls.is_empty());
        let mut index = 0;
        while index < self.pending.len() {
            let call = &self.pending[index];
            if call.operation != operation {
                index += 1;
                continue;
            }
            // First come, first served: a later call never overtakes one that does not fit.
            if !packer.add(call.event_count, call.result_count_max) {
                break;
            }
            calls.push(self.pending.remove(index).expect("index is in range"));
        }
        assert_eq!(calls.len(), packer.batch_count());
        let body_size = encode(&mut self.request, operation, &calls);
        assert!(body_size <= limit);
        let request = self.request_number + 1;
        let header = request_header(self.cluster, self.client, session.number, request, operation);
        self.request.seal(header, body_size);
        self.inflight = Some(Inflight::new(InflightKind::Calls { operation, calls }, &self.request));
    }

    fn on_message(&mut self, header: &Header, body: &[u8]) -> Received {
        if header.client != self.client {
            return Received::Violation("a message for another client");
        }
        match header.command() {
            Some(Command::Reply) => self.on_reply(header, body),
            Some(Command::Eviction) => self.on_eviction(header),
            _ => Received::Violation("a command other than reply or eviction"),
        }
    }

    fn on_reply(&mut self, header: &Header, body: &[u8]) -> Received {
        let Some(inflight) = self.inflight.as_ref() else { return Received::Ignored };
        if header.context != inflight.checksum || header.request != inflight.request {
            return Received::Ignored;
        }
        if header.view > self.view {
            self.view = header.view;
            self.view_newer = true;
        }
        let inflight = self.inflight.take().expect("checked above");
        match inflight.kind {
            InflightKind::Register => self.on_register_reply(header, body),
            InflightKind::Calls { operation, mut calls } => {
                self.request_number = inflight.request;
                deliver(operation, &mut calls, header, body);
                assert!(calls.is_empty());
                self.calls_spare = calls;
            }
        }
        Received::Answered
    }

    fn on_register_reply(&mut self, header: &Header, body: &[u8]) {
        let limit = match register_result(header, body) {
            Ok(limit) => limit,
            Err(reason) => {
                // Without a usable session nothing can be sent: fail what waits for one.
                let error = |operation| ClientError::InvalidReply { operation, reason: reason.clone() };
                self.fail_all(error);
                return;
            }
        };
        self.session = Some(Session { number: header.op, batch_size_limit: limit });
        self.request_number = 0;
    }

    fn on_eviction(&mut self, header: &Header) -> Received {
        let Some(inflight) = self.inflight.as_ref() else { return Received::Ignored };
        if header.request != inflight.request {
            return Received::Ignored;
        }
        let inflight = self.inflight.take().expect("checked above");
        self.session = None;
        self.request_number = 0;
        let error =
            ClientError::Evicted { reason: EvictionReason::from_u8(header.status), code: header.status };
        match inflight.kind {
            // Registering itself was refused: registering again would be refused too.
            InflightKind::Register => self.fail_all(|_| error.clone()),
            // The calls of the evicted request fail; later calls register a new session.
            InflightKind::Calls { calls, .. } => calls.into_iter().for_each(|call| call.fail(error.clone())),
        }
        Received::Answered
    }

    /// Fails the request in flight, every pending call and every queued call.
    fn fail_all(&mut self, error: impl Fn(Operation) -> ClientError) {
        if let Some(Inflight { kind: InflightKind::Calls { operation, calls }, .. }) = self.inflight.take() {
            calls.into_iter().for_each(|call| call.fail(error(operation)));
        }
        while let Ok(submission) = self.submissions.try_recv() {
            self.accept(submission);
        }
        for call in self.pending.drain(..) {
            let operation = call.operation;
            call.fail(error(operation));
        }
        for waiter in self.limit_waiters.drain(..) {
            let _ = waiter.reply.send(Err(error(Operation::Register)));
        }
    }
}

impl Inflight {
    fn new(kind: InflightKind, request: &MessageBuffer) -> Inflight {
        let header = request.message().header();
        Inflight {
            kind,
            request: header.request,
            checksum: header.checksum,
            sent: false,
            attempt_count: 0,
            reply_deadline: Instant::now(),
        }
    }
}

/// Writes the calls' events as one batch each into the request's body; returns its size.
fn encode(request: &mut MessageBuffer, operation: Operation, calls: &[Call]) -> usize {
    let body = &mut request.body_mut()[..MESSAGE_BODY_SIZE_MAX];
    let mut encoder = MultiBatchEncoder::new(body, operation.event_size(), calls.len());
    for call in calls {
        // One call, one whole batch: its events are never split between requests or batches.
        assert_eq!(call.events.len(), call.event_count * operation.event_size());
        encoder.writable()[..call.events.len()].copy_from_slice(&call.events);
        encoder.push(call.event_count);
    }
    encoder.finish()
}

/// Hands each batch of the reply to its call, in order.
fn deliver(operation: Operation, calls: &mut Vec<Call>, header: &Header, body: &[u8]) {
    let which = match ReplyStatus::from_u8(header.status) {
        Some(ReplyStatus::Ok) => None,
        Some(ReplyStatus::AccountsFull) => Some(Table::Accounts),
        Some(ReplyStatus::TransfersFull) => Some(Table::Transfers),
        Some(ReplyStatus::ExpiriesFull) => Some(Table::Expiries),
        Some(ReplyStatus::HistoryFull) => Some(Table::History),
        None => {
            let reason = format!("unknown reply status {}", header.status);
            calls
                .drain(..)
                .for_each(|call| call.fail(ClientError::InvalidReply { operation, reason: reason.clone() }));
            return;
        }
    };
    if let Some(which) = which {
        calls.drain(..).for_each(|call| call.fail(ClientError::TableFull { operation, which }));
        return;
    }
    let batches = match MultiBatch::decode(body, operation.result_size()) {
        Ok(batches) if batches.batch_count() == calls.len() => batches,
        Ok(batches) => {
            let reason =
                format!("{} result batches for {} request batches", batches.batch_count(), calls.len());
            calls
                .drain(..)
                .for_each(|call| call.fail(ClientError::InvalidReply { operation, reason: reason.clone() }));
            return;
        }
        Err(error) => {
            let reason = error.to_string();
            calls
                .drain(..)
                .for_each(|call| call.fail(ClientError::InvalidReply { operation, reason: reason.clone() }));
            return;
        }
    };
    let mut calls = calls.drain(..);
    batches.for_each(|_, results| {
        let call = calls.next().expect("one call per batch");
        let count = results.len() / operation.result_size();
        if count > call.result_count_max {
            let reason = format!("{count} results for a batch that allows {}", call.result_count_max);
            call.fail(ClientError::InvalidReply { operation, reason });
        } else {
            let _ = call.reply.send(Ok(results.to_vec()));
        }
    });
}

/// The `batch_size_limit` of a register reply.
fn register_result(header: &Header, body: &[u8]) -> Result<usize, String> {
    if header.status != ReplyStatus::Ok as u8 {
        return Err(format!("register reply has status {}", header.status));
    }
    if body.len() != size_of::<RegisterResult>() {
        return Err(format!(
            "register reply body has {} bytes, not {}",
            body.len(),
            size_of::<RegisterResult>()
        ));
    }
    let result: RegisterResult = bytemuck::pod_read_unaligned(body);
    let limit = result.batch_size_limit as usize;
    if !(BATCH_SIZE_LIMIT_MIN..=MESSAGE_BODY_SIZE_MAX).contains(&limit) {
        return Err(format!(
            "batch_size_limit {limit} is outside {BATCH_SIZE_LIMIT_MIN}..={MESSAGE_BODY_SIZE_MAX}"
        ));
    }
    Ok(limit)
}
