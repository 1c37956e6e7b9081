//! The io_uring event loop against real files and loopback sockets.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::Read as _;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ledger::io::{Completion, IoLoop, Operation, RingFull};
use ledger::prng::Prng;
use ledger::storage::AlignedBuffer;

/// A fresh directory under the target directory (on the project's disk, not a tmpfs), removed
/// when dropped.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        let path =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("io_loop-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        TestDir(path)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn direct_file(path: &Path) -> File {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .custom_flags(libc::O_DIRECT)
        .open(path)
        .expect("open with O_DIRECT on the target directory's filesystem")
}

fn fill(buffer: &mut [u8], seed: u64) {
    let mut prng = Prng::new(seed);
    for chunk in buffer.chunks_mut(8) {
        let bytes = prng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&bytes[..chunk.len()]);
    }
}

fn wait_for(ring: &mut IoLoop, count: usize) -> Vec<Completion> {
    let mut completions = Vec::new();
    while completions.len() < count {
        ring.submit_and_wait(1).expect("io_uring_enter");
        while let Some(completion) = ring.pop_completion() {
            completions.push(completion);
        }
    }
    assert_eq!(completions.len(), count);
    completions
}

#[test]
fn timeout_completes_with_etime_after_its_duration() {
    let mut ring = IoLoop::new(8).expect("io_uring");
    let start = Instant::now();
    // SAFETY: a timeout points to no caller memory.
    unsafe { ring.queue(7, Operation::Timeout { duration: Duration::from_millis(30) }) }.expect("room");
    let completions = wait_for(&mut ring, 1);
    let elapsed = start.elapsed();
    assert_eq!(completions, [Completion { tag: 7, result: -libc::ETIME }]);
    assert!(elapsed >= Duration::from_millis(30), "fired after {elapsed:?}");
    assert!(elapsed < Duration::from_secs(5), "fired after {elapsed:?}");
    assert_eq!(ring.in_flight_count(), 0);
}

#[test]
fn timeouts_fire_in_order_of_duration_whatever_the_queue_order() {
    // More timeouts than the ring holds, in several rounds, so timespec slots are reused.
    let mut ring = IoLoop::new(4).expect("io_uring");
    for round in 0..3u64 {
        let durations_ms = [40u64, 10, 30, 20];
        for (index, duration_ms) in durations_ms.iter().enumerate() {
            let operation = Operation::Timeout { duration: Duration::from_millis(*duration_ms) };
            // SAFETY: a timeout points to no caller memory.
            unsafe { ring.queue(round * 10 + index as u64, operation) }.expect("room");
        }
        let completions = wait_for(&mut ring, 4);
        let tags: Vec<u64> = completions.iter().map(|completion| completion.tag).collect();
        assert_eq!(tags, [round * 10 + 1, round * 10 + 3, round * 10 + 2, round * 10]);
        assert!(completions.iter().all(|completion| completion.result == -libc::ETIME));
    }
}

#[test]
fn tags_of_many_concurrently_queued_operations_come_back_exactly_once() {
    let directory = TestDir::new("tags");
    let file = direct_file(&directory.0.join("data"));
    let capacity = 64u32;
    let mut ring = IoLoop::new(capacity).expect("io_uring");
    let write_count = 1000usize;
    let sector = 4096usize;
    let mut source = AlignedBuffer::new(write_count * sector);
    fill(&mut source, 42);
    let mut seen: HashMap<u64, i32> = HashMap::new();
    let mut next = 0usize;
    // Keep the ring full: queue until `RingFull`, then reap what completed, until every write
    // is queued.
    while next < write_count || ring.in_flight_count() > 0 {
        while next < write_count {
            let operation = Operation::Write {
                fd: file.as_raw_fd(),
                offset: (next * sector) as u64,
                buffer: source[next * sector..].as_ptr(),
                size: sector as u32,
            };
            // SAFETY: `source` and `file` outlive the loop, which is drained below.
            match unsafe { ring.queue(next as u64 + 1_000_000, operation) } {
                Ok(()) => next += 1,
                Err(full) => {
                    assert_eq!(full, RingFull { in_flight_count: capacity, capacity, requested: 1 });
                    break;
                }
            }
        }
        assert!(ring.in_flight_count() <= capacity);
        ring.submit_and_wait(1).expect("io_uring_enter");
        while let Some(completion) = ring.pop_completion() {
            assert!(seen.insert(completion.tag, completion.result).is_none(), "tag {} twice", completion.tag);
        }
    }
    assert_eq!(seen.len(), write_count);
    for index in 0..write_count {
        assert_eq!(seen.get(&(index as u64 + 1_000_000)), Some(&(sector as i32)), "write {index}");
    }
    // What the ring wrote is what the file holds.
    let mut contents = Vec::new();
    File::open(directory.0.join("data")).and_then(|mut file| file.read_to_end(&mut contents)).expect("read");
    assert!(contents == source[..], "file contents differ from the writes");
}

#[test]
fn reads_return_the_bytes_and_zero_past_the_end() {
    let directory = TestDir::new("reads");
    let mut source = AlignedBuffer::new(64 * 1024);
    fill(&mut source, 7);
    std::fs::write(directory.0.join("data"), &source[..]).expect("write the file");
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECT)
        .open(directory.0.join("data"))
        .expect("open with O_DIRECT");
    let mut ring = IoLoop::new(8).expect("io_uring");
    let mut halves = [AlignedBuffer::new(32 * 1024), AlignedBuffer::new(32 * 1024)];
    let mut past_end = AlignedBuffer::new(4096);
    for (index, half) in halves.iter_mut().enumerate() {
        let operation = Operation::Read {
            fd: file.as_raw_fd(),
            offset: (index * 32 * 1024) as u64,
            buffer: half.as_mut_ptr(),
            size: 32 * 1024,
        };
        // SAFETY: the buffers outlive the completions awaited below.
        unsafe { ring.queue(index as u64, operation) }.expect("room");
    }
    let operation = Operation::Read {
        fd: file.as_raw_fd(),
        offset: 64 * 1024,
        buffer: past_end.as_mut_ptr(),
        size: 4096,
    };
    // SAFETY: as above.
    unsafe { ring.queue(2, operation) }.expect("room");
    let mut completions = wait_for(&mut ring, 3);
    completions.sort_by_key(|completion| completion.tag);
    let results: Vec<i32> = completions.iter().map(|completion| completion.result).collect();
    assert_eq!(results, [32 * 1024, 32 * 1024, 0]);
    assert!(halves[0][..] == source[..32 * 1024] && halves[1][..] == source[32 * 1024..]);
}

#[test]
fn a_linked_fsync_runs_after_its_write_and_is_cancelled_when_the_write_fails() {
    let directory = TestDir::new("linked");
    let path = directory.0.join("data");
    let file = direct_file(&path);
    let mut data = AlignedBuffer::new(1024 * 1024);
    fill(&mut data, 9);
    let mut ring = IoLoop::new(8).expect("io_uring");
    let write =
        Operation::Write { fd: file.as_raw_fd(), offset: 0, buffer: data.as_ptr(), size: data.len() as u32 };
    let chain = [(1, write), (2, Operation::Fsync { fd: file.as_raw_fd() })];
    // SAFETY: `data` and `file` outlive the completions awaited below.
    unsafe { ring.queue_chain(&chain) }.expect("room");
    let completions = wait_for(&mut ring, 2);
    // Linked operations complete in chain order.
    assert_eq!(completions, [Completion { tag: 1, result: 1024 * 1024 }, Completion { tag: 2, result: 0 }]);
    assert!(std::fs::read(&path).expect("read") == data[..]);

    // A write on a read-only descriptor fails, and the fsync linked behind it never runs.
    let read_only = File::open(&path).expect("open read-only");
    let write = Operation::Write { fd: read_only.as_raw_fd(), offset: 0, buffer: data.as_ptr(), size: 4096 };
    let chain = [(3, write), (4, Operation::Fsync { fd: read_only.as_raw_fd() })];
    // SAFETY: as above.
    unsafe { ring.queue_chain(&chain) }.expect("room");
    let completions = wait_for(&mut ring, 2);
    assert_eq!(
        completions,
        [Completion { tag: 3, result: -libc::EBADF }, Completion { tag: 4, result: -libc::ECANCELED }]
    );
}

#[test]
fn a_chain_that_does_not_fit_is_refused_whole() {
    let mut ring = IoLoop::new(4).expect("io_uring");
    let timeout = Operation::Timeout { duration: Duration::from_millis(1) };
    // SAFETY: timeouts point to no caller memory.
    unsafe { ring.queue(1, timeout) }.expect("room");
    // SAFETY: as above.
    let refused = unsafe { ring.queue_chain(&[(2, timeout), (3, timeout), (4, timeout), (5, timeout)]) };
    assert_eq!(refused, Err(RingFull { in_flight_count: 1, capacity: 4, requested: 4 }));
    assert_eq!(ring.in_flight_count(), 1);
    let completions = wait_for(&mut ring, 1);
    assert_eq!(completions, [Completion { tag: 1, result: -libc::ETIME }]);
}

#[test]
fn a_drained_fsync_completes_after_every_earlier_write() {
    let directory = TestDir::new("drain");
    let file = direct_file(&directory.0.join("data"));
    let mut data = AlignedBuffer::new(16 * 64 * 1024);
    fill(&mut data, 11);
    let mut ring = IoLoop::new(32).expect("io_uring");
    for index in 0..16usize {
        let chunk = &data[index * 64 * 1024..(index + 1) * 64 * 1024];
        let operation = Operation::Write {
            fd: file.as_raw_fd(),
            offset: (index * 64 * 1024) as u64,
            buffer: chunk.as_ptr(),
            size: chunk.len() as u32,
        };
        // SAFETY: `data` and `file` outlive the completions awaited below.
        unsafe { ring.queue(index as u64, operation) }.expect("room");
    }
    // SAFETY: an fsync points to no caller memory.
    unsafe { ring.queue_after_all(99, Operation::Fsync { fd: file.as_raw_fd() }) }.expect("room");
    let completions = wait_for(&mut ring, 17);
    assert_eq!(completions.last(), Some(&Completion { tag: 99, result: 0 }));
    assert!(completions[..16].iter().all(|completion| completion.result == 64 * 1024));
}

#[test]
fn dropping_the_loop_cancels_a_pending_timeout_instead_of_waiting_for_it() {
    let mut ring = IoLoop::new(4).expect("io_uring");
    // SAFETY: a timeout points to no caller memory.
    unsafe { ring.queue(1, Operation::Timeout { duration: Duration::from_secs(3600) }) }.expect("room");
    ring.submit().expect("submit");
    // SAFETY: as above; this one is queued but never submitted by the caller.
    unsafe { ring.queue(2, Operation::Timeout { duration: Duration::from_secs(3600) }) }.expect("room");
    let start = Instant::now();
    drop(ring);
    assert!(start.elapsed() < Duration::from_secs(5), "drop waited {:?}", start.elapsed());
}

fn socket_address(address: SocketAddr) -> libc::sockaddr_in {
    let SocketAddr::V4(address) = address else { panic!("IPv4 loopback expected") };
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: address.port().to_be(),
        sin_addr: libc::in_addr { s_addr: u32::from(*address.ip()).to_be() },
        sin_zero: [0; 8],
    }
}

#[test]
fn tcp_accept_connect_send_and_recv_on_loopback() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind loopback");
    let address = socket_address(listener.local_addr().expect("address"));
    // SAFETY: plain socket(2); the descriptor is checked and owned right away.
    let client_fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
    assert!(client_fd >= 0, "socket: {}", std::io::Error::last_os_error());
    // SAFETY: `client_fd` is a fresh descriptor nobody else owns.
    let client = unsafe { OwnedFd::from_raw_fd(client_fd) };
    let mut ring = IoLoop::new(8).expect("io_uring");
    let connect = Operation::Connect {
        fd: client.as_raw_fd(),
        address: std::ptr::from_ref(&address).cast(),
        address_size: std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
    };
    // SAFETY: `listener`, `client` and `address` outlive the completions awaited below.
    unsafe {
        ring.queue(1, Operation::Accept { fd: listener.as_raw_fd() }).expect("room");
        ring.queue(2, connect).expect("room");
    }
    let mut completions = wait_for(&mut ring, 2);
    completions.sort_by_key(|completion| completion.tag);
    assert_eq!(completions[1], Completion { tag: 2, result: 0 });
    let accepted_fd = completions[0].outcome().expect("accept") as i32;
    // SAFETY: accept returned a new descriptor that this test now owns.
    let server = unsafe { OwnedFd::from_raw_fd(accepted_fd) };

    let mut message = vec![0u8; 256 * 1024];
    fill(&mut message, 5);
    let mut received = vec![0u8; message.len()];
    let (mut sent_size, mut received_size) = (0usize, 0usize);
    while received_size < message.len() {
        if sent_size < message.len() {
            let rest = &message[sent_size..];
            let send =
                Operation::Send { fd: client.as_raw_fd(), buffer: rest.as_ptr(), size: rest.len() as u32 };
            // SAFETY: `message` is not touched until the send's completion is popped below.
            unsafe { ring.queue(3, send) }.expect("room");
        }
        let rest = &mut received[received_size..];
        let recv =
            Operation::Recv { fd: server.as_raw_fd(), buffer: rest.as_mut_ptr(), size: rest.len() as u32 };
        // SAFETY: `received` is not touched until the recv's completion is popped below.
        unsafe { ring.queue(4, recv) }.expect("room");
        let count = if sent_size < message.len() { 2 } else { 1 };
        for completion in wait_for(&mut ring, count) {
            let size = completion.outcome().expect("send or recv") as usize;
            match completion.tag {
                3 => sent_size += size,
                4 => received_size += size,
                tag => panic!("unexpected tag {tag}"),
            }
        }
    }
    assert_eq!(sent_size, message.len());
    assert!(received == message, "received bytes differ from the sent ones");

    // The peer's close is a receive of zero bytes.
    drop(client);
    let mut byte = [0u8; 1];
    let recv = Operation::Recv { fd: server.as_raw_fd(), buffer: byte.as_mut_ptr(), size: 1 };
    // SAFETY: `byte` outlives the completion awaited below.
    unsafe { ring.queue(5, recv) }.expect("room");
    assert_eq!(wait_for(&mut ring, 1), [Completion { tag: 5, result: 0 }]);
}
