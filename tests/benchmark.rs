//! `ledger benchmark` end to end at a small size: it formats, starts a replica process, pushes
//! transfers through the client library, verifies the ledger, reports, and cleans up.

use std::process::Command;

#[test]
fn a_small_benchmark_runs_verifies_and_reports_every_figure() {
    let directory =
        std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("bench-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("directory");
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args([
            "benchmark",
            "--account-count",
            "200",
            "--transfer-count",
            "30000",
            "--transfer-batch-size",
            "1000",
        ])
        .args([
            "--clients",
            "3",
            "--account-distribution",
            "zipf",
            "--transfer-pending",
            "20",
            "--read-count",
            "3",
        ])
        .current_dir(&directory)
        .output()
        .expect("run ledger benchmark");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("verified: debits = credits"), "{stderr}");
    for line in [
        "transfers/s",
        "transfer batch latency: p1",
        "lookup_accounts batch latency",
        "lookup_transfers batch latency",
        "get_account_transfers latency",
        "data file:",
        "replica memory:",
    ] {
        assert!(stdout.contains(line), "missing {line:?} in:\n{stdout}");
    }
    // The temporary data file is gone.
    let left: Vec<_> = std::fs::read_dir(&directory).expect("read dir").collect();
    assert!(left.is_empty(), "the benchmark left files behind: {left:?}");
    let _ = std::fs::remove_dir(&directory);
}

/// Runs a small `ledger benchmark` of three replicas with `extra` options in a directory of its
/// own, checks that it verified the ledger and removed every data file, and returns its stdout.
fn small_cluster_benchmark(name: &str, extra: &str) -> String {
    let directory = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("bench-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&directory).expect("directory");
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["benchmark", "--replica-count", "3", "--account-count", "100", "--transfer-count", "20000"])
        .args(["--transfer-batch-size", "500", "--read-count", "2", extra])
        .current_dir(&directory)
        .output()
        .expect("run ledger benchmark");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("3 replica(s), each its own process"), "{stderr}");
    assert!(stderr.contains("verified: debits = credits"), "{stderr}");
    assert!(stdout.contains("transfers/s") && stdout.contains("(each of 3 replica(s))"), "{stdout}");
    let left: Vec<_> = std::fs::read_dir(&directory).expect("read dir").collect();
    assert!(left.is_empty(), "the benchmark left files behind: {left:?}");
    let _ = std::fs::remove_dir(&directory);
    stdout
}

/// With `--replica-count 3 --failover`: three replica processes replicating over loopback, the
/// primary killed a third of the way, the same workload and verification.
#[test]
fn a_small_cluster_benchmark_runs_verifies_and_cleans_up() {
    let stdout = small_cluster_benchmark("failover", "--failover");
    assert!(stdout.contains("(the primary) killed; the first request sent after it answered"), "{stdout}");
}

/// With `--catch-up`: a backup killed before the transfers restarts after them and catches up
/// (recovery, normal status, the primary's commit point, each timed).
#[test]
fn a_small_cluster_benchmark_times_a_restarted_backup_catching_up() {
    let stdout = small_cluster_benchmark("catch-up", "--catch-up");
    assert!(stdout.contains("(a backup) restarted after the transfers: listening after"), "{stdout}");
    assert!(stdout.contains("caught up with commit"), "{stdout}");
}

#[test]
fn benchmark_options_out_of_range_are_refused_clearly() {
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["benchmark", "--transfer-batch-size", "9000"])
        .output()
        .expect("run ledger benchmark");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--transfer-batch-size must be 1..=8189"));
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["benchmark", "--failover"])
        .output()
        .expect("run ledger benchmark");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--failover needs --replica-count 3 or more"));
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["benchmark", "--catch-up"])
        .output()
        .expect("run ledger benchmark");
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--catch-up needs --replica-count 3 or more"));
}
