//! The Rust client library: a [`Client`] handle that any number of threads share, one TCP
//! connection to the cluster, and blocking calls for the eight operations.
//!
//! Every call is a batch of events. Calls of the same operation made at the same time by
//! different threads are *coalesced*: one request carries each call as a separate batch of the
//! multi-batch encoding (`docs/protocol.md`), and the reply's batches go back to their callers.
//! A batch is executed exactly as if it had been sent alone (linked chains never span calls).
//! A call with no events returns no results at once, without a request.
//!
//! One I/O thread per client owns the connection and the session: it registers, numbers the
//! requests, keeps one request in flight, and resends the identical request bytes — on a new
//! connection, trying the addresses in turn — until the reply arrives. When a reply carries a
//! newer view, the next request goes to that view's primary. A request retried on another
//! replica after a view change still executes once: sessions and request numbers are the
//! cluster's, and a committed request's retry gets its stored reply (docs/vsr.md). A call waits at most
//! its timeout; a request whose callers all timed out is still retried until the cluster
//! answers it, because the session cannot move on to the next request number before that.
//! One failure is never retried: a replica that says it belongs to another cluster (a
//! `wrong_cluster` eviction) fails every call of the client, then and later, with
//! [`ClientError::WrongCluster`].
//!
//! # Examples
//!
//! Connect, create two accounts and a transfer between them, then look up the balances:
//!
//! ```no_run
//! use std::time::Duration;
//! use ledger::client::Client;
//! use ledger::types::{Account, AccountFlags, CreateAccountStatus, CreateTransferStatus, Transfer};
//!
//! # fn main() -> Result<(), ledger::client::ClientError> {
//! let timeout = Duration::from_secs(10);
//! let client = Client::new(0, &["127.0.0.1:3001".parse().unwrap()])?;
//!
//! let accounts = [
//!     Account { id: 1, ledger: 700, code: 10, ..Account::default() },
//!     Account { id: 2, ledger: 700, code: 10, flags: AccountFlags::HISTORY, ..Account::default() },
//! ];
//! for result in client.create_accounts(&accounts, timeout)? {
//!     // `exists` means an earlier attempt created it: ids make creates idempotent.
//!     let status = CreateAccountStatus::from_u32(result.status);
//!     assert!(matches!(status, Some(CreateAccountStatus::Created | CreateAccountStatus::Exists)));
//! }
//!
//! let transfer =
//!     Transfer { id: 100, debit_account_id: 1, credit_account_id: 2, amount: 250, ledger: 700, code: 1, ..Transfer::default() };
//! let results = client.create_transfers(&[transfer], timeout)?;
//! assert_eq!(CreateTransferStatus::from_u32(results[0].status), Some(CreateTransferStatus::Created));
//!
//! for account in client.lookup_accounts(&[1, 2], timeout)? {
//!     println!("account {}: debits {} credits {}", account.id, account.debits_posted, account.credits_posted);
//! }
//! # Ok(())
//! # }
//! ```
//!
//! A pending transfer reserves an amount; a second transfer posts (or voids) it:
//!
//! ```no_run
//! use std::time::Duration;
//! use ledger::client::Client;
//! use ledger::types::{Transfer, TransferFlags};
//!
//! # fn main() -> Result<(), ledger::client::ClientError> {
//! # let timeout = Duration::from_secs(10);
//! # let client = Client::new(0, &["127.0.0.1:3001".parse().unwrap()])?;
//! let pending = Transfer {
//!     id: 101,
//!     debit_account_id: 1,
//!     credit_account_id: 2,
//!     amount: 50,
//!     ledger: 700,
//!     code: 1,
//!     flags: TransferFlags::PENDING,
//!     timeout: 3600, // seconds; 0 never expires
//!     ..Transfer::default()
//! };
//! client.create_transfers(&[pending], timeout)?;
//! // Post the whole pending amount (u128::MAX); the accounts, ledger and code are inherited.
//! let post = Transfer {
//!     id: 102,
//!     pending_id: 101,
//!     amount: u128::MAX,
//!     flags: TransferFlags::POST_PENDING_TRANSFER,
//!     ..Transfer::default()
//! };
//! client.create_transfers(&[post], timeout)?;
//! # Ok(())
//! # }
//! ```
//!
//! The balances of an account with the `history` flag, after each of its transfers:
//!
//! ```no_run
//! use std::time::Duration;
//! use ledger::client::Client;
//! use ledger::types::{AccountFilter, AccountFilterFlags};
//!
//! # fn main() -> Result<(), ledger::client::ClientError> {
//! # let client = Client::new(0, &["127.0.0.1:3001".parse().unwrap()])?;
//! let filter = AccountFilter {
//!     account_id: 2,
//!     limit: 100,
//!     flags: AccountFilterFlags::DEBITS.with(AccountFilterFlags::CREDITS),
//!     ..AccountFilter::default()
//! };
//! for balance in client.get_account_balances(filter, Duration::from_secs(10))? {
//!     println!("at {}: credits posted {}", balance.timestamp, balance.credits_posted);
//! }
//! # Ok(())
//! # }
//! ```

mod coalesce;
mod io;

use std::io as std_io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, SendTimeoutError, Sender};

use crate::constants::MESSAGE_BODY_SIZE_MAX;
use crate::operation::Operation;
use crate::types::{Account, AccountBalance, AccountFilter, CreateResult, QueryFilter, Transfer};
use crate::vsr::header::EvictionReason;

use self::coalesce::result_count_max;
use self::io::{Call, IoThread, LimitWaiter, Submission};

/// The most calls queued for the I/O thread; a caller beyond it waits (within its timeout).
pub const CALLS_QUEUED_MAX: usize = 1024;

/// A table of the cluster that can be full ([`ClientError::TableFull`]).
pub use crate::state_machine::Table;

/// Why a call failed.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ClientError {
    /// No reply within the call's timeout while the connection was up.
    #[error(
        "{}: no reply within {timeout:?}; the request may still execute: retry with the same ids \
         (a create that already happened reports `exists`)",
        .operation.name()
    )]
    Timeout {
        /// The operation of the call.
        operation: Operation,
        /// The call's timeout.
        timeout: Duration,
    },
    /// No reply within the call's timeout, and the last attempt to connect failed.
    #[error(
        "{}: no reply within {timeout:?}: connecting to {address} failed: {source}; check the \
         addresses and that the replica is running",
        .operation.name()
    )]
    Connect {
        /// The operation of the call.
        operation: Operation,
        /// The call's timeout.
        timeout: Duration,
        /// The address of the last attempt.
        address: SocketAddr,
        /// The error of the last attempt.
        source: Arc<std_io::Error>,
    },
    /// No reply within the call's timeout, and the last connection failed.
    #[error("{}: no reply within {timeout:?}: {context} {address} failed: {source}", .operation.name())]
    Io {
        /// The operation of the call.
        operation: Operation,
        /// The call's timeout.
        timeout: Duration,
        /// The replica's address.
        address: SocketAddr,
        /// What failed, e.g. "reading from".
        context: &'static str,
        /// The error.
        source: Arc<std_io::Error>,
    },
    /// The cluster evicted this client's session: the request was not executed. The next call
    /// registers a new session.
    #[error(
        "the cluster evicted this client's session ({}); the request was not executed; later \
         calls register a new session",
        eviction_reason_name(*.code)
    )]
    Evicted {
        /// The reason, if this build knows the code.
        reason: Option<EvictionReason>,
        /// The reason's code (`Eviction.status`).
        code: u8,
    },
    /// The replica belongs to another cluster (it said so with a `wrong_cluster` eviction): the
    /// client was created with the wrong cluster id. Every call of this client fails with this
    /// error at once; nothing is retried.
    #[error(
        "the replica at {address} belongs to cluster {found}, not cluster {expected}; use the \
         cluster id the replicas were formatted with"
    )]
    WrongCluster {
        /// The replica's address.
        address: SocketAddr,
        /// The cluster this client was created for.
        expected: u128,
        /// The replica's cluster.
        found: u128,
    },
    /// A call carried more events than one request can hold.
    #[error(
        "{}: {count} events in one call, but at most {max} fit in one request; split them into \
         several calls",
        .operation.name()
    )]
    InvalidBatch {
        /// The operation of the call.
        operation: Operation,
        /// The events of the call.
        count: usize,
        /// The most events one call may carry.
        max: usize,
    },
    /// The request was rejected as a whole because a table of the cluster is full: nothing of
    /// it was applied (this includes the other calls coalesced into the same request).
    #[error(
        "{}: the cluster's {which} table is full; the request was rejected and nothing of it was \
         applied",
        .operation.name()
    )]
    TableFull {
        /// The operation of the call.
        operation: Operation,
        /// The full table.
        which: Table,
    },
    /// The client was closed (or its I/O thread stopped).
    #[error("the client is shut down")]
    ShuttingDown,
    /// [`Client::new`] was given no address.
    #[error("no replica address given; pass at least one host:port")]
    NoAddresses,
    /// The client I/O thread could not be started.
    #[error("could not start the client I/O thread: {source}")]
    Spawn {
        /// The error from the operating system.
        source: Arc<std_io::Error>,
    },
    /// The replica answered with a reply the client cannot use: a bug or a version mismatch.
    #[error("{}: invalid reply from the replica: {reason}", .operation.name())]
    InvalidReply {
        /// The operation of the call.
        operation: Operation,
        /// What is wrong with the reply.
        reason: String,
    },
}

fn eviction_reason_name(code: u8) -> String {
    let name = match EvictionReason::from_u8(code) {
        Some(EvictionReason::NoSession) => "no_session",
        Some(EvictionReason::ClientReleaseTooLow) => "client_release_too_low",
        Some(EvictionReason::ClientReleaseTooHigh) => "client_release_too_high",
        Some(EvictionReason::InvalidRequestOperation) => "invalid_request_operation",
        Some(EvictionReason::InvalidRequestBody) => "invalid_request_body",
        Some(EvictionReason::InvalidRequestBodySize) => "invalid_request_body_size",
        Some(EvictionReason::SessionTooLow) => "session_too_low",
        Some(EvictionReason::SessionReleaseMismatch) => "session_release_mismatch",
        Some(EvictionReason::WrongCluster) => "wrong_cluster",
        None => return format!("reason {code}"),
    };
    name.to_owned()
}

/// How the client retries. The defaults suit a cluster on a network; tests shorten them.
#[derive(Clone, Copy, Debug)]
pub struct ClientOptions {
    /// How long an attempt of the first round over the addresses waits for its reply, at the
    /// replica that answered last, before the client reconnects (to the next address) and
    /// resends the request; each later round waits twice as long.
    pub retry_interval_min: Duration,
    /// As `retry_interval_min`, at a replica that has not answered last (at most
    /// `retry_interval_min`): in a cluster only the primary answers and a backup drops a
    /// request without a word, so after a failover the client tries the replicas in turn at
    /// this pace until the new primary answers.
    pub rotation_interval: Duration,
    /// The longest wait for one attempt, and between two rounds of connection attempts.
    pub retry_interval_max: Duration,
    /// How long one connection attempt may take.
    pub connect_timeout: Duration,
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            retry_interval_min: Duration::from_millis(300),
            rotation_interval: Duration::from_millis(50),
            retry_interval_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(1),
        }
    }
}

/// What the caller threads and the I/O thread share.
#[derive(Debug, Default)]
struct Shared {
    /// Set by [`Client::close`]: the I/O thread fails every call and stops.
    closed: AtomicBool,
    /// The last connection failure, cleared by a successful connection: a call that times out
    /// reports it, because "connection refused" says more than "timed out".
    link_error: Mutex<Option<LinkError>>,
}

#[derive(Clone, Debug)]
struct LinkError {
    address: SocketAddr,
    /// `None` for a failed connection attempt, else what failed on an established connection.
    context: Option<&'static str>,
    source: Arc<std_io::Error>,
}

impl Shared {
    fn link_error(&self) -> Option<LinkError> {
        self.link_error.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    fn set_link_error(&self, error: Option<LinkError>) {
        *self.link_error.lock().unwrap_or_else(PoisonError::into_inner) = error;
    }
}

/// A connection to a cluster, shared by any number of threads (`Client` is `Send + Sync`).
///
/// Dropping the client stops its I/O thread.
pub struct Client {
    id: u128,
    cluster: u128,
    submissions: Sender<Submission>,
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Client>();
};

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").field("id", &self.id).field("cluster", &self.cluster).finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `cluster` that talks to the replicas at `addresses` — every replica's, in
    /// replica order, for a cluster: a reply names its view, and the client moves to that
    /// view's primary (`view mod addresses.len()`) when the view changes — with the default
    /// [`ClientOptions`]. Connecting and registering happen on the first call.
    pub fn new(cluster: u128, addresses: &[SocketAddr]) -> Result<Client, ClientError> {
        Client::with_options(cluster, addresses, ClientOptions::default())
    }

    /// A client with explicit retry options.
    pub fn with_options(
        cluster: u128,
        addresses: &[SocketAddr],
        options: ClientOptions,
    ) -> Result<Client, ClientError> {
        if addresses.is_empty() {
            return Err(ClientError::NoAddresses);
        }
        assert!(options.retry_interval_min > Duration::ZERO);
        assert!(options.retry_interval_min <= options.retry_interval_max);
        let id = client_id_random();
        let shared = Arc::new(Shared::default());
        let (submissions, receiver): (Sender<Submission>, Receiver<Submission>) =
            crossbeam_channel::bounded(CALLS_QUEUED_MAX);
        let io = IoThread::new(cluster, id, addresses.to_vec(), options, receiver, Arc::clone(&shared));
        let thread = std::thread::Builder::new()
            .name(format!("ledger-client-{:08x}", id as u32))
            .spawn(move || io.run())
            .map_err(|source| ClientError::Spawn { source: Arc::new(source) })?;
        Ok(Client { id, cluster, submissions, shared, thread: Mutex::new(Some(thread)) })
    }

    /// This client's id: random and non-zero.
    pub fn id(&self) -> u128 {
        self.id
    }

    /// The cluster this client talks to.
    pub fn cluster(&self) -> u128 {
        self.cluster
    }

    /// Stops the I/O thread: calls waiting now and later fail with
    /// [`ClientError::ShuttingDown`]. Dropping the client does the same.
    pub fn close(&self) {
        self.shared.closed.store(true, Ordering::Release);
        let thread = self.thread.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(thread) = thread {
            // The thread stops within one tick; a panic in it has already failed its calls.
            let _ = thread.join();
        }
    }

    /// The most events one call of `operation` may carry with this cluster's request size
    /// limit, learnt when the session is registered (this call waits for that).
    pub fn event_max(&self, operation: Operation, timeout: Duration) -> Result<usize, ClientError> {
        assert!(Operation::CLIENT.contains(&operation));
        let deadline = deadline_after(timeout);
        let (reply, receiver) = crossbeam_channel::bounded(1);
        self.submit(Submission::Limit(LimitWaiter { deadline, reply }), operation, timeout, deadline)?;
        let batch_size_limit = self.wait(&receiver, operation, timeout, deadline)?;
        Ok(coalesce::Packer::event_max(operation, batch_size_limit))
    }

    /// Creates accounts; returns one result per account, in order.
    pub fn create_accounts(
        &self,
        accounts: &[Account],
        timeout: Duration,
    ) -> Result<Vec<CreateResult>, ClientError> {
        let bytes =
            self.call(Operation::CreateAccounts, bytemuck::cast_slice(accounts), accounts.len(), 0, timeout)?;
        Ok(records_from_bytes(&bytes))
    }

    /// Creates transfers; returns one result per transfer, in order.
    pub fn create_transfers(
        &self,
        transfers: &[Transfer],
        timeout: Duration,
    ) -> Result<Vec<CreateResult>, ClientError> {
        let bytes = self.call(
            Operation::CreateTransfers,
            bytemuck::cast_slice(transfers),
            transfers.len(),
            0,
            timeout,
        )?;
        Ok(records_from_bytes(&bytes))
    }

    /// Looks accounts up by id; returns the accounts found, in the order of `ids`.
    pub fn lookup_accounts(&self, ids: &[u128], timeout: Duration) -> Result<Vec<Account>, ClientError> {
        let bytes = self.call(Operation::LookupAccounts, bytemuck::cast_slice(ids), ids.len(), 0, timeout)?;
        Ok(records_from_bytes(&bytes))
    }

    /// Looks transfers up by id; returns the transfers found, in the order of `ids`.
    pub fn lookup_transfers(&self, ids: &[u128], timeout: Duration) -> Result<Vec<Transfer>, ClientError> {
        let bytes =
            self.call(Operation::LookupTransfers, bytemuck::cast_slice(ids), ids.len(), 0, timeout)?;
        Ok(records_from_bytes(&bytes))
    }

    /// The transfers of one account that match `filter`.
    pub fn get_account_transfers(
        &self,
        filter: AccountFilter,
        timeout: Duration,
    ) -> Result<Vec<Transfer>, ClientError> {
        let operation = Operation::GetAccountTransfers;
        let bytes = self.call(operation, bytemuck::bytes_of(&filter), 1, filter.limit, timeout)?;
        Ok(records_from_bytes(&bytes))
    }

    /// The balances of one account (with the `history` flag) after each transfer that matches
    /// `filter`.
    pub fn get_account_balances(
        &self,
        filter: AccountFilter,
        timeout: Duration,
    ) -> Result<Vec<AccountBalance>, ClientError> {
        let operation = Operation::GetAccountBalances;
        let bytes = self.call(operation, bytemuck::bytes_of(&filter), 1, filter.limit, timeout)?;
        Ok(records_from_bytes(&bytes))
    }

    /// The accounts that match `filter`.
    pub fn query_accounts(
        &self,
        filter: QueryFilter,
        timeout: Duration,
    ) -> Result<Vec<Account>, ClientError> {
        let bytes =
            self.call(Operation::QueryAccounts, bytemuck::bytes_of(&filter), 1, filter.limit, timeout)?;
        Ok(records_from_bytes(&bytes))
    }

    /// The transfers that match `filter`.
    pub fn query_transfers(
        &self,
        filter: QueryFilter,
        timeout: Duration,
    ) -> Result<Vec<Transfer>, ClientError> {
        let bytes =
            self.call(Operation::QueryTransfers, bytemuck::bytes_of(&filter), 1, filter.limit, timeout)?;
        Ok(records_from_bytes(&bytes))
    }

    /// Submits one batch and waits for its results (as bytes).
    fn call(
        &self,
        operation: Operation,
        events: &[u8],
        event_count: usize,
        query_limit: u32,
        timeout: Duration,
    ) -> Result<Vec<u8>, ClientError> {
        assert_eq!(events.len(), event_count * operation.event_size());
        // The largest call any cluster accepts; a smaller configured limit is checked by the I/O
        // thread once the session is registered.
        let max = coalesce::Packer::event_max(operation, MESSAGE_BODY_SIZE_MAX);
        if event_count > max {
            return Err(ClientError::InvalidBatch { operation, count: event_count, max });
        }
        if event_count == 0 {
            // Nothing to execute: an empty batch has empty results.
            return Ok(Vec::new());
        }
        let deadline = deadline_after(timeout);
        let (reply, receiver) = crossbeam_channel::bounded(1);
        let call = Call {
            operation,
            events: events.to_vec(),
            event_count,
            result_count_max: result_count_max(operation, event_count, query_limit),
            deadline,
            reply,
        };
        self.submit(Submission::Call(call), operation, timeout, deadline)?;
        self.wait(&receiver, operation, timeout, deadline)
    }

    fn submit(
        &self,
        submission: Submission,
        operation: Operation,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<(), ClientError> {
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(ClientError::ShuttingDown);
        }
        match self.submissions.send_deadline(submission, deadline) {
            Ok(()) => Ok(()),
            Err(SendTimeoutError::Timeout(_)) => Err(self.timeout_error(operation, timeout)),
            Err(SendTimeoutError::Disconnected(_)) => Err(ClientError::ShuttingDown),
        }
    }

    fn wait<T>(
        &self,
        receiver: &Receiver<Result<T, ClientError>>,
        operation: Operation,
        timeout: Duration,
        deadline: Instant,
    ) -> Result<T, ClientError> {
        match receiver.recv_deadline(deadline) {
            Ok(result) => result,
            Err(RecvTimeoutError::Timeout) => Err(self.timeout_error(operation, timeout)),
            // The I/O thread dropped the call without answering: it stopped.
            Err(RecvTimeoutError::Disconnected) => Err(ClientError::ShuttingDown),
        }
    }

    fn timeout_error(&self, operation: Operation, timeout: Duration) -> ClientError {
        match self.shared.link_error() {
            None => ClientError::Timeout { operation, timeout },
            Some(LinkError { address, context: None, source }) => {
                ClientError::Connect { operation, timeout, address, source }
            }
            Some(LinkError { address, context: Some(context), source }) => {
                ClientError::Io { operation, timeout, address, context, source }
            }
        }
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.close();
    }
}

/// Copies result bytes (a whole number of records) into typed records.
fn records_from_bytes<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    assert!(bytes.len().is_multiple_of(size_of::<T>()));
    let mut records = vec![T::zeroed(); bytes.len() / size_of::<T>()];
    bytemuck::cast_slice_mut::<T, u8>(&mut records).copy_from_slice(bytes);
    records
}

/// `now + timeout`, or a century from now for a timeout too large to add.
fn deadline_after(timeout: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(timeout).unwrap_or_else(|| now + Duration::from_secs(100 * 365 * 24 * 3600))
}

/// A random non-zero client id: from the kernel's random source, or, should that fail, a hash of
/// the time, the process id and a per-process counter.
fn client_id_random() -> u128 {
    use std::io::Read;
    use std::sync::atomic::AtomicU64;
    static CLIENTS_CREATED: AtomicU64 = AtomicU64::new(0);

    let mut bytes = [0u8; 16];
    let random = std::fs::File::open("/dev/urandom").and_then(|mut file| file.read_exact(&mut bytes));
    let mut id = u128::from_le_bytes(bytes);
    if random.is_err() || id == 0 {
        let time = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |duration| duration.as_nanos());
        let count = CLIENTS_CREATED.fetch_add(1, Ordering::Relaxed);
        let seed = [
            time.to_le_bytes(),
            u128::from(std::process::id()).to_le_bytes(),
            u128::from(count).to_le_bytes(),
        ];
        id = xxhash_rust::xxh3::xxh3_128(bytemuck::cast_slice(&seed));
    }
    id.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids_are_non_zero_and_distinct() {
        let a = client_id_random();
        let b = client_id_random();
        assert_ne!(a, 0);
        assert_ne!(a, b);
    }

    #[test]
    fn errors_say_what_to_do() {
        let error =
            ClientError::InvalidBatch { operation: Operation::CreateTransfers, count: 8190, max: 8189 };
        assert_eq!(
            error.to_string(),
            "create_transfers: 8190 events in one call, but at most 8189 fit in one request; split \
             them into several calls"
        );
        let error = ClientError::Evicted { reason: Some(EvictionReason::NoSession), code: 1 };
        assert!(error.to_string().contains("(no_session)"), "{error}");
        let error = ClientError::Evicted { reason: None, code: 99 };
        assert!(error.to_string().contains("(reason 99)"), "{error}");
        let error = ClientError::TableFull { operation: Operation::CreateAccounts, which: Table::Accounts };
        assert!(error.to_string().contains("accounts table is full"), "{error}");
    }

    #[test]
    fn a_client_needs_an_address() {
        assert!(matches!(Client::new(1, &[]), Err(ClientError::NoAddresses)));
    }
}
