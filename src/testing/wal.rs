//! Reads prepares back from a simulated disk's WAL, for the checkers: what the replica logged,
//! byte for byte, without going through the replica (and without faults or simulated time).

use super::disk::SimDisk;
use crate::constants::{HEADER_SIZE, SECTOR_SIZE};
use crate::storage::layout::Layout;
use crate::storage::AlignedBuffer;
use crate::vsr::header::Header;

/// The redundant header in op `op`'s slot of the headers ring (whatever it holds).
pub fn read_redundant_header(disk: &SimDisk, layout: &Layout, op: u64) -> Header {
    let slot = op % layout.journal_slot_count;
    let offset = layout.wal_headers_offset() + slot * HEADER_SIZE as u64;
    let sector = offset - offset % SECTOR_SIZE as u64;
    let mut buffer = AlignedBuffer::new(SECTOR_SIZE);
    disk.peek(sector, &mut buffer);
    let within = (offset - sector) as usize;
    bytemuck::pod_read_unaligned(&buffer[within..within + HEADER_SIZE])
}

/// The prepare in op `op`'s WAL slot (whatever it holds): its header and body. A header whose
/// size is out of range yields the rest of the slot as its body, which then fails its checksum.
pub fn read_prepare(disk: &SimDisk, layout: &Layout, op: u64) -> (Header, Vec<u8>) {
    read_prepare_with(layout, op, |offset, buffer| disk.peek(offset, buffer))
}

/// [`read_prepare`] of what the replica wrote, as it meant to write it: a write fault's
/// corruption (which the replica cannot know of until it reads the slot) is not shown.
pub fn read_prepare_intended(disk: &SimDisk, layout: &Layout, op: u64) -> (Header, Vec<u8>) {
    read_prepare_with(layout, op, |offset, buffer| disk.peek_intended(offset, buffer))
}

/// True if a write fault corrupted op `op`'s WAL slot, prepare or redundant header, since it
/// was last written.
pub fn slot_write_faulted(disk: &SimDisk, layout: &Layout, op: u64) -> bool {
    let slot = op % layout.journal_slot_count;
    let header = layout.wal_headers_offset() + slot * HEADER_SIZE as u64;
    let header_sector = header - header % SECTOR_SIZE as u64;
    disk.write_faulted(layout.wal_prepare_offset(slot), layout.message_size_max)
        || disk.write_faulted(header_sector, SECTOR_SIZE as u64)
}

fn read_prepare_with(layout: &Layout, op: u64, mut peek: impl FnMut(u64, &mut [u8])) -> (Header, Vec<u8>) {
    let offset = layout.wal_prepare_offset(op % layout.journal_slot_count);
    let mut buffer = AlignedBuffer::new(layout.message_size_max as usize);
    peek(offset, &mut buffer[..SECTOR_SIZE]);
    let header: Header = bytemuck::pod_read_unaligned(&buffer[..HEADER_SIZE]);
    let size = (header.size as usize).clamp(HEADER_SIZE, layout.message_size_max as usize);
    let size_padded = size.next_multiple_of(SECTOR_SIZE);
    if size_padded > SECTOR_SIZE {
        peek(offset + SECTOR_SIZE as u64, &mut buffer[SECTOR_SIZE..size_padded]);
    }
    (header, buffer[HEADER_SIZE..size].to_vec())
}
