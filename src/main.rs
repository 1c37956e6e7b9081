//! The `ledger` command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use ledger::constants::{
    BLOCK_SIZE, CLIENTS_MAX, CLUSTER_TICK_NS, JOURNAL_SLOT_COUNT, JOURNAL_SLOT_COUNT_DEVELOPMENT,
    MESSAGE_SIZE_MAX, PULSE_INTERVAL_NS,
};
use ledger::server::{stop_on_signals, Server, ServerOptions, Stopped};
use ledger::state_machine::Config;
use ledger::storage::{FileStorage, IoMode, OpenError, Storage};
use ledger::vsr::data_file::{DataFile, FormatOptions};
use ledger::vsr::replica_state::ReplicaState;

/// ledger: a financial ledger database of accounts and double-entry transfers, served by a
/// cluster of 1 to 6 replicas that replicate over TCP (Viewstamped Replication). The short
/// `--help` text is the package description in Cargo.toml.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates a new data file for one replica. Refuses to overwrite an existing file.
    Format(FormatArgs),
    /// Serves a data file: recovers it, then listens for clients (and, in a cluster, connects to
    /// the other replicas at their --addresses) until SIGTERM or SIGINT.
    Start(StartArgs),
    /// Replaces a replica of a cluster whose data file was lost or is beyond repair: creates a new
    /// data file (as `format` does, with the same options as the cluster's other replicas) whose
    /// log is marked unknown, then serves it as `start` does (with its defaults). The replica
    /// takes no part in a view change until it holds the current view's log from its peers, and
    /// installs the cluster's state from a peer's checkpoint (state sync) before it serves, so
    /// it never votes as if it had its old log. Refuses to overwrite an existing file.
    Recover(RecoverArgs),
    /// Verifies every checksum of a data file (superblock copies, checkpoint blocks, WAL slots and
    /// redundant headers, client replies) without changing it, and prints what it found. Exits 1,
    /// naming each damage, if `start` would refuse the file or anything is corrupt.
    Inspect {
        /// The data file.
        path: PathBuf,
        /// Read through the page cache (for filesystems without O_DIRECT).
        #[arg(long)]
        development: bool,
    },
    /// Measures the whole system: formats a data file, starts a replica process, submits
    /// transfers through the client library over loopback TCP, prints throughput and latency,
    /// and verifies the ledger's consistency.
    Benchmark(ledger::benchmark::BenchmarkOptions),
    /// Submits events read as JSON lines from stdin and prints one JSON line per result
    /// (docs/json.md).
    Client(ledger::cli_client::ClientArgs),
    /// Prints the version.
    Version,
}

#[derive(Args)]
struct FormatArgs {
    /// The cluster id (a u128 chosen once per cluster; every replica and client uses it).
    #[arg(long)]
    cluster: u128,
    /// This replica's index, from 0 to replica-count − 1.
    #[arg(long, default_value_t = 0)]
    replica: u8,
    /// The number of replicas in the cluster, 1 to 6 (docs/operating.md on sizing: 3 survive
    /// one failure, 6 survive two).
    #[arg(long, default_value_t = 1)]
    replica_count: u8,
    /// A small data file for tests and local development (64 WAL slots, small tables), and
    /// buffered I/O where the filesystem lacks O_DIRECT.
    #[arg(long)]
    development: bool,
    /// The most accounts (default 1,048,576; 16,384 with --development).
    #[arg(long)]
    accounts_max: Option<u32>,
    /// The most transfers, burned transfer ids included (default 12,582,912; 131,072 with
    /// --development).
    #[arg(long)]
    transfers_max: Option<u32>,
    /// The most pending transfers with a timeout waiting to expire, at most --transfers-max
    /// (default 1,048,576; 16,384 with --development; either capped at --transfers-max).
    #[arg(long)]
    expiries_max: Option<u32>,
    /// The most balance snapshots of `history` accounts (default 1,048,576; 131,072 with
    /// --development).
    #[arg(long)]
    history_max: Option<u32>,
    /// The path of the new data file.
    path: PathBuf,
}

#[derive(Args)]
struct RecoverArgs {
    #[command(flatten)]
    format: FormatArgs,
    /// The addresses of every replica of the cluster, in replica order (host:port,...): the
    /// new replica fetches the cluster's state from the others, and listens on its own.
    #[arg(long, value_delimiter = ',', required = true)]
    addresses: Vec<String>,
}

#[derive(Args)]
struct StartArgs {
    /// The addresses of every replica of the cluster, in replica order (host:port,...); this
    /// replica listens on its own.
    #[arg(long, value_delimiter = ',', required = true)]
    addresses: Vec<String>,
    /// Development mode: buffered I/O where the filesystem lacks O_DIRECT.
    #[arg(long)]
    development: bool,
    /// The most simultaneous client connections, 1 to 4,096 (each holds 2 MiB of message
    /// buffers; the file-descriptor limit is raised to fit, up to its hard limit).
    #[arg(long, default_value_t = 128)]
    connections_max: usize,
    /// Seconds (at least 1) after which a silent connection, or one holding a partial message,
    /// is closed.
    #[arg(long, default_value_t = 60)]
    idle_timeout_s: u64,
    /// Serve the replica's metrics in the Prometheus text format at HOST:PORT (any path; one
    /// scrape at a time, answered on the replica's own loop without ever making it wait).
    #[arg(long)]
    metrics_address: Option<String>,
    /// The data file.
    path: PathBuf,
}

/// The capacities of a production data file: about 3.5 GiB of memory when served.
const CONFIG_DEFAULT: Config =
    Config { accounts_max: 1 << 20, transfers_max: 12 << 20, expiries_max: 1 << 20, history_max: 1 << 20 };

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match cli.command {
        Command::Format(args) => format(&args, false),
        Command::Recover(args) => recover(args),
        Command::Start(args) => start(&args),
        Command::Inspect { path, development } => inspect(&path, development),
        Command::Benchmark(options) => benchmark(&options),
        Command::Client(args) => return ledger::cli_client::run(args),
        Command::Version => {
            println!("ledger {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `ledger recover`: a new data file whose log is unknown, then served.
fn recover(args: RecoverArgs) -> Result<(), String> {
    if args.format.replica_count < 2 {
        return Err(
            "--replica-count must be 2 or more: recover rebuilds a replica from the rest of its cluster (a replica \
             alone has nothing to recover from: restore its data file from a backup)"
                .to_string(),
        );
    }
    if args.addresses.len() != usize::from(args.format.replica_count) {
        return Err(format!(
            "--addresses lists {} address(es), but --replica-count is {}: give every replica's address, in replica \
             order",
            args.addresses.len(),
            args.format.replica_count
        ));
    }
    format(&args.format, true)?;
    eprintln!(
        "info: {}: its log is unknown: the replica recovers the cluster's log and state from its peers before it \
         takes part (later restarts: `ledger start` on the same file)",
        args.format.path.display()
    );
    start(&StartArgs {
        addresses: args.addresses,
        development: args.format.development,
        connections_max: 128,
        idle_timeout_s: 60,
        metrics_address: None,
        path: args.format.path,
    })
}

/// `ledger format` (or, `recovering`, the data file `ledger recover` serves).
fn format(args: &FormatArgs, recovering: bool) -> Result<(), String> {
    // Everything is validated before anything is printed or created.
    if args.cluster == 0 {
        return Err("--cluster must not be 0".to_string());
    }
    let base = if args.development { Config::DEVELOPMENT } else { CONFIG_DEFAULT };
    let transfers_max = args.transfers_max.unwrap_or(base.transfers_max);
    let config = Config {
        accounts_max: args.accounts_max.unwrap_or(base.accounts_max),
        transfers_max,
        // Each expiry is a pending transfer: the default never exceeds the transfers.
        expiries_max: args.expiries_max.unwrap_or(base.expiries_max.min(transfers_max)),
        history_max: args.history_max.unwrap_or(base.history_max),
    };
    let options = FormatOptions {
        cluster: args.cluster,
        replica: args.replica,
        replica_count: args.replica_count,
        journal_slot_count: if args.development {
            JOURNAL_SLOT_COUNT_DEVELOPMENT
        } else {
            JOURNAL_SLOT_COUNT
        },
        message_size_max: MESSAGE_SIZE_MAX as u64,
        clients_max: CLIENTS_MAX,
        block_size: BLOCK_SIZE,
        config,
    };
    options.validate().map_err(|error| error.to_string())?;
    let layout = options.layout();
    let announce = || {
        eprintln!(
            "info: formatting {}: {} bytes (WAL {} slots of {} bytes, {} client reply slots, grid {} blocks of {} bytes)",
            args.path.display(),
            layout.file_size(),
            layout.journal_slot_count,
            layout.message_size_max,
            layout.clients_max,
            layout.grid_block_count,
            layout.block_size,
        );
        eprintln!(
            "info: capacity {} accounts, {} transfers, {} expiries, {} history snapshots; {} bytes of memory when served",
            config.accounts_max,
            config.transfers_max,
            config.expiries_max,
            config.history_max,
            config.memory_size()
        );
    };
    let storage = create_storage(&args.path, layout.file_size(), args.development, announce)?;
    let formatted = if recovering {
        DataFile::format_recovering(storage, &options)
    } else {
        DataFile::format(storage, &options)
    };
    formatted.map_err(|error| {
        // A half-formatted file is useless and would block a retry.
        let _ = std::fs::remove_file(&args.path);
        format!("formatting {}: {error}", args.path.display())
    })?;
    eprintln!(
        "info: formatted {} for cluster {} replica {}",
        args.path.display(),
        args.cluster,
        args.replica
    );
    Ok(())
}

/// Creates the data file with O_DIRECT, falling back to buffered I/O only in development;
/// calls `announce` once the file is created, before its zeros are written.
fn create_storage(
    path: &Path,
    size: u64,
    development: bool,
    announce: impl FnOnce(),
) -> Result<FileStorage, String> {
    // The fallback is only tried after a refusal of O_DIRECT, before anything was announced.
    let mut announce = Some(announce);
    let mut created = || announce.take().into_iter().for_each(|announce| announce());
    match FileStorage::create_announced(path, size, IoMode::Direct, &mut created) {
        Err(OpenError::DirectIoUnsupported { .. }) if development => {
            eprintln!(
                "warning: {}: O_DIRECT is not supported here; --development uses buffered I/O",
                path.display()
            );
            FileStorage::create_announced(path, size, IoMode::Buffered, created)
                .map_err(|error| error.to_string())
        }
        result => result.map_err(|error| error.to_string()),
    }
}

/// Opens the data file with O_DIRECT, falling back to buffered I/O only in development, and
/// warns if the file is sparse.
fn open_storage(path: &Path, development: bool) -> Result<FileStorage, String> {
    let storage = match FileStorage::open(path, IoMode::Direct) {
        Err(OpenError::DirectIoUnsupported { .. }) if development => {
            eprintln!(
                "warning: {}: O_DIRECT is not supported here; --development uses buffered I/O",
                path.display()
            );
            FileStorage::open(path, IoMode::Buffered).map_err(|error| error.to_string())
        }
        result => result.map_err(|error| error.to_string()),
    }?;
    // A warning, not a refusal: compressing or deduplicating filesystems (ZFS, btrfs) store
    // the zeros of a healthy data file in almost no blocks too, and refusing would make them
    // unusable; a sparse file is correct, only at risk of ENOSPC.
    if storage.is_sparse() {
        eprintln!(
            "warning: {} is sparse: only {} of its {} bytes are allocated on disk (a copy that lost \
             its preallocation?), so a later write may fail for lack of space and stop the replica \
             mid-write; allocate it with `fallocate -l {} {}`, or re-copy it with `cp --sparse=never`",
            path.display(),
            storage.allocated_size(),
            storage.size(),
            storage.size(),
            path.display(),
        );
    }
    Ok(storage)
}

fn start(args: &StartArgs) -> Result<(), String> {
    // Bad options are refused before the data file is even opened.
    let options = ServerOptions {
        address: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        connections_max: args.connections_max,
        idle_timeout: std::time::Duration::from_secs(args.idle_timeout_s),
        pulse_interval: std::time::Duration::from_nanos(PULSE_INTERVAL_NS),
        peers: Vec::new(),
        metrics_address: match &args.metrics_address {
            Some(address) => Some(resolve(address)?),
            None => None,
        },
    };
    options.validate().map_err(|error| error.to_string())?;
    // Handlers first: a signal during recovery stops the replica as soon as it is served (and
    // SIGHUP never kills it), and tests may signal as soon as it says it listens.
    let stop = stop_on_signals();
    let mut storage = open_storage(&args.path, args.development)?;
    // What this replica is, and where it listens, are settled before the (possibly long)
    // recovery: a wrong file or address list is refused at once.
    let (_, superblock) = ledger::vsr::superblock::SuperBlock::read(&mut storage)
        .map_err(|error| format!("{}: {error}", args.path.display()))?;
    if args.addresses.len() != usize::from(superblock.replica_count) {
        return Err(format!(
            "--addresses lists {} address(es), but the cluster has {} replica(s): give every replica's address, in replica order",
            args.addresses.len(),
            superblock.replica_count
        ));
    }
    let address = resolve(&args.addresses[usize::from(superblock.replica)])?;
    let mut peers = Vec::new();
    for (index, peer) in args.addresses.iter().enumerate() {
        if index != usize::from(superblock.replica) {
            peers.push((index as u8, resolve(peer)?));
        }
    }
    let started = std::time::Instant::now();
    let mut ledger = open_logged(storage, &args.path, started)?;
    // A cluster's timeouts run at a 10 ms tick; a cluster of one needs only its pulses.
    let tick_ns = if peers.is_empty() { PULSE_INTERVAL_NS } else { CLUSTER_TICK_NS };
    let options =
        ServerOptions { address, peers, pulse_interval: std::time::Duration::from_nanos(tick_ns), ..options };
    loop {
        let superblock = *ledger.data_file().superblock();
        let config = superblock.config();
        let mut server = Server::new(ledger, options.clone()).map_err(|error| error.to_string())?;
        if let Some(address) = server.metrics_address() {
            eprintln!("info: metrics (Prometheus text format) on http://{address}/metrics");
        }
        eprintln!(
            "info: cluster {} replica {}: listening on {}; capacity {} accounts, {} transfers; memory: {} bytes of tables, {} bytes of message buffers",
            superblock.cluster,
            superblock.replica,
            server.local_address().map_or(address, |address| address),
            config.accounts_max,
            config.transfers_max,
            config.memory_size(),
            server.memory_size(),
        );
        match server.run(stop).map_err(|error| format!("stopping: {error}"))? {
            Stopped::Signal => break,
            Stopped::Synced => {
                // The state is the installed checkpoint's only once the data file opens again:
                // connections close (clients and peers reconnect), the tables are rebuilt.
                let storage = server.into_state().into_storage();
                eprintln!(
                    "info: {}: state sync done: every block of the installed checkpoint is here; opening the \
                     data file again",
                    args.path.display()
                );
                ledger = open_logged(storage, &args.path, std::time::Instant::now())?;
            }
        }
    }
    eprintln!("info: stopped cleanly");
    Ok(())
}

/// Opens the data file on `storage` (recovery) and reports what recovery found.
fn open_logged(
    storage: FileStorage,
    path: &Path,
    started: std::time::Instant,
) -> Result<ReplicaState<FileStorage>, String> {
    let mut ledger =
        ReplicaState::open(storage, None).map_err(|error| format!("{}: {error}", path.display()))?;
    ledger.prefault();
    let superblock = *ledger.data_file().superblock();
    if let Some(damage) = ledger.data_file().checkpoint_damage() {
        eprintln!(
            "warning: {}: the checkpoint at op {} cannot be loaded: {damage}. This replica fetches its blocks \
             (or a newer checkpoint's) from its peers before it serves (docs/operating.md, \"Disk failures\")",
            path.display(),
            superblock.checkpoint.op
        );
        return Ok(ledger);
    }
    let recovered = *ledger.recovered();
    eprintln!(
        "info: recovered {} in {:?}: checkpoint op {}, replayed ops {}..={}{}",
        path.display(),
        started.elapsed(),
        superblock.checkpoint.op,
        recovered.op_min,
        recovered.op_head,
        if recovered.torn_head { " (a torn write at the head was cut)" } else { "" }
    );
    let replies_lost =
        (0..ledger.clients().sessions().len()).filter(|slot| ledger.clients().reply_lost(*slot)).count();
    if replies_lost > 0 {
        eprintln!(
            "warning: {}: the latest replies of {replies_lost} client session(s) are damaged or overwritten: this \
             replica restores them from its peers (until then it does not answer those requests' retries)",
            path.display()
        );
    }
    if let Some(damage) = recovered.damaged {
        eprintln!(
            "warning: {}: the WAL is damaged: {damage}. This replica cannot vouch for the head of its log: it \
             repairs its log from its peers before it takes part in view changes again (docs/operating.md, \
             \"Disk failures\")",
            path.display()
        );
    }
    Ok(ledger)
}

fn resolve(address: &str) -> Result<std::net::SocketAddr, String> {
    use std::net::ToSocketAddrs;
    let with_host = if address.contains(':') { address.to_string() } else { format!("127.0.0.1:{address}") };
    with_host
        .to_socket_addrs()
        .map_err(|error| format!("bad address {address}: {error}"))?
        .next()
        .ok_or_else(|| format!("address {address} resolves to nothing"))
}

/// Prints the report; fails (exit status 1) naming each error it found.
fn inspect(path: &Path, development: bool) -> Result<(), String> {
    let mut storage = open_storage(path, development)?;
    let report = ledger::vsr::inspect::inspect(&mut storage)
        .map_err(|error| format!("{}: {error}", path.display()))?;
    print!("{report}");
    let errors: Vec<String> = report.errors().map(|finding| format!("\n  {}", finding.message)).collect();
    if !errors.is_empty() {
        let count = match errors.len() {
            1 => "1 error".to_string(),
            count => format!("{count} errors"),
        };
        return Err(format!("{}: {count} found:{}", path.display(), errors.concat()));
    }
    Ok(())
}

fn benchmark(options: &ledger::benchmark::BenchmarkOptions) -> Result<(), String> {
    let binary = std::env::current_exe().map_err(|error| format!("finding the ledger binary: {error}"))?;
    eprintln!(
        "benchmark: {} accounts ({:?}), {} transfers in batches of {}, {} clients, {}% pending, seed {}; {} replica(s), each its own process",
        options.account_count,
        options.account_distribution,
        options.transfer_count,
        options.transfer_batch_size,
        options.clients,
        options.transfer_pending,
        options.seed,
        options.replica_count
    );
    let report = ledger::benchmark::run(&binary, options)?;
    print!("{report}");
    Ok(())
}
