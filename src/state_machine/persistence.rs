//! The state machine's durable form: five plain arrays (accounts, transfers, transfer pending
//! statuses, history snapshots, burned ids) from which every index is rebuilt. Checkpoints store
//! these arrays; everything else (id tables, account transfer lists, the expiry queue) is derived
//! on restore, so it never needs to be written and can never disagree with the data.

use super::{expiry::Expiry, Config};
use super::{HistoryEntry, StateMachine, BURNED, NONE};
use crate::constants::NS_PER_S;
use crate::types::{Account, AccountFlags, Transfer, TransferPendingStatus};

/// The number of persisted arrays.
pub const PERSISTED_ARRAYS: usize = 5;

/// The record size of each persisted array, in the order of [`StateMachine::persisted`].
pub const PERSISTED_RECORD_SIZES: [usize; PERSISTED_ARRAYS] = [128, 128, 1, 128, 16];

/// Why persisted arrays cannot be restored (their checksums passed, so this means a bug or a
/// data file from an incompatible build).
#[derive(Debug, thiserror::Error)]
pub enum RestoreError {
    /// An array is larger than the configured capacity.
    #[error("persisted array {array} holds {count} records; the capacity is {capacity}")]
    Capacity {
        /// The array index.
        array: usize,
        /// Records found.
        count: usize,
        /// The configured capacity.
        capacity: usize,
    },
    /// The arrays contradict each other.
    #[error("persisted state is inconsistent: {0}")]
    Inconsistent(&'static str),
}

impl StateMachine {
    /// The persisted arrays as bytes: accounts, transfers, transfer pending statuses, history,
    /// burned ids.
    pub fn persisted(&self) -> [&[u8]; PERSISTED_ARRAYS] {
        [
            bytemuck::cast_slice(&self.accounts),
            bytemuck::cast_slice(&self.transfers),
            bytemuck::cast_slice(&self.transfer_pending),
            bytemuck::cast_slice(&self.history),
            bytemuck::cast_slice(&self.burned),
        ]
    }

    /// Rebuilds a state machine from its persisted arrays (as returned by
    /// [`StateMachine::persisted`]), each 16-byte aligned.
    pub fn restore(config: Config, arrays: [&[u8]; PERSISTED_ARRAYS]) -> Result<StateMachine, RestoreError> {
        let mut state = StateMachine::new(config);
        let capacities = [
            config.accounts_max as usize,
            config.transfers_max as usize,
            config.transfers_max as usize,
            config.history_max as usize,
            config.transfers_max as usize,
        ];
        for (array, bytes) in arrays.iter().enumerate() {
            let count = bytes.len() / PERSISTED_RECORD_SIZES[array];
            if bytes.len() % PERSISTED_RECORD_SIZES[array] != 0 {
                return Err(RestoreError::Inconsistent("an array is not a whole number of records"));
            }
            if count > capacities[array] {
                return Err(RestoreError::Capacity { array, count, capacity: capacities[array] });
            }
        }
        let accounts: &[Account] = bytemuck::cast_slice(arrays[0]);
        let transfers: &[Transfer] = bytemuck::cast_slice(arrays[1]);
        let pending = arrays[2];
        let history: &[HistoryEntry] = bytemuck::cast_slice(arrays[3]);
        let burned: &[u128] = bytemuck::cast_slice(arrays[4]);
        if pending.len() != transfers.len() {
            return Err(RestoreError::Inconsistent("pending statuses do not match the transfers"));
        }
        if state_transfers_and_burned_exceed(transfers.len(), burned.len(), config) {
            return Err(RestoreError::Capacity {
                array: 4,
                count: transfers.len() + burned.len(),
                capacity: config.transfers_max as usize,
            });
        }
        for account in accounts {
            state.restore_account(account)?;
        }
        for (index, transfer) in transfers.iter().enumerate() {
            let status = TransferPendingStatus::from_u8(pending[index])
                .ok_or(RestoreError::Inconsistent("unknown pending status"))?;
            state.restore_transfer(transfer, status)?;
        }
        if state.history.len() != history.len() {
            return Err(RestoreError::Inconsistent("history snapshots do not match the transfers"));
        }
        state.history.copy_from_slice(history);
        for id in burned {
            if *id == 0 || state.transfer_ids.get(*id).is_some() {
                return Err(RestoreError::Inconsistent(
                    "a burned id is zero, repeated, or a stored transfer",
                ));
            }
            state.transfer_ids.insert(*id, BURNED);
            state.burned.push(*id);
        }
        Ok(state)
    }

    fn restore_account(&mut self, account: &Account) -> Result<(), RestoreError> {
        let ordered = self.accounts.last().is_none_or(|last| last.timestamp < account.timestamp);
        if account.id == 0
            || account.id == u128::MAX
            || !ordered
            || self.account_ids.get(account.id).is_some()
        {
            return Err(RestoreError::Inconsistent("accounts are not unique and in timestamp order"));
        }
        self.account_ids.insert(account.id, self.accounts.len() as u32);
        self.accounts.push(*account);
        self.account_transfers.account_push();
        self.accounts_history_count += u32::from(account.flags.contains(AccountFlags::HISTORY));
        Ok(())
    }

    fn restore_transfer(
        &mut self,
        transfer: &Transfer,
        status: TransferPendingStatus,
    ) -> Result<(), RestoreError> {
        let ordered = self.transfers.last().is_none_or(|last| last.timestamp < transfer.timestamp);
        if transfer.id == 0 || !ordered || self.transfer_ids.get(transfer.id).is_some() {
            return Err(RestoreError::Inconsistent("transfers are not unique and in timestamp order"));
        }
        let dr = self.account_ids.get(transfer.debit_account_id);
        let cr = self.account_ids.get(transfer.credit_account_id);
        let (Some(dr), Some(cr)) = (dr, cr) else {
            return Err(RestoreError::Inconsistent("a transfer names an account that does not exist"));
        };
        let index = self.transfers.len() as u32;
        // A snapshot was recorded for exactly the transfers touching a history account.
        let keeps_history = [dr, cr]
            .iter()
            .any(|account| self.accounts[*account as usize].flags.contains(AccountFlags::HISTORY));
        let history = if keeps_history {
            let history_index = self.history.len() as u32;
            // Placeholder, overwritten by the persisted snapshots once all transfers are in.
            self.history.push(bytemuck::Zeroable::zeroed());
            history_index
        } else {
            NONE
        };
        self.account_transfers.push(dr as usize, index);
        self.account_transfers.push(cr as usize, index);
        self.transfers.push(*transfer);
        self.transfer_history.push(history);
        self.transfer_pending.push(status);
        self.transfer_ids.insert(transfer.id, index);
        if status == TransferPendingStatus::Pending && transfer.timeout != 0 {
            let expires_at = transfer.timestamp + u64::from(transfer.timeout) * NS_PER_S;
            if self.expiries.count() >= self.config.expiries_max as usize {
                return Err(RestoreError::Capacity {
                    array: 2,
                    count: self.expiries.count() + 1,
                    capacity: self.config.expiries_max as usize,
                });
            }
            self.expiries.push(Expiry { expires_at, timestamp: transfer.timestamp, index });
        }
        Ok(())
    }
}

fn state_transfers_and_burned_exceed(transfers: usize, burned: usize, config: Config) -> bool {
    transfers + burned > config.transfers_max as usize
}
