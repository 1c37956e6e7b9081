//! Each account's transfers in timestamp order, for `get_account_transfers` and
//! `get_account_balances`: a chain of fixed-size chunks of transfer indexes per account, from a
//! pool allocated once.
//!
//! Why chunks: appending a transfer touches only the tail chunk of each of its two accounts (one
//! cache line each), never an older transfer; walking an account's transfers in either direction
//! reads 13 indexes per cache line; and skipping to a timestamp range looks at one transfer per
//! chunk. Chunks are only ever freed by rolling back the newest transfers, so the pool is a bump
//! allocator whose top is exactly the chunk a rollback frees.

use crate::types::Transfer;

/// Transfer indexes per chunk: with the three header words, a chunk is one 64-byte cache line.
const CHUNK_ENTRIES: usize = 13;

/// "No chunk".
const NONE: u32 = u32::MAX;

#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, bytemuck::Zeroable)]
struct Chunk {
    prev: u32,
    next: u32,
    count: u32,
    entries: [u32; CHUNK_ENTRIES],
}

const _: () = assert!(core::mem::size_of::<Chunk>() == 64);

/// The first and last chunk of one account's list.
#[derive(Clone, Copy, Debug, bytemuck::Zeroable)]
struct Ends {
    first: u32,
    last: u32,
}

/// The transfer lists of every account.
pub struct AccountTransfers {
    chunks: Vec<Chunk>,
    ends: Vec<Ends>,
}

impl AccountTransfers {
    /// Lists for up to `accounts_max` accounts holding up to `transfers_max` transfers (each
    /// transfer is in two lists; every chunk but an account's last is full).
    pub fn new(accounts_max: usize, transfers_max: usize) -> AccountTransfers {
        let chunks_max = (2 * transfers_max).div_ceil(CHUNK_ENTRIES) + accounts_max;
        assert!(chunks_max < NONE as usize);
        AccountTransfers { chunks: Vec::with_capacity(chunks_max), ends: Vec::with_capacity(accounts_max) }
    }

    /// Commits the memory of both tables now (see `StateMachine::prefault`).
    pub fn prefault(&mut self) {
        super::huge_pages(&self.chunks);
        super::touch(&mut self.chunks);
        super::touch(&mut self.ends);
    }

    /// Adds an empty list for a new account (accounts are numbered in creation order).
    pub fn account_push(&mut self) {
        assert!(self.ends.len() < self.ends.capacity());
        self.ends.push(Ends { first: NONE, last: NONE });
    }

    /// Removes the newest account's list, which must be empty.
    pub fn account_pop(&mut self) {
        let ends = self.ends.pop().expect("an account to remove");
        assert_eq!(ends.first, NONE);
    }

    /// Appends `transfer` (the newest transfer) to `account`'s list.
    #[inline]
    pub fn push(&mut self, account: usize, transfer: u32) {
        let last = self.ends[account].last;
        if last != NONE {
            let chunk = &mut self.chunks[last as usize];
            if (chunk.count as usize) < CHUNK_ENTRIES {
                chunk.entries[chunk.count as usize] = transfer;
                chunk.count += 1;
                return;
            }
        }
        assert!(self.chunks.len() < self.chunks.capacity(), "chunk pool sized from transfers_max");
        let index = self.chunks.len() as u32;
        let mut entries = [NONE; CHUNK_ENTRIES];
        entries[0] = transfer;
        self.chunks.push(Chunk { prev: last, next: NONE, count: 1, entries });
        if last == NONE {
            self.ends[account].first = index;
        } else {
            self.chunks[last as usize].next = index;
        }
        self.ends[account].last = index;
    }

    /// Removes `transfer`, which must be the last entry of `account`'s list (rollback). Pops
    /// must come in the reverse order of pushes, so that a freed chunk is the pool's newest.
    pub fn pop(&mut self, account: usize, transfer: u32) {
        let last = self.ends[account].last;
        assert!(last != NONE);
        let chunk = &mut self.chunks[last as usize];
        assert_eq!(chunk.entries[chunk.count as usize - 1], transfer);
        chunk.count -= 1;
        chunk.entries[chunk.count as usize] = NONE;
        if chunk.count > 0 {
            return;
        }
        let prev = chunk.prev;
        // Only the newest transfers are rolled back, so their chunks are the newest allocated.
        assert_eq!(last as usize, self.chunks.len() - 1);
        self.chunks.pop();
        self.ends[account].last = prev;
        if prev == NONE {
            self.ends[account].first = NONE;
        } else {
            self.chunks[prev as usize].next = NONE;
        }
    }

    /// Hints the CPU to load the list ends of `account`.
    #[inline]
    pub fn prefetch_ends(&self, account: usize) {
        super::id_table::prefetch(self.ends.as_ptr().wrapping_add(account));
    }

    /// Hints the CPU to load the tail chunk of `account` (its ends must be cached by now).
    #[inline]
    pub fn prefetch_tail(&self, account: usize) {
        let last = self.ends[account].last;
        if last != NONE {
            super::id_table::prefetch(self.chunks.as_ptr().wrapping_add(last as usize));
        }
    }

    /// A cursor over `account`'s transfers within `[timestamp_min, timestamp_max]`, oldest first
    /// (or newest first if `reversed`). It may yield transfers outside the range at its far end;
    /// the caller stops there.
    pub fn cursor(
        &self,
        account: usize,
        reversed: bool,
        transfers: &[Transfer],
        timestamp_min: u64,
        timestamp_max: u64,
    ) -> Cursor {
        let ends = self.ends[account];
        let timestamp =
            |chunk: &Chunk, position: usize| transfers[chunk.entries[position] as usize].timestamp;
        if reversed {
            // Skip whole chunks that start after the range.
            let mut chunk = ends.last;
            while chunk != NONE && timestamp(&self.chunks[chunk as usize], 0) > timestamp_max {
                chunk = self.chunks[chunk as usize].prev;
            }
            let position = if chunk == NONE { 0 } else { self.chunks[chunk as usize].count as usize };
            Cursor { chunk, position, reversed }
        } else {
            // Skip whole chunks that end before the range.
            let mut chunk = ends.first;
            while chunk != NONE {
                let current = &self.chunks[chunk as usize];
                if timestamp(current, current.count as usize - 1) >= timestamp_min {
                    break;
                }
                chunk = current.next;
            }
            Cursor { chunk, position: 0, reversed }
        }
    }

    /// The next transfer index of `cursor`, if any.
    #[inline]
    pub fn next(&self, cursor: &mut Cursor) -> Option<u32> {
        loop {
            if cursor.chunk == NONE {
                return None;
            }
            let chunk = &self.chunks[cursor.chunk as usize];
            if cursor.reversed {
                if cursor.position > 0 {
                    cursor.position -= 1;
                    return Some(chunk.entries[cursor.position]);
                }
                cursor.chunk = chunk.prev;
                cursor.position =
                    if chunk.prev == NONE { 0 } else { self.chunks[chunk.prev as usize].count as usize };
            } else {
                if cursor.position < chunk.count as usize {
                    cursor.position += 1;
                    return Some(chunk.entries[cursor.position - 1]);
                }
                cursor.chunk = chunk.next;
                cursor.position = 0;
            }
        }
    }
}

/// A position in one account's list.
#[derive(Clone, Copy, Debug)]
pub struct Cursor {
    chunk: u32,
    position: usize,
    reversed: bool,
}
