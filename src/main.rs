//! The `ledger` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use ledger::constants::BATCH_EVENTS_MAX;
use ledger::json;
use ledger::state_machine::{Config, StateMachine};
use ledger::types::{CreateResult, Transfer, TransferFlags};
use ledger::workload::{AccountDistribution, Workload};

/// ledger: a financial ledger database of accounts and double-entry transfers.
#[derive(Parser)]
#[command(version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs sample batches through the state machine in memory and prints the results as JSON
    /// lines: ten accounts, a batch of transfers (single-phase, pending, post, void, and some
    /// that fail), then the accounts' balances.
    Demo {
        /// Seed of the generated transfers.
        #[arg(long, default_value_t = 42)]
        seed: u64,
    },
    /// Prints the version.
    Version,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Demo { seed } => demo(seed),
        Command::Version => println!("ledger {}", env!("CARGO_PKG_VERSION")),
    }
    ExitCode::SUCCESS
}

fn demo(seed: u64) {
    let mut state = StateMachine::new(Config::DEVELOPMENT);
    let mut workload = Workload::new(seed, 10, 1, AccountDistribution::Uniform);
    let mut timestamp = 1_000_000_000u64;
    let mut results = vec![CreateResult::default(); BATCH_EVENTS_MAX];

    let accounts: Vec<_> = (0..10).map(|index| workload.account(index)).collect();
    timestamp += accounts.len() as u64;
    let results_accounts = &mut results[..accounts.len()];
    state
        .create_accounts(timestamp, &accounts, results_accounts)
        .expect("the demo fits the development config");
    println!("# create_accounts");
    for (index, result) in results_accounts.iter().enumerate() {
        println!("{}", json::create_account_result_to_json(index, result));
    }

    let mut transfers: Vec<Transfer> = (0..6).map(|_| workload.transfer(30)).collect();
    let pending = Transfer { flags: TransferFlags::PENDING, ..workload.transfer(0) };
    transfers.push(pending);
    transfers.push(Transfer {
        id: workload.transfer_id(),
        pending_id: pending.id,
        amount: u128::MAX,
        flags: TransferFlags::POST_PENDING_TRANSFER,
        ..Transfer::default()
    });
    transfers.push(Transfer { debit_account_id: 999, ..workload.transfer(0) });
    transfers.push(transfers[0]);
    timestamp += transfers.len() as u64;
    let results_transfers = &mut results[..transfers.len()];
    state
        .create_transfers(timestamp, &transfers, results_transfers)
        .expect("the demo fits the development config");
    println!("# create_transfers");
    for (index, result) in results_transfers.iter().enumerate() {
        println!("{}", json::create_transfer_result_to_json(index, result));
    }
    println!("# accounts");
    for account in state.accounts() {
        println!("{}", json::account_to_json(account));
    }
}
