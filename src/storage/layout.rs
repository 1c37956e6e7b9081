//! The zones of the data file and their offsets (`docs/data-file.md`): superblock copies, the
//! WAL headers ring, the WAL prepares ring, the client replies, and the grid. Every offset and
//! size is a multiple of the sector size; the grid starts at a multiple of the block size.

use crate::constants::{HEADER_SIZE, MESSAGE_SIZE_MAX, SECTOR_SIZE};

/// The number of superblock copies (written one by one, so a torn write spares the others).
pub const SUPERBLOCK_COPIES: u64 = 4;

/// The space of one superblock copy.
pub const SUPERBLOCK_COPY_SIZE: u64 = 8 * 1024;

/// The size of a client reply slot. Replies are not limited by the request size (a lookup of
/// 8,189 ids in a 128 KiB request returns 1 MiB of accounts), so every slot holds the largest
/// message.
pub use crate::constants::REPLY_SIZE_MAX;

/// The sizes that determine a data file's zones; fixed at format time and stored in the
/// superblock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// WAL slots (one prepare each).
    pub journal_slot_count: u64,
    /// The size of a WAL slot: the largest request (prepare) this data file takes.
    pub message_size_max: u64,
    /// Client reply slots.
    pub clients_max: u64,
    /// The size of a grid block.
    pub block_size: u64,
    /// The number of grid blocks.
    pub grid_block_count: u64,
}

impl Layout {
    /// Checks the relations between the sizes (programmer errors: the CLI validates input).
    pub fn assert_valid(&self) {
        assert!(self.journal_slot_count >= 4);
        assert!(self.message_size_max >= (HEADER_SIZE + SECTOR_SIZE) as u64);
        assert!(self.message_size_max.is_multiple_of(SECTOR_SIZE as u64));
        assert!(self.message_size_max <= MESSAGE_SIZE_MAX as u64);
        assert!(self.block_size >= SECTOR_SIZE as u64 && self.block_size.is_power_of_two());
        assert!(self.clients_max >= 1);
    }

    /// The offset of superblock copy `copy`.
    pub fn superblock_offset(copy: u64) -> u64 {
        assert!(copy < SUPERBLOCK_COPIES);
        copy * SUPERBLOCK_COPY_SIZE
    }

    /// The offset of the WAL headers ring.
    pub fn wal_headers_offset(&self) -> u64 {
        SUPERBLOCK_COPIES * SUPERBLOCK_COPY_SIZE
    }

    /// The size of the WAL headers ring (whole sectors).
    pub fn wal_headers_size(&self) -> u64 {
        (self.journal_slot_count * HEADER_SIZE as u64).next_multiple_of(SECTOR_SIZE as u64)
    }

    /// The offset of the WAL prepares ring.
    pub fn wal_prepares_offset(&self) -> u64 {
        self.wal_headers_offset() + self.wal_headers_size()
    }

    /// The offset of WAL slot `slot`.
    pub fn wal_prepare_offset(&self, slot: u64) -> u64 {
        assert!(slot < self.journal_slot_count);
        self.wal_prepares_offset() + slot * self.message_size_max
    }

    /// The offset of the client replies zone.
    pub fn client_replies_offset(&self) -> u64 {
        self.wal_prepares_offset() + self.journal_slot_count * self.message_size_max
    }

    /// The offset of client reply slot `slot`.
    pub fn client_reply_offset(&self, slot: u64) -> u64 {
        assert!(slot < self.clients_max);
        self.client_replies_offset() + slot * REPLY_SIZE_MAX
    }

    /// The offset of the grid (block address 1 is the grid's first block).
    pub fn grid_offset(&self) -> u64 {
        (self.client_replies_offset() + self.clients_max * REPLY_SIZE_MAX).next_multiple_of(self.block_size)
    }

    /// The offset of grid block `address` (1-based: 0 means "no block").
    pub fn block_offset(&self, address: u64) -> u64 {
        assert!(address >= 1 && address <= self.grid_block_count);
        self.grid_offset() + (address - 1) * self.block_size
    }

    /// The size of the whole data file.
    pub fn file_size(&self) -> u64 {
        self.grid_offset() + self.grid_block_count * self.block_size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zones_are_ordered_aligned_and_disjoint() {
        let layout = Layout {
            journal_slot_count: 1024,
            message_size_max: 1024 * 1024,
            clients_max: 64,
            block_size: 64 * 1024,
            grid_block_count: 100,
        };
        layout.assert_valid();
        assert_eq!(layout.wal_headers_offset(), 32 * 1024);
        assert_eq!(layout.wal_headers_size(), 256 * 1024);
        assert_eq!(layout.wal_prepares_offset(), 288 * 1024);
        assert_eq!(layout.client_replies_offset(), 288 * 1024 + (1 << 30));
        assert_eq!(layout.grid_offset() % (64 * 1024), 0);
        assert!(layout.grid_offset() >= layout.client_replies_offset() + 64 * (1 << 20));
        assert_eq!(layout.file_size(), layout.grid_offset() + 100 * 64 * 1024);
        assert_eq!(layout.block_offset(1), layout.grid_offset());
        for offset in
            [layout.wal_prepare_offset(1023), layout.client_reply_offset(63), layout.block_offset(100)]
        {
            assert_eq!(offset % SECTOR_SIZE as u64, 0);
        }
    }
}
