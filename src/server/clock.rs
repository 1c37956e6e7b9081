//! The replica's clock: this machine's wall clock in nanoseconds, read at every prepare, and
//! watched against the monotonic clock so that a step of the wall clock (an operator setting
//! the time, NTP stepping it, a VM resumed) is noticed and logged. What a step does to
//! timestamps and to pending-transfer expiry is in docs/operating.md ("The clock").

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::constants::CLOCK_JUMP_TOLERANCE_NS;

/// The wall clock and the last reading compared against the monotonic clock.
pub struct Clock {
    monotonic_last: Instant,
    realtime_last: u64,
}

impl Clock {
    /// A clock whose first comparison starts now.
    pub fn new() -> Clock {
        Clock { monotonic_last: Instant::now(), realtime_last: realtime_ns() }
    }

    /// The wall clock in nanoseconds since the Unix epoch.
    pub fn realtime(&self) -> u64 {
        realtime_ns()
    }

    /// Reads both clocks and returns by how much the wall clock stepped since the last call
    /// (positive: forward), if that is beyond [`CLOCK_JUMP_TOLERANCE_NS`].
    pub fn jump(&mut self) -> Option<i128> {
        let monotonic = Instant::now();
        let realtime = realtime_ns();
        let elapsed = monotonic.duration_since(self.monotonic_last).as_nanos();
        let jump = jump_ns(elapsed, self.realtime_last, realtime);
        self.monotonic_last = monotonic;
        self.realtime_last = realtime;
        jump
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

/// The step of the wall clock between readings `realtime_before` and `realtime_now` taken
/// `monotonic_elapsed` ns apart, if it is beyond the tolerance.
fn jump_ns(monotonic_elapsed: u128, realtime_before: u64, realtime_now: u64) -> Option<i128> {
    let step = i128::from(realtime_now) - i128::from(realtime_before) - monotonic_elapsed as i128;
    (step.unsigned_abs() > u128::from(CLOCK_JUMP_TOLERANCE_NS)).then_some(step)
}

/// This machine's wall clock in nanoseconds since the Unix epoch: 0 before 1970, and
/// `u64::MAX` past the year 2554 (never wrapped: the replica refuses to prepare with a clock
/// beyond the timestamp range rather than be given a small, wrong time).
pub fn realtime_ns() -> u64 {
    match SystemTime::now().duration_since(UNIX_EPOCH) {
        Ok(duration) => u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX),
        Err(_) => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_beyond_the_tolerance_is_a_jump_and_drift_is_not() {
        let second = 1_000_000_000u64;
        // Both clocks moved by a second.
        assert_eq!(jump_ns(u128::from(second), 5 * second, 6 * second), None);
        // Drift within the tolerance, either way.
        let tolerance = CLOCK_JUMP_TOLERANCE_NS;
        assert_eq!(jump_ns(u128::from(second), 5 * second, 6 * second + tolerance), None);
        assert_eq!(jump_ns(u128::from(second), 5 * second, 6 * second - tolerance), None);
        // Forward and backward steps.
        assert_eq!(jump_ns(u128::from(second), 5 * second, 66 * second), Some(i128::from(60 * second)));
        assert_eq!(jump_ns(u128::from(second), 5 * second, 2 * second), Some(-i128::from(4 * second)));
        // The extremes of the wall clock do not overflow.
        assert_eq!(jump_ns(0, 0, u64::MAX), Some(i128::from(u64::MAX)));
        assert_eq!(jump_ns(u128::from(u64::MAX), u64::MAX, 0), Some(-2 * i128::from(u64::MAX)));
    }

    #[test]
    fn the_wall_clock_reads_after_2020() {
        assert!(realtime_ns() > 1_577_836_800 * 1_000_000_000);
    }
}
