//! A small fake replica for client tests: a TCP listener that speaks `docs/protocol.md`. It
//! registers sessions, keeps each client's latest request and reply (so a retry gets the stored
//! reply byte for byte and a request is executed once), checks every request body with the
//! real `StateMachine::input_valid`, and answers with echo results that tell which events they
//! came from. A script decides per request whether to answer, delay, stay silent, drop the
//! connection, evict, or report a full table.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use ledger::constants::{MESSAGE_BODY_SIZE_MAX, QUERY_RESULTS_MAX};
use ledger::multi_batch::{MultiBatch, MultiBatchEncoder};
use ledger::net::codec::{
    eviction_header, reply_header, wrong_cluster_eviction_header, Decoder, FrameError, MessageBuffer,
    RegisterResult,
};
use ledger::operation::Operation;
use ledger::state_machine::StateMachine;
use ledger::types::{
    Account, AccountBalance, AccountFilter, CreateAccountStatus, CreateResult, CreateTransferStatus,
    QueryFilter, Transfer,
};
use ledger::vsr::header::{EvictionReason, Header, ReplyStatus};

/// What the fake does with one received request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    /// Follow the protocol: execute a new request, answer a retry from the stored reply.
    Answer,
    /// Wait, then [`Action::Answer`].
    AnswerAfter(Duration),
    /// Execute and store the reply, but do not send it (as if the reply was lost).
    ExecuteSilently,
    /// Do nothing.
    Ignore,
    /// Close the connection without answering.
    Close,
    /// Send an eviction and forget the client's session.
    Evict(EvictionReason),
    /// Reply with this status and an empty body (a full table).
    Status(ReplyStatus),
}

/// A request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// Which listener (of a replica and its siblings, [`FakeReplica::sibling`]) it came to.
    pub listener: usize,
    /// Which connection it came on (0, 1, 2, ... in accept order).
    pub connection: usize,
    pub header: Header,
    /// The whole message.
    pub bytes: Vec<u8>,
}

impl Received {
    pub fn operation(&self) -> Option<Operation> {
        Operation::from_u8(self.header.operation)
    }

    /// The number of batches of a state-machine request.
    pub fn batch_count(&self) -> usize {
        let body = &self.bytes[256..];
        usize::from(u16::from_le_bytes([body[body.len() - 2], body[body.len() - 1]]))
    }
}

type Script = Box<dyn FnMut(&Received) -> Action + Send>;

struct SessionEntry {
    session: u64,
    request_latest: u32,
    reply_latest: Vec<u8>,
}

struct Inner {
    cluster: u128,
    batch_size_limit: usize,
    stop: AtomicBool,
    log: Mutex<Vec<Received>>,
    script: Mutex<Script>,
    connection_count: AtomicUsize,
    sessions: Mutex<HashMap<u128, SessionEntry>>,
    op: AtomicU64,
    /// Requests executed (not answered from the stored reply).
    executed: Mutex<Vec<(u128, u32)>>,
    /// Requests whose body `StateMachine::input_valid` rejected.
    invalid: Mutex<Vec<String>>,
    /// Intact requests of another cluster, answered with a `wrong_cluster` eviction.
    foreign: AtomicUsize,
    /// The view replies carry.
    view: AtomicU32,
    listeners: AtomicUsize,
}

/// The fake replica; stops when dropped.
pub struct FakeReplica {
    pub address: SocketAddr,
    inner: Arc<Inner>,
    thread: Option<JoinHandle<()>>,
}

impl FakeReplica {
    /// A fake that answers every request.
    pub fn start(cluster: u128) -> FakeReplica {
        FakeReplica::with_limit(cluster, MESSAGE_BODY_SIZE_MAX)
    }

    /// A fake that announces `batch_size_limit` and answers every request.
    pub fn with_limit(cluster: u128, batch_size_limit: usize) -> FakeReplica {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let address = listener.local_addr().expect("local address");
        let inner = Arc::new(Inner {
            cluster,
            batch_size_limit,
            stop: AtomicBool::new(false),
            log: Mutex::new(Vec::new()),
            script: Mutex::new(Box::new(|_| Action::Answer)),
            connection_count: AtomicUsize::new(0),
            sessions: Mutex::new(HashMap::new()),
            op: AtomicU64::new(1),
            executed: Mutex::new(Vec::new()),
            invalid: Mutex::new(Vec::new()),
            foreign: AtomicUsize::new(0),
            view: AtomicU32::new(0),
            listeners: AtomicUsize::new(1),
        });
        let accept_inner = Arc::clone(&inner);
        let thread = std::thread::spawn(move || accept_loop(listener, 0, accept_inner));
        FakeReplica { address, inner, thread: Some(thread) }
    }

    /// Another address of the same fake replica (sessions, log and script shared): the replicas
    /// of a fake cluster that always agree. `Received::listener` tells them apart.
    pub fn sibling(&self) -> FakeReplica {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let address = listener.local_addr().expect("local address");
        let index = self.inner.listeners.fetch_add(1, Ordering::SeqCst);
        let inner = Arc::clone(&self.inner);
        let thread = std::thread::spawn(move || accept_loop(listener, index, inner));
        FakeReplica { address, inner: Arc::clone(&self.inner), thread: Some(thread) }
    }

    /// Makes every reply from now on carry `view`.
    pub fn set_view(&self, view: u32) {
        self.inner.view.store(view, Ordering::SeqCst);
    }

    /// Replaces the script that decides what to do with each request.
    pub fn script(&self, script: impl FnMut(&Received) -> Action + Send + 'static) {
        *self.inner.script.lock().unwrap() = Box::new(script);
    }

    /// Every request received so far.
    pub fn log(&self) -> Vec<Received> {
        self.inner.log.lock().unwrap().clone()
    }

    /// The state-machine requests received so far (not `register`).
    pub fn requests(&self) -> Vec<Received> {
        self.log()
            .into_iter()
            .filter(|received| received.header.operation != Operation::Register as u8)
            .collect()
    }

    pub fn connection_count(&self) -> usize {
        self.inner.connection_count.load(Ordering::SeqCst)
    }

    /// `(client, request)` of every request executed.
    pub fn executed(&self) -> Vec<(u128, u32)> {
        self.inner.executed.lock().unwrap().clone()
    }

    /// How many requests of another cluster were refused with a `wrong_cluster` eviction.
    pub fn foreign_count(&self) -> usize {
        self.inner.foreign.load(Ordering::SeqCst)
    }

    /// Requests the real replica would have rejected; must stay empty.
    pub fn invalid_requests(&self) -> Vec<String> {
        self.inner.invalid.lock().unwrap().clone()
    }
}

impl Drop for FakeReplica {
    fn drop(&mut self) {
        self.inner.stop.store(true, Ordering::SeqCst);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn accept_loop(listener: TcpListener, listener_index: usize, inner: Arc<Inner>) {
    let mut connections = Vec::new();
    while !inner.stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((stream, _)) => {
                let index = inner.connection_count.fetch_add(1, Ordering::SeqCst);
                let inner = Arc::clone(&inner);
                connections.push(std::thread::spawn(move || serve(stream, listener_index, index, inner)));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    for connection in connections {
        let _ = connection.join();
    }
}

fn serve(mut stream: TcpStream, listener: usize, connection: usize, inner: Arc<Inner>) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut decoder = Decoder::new(inner.cluster);
    let mut reply = MessageBuffer::new();
    while !inner.stop.load(Ordering::SeqCst) {
        let count = match stream.read(decoder.spare()) {
            Ok(0) => return,
            Ok(count) => count,
            Err(error)
                if matches!(error.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) =>
            {
                continue
            }
            Err(_) => return,
        };
        decoder.advance(count);
        loop {
            let received = match decoder.next_message() {
                Ok(Some(message)) => Received {
                    listener,
                    connection,
                    header: *message.header(),
                    bytes: message.bytes().to_vec(),
                },
                Ok(None) => break,
                Err(error) => {
                    // Like the replica: an intact request of another cluster gets a wrong_cluster
                    // eviction that names this cluster, then the connection is closed.
                    let request = match (error, decoder.foreign_header()) {
                        (FrameError::Cluster { .. }, Some(request)) => *request,
                        _ => panic!("the client sent an invalid message: {error}"),
                    };
                    inner.foreign.fetch_add(1, Ordering::SeqCst);
                    reply.seal(wrong_cluster_eviction_header(&request, inner.cluster), 0);
                    let _ = stream.write_all(reply.message().bytes());
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
            };
            inner.log.lock().unwrap().push(received.clone());
            let action = (inner.script.lock().unwrap())(&received);
            let answer = match action {
                Action::Ignore => None,
                Action::Close => {
                    let _ = stream.shutdown(Shutdown::Both);
                    return;
                }
                Action::AnswerAfter(delay) => {
                    std::thread::sleep(delay);
                    answer(&inner, &received, &mut reply)
                }
                Action::Answer => answer(&inner, &received, &mut reply),
                Action::ExecuteSilently => {
                    answer(&inner, &received, &mut reply);
                    None
                }
                Action::Evict(reason) => {
                    inner.sessions.lock().unwrap().remove(&received.header.client);
                    reply.seal(eviction_header(&received.header, reason), 0);
                    Some(reply.message().bytes().to_vec())
                }
                Action::Status(status) => {
                    let op = inner.op.fetch_add(1, Ordering::SeqCst);
                    reply.seal(reply_header(&received.header, op, op, status), 0);
                    Some(reply.message().bytes().to_vec())
                }
            };
            if let Some(bytes) = answer {
                if stream.write_all(&bytes).is_err() {
                    return;
                }
            }
        }
    }
}

/// What the protocol says to answer: `None` to drop the request.
fn answer(inner: &Inner, received: &Received, reply: &mut MessageBuffer) -> Option<Vec<u8>> {
    let header = &received.header;
    let mut sessions = inner.sessions.lock().unwrap();
    if header.operation == Operation::Register as u8 {
        let session = inner.op.fetch_add(1, Ordering::SeqCst);
        let result = RegisterResult::new(inner.batch_size_limit as u32);
        let mut reply_header = reply_header(header, session, session, ReplyStatus::Ok);
        reply_header.view = inner.view.load(Ordering::SeqCst);
        reply.seal_with_body(reply_header, bytemuck::bytes_of(&result));
        let bytes = reply.message().bytes().to_vec();
        sessions
            .insert(header.client, SessionEntry { session, request_latest: 0, reply_latest: bytes.clone() });
        return Some(bytes);
    }
    let Some(entry) =
        sessions.get_mut(&header.client).filter(|entry| u128::from(entry.session) == header.context)
    else {
        reply.seal(eviction_header(header, EvictionReason::NoSession), 0);
        return Some(reply.message().bytes().to_vec());
    };
    if header.request == entry.request_latest {
        return Some(entry.reply_latest.clone());
    }
    if header.request < entry.request_latest {
        return None;
    }
    assert_eq!(header.request, entry.request_latest + 1, "the client skipped a request number");
    let operation = Operation::from_u8(header.operation).expect("a known operation");
    let body = &received.bytes[256..];
    if let Err(error) = StateMachine::input_valid(operation, body, inner.batch_size_limit) {
        inner.invalid.lock().unwrap().push(format!("{operation:?}: {error}"));
        reply.seal(eviction_header(header, EvictionReason::InvalidRequestBody), 0);
        return Some(reply.message().bytes().to_vec());
    }
    let op = inner.op.fetch_add(1, Ordering::SeqCst);
    let size = execute(operation, body, reply.body_mut());
    let mut reply_header = reply_header(header, op, op, ReplyStatus::Ok);
    reply_header.view = inner.view.load(Ordering::SeqCst);
    reply.seal(reply_header, size);
    let bytes = reply.message().bytes().to_vec();
    entry.request_latest = header.request;
    entry.reply_latest = bytes.clone();
    inner.executed.lock().unwrap().push((header.client, header.request));
    Some(bytes)
}

/// Echo results: a create result's timestamp is the event's id; a lookup finds every id but 0;
/// a query returns `min(limit, 3)` records that carry the filter's `user_data_128` (or account).
fn execute(operation: Operation, body: &[u8], output: &mut [u8]) -> usize {
    let batches = MultiBatch::decode(body, operation.event_size()).expect("validated");
    let output = &mut output[..MESSAGE_BODY_SIZE_MAX];
    let mut encoder = MultiBatchEncoder::new(output, operation.result_size(), batches.batch_count());
    batches.for_each(|_, events| {
        let count = write_results(operation, events, encoder.writable());
        encoder.push(count);
    });
    encoder.finish()
}

fn write_results(operation: Operation, events: &[u8], output: &mut [u8]) -> usize {
    let mut results: Vec<u8> = Vec::new();
    match operation {
        Operation::CreateAccounts => {
            let events: &[Account] = bytemuck::cast_slice(events);
            for event in events {
                let result = CreateResult::new(event.id as u64, CreateAccountStatus::Created as u32);
                results.extend_from_slice(bytemuck::bytes_of(&result));
            }
        }
        Operation::CreateTransfers => {
            let events: &[Transfer] = bytemuck::cast_slice(events);
            for event in events {
                let result = CreateResult::new(event.id as u64, CreateTransferStatus::Created as u32);
                results.extend_from_slice(bytemuck::bytes_of(&result));
            }
        }
        Operation::LookupAccounts => {
            for id in bytemuck::cast_slice::<u8, u128>(events).iter().filter(|id| **id != 0) {
                let account = Account { id: *id, ledger: 1, code: 1, ..Account::default() };
                results.extend_from_slice(bytemuck::bytes_of(&account));
            }
        }
        Operation::LookupTransfers => {
            for id in bytemuck::cast_slice::<u8, u128>(events).iter().filter(|id| **id != 0) {
                let transfer = Transfer { id: *id, ledger: 1, code: 1, ..Transfer::default() };
                results.extend_from_slice(bytemuck::bytes_of(&transfer));
            }
        }
        Operation::GetAccountTransfers | Operation::GetAccountBalances => {
            let filter: AccountFilter = bytemuck::pod_read_unaligned(events);
            for index in 0..(filter.limit as usize).min(3).min(QUERY_RESULTS_MAX) {
                if operation == Operation::GetAccountTransfers {
                    let transfer = Transfer {
                        id: index as u128 + 1,
                        debit_account_id: filter.account_id,
                        ..Transfer::default()
                    };
                    results.extend_from_slice(bytemuck::bytes_of(&transfer));
                } else {
                    let balance = AccountBalance {
                        debits_posted: filter.account_id,
                        timestamp: index as u64 + 1,
                        ..AccountBalance::default()
                    };
                    results.extend_from_slice(bytemuck::bytes_of(&balance));
                }
            }
        }
        Operation::QueryAccounts | Operation::QueryTransfers => {
            let filter: QueryFilter = bytemuck::pod_read_unaligned(events);
            for index in 0..(filter.limit as usize).min(3) {
                if operation == Operation::QueryAccounts {
                    let account = Account {
                        id: index as u128 + 1,
                        user_data_128: filter.user_data_128,
                        ..Account::default()
                    };
                    results.extend_from_slice(bytemuck::bytes_of(&account));
                } else {
                    let transfer = Transfer {
                        id: index as u128 + 1,
                        user_data_128: filter.user_data_128,
                        ..Transfer::default()
                    };
                    results.extend_from_slice(bytemuck::bytes_of(&transfer));
                }
            }
        }
        Operation::Register | Operation::Pulse => unreachable!(),
    }
    output[..results.len()].copy_from_slice(&results);
    results.len() / operation.result_size()
}
