//! The cluster's time (spec §8): each replica samples its peers' wall clocks over `ping` /
//! `pong` round trips and runs Marzullo's algorithm over them and its own clock, so that the
//! primary stamps prepares with a time a replication quorum of clocks agrees on, not with
//! whatever its own clock says.
//!
//! Sampling runs in windows of [`CLOCK_WINDOW_MIN_NS`] to [`CLOCK_WINDOW_MAX_NS`]: per peer the
//! sample of the fastest round trip is kept (the offset is known to within half of it). Once a
//! window is at least the minimum long and a replication quorum of sources agrees — each
//! source's interval widened by [`CLOCK_OFFSET_TOLERANCE_NS`] — it becomes the *epoch*, trusted
//! for [`CLOCK_EPOCH_MAX_NS`], and a new window begins. A window that reaches the maximum
//! without agreement is dropped. A replica without an epoch (just started, or its epoch
//! expired) takes the first agreement at once, however short its window. The synchronized time is the replica's own wall clock clamped
//! into the agreed interval, measured from the epoch on the monotonic clock: a step of the
//! local wall clock after the epoch does not move it outside what the cluster agreed.
//!
//! A cluster of one has no one to agree with: its own clock is the cluster's.

use super::marzullo::{smallest_interval, Bounds};
use super::time::Time;
use crate::constants::{
    CLOCK_EPOCH_MAX_NS, CLOCK_OFFSET_TOLERANCE_NS, CLOCK_WINDOW_MAX_NS, CLOCK_WINDOW_MIN_NS, REPLICAS_MAX,
};

/// One peer's clock as a round trip saw it: its wall clock minus ours, known to within
/// `one_way_delay_ns` either way.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sample {
    offset_ns: i64,
    one_way_delay_ns: u64,
}

/// A span of sampling, begun at these readings of the replica's own clocks.
#[derive(Clone, Copy, Debug)]
struct Window {
    monotonic: u64,
    realtime: u64,
    /// The best sample of each replica (never of this one).
    samples: [Option<Sample>; REPLICAS_MAX as usize],
}

impl Window {
    fn begin(time: &impl Time) -> Window {
        Window {
            monotonic: time.monotonic(),
            realtime: time.realtime(),
            samples: [None; REPLICAS_MAX as usize],
        }
    }
}

/// A window whose samples a quorum agreed on: the offsets from this replica's wall clock (at
/// the window's start, followed on the monotonic clock) that the cluster's time lies within.
#[derive(Clone, Copy, Debug)]
struct Epoch {
    monotonic: u64,
    realtime: u64,
    lower_ns: i64,
    upper_ns: i64,
}

/// A replica's view of the cluster's time.
#[derive(Clone, Debug)]
pub struct Clock {
    replica: u8,
    replica_count: u8,
    /// Sources that must agree: the replication quorum.
    quorum: u8,
    /// The window sampling now (none before the first tick).
    window: Option<Window>,
    epoch: Option<Epoch>,
    /// Windows dropped without agreement since the last epoch.
    windows_failed: u64,
}

impl Clock {
    /// The clock of replica `replica` of `replica_count`, trusting an agreement of `quorum`
    /// sources (itself included).
    pub fn new(replica: u8, replica_count: u8, quorum: u8) -> Clock {
        assert!(replica < replica_count && replica_count <= REPLICAS_MAX);
        assert!(quorum >= 1 && quorum <= replica_count);
        Clock { replica, replica_count, quorum, window: None, epoch: None, windows_failed: 0 }
    }

    /// Records a peer's answer to a ping this replica sent at `ping_monotonic` (its own
    /// monotonic clock, echoed): the peer's wall clock read `pong_realtime`. False if the
    /// sample is of no use: a ping of an earlier window, or readings no clock gives (an echo
    /// from the future, an offset beyond any range), which a faulty peer may send.
    pub fn learn(&mut self, replica: u8, ping_monotonic: u64, pong_realtime: u64, time: &impl Time) -> bool {
        assert!(replica < self.replica_count && replica != self.replica);
        let Some(window) = self.window.as_mut() else { return false };
        let (monotonic, realtime) = (time.monotonic(), time.realtime());
        if ping_monotonic < window.monotonic || ping_monotonic > monotonic {
            return false;
        }
        let one_way_delay_ns = (monotonic - ping_monotonic) / 2;
        // The peer read its clock somewhere within the round trip: on average at its middle.
        let offset = i128::from(pong_realtime) + i128::from(one_way_delay_ns) - i128::from(realtime);
        let Ok(offset_ns) = i64::try_from(offset) else { return false };
        if offset_ns.unsigned_abs() > i64::MAX as u64 / 4 {
            return false;
        }
        let sample = Sample { offset_ns, one_way_delay_ns };
        let best = &mut window.samples[replica as usize];
        // Synchronized, it keeps the fastest round trip of the window. Without an epoch it
        // takes the first agreement, so the newest sample serves it best: a peer whose clock
        // was just set right counts at once, not at the end of a window of its old readings.
        let newest = self.epoch.is_none();
        if newest || best.is_none_or(|best| sample.one_way_delay_ns < best.one_way_delay_ns) {
            *best = Some(sample);
        }
        true
    }

    /// Drops the window's samples: this replica's wall clock stepped (every offset measured
    /// against it before is wrong now). The epoch stays: it is followed on the monotonic clock.
    pub fn stepped(&mut self, time: &impl Time) {
        if self.window.is_some() {
            self.window = Some(Window::begin(time));
        }
    }

    /// The clock's tick: begins the first window; closes the window if it is long enough and
    /// a quorum agrees (a new epoch), or drops it if it reached its longest; forgets an epoch
    /// too old to trust.
    pub fn tick(&mut self, time: &impl Time) {
        let monotonic = time.monotonic();
        if self.epoch.is_some_and(|epoch| monotonic - epoch.monotonic > CLOCK_EPOCH_MAX_NS) {
            self.epoch = None;
        }
        let Some(window) = self.window else {
            self.window = Some(Window::begin(time));
            return;
        };
        assert!(monotonic >= window.monotonic, "the monotonic clock went back");
        let elapsed = monotonic - window.monotonic;
        // Without an epoch, the first agreement is taken at once: a sample's bounds hold
        // whatever its round trip (a slow one only widens them, by far less than the
        // tolerance), and a replica that just started should not keep its cluster waiting.
        // With one, a window samples at least the minimum, to keep the fastest round trips.
        if self.epoch.is_some() && elapsed < CLOCK_WINDOW_MIN_NS {
            return;
        }
        // A window older than the longest (the loop stalled) is dropped, agreement or not: an
        // epoch is never older than that when it begins.
        let agreement = if elapsed <= CLOCK_WINDOW_MAX_NS { self.agreement(&window) } else { None };
        if let Some(epoch) = agreement {
            self.epoch = Some(epoch);
            self.windows_failed = 0;
            self.window = Some(Window::begin(time));
        } else if elapsed >= CLOCK_WINDOW_MAX_NS {
            self.windows_failed += 1;
            self.window = Some(Window::begin(time));
        }
    }

    /// The epoch `window` makes, if a quorum of its sources (this replica's clock and its best
    /// sample of each peer, each widened by the tolerance) agrees.
    fn agreement(&self, window: &Window) -> Option<Epoch> {
        let tolerance = CLOCK_OFFSET_TOLERANCE_NS as i64;
        let mut sources = [Bounds { lower: 0, upper: 0 }; REPLICAS_MAX as usize];
        sources[0] = Bounds { lower: -tolerance, upper: tolerance };
        let mut count = 1;
        for sample in window.samples[..self.replica_count as usize].iter().flatten() {
            // `learn` bounds both terms, so none of this overflows.
            let error = sample.one_way_delay_ns.min(i64::MAX as u64 / 4) as i64 + tolerance;
            sources[count] = Bounds { lower: sample.offset_ns - error, upper: sample.offset_ns + error };
            count += 1;
        }
        let interval = smallest_interval(&sources[..count]);
        (interval.sources_true >= self.quorum).then_some(Epoch {
            monotonic: window.monotonic,
            realtime: window.realtime,
            lower_ns: interval.lower,
            upper_ns: interval.upper,
        })
    }

    /// True if this replica knows the cluster's time now (a cluster of one always does).
    pub fn synchronized(&self) -> bool {
        self.replica_count == 1 || self.epoch.is_some()
    }

    /// Windows dropped without agreement since the last epoch (or since the start).
    pub fn windows_failed(&self) -> u64 {
        self.windows_failed
    }

    /// The cluster's time now, in ns since the Unix epoch: this replica's wall clock, kept
    /// within the interval of the epoch. None if it is not synchronized.
    pub fn realtime_synchronized(&self, time: &impl Time) -> Option<u64> {
        let realtime = time.realtime();
        if self.replica_count == 1 {
            return Some(realtime);
        }
        let epoch = self.epoch?;
        let elapsed = time.monotonic().checked_sub(epoch.monotonic)?;
        if elapsed > CLOCK_EPOCH_MAX_NS {
            return None;
        }
        let base = i128::from(epoch.realtime) + i128::from(elapsed);
        let clamped =
            i128::from(realtime).clamp(base + i128::from(epoch.lower_ns), base + i128::from(epoch.upper_ns));
        Some(clamped.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

/// For the replica's unit tests, which hand-step clusters from time 0.
#[cfg(test)]
impl Clock {
    /// The clock as if a window had agreed at `time`, within the tolerance of its own wall clock.
    pub(crate) fn assume_synchronized(&mut self, time: &impl Time) {
        let tolerance = CLOCK_OFFSET_TOLERANCE_NS as i64;
        self.window = Some(Window::begin(time));
        let (monotonic, realtime) = (time.monotonic(), time.realtime());
        self.epoch = Some(Epoch { monotonic, realtime, lower_ns: -tolerance, upper_ns: tolerance });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::NS_PER_S;
    use std::cell::Cell;

    const MS: u64 = 1_000_000;
    const TOLERANCE: i64 = CLOCK_OFFSET_TOLERANCE_NS as i64;

    /// A replica's clocks: true time plus an offset for the wall clock.
    struct Skewed<'a> {
        now: &'a Cell<u64>,
        offset_ns: i64,
    }

    impl Time for Skewed<'_> {
        fn monotonic(&self) -> u64 {
            self.now.get()
        }
        fn realtime(&self) -> u64 {
            (1_700_000_000 * NS_PER_S as i64 + self.now.get() as i64 + self.offset_ns) as u64
        }
    }

    /// A round trip from `clock` (whose clocks `time` reads) to a peer whose wall clock is
    /// `peer_offset_ns` off true time, taking `rtt_ns`, answered halfway.
    fn round_trip(clock: &mut Clock, time: &Skewed, peer: u8, peer_offset_ns: i64, rtt_ns: u64) -> bool {
        let ping = time.now.get();
        time.now.set(ping + rtt_ns / 2);
        let peer_time = Skewed { now: time.now, offset_ns: peer_offset_ns };
        let pong = peer_time.realtime();
        time.now.set(ping + rtt_ns);
        clock.learn(peer, ping, pong, time)
    }

    /// Runs a window of round trips to every peer (each `offsets[peer]` off true time), one
    /// every 100 ms, ticking the clock; true if it synchronized.
    fn sample_window(clock: &mut Clock, time: &Skewed, offsets: &[i64]) -> bool {
        clock.tick(time);
        for round in 0..(CLOCK_WINDOW_MIN_NS / (100 * MS)) {
            for (peer, offset) in offsets.iter().enumerate() {
                if peer as u8 != clock.replica {
                    round_trip(clock, time, peer as u8, *offset, (2 + round % 3) * MS);
                }
            }
            time.now.set(time.now.get() + 100 * MS);
            clock.tick(time);
        }
        clock.synchronized()
    }

    #[test]
    fn a_cluster_of_one_is_its_own_clock() {
        let now = Cell::new(5 * NS_PER_S);
        let time = Skewed { now: &now, offset_ns: 42 };
        let clock = Clock::new(0, 1, 1);
        assert!(clock.synchronized());
        assert_eq!(clock.realtime_synchronized(&time), Some(time.realtime()));
    }

    #[test]
    fn agreeing_clocks_synchronize_at_the_first_agreement_and_leave_the_local_clock_as_it_is() {
        let now = Cell::new(NS_PER_S);
        let time = Skewed { now: &now, offset_ns: 3 * MS as i64 };
        let mut clock = Clock::new(0, 3, 2);
        assert!(!clock.synchronized());
        assert_eq!(clock.realtime_synchronized(&time), None);
        clock.tick(&time);
        assert!(round_trip(&mut clock, &time, 1, -2 * MS as i64, 4 * MS));
        clock.tick(&time);
        assert!(clock.synchronized(), "one peer agreeing is a quorum of two");
        let epoch = clock.epoch.expect("an epoch").monotonic;
        // The next windows last at least the minimum.
        assert!(sample_window(&mut clock, &time, &[0, -2 * MS as i64, 7 * MS as i64]));
        let next = clock.epoch.expect("an epoch").monotonic;
        assert!(next >= epoch && clock.window.expect("a window").monotonic >= next + CLOCK_WINDOW_MIN_NS);
        // Every clock within the tolerance: the local clock is already the cluster's.
        assert_eq!(clock.realtime_synchronized(&time), Some(time.realtime()));
    }

    #[test]
    fn a_clock_far_off_is_corrected_into_what_the_others_agree_on() {
        let now = Cell::new(NS_PER_S);
        // This replica's clock is an hour fast; its two peers are right.
        let hour = 3600 * NS_PER_S as i64;
        let time = Skewed { now: &now, offset_ns: hour };
        let mut clock = Clock::new(1, 3, 2);
        assert!(sample_window(&mut clock, &time, &[0, 0, 0]));
        let synchronized = clock.realtime_synchronized(&time).expect("synchronized") as i64;
        let truth = Skewed { now: &now, offset_ns: 0 }.realtime() as i64;
        assert!((synchronized - truth).abs() <= TOLERANCE + 10 * MS as i64, "{}", synchronized - truth);
        // A step of the local wall clock after the epoch does not move the cluster's time out of
        // the interval: it is measured on the monotonic clock.
        let stepped = Skewed { now: &now, offset_ns: -hour };
        let after = clock.realtime_synchronized(&stepped).expect("synchronized") as i64;
        assert!((after - truth).abs() <= TOLERANCE + 10 * MS as i64, "{}", after - truth);
    }

    #[test]
    fn a_falseticker_peer_is_outvoted() {
        let now = Cell::new(NS_PER_S);
        let time = Skewed { now: &now, offset_ns: 0 };
        let mut clock = Clock::new(0, 5, 3);
        let minute = 60 * NS_PER_S as i64;
        assert!(sample_window(&mut clock, &time, &[0, minute, 2 * MS as i64, -minute, 1]));
        assert_eq!(clock.realtime_synchronized(&time), Some(time.realtime()));
    }

    #[test]
    fn without_a_quorum_the_window_is_dropped_at_its_longest_and_an_epoch_expires() {
        let now = Cell::new(NS_PER_S);
        let time = Skewed { now: &now, offset_ns: 0 };
        let mut clock = Clock::new(0, 3, 2);
        // Both peers far from this clock and from each other: no two sources agree.
        let minute = 60 * NS_PER_S as i64;
        assert!(!sample_window(&mut clock, &time, &[0, minute, -minute]));
        now.set(now.get() + CLOCK_WINDOW_MAX_NS);
        clock.tick(&time);
        assert_eq!(clock.windows_failed(), 1);
        // Agreement, then silence: the epoch is trusted for its lifetime, then forgotten.
        assert!(sample_window(&mut clock, &time, &[0, 0, 0]));
        assert_eq!(clock.windows_failed(), 0);
        let epoch = clock.epoch.expect("an epoch");
        now.set(epoch.monotonic + CLOCK_EPOCH_MAX_NS);
        assert!(clock.realtime_synchronized(&time).is_some());
        now.set(now.get() + 1);
        assert_eq!(clock.realtime_synchronized(&time), None);
        clock.tick(&time);
        assert!(!clock.synchronized());
    }

    #[test]
    fn useless_samples_are_refused() {
        let now = Cell::new(10 * NS_PER_S);
        let time = Skewed { now: &now, offset_ns: 0 };
        let mut clock = Clock::new(0, 3, 2);
        assert!(!clock.learn(1, now.get(), time.realtime(), &time), "no window before the first tick");
        clock.tick(&time);
        assert!(!clock.learn(1, now.get() + 1, time.realtime(), &time), "an echo from the future");
        assert!(!clock.learn(1, now.get() - 1, time.realtime(), &time), "a ping of an earlier window");
        assert!(!clock.learn(1, now.get(), u64::MAX, &time), "an offset beyond any range");
        assert!(clock.learn(1, now.get(), time.realtime(), &time));
        // The fastest round trip is kept.
        let one_way =
            |clock: &Clock| clock.window.expect("a window").samples[2].map(|sample| sample.one_way_delay_ns);
        // Without an epoch, the newest sample is kept.
        assert!(round_trip(&mut clock, &time, 2, 0, 4 * MS));
        assert!(round_trip(&mut clock, &time, 2, 0, 30 * MS));
        assert_eq!(one_way(&clock), Some(15 * MS));
        // With one, the fastest round trip of the window.
        clock.tick(&time);
        assert!(clock.synchronized());
        assert!(round_trip(&mut clock, &time, 2, 0, 40 * MS));
        assert!(round_trip(&mut clock, &time, 2, 0, 4 * MS));
        assert!(round_trip(&mut clock, &time, 2, 0, 30 * MS));
        assert_eq!(one_way(&clock), Some(2 * MS));
        // A step of the local clock drops the window's samples, and keeps the epoch.
        clock.stepped(&time);
        assert_eq!(one_way(&clock), None);
        assert!(clock.synchronized());
    }
}
