//! The simulated clients' request bodies: random batches of every client operation, valid and
//! invalid, over a small id space so that ids collide, accounts run out, pending transfers are
//! posted, voided and expire, and tables fill. Transfers between accounts come from the
//! benchmark's generator (`crate::workload`); the rest mirrors the differential test's mix.
//!
//! Create requests are one batch each (the oracle relies on it); reads are sometimes several.

use crate::multi_batch::MultiBatchEncoder;
use crate::operation::Operation;
use crate::prng::Prng;
use crate::types::{
    Account, AccountFilter, AccountFilterFlags, AccountFlags, QueryFilter, QueryFilterFlags, Transfer,
    TransferFlags,
};
use crate::workload::{AccountDistribution, Workload};

/// The most events in one create batch: small, so that single-event groups, chains and
/// collisions are common and a WAL slot of the smallest message size holds any request.
pub const BATCH_EVENTS_SIM_MAX: u64 = 24;

/// The most batches in one read request.
const READ_BATCHES_MAX: u64 = 3;

/// How many recent transfer ids are kept for collisions, lookups, posts and voids.
const TRANSFER_IDS_RECENT_MAX: usize = 64;

/// The longest pending timeout, in seconds: a few seconds, so that timeouts expire in a run.
const TIMEOUT_S_MAX: u64 = 3;

/// One request body: the operation and its bytes.
#[derive(Clone, Debug)]
pub struct RequestBody {
    /// The operation.
    pub operation: Operation,
    /// The multi-batch body (or garbage, for an invalid request).
    pub body: Vec<u8>,
}

/// The seeded generator of request bodies, shared by every client of a run.
pub struct Requests {
    prng: Prng,
    workload: Workload,
    /// Account ids are `1..=account_id_max`: more than the accounts table holds.
    account_id_max: u64,
    transfer_ids_recent: Vec<u128>,
    pending_ids_recent: Vec<u128>,
    /// Percent of requests whose body is invalid (the client is then evicted).
    invalid_percent: u64,
}

impl Requests {
    /// A generator over account ids `1..=account_id_max`.
    pub fn new(seed: u64, account_id_max: u64, invalid_percent: u64) -> Requests {
        assert!(account_id_max >= 2);
        assert!(invalid_percent <= 100);
        let mut prng = Prng::new(seed);
        let distribution = *prng.pick(&[AccountDistribution::Uniform, AccountDistribution::Zipf]);
        Requests {
            workload: Workload::new(prng.next_u64(), account_id_max, 1, distribution),
            prng,
            account_id_max,
            transfer_ids_recent: Vec::new(),
            pending_ids_recent: Vec::new(),
            invalid_percent,
        }
    }

    /// The next request body.
    pub fn generate(&mut self) -> RequestBody {
        if self.prng.chance(self.invalid_percent, 100) {
            return self.invalid();
        }
        match self.prng.below(100) {
            0..=21 => self.create_accounts(),
            22..=61 => self.create_transfers(),
            62..=69 => self.lookup(Operation::LookupAccounts),
            70..=77 => self.lookup(Operation::LookupTransfers),
            78..=83 => self.account_filter(Operation::GetAccountTransfers),
            84..=89 => self.account_filter(Operation::GetAccountBalances),
            90..=94 => self.query(Operation::QueryAccounts),
            _ => self.query(Operation::QueryTransfers),
        }
    }

    fn event_count(&mut self) -> usize {
        if self.prng.chance(2, 3) {
            self.prng.range_inclusive(1, 4) as usize
        } else {
            self.prng.range_inclusive(1, BATCH_EVENTS_SIM_MAX) as usize
        }
    }

    fn account_id(&mut self) -> u128 {
        u128::from(self.prng.range_inclusive(1, self.account_id_max))
    }

    fn create_accounts(&mut self) -> RequestBody {
        let count = self.event_count();
        let accounts: Vec<Account> = (0..count).map(|_| self.account()).collect();
        body_single(Operation::CreateAccounts, &accounts)
    }

    fn account(&mut self) -> Account {
        let mut account = Account {
            id: self.account_id(),
            ledger: if self.prng.chance(9, 10) { 1 } else { 2 },
            code: if self.prng.chance(19, 20) { 1 } else { 0 },
            ..Account::default()
        };
        for (flag, percent) in [
            (AccountFlags::LINKED, 10),
            (AccountFlags::HISTORY, 25),
            (AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS, 10),
            (AccountFlags::CREDITS_MUST_NOT_EXCEED_DEBITS, 5),
        ] {
            if self.prng.chance(percent, 100) {
                account.flags = account.flags.with(flag);
            }
        }
        if self.prng.chance(1, 50) {
            account.timestamp = 1; // Not imported: `timestamp_must_be_zero`.
        }
        account
    }

    fn create_transfers(&mut self) -> RequestBody {
        let count = self.event_count();
        let transfers: Vec<Transfer> = (0..count).map(|_| self.transfer()).collect();
        body_single(Operation::CreateTransfers, &transfers)
    }

    fn transfer(&mut self) -> Transfer {
        let mut transfer = self.workload.transfer(30);
        transfer.amount = u128::from(self.prng.range_inclusive(1, 200));
        if transfer.flags.contains(TransferFlags::PENDING) {
            transfer.timeout = self.prng.below(TIMEOUT_S_MAX + 1) as u32;
        }
        let roll = self.prng.below(100);
        if roll < 20 && !self.pending_ids_recent.is_empty() {
            // Post or void a recent pending transfer, inheriting its fields.
            let flag = if self.prng.chance(1, 2) {
                TransferFlags::POST_PENDING_TRANSFER
            } else {
                TransferFlags::VOID_PENDING_TRANSFER
            };
            let pending_id = *self.prng.pick(&self.pending_ids_recent);
            let amount =
                if self.prng.chance(1, 2) { 0 } else { u128::from(self.prng.range_inclusive(1, 200)) };
            transfer = Transfer { id: transfer.id, pending_id, amount, flags: flag, ..Transfer::default() };
        } else if roll < 26 && !self.transfer_ids_recent.is_empty() {
            transfer.id = *self.prng.pick(&self.transfer_ids_recent); // Exists, or exists differently.
        } else if roll < 29 {
            transfer.amount = 0;
        } else if roll < 31 {
            transfer.credit_account_id = transfer.debit_account_id;
        } else if roll < 34 {
            transfer.ledger = 2;
        } else if roll < 37 {
            transfer.flags = transfer.flags.with(TransferFlags::BALANCING_DEBIT);
        } else if roll < 39 {
            transfer.flags = transfer.flags.with(TransferFlags::BALANCING_CREDIT);
        }
        if self.prng.chance(1, 10) {
            transfer.flags = transfer.flags.with(TransferFlags::LINKED);
        }
        self.remember(transfer);
        transfer
    }

    /// Keeps `transfer`'s id among the recent ones (and among the pending ones, if pending).
    fn remember(&mut self, transfer: Transfer) {
        let bounded_push = |ids: &mut Vec<u128>, id| {
            if ids.len() == TRANSFER_IDS_RECENT_MAX {
                ids.remove(0);
            }
            ids.push(id);
        };
        bounded_push(&mut self.transfer_ids_recent, transfer.id);
        if transfer.flags.contains(TransferFlags::PENDING) {
            bounded_push(&mut self.pending_ids_recent, transfer.id);
        }
    }

    fn lookup(&mut self, operation: Operation) -> RequestBody {
        let batch_count = self.prng.range_inclusive(1, READ_BATCHES_MAX) as usize;
        let mut batches = Vec::with_capacity(batch_count);
        for _ in 0..batch_count {
            let count = self.prng.range_inclusive(1, 8);
            let ids: Vec<u128> = (0..count)
                .map(|_| match operation {
                    Operation::LookupTransfers
                        if !self.transfer_ids_recent.is_empty() && self.prng.chance(3, 4) =>
                    {
                        *self.prng.pick(&self.transfer_ids_recent)
                    }
                    Operation::LookupTransfers => self.prng.next_u128(),
                    _ => self.account_id(),
                })
                .collect();
            batches.push(ids);
        }
        body_multi(operation, &batches)
    }

    fn account_filter(&mut self, operation: Operation) -> RequestBody {
        let mut flags = AccountFilterFlags::default();
        for flag in [AccountFilterFlags::DEBITS, AccountFilterFlags::CREDITS, AccountFilterFlags::REVERSED] {
            if self.prng.chance(2, 3) {
                flags = flags.with(flag);
            }
        }
        let filter = AccountFilter {
            account_id: self.account_id(),
            limit: if self.prng.chance(1, 4) { u32::MAX } else { self.prng.range_inclusive(1, 16) as u32 },
            code: if self.prng.chance(1, 5) { 1 } else { 0 },
            flags,
            ..AccountFilter::default()
        };
        body_single(operation, &[filter])
    }

    fn query(&mut self, operation: Operation) -> RequestBody {
        let filter = QueryFilter {
            ledger: self.prng.below(3) as u32,
            code: self.prng.below(2) as u16,
            limit: self.prng.range_inclusive(1, 16) as u32,
            flags: if self.prng.chance(1, 2) {
                QueryFilterFlags::REVERSED
            } else {
                QueryFilterFlags::default()
            },
            ..QueryFilter::default()
        };
        body_single(operation, &[filter])
    }

    /// A request the replica must refuse whole (and evict its client for): a body that is not a
    /// multi-batch encoding, or a query with two filters.
    fn invalid(&mut self) -> RequestBody {
        if self.prng.chance(1, 2) {
            let size = self.prng.range_inclusive(1, 200) as usize;
            let body: Vec<u8> = (0..size).map(|_| self.prng.below(256) as u8).collect();
            let operation = *self.prng.pick(&[Operation::CreateTransfers, Operation::LookupAccounts]);
            return RequestBody { operation, body };
        }
        let filter = QueryFilter { limit: 1, ..QueryFilter::default() };
        body_single(Operation::QueryAccounts, &[filter, filter])
    }
}

/// One batch of `events` as a multi-batch body.
fn body_single<T: bytemuck::Pod>(operation: Operation, events: &[T]) -> RequestBody {
    body_multi(operation, &[events.to_vec()])
}

/// `batches` as a multi-batch body.
fn body_multi<T: bytemuck::Pod>(operation: Operation, batches: &[Vec<T>]) -> RequestBody {
    let event_size = core::mem::size_of::<T>();
    let events: usize = batches.iter().map(Vec::len).sum();
    // Room for the events and the largest trailer (one element per batch, plus one).
    let mut buffer = vec![0u8; (events + batches.len() + 1) * event_size];
    let mut encoder = MultiBatchEncoder::new(&mut buffer, event_size, batches.len());
    for batch in batches {
        let bytes: &[u8] = bytemuck::cast_slice(batch);
        encoder.writable()[..bytes.len()].copy_from_slice(bytes);
        encoder.push(batch.len());
    }
    let size = encoder.finish();
    buffer.truncate(size);
    RequestBody { operation, body: buffer }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::StateMachine;

    #[test]
    fn every_operation_is_generated_and_only_invalid_bodies_fail_validation() {
        let mut requests = Requests::new(7, 16, 5);
        let mut seen = Vec::new();
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..2_000 {
            let request = requests.generate();
            match StateMachine::input_valid(request.operation, &request.body, 64 * 1024) {
                Ok(()) => valid += 1,
                Err(_) => invalid += 1,
            }
            if !seen.contains(&request.operation) {
                seen.push(request.operation);
            }
        }
        assert_eq!(seen.len(), Operation::CLIENT.len(), "every client operation: {seen:?}");
        assert!(invalid > 40 && invalid < 200, "about 5% invalid: {invalid}");
        assert!(valid > 1_700);
    }
}
