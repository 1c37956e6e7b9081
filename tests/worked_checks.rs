//! The worked checks of the data-model spec (§14), each as its own test against the real state
//! machine, and tests at every limit: full-size batches, amounts at 2^128 − 1, timestamps at
//! 2^63 − 1, the pulse and query caps, and full tables.

mod support;

use ledger::constants::{BATCH_EVENTS_MAX, NS_PER_S, PULSE_EXPIRIES_MAX, QUERY_RESULTS_MAX, TIMESTAMP_MAX};
use ledger::state_machine::{Config, ExecuteError, Table};
use ledger::types::{
    Account, AccountFilterFlags, AccountFlags, CreateAccountStatus as A, CreateResult,
    CreateTransferStatus as T, Transfer, TransferFlags, TransferPendingStatus,
};

use support::{
    account, account_filter, account_with, config_large, pending, post, query_filter, transfer, void,
    with_flags, Ledger, CODE, LEDGER,
};

/// Accounts 1 and 2 on `LEDGER`, no flags.
fn ledger_with_two_accounts() -> Ledger {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[account(1), account(2)]);
    ledger
}

fn imported_account(id: u128, timestamp: u64) -> Account {
    Account { timestamp, ..account_with(id, AccountFlags::IMPORTED) }
}

fn imported_transfer(id: u128, debit: u128, credit: u128, timestamp: u64) -> Transfer {
    Transfer { timestamp, ..with_flags(transfer(id, debit, credit, 1), TransferFlags::IMPORTED) }
}

// -------------------------------------------------------------------------------------------
// §14 worked checks.

#[test]
fn exists_inside_linked_chain_fails_the_whole_chain() {
    let mut ledger = Ledger::new();
    let a = account_with(1, AccountFlags::LINKED);
    let b = account(2);
    let results = ledger.try_create_accounts(&[a, a, b]).unwrap();
    let statuses: Vec<u32> = results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, [A::LinkedEventFailed as u32, A::Exists as u32, A::LinkedEventFailed as u32]);
    // A keeps the timestamp it was provisionally created with; A' reports that object's
    // timestamp; B reports its own slot.
    let t_b = ledger.clock;
    assert_eq!(results[0].timestamp, t_b - 2);
    assert_eq!(results[1].timestamp, t_b - 2);
    assert_eq!(results[2].timestamp, t_b);
    assert!(ledger.state_machine.accounts().is_empty(), "nothing of the chain is persisted");
    assert_eq!(ledger.account(1), None);
    assert_eq!(ledger.account(2), None);
    // The rolled-back ids are free: the same batch without the duplicate creates both.
    assert_eq!(ledger.create_accounts(&[a, b]), [A::Created, A::Created]);
    assert_eq!(ledger.account(1).unwrap().flags, AccountFlags::LINKED, "linked is stored verbatim");
}

#[test]
fn transfer_retried_after_exceeds_credits_is_id_already_failed_even_when_funds_now_suffice() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[
        account_with(1, AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS),
        account(2),
        account(3),
    ]);
    let spend = transfer(10, 1, 2, 10);
    assert_eq!(ledger.create_transfers(&[spend]), [T::ExceedsCredits]);
    ledger.create_transfers_ok(&[transfer(11, 3, 1, 100)]);
    assert_eq!(ledger.create_transfers(&[spend]), [T::IdAlreadyFailed]);
    assert_eq!(ledger.transfer(10), None, "a burned id is never found");
    assert_eq!(ledger.state_machine.pending_status(10), None);
    // A burned id used as a pending_id is a missing pending transfer.
    assert_eq!(ledger.create_transfers(&[post(12, 10, u128::MAX)]), [T::PendingTransferNotFound]);
    let a = ledger.account(1).unwrap();
    assert_eq!((a.debits_posted, a.credits_posted), (0, 100));
}

#[test]
fn post_with_int_max_amount_posts_the_full_pending_amount_and_retries_match_only_the_stored_amount() {
    let mut ledger = ledger_with_two_accounts();
    ledger.create_transfers_ok(&[pending(10, 1, 2, 7, 0)]);
    ledger.create_transfers_ok(&[post(11, 10, u128::MAX)]);
    assert_eq!(ledger.transfer(11).unwrap().amount, 7);
    assert_eq!(ledger.state_machine.pending_status(10), Some(TransferPendingStatus::Posted));
    for (amount, expected) in [
        (7, T::Exists),
        (u128::MAX, T::Exists),
        (8, T::ExistsWithDifferentAmount),
        (6, T::ExistsWithDifferentAmount),
        (0, T::ExistsWithDifferentAmount),
    ] {
        assert_eq!(
            ledger.create_transfers(&[post(11, 10, amount)]),
            [expected],
            "retry with amount {amount}"
        );
    }
    let (a, b) = (ledger.account(1).unwrap(), ledger.account(2).unwrap());
    assert_eq!((a.debits_pending, a.debits_posted, b.credits_pending, b.credits_posted), (0, 7, 0, 7));
}

#[test]
fn partial_post_retry_with_another_amount_differs_and_zero_fields_match_only_inherited_values() {
    let mut ledger = ledger_with_two_accounts();
    let p = Transfer { user_data_128: 5, user_data_64: 6, user_data_32: 7, ..pending(10, 1, 2, 15, 0) };
    ledger.create_transfers_ok(&[p]);
    // Inherit user_data_128 and _32, override user_data_64.
    let original = Transfer { user_data_64: 9, ..post(11, 10, 13) };
    ledger.create_transfers_ok(&[original]);
    let stored = ledger.transfer(11).unwrap();
    assert_eq!(
        (stored.amount, stored.user_data_128, stored.user_data_64, stored.user_data_32),
        (13, 5, 9, 7)
    );
    assert_eq!(
        (stored.debit_account_id, stored.credit_account_id, stored.ledger, stored.code),
        (1, 2, LEDGER, CODE)
    );
    let explicit =
        Transfer { debit_account_id: 1, credit_account_id: 2, ledger: LEDGER, code: CODE, ..original };
    let cases = [
        ("amount 14", Transfer { amount: 14, ..original }, T::ExistsWithDifferentAmount),
        ("amount 12", Transfer { amount: 12, ..original }, T::ExistsWithDifferentAmount),
        ("full amount", Transfer { amount: u128::MAX, ..original }, T::ExistsWithDifferentAmount),
        ("inherited accounts, ledger and code", original, T::Exists),
        ("explicit accounts, ledger and code", explicit, T::Exists),
        ("explicit inherited user_data_128", Transfer { user_data_128: 5, ..original }, T::Exists),
        ("other user_data_128", Transfer { user_data_128: 4, ..original }, T::ExistsWithDifferentUserData128),
        (
            "zero overridden user_data_64",
            Transfer { user_data_64: 0, ..original },
            T::ExistsWithDifferentUserData64,
        ),
        ("other user_data_32", Transfer { user_data_32: 8, ..original }, T::ExistsWithDifferentUserData32),
        (
            "other debit account",
            Transfer { debit_account_id: 3, ..original },
            T::ExistsWithDifferentDebitAccountId,
        ),
        (
            "other credit account",
            Transfer { credit_account_id: 3, ..original },
            T::ExistsWithDifferentCreditAccountId,
        ),
        ("other ledger", Transfer { ledger: 2, ..original }, T::ExistsWithDifferentLedger),
        ("other code", Transfer { code: 2, ..original }, T::ExistsWithDifferentCode),
        ("other pending id", Transfer { pending_id: 99, ..original }, T::ExistsWithDifferentPendingId),
        ("void instead of post", void(11, 10, 0), T::ExistsWithDifferentFlags),
    ];
    for (name, retry, expected) in cases {
        assert_eq!(ledger.create_transfers(&[retry]), [expected], "retry: {name}");
    }
    let b = ledger.account(2).unwrap();
    assert_eq!((b.credits_pending, b.credits_posted), (0, 13), "the unposted 2 were released");
}

#[test]
fn balancing_debit_stores_what_the_account_can_absorb_and_retries_accept_any_larger_request() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[account(1), account(2), account(3)]);
    ledger.create_transfers_ok(&[transfer(10, 3, 1, 6)]);
    let balancing = with_flags(transfer(11, 1, 2, 13), TransferFlags::BALANCING_DEBIT);
    ledger.create_transfers_ok(&[balancing]);
    assert_eq!(ledger.transfer(11).unwrap().amount, 6);
    for amount in [6, 7, 13, 1000, u128::MAX] {
        let retry = Transfer { amount, ..balancing };
        assert_eq!(ledger.create_transfers(&[retry]), [T::Exists], "retry with amount {amount}");
    }
    for amount in 0..=5 {
        let retry = Transfer { amount, ..balancing };
        assert_eq!(
            ledger.create_transfers(&[retry]),
            [T::ExistsWithDifferentAmount],
            "retry with amount {amount}"
        );
    }
    // The account is now balanced: another balancing transfer moves 0 and is still created.
    ledger.create_transfers_ok(&[Transfer { id: 12, ..balancing }]);
    assert_eq!(ledger.transfer(12).unwrap().amount, 0);
}

#[test]
fn imported_accounts_out_of_order_in_one_batch_must_not_regress() {
    let mut ledger = Ledger::new();
    let statuses = ledger.create_accounts(&[imported_account(1, 2), imported_account(2, 1)]);
    assert_eq!(statuses, [A::Created, A::ImportedEventTimestampMustNotRegress]);
    assert_eq!(ledger.account(1).unwrap().timestamp, 2, "the user's timestamp is stored");
    assert_eq!(ledger.account(2), None);
}

#[test]
fn imported_transfer_at_an_account_timestamp_must_not_regress() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[imported_account(1, 10), imported_account(2, 20)]);
    let statuses = ledger.create_transfers(&[imported_transfer(5, 1, 2, 20)]);
    assert_eq!(statuses, [T::ImportedEventTimestampMustNotRegress]);
    let results = ledger.try_create_transfers(&[imported_transfer(5, 1, 2, 21)]).unwrap();
    assert_eq!((results[0].status, results[0].timestamp), (T::Created as u32, 21));
    // An imported account must not take a transfer's timestamp either.
    assert_eq!(ledger.create_accounts(&[imported_account(3, 21)]), [A::ImportedEventTimestampMustNotRegress]);
}

#[test]
fn imported_transfer_not_after_its_debit_account_must_postdate_it() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[imported_account(1, 10), imported_account(2, 20)]);
    for (timestamp, expected) in [
        (15, T::ImportedEventTimestampMustPostdateDebitAccount),
        (5, T::ImportedEventTimestampMustPostdateDebitAccount),
    ] {
        assert_eq!(ledger.create_transfers(&[imported_transfer(5, 2, 1, timestamp)]), [expected]);
    }
    let statuses = ledger.create_transfers(&[imported_transfer(5, 1, 2, 15)]);
    assert_eq!(statuses, [T::ImportedEventTimestampMustPostdateCreditAccount]);
    ledger.create_transfers_ok(&[imported_transfer(5, 2, 1, 25)]);
}

#[test]
fn closing_pending_transfer_closes_the_account_until_voided() {
    let mut ledger = ledger_with_two_accounts();
    let closing = with_flags(pending(10, 1, 2, 0, 0), TransferFlags::CLOSING_DEBIT);
    ledger.create_transfers_ok(&[closing]);
    assert!(ledger.account(1).unwrap().flags.contains(AccountFlags::CLOSED));
    assert!(!ledger.account(2).unwrap().flags.contains(AccountFlags::CLOSED));
    let spend = transfer(11, 1, 2, 1);
    assert_eq!(ledger.create_transfers(&[spend]), [T::DebitAccountAlreadyClosed]);
    assert_eq!(
        ledger.create_transfers(&[spend]),
        [T::IdAlreadyFailed],
        "the transient failure burned the id"
    );
    assert_eq!(ledger.create_transfers(&[transfer(12, 2, 1, 1)]), [T::CreditAccountAlreadyClosed]);
    assert_eq!(ledger.create_transfers(&[post(13, 10, u128::MAX)]), [T::DebitAccountAlreadyClosed]);
    // Retrying the account's creation now differs in flags (the stored flags include closed).
    assert_eq!(ledger.create_accounts(&[account(1)]), [A::ExistsWithDifferentFlags]);
    ledger.create_transfers_ok(&[void(14, 10, 0)]);
    assert!(!ledger.account(1).unwrap().flags.contains(AccountFlags::CLOSED), "voiding re-opens");
    assert_eq!(ledger.state_machine.pending_status(10), Some(TransferPendingStatus::Voided));
    ledger.create_transfers_ok(&[transfer(15, 1, 2, 1)]);
    assert_eq!(ledger.create_accounts(&[account(1)]), [A::Exists]);
}

#[test]
fn expiry_of_a_closing_pending_transfer_reopens_the_account() {
    let mut ledger = ledger_with_two_accounts();
    let closing = with_flags(pending(10, 1, 2, 5, 1), TransferFlags::CLOSING_CREDIT);
    ledger.create_transfers_ok(&[closing]);
    assert!(ledger.account(2).unwrap().flags.contains(AccountFlags::CLOSED));
    ledger.advance(NS_PER_S);
    assert_eq!(ledger.pulse(), 1);
    let b = ledger.account(2).unwrap();
    assert!(!b.flags.contains(AccountFlags::CLOSED));
    assert_eq!(b.credits_pending, 0);
    assert_eq!(ledger.state_machine.pending_status(10), Some(TransferPendingStatus::Expired));
    assert_eq!(ledger.create_transfers(&[void(11, 10, 0)]), [T::PendingTransferExpired]);
}

#[test]
fn rolled_back_pending_transfer_leaves_no_expiry_even_for_an_imported_transfer_at_its_timestamp() {
    let mut ledger = ledger_with_two_accounts();
    let p = with_flags(pending(10, 1, 2, 5, 1), TransferFlags::LINKED);
    let results = ledger.try_create_transfers(&[p, transfer(11, 1, 9, 1)]).unwrap();
    assert_eq!(results[0].status, T::LinkedEventFailed as u32);
    assert_eq!(results[1].status, T::CreditAccountNotFound as u32);
    assert_eq!(ledger.transfer(10), None);
    // No stored transfer has the rolled-back timestamp, so an imported transfer may take it.
    let timestamp = results[0].timestamp;
    let q = Transfer { timestamp, ..with_flags(pending(12, 1, 2, 7, 0), TransferFlags::IMPORTED) };
    assert_eq!(ledger.create_transfers(&[q]), [T::Created]);
    ledger.advance(2 * NS_PER_S);
    assert_eq!(ledger.pulse(), 0, "an imported pending transfer never expires");
    assert_eq!(ledger.state_machine.pending_status(12), Some(TransferPendingStatus::Pending));
    assert_eq!(ledger.account(1).unwrap().debits_pending, 7);
    // The rolled-back id is free again, and its new expiry is its own.
    ledger.create_transfers_ok(&[pending(10, 1, 2, 5, 1)]);
    ledger.advance(2 * NS_PER_S);
    assert_eq!(ledger.pulse(), 1);
    assert_eq!(ledger.state_machine.pending_status(10), Some(TransferPendingStatus::Expired));
}

// -------------------------------------------------------------------------------------------
// Batch and chain limits.

#[test]
fn batch_of_8189_accounts_then_8189_transfers_is_all_created() {
    let mut ledger = Ledger::new();
    let accounts: Vec<Account> = (1..=BATCH_EVENTS_MAX as u128).map(account).collect();
    ledger.create_accounts_ok(&accounts);
    let transfers: Vec<Transfer> = (1..=BATCH_EVENTS_MAX as u128)
        .map(|id| transfer(id, id, id % BATCH_EVENTS_MAX as u128 + 1, 1))
        .collect();
    let results = ledger.try_create_transfers(&transfers).unwrap();
    let t_b = ledger.clock;
    for (index, result) in results.iter().enumerate() {
        assert_eq!(result.status, T::Created as u32);
        assert_eq!(result.timestamp, t_b - BATCH_EVENTS_MAX as u64 + index as u64 + 1);
    }
    assert_eq!(ledger.state_machine.accounts().len(), BATCH_EVENTS_MAX);
    assert_eq!(ledger.state_machine.transfers().len(), BATCH_EVENTS_MAX);
    assert!(ledger.state_machine.accounts().iter().all(|a| a.debits_posted == 1 && a.credits_posted == 1));
}

#[test]
fn linked_chain_of_8189_events_commits_whole_and_an_open_end_fails_it_whole() {
    let mut ledger = Ledger::new();
    let mut accounts: Vec<Account> =
        (1..=BATCH_EVENTS_MAX as u128).map(|id| account_with(id, AccountFlags::LINKED)).collect();
    let statuses = ledger.create_accounts(&accounts);
    assert_eq!(statuses[BATCH_EVENTS_MAX - 1], A::LinkedEventChainOpen);
    assert!(statuses[..BATCH_EVENTS_MAX - 1].iter().all(|s| *s == A::LinkedEventFailed));
    assert!(ledger.state_machine.accounts().is_empty());
    accounts[BATCH_EVENTS_MAX - 1].flags = AccountFlags::default();
    ledger.create_accounts_ok(&accounts);
    assert_eq!(ledger.state_machine.accounts().len(), BATCH_EVENTS_MAX);
}

#[test]
fn single_linked_event_is_an_open_chain_and_empty_batches_are_legal() {
    let mut ledger = Ledger::new();
    assert_eq!(ledger.create_accounts(&[account_with(1, AccountFlags::LINKED)]), [A::LinkedEventChainOpen]);
    assert!(ledger.create_accounts(&[]).is_empty());
    assert!(ledger.create_transfers(&[]).is_empty());
    ledger.create_accounts_ok(&[account(1), account(2)]);
    let linked = with_flags(transfer(10, 1, 2, 1), TransferFlags::LINKED);
    assert_eq!(ledger.create_transfers(&[linked]), [T::LinkedEventChainOpen]);
    assert_eq!(ledger.create_transfers(&[transfer(10, 1, 2, 1)]), [T::Created], "chain_open does not burn");
}

// -------------------------------------------------------------------------------------------
// Amounts at 2^128 − 1.

#[test]
fn single_phase_transfer_of_u128_max_is_created_and_one_more_overflows_posted() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[account(1), account(2), account(3), account(4)]);
    ledger.create_transfers_ok(&[transfer(10, 1, 2, u128::MAX)]);
    assert_eq!(ledger.account(1).unwrap().debits_posted, u128::MAX);
    assert_eq!(ledger.create_transfers(&[transfer(11, 1, 3, 1)]), [T::OverflowsDebitsPosted]);
    assert_eq!(ledger.create_transfers(&[transfer(12, 3, 2, 1)]), [T::OverflowsCreditsPosted]);
    // Zero still fits.
    ledger.create_transfers_ok(&[transfer(13, 1, 2, 0)]);
    // Overflows are not transient: the ids are not burned.
    ledger.create_transfers_ok(&[transfer(11, 4, 3, 1)]);
}

#[test]
fn pending_transfer_of_u128_max_is_created_and_one_more_overflows_pending() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[account(1), account(2), account(3)]);
    ledger.create_transfers_ok(&[pending(10, 1, 2, u128::MAX, 0)]);
    assert_eq!(ledger.create_transfers(&[pending(11, 1, 3, 1, 0)]), [T::OverflowsDebitsPending]);
    assert_eq!(ledger.create_transfers(&[pending(12, 3, 2, 1, 0)]), [T::OverflowsCreditsPending]);
    // A single-phase transfer checks pending + posted: the sum overflows.
    assert_eq!(ledger.create_transfers(&[transfer(13, 1, 3, 1)]), [T::OverflowsDebits]);
    assert_eq!(ledger.create_transfers(&[transfer(14, 3, 2, 1)]), [T::OverflowsCredits]);
    // Posting the full amount moves it from pending to posted without any overflow check.
    ledger.create_transfers_ok(&[post(15, 10, u128::MAX)]);
    let a = ledger.account(1).unwrap();
    assert_eq!((a.debits_pending, a.debits_posted), (0, u128::MAX));
}

#[test]
fn half_and_half_balances_overflow_the_sum_but_not_each_field() {
    let half = 1u128 << 127;
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[account(1), account(2), account(3)]);
    ledger.create_transfers_ok(&[pending(10, 1, 2, half, 0), transfer(11, 1, 2, half - 1)]);
    // debits_pending + debits_posted = 2^128 − 1: one more overflows the sum only.
    assert_eq!(ledger.create_transfers(&[transfer(12, 1, 3, 1)]), [T::OverflowsDebits]);
    assert_eq!(ledger.create_transfers(&[transfer(13, 3, 2, 1)]), [T::OverflowsCredits]);
    assert_eq!(ledger.create_transfers(&[pending(14, 1, 3, 1, 0)]), [T::OverflowsDebits]);
    ledger.create_transfers_ok(&[transfer(15, 1, 3, 0)]);
}

#[test]
fn balancing_against_u128_max_moves_only_what_fits() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[account(1), account(2), account(3)]);
    ledger.create_transfers_ok(&[transfer(10, 3, 1, 100), transfer(11, 1, 2, 40)]);
    let balancing = with_flags(transfer(12, 1, 2, u128::MAX), TransferFlags::BALANCING_DEBIT);
    ledger.create_transfers_ok(&[balancing]);
    assert_eq!(ledger.transfer(12).unwrap().amount, 60);
    let credit = with_flags(transfer(13, 2, 3, u128::MAX), TransferFlags::BALANCING_CREDIT);
    ledger.create_transfers_ok(&[credit]);
    // Account 3 has debits 100, credits 0: a balancing credit may move 100.
    assert_eq!(ledger.transfer(13).unwrap().amount, 100);
}

// -------------------------------------------------------------------------------------------
// Timestamps at 2^63 − 1.

#[test]
fn imported_timestamps_must_be_valid_and_below_the_batch_last_slot_at_2_63_minus_1() {
    let mut ledger = Ledger::new();
    let events = [
        imported_account(1, 0),
        imported_account(2, 1 << 63),
        imported_account(3, u64::MAX),
        imported_account(4, TIMESTAMP_MAX),
        imported_account(5, TIMESTAMP_MAX - 1),
    ];
    ledger.clock = TIMESTAMP_MAX - events.len() as u64; // The batch's last slot is 2^63 − 1.
    let results = ledger.try_create_accounts(&events).unwrap();
    assert_eq!(ledger.clock, TIMESTAMP_MAX);
    let statuses: Vec<u32> = results.iter().map(|r| r.status).collect();
    assert_eq!(
        statuses,
        [
            A::ImportedEventTimestampOutOfRange as u32,
            A::ImportedEventTimestampOutOfRange as u32,
            A::ImportedEventTimestampOutOfRange as u32,
            A::ImportedEventTimestampMustNotAdvance as u32,
            A::Created as u32,
        ]
    );
    assert_eq!(results[4].timestamp, TIMESTAMP_MAX - 1);
    assert_eq!(results[3].timestamp, TIMESTAMP_MAX - 1, "a failed event reports its slot");
}

#[test]
fn imported_transfer_timestamp_out_of_range_or_advancing_is_rejected() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[imported_account(1, 10), imported_account(2, 20)]);
    let next_last_slot = ledger.clock + 4;
    let statuses = ledger.create_transfers(&[
        imported_transfer(5, 1, 2, 0),
        imported_transfer(6, 1, 2, 1 << 63),
        imported_transfer(7, 1, 2, next_last_slot),
        imported_transfer(8, 1, 2, next_last_slot - 1),
    ]);
    assert_eq!(
        statuses,
        [
            T::ImportedEventTimestampOutOfRange,
            T::ImportedEventTimestampOutOfRange,
            T::ImportedEventTimestampMustNotAdvance,
            T::Created
        ]
    );
}

#[test]
fn pending_timeout_ending_exactly_at_2_63_minus_1_is_created_and_one_second_more_overflows_timeout() {
    let mut ledger = ledger_with_two_accounts();
    let timeout_s: u32 = 1_000;
    let slot_first = TIMESTAMP_MAX - u64::from(timeout_s) * NS_PER_S;
    ledger.clock = slot_first - 1; // The next batch's first slot ends its timeout at 2^63 − 1.
    let statuses = ledger.create_transfers(&[
        pending(10, 1, 2, 1, timeout_s),
        pending(11, 1, 2, 1, timeout_s),
        pending(12, 1, 2, 1, timeout_s - 1),
    ]);
    assert_eq!(statuses, [T::Created, T::OverflowsTimeout, T::Created]);
    assert_eq!(ledger.transfer(10).unwrap().timestamp, slot_first);
    // Such a pending transfer still expires, at 2^63 − 1 exactly.
    ledger.clock = TIMESTAMP_MAX - PULSE_EXPIRIES_MAX as u64;
    assert_eq!(ledger.pulse(), 2);
    assert_eq!(ledger.state_machine.pending_status(10), Some(TransferPendingStatus::Expired));
}

#[test]
fn post_at_the_exact_expiry_slot_is_expired_and_one_slot_earlier_is_created() {
    let mut ledger = ledger_with_two_accounts();
    ledger.create_transfers_ok(&[pending(10, 1, 2, 5, 2), pending(11, 1, 2, 5, 2)]);
    let expires_at_10 = ledger.transfer(10).unwrap().timestamp + 2 * NS_PER_S;
    let expires_at_11 = ledger.transfer(11).unwrap().timestamp + 2 * NS_PER_S;
    ledger.clock = expires_at_10 - 2; // The next single-event batch's slot is expires_at − 1.
    ledger.create_transfers_ok(&[post(20, 10, u128::MAX)]);
    ledger.clock = expires_at_11 - 1; // The slot is exactly expires_at.
    assert_eq!(ledger.create_transfers(&[post(21, 11, u128::MAX)]), [T::PendingTransferExpired]);
    // The reservation is released only by the pulse.
    assert_eq!(ledger.state_machine.pending_status(11), Some(TransferPendingStatus::Pending));
    assert_eq!(ledger.account(1).unwrap().debits_pending, 5);
    assert_eq!(ledger.pulse(), 1);
    assert_eq!(ledger.account(1).unwrap().debits_pending, 0);
    assert_eq!(ledger.state_machine.pending_status(11), Some(TransferPendingStatus::Expired));
}

// -------------------------------------------------------------------------------------------
// Pulse and query caps.

#[test]
fn pulse_expires_at_most_8190_in_expiry_order() {
    let mut ledger = Ledger::new();
    ledger.create_accounts_ok(&[account(1), account(2)]);
    // Batch 1: timeout 2 s; batch 2: timeout 1 s, so batch 2 expires first although created later.
    let first: Vec<Transfer> =
        (0..BATCH_EVENTS_MAX as u128).map(|i| pending(1_000_000 + i, 1, 2, 1, 2)).collect();
    let second: Vec<Transfer> = (0..10u128).map(|i| pending(2_000_000 + i, 1, 2, 1, 1)).collect();
    ledger.create_transfers_ok(&first);
    ledger.create_transfers_ok(&second);
    ledger.advance(3 * NS_PER_S);
    assert_eq!(ledger.pulse(), PULSE_EXPIRIES_MAX);
    for transfer in &second {
        assert_eq!(ledger.state_machine.pending_status(transfer.id), Some(TransferPendingStatus::Expired));
    }
    // 8190 − 10 of the first batch expired, in timestamp order: the last 10 are still pending.
    let expired = PULSE_EXPIRIES_MAX - second.len();
    for (index, transfer) in first.iter().enumerate() {
        let expected =
            if index < expired { TransferPendingStatus::Expired } else { TransferPendingStatus::Pending };
        assert_eq!(ledger.state_machine.pending_status(transfer.id), Some(expected), "index {index}");
    }
    assert_eq!(
        ledger.account(1).unwrap().debits_pending,
        (BATCH_EVENTS_MAX + 10 - PULSE_EXPIRIES_MAX) as u128
    );
    assert_eq!(ledger.pulse(), BATCH_EVENTS_MAX + 10 - PULSE_EXPIRIES_MAX);
    assert_eq!(ledger.pulse(), 0);
    assert_eq!(ledger.account(1).unwrap().debits_pending, 0);
}

#[test]
fn queries_return_at_most_8189_results_from_the_start_of_their_order() {
    let mut ledger = Ledger::new();
    let accounts: Vec<Account> = (1..=BATCH_EVENTS_MAX as u128).map(account).collect();
    ledger.create_accounts_ok(&accounts);
    ledger.create_accounts_ok(&[account_with(100_000, AccountFlags::HISTORY)]);
    let transfers: Vec<Transfer> =
        (1..=BATCH_EVENTS_MAX as u128).map(|id| transfer(id, 100_000, 1, 1)).collect();
    ledger.create_transfers_ok(&transfers);
    ledger.create_transfers_ok(&[transfer(100_000, 2, 100_000, 5)]);

    let all = ledger.account_transfers(&account_filter(100_000));
    assert_eq!(all.len(), QUERY_RESULTS_MAX);
    assert_eq!((all[0].id, all[QUERY_RESULTS_MAX - 1].id), (1, BATCH_EVENTS_MAX as u128));
    let mut reversed = account_filter(100_000);
    reversed.flags = reversed.flags.with(AccountFilterFlags::REVERSED);
    let newest = ledger.account_transfers(&reversed);
    assert_eq!(newest.len(), QUERY_RESULTS_MAX);
    assert_eq!((newest[0].id, newest[1].id), (100_000, BATCH_EVENTS_MAX as u128));
    let balances = ledger.account_balances(&reversed);
    assert_eq!(balances.len(), QUERY_RESULTS_MAX);
    assert_eq!((balances[0].credits_posted, balances[0].debits_posted), (5, BATCH_EVENTS_MAX as u128));
    assert_eq!(balances[1].credits_posted, 0);
    let limited =
        ledger.account_transfers(&ledger::types::AccountFilter { limit: 3, ..account_filter(100_000) });
    assert_eq!(limited.iter().map(|t| t.id).collect::<Vec<_>>(), [1, 2, 3]);

    assert_eq!(ledger.query_accounts(&query_filter()).len(), QUERY_RESULTS_MAX);
    assert_eq!(ledger.query_transfers(&query_filter()).len(), QUERY_RESULTS_MAX);
    let zero_limit = ledger::types::QueryFilter { limit: 0, ..query_filter() };
    assert!(ledger.query_transfers(&zero_limit).is_empty(), "limit 0 is invalid");
}

// -------------------------------------------------------------------------------------------
// Full tables: the whole batch is rejected and nothing is applied.

fn config_with(change: impl FnOnce(&mut Config)) -> Config {
    let mut config = config_large();
    change(&mut config);
    config
}

fn assert_nothing_applied(ledger: &Ledger, accounts: &[Account], transfers: &[Transfer]) {
    assert_eq!(ledger.state_machine.accounts(), accounts);
    assert_eq!(ledger.state_machine.transfers(), transfers);
}

#[test]
fn full_accounts_table_rejects_the_whole_batch_and_applies_nothing() {
    let mut ledger = Ledger::with_config(config_with(|c| c.accounts_max = 3));
    ledger.create_accounts_ok(&[account(1), account(2)]);
    let before = ledger.state_machine.accounts().to_vec();
    let mut results = vec![CreateResult::new(7, 7); 2];
    ledger.clock += 2;
    let error = ledger.state_machine.create_accounts(ledger.clock, &[account(3), account(4)], &mut results);
    assert_eq!(error, Err(ExecuteError::TableFull { table: Table::Accounts }));
    assert_nothing_applied(&ledger, &before, &[]);
    // Exactly at the limit is fine.
    ledger.create_accounts_ok(&[account(3)]);
    assert_eq!(
        ledger.try_create_accounts(&[account(4)]),
        Err(ExecuteError::TableFull { table: Table::Accounts })
    );
    assert_eq!(ledger.state_machine.accounts().len(), 3);
}

#[test]
fn full_transfers_table_counts_burned_ids_and_rejects_the_whole_batch() {
    let mut ledger = Ledger::with_config(config_with(|c| c.transfers_max = 3));
    ledger.create_accounts_ok(&[account(1), account(2)]);
    ledger.create_transfers_ok(&[transfer(10, 1, 2, 1)]);
    assert_eq!(ledger.create_transfers(&[transfer(11, 1, 9, 1)]), [T::CreditAccountNotFound]); // Burns 11.
    let accounts = ledger.state_machine.accounts().to_vec();
    let transfers = ledger.state_machine.transfers().to_vec();
    let batch = [transfer(12, 1, 2, 1), transfer(13, 1, 2, 1)];
    assert_eq!(ledger.try_create_transfers(&batch), Err(ExecuteError::TableFull { table: Table::Transfers }));
    assert_nothing_applied(&ledger, &accounts, &transfers);
    ledger.create_transfers_ok(&batch[..1]);
    assert_eq!(
        ledger.try_create_transfers(&[transfer(13, 1, 2, 1)]),
        Err(ExecuteError::TableFull { table: Table::Transfers })
    );
    assert_eq!(ledger.account(1).unwrap().debits_posted, 2);
}

#[test]
fn full_expiries_table_rejects_pending_transfers_with_a_timeout() {
    let mut ledger = Ledger::with_config(config_with(|c| c.expiries_max = 2));
    ledger.create_accounts_ok(&[account(1), account(2)]);
    ledger.create_transfers_ok(&[pending(10, 1, 2, 1, 5)]);
    let accounts = ledger.state_machine.accounts().to_vec();
    let transfers = ledger.state_machine.transfers().to_vec();
    let batch = [pending(11, 1, 2, 1, 5), pending(12, 1, 2, 1, 5)];
    assert_eq!(ledger.try_create_transfers(&batch), Err(ExecuteError::TableFull { table: Table::Expiries }));
    assert_nothing_applied(&ledger, &accounts, &transfers);
    // Transfers that cannot queue an expiry still fit.
    ledger.create_transfers_ok(&[pending(13, 1, 2, 1, 0), transfer(14, 1, 2, 1), pending(15, 1, 2, 1, 5)]);
    assert_eq!(
        ledger.try_create_transfers(&[pending(16, 1, 2, 1, 5)]),
        Err(ExecuteError::TableFull { table: Table::Expiries })
    );
    // Resolving a pending transfer frees its expiry.
    ledger.create_transfers_ok(&[void(17, 10, 0)]);
    ledger.create_transfers_ok(&[pending(16, 1, 2, 1, 5)]);
}

#[test]
fn full_history_table_rejects_transfers_touching_history_accounts() {
    let mut ledger = Ledger::with_config(config_with(|c| c.history_max = 2));
    ledger.create_accounts_ok(&[account_with(1, AccountFlags::HISTORY), account(2), account(3)]);
    ledger.create_transfers_ok(&[transfer(10, 2, 1, 1)]);
    let accounts = ledger.state_machine.accounts().to_vec();
    let transfers = ledger.state_machine.transfers().to_vec();
    let batch = [transfer(11, 2, 1, 1), transfer(12, 1, 2, 1)];
    assert_eq!(ledger.try_create_transfers(&batch), Err(ExecuteError::TableFull { table: Table::History }));
    assert_nothing_applied(&ledger, &accounts, &transfers);
    ledger.create_transfers_ok(&batch[..1]);
    assert_eq!(ledger.account_balances(&account_filter(1)).len(), 2);
    assert_eq!(
        ledger.try_create_transfers(&[transfer(12, 1, 2, 1)]),
        Err(ExecuteError::TableFull { table: Table::History })
    );
    // Transfers between accounts without history record no snapshot and still fit.
    ledger.create_transfers_ok(&[transfer(13, 2, 3, 1), transfer(14, 3, 2, 1)]);
}
