//! `create_accounts` (spec §4.2 and §6.1).

use super::create_batch::CreateEvent;
use super::undo::Undo;
use super::StateMachine;
use crate::types::{Account, AccountFlags, CreateAccountStatus as Status, CreateResult};

impl CreateEvent for Account {
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
        self.flags.contains(AccountFlags::LINKED)
    }

    fn imported(&self) -> bool {
        self.flags.contains(AccountFlags::IMPORTED)
    }

    fn timestamp(&self) -> u64 {
        self.timestamp
    }

    fn apply(state: &mut StateMachine, event: &Account, timestamp: u64) -> (u32, u64) {
        match state.create_account(event, timestamp) {
            Ok(timestamp) => (Status::Created as u32, timestamp),
            Err(Status::Exists) => {
                let index = state.account_ids.get(event.id).expect("existing account");
                (Status::Exists as u32, state.accounts[index as usize].timestamp)
            }
            Err(status) => (status as u32, timestamp),
        }
    }

    fn failed(_: &mut StateMachine, _: &Account, _: u32) {}
}

impl StateMachine {
    pub(super) fn create_accounts_unchecked(
        &mut self,
        timestamp_last: u64,
        events: &[Account],
        results: &mut [CreateResult],
    ) {
        assert!(self.accounts.len() + events.len() <= self.config.accounts_max as usize);
        self.create_batch(timestamp_last, events, results);
    }

    /// Checks one account (spec §4.2 steps 1–13) and inserts it; returns its timestamp.
    fn create_account(&mut self, event: &Account, timestamp: u64) -> Result<u64, Status> {
        if event.reserved != 0 {
            return Err(Status::ReservedField);
        }
        if event.flags.has_reserved() {
            return Err(Status::ReservedFlag);
        }
        if event.id == 0 {
            return Err(Status::IdMustNotBeZero);
        }
        if event.id == u128::MAX {
            return Err(Status::IdMustNotBeIntMax);
        }
        if let Some(index) = self.account_ids.get(event.id) {
            return Err(account_exists(event, &self.accounts[index as usize]));
        }
        let flags = event.flags;
        if flags.contains(AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS)
            && flags.contains(AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS)
        {
            return Err(Status::FlagsAreMutuallyExclusive);
        }
        if event.debits_pending != 0 {
            return Err(Status::DebitsPendingMustBeZero);
        }
        if event.debits_posted != 0 {
            return Err(Status::DebitsPostedMustBeZero);
        }
        if event.credits_pending != 0 {
            return Err(Status::CreditsPendingMustBeZero);
        }
        if event.credits_posted != 0 {
            return Err(Status::CreditsPostedMustBeZero);
        }
        if event.ledger == 0 {
            return Err(Status::LedgerMustNotBeZero);
        }
        if event.code == 0 {
            return Err(Status::CodeMustNotBeZero);
        }
        let timestamp = if flags.contains(AccountFlags::IMPORTED) {
            let regress = self.accounts.last().is_some_and(|last| event.timestamp <= last.timestamp);
            if regress || self.transfer_at(event.timestamp).is_some() {
                return Err(Status::ImportedEventTimestampMustNotRegress);
            }
            event.timestamp
        } else {
            timestamp
        };
        self.account_insert(event, timestamp);
        Ok(timestamp)
    }

    fn account_insert(&mut self, event: &Account, timestamp: u64) {
        assert!(self.accounts.len() < self.accounts.capacity());
        assert!(self.accounts.last().is_none_or(|last| last.timestamp < timestamp));
        let index = self.accounts.len() as u32;
        self.accounts.push(Account {
            debits_pending: 0,
            debits_posted: 0,
            credits_pending: 0,
            credits_posted: 0,
            reserved: 0,
            timestamp,
            ..*event
        });
        self.account_transfers.account_push();
        self.account_ids.insert(event.id, index);
        self.accounts_history_count += u32::from(event.flags.contains(AccountFlags::HISTORY));
        if self.undo.recording() {
            self.undo.push(Undo::AccountInserted);
        }
    }

    /// The index of the transfer with exactly this timestamp, if any.
    pub(super) fn transfer_at(&self, timestamp: u64) -> Option<usize> {
        let index = self.transfers.partition_point(|transfer| transfer.timestamp < timestamp);
        (index < self.transfers.len() && self.transfers[index].timestamp == timestamp).then_some(index)
    }

    /// The index of the account with exactly this timestamp, if any.
    pub(super) fn account_at(&self, timestamp: u64) -> Option<usize> {
        let index = self.accounts.partition_point(|account| account.timestamp < timestamp);
        (index < self.accounts.len() && self.accounts[index].timestamp == timestamp).then_some(index)
    }
}

/// The idempotency comparison of a retried account (spec §6.1).
fn account_exists(event: &Account, existing: &Account) -> Status {
    if event.flags != existing.flags {
        Status::ExistsWithDifferentFlags
    } else if event.user_data_128 != existing.user_data_128 {
        Status::ExistsWithDifferentUserData128
    } else if event.user_data_64 != existing.user_data_64 {
        Status::ExistsWithDifferentUserData64
    } else if event.user_data_32 != existing.user_data_32 {
        Status::ExistsWithDifferentUserData32
    } else if event.ledger != existing.ledger {
        Status::ExistsWithDifferentLedger
    } else if event.code != existing.code {
        Status::ExistsWithDifferentCode
    } else {
        Status::Exists
    }
}
