//! The quorums of a cluster of 1–6 replicas (flexible Paxos, spec §2): how many replicas must
//! hold a prepare before it commits, how many must join a view change, and how many must say
//! they never saw an op before a new primary may truncate it. Any replication quorum and any
//! view-change quorum intersect, so a view change always hears of every committed op.

use crate::constants::REPLICAS_MAX;

/// The quorums of one cluster size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quorums {
    /// Replicas that must have a prepare durable (the primary included) for it to commit.
    pub replication: u8,
    /// Replicas whose votes a view change needs (the new primary included).
    pub view_change: u8,
    /// Replicas that must never have seen an op (blank, not faulty) for it to be truncated.
    pub nack: u8,
}

impl Quorums {
    /// The quorums of a cluster of `replica_count` replicas (1 to [`REPLICAS_MAX`]).
    pub fn of(replica_count: u8) -> Quorums {
        assert!((1..=REPLICAS_MAX).contains(&replica_count), "replica_count {replica_count}");
        let replication = if replica_count == 2 { 2 } else { replica_count.div_ceil(2).min(3) };
        let view_change = if replica_count == 2 { 2 } else { replica_count - replication + 1 };
        let nack = replica_count - replication + 1;
        let quorums = Quorums { replication, view_change, nack };
        // The intersection property that makes a view change see every committed op.
        assert!(quorums.replication + quorums.view_change > replica_count);
        assert!(quorums.replication >= 1 && quorums.view_change <= replica_count);
        quorums
    }
}

/// The primary of `view`: replicas take turns, so every replica leads some views.
pub fn primary_index(view: u32, replica_count: u8) -> u8 {
    assert!(replica_count >= 1);
    (view % u32::from(replica_count)) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quorums_are_the_spec_table() {
        // replicas: (replication, view change, nack), spec §2.
        let table = [(1, 1, 1, 1), (2, 2, 2, 1), (3, 2, 2, 2), (4, 2, 3, 3), (5, 3, 3, 3), (6, 3, 4, 4)];
        for (replicas, replication, view_change, nack) in table {
            assert_eq!(
                Quorums::of(replicas),
                Quorums { replication, view_change, nack },
                "{replicas} replicas"
            );
        }
    }

    #[test]
    fn the_primary_rotates_with_the_view() {
        assert_eq!((0..7).map(|view| primary_index(view, 3)).collect::<Vec<_>>(), [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(primary_index(u32::MAX, 1), 0);
    }

    #[test]
    #[should_panic(expected = "replica_count 7")]
    fn more_replicas_than_the_maximum_is_refused() {
        Quorums::of(7);
    }
}
