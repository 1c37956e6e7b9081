//! The single-threaded io_uring event loop.
//!
//! Completion-based and batched: a caller queues operations, each with a `u64` tag of its own
//! choosing that names the owner of the in-flight operation, then submits the whole batch with one
//! system call ([`IoLoop::submit`] or [`IoLoop::submit_and_wait`]) and drains `(tag, result)` pairs
//! with [`IoLoop::pop_completion`]. Nothing is allocated per operation: the submission and
//! completion queues are the kernel's rings, sized once at construction, and the loop refuses an
//! operation ([`RingFull`]) rather than letting more be in flight than the completion queue can
//! hold — so a completion is never dropped and never buffered by the kernel.
//!
//! Every operation produces exactly one completion (no multishot operations, no
//! `IOSQE_CQE_SKIP_SUCCESS`), which keeps [`IoLoop::in_flight_count`] exact.
//!
//! New kinds of operation are added as a variant of [`Operation`] and one arm in
//! `Operation::entry`.

use std::io;
use std::os::fd::RawFd;
use std::time::Duration;

use io_uring::{opcode, squeue, types, IoUring};

/// The largest ring [`IoLoop::new`] accepts: the kernel's limit for the submission queue.
pub const RING_ENTRIES_MAX: u32 = 32768;

/// One I/O operation. Pointers are raw because the kernel reads or writes the memory after
/// [`IoLoop::queue`] returns; see the safety contract there.
#[derive(Clone, Copy, Debug)]
pub enum Operation {
    /// Reads up to `size` bytes at file offset `offset` into `buffer`. Completes with the number
    /// of bytes read (fewer at end of file, 0 past it).
    Read {
        /// The file.
        fd: RawFd,
        /// The file offset.
        offset: u64,
        /// Where the bytes go: valid for writes of `size` bytes.
        buffer: *mut u8,
        /// How many bytes to read.
        size: u32,
    },
    /// Writes `size` bytes from `buffer` at file offset `offset`. Completes with the number of
    /// bytes written, which may be fewer than `size` (a short write): the caller resubmits the
    /// rest.
    Write {
        /// The file.
        fd: RawFd,
        /// The file offset.
        offset: u64,
        /// The bytes: valid for reads of `size` bytes.
        buffer: *const u8,
        /// How many bytes to write.
        size: u32,
    },
    /// `fdatasync`: makes the file's written data (and the metadata needed to read it back)
    /// durable. Completes with 0.
    Fsync {
        /// The file.
        fd: RawFd,
    },
    /// A timer: completes with `-ETIME` once `duration` has passed (or `-ECANCELED`).
    Timeout {
        /// How long from submission.
        duration: Duration,
    },
    /// Accepts one connection on a listening socket. Completes with the new socket's descriptor,
    /// which the caller owns. The new socket is close-on-exec.
    Accept {
        /// The listening socket.
        fd: RawFd,
    },
    /// Connects a socket to `address`. Completes with 0.
    Connect {
        /// The socket.
        fd: RawFd,
        /// The peer's address: valid for reads of `address_size` bytes.
        address: *const libc::sockaddr,
        /// The size of `*address`.
        address_size: libc::socklen_t,
    },
    /// Receives up to `size` bytes from a connected socket. Completes with the number of bytes
    /// received; 0 means the peer closed the connection.
    Recv {
        /// The socket.
        fd: RawFd,
        /// Where the bytes go: valid for writes of `size` bytes.
        buffer: *mut u8,
        /// How many bytes at most.
        size: u32,
    },
    /// Sends up to `size` bytes on a connected socket. Completes with the number of bytes sent,
    /// which may be fewer than `size`. Never raises `SIGPIPE` (`MSG_NOSIGNAL`).
    Send {
        /// The socket.
        fd: RawFd,
        /// The bytes: valid for reads of `size` bytes.
        buffer: *const u8,
        /// How many bytes.
        size: u32,
    },
}

/// The result of one operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Completion {
    /// The tag the operation was queued with.
    pub tag: u64,
    /// The kernel's result: a non-negative count (bytes, or a descriptor for `Accept`) or a
    /// negated `errno`.
    pub result: i32,
}

impl Completion {
    /// The result as a count, or the `errno` as an [`io::Error`].
    pub fn outcome(&self) -> io::Result<u32> {
        if self.result < 0 {
            Err(io::Error::from_raw_os_error(-self.result))
        } else {
            Ok(self.result.unsigned_abs())
        }
    }
}

/// The ring has no room for the operation(s): wait for completions, then queue again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("io_uring is full: {in_flight_count} of {capacity} operations in flight, {requested} more requested")]
pub struct RingFull {
    /// Operations queued or submitted and not yet popped as completions.
    pub in_flight_count: u32,
    /// The ring's capacity.
    pub capacity: u32,
    /// The operations the caller tried to queue.
    pub requested: u32,
}

/// Why the ring could not be created.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// An administrator disabled io_uring with the `kernel.io_uring_disabled` sysctl.
    #[error(
        "io_uring is disabled on this machine (/proc/sys/kernel/io_uring_disabled = {setting}): \
         {source}; ledger needs io_uring: run `sysctl kernel.io_uring_disabled=0` as root"
    )]
    Disabled {
        /// The sysctl's value: 1 (only privileged processes) or 2 (nobody).
        setting: u32,
        /// The error from `io_uring_setup`.
        source: io::Error,
    },
    /// The kernel has no io_uring, or a sandbox (for example a container runtime's seccomp
    /// profile) forbids it.
    #[error(
        "io_uring is unavailable: {source}; ledger needs Linux 5.19 or newer with io_uring \
         allowed (a container's seccomp profile may block io_uring_setup)"
    )]
    Unavailable {
        /// The error from `io_uring_setup` (ENOSYS or EPERM).
        source: io::Error,
    },
    /// `io_uring_setup` failed for another reason (for example too little locked memory).
    #[error("io_uring_setup with {entries} entries failed: {source}")]
    Failed {
        /// The ring size asked for.
        entries: u32,
        /// The error from `io_uring_setup`.
        source: io::Error,
    },
    /// The kernel's io_uring lacks a feature the loop relies on.
    #[error("io_uring lacks {feature}; ledger needs Linux 5.19 or newer")]
    MissingFeature {
        /// The feature's name.
        feature: &'static str,
    },
}

/// A single-threaded io_uring with a fixed capacity of in-flight operations.
pub struct IoLoop {
    ring: IoUring,
    capacity: u32,
    /// Operations queued or submitted whose completion has not been popped yet.
    in_flight_count: u32,
    /// Operations pushed since construction; picks the `timespecs` slot of a timeout.
    queued_total: u64,
    /// Backing memory for timeouts' `timespec`s, one slot per possible in-flight operation: the
    /// kernel reads a timespec when it consumes the entry, so it must outlive `queue`.
    timespecs: Box<[types::Timespec]>,
}

impl IoLoop {
    /// A ring for at most `entries` operations in flight at once (queued and not yet popped).
    /// `entries` is a power of two from 1 to [`RING_ENTRIES_MAX`].
    pub fn new(entries: u32) -> Result<IoLoop, SetupError> {
        assert!(entries.is_power_of_two() && entries <= RING_ENTRIES_MAX, "bad ring size {entries}");
        // The completion queue is twice the submission queue (the kernel's default), and the
        // loop never lets more than `entries` operations be in flight, so it cannot overflow.
        let ring = IoUring::builder().build(entries).map_err(|source| setup_error(entries, source))?;
        // The loop hands the kernel pointers to `timespec`s and socket addresses that it keeps
        // only until the entry is consumed; that is only safe with SUBMIT_STABLE (Linux 5.5).
        if !ring.params().is_feature_submit_stable() {
            return Err(SetupError::MissingFeature { feature: "IORING_FEAT_SUBMIT_STABLE" });
        }
        assert!(ring.params().sq_entries() >= entries);
        assert!(ring.params().cq_entries() >= entries);
        let timespecs = vec![types::Timespec::new(); entries as usize].into_boxed_slice();
        Ok(IoLoop { ring, capacity: entries, in_flight_count: 0, queued_total: 0, timespecs })
    }

    /// How many operations may be in flight at once.
    pub fn capacity(&self) -> u32 {
        self.capacity
    }

    /// Operations queued or submitted whose completion has not been popped yet.
    pub fn in_flight_count(&self) -> u32 {
        self.in_flight_count
    }

    /// Queues one operation; it starts when next submitted, in any order relative to others.
    ///
    /// # Safety
    /// Every pointer in `operation` must stay valid — and the memory untouched by anyone else
    /// (not read, for a `Read` or `Recv`; not written, for a `Write` or `Send`) — until the
    /// operation's completion has been popped with [`IoLoop::pop_completion`] or the loop has
    /// been dropped (dropping cancels what it can and waits for the rest). Every descriptor must
    /// stay open as long.
    pub unsafe fn queue(&mut self, tag: u64, operation: Operation) -> Result<(), RingFull> {
        self.reserve(1)?;
        self.push(tag, operation, squeue::Flags::empty());
        Ok(())
    }

    /// Queues one operation that starts only after every operation submitted before it has
    /// completed, and that no later operation starts before (`IOSQE_IO_DRAIN`). It does not
    /// depend on their success. Beware: it also waits for unrelated operations that may take
    /// forever, such as a `Recv` on an idle connection.
    ///
    /// # Safety
    /// As for [`IoLoop::queue`].
    pub unsafe fn queue_after_all(&mut self, tag: u64, operation: Operation) -> Result<(), RingFull> {
        self.reserve(1)?;
        self.push(tag, operation, squeue::Flags::IO_DRAIN);
        Ok(())
    }

    /// Queues a chain: each operation starts only after the previous one succeeded in full. If
    /// one fails, or transfers fewer bytes than asked, the rest complete with `-ECANCELED`.
    /// The whole chain is queued or none of it is.
    ///
    /// # Safety
    /// As for [`IoLoop::queue`], for every operation of the chain.
    pub unsafe fn queue_chain(&mut self, chain: &[(u64, Operation)]) -> Result<(), RingFull> {
        assert!(!chain.is_empty());
        self.reserve(u32::try_from(chain.len()).unwrap_or(u32::MAX))?;
        let (last, linked) = chain.split_last().expect("non-empty chain");
        for (tag, operation) in linked {
            self.push(*tag, *operation, squeue::Flags::IO_LINK);
        }
        self.push(last.0, last.1, squeue::Flags::empty());
        Ok(())
    }

    /// Submits every queued operation without waiting; returns how many were submitted.
    pub fn submit(&mut self) -> io::Result<u32> {
        self.submit_and_wait(0)
    }

    /// Submits every queued operation and waits until at least `min_complete` completions are
    /// ready to pop; returns how many operations were submitted.
    pub fn submit_and_wait(&mut self, min_complete: u32) -> io::Result<u32> {
        // Waiting for more completions than there are operations would block forever.
        assert!(
            min_complete <= self.in_flight_count,
            "waiting for {min_complete} of {}",
            self.in_flight_count
        );
        loop {
            match self.ring.submit_and_wait(min_complete as usize) {
                // `submit_and_wait` submits no more than the queue held, which is at most the
                // capacity, a `u32`.
                Ok(submitted) => return Ok(u32::try_from(submitted).unwrap_or(u32::MAX)),
                // A signal interrupted the wait: entries are never lost by an interrupted call
                // (unsubmitted ones stay queued), so asking again is exact.
                Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
                Err(error) => return Err(error),
            }
        }
    }

    /// The next ready completion, if any. Once it is popped, the kernel is done with the
    /// operation's memory and the caller may reuse it.
    pub fn pop_completion(&mut self) -> Option<Completion> {
        let entry = self.ring.completion().next()?;
        assert!(self.in_flight_count > 0, "a completion arrived for no operation");
        self.in_flight_count -= 1;
        Some(Completion { tag: entry.user_data(), result: entry.result() })
    }

    fn reserve(&self, count: u32) -> Result<(), RingFull> {
        if count > self.capacity - self.in_flight_count {
            return Err(RingFull {
                in_flight_count: self.in_flight_count,
                capacity: self.capacity,
                requested: count,
            });
        }
        Ok(())
    }

    /// Pushes one entry; the caller reserved room for it.
    fn push(&mut self, tag: u64, operation: Operation, flags: squeue::Flags) {
        // Slot `k % capacity` serves the k-th queued operation. When operation k + capacity is
        // queued, operation k has been consumed by the kernel: at most `capacity` operations
        // are in flight, so either k has completed or a later one has, and the kernel consumes
        // entries in order.
        let slot = (self.queued_total % u64::from(self.capacity)) as usize;
        self.queued_total += 1;
        let entry = operation.entry(&mut self.timespecs[slot]).user_data(tag).flags(flags);
        // SAFETY: the caller of `queue*` promised that the operation's memory stays valid until
        // its completion; the timespec lives in `self.timespecs` (see above).
        let pushed = unsafe { self.ring.submission().push(&entry) };
        // The submission queue holds at least `capacity` entries and at most `in_flight_count`
        // are queued, so a failed push is a bug in the accounting.
        assert!(pushed.is_ok(), "submission queue full with {} in flight", self.in_flight_count);
        self.in_flight_count += 1;
    }
}

impl std::fmt::Debug for IoLoop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IoLoop")
            .field("capacity", &self.capacity)
            .field("in_flight_count", &self.in_flight_count)
            .finish_non_exhaustive()
    }
}

impl Operation {
    /// The submission entry; a timeout's duration is stored in `timespec`, which the entry
    /// points to.
    fn entry(self, timespec: &mut types::Timespec) -> squeue::Entry {
        match self {
            Operation::Read { fd, offset, buffer, size } => {
                opcode::Read::new(types::Fd(fd), buffer, size).offset(offset).build()
            }
            Operation::Write { fd, offset, buffer, size } => {
                opcode::Write::new(types::Fd(fd), buffer, size).offset(offset).build()
            }
            Operation::Fsync { fd } => {
                opcode::Fsync::new(types::Fd(fd)).flags(types::FsyncFlags::DATASYNC).build()
            }
            Operation::Timeout { duration } => {
                *timespec = types::Timespec::from(duration);
                opcode::Timeout::new(timespec).build()
            }
            Operation::Accept { fd } => {
                opcode::Accept::new(types::Fd(fd), std::ptr::null_mut(), std::ptr::null_mut())
                    .flags(libc::SOCK_CLOEXEC)
                    .build()
            }
            Operation::Connect { fd, address, address_size } => {
                opcode::Connect::new(types::Fd(fd), address, address_size).build()
            }
            Operation::Recv { fd, buffer, size } => opcode::Recv::new(types::Fd(fd), buffer, size).build(),
            Operation::Send { fd, buffer, size } => {
                opcode::Send::new(types::Fd(fd), buffer, size).flags(libc::MSG_NOSIGNAL).build()
            }
        }
    }
}

impl Drop for IoLoop {
    /// Cancels what can be cancelled and waits for every operation to complete: the kernel may
    /// still be using the callers' buffers, which they may free once the loop is gone.
    fn drop(&mut self) {
        if self.in_flight_count == 0 {
            return;
        }
        // Submit what is queued first, so the cancel below sees it and the queue has room.
        let mut result = self.submit();
        if result.is_ok() {
            let cancel = opcode::AsyncCancel2::new(types::CancelBuilder::any()).build();
            // SAFETY: a cancel request points to no memory.
            let pushed = unsafe { self.ring.submission().push(&cancel) };
            if pushed.is_ok() {
                // The cancel has a completion of its own; count it as in flight.
                self.in_flight_count += 1;
            }
        }
        while self.in_flight_count > 0 && result.is_ok() {
            result = self.submit_and_wait(1);
            while self.pop_completion().is_some() {}
        }
        if let Err(error) = result {
            // Returning would let callers free memory that the kernel may still write to.
            eprintln!("io_uring failed while draining {} operations: {error}", self.in_flight_count);
            std::process::abort();
        }
    }
}

fn setup_error(entries: u32, source: io::Error) -> SetupError {
    match source.raw_os_error() {
        Some(libc::ENOSYS) => SetupError::Unavailable { source },
        Some(libc::EPERM) => match io_uring_disabled_setting() {
            Some(setting) if setting != 0 => SetupError::Disabled { setting, source },
            _ => SetupError::Unavailable { source },
        },
        _ => SetupError::Failed { entries, source },
    }
}

/// The `kernel.io_uring_disabled` sysctl (Linux 6.6 and later), if the kernel has it.
fn io_uring_disabled_setting() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn setup_errors_say_why_io_uring_is_missing() {
        let enosys = setup_error(8, io::Error::from_raw_os_error(libc::ENOSYS));
        assert!(matches!(enosys, SetupError::Unavailable { .. }));
        assert!(enosys.to_string().contains("io_uring is unavailable"), "{enosys}");
        let einval = setup_error(8, io::Error::from_raw_os_error(libc::EINVAL));
        assert!(matches!(einval, SetupError::Failed { entries: 8, .. }));
        let eperm = setup_error(8, io::Error::from_raw_os_error(libc::EPERM));
        match io_uring_disabled_setting() {
            Some(setting) if setting != 0 => {
                assert!(matches!(eperm, SetupError::Disabled { setting: s, .. } if s == setting))
            }
            _ => assert!(matches!(eperm, SetupError::Unavailable { .. })),
        }
    }

    #[test]
    fn completion_outcome_maps_negative_results_to_errno() {
        assert_eq!(Completion { tag: 1, result: 4096 }.outcome().ok(), Some(4096));
        let error = Completion { tag: 1, result: -libc::ENOSPC }.outcome().err();
        assert_eq!(error.and_then(|error| error.raw_os_error()), Some(libc::ENOSPC));
    }
}
