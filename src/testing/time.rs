//! Simulated time: a monotonic tick counter and the cluster clock derived from it.
//!
//! The replica never reads a clock; it is handed a `vsr::time::Time`. Here its monotonic
//! reading is the simulated time elapsed (one [`TICK_NS`] per tick and whatever the simulated
//! disk spent in I/O) and `realtime` a seed-derived epoch plus that. So pending transfers' timeouts (whole seconds)
//! really expire after enough ticks, and the pulses that expire them come from the replica's own
//! `on_tick`, as in production.

use crate::constants::NS_PER_S;
use crate::prng::Prng;
use crate::vsr::time::Time;

/// Simulated time per tick (the server's loop ticks every 10 ms too).
pub const TICK_NS: u64 = 10_000_000;

/// The earliest epoch a run starts at: 2020-01-01, so timestamps look like real ones.
const EPOCH_NS_MIN: u64 = 1_577_836_800 * NS_PER_S;

/// The spread of epochs across seeds: about ten years.
const EPOCH_NS_SPREAD: u64 = 10 * 365 * 24 * 3600 * NS_PER_S;

/// The simulated clock of one run.
#[derive(Clone, Debug)]
pub struct SimTime {
    tick: u64,
    /// Simulated ns since the run began: ticks and I/O time.
    elapsed_ns: u64,
    epoch_ns: u64,
}

impl SimTime {
    /// A clock whose epoch is drawn from `prng`.
    pub fn new(prng: &mut Prng) -> SimTime {
        SimTime { tick: 0, elapsed_ns: 0, epoch_ns: EPOCH_NS_MIN + prng.below(EPOCH_NS_SPREAD) }
    }

    /// The current tick (monotonic, from 0).
    pub fn tick(&self) -> u64 {
        self.tick
    }

    /// The cluster clock, ns since the Unix epoch; never goes back.
    pub fn realtime(&self) -> u64 {
        self.epoch_ns + self.elapsed_ns
    }

    /// Moves to the next tick.
    pub fn advance_tick(&mut self) {
        self.tick += 1;
        self.elapsed_ns += TICK_NS;
    }

    /// Adds the time an I/O took (the disk's latency) to the clock.
    pub fn advance_ns(&mut self, ns: u64) {
        self.elapsed_ns += ns;
    }
}

impl Time for SimTime {
    fn monotonic(&self) -> u64 {
        self.elapsed_ns
    }

    fn realtime(&self) -> u64 {
        SimTime::realtime(self)
    }
}

/// How one replica's wall clock departs from true (simulated) time: by a fixed offset, and by
/// a drift that grows with the time elapsed. Its monotonic clock is true.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ClockSkew {
    /// The wall clock's offset from true time, in ns.
    pub offset_ns: i64,
    /// How fast it runs off true time, in ns per second elapsed (parts per billion).
    pub drift_ppb: i64,
}

impl SimTime {
    /// Time as one replica reads it: true monotonic time, and its own wall clock.
    pub fn skewed(&self, skew: ClockSkew) -> ReplicaTime<'_> {
        ReplicaTime { time: self, skew }
    }
}

/// One replica's readings of simulated time ([`SimTime::skewed`]).
#[derive(Clone, Copy, Debug)]
pub struct ReplicaTime<'a> {
    time: &'a SimTime,
    skew: ClockSkew,
}

impl Time for ReplicaTime<'_> {
    fn monotonic(&self) -> u64 {
        self.time.elapsed_ns
    }

    fn realtime(&self) -> u64 {
        let drift = i128::from(self.time.elapsed_ns) * i128::from(self.skew.drift_ppb) / i128::from(NS_PER_S);
        let realtime = i128::from(self.time.realtime()) + i128::from(self.skew.offset_ns) + drift;
        realtime.clamp(0, i128::from(u64::MAX)) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realtime_grows_with_ticks_and_io_and_the_epoch_comes_from_the_seed() {
        let mut time = SimTime::new(&mut Prng::new(1));
        let start = time.realtime();
        assert!(start >= EPOCH_NS_MIN);
        time.advance_tick();
        time.advance_ns(5);
        assert_eq!((time.tick(), time.realtime()), (1, start + TICK_NS + 5));
        assert_eq!(SimTime::new(&mut Prng::new(1)).realtime(), start);
        assert_ne!(SimTime::new(&mut Prng::new(2)).realtime(), start);
    }

    #[test]
    fn a_skewed_clock_is_offset_and_drifts_while_the_monotonic_clock_stays_true() {
        let mut time = SimTime::new(&mut Prng::new(1));
        let skew = ClockSkew { offset_ns: -5_000, drift_ppb: 1_000 };
        let start = time.realtime();
        assert_eq!(time.skewed(skew).realtime(), start - 5_000);
        for _ in 0..100 {
            time.advance_tick(); // One second in all.
        }
        let skewed = time.skewed(skew);
        assert_eq!(skewed.monotonic(), NS_PER_S);
        assert_eq!(skewed.realtime(), start + NS_PER_S - 5_000 + 1_000, "a microsecond of drift a second");
    }
}
