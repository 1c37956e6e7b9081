//! The operations the state machine executes, their wire codes (spec §3.1), and the sizes of
//! their events and results.

use core::mem::size_of;

use crate::constants::{MESSAGE_BODY_SIZE_MAX, QUERY_RESULTS_MAX};
use crate::types::{Account, AccountBalance, AccountFilter, CreateResult, QueryFilter, Transfer};

/// A state-machine operation. Codes below 128 belong to the consensus layer; `pulse` is the one
/// of those the state machine executes (the primary injects it to expire pending transfers).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Operation {
    /// Registers a client session (consensus layer; changes no ledger state).
    Register = 2,
    /// Expires pending transfers whose timeout has passed (internal; clients never send it).
    /// Its body is empty.
    Pulse = 4,
    /// Looks accounts up by id.
    LookupAccounts = 140,
    /// Looks transfers up by id.
    LookupTransfers = 141,
    /// Lists the transfers of one account.
    GetAccountTransfers = 142,
    /// Lists the historical balances of one account.
    GetAccountBalances = 143,
    /// Lists accounts matching a filter.
    QueryAccounts = 144,
    /// Lists transfers matching a filter.
    QueryTransfers = 145,
    /// Creates accounts.
    CreateAccounts = 146,
    /// Creates transfers.
    CreateTransfers = 147,
}

impl Operation {
    /// Every operation a client may send.
    pub const CLIENT: [Operation; 8] = [
        Operation::CreateAccounts,
        Operation::CreateTransfers,
        Operation::LookupAccounts,
        Operation::LookupTransfers,
        Operation::GetAccountTransfers,
        Operation::GetAccountBalances,
        Operation::QueryAccounts,
        Operation::QueryTransfers,
    ];

    /// The operation with this wire code, if the state machine knows it.
    pub const fn from_u8(code: u8) -> Option<Operation> {
        Some(match code {
            2 => Operation::Register,
            4 => Operation::Pulse,
            140 => Operation::LookupAccounts,
            141 => Operation::LookupTransfers,
            142 => Operation::GetAccountTransfers,
            143 => Operation::GetAccountBalances,
            144 => Operation::QueryAccounts,
            145 => Operation::QueryTransfers,
            146 => Operation::CreateAccounts,
            147 => Operation::CreateTransfers,
            _ => return None,
        })
    }

    /// The name used by the CLI and the logs.
    pub const fn name(self) -> &'static str {
        match self {
            Operation::Register => "register",
            Operation::Pulse => "pulse",
            Operation::LookupAccounts => "lookup_accounts",
            Operation::LookupTransfers => "lookup_transfers",
            Operation::GetAccountTransfers => "get_account_transfers",
            Operation::GetAccountBalances => "get_account_balances",
            Operation::QueryAccounts => "query_accounts",
            Operation::QueryTransfers => "query_transfers",
            Operation::CreateAccounts => "create_accounts",
            Operation::CreateTransfers => "create_transfers",
        }
    }

    /// The operation with this name, if there is one a client may send.
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::CLIENT.into_iter().find(|operation| operation.name() == name)
    }

    /// The size of one event of this operation.
    pub const fn event_size(self) -> usize {
        match self {
            Operation::Register | Operation::Pulse => 0,
            Operation::CreateAccounts => size_of::<Account>(),
            Operation::CreateTransfers => size_of::<Transfer>(),
            Operation::LookupAccounts | Operation::LookupTransfers => size_of::<u128>(),
            Operation::GetAccountTransfers | Operation::GetAccountBalances => size_of::<AccountFilter>(),
            Operation::QueryAccounts | Operation::QueryTransfers => size_of::<QueryFilter>(),
        }
    }

    /// The size of one result of this operation.
    pub const fn result_size(self) -> usize {
        match self {
            Operation::Register | Operation::Pulse => 0,
            Operation::CreateAccounts | Operation::CreateTransfers => size_of::<CreateResult>(),
            Operation::LookupAccounts | Operation::QueryAccounts => size_of::<Account>(),
            Operation::LookupTransfers | Operation::GetAccountTransfers | Operation::QueryTransfers => {
                size_of::<Transfer>()
            }
            Operation::GetAccountBalances => size_of::<AccountBalance>(),
        }
    }

    /// True for the operations whose batches hold exactly one filter.
    pub const fn is_query(self) -> bool {
        matches!(
            self,
            Operation::GetAccountTransfers
                | Operation::GetAccountBalances
                | Operation::QueryAccounts
                | Operation::QueryTransfers
        )
    }

    /// True for the operations that create objects (and so consume one timestamp per event).
    pub const fn is_create(self) -> bool {
        matches!(self, Operation::CreateAccounts | Operation::CreateTransfers)
    }

    /// The most events of one batch, given the request body limit (spec §3.3).
    pub const fn event_max(self, batch_size_limit: usize) -> usize {
        if self.is_query() {
            return 1;
        }
        let event_size = self.event_size();
        let by_request = (batch_size_limit - trailer_size(event_size, 1)) / event_size;
        let by_reply = self.result_max();
        if by_request < by_reply {
            by_request
        } else {
            by_reply
        }
    }

    /// The most results of one batch that fit in a reply (spec §3.3).
    pub const fn result_max(self) -> usize {
        let result_size = self.result_size();
        let max = (MESSAGE_BODY_SIZE_MAX - trailer_size(result_size, 1)) / result_size;
        if self.is_query() && max > QUERY_RESULTS_MAX {
            QUERY_RESULTS_MAX
        } else {
            max
        }
    }
}

/// The size of a multi-batch trailer for `batch_count` batches of `element_size`-byte elements:
/// `2·n + 2` bytes rounded up to whole elements (spec §3.2).
pub const fn trailer_size(element_size: usize, batch_count: usize) -> usize {
    (2 * batch_count + 2).div_ceil(element_size) * element_size
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::{BATCH_EVENTS_MAX, MESSAGE_SIZE_MAX};

    #[test]
    fn batch_limits_match_the_spec_table() {
        let limit = MESSAGE_BODY_SIZE_MAX;
        assert_eq!(Operation::CreateAccounts.event_max(limit), BATCH_EVENTS_MAX);
        assert_eq!(Operation::CreateTransfers.event_max(limit), 8189);
        assert_eq!(Operation::LookupAccounts.event_max(limit), 8189);
        assert_eq!(Operation::LookupTransfers.event_max(limit), 8189);
        assert_eq!(Operation::QueryTransfers.event_max(limit), 1);
        assert_eq!(Operation::QueryTransfers.result_max(), 8189);
        // The 32 KiB development request limit.
        let development = 32 * 1024 - 256;
        assert_eq!(Operation::CreateTransfers.event_max(development), 253);
        assert_eq!(Operation::LookupAccounts.event_max(development), 2031);
        assert!(MESSAGE_SIZE_MAX > limit);
    }

    #[test]
    fn operation_codes_round_trip() {
        for operation in Operation::CLIENT {
            assert_eq!(Operation::from_u8(operation as u8), Some(operation));
            assert_eq!(Operation::from_name(operation.name()), Some(operation));
        }
        assert_eq!(Operation::from_u8(4), Some(Operation::Pulse));
        assert_eq!(Operation::from_u8(138), None);
        assert_eq!(Operation::from_name("pulse"), None);
    }
}
