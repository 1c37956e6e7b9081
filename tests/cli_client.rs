//! `ledger client` (`ledger::cli_client`): input validation before anything is sent, batching,
//! and the printed results, against the fake replica of `tests/fake_replica`.

mod fake_replica;

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

use clap::Parser;
use fake_replica::FakeReplica;
use ledger::cli_client::{execute, CliError, ClientArgs};
use ledger::operation::Operation;
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
