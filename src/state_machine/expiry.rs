//! The queue of pending transfers waiting to expire, ordered by `(expires_at, timestamp)`.
//!
//! A binary heap with a fixed capacity. Resolving a pending transfer (post, void, chain
//! rollback) does not search the heap; the stale entry stays until it reaches the top or until
//! the heap needs room, when stale entries are swept out in one pass.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// One queued expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Expiry {
    /// When the transfer expires (ns).
    pub expires_at: u64,
    /// The pending transfer's timestamp (the tie-breaker, and a check against slot reuse).
    pub timestamp: u64,
    /// The pending transfer's index in the transfer array.
    pub index: u32,
}

/// A fixed-capacity min-heap of [`Expiry`] entries.
pub struct ExpiryQueue {
    heap: BinaryHeap<Reverse<Expiry>>,
    count_max: usize,
}

impl ExpiryQueue {
    /// A queue holding at most `count_max` entries.
    pub fn new(count_max: usize) -> ExpiryQueue {
        ExpiryQueue { heap: BinaryHeap::with_capacity(count_max), count_max }
    }

    /// The number of entries, stale ones included.
    pub fn count(&self) -> usize {
        self.heap.len()
    }

    /// The earliest `expires_at` queued.
    pub fn peek(&self) -> Option<u64> {
        self.heap.peek().map(|entry| entry.0.expires_at)
    }

    /// Makes room for `count` more entries, sweeping out entries for which `valid` is false if
    /// needed; returns false if even then there is no room.
    pub fn reserve(&mut self, count: usize, valid: impl Fn(&Expiry) -> bool) -> bool {
        if self.heap.len() + count <= self.count_max {
            return true;
        }
        self.heap.retain(|entry| valid(&entry.0));
        self.heap.len() + count <= self.count_max
    }

    /// Queues an expiry; room must have been reserved.
    pub fn push(&mut self, entry: Expiry) {
        assert!(self.heap.len() < self.count_max);
        self.heap.push(Reverse(entry));
    }

    /// Removes and returns the earliest entry if it is due at `timestamp`.
    pub fn pop_due(&mut self, timestamp: u64) -> Option<Expiry> {
        let top = self.heap.peek()?;
        if top.0.expires_at > timestamp {
            return None;
        }
        self.heap.pop().map(|entry| entry.0)
    }
}
