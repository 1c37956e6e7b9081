//! The whole write path: client library → loopback TCP → replica (validation, prepare, WAL write
//! and `fdatasync`, commit) → reply, with full batches of 8,189 transfers over 10k accounts, from
//! one client and from four clients at once.
//!
//! `cargo bench --bench end_to_end`. The replica runs in this process, on its own thread with its
//! own io_uring rings, over a data file with the production layout created with `O_DIRECT` in
//! `target/tmp` (`CARGO_TARGET_TMPDIR`, about 6 GB), removed at the end. Before serving, the
//! replica stores 10M transfers (as `bench/state_machine.rs` does; set
//! `LEDGER_BENCH_TRANSFERS_STORED` to change it) and checkpoints them: the cost of a batch grows
//! with the tables, so the measured batches run at a known size, 10M to 18M transfers.
//!
//! Checkpoints are left out: the replica checkpoints once per 1,016 ops (the WAL's 1024 slots
//! minus one pipeline), a stop of about 0.7 s that would land in whichever sample happens to
//! cross it. So each data file takes at most [`BATCHES_PER_FILE`] measured batches and is then
//! rebuilt, untimed; `bench/storage.rs` measures the checkpoint, to be added per op amortised.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ledger::client::{Client, ClientOptions};
use ledger::constants::{BATCH_EVENTS_MAX, MESSAGE_BODY_SIZE_MAX, MESSAGE_SIZE_MAX};
use ledger::multi_batch::encode_single;
use ledger::operation::Operation;
use ledger::server::clock::realtime_ns;
use ledger::server::{Server, ServerOptions};
use ledger::state_machine::Config;
use ledger::storage::{FileStorage, IoMode};
use ledger::types::{Account, CreateTransferStatus, Transfer};
use ledger::vsr::data_file::{DataFile, FormatOptions};
use ledger::vsr::replica_state::{ReplicaState, ReplicaStateError, Request, PIPELINE_PREPARE_MAX};
use ledger::workload::{AccountDistribution, Workload};

const CLUSTER: u128 = 0xE2E;

const ACCOUNT_COUNT: u64 = 10_000;

/// The measured batches one data file takes: with one registration per client, its ops after the
/// pre-filled state's checkpoint stay below the next checkpoint, 1,016 ops later.
const BATCHES_PER_FILE: u64 = 1_000;

/// The WAL's slots, as `ledger format` makes them; `ReplicaState` checkpoints one pipeline before full.
const JOURNAL_SLOT_COUNT: u64 = 1024;

const _: () =
    assert!(BATCHES_PER_FILE + (CLIENT_COUNT_MAX as u64) < JOURNAL_SLOT_COUNT - PIPELINE_PREPARE_MAX as u64);

/// The transfers stored before the measured batches.
fn transfers_stored() -> u64 {
    std::env::var("LEDGER_BENCH_TRANSFERS_STORED")
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(10_000_000)
}

/// Batches generated ahead of one timed run, bounding the memory they take (1 MiB each).
const CHUNK_BATCHES_MAX: u64 = 256;

const CLIENT_COUNTS: [usize; 2] = [1, CLIENT_COUNT_MAX];
const CLIENT_COUNT_MAX: usize = 4;

/// Long enough that no request is ever resent: a resend would only add work.
const TIMEOUT: Duration = Duration::from_secs(60);

/// A replica serving a fresh data file on its own thread; stopped and its file removed on drop.
struct Replica {
    address: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), String>>>,
    path: PathBuf,
}

impl Replica {
    fn start(path: PathBuf, transfers_stored: u64) -> Replica {
        // A file left by a killed run would make `FileStorage::create` refuse.
        let _ = std::fs::remove_file(&path);
        let stop = Arc::new(AtomicBool::new(false));
        let (sender, receiver) = mpsc::channel();
        let thread = {
            let (path, stop) = (path.clone(), Arc::clone(&stop));
            std::thread::Builder::new()
                .name("replica".to_string())
                .spawn(move || serve(&path, transfers_stored, &stop, &sender))
                .expect("spawn the replica thread")
        };
        match receiver.recv() {
            Ok(address) => Replica { address, stop, thread: Some(thread), path },
            Err(_) => panic!("the replica did not start: {:?}", thread.join()),
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let outcome = thread.join();
            let _ = std::fs::remove_file(&self.path);
            // Not while already unwinding: that would abort and hide the first panic.
            if !std::thread::panicking() {
                outcome.expect("the replica thread panicked").expect("the replica failed");
            }
        }
    }
}

/// The replica thread: formats the data file, opens it, fills it, and serves until `stop`.
fn serve(
    path: &Path,
    transfers_stored: u64,
    stop: &AtomicBool,
    address: &mpsc::Sender<SocketAddr>,
) -> Result<(), String> {
    let transfers_max = transfers_stored + BATCHES_PER_FILE * BATCH_EVENTS_MAX as u64;
    // The production layout of `ledger format`, with a bench-sized capacity.
    let options = FormatOptions {
        cluster: CLUSTER,
        replica: 0,
        replica_count: 1,
        journal_slot_count: JOURNAL_SLOT_COUNT,
        message_size_max: MESSAGE_SIZE_MAX as u64,
        clients_max: 64,
        block_size: 64 * 1024,
        config: Config {
            accounts_max: ACCOUNT_COUNT as u32,
            transfers_max: u32::try_from(transfers_max).expect("LEDGER_BENCH_TRANSFERS_STORED too large"),
            expiries_max: 16,
            history_max: 16,
        },
    };
    let storage = FileStorage::create(path, options.layout().file_size(), IoMode::Direct)
        .map_err(|error| error.to_string())?;
    let data_file = DataFile::format(storage, &options).map_err(|error| error.to_string())?;
    let mut ledger =
        ReplicaState::open(data_file.into_storage(), Some(CLUSTER)).map_err(|error| error.to_string())?;
    // As `ledger start` does: the tables' memory is committed before the load.
    ledger.prefault();
    fill(&mut ledger, transfers_stored).map_err(|error| error.to_string())?;
    let server_options = ServerOptions {
        address: SocketAddr::from(([127, 0, 0, 1], 0)),
        connections_max: 16,
        idle_timeout: Duration::from_secs(3600),
        pulse_interval: Duration::from_millis(100),
        peers: Vec::new(),
        metrics_address: None,
    };
    let mut server = Server::new(ledger, server_options).map_err(|error| error.to_string())?;
    let local = server.local_address().map_err(|error| error.to_string())?;
    address.send(local).map_err(|error| error.to_string())?;
    // A replica alone never syncs: it stops only when told to.
    server.run(stop).map(drop).map_err(|error| error.to_string())
}

/// Creates the accounts and `transfers_stored` transfers through the ledger directly (no network:
/// this is set-up), groups of 8 full batches per WAL write, then checkpoints, so that the measured
/// batches start a fresh checkpoint interval.
fn fill(ledger: &mut ReplicaState<FileStorage>, transfers_stored: u64) -> Result<(), ReplicaStateError> {
    let workload = Workload::new(1, ACCOUNT_COUNT, 1, AccountDistribution::Uniform);
    let accounts: Vec<Account> = (0..ACCOUNT_COUNT).map(|index| workload.account(index)).collect();
    let bodies: Vec<Vec<u8>> = accounts.chunks(BATCH_EVENTS_MAX).map(body).collect();
    submit_bodies(ledger, Operation::CreateAccounts, &bodies)?;
    let mut workload = Workload::new(2, ACCOUNT_COUNT, 1, AccountDistribution::Uniform);
    let mut remaining = transfers_stored;
    while remaining > 0 {
        let mut bodies = Vec::with_capacity(PIPELINE_PREPARE_MAX);
        while remaining > 0 && bodies.len() < PIPELINE_PREPARE_MAX {
            let count = remaining.min(BATCH_EVENTS_MAX as u64) as usize;
            let transfers: Vec<Transfer> = (0..count).map(|_| workload.transfer(0)).collect();
            bodies.push(body(&transfers));
            remaining -= count as u64;
        }
        submit_bodies(ledger, Operation::CreateTransfers, &bodies)?;
    }
    ledger.checkpoint()
}

/// The single-batch request body of `events`.
fn body<T: bytemuck::Pod>(events: &[T]) -> Vec<u8> {
    let mut body = vec![0u8; MESSAGE_BODY_SIZE_MAX];
    let bytes: &[u8] = bytemuck::cast_slice(events);
    body[..bytes.len()].copy_from_slice(bytes);
    let size = encode_single(&mut body, core::mem::size_of::<T>(), events.len());
    body.truncate(size);
    body
}

/// Submits the bodies as the replica's own requests (client 0), asserting that every one committed
/// and that all its events were created (the reply of client 0 is empty: the state tells).
fn submit_bodies(
    ledger: &mut ReplicaState<FileStorage>,
    operation: Operation,
    bodies: &[Vec<u8>],
) -> Result<(), ReplicaStateError> {
    let requests: Vec<Request<'_>> =
        bodies.iter().map(|body| Request { operation, body, client: 0, request: 0, checksum: 0 }).collect();
    let (accounts, transfers) =
        (ledger.state_machine().accounts().len(), ledger.state_machine().transfers().len());
    let events: usize = bodies.iter().map(|body| body.len() / operation.event_size() - 1).sum();
    ledger.submit(&requests, realtime_ns(), |committed, _| assert!(committed.result.is_ok()))?;
    let created = ledger.state_machine().accounts().len() - accounts
        + ledger.state_machine().transfers().len()
        - transfers;
    assert_eq!(created, events, "every event of the fill is created");
    Ok(())
}

/// A replica with 10k accounts, the stored transfers, and `client_count` registered clients.
struct Cluster {
    clients: Vec<Client>,
    batches_submitted: u64,
    // Dropped after the clients, so that they disconnect first.
    _replica: Replica,
}

impl Cluster {
    fn start(client_count: usize) -> Cluster {
        let start = Instant::now();
        let path = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("bench-end-to-end-{}.ledger", std::process::id()));
        let replica = Replica::start(path, transfers_stored());
        let options = ClientOptions {
            retry_interval_min: TIMEOUT / 2,
            rotation_interval: TIMEOUT / 2,
            retry_interval_max: TIMEOUT,
            connect_timeout: Duration::from_secs(1),
        };
        let clients: Vec<Client> = (0..client_count)
            .map(|_| Client::with_options(CLUSTER, &[replica.address], options).expect("client"))
            .collect();
        // Register every session now, so that no timed request waits for a registration.
        for client in &clients {
            client.event_max(Operation::CreateTransfers, TIMEOUT).expect("register");
        }
        eprintln!(
            "end_to_end: a replica with {} transfers stored started in {:.1} s",
            transfers_stored(),
            start.elapsed().as_secs_f64()
        );
        Cluster { clients, batches_submitted: 0, _replica: replica }
    }

    /// The measured batches this data file still takes.
    fn room_batches(&self) -> u64 {
        BATCHES_PER_FILE - self.batches_submitted
    }
}

/// Submits each client's batches from its own thread; returns the wall time from the moment all
/// threads are ready to the last reply.
fn submit(clients: &[Client], batches: &[Vec<Vec<Transfer>>]) -> Duration {
    let barrier = Barrier::new(clients.len() + 1);
    std::thread::scope(|scope| {
        let threads: Vec<_> = clients
            .iter()
            .zip(batches)
            .map(|(client, batches)| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    for batch in batches {
                        let results = client.create_transfers(batch, TIMEOUT).expect("create transfers");
                        assert!(results
                            .iter()
                            .all(|result| result.status == CreateTransferStatus::Created as u32));
                    }
                })
            })
            .collect();
        barrier.wait();
        let start = Instant::now();
        for thread in threads {
            thread.join().expect("a client thread panicked");
        }
        start.elapsed()
    })
}

fn end_to_end(c: &mut Criterion) {
    let mut group = c.benchmark_group("end_to_end");
    group.throughput(Throughput::Elements(BATCH_EVENTS_MAX as u64));
    group.sample_size(10).warm_up_time(Duration::from_secs(1)).measurement_time(Duration::from_secs(4));
    for client_count in CLIENT_COUNTS {
        // Started on the first call, so that a name filter skips the other variant's set-up.
        let mut cluster: Option<Cluster> = None;
        let mut workloads: Vec<Workload> = (0..client_count)
            .map(|index| Workload::new(100 + index as u64, ACCOUNT_COUNT, 1, AccountDistribution::Uniform))
            .collect();
        let id = BenchmarkId::new("create_transfers", format!("{client_count}_clients"));
        group.bench_function(id, |b| {
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                let mut remaining = iterations;
                while remaining > 0 {
                    if cluster.as_ref().is_none_or(|cluster| cluster.room_batches() < client_count as u64) {
                        // Untimed: the old replica goes first, freeing its memory and its file.
                        drop(cluster.take());
                        cluster = Some(Cluster::start(client_count));
                    }
                    let running = cluster.as_mut().expect("a cluster");
                    let chunk = remaining.min(CHUNK_BATCHES_MAX).min(running.room_batches());
                    // Untimed: generating the transfers (random ids, uniform accounts).
                    let batches: Vec<Vec<Vec<Transfer>>> = workloads
                        .iter_mut()
                        .enumerate()
                        .map(|(index, workload)| {
                            let count = chunk / client_count as u64
                                + u64::from((index as u64) < chunk % client_count as u64);
                            (0..count)
                                .map(|_| (0..BATCH_EVENTS_MAX).map(|_| workload.transfer(0)).collect())
                                .collect()
                        })
                        .collect();
                    elapsed += submit(&running.clients, &batches);
                    running.batches_submitted += chunk;
                    remaining -= chunk;
                }
                elapsed
            })
        });
    }
    group.finish();
}

criterion_group!(benches, end_to_end);
criterion_main!(benches);
