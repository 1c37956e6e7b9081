//! The batch loop shared by `create_accounts` and `create_transfers` (spec §4.1): timestamp
//! slots, linked chains with rollback, the imported-mode checks, and burned ids.

use super::undo::Undo;
use super::{StateMachine, NONE};
use crate::constants::TIMESTAMP_MAX;
use crate::types::{AccountFlags, CreateResult};

/// How many events ahead the loop prefetches: enough to overlap several cache misses, few
/// enough that prefetched lines are still in cache when used.
const PREFETCH_DISTANCE: usize = 8;

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

    /// Starts loading what applying `event` will touch, a few events ahead of it.
    fn prefetch(_state: &StateMachine, _event: &Self) {}

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
        for event in events.iter().take(PREFETCH_DISTANCE) {
            E::prefetch(self, event);
        }
        for (index, event) in events.iter().enumerate() {
            if let Some(ahead) = events.get(index + PREFETCH_DISTANCE) {
                E::prefetch(self, ahead);
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
                    self.account_links.pop();
                    self.account_ids.remove(account.id);
                    self.accounts_history_count -= u32::from(account.flags.contains(AccountFlags::HISTORY));
                }
                Undo::TransferInserted => self.transfer_remove_last(),
                Undo::Account { index, old } => self.accounts[index as usize] = old,
                Undo::PendingStatus { index, old } => {
                    self.transfer_meta[index as usize].pending_status = old;
                }
            }
        }
    }

    /// Removes the newest transfer: from the id table, its accounts' lists and the history.
    fn transfer_remove_last(&mut self) {
        let transfer = self.transfers.pop().expect("undo of an inserted transfer");
        let meta = self.transfer_meta.pop().expect("transfer meta");
        self.transfer_ids.remove(transfer.id);
        let dr = self.account_index(transfer.debit_account_id);
        let cr = self.account_index(transfer.credit_account_id);
        let removed = self.transfers.len() as u32;
        assert_eq!(self.account_links[dr].debits_last, removed);
        assert_eq!(self.account_links[cr].credits_last, removed);
        self.account_links[dr].debits_last = meta.debit_prev;
        if meta.debit_prev == NONE {
            self.account_links[dr].debits_first = NONE;
        } else {
            self.transfer_meta[meta.debit_prev as usize].debit_next = NONE;
        }
        self.account_links[cr].credits_last = meta.credit_prev;
        if meta.credit_prev == NONE {
            self.account_links[cr].credits_first = NONE;
        } else {
            self.transfer_meta[meta.credit_prev as usize].credit_next = NONE;
        }
        if meta.history != NONE {
            assert_eq!(meta.history as usize, self.history.len() - 1);
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
