//! A real data file on this machine's disk (O_DIRECT, io_uring): a child process appends
//! batches of transfers and reports each acknowledged one; the parent kills it with SIGKILL at a
//! random moment, recovers the file, and checks that every acknowledged transfer is present
//! exactly once and that balances agree with the stored transfers. Then the next child carries
//! on from the recovered file, and is killed in turn.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ledger::constants::MESSAGE_BODY_SIZE_MAX;
use ledger::multi_batch::encode_single;
use ledger::operation::Operation;
use ledger::prng::Prng;
use ledger::state_machine::{Config, StateMachine};
use ledger::storage::{FileStorage, IoMode};
use ledger::types::{Account, Transfer};
use ledger::vsr::data_file::{DataFile, FormatOptions};
use ledger::vsr::replica_state::{ReplicaState, Request};

const CLUSTER: u128 = 0x5161;
const ACCOUNTS: u128 = 50;
const BATCH: u128 = 200;

fn options() -> FormatOptions {
    FormatOptions {
        cluster: CLUSTER,
        replica: 0,
        replica_count: 1,
        journal_slot_count: 16,
        message_size_max: 64 * 1024,
        clients_max: 1,
        block_size: 16 * 1024,
        config: Config { accounts_max: 64, transfers_max: 1 << 20, expiries_max: 64, history_max: 64 },
    }
}

fn data_file_path(name: &str) -> PathBuf {
    let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    directory.join(format!("{name}-{}.ledger", std::process::id()))
}

fn realtime() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|duration| duration.as_nanos() as u64).unwrap_or(1)
}

fn body<T: bytemuck::Pod>(events: &[T]) -> (Vec<u128>, usize) {
    let mut body = vec![0u128; MESSAGE_BODY_SIZE_MAX / 16];
    let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut body);
    bytes[..std::mem::size_of_val(events)].copy_from_slice(bytemuck::cast_slice(events));
    let size = encode_single(bytes, core::mem::size_of::<T>(), events.len());
    (body, size)
}

/// The transfers of batch `index` (ids `index·BATCH + 1 ..= (index+1)·BATCH`).
fn batch(index: u128) -> Vec<Transfer> {
    let mut prng = Prng::new(index as u64);
    (1..=BATCH)
        .map(|offset| {
            let debit = 1 + u128::from(prng.below(ACCOUNTS as u64));
            let credit = 1 + (debit + u128::from(prng.below(ACCOUNTS as u64 - 1))) % ACCOUNTS;
            Transfer {
                id: index * BATCH + offset,
                debit_account_id: debit,
                credit_account_id: credit,
                amount: 1 + u128::from(prng.below(1000)),
                ledger: 1,
                code: 1,
                ..Transfer::default()
            }
        })
        .collect()
}

/// The child: opens the data file and appends batches forever, printing `ack <last id>` after
/// each batch is durable. Run only when the parent test spawns it.
#[test]
#[ignore = "run by kill_during_appends_loses_no_acknowledged_transfer in a child process"]
fn child_appends_batches_until_killed() {
    let Ok(path) = std::env::var("LEDGER_KILL_CHILD_PATH") else { return };
    let storage = FileStorage::open(&path, IoMode::Direct).expect("open the data file");
    let mut ledger = ReplicaState::open(storage, Some(CLUSTER)).expect("recover");
    if ledger.state_machine().accounts().is_empty() {
        let accounts: Vec<Account> =
            (1..=ACCOUNTS).map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect();
        let (bytes, size) = body(&accounts);
        let bytes: &[u8] = bytemuck::cast_slice(&bytes);
        let request = Request {
            operation: Operation::CreateAccounts,
            body: &bytes[..size],
            client: 0,
            request: 0,
            checksum: 0,
        };
        ledger.submit(&[request], realtime(), |_, _| {}).expect("create accounts");
    }
    let mut next =
        ledger.state_machine().transfers().iter().map(|transfer| transfer.id).max().unwrap_or(0) / BATCH;
    loop {
        // Two batches per WAL write, to exercise group commit.
        let batches = [batch(next), batch(next + 1)];
        let bodies: Vec<(Vec<u128>, usize)> = batches.iter().map(|transfers| body(transfers)).collect();
        let requests: Vec<Request<'_>> = bodies
            .iter()
            .map(|(bytes, size)| {
                let bytes: &[u8] = bytemuck::cast_slice(bytes);
                Request {
                    operation: Operation::CreateTransfers,
                    body: &bytes[..*size],
                    client: 0,
                    request: 0,
                    checksum: 0,
                }
            })
            .collect();
        ledger
            .submit(&requests, realtime(), |committed, _| assert!(committed.result.is_ok(), "{committed:?}"))
            .expect("append");
        next += 2;
        // Stay within the transfer capacity: idle until killed.
        if next * BATCH > 800_000 {
            std::thread::sleep(Duration::from_secs(3600));
        }
        println!("ack {}", next * BATCH);
    }
}

/// Checks the recovered state: transfers are exactly batches `0..k` for some `k` covering every
/// acknowledged id, and every account's balances are the sums of its stored transfers.
fn verify(state: &StateMachine, acknowledged: u128) -> u128 {
    let transfers = state.transfers();
    let count = transfers.len() as u128;
    assert!(count >= acknowledged, "acknowledged transfer {acknowledged} lost: only {count} recovered");
    assert_eq!(count % BATCH, 0, "a batch was applied partially");
    for (index, transfer) in transfers.iter().enumerate() {
        let expected = batch(index as u128 / BATCH)[index % BATCH as usize];
        assert_eq!(transfer.id, expected.id, "transfer {index} out of place (applied twice or lost)");
        assert_eq!(transfer.amount, expected.amount);
    }
    let mut debits = vec![0u128; ACCOUNTS as usize + 1];
    let mut credits = vec![0u128; ACCOUNTS as usize + 1];
    for transfer in transfers {
        debits[transfer.debit_account_id as usize] += transfer.amount;
        credits[transfer.credit_account_id as usize] += transfer.amount;
    }
    for account in state.accounts() {
        assert_eq!(account.debits_posted, debits[account.id as usize]);
        assert_eq!(account.credits_posted, credits[account.id as usize]);
    }
    count
}

#[test]
fn kill_during_appends_loses_no_acknowledged_transfer() {
    let path = data_file_path("kill");
    let _ = std::fs::remove_file(&path);
    let storage = FileStorage::create(&path, options().layout().file_size(), IoMode::Direct).expect("create");
    DataFile::format(storage, &options()).expect("format");
    let mut prng = Prng::new(realtime());
    let mut recovered_total = 0;
    for round in 0..4 {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                "child_appends_batches_until_killed",
                "--ignored",
                "--nocapture",
                "--test-threads=1",
            ])
            .env("LEDGER_KILL_CHILD_PATH", &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the child");
        let stdout = child.stdout.take().expect("child stdout");
        let kill_after = Duration::from_millis(prng.range_inclusive(100, 500));
        // Read acknowledgements on a thread: a line may arrive at any moment until the kill.
        let (sender, receiver) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(id) = line.strip_prefix("ack ").and_then(|id| id.parse::<u128>().ok()) {
                    let _ = sender.send(id);
                }
            }
        });
        let start = Instant::now();
        while start.elapsed() < kill_after {
            std::thread::sleep(Duration::from_millis(5));
        }
        // SAFETY: `kill` with a child's pid has no memory effects.
        let killed = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGKILL) };
        assert_eq!(killed, 0, "SIGKILL the child");
        let status = child.wait().expect("reap the child");
        reader.join().expect("reader thread");
        let acknowledged = receiver.try_iter().max().unwrap_or(0);
        assert!(!status.success(), "round {round}: the child was killed, not finished");

        let storage = FileStorage::open(&path, IoMode::Direct).expect("reopen");
        let ledger = ReplicaState::open(storage, Some(CLUSTER)).expect("recovery after SIGKILL");
        let count = verify(ledger.state_machine(), acknowledged);
        assert!(count >= recovered_total, "round {round}: recovered state went backwards");
        recovered_total = count;
        eprintln!("round {round}: {acknowledged} transfers acknowledged, {count} recovered");
    }
    assert!(recovered_total > 0, "the children made progress");
    let _ = std::fs::remove_file(&path);
}
