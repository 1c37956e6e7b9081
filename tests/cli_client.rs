//! `ledger client` (`ledger::cli_client`): input validation before anything is sent, batching,
//! and the printed results, against the fake replica of `tests/fake_replica`; and the real
//! `ledger` binary, client and server, for what only the real cluster decides (linked chains, a
//! wrong cluster id).

mod fake_replica;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use clap::Parser;
use fake_replica::FakeReplica;
use ledger::cli_client::{execute, CliError, ClientArgs};
use ledger::client::{Client, ClientError};
use ledger::operation::Operation;
use ledger::types::Account;
use serde_json::{json, Value};

const CLUSTER: u128 = 0x5EED;

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    args: ClientArgs,
}

fn args(operation: Operation, address: SocketAddr) -> ClientArgs {
    ClientArgs { cluster: CLUSTER, addresses: vec![address], timeout_ms: 20_000, operation }
}

/// Runs the command on `input`; returns the result, standard output and standard error.
fn run(args: &ClientArgs, input: &str) -> (Result<(), CliError>, String, String) {
    let mut output = Vec::new();
    let mut errors = Vec::new();
    let result = execute(args, &mut input.as_bytes(), &mut output, &mut errors);
    (result, String::from_utf8(output).unwrap(), String::from_utf8(errors).unwrap())
}

fn lines(output: &str) -> Vec<Value> {
    output.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

/// A listener that records whether anyone connected.
struct Silent {
    listener: TcpListener,
}

impl Silent {
    fn new() -> Silent {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        Silent { listener }
    }

    fn address(&self) -> SocketAddr {
        self.listener.local_addr().unwrap()
    }

    fn connected(&self) -> bool {
        std::thread::sleep(Duration::from_millis(50));
        self.listener.accept().is_ok()
    }
}

#[test]
fn an_invalid_line_names_its_line_and_field_and_nothing_is_sent() {
    let silent = Silent::new();
    let input = "{\"id\": \"1\", \"debit_account_id\": \"1\", \"credit_account_id\": \"2\", \"amount\": \"10\", \"ledger\": 1, \"code\": 1}\n\
                 \n\
                 {\"id\": \"2\", \"amount\": -5}\n\
                 {\"id\": \"3\", \"amout\": 5}\n\
                 {\"id\": \n";
    let (result, output, errors) = run(&args(Operation::CreateTransfers, silent.address()), input);
    let error = result.unwrap_err();
    assert!(matches!(error, CliError::InvalidInput { count: 3 }), "{error}");
    assert_eq!(error.exit_code(), 2);
    assert!(output.is_empty());
    let errors: Vec<&str> = errors.lines().collect();
    assert_eq!(
        errors,
        vec![
            "line 3: field \"amount\": expected an unsigned integer (number or decimal string), got -5",
            "line 4: unknown field \"amout\" in a transfer; the fields are: id, debit_account_id, \
             credit_account_id, amount, pending_id, user_data_128, user_data_64, user_data_32, timeout, \
             ledger, code, flags, timestamp",
            "line 5: invalid JSON: EOF while parsing a value at line 1 column 7; write one JSON value per line",
        ]
    );
    assert!(!silent.connected(), "nothing may be sent when a line is invalid");
}

#[test]
fn invalid_lines_of_every_operation_are_reported() {
    let silent = Silent::new();
    let cases: &[(Operation, &str, &str)] = &[
        (Operation::CreateAccounts, "{\"code\": 65536}", "line 1: field \"code\": 65536 is out of range"),
        (Operation::LookupAccounts, "\"0x10\"", "line 1: "),
        (
            Operation::GetAccountTransfers,
            "{\"ledger\": 1}",
            "line 1: unknown field \"ledger\" in an account filter",
        ),
        (
            Operation::QueryTransfers,
            "{\"flags\": [\"debits\"]}",
            "line 1: field \"flags\": unknown flag \"debits\"",
        ),
        (Operation::CreateAccounts, "{}\n\u{FFFD}\n", ""),
    ];
    for (operation, input, expected) in cases {
        let (result, _, errors) = run(&args(*operation, silent.address()), input);
        if expected.is_empty() {
            // U+FFFD is valid UTF-8 but not JSON.
            assert!(errors.starts_with("line 2: invalid JSON"), "{errors}");
        } else {
            assert!(errors.starts_with(expected), "{operation:?}: {errors}");
        }
        assert_eq!(result.unwrap_err().exit_code(), 2);
    }
    let mut not_utf8 = b"{}\n".to_vec();
    not_utf8.extend_from_slice(&[0xFF, 0xFE, b'\n']);
    let mut errors = Vec::new();
    let result = execute(
        &args(Operation::CreateAccounts, silent.address()),
        &mut &not_utf8[..],
        &mut Vec::new(),
        &mut errors,
    );
    assert_eq!(result.unwrap_err().exit_code(), 2);
    assert_eq!(
        String::from_utf8(errors).unwrap(),
        "line 2: not valid UTF-8; write one JSON value per line\n"
    );
    assert!(!silent.connected());
}

#[test]
fn many_invalid_lines_are_counted_after_the_first_twenty() {
    let silent = Silent::new();
    let input = "[]\n".repeat(25);
    let (result, _, errors) = run(&args(Operation::CreateAccounts, silent.address()), &input);
    assert!(matches!(result, Err(CliError::InvalidInput { count: 25 })));
    assert_eq!(errors.lines().count(), 21);
    assert_eq!(errors.lines().last(), Some("... and 5 more invalid lines"));
}

#[test]
fn create_results_are_printed_in_input_order() {
    let replica = FakeReplica::start(CLUSTER);
    let input = "{\"id\": \"11\", \"ledger\": 1, \"code\": 1}\n\n{\"id\": 12, \"ledger\": 1, \"code\": 1}\n{\"id\": \"13\"}\n";
    let (result, output, errors) = run(&args(Operation::CreateAccounts, replica.address), input);
    result.unwrap();
    assert!(errors.is_empty(), "{errors}");
    assert_eq!(
        lines(&output),
        vec![
            json!({"index": 0, "status": "created", "timestamp": 11}),
            json!({"index": 1, "status": "created", "timestamp": 12}),
            json!({"index": 2, "status": "created", "timestamp": 13}),
        ]
    );
}

#[test]
fn a_large_input_is_split_into_batches_within_the_clusters_limit() {
    let replica = FakeReplica::with_limit(CLUSTER, 32 * 1024 - 256);
    // 600 transfers; a linked chain over events 250..=255 must not be cut.
    let input: String = (0..600)
        .map(|index| {
            let flags = if (250..255).contains(&index) { "[\"linked\"]" } else { "[]" };
            format!("{{\"id\": \"{}\", \"flags\": {flags}}}\n", index + 1)
        })
        .collect();
    let (result, output, _) = run(&args(Operation::CreateTransfers, replica.address), &input);
    result.unwrap();
    let results = lines(&output);
    assert_eq!(results.len(), 600);
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result["index"], json!(index));
        assert_eq!(result["timestamp"], json!(index + 1));
    }
    let batches: Vec<usize> =
        replica.requests().iter().map(|request| (request.bytes.len() - 256) / 128 - 1).collect();
    assert_eq!(batches, vec![250, 253, 97], "cut before the chain 250..=255, then at the limit");
    assert!(replica.invalid_requests().is_empty());
}

#[test]
fn lookups_and_queries_print_the_records() {
    let replica = FakeReplica::start(CLUSTER);
    let (result, output, _) =
        run(&args(Operation::LookupAccounts, replica.address), "\"5\"\n{\"id\": 6}\n0\n");
    result.unwrap();
    let records = lines(&output);
    assert_eq!(records.len(), 2, "the fake finds every id but 0");
    assert_eq!(records[0]["id"], json!("5"));
    assert_eq!(records[1]["ledger"], json!(1));
    let input = "{\"user_data_128\": \"9\", \"limit\": 2}\n{\"user_data_128\": \"10\", \"limit\": 1}\n";
    let (result, output, _) = run(&args(Operation::QueryTransfers, replica.address), input);
    result.unwrap();
    let records = lines(&output);
    let user_data: Vec<&Value> = records.iter().map(|record| &record["user_data_128"]).collect();
    assert_eq!(user_data, vec!["9", "9", "10"]);
    let (result, output, _) =
        run(&args(Operation::GetAccountBalances, replica.address), "{\"account_id\": \"3\", \"limit\": 1}\n");
    result.unwrap();
    assert_eq!(lines(&output)[0]["debits_posted"], json!("3"));
}

#[test]
fn empty_input_sends_nothing() {
    let silent = Silent::new();
    let (result, output, _) = run(&args(Operation::CreateAccounts, silent.address()), "\n  \n");
    result.unwrap();
    assert!(output.is_empty());
    assert!(!silent.connected());
}

#[test]
fn an_unreachable_cluster_fails_with_exit_code_1() {
    let address = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let args = ClientArgs { timeout_ms: 300, ..args(Operation::LookupTransfers, address) };
    let (result, _, _) = run(&args, "1\n");
    let error = result.unwrap_err();
    assert_eq!(error.exit_code(), 1);
    assert!(error.to_string().contains("from input line 1 on were not confirmed"), "{error}");
}

#[test]
fn arguments_parse_with_clap() {
    let cli = Cli::try_parse_from([
        "ledger",
        "--cluster",
        "340282366920938463463374607431768211455",
        "--addresses",
        "3001,127.0.0.1:3002",
        "--timeout-ms",
        "500",
        "query_accounts",
    ])
    .unwrap();
    assert_eq!(cli.args.cluster, u128::MAX);
    assert_eq!(
        cli.args.addresses,
        vec!["127.0.0.1:3001".parse().unwrap(), "127.0.0.1:3002".parse().unwrap()]
    );
    assert_eq!(cli.args.timeout_ms, 500);
    assert_eq!(cli.args.operation, Operation::QueryAccounts);
    let error =
        Cli::try_parse_from(["ledger", "--cluster", "1", "--addresses", "3001", "pulse"]).err().unwrap();
    assert!(error.to_string().contains("the operations are: create_accounts"), "{error}");
    assert!(
        Cli::try_parse_from(["ledger", "--cluster", "1", "create_accounts"]).is_err(),
        "addresses are required"
    );
}

#[test]
fn a_byte_order_mark_at_the_start_is_skipped_with_a_warning_and_elsewhere_refused() {
    let replica = FakeReplica::start(CLUSTER);
    let input =
        "\u{FEFF}{\"id\": \"11\", \"ledger\": 1, \"code\": 1}\n{\"id\": 12, \"ledger\": 1, \"code\": 1}\n";
    let (result, output, errors) = run(&args(Operation::CreateAccounts, replica.address), input);
    result.unwrap();
    assert_eq!(errors, "warning: line 1: starts with a UTF-8 byte order mark; skipped it\n");
    assert_eq!(lines(&output).len(), 2);
    // Only at the start of the input: further in, it is reported like any invalid line.
    let silent = Silent::new();
    let input = "{\"id\": 12}\n\u{FEFF}{\"id\": 13}\n";
    let (result, _, errors) = run(&args(Operation::CreateAccounts, silent.address()), input);
    assert!(matches!(result, Err(CliError::InvalidInput { count: 1 })), "{result:?}");
    assert_eq!(
        errors,
        "line 2: starts with a UTF-8 byte order mark, which is skipped only at the start of the \
         input; remove it\n"
    );
    assert!(!silent.connected());
}

/// The real `ledger start` on a fresh development data file; killed when dropped.
struct Server {
    child: Child,
    address: SocketAddr,
    path: PathBuf,
}

impl Server {
    fn start(name: &str) -> Server {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("cli-{name}-{}.ledger", std::process::id()));
        let _ = std::fs::remove_file(&path);
        let format = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["format", "--cluster", &CLUSTER.to_string(), "--development"])
            .arg(&path)
            .output()
            .expect("ledger format");
        assert!(format.status.success(), "{}", String::from_utf8_lossy(&format.stderr));
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["start", "--development", "--addresses", "127.0.0.1:0"])
            .arg(&path)
            .stderr(Stdio::piped())
            .spawn()
            .expect("ledger start");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            // Keep reading, so the server never blocks on a full pipe.
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("listening on ").nth(1) {
                    let _ = sender.send(rest.split(';').next().unwrap_or_default().to_string());
                }
            }
        });
        let address = receiver.recv_timeout(Duration::from_secs(60)).expect("the server listens");
        Server { child, address: address.parse().expect("address"), path }
    }

    /// Runs `ledger client --cluster <cluster>` on `input`.
    fn client(&self, cluster: u128, operation: &str, input: &str) -> Output {
        let mut child = Command::new(env!("CARGO_BIN_EXE_ledger"))
            .args(["client", "--cluster", &cluster.to_string(), "--addresses", &self.address.to_string()])
            .arg(operation)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("ledger client");
        let mut stdin = child.stdin.take().expect("stdin");
        let input = input.to_owned();
        // Written from another thread: the client may exit (refusing the input) before reading it all.
        let writer = std::thread::spawn(move || {
            let _ = stdin.write_all(input.as_bytes());
        });
        let output = child.wait_with_output().expect("ledger client output");
        writer.join().expect("stdin writer");
        output
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A transfer of `amount` 1 from account 1 to 2 as a JSON line.
fn transfer_line(id: u128, linked: bool) -> String {
    let flags = if linked { "[\"linked\"]" } else { "[]" };
    format!(
        "{{\"id\": \"{id}\", \"debit_account_id\": \"1\", \"credit_account_id\": \"2\", \"amount\": \"1\", \
         \"ledger\": 1, \"code\": 1, \"flags\": {flags}}}\n"
    )
}

#[test]
fn the_real_cluster_never_sees_part_of_a_chain_longer_than_a_batch() {
    let server = Server::start("chains");
    let timeout = Duration::from_secs(30);
    let client = Client::new(CLUSTER, &[server.address]).unwrap();
    let accounts: Vec<Account> =
        (1..=2).map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect();
    client.create_accounts(&accounts, timeout).unwrap();
    let event_max = client.event_max(Operation::CreateTransfers, timeout).unwrap();

    // One transfer, then a chain one event longer than a batch: refused, nothing applied.
    let chain_count = event_max as u128 + 1;
    let mut input = transfer_line(1, false);
    input.extend((2..=chain_count + 1).map(|id| transfer_line(id, id <= chain_count)));
    let output = server.client(CLUSTER, "create_transfers", &input);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(output.stdout.is_empty());
    let expected = format!("input lines 2 to {}: a linked chain of {chain_count} events", chain_count + 1);
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("no event was sent"), "{stderr}");
    let found = client.lookup_transfers(&[1, 2, chain_count, chain_count + 1], timeout).unwrap();
    assert!(found.is_empty(), "part of the input was applied: {found:?}");

    // The same chain left open at the end of the input: refused too.
    let mut input = transfer_line(1, false);
    input.extend((2..=chain_count + 1).map(|id| transfer_line(id, true)));
    let output = server.client(CLUSTER, "create_transfers", &input);
    assert_eq!(output.status.code(), Some(2), "{}", String::from_utf8_lossy(&output.stderr));

    // A chain of exactly a batch after one transfer: two batches, the chain whole in the second.
    let mut input = transfer_line(1, false);
    input.extend((2..=chain_count).map(|id| transfer_line(id, id < chain_count)));
    let output = server.client(CLUSTER, "create_transfers", &input);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let results = lines(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(results.len(), event_max + 1);
    assert!(results.iter().all(|result| result["status"] == "created"), "{:?}", &results[..2]);
    let found = client.lookup_transfers(&[1, 2, chain_count], timeout).unwrap();
    assert_eq!(found.len(), 3);

    // A short chain left open at the end of the input is sent, and the cluster reports it.
    let input = [transfer_line(chain_count + 1, false), transfer_line(chain_count + 2, true)].concat();
    let output = server.client(CLUSTER, "create_transfers", &input);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let results = lines(&String::from_utf8(output.stdout).unwrap());
    assert_eq!(results[0]["status"], "created");
    assert_eq!(results[1]["status"], "linked_event_chain_open");
}

#[test]
fn a_wrong_cluster_id_fails_fast_naming_both_clusters() {
    let server = Server::start("wrong-cluster");
    let wrong = CLUSTER + 1;
    let started = Instant::now();
    let output = server.client(wrong, "lookup_accounts", "\"1\"\n");
    let elapsed = started.elapsed();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{stderr}");
    assert!(elapsed < Duration::from_secs(5), "took {elapsed:?}: {stderr}");
    let expected =
        format!("the replica at {} belongs to cluster {CLUSTER}, not cluster {wrong}", server.address);
    assert!(stderr.contains(&expected), "{stderr}");

    // The library: a typed error at once, for the waiting call and every later one.
    let client = Client::new(wrong, &[server.address]).unwrap();
    let started = Instant::now();
    for _ in 0..2 {
        let error = client.lookup_accounts(&[1], Duration::from_secs(30)).unwrap_err();
        assert!(
            matches!(error, ClientError::WrongCluster { expected, found, .. } if expected == wrong && found == CLUSTER),
            "{error}"
        );
    }
    assert!(started.elapsed() < Duration::from_secs(5), "{:?}", started.elapsed());
    // The server is unharmed: the right cluster id still works.
    let client = Client::new(CLUSTER, &[server.address]).unwrap();
    assert!(client.lookup_accounts(&[1], Duration::from_secs(30)).unwrap().is_empty());
}
