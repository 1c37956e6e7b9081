//! Lookups and queries (spec §12). Reads never fail: an invalid filter yields no results.

use super::{StateMachine, BURNED, NONE};
use crate::constants::{QUERY_RESULTS_MAX, TIMESTAMP_MAX};
use crate::types::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, QueryFilter, QueryFilterFlags,
    Transfer,
};

impl StateMachine {
    /// Appends each found account to `results`, in the order of `ids`; returns the count.
    pub fn lookup_accounts(&self, ids: &[u128], results: &mut [Account]) -> usize {
        assert!(results.len() >= ids.len());
        let mut count = 0;
        for id in ids {
            if let Some(index) = self.account_ids.get(*id) {
                results[count] = self.accounts[index as usize];
                count += 1;
            }
        }
        count
    }

    /// Appends each found transfer to `results`, in the order of `ids`; returns the count.
    pub fn lookup_transfers(&self, ids: &[u128], results: &mut [Transfer]) -> usize {
        assert!(results.len() >= ids.len());
        let mut count = 0;
        for id in ids {
            match self.transfer_ids.get(*id) {
                None | Some(BURNED) => {}
                Some(index) => {
                    results[count] = self.transfers[index as usize];
                    count += 1;
                }
            }
        }
        count
    }

    /// The transfers of one account (spec §12.2); returns the count written to `results`.
    pub fn get_account_transfers(&self, filter: &AccountFilter, results: &mut [Transfer]) -> usize {
        let mut count = 0;
        self.account_transfers_for_each(filter, results.len(), |index| {
            results[count] = self.transfers[index];
            count += 1;
        });
        count
    }

    /// The balances of one `history` account after each of its transfers (spec §12.4).
    pub fn get_account_balances(&self, filter: &AccountFilter, results: &mut [AccountBalance]) -> usize {
        let Some(account) = self.account_ids.get(filter.account_id) else { return 0 };
        if !self.accounts[account as usize].flags.contains(AccountFlags::HISTORY) {
            return 0;
        }
        let mut count = 0;
        self.account_transfers_for_each(filter, results.len(), |index| {
            let transfer = &self.transfers[index];
            let history = self.transfer_history[index];
            assert!(history != NONE, "every transfer of a history account has a snapshot");
            let entry = &self.history[history as usize];
            let balances = if transfer.debit_account_id == filter.account_id {
                &entry.debit_account
            } else {
                &entry.credit_account
            };
            results[count] = Self::history_balance(balances, transfer.timestamp);
            count += 1;
        });
        count
    }

    /// Calls `f` with the index of each transfer `filter` selects, in the requested order, at
    /// most `min(limit, QUERY_RESULTS_MAX, capacity)` times.
    fn account_transfers_for_each(&self, filter: &AccountFilter, capacity: usize, mut f: impl FnMut(usize)) {
        if !account_filter_valid(filter) {
            return;
        }
        let Some(account) = self.account_ids.get(filter.account_id) else { return };
        let limit = (filter.limit as usize).min(QUERY_RESULTS_MAX).min(capacity);
        let (timestamp_min, timestamp_max) = timestamp_range(filter.timestamp_min, filter.timestamp_max);
        let reversed = filter.flags.contains(AccountFilterFlags::REVERSED);
        let debits = filter.flags.contains(AccountFilterFlags::DEBITS);
        let credits = filter.flags.contains(AccountFilterFlags::CREDITS);
        let lists = &self.account_transfers;
        let mut cursor =
            lists.cursor(account as usize, reversed, &self.transfers, timestamp_min, timestamp_max);
        let mut count = 0;
        while count < limit {
            let Some(index) = lists.next(&mut cursor) else { break };
            let index = index as usize;
            let transfer = &self.transfers[index];
            let before = transfer.timestamp < timestamp_min;
            let after = transfer.timestamp > timestamp_max;
            // Past the end of the range in the walking direction: nothing later can match.
            if (reversed && before) || (!reversed && after) {
                break;
            }
            let side = (debits && transfer.debit_account_id == filter.account_id)
                || (credits && transfer.credit_account_id == filter.account_id);
            if before || after || !side || !transfer_matches_account_filter(transfer, filter) {
                continue;
            }
            f(index);
            count += 1;
        }
    }

    /// Accounts matching a query filter (spec §12.3); returns the count written to `results`.
    pub fn query_accounts(&self, filter: &QueryFilter, results: &mut [Account]) -> usize {
        query(&self.accounts, filter, results, |account| {
            (
                account.user_data_128,
                account.user_data_64,
                account.user_data_32,
                account.ledger,
                account.code,
                account.timestamp,
            )
        })
    }

    /// Transfers matching a query filter (spec §12.3); returns the count written to `results`.
    pub fn query_transfers(&self, filter: &QueryFilter, results: &mut [Transfer]) -> usize {
        query(&self.transfers, filter, results, |transfer| {
            (
                transfer.user_data_128,
                transfer.user_data_64,
                transfer.user_data_32,
                transfer.ledger,
                transfer.code,
                transfer.timestamp,
            )
        })
    }
}

/// The fields a query filter matches, in filter order, and the timestamp.
type QueryFields = (u128, u64, u32, u32, u16, u64);

/// Scans `objects` (sorted by timestamp) within the filter's timestamp range.
fn query<T: Copy>(
    objects: &[T],
    filter: &QueryFilter,
    results: &mut [T],
    fields: impl Fn(&T) -> QueryFields,
) -> usize {
    if !query_filter_valid(filter) {
        return 0;
    }
    let limit = (filter.limit as usize).min(QUERY_RESULTS_MAX).min(results.len());
    let (timestamp_min, timestamp_max) = timestamp_range(filter.timestamp_min, filter.timestamp_max);
    let start = objects.partition_point(|object| fields(object).5 < timestamp_min);
    let end = objects.partition_point(|object| fields(object).5 <= timestamp_max);
    if start >= end {
        return 0;
    }
    let matches = |object: &&T| {
        let (user_data_128, user_data_64, user_data_32, ledger, code, _) = fields(object);
        (filter.user_data_128 == 0 || filter.user_data_128 == user_data_128)
            && (filter.user_data_64 == 0 || filter.user_data_64 == user_data_64)
            && (filter.user_data_32 == 0 || filter.user_data_32 == user_data_32)
            && (filter.ledger == 0 || filter.ledger == ledger)
            && (filter.code == 0 || filter.code == code)
    };
    let range = &objects[start..end];
    let mut count = 0;
    let mut emit = |object: &T| {
        results[count] = *object;
        count += 1;
    };
    if filter.flags.contains(QueryFilterFlags::REVERSED) {
        range.iter().rev().filter(matches).take(limit).for_each(&mut emit);
    } else {
        range.iter().filter(matches).take(limit).for_each(&mut emit);
    }
    count
}

/// The inclusive timestamp range of a filter (0 means unbounded).
fn timestamp_range(timestamp_min: u64, timestamp_max: u64) -> (u64, u64) {
    let min = if timestamp_min == 0 { 1 } else { timestamp_min };
    let max = if timestamp_max == 0 { TIMESTAMP_MAX } else { timestamp_max };
    (min, max)
}

fn timestamps_valid(timestamp_min: u64, timestamp_max: u64) -> bool {
    timestamp_min <= TIMESTAMP_MAX
        && timestamp_max <= TIMESTAMP_MAX
        && (timestamp_max == 0 || timestamp_min <= timestamp_max)
}

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

fn query_filter_valid(filter: &QueryFilter) -> bool {
    timestamps_valid(filter.timestamp_min, filter.timestamp_max)
        && filter.limit != 0
        && !filter.flags.has_reserved()
        && filter.reserved.iter().all(|byte| *byte == 0)
}

fn transfer_matches_account_filter(transfer: &Transfer, filter: &AccountFilter) -> bool {
    (filter.user_data_128 == 0 || filter.user_data_128 == transfer.user_data_128)
        && (filter.user_data_64 == 0 || filter.user_data_64 == transfer.user_data_64)
        && (filter.user_data_32 == 0 || filter.user_data_32 == transfer.user_data_32)
        && (filter.code == 0 || filter.code == transfer.code)
}
