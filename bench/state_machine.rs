//! The state machine alone: full 8,189-transfer batches over 10k and 1M accounts, uniform and
//! Zipf-like, with 10M transfers already stored; lookups; account and transfer queries.
//!
//! `cargo bench --bench state_machine`. Set `LEDGER_BENCH_TRANSFERS_STORED` to change the
//! 10M pre-stored transfers (e.g. 1000000 for a quick run).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledger::constants::BATCH_EVENTS_MAX;
use ledger::state_machine::{Config, StateMachine};
use ledger::types::{Account, AccountFilter, AccountFilterFlags, CreateResult, QueryFilter, Transfer};
use ledger::workload::{AccountDistribution, Workload};

/// Room for the transfers criterion creates while measuring, beyond the pre-stored ones.
const TRANSFERS_MEASURED_MAX: u64 = 24_000_000;

struct Setup {
    state: StateMachine,
    timestamp: u64,
    account_count: u64,
    transfer_ids: Vec<u128>,
}

fn transfers_stored() -> u64 {
    std::env::var("LEDGER_BENCH_TRANSFERS_STORED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000_000)
}

/// A ledger with `account_count` accounts and `transfers_stored()` uniform transfers.
fn setup(account_count: u64) -> Setup {
    let stored = transfers_stored();
    let mut state = StateMachine::new(Config {
        accounts_max: account_count as u32,
        transfers_max: (stored + TRANSFERS_MEASURED_MAX) as u32,
        expiries_max: 1024,
        history_max: 1024,
    });
    state.prefault();
    let mut workload = Workload::new(1, account_count, 1, AccountDistribution::Uniform);
    let mut timestamp = 1_000_000_000u64;
    let mut results = vec![CreateResult::default(); BATCH_EVENTS_MAX];
    let accounts: Vec<Account> = (0..account_count).map(|index| workload.account(index)).collect();
    for chunk in accounts.chunks(BATCH_EVENTS_MAX) {
        timestamp += chunk.len() as u64;
        state.create_accounts(timestamp, chunk, &mut results[..chunk.len()]).expect("capacity");
    }
    let mut transfer_ids = Vec::with_capacity(stored as usize);
    let mut batch = Vec::with_capacity(BATCH_EVENTS_MAX);
    let mut remaining = stored;
    while remaining > 0 {
        let count = remaining.min(BATCH_EVENTS_MAX as u64) as usize;
        batch.clear();
        batch.extend((0..count).map(|_| workload.transfer(0)));
        transfer_ids.extend(batch.iter().map(|transfer| transfer.id));
        timestamp += count as u64;
        state.create_transfers(timestamp, &batch, &mut results[..count]).expect("capacity");
        remaining -= count as u64;
    }
    Setup { state, timestamp, account_count, transfer_ids }
}

fn create_transfers(c: &mut Criterion) {
    let mut group = c.benchmark_group("create_transfers");
    group.throughput(Throughput::Elements(BATCH_EVENTS_MAX as u64));
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    for account_count in [10_000u64, 1_000_000] {
        let mut setup = setup(account_count);
        for (seed, distribution) in [(2, AccountDistribution::Uniform), (3, AccountDistribution::Zipf)] {
            let mut workload = Workload::new(seed, setup.account_count, 1, distribution);
            let mut results = vec![CreateResult::default(); BATCH_EVENTS_MAX];
            let id = BenchmarkId::new(format!("{distribution:?}").to_lowercase(), account_count);
            group.bench_function(id, |b| {
                b.iter_custom(|iterations| {
                    let mut elapsed = Duration::ZERO;
                    for _ in 0..iterations {
                        let batch: Vec<Transfer> =
                            (0..BATCH_EVENTS_MAX).map(|_| workload.transfer(0)).collect();
                        setup.timestamp += BATCH_EVENTS_MAX as u64;
                        let start = Instant::now();
                        let outcome = setup.state.create_transfers(setup.timestamp, &batch, &mut results);
                        elapsed += start.elapsed();
                        outcome.expect("raise TRANSFERS_MEASURED_MAX: the transfer table is full");
                        assert!(results.iter().all(|result| result.status == u32::MAX));
                    }
                    elapsed
                });
            });
        }
        reads(&mut group, &setup);
    }
    group.finish();
}

/// Lookups and queries against the same ledger (throughput in results per batch).
fn reads(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, setup: &Setup) {
    let accounts = setup.account_count;
    let mut workload = Workload::new(4, accounts, 1, AccountDistribution::Uniform);
    let stored = &setup.transfer_ids;
    let transfer_ids: Vec<u128> =
        (0..BATCH_EVENTS_MAX).map(|index| stored[(index * 7919) % stored.len()]).collect();
    let account_ids: Vec<u128> =
        (0..BATCH_EVENTS_MAX).map(|_| 1 + u128::from(workload.account_index())).collect();
    let mut transfers = vec![Transfer::default(); BATCH_EVENTS_MAX];
    let mut account_results = vec![Account::default(); BATCH_EVENTS_MAX];
    group.bench_function(BenchmarkId::new("lookup_transfers", accounts), |b| {
        b.iter(|| assert_eq!(setup.state.lookup_transfers(&transfer_ids, &mut transfers), BATCH_EVENTS_MAX))
    });
    group.bench_function(BenchmarkId::new("lookup_accounts", accounts), |b| {
        b.iter(|| {
            assert_eq!(setup.state.lookup_accounts(&account_ids, &mut account_results), BATCH_EVENTS_MAX)
        })
    });
    let filter = AccountFilter {
        account_id: 1,
        limit: BATCH_EVENTS_MAX as u32,
        flags: AccountFilterFlags::DEBITS
            .with(AccountFilterFlags::CREDITS)
            .with(AccountFilterFlags::REVERSED),
        ..AccountFilter::default()
    };
    group.bench_function(BenchmarkId::new("get_account_transfers", accounts), |b| {
        b.iter(|| setup.state.get_account_transfers(&filter, &mut transfers))
    });
    let query = QueryFilter { ledger: 1, code: 1, limit: BATCH_EVENTS_MAX as u32, ..QueryFilter::default() };
    group.bench_function(BenchmarkId::new("query_transfers", accounts), |b| {
        b.iter(|| assert_eq!(setup.state.query_transfers(&query, &mut transfers), BATCH_EVENTS_MAX))
    });
}

criterion_group!(benches, create_transfers);
criterion_main!(benches);
