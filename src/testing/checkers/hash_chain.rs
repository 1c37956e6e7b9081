//! Checker (c): the WAL's hash chain is intact. Each prepare read back from the log is whole
//! (both checksums), carries the next op number, and names the previous op's checksum as its
//! parent; across crashes too, so the recovered log continues the chain that was committed.

use super::Failure;
use crate::vsr::header::{Command, Header};

const NAME: &str = "hash chain";

/// The head of the chain as far as it has been checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HashChain {
    op: u64,
    checksum: u128,
}

impl HashChain {
    /// A chain whose head is op `op` with checksum `checksum` (for a new data file: op 0 and the
    /// cluster's root checksum).
    pub fn new(op: u64, checksum: u128) -> HashChain {
        HashChain { op, checksum }
    }

    /// The op of the head.
    pub fn op(&self) -> u64 {
        self.op
    }

    /// Checks that `header` with `body` is the next link and moves the head to it.
    pub fn check(&mut self, header: &Header, body: &[u8]) -> Result<(), Failure> {
        let op = self.op + 1;
        if !header.valid_checksum() || !header.valid_checksum_body(body) {
            return Err(Failure::new(NAME, format!("op {op}: the prepare in the WAL fails its checksums")));
        }
        if header.command() != Some(Command::Prepare) || header.op != op {
            return Err(Failure::new(
                NAME,
                format!("op {op}: the WAL slot holds {:?} of op {}", header.command(), header.op),
            ));
        }
        if header.parent != self.checksum {
            return Err(Failure::new(
                NAME,
                format!(
                    "op {op}: parent {:#034x} is not op {}'s checksum {:#034x}",
                    header.parent, self.op, self.checksum
                ),
            ));
        }
        (self.op, self.checksum) = (op, header.checksum);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepare(op: u64, parent: u128) -> Header {
        let mut header = Header { op, parent, ..Header::new(Command::Prepare, 1) };
        header.set_body(&[]);
        header.set_checksum();
        header
    }

    #[test]
    fn a_broken_link_a_skipped_op_or_a_damaged_prepare_fails() {
        let mut chain = HashChain::new(0, 7);
        let first = prepare(1, 7);
        assert_eq!(chain.check(&first, &[]), Ok(()));
        assert_eq!(chain.op(), 1);
        let wrong_parent = prepare(2, 7);
        assert!(chain.check(&wrong_parent, &[]).expect_err("parent").message.contains("parent"));
        let skipped = prepare(3, first.checksum);
        assert!(chain.check(&skipped, &[]).expect_err("skipped").message.contains("of op 3"));
        let mut damaged = prepare(2, first.checksum);
        damaged.timestamp += 1;
        assert!(chain.check(&damaged, &[]).expect_err("damaged").message.contains("checksums"));
        assert_eq!(chain.check(&prepare(2, first.checksum), &[]), Ok(()));
    }
}
