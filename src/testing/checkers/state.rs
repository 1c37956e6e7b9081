//! Checker (a): the replica's state equals the reference model's after the same ops.

use super::Failure;
use crate::state_machine::StateMachine;
use crate::testing::model::Model;

const NAME: &str = "state";

/// Compares every account and transfer (in timestamp order, every field) and the pending status
/// of every transfer and burned transfer id of `model` with `state_machine`'s.
pub fn check(state_machine: &StateMachine, model: &Model, op: u64) -> Result<(), Failure> {
    let accounts = model.accounts();
    if state_machine.accounts() != accounts.as_slice() {
        return Err(Failure::new(
            NAME,
            format!(
                "after op {op}: accounts differ: {}",
                first_difference(state_machine.accounts(), &accounts)
            ),
        ));
    }
    let transfers = model.transfers();
    if state_machine.transfers() != transfers.as_slice() {
        return Err(Failure::new(
            NAME,
            format!(
                "after op {op}: transfers differ: {}",
                first_difference(state_machine.transfers(), &transfers)
            ),
        ));
    }
    for id in transfers.iter().map(|transfer| transfer.id).chain(model.burned_ids()) {
        let (actual, expected) = (state_machine.pending_status(id), model.pending_status(id));
        if actual != expected {
            return Err(Failure::new(
                NAME,
                format!("after op {op}: transfer {id} pending status {actual:?}, model {expected:?}"),
            ));
        }
    }
    Ok(())
}

/// Names the first index where `actual` and `expected` differ (or their lengths).
fn first_difference<T: PartialEq + std::fmt::Debug>(actual: &[T], expected: &[T]) -> String {
    match actual.iter().zip(expected).position(|(a, e)| a != e) {
        Some(index) => format!("index {index}: replica {:?}, model {:?}", actual[index], expected[index]),
        None => format!("replica has {}, model {}", actual.len(), expected.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state_machine::Config;
    use crate::testing::model::ModelConfig;
    use crate::types::{Account, CreateResult};

    #[test]
    fn a_state_that_differs_from_the_model_fails() {
        let config = Config { accounts_max: 4, transfers_max: 4, expiries_max: 4, history_max: 4 };
        let mut state_machine = StateMachine::new(config);
        let mut model =
            Model::new(ModelConfig { accounts_max: 4, transfers_max: 4, expiries_max: 4, history_max: 4 });
        assert_eq!(check(&state_machine, &model, 0), Ok(()));
        let account = Account { id: 1, ledger: 1, code: 1, ..Account::default() };
        let mut results = [CreateResult::default()];
        state_machine.create_accounts(10, &[account], &mut results).expect("room");
        let failure = check(&state_machine, &model, 1).expect_err("the model has no account");
        assert!(failure.message.contains("replica has 1, model 0"), "{failure}");
        model.create_accounts(11, &[account]).expect("room");
        let failure = check(&state_machine, &model, 1).expect_err("timestamps differ");
        assert!(failure.message.contains("index 0"), "{failure}");
    }
}
