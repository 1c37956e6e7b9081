//! The `ledger` binary against real data files: `format` and `inspect`, and every way a data
//! file can be wrong — already there, truncated, from another program, too big for the disk —
//! each giving a clear error and damaging nothing.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Output};

fn ledger() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ledger"))
}

fn path(name: &str) -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.ledger", std::process::id()));
    let _ = std::fs::remove_file(&path);
    path
}

fn format(path: &PathBuf) -> Output {
    ledger()
        .args(["format", "--cluster", "42", "--development"])
        .arg(path)
        .output()
        .expect("run ledger format")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn format_then_inspect_shows_an_empty_log_and_format_refuses_to_overwrite() {
    let path = path("format");
    let output = format(&path);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("formatted"), "{}", stderr(&output));
    let size = std::fs::metadata(&path).expect("data file").len();

    let inspect = ledger().arg("inspect").arg(&path).output().expect("run ledger inspect");
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let report = String::from_utf8_lossy(&inspect.stdout);
    assert!(report.contains("cluster: 42"), "{report}");
    assert!(report.contains("checkpoint: op 0, timestamp 0, id 0x"), "{report}");
    assert_eq!(report.matches(": ok, sequence 1").count(), 4, "{report}");
    assert!(report.contains("slots: 0 intact, 64 never written, 0 damaged"), "{report}");

    let again = format(&path);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("already exists; refusing to overwrite"), "{}", stderr(&again));
    assert_eq!(std::fs::metadata(&path).expect("still there").len(), size);
    let _ = std::fs::remove_file(&path);
}

#[test]
fn inspect_reports_a_truncated_file_and_a_foreign_file_clearly() {
    let path = path("truncated");
    assert!(format(&path).status.success());
    let file = std::fs::OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(1 << 20).expect("truncate");
    drop(file);
    let inspect = ledger().arg("inspect").arg(&path).output().expect("run ledger inspect");
    assert!(!inspect.status.success());
    assert!(stderr(&inspect).contains("truncated"), "{}", stderr(&inspect));

    let foreign = self::path("foreign");
    let bytes: Vec<u8> =
        (0..1 << 20).map(|index: u32| (index.wrapping_mul(2654435761) >> 13) as u8).collect();
    std::fs::write(&foreign, bytes).expect("write a foreign file");
    let inspect = ledger().arg("inspect").arg(&foreign).output().expect("run ledger inspect");
    assert!(!inspect.status.success());
    assert!(stderr(&inspect).contains("not a ledger data file"), "{}", stderr(&inspect));

    let missing = self::path("missing");
    let inspect = ledger().arg("inspect").arg(&missing).output().expect("run ledger inspect");
    assert!(stderr(&inspect).contains("does not exist"), "{}", stderr(&inspect));
    let _ = std::fs::remove_file(&path);
    let _ = std::fs::remove_file(&foreign);
}

#[test]
fn format_on_a_full_disk_fails_clearly_and_leaves_no_file() {
    let path = path("full");
    let mut command = ledger();
    command.args(["format", "--cluster", "42", "--development"]).arg(&path);
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        command.pre_exec(|| {
            // A file size limit of 8 MiB stands in for a full disk: writes past it fail with
            // EFBIG (SIGXFSZ is ignored so the process sees the error instead of dying).
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            let limit = libc::rlimit { rlim_cur: 8 << 20, rlim_max: 8 << 20 };
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let output = command.output().expect("run ledger format");
    assert!(!output.status.success());
    assert!(stderr(&output).contains("no space left"), "{}", stderr(&output));
    assert!(!path.exists(), "the partial data file was removed");
}

#[test]
fn a_data_file_in_use_by_one_process_is_refused_to_another() {
    let path = path("in-use");
    assert!(format(&path).status.success());
    let held =
        ledger::storage::FileStorage::open(&path, ledger::storage::IoMode::Direct).expect("first open");
    // A second process (here: `ledger inspect`) is refused while the first holds the file.
    let inspect = ledger().arg("inspect").arg(&path).output().expect("run ledger inspect");
    assert!(!inspect.status.success());
    assert!(stderr(&inspect).contains("in use by another process"), "{}", stderr(&inspect));
    drop(held);
    let inspect = ledger().arg("inspect").arg(&path).output().expect("run ledger inspect");
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn format_refuses_capacities_and_replica_counts_start_cannot_serve_before_creating_anything() {
    let cases: [(&[&str], &str); 10] = [
        (&["--accounts-max", "0"], "--accounts-max 0 is out of range: it must be from 1 to 4294967294"),
        (&["--transfers-max", "0"], "--transfers-max 0 is out of range: it must be from 1 to 4294967294"),
        (&["--expiries-max", "0"], "--expiries-max 0 is out of range: it must be from 1 to 4294967294"),
        (&["--history-max", "0"], "--history-max 0 is out of range: it must be from 1 to 4294967294"),
        (&["--history-max", "4294967295"], "--history-max 4294967295 is out of range"),
        (&["--transfers-max", "100", "--expiries-max", "101"], "must be at most --transfers-max"),
        (&["--accounts-max", "400000000"], "more than the 196608 a checkpoint can reference"),
        (&["--replica-count", "7"], "--replica-count 7 is out of range: a cluster has 1 to 6 replicas"),
        (&["--replica-count", "0"], "--replica-count 0 is out of range: a cluster has 1 to 6 replicas"),
        (&["--replica", "3", "--replica-count", "3"], "--replica 3 must be below --replica-count 3"),
    ];
    for (arguments, expected) in cases {
        let path = path("refused");
        let output = ledger()
            .args(["format", "--cluster", "42", "--development"])
            .args(arguments)
            .arg(&path)
            .output()
            .expect("run ledger format");
        assert!(!output.status.success(), "{arguments:?} was accepted");
        assert!(stderr(&output).contains(expected), "{arguments:?}: {}", stderr(&output));
        assert!(!stderr(&output).contains("info: formatting"), "{arguments:?}: {}", stderr(&output));
        assert!(!path.exists(), "{arguments:?} left a file");
    }
    // At the limits: the smallest capacities, and as many expiries as transfers, are served.
    let path = path("smallest");
    let output = ledger()
        .args(["format", "--cluster", "42", "--development"])
        .args(["--accounts-max", "1", "--transfers-max", "1", "--expiries-max", "1", "--history-max", "1"])
        .arg(&path)
        .output()
        .expect("run ledger format");
    assert!(output.status.success(), "{}", stderr(&output));
    let inspect = ledger().arg("inspect").arg(&path).output().expect("run ledger inspect");
    assert!(inspect.status.success(), "{}", stderr(&inspect));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn format_announces_formatting_only_once_the_file_is_created() {
    let path = path("announce");
    let output = format(&path);
    assert!(stderr(&output).contains("info: formatting"), "{}", stderr(&output));
    let again = format(&path);
    assert!(!again.status.success());
    assert!(!stderr(&again).contains("info: formatting"), "{}", stderr(&again));
    let _ = std::fs::remove_file(&path);
}

#[test]
fn a_device_a_fifo_or_a_directory_is_not_a_regular_file() {
    let fifo = path("fifo");
    let c_path = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0, "mkfifo");
    let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let cases = [
        (PathBuf::from("/dev/null"), "a character device"),
        (fifo.clone(), "a FIFO"),
        (directory, "a directory"),
    ];
    for (path, kind) in cases {
        for development in [false, true] {
            let mut command = ledger();
            command.arg("inspect").arg(&path);
            if development {
                command.arg("--development");
            }
            let output = command.output().expect("run ledger inspect");
            assert!(!output.status.success());
            let message = stderr(&output);
            assert!(message.contains("is not a regular file") && message.contains(kind), "{message}");
            assert!(!message.contains("O_DIRECT"), "{message}");
        }
    }
    let _ = std::fs::remove_file(&fifo);
}

#[test]
fn a_foreign_file_is_named_by_its_magic_bytes_as_text() {
    let foreign = path("zip");
    let mut bytes = b"PK\x03\x04\x14\x00\x08\x00".to_vec();
    bytes.resize(1 << 20, 7);
    std::fs::write(&foreign, bytes).expect("write a foreign file");
    let inspect = ledger().arg("inspect").arg(&foreign).output().expect("run ledger inspect");
    assert!(!inspect.status.success());
    assert!(
        stderr(&inspect).contains(r#"found magic "PK\x03\x04\x14\x00\x08\x00...""#),
        "{}",
        stderr(&inspect)
    );

    std::fs::write(&foreign, vec![0u8; 1 << 20]).expect("write zeros");
    let inspect = ledger().arg("inspect").arg(&foreign).output().expect("run ledger inspect");
    assert!(stderr(&inspect).contains("starts with zero bytes"), "{}", stderr(&inspect));
    let _ = std::fs::remove_file(&foreign);
}

#[test]
fn a_sparse_copy_of_a_data_file_is_warned_about_at_start_and_by_inspect() {
    let original = path("preallocated");
    assert!(format(&original).status.success());
    let copy = path("sparse");
    let status =
        Command::new("cp").arg("--sparse=always").arg(&original).arg(&copy).status().expect("run cp");
    assert!(status.success());
    let _ = std::fs::remove_file(&original);
    let metadata = std::fs::metadata(&copy).expect("the copy");
    if std::os::unix::fs::MetadataExt::blocks(&metadata) * 512 >= metadata.len() / 2 {
        eprintln!("this filesystem did not make the copy sparse; nothing to test");
        let _ = std::fs::remove_file(&copy);
        return;
    }
    let inspect = ledger().arg("inspect").arg(&copy).output().expect("run ledger inspect");
    assert!(inspect.status.success(), "a sparse file is at risk, not damaged: {}", stderr(&inspect));
    let warning = stderr(&inspect);
    assert!(
        warning.contains("is sparse") && warning.contains(&format!("of its {} bytes", metadata.len())),
        "{warning}"
    );
    assert!(warning.contains("fallocate") && warning.contains("--sparse=never"), "{warning}");
    // 192.0.2.1 (TEST-NET-1) is never a local address: `start` opens and recovers the file,
    // then fails to listen and exits.
    let start = ledger()
        .args(["start", "--development", "--addresses", "192.0.2.1:1"])
        .arg(&copy)
        .output()
        .expect("run ledger start");
    assert!(stderr(&start).contains("is sparse"), "{}", stderr(&start));
    let _ = std::fs::remove_file(&copy);
}

/// What a populated data file holds, and where.
struct Populated {
    path: PathBuf,
    layout: ledger::storage::layout::Layout,
    checkpoint_op: u64,
    op_head: u64,
    manifest_address: u64,
    session_slot: u64,
}

/// The client of the populated file's requests.
const CLIENT: u128 = 77;

/// A development data file with a checkpoint (manifest, pages, `CLIENT`'s session) and, after
/// it, a few pulses in the WAL (from the replica itself, so no session's reply changes), whose
/// redundant headers are flushed: what a replica leaves after a clean stop.
fn populated(name: &str) -> Populated {
    use ledger::operation::Operation;
    use ledger::types::{Account, Transfer};
    use ledger::vsr::replica_state::{ReplicaState, Request};
    let path = path(name);
    assert!(format(&path).status.success());
    let storage = ledger::storage::FileStorage::open(&path, ledger::storage::IoMode::Direct).expect("open");
    let mut ledger = ReplicaState::open(storage, Some(42)).expect("recover");
    let accounts: Vec<Account> =
        (1..=2u128).map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect();
    let transfers: Vec<Transfer> = (1..=50u128)
        .map(|id| Transfer {
            id,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 1,
            ledger: 1,
            code: 1,
            ..Transfer::default()
        })
        .collect();
    let bodies = [body(&[] as &[Account]), body(&accounts), body(&transfers)];
    let operations = [Operation::Register, Operation::CreateAccounts, Operation::CreateTransfers];
    for (number, (operation, body)) in operations.iter().zip(&bodies).enumerate() {
        let bytes: &[u8] = bytemuck::cast_slice(&body.0);
        let body = if *operation == Operation::Register { &[][..] } else { &bytes[..body.1] };
        let request = Request {
            operation: *operation,
            body,
            client: CLIENT,
            request: number as u32,
            checksum: number as u128,
        };
        ledger.submit(&[request], 1_000_000_000 + number as u64, |_, _| {}).expect("submit");
    }
    ledger.checkpoint().expect("checkpoint");
    let pulse = Request { operation: Operation::Pulse, body: &[], client: 0, request: 0, checksum: 0 };
    for index in 0..3 {
        ledger.submit(&[pulse], 2_000_000_000 + index, |_, _| {}).expect("pulse");
    }
    ledger.flush().expect("flush");
    let superblock = *ledger.data_file().superblock();
    let (session_slot, _) = ledger.clients().get(CLIENT).expect("a session");
    let populated = Populated {
        path,
        layout: superblock.layout(),
        checkpoint_op: superblock.checkpoint.op,
        op_head: ledger.commit_min(),
        manifest_address: superblock.checkpoint.manifest[0].address,
        session_slot: session_slot as u64,
    };
    assert!(populated.checkpoint_op > 0 && populated.op_head == populated.checkpoint_op + 3);
    assert!(superblock.checkpoint.manifest_block_count >= 1);
    populated
}

/// A request body of `events`, 16-byte aligned, and its size.
fn body<T: bytemuck::Pod>(events: &[T]) -> (Vec<u128>, usize) {
    let mut body = vec![0u128; ledger::constants::MESSAGE_BODY_SIZE_MAX / 16];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut body);
    bytes[..std::mem::size_of_val(events)].copy_from_slice(bytemuck::cast_slice(events));
    let size = ledger::multi_batch::encode_single(bytes, core::mem::size_of::<T>(), events.len());
    (body, size)
}

/// Overwrites `size` bytes at `offset` with zeros (a lost or wiped sector; a random bit flip
/// could land in padding that no checksum covers).
fn zero(path: &PathBuf, offset: u64, size: usize) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).expect("open to damage");
    file.write_all_at(&vec![0; size], offset).expect("damage");
    file.sync_all().expect("sync");
}

fn inspect(path: &PathBuf) -> (Output, String) {
    let output = ledger().arg("inspect").arg(path).output().expect("run ledger inspect");
    let report = String::from_utf8_lossy(&output.stdout).into_owned();
    (output, report)
}

/// Runs `start` on `path` up to its failure to listen on a non-local address (TEST-NET-1):
/// far enough to see whether it recovers the file.
fn start_until_listen(path: &PathBuf) -> Output {
    ledger()
        .args(["start", "--development", "--addresses", "192.0.2.1:1"])
        .arg(path)
        .output()
        .expect("run ledger start")
}

#[test]
fn inspect_passes_an_intact_populated_file_and_names_each_damaged_grid_block_that_start_refuses() {
    let file = populated("grid");
    let (output, report) = inspect(&file.path);
    assert!(output.status.success(), "{report}{}", stderr(&output));
    assert!(report.contains("verdict: ok (0 warnings)"), "{report}");
    assert!(report.contains("client replies: 1 of 1 live sessions intact"), "{report}");
    assert!(!report.contains("grid blocks verified: 0"), "{report}");

    // The manifest's first reference is page 0 of the accounts: {checksum u128, address u64}.
    let manifest = std::fs::read(&file.path).expect("read");
    let manifest_offset = file.layout.block_offset(file.manifest_address) as usize;
    let page = &manifest[manifest_offset + 16..][..8];
    let page_address = u64::from_le_bytes(page.try_into().expect("8 bytes"));
    drop(manifest);
    let page_offset = file.layout.block_offset(page_address);
    zero(&file.path, page_offset, 4096);
    let (output, report) = inspect(&file.path);
    assert!(!output.status.success(), "{report}");
    let expected = format!("page 0 of the accounts: grid block {page_address} (file offset {page_offset})");
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
    assert!(report.contains("verdict: DAMAGED (1 errors"), "{report}");
    let start = start_until_listen(&file.path);
    assert!(stderr(&start).contains(&format!("grid block {page_address}")), "{}", stderr(&start));

    // Every damaged block is named, not just the first.
    let manifest_offset = file.layout.block_offset(file.manifest_address);
    zero(&file.path, manifest_offset + 4096, 4096);
    zero(&file.path, manifest_offset, 4096);
    let (output, _) = inspect(&file.path);
    assert!(!output.status.success());
    let expected =
        format!("manifest block 0: grid block {} (file offset {manifest_offset})", file.manifest_address);
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
    let _ = std::fs::remove_file(&file.path);
}

#[test]
fn inspect_fails_naming_a_damaged_wal_entry_whose_redundant_header_proves_it_durable() {
    let file = populated("wal-durable");
    let op = file.checkpoint_op + 1;
    let slot = op % file.layout.journal_slot_count;
    let offset = file.layout.wal_prepare_offset(slot);
    zero(&file.path, offset, 4096);
    let (output, report) = inspect(&file.path);
    assert!(!output.status.success(), "{report}");
    let expected = format!("WAL entry for op {op} (slot {slot}, file offset {offset})");
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
    assert!(stderr(&output).contains("start refuses"), "{}", stderr(&output));
    assert!(report.contains(&format!("DAMAGED slot {slot} at offset {offset}")), "{report}");
    let start = start_until_listen(&file.path);
    assert!(!start.status.success());
    assert!(stderr(&start).contains(&format!("WAL entry for op {op} (slot {slot}")), "{}", stderr(&start));
    let _ = std::fs::remove_file(&file.path);
}

#[test]
fn inspect_warns_about_a_torn_head_that_start_cuts_and_exits_zero() {
    let file = populated("wal-torn");
    // The head op's prepare torn, and its redundant header never written: nothing proves it
    // was durable, so it was never acknowledged.
    let slot = file.op_head % file.layout.journal_slot_count;
    let offset = file.layout.wal_prepare_offset(slot);
    zero(&file.path, offset, 4096);
    zero(&file.path, file.layout.wal_headers_offset() + slot * 256, 256);
    let (output, report) = inspect(&file.path);
    assert!(output.status.success(), "{report}{}", stderr(&output));
    let expected = format!("warning: WAL slot {slot} (file offset {offset}) is torn at the head of the log");
    assert!(report.contains(&expected), "{report}");
    assert!(report.contains(&format!("recovery cuts the log before op {}", file.op_head)), "{report}");
    assert!(report.contains("verdict: ok"), "{report}");
    let start = start_until_listen(&file.path);
    assert!(stderr(&start).contains("a torn write at the head was cut"), "{}", stderr(&start));
    let _ = std::fs::remove_file(&file.path);
}

#[test]
fn inspect_says_when_superblock_redundancy_is_reduced() {
    let file = populated("superblock");
    zero(&file.path, 8192, 4096);
    let (output, report) = inspect(&file.path);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("redundancy reduced: 3 of 4 copies intact"), "{report}");
    zero(&file.path, 2 * 8192, 4096);
    let (output, report) = inspect(&file.path);
    assert!(output.status.success(), "{report}");
    assert!(report.contains("redundancy reduced: 2 of 4 copies intact"), "{report}");
    zero(&file.path, 3 * 8192, 4096);
    let (output, _) = inspect(&file.path);
    assert!(!output.status.success());
    assert!(stderr(&output).contains("superblock is corrupt"), "{}", stderr(&output));
    let _ = std::fs::remove_file(&file.path);
}

#[test]
fn inspect_fails_naming_a_corrupted_client_reply_that_start_would_end_the_session_for() {
    let file = populated("reply");
    let offset = file.layout.client_reply_offset(file.session_slot);
    zero(&file.path, offset, 4096);
    let (output, report) = inspect(&file.path);
    assert!(!output.status.success(), "{report}");
    let expected = format!(
        "client reply slot {} (file offset {offset}, client {CLIENT}) is corrupted",
        file.session_slot
    );
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
    assert!(report.contains("client replies: 0 of 1 live sessions intact"), "{report}");
    let _ = std::fs::remove_file(&file.path);
}

#[test]
fn inspect_fails_on_a_corrupted_wal_slot_of_a_checkpointed_op_although_start_does_not_need_it() {
    let file = populated("wal-old");
    // Op 1 is covered by the checkpoint, and its slot is far from the head: no torn append
    // explains damage there, so the disk corrupted it.
    let slot = 1;
    assert!(file.checkpoint_op >= 1);
    let offset = file.layout.wal_prepare_offset(slot);
    zero(&file.path, offset, 4096);
    let (output, report) = inspect(&file.path);
    assert!(!output.status.success(), "{report}");
    let expected =
        format!("WAL slot {slot} (file offset {offset}) is corrupted: it is not at the head of the log");
    assert!(stderr(&output).contains(&expected), "{}", stderr(&output));
    let start = start_until_listen(&file.path);
    assert!(stderr(&start).contains("info: recovered"), "start serves it: {}", stderr(&start));
    let _ = std::fs::remove_file(&file.path);
}

#[test]
fn help_gives_every_capacity_default_with_and_without_development_and_the_cluster_sizes() {
    let help = ledger().args(["format", "--help"]).output().expect("run ledger format --help");
    let help = String::from_utf8_lossy(&help.stdout).into_owned();
    for option in ["--accounts-max", "--transfers-max", "--expiries-max", "--history-max"] {
        let line = help.lines().find(|line| line.trim_start().starts_with(option)).expect(option);
        assert!(line.contains("default") && line.contains("with --development"), "{line}");
    }
    assert!(help.contains("The number of replicas in the cluster, 1 to 6"), "{help}");
    let top = ledger().arg("--help").output().expect("run ledger --help");
    let top = String::from_utf8_lossy(&top.stdout).into_owned();
    assert!(
        top.contains("replicated across a cluster of 1 to 6 replicas with Viewstamped Replication"),
        "{top}"
    );
}
