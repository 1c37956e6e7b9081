//! Checker (d): the VSR op numbers. While a replica runs, `commit_min <= commit_max`,
//! `commit_min <= op`, and none of them ever goes back — except `op` in a cluster, where a view
//! change may truncate ops never executed (never below `commit_min`). A replica of a cluster
//! of one never loses an acknowledged op: across a crash, its `commit_min` may fall back only
//! to ops no client was ever answered for. (A replica of a larger cluster recovers only what
//! its log proves committed and learns the rest from its peers: that the cluster loses no
//! acknowledged op is the commits and replies checkers' part.)

use super::Failure;

const NAME: &str = "op numbers";

/// `op`, `commit_min` and `commit_max` of one replica at one moment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpNumbers {
    /// The newest op prepared.
    pub op: u64,
    /// The newest op executed.
    pub commit_min: u64,
    /// The newest op known committed.
    pub commit_max: u64,
}

/// What the checker remembers of one replica.
#[derive(Clone, Debug, Default)]
pub struct OpNumbersChecker {
    /// The replica is one of a cluster of more than one.
    cluster: bool,
    /// The numbers last seen while the replica ran (`None` right after a crash).
    last: Option<OpNumbers>,
    /// The newest op a reply was sent for.
    acknowledged_max: u64,
}

impl OpNumbersChecker {
    /// A checker for a replica that has not started, of a cluster of one or (`cluster`) more.
    pub fn new(cluster: bool) -> OpNumbersChecker {
        OpNumbersChecker { cluster, ..OpNumbersChecker::default() }
    }

    /// Records that a reply for `op` left the replica.
    pub fn acknowledged(&mut self, op: u64) {
        self.acknowledged_max = self.acknowledged_max.max(op);
    }

    /// The newest op a reply was sent for.
    pub fn acknowledged_max(&self) -> u64 {
        self.acknowledged_max
    }

    /// Checks the numbers of a running replica.
    pub fn check(&mut self, now: OpNumbers) -> Result<(), Failure> {
        // commit_max may be beyond op: a backup learns that ops committed before it has them.
        if !(now.commit_min <= now.commit_max && now.commit_min <= now.op) {
            return Err(Failure::new(
                NAME,
                format!("not commit_min <= commit_max and commit_min <= op: {now:?}"),
            ));
        }
        if let Some(last) = self.last {
            let op_back = now.op < last.op && !self.cluster;
            if op_back || now.commit_min < last.commit_min || now.commit_max < last.commit_max {
                return Err(Failure::new(NAME, format!("went back from {last:?} to {now:?}")));
            }
        }
        if now.commit_max < self.acknowledged_max {
            return Err(Failure::new(
                NAME,
                format!(
                    "op {} was acknowledged, but commit_max is {}",
                    self.acknowledged_max, now.commit_max
                ),
            ));
        }
        self.last = Some(now);
        Ok(())
    }

    /// Forgets the running numbers: the replica crashed.
    pub fn crashed(&mut self) {
        self.last = None;
        if self.cluster {
            self.acknowledged_max = 0;
        }
    }

    /// Checks the numbers of a replica that just recovered.
    pub fn check_recovered(&mut self, now: OpNumbers) -> Result<(), Failure> {
        assert!(self.last.is_none(), "recovery follows a crash");
        if now.commit_min < self.acknowledged_max {
            return Err(Failure::new(
                NAME,
                format!(
                    "recovered commit_min {} is below op {}, which a client was answered for: an acknowledged op was lost",
                    now.commit_min, self.acknowledged_max
                ),
            ));
        }
        self.check(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numbers(op: u64, commit_min: u64, commit_max: u64) -> OpNumbers {
        OpNumbers { op, commit_min, commit_max }
    }

    #[test]
    fn regressions_disorder_and_lost_acknowledged_ops_fail() {
        let mut checker = OpNumbersChecker::new(false);
        assert_eq!(checker.check(numbers(3, 3, 3)), Ok(()));
        assert!(checker.check(numbers(4, 5, 4)).is_err(), "commit_min above commit_max");
        assert!(checker.check(numbers(2, 2, 2)).expect_err("regression").message.contains("went back"));
        checker.acknowledged(3);
        checker.crashed();
        let lost = checker.check_recovered(numbers(2, 2, 2)).expect_err("lost");
        assert!(lost.message.contains("acknowledged op was lost"), "{lost}");
        checker.crashed();
        assert_eq!(checker.check_recovered(numbers(3, 3, 3)), Ok(()), "unacknowledged ops may go");
        assert_eq!(checker.check(numbers(3, 3, 6)), Ok(()), "a backup may know of commits it lacks");
        checker.acknowledged(7);
        assert!(checker
            .check(numbers(7, 6, 6))
            .expect_err("unacknowledged")
            .message
            .contains("was acknowledged"));
    }
}
