//! Checker: the cluster's time stays true. Each replica's wall clock is skewed (a minority
//! faulty, seconds to minutes off), yet a replica that says it knows the cluster's time must be
//! within the tolerance of true time, and no committed op may carry a timestamp beyond true time
//! by more than that — a primary that stamped prepares with its own faulty clock would.

use super::Failure;
use crate::constants::{CLOCK_OFFSET_TOLERANCE_NS, NS_PER_S};

const NAME: &str = "clocks";

/// How far beyond the tolerance a synchronized time may be from true time: the good clocks'
/// own offsets and drift, and the round trips their samples took (at most a few hundred ms).
const SLACK_NS: u64 = NS_PER_S;

/// The most a time the cluster agreed on may differ from true time.
pub const ERROR_NS_MAX: u64 = CLOCK_OFFSET_TOLERANCE_NS + SLACK_NS;

/// Replica `replica` reads the cluster's time as `synchronized` (None: it does not know it)
/// when true time is `truth`.
pub fn check_synchronized(replica: u8, synchronized: Option<u64>, truth: u64) -> Result<(), Failure> {
    let Some(synchronized) = synchronized else { return Ok(()) };
    let error = synchronized.abs_diff(truth);
    if error > ERROR_NS_MAX {
        return Err(Failure::new(
            NAME,
            format!(
                "replica {replica} takes the cluster's time for {synchronized}, {} ms {} true time",
                error / 1_000_000,
                if synchronized > truth { "ahead of" } else { "behind" }
            ),
        ));
    }
    Ok(())
}

/// Op `op` committed with `timestamp`, first seen when true time is `truth`: it was prepared
/// earlier, so its timestamp may not be ahead of `truth` by more than the error allowed.
pub fn check_timestamp(op: u64, timestamp: u64, truth: u64) -> Result<(), Failure> {
    if timestamp > truth.saturating_add(ERROR_NS_MAX) {
        return Err(Failure::new(
            NAME,
            format!(
                "op {op} committed with timestamp {timestamp}, {} ms ahead of true time",
                (timestamp - truth) / 1_000_000
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_within_the_tolerance_pass_and_beyond_it_fire() {
        let truth = 1_700_000_000 * NS_PER_S;
        assert_eq!(check_synchronized(0, None, truth), Ok(()), "not synchronized: nothing to check");
        assert_eq!(check_synchronized(0, Some(truth + ERROR_NS_MAX), truth), Ok(()));
        assert_eq!(check_synchronized(0, Some(truth - ERROR_NS_MAX), truth), Ok(()));
        let ahead = check_synchronized(2, Some(truth + ERROR_NS_MAX + 1), truth).unwrap_err();
        assert!(ahead.message.contains("replica 2") && ahead.message.contains("ahead of"), "{ahead}");
        let behind = check_synchronized(1, Some(truth - ERROR_NS_MAX - 1), truth).unwrap_err();
        assert!(behind.message.contains("behind"), "{behind}");
        // Timestamps: behind true time is fine (an op prepared earlier), ahead only within it.
        assert_eq!(check_timestamp(5, truth - 60 * NS_PER_S, truth), Ok(()));
        assert_eq!(check_timestamp(5, truth + ERROR_NS_MAX, truth), Ok(()));
        let failure = check_timestamp(5, truth + ERROR_NS_MAX + NS_PER_S, truth).unwrap_err();
        assert_eq!(failure.checker, NAME);
        assert!(failure.message.contains("op 5"), "{failure}");
    }
}
