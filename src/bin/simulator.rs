//! `simulator`: runs the deterministic simulator (`docs/simulator.md`) over seeds and reports
//! one line per seed and a closing tally; exits non-zero if any seed failed.

use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use ledger::testing::cluster::Cluster;
use ledger::testing::options::SimOptions;
use ledger::testing::RunReport;
use ledger::vsr::replica::InjectedBug;

/// Runs the real replica over a simulated disk, network, clock and clients, one seed per run,
/// and checks it against the reference model. The same seed always gives the same run and the
/// same trace hash; a failing seed prints the one command that re-runs it.
#[derive(Parser, Debug)]
#[command(name = "simulator", after_help = AFTER_HELP)]
#[command(group = clap::ArgGroup::new("mode").required(true).args(["seed", "seeds", "duration_s"]))]
struct Options {
    /// Run this one seed.
    #[arg(long, conflicts_with_all = ["seeds", "duration_s"])]
    seed: Option<u64>,
    /// Run the seeds A..B (B excluded), e.g. `--seeds 0..1000`.
    #[arg(long, value_parser = parse_range, conflicts_with = "duration_s")]
    seeds: Option<Range<u64>>,
    /// Run consecutive seeds (from --first-seed) until S seconds have passed.
    #[arg(long)]
    duration_s: Option<u64>,
    /// With --duration-s: the first seed.
    #[arg(long, default_value_t = 0, requires = "duration_s")]
    first_seed: u64,
    /// Run every seed with a cluster of N replicas (1 to 6) instead of the size the seed
    /// picks (half the seeds a cluster of one, the others 2 to 6).
    #[arg(long, value_parser = clap::value_parser!(u8).range(1..=6))]
    replica_count: Option<u8>,
    /// Plant a known bug in every replica, to see the checkers catch it (the seeds should
    /// fail): `commit-quorum-minus-one` commits an op on one acknowledgement fewer than a
    /// replication quorum (needs --replica-count 3 or more, where a quorum is 2 or more);
    /// `clock-ignored` has primaries stamp prepares with their own wall clock instead of the
    /// cluster's time (caught where a faulty clock runs fast: --replica-count 3 or more);
    /// `nack-quorum-minus-one` has a new primary truncate an op it lacks on one nack fewer than
    /// a nack quorum (--replica-count 3 or more); `damage-trusted` has a replica that found its
    /// WAL damaged trust the head of its log anyway (seeds with `wal_damage` above 0);
    /// `sync-off-by-one` has a syncing replica record the checkpoint it installs as the state
    /// after the next op (seeds with syncs).
    #[arg(long, value_parser = parse_bug)]
    inject_bug: Option<InjectedBug>,
}

fn parse_bug(text: &str) -> Result<InjectedBug, String> {
    match text {
        "commit-quorum-minus-one" => Ok(InjectedBug::CommitQuorumMinusOne),
        "clock-ignored" => Ok(InjectedBug::ClockIgnored),
        "nack-quorum-minus-one" => Ok(InjectedBug::NackQuorumMinusOne),
        "damage-trusted" => Ok(InjectedBug::DamageTrusted),
        "sync-off-by-one" => Ok(InjectedBug::SyncOffByOne),
        _ => Err(format!(
            "unknown bug {text:?}: the known ones are commit-quorum-minus-one, clock-ignored, \
             nack-quorum-minus-one, damage-trusted and sync-off-by-one"
        )),
    }
}

const AFTER_HELP: &str = "\
Each line: seed, configuration (replicas, clients, session slots, WAL slots, capacities, run
length, crash rate per thousand ticks, invalid-request percentage, loss and duplication of
packets between replicas and whether they reorder, how many replicas' wall clocks are faulty
(seconds to minutes off), and how the disk is driven: `staged=Nt` as
the server does, each write stage in flight for up to N ticks, or `commit=P%` waiting for every
write), ops committed (summed over replicas), view changes (and the newest view), ops of chosen
logs truncated on a nack quorum, crashes (of which during recovery), replies
checked against the model, retries answered from the session, evictions, pulses committed,
write stages completed (journal/grid/replies) and commits that waited for one (staged runs),
messages between replicas sent/lost/acted on/ignored, replica ticks that knew the cluster's
time, trace hash, wall time, result. A failure
also prints the checker's message and the command that re-runs the seed.
Exit status: 0 if every seed passed, 1 otherwise.

Examples:
  cargo run --release --bin simulator -- --seed 42
  cargo run --release --bin simulator -- --seeds 0..1000
  cargo run --release --bin simulator -- --seeds 0..100 --replica-count 3
  cargo run --release --bin simulator -- --duration-s 600 --first-seed 100000";

fn parse_range(text: &str) -> Result<Range<u64>, String> {
    let (start, end) = text.split_once("..").ok_or("expected A..B, e.g. 0..1000")?;
    let start: u64 = start.parse().map_err(|error| format!("seed {start:?}: {error}"))?;
    let end: u64 = end.parse().map_err(|error| format!("seed {end:?}: {error}"))?;
    if start >= end {
        return Err(format!("empty range {start}..{end}"));
    }
    Ok(start..end)
}

/// Runs one seed (with `replica_count` replicas, if given); a panic (an assertion in the
/// replica or the harness) is a failure too.
fn run(seed: u64, replica_count: Option<u8>, bug: Option<InjectedBug>) -> (bool, String) {
    let started = Instant::now();
    let mut options = match replica_count {
        Some(count) => SimOptions::of_seed_with(seed, count),
        None => SimOptions::of_seed(seed),
    };
    options.bug = bug;
    let outcome = catch_unwind(AssertUnwindSafe(|| Cluster::new(options).run()));
    let elapsed_ms = started.elapsed().as_millis();
    match outcome {
        Ok(report) => line(&report, elapsed_ms, replica_count),
        Err(panic) => {
            let message = panic
                .downcast_ref::<String>()
                .cloned()
                .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                .unwrap_or_else(|| "(no message)".to_string());
            (false, format!("seed={seed} FAILED: panic: {message}\n  rerun: {}", rerun(seed, replica_count)))
        }
    }
}

fn line(report: &RunReport, elapsed_ms: u128, replica_count: Option<u8>) -> (bool, String) {
    let stats = &report.stats;
    let summary = format!(
        "seed={} {} commits={} view_changes={} (view {}) nacked={} crashes={} (in recovery {}) syncs={} partitions={} wal_damages={} checkpoints_damaged={} superblocks_damaged={} replaced={} read_faults={} write_faults={} recovering_heads={} replies_restored={} blocks={}/{} replies={} \
         resent={} evictions={} pulses={} stages={}/{}/{} waits={} peer={}/{}/{}/{} synced={} trace={:016x} time={}ms",
        report.seed,
        report.configuration,
        report.commits,
        stats.view_changes,
        stats.view_max,
        stats.nack_truncations,
        report.crashes,
        report.stats.recovery_crashes,
        stats.syncs,
        stats.partitions,
        stats.wal_damages,
        stats.checkpoints_damaged,
        stats.superblocks_damaged,
        stats.data_files_replaced,
        stats.read_faults,
        stats.write_faults,
        stats.recovering_heads,
        stats.replies_restored,
        stats.blocks_damaged,
        stats.blocks_repaired,
        report.replies,
        report.stats.replies_resent,
        report.evictions,
        report.stats.pulses,
        report.stats.stages[0],
        report.stats.stages[1],
        report.stats.stages[2],
        report.stats.commit_waits,
        stats.peer_sent,
        stats.peer_lost,
        stats.peer_handled,
        stats.peer_ignored,
        stats.clock_synchronized_ticks,
        report.trace_hash,
        elapsed_ms
    );
    match &report.result {
        Ok(()) => (true, format!("{summary} ok")),
        Err(failure) => {
            (false, format!("{summary} FAILED\n  {failure}\n  rerun: {}", rerun(report.seed, replica_count)))
        }
    }
}

fn rerun(seed: u64, replica_count: Option<u8>) -> String {
    match replica_count {
        Some(count) => {
            format!("cargo run --release --bin simulator -- --seed {seed} --replica-count {count}")
        }
        None => format!("cargo run --release --bin simulator -- --seed {seed}"),
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    // Panics are reported on the seed's line; the default hook would print them twice.
    if std::env::var_os("SIMULATOR_PANIC_HOOK").is_none() {
        std::panic::set_hook(Box::new(|_| {}));
    }
    let (mut passed, mut failed) = (0u64, 0u64);
    let mut tally = |seed: u64| {
        let (ok, text) = run(seed, options.replica_count, options.inject_bug);
        println!("{text}");
        if ok {
            passed += 1;
        } else {
            failed += 1;
        }
    };
    let started = Instant::now();
    if let Some(duration_s) = options.duration_s {
        let deadline = Duration::from_secs(duration_s);
        let mut seed = options.first_seed;
        while started.elapsed() < deadline {
            tally(seed);
            seed = seed.wrapping_add(1);
        }
    } else {
        // clap requires one of --seed, --seeds and --duration-s.
        let seeds = match (options.seed, options.seeds) {
            (Some(seed), _) => seed..seed.saturating_add(1),
            (None, Some(seeds)) => seeds,
            (None, None) => unreachable!("clap requires a mode"),
        };
        for seed in seeds {
            tally(seed);
        }
    }
    println!("{passed} passed, {failed} failed ({:.1}s)", started.elapsed().as_secs_f64());
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
