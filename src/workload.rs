//! Seeded generators of accounts and transfers for benchmarks: which accounts a transfer
//! touches (uniform, Zipf-like hot accounts, or the most recently created), with random ids.

use crate::prng::Prng;
use crate::types::{Account, Transfer, TransferFlags};

/// How transfers choose their accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum AccountDistribution {
    /// Every account equally likely.
    Uniform,
    /// Account `k` (1-based) with probability roughly proportional to `1/k`: a few hot accounts
    /// take most transfers, as in payments to a handful of merchants.
    Zipf,
    /// Recently created accounts more likely (the index counts back from the newest, Zipf-like).
    Latest,
}

/// Generates accounts and transfers over accounts `1..=account_count` (ids are `first_id + i`).
#[derive(Clone, Debug)]
pub struct Workload {
    prng: Prng,
    account_count: u64,
    account_id_first: u128,
    distribution: AccountDistribution,
    ledger: u32,
}

impl Workload {
    /// A workload over `account_count` accounts with ids `account_id_first..`.
    pub fn new(
        seed: u64,
        account_count: u64,
        account_id_first: u128,
        distribution: AccountDistribution,
    ) -> Self {
        assert!(account_count >= 2);
        Workload { prng: Prng::new(seed), account_count, account_id_first, distribution, ledger: 1 }
    }

    /// The id of account `index` (0-based).
    pub fn account_id(&self, index: u64) -> u128 {
        assert!(index < self.account_count);
        self.account_id_first + u128::from(index)
    }

    /// The account with index `index`, ready to be created.
    pub fn account(&self, index: u64) -> Account {
        Account { id: self.account_id(index), ledger: self.ledger, code: 1, ..Account::default() }
    }

    /// An account index drawn from the distribution.
    pub fn account_index(&mut self) -> u64 {
        match self.distribution {
            AccountDistribution::Uniform => self.prng.below(self.account_count),
            AccountDistribution::Zipf => self.zipf_index(),
            AccountDistribution::Latest => self.account_count - 1 - self.zipf_index(),
        }
    }

    /// A log-uniform index: `floor(n^u) − 1` for uniform `u`, so `P(k) ≈ 1/(k·ln n)`.
    fn zipf_index(&mut self) -> u64 {
        let u = (self.prng.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        let index = (self.account_count as f64).powf(u) as u64;
        index.clamp(1, self.account_count) - 1
    }

    /// A random transfer id (ids in practice are random or time-based 128-bit values).
    pub fn transfer_id(&mut self) -> u128 {
        loop {
            let id = self.prng.next_u128();
            if id != 0 && id != u128::MAX {
                return id;
            }
        }
    }

    /// A single-phase transfer between two different accounts, or a pending one with
    /// probability `pending_percent`%.
    pub fn transfer(&mut self, pending_percent: u64) -> Transfer {
        let debit = self.account_index();
        let mut credit = self.account_index();
        if credit == debit {
            credit = (debit + 1 + self.prng.below(self.account_count - 1)) % self.account_count;
        }
        let pending = pending_percent > 0 && self.prng.chance(pending_percent, 100);
        Transfer {
            id: self.transfer_id(),
            debit_account_id: self.account_id(debit),
            credit_account_id: self.account_id(credit),
            amount: u128::from(1 + self.prng.below(1000)),
            ledger: self.ledger,
            code: 1,
            flags: if pending { TransferFlags::PENDING } else { TransferFlags::default() },
            ..Transfer::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distributions_stay_in_range_and_skew_as_named() {
        for distribution in
            [AccountDistribution::Uniform, AccountDistribution::Zipf, AccountDistribution::Latest]
        {
            let mut workload = Workload::new(1, 1000, 1, distribution);
            let mut first_ten = 0;
            let mut last_ten = 0;
            for _ in 0..10_000 {
                let index = workload.account_index();
                assert!(index < 1000);
                first_ten += u32::from(index < 10);
                last_ten += u32::from(index >= 990);
                let transfer = workload.transfer(0);
                assert_ne!(transfer.debit_account_id, transfer.credit_account_id);
                assert!((1..=1000).contains(&transfer.debit_account_id));
            }
            match distribution {
                // 1% of accounts get about 1% of picks.
                AccountDistribution::Uniform => assert!(first_ten < 200 && last_ten < 200),
                // ln(10)/ln(1000) = a third of picks go to the first 1%.
                AccountDistribution::Zipf => assert!(first_ten > 2500, "{first_ten}"),
                AccountDistribution::Latest => assert!(last_ten > 2500, "{last_ten}"),
            }
        }
    }
}
