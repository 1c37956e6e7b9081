//! One run's configuration, drawn from its seed ("swarm testing": every seed also picks its
//! own sizes and fault rates, so that rare combinations come up across seeds).

use super::client::ClientOptions;
use super::network::NetworkOptions;
use super::time::ClockSkew;
use crate::prng::Prng;
use crate::state_machine::Config;
use crate::storage::SimLatency;
use crate::vsr::data_file::FormatOptions;
use crate::vsr::quorums::Quorums;
use crate::vsr::replica::InjectedBug;

/// The cluster id of every simulated cluster.
pub const CLUSTER: u128 = 0x5111_u128;

/// The WAL sizes a run picks from: the smallest wraps the WAL and checkpoints every few ops.
const JOURNAL_SLOT_COUNTS: [u64; 4] = [8, 16, 32, 64];

/// The most clients of a run.
const CLIENT_COUNT_MAX: u64 = 6;

/// The most client sessions of a run's data file: fewer than clients, often, so that sessions
/// are evicted.
const CLIENTS_MAX_MAX: u64 = 4;

/// Every run's message size limit: room for the largest simulated request.
const MESSAGE_SIZE_MAX: u64 = 16 * 1024;

/// The block size of every run's grid (the smallest: more blocks per checkpoint).
const BLOCK_SIZE: u64 = 4096;

/// Ticks of the run with faults (then a quiet phase of [`SimOptions::ticks_quiet`]).
const TICKS_MIN: u64 = 2_000;
const TICKS_MAX: u64 = 6_000;

/// The most ticks a write stage of a staged run stays in flight.
const STAGE_LATENCY_TICKS_MAX: u64 = 4;

/// The most crashes armed per thousand ticks.
const CRASH_PER_MILLE_MAX: u64 = 12;

/// The cluster sizes a run picks from when it is not a cluster of one (half the runs are).
const REPLICA_COUNTS: [u8; 5] = [2, 3, 4, 5, 6];

/// The WAL sizes of a cluster of more than one: a backup that is down falls behind, and without
/// state sync it must still find the ops it lacks in its peers' WALs when it is back.
const JOURNAL_SLOT_COUNTS_CLUSTER: [u64; 2] = [32, 64];

/// The quiet phase of a cluster of more than one.
const TICKS_QUIET_CLUSTER: u64 = 1_000;

/// The most packets between replicas lost, and duplicated, in percent.
const LOSS_PERCENT_MAX: u64 = 10;

/// The most partitions per thousand ticks.
const PARTITION_PER_MILLE_MAX: u64 = 4;

/// The longest a partition lasts, in ticks.
pub const PARTITION_TICKS_MAX: u64 = 150;
const DUPLICATE_PERCENT_MAX: u64 = 5;

/// The largest offset of a good wall clock from true time (NTP keeps real ones closer).
pub const CLOCK_OFFSET_GOOD_NS_MAX: u64 = 50_000_000;

/// The fastest drift of a wall clock, in ns per second (100 ppm, a poor crystal).
const CLOCK_DRIFT_PPB_MAX: u64 = 100_000;

/// The range of a faulty wall clock's offset, either way: from within the cluster's tolerance
/// (the cluster corrects it) to far beyond it.
const CLOCK_OFFSET_FAULTY_NS_MIN: u64 = 5 * crate::constants::NS_PER_S;
const CLOCK_OFFSET_FAULTY_NS_MAX: u64 = 120 * crate::constants::NS_PER_S;

/// Everything one run depends on besides the seed's generator itself.
#[derive(Clone, Debug)]
pub struct SimOptions {
    /// The seed.
    pub seed: u64,
    /// Replicas of the cluster (`format.replica_count`; each replica's `format.replica` is its
    /// index).
    pub replica_count: u8,
    /// How many clients.
    pub client_count: usize,
    /// The data file.
    pub format: FormatOptions,
    /// How the clients behave.
    pub client: ClientOptions,
    /// The network's delays.
    pub network: NetworkOptions,
    /// The disk's latency and completion order.
    pub latency: SimLatency,
    /// Ticks with crashes.
    pub ticks: u64,
    /// Ticks without crashes at the end, for the clients to finish.
    pub ticks_quiet: u64,
    /// Chance per thousand ticks that a crash is armed (it hits at one of the next I/Os).
    pub crash_per_mille: u64,
    /// Percent chance per tick that the replica commits what is queued (less than 100, so that
    /// groups of several requests form too; single-request groups stay common).
    pub commit_percent: u64,
    /// Percent of requests with an invalid body.
    pub invalid_percent: u64,
    /// Account ids are `1..=account_id_max`.
    pub account_id_max: u64,
    /// How the replica's writes are carried out: `Some(n)` as the server does, each write
    /// stage in flight for 0 to `n` ticks while the replica goes on ([`Node::step`]); `None`
    /// waiting for each ([`Node::commit`]).
    ///
    /// [`Node::step`]: super::node::Node::step
    /// [`Node::commit`]: super::node::Node::commit
    pub stage_latency_ticks_max: Option<u64>,
    /// Chance per thousand ticks (of the safety phase) that a partition of the replicas
    /// begins, if none is in force: symmetric (two groups) or asymmetric (one way); it lasts
    /// up to [`PARTITION_TICKS_MAX`] ticks. Clusters only.
    pub partition_per_mille: u64,
    /// Each replica's wall clock: good ones within [`CLOCK_OFFSET_GOOD_NS_MAX`] of true time,
    /// and in some clusters of three or more a minority of faulty ones, seconds to minutes
    /// off. A cluster of one reads true time.
    pub clock_skews: Vec<ClockSkew>,
    /// A known bug planted in every replica (never drawn from the seed: `simulator
    /// --inject-bug` sets it, to show the checkers catch it).
    pub bug: Option<InjectedBug>,
    /// The fault atlas of the WALs: one bit per replica whose WAL may be damaged while it is
    /// down ([`wal_damage`]). At most as many replicas as a view-change quorum can do without,
    /// so that the others always hold an intact copy of every committed op between them.
    pub wal_damage: u8,
}

impl SimOptions {
    /// The configuration of `seed`, its cluster size drawn from the seed too (half the runs
    /// are a cluster of one).
    pub fn of_seed(seed: u64) -> SimOptions {
        let mut prng = Prng::new(seed ^ 0x05EE_D0F0);
        let replica_count = if prng.chance(1, 2) { 1 } else { *prng.pick(&REPLICA_COUNTS) };
        SimOptions::of_seed_with(seed, replica_count)
    }

    /// The configuration of `seed` with `replica_count` replicas.
    pub fn of_seed_with(seed: u64, replica_count: u8) -> SimOptions {
        assert!((1..=crate::constants::REPLICAS_MAX).contains(&replica_count));
        let mut prng = Prng::new(seed ^ 0x0F71_0115);
        let accounts_max = prng.range_inclusive(4, 64) as u32;
        let transfers_max = prng.range_inclusive(16, 1024) as u32;
        let config = Config {
            accounts_max,
            transfers_max,
            expiries_max: prng.range_inclusive(2, u64::from(transfers_max).min(64)) as u32,
            history_max: prng.range_inclusive(4, 128) as u32,
        };
        let format = FormatOptions {
            cluster: CLUSTER,
            replica: 0,
            replica_count: 1,
            journal_slot_count: *prng.pick(&JOURNAL_SLOT_COUNTS),
            message_size_max: MESSAGE_SIZE_MAX,
            clients_max: prng.range_inclusive(1, CLIENTS_MAX_MAX),
            block_size: BLOCK_SIZE,
            config,
        };
        let delay_ticks_max = prng.range_inclusive(1, 8);
        let write_ns_max = prng.range_inclusive(10_000, 2_000_000);
        let mut options = SimOptions {
            seed,
            replica_count,
            client_count: prng.range_inclusive(1, CLIENT_COUNT_MAX) as usize,
            format,
            client: ClientOptions {
                request_percent: prng.range_inclusive(10, 90),
                noise_percent: prng.range_inclusive(0, 10),
                retry_ticks_min: 2 * delay_ticks_max + 2,
                retry_ticks_max: 2 * delay_ticks_max + 2 + prng.range_inclusive(0, 40),
            },
            network: NetworkOptions {
                delay_ticks_min: 1,
                delay_ticks_max,
                loss_percent: 0,
                duplicate_percent: 0,
                reorder: false,
            },
            latency: SimLatency {
                read_ns_min: 20_000,
                read_ns_max: 200_000,
                write_ns_min: 10_000,
                write_ns_max,
                sync_ns_min: 50_000,
                sync_ns_max: 1_000_000,
                writes_reordered: prng.chance(3, 4),
            },
            ticks: prng.range_inclusive(TICKS_MIN, TICKS_MAX),
            ticks_quiet: 200,
            crash_per_mille: prng.range_inclusive(0, CRASH_PER_MILLE_MAX),
            commit_percent: prng.range_inclusive(30, 95),
            invalid_percent: prng.range_inclusive(0, 3),
            account_id_max: u64::from(accounts_max) + prng.range_inclusive(1, 8),
            // Drawn last, so that every other option of a seed is what it was before staged
            // runs existed.
            stage_latency_ticks_max: prng
                .chance(3, 4)
                .then(|| prng.range_inclusive(0, STAGE_LATENCY_TICKS_MAX)),
            partition_per_mille: 0,
            clock_skews: vec![ClockSkew::default(); usize::from(replica_count)],
            bug: None,
            wal_damage: 0,
        };
        if replica_count > 1 {
            // Drawn after everything else, so that a cluster of one is configured as it was
            // before clusters existed. A cluster runs its stages as the server does (it cannot
            // wait for the disk: its commits wait for its peers).
            options.format.replica_count = replica_count;
            options.format.journal_slot_count = *prng.pick(&JOURNAL_SLOT_COUNTS_CLUSTER);
            options.stage_latency_ticks_max = Some(prng.range_inclusive(0, STAGE_LATENCY_TICKS_MAX));
            options.network.loss_percent = prng.range_inclusive(0, LOSS_PERCENT_MAX);
            options.network.duplicate_percent = prng.range_inclusive(0, DUPLICATE_PERCENT_MAX);
            options.network.reorder = prng.chance(1, 2);
            // Time for a backup back from a crash to repair what it missed.
            options.ticks_quiet = TICKS_QUIET_CLUSTER;
            options.partition_per_mille = prng.range_inclusive(0, PARTITION_PER_MILLE_MAX);
            options.clock_skews = clock_skews(&mut prng, replica_count);
            options.wal_damage = wal_damage(&mut prng, replica_count);
        }
        options
    }

    /// How many replicas' wall clocks are faulty.
    pub fn clocks_faulty(&self) -> usize {
        self.clock_skews
            .iter()
            .filter(|skew| skew.offset_ns.unsigned_abs() > CLOCK_OFFSET_GOOD_NS_MAX)
            .count()
    }

    /// The configuration in one line, for the runner's output.
    pub fn describe(&self) -> String {
        let config = &self.format.config;
        format!(
            "replicas={} clients={} clients_max={} slots={} accounts={} transfers={} expiries={} history={} \
             ticks={} crash={}‰ partition={}‰ invalid={}% loss={}% dup={}%{} clocks_faulty={} wal_damage={} {}",
            self.replica_count,
            self.client_count,
            self.format.clients_max,
            self.format.journal_slot_count,
            config.accounts_max,
            config.transfers_max,
            config.expiries_max,
            config.history_max,
            self.ticks,
            self.crash_per_mille,
            self.partition_per_mille,
            self.invalid_percent,
            self.network.loss_percent,
            self.network.duplicate_percent,
            if self.network.reorder { " reorder" } else { "" },
            self.clocks_faulty(),
            self.wal_damage.count_ones(),
            match self.stage_latency_ticks_max {
                Some(ticks) => format!("staged={ticks}t"),
                None => format!("commit={}%", self.commit_percent),
            },
        )
    }
}

/// The replicas whose WALs may be damaged while they are down (a bit each): none, or in half
/// the clusters of three or more, up to as many as a view-change quorum leaves out. A
/// replica that finds its WAL damaged takes no part in view changes until it has repaired its
/// log, so the others must still be able to form one (and they hold every committed op).
fn wal_damage(prng: &mut Prng, replica_count: u8) -> u8 {
    let damaged_max = replica_count - Quorums::of(replica_count).view_change;
    if damaged_max == 0 || !prng.chance(1, 2) {
        return 0;
    }
    let mut mask = 0;
    for _ in 0..prng.range_inclusive(1, u64::from(damaged_max)) {
        // The same replica may be drawn twice: then fewer are damaged.
        mask |= 1 << prng.below(u64::from(replica_count));
    }
    mask
}

/// The wall clocks of a cluster of `replica_count`: every one good, or in half the clusters of
/// three or more, a minority of them faulty (fewer than the good ones, so that the good ones
/// always outvote them: Marzullo's algorithm finds the agreement of the most sources).
fn clock_skews(prng: &mut Prng, replica_count: u8) -> Vec<ClockSkew> {
    let signed = |prng: &mut Prng, magnitude: u64| {
        if prng.chance(1, 2) {
            magnitude as i64
        } else {
            -(magnitude as i64)
        }
    };
    let mut skews: Vec<ClockSkew> = (0..replica_count)
        .map(|_| {
            let offset = prng.below(CLOCK_OFFSET_GOOD_NS_MAX + 1);
            let drift = prng.below(CLOCK_DRIFT_PPB_MAX + 1);
            ClockSkew { offset_ns: signed(prng, offset), drift_ppb: signed(prng, drift) }
        })
        .collect();
    let faulty_max = u64::from(replica_count.saturating_sub(1) / 2);
    if faulty_max > 0 && prng.chance(1, 2) {
        for _ in 0..prng.range_inclusive(1, faulty_max) {
            // The same replica may be drawn twice: then fewer are faulty.
            let replica = prng.below(u64::from(replica_count)) as usize;
            let magnitude = prng.range_inclusive(CLOCK_OFFSET_FAULTY_NS_MIN, CLOCK_OFFSET_FAULTY_NS_MAX);
            skews[replica].offset_ns = signed(prng, magnitude);
        }
    }
    skews
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_seed_gives_valid_format_options_and_the_same_seed_the_same_ones() {
        for seed in 0..200 {
            let options = SimOptions::of_seed(seed);
            // `ledger format` refuses clusters still (the server serves one replica); the rest
            // of a cluster's options must be valid.
            let format = FormatOptions { replica_count: 1, ..options.format };
            assert!(format.validate().is_ok(), "seed {seed}: {:?}", options.format);
            assert_eq!(options.describe(), SimOptions::of_seed(seed).describe());
            assert_eq!(options.format.replica_count, options.replica_count);
            assert!(options.replica_count == 1 || options.stage_latency_ticks_max.is_some());
            // Faulty clocks are a minority the good ones outvote; a cluster of one has none.
            let faulty = options.clocks_faulty();
            assert!(2 * faulty < usize::from(options.replica_count), "seed {seed}: {faulty} faulty clocks");
            assert_eq!(options.clock_skews.len(), usize::from(options.replica_count));
        }
        let counts: std::collections::BTreeSet<u8> =
            (0..200).map(|seed| SimOptions::of_seed(seed).replica_count).collect();
        assert_eq!(counts.into_iter().collect::<Vec<_>>(), [1, 2, 3, 4, 5, 6], "every cluster size comes up");
    }
}
