//! Which client-reply slots must still reach the disk, for the replies write stream.
//!
//! Committing a client's request leaves its reply in the session's reply buffer; the slot is
//! queued here and written later, straight from that buffer, by a stage of the replies stream
//! ([`Stream::Replies`]). While a slot's write is in flight its buffer must not change, so a
//! commit that would overwrite it waits ([`ReplyWrites::in_flight`]). A slot queued again before
//! it was written is written once, with its newest reply: the session names only that one.
//!
//! No sync of its own: a reply only has to be durable once a checkpoint covers its op (until
//! then the WAL regenerates it), so a checkpoint's final sync waits until every reply of the
//! ops it covers is written ([`ReplyWrites::written_through`]).
//!
//! [`Stream::Replies`]: super::write_stage::Stream::Replies

/// The reply slots queued and in flight.
pub struct ReplyWrites {
    /// Slots whose newest reply is not yet written, in commit order.
    queued: Vec<usize>,
    queued_flags: Vec<bool>,
    /// Slots the stage in flight writes.
    in_flight: Vec<usize>,
    in_flight_flags: Vec<bool>,
    stage_in_flight: bool,
    /// The newest op whose commit queued a slot.
    queued_op: u64,
    /// The newest op whose reply the stage in flight covers (every slot queued up to it).
    staged_op: u64,
    /// Every reply of an op up to this is written.
    written_op: u64,
}

impl ReplyWrites {
    /// Nothing queued, for `slot_count` sessions, with every reply up to `op` written.
    pub fn new(slot_count: usize, op: u64) -> ReplyWrites {
        ReplyWrites {
            queued: Vec::with_capacity(slot_count),
            queued_flags: vec![false; slot_count],
            in_flight: Vec::with_capacity(slot_count),
            in_flight_flags: vec![false; slot_count],
            stage_in_flight: false,
            queued_op: op,
            staged_op: op,
            written_op: op,
        }
    }

    /// Queues `slot`, whose reply op `op` just changed (its buffer must not be in flight).
    pub fn queue(&mut self, slot: usize, op: u64) {
        assert!(!self.in_flight_flags[slot], "a reply buffer changed while its write was in flight");
        assert!(op > self.queued_op);
        self.queued_op = op;
        if !self.queued_flags[slot] {
            self.queued_flags[slot] = true;
            self.queued.push(slot);
        }
    }

    /// Queues `slot`, whose reply was restored from a peer (an older op's, unchanged: no commit
    /// waits for it). Its buffer must not be in flight.
    pub fn queue_restored(&mut self, slot: usize) {
        assert!(!self.in_flight_flags[slot], "a reply buffer changed while its write was in flight");
        if !self.queued_flags[slot] {
            self.queued_flags[slot] = true;
            self.queued.push(slot);
        }
    }

    /// True if `slot`'s buffer is being written (a commit that changes it must wait).
    pub fn in_flight(&self, slot: usize) -> bool {
        self.in_flight_flags[slot]
    }

    /// True if a stage is in flight.
    pub fn stage_in_flight(&self) -> bool {
        self.stage_in_flight
    }

    /// Begins a stage of every queued slot, if any: returns them (their buffers are frozen
    /// until [`ReplyWrites::stage_end`]).
    pub fn stage_begin(&mut self) -> Option<&[usize]> {
        assert!(!self.stage_in_flight, "one replies stage at a time");
        if self.queued.is_empty() {
            return None;
        }
        assert!(self.in_flight.is_empty());
        std::mem::swap(&mut self.queued, &mut self.in_flight);
        for slot in &self.in_flight {
            assert!(self.queued_flags[*slot]);
            self.queued_flags[*slot] = false;
            self.in_flight_flags[*slot] = true;
        }
        self.stage_in_flight = true;
        self.staged_op = self.queued_op;
        Some(&self.in_flight)
    }

    /// Ends the stage in flight, whose writes succeeded.
    pub fn stage_end(&mut self) {
        assert!(self.stage_in_flight);
        for slot in self.in_flight.drain(..) {
            self.in_flight_flags[slot] = false;
        }
        self.stage_in_flight = false;
        assert!(self.staged_op >= self.written_op);
        self.written_op = self.staged_op;
    }

    /// True if every reply of an op up to `op` is written.
    pub fn written_through(&self, op: u64) -> bool {
        self.written_op >= op || (self.queued.is_empty() && !self.stage_in_flight)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_queued_twice_is_written_once_and_ops_are_covered_only_once_written() {
        let mut replies = ReplyWrites::new(4, 10);
        assert!(replies.written_through(10) && replies.written_through(99), "nothing queued");
        assert!(replies.stage_begin().is_none());
        replies.queue(2, 11);
        replies.queue(2, 12);
        replies.queue(0, 13);
        assert!(!replies.written_through(11));
        assert_eq!(replies.stage_begin(), Some(&[2, 0][..]));
        assert!(replies.in_flight(2) && replies.in_flight(0) && !replies.in_flight(1));
        replies.queue(1, 14);
        assert!(!replies.written_through(13), "in flight is not written");
        replies.stage_end();
        assert!(replies.written_through(13));
        assert!(!replies.written_through(14), "queued after the stage began");
        assert_eq!(replies.stage_begin(), Some(&[1][..]));
        replies.stage_end();
        assert!(replies.written_through(14) && replies.written_through(1000));
    }

    #[test]
    #[should_panic(expected = "in flight")]
    fn changing_a_reply_whose_write_is_in_flight_is_a_bug() {
        let mut replies = ReplyWrites::new(2, 0);
        replies.queue(1, 1);
        replies.stage_begin();
        replies.queue(1, 2);
    }
}
