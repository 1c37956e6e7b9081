//! A cluster replicating requests allocates nothing on its replicas' threads once it runs: the
//! peers' send buffers, the message pool, the clock's samples and the acknowledgement counts
//! are sized at start, like everything of a single replica (`tests/server_allocations.rs`).
//! Three replicas run in this process, each its own `Server` on its own thread; a counting
//! global allocator watches only those threads while a client drives transfers through the
//! primary, which replicates them to both backups.

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ledger::client::Client;
use ledger::server::{Server, ServerOptions};
use ledger::state_machine::Config;
use ledger::storage::{FileStorage, IoMode};
use ledger::types::{Account, Transfer};
use ledger::vsr::data_file::{DataFile, FormatOptions};
use ledger::vsr::replica_state::ReplicaState;

#[path = "support/counting_allocator.rs"]
mod counting_allocator;

use counting_allocator::{watch_this_thread, ALLOCATIONS, COUNTING};

const CLUSTER: u128 = 0xA110C3;
const REPLICA_COUNT: u8 = 3;

#[test]
fn replicating_requests_allocates_nothing_on_the_replicas_threads() {
    let listeners: Vec<TcpListener> =
        (0..REPLICA_COUNT).map(|_| TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
    let addresses: Vec<SocketAddr> =
        listeners.iter().map(|listener| listener.local_addr().expect("address")).collect();
    drop(listeners);
    let stop = Arc::new(AtomicBool::new(false));
    let mut paths = Vec::new();
    let mut threads = Vec::new();
    for replica in 0..REPLICA_COUNT {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("alloc-cluster-{}-{replica}.ledger", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let options = FormatOptions {
            cluster: CLUSTER,
            replica,
            replica_count: REPLICA_COUNT,
            // Room for the whole test without a checkpoint (checkpoints allocate their staging).
            journal_slot_count: 256,
            message_size_max: 1 << 20,
            clients_max: 4,
            block_size: 64 * 1024,
            config: Config { accounts_max: 1024, transfers_max: 1 << 16, expiries_max: 64, history_max: 64 },
        };
        let storage =
            FileStorage::create(&path, options.layout().file_size(), IoMode::Direct).expect("create");
        DataFile::format(storage, &options).expect("format");
        let ledger =
            ReplicaState::open(FileStorage::open(&path, IoMode::Direct).expect("open"), Some(CLUSTER))
                .expect("ledger");
        let peers = (0..REPLICA_COUNT)
            .filter(|peer| *peer != replica)
            .map(|peer| (peer, addresses[usize::from(peer)]))
            .collect();
        let server_options = ServerOptions {
            address: addresses[usize::from(replica)],
            connections_max: 8,
            idle_timeout: Duration::from_secs(60),
            pulse_interval: Duration::from_millis(10),
            peers,
            metrics_address: None,
        };
        let mut server = Server::new(ledger, server_options).expect("server");
        let stop_server = Arc::clone(&stop);
        threads.push(std::thread::spawn(move || {
            watch_this_thread();
            server.run(&stop_server).expect("serve");
            server.into_state().commit_min()
        }));
        paths.push(path);
    }

    let timeout = Duration::from_secs(30);
    let client = Client::new(CLUSTER, &addresses).expect("client");
    let accounts: Vec<Account> =
        (1..=100u128).map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect();
    client.create_accounts(&accounts, timeout).expect("accounts");
    let mut id = 0u128;
    let mut round = |client: &Client| {
        let transfers: Vec<Transfer> = (0..500u128)
            .map(|index| {
                id += 1;
                Transfer {
                    id,
                    debit_account_id: 1 + index % 100,
                    credit_account_id: 1 + (index + 1) % 100,
                    amount: 5,
                    ledger: 1,
                    code: 1,
                    ..Transfer::default()
                }
            })
            .collect();
        client.create_transfers(&transfers, timeout).expect("transfers");
        client.lookup_accounts(&[1, 2, 3], timeout).expect("lookup");
    };
    // Warm up: the view change of a fresh cluster, the connections, the register, the first
    // request of each kind, the clocks' first agreement.
    for _ in 0..3 {
        round(&client);
    }
    // A replica that joined the view late finishes adopting its log (a view change allocates).
    std::thread::sleep(Duration::from_secs(1));
    round(&client);
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..20 {
        round(&client);
    }
    // Idle: heartbeats, pings and pongs, repair checks.
    std::thread::sleep(Duration::from_millis(500));
    round(&client);
    COUNTING.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let commits: Vec<u64> =
        threads.into_iter().map(|thread| thread.join().expect("replica thread")).collect();
    assert!(
        commits.iter().filter(|commit| **commit > 40).count() >= 2,
        "a quorum committed the requests: {commits:?}"
    );
    assert!(commits.iter().all(|commit| *commit < 124), "no checkpoint started during the test: {commits:?}");
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(allocations, 0, "the replicas' threads allocated {allocations} times while replicating");
    for path in &paths {
        let _ = std::fs::remove_file(path);
    }
}
