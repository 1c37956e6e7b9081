//! `ledger benchmark`: the whole system end to end on this machine. Formats a data file per
//! replica, starts each replica as its own process (`ledger start`, with its own io_uring ring;
//! with `--replica-count` 2–6, a cluster replicating over loopback TCP), creates accounts,
//! submits transfers through the client library over loopback TCP, measures throughput and
//! latency, then verifies that the ledger is consistent — a benchmark that measures a broken
//! system is worthless.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::client::Client;
use crate::constants::BATCH_EVENTS_MAX;
use crate::types::{
    Account, AccountFilter, AccountFilterFlags, CreateAccountStatus, CreateTransferStatus, QueryFilter,
    Transfer,
};
use crate::workload::{AccountDistribution, Workload};

/// What to run.
#[derive(Clone, Debug, clap::Args)]
pub struct BenchmarkOptions {
    /// Accounts to create.
    #[arg(long, default_value_t = 10_000)]
    pub account_count: u64,
    /// Transfers to create.
    #[arg(long, default_value_t = 10_000_000)]
    pub transfer_count: u64,
    /// Transfers per request (at most 8189).
    #[arg(long, default_value_t = BATCH_EVENTS_MAX as u64)]
    pub transfer_batch_size: u64,
    /// Client sessions submitting concurrently, each from its own thread. Two keep the replica
    /// busy (one request executes while the other's reply and next request travel); more only
    /// queue behind them on a 2-core machine, adding latency but no throughput.
    #[arg(long, default_value_t = 2)]
    pub clients: u64,
    /// Which accounts transfers pick.
    #[arg(long, value_enum, default_value_t = AccountDistribution::Uniform)]
    pub account_distribution: AccountDistribution,
    /// Percentage of transfers that are pending (two-phase, left reserved).
    #[arg(long, default_value_t = 0)]
    pub transfer_pending: u64,
    /// Seed of the generated accounts and transfers.
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// Lookup and query batches to time after the transfers.
    #[arg(long, default_value_t = 50)]
    pub read_count: u64,
    /// The data file (default: a new file in the current directory, removed at the end). An
    /// existing file is never overwritten.
    #[arg(long)]
    pub file: Option<PathBuf>,
    /// Keep the data file at the end.
    #[arg(long)]
    pub keep_file: bool,
    /// Replicas of the cluster, 1 to 6, each its own process with its own data file (with
    /// more than one, --file names the first; the others get `.1`, `.2`, ... appended).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=6))]
    pub replica_count: u8,
    /// With --replica-count 3 or more: SIGKILL the primary once a third of the transfers are
    /// acknowledged, and report the time from the kill to the first reply of a request sent
    /// after it (the new primary's). The run carries on and verifies as usual.
    #[arg(long)]
    pub failover: bool,
    /// With --replica-count 3 or more: SIGKILL a backup before the transfers, restart it once
    /// they are done, and report how long it takes to recover, to be normal (serving) and to
    /// have caught up with the primary's commits. Without state sync the transfers must fit in
    /// the WAL it catches up from (1,024 requests: about 8M transfers in batches of 8,189).
    #[arg(long, conflicts_with = "failover")]
    pub catch_up: bool,
}

/// Latency percentiles of one kind of batch.
#[derive(Clone, Copy, Debug, Default)]
pub struct Latency {
    /// 1st percentile.
    pub p1: Duration,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// Maximum.
    pub p100: Duration,
}

impl Latency {
    fn of(samples: &mut [Duration]) -> Latency {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_unstable();
        let at = |percent: usize| samples[(samples.len() - 1) * percent / 100];
        Latency { p1: at(1), p50: at(50), p99: at(99), p100: at(100) }
    }
}

impl std::fmt::Display for Latency {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |duration: Duration| duration.as_secs_f64() * 1000.0;
        write!(
            f,
            "p1 {:.2} ms, p50 {:.2} ms, p99 {:.2} ms, p100 {:.2} ms",
            ms(self.p1),
            ms(self.p50),
            ms(self.p99),
            ms(self.p100)
        )
    }
}

/// How a restarted backup caught up (`--catch-up`).
#[derive(Clone, Copy, Debug)]
pub struct CatchUp {
    /// Its index.
    pub replica: usize,
    /// The primary's commit point it reached.
    pub commit: u64,
    /// From its restart to listening (recovery of its data file).
    pub listening: Duration,
    /// From its restart to normal status (serving its view).
    pub normal: Duration,
    /// From its restart to executing every op the primary had.
    pub caught_up: Duration,
}

/// What the benchmark measured.
#[derive(Clone, Debug)]
pub struct Report {
    /// With `--failover`: which replica was killed, and how long after the kill the first
    /// request sent after it was answered.
    pub failover: Option<(usize, Duration)>,
    /// With `--catch-up`: the backup restarted, its commit point when caught up, and how long
    /// after its restart it listened (recovery), was normal, and had caught up.
    pub catch_up: Option<CatchUp>,
    /// Transfers created per second (wall clock from first to last reply).
    pub transfers_per_second: f64,
    /// Latency of one transfer batch.
    pub transfer_latency: Latency,
    /// Latency of one `lookup_accounts` batch.
    pub lookup_accounts_latency: Latency,
    /// Latency of one `lookup_transfers` batch.
    pub lookup_transfers_latency: Latency,
    /// Latency of one `get_account_transfers` query (limit 8189).
    pub query_latency: Latency,
    /// The data file's size.
    pub data_file_size: u64,
    /// Replicas of the cluster measured.
    pub replica_count: u8,
    /// The replica's peak resident memory (VmHWM), and its resident memory once started (the
    /// largest of the replicas').
    pub replica_rss_peak: u64,
    /// The replica's resident memory after start-up, before load.
    pub replica_rss_start: u64,
}

/// Runs the benchmark with the `ledger` binary at `ledger_binary`; progress goes to stderr.
pub fn run(ledger_binary: &Path, options: &BenchmarkOptions) -> Result<Report, String> {
    if options.transfer_batch_size == 0 || options.transfer_batch_size > BATCH_EVENTS_MAX as u64 {
        return Err(format!("--transfer-batch-size must be 1..={BATCH_EVENTS_MAX}"));
    }
    if options.account_count < 2 || options.clients == 0 || options.transfer_pending > 100 {
        return Err("need at least 2 accounts, 1 client, and --transfer-pending at most 100".to_string());
    }
    if options.catch_up && options.replica_count < 3 {
        return Err(
            "--catch-up needs --replica-count 3 or more (a cluster that serves without a backup)".to_string()
        );
    }
    if options.failover && options.replica_count < 3 {
        return Err(
            "--failover needs --replica-count 3 or more (a cluster that survives a failure)".to_string()
        );
    }
    let (path, temporary) = match &options.file {
        Some(path) => (path.clone(), false),
        None => (PathBuf::from(format!("ledger-benchmark-{}.ledger", std::process::id())), true),
    };
    let paths: Vec<PathBuf> = (0..options.replica_count)
        .map(
            |index| {
                if index == 0 {
                    path.clone()
                } else {
                    PathBuf::from(format!("{}.{index}", path.display()))
                }
            },
        )
        .collect();
    let cluster = u128::from(options.seed) << 64 | 0xBE7C;
    for (index, path) in paths.iter().enumerate() {
        format(ledger_binary, path, cluster, index as u8, options)?;
    }
    let mut replicas = Vec::new();
    let started = start_all(ledger_binary, &paths, &mut replicas);
    let list = started
        .as_ref()
        .map(|addresses| addresses.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(","));
    let restart =
        |index: usize| Replica::start(ledger_binary, &paths[index], list.as_deref().unwrap_or(""), index);
    let outcome = started
        .as_ref()
        .map_err(Clone::clone)
        .and_then(|addresses| drive(&mut replicas, addresses, cluster, options, &restart));
    let rss_peak = replicas.iter().map(Replica::rss_peak).max().unwrap_or(0);
    let stopped: Result<Vec<()>, String> =
        replicas.into_iter().filter(|replica| !replica.killed).map(Replica::stop).collect();
    let data_file_size = std::fs::metadata(&path).map(|metadata| metadata.len()).unwrap_or(0);
    if temporary && !options.keep_file {
        for path in &paths {
            let _ = std::fs::remove_file(path);
        }
    }
    let mut report = outcome?;
    stopped?;
    report.data_file_size = data_file_size;
    report.replica_rss_peak = rss_peak;
    report.replica_count = options.replica_count;
    Ok(report)
}

/// Starts a replica on each of `paths` (pushed to `replicas` as they start, so that the caller
/// stops every one that did); returns their addresses in replica order.
fn start_all(
    ledger_binary: &Path,
    paths: &[PathBuf],
    replicas: &mut Vec<Replica>,
) -> Result<Vec<SocketAddr>, String> {
    if paths.len() == 1 {
        replicas.push(Replica::start(ledger_binary, &paths[0], "127.0.0.1:0", 0)?);
        return Ok(vec![replicas[0].address]);
    }
    // Ports free a moment ago: every replica must know every address before any starts.
    let listeners = (0..paths.len())
        .map(|_| std::net::TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| format!("finding free ports: {error}"))?;
    let addresses = listeners
        .iter()
        .map(std::net::TcpListener::local_addr)
        .collect::<Result<Vec<SocketAddr>, _>>()
        .map_err(|error| format!("finding free ports: {error}"))?;
    drop(listeners);
    let list = addresses.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(",");
    // All at once: each recovers its data file in parallel with the others, so that none
    // starts the run far behind the rest.
    let starting = paths
        .iter()
        .enumerate()
        .map(|(index, path)| Replica::spawn(ledger_binary, path, &list, index))
        .collect::<Vec<Result<Starting, String>>>();
    let mut failure = None;
    for started in starting {
        match started.and_then(Starting::listening) {
            Ok(replica) => replicas.push(replica),
            Err(error) => failure = failure.or(Some(error)),
        }
    }
    if let Some(error) = failure {
        return Err(error);
    }
    // The workload starts once the cluster has a view every replica is normal in.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !replicas.iter().all(Replica::is_normal) {
        if Instant::now() > deadline {
            return Err("the replicas did not all become normal within 60 s".to_string());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(addresses)
}

fn format(
    ledger_binary: &Path,
    path: &Path,
    cluster: u128,
    replica: u8,
    options: &BenchmarkOptions,
) -> Result<(), String> {
    let transfers_max =
        (options.transfer_count + options.transfer_count / 16 + 65_536).min(u64::from(u32::MAX) - 1);
    let accounts_max = options.account_count.max(16);
    let output = Command::new(ledger_binary)
        .args(["format", "--cluster", &cluster.to_string()])
        .args(["--replica", &replica.to_string(), "--replica-count", &options.replica_count.to_string()])
        .args(["--accounts-max", &accounts_max.to_string(), "--transfers-max", &transfers_max.to_string()])
        .args(["--expiries-max", "16", "--history-max", "16"])
        .arg(path)
        .output()
        .map_err(|error| format!("running ledger format: {error}"))?;
    if !output.status.success() {
        return Err(format!("ledger format failed: {}", String::from_utf8_lossy(&output.stderr).trim()));
    }
    Ok(())
}

/// The replica process.
struct Replica {
    child: Child,
    address: SocketAddr,
    rss_start: u64,
    /// Its newest status line ("replica R: primary in view V ..."), in a cluster.
    status: Arc<std::sync::Mutex<String>>,
    /// Killed by `--failover` or `--catch-up`.
    killed: bool,
    /// Where it serves its metrics, once it said so.
    metrics: Arc<std::sync::Mutex<Option<SocketAddr>>>,
}

impl Replica {
    /// Starts replica `index` of the cluster at `addresses` on `path`; waits until it listens.
    fn start(ledger_binary: &Path, path: &Path, addresses: &str, index: usize) -> Result<Replica, String> {
        Replica::spawn(ledger_binary, path, addresses, index)?.listening()
    }

    /// Starts replica `index` without waiting for it ([`Starting::listening`] does).
    fn spawn(ledger_binary: &Path, path: &Path, addresses: &str, index: usize) -> Result<Starting, String> {
        let mut child = Command::new(ledger_binary)
            .args(["start", "--metrics-address", "127.0.0.1:0", "--addresses", addresses])
            .arg(path)
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|error| format!("running ledger start: {error}"))?;
        let stderr = child.stderr.take().ok_or("no stderr of the replica")?;
        let (sender, receiver) = std::sync::mpsc::channel();
        let status = Arc::new(std::sync::Mutex::new(String::new()));
        let status_lines = Arc::clone(&status);
        let metrics = Arc::new(std::sync::Mutex::new(None));
        let metrics_line = Arc::clone(&metrics);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("metrics (Prometheus text format) on http://").nth(1) {
                    let address = rest.split('/').next().and_then(|address| address.parse().ok());
                    *metrics_line.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = address;
                } else if line.contains("installed the checkpoint") {
                    eprintln!("replica {index}: {line}");
                } else if line.contains(" in view ") || line.contains("syncing its state") {
                    // Each change of status, view or role: a view change during the load shows.
                    eprintln!("replica {index}: {line}");
                    *status_lines.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = line;
                } else if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = sender.send(rest.split(';').next().unwrap_or_default().to_string());
                } else if line.starts_with("warning") || line.starts_with("error") {
                    eprintln!("replica {index}: {line}");
                }
            }
        });
        Ok(Starting { child, receiver, status, metrics })
    }

    /// True if its newest status line says it is normal (primary or backup) in its view.
    fn is_normal(&self) -> bool {
        let status = self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        status.contains(": primary in view ") || status.contains(": backup (primary: replica ")
    }

    fn status_field(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|line| line.strip_prefix(field))
            .and_then(|value| value.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map_or(0, |kib| kib * 1024)
    }

    /// True if its newest status line says it is a normal primary.
    fn is_primary(&self) -> bool {
        self.status.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).contains(": primary in view ")
    }

    fn kill(&mut self) {
        // SAFETY: signalling our own child has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
        self.killed = true;
    }

    fn rss_current(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    fn rss_peak(&self) -> u64 {
        self.status_field("VmHWM:")
    }

    fn stop(mut self) -> Result<(), String> {
        // SAFETY: signalling our own child has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().map_err(|error| error.to_string())?;
        if !status.success() {
            return Err(format!("the replica exited with {status}"));
        }
        Ok(())
    }
}

/// A replica process started, not yet listening.
struct Starting {
    child: Child,
    receiver: std::sync::mpsc::Receiver<String>,
    status: Arc<std::sync::Mutex<String>>,
    metrics: Arc<std::sync::Mutex<Option<SocketAddr>>>,
}

impl Starting {
    /// Waits until the replica listens (it has recovered its data file).
    fn listening(mut self) -> Result<Replica, String> {
        let address = self.receiver.recv_timeout(Duration::from_secs(120)).map_err(|_| {
            // SAFETY: signalling our own child has no memory effects.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
            let _ = self.child.wait();
            "the replica did not start listening".to_string()
        })?;
        let address = address.parse().map_err(|error| format!("replica address: {error}"))?;
        let mut replica = Replica {
            child: self.child,
            address,
            rss_start: 0,
            status: self.status,
            killed: false,
            metrics: self.metrics,
        };
        replica.rss_start = replica.rss_current();
        Ok(replica)
    }
}

/// Everything the transfer phase needs to verify afterwards.
#[derive(Default)]
struct Sent {
    amount_total: u128,
    pending_total: u128,
    sample: Vec<Transfer>,
    latencies: Vec<Duration>,
    /// When each transfer request was sent and answered.
    calls: Vec<(Instant, Instant)>,
}

fn drive(
    replicas: &mut [Replica],
    addresses: &[SocketAddr],
    cluster: u128,
    options: &BenchmarkOptions,
    restart: &dyn Fn(usize) -> Result<Replica, String>,
) -> Result<Report, String> {
    let timeout = Duration::from_secs(120);
    let client = Client::new(cluster, addresses).map_err(|error| error.to_string())?;
    let rss =
        || replicas.iter().filter(|replica| !replica.killed).map(Replica::rss_current).max().unwrap_or(0);
    let workload = Workload::new(options.seed, options.account_count, 1, options.account_distribution);
    let accounts: Vec<Account> = (0..options.account_count).map(|index| workload.account(index)).collect();
    for chunk in accounts.chunks(BATCH_EVENTS_MAX) {
        let results = client.create_accounts(chunk, timeout).map_err(|error| error.to_string())?;
        if let Some(bad) = results.iter().find(|result| result.status != CreateAccountStatus::Created as u32)
        {
            return Err(format!("account creation failed: {bad:?}"));
        }
    }
    eprintln!("created {} accounts; replica RSS {} MiB", options.account_count, rss() >> 20);
    let stopped_backup = if options.catch_up {
        let index = replicas
            .iter()
            .position(|replica| replica.is_normal() && !replica.is_primary())
            .ok_or("--catch-up: no backup is normal")?;
        replicas[index].kill();
        eprintln!("catch-up: killed replica {index} (a backup) before the transfers");
        Some(index)
    } else {
        None
    };
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let progress = spawn_progress(Arc::clone(&done), options.transfer_count);
    let per_client = options.transfer_count.div_ceil(options.clients);
    let handles: Vec<_> = (0..options.clients)
        .map(|index| {
            let count = per_client.min(options.transfer_count.saturating_sub(index * per_client));
            let (options, done, addresses) = (options.clone(), Arc::clone(&done), addresses.to_vec());
            std::thread::spawn(move || submit(cluster, &addresses, index, count, &options, &done))
        })
        .collect();
    let killed = if options.failover {
        Some(kill_primary(replicas, &done, options.transfer_count / 3)?)
    } else {
        None
    };
    let mut sent = Sent::default();
    let mut failure = None;
    for handle in handles {
        match handle.join().map_err(|_| "a client thread panicked".to_string()).and_then(|result| result) {
            Ok(part) => {
                sent.amount_total += part.amount_total;
                sent.pending_total += part.pending_total;
                sent.sample.extend(part.sample);
                sent.latencies.extend(part.latencies);
                sent.calls.extend(part.calls);
            }
            Err(error) => failure = Some(error),
        }
    }
    let elapsed = start.elapsed();
    done.store(u64::MAX, Ordering::Relaxed);
    let _ = progress.join();
    if let Some(error) = failure {
        return Err(error);
    }
    let transfers_per_second = options.transfer_count as f64 / elapsed.as_secs_f64();
    let failover = killed.map(|(index, at)| {
        // The first reply to a request sent after the kill came from the new primary.
        let first = sent.calls.iter().filter(|(started, _)| *started >= at).map(|(_, ended)| *ended).min();
        (index, first.map_or(Duration::MAX, |ended| ended - at))
    });
    eprintln!("created {} transfers in {:.2} s", options.transfer_count, elapsed.as_secs_f64());
    let catch_up = match stopped_backup {
        Some(index) => Some(catch_up(replicas, index, restart)?),
        None => None,
    };
    let reads = time_reads(&client, &workload, &sent.sample, options)?;
    verify(&client, options, &sent)?;
    Ok(Report {
        failover,
        catch_up,
        transfers_per_second,
        transfer_latency: Latency::of(&mut sent.latencies),
        lookup_accounts_latency: reads.0,
        lookup_transfers_latency: reads.1,
        query_latency: reads.2,
        data_file_size: 0,
        replica_rss_peak: 0,
        replica_rss_start: replicas.iter().map(|replica| replica.rss_start).max().unwrap_or(0),
        replica_count: 1,
    })
}

/// One client session's share of the transfers, in batches; checks every result.
fn submit(
    cluster: u128,
    addresses: &[SocketAddr],
    index: u64,
    count: u64,
    options: &BenchmarkOptions,
    done: &AtomicU64,
) -> Result<Sent, String> {
    let client = Client::new(cluster, addresses).map_err(|error| error.to_string())?;
    let mut workload = Workload::new(
        options.seed.wrapping_mul(1_000_003).wrapping_add(index + 1),
        options.account_count,
        1,
        options.account_distribution,
    );
    let mut sent = Sent::default();
    let mut remaining = count;
    let mut batch = Vec::with_capacity(options.transfer_batch_size as usize);
    // Generate the next batch while the current one is in flight would need a second thread;
    // generation is ~30 ns per transfer, small against the request's cost.
    while remaining > 0 {
        let size = remaining.min(options.transfer_batch_size);
        batch.clear();
        batch.extend((0..size).map(|_| workload.transfer(options.transfer_pending)));
        let started = Instant::now();
        let results =
            client.create_transfers(&batch, Duration::from_secs(120)).map_err(|error| error.to_string())?;
        sent.latencies.push(started.elapsed());
        sent.calls.push((started, Instant::now()));
        if let Some(bad) = results.iter().find(|result| result.status != CreateTransferStatus::Created as u32)
        {
            return Err(format!("transfer creation failed: status {}", bad.status));
        }
        for transfer in &batch {
            if transfer.flags.contains(crate::types::TransferFlags::PENDING) {
                sent.pending_total += transfer.amount;
            } else {
                sent.amount_total += transfer.amount;
            }
        }
        sent.sample.extend(batch.iter().step_by(997).copied());
        remaining -= size;
        done.fetch_add(size, Ordering::Relaxed);
    }
    Ok(sent)
}

/// Restarts the killed backup `index` and times its recovery, its return to normal status, and
/// its catching up with the primary's commit point (read from both replicas' metrics).
fn catch_up(
    replicas: &mut [Replica],
    index: usize,
    restart: &dyn Fn(usize) -> Result<Replica, String>,
) -> Result<CatchUp, String> {
    let primary = replicas.iter().position(Replica::is_primary).ok_or("--catch-up: no primary")?;
    let commit = scrape(&replicas[primary], "ledger_commit_min")?;
    let started = Instant::now();
    replicas[index] = restart(index)?;
    let listening = started.elapsed();
    let deadline = started + Duration::from_secs(600);
    let mut normal = None;
    loop {
        // Since it last became normal: a backup further behind than the WAL comes up normal,
        // syncs (not normal), and is normal again once it runs from the installed checkpoint.
        match (normal.is_some(), replicas[index].is_normal()) {
            (false, true) => normal = Some(started.elapsed()),
            (true, false) => normal = None,
            _ => {}
        }
        // (Its metrics are unreachable for a moment while it reopens its data file after a
        // sync: not caught up yet.)
        let commit_min = scrape(&replicas[index], "ledger_commit_min").unwrap_or(0);
        if normal.is_some() && commit_min >= commit {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!(
                "--catch-up: replica {index} did not catch up with commit {commit} in 600 s"
            ));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let caught_up = started.elapsed();
    let normal = normal.unwrap_or(caught_up);
    eprintln!("catch-up: replica {index} restarted; normal after {normal:?}, caught up with commit {commit} after {caught_up:?}");
    Ok(CatchUp { replica: index, commit, listening, normal, caught_up })
}

/// The value of metric `name` on `replica` (its `--metrics-address`).
fn scrape(replica: &Replica, name: &str) -> Result<u64, String> {
    use std::io::{Read, Write};
    let address = replica
        .metrics
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .ok_or("a replica without metrics")?;
    let mut stream =
        std::net::TcpStream::connect(address).map_err(|error| format!("scraping {address}: {error}"))?;
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\n\r\n")
        .map_err(|error| format!("scraping {address}: {error}"))?;
    let mut text = String::new();
    stream.read_to_string(&mut text).map_err(|error| format!("scraping {address}: {error}"))?;
    let value = text.lines().find_map(|line| line.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')));
    value.and_then(|value| value.parse().ok()).ok_or_else(|| format!("no {name} in the metrics of {address}"))
}

/// Waits until `threshold` transfers are acknowledged, then kills the primary with SIGKILL;
/// returns its index and when it was killed.
fn kill_primary(
    replicas: &mut [Replica],
    done: &AtomicU64,
    threshold: u64,
) -> Result<(usize, Instant), String> {
    let deadline = Instant::now() + Duration::from_secs(600);
    while done.load(Ordering::Relaxed) < threshold {
        if Instant::now() > deadline {
            return Err("--failover: the transfers did not get a third of the way".to_string());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let index = replicas
        .iter()
        .position(Replica::is_primary)
        .ok_or("--failover: no replica says it is the primary")?;
    replicas[index].kill();
    let at = Instant::now();
    eprintln!("failover: killed replica {index} (the primary) with SIGKILL");
    Ok((index, at))
}

fn spawn_progress(done: Arc<AtomicU64>, total: u64) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let start = Instant::now();
        let mut last = 0;
        loop {
            std::thread::sleep(Duration::from_millis(200));
            let now = done.load(Ordering::Relaxed);
            if now == u64::MAX {
                return;
            }
            if start.elapsed().as_millis() / 1000 != last {
                last = start.elapsed().as_millis() / 1000;
                let rate = now as f64 / start.elapsed().as_secs_f64();
                eprintln!(
                    "  {now} / {total} transfers ({:.0}%), {rate:.0} transfers/s",
                    now as f64 * 100.0 / total as f64
                );
            }
        }
    })
}

/// Times lookups and one query kind.
fn time_reads(
    client: &Client,
    workload: &Workload,
    sample: &[Transfer],
    options: &BenchmarkOptions,
) -> Result<(Latency, Latency, Latency), String> {
    let timeout = Duration::from_secs(60);
    let account_ids: Vec<u128> = (0..BATCH_EVENTS_MAX as u64)
        .map(|index| workload.account_id(index % options.account_count))
        .collect();
    let transfer_ids: Vec<u128> = sample.iter().map(|transfer| transfer.id).take(BATCH_EVENTS_MAX).collect();
    let (mut accounts, mut transfers, mut queries) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..options.read_count {
        let started = Instant::now();
        let found = client.lookup_accounts(&account_ids, timeout).map_err(|error| error.to_string())?;
        accounts.push(started.elapsed());
        if found.len() != account_ids.len() {
            return Err(format!("lookup_accounts found {} of {}", found.len(), account_ids.len()));
        }
        if !transfer_ids.is_empty() {
            let started = Instant::now();
            let found = client.lookup_transfers(&transfer_ids, timeout).map_err(|error| error.to_string())?;
            transfers.push(started.elapsed());
            if found.len() != transfer_ids.len() {
                return Err(format!("lookup_transfers found {} of {}", found.len(), transfer_ids.len()));
            }
        }
        let filter = AccountFilter {
            account_id: workload.account_id(round % options.account_count),
            limit: BATCH_EVENTS_MAX as u32,
            flags: AccountFilterFlags::DEBITS
                .with(AccountFilterFlags::CREDITS)
                .with(AccountFilterFlags::REVERSED),
            ..AccountFilter::default()
        };
        let started = Instant::now();
        client.get_account_transfers(filter, timeout).map_err(|error| error.to_string())?;
        queries.push(started.elapsed());
    }
    // One scan query, to show it works at this scale (not timed: it is the slow path).
    let query = QueryFilter { ledger: 1, limit: 10, ..QueryFilter::default() };
    client.query_transfers(query, timeout).map_err(|error| error.to_string())?;
    Ok((Latency::of(&mut accounts), Latency::of(&mut transfers), Latency::of(&mut queries)))
}

/// Sum of debits equals sum of credits and equals what was sent; the sample matches.
fn verify(client: &Client, options: &BenchmarkOptions, sent: &Sent) -> Result<(), String> {
    let timeout = Duration::from_secs(60);
    let workload = Workload::new(options.seed, options.account_count, 1, options.account_distribution);
    let ids: Vec<u128> = (0..options.account_count).map(|index| workload.account_id(index)).collect();
    let (mut debits, mut credits, mut debits_pending, mut credits_pending) = (0u128, 0u128, 0u128, 0u128);
    for chunk in ids.chunks(BATCH_EVENTS_MAX) {
        for account in client.lookup_accounts(chunk, timeout).map_err(|error| error.to_string())? {
            debits += account.debits_posted;
            credits += account.credits_posted;
            debits_pending += account.debits_pending;
            credits_pending += account.credits_pending;
        }
    }
    if debits != credits || debits != sent.amount_total {
        return Err(format!("inconsistent: debits {debits}, credits {credits}, sent {}", sent.amount_total));
    }
    if debits_pending != credits_pending || debits_pending != sent.pending_total {
        return Err(format!(
            "inconsistent pending: {debits_pending} vs {credits_pending}, sent {}",
            sent.pending_total
        ));
    }
    for chunk in sent.sample.chunks(BATCH_EVENTS_MAX) {
        let ids: Vec<u128> = chunk.iter().map(|transfer| transfer.id).collect();
        let found = client.lookup_transfers(&ids, timeout).map_err(|error| error.to_string())?;
        for (expected, found) in chunk.iter().zip(&found) {
            let same = expected.id == found.id
                && expected.debit_account_id == found.debit_account_id
                && expected.credit_account_id == found.credit_account_id
                && expected.amount == found.amount
                && expected.flags == found.flags;
            if !same {
                return Err(format!("transfer {} differs from what was sent", expected.id));
            }
        }
        if found.len() != chunk.len() {
            return Err(format!("only {} of {} sampled transfers found", found.len(), chunk.len()));
        }
    }
    eprintln!(
        "verified: debits = credits = {debits} (pending {debits_pending}); {} sampled transfers match",
        sent.sample.len()
    );
    Ok(())
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "transfers: {:.0} transfers/s", self.transfers_per_second)?;
        if let Some(catch_up) = self.catch_up {
            writeln!(
                f,
                "catch-up: replica {} (a backup) restarted after the transfers: listening after {:.3} s, normal after {:.3} s, caught up with commit {} after {:.3} s",
                catch_up.replica,
                catch_up.listening.as_secs_f64(),
                catch_up.normal.as_secs_f64(),
                catch_up.commit,
                catch_up.caught_up.as_secs_f64()
            )?;
        }
        if let Some((index, elapsed)) = self.failover {
            writeln!(
                f,
                "failover: replica {index} (the primary) killed; the first request sent after it answered {:.3} s later",
                elapsed.as_secs_f64()
            )?;
        }
        writeln!(f, "transfer batch latency: {}", self.transfer_latency)?;
        writeln!(f, "lookup_accounts batch latency: {}", self.lookup_accounts_latency)?;
        writeln!(f, "lookup_transfers batch latency: {}", self.lookup_transfers_latency)?;
        writeln!(f, "get_account_transfers latency: {}", self.query_latency)?;
        writeln!(f, "data file: {} bytes (each of {} replica(s))", self.data_file_size, self.replica_count)?;
        writeln!(
            f,
            "replica memory: {} MiB resident after start, {} MiB peak (the largest replica)",
            self.replica_rss_start >> 20,
            self.replica_rss_peak >> 20
        )
    }
}
