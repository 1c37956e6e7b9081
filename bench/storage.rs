//! The storage layer on a real disk: WAL appends of full 1 MiB prepares (one per `fdatasync`, and
//! a group of 8 per `fdatasync`), header and body checksums, the cost of a checkpoint after N ops,
//! and the time to recover (read, verify and replay) 1 GiB of WAL.
//!
//! `cargo bench --bench storage`. Data files are created with `O_DIRECT` in
//! `target/tmp` (`CARGO_TARGET_TMPDIR`) and removed at the end; the largest takes about 3.5 GB.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, SamplingMode, Throughput};
use ledger::constants::{
    BATCH_EVENTS_MAX, HEADER_SIZE, MESSAGE_BODY_SIZE_MAX, MESSAGE_SIZE_MAX, NS_PER_S, RECORD_SIZE,
    SECTOR_SIZE,
};
use ledger::multi_batch::encode_single;
use ledger::operation::Operation;
use ledger::state_machine::{Config, StateMachine};
use ledger::storage::{AlignedBuffer, FileStorage, IoMode};
use ledger::types::{Account, CreateResult, Transfer};
use ledger::vsr::checkpoint::CheckpointStats;
use ledger::vsr::data_file::{DataFile, FormatOptions};
use ledger::vsr::header::Header;
use ledger::vsr::replica_state::{ReplicaState, Request, PIPELINE_PREPARE_MAX};
use ledger::workload::{AccountDistribution, Workload};

const CLUSTER: u128 = 0x5709;

/// The cluster clock the prepares are stamped with: a constant, because prepare timestamps only
/// have to grow, and they grow by each batch's size.
const REALTIME_NS: u64 = 1_700_000_000 * NS_PER_S;

const ACCOUNT_COUNT: u64 = 10_000;

/// The production layout's WAL and grid block sizes (`ledger format`).
const JOURNAL_SLOT_COUNT: u64 = 1024;
const BLOCK_SIZE: u64 = 64 * 1024;

/// Transfers stored before the op whose checkpoint is timed.
const CHECKPOINT_TRANSFERS_STORED: u64 = 1_000_000;

/// The ops after the previous checkpoint that are timed: a full interval is what
/// `ReplicaState::submit` does with the production WAL (slots minus one pipeline).
const CHECKPOINT_OPS: [u64; 4] = [1, 8, 64, JOURNAL_SLOT_COUNT - PIPELINE_PREPARE_MAX as u64];

/// Room for the stored transfers plus the longest run of ops between two checkpoints.
const CHECKPOINT_TRANSFERS_MAX: u32 =
    (CHECKPOINT_TRANSFERS_STORED + (JOURNAL_SLOT_COUNT + 1) * BATCH_EVENTS_MAX as u64) as u32;

/// Every WAL slot after the checkpoint, full: 1 GiB of prepares.
const RECOVERY_PREPARE_COUNT: u64 = JOURNAL_SLOT_COUNT;
const RECOVERY_TRANSFER_COUNT: u64 = RECOVERY_PREPARE_COUNT * BATCH_EVENTS_MAX as u64;

// A batch of 8,189 transfers is exactly one full message: the benches measure 1 MiB prepares.
const _: () = assert!(HEADER_SIZE + (BATCH_EVENTS_MAX + 1) * RECORD_SIZE == MESSAGE_SIZE_MAX);
const _: () = assert!(RECOVERY_TRANSFER_COUNT < u32::MAX as u64);

/// A data file under `target/tmp`, removed when dropped (also when a bench panics).
struct TempPath(PathBuf);

impl TempPath {
    fn new(name: &str) -> TempPath {
        let path =
            Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.ledger", std::process::id()));
        // A file left by a killed run would make `FileStorage::create` refuse.
        let _ = std::fs::remove_file(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn format_options(journal_slot_count: u64, config: Config) -> FormatOptions {
    FormatOptions {
        cluster: CLUSTER,
        replica: 0,
        replica_count: 1,
        journal_slot_count,
        message_size_max: MESSAGE_SIZE_MAX as u64,
        clients_max: 1,
        block_size: BLOCK_SIZE,
        config,
    }
}

/// Creates (zero-fills) and formats a data file with direct I/O.
fn format(path: &Path, options: &FormatOptions) -> DataFile<FileStorage> {
    let storage = FileStorage::create(path, options.layout().file_size(), IoMode::Direct)
        .expect("create the data file with O_DIRECT under target/tmp");
    DataFile::format(storage, options).expect("format the data file")
}

/// Fills `buffer` (a prepare message) with the single-batch body of `events` and seals it as prepare
/// `op`, exactly as `ReplicaState::submit` does; returns the header.
fn seal_prepare<T: bytemuck::Pod>(
    buffer: &mut [u8],
    operation: Operation,
    events: &[T],
    op: u64,
    parent: u128,
    timestamp: u64,
) -> Header {
    let mut body = AlignedBuffer::new(MESSAGE_BODY_SIZE_MAX.next_multiple_of(SECTOR_SIZE));
    let events_bytes: &[u8] = bytemuck::cast_slice(events);
    body[..events_bytes.len()].copy_from_slice(events_bytes);
    let body_size = encode_single(&mut body, operation.event_size(), events.len());
    let request = Request { operation, body: &body[..body_size], client: 0, request: 0, checksum: 0 };
    ledger::vsr::replica_state::seal_prepare(buffer, CLUSTER, &request, op, parent, timestamp)
}

/// The timestamp of the prepare after one stamped `timestamp` that creates `count` events (as
/// `ReplicaState::submit` assigns them: one slot per event after the prepare's own).
fn timestamp_next(timestamp: u64, count: usize) -> u64 {
    timestamp.max(REALTIME_NS - 1) + 1 + count as u64
}

fn transfers(workload: &mut Workload, count: usize) -> Vec<Transfer> {
    (0..count).map(|_| workload.transfer(0)).collect()
}

/// The WAL alone: full prepares appended to consecutive slots of a 1024-slot WAL.
struct WalFixture {
    data_file: DataFile<FileStorage>,
    prepares: Vec<AlignedBuffer>,
    op: u64,
    /// An empty state: checkpointing it frees every WAL slot (the file is never reopened).
    empty: StateMachine,
    _path: TempPath,
}

impl WalFixture {
    fn new() -> WalFixture {
        let path = TempPath::new("bench-wal");
        let config = Config { accounts_max: 16, transfers_max: 16, expiries_max: 16, history_max: 16 };
        let data_file = format(&path.0, &format_options(JOURNAL_SLOT_COUNT, config));
        let mut workload = Workload::new(1, ACCOUNT_COUNT, 1, AccountDistribution::Uniform);
        let prepares = (0..PIPELINE_PREPARE_MAX)
            .map(|_| {
                let mut buffer = AlignedBuffer::new(MESSAGE_SIZE_MAX);
                let batch = transfers(&mut workload, BATCH_EVENTS_MAX);
                let header = seal_prepare(&mut buffer, Operation::CreateTransfers, &batch, 1, 0, REALTIME_NS);
                assert_eq!(header.size as usize, MESSAGE_SIZE_MAX);
                buffer
            })
            .collect();
        WalFixture { data_file, prepares, op: 0, empty: StateMachine::new(config), _path: path }
    }

    /// Appends `count` prepares as one group (one write submission, one `fdatasync`); returns the
    /// time of the append alone.
    fn append(&mut self, count: usize) -> Duration {
        let checkpoint_op = self.data_file.checkpoint_op();
        if self.op + count as u64 > checkpoint_op + self.data_file.journal().slot_count() {
            // Untimed: slots are reused only under a checkpoint, as `ReplicaState::submit` does.
            self.data_file.checkpoint(&self.empty, &[], self.op, 0, REALTIME_NS).expect("checkpoint");
        }
        for buffer in &mut self.prepares[..count] {
            self.op += 1;
            // Only the op (and so the slot) changes; the body and its checksum stay.
            let mut header: Header = bytemuck::pod_read_unaligned(&buffer[..HEADER_SIZE]);
            header.op = self.op;
            header.set_checksum();
            buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        }
        let messages: Vec<&[u8]> = self.prepares[..count].iter().map(|buffer| &buffer[..]).collect();
        let start = Instant::now();
        self.data_file.append(&messages).expect("WAL append");
        start.elapsed()
    }
}

// Set-ups run on a bench's first call, so that a name filter skips the set-ups of the others.

fn wal_append(c: &mut Criterion) {
    let mut fixture: Option<WalFixture> = None;
    let mut group = c.benchmark_group("wal_append");
    group.sample_size(10).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    // The same appends, reported once per byte and once per transfer (criterion takes one unit).
    for unit in ["bytes", "transfers"] {
        for count in [1, PIPELINE_PREPARE_MAX] {
            group.throughput(if unit == "bytes" {
                Throughput::Bytes((count * MESSAGE_SIZE_MAX) as u64)
            } else {
                Throughput::Elements((count * BATCH_EVENTS_MAX) as u64)
            });
            group.bench_function(BenchmarkId::new(unit, format!("{count}_per_fsync")), |b| {
                let fixture = fixture.get_or_insert_with(WalFixture::new);
                b.iter_custom(|iterations| (0..iterations).map(|_| fixture.append(count)).sum())
            });
        }
    }
    group.finish();
}

fn checksums(c: &mut Criterion) {
    let mut group = c.benchmark_group("checksum");
    group.sample_size(10).warm_up_time(Duration::from_millis(300)).measurement_time(Duration::from_secs(1));
    let mut workload = Workload::new(2, ACCOUNT_COUNT, 1, AccountDistribution::Uniform);
    let mut buffer = AlignedBuffer::new(MESSAGE_SIZE_MAX);
    let header = seal_prepare(
        &mut buffer,
        Operation::CreateTransfers,
        &transfers(&mut workload, BATCH_EVENTS_MAX),
        1,
        0,
        1,
    );
    let body = &buffer[HEADER_SIZE..];
    group.throughput(Throughput::Bytes(HEADER_SIZE as u64));
    group.bench_function("header_set_checksum", |b| {
        let mut header = header;
        b.iter(|| {
            black_box(&mut header).set_checksum();
            black_box(header.checksum)
        })
    });
    group
        .bench_function("header_valid_checksum", |b| b.iter(|| assert!(black_box(&header).valid_checksum())));
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("body_1MiB", |b| {
        b.iter(|| assert!(black_box(&header).valid_checksum_body(black_box(body))))
    });
    group.finish();
}

/// A ledger state with 10k accounts and ~1M transfers, checkpointed, to which ops of 8,189
/// transfers are applied directly (no WAL: only the checkpoint is measured).
struct CheckpointFixture {
    data_file: Option<DataFile<FileStorage>>,
    options: FormatOptions,
    state: StateMachine,
    workload: Workload,
    results: Vec<CreateResult>,
    timestamp: u64,
    op: u64,
    _path: TempPath,
}

impl CheckpointFixture {
    fn new() -> CheckpointFixture {
        let path = TempPath::new("bench-checkpoint");
        let config = Config {
            accounts_max: ACCOUNT_COUNT as u32,
            transfers_max: CHECKPOINT_TRANSFERS_MAX,
            expiries_max: 16,
            history_max: 16,
        };
        // The WAL is not used here: the smallest one keeps the file at the grid's size.
        let options = format_options(64, config);
        let data_file = format(&path.0, &options);
        let mut fixture = CheckpointFixture {
            data_file: Some(data_file),
            options,
            state: StateMachine::new(Config { accounts_max: 16, transfers_max: 16, ..config }),
            workload: Workload::new(3, ACCOUNT_COUNT, 1, AccountDistribution::Uniform),
            results: vec![CreateResult::default(); BATCH_EVENTS_MAX],
            timestamp: 0,
            op: 0,
            _path: path,
        };
        fixture.rebuild();
        fixture
    }

    /// Starts over (untimed): an empty grid, 10k accounts and the stored transfers, checkpointed.
    fn rebuild(&mut self) {
        let storage = self.data_file.take().expect("a data file").into_storage();
        self.data_file = Some(DataFile::format(storage, &self.options).expect("format"));
        // Free the old tables before allocating the new ones.
        self.state = StateMachine::new(Config { accounts_max: 16, transfers_max: 16, ..self.options.config });
        self.state = StateMachine::new(self.options.config);
        self.timestamp = REALTIME_NS;
        self.op = 0;
        let accounts: Vec<Account> = (0..ACCOUNT_COUNT).map(|index| self.workload.account(index)).collect();
        for chunk in accounts.chunks(BATCH_EVENTS_MAX) {
            self.timestamp += chunk.len() as u64;
            self.state
                .create_accounts(self.timestamp, chunk, &mut self.results[..chunk.len()])
                .expect("room");
        }
        let mut stored = 0;
        while stored < CHECKPOINT_TRANSFERS_STORED {
            let count = (CHECKPOINT_TRANSFERS_STORED - stored).min(BATCH_EVENTS_MAX as u64) as usize;
            self.execute(count);
            stored += count as u64;
        }
        self.checkpoint();
    }

    fn execute(&mut self, count: usize) {
        let batch = transfers(&mut self.workload, count);
        self.timestamp += count as u64 + 1;
        self.op += 1;
        let results = &mut self.results[..count];
        self.state.create_transfers(self.timestamp, &batch, results).expect("room for the transfers");
        assert!(results.iter().all(|result| result.status == u32::MAX), "every transfer is created");
    }

    /// Applies `ops` full batches (untimed), then times the checkpoint of the state after them.
    fn ops_then_checkpoint(&mut self, ops: u64) -> (Duration, CheckpointStats) {
        let room = u64::from(self.options.config.transfers_max) - self.state.transfers().len() as u64;
        if room < ops * BATCH_EVENTS_MAX as u64 {
            self.rebuild();
        }
        for _ in 0..ops {
            self.execute(BATCH_EVENTS_MAX);
        }
        let start = Instant::now();
        let stats = self.checkpoint();
        (start.elapsed(), stats)
    }

    fn checkpoint(&mut self) -> CheckpointStats {
        let data_file = self.data_file.as_mut().expect("a data file");
        // The prepare checksum only matters to a recovery, and this file is never reopened.
        data_file.checkpoint(&self.state, &[], self.op, 0, self.timestamp).expect("checkpoint")
    }
}

fn checkpoint(c: &mut Criterion) {
    let mut fixture: Option<CheckpointFixture> = None;
    let mut group = c.benchmark_group("checkpoint_after_ops");
    // Every iteration first applies its ops, untimed (a full interval also rebuilds the ledger:
    // about 4 s), so ask for few iterations; criterion still takes at least one per sample.
    group.sampling_mode(SamplingMode::Flat).sample_size(10);
    group.warm_up_time(Duration::from_millis(1)).measurement_time(Duration::from_secs(1));
    for ops in CHECKPOINT_OPS {
        let mut last: Option<(CheckpointStats, usize)> = None;
        group.bench_function(BenchmarkId::from_parameter(ops), |b| {
            let fixture = fixture.get_or_insert_with(CheckpointFixture::new);
            b.iter_custom(|iterations| {
                let mut elapsed = Duration::ZERO;
                for _ in 0..iterations {
                    let (time, stats) = fixture.ops_then_checkpoint(ops);
                    elapsed += time;
                    last = Some((stats, fixture.state.transfers().len()));
                }
                elapsed
            })
        });
        if let Some((stats, stored)) = last {
            let written_mib = stats.pages_written * BLOCK_SIZE / (1024 * 1024);
            eprintln!(
                "checkpoint after {ops} ops (last iteration, {stored} transfers stored): {} pages \
                 written ({written_mib} MiB), {} kept, {} manifest blocks",
                stats.pages_written, stats.pages_kept, stats.manifest_blocks,
            );
        }
    }
    group.finish();
}

/// Writes a data file whose checkpoint holds 10k accounts and whose WAL holds 1024 full prepares
/// of transfers after it (every slot), as a replica leaves it when stopped just before its next
/// checkpoint.
fn recovery_file(path: &Path) {
    let config = Config {
        accounts_max: ACCOUNT_COUNT as u32,
        transfers_max: RECOVERY_TRANSFER_COUNT as u32 + 1024,
        expiries_max: 16,
        history_max: 16,
    };
    let data_file = format(path, &format_options(JOURNAL_SLOT_COUNT, config));
    let mut ledger =
        ReplicaState::open(data_file.into_storage(), Some(CLUSTER)).expect("open the new data file");
    let workload = Workload::new(4, ACCOUNT_COUNT, 1, AccountDistribution::Uniform);
    let accounts: Vec<Account> = (0..ACCOUNT_COUNT).map(|index| workload.account(index)).collect();
    let mut bodies: Vec<Vec<u8>> = Vec::new();
    for chunk in accounts.chunks(BATCH_EVENTS_MAX) {
        let mut body = vec![0u8; MESSAGE_BODY_SIZE_MAX];
        body[..chunk.len() * RECORD_SIZE].copy_from_slice(bytemuck::cast_slice(chunk));
        let size = encode_single(&mut body, RECORD_SIZE, chunk.len());
        body.truncate(size);
        bodies.push(body);
    }
    let requests: Vec<Request<'_>> = bodies
        .iter()
        .map(|body| Request {
            operation: Operation::CreateAccounts,
            body,
            client: 0,
            request: 0,
            checksum: 0,
        })
        .collect();
    ledger.submit(&requests, REALTIME_NS, |committed, _| assert!(committed.result.is_ok())).expect("submit");
    assert_eq!(ledger.state_machine().accounts().len() as u64, ACCOUNT_COUNT);
    ledger.checkpoint().expect("checkpoint the accounts");
    // The transfers go straight into the WAL: `ReplicaState::submit` would checkpoint before the WAL is
    // full, and committing them here is not needed (recovery does it).
    let checkpoint = ledger.data_file().superblock().checkpoint;
    let (mut op, mut parent, mut timestamp) =
        (checkpoint.op, checkpoint.prepare_checksum, checkpoint.timestamp);
    let mut workload = Workload::new(5, ACCOUNT_COUNT, 1, AccountDistribution::Uniform);
    let mut buffers: Vec<AlignedBuffer> =
        (0..PIPELINE_PREPARE_MAX).map(|_| AlignedBuffer::new(MESSAGE_SIZE_MAX)).collect();
    for _ in 0..RECOVERY_PREPARE_COUNT / PIPELINE_PREPARE_MAX as u64 {
        for buffer in &mut buffers {
            op += 1;
            timestamp = timestamp_next(timestamp, BATCH_EVENTS_MAX);
            let batch = transfers(&mut workload, BATCH_EVENTS_MAX);
            parent = seal_prepare(buffer, Operation::CreateTransfers, &batch, op, parent, timestamp).checksum;
        }
        let messages: Vec<&[u8]> = buffers.iter().map(|buffer| &buffer[..]).collect();
        ledger.data_file_mut().append(&messages).expect("WAL append");
    }
    // An idle replica has written the redundant headers of every durable prepare.
    ledger.flush().expect("flush the redundant headers");
}

/// The recovery data file, written on first use.
fn recovery_path(path: &mut Option<TempPath>) -> &Path {
    &path
        .get_or_insert_with(|| {
            let path = TempPath::new("bench-recovery");
            let start = Instant::now();
            recovery_file(&path.0);
            eprintln!(
                "recovery: wrote {RECOVERY_PREPARE_COUNT} prepares ({RECOVERY_TRANSFER_COUNT} transfers) \
                 in {:.1} s",
                start.elapsed().as_secs_f64()
            );
            path
        })
        .0
}

fn recovery(c: &mut Criterion) {
    let mut path: Option<TempPath> = None;
    let mut group = c.benchmark_group("recovery");
    group.sampling_mode(SamplingMode::Flat).sample_size(10).warm_up_time(Duration::from_millis(1));
    group.measurement_time(Duration::from_secs(10));
    group.throughput(Throughput::Bytes(RECOVERY_PREPARE_COUNT * MESSAGE_SIZE_MAX as u64));
    // Reading and verifying alone (no state machine), to tell the disk's share from the replay's.
    group.bench_function("wal_read_verify_1GiB", |b| {
        let path = recovery_path(&mut path);
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                let storage = FileStorage::open(path, IoMode::Direct).expect("open the data file");
                let (mut data_file, _arrays) = DataFile::open(storage, Some(CLUSTER)).expect("open");
                let mut bytes = 0;
                let recovered = data_file.recover(|_, message| bytes += message.len()).expect("recover");
                elapsed += start.elapsed();
                assert_eq!(recovered.op_head, 2 + RECOVERY_PREPARE_COUNT);
                assert_eq!(bytes as u64, RECOVERY_PREPARE_COUNT * MESSAGE_SIZE_MAX as u64);
            }
            elapsed
        })
    });
    group.bench_function("ledger_open_1GiB_wal", |b| {
        let path = recovery_path(&mut path);
        b.iter_custom(|iterations| {
            let mut elapsed = Duration::ZERO;
            for _ in 0..iterations {
                let start = Instant::now();
                let storage = FileStorage::open(path, IoMode::Direct).expect("open the data file");
                let ledger = ReplicaState::open(storage, Some(CLUSTER)).expect("recover");
                elapsed += start.elapsed();
                assert_eq!(ledger.recovered().op_head, 2 + RECOVERY_PREPARE_COUNT);
                assert_eq!(ledger.state_machine().transfers().len() as u64, RECOVERY_TRANSFER_COUNT);
                // Untimed: freeing the tables.
                drop(ledger);
            }
            elapsed
        })
    });
    group.finish();
}

criterion_group!(benches, wal_append, checksums, checkpoint, recovery);
criterion_main!(benches);
