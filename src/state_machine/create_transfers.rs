//! `create_transfers` (spec §5, §6.2, §6.3, §8): the common prefix, the normal path
//! (single-phase and pending), the post/void path, and their effects.

use super::create_batch::CreateEvent;
use super::expiry::Expiry;
use super::id_table::prefetch;
use super::undo::Undo;
use super::{HistoryEntry, StateMachine, BURNED, NONE};
use crate::constants::{NS_PER_S, TIMESTAMP_MAX};
use crate::types::{
    AccountFlags, CreateResult, CreateTransferStatus as Status, Transfer, TransferFlags,
    TransferPendingStatus,
};

impl CreateEvent for Transfer {
    const CREATED: u32 = Status::Created as u32;
    const LINKED_EVENT_FAILED: u32 = Status::LinkedEventFailed as u32;
    const LINKED_EVENT_CHAIN_OPEN: u32 = Status::LinkedEventChainOpen as u32;
    const TIMESTAMP_MUST_BE_ZERO: u32 = Status::TimestampMustBeZero as u32;
    const IMPORTED_EVENT_EXPECTED: u32 = Status::ImportedEventExpected as u32;
    const IMPORTED_EVENT_NOT_EXPECTED: u32 = Status::ImportedEventNotExpected as u32;
    const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: u32 = Status::ImportedEventTimestampOutOfRange as u32;
    const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: u32 =
        Status::ImportedEventTimestampMustNotAdvance as u32;

    fn linked(&self) -> bool {
        self.flags.contains(TransferFlags::LINKED)
    }

    fn imported(&self) -> bool {
        self.flags.contains(TransferFlags::IMPORTED)
    }

    fn timestamp(&self) -> u64 {
        self.timestamp
    }

    fn apply(state: &mut StateMachine, event: &Transfer, timestamp: u64) -> (u32, u64) {
        match state.create_transfer(event, timestamp) {
            Ok(timestamp) => (Status::Created as u32, timestamp),
            Err(Status::Exists) => {
                let index = state.transfer_ids.get(event.id).expect("existing transfer");
                (Status::Exists as u32, state.transfers[index as usize].timestamp)
            }
            Err(status) => (status as u32, timestamp),
        }
    }

    fn prefetch_ids(state: &StateMachine, event: &Transfer) {
        state.transfer_ids.prefetch(event.id);
        state.account_ids.prefetch(event.debit_account_id);
        state.account_ids.prefetch(event.credit_account_id);
    }

    fn prefetch_tails(state: &StateMachine, event: &Transfer) {
        for id in [event.debit_account_id, event.credit_account_id] {
            if let Some(index) = state.account_ids.get(id) {
                state.account_transfers.prefetch_tail(index as usize);
            }
        }
    }

    fn prefetch_records(state: &StateMachine, event: &Transfer) {
        for id in [event.debit_account_id, event.credit_account_id] {
            if let Some(index) = state.account_ids.get(id) {
                let account = state.accounts.as_ptr().wrapping_add(index as usize);
                prefetch(account);
                prefetch(account.cast::<u8>().wrapping_add(64));
                state.account_transfers.prefetch_ends(index as usize);
            }
        }
    }

    fn failed(state: &mut StateMachine, event: &Transfer, status: u32) {
        let transient = Status::from_u32(status).is_some_and(Status::is_transient);
        if transient {
            // Burned ids survive a chain rollback: this runs after it, and is never undone.
            assert!(!state.undo.recording());
            assert!(state.transfer_ids.get(event.id).is_none());
            state.transfer_ids.insert(event.id, BURNED);
            assert!(state.burned.len() < state.burned.capacity());
            state.burned.push(event.id);
        }
    }
}

/// The accounts of a transfer being applied: their indexes.
#[derive(Clone, Copy)]
struct Accounts {
    dr: usize,
    cr: usize,
}

impl StateMachine {
    pub(super) fn create_transfers_unchecked(
        &mut self,
        timestamp_last: u64,
        events: &[Transfer],
        results: &mut [CreateResult],
    ) {
        assert!(self.transfer_ids.count() + events.len() <= self.transfer_ids.count_max());
        self.create_batch(timestamp_last, events, results);
    }

    /// Checks one transfer (spec §5.1) and applies it; returns its timestamp.
    fn create_transfer(&mut self, event: &Transfer, timestamp: u64) -> Result<u64, Status> {
        if event.flags.has_reserved() {
            return Err(Status::ReservedFlag);
        }
        if event.id == 0 {
            return Err(Status::IdMustNotBeZero);
        }
        if event.id == u128::MAX {
            return Err(Status::IdMustNotBeIntMax);
        }
        match self.transfer_ids.get(event.id) {
            Some(BURNED) => return Err(Status::IdAlreadyFailed),
            Some(index) => return Err(self.transfer_exists(event, index as usize)),
            None => {}
        }
        let flags = event.flags;
        if flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            self.create_post_or_void(event, timestamp)
        } else {
            self.create_normal(event, timestamp)
        }
    }

    /// The normal path: single-phase and pending transfers (spec §5.2).
    fn create_normal(&mut self, event: &Transfer, timestamp: u64) -> Result<u64, Status> {
        let flags = event.flags;
        if event.debit_account_id == 0 {
            return Err(Status::DebitAccountIdMustNotBeZero);
        }
        if event.debit_account_id == u128::MAX {
            return Err(Status::DebitAccountIdMustNotBeIntMax);
        }
        if event.credit_account_id == 0 {
            return Err(Status::CreditAccountIdMustNotBeZero);
        }
        if event.credit_account_id == u128::MAX {
            return Err(Status::CreditAccountIdMustNotBeIntMax);
        }
        if event.credit_account_id == event.debit_account_id {
            return Err(Status::AccountsMustBeDifferent);
        }
        if event.pending_id != 0 {
            return Err(Status::PendingIdMustBeZero);
        }
        let pending = flags.contains(TransferFlags::PENDING);
        if !pending {
            if event.timeout != 0 {
                return Err(Status::TimeoutReservedForPendingTransfer);
            }
            if flags.contains(TransferFlags::CLOSING_DEBIT) || flags.contains(TransferFlags::CLOSING_CREDIT) {
                return Err(Status::ClosingTransferMustBePending);
            }
        }
        if event.ledger == 0 {
            return Err(Status::LedgerMustNotBeZero);
        }
        if event.code == 0 {
            return Err(Status::CodeMustNotBeZero);
        }
        let dr = self.account_ids.get(event.debit_account_id).ok_or(Status::DebitAccountNotFound)? as usize;
        let cr = self.account_ids.get(event.credit_account_id).ok_or(Status::CreditAccountNotFound)? as usize;
        let (debit, credit) = (&self.accounts[dr], &self.accounts[cr]);
        if debit.ledger != credit.ledger {
            return Err(Status::AccountsMustHaveTheSameLedger);
        }
        if event.ledger != debit.ledger {
            return Err(Status::TransferMustHaveTheSameLedgerAsAccounts);
        }
        let timestamp = if flags.contains(TransferFlags::IMPORTED) {
            self.imported_regress_check(event.timestamp)?;
            if event.timestamp <= debit.timestamp {
                return Err(Status::ImportedEventTimestampMustPostdateDebitAccount);
            }
            if event.timestamp <= credit.timestamp {
                return Err(Status::ImportedEventTimestampMustPostdateCreditAccount);
            }
            if event.timeout != 0 {
                return Err(Status::ImportedEventTimeoutMustBeZero);
            }
            event.timestamp
        } else {
            timestamp
        };
        if debit.flags.contains(AccountFlags::CLOSED) {
            return Err(Status::DebitAccountAlreadyClosed);
        }
        if credit.flags.contains(AccountFlags::CLOSED) {
            return Err(Status::CreditAccountAlreadyClosed);
        }
        let amount = self.amount_balanced(event, dr, cr);
        self.normal_limits_check(event, amount, timestamp, dr, cr)?;
        self.apply_normal(event, amount, timestamp, Accounts { dr, cr });
        Ok(timestamp)
    }

    /// Step 19 of §5.2 and 27 of §5.3: an imported timestamp must be newer than every transfer
    /// and must not equal an account's.
    fn imported_regress_check(&self, timestamp: u64) -> Result<(), Status> {
        let regress = self.transfers.last().is_some_and(|last| timestamp <= last.timestamp);
        if regress || self.account_at(timestamp).is_some() {
            return Err(Status::ImportedEventTimestampMustNotRegress);
        }
        Ok(())
    }

    /// The amount a normal transfer moves: the request's, limited by balancing (spec §8.4).
    fn amount_balanced(&self, event: &Transfer, dr: usize, cr: usize) -> u128 {
        let mut amount = event.amount;
        if event.flags.contains(TransferFlags::BALANCING_DEBIT) {
            let debit = &self.accounts[dr];
            let available = debit.credits_posted.saturating_sub(debit.debits_posted + debit.debits_pending);
            amount = amount.min(available);
        }
        if event.flags.contains(TransferFlags::BALANCING_CREDIT) {
            let credit = &self.accounts[cr];
            let available =
                credit.debits_posted.saturating_sub(credit.credits_posted + credit.credits_pending);
            amount = amount.min(available);
        }
        amount
    }

    /// Steps 23–30 of §5.2: overflows, the timeout's range, and the balance limits.
    fn normal_limits_check(
        &self,
        event: &Transfer,
        amount: u128,
        timestamp: u64,
        dr: usize,
        cr: usize,
    ) -> Result<(), Status> {
        let (debit, credit) = (&self.accounts[dr], &self.accounts[cr]);
        if event.flags.contains(TransferFlags::PENDING) {
            if amount.checked_add(debit.debits_pending).is_none() {
                return Err(Status::OverflowsDebitsPending);
            }
            if amount.checked_add(credit.credits_pending).is_none() {
                return Err(Status::OverflowsCreditsPending);
            }
        }
        if amount.checked_add(debit.debits_posted).is_none() {
            return Err(Status::OverflowsDebitsPosted);
        }
        if amount.checked_add(credit.credits_posted).is_none() {
            return Err(Status::OverflowsCreditsPosted);
        }
        let debits =
            amount.checked_add(debit.debits_pending).and_then(|sum| sum.checked_add(debit.debits_posted));
        let Some(debits) = debits else { return Err(Status::OverflowsDebits) };
        let credits =
            amount.checked_add(credit.credits_pending).and_then(|sum| sum.checked_add(credit.credits_posted));
        let Some(credits) = credits else { return Err(Status::OverflowsCredits) };
        // u32 seconds · 1e9 < 2^63 and timestamp ≤ 2^63 − 1: the sum cannot overflow a u64.
        if timestamp + u64::from(event.timeout) * NS_PER_S > TIMESTAMP_MAX {
            return Err(Status::OverflowsTimeout);
        }
        if debit.flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS) && debits > debit.credits_posted
        {
            return Err(Status::ExceedsCredits);
        }
        if credit.flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
            && credits > credit.debits_posted
        {
            return Err(Status::ExceedsDebits);
        }
        Ok(())
    }

    /// The effects of a single-phase or pending transfer (spec §8.1).
    fn apply_normal(&mut self, event: &Transfer, amount: u128, timestamp: u64, accounts: Accounts) {
        let Accounts { dr, cr } = accounts;
        let flags = event.flags;
        let pending = flags.contains(TransferFlags::PENDING);
        self.account_touch(dr);
        self.account_touch(cr);
        let debit = &mut self.accounts[dr];
        if pending {
            debit.debits_pending += amount;
        } else {
            debit.debits_posted += amount;
        }
        if flags.contains(TransferFlags::CLOSING_DEBIT) {
            debit.flags = debit.flags.with(AccountFlags::CLOSED);
        }
        let credit = &mut self.accounts[cr];
        if pending {
            credit.credits_pending += amount;
        } else {
            credit.credits_posted += amount;
        }
        if flags.contains(TransferFlags::CLOSING_CREDIT) {
            credit.flags = credit.flags.with(AccountFlags::CLOSED);
        }
        let transfer = Transfer { amount, timestamp, ..*event };
        let status = if pending { TransferPendingStatus::Pending } else { TransferPendingStatus::None };
        let index = self.transfer_insert(&transfer, accounts, status);
        if pending && event.timeout != 0 {
            let expires_at = timestamp + u64::from(event.timeout) * NS_PER_S;
            self.expiries.push(Expiry { expires_at, timestamp, index });
        }
    }

    /// The post/void path (spec §5.3).
    fn create_post_or_void(&mut self, event: &Transfer, timestamp: u64) -> Result<u64, Status> {
        let flags = event.flags;
        let post = flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        let void = flags.contains(TransferFlags::VOID_PENDING_TRANSFER);
        let exclusive = [
            TransferFlags::PENDING,
            TransferFlags::BALANCING_DEBIT,
            TransferFlags::BALANCING_CREDIT,
            TransferFlags::CLOSING_DEBIT,
            TransferFlags::CLOSING_CREDIT,
        ];
        if (post && void) || exclusive.iter().any(|flag| flags.contains(*flag)) {
            return Err(Status::FlagsAreMutuallyExclusive);
        }
        if event.pending_id == 0 {
            return Err(Status::PendingIdMustNotBeZero);
        }
        if event.pending_id == u128::MAX {
            return Err(Status::PendingIdMustNotBeIntMax);
        }
        if event.pending_id == event.id {
            return Err(Status::PendingIdMustBeDifferent);
        }
        if event.timeout != 0 {
            return Err(Status::TimeoutReservedForPendingTransfer);
        }
        let p_index = match self.transfer_ids.get(event.pending_id) {
            None | Some(BURNED) => return Err(Status::PendingTransferNotFound),
            Some(index) => index as usize,
        };
        let p = self.transfers[p_index];
        self.pending_match_check(event, &p)?;
        let amount = if void {
            if event.amount == 0 {
                p.amount
            } else {
                event.amount
            }
        } else if event.amount == u128::MAX {
            p.amount
        } else {
            event.amount
        };
        if amount > p.amount {
            return Err(Status::ExceedsPendingTransferAmount);
        }
        if void && amount < p.amount {
            return Err(Status::PendingTransferHasDifferentAmount);
        }
        match self.transfer_pending[p_index] {
            TransferPendingStatus::Posted => return Err(Status::PendingTransferAlreadyPosted),
            TransferPendingStatus::Voided => return Err(Status::PendingTransferAlreadyVoided),
            TransferPendingStatus::Expired => return Err(Status::PendingTransferExpired),
            TransferPendingStatus::Pending => {}
            TransferPendingStatus::None => unreachable!("a pending transfer has a pending status"),
        }
        if p.timeout > 0 && p.timestamp + u64::from(p.timeout) * NS_PER_S <= timestamp {
            return Err(Status::PendingTransferExpired);
        }
        let timestamp = if flags.contains(TransferFlags::IMPORTED) {
            self.imported_regress_check(event.timestamp)?;
            event.timestamp
        } else {
            timestamp
        };
        let dr = self.account_index(p.debit_account_id);
        let cr = self.account_index(p.credit_account_id);
        if !void && self.accounts[dr].flags.contains(AccountFlags::CLOSED) {
            return Err(Status::DebitAccountAlreadyClosed);
        }
        if !void && self.accounts[cr].flags.contains(AccountFlags::CLOSED) {
            return Err(Status::CreditAccountAlreadyClosed);
        }
        self.apply_post_or_void(event, &p, p_index, amount, timestamp, Accounts { dr, cr });
        Ok(timestamp)
    }

    /// Steps 17–21 of §5.3: the post/void must describe its pending transfer.
    fn pending_match_check(&self, event: &Transfer, p: &Transfer) -> Result<(), Status> {
        if !p.flags.contains(TransferFlags::PENDING) {
            return Err(Status::PendingTransferNotPending);
        }
        if event.debit_account_id != 0 && event.debit_account_id != p.debit_account_id {
            return Err(Status::PendingTransferHasDifferentDebitAccountId);
        }
        if event.credit_account_id != 0 && event.credit_account_id != p.credit_account_id {
            return Err(Status::PendingTransferHasDifferentCreditAccountId);
        }
        if event.ledger != 0 && event.ledger != p.ledger {
            return Err(Status::PendingTransferHasDifferentLedger);
        }
        if event.code != 0 && event.code != p.code {
            return Err(Status::PendingTransferHasDifferentCode);
        }
        Ok(())
    }

    /// The effects of a post (spec §8.2) or a void (§8.3).
    fn apply_post_or_void(
        &mut self,
        event: &Transfer,
        p: &Transfer,
        p_index: usize,
        amount: u128,
        timestamp: u64,
        accounts: Accounts,
    ) {
        let Accounts { dr, cr } = accounts;
        let post = event.flags.contains(TransferFlags::POST_PENDING_TRANSFER);
        self.account_touch(dr);
        self.account_touch(cr);
        if post {
            let debit = &mut self.accounts[dr];
            debit.debits_pending -= p.amount;
            debit.debits_posted += amount;
            let credit = &mut self.accounts[cr];
            credit.credits_pending -= p.amount;
            credit.credits_posted += amount;
        } else {
            self.release_pending(p, dr, cr);
        }
        let status = if post { TransferPendingStatus::Posted } else { TransferPendingStatus::Voided };
        let old = self.transfer_pending[p_index];
        self.transfer_pending[p_index] = status;
        if self.undo.recording() {
            self.undo.push(Undo::PendingStatus { index: p_index as u32, old });
        }
        let inherit_128 = |value: u128, inherited: u128| if value == 0 { inherited } else { value };
        let transfer = Transfer {
            id: event.id,
            debit_account_id: p.debit_account_id,
            credit_account_id: p.credit_account_id,
            amount,
            pending_id: event.pending_id,
            user_data_128: inherit_128(event.user_data_128, p.user_data_128),
            user_data_64: if event.user_data_64 == 0 { p.user_data_64 } else { event.user_data_64 },
            user_data_32: if event.user_data_32 == 0 { p.user_data_32 } else { event.user_data_32 },
            timeout: 0,
            ledger: p.ledger,
            code: p.code,
            flags: event.flags,
            timestamp,
        };
        self.transfer_insert(&transfer, accounts, TransferPendingStatus::None);
    }

    /// Appends a transfer: links it into both accounts' lists and records a balance snapshot
    /// if either account keeps history. Returns its index.
    fn transfer_insert(
        &mut self,
        transfer: &Transfer,
        accounts: Accounts,
        status: TransferPendingStatus,
    ) -> u32 {
        let Accounts { dr, cr } = accounts;
        assert!(self.transfers.len() < self.transfers.capacity());
        assert!(self.transfers.last().is_none_or(|last| last.timestamp < transfer.timestamp));
        let index = self.transfers.len() as u32;
        let (debit, credit) = (&self.accounts[dr], &self.accounts[cr]);
        let history =
            if debit.flags.contains(AccountFlags::HISTORY) || credit.flags.contains(AccountFlags::HISTORY) {
                assert!(self.history.len() < self.history.capacity());
                self.history.push(HistoryEntry {
                    debit_account: Self::history_balances(debit),
                    credit_account: Self::history_balances(credit),
                });
                (self.history.len() - 1) as u32
            } else {
                NONE
            };
        self.account_transfers.push(dr, index);
        self.account_transfers.push(cr, index);
        self.transfers.push(*transfer);
        self.transfer_history.push(history);
        self.transfer_pending.push(status);
        self.transfer_ids.insert(transfer.id, index);
        if self.undo.recording() {
            self.undo.push(Undo::TransferInserted);
        }
        index
    }

    /// The idempotency comparison of a retried transfer (spec §6.2).
    fn transfer_exists(&self, event: &Transfer, index: usize) -> Status {
        let existing = &self.transfers[index];
        if event.flags != existing.flags {
            return Status::ExistsWithDifferentFlags;
        }
        if event.pending_id != existing.pending_id {
            return Status::ExistsWithDifferentPendingId;
        }
        if event.timeout != existing.timeout {
            return Status::ExistsWithDifferentTimeout;
        }
        let flags = event.flags;
        if flags.contains(TransferFlags::POST_PENDING_TRANSFER)
            || flags.contains(TransferFlags::VOID_PENDING_TRANSFER)
        {
            let p_index = self.transfer_ids.get(existing.pending_id).expect("pending of a stored post/void");
            let p = &self.transfers[p_index as usize];
            return post_or_void_exists(event, existing, p);
        }
        if event.debit_account_id != existing.debit_account_id {
            return Status::ExistsWithDifferentDebitAccountId;
        }
        if event.credit_account_id != existing.credit_account_id {
            return Status::ExistsWithDifferentCreditAccountId;
        }
        let balancing =
            flags.contains(TransferFlags::BALANCING_DEBIT) || flags.contains(TransferFlags::BALANCING_CREDIT);
        let amount_differs =
            if balancing { event.amount < existing.amount } else { event.amount != existing.amount };
        if amount_differs {
            return Status::ExistsWithDifferentAmount;
        }
        if event.user_data_128 != existing.user_data_128 {
            return Status::ExistsWithDifferentUserData128;
        }
        if event.user_data_64 != existing.user_data_64 {
            return Status::ExistsWithDifferentUserData64;
        }
        if event.user_data_32 != existing.user_data_32 {
            return Status::ExistsWithDifferentUserData32;
        }
        if event.ledger != existing.ledger {
            return Status::ExistsWithDifferentLedger;
        }
        if event.code != existing.code {
            return Status::ExistsWithDifferentCode;
        }
        Status::Exists
    }
}

/// §6.2 step 4: a retried post/void, compared with the stored one `e` and its pending `p`.
fn post_or_void_exists(event: &Transfer, e: &Transfer, p: &Transfer) -> Status {
    if event.debit_account_id != 0 && event.debit_account_id != e.debit_account_id {
        return Status::ExistsWithDifferentDebitAccountId;
    }
    if event.credit_account_id != 0 && event.credit_account_id != e.credit_account_id {
        return Status::ExistsWithDifferentCreditAccountId;
    }
    let full = if event.flags.contains(TransferFlags::VOID_PENDING_TRANSFER) { 0 } else { u128::MAX };
    let amount_differs = if event.amount == full { e.amount != p.amount } else { event.amount != e.amount };
    if amount_differs {
        return Status::ExistsWithDifferentAmount;
    }
    let differs_128 = |value: u128, stored: u128, pending: u128| {
        if value == 0 {
            stored != pending
        } else {
            value != stored
        }
    };
    if differs_128(event.user_data_128, e.user_data_128, p.user_data_128) {
        return Status::ExistsWithDifferentUserData128;
    }
    if differs_128(event.user_data_64.into(), e.user_data_64.into(), p.user_data_64.into()) {
        return Status::ExistsWithDifferentUserData64;
    }
    if differs_128(event.user_data_32.into(), e.user_data_32.into(), p.user_data_32.into()) {
        return Status::ExistsWithDifferentUserData32;
    }
    if event.ledger != 0 && event.ledger != e.ledger {
        return Status::ExistsWithDifferentLedger;
    }
    if event.code != 0 && event.code != e.code {
        return Status::ExistsWithDifferentCode;
    }
    Status::Exists
}
