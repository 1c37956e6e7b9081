//! Shared by the integration tests: record builders, a clock-driving harness around the real
//! state machine. (The reference model is `ledger::testing::model`.)
//!
//! Each test crate uses only part of this module.
#![allow(dead_code)]

// The reference model lives in the library (`ledger::testing::model`), shared with the simulator.

use ledger::constants::QUERY_RESULTS_MAX;
use ledger::state_machine::{Config, ExecuteError, StateMachine};
use ledger::types::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, CreateAccountStatus,
    CreateResult, CreateTransferStatus, QueryFilter, Transfer, TransferFlags,
};

use ledger::testing::model::ModelConfig;

/// The ledger every builder uses unless told otherwise.
pub const LEDGER: u32 = 1;
/// The code every builder uses unless told otherwise.
pub const CODE: u16 = 10;
/// The first batch's timestamps start just above this: far enough from 0 that imported events
/// have room below the cluster clock.
pub const CLOCK_START: u64 = 1_000_000_000_000;

/// A valid account on `LEDGER` with no flags.
pub fn account(id: u128) -> Account {
    Account { id, ledger: LEDGER, code: CODE, ..Account::default() }
}

/// `account(id)` with these flags.
pub fn account_with(id: u128, flags: AccountFlags) -> Account {
    Account { flags, ..account(id) }
}

/// A valid single-phase transfer on `LEDGER`.
pub fn transfer(id: u128, debit_account_id: u128, credit_account_id: u128, amount: u128) -> Transfer {
    Transfer {
        id,
        debit_account_id,
        credit_account_id,
        amount,
        ledger: LEDGER,
        code: CODE,
        ..Transfer::default()
    }
}

/// A pending transfer with a timeout in seconds (0 = never expires).
pub fn pending(
    id: u128,
    debit_account_id: u128,
    credit_account_id: u128,
    amount: u128,
    timeout: u32,
) -> Transfer {
    Transfer {
        flags: TransferFlags::PENDING,
        timeout,
        ..transfer(id, debit_account_id, credit_account_id, amount)
    }
}

/// A post of `pending_id` that inherits every field it can.
pub fn post(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer { id, pending_id, amount, flags: TransferFlags::POST_PENDING_TRANSFER, ..Transfer::default() }
}

/// A void of `pending_id` that inherits every field it can.
pub fn void(id: u128, pending_id: u128, amount: u128) -> Transfer {
    Transfer { id, pending_id, amount, flags: TransferFlags::VOID_PENDING_TRANSFER, ..Transfer::default() }
}

/// `transfer` with these flags added.
pub fn with_flags(transfer: Transfer, flags: TransferFlags) -> Transfer {
    Transfer { flags: transfer.flags.with(flags), ..transfer }
}

/// A filter selecting every transfer (debits and credits) of one account, up to the cap.
pub fn account_filter(account_id: u128) -> AccountFilter {
    AccountFilter {
        account_id,
        limit: u32::MAX,
        flags: AccountFilterFlags::DEBITS.with(AccountFilterFlags::CREDITS),
        ..AccountFilter::default()
    }
}

/// A filter selecting every object, up to the cap.
pub fn query_filter() -> QueryFilter {
    QueryFilter { limit: u32::MAX, ..QueryFilter::default() }
}

/// The model's capacities for a state-machine configuration.
pub fn model_config(config: &Config) -> ModelConfig {
    ModelConfig {
        accounts_max: config.accounts_max,
        transfers_max: config.transfers_max,
        expiries_max: config.expiries_max,
        history_max: config.history_max,
    }
}

/// Capacities that no test in this suite reaches.
pub fn config_large() -> Config {
    Config { accounts_max: 100_000, transfers_max: 100_000, expiries_max: 100_000, history_max: 100_000 }
}

/// The name of a create_accounts status code, or the raw number if it is unknown.
pub fn account_status_name(status: u32) -> String {
    CreateAccountStatus::from_u32(status)
        .map_or_else(|| format!("unknown({status})"), |s| s.name().to_string())
}

/// The name of a create_transfers status code, or the raw number if it is unknown.
pub fn transfer_status_name(status: u32) -> String {
    CreateTransferStatus::from_u32(status)
        .map_or_else(|| format!("unknown({status})"), |s| s.name().to_string())
}

/// The real state machine with a clock driven the way the primary drives it (spec §11): a
/// create batch of N events ends at `clock + N`, a pulse takes 8190 slots, reads take none.
pub struct Ledger {
    /// The state machine under test.
    pub state_machine: StateMachine,
    /// The last timestamp handed out.
    pub clock: u64,
}

impl Ledger {
    /// A ledger with large tables, its clock at `CLOCK_START`.
    pub fn new() -> Ledger {
        Ledger::with_config(config_large())
    }

    /// A ledger with these capacities, its clock at `CLOCK_START`.
    pub fn with_config(config: Config) -> Ledger {
        Ledger { state_machine: StateMachine::new(config), clock: CLOCK_START }
    }

    /// Executes a create_accounts batch; returns the results or the batch-level error.
    pub fn try_create_accounts(&mut self, events: &[Account]) -> Result<Vec<CreateResult>, ExecuteError> {
        self.clock += events.len().max(1) as u64;
        let mut results = vec![CreateResult::default(); events.len()];
        self.state_machine.create_accounts(self.clock, events, &mut results)?;
        Ok(results)
    }

    /// Executes a create_transfers batch; returns the results or the batch-level error.
    pub fn try_create_transfers(&mut self, events: &[Transfer]) -> Result<Vec<CreateResult>, ExecuteError> {
        self.clock += events.len().max(1) as u64;
        let mut results = vec![CreateResult::default(); events.len()];
        self.state_machine.create_transfers(self.clock, events, &mut results)?;
        Ok(results)
    }

    /// Executes a create_accounts batch that must not hit a table limit; returns the statuses.
    pub fn create_accounts(&mut self, events: &[Account]) -> Vec<CreateAccountStatus> {
        let results = self.try_create_accounts(events).expect("no table is full");
        results
            .iter()
            .map(|result| CreateAccountStatus::from_u32(result.status).expect("a known status"))
            .collect()
    }

    /// Executes a create_transfers batch that must not hit a table limit; returns the statuses.
    pub fn create_transfers(&mut self, events: &[Transfer]) -> Vec<CreateTransferStatus> {
        let results = self.try_create_transfers(events).expect("no table is full");
        results
            .iter()
            .map(|result| CreateTransferStatus::from_u32(result.status).expect("a known status"))
            .collect()
    }

    /// Creates these accounts, asserting each one is created.
    pub fn create_accounts_ok(&mut self, events: &[Account]) {
        let statuses = self.create_accounts(events);
        assert!(statuses.iter().all(|s| *s == CreateAccountStatus::Created), "{statuses:?}");
    }

    /// Creates these transfers, asserting each one is created.
    pub fn create_transfers_ok(&mut self, events: &[Transfer]) {
        let statuses = self.create_transfers(events);
        assert!(statuses.iter().all(|s| *s == CreateTransferStatus::Created), "{statuses:?}");
    }

    /// Advances the clock by `delta` nanoseconds.
    pub fn advance(&mut self, delta: u64) {
        self.clock += delta;
    }

    /// Runs one pulse (8190 timestamp slots); returns how many transfers expired.
    pub fn pulse(&mut self) -> usize {
        self.clock += ledger::constants::PULSE_EXPIRIES_MAX as u64;
        self.state_machine.pulse(self.clock)
    }

    /// The account with this id.
    pub fn account(&self, id: u128) -> Option<Account> {
        let mut results = [Account::default(); 1];
        let count = self.state_machine.lookup_accounts(&[id], &mut results);
        (count == 1).then_some(results[0])
    }

    /// The stored transfer with this id.
    pub fn transfer(&self, id: u128) -> Option<Transfer> {
        let mut results = [Transfer::default(); 1];
        let count = self.state_machine.lookup_transfers(&[id], &mut results);
        (count == 1).then_some(results[0])
    }

    /// `get_account_transfers`.
    pub fn account_transfers(&self, filter: &AccountFilter) -> Vec<Transfer> {
        let mut results = vec![Transfer::default(); QUERY_RESULTS_MAX];
        let count = self.state_machine.get_account_transfers(filter, &mut results);
        results.truncate(count);
        results
    }

    /// `get_account_balances`.
    pub fn account_balances(&self, filter: &AccountFilter) -> Vec<AccountBalance> {
        let mut results = vec![AccountBalance::default(); QUERY_RESULTS_MAX];
        let count = self.state_machine.get_account_balances(filter, &mut results);
        results.truncate(count);
        results
    }

    /// `query_transfers`.
    pub fn query_transfers(&self, filter: &QueryFilter) -> Vec<Transfer> {
        let mut results = vec![Transfer::default(); QUERY_RESULTS_MAX];
        let count = self.state_machine.query_transfers(filter, &mut results);
        results.truncate(count);
        results
    }

    /// `query_accounts`.
    pub fn query_accounts(&self, filter: &QueryFilter) -> Vec<Account> {
        let mut results = vec![Account::default(); QUERY_RESULTS_MAX];
        let count = self.state_machine.query_accounts(filter, &mut results);
        results.truncate(count);
        results
    }
}

impl Default for Ledger {
    fn default() -> Self {
        Ledger::new()
    }
}
