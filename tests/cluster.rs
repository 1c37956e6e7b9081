//! A real cluster: three `ledger start` processes on loopback, each with its own data file,
//! replicating over TCP. Clients submit transfers from several threads while the primary is
//! killed with SIGKILL; the client library carries on against the new primary, the killed
//! replica restarts and catches up, and after a second failover (which needs the restarted
//! replica) every acknowledged transfer is present exactly once and debits equal credits.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger::client::Client;
use ledger::types::{Account, CreateAccountStatus, CreateTransferStatus, Transfer};

const CLUSTER: u128 = 0xC1u128;
const REPLICA_COUNT: usize = 3;
const ACCOUNTS: u128 = 10;
/// Transfers per batch, and writer threads.
const BATCH: u128 = 20;
const WRITERS: u128 = 2;
const CALL_TIMEOUT: Duration = Duration::from_secs(20);

/// One `ledger start` process and what it logged.
struct Process {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Starts replica `index` on `path` with the cluster's `addresses`; waits until it listens.
    fn start(path: &PathBuf, addresses: &str, log: Arc<Mutex<Vec<String>>>) -> Process {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["start", "--development", "--connections-max", "32", "--addresses", addresses])
            .arg(path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("ledger start");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if line.contains("listening on ") {
                    let _ = sender.send(());
                }
                lines.lock().expect("log").push(line);
            }
        });
        receiver.recv_timeout(Duration::from_secs(60)).expect("the replica listens");
        Process { child, log }
    }

    fn signal(&mut self, signal: libc::c_int) {
        // SAFETY: `kill` on our own child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        let _ = self.child.wait();
    }

    /// The newest status line says this replica is a normal primary.
    fn is_primary(&self) -> bool {
        let log = self.log.lock().expect("log");
        let status = log.iter().rev().find(|line| line.contains(" in view "));
        status.is_some_and(|line| line.contains(": primary in view "))
    }

    /// The newest status line says this replica is a normal backup.
    fn is_backup(&self) -> bool {
        let log = self.log.lock().expect("log");
        let status = log.iter().rev().find(|line| line.contains(" in view "));
        status.is_some_and(|line| line.contains(": backup (primary: replica "))
    }
}

/// Three addresses on loopback that were free a moment ago.
fn free_addresses() -> Vec<SocketAddr> {
    let listeners: Vec<TcpListener> =
        (0..REPLICA_COUNT).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    listeners.iter().map(|listener| listener.local_addr().expect("address")).collect()
}

fn format(path: &PathBuf, replica: usize) {
    let _ = std::fs::remove_file(path);
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["format", "--development", "--cluster", &CLUSTER.to_string(), "--replica-count", "3"])
        .args(["--replica", &replica.to_string()])
        .arg(path)
        .output()
        .expect("ledger format");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "not within {timeout:?}: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The transfers of batch `batch` of writer `writer`: ids unique across the test, amount 1.
fn transfers(writer: u128, batch: u128) -> Vec<Transfer> {
    (0..BATCH)
        .map(|offset| {
            let id = 1_000_000 * (writer + 1) + batch * BATCH + offset + 1;
            let debit = 1 + id % ACCOUNTS;
            Transfer {
                id,
                debit_account_id: debit,
                credit_account_id: 1 + debit % ACCOUNTS,
                amount: 1,
                ledger: 1,
                code: 1,
                ..Transfer::default()
            }
        })
        .collect()
}

/// Submits batches until `stop`, each until it is answered (a timed-out call may or may not
/// have committed: the retry of the same ids says `exists` if it did), recording every
/// acknowledged id.
fn writer(client: Arc<Client>, writer: u128, stop: Arc<AtomicBool>, acked: Arc<Mutex<Vec<u128>>>) {
    let mut batch = 0;
    while !stop.load(Ordering::Relaxed) {
        let events = transfers(writer, batch);
        let results = loop {
            match client.create_transfers(&events, CALL_TIMEOUT) {
                Ok(results) => break results,
                Err(error) => eprintln!("writer {writer}: {error}; retrying the same batch"),
            }
        };
        for (event, result) in events.iter().zip(&results) {
            let created = result.status == CreateTransferStatus::Created as u32;
            let exists = result.status == CreateTransferStatus::Exists as u32;
            assert!(created || exists, "transfer {}: status {}", event.id, result.status);
            acked.lock().expect("acked").push(event.id);
        }
        batch += 1;
        // A modest load: a replica that is down for a second must still find what it missed
        // in its peers' WALs (64 slots in a development data file; state sync is issue 13).
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn three_replicas_survive_sigkill_of_the_primary_and_a_restarted_replica_catches_up() {
    let directory = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let paths: Vec<PathBuf> = (0..REPLICA_COUNT)
        .map(|index| directory.join(format!("cluster-{}-{index}.ledger", std::process::id())))
        .collect();
    for (index, path) in paths.iter().enumerate() {
        format(path, index);
    }
    let addresses = free_addresses();
    let list = addresses.iter().map(SocketAddr::to_string).collect::<Vec<_>>().join(",");
    let logs: Vec<Arc<Mutex<Vec<String>>>> = (0..REPLICA_COUNT).map(|_| Arc::default()).collect();
    let mut processes: Vec<Option<Process>> = paths
        .iter()
        .zip(&logs)
        .map(|(path, log)| Some(Process::start(path, &list, Arc::clone(log))))
        .collect();
    let primary = |processes: &[Option<Process>]| {
        processes.iter().position(|process| process.as_ref().is_some_and(Process::is_primary))
    };
    wait_until("a primary", Duration::from_secs(30), || primary(&processes).is_some());

    let client = Arc::new(Client::new(CLUSTER, &addresses).expect("client"));
    let accounts: Vec<Account> =
        (1..=ACCOUNTS).map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect();
    let results = client.create_accounts(&accounts, CALL_TIMEOUT).expect("create accounts");
    assert!(results.iter().all(|result| result.status == CreateAccountStatus::Created as u32));

    let stop = Arc::new(AtomicBool::new(false));
    let acked: Arc<Mutex<Vec<u128>>> = Arc::default();
    let writers: Vec<_> = (0..WRITERS)
        .map(|index| {
            let (client, stop, acked) = (Arc::clone(&client), Arc::clone(&stop), Arc::clone(&acked));
            std::thread::spawn(move || writer(client, index, stop, acked))
        })
        .collect();
    let acked_count = || acked.lock().expect("acked").len();
    wait_until("transfers acknowledged", Duration::from_secs(30), || acked_count() >= 200);

    // SIGKILL the primary under load: the clients carry on against the new one.
    let killed = primary(&processes).expect("a primary");
    processes[killed].take().expect("running").signal(libc::SIGKILL);
    let before = acked_count();
    let killed_at = Instant::now();
    wait_until("transfers acknowledged by the new primary", Duration::from_secs(30), || {
        acked_count() >= before + 2 * BATCH as usize
    });
    eprintln!("first acknowledgement after the kill within {:?}", killed_at.elapsed());
    assert!(primary(&processes).is_some_and(|index| index != killed));

    // The killed replica restarts from its data file and rejoins as a backup of the new view.
    processes[killed] = Some(Process::start(&paths[killed], &list, Arc::clone(&logs[killed])));
    wait_until("the restarted replica is a backup again", Duration::from_secs(30), || {
        processes[killed].as_ref().is_some_and(Process::is_backup)
    });
    let before = acked_count();
    wait_until("more transfers", Duration::from_secs(30), || acked_count() >= before + 2 * BATCH as usize);

    // A second failover needs the restarted replica: with the new primary down, only it and
    // the third replica remain, a bare quorum.
    let second = primary(&processes).expect("a primary");
    assert_ne!(second, killed);
    processes[second].take().expect("running").signal(libc::SIGKILL);
    let before = acked_count();
    wait_until("transfers acknowledged after the second failover", Duration::from_secs(30), || {
        acked_count() >= before + 2 * BATCH as usize
    });
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().expect("writer");
    }

    // Every acknowledged transfer is there, once; every transfer moved 1: debits = credits =
    // the number of transfers.
    let acked = acked.lock().expect("acked").clone();
    let mut unique = acked.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), acked.len(), "an id acknowledged twice");
    for chunk in acked.chunks(1000) {
        let found = client.lookup_transfers(chunk, CALL_TIMEOUT).expect("lookup transfers");
        assert_eq!(found.len(), chunk.len(), "an acknowledged transfer is missing");
    }
    let accounts =
        client.lookup_accounts(&(1..=ACCOUNTS).collect::<Vec<_>>(), CALL_TIMEOUT).expect("accounts");
    let debits: u128 = accounts.iter().map(|account| account.debits_posted).sum();
    let credits: u128 = accounts.iter().map(|account| account.credits_posted).sum();
    assert_eq!((debits, credits), (acked.len() as u128, acked.len() as u128));
    eprintln!("{} transfers acknowledged and found; two failovers", acked.len());

    for process in processes.iter_mut().flatten() {
        process.signal(libc::SIGTERM);
    }
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
}
