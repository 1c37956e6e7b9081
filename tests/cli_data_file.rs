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
    let cases: [(&[&str], &str); 9] = [
        (&["--accounts-max", "0"], "--accounts-max 0 is out of range: it must be from 1 to 4294967294"),
        (&["--transfers-max", "0"], "--transfers-max 0 is out of range: it must be from 1 to 4294967294"),
        (&["--expiries-max", "0"], "--expiries-max 0 is out of range: it must be from 1 to 4294967294"),
        (&["--history-max", "0"], "--history-max 0 is out of range: it must be from 1 to 4294967294"),
        (&["--history-max", "4294967295"], "--history-max 4294967295 is out of range"),
        (&["--transfers-max", "100", "--expiries-max", "101"], "must be at most --transfers-max"),
        (&["--accounts-max", "400000000"], "more than the 196608 a checkpoint can reference"),
        (&["--replica-count", "3"], "single-replica clusters only (replication is not built yet)"),
        (&["--replica-count", "0"], "use --replica-count 1"),
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
