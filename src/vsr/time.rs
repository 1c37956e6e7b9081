//! Time as the replica sees it: an interface, never a clock it reads itself.
//!
//! [`Time`] gives two readings: a monotonic one (ns since an arbitrary start, never going back;
//! what timeouts are measured on) and the wall clock (ns since the Unix epoch, which may step;
//! what timestamps are derived from). The server implements it on the operating system's
//! clocks (`server::clock`), the simulator on simulated time (`testing::time`).
//!
//! [`ClockWatch`] compares the two across ticks, so that a step of the wall clock (an operator
//! setting the time, NTP stepping it, a VM resumed) is noticed: timestamps stay monotonic
//! whatever it does (the prepare path takes the larger of the clock and the last timestamp),
//! but pending transfers' timeouts are measured on it, so the operator is told.

use crate::constants::CLOCK_JUMP_TOLERANCE_NS;

/// A source of the two readings the replica needs.
pub trait Time {
    /// Nanoseconds since an arbitrary start; never goes back.
    fn monotonic(&self) -> u64;
    /// The wall clock in nanoseconds since the Unix epoch (0 before 1970; never wrapped).
    fn realtime(&self) -> u64;
}

/// The last readings of both clocks, to tell a step of the wall clock from time passing.
#[derive(Clone, Copy, Debug, Default)]
pub struct ClockWatch {
    /// (monotonic, realtime) at the last [`ClockWatch::jump`], if any.
    last: Option<(u64, u64)>,
}

impl ClockWatch {
    /// Reads `time` and returns by how much the wall clock stepped since the last call
    /// (positive: forward), if that is beyond [`CLOCK_JUMP_TOLERANCE_NS`]. The first call
    /// only takes the readings.
    pub fn jump(&mut self, time: &impl Time) -> Option<i128> {
        let (monotonic, realtime) = (time.monotonic(), time.realtime());
        let jump = self.last.and_then(|(monotonic_last, realtime_last)| {
            assert!(monotonic >= monotonic_last, "the monotonic clock went back");
            jump_ns(u128::from(monotonic - monotonic_last), realtime_last, realtime)
        });
        self.last = Some((monotonic, realtime));
        jump
    }
}

/// The step of the wall clock between readings `realtime_before` and `realtime_now` taken
/// `monotonic_elapsed` ns apart, if it is beyond the tolerance.
fn jump_ns(monotonic_elapsed: u128, realtime_before: u64, realtime_now: u64) -> Option<i128> {
    let step = i128::from(realtime_now) - i128::from(realtime_before) - monotonic_elapsed as i128;
    (step.unsigned_abs() > u128::from(CLOCK_JUMP_TOLERANCE_NS)).then_some(step)
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

    struct Fixed(u64, u64);

    impl Time for Fixed {
        fn monotonic(&self) -> u64 {
            self.0
        }
        fn realtime(&self) -> u64 {
            self.1
        }
    }

    #[test]
    fn the_watch_reports_a_step_once_between_the_two_readings_it_falls_between() {
        let second = 1_000_000_000u64;
        let mut watch = ClockWatch::default();
        assert_eq!(watch.jump(&Fixed(0, 100 * second)), None, "the first reading");
        assert_eq!(watch.jump(&Fixed(second, 101 * second)), None);
        assert_eq!(watch.jump(&Fixed(2 * second, 40 * second)), Some(-62 * i128::from(second)));
        assert_eq!(watch.jump(&Fixed(3 * second, 41 * second)), None, "then time passes normally again");
    }
}
