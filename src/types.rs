//! The records of the ledger with their exact byte layouts (`docs/` and the data-model spec §1):
//! accounts, transfers, balances, filters, create results, their flags and status codes.
//!
//! Every record is `#[repr(C)]`, `bytemuck::Pod`, has no implicit padding, and has its size and
//! alignment asserted at compile time, so a batch of records is read from a message body or a
//! disk block without copying or parsing.

use bytemuck::{Pod, Zeroable};

use crate::constants::{CREATE_RESULT_SIZE, QUERY_FILTER_SIZE, RECORD_SIZE};

/// Defines a `u16`/`u32` flag set: named bits, the mask of reserved (must-be-zero) bits, and
/// the names used by the JSON form.
macro_rules! flags {
    (
        $(#[$meta:meta])*
        $name:ident: $int:ty, reserved = $reserved:expr,
        { $($(#[$fmeta:meta])* $flag:ident = $bit:expr, $flag_name:literal;)* }
    ) => {
        $(#[$meta])*
        #[repr(transparent)]
        #[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Pod, Zeroable)]
        pub struct $name(pub $int);

        impl $name {
            $($(#[$fmeta])* pub const $flag: $name = $name($bit);)*
            /// The bits that must be zero.
            pub const RESERVED: $int = $reserved;
            /// Every named flag with its JSON name, in bit order.
            pub const NAMED: &'static [($name, &'static str)] = &[$(($name::$flag, $flag_name)),*];

            /// Returns true if every bit of `other` is set in `self`.
            #[inline]
            pub const fn contains(self, other: $name) -> bool {
                self.0 & other.0 == other.0
            }

            /// Returns `self` with the bits of `other` set.
            #[inline]
            #[must_use]
            pub const fn with(self, other: $name) -> $name {
                $name(self.0 | other.0)
            }

            /// Returns `self` with the bits of `other` cleared.
            #[inline]
            #[must_use]
            pub const fn without(self, other: $name) -> $name {
                $name(self.0 & !other.0)
            }

            /// Returns true if any reserved bit is set.
            #[inline]
            pub const fn has_reserved(self) -> bool {
                self.0 & Self::RESERVED != 0
            }
        }

        impl core::fmt::Debug for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                let mut list = f.debug_list();
                for (flag, name) in Self::NAMED {
                    if self.contains(*flag) {
                        list.entry(name);
                    }
                }
                if self.has_reserved() {
                    list.entry(&format_args!("{:#x}", self.0 & Self::RESERVED));
                }
                list.finish()
            }
        }
    };
}

flags! {
    /// `Account.flags` (spec §1.2).
    AccountFlags: u16, reserved = 0xFFC0, {
        /// Chains this event with the next one in the batch.
        LINKED = 1 << 0, "linked";
        /// Rejects transfers that would make debits exceed posted credits.
        DEBITS_MUST_NOT_EXCEED_CREDITS = 1 << 1, "debits_must_not_exceed_credits";
        /// Rejects transfers that would make credits exceed posted debits.
        CREDITS_MUST_NOT_EXCEED_DEBITS = 1 << 2, "credits_must_not_exceed_debits";
        /// Keeps a balance snapshot per transfer, for `get_account_balances`.
        HISTORY = 1 << 3, "history";
        /// The account carries a user-supplied timestamp.
        IMPORTED = 1 << 4, "imported";
        /// The account rejects new transfers except voids of pending transfers.
        CLOSED = 1 << 5, "closed";
    }
}

flags! {
    /// `Transfer.flags` (spec §1.4).
    TransferFlags: u16, reserved = 0xFE00, {
        /// Chains this event with the next one in the batch.
        LINKED = 1 << 0, "linked";
        /// Reserves the amount until posted, voided or expired.
        PENDING = 1 << 1, "pending";
        /// Posts (part of) a pending transfer.
        POST_PENDING_TRANSFER = 1 << 2, "post_pending_transfer";
        /// Voids a pending transfer.
        VOID_PENDING_TRANSFER = 1 << 3, "void_pending_transfer";
        /// Moves at most what the debit account's balance allows.
        BALANCING_DEBIT = 1 << 4, "balancing_debit";
        /// Moves at most what the credit account's balance allows.
        BALANCING_CREDIT = 1 << 5, "balancing_credit";
        /// Closes the debit account (pending transfers only).
        CLOSING_DEBIT = 1 << 6, "closing_debit";
        /// Closes the credit account (pending transfers only).
        CLOSING_CREDIT = 1 << 7, "closing_credit";
        /// The transfer carries a user-supplied timestamp.
        IMPORTED = 1 << 8, "imported";
    }
}

flags! {
    /// `AccountFilter.flags` (spec §1.6).
    AccountFilterFlags: u32, reserved = !0b111, {
        /// Matches transfers that debit the account.
        DEBITS = 1 << 0, "debits";
        /// Matches transfers that credit the account.
        CREDITS = 1 << 1, "credits";
        /// Returns results in descending timestamp order.
        REVERSED = 1 << 2, "reversed";
    }
}

flags! {
    /// `QueryFilter.flags` (spec §1.7).
    QueryFilterFlags: u32, reserved = !0b1, {
        /// Returns results in descending timestamp order.
        REVERSED = 1 << 0, "reversed";
    }
}

/// An account (spec §1.1): 128 bytes, 16-byte aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Account {
    /// Client-chosen unique key; not 0, not `u128::MAX`.
    pub id: u128,
    /// Sum of amounts reserved by pending transfers debiting this account.
    pub debits_pending: u128,
    /// Sum of posted debits.
    pub debits_posted: u128,
    /// Sum of amounts reserved by pending transfers crediting this account.
    pub credits_pending: u128,
    /// Sum of posted credits.
    pub credits_posted: u128,
    /// Opaque user data; 0 means none.
    pub user_data_128: u128,
    /// Opaque user data; 0 means none.
    pub user_data_64: u64,
    /// Opaque user data; 0 means none.
    pub user_data_32: u32,
    /// Must be zero.
    pub reserved: u32,
    /// The partition of accounts that may transact together; not 0.
    pub ledger: u32,
    /// User-defined category; not 0.
    pub code: u16,
    /// See [`AccountFlags`].
    pub flags: AccountFlags,
    /// Creation time in nanoseconds, assigned by the cluster unless imported.
    pub timestamp: u64,
}

/// A transfer (spec §1.3): 128 bytes, 16-byte aligned.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct Transfer {
    /// Client-chosen unique key; not 0, not `u128::MAX`.
    pub id: u128,
    /// The account debited (0 on post/void means: inherit from the pending transfer).
    pub debit_account_id: u128,
    /// The account credited (0 on post/void means: inherit from the pending transfer).
    pub credit_account_id: u128,
    /// The amount moved; see the spec for its meaning on balancing, post and void.
    pub amount: u128,
    /// For post/void: the id of the pending transfer; otherwise 0.
    pub pending_id: u128,
    /// Opaque user data; 0 means none (on post/void: inherit).
    pub user_data_128: u128,
    /// Opaque user data; 0 means none (on post/void: inherit).
    pub user_data_64: u64,
    /// Opaque user data; 0 means none (on post/void: inherit).
    pub user_data_32: u32,
    /// Seconds after `timestamp` at which a pending transfer expires; 0 means never.
    pub timeout: u32,
    /// Ledger of both accounts; not 0 (on post/void: 0 means inherit).
    pub ledger: u32,
    /// User-defined category; not 0 (on post/void: 0 means inherit).
    pub code: u16,
    /// See [`TransferFlags`].
    pub flags: TransferFlags,
    /// Creation time in nanoseconds, assigned by the cluster unless imported.
    pub timestamp: u64,
}

/// An account's balances immediately after one transfer (spec §1.5).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct AccountBalance {
    /// The account's `debits_pending` after the transfer.
    pub debits_pending: u128,
    /// The account's `debits_posted` after the transfer.
    pub debits_posted: u128,
    /// The account's `credits_pending` after the transfer.
    pub credits_pending: u128,
    /// The account's `credits_posted` after the transfer.
    pub credits_posted: u128,
    /// The timestamp of the transfer that produced this balance.
    pub timestamp: u64,
    /// Always zero.
    pub reserved: [u8; 56],
}

impl Default for AccountBalance {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

/// The event of `get_account_transfers` and `get_account_balances` (spec §1.6).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct AccountFilter {
    /// The account whose transfers are selected; not 0, not `u128::MAX`.
    pub account_id: u128,
    /// 0, or the `user_data_128` the transfers must have.
    pub user_data_128: u128,
    /// 0, or the `user_data_64` the transfers must have.
    pub user_data_64: u64,
    /// 0, or the `user_data_32` the transfers must have.
    pub user_data_32: u32,
    /// 0, or the `code` the transfers must have.
    pub code: u16,
    /// Must be all zero.
    pub reserved: [u8; 58],
    /// Inclusive lower bound on the transfer timestamp; 0 means unbounded.
    pub timestamp_min: u64,
    /// Inclusive upper bound on the transfer timestamp; 0 means unbounded.
    pub timestamp_max: u64,
    /// The most results; not 0 (capped at `QUERY_RESULTS_MAX`).
    pub limit: u32,
    /// See [`AccountFilterFlags`].
    pub flags: AccountFilterFlags,
}

impl Default for AccountFilter {
    fn default() -> Self {
        Zeroable::zeroed()
    }
}

/// The event of `query_accounts` and `query_transfers` (spec §1.7).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct QueryFilter {
    /// 0, or the `user_data_128` the objects must have.
    pub user_data_128: u128,
    /// 0, or the `user_data_64` the objects must have.
    pub user_data_64: u64,
    /// 0, or the `user_data_32` the objects must have.
    pub user_data_32: u32,
    /// 0, or the `ledger` the objects must have.
    pub ledger: u32,
    /// 0, or the `code` the objects must have.
    pub code: u16,
    /// Must be all zero.
    pub reserved: [u8; 6],
    /// Inclusive lower bound on the timestamp; 0 means unbounded.
    pub timestamp_min: u64,
    /// Inclusive upper bound on the timestamp; 0 means unbounded.
    pub timestamp_max: u64,
    /// The most results; not 0 (capped at `QUERY_RESULTS_MAX`).
    pub limit: u32,
    /// See [`QueryFilterFlags`].
    pub flags: QueryFilterFlags,
}

/// The result of one create event (spec §1.8): the status and the timestamp of the object (for
/// `created`/`exists`) or of the event's slot (for every other status).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CreateResult {
    /// See spec §1.8.
    pub timestamp: u64,
    /// A [`CreateAccountStatus`] or [`CreateTransferStatus`] value.
    pub status: u32,
    /// Always zero.
    pub reserved: u32,
}

impl CreateResult {
    /// A result with the given status code and timestamp.
    pub const fn new(timestamp: u64, status: u32) -> CreateResult {
        CreateResult { timestamp, status, reserved: 0 }
    }
}

/// Defines a `u32` status enum with exact values, names, and a checked conversion from `u32`.
macro_rules! status {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:expr, $vname:literal;)* }
    ) => {
        $(#[$meta])*
        #[repr(u32)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $(
                #[doc = concat!("`", $vname, "` (", stringify!($value), ").")]
                $(#[$vmeta])*
                $variant = $value,
            )*
        }

        impl $name {
            /// Every status, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            /// The status with this numeric value, if there is one.
            pub const fn from_u32(value: u32) -> Option<$name> {
                match value {
                    $($value => Some($name::$variant),)*
                    _ => None,
                }
            }

            /// The status's name, as in the spec and the JSON form.
            pub const fn name(self) -> &'static str {
                match self {
                    $($name::$variant => $vname,)*
                }
            }

            /// The status with this name, if there is one.
            pub fn from_name(name: &str) -> Option<$name> {
                Self::ALL.iter().copied().find(|status| status.name() == name)
            }
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}

status! {
    /// The status of one `create_accounts` event (spec §2.1).
    CreateAccountStatus {
        /// Legacy success code; never produced in dense results.
        DeprecatedOk = 0, "deprecated_ok";
        LinkedEventFailed = 1, "linked_event_failed";
        LinkedEventChainOpen = 2, "linked_event_chain_open";
        TimestampMustBeZero = 3, "timestamp_must_be_zero";
        ReservedField = 4, "reserved_field";
        ReservedFlag = 5, "reserved_flag";
        IdMustNotBeZero = 6, "id_must_not_be_zero";
        IdMustNotBeIntMax = 7, "id_must_not_be_int_max";
        FlagsAreMutuallyExclusive = 8, "flags_are_mutually_exclusive";
        DebitsPendingMustBeZero = 9, "debits_pending_must_be_zero";
        DebitsPostedMustBeZero = 10, "debits_posted_must_be_zero";
        CreditsPendingMustBeZero = 11, "credits_pending_must_be_zero";
        CreditsPostedMustBeZero = 12, "credits_posted_must_be_zero";
        LedgerMustNotBeZero = 13, "ledger_must_not_be_zero";
        CodeMustNotBeZero = 14, "code_must_not_be_zero";
        ExistsWithDifferentFlags = 15, "exists_with_different_flags";
        ExistsWithDifferentUserData128 = 16, "exists_with_different_user_data_128";
        ExistsWithDifferentUserData64 = 17, "exists_with_different_user_data_64";
        ExistsWithDifferentUserData32 = 18, "exists_with_different_user_data_32";
        ExistsWithDifferentLedger = 19, "exists_with_different_ledger";
        ExistsWithDifferentCode = 20, "exists_with_different_code";
        Exists = 21, "exists";
        ImportedEventExpected = 22, "imported_event_expected";
        ImportedEventNotExpected = 23, "imported_event_not_expected";
        ImportedEventTimestampOutOfRange = 24, "imported_event_timestamp_out_of_range";
        ImportedEventTimestampMustNotAdvance = 25, "imported_event_timestamp_must_not_advance";
        ImportedEventTimestampMustNotRegress = 26, "imported_event_timestamp_must_not_regress";
        Created = 0xFFFF_FFFF, "created";
    }
}

status! {
    /// The status of one `create_transfers` event (spec §2.2).
    CreateTransferStatus {
        /// Legacy success code; never produced in dense results.
        DeprecatedOk = 0, "deprecated_ok";
        LinkedEventFailed = 1, "linked_event_failed";
        LinkedEventChainOpen = 2, "linked_event_chain_open";
        TimestampMustBeZero = 3, "timestamp_must_be_zero";
        ReservedFlag = 4, "reserved_flag";
        IdMustNotBeZero = 5, "id_must_not_be_zero";
        IdMustNotBeIntMax = 6, "id_must_not_be_int_max";
        FlagsAreMutuallyExclusive = 7, "flags_are_mutually_exclusive";
        DebitAccountIdMustNotBeZero = 8, "debit_account_id_must_not_be_zero";
        DebitAccountIdMustNotBeIntMax = 9, "debit_account_id_must_not_be_int_max";
        CreditAccountIdMustNotBeZero = 10, "credit_account_id_must_not_be_zero";
        CreditAccountIdMustNotBeIntMax = 11, "credit_account_id_must_not_be_int_max";
        AccountsMustBeDifferent = 12, "accounts_must_be_different";
        PendingIdMustBeZero = 13, "pending_id_must_be_zero";
        PendingIdMustNotBeZero = 14, "pending_id_must_not_be_zero";
        PendingIdMustNotBeIntMax = 15, "pending_id_must_not_be_int_max";
        PendingIdMustBeDifferent = 16, "pending_id_must_be_different";
        TimeoutReservedForPendingTransfer = 17, "timeout_reserved_for_pending_transfer";
        /// Retired (clients older than 0.16.0); never produced.
        AmountMustNotBeZero = 18, "amount_must_not_be_zero";
        LedgerMustNotBeZero = 19, "ledger_must_not_be_zero";
        CodeMustNotBeZero = 20, "code_must_not_be_zero";
        DebitAccountNotFound = 21, "debit_account_not_found";
        CreditAccountNotFound = 22, "credit_account_not_found";
        AccountsMustHaveTheSameLedger = 23, "accounts_must_have_the_same_ledger";
        TransferMustHaveTheSameLedgerAsAccounts = 24, "transfer_must_have_the_same_ledger_as_accounts";
        PendingTransferNotFound = 25, "pending_transfer_not_found";
        PendingTransferNotPending = 26, "pending_transfer_not_pending";
        PendingTransferHasDifferentDebitAccountId = 27, "pending_transfer_has_different_debit_account_id";
        PendingTransferHasDifferentCreditAccountId = 28, "pending_transfer_has_different_credit_account_id";
        PendingTransferHasDifferentLedger = 29, "pending_transfer_has_different_ledger";
        PendingTransferHasDifferentCode = 30, "pending_transfer_has_different_code";
        ExceedsPendingTransferAmount = 31, "exceeds_pending_transfer_amount";
        PendingTransferHasDifferentAmount = 32, "pending_transfer_has_different_amount";
        PendingTransferAlreadyPosted = 33, "pending_transfer_already_posted";
        PendingTransferAlreadyVoided = 34, "pending_transfer_already_voided";
        PendingTransferExpired = 35, "pending_transfer_expired";
        ExistsWithDifferentFlags = 36, "exists_with_different_flags";
        ExistsWithDifferentDebitAccountId = 37, "exists_with_different_debit_account_id";
        ExistsWithDifferentCreditAccountId = 38, "exists_with_different_credit_account_id";
        ExistsWithDifferentAmount = 39, "exists_with_different_amount";
        ExistsWithDifferentPendingId = 40, "exists_with_different_pending_id";
        ExistsWithDifferentUserData128 = 41, "exists_with_different_user_data_128";
        ExistsWithDifferentUserData64 = 42, "exists_with_different_user_data_64";
        ExistsWithDifferentUserData32 = 43, "exists_with_different_user_data_32";
        ExistsWithDifferentTimeout = 44, "exists_with_different_timeout";
        ExistsWithDifferentCode = 45, "exists_with_different_code";
        Exists = 46, "exists";
        OverflowsDebitsPending = 47, "overflows_debits_pending";
        OverflowsCreditsPending = 48, "overflows_credits_pending";
        OverflowsDebitsPosted = 49, "overflows_debits_posted";
        OverflowsCreditsPosted = 50, "overflows_credits_posted";
        OverflowsDebits = 51, "overflows_debits";
        OverflowsCredits = 52, "overflows_credits";
        OverflowsTimeout = 53, "overflows_timeout";
        ExceedsCredits = 54, "exceeds_credits";
        ExceedsDebits = 55, "exceeds_debits";
        ImportedEventExpected = 56, "imported_event_expected";
        ImportedEventNotExpected = 57, "imported_event_not_expected";
        ImportedEventTimestampOutOfRange = 58, "imported_event_timestamp_out_of_range";
        ImportedEventTimestampMustNotAdvance = 59, "imported_event_timestamp_must_not_advance";
        ImportedEventTimestampMustNotRegress = 60, "imported_event_timestamp_must_not_regress";
        ImportedEventTimestampMustPostdateDebitAccount = 61, "imported_event_timestamp_must_postdate_debit_account";
        ImportedEventTimestampMustPostdateCreditAccount = 62, "imported_event_timestamp_must_postdate_credit_account";
        ImportedEventTimeoutMustBeZero = 63, "imported_event_timeout_must_be_zero";
        ClosingTransferMustBePending = 64, "closing_transfer_must_be_pending";
        DebitAccountAlreadyClosed = 65, "debit_account_already_closed";
        CreditAccountAlreadyClosed = 66, "credit_account_already_closed";
        ExistsWithDifferentLedger = 67, "exists_with_different_ledger";
        IdAlreadyFailed = 68, "id_already_failed";
        Created = 0xFFFF_FFFF, "created";
    }
}

impl CreateAccountStatus {
    /// The statuses the state machine can produce (all but the legacy `deprecated_ok`).
    pub fn is_live(self) -> bool {
        self != CreateAccountStatus::DeprecatedOk
    }
}

impl CreateTransferStatus {
    /// The statuses the state machine can produce (all but `deprecated_ok` and the retired 18).
    pub fn is_live(self) -> bool {
        !matches!(self, CreateTransferStatus::DeprecatedOk | CreateTransferStatus::AmountMustNotBeZero)
    }

    /// Transient statuses depend on the database state, not on the event; an id that fails with
    /// one is burned forever (spec §6.3).
    pub fn is_transient(self) -> bool {
        matches!(
            self,
            CreateTransferStatus::DebitAccountNotFound
                | CreateTransferStatus::CreditAccountNotFound
                | CreateTransferStatus::PendingTransferNotFound
                | CreateTransferStatus::ExceedsCredits
                | CreateTransferStatus::ExceedsDebits
                | CreateTransferStatus::DebitAccountAlreadyClosed
                | CreateTransferStatus::CreditAccountAlreadyClosed
        )
    }
}

/// The internal state of a pending transfer (spec §1.9).
#[repr(u8)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Zeroable, bytemuck::NoUninit)]
pub enum TransferPendingStatus {
    /// Not a pending transfer.
    #[default]
    None = 0,
    /// Reserved and not yet resolved.
    Pending = 1,
    /// Resolved by a post.
    Posted = 2,
    /// Resolved by a void.
    Voided = 3,
    /// Resolved by its timeout.
    Expired = 4,
}

impl TransferPendingStatus {
    /// The status with this code, if there is one.
    pub const fn from_u8(code: u8) -> Option<TransferPendingStatus> {
        Some(match code {
            0 => TransferPendingStatus::None,
            1 => TransferPendingStatus::Pending,
            2 => TransferPendingStatus::Posted,
            3 => TransferPendingStatus::Voided,
            4 => TransferPendingStatus::Expired,
            _ => return None,
        })
    }
}

const _: () = {
    use core::mem::{align_of, size_of};
    assert!(size_of::<Account>() == RECORD_SIZE && align_of::<Account>() == 16);
    assert!(size_of::<Transfer>() == RECORD_SIZE && align_of::<Transfer>() == 16);
    assert!(size_of::<AccountBalance>() == RECORD_SIZE && align_of::<AccountBalance>() == 16);
    assert!(size_of::<AccountFilter>() == RECORD_SIZE);
    assert!(size_of::<QueryFilter>() == QUERY_FILTER_SIZE);
    assert!(size_of::<CreateResult>() == CREATE_RESULT_SIZE && align_of::<CreateResult>() == 8);
    assert!(core::mem::offset_of!(Account, timestamp) == 120);
    assert!(core::mem::offset_of!(Transfer, timeout) == 108);
    assert!(core::mem::offset_of!(AccountFilter, timestamp_min) == 104);
    assert!(core::mem::offset_of!(QueryFilter, timestamp_min) == 40);
    assert!(core::mem::offset_of!(QueryFilter, flags) == 60);
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_values_match_the_spec() {
        assert_eq!(CreateAccountStatus::ALL.len(), 28);
        assert_eq!(CreateTransferStatus::ALL.len(), 70);
        assert_eq!(CreateTransferStatus::IdAlreadyFailed as u32, 68);
        assert_eq!(CreateTransferStatus::ExistsWithDifferentLedger as u32, 67);
        assert_eq!(CreateAccountStatus::Created as u32, 0xFFFF_FFFF);
        for (index, status) in CreateTransferStatus::ALL.iter().enumerate() {
            let value = *status as u32;
            assert_eq!(CreateTransferStatus::from_u32(value), Some(*status));
            assert_eq!(CreateTransferStatus::from_name(status.name()), Some(*status));
            if *status != CreateTransferStatus::Created {
                assert_eq!(value as usize, index);
            }
        }
        for (index, status) in CreateAccountStatus::ALL.iter().enumerate() {
            assert_eq!(CreateAccountStatus::from_u32(*status as u32), Some(*status));
            if *status != CreateAccountStatus::Created {
                assert_eq!(*status as u32 as usize, index);
            }
        }
        assert_eq!(CreateTransferStatus::from_u32(69), None);
        assert_eq!(CreateAccountStatus::from_u32(27), None);
    }

    #[test]
    fn transient_statuses_are_exactly_the_seven_of_the_spec() {
        let transient: Vec<u32> = CreateTransferStatus::ALL
            .iter()
            .filter(|status| status.is_transient())
            .map(|status| *status as u32)
            .collect();
        assert_eq!(transient, [21, 22, 25, 54, 55, 65, 66]);
    }

    #[test]
    fn record_fields_sit_at_the_spec_offsets() {
        let mut account = Account::zeroed();
        account.ledger = 0x0403_0201;
        account.code = 0x0605;
        account.flags = AccountFlags::HISTORY;
        let bytes = bytemuck::bytes_of(&account);
        assert_eq!(&bytes[112..120], &[1, 2, 3, 4, 5, 6, 8, 0]);
        let mut transfer = Transfer::zeroed();
        transfer.amount = 1;
        transfer.timestamp = 2;
        let bytes = bytemuck::bytes_of(&transfer);
        assert_eq!(bytes[48], 1);
        assert_eq!(bytes[120], 2);
    }

    #[test]
    fn flags_report_reserved_bits() {
        assert!(AccountFlags(0x0040).has_reserved());
        assert!(!AccountFlags(0x003F).has_reserved());
        assert!(TransferFlags(0x0200).has_reserved());
        assert!(!TransferFlags(0x01FF).has_reserved());
        assert!(AccountFilterFlags(8).has_reserved());
        assert!(QueryFilterFlags(2).has_reserved());
        assert_eq!(
            format!("{:?}", TransferFlags::PENDING.with(TransferFlags::LINKED)),
            r#"["linked", "pending"]"#
        );
    }
}
