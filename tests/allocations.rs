//! Executing batches allocates nothing: every table and buffer is sized at start-up. A counting
//! global allocator watches the executing thread while a steady-state workload runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use ledger::constants::{BATCH_EVENTS_MAX, MESSAGE_BODY_SIZE_MAX, TIMESTAMP_MAX};
use ledger::multi_batch::MultiBatchEncoder;
use ledger::operation::Operation;
use ledger::state_machine::{Config, StateMachine};
use ledger::types::{
    Account, AccountFilter, AccountFilterFlags, AccountFlags, QueryFilter, Transfer, TransferFlags,
};

struct CountingAllocator;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|count| count.set(count.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.dealloc(pointer, layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, size: usize) -> *mut u8 {
        if COUNTING.with(Cell::get) {
            ALLOCATIONS.with(|count| count.set(count.get() + 1));
        }
        // SAFETY: forwarded unchanged to the system allocator.
        unsafe { System.realloc(pointer, layout, size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Counts the allocations `f` makes on this thread.
fn allocations_of(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|count| count.set(0));
    COUNTING.with(|counting| counting.set(true));
    f();
    COUNTING.with(|counting| counting.set(false));
    ALLOCATIONS.with(Cell::get)
}

/// A 16-byte-aligned message body buffer.
fn body_buffer() -> Vec<u128> {
    vec![0u128; MESSAGE_BODY_SIZE_MAX / 16]
}

/// Encodes `events` as a single-batch body into `buffer`; returns the body size.
fn encode<T: bytemuck::Pod>(buffer: &mut [u128], events: &[T]) -> usize {
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(buffer);
    let size = core::mem::size_of::<T>();
    let mut encoder = MultiBatchEncoder::new(bytes, size.max(16), 1);
    encoder.writable()[..std::mem::size_of_val(events)].copy_from_slice(bytemuck::cast_slice(events));
    encoder.push(events.len());
    encoder.finish()
}

#[test]
fn executing_batches_in_steady_state_allocates_nothing() {
    let accounts_count = 1000u128;
    let mut state = StateMachine::new(Config {
        accounts_max: 2000,
        transfers_max: 200_000,
        expiries_max: 200_000,
        history_max: 200_000,
    });
    let mut body = body_buffer();
    let mut reply = body_buffer();
    let mut timestamp = 1_000_000_000u64;

    let accounts: Vec<Account> = (1..=accounts_count)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            flags: if id % 10 == 0 { AccountFlags::HISTORY } else { AccountFlags::default() },
            ..Account::default()
        })
        .collect();
    let size = encode(&mut body, &accounts);
    timestamp += accounts.len() as u64;
    let reply_bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut reply);
    let body_bytes: &[u8] = bytemuck::cast_slice(&body);
    state.execute(Operation::CreateAccounts, timestamp, &body_bytes[..size], reply_bytes).unwrap();

    let mut next_id = 1u128;
    let mut batch = |state: &mut StateMachine, timestamp: &mut u64| {
        // Every kind of event: single-phase, pending with timeouts, posts, voids, linked chains
        // that roll back, failures that burn ids, lookups, queries and expiry.
        let mut transfers = Vec::with_capacity(BATCH_EVENTS_MAX);
        for index in 0..BATCH_EVENTS_MAX as u128 {
            let id = next_id + index;
            let kind = index % 8;
            let mut transfer = Transfer {
                id,
                debit_account_id: 1 + (id * 7) % accounts_count,
                credit_account_id: 1 + (id * 13 + 1) % accounts_count,
                amount: 10,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            };
            if transfer.debit_account_id == transfer.credit_account_id {
                transfer.credit_account_id = 1 + transfer.credit_account_id % accounts_count;
            }
            match kind {
                1 => {
                    transfer.flags = TransferFlags::PENDING;
                    transfer.timeout = 1;
                }
                2 => {
                    transfer = Transfer {
                        id,
                        pending_id: id - 1,
                        amount: u128::MAX,
                        flags: TransferFlags::POST_PENDING_TRANSFER,
                        ..Transfer::default()
                    };
                }
                3 => transfer.flags = TransferFlags::LINKED,
                4 => transfer.debit_account_id = accounts_count + 100, // Not found: burns the id.
                _ => {}
            }
            transfers.push(transfer);
        }
        next_id += BATCH_EVENTS_MAX as u128;
        let ids: Vec<u128> = transfers.iter().map(|transfer| transfer.id).collect();
        let mut transfers_body = body_buffer();
        let transfers_size = encode(&mut transfers_body, &transfers);
        let mut ids_body = body_buffer();
        let ids_size = encode(&mut ids_body, &ids);
        let filter = AccountFilter {
            account_id: 10,
            limit: 100,
            flags: AccountFilterFlags::DEBITS.with(AccountFilterFlags::CREDITS),
            ..AccountFilter::default()
        };
        let mut filter_body = body_buffer();
        let filter_size = encode(&mut filter_body, &[filter]);
        let query = QueryFilter { ledger: 1, limit: 8189, ..QueryFilter::default() };
        let mut query_body = body_buffer();
        let query_size = encode(&mut query_body, &[query]);
        let mut reply = body_buffer();

        allocations_of(|| {
            let reply: &mut [u8] = bytemuck::cast_slice_mut(&mut reply);
            *timestamp += BATCH_EVENTS_MAX as u64;
            let body: &[u8] = bytemuck::cast_slice(&transfers_body);
            state.execute(Operation::CreateTransfers, *timestamp, &body[..transfers_size], reply).unwrap();
            let body: &[u8] = bytemuck::cast_slice(&ids_body);
            state.execute(Operation::LookupTransfers, *timestamp, &body[..ids_size], reply).unwrap();
            let body: &[u8] = bytemuck::cast_slice(&filter_body);
            state.execute(Operation::GetAccountTransfers, *timestamp, &body[..filter_size], reply).unwrap();
            state.execute(Operation::GetAccountBalances, *timestamp, &body[..filter_size], reply).unwrap();
            let body: &[u8] = bytemuck::cast_slice(&query_body);
            state.execute(Operation::QueryTransfers, *timestamp, &body[..query_size], reply).unwrap();
            *timestamp += 2_000_000_000;
            assert!(*timestamp < TIMESTAMP_MAX);
            state.execute(Operation::Pulse, *timestamp, &[], reply).unwrap();
        })
    };
    // The counter itself works: an allocation on this thread is seen.
    assert_eq!(allocations_of(|| drop(std::hint::black_box(vec![1u8; 64]))), 1);
    // Warm up once, then every further batch must allocate nothing.
    batch(&mut state, &mut timestamp);
    for round in 0..5 {
        let allocations = batch(&mut state, &mut timestamp);
        assert_eq!(allocations, 0, "round {round} allocated {allocations} times");
    }
    assert!(state.transfers().len() > 3 * BATCH_EVENTS_MAX, "{} transfers", state.transfers().len());
    let _ = reply_bytes;
}
