//! Checker: committed prefixes agree across replicas. The first replica to commit an op fixes
//! which prepare (by checksum) that op is; every other replica that commits the op must commit
//! the very same prepare. Each replica commits in op order, so the ops known committed are a
//! prefix `1..=len`.

use super::Failure;

const NAME: &str = "commits agree";

/// The checksum of the prepare committed at each op, op `n` at `n − 1`.
#[derive(Clone, Debug, Default)]
pub struct CommitsChecker {
    checksums: Vec<u128>,
}

impl CommitsChecker {
    /// A checker that has seen no commit.
    pub fn new() -> CommitsChecker {
        CommitsChecker::default()
    }

    /// Replica `replica` committed `op` as the prepare `checksum`. Returns true if it is the
    /// first replica to commit the op.
    pub fn committed(&mut self, replica: u8, op: u64, checksum: u128) -> Result<bool, Failure> {
        assert!(op >= 1);
        let index = (op - 1) as usize;
        assert!(index <= self.checksums.len(), "a replica commits op {op} only after op {}", op - 1);
        if index == self.checksums.len() {
            self.checksums.push(checksum);
            return Ok(true);
        }
        if self.checksums[index] != checksum {
            return Err(Failure::new(
                NAME,
                format!(
                    "replica {replica} committed prepare {checksum:032x} at op {op}, but op {op} committed \
                     as {:032x} before",
                    self.checksums[index]
                ),
            ));
        }
        Ok(false)
    }

    /// The checksum of the prepare committed at `op`, if any replica committed it.
    pub fn checksum(&self, op: u64) -> Option<u128> {
        self.checksums.get(usize::try_from(op.checked_sub(1)?).ok()?).copied()
    }

    /// The newest op any replica committed.
    pub fn op_max(&self) -> u64 {
        self.checksums.len() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_prepare_at_an_op_passes_and_another_fires() {
        let mut checker = CommitsChecker::new();
        assert_eq!(checker.committed(0, 1, 11), Ok(true));
        assert_eq!(checker.committed(1, 1, 11), Ok(false));
        assert_eq!(checker.committed(1, 2, 12), Ok(true));
        let failure = checker.committed(0, 2, 13).unwrap_err();
        assert_eq!(failure.checker, NAME);
        assert!(failure.message.contains("replica 0 committed"), "{}", failure.message);
        assert_eq!(checker.op_max(), 2);
    }
}
