//! One write stream's stages on the server's io_uring (`vsr::write_stage`): a stage's writes
//! are queued together from the replica's buffers (no copies), a short write is resubmitted
//! for the rest, and once every write has completed the `fdatasync` is queued if the stage has
//! one. The loop goes on serving sockets and executing while stages are in flight; when the
//! last operation of a stage completes, the replica ends it (`Replica::stage_end`).

use std::io;
use std::os::fd::RawFd;
use std::time::Instant;

use super::metrics::Histogram;
use super::ServerError;
use crate::io::{IoLoop, Operation as IoOperation};
use crate::storage::{write_error, StorageError, Write};
use crate::vsr::replica_state::ReplicaStateError;
use crate::vsr::write_stage::{Stage, STAGE_WRITES_MAX};

/// The index of the stage's `fdatasync` among its operations (writes are `0..count`).
pub const SYNC_INDEX: usize = STAGE_WRITES_MAX;

/// One write of the stage in flight.
#[derive(Clone, Copy)]
struct Pending {
    offset: u64,
    data: *const u8,
    size: usize,
    done: usize,
}

/// The stage of one stream in flight on the loop, if any.
pub struct StageIo {
    fd: RawFd,
    /// The operation tag of this module; the operation index goes below it.
    tag: u64,
    writes: [Pending; STAGE_WRITES_MAX],
    /// Writes not yet complete.
    remaining: usize,
    /// An `fdatasync` follows the writes.
    sync: bool,
    /// A stage (its writes or its sync) is in flight.
    in_flight: bool,
    /// When the stage's writes were queued, and when its sync was.
    writes_queued_at: Instant,
    /// See `writes_queued_at`.
    sync_queued_at: Instant,
    /// From a stage's start to its last write's completion (stages with writes).
    pub write_latency: Histogram,
    /// From a stage's `fdatasync` being queued to its completion.
    pub sync_latency: Histogram,
}

// SAFETY: the pointers are into the replica's buffers, which the server owns along with this
// and which move with it; they are only used on the thread running the loop.
unsafe impl Send for StageIo {}

impl StageIo {
    /// No stage in flight, for the data file `fd`, tagging operations `tag | index`.
    pub fn new(fd: RawFd, tag: u64) -> StageIo {
        let idle = Pending { offset: 0, data: std::ptr::null(), size: 0, done: 0 };
        let now = Instant::now();
        StageIo {
            fd,
            tag,
            writes: [idle; STAGE_WRITES_MAX],
            remaining: 0,
            sync: false,
            in_flight: false,
            writes_queued_at: now,
            sync_queued_at: now,
            write_latency: Histogram::default(),
            sync_latency: Histogram::default(),
        }
    }

    /// True while a stage is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// Queues the writes of `stage` (its `fdatasync`, if any, follows once they have all
    /// completed). The buffers are the replica's, which nothing changes while the stage is in
    /// flight and which outlive the loop.
    pub fn start(
        &mut self,
        ring: &mut IoLoop,
        stage: Stage,
        writes: &[Write<'_>],
    ) -> Result<(), ServerError> {
        assert!(!self.in_flight && writes.len() == stage.count && writes.len() <= STAGE_WRITES_MAX);
        self.in_flight = true;
        self.remaining = writes.len();
        self.sync = stage.sync;
        for (pending, write) in self.writes.iter_mut().zip(writes) {
            assert!(!write.data.is_empty());
            *pending =
                Pending { offset: write.offset, data: write.data.as_ptr(), size: write.data.len(), done: 0 };
        }
        if writes.is_empty() {
            return self.queue_sync(ring);
        }
        self.writes_queued_at = Instant::now();
        for index in 0..writes.len() {
            self.queue_write(ring, index)?;
        }
        Ok(())
    }

    /// Handles the completion of operation `index` of the stage: returns true once the stage is
    /// done (written, and durable if it syncs). A failed write or sync is fatal (the process
    /// must stop: see `SyncFailed`).
    pub fn on_completion(
        &mut self,
        ring: &mut IoLoop,
        index: usize,
        result: i32,
    ) -> Result<bool, ServerError> {
        assert!(self.in_flight);
        if index == SYNC_INDEX {
            if result < 0 {
                let source = io::Error::from_raw_os_error(-result);
                return Err(storage_error(StorageError::SyncFailed { source }));
            }
            self.in_flight = false;
            self.sync_latency.observe(self.sync_queued_at.elapsed());
            return Ok(true);
        }
        let pending = &mut self.writes[index];
        let (offset, size) = (pending.offset + pending.done as u64, pending.size - pending.done);
        if result < 0 {
            return Err(storage_error(write_error(offset, size, io::Error::from_raw_os_error(-result))));
        }
        if result == 0 {
            // A write that makes no progress would be resumed forever.
            let source = io::Error::from(io::ErrorKind::WriteZero);
            return Err(storage_error(StorageError::Io { operation: "write", offset, size, source }));
        }
        pending.done += result as usize;
        assert!(pending.done <= pending.size);
        if pending.done < pending.size {
            // A short write: the rest goes again.
            self.queue_write(ring, index)?;
            return Ok(false);
        }
        self.remaining -= 1;
        if self.remaining > 0 {
            return Ok(false);
        }
        self.write_latency.observe(self.writes_queued_at.elapsed());
        if self.sync {
            self.queue_sync(ring)?;
            return Ok(false);
        }
        self.in_flight = false;
        Ok(true)
    }

    fn queue_write(&mut self, ring: &mut IoLoop, index: usize) -> Result<(), ServerError> {
        let pending = self.writes[index];
        let operation = IoOperation::Write {
            fd: self.fd,
            offset: pending.offset + pending.done as u64,
            // SAFETY (of the pointer arithmetic): `done < size`, within the buffer.
            buffer: unsafe { pending.data.add(pending.done) },
            size: u32::try_from(pending.size - pending.done).expect("a stage write is under 4 GiB"),
        };
        // SAFETY: the buffer is valid and unchanged until the completion (see `start`).
        unsafe { ring.queue(self.tag | index as u64, operation) }
            .map_err(|error| ServerError::Io(error.to_string()))
    }

    fn queue_sync(&mut self, ring: &mut IoLoop) -> Result<(), ServerError> {
        self.sync_queued_at = Instant::now();
        let operation = IoOperation::Fsync { fd: self.fd };
        // SAFETY: an fdatasync points to no memory; the file outlives the loop.
        unsafe { ring.queue(self.tag | SYNC_INDEX as u64, operation) }
            .map_err(|error| ServerError::Io(error.to_string()))
    }
}

fn storage_error(error: StorageError) -> ServerError {
    ServerError::Replica(ReplicaStateError::Storage(error))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::fd::AsRawFd;

    const TAG: u64 = 7 << 56;

    fn file(name: &str) -> (std::fs::File, std::path::PathBuf) {
        let path = std::env::temp_dir().join(format!("stage-io-{name}-{}", std::process::id()));
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .expect("a temporary file");
        (file, path)
    }

    /// Waits for the ring's next completion: (operation index, result).
    fn next(ring: &mut IoLoop) -> (usize, i32) {
        ring.submit_and_wait(1).expect("submit");
        let completion = ring.pop_completion().expect("a completion");
        assert_eq!(completion.tag & !0xFF_FFFF, TAG);
        ((completion.tag & 0xFF_FFFF) as usize, completion.result)
    }

    #[test]
    fn a_short_write_is_resubmitted_for_the_rest_and_the_sync_follows_the_last_write() {
        let (file, path) = file("short");
        let mut ring = IoLoop::new(8).expect("ring");
        let mut stage_io = StageIo::new(file.as_raw_fd(), TAG);
        let (first, second) = (vec![0xA1u8; 8192], vec![0xB2u8; 4096]);
        let writes = [Write { offset: 0, data: &first }, Write { offset: 8192, data: &second }];
        stage_io.start(&mut ring, Stage::new(2, true), &writes).expect("start");
        assert!(stage_io.in_flight());
        // The first write's first completion is reported short (only half of it happened):
        // the rest (bytes 4096..8192) must be queued again, and the sync only after it.
        let (mut completions, mut shortened, mut done) = ([0usize; 2], false, false);
        while !done {
            let (index, result) = next(&mut ring);
            let reported = if index == 0 && !shortened {
                shortened = true;
                assert_eq!(result, 8192);
                4096
            } else {
                result
            };
            if index == SYNC_INDEX {
                assert_eq!(completions, [2, 1], "the sync follows every write, the rest included");
            } else {
                completions[index] += 1;
                if index == 0 && completions[0] == 2 {
                    assert_eq!(result, 4096, "the rest of the first write, from where it stopped");
                }
            }
            done = stage_io.on_completion(&mut ring, index, reported).expect("no error");
        }
        assert!(!stage_io.in_flight());
        assert_eq!(stage_io.write_latency.count(), 1, "one stage's writes timed");
        assert_eq!(stage_io.sync_latency.count(), 1, "one stage's sync timed");
        let mut content = Vec::new();
        std::fs::File::open(&path).expect("open").read_to_end(&mut content).expect("read");
        assert_eq!(&content[..8192], &first[..]);
        assert_eq!(&content[8192..], &second[..]);
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_stage_without_a_sync_is_done_when_its_writes_are_and_one_without_writes_is_a_sync() {
        let (file, path) = file("nosync");
        let mut ring = IoLoop::new(8).expect("ring");
        let mut stage_io = StageIo::new(file.as_raw_fd(), TAG);
        let data = vec![7u8; 4096];
        stage_io.start(&mut ring, Stage::new(1, false), &[Write { offset: 0, data: &data }]).expect("start");
        let (index, result) = next(&mut ring);
        assert!(stage_io.on_completion(&mut ring, index, result).expect("no error"), "done without a sync");
        stage_io.start(&mut ring, Stage::new(0, true), &[]).expect("start");
        let (index, result) = next(&mut ring);
        assert_eq!(index, SYNC_INDEX);
        assert!(stage_io.on_completion(&mut ring, index, result).expect("no error"));
        assert_eq!((stage_io.write_latency.count(), stage_io.sync_latency.count()), (1, 1));
        let _ = std::fs::remove_file(path);
    }

    #[test]
    fn a_failed_write_a_write_that_makes_no_progress_and_a_failed_sync_are_fatal_errors() {
        let (file, path) = file("errors");
        let mut ring = IoLoop::new(8).expect("ring");
        let data = vec![1u8; 4096];
        let cases: [(usize, i32, &str); 4] = [
            (0, -libc::ENOSPC, "no space left"),
            (0, -libc::EIO, "write of 4096 bytes at offset 8192 failed"),
            (0, 0, "write of 4096 bytes at offset 8192 failed"),
            (SYNC_INDEX, -libc::EIO, "fdatasync failed"),
        ];
        for (index, result, message) in cases {
            let mut stage_io = StageIo::new(file.as_raw_fd(), TAG);
            stage_io
                .start(&mut ring, Stage::new(1, true), &[Write { offset: 8192, data: &data }])
                .expect("start");
            let (_, real) = next(&mut ring);
            assert_eq!(real, 4096);
            if index == SYNC_INDEX {
                assert!(!stage_io.on_completion(&mut ring, 0, real).expect("the write succeeded"));
                let _ = next(&mut ring); // The real sync.
            }
            let error = stage_io.on_completion(&mut ring, index, result).expect_err("fatal");
            let text = error.to_string();
            assert!(text.contains(message), "{text}");
        }
        let _ = std::fs::remove_file(path);
    }
}
