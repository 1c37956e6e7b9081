//! The log a replica in a view change is adopting (the new primary's choice from the
//! `do_view_change` messages, or a backup's from the `start_view`): the prepare headers of its
//! newest ops, a hash chain back from its head. The replica keeps its own ops as far as they
//! match it, truncates the rest, and repairs what it lacks, accepting only prepares whose
//! checksums are the chain's. The chain is extended backwards (`headers` answers to
//! `request_headers`) one verified link at a time, down to the ops the replica already holds.

use crate::vsr::header::{Command, Header};

/// The adopted log's headers, ops `known_from..=head_op`, op `n` at `n % capacity`.
pub struct LogTarget {
    active: bool,
    head_op: u64,
    known_from: u64,
    /// The replica the log is repaired from (the one that sent it, or reported it).
    source: u8,
    headers: Vec<Header>,
}

impl LogTarget {
    /// An inactive target with room for `capacity` headers (a WAL's worth: ops further back
    /// than that cannot be repaired from a peer's WAL anyway).
    pub fn new(capacity: u64, cluster: u128) -> LogTarget {
        assert!(capacity > 0);
        LogTarget {
            active: false,
            head_op: 0,
            known_from: 1,
            source: 0,
            headers: vec![Header::new(Command::Reserved, cluster); capacity as usize],
        }
    }

    /// The most headers it holds.
    pub fn capacity(&self) -> usize {
        self.headers.len()
    }

    /// Whether a log is being adopted.
    pub fn active(&self) -> bool {
        self.active
    }

    /// Stops adopting.
    pub fn clear(&mut self) {
        self.active = false;
    }

    /// Starts adopting the log whose newest headers are `headers` (newest first, a verified
    /// chain: see [`chain_valid`]), to be repaired from replica `source`.
    pub fn reset(&mut self, source: u8, headers: &[Header]) {
        assert!(!headers.is_empty() && headers.len() <= self.headers.len());
        assert!(chain_valid(headers));
        self.active = true;
        self.source = source;
        self.head_op = headers[0].op;
        self.known_from = headers[headers.len() - 1].op;
        for header in headers {
            self.put(header);
        }
    }

    /// Starts adopting the empty log (no replica holds an op), from `source`.
    pub fn reset_empty(&mut self, source: u8) {
        self.active = true;
        self.source = source;
        self.head_op = 0;
        self.known_from = 1;
    }

    /// The replica the log is repaired from.
    pub fn source(&self) -> u8 {
        assert!(self.active);
        self.source
    }

    /// The newest op of the log.
    pub fn head_op(&self) -> u64 {
        assert!(self.active);
        self.head_op
    }

    /// The oldest op whose header is known.
    pub fn known_from(&self) -> u64 {
        assert!(self.active);
        self.known_from
    }

    /// The header of `op` in the log, if known.
    pub fn header(&self, op: u64) -> Option<&Header> {
        if !self.active || op < self.known_from || op > self.head_op {
            return None;
        }
        let header = &self.headers[(op % self.headers.len() as u64) as usize];
        assert_eq!(header.op, op);
        Some(header)
    }

    /// The checksum of `op`'s prepare in the log, if known.
    pub fn checksum(&self, op: u64) -> Option<u128> {
        self.header(op).map(|header| header.checksum)
    }

    /// Takes `header` as the next older link if it is one (the op before `known_from`, whose
    /// checksum the oldest known header names as its parent) and there is room; true if taken.
    pub fn extend(&mut self, header: &Header) -> bool {
        if !self.active || self.known_from <= 1 || header.op + 1 != self.known_from {
            return false;
        }
        if self.head_op - header.op >= self.headers.len() as u64 {
            return false;
        }
        let parent = self.header(self.known_from).expect("the oldest known header").parent;
        if header.checksum != parent || header.command() != Some(Command::Prepare) {
            return false;
        }
        self.put(header);
        self.known_from = header.op;
        true
    }

    fn put(&mut self, header: &Header) {
        let capacity = self.headers.len() as u64;
        self.headers[(header.op % capacity) as usize] = *header;
    }
}

/// True if `headers` (newest first) are prepare headers of consecutive ops, each the parent of
/// the one before it, with valid checksums: what a `do_view_change`, `start_view` or
/// `headers` body must be.
pub fn chain_valid(headers: &[Header]) -> bool {
    let valid = |header: &Header| header.valid_checksum() && header.command() == Some(Command::Prepare);
    headers.iter().all(valid)
        && headers.windows(2).all(|pair| pair[1].op + 1 == pair[0].op && pair[0].parent == pair[1].checksum)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chain(ops: std::ops::RangeInclusive<u64>) -> Vec<Header> {
        let mut parent = 7;
        let mut headers = Vec::new();
        for op in ops {
            let mut header = Header { op, parent, ..Header::new(Command::Prepare, 1) };
            header.set_body(&[]);
            header.set_checksum();
            parent = header.checksum;
            headers.push(header);
        }
        headers.reverse();
        headers
    }

    #[test]
    fn a_target_extends_backwards_only_by_verified_links() {
        let all = chain(1..=10);
        assert!(chain_valid(&all));
        let mut broken = all.clone();
        broken.swap(2, 3);
        assert!(!chain_valid(&broken));
        let mut target = LogTarget::new(8, 1);
        target.reset(2, &all[..4]);
        assert_eq!((target.head_op(), target.known_from(), target.source()), (10, 7, 2));
        assert_eq!(target.checksum(8), Some(all[2].checksum));
        assert_eq!(target.checksum(6), None);
        // Not the next link: another op, or a forged header of op 6.
        assert!(!target.extend(&all[5]));
        let mut forged = all[4];
        forged.timestamp += 1;
        forged.set_checksum();
        assert!(!target.extend(&forged));
        for header in &all[4..8] {
            assert!(target.extend(header));
        }
        assert!(!target.extend(&all[8]), "no room: 8 headers, ops 3..=10");
        assert_eq!(target.checksum(3), Some(all[7].checksum));
    }
}
