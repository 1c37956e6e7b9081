//! A rate-limited warning: a condition that can recur thousands of times a second (accept
//! failing at the file-descriptor limit, a full table, a clock out of range) is logged at most
//! once per interval, with how often it happened, instead of flooding the log and the CPU.

use std::time::{Duration, Instant};

/// When a recurring warning was last logged, and how often it has happened since.
pub struct Warning {
    interval: Duration,
    logged_last: Option<Instant>,
    suppressed: u64,
}

impl Warning {
    /// A warning logged at most once per `interval`.
    pub fn new(interval: Duration) -> Warning {
        assert!(!interval.is_zero());
        Warning { interval, logged_last: None, suppressed: 0 }
    }

    /// Counts one occurrence at `now`. If a log line is due, returns the number of occurrences
    /// it reports (this one and those suppressed since the last line).
    pub fn due(&mut self, now: Instant) -> Option<u64> {
        let due = self.logged_last.is_none_or(|last| now.duration_since(last) >= self.interval);
        if !due {
            self.suppressed += 1;
            return None;
        }
        let count = self.suppressed + 1;
        self.logged_last = Some(now);
        self.suppressed = 0;
        Some(count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_logged_then_one_line_per_interval_with_the_count() {
        let start = Instant::now();
        let second = Duration::from_secs(1);
        let mut warning = Warning::new(10 * second);
        assert_eq!(warning.due(start), Some(1));
        for offset in 1..=9 {
            assert_eq!(warning.due(start + offset * second), None);
        }
        assert_eq!(warning.due(start + 10 * second), Some(10));
        assert_eq!(warning.due(start + 11 * second), None);
        assert_eq!(warning.due(start + 60 * second), Some(2));
    }
}
