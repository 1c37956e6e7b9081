//! The deterministic simulator in `cargo test`: a few hundred seeds of the real replica over a
//! simulated disk, network, clock and clients, checked against the reference model
//! (`docs/simulator.md`). A failure names its seed; `cargo run --release --bin simulator --
//! --seed N` re-runs it alone.

use std::panic::{catch_unwind, AssertUnwindSafe};

use ledger::testing::cluster::Cluster;
use ledger::testing::options::SimOptions;
use ledger::testing::{run_seed, RunReport};
use ledger::vsr::replica::InjectedBug;

/// How many seeds `cargo test` runs (the long mode is `simulator --duration-s`).
const SEED_COUNT: u64 = 240;

/// The first seed of the test run: far from the seeds of docs/simulator.md's offline runs, so
/// that CI explores seeds of its own.
const SEED_FIRST: u64 = 1_000_000;

/// Seeds that once failed, each with the bug it found (docs/simulator.md, "Bugs found").
const SEEDS_REGRESSION: [u64; 22] = [
    15,    // The model reported the expiries table full where the state machine reports history.
    844,   // The model counted history snapshots for posts/voids when no account keeps history.
    423,   // Same as 844.
    230,   // A torn superblock update rolled back to a checkpoint whose blocks were reused.
    421,   // Same as 230.
    468,   // Same as 230.
    969,   // Same as 230.
    975,   // Same as 230.
    120,   // Duplicated start_view_change votes were each answered by a broadcast: a message storm.
    89,    // A new primary abdicated at its first tick (its abdication deadline was unset, 0).
    227,   // A replica in a view change executed its own stale op: it applied the adopted log's
    381,   // commit point before truncating its log to the part the adopted one shares.
    540,   // Same as 227.
    642,   // The simulated client took the eviction of its old session's noise for its own.
    536,   // 2 of 4 replicas left further behind than a WAL by a replication quorum of 2.
    544,   // Same as 536.
    633,   // Same as 536.
    178,   // A crash armed before the quiet phase hit in its last ticks: a replica down at the end.
    12395, // A recovered replica's checkpoint op had a damaged header: it led with an empty log.
    13316, // A laggard adopting a start_view timed out right after it, view after view.
    13754, // 6 replicas: 200 ms view changes on a slow network churned through the quiet phase.
    12645, // 5 replicas: a recovered replica asked only its view's primary, which had synced past them, for old headers.
];

/// Seeds that once failed with a cluster size of their own (`--replica-count`).
const SEEDS_REGRESSION_SIZED: [(u64, u8); 16] = [
    (2785, 3),  // A backup stuck adopting its view's log from a source that no longer held it.
    (145, 3),   // A faulty clock and a replica stopped behind: no two clocks agreed to the end.
    (237, 3),   // Same as 145; then a peer's clock set right counted only once its window closed.
    (1867, 3),  // A replica recovering its head adopted a start_view from before its restart.
    (1891, 3),  // A replica recovering its head pushed its peers from view to view.
    (224, 3),   // A damaged WAL and a replica stopped behind: two faults (no damage after a stop).
    (7264, 3),  // The damage came before the stop: the run is beyond the fault model.
    (116, 6),   // A live primary deposed in the quiet phase: two heartbeats lost in a row.
    (90, 3),    // A synced replica's counts went back: the harness took its reopen for no restart.
    (9360, 3),  // Same as 90.
    (2064, 3),  // A replaced data file blanked by writes that were lost kept the old prepares.
    (5422, 3),  // Same as 2064.
    (6612, 3),  // Same as 2064.
    (2709, 3),  // A prepare whose newer write was lost, intact and chaining, replayed over its header.
    (7489, 3),  // Same as 2709.
    (20933, 3), // A synced primary-elect, headless at its checkpoint op, chose its own log: empty.
];

fn assert_passed(report: &RunReport) {
    if let Err(failure) = &report.result {
        panic!(
            "seed {} failed: {failure}\n  ({})\n  rerun: cargo run --release --bin simulator -- --seed {}",
            report.seed, report.configuration, report.seed
        );
    }
}

#[test]
fn many_seeds_pass_every_checker() {
    let (mut commits, mut crashes, mut replies, mut evictions) = (0, 0, 0, 0);
    let (mut view_changes, mut partitions, mut clocks_faulty) = (0, 0, 0);
    for seed in SEED_FIRST..SEED_FIRST + SEED_COUNT {
        let report = run_seed(seed);
        assert_passed(&report);
        commits += report.commits;
        crashes += report.crashes;
        replies += report.replies;
        evictions += report.evictions;
        view_changes += report.stats.view_changes;
        partitions += report.stats.partitions;
        clocks_faulty += SimOptions::of_seed(seed).clocks_faulty();
    }
    // The runs must exercise what they claim to: commits, crashes, replies, evictions, and in
    // the clusters (about half the seeds), view changes and partitions.
    assert!(commits > 100 * SEED_COUNT, "{commits} commits");
    assert!(view_changes > 10 * SEED_COUNT, "{view_changes} view changes");
    assert!(partitions > SEED_COUNT / 4, "{partitions} partitions");
    assert!(clocks_faulty > SEED_COUNT as usize / 20, "{clocks_faulty} faulty clocks");
    assert!(crashes > SEED_COUNT, "{crashes} crashes");
    assert!(replies > 100 * SEED_COUNT, "{replies} replies");
    assert!(evictions > SEED_COUNT, "{evictions} evictions");
}

#[test]
fn regression_seeds_pass() {
    for seed in SEEDS_REGRESSION {
        assert_passed(&run_seed(seed));
    }
    for (seed, replica_count) in SEEDS_REGRESSION_SIZED {
        assert_passed(&Cluster::new(SimOptions::of_seed_with(seed, replica_count)).run());
    }
}

#[test]
fn the_same_seed_gives_the_same_run_bit_for_bit() {
    for seed in [0, 7, SEED_FIRST + 3] {
        let (first, second) = (run_seed(seed), run_seed(seed));
        assert_eq!(first.trace_hash, second.trace_hash, "seed {seed}");
        assert_eq!(
            (first.commits, first.crashes, first.replies),
            (second.commits, second.crashes, second.replies)
        );
    }
    assert_ne!(run_seed(1).trace_hash, run_seed(2).trace_hash, "other seeds, other runs");
}

/// The checkers bite: with a known bug planted (a primary that commits on one acknowledgement
/// fewer than a replication quorum), seeds of 3-replica clusters fail, and quickly.
#[test]
fn an_injected_bug_is_caught_within_a_few_seeds() {
    let mut caught = 0;
    for seed in 0..20 {
        let mut options = SimOptions::of_seed_with(seed, 3);
        options.bug = Some(InjectedBug::CommitQuorumMinusOne);
        // A replica's own assertion may catch it first (it adopts a log without an op it
        // executed): a panic counts as caught too.
        let outcome = catch_unwind(AssertUnwindSafe(|| Cluster::new(options).run()));
        caught += u64::from(outcome.map_or(true, |report| report.result.is_err()));
    }
    assert!(caught >= 5, "only {caught} of 20 seeds caught the bug");
}

/// The nack quorum is load-bearing: a new primary that truncates an op it lacks on one nack
/// fewer than a nack quorum truncates committed ops, which the commits checker (or a replica's
/// own assertion that an adopted log holds every op it executed) catches.
#[test]
fn a_nack_quorum_one_short_is_caught_within_a_few_seeds() {
    let mut caught = 0;
    for seed in 0..20 {
        let mut options = SimOptions::of_seed_with(seed, 3);
        options.bug = Some(InjectedBug::NackQuorumMinusOne);
        let outcome = catch_unwind(AssertUnwindSafe(|| Cluster::new(options).run()));
        caught += u64::from(outcome.map_or(true, |report| report.result.is_err()));
    }
    assert!(caught >= 5, "only {caught} of 20 seeds caught the bug");
}

/// Storage faults: 200 seeds of 3-replica clusters in which one replica's WAL (headers and
/// prepares) and client replies are damaged at rest while it is down — bits flipped, sectors
/// zeroed, sectors overwritten by others — its reads fail or flip bits, and a block of its
/// checkpoint rots as the quiet phase begins (or is damaged while it is down, or its whole data
/// file is lost and replaced by `ledger recover`'s), pass every checker: the damaged replica
/// recovers its log and replies from its peers before it takes part in a view change, no
/// acknowledged op is lost, its scrubber finds the block and a peer's copy repairs it, a
/// replica behind the WAL or with a damaged checkpoint syncs and then equals the model, and at
/// the end every replica's WAL, replies and checkpoint blocks are intact.
#[test]
fn seeds_with_damaged_wals_pass_every_checker() {
    let (mut damages, mut recovering_heads, mut blocks_repaired) = (0, 0, 0);
    let (mut checkpoints_damaged, mut syncs, mut replaced, mut write_faults) = (0, 0, 0, 0);
    for seed in SEED_FIRST + 10_000..SEED_FIRST + 10_200 {
        let mut options = SimOptions::of_seed_with(seed, 3);
        options.wal_damage = 1 << (seed % 3);
        let report = Cluster::new(options).run();
        assert_passed(&report);
        damages += report.stats.wal_damages;
        recovering_heads += report.stats.recovering_heads;
        blocks_repaired += report.stats.blocks_repaired;
        checkpoints_damaged += report.stats.checkpoints_damaged;
        syncs += report.stats.syncs;
        replaced += report.stats.data_files_replaced;
        write_faults += report.stats.write_faults;
    }
    // The faults happened, and recoveries found them.
    assert!(damages > 1_000, "{damages} sectors damaged");
    assert!(recovering_heads > 200, "{recovering_heads} recoveries with a damaged WAL");
    assert!(blocks_repaired > 20, "{blocks_repaired} grid blocks repaired by scrubbers");
    // Restarts found their checkpoints damaged, and replicas synced (those, and laggards).
    assert!(checkpoints_damaged > 20, "{checkpoints_damaged} checkpoints damaged while down");
    assert!(syncs > 20, "{syncs} state syncs");
    assert!(replaced > 10, "{replaced} data files lost and recovered");
    assert!(write_faults > 500, "{write_faults} writes corrupted or misdirected as they were made");
}

/// A synced replica is checked against the model: one that records the checkpoint it installs
/// as the state after the next op is caught (by the state checker, or by its own assertions).
#[test]
fn a_sync_off_by_one_op_is_caught() {
    let mut caught = 0;
    for seed in SEED_FIRST + 10_000..SEED_FIRST + 10_100 {
        let mut options = SimOptions::of_seed_with(seed, 3);
        options.wal_damage = 1 << (seed % 3);
        options.bug = Some(InjectedBug::SyncOffByOne);
        let outcome = catch_unwind(AssertUnwindSafe(|| Cluster::new(options).run()));
        caught += u64::from(outcome.map_or(true, |report| report.result.is_err()));
    }
    assert!(caught >= 3, "only {caught} of 100 seeds caught the bug");
}

/// The damaged replica's abstention is load-bearing: one that trusts the head of a damaged log
/// (as if the damage were a torn write) and takes part in view changes at once loses or
/// rewrites committed ops in some seeds, which a replica's assertion or the checkers catch.
#[test]
fn a_replica_trusting_its_damaged_log_is_caught() {
    let mut caught = 0;
    for seed in 0..200 {
        let mut options = SimOptions::of_seed_with(seed, 3);
        options.wal_damage = 1 << (seed % 3);
        options.bug = Some(InjectedBug::DamageTrusted);
        let outcome = catch_unwind(AssertUnwindSafe(|| Cluster::new(options).run()));
        caught += u64::from(outcome.map_or(true, |report| report.result.is_err()));
    }
    assert!(caught >= 1, "no seed of 200 caught the bug");
}

/// The clocks checker bites: with primaries that stamp prepares with their own wall clock
/// instead of the cluster's time, the seeds whose faulty clock runs fast fail once that
/// replica is primary, naming the clocks checker.
#[test]
fn a_primary_ignoring_the_cluster_time_is_caught_by_the_clocks_checker() {
    let mut caught = 0;
    for seed in 0..30 {
        let mut options = SimOptions::of_seed_with(seed, 3);
        options.bug = Some(InjectedBug::ClockIgnored);
        let report = Cluster::new(options).run();
        if let Err(failure) = report.result {
            assert_eq!(failure.checker, "clocks", "seed {seed}: {failure}");
            caught += 1;
        }
    }
    assert!(caught >= 4, "only {caught} of 30 seeds caught the bug");
}
