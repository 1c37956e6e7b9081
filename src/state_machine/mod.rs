//! The ledger's rules: a deterministic function from (state, operation, batch, timestamp) to
//! (state, results), exactly as `shared/spec/data-model.md` specifies.
//!
//! No I/O, no clock, no randomness: replicas that apply the same log hold the same state. All
//! tables are allocated once, in [`StateMachine::new`], from a [`Config`]; executing a batch never
//! allocates. A batch that could overflow a table is rejected as a whole, before any event is
//! applied, with [`ExecuteError::TableFull`].
//!
//! Storage shape: accounts and transfers each live in one array in timestamp order (timestamps
//! only grow, imported ones included, so appending keeps the order), found by id through an
//! [`IdTable`]. Each transfer is linked into its debit and credit accounts' lists, which answer
//! `get_account_transfers`; balance snapshots for history accounts sit in a third array.

mod account_transfers;
mod create_accounts;
mod create_batch;
mod create_transfers;
mod expiry;
mod id_table;
mod persistence;
mod reads;
mod undo;

use bytemuck::Zeroable;

use crate::constants::{BATCH_EVENTS_MAX, MESSAGE_BODY_SIZE_MAX, TIMESTAMP_MAX};
use crate::multi_batch::{MultiBatch, MultiBatchEncoder, MultiBatchError};
use crate::operation::{trailer_size, Operation};
use crate::types::{
    Account, AccountBalance, AccountFilter, AccountFlags, CreateResult, QueryFilter, Transfer, TransferFlags,
    TransferPendingStatus,
};

use account_transfers::AccountTransfers;
pub use expiry::ExpiryQueue;
pub use id_table::IdTable;
pub use persistence::{RestoreError, PERSISTED_ARRAYS, PERSISTED_RECORD_SIZES};
use undo::UndoLog;

/// The capacities of the state machine's tables, fixed for the life of a data file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// The most accounts.
    pub accounts_max: u32,
    /// The most transfers, counting both stored transfers and burned ids (§6.3).
    pub transfers_max: u32,
    /// The most pending transfers with a timeout that are waiting to expire.
    pub expiries_max: u32,
    /// The most balance snapshots (one per transfer that touches a `history` account).
    pub history_max: u32,
}

impl Config {
    /// A small configuration for tests and `--development`.
    pub const DEVELOPMENT: Config =
        Config { accounts_max: 16_384, transfers_max: 131_072, expiries_max: 16_384, history_max: 131_072 };

    /// The largest value of a capacity: `u32::MAX` marks "no index" in the tables.
    pub const CAPACITY_MAX: u32 = u32::MAX - 1;

    /// The first capacity outside `1..=CAPACITY_MAX`, by its option name (`accounts-max`, ...)
    /// and value, if any.
    pub fn capacity_invalid(&self) -> Option<(&'static str, u32)> {
        let capacities = [
            ("accounts-max", self.accounts_max),
            ("transfers-max", self.transfers_max),
            ("expiries-max", self.expiries_max),
            ("history-max", self.history_max),
        ];
        capacities.into_iter().find(|(_, value)| !(1..=Self::CAPACITY_MAX).contains(value))
    }

    /// The bytes the tables take once allocated (virtual; pages are touched as they fill).
    pub fn memory_size(&self) -> u64 {
        let accounts = u64::from(self.accounts_max);
        let transfers = u64::from(self.transfers_max);
        let id_table = |count: u64| (count * 2).max(16).next_power_of_two() * 32;
        // Per account: the record and its list ends; per transfer: the record, its history index,
        // its pending status and room for a burned id; the list chunks (64 bytes per 13 entries,
        // two entries per transfer, plus each account's partly filled tail).
        let chunks = (2 * transfers).div_ceil(13) + accounts;
        accounts * (128 + 8)
            + id_table(accounts)
            + transfers * (128 + 4 + 1 + 16)
            + id_table(transfers)
            + chunks * 64
            + u64::from(self.expiries_max) * 24
            + u64::from(self.history_max) * 128
    }
}

/// A table of the state machine, as named in [`ExecuteError::TableFull`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Table {
    /// `accounts_max` would be exceeded.
    Accounts,
    /// `transfers_max` would be exceeded.
    Transfers,
    /// `expiries_max` would be exceeded.
    Expiries,
    /// `history_max` would be exceeded.
    History,
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Table::Accounts => "accounts",
            Table::Transfers => "transfers",
            Table::Expiries => "expiries",
            Table::History => "history",
        })
    }
}

/// Why a request was not executed. Nothing of a rejected request is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ExecuteError {
    /// Applying the request could overflow a table: it is rejected as a whole.
    #[error("the {table} table cannot hold this batch (capacity is set at format time)")]
    TableFull {
        /// The table that is full.
        table: Table,
    },
    /// The request body is not valid for its operation.
    #[error("invalid request: {0}")]
    InvalidRequest(#[from] InvalidRequest),
}

/// Why a request body is not valid (spec §3.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum InvalidRequest {
    /// The body is larger than the request limit.
    #[error("body of {size} bytes exceeds the request limit of {limit} bytes")]
    BodySize {
        /// The body size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The multi-batch encoding is malformed.
    #[error("malformed multi-batch body: {0}")]
    Encoding(#[from] MultiBatchError),
    /// A batch has more events than the operation allows.
    #[error("batch {index} has {count} events; the limit is {max}")]
    BatchTooLarge {
        /// The batch index.
        index: usize,
        /// The events in the batch.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A query batch does not hold exactly one filter.
    #[error("query batch {index} has {count} filters; exactly one is required")]
    QueryFilterCount {
        /// The batch index.
        index: usize,
        /// The filters in the batch.
        count: usize,
    },
    /// The replies of all batches would not fit in one reply message.
    #[error("the results of this request would need {size} bytes; a reply holds {MESSAGE_BODY_SIZE_MAX}")]
    ReplyTooLarge {
        /// The reply size needed.
        size: usize,
    },
    /// The operation takes no body from clients (pulse).
    #[error("operation {0:?} cannot be sent by a client")]
    Operation(Operation),
}

/// Both accounts' balances immediately after one transfer.
#[repr(C)]
#[derive(Clone, Copy, Debug, Zeroable, bytemuck::Pod)]
struct HistoryEntry {
    debit_account: [u128; 4],
    credit_account: [u128; 4],
}

/// "No index": the end of a list, or no history snapshot.
const NONE: u32 = u32::MAX;

/// The value of a burned transfer id in the transfer id table (spec §6.3).
const BURNED: u32 = u32::MAX;

/// The ledger: every table, allocated once.
pub struct StateMachine {
    config: Config,
    accounts: Vec<Account>,
    account_ids: IdTable,
    /// Each account's transfers, in timestamp order.
    account_transfers: AccountTransfers,
    transfers: Vec<Transfer>,
    /// Per transfer: its index in `history`, or `NONE`.
    transfer_history: Vec<u32>,
    /// Per transfer: its pending status (`None` unless it is a pending transfer).
    transfer_pending: Vec<TransferPendingStatus>,
    /// Stored transfers and burned ids.
    transfer_ids: IdTable,
    /// Burned transfer ids, in the order they were burned (for checkpoints).
    burned: Vec<u128>,
    history: Vec<HistoryEntry>,
    /// How many accounts have the `history` flag (to skip history accounting when none do).
    accounts_history_count: u32,
    expiries: ExpiryQueue,
    undo: UndoLog,
}

impl StateMachine {
    /// An empty ledger with tables sized by `config`.
    pub fn new(config: Config) -> StateMachine {
        let accounts_max = config.accounts_max as usize;
        let transfers_max = config.transfers_max as usize;
        assert!(accounts_max < NONE as usize && transfers_max < NONE as usize);
        assert!((config.history_max as usize) < NONE as usize);
        StateMachine {
            config,
            accounts: Vec::with_capacity(accounts_max),
            account_ids: IdTable::new(accounts_max),
            account_transfers: AccountTransfers::new(accounts_max, transfers_max),
            transfers: Vec::with_capacity(transfers_max),
            transfer_history: Vec::with_capacity(transfers_max),
            transfer_pending: Vec::with_capacity(transfers_max),
            transfer_ids: IdTable::new(transfers_max),
            burned: Vec::with_capacity(transfers_max),
            history: Vec::with_capacity(config.history_max as usize),
            accounts_history_count: 0,
            expiries: ExpiryQueue::new(config.expiries_max as usize),
            undo: UndoLog::new(),
        }
    }

    /// Touches every page of every table, so that memory is committed now rather than page by
    /// page as the tables fill: the process's memory use then stays flat under load, and the
    /// first batches do not pay for page faults.
    pub fn prefault(&mut self) {
        huge_pages(&self.accounts);
        huge_pages(&self.transfers);
        huge_pages(&self.transfer_history);
        huge_pages(&self.transfer_pending);
        huge_pages(&self.history);
        huge_pages(&self.burned);
        touch(&mut self.accounts);
        touch(&mut self.transfers);
        touch(&mut self.transfer_history);
        touch(&mut self.transfer_pending);
        touch(&mut self.history);
        touch(&mut self.burned);
        self.account_transfers.prefault();
        self.account_ids.prefault();
        self.transfer_ids.prefault();
    }

    /// The capacities this ledger was built with.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Every account, in timestamp order.
    pub fn accounts(&self) -> &[Account] {
        &self.accounts
    }

    /// Every stored transfer, in timestamp order.
    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// The pending status of the stored transfer `id`, if there is one.
    pub fn pending_status(&self, id: u128) -> Option<TransferPendingStatus> {
        match self.transfer_ids.get(id) {
            None | Some(BURNED) => None,
            Some(index) => Some(self.transfer_pending[index as usize]),
        }
    }

    /// The earliest `expires_at` of a pending transfer, if any may be waiting: the replica runs
    /// a `pulse` once its clock passes it. (May be the expiry of an already resolved transfer;
    /// such a pulse just finds nothing to do.)
    pub fn expiry_next(&self) -> Option<u64> {
        self.expiries.peek()
    }

    /// Checks that `body` is a valid request for `operation` (spec §3.3) under the given request
    /// body limit. The primary calls this before preparing a request.
    pub fn input_valid(
        operation: Operation,
        body: &[u8],
        batch_size_limit: usize,
    ) -> Result<(), InvalidRequest> {
        assert!(batch_size_limit <= MESSAGE_BODY_SIZE_MAX);
        if matches!(operation, Operation::Pulse | Operation::Register) {
            return Err(InvalidRequest::Operation(operation));
        }
        if body.len() > batch_size_limit {
            return Err(InvalidRequest::BodySize { size: body.len(), limit: batch_size_limit });
        }
        let batches = MultiBatch::decode(body, operation.event_size())?;
        let event_max = operation.event_max(batch_size_limit);
        let result_max = operation.result_max();
        let mut reply_size = trailer_size(operation.result_size(), batches.batch_count());
        let mut error = None;
        batches.for_each(|index, bytes| {
            let count = bytes.len() / operation.event_size();
            let expected = if operation.is_query() {
                if count != 1 {
                    error.get_or_insert(InvalidRequest::QueryFilterCount { index, count });
                    return;
                }
                query_limit(operation, bytes)
            } else {
                if count > event_max {
                    error.get_or_insert(InvalidRequest::BatchTooLarge { index, count, max: event_max });
                    return;
                }
                count
            };
            reply_size += expected.min(result_max) * operation.result_size();
        });
        if let Some(error) = error {
            return Err(error);
        }
        if reply_size > MESSAGE_BODY_SIZE_MAX {
            return Err(InvalidRequest::ReplyTooLarge { size: reply_size });
        }
        Ok(())
    }

    /// Executes one request at `timestamp` (the op timestamp: the slot of its last created
    /// event, spec §11), writing the multi-batch reply into `reply`; returns the reply size.
    ///
    /// `body` and `reply` must be 16-byte aligned; `reply` must hold `MESSAGE_BODY_SIZE_MAX`.
    pub fn execute(
        &mut self,
        operation: Operation,
        timestamp: u64,
        body: &[u8],
        reply: &mut [u8],
    ) -> Result<usize, ExecuteError> {
        assert!(reply.len() >= MESSAGE_BODY_SIZE_MAX);
        assert!(timestamp <= TIMESTAMP_MAX);
        match operation {
            Operation::Pulse => {
                assert!(body.is_empty());
                self.pulse(timestamp);
                return Ok(0);
            }
            // Sessions are the replica's business; the ledger's state does not change.
            Operation::Register => return Ok(0),
            _ => {}
        }
        Self::input_valid(operation, body, MESSAGE_BODY_SIZE_MAX)?;
        let batches = MultiBatch::decode(body, operation.event_size()).map_err(InvalidRequest::from)?;
        if operation.is_create() {
            self.capacity_check(operation, body_events(&batches, operation))?;
        }
        let reply_capacity = MESSAGE_BODY_SIZE_MAX;
        let mut encoder = MultiBatchEncoder::new(
            &mut reply[..reply_capacity],
            operation.result_size(),
            batches.batch_count(),
        );
        let event_count = batches.element_count() as u64;
        assert!(!operation.is_create() || timestamp >= event_count);
        let mut timestamp_last = timestamp - if operation.is_create() { event_count } else { 0 };
        batches.for_each(|_, bytes| {
            let count = bytes.len() / operation.event_size();
            if operation.is_create() {
                timestamp_last += count as u64;
            }
            let written = self.execute_batch(operation, timestamp_last, bytes, encoder.writable());
            encoder.push(written);
        });
        assert!(!operation.is_create() || timestamp_last == timestamp);
        Ok(encoder.finish())
    }

    /// Executes one decoded batch; returns the number of results written to `output`.
    fn execute_batch(
        &mut self,
        operation: Operation,
        timestamp_last: u64,
        events: &[u8],
        output: &mut [u8],
    ) -> usize {
        match operation {
            Operation::CreateAccounts => {
                let events: &[Account] = bytemuck::cast_slice(events);
                let results = &mut bytemuck::cast_slice_mut(output)[..events.len()];
                self.create_accounts_unchecked(timestamp_last, events, results);
                events.len()
            }
            Operation::CreateTransfers => {
                let events: &[Transfer] = bytemuck::cast_slice(events);
                let results = &mut bytemuck::cast_slice_mut(output)[..events.len()];
                self.create_transfers_unchecked(timestamp_last, events, results);
                events.len()
            }
            Operation::LookupAccounts => {
                self.lookup_accounts(bytemuck::cast_slice(events), bytemuck::cast_slice_mut(output))
            }
            Operation::LookupTransfers => {
                self.lookup_transfers(bytemuck::cast_slice(events), bytemuck::cast_slice_mut(output))
            }
            Operation::GetAccountTransfers => {
                let filter: &AccountFilter = bytemuck::from_bytes(events);
                self.get_account_transfers(filter, bytemuck::cast_slice_mut(output))
            }
            Operation::GetAccountBalances => {
                let filter: &AccountFilter = bytemuck::from_bytes(events);
                self.get_account_balances(filter, bytemuck::cast_slice_mut(output))
            }
            Operation::QueryAccounts => {
                let filter: &QueryFilter = bytemuck::from_bytes(events);
                self.query_accounts(filter, bytemuck::cast_slice_mut(output))
            }
            Operation::QueryTransfers => {
                let filter: &QueryFilter = bytemuck::from_bytes(events);
                self.query_transfers(filter, bytemuck::cast_slice_mut(output))
            }
            Operation::Pulse | Operation::Register => unreachable!("{operation:?} carries no batches"),
        }
    }

    /// Creates accounts: `timestamp_last` is the slot of the last event (event `i` of `N` gets
    /// `timestamp_last − N + i + 1`); writes one result per event.
    pub fn create_accounts(
        &mut self,
        timestamp_last: u64,
        events: &[Account],
        results: &mut [CreateResult],
    ) -> Result<(), ExecuteError> {
        self.capacity_check(Operation::CreateAccounts, Events::Accounts(events))?;
        self.create_accounts_unchecked(timestamp_last, events, results);
        Ok(())
    }

    /// Creates transfers; see [`StateMachine::create_accounts`] for the timestamps.
    pub fn create_transfers(
        &mut self,
        timestamp_last: u64,
        events: &[Transfer],
        results: &mut [CreateResult],
    ) -> Result<(), ExecuteError> {
        self.capacity_check(Operation::CreateTransfers, Events::Transfers(events))?;
        self.create_transfers_unchecked(timestamp_last, events, results);
        Ok(())
    }

    /// Rejects a create request that could overflow a table if every event succeeded, so that
    /// a full table never leaves a batch half-applied.
    fn capacity_check(&mut self, operation: Operation, events: Events<'_>) -> Result<(), ExecuteError> {
        let count = events.count();
        let full = |table| Err(ExecuteError::TableFull { table });
        match operation {
            Operation::CreateAccounts => {
                if self.accounts.len() + count > self.config.accounts_max as usize {
                    return full(Table::Accounts);
                }
            }
            Operation::CreateTransfers => {
                if self.transfer_ids.count() + count > self.transfer_ids.count_max() {
                    return full(Table::Transfers);
                }
                let history_max = self.config.history_max as usize;
                if self.history.len() + count > history_max
                    && self.history.len() + self.history_bound(&events) > history_max
                {
                    return full(Table::History);
                }
                // Counting the events that could queue an expiry costs a pass over the batch:
                // only done when the queue might not have room for every event.
                let room = self.expiries.count() + count <= self.config.expiries_max as usize;
                let expiries = if room { 0 } else { events.expiries() };
                let (transfers, pending) = (&self.transfers, &self.transfer_pending);
                if !self.expiries.reserve(expiries, |entry| expiry_valid(transfers, pending, entry)) {
                    return full(Table::Expiries);
                }
            }
            _ => unreachable!("only create operations consume capacity"),
        }
        Ok(())
    }

    /// An upper bound on the balance snapshots the transfer events could record: those whose
    /// accounts keep history, and posts/voids whose pending transfer is not stored yet (it may
    /// be created by the same request). Only computed when the table is nearly full.
    fn history_bound(&self, events: &Events<'_>) -> usize {
        if self.accounts_history_count == 0 {
            return 0;
        }
        let history = |id: u128| {
            self.account_ids
                .get(id)
                .is_some_and(|index| self.accounts[index as usize].flags.contains(AccountFlags::HISTORY))
        };
        let mut count = 0;
        events.for_each_transfer(|transfer| {
            let resolves = TransferFlags::POST_PENDING_TRANSFER.with(TransferFlags::VOID_PENDING_TRANSFER);
            let (debit, credit) = if transfer.flags.0 & resolves.0 != 0 {
                match self.transfer_ids.get(transfer.pending_id) {
                    Some(index) if index != BURNED => {
                        let pending = &self.transfers[index as usize];
                        (pending.debit_account_id, pending.credit_account_id)
                    }
                    _ => {
                        count += 1;
                        return;
                    }
                }
            } else {
                (transfer.debit_account_id, transfer.credit_account_id)
            };
            count += usize::from(history(debit) || history(credit));
        });
        count
    }

    /// Expires up to `PULSE_EXPIRIES_MAX` pending transfers whose `expires_at ≤ timestamp`, in
    /// `(expires_at, timestamp)` order; returns how many expired.
    pub fn pulse(&mut self, timestamp: u64) -> usize {
        let mut expired = 0;
        while expired < crate::constants::PULSE_EXPIRIES_MAX {
            let Some(entry) = self.expiries.pop_due(timestamp) else { break };
            if expiry_valid(&self.transfers, &self.transfer_pending, &entry) {
                self.expire(entry.index);
                expired += 1;
            }
        }
        expired
    }

    fn expire(&mut self, index: u32) {
        assert!(!self.undo.recording());
        let pending = self.transfers[index as usize];
        assert!(pending.flags.contains(TransferFlags::PENDING));
        let dr = self.account_index(pending.debit_account_id);
        let cr = self.account_index(pending.credit_account_id);
        self.release_pending(&pending, dr, cr);
        self.transfer_pending[index as usize] = TransferPendingStatus::Expired;
    }

    /// Releases a pending transfer's reservation and re-opens the accounts it closed (void and
    /// expiry).
    fn release_pending(&mut self, pending: &Transfer, dr: usize, cr: usize) {
        let debit = &mut self.accounts[dr];
        debit.debits_pending -= pending.amount;
        if pending.flags.contains(TransferFlags::CLOSING_DEBIT) {
            debit.flags = debit.flags.without(AccountFlags::CLOSED);
        }
        let credit = &mut self.accounts[cr];
        credit.credits_pending -= pending.amount;
        if pending.flags.contains(TransferFlags::CLOSING_CREDIT) {
            credit.flags = credit.flags.without(AccountFlags::CLOSED);
        }
    }

    /// The index of an account that must exist.
    fn account_index(&self, id: u128) -> usize {
        self.account_ids.get(id).expect("account of a stored transfer exists") as usize
    }

    /// Saves an account's state in the undo log before a chained event changes it.
    fn account_touch(&mut self, index: usize) {
        if self.undo.recording() {
            self.undo.push(undo::Undo::Account { index: index as u32, old: self.accounts[index] });
        }
    }

    fn history_balances(account: &Account) -> [u128; 4] {
        [account.debits_pending, account.debits_posted, account.credits_pending, account.credits_posted]
    }

    fn history_balance(balances: &[u128; 4], timestamp: u64) -> AccountBalance {
        AccountBalance {
            debits_pending: balances[0],
            debits_posted: balances[1],
            credits_pending: balances[2],
            credits_posted: balances[3],
            timestamp,
            reserved: [0; 56],
        }
    }
}

/// The events of a create request, for the capacity check.
enum Events<'a> {
    Accounts(&'a [Account]),
    Transfers(&'a [Transfer]),
    Body(MultiBatch<'a>, Operation),
}

impl Events<'_> {
    fn count(&self) -> usize {
        match self {
            Events::Accounts(events) => events.len(),
            Events::Transfers(events) => events.len(),
            Events::Body(batches, _) => batches.element_count(),
        }
    }

    /// Calls `f` for each transfer event (none for accounts).
    fn for_each_transfer(&self, mut f: impl FnMut(&Transfer)) {
        match self {
            Events::Accounts(_) => {}
            Events::Transfers(events) => events.iter().for_each(f),
            Events::Body(batches, operation) => {
                if *operation == Operation::CreateTransfers {
                    batches.for_each(|_, bytes| {
                        bytemuck::cast_slice::<u8, Transfer>(bytes).iter().for_each(&mut f)
                    });
                }
            }
        }
    }

    /// An upper bound on the expiries the events could queue: pending transfers with a timeout.
    fn expiries(&self) -> usize {
        let mut count = 0;
        self.for_each_transfer(|transfer| {
            count += usize::from(transfer.timeout != 0 && transfer.flags.contains(TransferFlags::PENDING));
        });
        count
    }
}

/// True if the queued expiry still refers to a pending transfer. Queue entries are not removed
/// when a transfer is posted, voided or rolled back; they are skipped here instead. A rolled-back
/// transfer's slot may be reused, but never with the same timestamp and a non-zero timeout:
/// cluster timestamps are never reused and imported transfers have no timeout.
fn expiry_valid(transfers: &[Transfer], pending: &[TransferPendingStatus], entry: &expiry::Expiry) -> bool {
    let index = entry.index as usize;
    index < transfers.len()
        && transfers[index].timestamp == entry.timestamp
        && transfers[index].timeout != 0
        && pending[index] == TransferPendingStatus::Pending
}

/// Asks the kernel to back `vector`'s allocation with 2 MiB pages where it can: the tables are
/// gigabytes, accessed at random, and with 4 KiB pages nearly every access would also miss the
/// TLB. Only a hint: without transparent huge pages, nothing changes.
fn huge_pages<T>(vector: &Vec<T>) {
    advise_huge_pages(vector.as_ptr().cast(), vector.capacity() * core::mem::size_of::<T>());
}

/// See [`huge_pages`]; for any allocation.
pub(crate) fn advise_huge_pages(pointer: *const u8, size: usize) {
    const HUGE_PAGE: usize = 2 << 20;
    let start = (pointer as usize).next_multiple_of(HUGE_PAGE);
    let end = (pointer as usize + size) & !(HUGE_PAGE - 1);
    if end > start {
        // SAFETY: the range lies within one live allocation; MADV_HUGEPAGE changes no contents.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE) };
    }
}

/// Writes one value into every page of `vector`'s unused capacity, committing its memory.
fn touch<T: Zeroable>(vector: &mut Vec<T>) {
    let step = (4096 / core::mem::size_of::<T>()).max(1);
    for slot in vector.spare_capacity_mut().iter_mut().step_by(step) {
        slot.write(T::zeroed());
    }
}

fn body_events<'a>(batches: &MultiBatch<'a>, operation: Operation) -> Events<'a> {
    Events::Body(*batches, operation)
}

/// The effective result count of a query batch: its filter's limit, capped.
fn query_limit(operation: Operation, filter: &[u8]) -> usize {
    let limit = match operation {
        Operation::GetAccountTransfers | Operation::GetAccountBalances => {
            bytemuck::pod_read_unaligned::<AccountFilter>(filter).limit
        }
        _ => bytemuck::pod_read_unaligned::<QueryFilter>(filter).limit,
    };
    (limit as usize).min(crate::constants::QUERY_RESULTS_MAX)
}

const _: () = assert!(BATCH_EVENTS_MAX < NONE as usize);
