//! The reference ledger: the model (`testing::model`) advanced op by op with exactly what the
//! replica logged (operation, body, prepare timestamp), giving the reply every committed op must
//! have produced. The checkers compare the replica's state and every reply a client received
//! against it.

use crate::constants::MESSAGE_BODY_SIZE_MAX;
use crate::multi_batch::{MultiBatch, MultiBatchEncoder};
use crate::operation::Operation;
use crate::state_machine::Config;
use crate::testing::model::{Model, ModelConfig, ModelTable};
use crate::types::{Account, AccountFilter, CreateResult, QueryFilter, Transfer};
use crate::vsr::header::{RegisterResult, ReplyStatus};

/// What the reply to one committed op must hold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExpectedReply {
    /// The reply status.
    pub status: ReplyStatus,
    /// The reply body.
    pub body: Vec<u8>,
}

/// The model and what it needs to build replies.
pub struct Oracle {
    model: Model,
    batch_size_limit: usize,
    /// Where replies are encoded (16-byte words, as the replica's reply buffer is aligned).
    buffer: Vec<u128>,
}

impl Oracle {
    /// An empty ledger with the capacities of `config`, answering `register` with
    /// `batch_size_limit`.
    pub fn new(config: &Config, batch_size_limit: usize) -> Oracle {
        let config = ModelConfig {
            accounts_max: config.accounts_max,
            transfers_max: config.transfers_max,
            expiries_max: config.expiries_max,
            history_max: config.history_max,
        };
        Oracle { model: Model::new(config), batch_size_limit, buffer: vec![0; MESSAGE_BODY_SIZE_MAX / 16] }
    }

    /// The model, as of the last op applied.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// Applies one committed op (`body` as logged, `timestamp` the prepare's) and returns the
    /// reply it must have produced (`None` for a pulse, which has no client).
    pub fn apply(&mut self, operation: Operation, timestamp: u64, body: &[u8]) -> Option<ExpectedReply> {
        match operation {
            Operation::Pulse => {
                self.model.pulse(timestamp);
                return None;
            }
            Operation::Register => {
                let result = RegisterResult::new(self.batch_size_limit as u32);
                return Some(ExpectedReply {
                    status: ReplyStatus::Ok,
                    body: bytemuck::bytes_of(&result).to_vec(),
                });
            }
            _ => {}
        }
        // The replica prepared only bodies that `StateMachine::input_valid` accepted.
        let batches = MultiBatch::decode(body, operation.event_size()).expect("a logged body is valid");
        if operation.is_create() {
            // The model checks capacity per batch, the state machine per request: the same rule
            // only for one batch, which is all the simulated clients send for creates.
            assert_eq!(batches.batch_count(), 1, "the simulator sends creates as one batch");
        }
        let model = &mut self.model;
        let buffer: &mut [u8] = bytemuck::cast_slice_mut(&mut self.buffer);
        let mut encoder = MultiBatchEncoder::new(buffer, operation.result_size(), batches.batch_count());
        let mut table_full = None;
        batches.for_each(|_, bytes| {
            let results = match batch_results(model, operation, timestamp, bytes) {
                Ok(results) => results,
                Err(table) => {
                    table_full = Some(table);
                    Vec::new()
                }
            };
            encoder.writable()[..results.len()].copy_from_slice(&results);
            encoder.push(results.len() / operation.result_size());
        });
        let size = encoder.finish();
        let buffer: &[u8] = bytemuck::cast_slice(&self.buffer);
        Some(match table_full {
            Some(table) => ExpectedReply { status: table_status(table), body: Vec::new() },
            None => ExpectedReply { status: ReplyStatus::Ok, body: buffer[..size].to_vec() },
        })
    }
}

/// The results of one batch as bytes, or the table a create batch would overflow.
fn batch_results(
    model: &mut Model,
    operation: Operation,
    timestamp: u64,
    bytes: &[u8],
) -> Result<Vec<u8>, ModelTable> {
    Ok(match operation {
        Operation::CreateAccounts => {
            results_bytes(&model.create_accounts(timestamp, &records::<Account>(bytes))?)
        }
        Operation::CreateTransfers => {
            results_bytes(&model.create_transfers(timestamp, &records::<Transfer>(bytes))?)
        }
        Operation::LookupAccounts => records_bytes(&model.lookup_accounts(&records::<u128>(bytes))),
        Operation::LookupTransfers => records_bytes(&model.lookup_transfers(&records::<u128>(bytes))),
        Operation::GetAccountTransfers => {
            records_bytes(&model.get_account_transfers(&bytemuck::pod_read_unaligned::<AccountFilter>(bytes)))
        }
        Operation::GetAccountBalances => {
            records_bytes(&model.get_account_balances(&bytemuck::pod_read_unaligned::<AccountFilter>(bytes)))
        }
        Operation::QueryAccounts => {
            records_bytes(&model.query_accounts(&bytemuck::pod_read_unaligned::<QueryFilter>(bytes)))
        }
        Operation::QueryTransfers => {
            records_bytes(&model.query_transfers(&bytemuck::pod_read_unaligned::<QueryFilter>(bytes)))
        }
        Operation::Pulse | Operation::Register => unreachable!("{operation:?} carries no batches"),
    })
}

/// The records of one batch (the bytes need not be aligned).
fn records<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    bytes.chunks_exact(core::mem::size_of::<T>()).map(bytemuck::pod_read_unaligned).collect()
}

fn records_bytes<T: bytemuck::Pod>(records: &[T]) -> Vec<u8> {
    bytemuck::cast_slice(records).to_vec()
}

fn results_bytes(results: &[CreateResult]) -> Vec<u8> {
    records_bytes(results)
}

fn table_status(table: ModelTable) -> ReplyStatus {
    match table {
        ModelTable::Accounts => ReplyStatus::AccountsFull,
        ModelTable::Transfers => ReplyStatus::TransfersFull,
        ModelTable::Expiries => ReplyStatus::ExpiriesFull,
        ModelTable::History => ReplyStatus::HistoryFull,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::multi_batch::encode_single;
    use crate::state_machine::StateMachine;

    /// The oracle's replies are the state machine's, byte for byte, for a create and a lookup.
    #[test]
    fn the_expected_reply_is_the_state_machines_reply() {
        let config = Config { accounts_max: 4, transfers_max: 8, expiries_max: 4, history_max: 4 };
        let mut oracle = Oracle::new(&config, MESSAGE_BODY_SIZE_MAX);
        let mut state_machine = StateMachine::new(config);
        let accounts = [Account { id: 1, ledger: 1, code: 1, ..Account::default() }, Account::default()];
        let mut body = vec![0u128; 64];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut body);
        bytes[..256].copy_from_slice(bytemuck::cast_slice(&accounts));
        let size = encode_single(bytes, 128, 2);
        let mut reply = vec![0u128; MESSAGE_BODY_SIZE_MAX / 16];
        let reply_bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut reply);
        let timestamp = 1_000;
        let body_bytes: &[u8] = bytemuck::cast_slice(&body);
        let reply_size = state_machine
            .execute(Operation::CreateAccounts, timestamp, &body_bytes[..size], reply_bytes)
            .expect("room");
        let expected =
            oracle.apply(Operation::CreateAccounts, timestamp, &body_bytes[..size]).expect("a reply");
        assert_eq!(expected.status, ReplyStatus::Ok);
        assert_eq!(expected.body, reply_bytes[..reply_size].to_vec());
        assert_eq!(oracle.model().accounts(), state_machine.accounts());

        let accounts_full = [Account { id: 2, ..accounts[0] }; 4];
        let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut body);
        bytes[..512].copy_from_slice(bytemuck::cast_slice(&accounts_full));
        let size = encode_single(bytes, 128, 4);
        let body_bytes: &[u8] = bytemuck::cast_slice(&body);
        let expected = oracle.apply(Operation::CreateAccounts, timestamp + 10, &body_bytes[..size]);
        assert_eq!(expected.map(|reply| reply.status), Some(ReplyStatus::AccountsFull));
        assert_eq!(oracle.apply(Operation::Pulse, timestamp + 20, &[]), None);
    }
}
