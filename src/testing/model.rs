//! The reference model of the ledger state machine: a second, deliberately simple reading of
//! the data-model spec (`/work/shared/spec/data-model.md`), written without looking at
//! `src/state_machine/`. It trades every performance concern for obviousness:
//!
//! * objects live in `BTreeMap`s keyed by id, and every timestamp question is a full scan;
//! * a linked chain is rolled back by restoring a clone of the whole state taken when the chain
//!   opened (burned transfer ids live outside the cloned part, because they survive rollback);
//! * queries scan everything, filter, sort by timestamp and truncate.
//!
//! Section numbers (§) in comments refer to the spec.

use std::collections::{BTreeMap, BTreeSet};

use crate::constants::{BATCH_EVENTS_MAX, NS_PER_S, PULSE_EXPIRIES_MAX, QUERY_RESULTS_MAX, TIMESTAMP_MAX};
use crate::types::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, CreateAccountStatus,
    CreateResult, CreateTransferStatus, QueryFilter, QueryFilterFlags, Transfer, TransferFlags,
    TransferPendingStatus,
};

/// The table a batch would overflow (mirrors `ledger::state_machine::Table`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelTable {
    /// Accounts.
    Accounts,
    /// Stored transfers plus burned transfer ids.
    Transfers,
    /// Pending transfers with a timeout that have not been resolved yet.
    Expiries,
    /// Balance snapshots, one per transfer touching a history account.
    History,
}

/// The table capacities (mirrors `ledger::state_machine::Config`).
#[derive(Clone, Copy, Debug)]
pub struct ModelConfig {
    /// The most accounts.
    pub accounts_max: u32,
    /// The most stored transfers plus burned transfer ids.
    pub transfers_max: u32,
    /// The most pending transfers awaiting expiry.
    pub expiries_max: u32,
    /// The most balance snapshots.
    pub history_max: u32,
}

/// The balances of both accounts of one transfer right after it was applied (§8.1, §12.4).
#[derive(Clone, Copy, Debug)]
struct Snapshot {
    debit_account_id: u128,
    credit_account_id: u128,
    debit: AccountBalance,
    credit: AccountBalance,
}

/// Everything a linked chain may change, cloned when a chain opens and restored when it breaks.
#[derive(Clone, Default)]
struct State {
    accounts: BTreeMap<u128, Account>,
    transfers: BTreeMap<u128, Transfer>,
    /// The status of every stored pending transfer, by the pending transfer's id (§1.9).
    pending_statuses: BTreeMap<u128, TransferPendingStatus>,
    /// Unresolved pending transfers with a timeout: `(expires_at, timestamp, id)` (§8.5).
    expiries: BTreeSet<(u64, u64, u128)>,
    /// Balance snapshots by transfer timestamp, only for transfers touching a history account.
    snapshots: BTreeMap<u64, Snapshot>,
}

/// The reference model.
pub struct Model {
    config: ModelConfig,
    state: State,
    /// Transfer ids that failed with a transient status (§6.3); never rolled back.
    burned: BTreeSet<u128>,
}

/// The status codes the shared batch loop (§4.1) needs, for one object kind.
struct BatchCodes {
    created: u32,
    exists: u32,
    linked_event_failed: u32,
    linked_event_chain_open: u32,
    timestamp_must_be_zero: u32,
    imported_event_expected: u32,
    imported_event_not_expected: u32,
    imported_event_timestamp_out_of_range: u32,
    imported_event_timestamp_must_not_advance: u32,
}

const ACCOUNT_CODES: BatchCodes = BatchCodes {
    created: CreateAccountStatus::Created as u32,
    exists: CreateAccountStatus::Exists as u32,
    linked_event_failed: CreateAccountStatus::LinkedEventFailed as u32,
    linked_event_chain_open: CreateAccountStatus::LinkedEventChainOpen as u32,
    timestamp_must_be_zero: CreateAccountStatus::TimestampMustBeZero as u32,
    imported_event_expected: CreateAccountStatus::ImportedEventExpected as u32,
    imported_event_not_expected: CreateAccountStatus::ImportedEventNotExpected as u32,
    imported_event_timestamp_out_of_range: CreateAccountStatus::ImportedEventTimestampOutOfRange as u32,
    imported_event_timestamp_must_not_advance: CreateAccountStatus::ImportedEventTimestampMustNotAdvance
        as u32,
};

const TRANSFER_CODES: BatchCodes = BatchCodes {
    created: CreateTransferStatus::Created as u32,
    exists: CreateTransferStatus::Exists as u32,
    linked_event_failed: CreateTransferStatus::LinkedEventFailed as u32,
    linked_event_chain_open: CreateTransferStatus::LinkedEventChainOpen as u32,
    timestamp_must_be_zero: CreateTransferStatus::TimestampMustBeZero as u32,
    imported_event_expected: CreateTransferStatus::ImportedEventExpected as u32,
    imported_event_not_expected: CreateTransferStatus::ImportedEventNotExpected as u32,
    imported_event_timestamp_out_of_range: CreateTransferStatus::ImportedEventTimestampOutOfRange as u32,
    imported_event_timestamp_must_not_advance: CreateTransferStatus::ImportedEventTimestampMustNotAdvance
        as u32,
};

/// The parts of an event the batch loop looks at.
trait Event {
    fn linked(&self) -> bool;
    fn imported(&self) -> bool;
    fn timestamp(&self) -> u64;
    /// The id to burn if this event fails with a transient status (transfers only, §6.3).
    fn burnable_id(&self, status: u32) -> Option<u128>;
}

impl Event for Account {
    fn linked(&self) -> bool {
        self.flags.contains(AccountFlags::LINKED)
    }
    fn imported(&self) -> bool {
        self.flags.contains(AccountFlags::IMPORTED)
    }
    fn timestamp(&self) -> u64 {
        self.timestamp
    }
    fn burnable_id(&self, _: u32) -> Option<u128> {
        None // create_accounts has no transient statuses.
    }
}

impl Event for Transfer {
    fn linked(&self) -> bool {
        self.flags.contains(TransferFlags::LINKED)
    }
    fn imported(&self) -> bool {
        self.flags.contains(TransferFlags::IMPORTED)
    }
    fn timestamp(&self) -> u64 {
        self.timestamp
    }
    fn burnable_id(&self, status: u32) -> Option<u128> {
        let status = CreateTransferStatus::from_u32(status).expect("a known status");
        status.is_transient().then_some(self.id)
    }
}

/// The outcome of the object-specific checks of one event: its status and the timestamp the
/// result reports (the object's for created/exists, the event's slot otherwise).
struct Outcome {
    status: u32,
    timestamp: u64,
}

fn valid_timestamp(timestamp: u64) -> bool {
    (1..=TIMESTAMP_MAX).contains(&timestamp)
}

fn balance_of(account: &Account, timestamp: u64) -> AccountBalance {
    AccountBalance {
        debits_pending: account.debits_pending,
        debits_posted: account.debits_posted,
        credits_pending: account.credits_pending,
        credits_posted: account.credits_posted,
        timestamp,
        reserved: [0; 56],
    }
}

impl Model {
    /// An empty ledger with these capacities.
    pub fn new(config: ModelConfig) -> Model {
        Model { config, state: State::default(), burned: BTreeSet::new() }
    }

    /// Every account, in timestamp order.
    pub fn accounts(&self) -> Vec<Account> {
        let mut accounts: Vec<Account> = self.state.accounts.values().copied().collect();
        accounts.sort_unstable_by_key(|account| account.timestamp);
        accounts
    }

    /// Every stored transfer, in timestamp order.
    pub fn transfers(&self) -> Vec<Transfer> {
        let mut transfers: Vec<Transfer> = self.state.transfers.values().copied().collect();
        transfers.sort_unstable_by_key(|transfer| transfer.timestamp);
        transfers
    }

    /// The account with this id, if it exists.
    pub fn account(&self, id: u128) -> Option<&Account> {
        self.state.accounts.get(&id)
    }

    /// The stored transfer with this id, if there is one.
    pub fn transfer(&self, id: u128) -> Option<&Transfer> {
        self.state.transfers.get(&id)
    }

    /// The stored pending transfers that are still pending (not posted, voided or expired).
    pub fn pending_transfers_open(&self) -> Vec<Transfer> {
        let state = &self.state;
        let open =
            state.pending_statuses.iter().filter(|(_, status)| **status == TransferPendingStatus::Pending);
        let mut transfers: Vec<Transfer> = open.map(|(id, _)| state.transfers[id]).collect();
        transfers.sort_unstable_by_key(|transfer| transfer.timestamp);
        transfers
    }

    /// The burned transfer ids (§6.3), ascending.
    pub fn burned_ids(&self) -> Vec<u128> {
        self.burned.iter().copied().collect()
    }

    /// How many pending transfers await expiry.
    pub fn expiries_count(&self) -> usize {
        self.state.expiries.len()
    }

    /// The earliest `expires_at` of any pending transfer awaiting expiry.
    pub fn expiry_next(&self) -> Option<u64> {
        self.state.expiries.first().map(|(expires_at, _, _)| *expires_at)
    }

    /// The pending status of a stored transfer: `None` if there is no such stored transfer,
    /// `Some(TransferPendingStatus::None)` for a stored transfer that is not pending.
    pub fn pending_status(&self, id: u128) -> Option<TransferPendingStatus> {
        self.state.transfers.get(&id)?;
        Some(self.state.pending_statuses.get(&id).copied().unwrap_or(TransferPendingStatus::None))
    }

    /// The largest timestamp of any account, or 0.
    pub fn account_timestamp_max(&self) -> u64 {
        self.state.account_timestamp_max()
    }

    /// The largest timestamp of any stored transfer, or 0.
    pub fn transfer_timestamp_max(&self) -> u64 {
        self.state.transfer_timestamp_max()
    }

    /// Executes a `create_accounts` batch whose last event slot is `timestamp_last` (§4).
    pub fn create_accounts(
        &mut self,
        timestamp_last: u64,
        events: &[Account],
    ) -> Result<Vec<CreateResult>, ModelTable> {
        assert!(events.len() <= BATCH_EVENTS_MAX);
        let count = self.state.accounts.len() as u64;
        if count + events.len() as u64 > u64::from(self.config.accounts_max) {
            return Err(ModelTable::Accounts);
        }
        let results = self.execute_batch(timestamp_last, events, &ACCOUNT_CODES, |state, _, event, ts| {
            let (status, timestamp) = state.create_account(event, ts);
            Outcome { status: status as u32, timestamp }
        });
        Ok(results)
    }

    /// Executes a `create_transfers` batch whose last event slot is `timestamp_last` (§5).
    ///
    /// The capacity rule is the state machine's contract, not the spec's: the whole batch is
    /// rejected, before anything is applied, if it could overflow a table were every event to
    /// succeed. Each event may add a transfer (or burn an id); only a pending transfer with a
    /// timeout may add an expiry; only a transfer touching a history account may add a balance
    /// snapshot (a post or void touches its pending transfer's accounts, and counts if that
    /// pending transfer is not stored yet, since the batch itself may create it). The tables are
    /// checked in the state machine's order: transfers, history, expiries.
    pub fn create_transfers(
        &mut self,
        timestamp_last: u64,
        events: &[Transfer],
    ) -> Result<Vec<CreateResult>, ModelTable> {
        assert!(events.len() <= BATCH_EVENTS_MAX);
        let n = events.len() as u64;
        let transfers = (self.state.transfers.len() + self.burned.len()) as u64;
        if transfers + n > u64::from(self.config.transfers_max) {
            return Err(ModelTable::Transfers);
        }
        // History is checked before expiries: when a batch would overflow both, the state
        // machine reports the history table (found by the simulator, seed 15).
        // With no history account, nothing can record a snapshot, not even a post or void of a
        // pending transfer the batch itself creates (found by the simulator, seed 844: the
        // model counted those, the state machine rightly does not).
        let history_any =
            self.state.accounts.values().any(|account| account.flags.contains(AccountFlags::HISTORY));
        let snapshots = if history_any {
            events.iter().filter(|t| self.state.could_record_snapshot(t)).count() as u64
        } else {
            0
        };
        if self.state.snapshots.len() as u64 + snapshots > u64::from(self.config.history_max) {
            return Err(ModelTable::History);
        }
        // Only a pending transfer with a timeout can add an expiry, even if every event succeeds.
        let expiries =
            events.iter().filter(|t| t.flags.contains(TransferFlags::PENDING) && t.timeout != 0).count()
                as u64;
        if self.state.expiries.len() as u64 + expiries > u64::from(self.config.expiries_max) {
            return Err(ModelTable::Expiries);
        }
        let results =
            self.execute_batch(timestamp_last, events, &TRANSFER_CODES, |state, burned, event, ts| {
                let (status, timestamp) = state.create_transfer(burned, event, ts);
                Outcome { status: status as u32, timestamp }
            });
        Ok(results)
    }

    /// The batch loop shared by both create operations, exactly as listed in §4.1.
    fn execute_batch<E: Event>(
        &mut self,
        timestamp_last: u64,
        events: &[E],
        codes: &BatchCodes,
        mut check_event: impl FnMut(&mut State, &BTreeSet<u128>, &E, u64) -> Outcome,
    ) -> Vec<CreateResult> {
        let n = events.len() as u64;
        assert!(timestamp_last >= n);
        let batch_imported = events.first().is_some_and(|event| event.imported());
        let mut results: Vec<CreateResult> = Vec::with_capacity(events.len());
        // The index of the chain's first event and the state to restore if the chain breaks.
        let mut chain: Option<(usize, State)> = None;
        let mut chain_broken = false;
        for (index, event) in events.iter().enumerate() {
            let ts = timestamp_last - n + index as u64 + 1;
            if event.linked() && chain.is_none() {
                chain = Some((index, self.state.clone()));
            }
            let outcome = if event.linked() && index + 1 == events.len() {
                Outcome { status: codes.linked_event_chain_open, timestamp: ts }
            } else if chain_broken {
                Outcome { status: codes.linked_event_failed, timestamp: ts }
            } else if let Some(status) = batch_timestamp_check(event, batch_imported, timestamp_last, codes) {
                Outcome { status, timestamp: ts }
            } else {
                check_event(&mut self.state, &self.burned, event, ts)
            };
            assert!(
                outcome.status == codes.created || outcome.status == codes.exists || outcome.timestamp == ts
            );
            results.push(CreateResult::new(outcome.timestamp, outcome.status));
            if outcome.status != codes.created {
                if let Some((chain_start, saved)) = &chain {
                    if !chain_broken {
                        chain_broken = true;
                        self.state = saved.clone();
                        for result in &mut results[*chain_start..index] {
                            assert_eq!(result.status, codes.created);
                            result.status = codes.linked_event_failed;
                        }
                    }
                }
                // After the rollback, so that the burned id survives it.
                if let Some(id) = event.burnable_id(outcome.status) {
                    assert!(!self.state.transfers.contains_key(&id));
                    self.burned.insert(id);
                }
            }
            if chain.is_some() && (!event.linked() || outcome.status == codes.linked_event_chain_open) {
                chain = None;
                chain_broken = false;
            }
        }
        assert!(chain.is_none());
        results
    }

    /// Expires up to 8190 pending transfers whose `expires_at <= timestamp`, in
    /// `(expires_at, timestamp)` order (§8.5); returns how many.
    pub fn pulse(&mut self, timestamp: u64) -> usize {
        let due: Vec<(u64, u64, u128)> = self
            .state
            .expiries
            .iter()
            .take_while(|(expires_at, _, _)| *expires_at <= timestamp)
            .take(PULSE_EXPIRIES_MAX)
            .copied()
            .collect();
        for entry in &due {
            let state = &mut self.state;
            state.expiries.remove(entry);
            let pending = state.transfers[&entry.2];
            assert_eq!(state.pending_statuses[&pending.id], TransferPendingStatus::Pending);
            state.pending_statuses.insert(pending.id, TransferPendingStatus::Expired);
            state.release_pending(&pending, true);
        }
        due.len()
    }

    /// `lookup_accounts` (§12.1).
    pub fn lookup_accounts(&self, ids: &[u128]) -> Vec<Account> {
        ids.iter().filter_map(|id| self.state.accounts.get(id).copied()).collect()
    }

    /// `lookup_transfers` (§12.1).
    pub fn lookup_transfers(&self, ids: &[u128]) -> Vec<Transfer> {
        ids.iter().filter_map(|id| self.state.transfers.get(id).copied()).collect()
    }

    /// `get_account_transfers` (§12.2).
    pub fn get_account_transfers(&self, filter: &AccountFilter) -> Vec<Transfer> {
        if !account_filter_valid(filter) {
            return Vec::new();
        }
        self.account_filter_transfers(filter)
    }

    /// `get_account_balances` (§12.4).
    pub fn get_account_balances(&self, filter: &AccountFilter) -> Vec<AccountBalance> {
        if !account_filter_valid(filter) {
            return Vec::new();
        }
        match self.state.accounts.get(&filter.account_id) {
            Some(account) if account.flags.contains(AccountFlags::HISTORY) => {}
            _ => return Vec::new(),
        }
        self.account_filter_transfers(filter)
            .iter()
            .map(|transfer| {
                let snapshot = &self.state.snapshots[&transfer.timestamp];
                if snapshot.debit_account_id == filter.account_id {
                    snapshot.debit
                } else {
                    assert_eq!(snapshot.credit_account_id, filter.account_id);
                    snapshot.credit
                }
            })
            .collect()
    }

    fn account_filter_transfers(&self, filter: &AccountFilter) -> Vec<Transfer> {
        let debits = filter.flags.contains(AccountFilterFlags::DEBITS);
        let credits = filter.flags.contains(AccountFilterFlags::CREDITS);
        let (timestamp_min, timestamp_max) = timestamp_range(filter.timestamp_min, filter.timestamp_max);
        let mut transfers: Vec<Transfer> = self
            .state
            .transfers
            .values()
            .filter(|t| {
                (debits && t.debit_account_id == filter.account_id)
                    || (credits && t.credit_account_id == filter.account_id)
            })
            .filter(|t| filter.user_data_128 == 0 || t.user_data_128 == filter.user_data_128)
            .filter(|t| filter.user_data_64 == 0 || t.user_data_64 == filter.user_data_64)
            .filter(|t| filter.user_data_32 == 0 || t.user_data_32 == filter.user_data_32)
            .filter(|t| filter.code == 0 || t.code == filter.code)
            .filter(|t| (timestamp_min..=timestamp_max).contains(&t.timestamp))
            .copied()
            .collect();
        order_and_limit(
            &mut transfers,
            |t| t.timestamp,
            filter.flags.contains(AccountFilterFlags::REVERSED),
            filter.limit,
        );
        transfers
    }

    /// `query_accounts` (§12.3).
    pub fn query_accounts(&self, filter: &QueryFilter) -> Vec<Account> {
        if !query_filter_valid(filter) {
            return Vec::new();
        }
        let (timestamp_min, timestamp_max) = timestamp_range(filter.timestamp_min, filter.timestamp_max);
        let mut accounts: Vec<Account> = self
            .state
            .accounts
            .values()
            .filter(|a| {
                query_fields_match(filter, a.user_data_128, a.user_data_64, a.user_data_32, a.ledger, a.code)
            })
            .filter(|a| (timestamp_min..=timestamp_max).contains(&a.timestamp))
            .copied()
            .collect();
        order_and_limit(
            &mut accounts,
            |a| a.timestamp,
            filter.flags.contains(QueryFilterFlags::REVERSED),
            filter.limit,
        );
        accounts
    }

    /// `query_transfers` (§12.3).
    pub fn query_transfers(&self, filter: &QueryFilter) -> Vec<Transfer> {
        if !query_filter_valid(filter) {
            return Vec::new();
        }
        let (timestamp_min, timestamp_max) = timestamp_range(filter.timestamp_min, filter.timestamp_max);
        let mut transfers: Vec<Transfer> = self
            .state
            .transfers
            .values()
            .filter(|t| {
                query_fields_match(filter, t.user_data_128, t.user_data_64, t.user_data_32, t.ledger, t.code)
            })
            .filter(|t| (timestamp_min..=timestamp_max).contains(&t.timestamp))
            .copied()
            .collect();
        order_and_limit(
            &mut transfers,
            |t| t.timestamp,
            filter.flags.contains(QueryFilterFlags::REVERSED),
            filter.limit,
        );
        transfers
    }
}

/// §4.1 steps 4–5: the imported-mode and timestamp checks every event goes through.
fn batch_timestamp_check<E: Event>(
    event: &E,
    batch_imported: bool,
    timestamp_last: u64,
    codes: &BatchCodes,
) -> Option<u32> {
    if event.imported() != batch_imported {
        return Some(if event.imported() {
            codes.imported_event_not_expected
        } else {
            codes.imported_event_expected
        });
    }
    if event.imported() {
        if !valid_timestamp(event.timestamp()) {
            return Some(codes.imported_event_timestamp_out_of_range);
        }
        if event.timestamp() >= timestamp_last {
            return Some(codes.imported_event_timestamp_must_not_advance);
        }
    } else if event.timestamp() != 0 {
        return Some(codes.timestamp_must_be_zero);
    }
    None
}

fn timestamp_range(timestamp_min: u64, timestamp_max: u64) -> (u64, u64) {
    let min = if timestamp_min == 0 { 1 } else { timestamp_min };
    let max = if timestamp_max == 0 { TIMESTAMP_MAX } else { timestamp_max };
    (min, max)
}

fn timestamps_valid(timestamp_min: u64, timestamp_max: u64) -> bool {
    (timestamp_min == 0 || valid_timestamp(timestamp_min))
        && (timestamp_max == 0 || valid_timestamp(timestamp_max))
        && (timestamp_max == 0 || timestamp_min <= timestamp_max)
}

/// §12.2 filter validity.
fn account_filter_valid(filter: &AccountFilter) -> bool {
    filter.account_id != 0
        && filter.account_id != u128::MAX
        && timestamps_valid(filter.timestamp_min, filter.timestamp_max)
        && filter.limit != 0
        && (filter.flags.contains(AccountFilterFlags::DEBITS)
            || filter.flags.contains(AccountFilterFlags::CREDITS))
        && !filter.flags.has_reserved()
        && filter.reserved.iter().all(|byte| *byte == 0)
}

/// §12.3 filter validity.
fn query_filter_valid(filter: &QueryFilter) -> bool {
    timestamps_valid(filter.timestamp_min, filter.timestamp_max)
        && filter.limit != 0
        && !filter.flags.has_reserved()
        && filter.reserved.iter().all(|byte| *byte == 0)
}

fn query_fields_match(
    filter: &QueryFilter,
    user_data_128: u128,
    user_data_64: u64,
    user_data_32: u32,
    ledger: u32,
    code: u16,
) -> bool {
    (filter.user_data_128 == 0 || filter.user_data_128 == user_data_128)
        && (filter.user_data_64 == 0 || filter.user_data_64 == user_data_64)
        && (filter.user_data_32 == 0 || filter.user_data_32 == user_data_32)
        && (filter.ledger == 0 || filter.ledger == ledger)
        && (filter.code == 0 || filter.code == code)
}

fn order_and_limit<T>(items: &mut Vec<T>, timestamp: impl Fn(&T) -> u64, reversed: bool, limit: u32) {
    items.sort_unstable_by_key(|item| timestamp(item));
    if reversed {
        items.reverse();
    }
    items.truncate((limit as usize).min(QUERY_RESULTS_MAX));
}

impl State {
    fn account_timestamp_max(&self) -> u64 {
        self.accounts.values().map(|a| a.timestamp).max().unwrap_or(0)
    }

    fn transfer_timestamp_max(&self) -> u64 {
        self.transfers.values().map(|t| t.timestamp).max().unwrap_or(0)
    }

    /// True if `t`, were it to succeed, could record a balance snapshot (for the capacity rule).
    fn could_record_snapshot(&self, t: &Transfer) -> bool {
        let history = |id: &u128| {
            self.accounts.get(id).is_some_and(|account| account.flags.contains(AccountFlags::HISTORY))
        };
        if t.flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            match self.transfers.get(&t.pending_id) {
                Some(p) => history(&p.debit_account_id) || history(&p.credit_account_id),
                None => true,
            }
        } else {
            history(&t.debit_account_id) || history(&t.credit_account_id)
        }
    }

    /// §4.2, after the batch-level checks passed. Returns the status and the result timestamp.
    fn create_account(&mut self, a: &Account, ts: u64) -> (CreateAccountStatus, u64) {
        use CreateAccountStatus as S;
        let fail = |status: S| (status, ts);
        if a.reserved != 0 {
            return fail(S::ReservedField);
        }
        if a.flags.has_reserved() {
            return fail(S::ReservedFlag);
        }
        if a.id == 0 {
            return fail(S::IdMustNotBeZero);
        }
        if a.id == u128::MAX {
            return fail(S::IdMustNotBeIntMax);
        }
        if let Some(existing) = self.accounts.get(&a.id) {
            let status = account_exists_status(a, existing);
            return if status == S::Exists { (status, existing.timestamp) } else { fail(status) };
        }
        if a.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && a.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return fail(S::FlagsAreMutuallyExclusive);
        }
        if a.debits_pending != 0 {
            return fail(S::DebitsPendingMustBeZero);
        }
        if a.debits_posted != 0 {
            return fail(S::DebitsPostedMustBeZero);
        }
        if a.credits_pending != 0 {
            return fail(S::CreditsPendingMustBeZero);
        }
        if a.credits_posted != 0 {
            return fail(S::CreditsPostedMustBeZero);
        }
        if a.ledger == 0 {
            return fail(S::LedgerMustNotBeZero);
        }
        if a.code == 0 {
            return fail(S::CodeMustNotBeZero);
        }
        let timestamp = if a.flags.contains(AccountFlags::IMPORTED) {
            if a.timestamp <= self.account_timestamp_max()
                || self.transfers.values().any(|t| t.timestamp == a.timestamp)
            {
                return fail(S::ImportedEventTimestampMustNotRegress);
            }
            a.timestamp
        } else {
            ts
        };
        let account = Account {
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            reserved: 0,
            timestamp,
            ..*a
        };
        self.accounts.insert(a.id, account);
        (S::Created, timestamp)
    }

    /// §5, after the batch-level checks passed. Returns the status and the result timestamp.
    fn create_transfer(
        &mut self,
        burned: &BTreeSet<u128>,
        t: &Transfer,
        ts: u64,
    ) -> (CreateTransferStatus, u64) {
        use CreateTransferStatus as S;
        if t.flags.has_reserved() {
            return (S::ReservedFlag, ts);
        }
        if t.id == 0 {
            return (S::IdMustNotBeZero, ts);
        }
        if t.id == u128::MAX {
            return (S::IdMustNotBeIntMax, ts);
        }
        if let Some(existing) = self.transfers.get(&t.id) {
            let status = self.transfer_exists_status(t, existing);
            return if status == S::Exists { (status, existing.timestamp) } else { (status, ts) };
        }
        if burned.contains(&t.id) {
            return (S::IdAlreadyFailed, ts);
        }
        let result = if t.flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            self.post_or_void(t, ts)
        } else {
            self.single_phase_or_pending(t, ts)
        };
        match result {
            Ok(timestamp) => (S::Created, timestamp),
            Err(status) => (status, ts),
        }
    }

    /// §5.2 steps 6–31. Returns the stored transfer's timestamp.
    fn single_phase_or_pending(&mut self, t: &Transfer, ts: u64) -> Result<u64, CreateTransferStatus> {
        use CreateTransferStatus as S;
        let flags = t.flags;
        let pending = flags.contains(TransferFlags::PENDING);
        check(t.debit_account_id != 0, S::DebitAccountIdMustNotBeZero)?;
        check(t.debit_account_id != u128::MAX, S::DebitAccountIdMustNotBeIntMax)?;
        check(t.credit_account_id != 0, S::CreditAccountIdMustNotBeZero)?;
        check(t.credit_account_id != u128::MAX, S::CreditAccountIdMustNotBeIntMax)?;
        check(t.credit_account_id != t.debit_account_id, S::AccountsMustBeDifferent)?;
        check(t.pending_id == 0, S::PendingIdMustBeZero)?;
        if !pending {
            check(t.timeout == 0, S::TimeoutReservedForPendingTransfer)?;
            check(
                !flags.contains(TransferFlags::CLOSING_DEBIT)
                    && !flags.contains(TransferFlags::CLOSING_CREDIT),
                S::ClosingTransferMustBePending,
            )?;
        }
        check(t.ledger != 0, S::LedgerMustNotBeZero)?;
        check(t.code != 0, S::CodeMustNotBeZero)?;
        let dr = *self.accounts.get(&t.debit_account_id).ok_or(S::DebitAccountNotFound)?;
        let cr = *self.accounts.get(&t.credit_account_id).ok_or(S::CreditAccountNotFound)?;
        check(dr.ledger == cr.ledger, S::AccountsMustHaveTheSameLedger)?;
        check(t.ledger == dr.ledger, S::TransferMustHaveTheSameLedgerAsAccounts)?;
        let timestamp = if flags.contains(TransferFlags::IMPORTED) {
            check(t.timestamp > self.transfer_timestamp_max(), S::ImportedEventTimestampMustNotRegress)?;
            check(
                !self.accounts.values().any(|a| a.timestamp == t.timestamp),
                S::ImportedEventTimestampMustNotRegress,
            )?;
            check(t.timestamp > dr.timestamp, S::ImportedEventTimestampMustPostdateDebitAccount)?;
            check(t.timestamp > cr.timestamp, S::ImportedEventTimestampMustPostdateCreditAccount)?;
            check(t.timeout == 0, S::ImportedEventTimeoutMustBeZero)?;
            t.timestamp
        } else {
            ts
        };
        check(!dr.flags.contains(AccountFlags::CLOSED), S::DebitAccountAlreadyClosed)?;
        check(!cr.flags.contains(AccountFlags::CLOSED), S::CreditAccountAlreadyClosed)?;
        let amount = balancing_amount(t, &dr, &cr);
        if pending {
            check(amount.checked_add(dr.debits_pending).is_some(), S::OverflowsDebitsPending)?;
            check(amount.checked_add(cr.credits_pending).is_some(), S::OverflowsCreditsPending)?;
        }
        check(amount.checked_add(dr.debits_posted).is_some(), S::OverflowsDebitsPosted)?;
        check(amount.checked_add(cr.credits_posted).is_some(), S::OverflowsCreditsPosted)?;
        let debits = amount.checked_add(dr.debits_pending).and_then(|sum| sum.checked_add(dr.debits_posted));
        check(debits.is_some(), S::OverflowsDebits)?;
        let credits =
            amount.checked_add(cr.credits_pending).and_then(|sum| sum.checked_add(cr.credits_posted));
        check(credits.is_some(), S::OverflowsCredits)?;
        let expires_at = u128::from(timestamp) + u128::from(t.timeout) * u128::from(NS_PER_S);
        check(expires_at <= u128::from(TIMESTAMP_MAX), S::OverflowsTimeout)?;
        if dr.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) {
            check(debits.unwrap() <= dr.credits_posted, S::ExceedsCredits)?;
        }
        if cr.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS) {
            check(credits.unwrap() <= cr.debits_posted, S::ExceedsDebits)?;
        }
        self.apply_single_phase_or_pending(t, amount, timestamp);
        Ok(timestamp)
    }

    /// §8.1.
    fn apply_single_phase_or_pending(&mut self, t: &Transfer, amount: u128, timestamp: u64) {
        let stored = Transfer { amount, timestamp, ..*t };
        let pending = t.flags.contains(TransferFlags::PENDING);
        {
            let dr = self.accounts.get_mut(&t.debit_account_id).unwrap();
            if pending {
                dr.debits_pending += amount;
            } else {
                dr.debits_posted += amount;
            }
            if t.flags.contains(TransferFlags::CLOSING_DEBIT) {
                dr.flags = dr.flags.with(AccountFlags::CLOSED);
            }
        }
        {
            let cr = self.accounts.get_mut(&t.credit_account_id).unwrap();
            if pending {
                cr.credits_pending += amount;
            } else {
                cr.credits_posted += amount;
            }
            if t.flags.contains(TransferFlags::CLOSING_CREDIT) {
                cr.flags = cr.flags.with(AccountFlags::CLOSED);
            }
        }
        if pending {
            self.pending_statuses.insert(t.id, TransferPendingStatus::Pending);
            if t.timeout > 0 {
                let expires_at = timestamp + u64::from(t.timeout) * NS_PER_S;
                self.expiries.insert((expires_at, timestamp, t.id));
            }
        }
        self.transfers.insert(t.id, stored);
        self.record_snapshot(&stored);
    }

    /// §5.3 steps 6–29. Returns the stored transfer's timestamp.
    fn post_or_void(&mut self, t: &Transfer, ts: u64) -> Result<u64, CreateTransferStatus> {
        use CreateTransferStatus as S;
        let flags = t.flags;
        let post = flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let void = flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        check(!(post && void), S::FlagsAreMutuallyExclusive)?;
        for flag in [
            TransferFlags::PENDING,
            TransferFlags::BALANCING_DEBIT,
            TransferFlags::BALANCING_CREDIT,
            TransferFlags::CLOSING_DEBIT,
            TransferFlags::CLOSING_CREDIT,
        ] {
            check(!flags.contains(flag), S::FlagsAreMutuallyExclusive)?;
        }
        check(t.pending_id != 0, S::PendingIdMustNotBeZero)?;
        check(t.pending_id != u128::MAX, S::PendingIdMustNotBeIntMax)?;
        check(t.pending_id != t.id, S::PendingIdMustBeDifferent)?;
        check(t.timeout == 0, S::TimeoutReservedForPendingTransfer)?;
        let p = *self.transfers.get(&t.pending_id).ok_or(S::PendingTransferNotFound)?;
        check(p.flags.contains(TransferFlags::PENDING), S::PendingTransferNotPending)?;
        check(
            t.debit_account_id == 0 || t.debit_account_id == p.debit_account_id,
            S::PendingTransferHasDifferentDebitAccountId,
        )?;
        check(
            t.credit_account_id == 0 || t.credit_account_id == p.credit_account_id,
            S::PendingTransferHasDifferentCreditAccountId,
        )?;
        check(t.ledger == 0 || t.ledger == p.ledger, S::PendingTransferHasDifferentLedger)?;
        check(t.code == 0 || t.code == p.code, S::PendingTransferHasDifferentCode)?;
        let amount = if void {
            if t.amount == 0 {
                p.amount
            } else {
                t.amount
            }
        } else if t.amount == u128::MAX {
            p.amount
        } else {
            t.amount
        };
        check(amount <= p.amount, S::ExceedsPendingTransferAmount)?;
        check(!void || amount == p.amount, S::PendingTransferHasDifferentAmount)?;
        match self.pending_statuses[&p.id] {
            TransferPendingStatus::Pending => {}
            TransferPendingStatus::Posted => return Err(S::PendingTransferAlreadyPosted),
            TransferPendingStatus::Voided => return Err(S::PendingTransferAlreadyVoided),
            TransferPendingStatus::Expired => return Err(S::PendingTransferExpired),
            TransferPendingStatus::None => unreachable!("a pending transfer has a pending status"),
        }
        if p.timeout > 0 {
            let expires_at = u128::from(p.timestamp) + u128::from(p.timeout) * u128::from(NS_PER_S);
            check(expires_at > u128::from(ts), S::PendingTransferExpired)?;
        }
        let timestamp = if flags.contains(TransferFlags::IMPORTED) {
            check(t.timestamp > self.transfer_timestamp_max(), S::ImportedEventTimestampMustNotRegress)?;
            check(
                !self.accounts.values().any(|a| a.timestamp == t.timestamp),
                S::ImportedEventTimestampMustNotRegress,
            )?;
            t.timestamp
        } else {
            ts
        };
        let dr = self.accounts[&p.debit_account_id];
        let cr = self.accounts[&p.credit_account_id];
        check(void || !dr.flags.contains(AccountFlags::CLOSED), S::DebitAccountAlreadyClosed)?;
        check(void || !cr.flags.contains(AccountFlags::CLOSED), S::CreditAccountAlreadyClosed)?;
        self.apply_post_or_void(t, &p, amount, timestamp);
        Ok(timestamp)
    }

    /// §8.2 and §8.3.
    fn apply_post_or_void(&mut self, t: &Transfer, p: &Transfer, amount: u128, timestamp: u64) {
        let post = t.flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let stored = Transfer {
            id: t.id,
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            amount,
            pending_id: t.pending_id,
            user_data_128: if t.user_data_128 != 0 { t.user_data_128 } else { p.user_data_128 },
            user_data_64: if t.user_data_64 != 0 { t.user_data_64 } else { p.user_data_64 },
            user_data_32: if t.user_data_32 != 0 { t.user_data_32 } else { p.user_data_32 },
            timeout: 0,
            ledger: p.ledger,
            code: p.code,
            flags: t.flags,
            timestamp,
        };
        self.release_pending(p, !post);
        if post {
            self.accounts.get_mut(&p.debit_account_id).unwrap().debits_posted += amount;
            self.accounts.get_mut(&p.credit_account_id).unwrap().credits_posted += amount;
        }
        let status = if post { TransferPendingStatus::Posted } else { TransferPendingStatus::Voided };
        let previous = self.pending_statuses.insert(p.id, status);
        assert_eq!(previous, Some(TransferPendingStatus::Pending));
        if p.timeout > 0 {
            let expires_at = p.timestamp + u64::from(p.timeout) * NS_PER_S;
            let removed = self.expiries.remove(&(expires_at, p.timestamp, p.id));
            assert!(removed, "an unresolved pending transfer with a timeout awaits expiry");
        }
        self.transfers.insert(t.id, stored);
        self.record_snapshot(&stored);
    }

    /// Releases a pending transfer's reservation; on void or expiry (`reopen`) also clears the
    /// `closed` flag its closing flags set (§8.3, §8.5).
    fn release_pending(&mut self, p: &Transfer, reopen: bool) {
        let dr = self.accounts.get_mut(&p.debit_account_id).unwrap();
        dr.debits_pending -= p.amount;
        if reopen && p.flags.contains(TransferFlags::CLOSING_DEBIT) {
            assert!(dr.flags.contains(AccountFlags::CLOSED));
            dr.flags = dr.flags.without(AccountFlags::CLOSED);
        }
        let cr = self.accounts.get_mut(&p.credit_account_id).unwrap();
        cr.credits_pending -= p.amount;
        if reopen && p.flags.contains(TransferFlags::CLOSING_CREDIT) {
            assert!(cr.flags.contains(AccountFlags::CLOSED));
            cr.flags = cr.flags.without(AccountFlags::CLOSED);
        }
    }

    fn record_snapshot(&mut self, t: &Transfer) {
        let dr = self.accounts[&t.debit_account_id];
        let cr = self.accounts[&t.credit_account_id];
        if dr.flags.contains(AccountFlags::HISTORY) || cr.flags.contains(AccountFlags::HISTORY) {
            let snapshot = Snapshot {
                debit_account_id: dr.id,
                credit_account_id: cr.id,
                debit: balance_of(&dr, t.timestamp),
                credit: balance_of(&cr, t.timestamp),
            };
            let previous = self.snapshots.insert(t.timestamp, snapshot);
            assert!(previous.is_none());
        }
    }

    /// §6.2.
    fn transfer_exists_status(&self, t: &Transfer, e: &Transfer) -> CreateTransferStatus {
        use CreateTransferStatus as S;
        if t.flags != e.flags {
            return S::ExistsWithDifferentFlags;
        }
        if t.pending_id != e.pending_id {
            return S::ExistsWithDifferentPendingId;
        }
        if t.timeout != e.timeout {
            return S::ExistsWithDifferentTimeout;
        }
        let post = t.flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let void = t.flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        if post || void {
            let p = &self.transfers[&e.pending_id];
            if t.debit_account_id != 0 && t.debit_account_id != e.debit_account_id {
                return S::ExistsWithDifferentDebitAccountId;
            }
            if t.credit_account_id != 0 && t.credit_account_id != e.credit_account_id {
                return S::ExistsWithDifferentCreditAccountId;
            }
            let amount_differs = if void {
                if t.amount == 0 {
                    e.amount != p.amount
                } else {
                    t.amount != e.amount
                }
            } else if t.amount == u128::MAX {
                e.amount != p.amount
            } else {
                t.amount != e.amount
            };
            if amount_differs {
                return S::ExistsWithDifferentAmount;
            }
            let inherited = |request: u128, stored: u128, pending: u128| {
                if request == 0 {
                    stored != pending
                } else {
                    request != stored
                }
            };
            if inherited(t.user_data_128, e.user_data_128, p.user_data_128) {
                return S::ExistsWithDifferentUserData128;
            }
            if inherited(t.user_data_64.into(), e.user_data_64.into(), p.user_data_64.into()) {
                return S::ExistsWithDifferentUserData64;
            }
            if inherited(t.user_data_32.into(), e.user_data_32.into(), p.user_data_32.into()) {
                return S::ExistsWithDifferentUserData32;
            }
            if t.ledger != 0 && t.ledger != e.ledger {
                return S::ExistsWithDifferentLedger;
            }
            if t.code != 0 && t.code != e.code {
                return S::ExistsWithDifferentCode;
            }
            return S::Exists;
        }
        if t.debit_account_id != e.debit_account_id {
            return S::ExistsWithDifferentDebitAccountId;
        }
        if t.credit_account_id != e.credit_account_id {
            return S::ExistsWithDifferentCreditAccountId;
        }
        let balancing = t.flags.contains(TransferFlags::BALANCING_DEBIT)
            || t.flags.contains(TransferFlags::BALANCING_CREDIT);
        if (balancing && t.amount < e.amount) || (!balancing && t.amount != e.amount) {
            return S::ExistsWithDifferentAmount;
        }
        if t.user_data_128 != e.user_data_128 {
            return S::ExistsWithDifferentUserData128;
        }
        if t.user_data_64 != e.user_data_64 {
            return S::ExistsWithDifferentUserData64;
        }
        if t.user_data_32 != e.user_data_32 {
            return S::ExistsWithDifferentUserData32;
        }
        if t.ledger != e.ledger {
            return S::ExistsWithDifferentLedger;
        }
        if t.code != e.code {
            return S::ExistsWithDifferentCode;
        }
        S::Exists
    }
}

/// §6.1, against the account's current stored flags.
fn account_exists_status(a: &Account, existing: &Account) -> CreateAccountStatus {
    use CreateAccountStatus as S;
    if a.flags != existing.flags {
        S::ExistsWithDifferentFlags
    } else if a.user_data_128 != existing.user_data_128 {
        S::ExistsWithDifferentUserData128
    } else if a.user_data_64 != existing.user_data_64 {
        S::ExistsWithDifferentUserData64
    } else if a.user_data_32 != existing.user_data_32 {
        S::ExistsWithDifferentUserData32
    } else if a.ledger != existing.ledger {
        S::ExistsWithDifferentLedger
    } else if a.code != existing.code {
        S::ExistsWithDifferentCode
    } else {
        S::Exists
    }
}

/// §8.4: the amount a (possibly balancing) transfer actually moves.
fn balancing_amount(t: &Transfer, dr: &Account, cr: &Account) -> u128 {
    let mut amount = t.amount;
    if t.flags.contains(TransferFlags::BALANCING_DEBIT) {
        let debits = dr.debits_posted + dr.debits_pending;
        amount = amount.min(dr.credits_posted.saturating_sub(debits));
    }
    if t.flags.contains(TransferFlags::BALANCING_CREDIT) {
        let credits = cr.credits_posted + cr.credits_pending;
        amount = amount.min(cr.debits_posted.saturating_sub(credits));
    }
    amount
}

fn check(condition: bool, status: CreateTransferStatus) -> Result<(), CreateTransferStatus> {
    if condition {
        Ok(())
    } else {
        Err(status)
    }
}
