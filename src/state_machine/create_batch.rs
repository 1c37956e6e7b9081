//! The batch loop shared by `create_accounts` and `create_transfers` (spec §4.1): timestamp
//! slots, linked chains with rollback, the imported-mode checks, and burned ids.

use super::undo::Undo;
use super::{StateMachine, NONE};
use crate::constants::TIMESTAMP_MAX;
use crate::types::{AccountFlags, CreateResult};

/// How many events ahead the loop prefetches, in three stages: first the hash-table slots of
/// the ids an event names, then (once those slots are in cache) the records they point to, then
/// what those records point to. Far enough to overlap many cache misses, near enough that
/// prefetched lines are still in cache.
const PREFETCH_DISTANCE_IDS: usize = 16;
const PREFETCH_DISTANCE_RECORDS: usize = 8;
const PREFETCH_DISTANCE_TAILS: usize = 4;

/// What the batch loop needs to know of an event type.
pub(super) trait CreateEvent: Copy {
    const CREATED: u32;
    const LINKED_EVENT_FAILED: u32;
    const LINKED_EVENT_CHAIN_OPEN: u32;
    const TIMESTAMP_MUST_BE_ZERO: u32;
    const IMPORTED_EVENT_EXPECTED: u32;
    const IMPORTED_EVENT_NOT_EXPECTED: u32;
    const IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE: u32;
    const IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE: u32;

    fn linked(&self) -> bool;
    fn imported(&self) -> bool;
    fn timestamp(&self) -> u64;

    /// Runs the object-specific checks and, if they pass, applies the event; returns the status
    /// and the result timestamp.
    fn apply(state: &mut StateMachine, event: &Self, timestamp: u64) -> (u32, u64);

    /// Starts loading the id-table slots that applying `event` will look up.
    fn prefetch_ids(_state: &StateMachine, _event: &Self) {}

    /// Starts loading the records that applying `event` will touch (its id slots are cached).
    fn prefetch_records(_state: &StateMachine, _event: &Self) {}

    /// Starts loading what the records point to (the records are cached).
    fn prefetch_tails(_state: &StateMachine, _event: &Self) {}

    /// Called for a failed event after any chain rollback (burns transient transfer ids).
    fn failed(state: &mut StateMachine, event: &Self, status: u32);
}

impl StateMachine {
    /// Executes one batch of creates. `timestamp_last` is the slot of the last event.
    pub(super) fn create_batch<E: CreateEvent>(
        &mut self,
        timestamp_last: u64,
        events: &[E],
        results: &mut [CreateResult],
    ) {
        let count = events.len();
        assert_eq!(results.len(), count);
        assert!(timestamp_last <= TIMESTAMP_MAX && timestamp_last >= count as u64);
        assert!(!self.undo.recording());
        let Some(first) = events.first() else { return };
        let batch_imported = first.imported();
        let mut chain_start: Option<usize> = None;
        let mut chain_broken = false;
        for event in events.iter().take(PREFETCH_DISTANCE_IDS) {
            E::prefetch_ids(self, event);
        }
        for event in events.iter().take(PREFETCH_DISTANCE_RECORDS) {
            E::prefetch_records(self, event);
        }
        for event in events.iter().take(PREFETCH_DISTANCE_TAILS) {
            E::prefetch_tails(self, event);
        }
        for (index, event) in events.iter().enumerate() {
            if let Some(ahead) = events.get(index + PREFETCH_DISTANCE_IDS) {
                E::prefetch_ids(self, ahead);
            }
            if let Some(ahead) = events.get(index + PREFETCH_DISTANCE_RECORDS) {
                E::prefetch_records(self, ahead);
            }
            if let Some(ahead) = events.get(index + PREFETCH_DISTANCE_TAILS) {
                E::prefetch_tails(self, ahead);
            }
            let timestamp = timestamp_last - count as u64 + index as u64 + 1;
            let mut chain_open = false;
            if event.linked() {
                if chain_start.is_none() {
                    chain_start = Some(index);
                    chain_broken = false;
                    self.undo.begin();
                }
                chain_open = index == count - 1;
            }
            let (status, result_timestamp) = if chain_open {
                (E::LINKED_EVENT_CHAIN_OPEN, timestamp)
            } else if chain_broken {
                (E::LINKED_EVENT_FAILED, timestamp)
            } else if let Some(status) = imported_check(event, batch_imported, timestamp_last) {
                (status, timestamp)
            } else {
                E::apply(self, event, timestamp)
            };
            if status != E::CREATED {
                if let Some(start) = chain_start {
                    if !chain_broken {
                        chain_broken = true;
                        self.rollback();
                        for result in &mut results[start..index] {
                            result.status = E::LINKED_EVENT_FAILED;
                        }
                    }
                }
                E::failed(self, event, status);
            }
            results[index] = CreateResult::new(result_timestamp, status);
            if chain_start.is_some() && (!event.linked() || chain_open) {
                if !chain_broken {
                    self.undo.commit();
                }
                chain_start = None;
                chain_broken = false;
            }
        }
        assert!(chain_start.is_none());
        assert!(!self.undo.recording());
    }

    /// Undoes every change of the open chain, newest first.
    fn rollback(&mut self) {
        self.undo.abort();
        while let Some(entry) = self.undo.pop() {
            match entry {
                Undo::AccountInserted => {
                    let account = self.accounts.pop().expect("undo of an inserted account");
                    self.account_transfers.account_pop();
                    self.account_ids.remove(account.id);
                    self.accounts_history_count -= u32::from(account.flags.contains(AccountFlags::HISTORY));
                }
                Undo::TransferInserted => self.transfer_remove_last(),
                Undo::Account { index, old } => self.accounts[index as usize] = old,
                Undo::PendingStatus { index, old } => {
                    self.transfer_pending[index as usize] = old;
                }
            }
        }
    }

    /// Removes the newest transfer: from the id table, its accounts' lists and the history.
    fn transfer_remove_last(&mut self) {
        let transfer = self.transfers.pop().expect("undo of an inserted transfer");
        let history = self.transfer_history.pop().expect("transfer history index");
        self.transfer_pending.pop();
        self.transfer_ids.remove(transfer.id);
        let index = self.transfers.len() as u32;
        let dr = self.account_index(transfer.debit_account_id);
        let cr = self.account_index(transfer.credit_account_id);
        // In the reverse order of `transfer_insert`'s pushes.
        self.account_transfers.pop(cr, index);
        self.account_transfers.pop(dr, index);
        if history != NONE {
            assert_eq!(history as usize, self.history.len() - 1);
            self.history.pop();
        }
    }
}

/// Steps 4–5 of spec §4.1: the batch's imported mode and the event's timestamp.
fn imported_check<E: CreateEvent>(event: &E, batch_imported: bool, timestamp_last: u64) -> Option<u32> {
    if event.imported() != batch_imported {
        return Some(if event.imported() {
            E::IMPORTED_EVENT_NOT_EXPECTED
        } else {
            E::IMPORTED_EVENT_EXPECTED
        });
    }
    if event.imported() {
        if event.timestamp() == 0 || event.timestamp() > TIMESTAMP_MAX {
            return Some(E::IMPORTED_EVENT_TIMESTAMP_OUT_OF_RANGE);
        }
        if event.timestamp() >= timestamp_last {
            return Some(E::IMPORTED_EVENT_TIMESTAMP_MUST_NOT_ADVANCE);
        }
    } else if event.timestamp() != 0 {
        return Some(E::TIMESTAMP_MUST_BE_ZERO);
    }
    None
}
