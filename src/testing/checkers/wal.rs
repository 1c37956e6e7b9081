//! Checker: every running replica's WAL holds, intact, the very prepares the cluster committed.
//! At the end of a run, for each op a replica committed after its checkpoint, its WAL slot
//! holds that op's prepare (header and body checksums valid) and its redundant header is that
//! prepare's header, both the prepare the commits checker fixed for the op. A replica that
//! found its WAL damaged repaired it from its peers: this is the proof that the repaired slots
//! equal the originals, byte for byte as far as their checksums tell.

use super::Failure;
use crate::vsr::header::{Command, Header};

const NAME: &str = "wal intact";

/// Checks the WAL slot of `op` of replica `replica`: `prepare` and `body` as read from the
/// prepare ring, `redundant` from the headers ring, against `committed`, the checksum of the
/// prepare the cluster committed at `op`.
pub fn check_slot(
    replica: u8,
    op: u64,
    prepare: &Header,
    body: &[u8],
    redundant: &Header,
    committed: u128,
) -> Result<(), Failure> {
    let intact = prepare.valid_checksum()
        && prepare.command() == Some(Command::Prepare)
        && prepare.op == op
        && prepare.size as usize == crate::constants::HEADER_SIZE + body.len()
        && prepare.valid_checksum_body(body);
    if !intact {
        return Err(Failure::new(
            NAME,
            format!("replica {replica}: the WAL slot of committed op {op} is not its intact prepare"),
        ));
    }
    if prepare.checksum != committed {
        return Err(Failure::new(
            NAME,
            format!(
                "replica {replica}: the WAL holds prepare {:032x} at op {op}, which committed as {committed:032x}",
                prepare.checksum
            ),
        ));
    }
    if redundant != prepare {
        return Err(Failure::new(
            NAME,
            format!(
                "replica {replica}: the redundant header of committed op {op} is not its prepare's header"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(op: u64, body: &[u8]) -> Header {
        let mut header = Header { op, ..Header::new(Command::Prepare, 7) };
        header.set_body(body);
        header.set_checksum();
        header
    }

    #[test]
    fn the_committed_prepare_passes_and_damage_another_prepare_or_a_stale_header_fire() {
        let body = [5u8; 64];
        let good = prepare(3, &body);
        assert!(check_slot(0, 3, &good, &body, &good, good.checksum).is_ok());
        let mut flipped = body;
        flipped[9] ^= 1;
        assert!(check_slot(0, 3, &good, &flipped, &good, good.checksum)
            .unwrap_err()
            .message
            .contains("not its intact"));
        let other = prepare(3, &[6u8; 64]);
        assert!(check_slot(1, 3, &other, &[6u8; 64], &other, good.checksum)
            .unwrap_err()
            .message
            .contains("committed as"));
        let stale = prepare(3 - 2, &body);
        assert!(check_slot(2, 3, &good, &body, &stale, good.checksum)
            .unwrap_err()
            .message
            .contains("redundant header"));
        assert!(check_slot(2, 4, &good, &body, &good, good.checksum).is_err(), "a prepare of another op");
    }
}
