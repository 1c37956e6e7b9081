//! The real `ledger` binary serving a real data file over TCP, driven by the client library:
//! many threads at once, a SIGKILL under load and a restart, and hostile connections.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ledger::client::{Client, ClientError};
use ledger::multi_batch::encode_single;
use ledger::net::codec::{request_header, MessageBuffer};
use ledger::operation::Operation;
use ledger::types::{
    Account, AccountFilter, AccountFilterFlags, CreateAccountStatus, CreateTransferStatus, Transfer,
};
use ledger::vsr::header::{Command as MessageCommand, Header};

const CLUSTER: u128 = 0xE2E;
const TIMEOUT: Duration = Duration::from_secs(30);

struct Server {
    child: Child,
    address: SocketAddr,
    path: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
}

impl Server {
    /// Formats a fresh development data file and starts a server on it.
    fn start(name: &str, extra: &[&str]) -> Server {
        Server::spawn(formatted(name), "127.0.0.1:0", extra)
    }

    /// Starts `ledger start` on `path`, listening on `address`; waits until it listens.
    fn spawn(path: PathBuf, address: &str, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["start", "--development", "--addresses", address])
            .args(extra)
            .arg(&path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("ledger start");
        let stderr = child.stderr.take().expect("stderr");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (sender, receiver) = std::sync::mpsc::channel();
        let lines = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let address = rest.split(';').next().unwrap_or_default().to_string();
                    let _ = sender.send(address);
                }
                lines.lock().expect("log").push(line);
            }
        });
        let address = receiver.recv_timeout(Duration::from_secs(60)).expect("the server listens");
        Server { child, address: address.parse().expect("address"), path, log }
    }

    fn log_contains(&self, text: &str) -> bool {
        self.log.lock().expect("log").iter().any(|line| line.contains(text))
    }

    fn kill(&mut self) {
        // SAFETY: `kill` on our child's pid has no memory effects.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGKILL) };
        let _ = self.child.wait();
    }

    fn stop(mut self) -> std::process::ExitStatus {
        // SAFETY: as above.
        unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGTERM) };
        let status = self.child.wait().expect("wait");
        let _ = std::fs::remove_file(&self.path);
        status
    }
}

/// A fresh development data file of cluster `CLUSTER`, named after `name`.
fn formatted(name: &str) -> PathBuf {
    let path =
        PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.ledger", std::process::id()));
    let _ = std::fs::remove_file(&path);
    let format = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["format", "--cluster", &CLUSTER.to_string(), "--development"])
        .arg(&path)
        .output()
        .expect("ledger format");
    assert!(format.status.success(), "{}", String::from_utf8_lossy(&format.stderr));
    path
}

impl Drop for Server {
    /// A failed test must not leave a server running.
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            self.kill();
        }
    }
}

fn accounts(ids: std::ops::RangeInclusive<u128>) -> Vec<Account> {
    ids.map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect()
}

fn transfer(id: u128, debit: u128, credit: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id: debit,
        credit_account_id: credit,
        amount,
        ledger: 1,
        code: 1,
        ..Transfer::default()
    }
}

#[test]
fn many_threads_through_one_client_get_exactly_their_results() {
    let server = Server::start("threads", &[]);
    let client = Arc::new(Client::new(CLUSTER, &[server.address]).expect("client"));
    let threads = 8u128;
    let per_thread = 300u128;
    let handles: Vec<_> = (0..threads)
        .map(|thread| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                // Each thread owns two accounts and transfer ids: results do not depend on
                // how the calls were coalesced or ordered.
                let (a, b) = (1 + thread * 2, 2 + thread * 2);
                let results = client.create_accounts(&accounts(a..=b), TIMEOUT).expect("create accounts");
                assert!(results.iter().all(|r| r.status == CreateAccountStatus::Created as u32));
                let base = 1_000_000 * (thread + 1);
                for chunk in 0..(per_thread / 30) {
                    let batch: Vec<Transfer> = (0..30)
                        .map(|index| transfer(base + chunk * 30 + index + 1, a, b, 1 + index))
                        .collect();
                    let results = client.create_transfers(&batch, TIMEOUT).expect("create transfers");
                    assert_eq!(results.len(), 30);
                    for result in &results {
                        assert_eq!(result.status, CreateTransferStatus::Created as u32);
                    }
                }
                // An invalid transfer in the mix gets its own status.
                let bad = client.create_transfers(&[transfer(base, a, 999_999, 1)], TIMEOUT).expect("call");
                assert_eq!(bad[0].status, CreateTransferStatus::CreditAccountNotFound as u32);
                let found = client.lookup_accounts(&[a, b], TIMEOUT).expect("lookup");
                let expected: u128 = (0..per_thread).map(|index| 1 + index % 30).sum();
                assert_eq!(found[0].debits_posted, expected);
                assert_eq!(found[1].credits_posted, expected);
                let filter = AccountFilter {
                    account_id: a,
                    limit: 10,
                    flags: AccountFilterFlags::DEBITS.with(AccountFilterFlags::REVERSED),
                    ..AccountFilter::default()
                };
                let newest = client.get_account_transfers(filter, TIMEOUT).expect("query");
                assert_eq!(newest.len(), 10);
                assert_eq!(newest[0].id, base + per_thread);
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("thread");
    }
    drop(client);
    assert!(server.stop().success(), "SIGTERM stops the server cleanly");
}

#[test]
fn sigkill_under_load_then_restart_keeps_every_acknowledged_transfer_exactly_once() {
    let mut server = Server::start("sigkill", &[]);
    let client = Arc::new(Client::new(CLUSTER, &[server.address]).expect("client"));
    client.create_accounts(&accounts(1..=20), TIMEOUT).expect("accounts");
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..4u128)
        .map(|worker| {
            let (client, acknowledged, stop) =
                (Arc::clone(&client), Arc::clone(&acknowledged), Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut next = 0u128;
                // Within the development data file's 131,072 transfers.
                while !stop.load(Ordering::Relaxed) && next < 25_000 {
                    let ids: Vec<u128> =
                        (0..50).map(|index| worker * 10_000_000 + next + index + 1).collect();
                    let batch: Vec<Transfer> =
                        ids.iter().map(|id| transfer(*id, 1 + worker * 2, 2 + worker * 2, 3)).collect();
                    // Across the restart the client retries the same request: every result must
                    // be `created`, never `exists` (which would mean executed twice).
                    let results = client.create_transfers(&batch, Duration::from_secs(60)).expect("retried");
                    assert!(
                        results.iter().all(|r| r.status == CreateTransferStatus::Created as u32),
                        "{results:?}"
                    );
                    acknowledged.lock().expect("ids").extend(ids);
                    next += 50;
                    // Paced, so the load spans the kill and the restart.
                    std::thread::sleep(Duration::from_millis(5));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    server.kill();
    let before_restart = acknowledged.lock().expect("ids").len();
    let address = server.address.to_string();
    let server = Server::spawn(server.path.clone(), &address, &[]);
    std::thread::sleep(Duration::from_millis(700));
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.join().expect("worker");
    }
    let acknowledged = acknowledged.lock().expect("ids").clone();
    assert!(acknowledged.len() > before_restart, "clients carried on after the restart");
    assert!(server.log_contains("recovered"), "the restarted server recovered the data file");
    for chunk in acknowledged.chunks(8000) {
        let found = client.lookup_transfers(chunk, TIMEOUT).expect("lookup");
        assert_eq!(found.len(), chunk.len(), "every acknowledged transfer is present");
    }
    let balances = client.lookup_accounts(&(1..=8).collect::<Vec<u128>>(), TIMEOUT).expect("balances");
    let debits: u128 = balances.iter().map(|account| account.debits_posted).sum();
    let credits: u128 = balances.iter().map(|account| account.credits_posted).sum();
    assert_eq!(debits, credits);
    // Unacknowledged requests in flight at the kill may have committed too, never twice.
    assert!(debits >= 3 * acknowledged.len() as u128);
    drop(client);
    assert!(server.stop().success());
}

#[test]
fn checkpoints_the_server_writes_beside_its_journal_are_intact_and_restore_the_ledger() {
    // A development data file checkpoints every 28 ops: 300 requests cross about ten
    // checkpoints, each written in grid stages on the server's ring while it goes on serving.
    let server = Server::start("checkpoints", &[]);
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    client.create_accounts(&accounts(1..=40), TIMEOUT).expect("accounts");
    let mut ids = Vec::new();
    for batch in 0..300u128 {
        let transfers: Vec<Transfer> = (0..20)
            .map(|index| {
                let id = batch * 20 + index + 1;
                transfer(id, 1 + id % 40, 1 + (id * 7 + 1) % 40, 1 + id % 9)
            })
            .filter(|transfer| transfer.debit_account_id != transfer.credit_account_id)
            .collect();
        let results = client.create_transfers(&transfers, TIMEOUT).expect("transfers");
        assert!(results.iter().all(|r| r.status == CreateTransferStatus::Created as u32), "{results:?}");
        ids.extend(transfers.iter().map(|transfer| transfer.id));
    }
    let balances = client.lookup_accounts(&(1..=40).collect::<Vec<u128>>(), TIMEOUT).expect("balances");
    drop(client);
    let (path, mut server) = (server.path.clone(), server);
    // A clean stop: the stages in flight finish, and the file keeps the durable checkpoint.
    // SAFETY: `kill` on our child's pid has no memory effects.
    unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGTERM) };
    assert!(server.child.wait().expect("wait").success());

    let inspect =
        Command::new(env!("CARGO_BIN_EXE_ledger")).arg("inspect").arg(&path).output().expect("inspect");
    let report = String::from_utf8_lossy(&inspect.stdout);
    assert!(inspect.status.success(), "{report}");
    assert!(report.contains("verdict: ok"), "{report}");
    let op: u64 = report
        .split("checkpoint: op ")
        .nth(1)
        .and_then(|rest| rest.split(',').next())
        .and_then(|op| op.parse().ok())
        .expect("the checkpoint op");
    assert!(
        op >= 280 && op.is_multiple_of(28),
        "the durable checkpoint is a recent fixed one: op {op}\n{report}"
    );

    let server = Server::spawn(path, "127.0.0.1:0", &[]);
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    for chunk in ids.chunks(4000) {
        assert_eq!(client.lookup_transfers(chunk, TIMEOUT).expect("lookup").len(), chunk.len());
    }
    let restored = client.lookup_accounts(&(1..=40).collect::<Vec<u128>>(), TIMEOUT).expect("balances");
    assert_eq!(restored, balances, "the checkpoint and the WAL after it restore every balance");
    drop(client);
    assert!(server.stop().success());
}

/// A raw connection for hostile input.
fn connect(address: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(address).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream
}

/// True if the server closed the connection (reads end of file or a reset) without sending
/// anything first.
fn closed_by_server(mut stream: TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

/// The number of open file descriptors of process `pid`.
fn fd_count(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).expect("/proc/PID/fd").count()
}

/// Every kind of message the server rejects, each as the bytes a hostile peer sends, and
/// whether the server closes the connection (true) or evicts the client and keeps serving it.
fn rejected_messages() -> Vec<(&'static str, Vec<u8>, bool)> {
    let mut client_0 = request_header(CLUSTER, 7, 0, 0, Operation::Register);
    client_0.client = 0;
    let mut bad_body = sealed(request_header(CLUSTER, 7, 0, 0, Operation::Register), &[1; 16]);
    let last = bad_body.len() - 1;
    bad_body[last] ^= 1;
    let mut oversize = request_header(CLUSTER, 7, 0, 0, Operation::Register);
    oversize.size = 2 << 20;
    oversize.set_checksum();
    let mut unknown_command = request_header(CLUSTER, 7, 0, 0, Operation::Register);
    unknown_command.command = 200;
    unknown_command.set_checksum();
    let mut reply_command = request_header(CLUSTER, 7, 0, 0, Operation::Register);
    reply_command.command = MessageCommand::Reply as u8;
    let mut reserved = request_header(CLUSTER, 7, 0, 0, Operation::Register);
    reserved.reserved[3] = 1;
    reserved.set_checksum();
    let mut view_set = request_header(CLUSTER, 7, 0, 0, Operation::Register);
    view_set.view = 3;
    let mut unknown_operation = request_header(CLUSTER, 9, 0, 1, Operation::LookupAccounts);
    unknown_operation.operation = 200;
    vec![
        ("garbage header", vec![0xAB; 256], true),
        ("wrong cluster", sealed(request_header(CLUSTER + 1, 7, 0, 0, Operation::Register), &[]), true),
        ("bad body checksum", bad_body, true),
        ("oversize", bytemuck::bytes_of(&oversize).to_vec(), true),
        ("unknown command", bytemuck::bytes_of(&unknown_command).to_vec(), true),
        ("unexpected command", sealed(reply_command, &[]), true),
        ("reserved byte set", bytemuck::bytes_of(&reserved).to_vec(), true),
        ("client 0", sealed(client_0, &[]), true),
        ("a field that must be 0", sealed(view_set, &[]), true),
        (
            "register with a body",
            sealed(request_header(CLUSTER, 8, 0, 0, Operation::Register), &[0; 16]),
            false,
        ),
        ("request without a session", sealed(unknown_operation, &[]), false),
    ]
}

#[test]
fn rejected_messages_of_every_kind_leak_no_connection_slot_or_descriptor() {
    // Few connection slots: a single leaked slot per rejection would lock clients out at once.
    let server = Server::start("leak", &["--connections-max", "8"]);
    let pid = server.child.id();
    let baseline = fd_count(pid);
    let kinds = rejected_messages();
    for round in 0..1000 {
        let (kind, bytes, closes) = &kinds[round % kinds.len()];
        let mut stream = connect(server.address);
        stream.write_all(bytes).expect("send");
        if *closes {
            // The server closes without a word, or says why first (a wrong cluster is named).
            let mut rest = Vec::new();
            let _ = stream.read_to_end(&mut rest);
        } else {
            let mut eviction = [0u8; 256];
            stream.read_exact(&mut eviction).unwrap_or_else(|error| panic!("{kind}: eviction: {error}"));
            let header: Header = bytemuck::pod_read_unaligned(&eviction);
            assert_eq!(header.command(), Some(MessageCommand::Eviction), "{kind}");
        }
    }
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    let results = client.create_accounts(&accounts(1..=2), TIMEOUT).expect("a good client is served");
    assert!(results.iter().all(|result| result.status == CreateAccountStatus::Created as u32));
    drop(client);
    // Every rejected connection's descriptor is closed (the good client's once it hangs up).
    let deadline = Instant::now() + Duration::from_secs(10);
    while fd_count(pid) > baseline && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(fd_count(pid), baseline, "open descriptors back to the baseline");
    assert!(server.stop().success());
}

fn sealed(header: Header, body: &[u8]) -> Vec<u8> {
    let mut message = MessageBuffer::new();
    message.seal_with_body(header, body);
    message.as_bytes()[..256 + body.len()].to_vec()
}

#[test]
fn hostile_connections_are_closed_and_never_disturb_other_clients() {
    let server = Server::start("hostile", &["--idle-timeout-s", "2"]);
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    client.create_accounts(&accounts(1..=2), TIMEOUT).expect("accounts");
    client.create_transfers(&[transfer(1, 1, 2, 10)], TIMEOUT).expect("transfer");

    // Garbage header: closed.
    let mut stream = connect(server.address);
    stream.write_all(&[0xAB; 256]).expect("send");
    assert!(closed_by_server(stream), "garbage header");

    // An intact request of another cluster: a wrong_cluster eviction naming the replica's
    // cluster, then closed.
    let mut stream = connect(server.address);
    let header = request_header(CLUSTER + 1, 7, 0, 0, Operation::Register);
    stream.write_all(&sealed(header, &[])).expect("send");
    let mut eviction_bytes = [0u8; 256];
    stream.read_exact(&mut eviction_bytes).expect("wrong_cluster eviction");
    let eviction: Header = bytemuck::pod_read_unaligned(&eviction_bytes);
    assert!(eviction.valid_checksum());
    assert_eq!(eviction.command(), Some(MessageCommand::Eviction));
    assert_eq!((eviction.status, eviction.cluster, eviction.client), (9, CLUSTER, 7), "wrong_cluster");
    assert!(closed_by_server(stream), "wrong cluster");
    // The same with a corrupt body: nothing to trust, so closed without a word.
    let mut stream = connect(server.address);
    let mut bytes = sealed(request_header(CLUSTER + 1, 7, 0, 0, Operation::Register), &[1; 16]);
    bytes[256] ^= 1;
    stream.write_all(&bytes).expect("send");
    assert!(closed_by_server(stream), "wrong cluster, corrupt body");

    // A body whose checksum does not match: closed.
    let mut stream = connect(server.address);
    let mut bytes = sealed(request_header(CLUSTER, 7, 0, 0, Operation::Register), &[1; 16]);
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    stream.write_all(&bytes).expect("send");
    assert!(closed_by_server(stream), "bad body checksum");

    // A size beyond the message limit: closed.
    let mut stream = connect(server.address);
    let mut header = request_header(CLUSTER, 7, 0, 0, Operation::Register);
    header.size = 2 << 20;
    header.set_checksum();
    stream.write_all(bytemuck::bytes_of(&header)).expect("send");
    assert!(closed_by_server(stream), "oversized");

    // An unknown operation from a registered session: evicted with a message.
    let mut stream = connect(server.address);
    stream.write_all(&sealed(request_header(CLUSTER, 8, 0, 0, Operation::Register), &[])).expect("send");
    let mut reply = [0u8; 256 + 16];
    stream.read_exact(&mut reply).expect("register reply");
    let register: Header = bytemuck::pod_read_unaligned(&reply[..256]);
    assert_eq!(register.command(), Some(MessageCommand::Reply));
    let mut unknown = request_header(CLUSTER, 8, register.op, 1, Operation::LookupAccounts);
    unknown.operation = 200;
    stream.write_all(&sealed(unknown, &[])).expect("send");
    let mut eviction_bytes = [0u8; 256];
    stream.read_exact(&mut eviction_bytes).expect("eviction");
    let eviction: Header = bytemuck::pod_read_unaligned(&eviction_bytes);
    assert_eq!(eviction.command(), Some(MessageCommand::Eviction));
    assert_eq!(eviction.status, 4, "invalid_request_operation");

    // A batch over the limit: refused before anything is sent by the library, and by the
    // server (eviction) when sent raw.
    let too_many = vec![Account::default(); 8190];
    assert!(matches!(client.create_accounts(&too_many, TIMEOUT), Err(ClientError::InvalidBatch { .. })));
    let mut stream = connect(server.address);
    stream.write_all(&sealed(request_header(CLUSTER, 9, 0, 0, Operation::Register), &[])).expect("send");
    stream.read_exact(&mut reply).expect("register reply");
    let register: Header = bytemuck::pod_read_unaligned(&reply[..256]);
    let mut body = vec![0u8; 1 << 20];
    let size = encode_single(&mut body, 16, 8190);
    let over = request_header(CLUSTER, 9, register.op, 1, Operation::LookupAccounts);
    stream.write_all(&sealed(over, &body[..size])).expect("send");
    stream.read_exact(&mut eviction_bytes).expect("eviction");
    let eviction: Header = bytemuck::pod_read_unaligned(&eviction_bytes);
    assert_eq!((eviction.command(), eviction.status), (Some(MessageCommand::Eviction), 5));

    // A client that connects and never sends, and one that sends a byte a second: both closed
    // after the idle timeout, while the good client keeps working.
    let silent = connect(server.address);
    let mut slow = connect(server.address);
    let start = Instant::now();
    let mut index = 0;
    while start.elapsed() < Duration::from_secs(4) {
        if slow.write_all(&[0u8]).is_err() {
            break;
        }
        index += 1;
        let results =
            client.create_transfers(&[transfer(100 + index, 1, 2, 1)], TIMEOUT).expect("good client");
        assert_eq!(results[0].status, CreateTransferStatus::Created as u32);
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(closed_by_server(silent), "silent connection closed");
    assert!(closed_by_server(slow), "slow connection closed");
    assert!(server.log_contains("a partial message"), "the slow client was logged");

    // Committed data is intact.
    let balances = client.lookup_accounts(&[1, 2], TIMEOUT).expect("lookup");
    assert_eq!(balances[0].debits_posted, 10 + index);
    drop(client);
    assert!(server.stop().success());
}

mod support;

/// A seeded mixed workload sent through the real server, one call at a time, and through the
/// reference model: every status and every final balance must agree. (Timestamps differ — the
/// server's clock is real time — so the workload avoids timeouts and imported events, the only
/// rules that read absolute timestamps.)
#[test]
fn the_served_ledger_matches_the_reference_model() {
    use ledger::prng::Prng;
    use ledger::testing::model::Model;
    use ledger::types::{AccountFlags, TransferFlags};

    let server = Server::start("model", &[]);
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    let mut model = Model::new(support::model_config(&support::config_large()));
    let mut prng = Prng::new(11);
    let mut timestamp = 1_000_000_000u64;
    let flags =
        [AccountFlags::default(), AccountFlags::HISTORY, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS];
    let accounts: Vec<Account> =
        (1..=12u128).map(|id| Account { flags: flags[id as usize % 3], ..support::account(id) }).collect();
    timestamp += accounts.len() as u64;
    let expected = model.create_accounts(timestamp, &accounts).expect("model capacity");
    let served = client.create_accounts(&accounts, TIMEOUT).expect("served");
    let statuses =
        |results: &[ledger::types::CreateResult]| results.iter().map(|r| r.status).collect::<Vec<_>>();
    assert_eq!(statuses(&served), statuses(&expected));
    let mut id = 100u128;
    for batch_index in 0..60 {
        let mut batch = Vec::new();
        for _ in 0..prng.range_inclusive(1, 40) {
            id += 1;
            let debit = 1 + u128::from(prng.below(13)); // 13 does not exist.
            let credit = 1 + u128::from(prng.below(12));
            let amount = u128::from(prng.below(50));
            let mut transfer = support::transfer(id, debit, credit, amount);
            match prng.below(8) {
                0 => transfer.flags = TransferFlags::PENDING,
                1 => transfer = support::post(id, id - 1 - u128::from(prng.below(10)), u128::MAX),
                2 => transfer = support::void(id, id - 1 - u128::from(prng.below(10)), 0),
                3 => transfer.flags = TransferFlags::BALANCING_DEBIT,
                4 => transfer.flags = TransferFlags::LINKED,
                5 => transfer.id = id - u128::from(prng.below(30)), // Retries: exists, or burned.
                _ => {}
            }
            batch.push(transfer);
        }
        timestamp += batch.len() as u64;
        let expected = model.create_transfers(timestamp, &batch).expect("model capacity");
        let served = client.create_transfers(&batch, TIMEOUT).expect("served");
        assert_eq!(statuses(&served), statuses(&expected), "batch {batch_index}");
    }
    let ids: Vec<u128> = (1..=13).collect();
    let served = client.lookup_accounts(&ids, TIMEOUT).expect("lookup");
    let expected = model.lookup_accounts(&ids);
    assert_eq!(served.len(), expected.len());
    for (served, expected) in served.iter().zip(&expected) {
        let balances = |a: &Account| {
            (a.id, a.debits_pending, a.debits_posted, a.credits_pending, a.credits_posted, a.flags)
        };
        assert_eq!(balances(served), balances(expected));
    }
    for account in 1..=12u128 {
        let filter = AccountFilter {
            account_id: account,
            limit: 8189,
            flags: AccountFilterFlags::DEBITS.with(AccountFilterFlags::CREDITS),
            ..AccountFilter::default()
        };
        let served: Vec<u128> =
            client.get_account_transfers(filter, TIMEOUT).expect("query").iter().map(|t| t.id).collect();
        let expected: Vec<u128> = model.get_account_transfers(&filter).iter().map(|t| t.id).collect();
        assert_eq!(served, expected, "transfers of account {account}");
    }
    drop(client);
    assert!(server.stop().success());
}

#[test]
fn the_least_recently_active_session_is_evicted_when_clients_max_register() {
    let server = Server::start("evict", &[]);
    let first = Client::new(CLUSTER, &[server.address]).expect("client");
    first.create_accounts(&accounts(1..=1), TIMEOUT).expect("first client works");
    // The development data file keeps 64 sessions: 64 more clients push the first one out.
    let others: Vec<Client> = (0..64)
        .map(|index| {
            let client = Client::new(CLUSTER, &[server.address]).expect("client");
            client.lookup_accounts(&[1], TIMEOUT).unwrap_or_else(|error| panic!("client {index}: {error}"));
            client
        })
        .collect();
    match first.lookup_accounts(&[1], TIMEOUT) {
        Err(ClientError::Evicted { .. }) => {}
        other => panic!("the oldest session must be evicted, got {other:?}"),
    }
    // The evicted client registers a new session and carries on.
    assert_eq!(first.lookup_accounts(&[1], TIMEOUT).expect("new session").len(), 1);
    drop(others);
    drop(first);
    assert!(server.stop().success());
}

/// The op, slot and file offset of the newest prepare in the WAL of the data file at `path`.
fn wal_head(path: &std::path::Path) -> (u64, u64, u64) {
    use ledger::storage::{FileStorage, IoMode, Storage};
    let mut storage = FileStorage::open(path, IoMode::Buffered).expect("open the data file");
    let (_, superblock) = ledger::vsr::superblock::SuperBlock::read(&mut storage).expect("superblock");
    let layout = superblock.layout();
    let mut sector = ledger::storage::AlignedBuffer::new(4096);
    let mut head = None;
    for slot in 0..layout.journal_slot_count {
        storage.read(layout.wal_prepare_offset(slot), &mut sector).expect("read a WAL slot");
        let header: Header = bytemuck::pod_read_unaligned(&sector[..256]);
        let prepare = header.valid_checksum() && header.command() == Some(MessageCommand::Prepare);
        if prepare && head.is_none_or(|(op, _, _)| header.op > op) {
            head = Some((header.op, slot, layout.wal_prepare_offset(slot)));
        }
    }
    head.expect("a prepare in the WAL")
}

#[test]
fn an_acknowledged_head_prepare_damaged_after_sigkill_is_refused_not_cut() {
    let mut server = Server::start("head", &[]);
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    let results = client.create_accounts(&accounts(1..=3), TIMEOUT).expect("accounts");
    assert!(results.iter().all(|result| result.status == CreateAccountStatus::Created as u32));
    // The reply has arrived: the prepare and its redundant header must both be durable now.
    server.kill();
    drop(client);
    let (op, slot, offset) = wal_head(&server.path);
    let mut file = std::fs::OpenOptions::new().read(true).write(true).open(&server.path).expect("open");
    use std::io::{Seek, SeekFrom};
    let body = offset + 256 + 17; // Inside the first account of the batch.
    let mut byte = [0u8; 1];
    file.seek(SeekFrom::Start(body)).expect("seek");
    file.read_exact(&mut byte).expect("read");
    file.seek(SeekFrom::Start(body)).expect("seek");
    file.write_all(&[byte[0] ^ 0x40]).expect("damage the head prepare");
    file.sync_all().expect("sync");
    drop(file);
    let mut start = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["start", "--development", "--addresses", "127.0.0.1:0"])
        .arg(&server.path)
        .stderr(Stdio::piped())
        .spawn()
        .expect("ledger start");
    // Bounded: a build that cuts the acknowledged op as a torn write starts serving instead.
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = start.try_wait().expect("wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = start.kill();
            let _ = start.wait();
            panic!("start served a log whose acknowledged head prepare is damaged");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut stderr = String::new();
    start.stderr.take().expect("stderr").read_to_string(&mut stderr).expect("stderr");
    assert!(!status.success(), "start must refuse a damaged acknowledged prepare: {stderr}");
    let named = format!("op {op} (slot {slot}, file offset {offset})");
    assert!(stderr.contains(&named), "the error names {named}: {stderr}");
    assert!(!stderr.contains("torn write"), "{stderr}");
    let _ = std::fs::remove_file(&server.path);
}

#[test]
fn start_refuses_size_options_out_of_range_naming_the_bound() {
    for (option, value, bound) in [
        ("--connections-max", "16384", "1..=4096"),
        ("--connections-max", "0", "1..=4096"),
        ("--idle-timeout-s", "0", "at least 1"),
    ] {
        let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["start", "--development", "--addresses", "127.0.0.1:0", option, value])
            .arg(PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("no-such-data-file"))
            .output()
            .expect("ledger start");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{option} {value}: {stderr}");
        assert!(stderr.contains(&format!("{option} {value} is out of range")), "{stderr}");
        assert!(stderr.contains(bound), "{option} {value} names its bound: {stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
}

/// The CPU time (user + system, in clock ticks) process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("/proc/PID/stat");
    // The command name may hold spaces; the fields after it are space-separated.
    let fields: Vec<&str> = stat.rsplit(')').next().expect("fields").split_whitespace().collect();
    fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime")
}

/// Sets the soft limit of open files of process `pid` (keeping its hard limit); returns the
/// soft limit it had.
fn set_file_limit(pid: u32, soft: u64) -> u64 {
    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `old` is valid for writes; a null new limit only reads; the pid is our child's.
    let ok = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, std::ptr::null(), &mut old) };
    assert_eq!(ok, 0, "prlimit: {}", std::io::Error::last_os_error());
    let new = libc::rlimit { rlim_cur: soft, rlim_max: old.rlim_max };
    // SAFETY: as above; the new limit is valid for reads.
    let ok = unsafe { libc::prlimit(pid as libc::pid_t, libc::RLIMIT_NOFILE, &new, std::ptr::null_mut()) };
    assert_eq!(ok, 0, "prlimit: {}", std::io::Error::last_os_error());
    old.rlim_cur
}

#[test]
fn accept_at_the_file_descriptor_limit_rests_and_logs_once_instead_of_spinning() {
    let server = Server::start("emfile", &["--connections-max", "8"]);
    let pid = server.child.id();
    // Leave the replica no descriptor to spare: every accept now fails with EMFILE.
    let open = fd_count(pid) as u64;
    let original = set_file_limit(pid, open);
    let waiting: Vec<TcpStream> = (0..16).map(|_| connect(server.address)).collect();
    let ticks = cpu_ticks(pid);
    let started = Instant::now();
    std::thread::sleep(Duration::from_secs(3));
    let used = (cpu_ticks(pid) - ticks) as f64 / 100.0; // Clock ticks are 1/100 s on Linux.
    let elapsed = started.elapsed().as_secs_f64();
    assert!(used < 0.3 * elapsed, "the replica used {used:.2}s of CPU in {elapsed:.2}s at the fd limit");
    let lines = server.log.lock().expect("log").iter().filter(|line| line.contains("accept failed")).count();
    assert!((1..=2).contains(&lines), "{lines} accept warnings logged in 3 s");
    // Once descriptors are available again, the replica accepts and serves.
    drop(waiting);
    set_file_limit(pid, original);
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    client.create_accounts(&accounts(1..=1), TIMEOUT).expect("served after the limit is lifted");
    drop(client);
    assert!(server.stop().success());
}

#[test]
fn sighup_is_logged_and_ignored() {
    let server = Server::start("sighup", &[]);
    // SAFETY: `kill` on our child's pid has no memory effects.
    unsafe { libc::kill(server.child.id() as libc::pid_t, libc::SIGHUP) };
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    client.create_accounts(&accounts(1..=1), TIMEOUT).expect("still serving after SIGHUP");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !server.log_contains("SIGHUP received") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log_contains("SIGHUP received and ignored"));
    drop(client);
    assert!(server.stop().success(), "stops cleanly on SIGTERM afterwards");
}

#[test]
fn start_refuses_an_address_list_that_does_not_match_the_cluster_before_recovering() {
    let path = formatted("addresses");
    let output = Command::new(env!("CARGO_BIN_EXE_ledger"))
        .args(["start", "--development", "--addresses", "127.0.0.1:0,127.0.0.1:0"])
        .arg(&path)
        .output()
        .expect("ledger start");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(stderr.contains("--addresses lists 2 address(es), but the cluster has 1 replica(s)"), "{stderr}");
    assert!(!stderr.contains("recovered"), "refused before recovery: {stderr}");
    let _ = std::fs::remove_file(&path);
}

#[test]
fn pipelined_messages_are_each_answered_and_a_second_client_on_a_connection_closes_it() {
    let server = Server::start("pipelined", &[]);
    // Three retries of a committed register, written at once: each gets the stored reply (they
    // wait for the one before to be sent instead of being dropped).
    let mut stream = connect(server.address);
    let register = sealed(request_header(CLUSTER, 21, 0, 0, Operation::Register), &[]);
    stream.write_all(&register).expect("send");
    let mut first = [0u8; 256 + 16];
    stream.read_exact(&mut first).expect("register reply");
    stream.write_all(&[register.clone(), register.clone(), register.clone()].concat()).expect("send");
    for retry in 0..3 {
        let mut reply = [0u8; 256 + 16];
        stream.read_exact(&mut reply).unwrap_or_else(|error| panic!("retry {retry}: {error}"));
        assert_eq!(reply, first, "retry {retry} gets the stored reply, byte for byte");
    }
    // Two clients' requests on one connection: a connection belongs to its first client (replies
    // are routed by client id), so the second closes it, with a log line, after the first is
    // answered.
    let mut stream = connect(server.address);
    let both = [
        sealed(request_header(CLUSTER, 22, 0, 0, Operation::Register), &[]),
        sealed(request_header(CLUSTER, 23, 0, 0, Operation::Register), &[]),
    ]
    .concat();
    stream.write_all(&both).expect("send");
    let mut received = Vec::new();
    let _ = stream.read_to_end(&mut received);
    assert!(received.len() <= 256 + 16, "at most the first client's register is answered");
    let deadline = Instant::now() + Duration::from_secs(5);
    let logged = "a request of client 0x17 on client 0x16's connection";
    while !server.log_contains(logged) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(server.log_contains(logged));
    assert!(server.stop().success());
}

/// `--metrics-address`: a scrape gets the Prometheus text format with the replica's numbers; a
/// scraper that connects and never asks holds up neither the clients nor, after the scrape
/// timeout, the next scrape.
#[test]
fn metrics_are_served_in_the_prometheus_text_format_and_a_silent_scraper_blocks_nothing() {
    let server = Server::start("metrics", &["--metrics-address", "127.0.0.1:0"]);
    let address: SocketAddr = {
        let log = server.log.lock().expect("log");
        let line = log
            .iter()
            .find(|line| line.contains("metrics (Prometheus text format) on http://"))
            .expect("the log names the metrics address");
        line.split("http://")
            .nth(1)
            .and_then(|rest| rest.split('/').next())
            .expect("address")
            .parse()
            .expect("an address")
    };
    let scrape = || {
        let mut stream = TcpStream::connect(address).expect("connect to the metrics");
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: ledger\r\n\r\n").expect("ask");
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read the answer");
        text
    };
    // A scraper that connects and says nothing: the replica serves clients meanwhile.
    let silent = TcpStream::connect(address).expect("connect");
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    let accounts = [Account { id: 1, ledger: 1, code: 1, ..Account::default() }];
    client.create_accounts(&accounts, Duration::from_secs(10)).expect("served while a scraper is silent");
    // The silent scraper is cut off after the scrape timeout; the next scrape is answered.
    let started = Instant::now();
    let text = scrape();
    assert!(started.elapsed() < Duration::from_secs(10), "the silent scraper was cut off");
    drop(silent);
    let (head, body) = text.split_once("\r\n\r\n").expect("an HTTP answer");
    assert!(head.starts_with("HTTP/1.0 200 OK") && head.contains("text/plain; version=0.0.4"), "{head}");
    for line in
        ["ledger_replica_count 1", "ledger_primary 1", "ledger_status_normal 1", "ledger_peers_connected 0"]
    {
        assert!(body.lines().any(|found| found == line), "{line} in:\n{body}");
    }
    // Two ops: the register and the accounts.
    assert!(body.lines().any(|line| line == "ledger_ops_committed_total 2"), "{body}");
    assert!(body.lines().any(|line| line == "ledger_commit_min 2"), "{body}");
    // Both requests' latencies, in the histogram.
    assert!(body.lines().any(|line| line == "ledger_request_latency_seconds_count 2"), "{body}");
    assert!(
        body.lines().any(|line| line == "ledger_request_latency_seconds_bucket{le=\"+Inf\"} 2"),
        "{body}"
    );
    // Each request's prepare was written and synced by a journal stage (the timer's ticks
    // may add stages of their own; none is lost).
    for histogram in ["journal_write_latency", "journal_sync_latency"] {
        let count: u64 = body
            .lines()
            .find_map(|line| line.strip_prefix(&format!("ledger_{histogram}_seconds_count ")))
            .and_then(|count| count.parse().ok())
            .unwrap_or_else(|| panic!("ledger_{histogram}_seconds_count in:\n{body}"));
        assert!(count >= 2, "{histogram}: {count} stages in:\n{body}");
    }
    server.stop();
}

/// A replica of another cluster that keeps connecting (it retries with backoff forever) is
/// refused each time and logged at most once per interval, not once per connection.
#[test]
fn a_replica_of_another_cluster_is_refused_and_logged_once_per_interval() {
    let server = Server::start("foreign-peer", &[]);
    let mut ping = Header::new(MessageCommand::Ping, CLUSTER + 1);
    ping.replica = 1;
    ping.set_body(&[]);
    ping.set_checksum();
    for _ in 0..5 {
        let mut stream = TcpStream::connect(server.address).expect("connect");
        stream.write_all(bytemuck::bytes_of(&ping)).expect("send");
        let mut rest = Vec::new();
        // The replica closes the connection without an answer (only a client's request of
        // another cluster gets one).
        stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
        assert_eq!(stream.read_to_end(&mut rest).expect("closed"), 0);
    }
    let lines =
        |text: &str| server.log.lock().expect("log").iter().filter(|line| line.contains(text)).count();
    // The log is read from the replica's stderr on another thread: let it catch up.
    let deadline = Instant::now() + Duration::from_secs(5);
    while lines("for messages of another cluster") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(lines("for messages of another cluster"), 1, "{:?}", server.log.lock().expect("log"));
    assert_eq!(lines("warning: closing connection"), 0, "{:?}", server.log.lock().expect("log"));
    // The replica serves its own cluster's clients all along.
    let client = Client::new(CLUSTER, &[server.address]).expect("client");
    let accounts = [Account { id: 1, ledger: 1, code: 1, ..Account::default() }];
    client.create_accounts(&accounts, Duration::from_secs(10)).expect("served");
    server.stop();
}
