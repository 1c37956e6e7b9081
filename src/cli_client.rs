//! `ledger client`: runs one operation with events read as JSON lines from standard input
//! (`docs/json.md`) and prints one JSON line per result.
//!
//! Every line is validated before anything is sent: a single invalid line (bad JSON, an unknown
//! field, a value out of range) is reported with its line number and field, the command exits
//! with code 2, and the cluster sees nothing. Blank lines are skipped; a UTF-8 byte order mark at
//! the start of the input is skipped with a warning. Valid input is cut into batches within the
//! cluster's limits and sent one batch at a time. For creates, a batch only ever ends where a
//! linked chain ends: a chain is applied all or nothing, which it can only be within one batch,
//! so an input with a chain longer than a batch is refused (code 2) before any event is sent. A
//! chain left open at the end of the input is sent whole, and the cluster reports it
//! (`linked_event_chain_open`). The results are printed in input order:
//!
//! * creates: `{"index":…,"status":…,"timestamp":…}` per event, `index` counting the events of
//!   the whole input from 0 (the same as the position in the batch when the input is one batch);
//! * lookups: each record found, in the order of the ids;
//! * queries (one filter per line): the records matching each filter, filter after filter.
//!
//! Exit codes: 0 success, 1 the cluster could not be reached or refused the request (the error
//! says which input lines were not confirmed), 2 invalid input.

use std::io::{self, BufRead, Write};
use std::net::{SocketAddr, ToSocketAddrs};
use std::ops::Range;
use std::process::ExitCode;
use std::time::Duration;

use serde_json::Value;

use crate::client::{Client, ClientError};
use crate::constants::MESSAGE_BODY_SIZE_MAX;
use crate::json::{self, JsonError};
use crate::operation::Operation;
use crate::types::{Account, AccountFilter, AccountFlags, QueryFilter, Transfer, TransferFlags};

/// The most invalid lines reported one by one; the rest are counted.
const INVALID_LINES_REPORTED_MAX: usize = 20;

/// The UTF-8 encoding of U+FEFF, the byte order mark some editors write at the start of a file.
const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The arguments of `ledger client`.
#[derive(clap::Args, Clone, Debug)]
pub struct ClientArgs {
    /// The cluster id the replicas were formatted with.
    #[arg(long)]
    pub cluster: u128,
    /// The replicas' addresses, comma separated: host:port, or a port alone for 127.0.0.1.
    #[arg(long, required = true, value_delimiter = ',', value_parser = parse_address)]
    pub addresses: Vec<SocketAddr>,
    /// How long to wait for the reply to each batch, in milliseconds.
    #[arg(long, default_value_t = 30_000)]
    pub timeout_ms: u64,
    /// The operation: create_accounts, create_transfers, lookup_accounts, lookup_transfers,
    /// get_account_transfers, get_account_balances, query_accounts or query_transfers.
    #[arg(value_parser = parse_operation)]
    pub operation: Operation,
}

/// Why `ledger client` failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Some input lines are invalid (each was reported): nothing was sent.
    #[error("{count} invalid input line(s); nothing was sent")]
    InvalidInput {
        /// The number of invalid lines.
        count: usize,
    },
    /// A linked chain has more events than one batch holds: no event was sent, because the chain
    /// would have been split and its parts applied independently.
    #[error(
        "input lines {line_first} to {line_last}: a linked chain of {count} events, but at most \
         {max} fit in one batch; a chain is applied all or nothing, so it cannot be split across \
         batches: end it sooner (an event without the \"linked\" flag ends a chain); no event was sent"
    )]
    ChainTooLong {
        /// The input line of the chain's first event.
        line_first: usize,
        /// The input line of the chain's last event.
        line_last: usize,
        /// The events of the chain.
        count: usize,
        /// The most events one batch holds.
        max: usize,
    },
    /// Standard input could not be read.
    #[error("reading standard input: {0}")]
    Read(#[source] io::Error),
    /// The results could not be written.
    #[error("writing the results: {0}")]
    Write(#[source] io::Error),
    /// A batch failed; the results of the batches before it were printed.
    #[error("{source}; the events from input line {line} on were not confirmed")]
    Client {
        /// The input line of the first event of the failed batch.
        line: usize,
        /// The client's error.
        source: ClientError,
    },
}

impl CliError {
    /// The process exit code for this error: 2 for invalid input, else 1.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::InvalidInput { .. } | CliError::ChainTooLong { .. } => 2,
            CliError::Read(_) | CliError::Write(_) | CliError::Client { .. } => 1,
        }
    }
}

/// Runs `ledger client` on standard input and output.
pub fn run(args: ClientArgs) -> ExitCode {
    let mut input = io::stdin().lock();
    let mut output = io::BufWriter::new(io::stdout().lock());
    let mut errors = io::stderr().lock();
    match execute(&args, &mut input, &mut output, &mut errors) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(errors, "error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}

/// Runs `ledger client` on the given streams: validates every line of `input`, reporting each
/// invalid one to `errors`, then sends the events and prints the results to `output`.
pub fn execute(
    args: &ClientArgs,
    input: &mut dyn BufRead,
    output: &mut dyn Write,
    errors: &mut dyn Write,
) -> Result<(), CliError> {
    let events = read_events(args.operation, input, errors)?;
    if events.lines.is_empty() {
        return Ok(());
    }
    // No cluster takes a batch larger than a message: such a chain is refused without connecting.
    events.check_chains(args.operation.event_max(MESSAGE_BODY_SIZE_MAX))?;
    let timeout = Duration::from_millis(args.timeout_ms);
    let client = Client::new(args.cluster, &args.addresses)
        .map_err(|source| CliError::Client { line: events.lines[0], source })?;
    let mut sink = Sink { output, operation: args.operation };
    let result = submit(&client, &events, timeout, &mut sink);
    sink.output.flush().map_err(CliError::Write)?;
    result
}

/// The validated events of the input, with the line number of each.
struct Events {
    lines: Vec<usize>,
    records: Records,
}

impl Events {
    /// Refuses the input if a linked chain has more than `event_max` events.
    fn check_chains(&self, event_max: usize) -> Result<(), CliError> {
        match chain_too_long(&self.records, self.lines.len(), event_max) {
            None => Ok(()),
            Some(chain) => Err(CliError::ChainTooLong {
                line_first: self.lines[chain.start],
                line_last: self.lines[chain.end - 1],
                count: chain.len(),
                max: event_max,
            }),
        }
    }
}

enum Records {
    Accounts(Vec<Account>),
    Transfers(Vec<Transfer>),
    Ids(Vec<u128>),
    AccountFilters(Vec<AccountFilter>),
    QueryFilters(Vec<QueryFilter>),
}

impl Records {
    fn new(operation: Operation) -> Records {
        match operation {
            Operation::CreateAccounts => Records::Accounts(Vec::new()),
            Operation::CreateTransfers => Records::Transfers(Vec::new()),
            Operation::LookupAccounts | Operation::LookupTransfers => Records::Ids(Vec::new()),
            Operation::GetAccountTransfers | Operation::GetAccountBalances => {
                Records::AccountFilters(Vec::new())
            }
            Operation::QueryAccounts | Operation::QueryTransfers => Records::QueryFilters(Vec::new()),
            Operation::Register | Operation::Pulse => unreachable!("not a client operation"),
        }
    }

    /// Parses one event and appends it.
    fn push(&mut self, value: &Value) -> Result<(), JsonError> {
        match self {
            Records::Accounts(records) => records.push(json::account_from_json(value)?),
            Records::Transfers(records) => records.push(json::transfer_from_json(value)?),
            Records::Ids(records) => records.push(json::id_from_json(value)?),
            Records::AccountFilters(records) => records.push(json::account_filter_from_json(value)?),
            Records::QueryFilters(records) => records.push(json::query_filter_from_json(value)?),
        }
        Ok(())
    }

    /// Whether event `index` continues a linked chain into the next event.
    fn linked(&self, index: usize) -> bool {
        match self {
            Records::Accounts(records) => records[index].flags.contains(AccountFlags::LINKED),
            Records::Transfers(records) => records[index].flags.contains(TransferFlags::LINKED),
            _ => false,
        }
    }
}

/// Reads and validates every line; reports each invalid one to `errors`.
fn read_events(
    operation: Operation,
    input: &mut dyn BufRead,
    errors: &mut dyn Write,
) -> Result<Events, CliError> {
    let mut events = Events { lines: Vec::new(), records: Records::new(operation) };
    let mut invalid_count = 0;
    let mut line = Vec::new();
    let mut line_number = 0;
    loop {
        line.clear();
        if input.read_until(b'\n', &mut line).map_err(CliError::Read)? == 0 {
            break;
        }
        line_number += 1;
        // Without the line ending, serde_json's positions refer to the line alone.
        let text = line.strip_suffix(b"\n").unwrap_or(&line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        let bom = text.starts_with(UTF8_BOM);
        let text = if bom && line_number == 1 {
            // Editors on some systems start every file with one: it says nothing about the events.
            let _ = writeln!(errors, "warning: line 1: starts with a UTF-8 byte order mark; skipped it");
            &text[UTF8_BOM.len()..]
        } else {
            text
        };
        let error = match std::str::from_utf8(text) {
            Err(_) => Some("not valid UTF-8; write one JSON value per line".to_owned()),
            // Within the input it is a sign of files joined together, not of one JSON value.
            Ok(_) if bom && line_number > 1 => Some(
                "starts with a UTF-8 byte order mark, which is skipped only at the start of the input; \
                 remove it"
                    .to_owned(),
            ),
            Ok(text) if text.trim().is_empty() => continue,
            Ok(text) => json::parse_line(text)
                .and_then(|value| events.records.push(&value))
                .err()
                .map(|e| e.to_string()),
        };
        match error {
            None => events.lines.push(line_number),
            Some(error) => {
                invalid_count += 1;
                if invalid_count <= INVALID_LINES_REPORTED_MAX {
                    let _ = writeln!(errors, "line {line_number}: {error}");
                }
            }
        }
    }
    if invalid_count > 0 {
        if invalid_count > INVALID_LINES_REPORTED_MAX {
            let _ =
                writeln!(errors, "... and {} more invalid lines", invalid_count - INVALID_LINES_REPORTED_MAX);
        }
        return Err(CliError::InvalidInput { count: invalid_count });
    }
    Ok(events)
}

/// Sends the events batch by batch, printing each batch's results before sending the next.
fn submit(client: &Client, events: &Events, timeout: Duration, sink: &mut Sink<'_>) -> Result<(), CliError> {
    let operation = sink.operation;
    let failed = |start: usize| move |source| CliError::Client { line: events.lines[start], source };
    if operation.is_query() {
        for index in 0..events.lines.len() {
            match &events.records {
                Records::AccountFilters(filters) if operation == Operation::GetAccountTransfers => {
                    sink.records(
                        client.get_account_transfers(filters[index], timeout).map_err(failed(index))?,
                    )?;
                }
                Records::AccountFilters(filters) => {
                    sink.records(
                        client.get_account_balances(filters[index], timeout).map_err(failed(index))?,
                    )?;
                }
                Records::QueryFilters(filters) if operation == Operation::QueryAccounts => {
                    sink.records(client.query_accounts(filters[index], timeout).map_err(failed(index))?)?;
                }
                Records::QueryFilters(filters) => {
                    sink.records(client.query_transfers(filters[index], timeout).map_err(failed(index))?)?;
                }
                _ => unreachable!("queries hold filters"),
            }
        }
        return Ok(());
    }
    let event_max = client.event_max(operation, timeout).map_err(failed(0))?;
    // This cluster's limit may be below the largest one `execute` checked against.
    events.check_chains(event_max)?;
    let mut start = 0;
    while start < events.lines.len() {
        let end = batch_end(&events.records, events.lines.len(), start, event_max);
        let range = start..end;
        match &events.records {
            Records::Accounts(records) => {
                let results = client.create_accounts(&records[range], timeout).map_err(failed(start))?;
                sink.create_results(start, &results)?;
            }
            Records::Transfers(records) => {
                let results = client.create_transfers(&records[range], timeout).map_err(failed(start))?;
                sink.create_results(start, &results)?;
            }
            Records::Ids(ids) if operation == Operation::LookupAccounts => {
                sink.records(client.lookup_accounts(&ids[range], timeout).map_err(failed(start))?)?;
            }
            Records::Ids(ids) => {
                sink.records(client.lookup_transfers(&ids[range], timeout).map_err(failed(start))?)?;
            }
            _ => unreachable!("filters are queries"),
        }
        start = end;
    }
    Ok(())
}

/// The end of the batch that starts at `start` (where a chain starts): at most `event_max`
/// events, cut after the last linked chain that ends within them, because a chain split across
/// batches would not be applied all or nothing. The last batch takes the rest of the input,
/// which may end with a chain left open (the cluster reports it).
///
/// The caller has refused chains longer than `event_max` ([`chain_too_long`]).
fn batch_end(records: &Records, count: usize, start: usize, event_max: usize) -> usize {
    assert!(start < count && event_max > 0);
    assert!(start == 0 || !records.linked(start - 1), "a batch starts where a chain starts");
    let end = count.min(start + event_max);
    if end == count {
        return end;
    }
    let last = (start..end).rev().find(|index| !records.linked(*index));
    last.expect("a linked chain longer than a batch was refused before sending") + 1
}

/// The first linked chain of more than `event_max` events, as a range of event indexes. A chain
/// is a run of events that each have the linked flag, and the event after them, which ends it;
/// a chain still open at the end of the input ends with the last event.
fn chain_too_long(records: &Records, count: usize, event_max: usize) -> Option<Range<usize>> {
    assert!(event_max > 0);
    let mut start = 0;
    for index in 0..count {
        if records.linked(index) && index + 1 < count {
            continue;
        }
        if index + 1 - start > event_max {
            return Some(start..index + 1);
        }
        start = index + 1;
    }
    None
}

/// Prints results as JSON lines.
struct Sink<'a> {
    output: &'a mut dyn Write,
    operation: Operation,
}

impl Sink<'_> {
    fn line(&mut self, value: &Value) -> Result<(), CliError> {
        serde_json::to_writer(&mut *self.output, value).map_err(|error| CliError::Write(error.into()))?;
        self.output.write_all(b"\n").map_err(CliError::Write)
    }

    fn create_results(
        &mut self,
        start: usize,
        results: &[crate::types::CreateResult],
    ) -> Result<(), CliError> {
        for (offset, result) in results.iter().enumerate() {
            let value = if self.operation == Operation::CreateAccounts {
                json::create_account_result_to_json(start + offset, result)
            } else {
                json::create_transfer_result_to_json(start + offset, result)
            };
            self.line(&value)?;
        }
        self.output.flush().map_err(CliError::Write)
    }

    fn records<T: ToJson>(&mut self, records: Vec<T>) -> Result<(), CliError> {
        for record in &records {
            self.line(&record.to_json())?;
        }
        self.output.flush().map_err(CliError::Write)
    }
}

/// The JSON form of a result record.
trait ToJson {
    fn to_json(&self) -> Value;
}

impl ToJson for Account {
    fn to_json(&self) -> Value {
        json::account_to_json(self)
    }
}

impl ToJson for Transfer {
    fn to_json(&self) -> Value {
        json::transfer_to_json(self)
    }
}

impl ToJson for crate::types::AccountBalance {
    fn to_json(&self) -> Value {
        json::account_balance_to_json(self)
    }
}

/// Parses `host:port` (resolving the host) or a bare port (on 127.0.0.1).
pub fn parse_address(text: &str) -> Result<SocketAddr, String> {
    let text = text.trim();
    if let Ok(port) = text.parse::<u16>() {
        return Ok(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    let mut addresses = text.to_socket_addrs().map_err(|error| {
        format!("{text:?} is not a replica address ({error}); write host:port, e.g. 127.0.0.1:3001")
    })?;
    addresses
        .next()
        .ok_or_else(|| format!("{text:?} resolves to no address; write host:port, e.g. 127.0.0.1:3001"))
}

/// Parses an operation name.
pub fn parse_operation(text: &str) -> Result<Operation, String> {
    Operation::from_name(text).ok_or_else(|| {
        let names: Vec<&str> = Operation::CLIENT.iter().map(|operation| operation.name()).collect();
        format!("unknown operation {text:?}; the operations are: {}", names.join(", "))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transfers(linked: &[bool]) -> Records {
        let flags = |linked: bool| if linked { TransferFlags::LINKED } else { TransferFlags::default() };
        Records::Transfers(
            linked.iter().map(|l| Transfer { flags: flags(*l), ..Transfer::default() }).collect(),
        )
    }

    /// Cuts the whole input into batches: the event count of each.
    fn batches(records: &Records, count: usize, event_max: usize) -> Vec<usize> {
        let mut sizes = Vec::new();
        let mut start = 0;
        while start < count {
            let end = batch_end(records, count, start, event_max);
            sizes.push(end - start);
            start = end;
        }
        sizes
    }

    #[test]
    fn batches_end_after_a_linked_chain_when_one_ends_within_the_limit() {
        let records = transfers(&[false, true, true, false, true, false, false]);
        assert_eq!(batch_end(&records, 7, 0, 3), 1);
        assert_eq!(batch_end(&records, 7, 1, 3), 4);
        assert_eq!(batch_end(&records, 7, 4, 3), 7);
        let ids = Records::Ids(vec![1; 10]);
        assert_eq!(batch_end(&ids, 10, 0, 4), 4);
        assert_eq!(batch_end(&ids, 10, 8, 4), 10);
    }

    #[test]
    fn a_chain_longer_than_a_batch_is_refused_and_one_exactly_at_the_limit_is_sent_whole() {
        // 8,190 linked transfers (the last one ends the chain) after one unlinked transfer.
        let mut linked = vec![false];
        linked.extend(std::iter::repeat_n(true, 8189));
        linked.push(false);
        let records = transfers(&linked);
        assert_eq!(chain_too_long(&records, linked.len(), 8189), Some(1..8191));
        // One event fewer fits: the chain goes alone into the second batch.
        assert_eq!(chain_too_long(&records, linked.len() - 1, 8189), None);
        assert_eq!(batches(&records, linked.len() - 1, 8189), vec![1, 8189]);
        // A chain still open at the end of the input counts up to its last event.
        let records = transfers(&[false, true, true, true]);
        assert_eq!(chain_too_long(&records, 4, 2), Some(1..4));
        assert_eq!(chain_too_long(&records, 4, 3), None);
        assert_eq!(batches(&records, 4, 3), vec![1, 3]);
        // Only creates have chains.
        assert_eq!(chain_too_long(&Records::Ids(vec![1; 10]), 10, 1), None);
    }

    #[test]
    fn no_batch_ever_splits_a_chain() {
        let mut prng = crate::prng::Prng::new(7);
        for _ in 0..500 {
            let count = 1 + prng.below(60) as usize;
            let linked: Vec<bool> = (0..count).map(|_| prng.chance(2, 3)).collect();
            let records = transfers(&linked);
            let event_max = 1 + prng.below(12) as usize;
            if chain_too_long(&records, count, event_max).is_some() {
                continue;
            }
            let sizes = batches(&records, count, event_max);
            assert_eq!(sizes.iter().sum::<usize>(), count);
            let mut end = 0;
            for size in &sizes[..sizes.len() - 1] {
                assert!(*size <= event_max);
                end += size;
                assert!(!linked[end - 1], "{linked:?} max {event_max}: a batch ended inside a chain");
            }
            assert!(sizes[sizes.len() - 1] <= event_max);
        }
    }

    #[test]
    fn addresses_and_operations_parse_with_helpful_errors() {
        assert_eq!(parse_address("3001"), Ok("127.0.0.1:3001".parse().unwrap()));
        assert_eq!(parse_address("10.0.0.1:3002"), Ok("10.0.0.1:3002".parse().unwrap()));
        assert!(parse_address("nonsense").unwrap_err().contains("write host:port"));
        assert_eq!(parse_operation("create_transfers"), Ok(Operation::CreateTransfers));
        let error = parse_operation("pulse").unwrap_err();
        assert!(error.contains("create_accounts, create_transfers, lookup_accounts"), "{error}");
    }
}
