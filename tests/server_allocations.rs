//! Serving requests allocates nothing on the server's thread once it runs: connections, message
//! buffers, the request queue, the WAL write list and the state machine's tables are all sized
//! at start. A counting global allocator watches only the server's thread while a client (on
//! other threads, which may allocate) drives every operation through it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ledger::client::Client;
use ledger::server::{Server, ServerOptions};
use ledger::state_machine::Config;
use ledger::storage::{FileStorage, IoMode};
use ledger::types::{Account, AccountFilter, AccountFilterFlags, QueryFilter, Transfer, TransferFlags};
use ledger::vsr::data_file::{DataFile, FormatOptions};
use ledger::vsr::replica_state::ReplicaState;

#[path = "support/counting_allocator.rs"]
mod counting_allocator;

use counting_allocator::{watch_this_thread, ALLOCATIONS, COUNTING};

const CLUSTER: u128 = 0xA110C;

#[test]
fn serving_requests_allocates_nothing_on_the_server_thread() {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("alloc-{}.ledger", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let options = FormatOptions {
        cluster: CLUSTER,
        replica: 0,
        replica_count: 1,
        // Room for the whole test without a checkpoint (checkpoints allocate their staging).
        journal_slot_count: 256,
        message_size_max: 1 << 20,
        clients_max: 4,
        block_size: 64 * 1024,
        config: Config {
            accounts_max: 1024,
            transfers_max: 1 << 16,
            expiries_max: 4096,
            history_max: 1 << 16,
        },
    };
    let storage = FileStorage::create(&path, options.layout().file_size(), IoMode::Direct).expect("create");
    DataFile::format(storage, &options).expect("format");
    let ledger = ReplicaState::open(FileStorage::open(&path, IoMode::Direct).expect("open"), Some(CLUSTER))
        .expect("ledger");
    let server_options = ServerOptions {
        address: "127.0.0.1:0".parse().expect("address"),
        connections_max: 8,
        idle_timeout: Duration::from_secs(60),
        pulse_interval: Duration::from_millis(10),
        peers: Vec::new(),
        metrics_address: None,
    };
    let mut server = Server::new(ledger, server_options).expect("server");
    let address = server.local_address().expect("address");
    let stop = Arc::new(AtomicBool::new(false));
    let stop_server = Arc::clone(&stop);
    let thread = std::thread::spawn(move || {
        watch_this_thread();
        server.run(&stop_server).expect("serve");
        server.into_state().commit_min()
    });

    let timeout = Duration::from_secs(30);
    let client = Client::new(CLUSTER, &[address]).expect("client");
    let accounts: Vec<Account> = (1..=100u128)
        .map(|id| Account { id, ledger: 1, code: 1, flags: Default::default(), ..Account::default() })
        .collect();
    client.create_accounts(&accounts, timeout).expect("accounts");
    let mut id = 0u128;
    let mut round = |client: &Client| {
        let transfers: Vec<Transfer> = (0..500u128)
            .map(|index| {
                id += 1;
                let flags = if index % 5 == 0 { TransferFlags::PENDING } else { TransferFlags::default() };
                Transfer {
                    id,
                    debit_account_id: 1 + index % 100,
                    credit_account_id: 1 + (index + 1) % 100,
                    amount: 5,
                    timeout: if index % 5 == 0 { 1 } else { 0 },
                    ledger: 1,
                    code: 1,
                    flags,
                    ..Transfer::default()
                }
            })
            .collect();
        client.create_transfers(&transfers, timeout).expect("transfers");
        client.lookup_accounts(&[1, 2, 3], timeout).expect("lookup");
        client.lookup_transfers(&[id, id - 1], timeout).expect("lookup");
        let filter = AccountFilter {
            account_id: 1,
            limit: 100,
            flags: AccountFilterFlags::DEBITS.with(AccountFilterFlags::CREDITS),
            ..AccountFilter::default()
        };
        client.get_account_transfers(filter, timeout).expect("query");
        client
            .query_transfers(QueryFilter { ledger: 1, limit: 100, ..QueryFilter::default() }, timeout)
            .expect("query");
    };
    // Warm up: the first connection, the register, the first request of each kind.
    round(&client);
    COUNTING.store(true, Ordering::Relaxed);
    for _ in 0..10 {
        round(&client);
    }
    // Pending transfers with one-second timeouts expire: pulses run through the same path.
    std::thread::sleep(Duration::from_millis(1200));
    round(&client);
    COUNTING.store(false, Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    let op_head = thread.join().expect("server thread");
    assert!(op_head > 50, "the server committed the requests ({op_head} ops)");
    assert!(op_head < 124, "no checkpoint started during the test (they start every 124 ops here)");
    let allocations = ALLOCATIONS.load(Ordering::Relaxed);
    assert_eq!(allocations, 0, "the server thread allocated {allocations} times while serving");
    let _ = std::fs::remove_file(&path);
}
