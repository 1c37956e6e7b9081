//! `FileStorage` on real files: round trips, batches, errors for every way creating or opening a
//! data file can fail, and a full disk.

use std::path::{Path, PathBuf};
use std::process::Command;

use ledger::prng::Prng;
use ledger::storage::{AlignedBuffer, FileStorage, IoMode, OpenError, Storage, StorageError, Write};

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;

/// A fresh directory under the target directory (on the project's disk, not a tmpfs), removed
/// when dropped.
struct TestDir(PathBuf);

impl TestDir {
    fn new(name: &str) -> TestDir {
        TestDir::under(Path::new(env!("CARGO_TARGET_TMPDIR")), name)
    }

    fn under(parent: &Path, name: &str) -> TestDir {
        let path = parent.join(format!("file_storage-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the test directory");
        TestDir(path)
    }

    fn file(&self) -> PathBuf {
        self.0.join("ledger.data")
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A filesystem mounted for one test and unmounted when dropped; `None` where this user may not
/// mount (tests that need one then say so and check what they can without it).
struct Mount(TestDir);

impl Mount {
    fn new(name: &str, filesystem: &str, options: &str) -> Option<Mount> {
        let directory = TestDir::new(name);
        let status = Command::new("mount")
            .args(["-t", filesystem, "-o", options, filesystem])
            .arg(&directory.0)
            .stderr(std::process::Stdio::null())
            .status();
        match status {
            Ok(status) if status.success() => Some(Mount(directory)),
            _ => {
                eprintln!("cannot mount {filesystem} here (not root?); skipping that part of {name}");
                None
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        // A plain unmount can find the filesystem still busy for a moment (a CI run once left a
        // ramfs mounted in its clone, so the next clean clone could not be removed): then detach
        // it lazily, which the kernel completes once it is idle.
        let unmounted = Command::new("umount").arg(&self.0 .0).status().is_ok_and(|status| status.success());
        if !unmounted {
            let _ = Command::new("umount").arg("-l").arg(&self.0 .0).status();
        }
    }
}

fn pattern(size: usize, seed: u64) -> AlignedBuffer {
    let mut buffer = AlignedBuffer::new(size);
    let mut prng = Prng::new(seed);
    for chunk in buffer.chunks_mut(8) {
        chunk.copy_from_slice(&prng.next_u64().to_le_bytes());
    }
    buffer
}

fn read_back(storage: &mut FileStorage, offset: u64, size: usize) -> AlignedBuffer {
    let mut buffer = AlignedBuffer::new(size);
    storage.read(offset, &mut buffer).expect("read");
    buffer
}

fn assert_zeros(storage: &mut FileStorage, offset: u64, size: usize) {
    let buffer = read_back(storage, offset, size);
    assert!(buffer.iter().all(|byte| *byte == 0), "non-zero bytes at {offset}..{}", offset + size as u64);
}

#[test]
fn a_new_file_is_all_zeros_of_the_asked_size() {
    let directory = TestDir::new("zeros");
    let size = 9 * MIB + 12 * KIB; // Not a multiple of the 1 MiB fill writes.
    let mut storage = FileStorage::create(directory.file(), size as u64, IoMode::Direct).expect("create");
    assert_eq!(storage.size(), size as u64);
    assert_eq!(std::fs::metadata(directory.file()).expect("metadata").len(), size as u64);
    assert_zeros(&mut storage, 0, size);
    // Every block is allocated, so later writes are overwrites (sparse files would have fewer).
    let blocks =
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(directory.file()).expect("metadata"));
    assert!(blocks * 512 >= size as u64, "only {blocks} blocks allocated");
}

#[test]
fn writes_read_back_at_many_offsets_and_sizes_and_survive_reopening() {
    let directory = TestDir::new("round_trip");
    let size = 16 * MIB;
    let mut storage = FileStorage::create(directory.file(), size as u64, IoMode::Direct).expect("create");
    // Non-overlapping, at the first and last sectors, across 1 MiB boundaries, up to 3 MiB.
    let layout: [(usize, usize); 8] = [
        (0, 4 * KIB),
        (4 * KIB, 8 * KIB),
        (64 * KIB, 60 * KIB),
        (MIB - 4 * KIB, 12 * KIB),
        (2 * MIB, MIB),
        (4 * MIB + 4 * KIB, 3 * MIB),
        (12 * MIB, 256 * KIB),
        (size - 4 * KIB, 4 * KIB),
    ];
    let buffers: Vec<AlignedBuffer> =
        layout.iter().enumerate().map(|(index, (_, size))| pattern(*size, index as u64)).collect();
    let writes: Vec<Write> = layout
        .iter()
        .zip(&buffers)
        .map(|((offset, _), buffer)| Write { offset: *offset as u64, data: buffer })
        .collect();
    storage.write(&writes).expect("write");
    for ((offset, size), buffer) in layout.iter().zip(&buffers) {
        assert!(read_back(&mut storage, *offset as u64, *size)[..] == buffer[..], "at {offset}");
    }
    // The gaps between writes are still zeros.
    assert_zeros(&mut storage, 16 * KIB as u64, 48 * KIB);
    assert_zeros(&mut storage, 3 * MIB as u64, MIB + 4 * KIB);
    storage.sync().expect("sync");
    drop(storage);

    let mut storage = FileStorage::open(directory.file(), IoMode::Direct).expect("open");
    assert_eq!(storage.size(), size as u64);
    for ((offset, size), buffer) in layout.iter().zip(&buffers) {
        assert!(
            read_back(&mut storage, *offset as u64, *size)[..] == buffer[..],
            "at {offset} after reopening"
        );
    }
    // Reads spanning several writes see each one's bytes in place.
    let whole = read_back(&mut storage, 0, 16 * KIB);
    assert!(whole[..4 * KIB] == buffers[0][..] && whole[4 * KIB..12 * KIB] == buffers[1][..]);
    assert!(whole[12 * KIB..].iter().all(|byte| *byte == 0));
}

#[test]
fn write_and_sync_of_many_writes_spanning_several_submissions() {
    let directory = TestDir::new("many");
    let mut storage = FileStorage::create(directory.file(), 8 * MIB as u64, IoMode::Direct).expect("create");
    // 400 writes: more than one window of the ring, in a shuffled order.
    let data = pattern(400 * 4 * KIB, 77);
    let mut order: Vec<usize> = (0..400).collect();
    let mut prng = Prng::new(3);
    for index in (1..order.len()).rev() {
        order.swap(index, prng.below(index as u64 + 1) as usize);
    }
    let writes: Vec<Write> = order
        .iter()
        .map(|index| Write {
            offset: (MIB + index * 8 * KIB) as u64, // Every other sector, so gaps stay zero.
            data: &data[index * 4 * KIB..(index + 1) * 4 * KIB],
        })
        .collect();
    storage.write_and_sync(&writes).expect("write and sync");
    // An empty batch is just a sync.
    storage.write_and_sync(&[]).expect("sync");
    drop(storage);

    let mut storage = FileStorage::open(directory.file(), IoMode::Direct).expect("open");
    let contents = read_back(&mut storage, MIB as u64, 400 * 8 * KIB);
    for index in 0..400 {
        let written = &contents[index * 8 * KIB..index * 8 * KIB + 4 * KIB];
        assert!(written == &data[index * 4 * KIB..(index + 1) * 4 * KIB], "write {index}");
        assert!(contents[index * 8 * KIB + 4 * KIB..(index + 1) * 8 * KIB].iter().all(|byte| *byte == 0));
    }
    assert_zeros(&mut storage, 0, MIB);
}

#[test]
fn a_read_past_the_end_of_the_file_is_a_short_read() {
    let directory = TestDir::new("short_read");
    let mut storage = FileStorage::create(directory.file(), 64 * KIB as u64, IoMode::Direct).expect("create");
    let data = pattern(4 * KIB, 1);
    storage.write(&[Write { offset: 60 * KIB as u64, data: &data }]).expect("write");
    let mut buffer = AlignedBuffer::new(8 * KIB);
    match storage.read(60 * KIB as u64, &mut buffer) {
        Err(StorageError::ShortRead { offset, size, read }) => {
            assert_eq!((offset, size, read), (60 * KIB as u64, 8 * KIB, 4 * KIB));
        }
        other => panic!("expected a short read, got {other:?}"),
    }
    // The part that exists was read.
    assert!(buffer[..4 * KIB] == data[..]);
    match storage.read(64 * KIB as u64, &mut buffer) {
        Err(StorageError::ShortRead { offset, size, read }) => {
            assert_eq!((offset, size, read), (64 * KIB as u64, 8 * KIB, 0))
        }
        other => panic!("expected a short read, got {other:?}"),
    }
    // A file truncated behind the storage's back reads short too.
    drop(storage);
    std::fs::OpenOptions::new()
        .write(true)
        .open(directory.file())
        .and_then(|file| file.set_len(32 * KIB as u64))
        .expect("truncate");
    let mut storage = FileStorage::open(directory.file(), IoMode::Direct).expect("open");
    assert_eq!(storage.size(), 32 * KIB as u64);
    assert!(matches!(
        storage.read(32 * KIB as u64, &mut buffer),
        Err(StorageError::ShortRead { read: 0, .. })
    ));
}

#[test]
fn create_refuses_to_overwrite_an_existing_file() {
    let directory = TestDir::new("exists");
    let mut storage = FileStorage::create(directory.file(), 64 * KIB as u64, IoMode::Direct).expect("create");
    let data = pattern(4 * KIB, 5);
    storage.write_and_sync(&[Write { offset: 8 * KIB as u64, data: &data }]).expect("write");
    drop(storage);
    for mode in [IoMode::Direct, IoMode::Buffered] {
        match FileStorage::create(directory.file(), 128 * KIB as u64, mode) {
            Err(error @ OpenError::Exists { .. }) => {
                let message = error.to_string();
                assert!(message.contains(&directory.file().display().to_string()), "{message}");
                assert!(message.contains("refusing to overwrite"), "{message}");
            }
            other => panic!("expected Exists, got {other:?}"),
        }
    }
    // The existing file is untouched.
    let mut storage = FileStorage::open(directory.file(), IoMode::Direct).expect("open");
    assert_eq!(storage.size(), 64 * KIB as u64);
    assert!(read_back(&mut storage, 8 * KIB as u64, 4 * KIB)[..] == data[..]);
}

#[test]
fn opening_a_missing_file_or_creating_in_a_missing_directory_says_so() {
    let directory = TestDir::new("missing");
    match FileStorage::open(directory.file(), IoMode::Direct) {
        Err(error @ OpenError::NotFound { .. }) => {
            assert!(error.to_string().contains("does not exist"), "{error}")
        }
        other => panic!("expected NotFound, got {other:?}"),
    }
    let nested = directory.0.join("no-such-directory").join("ledger.data");
    assert!(matches!(
        FileStorage::create(&nested, 64 * KIB as u64, IoMode::Direct),
        Err(OpenError::DirectoryNotFound { .. })
    ));
    for mode in [IoMode::Direct, IoMode::Buffered] {
        match FileStorage::open(&directory.0, mode) {
            Err(error @ OpenError::NotAFile { kind: "a directory", .. }) => {
                assert!(error.to_string().contains("is not a regular file"), "{error}")
            }
            other => panic!("expected NotAFile for a directory, got {other:?}"),
        }
    }
}

#[test]
fn a_filesystem_without_o_direct_gives_the_development_hint() {
    // procfs refuses O_DIRECT on every file, and needs no privileges.
    match FileStorage::open("/proc/self/comm", IoMode::Direct) {
        Err(error @ OpenError::DirectIoUnsupported { .. }) => {
            let message = error.to_string();
            assert!(message.contains("/proc/self/comm") && message.contains("--development"), "{message}");
        }
        other => panic!("expected DirectIoUnsupported, got {other:?}"),
    }
    // ramfs is the realistic case for `create` (tmpfs supports O_DIRECT since Linux 6.6).
    let Some(mount) = Mount::new("ramfs", "ramfs", "mode=0755") else { return };
    let path = mount.0.file();
    match FileStorage::create(&path, 64 * KIB as u64, IoMode::Direct) {
        Err(OpenError::DirectIoUnsupported { path: error_path, .. }) => assert_eq!(error_path, path),
        other => panic!("expected DirectIoUnsupported, got {other:?}"),
    }
    // The kernel created the file before refusing O_DIRECT; `create` removed it, so the
    // development-mode retry succeeds.
    assert!(!path.exists(), "create left {} behind", path.display());
    let mut storage = FileStorage::create(&path, 64 * KIB as u64, IoMode::Buffered).expect("buffered create");
    let data = pattern(8 * KIB, 6);
    storage.write_and_sync(&[Write { offset: 16 * KIB as u64, data: &data }]).expect("write");
    assert!(read_back(&mut storage, 16 * KIB as u64, 8 * KIB)[..] == data[..]);
}

#[test]
fn buffered_mode_works_on_tmpfs() {
    let shm = Path::new("/dev/shm");
    if !shm.is_dir() {
        eprintln!("no /dev/shm here; skipping");
        return;
    }
    let directory = TestDir::under(shm, "tmpfs");
    let mut storage =
        FileStorage::create(directory.file(), 4 * MIB as u64, IoMode::Buffered).expect("create");
    assert_eq!(storage.mode(), IoMode::Buffered);
    let first = pattern(MIB, 8);
    let second = pattern(12 * KIB, 9);
    let writes =
        [Write { offset: MIB as u64, data: &first }, Write { offset: 3 * MIB as u64, data: &second }];
    storage.write_and_sync(&writes).expect("write and sync");
    drop(storage);
    let mut storage = FileStorage::open(directory.file(), IoMode::Buffered).expect("open");
    assert!(read_back(&mut storage, MIB as u64, MIB)[..] == first[..]);
    assert!(read_back(&mut storage, 3 * MIB as u64, 12 * KIB)[..] == second[..]);
    assert_zeros(&mut storage, 0, MIB);
}

#[test]
fn a_full_filesystem_fails_create_with_no_space_and_leaves_no_file() {
    let Some(mount) = Mount::new("full", "tmpfs", "size=1m") else { return };
    let path = mount.0.file();
    match FileStorage::create(&path, 2 * MIB as u64, IoMode::Buffered) {
        Err(OpenError::Fill { source: StorageError::NoSpace { offset, .. }, .. }) => {
            assert!(offset < 2 * MIB as u64, "offset {offset}");
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(!path.exists(), "create left a partial file behind");
}

/// The environment variable that tells the child test where the data file is.
const NO_SPACE_CHILD_FILE: &str = "LEDGER_TEST_NO_SPACE_FILE";

/// Writes past a file size limit fail with `NoSpace`. The limit (RLIMIT_FSIZE) and ignoring
/// SIGXFSZ apply to a whole process, so they are set in a child process that runs only
/// `no_space_child`, leaving the tests in this process's other threads unaffected.
#[test]
fn writes_past_the_file_size_limit_fail_with_no_space() {
    let directory = TestDir::new("no_space");
    drop(FileStorage::create(directory.file(), MIB as u64, IoMode::Direct).expect("create"));
    let output = Command::new(std::env::current_exe().expect("test binary"))
        .args(["--exact", "no_space_child", "--ignored", "--nocapture", "--test-threads=1"])
        .env(NO_SPACE_CHILD_FILE, directory.file())
        .output()
        .expect("run the child test");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child failed:\n{stdout}\n{stderr}");
    // Guard against a filter that matched nothing: the child must have run.
    assert!(stdout.contains("1 passed"), "child did not run:\n{stdout}\n{stderr}");
}

#[test]
#[ignore = "run by writes_past_the_file_size_limit_fail_with_no_space in a child process"]
fn no_space_child() {
    let path = std::env::var_os(NO_SPACE_CHILD_FILE).expect("run by its parent test only");
    let limit = 256 * KIB;
    // SAFETY: ignoring a signal and lowering a limit, in a process that runs only this test.
    unsafe {
        assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
        let rlimit = libc::rlimit { rlim_cur: limit as libc::rlim_t, rlim_max: libc::RLIM_INFINITY };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit), 0);
    }
    let mut storage = FileStorage::open(&path, IoMode::Direct).expect("open");
    let data = pattern(64 * KIB, 10);
    // Wholly past the limit.
    match storage.write(&[Write { offset: 512 * KIB as u64, data: &data[..4 * KIB] }]) {
        Err(StorageError::NoSpace { offset, size, source }) => {
            assert_eq!((offset, size, source.raw_os_error()), (512 * KIB as u64, 4 * KIB, Some(libc::EFBIG)));
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    // Straddling the limit: the kernel writes up to it (a short write), and the rest fails.
    match storage.write_and_sync(&[Write { offset: (limit - 32 * KIB) as u64, data: &data }]) {
        Err(StorageError::NoSpace { offset, size, .. }) => {
            assert_eq!((offset, size), (limit as u64, 32 * KIB))
        }
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(read_back(&mut storage, (limit - 32 * KIB) as u64, 32 * KIB)[..] == data[..32 * KIB]);
    // Below the limit, writing still works.
    storage.write_and_sync(&[Write { offset: 0, data: &data }]).expect("write below the limit");
    assert!(read_back(&mut storage, 0, 64 * KIB)[..] == data[..]);
    // And `create` reports the limit while filling, removing its partial file.
    let new_path = Path::new(&path).with_file_name("new.data");
    match FileStorage::create(&new_path, MIB as u64, IoMode::Direct) {
        Err(OpenError::Fill { source: StorageError::NoSpace { .. }, .. }) => {}
        other => panic!("expected NoSpace, got {other:?}"),
    }
    assert!(!new_path.exists(), "create left a partial file behind");
}

/// Makes `io_uring_setup` fail with `errno` on the calling thread only, as a container runtime's
/// seccomp profile does for a whole process.
fn block_io_uring_setup_on_this_thread(errno: i32) {
    let filter = [
        // Load the system call number (`seccomp_data.nr`, at offset 0).
        libc::sock_filter { code: (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16, jt: 0, jf: 0, k: 0 },
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: libc::SYS_io_uring_setup as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ERRNO | errno as u32,
        },
        libc::sock_filter {
            code: (libc::BPF_RET | libc::BPF_K) as u16,
            jt: 0,
            jf: 0,
            k: libc::SECCOMP_RET_ALLOW,
        },
    ];
    let program = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: both calls only read their arguments; without SECCOMP_FILTER_FLAG_TSYNC the filter
    // applies to this thread alone (and threads it starts), so other tests are unaffected.
    unsafe {
        assert_eq!(libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), 0);
        assert_eq!(libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &program), 0);
    }
}

#[test]
fn io_uring_blocked_by_a_sandbox_is_a_clear_error_and_creates_no_file() {
    let directory = TestDir::new("no_io_uring");
    let path = directory.file();
    // A thread of its own, which ends with the test, carries the filter.
    let result = std::thread::spawn(move || {
        block_io_uring_setup_on_this_thread(libc::ENOSYS);
        let created = FileStorage::create(&path, 64 * KIB as u64, IoMode::Direct);
        (created, path.exists())
    })
    .join()
    .expect("test thread");
    match result {
        (Err(error @ OpenError::IoUringUnavailable { .. }), false) => {
            let message = error.to_string();
            assert!(
                message.contains("ledger.data") && message.contains("io_uring is unavailable"),
                "{message}"
            );
        }
        other => panic!("expected IoUringUnavailable and no file, got {other:?}"),
    }
    // This thread was never filtered.
    drop(FileStorage::create(directory.file(), 64 * KIB as u64, IoMode::Direct).expect("create"));
}
