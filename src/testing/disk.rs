//! A replica's simulated disk as the harness holds it: a shared handle to one [`SimStorage`].
//!
//! `ReplicaState::open` takes its storage by value and drops it when it fails, so a crash in
//! the middle of recovery would take the disk with it. The replica gets one handle and the
//! harness keeps another: after any crash (live or during recovery) the harness still has the
//! disk, with its pending writes, to restart and reopen.

use std::cell::RefCell;
use std::rc::Rc;

use crate::constants::SECTOR_SIZE;
use crate::storage::{CrashMode, SimStorage, Storage, StorageError, Write};

/// A fault of a disk at rest ([`SimDisk::damage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DiskDamage {
    /// One bit of the sector flipped.
    Flip,
    /// The sector zeroed.
    Zero,
    /// The sector overwritten with the one at this offset.
    CopyFrom(u64),
}

/// A cloneable handle to one simulated disk; every clone is the same disk.
#[derive(Clone, Debug)]
pub struct SimDisk {
    storage: Rc<RefCell<SimStorage>>,
}

impl SimDisk {
    /// A handle to `storage`.
    pub fn new(storage: SimStorage) -> SimDisk {
        SimDisk { storage: Rc::new(RefCell::new(storage)) }
    }

    /// Runs `f` on the disk itself (to arm crashes, restart, peek or read its latency).
    pub fn with<T>(&self, f: impl FnOnce(&mut SimStorage) -> T) -> T {
        f(&mut self.storage.borrow_mut())
    }

    /// Arms a crash `steps_from_now` steps (writes and syncs) from now.
    pub fn crash_after(&self, steps_from_now: u64) {
        self.with(|storage| {
            let step = storage.steps() + steps_from_now;
            storage.crash_at_step(step);
        });
    }

    /// Disarms a crash armed and not yet happened.
    pub fn crash_disarm(&self) {
        self.with(|storage| storage.crash_disarm());
    }

    /// Whether an armed crash has happened.
    pub fn crashed(&self) -> bool {
        self.with(|storage| storage.crashed())
    }

    /// Damages the disk at rest, as a fault the replica finds only when it reads: one bit
    /// flipped in the sector at `offset` (`Damage::Flip`), the sector zeroed (a write lost
    /// on a fresh area), or the sector at `from` copied over it (a misdirected write).
    pub fn damage(&self, offset: u64, damage: DiskDamage) {
        let sector = SECTOR_SIZE as u64;
        self.with(|storage| match damage {
            DiskDamage::Flip => storage.corrupt(offset, sector),
            DiskDamage::Zero => storage.zero(offset, sector),
            DiskDamage::CopyFrom(from) => storage.copy_sector(from, offset),
        });
    }

    /// Restarts the disk after a crash: pending writes are kept, lost or torn as `mode` says.
    pub fn restart(&self, mode: CrashMode) {
        self.with(|storage| storage.restart(mode));
    }

    /// The simulated time spent in I/O since the last call.
    pub fn take_elapsed_ns(&self) -> u64 {
        self.with(|storage| storage.take_elapsed_ns())
    }

    /// What reads see at `offset`, without faults, steps or latency.
    pub fn peek(&self, offset: u64, buffer: &mut [u8]) {
        self.with(|storage| storage.peek(offset, buffer));
    }

    /// What the replica meant to store at `offset` ([`SimStorage::peek_intended`]).
    pub fn peek_intended(&self, offset: u64, buffer: &mut [u8]) {
        self.with(|storage| storage.peek_intended(offset, buffer));
    }

    /// True if a write fault corrupted a sector of `offset..offset + size` that has not been
    /// written since ([`SimStorage::write_faulted`]).
    pub fn write_faulted(&self, offset: u64, size: u64) -> bool {
        self.with(|storage| storage.write_faulted(offset, size))
    }
}

impl Storage for SimDisk {
    fn size(&self) -> u64 {
        self.storage.borrow().size()
    }

    fn read(&mut self, offset: u64, buffer: &mut [u8]) -> Result<(), StorageError> {
        self.storage.borrow_mut().read(offset, buffer)
    }

    fn write(&mut self, writes: &[Write<'_>]) -> Result<(), StorageError> {
        self.storage.borrow_mut().write(writes)
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.storage.borrow_mut().sync()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::SECTOR_SIZE;
    use crate::storage::{AlignedBuffer, SimFaults};

    #[test]
    fn the_harness_keeps_the_disk_and_its_pending_writes_after_the_replica_drops_its_handle() {
        let disk = SimDisk::new(SimStorage::new(4 * SECTOR_SIZE as u64, 1, SimFaults::default()));
        let mut replica_handle = disk.clone();
        let mut data = AlignedBuffer::new(SECTOR_SIZE);
        data.fill(7);
        replica_handle.write(&[Write { offset: 0, data: &data }]).expect("no crash armed");
        disk.crash_after(0);
        assert!(matches!(replica_handle.sync(), Err(StorageError::Crashed)));
        drop(replica_handle);
        assert!(disk.crashed());
        disk.restart(CrashMode::KeepAll);
        let mut read = AlignedBuffer::new(SECTOR_SIZE);
        disk.peek(0, &mut read);
        assert_eq!(read[0], 7, "the unsynced write was kept by the crash");
    }
}
