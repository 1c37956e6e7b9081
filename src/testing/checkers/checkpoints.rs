//! Checker: checkpoints agree across replicas, byte for byte. The first replica to make a
//! checkpoint at an op durable fixes its identity (`Checkpoint::id`: the op, the state's array
//! lengths and every page's block reference, address and checksum); every other replica's
//! checkpoint at that op must be identical — the same blocks at the same addresses — whatever
//! its history of crashes, so that a peer can repair a damaged block by address and checksum.

use std::collections::BTreeMap;

use super::Failure;

const NAME: &str = "checkpoints agree";

/// The identity of the checkpoint at each op, and the replica that made it first.
#[derive(Clone, Debug, Default)]
pub struct CheckpointsChecker {
    ids: BTreeMap<u64, (u8, u128)>,
}

impl CheckpointsChecker {
    /// A checker that has seen no checkpoint.
    pub fn new() -> CheckpointsChecker {
        CheckpointsChecker::default()
    }

    /// Replica `replica`'s durable checkpoint is at `op` with identity `id`.
    pub fn check(&mut self, replica: u8, op: u64, id: u128) -> Result<(), Failure> {
        let (first, first_id) = *self.ids.entry(op).or_insert((replica, id));
        if first_id != id {
            return Err(Failure::new(
                NAME,
                format!(
                    "replica {replica}'s checkpoint at op {op} is {id:032x}, replica {first}'s {first_id:032x}: \
                     the same state placed or written otherwise"
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_checkpoint_passes_and_another_at_the_same_op_fires() {
        let mut checker = CheckpointsChecker::new();
        assert!(checker.check(0, 32, 7).is_ok());
        assert!(checker.check(1, 32, 7).is_ok());
        assert!(checker.check(1, 64, 9).is_ok());
        let failure = checker.check(2, 32, 8).unwrap_err();
        assert!(failure.message.contains("replica 2's checkpoint at op 32"), "{}", failure.message);
    }
}
