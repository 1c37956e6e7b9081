//! Crash recovery on the simulated disk: a seeded workload is crashed at *every* write and
//! fsync boundary, under each way unsynced writes can end up on disk (all lost, all kept, torn
//! at sector granularity), then recovered. Every acknowledged batch must be present exactly
//! once, and the state must equal the same ops replayed into a fresh state machine.
//! Damage to committed data in each zone is detected and reported, never silently accepted.

use ledger::constants::{MESSAGE_BODY_SIZE_MAX, SECTOR_SIZE};
use ledger::multi_batch::encode_single;
use ledger::operation::Operation;
use ledger::prng::Prng;
use ledger::state_machine::{Config, StateMachine};
use ledger::storage::layout::Layout;
use ledger::storage::{CrashMode, SimFaults, SimStorage, Storage};
use ledger::types::{Account, Transfer, TransferFlags};
use ledger::vsr::data_file::{DataFile, DataFileError, FormatOptions};
use ledger::vsr::header::Header;
use ledger::vsr::journal::JournalError;
use ledger::vsr::replica_state::{ReplicaState, Request};
use ledger::vsr::write_stage::Stream;

const CLUSTER: u128 = 0xC1;

fn options() -> FormatOptions {
    options_with_slots(8)
}

/// The test layout with `journal_slot_count` WAL slots.
fn options_with_slots(journal_slot_count: u64) -> FormatOptions {
    FormatOptions {
        cluster: CLUSTER,
        replica: 0,
        replica_count: 1,
        journal_slot_count,
        message_size_max: 16 * 1024,
        clients_max: 1,
        block_size: 4096,
        config: Config { accounts_max: 64, transfers_max: 2048, expiries_max: 512, history_max: 2048 },
    }
}

fn formatted() -> SimStorage {
    formatted_with(options())
}

fn formatted_with(options: FormatOptions) -> SimStorage {
    let layout = options.layout();
    let storage = SimStorage::new(layout.file_size(), 1, SimFaults::default());
    DataFile::format(storage, &options).expect("format").into_storage()
}

/// One request of the workload, with its body bytes (16-byte aligned storage).
struct Job {
    operation: Operation,
    body: Vec<u128>,
    size: usize,
}

/// The client every request of the workload comes from (pulses come from the replica).
const CLIENT: u128 = 77;

impl Job {
    /// The request as client `CLIENT`'s request number `number` (0 is its `register`).
    fn request(&self, number: u32) -> Request<'_> {
        let bytes: &[u8] = bytemuck::cast_slice(&self.body);
        let client = if self.operation == Operation::Pulse { 0 } else { CLIENT };
        Request {
            operation: self.operation,
            body: &bytes[..self.size],
            client,
            request: number,
            checksum: u128::from(number) << 64 | 0xFEED,
        }
    }
}

fn job<T: bytemuck::Pod>(operation: Operation, events: &[T]) -> Job {
    let mut body = vec![0u128; MESSAGE_BODY_SIZE_MAX / 16];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut body);
    let event_size = core::mem::size_of::<T>();
    bytes[..std::mem::size_of_val(events)].copy_from_slice(bytemuck::cast_slice(events));
    let size = encode_single(bytes, event_size, events.len());
    Job { operation, body, size }
}

/// A seeded workload: accounts, then transfers of every kind, pending ones with timeouts,
/// pulses and lookups, in groups of up to 3 requests per WAL write.
fn workload(seed: u64) -> Vec<Vec<Job>> {
    let mut prng = Prng::new(seed);
    let accounts: Vec<Account> = (1..=16u128)
        .map(|id| Account {
            id,
            ledger: 1,
            code: 1,
            flags: if id % 4 == 0 { ledger::types::AccountFlags::HISTORY } else { Default::default() },
            ..Account::default()
        })
        .collect();
    let register = Job { operation: Operation::Register, body: vec![0], size: 0 };
    let mut groups = vec![vec![register, job(Operation::CreateAccounts, &accounts)]];
    let mut id = 1000u128;
    for _ in 0..24 {
        let mut group = Vec::new();
        for _ in 0..prng.range_inclusive(1, 3) {
            if prng.chance(1, 6) {
                group.push(Job { operation: Operation::Pulse, body: vec![0], size: 0 });
                continue;
            }
            let count = prng.range_inclusive(1, 40);
            let mut transfers = Vec::new();
            for _ in 0..count {
                id += 1;
                let debit = 1 + u128::from(prng.below(16));
                let credit = 1 + (debit + u128::from(prng.below(15))) % 16;
                let mut transfer = Transfer {
                    id,
                    debit_account_id: debit,
                    credit_account_id: credit,
                    amount: u128::from(prng.range_inclusive(1, 100)),
                    ledger: 1,
                    code: 1,
                    ..Transfer::default()
                };
                match prng.below(5) {
                    0 => {
                        transfer.flags = TransferFlags::PENDING;
                        transfer.timeout = 1;
                    }
                    1 => {
                        transfer = Transfer {
                            id,
                            pending_id: id - 1 - u128::from(prng.below(20)),
                            flags: if prng.chance(1, 2) {
                                TransferFlags::POST_PENDING_TRANSFER
                            } else {
                                TransferFlags::VOID_PENDING_TRANSFER
                            },
                            ..Transfer::default()
                        }
                    }
                    2 => transfer.debit_account_id = 99, // Not found: burns the id.
                    _ => {}
                }
                transfers.push(transfer);
            }
            group.push(job(Operation::CreateTransfers, &transfers));
        }
        if prng.chance(1, 4) {
            group.push(job(Operation::LookupAccounts, &[1u128, 2, 3]));
        }
        group.truncate(3);
        groups.push(group);
    }
    groups
}

/// The cluster clock of group `index`: jumps of 0.7 s, so one-second timeouts expire.
fn realtime(index: usize) -> u64 {
    1_000_000_000 + index as u64 * 700_000_000
}

/// One op as committed: what to replay into a fresh state machine.
#[derive(Clone, Debug)]
struct Op {
    operation: Operation,
    timestamp: u64,
    body: Vec<u8>,
}

/// Runs the workload until it ends or the storage crashes; returns every op prepared (in op
/// order, with its timestamp) and how many ops were acknowledged (their group's submit
/// returned, so they are durable).
fn run(ledger: &mut ReplicaState<SimStorage>, groups: &[Vec<Job>], ops: &mut Vec<Op>) -> u64 {
    let mut acknowledged = ledger.commit_min();
    let mut number = 0;
    for (index, group) in groups.iter().enumerate() {
        let requests: Vec<Request<'_>> = group
            .iter()
            .map(|job| {
                let request = job.request(number);
                number += u32::from(job.operation != Operation::Pulse);
                request
            })
            .collect();
        let mut committed = Vec::new();
        let outcome =
            ledger.submit(&requests, realtime(index), |done, _| committed.push((done.op, done.timestamp)));
        if outcome.is_err() {
            return acknowledged;
        }
        for ((op, timestamp), request) in committed.iter().zip(&requests) {
            assert_eq!(*op as usize, ops.len() + 1);
            ops.push(Op { operation: request.operation, timestamp: *timestamp, body: request.body.to_vec() });
        }
        acknowledged = ledger.commit_min();
    }
    acknowledged
}

/// Runs the workload as the server does, with the journal's write stages overlapped: the next
/// group is prepared while the one before is being written, so a stage carries one group's
/// headers with the next group's prepares; each stage's writes are carried out from copies
/// (as the server's ring does from the buffers) and then synced. Returns every op committed
/// and the newest op made durable (`commit_max`): none of those may be lost.
fn run_pipelined(ledger: &mut ReplicaState<SimStorage>, groups: &[Vec<Job>], ops: &mut Vec<Op>) -> u64 {
    let mut durable = ledger.commit_max();
    let mut number = 0;
    let mut next = 0;
    let mut prepared: std::collections::VecDeque<(Operation, Vec<u8>)> = std::collections::VecDeque::new();
    loop {
        while next < groups.len() && groups[next].len() <= ledger.pipeline_room() {
            let requests: Vec<Request<'_>> = groups[next]
                .iter()
                .map(|job| {
                    let request = job.request(number);
                    number += u32::from(job.operation != Operation::Pulse);
                    request
                })
                .collect();
            ledger.prepare_requests(&requests, realtime(next)).expect("prepare");
            prepared.extend(requests.iter().map(|request| (request.operation, request.body.to_vec())));
            next += 1;
        }
        match run_stage(ledger, Stream::Journal) {
            None if ledger.commit_min() < ledger.commit_max() => {}
            None => {
                assert_eq!(ledger.commit_min(), ledger.op(), "nothing to write: everything committed");
                assert_eq!(next, groups.len(), "and every group prepared");
                return durable;
            }
            Some(Err(())) => return durable,
            Some(Ok(())) => {}
        }
        durable = ledger.commit_max();
        assert!(ledger.op() - ledger.commit_max() <= ledger.pipeline_max() as u64);
        let committed = ledger.commit(|done, _, _| {
            let (operation, body) = prepared.pop_front().expect("a prepared op");
            assert_eq!(done.op as usize, ops.len() + 1);
            ops.push(Op { operation, timestamp: done.timestamp, body });
        });
        if committed.is_err() {
            return durable;
        }
        // The other streams' stages, as the server keeps them in flight beside the journal's.
        for stream in [Stream::Replies, Stream::Grid] {
            while let Some(outcome) = run_stage(ledger, stream) {
                if outcome.is_err() {
                    return durable;
                }
            }
        }
    }
}

/// Copies of a stage's writes (offset and data), taken when it begins, as the server's ring
/// would read the buffers then.
fn copies_of(writes: &[ledger::storage::Write<'_>]) -> Vec<(u64, ledger::storage::AlignedBuffer)> {
    writes
        .iter()
        .map(|write| {
            let mut copy = ledger::storage::AlignedBuffer::new(write.data.len());
            copy.copy_from_slice(write.data);
            (write.offset, copy)
        })
        .collect()
}

/// Carries out the next stage of `stream`, if it has one, as the server does: from copies of
/// its writes (taken when it begins), then a sync if it asks for one. `Err` if the disk crashed.
fn run_stage(ledger: &mut ReplicaState<SimStorage>, stream: Stream) -> Option<Result<(), ()>> {
    use ledger::storage::Write;
    use ledger::vsr::write_stage::STAGE_WRITES_MAX;
    let mut writes = [Write { offset: 0, data: &[] }; STAGE_WRITES_MAX];
    let stage = match ledger.stage_begin(stream, &mut writes) {
        Ok(stage) => stage?,
        Err(_) => return Some(Err(())),
    };
    let copies = copies_of(&writes[..stage.count]);
    let storage = ledger.data_file_mut().storage_mut();
    let writes: Vec<Write<'_>> =
        copies.iter().map(|(offset, data)| Write { offset: *offset, data }).collect();
    let outcome = if writes.is_empty() { Ok(()) } else { storage.write(&writes) };
    if outcome.and_then(|()| if stage.sync { storage.sync() } else { Ok(()) }).is_err() {
        return Some(Err(()));
    }
    ledger.stage_end(stream);
    // A cluster of one: what is durable on its one replica has its replication quorum.
    ledger.commit_max_raise(ledger.op_durable());
    Some(Ok(()))
}

/// A fresh state machine with the first `count` ops applied.
fn replayed(ops: &[Op], count: u64) -> StateMachine {
    let mut state = StateMachine::new(options().config);
    let mut reply = vec![0u128; MESSAGE_BODY_SIZE_MAX / 16 + 1];
    let mut body = vec![0u128; MESSAGE_BODY_SIZE_MAX / 16];
    for op in &ops[..count as usize] {
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut body);
        bytes[..op.body.len()].copy_from_slice(&op.body);
        let bytes: &[u8] = bytemuck::cast_slice(&body);
        let _ = state.execute(
            op.operation,
            op.timestamp,
            &bytes[..op.body.len()],
            bytemuck::cast_slice_mut(&mut reply),
        );
    }
    state
}

fn assert_same_state(actual: &StateMachine, expected: &StateMachine, context: &str) {
    assert_eq!(actual.accounts(), expected.accounts(), "{context}: accounts differ");
    assert_eq!(actual.transfers(), expected.transfers(), "{context}: transfers differ");
    for transfer in expected.transfers() {
        assert_eq!(actual.pending_status(transfer.id), expected.pending_status(transfer.id), "{context}");
    }
    for (actual, expected) in actual.persisted().iter().zip(expected.persisted()) {
        assert_eq!(*actual, expected, "{context}: persisted arrays differ");
    }
}

/// The client's session after op `head`: its latest request and reply are those of its latest
/// op up to `head`, and the stored reply is intact and answers that op.
fn assert_session(ledger: &ReplicaState<SimStorage>, ops: &[Op], head: u64, context: &str) {
    let client_ops: Vec<usize> =
        (0..head as usize).filter(|index| ops[*index].operation != Operation::Pulse).collect();
    let Some((slot, session)) = ledger.clients().get(CLIENT) else {
        assert!(client_ops.is_empty(), "{context}: the session was lost");
        return;
    };
    let last = *client_ops.last().expect("a session implies a register");
    assert_eq!(session.request as usize, client_ops.len() - 1, "{context}: latest request number");
    assert_eq!(session.op, last as u64 + 1, "{context}: latest op of the session");
    assert_eq!(session.session, 1, "{context}: the session is the op of the register");
    let reply = ledger.clients().reply(slot);
    let header: Header = bytemuck::pod_read_unaligned(&reply[..256]);
    assert!(header.valid_checksum() && header.valid_checksum_body(&reply[256..]), "{context}: reply intact");
    assert_eq!(header.op, session.op, "{context}: the reply answers the latest op");
    assert_eq!(
        header.context,
        u128::from(session.request) << 64 | 0xFEED,
        "{context}: reply matches request"
    );
}

#[test]
fn recovery_after_a_crash_at_every_write_and_fsync_keeps_every_acknowledged_batch() {
    let seed = std::env::var("LEDGER_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(7);
    crash_at_steps(seed, 1, run);
}

#[test]
fn recovery_after_a_crash_at_every_step_of_overlapped_journal_stages_keeps_every_durable_op() {
    let seed = std::env::var("LEDGER_SEED").ok().and_then(|seed| seed.parse().ok()).unwrap_or(7);
    crash_at_steps(seed, 1, run_pipelined);
}

#[test]
fn recovery_after_crashes_in_other_seeded_workloads_keeps_every_acknowledged_batch() {
    // Other workloads put the WAL wraps, checkpoints and torn groups at other steps; every
    // third step of each keeps the run short.
    for seed in 1..=4 {
        crash_at_steps(seed, 3, run);
        crash_at_steps(seed, 3, run_pipelined);
    }
}

/// Crashes the workload of `seed` at every `stride`-th storage step, under every crash mode,
/// and checks each recovery.
/// The checkpoint interval of the 8-slot test WAL: (slots − pipeline of 4) / 2.
const CHECKPOINT_INTERVAL_8_SLOTS: u64 = 2;

/// A way of driving the workload: returns the newest op that must survive a crash.
type Runner = fn(&mut ReplicaState<SimStorage>, &[Vec<Job>], &mut Vec<Op>) -> u64;

fn crash_at_steps(seed: u64, stride: u64, run: Runner) {
    let groups = workload(seed);
    // The reference run: no crash. Ops are deterministic, so every crashed run prepares the
    // same op n as this one.
    let mut reference_ops = Vec::new();
    let mut ledger = ReplicaState::open(formatted(), Some(CLUSTER)).expect("open");
    let steps_format = ledger.data_file().superblock().sequence;
    let steps_before = ledger.data_file_mut().storage_mut().steps();
    run(&mut ledger, &groups, &mut reference_ops);
    let storage_steps = ledger.data_file_mut().storage_mut().steps() - steps_before;
    let ops_total = reference_ops.len() as u64;
    assert!(ops_total > 40, "the workload commits enough ops to wrap the WAL several times");
    assert!(ledger.data_file().checkpoint_op() > 0, "the workload checkpoints");
    assert_eq!(steps_format, 1);

    let mut crashes = 0;
    let mut torn_heads = 0;
    for crash_step in (0..storage_steps).step_by(stride as usize) {
        let torn = (0..4).map(|variant| CrashMode::Torn { seed: crash_step * 4 + variant });
        for mode in [CrashMode::LoseAll, CrashMode::KeepAll].into_iter().chain(torn) {
            let context = format!("seed {seed}, crash at step {crash_step}, {mode:?}");
            let mut ledger = ReplicaState::open(formatted(), Some(CLUSTER)).expect("open");
            let storage = ledger.data_file_mut().storage_mut();
            storage.crash_at_step(storage.steps() + crash_step);
            let mut ops = Vec::new();
            let acknowledged = run(&mut ledger, &groups, &mut ops);
            let mut storage = ledger.into_storage();
            assert!(storage.crashed(), "{context}: the crash point was reached");
            storage.restart(mode);
            crashes += 1;

            let mut recovered = ReplicaState::open(storage, Some(CLUSTER))
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            let head = recovered.commit_min();
            assert!(head >= acknowledged, "{context}: acknowledged op {acknowledged} lost (head {head})");
            assert!(head <= ops_total, "{context}: recovered a phantom op {head}");
            torn_heads += u32::from(recovered.recovered().torn_head);
            assert_same_state(recovered.state_machine(), &replayed(&reference_ops, head), &context);
            // Replay writes every checkpoint it passes, at the same fixed ops as a run without a
            // crash: the durable one is the newest checkpoint op at or below the head.
            let interval = CHECKPOINT_INTERVAL_8_SLOTS;
            let checkpoint_op = recovered.data_file().checkpoint_op();
            assert_eq!(
                checkpoint_op,
                head / interval * interval,
                "{context}: checkpoint at op {checkpoint_op}"
            );

            // The log continues where recovery left off, and a clean reopen agrees.
            assert_session(&recovered, &reference_ops, head, &context);
            let next = &groups[groups.len() - 1];
            let number = recovered.clients().get(CLIENT).map_or(0, |(_, session)| session.request + 1);
            let requests: Vec<Request<'_>> = next.iter().map(|job| job.request(number)).collect();
            recovered
                .submit(&requests, realtime(1000), |_, _| {})
                .unwrap_or_else(|error| panic!("{context}: {error}"));
            let head_after = recovered.commit_min();
            let state_accounts = recovered.state_machine().accounts().to_vec();
            let reopened = ReplicaState::open(recovered.into_storage(), Some(CLUSTER)).expect("reopen");
            assert_eq!(reopened.commit_min(), head_after, "{context}");
            assert_eq!(reopened.state_machine().accounts(), state_accounts.as_slice(), "{context}");
        }
    }
    assert_eq!(crashes, storage_steps.div_ceil(stride) * 6);
    if stride == 1 {
        assert!(torn_heads > 0, "some crashes tore the head of the log");
    }
}

/// Runs the whole workload on a fresh data file and returns the ledger.
fn full_run() -> (ReplicaState<SimStorage>, Vec<Op>) {
    let mut ledger = ReplicaState::open(formatted(), Some(CLUSTER)).expect("open");
    let mut ops = Vec::new();
    run(&mut ledger, &workload(3), &mut ops);
    ledger.flush().expect("flush");
    (ledger, ops)
}

#[test]
fn a_corrupted_committed_prepare_is_reported_with_its_op_and_offset() {
    // A longer WAL, so that committed ops sit between the durable checkpoint and the head.
    let mut ledger = ReplicaState::open(formatted_with(options_with_slots(32)), Some(CLUSTER)).expect("open");
    let groups = workload(3);
    let mut ops = Vec::new();
    run(&mut ledger, &groups[..6], &mut ops);
    ledger.flush().expect("flush");
    let layout = ledger.data_file().superblock().layout();
    let checkpoint_op = ledger.data_file().checkpoint_op();
    let head = ledger.commit_min();
    assert!(head >= checkpoint_op + 2, "there are committed ops after the checkpoint");
    let op = checkpoint_op + 1;
    let slot = op % layout.journal_slot_count;
    let mut storage = ledger.into_storage();
    // Zeroed rather than a random bit flip, which could land in the sector's padding.
    storage.zero(layout.wal_prepare_offset(slot), SECTOR_SIZE as u64);
    match ReplicaState::open(storage, Some(CLUSTER)) {
        Err(DataFileError::Journal(JournalError::Corrupt { op: bad, slot: bad_slot, offset })) => {
            assert_eq!(bad, op);
            assert_eq!(bad_slot, slot);
            assert_eq!(offset, layout.wal_prepare_offset(slot));
            let message =
                DataFileError::Journal(JournalError::Corrupt { op: bad, slot: bad_slot, offset }).to_string();
            assert!(message.contains(&format!("op {op}")) && message.contains(&format!("offset {offset}")));
        }
        other => panic!("expected a corruption report, got {:?}", other.map(|ledger| ledger.commit_min())),
    }
}

/// A latent sector error (the read fails, EIO) is damage like corruption, not a failure of the
/// process: an unreadable committed prepare is refused by a replica alone, naming it (a
/// cluster's replica recovers its head from its peers instead, `tests/simulator.rs`), and an
/// unreadable sector of redundant headers too, since a replica alone cannot tell a torn append
/// from a lost acknowledged op without them.
#[test]
fn an_unreadable_committed_prepare_or_header_sector_is_damage_not_an_io_failure() {
    let mut ledger = ReplicaState::open(formatted_with(options_with_slots(32)), Some(CLUSTER)).expect("open");
    run(&mut ledger, &workload(3)[..6], &mut Vec::new());
    ledger.flush().expect("flush");
    let layout = ledger.data_file().superblock().layout();
    let op = ledger.data_file().checkpoint_op() + 1;
    assert!(ledger.commit_min() > op, "there are committed ops after the checkpoint");
    let slot = op % layout.journal_slot_count;
    let prepare = layout.wal_prepare_offset(slot);
    let mut storage = ledger.into_storage();
    let unreadable = |area: std::ops::Range<u64>| SimFaults {
        read_fault_ppm: SimFaults::PPM_MAX,
        faulty_area: Some(area),
        ..SimFaults::default()
    };
    storage.set_faults(unreadable(prepare..prepare + SECTOR_SIZE as u64));
    match ReplicaState::open(storage.clone(), Some(CLUSTER)) {
        Err(DataFileError::Journal(JournalError::Corrupt { op: bad, offset, .. })) => {
            assert_eq!((bad, offset), (op, prepare));
        }
        other => panic!("expected a corruption report, got {:?}", other.map(|ledger| ledger.commit_min())),
    }
    let headers = layout.wal_headers_offset();
    storage.set_faults(unreadable(headers..headers + SECTOR_SIZE as u64));
    match ReplicaState::open(storage, Some(CLUSTER)) {
        Err(DataFileError::Journal(JournalError::HeadersUnreadable { offset })) => {
            assert_eq!(offset, headers)
        }
        other => panic!("expected unreadable headers, got {:?}", other.map(|ledger| ledger.commit_min())),
    }
}

#[test]
fn a_torn_redundant_header_sector_is_repaired_from_intact_prepares() {
    let (ledger, ops) = full_run();
    let layout = ledger.data_file().superblock().layout();
    let head = ledger.commit_min();
    let mut storage = ledger.into_storage();
    storage.corrupt(layout.wal_headers_offset(), layout.wal_headers_size());
    let recovered = ReplicaState::open(storage, Some(CLUSTER)).expect("intact prepares vouch for themselves");
    assert_eq!(recovered.commit_min(), head);
    assert_same_state(recovered.state_machine(), &replayed(&ops, head), "headers ring corrupted");
}

#[test]
fn a_corrupted_checkpoint_block_is_detected() {
    let (ledger, _) = full_run();
    let superblock = *ledger.data_file().superblock();
    let layout = superblock.layout();
    let manifest = superblock.checkpoint.manifest[0];
    let mut storage = ledger.into_storage();
    storage.corrupt(layout.block_offset(manifest.address), 4096);
    let error = ReplicaState::open(storage, Some(CLUSTER)).err().expect("corruption must not be accepted");
    assert!(error.to_string().contains(&format!("grid block {}", manifest.address)), "{error}");
}

#[test]
fn one_corrupted_superblock_copy_is_survived_and_all_of_them_are_reported() {
    let (ledger, ops) = full_run();
    let head = ledger.commit_min();
    let mut storage = ledger.into_storage();
    storage.corrupt(Layout::superblock_offset(1), 4096);
    let recovered = ReplicaState::open(storage, Some(CLUSTER)).expect("three copies remain");
    assert_same_state(recovered.state_machine(), &replayed(&ops, head), "one superblock copy corrupted");
    let mut storage = recovered.into_storage();
    for copy in 0..4 {
        storage.corrupt(Layout::superblock_offset(copy), 4096);
    }
    let error = ReplicaState::open(storage, Some(CLUSTER)).err().expect("no superblock");
    assert!(error.to_string().contains("superblock is corrupt"), "{error}");
}

#[test]
fn a_wrong_cluster_and_a_foreign_file_are_refused() {
    let error = ReplicaState::open(formatted(), Some(CLUSTER + 1)).err().expect("wrong cluster");
    assert!(
        matches!(error, DataFileError::WrongCluster { expected, found } if expected == CLUSTER + 1 && found == CLUSTER)
    );

    let layout = options().layout();
    let mut foreign = SimStorage::new(layout.file_size(), 1, SimFaults::default());
    let mut junk = ledger::storage::AlignedBuffer::new(4096 * 16);
    junk.iter_mut().enumerate().for_each(|(index, byte)| *byte = (index * 7) as u8);
    foreign.write(&[ledger::storage::Write { offset: 0, data: &junk }]).expect("write");
    let error = ReplicaState::open(foreign, None).err().expect("not a data file");
    assert!(error.to_string().contains("not a ledger data file"), "{error}");
}

#[test]
fn a_corrupted_client_reply_ends_the_session_instead_of_being_sent() {
    let (mut ledger, _) = full_run();
    // Checkpoint, so the session's latest reply must come from the client-replies zone rather
    // than from replaying the WAL.
    ledger.checkpoint().expect("checkpoint");
    let layout = ledger.data_file().superblock().layout();
    let (slot, _) = ledger.clients().get(CLIENT).expect("the workload's client has a session");
    let storage = ledger.into_storage();
    let reopened = ReplicaState::open(storage, Some(CLUSTER)).expect("reopen");
    assert!(reopened.clients().get(CLIENT).is_some(), "an intact reply keeps its session");
    let mut storage = reopened.into_storage();
    // Zeroed: a random bit flip could land in the sector padding after the reply.
    storage.zero(layout.client_reply_offset(slot as u64), 4096);
    let recovered =
        ReplicaState::open(storage, Some(CLUSTER)).expect("a damaged reply does not stop the replica");
    assert!(recovered.clients().get(CLIENT).is_none(), "the session with a damaged reply was ended");
}

#[test]
fn a_clock_beyond_the_timestamp_range_prepares_and_writes_nothing() {
    use ledger::constants::TIMESTAMP_MAX;
    use ledger::vsr::replica_state::ReplicaStateError;
    let mut ledger = ReplicaState::open(formatted(), Some(CLUSTER)).expect("open");
    let register = Job { operation: Operation::Register, body: vec![0], size: 0 };
    let accounts =
        job(Operation::CreateAccounts, &[Account { id: 1, ledger: 1, code: 1, ..Account::default() }]);
    ledger.submit(&[register.request(0)], realtime(0), |_, _| {}).expect("register");
    let steps = ledger.data_file_mut().storage_mut().steps();
    // Past the year 2262, and at the very edge: the create's event timestamp would be beyond it.
    for clock in [u64::MAX, TIMESTAMP_MAX + 1, TIMESTAMP_MAX] {
        match ledger.submit(&[accounts.request(1)], clock, |_, _| panic!("nothing commits")) {
            Err(error @ ReplicaStateError::ClockOutOfRange { .. }) => {
                assert!(error.to_string().contains("fix the system clock"), "{error}");
            }
            other => panic!("a clock of {clock} must be refused, got {other:?}"),
        }
        assert_eq!(ledger.commit_min(), 1, "nothing was prepared");
        assert_eq!(ledger.data_file_mut().storage_mut().steps(), steps, "nothing was written");
    }
    // Once the clock is right the same request is served, and the log replays.
    let mut committed = None;
    ledger.submit(&[accounts.request(1)], realtime(1), |done, _| committed = Some(done.op)).expect("create");
    assert_eq!(committed, Some(2));
    let reopened = ReplicaState::open(ledger.into_storage(), Some(CLUSTER)).expect("reopen");
    assert_eq!(reopened.commit_min(), 2);
}

#[test]
fn an_intact_prepare_the_state_machine_cannot_apply_is_refused_at_start_instead_of_panicking() {
    use ledger::constants::TIMESTAMP_MAX;
    use ledger::vsr::data_file::root_checksum;
    use ledger::vsr::replica_state::{seal_prepare, PrepareInvalid};
    let accounts =
        job(Operation::CreateAccounts, &[Account { id: 1, ledger: 1, code: 1, ..Account::default() }]);
    let mut bad_body = job(Operation::LookupAccounts, &[1u128]);
    bad_body.size -= 16; // The multi-batch trailer no longer fits the body.
                         // What an older build with a clock past 2262 (or a faulty primary) could have logged.
    let cases: [(Request<'_>, u64, &str); 4] = [
        (accounts.request(1), TIMESTAMP_MAX + 1, "beyond the largest timestamp"),
        (accounts.request(1), 0, "does not follow"),
        (bad_body.request(1), 1_000, "invalid body"),
        (Request { operation: Operation::Register, ..accounts.request(0) }, 1_000, "invalid body"),
    ];
    for (request, timestamp, reason) in cases {
        let options = options();
        let mut data_file = DataFile::open(formatted(), Some(CLUSTER)).expect("open").0;
        data_file.recover(|_, _| {}).expect("an empty log");
        let mut prepare = ledger::storage::AlignedBuffer::new(options.message_size_max as usize);
        seal_prepare(&mut prepare, CLUSTER, &request, 1, root_checksum(CLUSTER), timestamp);
        data_file.append(&[&prepare]).expect("append");
        let layout = options.layout();
        match ReplicaState::open(data_file.into_storage(), Some(CLUSTER)) {
            Err(error @ DataFileError::PrepareInvalid { op: 1, slot: 1, offset, reason: _ }) => {
                assert_eq!(offset, layout.wal_prepare_offset(1));
                let message = error.to_string();
                assert!(message.contains(reason) && message.contains("op 1 (slot 1"), "{message}");
                assert!(matches!(
                    error,
                    DataFileError::PrepareInvalid {
                        reason: PrepareInvalid::TimestampRange(_)
                            | PrepareInvalid::TimestampOrder { .. }
                            | PrepareInvalid::Body(_),
                        ..
                    }
                ));
            }
            other => {
                panic!("{reason}: expected a refusal, got {:?}", other.map(|ledger| ledger.commit_min()))
            }
        }
    }
}

#[test]
fn checkpoints_happen_at_fixed_ops_whatever_the_grouping_of_requests() {
    // The same requests, one per WAL write on one replica and in groups of 1..=8 on another,
    // with a clock that never leads (timestamps then depend on the ops alone): both must
    // checkpoint the same states at the same ops, down to the grid blocks the manifest names.
    let options = options_with_slots(32);
    let jobs: Vec<Job> = workload(5).into_iter().flatten().collect();
    let mut numbers = Vec::new();
    let mut number = 0;
    for job in &jobs {
        numbers.push(number);
        number += u32::from(job.operation != Operation::Pulse);
    }
    let requests: Vec<Request<'_>> = jobs.iter().zip(&numbers).map(|(job, n)| job.request(*n)).collect();
    let mut prng = Prng::new(9);
    let mut checkpoints = Vec::new();
    for grouped in [false, true] {
        let mut ledger = ReplicaState::open(formatted_with(options), Some(CLUSTER)).expect("open");
        let mut done = 0;
        let mut seen = Vec::new();
        while done < requests.len() {
            let size =
                if grouped { prng.range_inclusive(1, ledger.pipeline_max() as u64) as usize } else { 1 };
            let end = (done + size).min(requests.len());
            ledger.submit(&requests[done..end], 0, |_, _| {}).expect("submit");
            done = end;
            let checkpoint = ledger.data_file().superblock().checkpoint;
            if seen.last() != Some(&checkpoint) {
                seen.push(checkpoint);
            }
        }
        assert!(seen.len() >= 4, "the run passes several checkpoints");
        checkpoints.push(seen);
    }
    let interval = (options.journal_slot_count - 8) / 2;
    for checkpoint in &checkpoints[0] {
        assert!(checkpoint.op.is_multiple_of(interval), "checkpoint op {} is on the schedule", checkpoint.op);
    }
    // The prepares of the two runs differ in one field, the commit point each carries (what
    // the primary knew when it prepared it, which the grouping decides), and so in their
    // checksums; the replicas of one cluster log the very same prepares. Everything else is
    // the same, byte for byte: the state is a function of the ops alone.
    let unchained = |run: &[ledger::vsr::superblock::Checkpoint]| {
        run.iter()
            .map(|checkpoint| ledger::vsr::superblock::Checkpoint { prepare_checksum: 0, ..*checkpoint })
            .collect::<Vec<_>>()
    };
    assert_eq!(unchained(&checkpoints[0]), unchained(&checkpoints[1]), "the same checkpoints");
    let ids = |run: &[ledger::vsr::superblock::Checkpoint]| {
        unchained(run).iter().map(|c| c.id()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&checkpoints[0]), ids(&checkpoints[1]), "and so the same checkpoint ids");
    let mut distinct = ids(&checkpoints[0]);
    distinct.dedup();
    assert_eq!(distinct.len(), checkpoints[0].len(), "each checkpoint has its own id");
}

/// The four superblock copies' sectors, as on disk.
fn superblock_copies(storage: &mut SimStorage) -> Vec<ledger::storage::AlignedBuffer> {
    use ledger::storage::layout::SUPERBLOCK_COPY_SIZE;
    (0..4)
        .map(|copy| {
            let mut buffer = ledger::storage::AlignedBuffer::new(SUPERBLOCK_COPY_SIZE as usize);
            storage.read(Layout::superblock_offset(copy), &mut buffer).expect("read a copy");
            buffer
        })
        .collect()
}

/// Puts back `saved` copies `copies` durably: what an update torn after the others leaves.
fn restore_superblock_copies(
    storage: &mut SimStorage,
    saved: &[ledger::storage::AlignedBuffer],
    copies: std::ops::Range<u64>,
) {
    for copy in copies {
        let data = &saved[copy as usize][..];
        storage
            .write(&[ledger::storage::Write { offset: Layout::superblock_offset(copy), data }])
            .expect("write");
    }
    storage.sync().expect("sync");
}

#[test]
fn superblock_copies_left_by_a_torn_update_are_rewritten_before_the_next_checkpoint() {
    // Found by the simulator (seed 66 of its first version): an update of checkpoint B torn
    // after two copies leaves [B, B, A, A]; B is chosen, and the next checkpoint C may reuse
    // A's blocks, which B freed. If C's update is torn after one copy, [C, B, A, A] leaves A
    // as the only sequence with two copies: a checkpoint whose blocks were overwritten. Open
    // must rewrite every copy with the chosen superblock first, so only [C, B, B, B] can occur.
    let options = options_with_slots(32);
    let jobs: Vec<Job> = workload(5).into_iter().flatten().collect();
    let mut number = 0;
    let requests: Vec<Request<'_>> = jobs
        .iter()
        .map(|job| {
            let request = job.request(number);
            number += u32::from(job.operation != Operation::Pulse);
            request
        })
        .collect();
    let mut ops = Vec::new();
    let mut done = 0;
    // Submits one request at a time until a new checkpoint is durable; returns its op.
    let mut until_checkpoint = |ledger: &mut ReplicaState<SimStorage>| {
        let start = ledger.data_file().superblock().checkpoint.op;
        while ledger.data_file().superblock().checkpoint.op == start {
            let request = requests[done];
            ledger
                .submit(&[request], 0, |committed, _| {
                    let body = request.body.to_vec();
                    ops.push(Op { operation: request.operation, timestamp: committed.timestamp, body });
                })
                .expect("submit");
            done += 1;
        }
        ledger.data_file().superblock().checkpoint.op
    };
    let open = |storage| ReplicaState::open(storage, Some(CLUSTER)).expect("open");

    let mut ledger = open(formatted_with(options));
    until_checkpoint(&mut ledger);
    let mut storage = ledger.into_storage();
    let copies_a = superblock_copies(&mut storage);
    let mut ledger = open(storage);
    let op_b = until_checkpoint(&mut ledger);
    let mut storage = ledger.into_storage();
    restore_superblock_copies(&mut storage, &copies_a, 2..4);

    let ledger = open(storage);
    assert_eq!(ledger.data_file().superblock().checkpoint.op, op_b, "B has two copies");
    let mut storage = ledger.into_storage();
    let copies_before_c = superblock_copies(&mut storage);
    let mut ledger = open(storage);
    until_checkpoint(&mut ledger);
    let head = ledger.commit_min();
    let mut storage = ledger.into_storage();
    restore_superblock_copies(&mut storage, &copies_before_c, 1..4);
    let (_, chosen) = ledger::vsr::superblock::SuperBlock::read(&mut storage).expect("superblock");
    assert_eq!(chosen.checkpoint.op, op_b, "B, not A, is the newest superblock with two copies");

    let recovered = ReplicaState::open(storage, Some(CLUSTER)).expect("the checkpoint before C is intact");
    assert_eq!(recovered.commit_min(), head, "the WAL replays from B up to the head");
    assert_same_state(recovered.state_machine(), &replayed(&ops, head), "after two torn updates");
}

#[test]
fn overlapped_stages_carry_one_groups_headers_with_the_next_groups_prepares() {
    use ledger::storage::Write;
    use ledger::vsr::write_stage::STAGE_WRITES_MAX;
    let groups = workload(7);
    let mut ledger = ReplicaState::open(formatted_with(options_with_slots(32)), Some(CLUSTER)).expect("open");
    let layout = ledger.data_file().superblock().layout();
    let headers = layout.wal_headers_offset()..layout.wal_headers_offset() + layout.wal_headers_size();
    // Carries out the next stage as the server does (from copies of its writes, then a sync);
    // returns how many prepares and header sectors it wrote.
    let run_stage = |ledger: &mut ReplicaState<SimStorage>| {
        let mut writes = [Write { offset: 0, data: &[] }; STAGE_WRITES_MAX];
        let count =
            ledger.stage_begin(Stream::Journal, &mut writes).expect("no error").expect("a stage").count;
        let header_writes = writes[..count].iter().filter(|write| headers.contains(&write.offset)).count();
        let copies = copies_of(&writes[..count]);
        let mut none = [Write { offset: 0, data: &[] }; STAGE_WRITES_MAX];
        assert!(
            ledger.stage_begin(Stream::Journal, &mut none).expect("no error").is_none(),
            "one stage at a time"
        );
        let writes: Vec<Write<'_>> =
            copies.iter().map(|(offset, data)| Write { offset: *offset, data }).collect();
        ledger.data_file_mut().storage_mut().write_and_sync(&writes).expect("stage I/O");
        ledger.stage_end(Stream::Journal);
        // A cluster of one: durable here is committed.
        ledger.commit_max_raise(ledger.op_durable());
        (count - header_writes, header_writes)
    };
    let first: Vec<Request<'_>> = groups[0].iter().zip(0..).map(|(job, n)| job.request(n)).collect();
    let numbers = first.len() as u32..;
    let second: Vec<Request<'_>> = groups[1].iter().zip(numbers).map(|(job, n)| job.request(n)).collect();
    let (a, b) = (first.len() as u64, second.len() as u64);

    ledger.prepare_requests(&first, realtime(0)).expect("prepare");
    assert_eq!(run_stage(&mut ledger), (a as usize, 0), "the first group's prepares alone");
    assert_eq!((ledger.op(), ledger.commit_max()), (a, 0), "durable prepares without headers: not yet");
    ledger.prepare_requests(&second, realtime(1)).expect("prepare");
    let (prepares, header_sectors) = run_stage(&mut ledger);
    assert_eq!(prepares, b as usize, "the second group's prepares ...");
    assert!(header_sectors >= 1, "... ride with the first group's headers");
    assert_eq!(ledger.commit_max(), a, "the first group is durable, headers and all");
    let mut replies = 0;
    ledger.commit(|_, _, _| replies += 1).expect("commit");
    assert_eq!((ledger.commit_min(), replies), (a, a), "and commits while the second is in the log");
    assert_eq!(run_stage(&mut ledger), (0, 1), "the second group's headers");
    assert_eq!(ledger.commit_max(), a + b);
    ledger.commit(|_, _, _| {}).expect("commit");
    assert_eq!(ledger.commit_min(), a + b);
    let mut none = [Write { offset: 0, data: &[] }; STAGE_WRITES_MAX];
    assert!(
        ledger.stage_begin(Stream::Journal, &mut none).expect("no error").is_none(),
        "nothing left to write"
    );
}

/// A pulse: the replica's own request, no client, no body.
fn pulse() -> Request<'static> {
    Request { operation: Operation::Pulse, body: &[], client: 0, request: 0, checksum: 0 }
}

/// A replica of a cluster of three whose log holds ops 1–3 (pulses, prepared in view 0),
/// durable with their redundant headers.
fn three_ops_durable() -> ReplicaState<SimStorage> {
    let options = FormatOptions { replica_count: 3, ..options_with_slots(16) };
    let mut state = ReplicaState::open(formatted_with(options), Some(CLUSTER)).expect("open");
    state.prepare_requests(&[pulse(), pulse(), pulse()], ledger::constants::NS_PER_S).expect("prepare");
    state.journal_sync().expect("journal");
    assert_eq!((state.op(), state.op_durable()), (3, 3));
    state
}

/// A view change truncated ops 2 and 3 (prepared in view 0) and the replica entered log view 1
/// with head 1: recovery cuts the stale ops that still chain on disk (every op after the view's
/// head must be of the log view), and leaves no durable redundant header of them behind — else,
/// once a new op 2 of view 1 is written, the old op 3's header would prove a durable op the
/// chain no longer reaches, and recovery would refuse to start.
#[test]
fn recovery_cuts_the_ops_a_view_change_truncated_and_leaves_no_proof_of_them() {
    use ledger::constants::NS_PER_S;
    use ledger::vsr::data_file::ViewState;
    let mut state = three_ops_durable();
    let head = state.header_of(1).expect("op 1");
    // Entering log view 1 with head 1 without truncating (a crash right after the superblock
    // write would leave just this on disk, had the truncation not reached it first).
    let view = ViewState { view: 1, log_view: 1, head_op: 1, head_checksum: head.checksum, commit_max: 0 };
    state.data_file_mut().view_write(view).expect("view write");
    let storage = state.into_storage();
    let mut state = ReplicaState::open(storage, Some(CLUSTER)).expect("reopen");
    assert_eq!(state.op(), 1, "ops 2 and 3 were prepared in view 0, after the view's head");
    assert!(state.recovered().stale_cut);
    // A new op 2 of view 1; op 3 of view 0 still sits in its slot, chaining to nothing.
    state.prepare_requests(&[pulse()], 5 * NS_PER_S).expect("prepare");
    state.journal_sync().expect("journal");
    let op_2 = state.header_of(2).expect("op 2");
    assert_eq!((op_2.view, op_2.parent), (1, head.checksum));
    let state =
        ReplicaState::open(state.into_storage(), Some(CLUSTER)).expect("reopen without a proof of op 3");
    assert_eq!(state.op(), 2);
    assert!(!state.recovered().stale_cut, "the chain ends at op 3's slot: op 3 does not follow op 2");
    assert_eq!(state.header_of(2).map(|header| header.checksum), Some(op_2.checksum));
}

/// A truncation in memory (a view change) reserves the dropped ops' redundant headers on disk
/// at once: a crash before the next stage leaves no durable proof of them.
#[test]
fn a_truncation_reserves_the_redundant_headers_of_the_ops_it_drops() {
    let mut state = three_ops_durable();
    state.truncate(1).expect("truncate");
    assert_eq!((state.op(), state.op_durable()), (1, 1));
    assert!(state.header_of(2).is_none() && state.header_of(3).is_none());
    let journal = state.data_file().journal();
    for op in [2, 3] {
        let header = journal.header(op % journal.slot_count());
        assert!(!journal_proves(&header, op), "op {op}'s redundant header is reserved");
    }
    // Op 2's slot on disk still holds the old prepare, which chains to op 1: in log view 0
    // (nothing persisted a new one) recovery takes it back, as the log of that view.
    let state = ReplicaState::open(state.into_storage(), Some(CLUSTER)).expect("reopen");
    assert_eq!(state.op(), 3);
}

fn journal_proves(header: &Header, op: u64) -> bool {
    header.valid_checksum()
        && header.command() == Some(ledger::vsr::header::Command::Prepare)
        && header.op == op
}

/// State sync at the data-file layer: a replica of a cluster installs a peer's checkpoint (the
/// superblock first), then its blocks one by one at their addresses. Until every block is
/// there its data file opens with the checkpoint damaged (it would go on fetching); a block
/// that is not the one its reference names is refused; with every block installed and made
/// durable, it opens on the peer's checkpoint, whose state is the workload's at that op.
#[test]
fn a_checkpoint_installed_block_by_block_from_a_peer_opens_to_the_peers_state() {
    let (mut peer, ops) = full_run();
    let checkpoint = peer.data_file().superblock().checkpoint;
    assert!(checkpoint.op > 0, "the peer checkpointed");
    let syncing_options = FormatOptions { replica_count: 3, replica: 1, ..options() };
    let (mut syncing, _) = DataFile::open(formatted_with(syncing_options), Some(CLUSTER)).expect("open");
    assert_eq!(syncing.checkpoint_op(), 0);
    syncing.sync_install(&checkpoint).expect("the superblock names the peer's checkpoint");
    let (mut syncing, arrays) = DataFile::open(syncing.into_storage(), Some(CLUSTER)).expect("open");
    assert!(syncing.checkpoint_damage().is_some(), "its blocks are not here yet");
    assert!(arrays.iter().all(Vec::is_empty));
    assert_eq!(syncing.checkpoint_op(), checkpoint.op);
    let block_size = syncing.superblock().block_size as usize;
    let mut block = ledger::storage::AlignedBuffer::new(block_size);
    let grid = peer.data_file().grid();
    let references: Vec<_> =
        (0..grid.durable_block_count()).map(|index| grid.durable_block(index).expect("a block")).collect();
    assert!(references.len() >= 2, "a manifest and pages");
    for (index, reference) in references.iter().enumerate() {
        assert!(peer.data_file_mut().block_read(reference, &mut block).expect("read"), "the peer's block");
        if index == 0 {
            // Another block's bytes under this reference: refused.
            let other = references[1];
            let mut wrong = ledger::storage::AlignedBuffer::new(block_size);
            assert!(peer.data_file_mut().block_read(&other, &mut wrong).expect("read"));
            assert!(!syncing.block_install(reference, &wrong).expect("refused, not failed"));
        }
        assert!(syncing.block_install(reference, &block).expect("installed"));
    }
    syncing.sync_blocks_durable().expect("sync");
    let synced =
        ReplicaState::open(syncing.into_storage(), Some(CLUSTER)).expect("open on the installed checkpoint");
    assert!(synced.data_file().checkpoint_damage().is_none());
    assert_eq!(synced.commit_min(), checkpoint.op);
    assert_eq!(synced.data_file().superblock().checkpoint.id(), checkpoint.id());
    assert_same_state(synced.state_machine(), &replayed(&ops, checkpoint.op), "synced");
}
