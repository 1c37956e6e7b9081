//! A deterministic, in-memory [`Storage`] for tests and the simulator.
//!
//! The image has two layers, as a disk behind a page cache does: the *durable* image (what
//! survives a crash) and the *pending* writes that completed since the last `sync` (what a crash
//! may lose, keep, tear at sector boundaries or reorder). Reads see the pending writes on top of
//! the durable image.
//!
//! Two kinds of trouble are injected, both driven only by seeds so that a failing run is
//! reproduced by its seed alone:
//!
//! * Storage faults ([`SimFaults`]): failed reads, corrupted reads, corrupted writes and
//!   misdirected writes, each with a configured probability and only inside an optional faulty
//!   area, so that a test can guarantee that some zones stay clean (as TigerBeetle's fault atlas
//!   keeps one good copy of everything in the cluster).
//! * Crashes: every write of a batch and every sync is one *step*; [`SimStorage::crash_at_step`]
//!   stops the process exactly before a chosen step, so a test can explore every crash point,
//!   and [`SimStorage::restart`] decides per [`CrashMode`] which unsynced writes reached the disk.
//!
//! For the simulator it also models what a real disk does that is not a fault ([`SimLatency`]):
//! each I/O takes simulated time (added up for the caller's clock, [`SimStorage::take_elapsed_ns`]),
//! and the writes of one batch may complete in any order, so a crash in the middle of a batch
//! leaves any subset of it written, not only a prefix.

use std::ops::Range;

use super::{assert_aligned, Storage, StorageError, Write};
use crate::constants::SECTOR_SIZE;
use crate::prng::Prng;

/// The sector size as a file offset, to keep offset arithmetic in `u64`.
const SECTOR_SIZE_U64: u64 = SECTOR_SIZE as u64;

/// Mixed into the seed of the latency generator, so that it differs from the fault generator's.
const PRNG_LATENCY_SALT: u64 = 0x1A7E_4C70_0000_0001;

/// Which storage faults [`SimStorage`] injects, and where. The default injects none.
///
/// Probabilities are in parts per million ([`SimFaults::PPM_MAX`] = always) and apply per I/O that
/// is eligible: one that touches the faulty area (for a misdirected write: one that lies wholly
/// inside it and has somewhere else inside it to land).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimFaults {
    /// Probability that a read fails with [`StorageError::ReadFault`].
    pub read_fault_ppm: u32,
    /// Probability that a read returns one sector with one bit flipped. The stored data is
    /// intact: the error is transient, and a second read may return the right bytes.
    pub read_corruption_ppm: u32,
    /// Probability that one sector of a write is stored with one bit flipped.
    pub write_corruption_ppm: u32,
    /// Probability that a write lands at another sector-aligned offset of the faulty area
    /// instead of its own, which keeps its old content.
    pub write_misdirection_ppm: u32,
    /// The byte range (sector-aligned) that faults may touch; `None` means the whole storage.
    /// No fault ever changes a byte outside it, nor fails a read that lies wholly outside it.
    pub faulty_area: Option<Range<u64>>,
    /// The byte range (sector-aligned) that write faults (corruption, misdirection) may touch
    /// instead, if given: `faulty_area` then bounds the read faults only.
    pub write_faulty_area: Option<Range<u64>>,
    /// The byte range (sector-aligned) that misdirected writes may come from and land in, if
    /// narrower than the write faults' area.
    pub misdirection_area: Option<Range<u64>>,
    /// Probability that a write lying wholly inside `loss_area` is lost: it completes, and
    /// nothing of it is stored (its sectors keep their old content).
    pub write_loss_ppm: u32,
    /// Where writes may be lost (`None`: nowhere).
    pub loss_area: Option<Range<u64>>,
}

/// How many faults of each kind [`SimStorage`] has injected, so that a test can check that its
/// faults really happened (a check that cannot fail is no check).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimFaultCounts {
    /// Reads failed with [`StorageError::ReadFault`].
    pub read_faults: u64,
    /// Reads that returned a flipped bit.
    pub read_corruptions: u64,
    /// Writes stored with a flipped bit.
    pub write_corruptions: u64,
    /// Writes stored at the wrong offset.
    pub write_misdirections: u64,
    /// Writes lost.
    pub write_losses: u64,
}

/// What happens at a crash to the writes that completed but were not synced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrashMode {
    /// None of them reached the disk.
    LoseAll,
    /// All of them reached the disk, in the order they were written.
    KeepAll,
    /// Each of them, independently, was lost, kept or torn (a random subset of its sectors
    /// reached the disk, the others keep their old content), chosen by `seed`. Because the
    /// choices are independent, a later write may survive while an earlier one is lost, as a
    /// disk that reorders unsynced writes allows.
    Torn {
        /// The seed of the choices; the same seed makes the same choices.
        seed: u64,
    },
}

/// The simulated time each I/O takes, and whether the writes of a batch complete in submission
/// order. The default takes no time and keeps the order (what the crash tests expect).
///
/// Latencies are drawn uniformly from `min..=max` per I/O (in ns) from a generator of their own,
/// so that turning them on does not change which faults a seed injects.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimLatency {
    /// The fastest read.
    pub read_ns_min: u64,
    /// The slowest read.
    pub read_ns_max: u64,
    /// The fastest write (one write of a batch).
    pub write_ns_min: u64,
    /// The slowest write.
    pub write_ns_max: u64,
    /// The fastest `fdatasync`.
    pub sync_ns_min: u64,
    /// The slowest `fdatasync`.
    pub sync_ns_max: u64,
    /// Whether the writes of one batch complete in a seeded random order (as a disk with a queue
    /// may complete them) rather than in submission order. Steps are counted in completion
    /// order, so a crash armed in the middle of a batch leaves a random subset of it written.
    pub writes_reordered: bool,
}

impl SimLatency {
    /// Asserts that every range is ordered (a programmer error otherwise).
    fn assert_valid(&self) {
        assert!(self.read_ns_min <= self.read_ns_max, "read latency range {self:?}");
        assert!(self.write_ns_min <= self.write_ns_max, "write latency range {self:?}");
        assert!(self.sync_ns_min <= self.sync_ns_max, "sync latency range {self:?}");
    }
}

/// A write that completed after the last sync, as it was stored (after any injected fault).
#[derive(Clone, Debug)]
struct PendingWrite {
    offset: u64,
    data: Vec<u8>,
}

impl SimFaults {
    /// The denominator of every probability: a fault of this many ppm always happens.
    pub const PPM_MAX: u32 = 1_000_000;
}

/// A deterministic, in-memory [`Storage`] with injected faults and crashes; see the module
/// documentation. Cloning it forks the whole state, including the seeded generator, so that a
/// test can resolve one crash point under several [`CrashMode`]s.
#[derive(Clone, Debug)]
pub struct SimStorage {
    /// What survives a crash.
    durable: Vec<u8>,
    /// The durable image with every pending write applied in order: what reads return. Kept
    /// whole so that a read is one copy, whatever the number of pending writes.
    visible: Vec<u8>,
    /// The writes since the last sync, oldest first; a crash decides which reach `durable`.
    pending: Vec<PendingWrite>,
    faults: SimFaults,
    counts: SimFaultCounts,
    /// Draws every injected fault and every bit that `corrupt` flips.
    prng: Prng,
    /// Steps (individual writes and syncs) done since creation or the last restart.
    steps: u64,
    /// The value of `steps` at which the next step crashes instead of happening.
    crash_step: Option<u64>,
    /// Set by the crash step; every I/O fails until `restart`.
    crashed: bool,
    latency: SimLatency,
    /// Draws latencies and completion orders only, so that they never shift the faults.
    prng_latency: Prng,
    /// Simulated time spent in I/O since the last [`SimStorage::take_elapsed_ns`].
    elapsed_ns: u64,
    /// The sectors stored corrupted (or not stored at all) by a write fault and not written since, each with what the
    /// write meant to store: what [`SimStorage::peek_intended`] shows (a checker reading back
    /// what a replica wrote), and where a running replica's damage is its own to not know of
    /// ([`SimStorage::write_faulted`]). Kept across a restart: a lost write's entry stays, and
    /// only makes a checker look away from that sector.
    write_faults: std::collections::BTreeMap<u64, Vec<u8>>,
}

impl SimStorage {
    /// The most writes that may be pending (written but not synced) at once. The replica syncs
    /// after every prepare and checkpoint step, so reaching this is a bug in the caller, and
    /// the bound keeps a runaway test from exhausting memory.
    pub const PENDING_WRITES_MAX: usize = 65_536;

    /// A zeroed storage of `size` bytes (a non-zero multiple of the sector size) whose faults
    /// are drawn from `seed`.
    pub fn new(size: u64, seed: u64, faults: SimFaults) -> SimStorage {
        assert!(size > 0 && size.is_multiple_of(SECTOR_SIZE_U64), "size {size} is not whole sectors");
        let size_usize = usize::try_from(size).expect("the simulated storage fits in memory");
        let mut storage = SimStorage {
            durable: vec![0; size_usize],
            visible: vec![0; size_usize],
            pending: Vec::new(),
            faults: SimFaults::default(),
            counts: SimFaultCounts::default(),
            prng: Prng::new(seed),
            steps: 0,
            crash_step: None,
            crashed: false,
            latency: SimLatency::default(),
            prng_latency: Prng::new(seed ^ PRNG_LATENCY_SALT),
            elapsed_ns: 0,
            write_faults: std::collections::BTreeMap::new(),
        };
        storage.set_faults(faults);
        storage
    }

    /// Replaces the injected faults (for example to re-arm them after [`SimStorage::restart`],
    /// or to heal the disk for a liveness phase with `SimFaults::default()`).
    pub fn set_faults(&mut self, faults: SimFaults) {
        for ppm in [
            faults.read_fault_ppm,
            faults.read_corruption_ppm,
            faults.write_corruption_ppm,
            faults.write_misdirection_ppm,
        ] {
            assert!(ppm <= SimFaults::PPM_MAX, "fault probability {ppm} ppm exceeds {}", SimFaults::PPM_MAX);
        }
        if let Some(area) = &faults.faulty_area {
            assert!(area.start <= area.end && area.end <= self.size(), "faulty area {area:?} out of bounds");
            assert!(
                area.start.is_multiple_of(SECTOR_SIZE_U64) && area.end.is_multiple_of(SECTOR_SIZE_U64),
                "faulty area {area:?} is not sector-aligned"
            );
        }
        self.faults = faults;
    }

    /// Sets the simulated time of each I/O and the completion order of a batch's writes. Unlike
    /// faults, these survive [`SimStorage::restart`]: they describe the disk, not a failure.
    pub fn set_latency(&mut self, latency: SimLatency) {
        latency.assert_valid();
        self.latency = latency;
    }

    /// The simulated time spent in I/O since the last call (0 with the default latency); the
    /// caller adds it to its clock.
    pub fn take_elapsed_ns(&mut self) -> u64 {
        std::mem::take(&mut self.elapsed_ns)
    }

    /// Copies the bytes that reads currently see at `offset` into `buffer`, with no fault, no
    /// step and no latency: the simulator's checkers inspect the disk through this without
    /// changing the run.
    pub fn peek(&self, offset: u64, buffer: &mut [u8]) {
        let range = self.image_range(offset, buffer.len() as u64);
        buffer.copy_from_slice(&self.visible[range]);
    }

    /// The faults currently injected.
    pub fn faults(&self) -> &SimFaults {
        &self.faults
    }

    /// How many faults of each kind have been injected since creation.
    pub fn fault_counts(&self) -> SimFaultCounts {
        self.counts
    }

    /// How many steps (individual writes of a batch, and syncs) have happened since creation or
    /// the last restart. A step that crashed did not happen and is not counted.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Arms a crash so that exactly `step` steps happen: the step that would make [`steps`]
    /// exceed `step` does not happen and fails with [`StorageError::Crashed`], and so does
    /// every later I/O until [`SimStorage::restart`]. Steps count from zero, so
    /// `crash_at_step(0)` crashes at the first write or sync; running a script of `n` steps
    /// once for each of `0..n` visits every crash point.
    ///
    /// [`steps`]: SimStorage::steps
    pub fn crash_at_step(&mut self, step: u64) {
        assert!(step >= self.steps, "step {step} has already happened ({} steps done)", self.steps);
        assert!(!self.crashed, "the storage has already crashed; restart it first");
        self.crash_step = Some(step);
    }

    /// Disarms the crash [`SimStorage::crash_at_step`] armed, if it has not happened.
    pub fn crash_disarm(&mut self) {
        assert!(!self.crashed, "the storage has already crashed; restart it first");
        self.crash_step = None;
    }

    /// Whether the armed crash has happened (every I/O fails until [`SimStorage::restart`]).
    pub fn crashed(&self) -> bool {
        self.crashed
    }

    /// Materialises a crash (whether or not an armed crash happened) and restarts the process:
    /// the pending writes reach the disk or not as `mode` decides, then the storage is usable
    /// again with no pending writes, the step counter at zero, no crash armed and no faults
    /// (re-arm them with [`SimStorage::set_faults`]), ready for a recovery run.
    ///
    /// `mode` applies everywhere, not only inside the faulty area: losing or tearing unsynced
    /// writes is what any disk may do, not a fault.
    pub fn restart(&mut self, mode: CrashMode) {
        let pending = std::mem::take(&mut self.pending);
        // Separate from `self.prng`, so that a torn crash's outcome depends only on its seed.
        let mut prng_torn = Prng::new(match mode {
            CrashMode::Torn { seed } => seed,
            CrashMode::LoseAll | CrashMode::KeepAll => 0,
        });
        // Oldest first, so that when two kept writes overlap the later one wins, as it would in
        // the page cache that wrote them back.
        for write in &pending {
            let fate = match mode {
                CrashMode::LoseAll => Fate::Lost,
                CrashMode::KeepAll => Fate::Kept,
                CrashMode::Torn { .. } => match prng_torn.below(3) {
                    0 => Fate::Lost,
                    1 => Fate::Kept,
                    _ => Fate::Torn,
                },
            };
            for sector_index in 0..write.data.len() / SECTOR_SIZE {
                let kept = match fate {
                    Fate::Lost => false,
                    Fate::Kept => true,
                    Fate::Torn => prng_torn.chance(1, 2),
                };
                if kept {
                    let source = sector_index * SECTOR_SIZE..(sector_index + 1) * SECTOR_SIZE;
                    let target = byte_range(write.offset + (sector_index * SECTOR_SIZE) as u64, SECTOR_SIZE);
                    self.durable[target].copy_from_slice(&write.data[source]);
                }
            }
        }
        // The visible image differs from the durable one only where writes were pending.
        for write in &pending {
            let range = byte_range(write.offset, write.data.len());
            self.visible[range.clone()].copy_from_slice(&self.durable[range]);
        }
        self.steps = 0;
        self.crash_step = None;
        self.crashed = false;
        self.faults = SimFaults::default();
    }

    /// Flips one bit in every sector of `offset..offset + size` (sector-aligned) in every layer
    /// — durable image and pending writes alike — so that the sectors read back corrupted
    /// whatever a later crash keeps. Ignores the faulty area: this is a targeted fault.
    pub fn corrupt(&mut self, offset: u64, size: u64) {
        let range = self.image_range(offset, size);
        for sector_offset in (range.start as u64..range.end as u64).step_by(SECTOR_SIZE) {
            let bit_index = self.prng.below(SECTOR_SIZE_U64 * 8);
            let byte_offset = sector_offset + bit_index / 8;
            let mask = 1u8 << (bit_index % 8);
            self.durable[byte_offset as usize] ^= mask;
            self.visible[byte_offset as usize] ^= mask;
            for write in &mut self.pending {
                if let Some(index) = byte_offset.checked_sub(write.offset) {
                    if let Some(byte) = write.data.get_mut(index as usize) {
                        *byte ^= mask;
                    }
                }
            }
        }
    }

    /// Zeroes `offset..offset + size` (sector-aligned) in every layer, as a lost or
    /// never-written region reads. Ignores the faulty area: this is a targeted fault.
    pub fn zero(&mut self, offset: u64, size: u64) {
        let range = self.image_range(offset, size);
        self.durable[range.clone()].fill(0);
        self.visible[range].fill(0);
        for write in &mut self.pending {
            let start = offset.max(write.offset);
            let end = (offset + size).min(write.offset + write.data.len() as u64);
            if start < end {
                write.data[(start - write.offset) as usize..(end - write.offset) as usize].fill(0);
            }
        }
    }

    /// Copies sector `from` over sector `to` (sector-aligned offsets) at rest, as a write
    /// misdirected there would have left it. No write may be pending (a restarted disk).
    /// Ignores the faulty area: this is a targeted fault.
    pub fn copy_sector(&mut self, from: u64, to: u64) {
        assert!(self.pending.is_empty(), "a misdirection at rest: no write pending");
        let from = self.image_range(from, SECTOR_SIZE_U64);
        let to = self.image_range(to, SECTOR_SIZE_U64);
        self.durable.copy_within(from.clone(), to.start);
        self.visible.copy_within(from, to.start);
    }

    /// A copy of the image that reads currently see (durable image plus pending writes).
    pub fn snapshot(&self) -> Vec<u8> {
        self.visible.clone()
    }

    /// The image that would survive a crash that loses every pending write.
    pub fn durable_image(&self) -> &[u8] {
        &self.durable
    }

    /// How many writes completed since the last sync.
    pub fn pending_writes(&self) -> usize {
        self.pending.len()
    }

    /// The image indexes of a sector-aligned, in-bounds range (a programmer error otherwise).
    fn image_range(&self, offset: u64, size: u64) -> Range<usize> {
        assert!(
            offset.is_multiple_of(SECTOR_SIZE_U64) && size.is_multiple_of(SECTOR_SIZE_U64),
            "range of {size} bytes at offset {offset} is not sector-aligned"
        );
        assert!(offset.checked_add(size).is_some_and(|end| end <= self.size()), "range out of bounds");
        byte_range(offset, size as usize)
    }

    /// The byte range where faults may be injected.
    fn faulty_area(&self) -> Range<u64> {
        self.faults.faulty_area.clone().unwrap_or(0..self.size())
    }

    /// Where write faults may strike.
    fn write_faulty_area(&self) -> Range<u64> {
        self.faults.write_faulty_area.clone().unwrap_or_else(|| self.faulty_area())
    }

    /// The sectors (as indexes) of `offset..offset + size` that lie inside the faulty area.
    /// Both ranges are sector-aligned, so their intersection is whole sectors.
    fn faulty_sectors(&self, offset: u64, size: u64) -> Range<u64> {
        sectors_within(offset, size, self.faulty_area())
    }

    /// Rolls for a fault of probability `ppm`, drawing nothing when it cannot happen so that a
    /// fault-free storage never consumes randomness.
    fn roll(&mut self, ppm: u32) -> bool {
        ppm > 0 && self.prng.chance(u64::from(ppm), u64::from(SimFaults::PPM_MAX))
    }

    /// Flips one random bit of one random sector of `sectors`, within `buffer` which holds the
    /// bytes from `offset`; returns that sector's index.
    fn flip_bit(&mut self, buffer: &mut [u8], offset: u64, sectors: Range<u64>) -> u64 {
        let sector_index = sectors.start + self.prng.below(sectors.end - sectors.start);
        let bit_index = self.prng.below(SECTOR_SIZE_U64 * 8);
        let byte_index = sector_index * SECTOR_SIZE_U64 - offset + bit_index / 8;
        buffer[byte_index as usize] ^= 1 << (bit_index % 8);
        sector_index
    }

    /// Where misdirected writes may come from and land.
    fn misdirection_area(&self) -> Range<u64> {
        self.faults.misdirection_area.clone().unwrap_or_else(|| self.write_faulty_area())
    }

    /// [`SimStorage::peek`], but showing what every write meant to store where a write fault
    /// corrupted it (the simulator's checkers read back what a replica committed this way).
    pub fn peek_intended(&self, offset: u64, buffer: &mut [u8]) {
        self.peek(offset, buffer);
        let first = offset / SECTOR_SIZE_U64;
        let last = (offset + buffer.len() as u64).div_ceil(SECTOR_SIZE_U64);
        for (sector, intended) in self.write_faults.range(first..last) {
            let at = (sector * SECTOR_SIZE_U64 - offset) as usize;
            buffer[at..at + SECTOR_SIZE].copy_from_slice(intended);
        }
    }

    /// True if a sector of `offset..offset + size` was stored corrupted by a write fault and not
    /// written since: damage the replica that wrote it cannot know of until it reads it.
    pub fn write_faulted(&self, offset: u64, size: u64) -> bool {
        let first = offset / SECTOR_SIZE_U64;
        let last = (offset + size).div_ceil(SECTOR_SIZE_U64);
        self.write_faults.range(first..last).next().is_some()
    }

    /// Adds the simulated time of one I/O drawn from `min..=max`, drawing nothing when the range
    /// is a single value.
    fn spend(&mut self, min: u64, max: u64) {
        let ns = if min == max { min } else { self.prng_latency.range_inclusive(min, max) };
        self.elapsed_ns = self.elapsed_ns.saturating_add(ns);
    }

    /// Counts one step, or crashes if it is the armed crash step.
    fn step(&mut self) -> Result<(), StorageError> {
        if self.crashed {
            return Err(StorageError::Crashed);
        }
        if self.crash_step == Some(self.steps) {
            self.crashed = true;
            return Err(StorageError::Crashed);
        }
        self.steps += 1;
        Ok(())
    }

    /// Where a write of `size` bytes meant for `offset` lands: usually `offset`, but possibly
    /// another sector-aligned offset where it fits wholly inside the faulty area.
    fn write_target(&mut self, offset: u64, size: u64) -> u64 {
        let area = self.misdirection_area();
        let inside = area.start <= offset && offset + size <= area.end;
        if !inside || self.faults.write_misdirection_ppm == 0 {
            return offset;
        }
        // `offset` is one of the candidates `area.start + k * SECTOR_SIZE` with the write
        // inside the area; draw among the others.
        let candidate_count = (area.end - area.start - size) / SECTOR_SIZE_U64 + 1;
        if candidate_count < 2 || !self.roll(self.faults.write_misdirection_ppm) {
            return offset;
        }
        self.counts.write_misdirections += 1;
        let target = area.start + self.prng.below(candidate_count - 1) * SECTOR_SIZE_U64;
        if target >= offset {
            target + SECTOR_SIZE_U64
        } else {
            target
        }
    }

    /// Stores one write as pending, injecting write faults.
    fn write_one(&mut self, offset: u64, data: &[u8]) {
        assert!(
            self.pending.len() < Self::PENDING_WRITES_MAX,
            "{} writes pending without a sync",
            Self::PENDING_WRITES_MAX
        );
        let size = data.len() as u64;
        let lossy = self
            .faults
            .loss_area
            .as_ref()
            .is_some_and(|area| area.start <= offset && offset + size <= area.end);
        if lossy && self.roll(self.faults.write_loss_ppm) {
            // Lost: nothing reaches the disk, and the write reports success.
            self.counts.write_losses += 1;
            let first = offset / SECTOR_SIZE_U64;
            for (index, sector) in data.chunks_exact(SECTOR_SIZE).enumerate() {
                self.write_faults.insert(first + index as u64, sector.to_vec());
            }
            return;
        }
        let target = self.write_target(offset, size);
        let mut stored = data.to_vec();
        let sectors = sectors_within(target, size, self.write_faulty_area());
        let first = target / SECTOR_SIZE_U64;
        let written: Vec<u64> = self
            .write_faults
            .range(first..first + size / SECTOR_SIZE_U64)
            .map(|(sector, _)| *sector)
            .collect();
        for sector in written {
            self.write_faults.remove(&sector);
        }
        if !sectors.is_empty() && self.roll(self.faults.write_corruption_ppm) {
            self.counts.write_corruptions += 1;
            let sector = self.flip_bit(&mut stored, target, sectors);
            let at = ((sector - first) * SECTOR_SIZE_U64) as usize;
            self.write_faults.insert(sector, data[at..at + SECTOR_SIZE].to_vec());
        }
        self.visible[byte_range(target, stored.len())].copy_from_slice(&stored);
        self.pending.push(PendingWrite { offset: target, data: stored });
    }
}

/// The sectors (as indexes) of `offset..offset + size` that lie inside `area`. Both ranges are
/// sector-aligned, so their intersection is whole sectors.
fn sectors_within(offset: u64, size: u64, area: Range<u64>) -> Range<u64> {
    let start = offset.max(area.start);
    let end = (offset + size).min(area.end);
    if start >= end {
        return 0..0;
    }
    start / SECTOR_SIZE_U64..end / SECTOR_SIZE_U64
}

/// What a crash does to one pending write.
#[derive(Clone, Copy)]
enum Fate {
    Lost,
    Kept,
    Torn,
}

/// `offset..offset + size` as indexes into an image (already checked to be in bounds).
fn byte_range(offset: u64, size: usize) -> Range<usize> {
    let start = offset as usize;
    start..start + size
}

impl Storage for SimStorage {
    fn size(&self) -> u64 {
        self.visible.len() as u64
    }

    fn read(&mut self, offset: u64, buffer: &mut [u8]) -> Result<(), StorageError> {
        assert_aligned(offset, buffer);
        if self.crashed {
            return Err(StorageError::Crashed);
        }
        let size = buffer.len() as u64;
        if offset.checked_add(size).is_none_or(|end| end > self.size()) {
            // As a file read past the end does: the layout expects more than the file holds.
            let read = self.size().saturating_sub(offset).min(size) as usize;
            return Err(StorageError::ShortRead { offset, size: buffer.len(), read });
        }
        self.spend(self.latency.read_ns_min, self.latency.read_ns_max);
        let sectors = self.faulty_sectors(offset, size);
        if !sectors.is_empty() && self.roll(self.faults.read_fault_ppm) {
            self.counts.read_faults += 1;
            return Err(StorageError::ReadFault { offset });
        }
        buffer.copy_from_slice(&self.visible[byte_range(offset, buffer.len())]);
        if !sectors.is_empty() && self.roll(self.faults.read_corruption_ppm) {
            self.counts.read_corruptions += 1;
            self.flip_bit(buffer, offset, sectors);
        }
        Ok(())
    }

    fn write(&mut self, writes: &[Write<'_>]) -> Result<(), StorageError> {
        let mut ranges: Vec<(u64, u64)> = Vec::with_capacity(writes.len());
        for write in writes {
            assert_aligned(write.offset, write.data);
            let end = write.offset.checked_add(write.data.len() as u64);
            assert!(
                end.is_some_and(|end| end <= self.size()),
                "write of {} bytes at offset {} is past the end ({} bytes)",
                write.data.len(),
                write.offset,
                self.size()
            );
            ranges.push((write.offset, write.offset + write.data.len() as u64));
        }
        ranges.sort_unstable();
        for pair in ranges.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "writes of one batch overlap: {:?} and {:?}", pair[0], pair[1]);
        }
        // Completion order: submission order, or a seeded shuffle (Fisher-Yates). The batch's
        // writes do not overlap, so the order matters only to a crash in the middle of it.
        let mut order: Vec<usize> = (0..writes.len()).collect();
        if self.latency.writes_reordered {
            for index in (1..order.len()).rev() {
                let other = self.prng_latency.below(index as u64 + 1) as usize;
                order.swap(index, other);
            }
        }
        for index in order {
            self.step()?;
            self.spend(self.latency.write_ns_min, self.latency.write_ns_max);
            self.write_one(writes[index].offset, writes[index].data);
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<(), StorageError> {
        self.step()?;
        self.spend(self.latency.sync_ns_min, self.latency.sync_ns_max);
        for write in self.pending.drain(..) {
            self.durable[byte_range(write.offset, write.data.len())].copy_from_slice(&write.data);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::AlignedBuffer;

    const SECTOR: u64 = SECTOR_SIZE_U64;

    /// `sector_count` sectors where sector `i` is filled with the byte `tag + i`, so that every
    /// sector of every version in a test is distinguishable.
    fn tagged(tag: u8, sector_count: usize) -> AlignedBuffer {
        let mut buffer = AlignedBuffer::new(sector_count * SECTOR_SIZE);
        for (index, sector) in buffer.chunks_mut(SECTOR_SIZE).enumerate() {
            sector.fill(tag.wrapping_add(index as u8));
        }
        buffer
    }

    /// Applies `tagged(tag, count)` at sector `sector` to a model image.
    fn model_write(image: &mut [u8], sector: u64, tag: u8, sector_count: usize) {
        let start = (sector * SECTOR) as usize;
        image[start..start + sector_count * SECTOR_SIZE].copy_from_slice(&tagged(tag, sector_count));
    }

    fn sector_of(image: &[u8], sector: u64) -> &[u8] {
        &image[(sector * SECTOR) as usize..((sector + 1) * SECTOR) as usize]
    }

    fn bits_differing(a: &[u8], b: &[u8]) -> u32 {
        a.iter().zip(b).map(|(x, y)| (x ^ y).count_ones()).sum()
    }

    /// Asserts two images are equal, naming the first differing byte (rather than printing
    /// megabytes).
    fn assert_image(actual: &[u8], expected: &[u8], context: &str) {
        assert_eq!(actual.len(), expected.len(), "{context}: image sizes differ");
        if let Some(index) = actual.iter().zip(expected).position(|(a, e)| a != e) {
            panic!(
                "{context}: images differ first at byte {index} (sector {}): {:#04x} != {:#04x}",
                index / SECTOR_SIZE,
                actual[index],
                expected[index]
            );
        }
    }

    fn write_tagged(storage: &mut SimStorage, sector: u64, tag: u8, sector_count: usize) {
        let data = tagged(tag, sector_count);
        storage.write(&[Write { offset: sector * SECTOR, data: &data }]).expect("no crash armed");
    }

    fn read_sectors(
        storage: &mut SimStorage,
        sector: u64,
        sector_count: usize,
    ) -> Result<Vec<u8>, StorageError> {
        let mut buffer = AlignedBuffer::new(sector_count * SECTOR_SIZE);
        storage.read(sector * SECTOR, &mut buffer)?;
        Ok(buffer.to_vec())
    }

    #[test]
    fn reads_see_pending_writes_before_they_are_durable() {
        let mut storage = SimStorage::new(8 * SECTOR, 1, SimFaults::default());
        write_tagged(&mut storage, 2, 0x10, 3);
        write_tagged(&mut storage, 3, 0x40, 1); // Overwrites the middle sector of the first.

        let mut expected = vec![0; 8 * SECTOR_SIZE];
        model_write(&mut expected, 2, 0x10, 3);
        model_write(&mut expected, 3, 0x40, 1);
        assert_eq!(read_sectors(&mut storage, 0, 8).expect("no faults"), expected);
        assert_eq!(read_sectors(&mut storage, 3, 1).expect("no faults"), tagged(0x40, 1).to_vec());
        assert_image(&storage.snapshot(), &expected, "visible");
        assert_image(storage.durable_image(), &[0; 8 * SECTOR_SIZE], "durable before sync");
        assert_eq!(storage.pending_writes(), 2);
        assert_eq!(storage.steps(), 2);
    }

    #[test]
    fn sync_makes_every_pending_write_durable() {
        let mut storage = SimStorage::new(8 * SECTOR, 1, SimFaults::default());
        let first = tagged(0x10, 2);
        let second = tagged(0x40, 1);
        storage
            .write(&[Write { offset: 0, data: &first }, Write { offset: 5 * SECTOR, data: &second }])
            .expect("no crash armed");
        write_tagged(&mut storage, 1, 0x80, 1);
        storage.sync().expect("no crash armed");

        let mut expected = vec![0; 8 * SECTOR_SIZE];
        model_write(&mut expected, 0, 0x10, 2);
        model_write(&mut expected, 5, 0x40, 1);
        model_write(&mut expected, 1, 0x80, 1);
        assert_image(storage.durable_image(), &expected, "durable");
        assert_image(&storage.snapshot(), &expected, "visible");
        assert_eq!(storage.pending_writes(), 0);
        assert_eq!(storage.steps(), 4, "two writes of a batch, one write, one sync");

        // A crash after the sync loses nothing.
        storage.restart(CrashMode::LoseAll);
        assert_image(&storage.snapshot(), &expected, "after crash");
    }

    /// Durable: sectors 0..4 tagged 0x10. Pending: 0x40 over sectors 2..6 and 0x80 at 7.
    fn storage_with_unsynced_writes() -> (SimStorage, Vec<u8>, Vec<u8>) {
        let mut storage = SimStorage::new(8 * SECTOR, 3, SimFaults::default());
        write_tagged(&mut storage, 0, 0x10, 4);
        storage.sync().expect("no crash armed");
        write_tagged(&mut storage, 2, 0x40, 4);
        write_tagged(&mut storage, 7, 0x80, 1);
        let mut durable = vec![0; 8 * SECTOR_SIZE];
        model_write(&mut durable, 0, 0x10, 4);
        let mut visible = durable.clone();
        model_write(&mut visible, 2, 0x40, 4);
        model_write(&mut visible, 7, 0x80, 1);
        (storage, durable, visible)
    }

    #[test]
    fn crash_losing_all_drops_exactly_the_unsynced_writes() {
        let (mut storage, durable, _) = storage_with_unsynced_writes();
        storage.restart(CrashMode::LoseAll);
        assert_image(&storage.snapshot(), &durable, "visible after crash");
        assert_image(storage.durable_image(), &durable, "durable after crash");
        assert_eq!(read_sectors(&mut storage, 0, 8).expect("no faults"), durable);
        assert_eq!((storage.pending_writes(), storage.steps()), (0, 0));
    }

    #[test]
    fn crash_keeping_all_keeps_every_unsynced_write_in_order() {
        let (mut storage, _, visible) = storage_with_unsynced_writes();
        storage.restart(CrashMode::KeepAll);
        assert_image(&storage.snapshot(), &visible, "visible after crash");
        assert_image(storage.durable_image(), &visible, "durable after crash");
        assert_eq!((storage.pending_writes(), storage.steps()), (0, 0));

        // Overlapping kept writes: the later one wins.
        let mut storage = SimStorage::new(4 * SECTOR, 3, SimFaults::default());
        write_tagged(&mut storage, 0, 0x10, 2);
        write_tagged(&mut storage, 1, 0x40, 2);
        storage.restart(CrashMode::KeepAll);
        let mut expected = vec![0; 4 * SECTOR_SIZE];
        model_write(&mut expected, 0, 0x10, 2);
        model_write(&mut expected, 1, 0x40, 2);
        assert_image(storage.durable_image(), &expected, "overlapping writes");
    }

    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    enum Outcome {
        Lost,
        Kept,
        Partial,
    }

    /// Classifies a pending write of `tag` at `sector..sector + count` over an old version
    /// `old_tag` at the same sectors, asserting that each sector is wholly one or the other.
    fn outcome(image: &[u8], sector: u64, sector_count: usize, old_tag: u8, tag: u8) -> Outcome {
        let old = tagged(old_tag, sector_count);
        let new = tagged(tag, sector_count);
        let mut kept_count = 0;
        for index in 0..sector_count {
            let actual = sector_of(image, sector + index as u64);
            let range = index * SECTOR_SIZE..(index + 1) * SECTOR_SIZE;
            if actual == &new[range.clone()] {
                kept_count += 1;
            } else {
                assert_eq!(actual, &old[range], "sector {} is neither old nor new", sector + index as u64);
            }
        }
        match kept_count {
            0 => Outcome::Lost,
            count if count == sector_count => Outcome::Kept,
            _ => Outcome::Partial,
        }
    }

    #[test]
    fn torn_crash_keeps_whole_sectors_of_old_or_new_content_in_every_mix() {
        let mut outcomes_seen = Vec::new();
        let mut reordered = false;
        for seed in 0..64 {
            // Durable 0x10 everywhere; pending 0x40 at sectors 0..4 then 0x80 at 4..8.
            let mut storage = SimStorage::new(8 * SECTOR, 5, SimFaults::default());
            write_tagged(&mut storage, 0, 0x10, 8);
            storage.sync().expect("no crash armed");
            write_tagged(&mut storage, 0, 0x40, 4);
            write_tagged(&mut storage, 4, 0x80, 4);
            storage.restart(CrashMode::Torn { seed });

            let image = storage.snapshot();
            assert_image(storage.durable_image(), &image, "visible equals durable after crash");
            let first = outcome(&image, 0, 4, 0x10, 0x40);
            let second = outcome(&image[4 * SECTOR_SIZE..], 0, 4, 0x14, 0x80);
            reordered |= first == Outcome::Lost && second == Outcome::Kept;
            for outcome in [first, second] {
                if !outcomes_seen.contains(&outcome) {
                    outcomes_seen.push(outcome);
                }
            }
            assert_eq!((storage.pending_writes(), storage.steps()), (0, 0));
        }
        assert_eq!(outcomes_seen.len(), 3, "lost, kept and partial all happen: {outcomes_seen:?}");
        assert!(reordered, "a later write survives an earlier lost one");
    }

    #[test]
    fn torn_crash_of_overlapping_writes_keeps_one_of_the_versions_per_sector() {
        let mut first_survived_under_second = false;
        let mut second_survived = false;
        for seed in 0..64 {
            // Durable 0x10; pending 0x40 at sectors 0..4, then 0x80 at 2..6.
            let mut storage = SimStorage::new(8 * SECTOR, 5, SimFaults::default());
            write_tagged(&mut storage, 0, 0x10, 8);
            storage.sync().expect("no crash armed");
            write_tagged(&mut storage, 0, 0x40, 4);
            write_tagged(&mut storage, 2, 0x80, 4);
            storage.restart(CrashMode::Torn { seed });

            let image = storage.snapshot();
            for sector in 0..8u64 {
                let actual = sector_of(&image, sector);
                let old = sector_of(&tagged(0x10, 8), sector).to_vec();
                let mut allowed = vec![old];
                if sector < 4 {
                    allowed.push(tagged(0x40 + sector as u8, 1).to_vec());
                }
                if (2..6).contains(&sector) {
                    allowed.push(tagged(0x80 + (sector - 2) as u8, 1).to_vec());
                }
                assert!(allowed.iter().any(|version| version == actual), "seed {seed} sector {sector}");
                if (2..4).contains(&sector) {
                    first_survived_under_second |= actual[0] == 0x40 + sector as u8;
                    second_survived |= actual[0] == 0x80 + (sector - 2) as u8;
                }
            }
        }
        assert!(first_survived_under_second && second_survived);
    }

    /// One operation of the crash-point script: a batch of `(sector, tag, sector_count)`
    /// writes, or a sync.
    enum Operation {
        Batch(&'static [(u64, u8, usize)]),
        Sync,
    }

    const SCRIPT: &[Operation] = &[
        Operation::Batch(&[(0, 0x10, 2), (4, 0x20, 1), (8, 0x30, 3)]),
        Operation::Sync,
        Operation::Batch(&[(1, 0x40, 2), (9, 0x50, 1)]),
        Operation::Sync,
        Operation::Batch(&[(0, 0x60, 1), (12, 0x70, 4)]),
        Operation::Batch(&[(2, 0x80, 1)]),
        Operation::Sync,
    ];
    const SCRIPT_STEP_COUNT: u64 = 3 + 1 + 2 + 1 + 2 + 1 + 1;

    /// The visible image, durable image and pending write count after the first `step_count`
    /// steps of `SCRIPT`.
    fn script_model(step_count: u64) -> (Vec<u8>, Vec<u8>, usize) {
        let mut visible = vec![0; 16 * SECTOR_SIZE];
        let mut durable = visible.clone();
        let mut pending_count = 0;
        let mut steps = 0;
        for operation in SCRIPT {
            match operation {
                Operation::Batch(writes) => {
                    for &(sector, tag, sector_count) in writes.iter() {
                        if steps == step_count {
                            return (visible, durable, pending_count);
                        }
                        model_write(&mut visible, sector, tag, sector_count);
                        pending_count += 1;
                        steps += 1;
                    }
                }
                Operation::Sync => {
                    if steps == step_count {
                        return (visible, durable, pending_count);
                    }
                    durable.clone_from(&visible);
                    pending_count = 0;
                    steps += 1;
                }
            }
        }
        assert_eq!(steps, SCRIPT_STEP_COUNT);
        (visible, durable, pending_count)
    }

    /// Runs `SCRIPT`, stopping at the first error.
    fn run_script(storage: &mut SimStorage) -> Result<(), StorageError> {
        for operation in SCRIPT {
            match operation {
                Operation::Batch(writes) => {
                    let buffers: Vec<AlignedBuffer> =
                        writes.iter().map(|&(_, tag, sector_count)| tagged(tag, sector_count)).collect();
                    let batch: Vec<Write<'_>> = writes
                        .iter()
                        .zip(&buffers)
                        .map(|(&(sector, _, _), data)| Write { offset: sector * SECTOR, data })
                        .collect();
                    storage.write(&batch)?;
                }
                Operation::Sync => storage.sync()?,
            }
        }
        Ok(())
    }

    #[test]
    fn crash_at_step_stops_at_exactly_the_requested_step_for_every_step() {
        for crash_step in 0..=SCRIPT_STEP_COUNT {
            let mut storage = SimStorage::new(16 * SECTOR, 9, SimFaults::default());
            storage.crash_at_step(crash_step);
            let result = run_script(&mut storage);
            let (visible, durable, pending_count) = script_model(crash_step);
            let context = format!("crash at step {crash_step}");
            if crash_step == SCRIPT_STEP_COUNT {
                assert!(result.is_ok(), "{context}: the script has no such step");
                assert!(!storage.crashed());
            } else {
                assert!(matches!(result, Err(StorageError::Crashed)), "{context}: {result:?}");
                assert!(storage.crashed());
            }
            assert_eq!(storage.steps(), crash_step, "{context}");
            assert_eq!(storage.pending_writes(), pending_count, "{context}");
            assert_image(&storage.snapshot(), &visible, &context);
            assert_image(storage.durable_image(), &durable, &context);

            if storage.crashed() {
                // Every later I/O fails and changes nothing.
                let data = tagged(0xF0, 1);
                let mut buffer = AlignedBuffer::new(SECTOR_SIZE);
                assert!(matches!(storage.read(0, &mut buffer), Err(StorageError::Crashed)));
                assert!(matches!(
                    storage.write(&[Write { offset: 0, data: &data }]),
                    Err(StorageError::Crashed)
                ));
                assert!(matches!(storage.sync(), Err(StorageError::Crashed)));
                assert!(matches!(storage.write_and_sync(&[]), Err(StorageError::Crashed)));
                assert_eq!(storage.steps(), crash_step, "{context}");
                assert_image(&storage.snapshot(), &visible, &context);
            }

            let mut kept = storage.clone();
            kept.restart(CrashMode::KeepAll);
            assert_image(kept.durable_image(), &visible, &format!("{context}, all kept"));

            storage.restart(CrashMode::LoseAll);
            assert_image(&storage.snapshot(), &durable, &format!("{context}, all lost"));
            assert_eq!((storage.steps(), storage.pending_writes(), storage.crashed()), (0, 0, false));
            // Usable again for a recovery run, which can itself be crashed.
            storage.crash_at_step(1);
            write_tagged(&mut storage, 15, 0xF0, 1);
            assert!(matches!(storage.sync(), Err(StorageError::Crashed)));
            assert!(matches!(read_sectors(&mut storage, 15, 1), Err(StorageError::Crashed)));
        }
    }

    #[test]
    fn write_and_sync_counts_each_write_and_the_sync_as_steps() {
        let mut storage = SimStorage::new(4 * SECTOR, 1, SimFaults::default());
        let data = tagged(0x10, 1);
        storage.crash_at_step(2);
        let batch = [Write { offset: 0, data: &data }, Write { offset: SECTOR, data: &data }];
        assert!(matches!(storage.write_and_sync(&batch), Err(StorageError::Crashed)));
        assert_eq!((storage.steps(), storage.pending_writes()), (2, 2));
        assert_image(storage.durable_image(), &[0; 4 * SECTOR_SIZE], "the sync did not happen");
    }

    #[test]
    fn a_disarmed_crash_never_happens() {
        let mut storage = SimStorage::new(4 * SECTOR, 1, SimFaults::default());
        let data = tagged(0x20, 1);
        storage.crash_at_step(1);
        storage.crash_disarm();
        let batch = [Write { offset: 0, data: &data }, Write { offset: SECTOR, data: &data }];
        storage.write_and_sync(&batch).expect("no crash armed");
        assert_eq!((storage.steps(), storage.crashed()), (3, false));
    }

    const AREA_SECTORS: Range<u64> = 16..32;

    fn faults_in_area(faults: SimFaults) -> SimFaults {
        SimFaults { faulty_area: Some(AREA_SECTORS.start * SECTOR..AREA_SECTORS.end * SECTOR), ..faults }
    }

    #[test]
    fn a_corrupted_write_is_remembered_as_meant_until_the_sector_is_written_again() {
        let faults = SimFaults { write_corruption_ppm: SimFaults::PPM_MAX, ..Default::default() };
        let mut storage = SimStorage::new(8 * SECTOR, 5, faults);
        let data = tagged(0x30, 2);
        storage.write(&[Write { offset: 2 * SECTOR, data: &data }]).expect("no crash armed");
        storage.sync().expect("no crash armed");
        let mut stored = vec![0u8; 2 * SECTOR_SIZE];
        storage.peek(2 * SECTOR, &mut stored);
        assert_ne!(stored, &data[..], "stored corrupted");
        let mut intended = vec![0u8; 2 * SECTOR_SIZE];
        storage.peek_intended(2 * SECTOR, &mut intended);
        assert_eq!(intended, &data[..], "shown as meant");
        assert!(storage.write_faulted(0, 8 * SECTOR) && !storage.write_faulted(4 * SECTOR, 4 * SECTOR));
        // Written again, cleanly: nothing is remembered any more.
        storage.set_faults(SimFaults::default());
        storage.write(&[Write { offset: 2 * SECTOR, data: &data }]).expect("no crash armed");
        assert!(!storage.write_faulted(0, 8 * SECTOR));
        storage.peek(2 * SECTOR, &mut stored);
        assert_eq!(stored, &data[..]);
    }

    #[test]
    fn a_lost_write_stores_nothing_and_is_remembered_as_meant() {
        let faults = SimFaults {
            write_loss_ppm: SimFaults::PPM_MAX,
            loss_area: Some(4 * SECTOR..8 * SECTOR),
            ..Default::default()
        };
        let mut storage = SimStorage::new(8 * SECTOR, 6, faults);
        let data = tagged(0x40, 1);
        storage.write(&[Write { offset: 0, data: &data }]).expect("outside the area: stored");
        storage.write(&[Write { offset: 5 * SECTOR, data: &data }]).expect("lost, reported done");
        storage.sync().expect("no crash armed");
        assert_eq!(sector_of(storage.durable_image(), 0), &data[..]);
        assert_eq!(sector_of(storage.durable_image(), 5), &[0u8; SECTOR_SIZE][..], "nothing stored");
        let mut intended = vec![0u8; SECTOR_SIZE];
        storage.peek_intended(5 * SECTOR, &mut intended);
        assert_eq!(intended, &data[..]);
        assert!(storage.write_faulted(5 * SECTOR, SECTOR) && !storage.write_faulted(0, 4 * SECTOR));
        assert_eq!(storage.fault_counts().write_losses, 1);
    }

    #[test]
    fn write_faults_keep_to_their_own_area_when_given_one() {
        // Reads may fail in sectors 16..32; writes are corrupted or misdirected only in 40..48.
        let faults = faults_in_area(SimFaults {
            write_corruption_ppm: 500_000,
            write_misdirection_ppm: 500_000,
            write_faulty_area: Some(40 * SECTOR..48 * SECTOR),
            ..Default::default()
        });
        let mut storage = SimStorage::new(64 * SECTOR, 13, faults);
        let data = tagged(0x20, 1);
        for sector in 0..64 {
            storage.write(&[Write { offset: sector * SECTOR, data: &data }]).expect("no crash armed");
        }
        storage.sync().expect("no crash armed");
        let image = storage.durable_image();
        for sector in (0..40).chain(48..64) {
            assert_eq!(
                sector_of(image, sector),
                &data[..],
                "sector {sector}, outside the write faults' area"
            );
        }
        let counts = storage.fault_counts();
        assert!(counts.write_corruptions > 0 && counts.write_misdirections > 0, "{counts:?}");
    }

    #[test]
    fn read_faults_and_corruptions_happen_only_inside_the_faulty_area_at_the_configured_rate() {
        let faults = faults_in_area(SimFaults {
            read_fault_ppm: 100_000,
            read_corruption_ppm: 100_000,
            ..Default::default()
        });
        let mut storage = SimStorage::new(64 * SECTOR, 11, faults);
        let data = tagged(0x01, 64);
        storage.write(&[Write { offset: 0, data: &data }]).expect("no crash armed");
        storage.sync().expect("no crash armed");
        assert_image(storage.durable_image(), &data, "writes are clean with only read faults");

        let mut workload = Prng::new(12);
        let (mut inside_count, mut fault_count, mut corruption_count) = (0u64, 0u64, 0u64);
        for _ in 0..6000 {
            let sector = workload.below(64);
            let expected = sector_of(&data, sector);
            let inside = AREA_SECTORS.contains(&sector);
            inside_count += u64::from(inside);
            match read_sectors(&mut storage, sector, 1) {
                Err(StorageError::ReadFault { offset }) => {
                    assert!(inside, "read fault outside the area at sector {sector}");
                    assert_eq!(offset, sector * SECTOR);
                    fault_count += 1;
                }
                Err(error) => panic!("unexpected {error}"),
                Ok(bytes) => match bits_differing(&bytes, expected) {
                    0 => {}
                    1 => {
                        assert!(inside, "read corruption outside the area at sector {sector}");
                        corruption_count += 1;
                    }
                    bits => panic!("{bits} bits flipped in one read"),
                },
            }
        }
        // 10% of reads inside fail, and 10% of the rest are corrupted (≈ 9% of all).
        assert!((1200..1800).contains(&inside_count), "a quarter of the reads are inside: {inside_count}");
        assert!((inside_count * 7 / 100..inside_count * 13 / 100).contains(&fault_count), "{fault_count}");
        assert!(
            (inside_count * 6 / 100..inside_count * 12 / 100).contains(&corruption_count),
            "{corruption_count}"
        );
        let counts = storage.fault_counts();
        assert_eq!((counts.read_faults, counts.read_corruptions), (fault_count, corruption_count));
        assert_eq!((counts.write_corruptions, counts.write_misdirections), (0, 0));

        // A read straddling the area's edge is corrupted only inside it; stored data never is.
        let mut straddling_corruptions = 0;
        for _ in 0..400 {
            if let Ok(bytes) = read_sectors(&mut storage, 14, 4) {
                assert_eq!(&bytes[..2 * SECTOR_SIZE], &data[14 * SECTOR_SIZE..16 * SECTOR_SIZE]);
                straddling_corruptions += bits_differing(&bytes, &data[14 * SECTOR_SIZE..18 * SECTOR_SIZE]);
            }
        }
        assert!(straddling_corruptions > 0);
        assert_image(&storage.snapshot(), &data, "read corruption is transient");
        assert_image(storage.durable_image(), &data, "read corruption is transient");

        // A restart heals the disk until faults are re-armed.
        storage.restart(CrashMode::LoseAll);
        for sector in AREA_SECTORS.clone().cycle().take(500) {
            assert_eq!(
                read_sectors(&mut storage, sector, 1).expect("faults are off"),
                sector_of(&data, sector)
            );
        }
    }

    #[test]
    fn write_corruptions_and_misdirections_happen_only_inside_the_faulty_area_at_the_configured_rate() {
        let faults = faults_in_area(SimFaults {
            write_corruption_ppm: 100_000,
            write_misdirection_ppm: 100_000,
            ..Default::default()
        });
        let mut workload = Prng::new(13);
        let data = {
            let mut buffer = AlignedBuffer::new(SECTOR_SIZE);
            buffer.fill(0xA5); // Still non-zero with any one bit flipped.
            buffer
        };
        let (mut inside_count, mut corruption_count, mut misdirection_count) = (0u64, 0u64, 0u64);
        for trial in 0..4000u64 {
            let mut storage = SimStorage::new(64 * SECTOR, trial, faults.clone());
            // Half inside the area, half outside.
            let sector = if trial % 2 == 0 {
                AREA_SECTORS.start + workload.below(16)
            } else {
                (AREA_SECTORS.end + workload.below(48)) % 64
            };
            storage.write(&[Write { offset: sector * SECTOR, data: &data }]).expect("no crash armed");
            let image = storage.snapshot();
            let written: Vec<u64> =
                (0..64).filter(|&s| sector_of(&image, s).iter().any(|&b| b != 0)).collect();
            assert_eq!(written.len(), 1, "trial {trial}: one sector written");
            let landed = written[0];
            let flipped = bits_differing(sector_of(&image, landed), &data);
            assert!(flipped <= 1);
            if !AREA_SECTORS.contains(&sector) {
                assert_eq!((landed, flipped), (sector, 0), "trial {trial}: fault outside the area");
                continue;
            }
            inside_count += 1;
            assert!(AREA_SECTORS.contains(&landed), "trial {trial}: misdirected out of the area");
            corruption_count += u64::from(flipped);
            misdirection_count += u64::from(landed != sector);
            let counts = storage.fault_counts();
            assert_eq!(
                (counts.write_corruptions, counts.write_misdirections),
                (u64::from(flipped), u64::from(landed != sector))
            );
            // What was written (faults included) is what becomes durable.
            storage.sync().expect("no crash armed");
            assert_image(storage.durable_image(), &image, "sync keeps the stored write");
        }
        assert_eq!(inside_count, 2000);
        assert!((140..260).contains(&corruption_count), "{corruption_count} corruptions in 2000 writes");
        assert!(
            (140..260).contains(&misdirection_count),
            "{misdirection_count} misdirections in 2000 writes"
        );

        // A write straddling the edge of the area is corrupted only inside it, and never
        // misdirected (it could not land wholly inside the area).
        let straddling = tagged(0x40, 4);
        let mut straddling_corruptions = 0;
        for seed in 0..400 {
            let mut storage = SimStorage::new(64 * SECTOR, seed, faults.clone());
            storage.write(&[Write { offset: 14 * SECTOR, data: &straddling }]).expect("no crash armed");
            let image = storage.snapshot();
            let stored = &image[14 * SECTOR_SIZE..18 * SECTOR_SIZE];
            assert_eq!(&stored[..2 * SECTOR_SIZE], &straddling[..2 * SECTOR_SIZE]);
            straddling_corruptions += bits_differing(stored, &straddling);
            let mut expected_elsewhere = image.clone();
            expected_elsewhere[14 * SECTOR_SIZE..18 * SECTOR_SIZE].fill(0);
            assert!(expected_elsewhere.iter().all(|&b| b == 0), "seed {seed}: misdirected");
        }
        assert!((20..60).contains(&straddling_corruptions), "{straddling_corruptions} in 400 writes");
    }

    #[test]
    fn corrupt_flips_one_bit_per_sector_in_every_layer_and_zero_clears_every_layer() {
        let (storage, durable, visible) = storage_with_unsynced_writes();
        // Sectors 1..4: 1 durable only, 2..4 durable under a pending write.
        let mut corrupted = storage.clone();
        corrupted.corrupt(SECTOR, 3 * SECTOR);
        for (image, expected, what) in [
            (corrupted.snapshot(), &visible, "visible"),
            (corrupted.durable_image().to_vec(), &durable, "durable"),
            (
                {
                    let mut kept = corrupted.clone();
                    kept.restart(CrashMode::KeepAll);
                    kept.snapshot()
                },
                &visible,
                "kept",
            ),
        ] {
            for sector in 0..8 {
                let flipped = bits_differing(sector_of(&image, sector), sector_of(expected, sector));
                assert_eq!(flipped, u32::from((1..4).contains(&sector)), "{what} sector {sector}");
            }
        }

        let mut zeroed = storage.clone();
        zeroed.zero(2 * SECTOR, 2 * SECTOR);
        let mut expected_visible = visible.clone();
        expected_visible[2 * SECTOR_SIZE..4 * SECTOR_SIZE].fill(0);
        let mut expected_durable = durable.clone();
        expected_durable[2 * SECTOR_SIZE..4 * SECTOR_SIZE].fill(0);
        assert_image(&zeroed.snapshot(), &expected_visible, "zeroed visible");
        assert_image(zeroed.durable_image(), &expected_durable, "zeroed durable");
        zeroed.restart(CrashMode::KeepAll);
        assert_image(&zeroed.snapshot(), &expected_visible, "zeroed, pending kept");
    }

    /// A random workload with every fault enabled, crashed torn at the end; returns everything
    /// observable.
    fn faulty_run(seed: u64) -> (Vec<u8>, Vec<u8>, Vec<u8>, SimFaultCounts) {
        let faults = SimFaults {
            read_fault_ppm: 50_000,
            read_corruption_ppm: 50_000,
            write_corruption_ppm: 50_000,
            write_misdirection_ppm: 50_000,
            faulty_area: None,
            write_faulty_area: None,
            misdirection_area: None,
            write_loss_ppm: 0,
            loss_area: None,
        };
        let mut storage = SimStorage::new(32 * SECTOR, seed, faults);
        let mut workload = Prng::new(77);
        let mut observed = Vec::new();
        for _ in 0..500 {
            match workload.below(4) {
                0 => match read_sectors(&mut storage, workload.below(30), 2) {
                    Ok(bytes) => observed.extend_from_slice(&bytes),
                    Err(error) => observed.extend_from_slice(error.to_string().as_bytes()),
                },
                1 => storage.sync().expect("no crash armed"),
                _ => write_tagged(&mut storage, workload.below(29), workload.below(200) as u8, 3),
            }
        }
        let durable = storage.durable_image().to_vec();
        storage.restart(CrashMode::Torn { seed: 3 });
        (observed, durable, storage.snapshot(), storage.fault_counts())
    }

    #[test]
    fn the_same_seed_gives_the_same_images_and_results() {
        let first = faulty_run(21);
        assert!(first == faulty_run(21), "same seed, same run");
        assert!(first != faulty_run(22), "another seed, other faults");
        let counts = first.3;
        assert!(counts.read_faults > 0 && counts.read_corruptions > 0);
        assert!(counts.write_corruptions > 0 && counts.write_misdirections > 0);
    }

    #[test]
    fn latency_adds_simulated_time_per_io_and_survives_a_restart() {
        let mut storage = SimStorage::new(8 * SECTOR, 1, SimFaults::default());
        write_tagged(&mut storage, 0, 0x10, 1);
        storage.sync().expect("no crash armed");
        assert_eq!(storage.take_elapsed_ns(), 0, "the default disk takes no time");
        let latency = SimLatency {
            read_ns_min: 10,
            read_ns_max: 10,
            write_ns_min: 100,
            write_ns_max: 200,
            sync_ns_min: 1_000,
            sync_ns_max: 1_000,
            writes_reordered: false,
        };
        storage.set_latency(latency);
        storage.restart(CrashMode::LoseAll);
        write_tagged(&mut storage, 1, 0x20, 1);
        write_tagged(&mut storage, 2, 0x30, 1);
        storage.sync().expect("no crash armed");
        read_sectors(&mut storage, 0, 1).expect("no faults");
        let elapsed = storage.take_elapsed_ns();
        assert!((1_210..=1_410).contains(&elapsed), "two writes, a sync and a read: {elapsed} ns");
        assert_eq!(storage.take_elapsed_ns(), 0, "taken");
        let mut peeked = AlignedBuffer::new(SECTOR_SIZE);
        storage.peek(SECTOR, &mut peeked);
        assert_eq!(peeked.to_vec(), tagged(0x20, 1).to_vec());
        assert_eq!((storage.take_elapsed_ns(), storage.steps()), (0, 3), "a peek is free");
    }

    #[test]
    fn reordered_completions_leave_any_subset_of_a_crashed_batch_written() {
        let mut subsets = Vec::new();
        for seed in 0..64 {
            let mut storage = SimStorage::new(8 * SECTOR, seed, SimFaults::default());
            storage.set_latency(SimLatency { writes_reordered: true, ..SimLatency::default() });
            let data = [tagged(0x10, 1), tagged(0x20, 1), tagged(0x30, 1)];
            let batch: Vec<Write<'_>> = data
                .iter()
                .enumerate()
                .map(|(index, data)| Write { offset: index as u64 * SECTOR, data })
                .collect();
            storage.crash_at_step(1);
            assert!(matches!(storage.write(&batch), Err(StorageError::Crashed)));
            let image = storage.snapshot();
            let written: Vec<bool> = (0..3).map(|sector| sector_of(&image, sector)[0] != 0).collect();
            assert_eq!(written.iter().filter(|w| **w).count(), 1, "seed {seed}: one write completed");
            if !subsets.contains(&written) {
                subsets.push(written);
            }
        }
        assert_eq!(subsets.len(), 3, "each of the three writes completes first for some seed");
    }

    #[test]
    fn a_read_past_the_end_is_a_short_read() {
        let mut storage = SimStorage::new(4 * SECTOR, 1, SimFaults::default());
        let result = read_sectors(&mut storage, 3, 2);
        assert!(matches!(result, Err(StorageError::ShortRead { offset, size, read })
            if offset == 3 * SECTOR && size == 2 * SECTOR_SIZE && read == SECTOR_SIZE));
    }

    #[test]
    #[should_panic(expected = "overlap")]
    fn overlapping_writes_in_one_batch_are_a_programmer_error() {
        let mut storage = SimStorage::new(4 * SECTOR, 1, SimFaults::default());
        let data = tagged(0x10, 2);
        let _ = storage.write(&[Write { offset: 0, data: &data }, Write { offset: SECTOR, data: &data }]);
    }

    #[test]
    #[should_panic(expected = "not sector-aligned")]
    fn an_unaligned_write_is_a_programmer_error() {
        let mut storage = SimStorage::new(4 * SECTOR, 1, SimFaults::default());
        let data = tagged(0x10, 1);
        let _ = storage.write(&[Write { offset: 100, data: &data }]);
    }
}
