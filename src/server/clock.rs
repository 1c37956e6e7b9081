//! The operating system's clocks as the replica's [`Time`]: the monotonic clock since the
//! server started, and this machine's wall clock, read at every prepare and tick. What a step
//! of the wall clock does to timestamps and to pending-transfer expiry is in docs/operating.md
//! ("The clock"); the replica notices it (`vsr::time::ClockWatch`) and the server logs it.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::vsr::time::Time;

/// The operating system's clocks.
pub struct Clock {
    start: Instant,
}

impl Clock {
    /// A clock whose monotonic reading starts now.
    pub fn new() -> Clock {
        Clock { start: Instant::now() }
    }
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::new()
    }
}

impl Time for Clock {
    fn monotonic(&self) -> u64 {
        // Saturates after 584 years of uptime rather than wrap.
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn realtime(&self) -> u64 {
        realtime_ns()
    }
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
    fn the_wall_clock_reads_after_2020_and_the_monotonic_clock_never_goes_back() {
        let clock = Clock::new();
        assert!(clock.realtime() > 1_577_836_800 * 1_000_000_000);
        let first = clock.monotonic();
        assert!(clock.monotonic() >= first);
    }
}
