//! The JSON form of every record and create result (`docs/json.md`), used by the `ledger client`
//! CLI: one JSON event per input line, one JSON result per output line.
//!
//! `u128` fields are written as decimal strings because JSON numbers are doubles in most readers
//! (exact only up to 2^53) and serde_json itself reads integers above `u64::MAX` as doubles;
//! narrower integers are written as JSON numbers. Input is strict: an integer field takes a
//! non-negative JSON integer or a string of decimal digits and nothing else, an unknown field or
//! flag name is an error, and every error names the field and says what to write instead. A
//! missing field is 0, so a user writes only the fields an event needs.
//!
//! Nothing here panics on input: every value a user can write either converts exactly or yields a
//! [`JsonError`].

use serde_json::{Map, Number, Value};

use crate::types::{
    Account, AccountBalance, AccountFilter, AccountFilterFlags, AccountFlags, CreateAccountStatus,
    CreateResult, CreateTransferStatus, QueryFilter, QueryFilterFlags, Transfer, TransferFlags,
};

/// The most characters of an offending input value quoted in an error message, so that a huge
/// line does not produce a huge error.
const ERROR_VALUE_CHARS_MAX: usize = 64;

/// 2^64 as a double: JSON numbers at or above it were read by serde_json as doubles, not exactly.
const TWO_POW_64: f64 = 18_446_744_073_709_551_616.0;

const _: () = assert!(TWO_POW_64 == u64::MAX as f64);

/// Why a JSON value is not a valid record or event. Every message names the field at fault and
/// says what to write instead.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JsonError {
    /// The line is not valid JSON.
    #[error("invalid JSON: {message}; write one JSON value per line")]
    Syntax {
        /// serde_json's description of the problem, with line and column.
        message: String,
    },
    /// A record is not a JSON object.
    #[error("expected {record} as a JSON object, e.g. {example}, got {got}")]
    NotAnObject {
        /// The kind of record expected ("an account", "a transfer", ...).
        record: &'static str,
        /// A short valid example.
        example: &'static str,
        /// The value given, as JSON (truncated).
        got: String,
    },
    /// An object has a field the record does not have.
    #[error("unknown field \"{field}\" in {record}; the fields are: {}", .fields.join(", "))]
    UnknownField {
        /// The kind of record expected.
        record: &'static str,
        /// The unknown field's name (truncated).
        field: String,
        /// Every field the record has.
        fields: &'static [&'static str],
    },
    /// An integer field holds something other than an unsigned integer.
    #[error("field \"{field}\": expected an unsigned integer (number or decimal string), got {got}")]
    NotAnInteger {
        /// The field's name.
        field: &'static str,
        /// The value given, as JSON (truncated).
        got: String,
    },
    /// An integer field holds an integer too large for its type.
    #[error("field \"{field}\": {got} is out of range; a {kind} field holds at most {max}")]
    OutOfRange {
        /// The field's name.
        field: &'static str,
        /// The value given, as JSON (truncated).
        got: String,
        /// The field's type: "u16", "u32", "u64" or "u128".
        kind: &'static str,
        /// The largest value of the field's type.
        max: u128,
    },
    /// A `u128` field holds a JSON number too large to have been read exactly.
    #[error(
        "field \"{field}\": JSON numbers above 18446744073709551615 are not exact (read as {got}); \
         write the value as a decimal string, e.g. \"340282366920938463463374607431768211455\""
    )]
    InexactNumber {
        /// The field's name.
        field: &'static str,
        /// The number as it was read (a double).
        got: String,
    },
    /// A flags field is not an array of strings.
    #[error("field \"{field}\": expected an array of flag names, e.g. [\"{example}\"], got {got}")]
    NotAFlagList {
        /// The field's name.
        field: &'static str,
        /// One valid flag name.
        example: &'static str,
        /// The value given, as JSON (truncated).
        got: String,
    },
    /// A flags field names a flag the record does not have.
    #[error("field \"{field}\": unknown flag \"{name}\"; the flags are: {expected}")]
    UnknownFlag {
        /// The field's name.
        field: &'static str,
        /// The unknown name (truncated).
        name: String,
        /// Every valid flag name, comma separated.
        expected: String,
    },
    /// A reserved field holds something other than 0.
    #[error("field \"{field}\": must be 0 or left out (reserved for future use), got {got}")]
    ReservedNotZero {
        /// The field's name.
        field: &'static str,
        /// The value given, as JSON (truncated).
        got: String,
    },
}

/// Parses one input line as a JSON value; the error carries serde_json's message.
pub fn parse_line(line: &str) -> Result<Value, JsonError> {
    serde_json::from_str(line).map_err(|error| JsonError::Syntax { message: error.to_string() })
}

// ---------------------------------------------------------------------------------------------
// Records → JSON.

/// The JSON form of an account: every field but `reserved`.
pub fn account_to_json(account: &Account) -> Value {
    object([
        ("id", u128_to_json(account.id)),
        ("debits_pending", u128_to_json(account.debits_pending)),
        ("debits_posted", u128_to_json(account.debits_posted)),
        ("credits_pending", u128_to_json(account.credits_pending)),
        ("credits_posted", u128_to_json(account.credits_posted)),
        ("user_data_128", u128_to_json(account.user_data_128)),
        ("user_data_64", Value::from(account.user_data_64)),
        ("user_data_32", Value::from(account.user_data_32)),
        ("ledger", Value::from(account.ledger)),
        ("code", Value::from(account.code)),
        ("flags", flags_to_json(account.flags)),
        ("timestamp", Value::from(account.timestamp)),
    ])
}

/// The JSON form of a transfer: every field.
pub fn transfer_to_json(transfer: &Transfer) -> Value {
    object([
        ("id", u128_to_json(transfer.id)),
        ("debit_account_id", u128_to_json(transfer.debit_account_id)),
        ("credit_account_id", u128_to_json(transfer.credit_account_id)),
        ("amount", u128_to_json(transfer.amount)),
        ("pending_id", u128_to_json(transfer.pending_id)),
        ("user_data_128", u128_to_json(transfer.user_data_128)),
        ("user_data_64", Value::from(transfer.user_data_64)),
        ("user_data_32", Value::from(transfer.user_data_32)),
        ("timeout", Value::from(transfer.timeout)),
        ("ledger", Value::from(transfer.ledger)),
        ("code", Value::from(transfer.code)),
        ("flags", flags_to_json(transfer.flags)),
        ("timestamp", Value::from(transfer.timestamp)),
    ])
}

/// The JSON form of an account balance: every field but `reserved`.
pub fn account_balance_to_json(balance: &AccountBalance) -> Value {
    object([
        ("debits_pending", u128_to_json(balance.debits_pending)),
        ("debits_posted", u128_to_json(balance.debits_posted)),
        ("credits_pending", u128_to_json(balance.credits_pending)),
        ("credits_posted", u128_to_json(balance.credits_posted)),
        ("timestamp", Value::from(balance.timestamp)),
    ])
}

/// The JSON form of an account filter: every field but `reserved`.
pub fn account_filter_to_json(filter: &AccountFilter) -> Value {
    object([
        ("account_id", u128_to_json(filter.account_id)),
        ("user_data_128", u128_to_json(filter.user_data_128)),
        ("user_data_64", Value::from(filter.user_data_64)),
        ("user_data_32", Value::from(filter.user_data_32)),
        ("code", Value::from(filter.code)),
        ("timestamp_min", Value::from(filter.timestamp_min)),
        ("timestamp_max", Value::from(filter.timestamp_max)),
        ("limit", Value::from(filter.limit)),
        ("flags", flags_to_json(filter.flags)),
    ])
}

/// The JSON form of a query filter: every field but `reserved`.
pub fn query_filter_to_json(filter: &QueryFilter) -> Value {
    object([
        ("user_data_128", u128_to_json(filter.user_data_128)),
        ("user_data_64", Value::from(filter.user_data_64)),
        ("user_data_32", Value::from(filter.user_data_32)),
        ("ledger", Value::from(filter.ledger)),
        ("code", Value::from(filter.code)),
        ("timestamp_min", Value::from(filter.timestamp_min)),
        ("timestamp_max", Value::from(filter.timestamp_max)),
        ("limit", Value::from(filter.limit)),
        ("flags", flags_to_json(filter.flags)),
    ])
}

/// The JSON form of the result of `create_accounts` event `index`:
/// `{"index": 0, "timestamp": 1, "status": "created"}`. A status code this build does not know
/// (a newer server) is written as its number rather than dropped.
pub fn create_account_result_to_json(index: usize, result: &CreateResult) -> Value {
    let status = CreateAccountStatus::from_u32(result.status).map(CreateAccountStatus::name);
    create_result_to_json(index, result, status)
}

/// The JSON form of the result of `create_transfers` event `index`; see
/// [`create_account_result_to_json`].
pub fn create_transfer_result_to_json(index: usize, result: &CreateResult) -> Value {
    let status = CreateTransferStatus::from_u32(result.status).map(CreateTransferStatus::name);
    create_result_to_json(index, result, status)
}

fn create_result_to_json(index: usize, result: &CreateResult, name: Option<&str>) -> Value {
    let status = match name {
        Some(name) => Value::from(name),
        None => Value::from(result.status),
    };
    object([("index", Value::from(index)), ("timestamp", Value::from(result.timestamp)), ("status", status)])
}

fn object<const N: usize>(entries: [(&str, Value); N]) -> Value {
    let map: Map<String, Value> = entries.into_iter().map(|(name, value)| (name.to_owned(), value)).collect();
    Value::Object(map)
}

fn u128_to_json(value: u128) -> Value {
    Value::String(value.to_string())
}

/// The names of the set flags in bit order. Reserved bits cannot be set in a stored record, but a
/// record from elsewhere (a buggy or newer peer) might carry them: they are written as
/// `reserved_bit_<n>` so that nothing is silently dropped. Input rejects those names.
fn flags_to_json<F: JsonFlags>(flags: F) -> Value {
    let mut names: Vec<Value> = F::named()
        .iter()
        .filter(|(flag, _)| flags.contains_all(*flag))
        .map(|(_, name)| Value::from(*name))
        .collect();
    let unnamed = flags.reserved_bits();
    for bit in 0..u32::BITS {
        if unnamed & (1 << bit) != 0 {
            names.push(Value::String(format!("reserved_bit_{bit}")));
        }
    }
    Value::Array(names)
}

// ---------------------------------------------------------------------------------------------
// JSON → records.

const ACCOUNT_FIELDS: &[&str] = &[
    "id",
    "debits_pending",
    "debits_posted",
    "credits_pending",
    "credits_posted",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "reserved",
    "ledger",
    "code",
    "flags",
    "timestamp",
];

const TRANSFER_FIELDS: &[&str] = &[
    "id",
    "debit_account_id",
    "credit_account_id",
    "amount",
    "pending_id",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "timeout",
    "ledger",
    "code",
    "flags",
    "timestamp",
];

const ACCOUNT_BALANCE_FIELDS: &[&str] =
    &["debits_pending", "debits_posted", "credits_pending", "credits_posted", "timestamp", "reserved"];

const ACCOUNT_FILTER_FIELDS: &[&str] = &[
    "account_id",
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "code",
    "reserved",
    "timestamp_min",
    "timestamp_max",
    "limit",
    "flags",
];

const QUERY_FILTER_FIELDS: &[&str] = &[
    "user_data_128",
    "user_data_64",
    "user_data_32",
    "ledger",
    "code",
    "reserved",
    "timestamp_min",
    "timestamp_max",
    "limit",
    "flags",
];

const ID_FIELDS: &[&str] = &["id"];

/// Reads an account (a `create_accounts` event). Missing fields are 0.
pub fn account_from_json(value: &Value) -> Result<Account, JsonError> {
    let example = r#"{"id": "1", "ledger": 1, "code": 1}"#;
    let fields = Fields::new(value, "an account", example, ACCOUNT_FIELDS)?;
    fields.check_reserved()?;
    Ok(Account {
        id: fields.uint("id")?,
        debits_pending: fields.uint("debits_pending")?,
        debits_posted: fields.uint("debits_posted")?,
        credits_pending: fields.uint("credits_pending")?,
        credits_posted: fields.uint("credits_posted")?,
        user_data_128: fields.uint("user_data_128")?,
        user_data_64: fields.uint("user_data_64")?,
        user_data_32: fields.uint("user_data_32")?,
        reserved: 0,
        ledger: fields.uint("ledger")?,
        code: fields.uint("code")?,
        flags: fields.flags()?,
        timestamp: fields.uint("timestamp")?,
    })
}

/// Reads a transfer (a `create_transfers` event). Missing fields are 0.
pub fn transfer_from_json(value: &Value) -> Result<Transfer, JsonError> {
    let example = concat!(
        r#"{"id": "1", "debit_account_id": "1", "credit_account_id": "2", "amount": "10", "#,
        r#""ledger": 1, "code": 1}"#
    );
    let fields = Fields::new(value, "a transfer", example, TRANSFER_FIELDS)?;
    Ok(Transfer {
        id: fields.uint("id")?,
        debit_account_id: fields.uint("debit_account_id")?,
        credit_account_id: fields.uint("credit_account_id")?,
        amount: fields.uint("amount")?,
        pending_id: fields.uint("pending_id")?,
        user_data_128: fields.uint("user_data_128")?,
        user_data_64: fields.uint("user_data_64")?,
        user_data_32: fields.uint("user_data_32")?,
        timeout: fields.uint("timeout")?,
        ledger: fields.uint("ledger")?,
        code: fields.uint("code")?,
        flags: fields.flags()?,
        timestamp: fields.uint("timestamp")?,
    })
}

/// Reads an account balance (the inverse of [`account_balance_to_json`]). Missing fields are 0.
pub fn account_balance_from_json(value: &Value) -> Result<AccountBalance, JsonError> {
    let example = r#"{"debits_posted": "10", "credits_posted": "20", "timestamp": 1}"#;
    let fields = Fields::new(value, "an account balance", example, ACCOUNT_BALANCE_FIELDS)?;
    fields.check_reserved()?;
    Ok(AccountBalance {
        debits_pending: fields.uint("debits_pending")?,
        debits_posted: fields.uint("debits_posted")?,
        credits_pending: fields.uint("credits_pending")?,
        credits_posted: fields.uint("credits_posted")?,
        timestamp: fields.uint("timestamp")?,
        reserved: [0; 56],
    })
}

/// Reads an account filter (the event of `get_account_transfers` and `get_account_balances`).
/// Missing fields are 0.
pub fn account_filter_from_json(value: &Value) -> Result<AccountFilter, JsonError> {
    let example = r#"{"account_id": "1", "limit": 10, "flags": ["debits", "credits"]}"#;
    let fields = Fields::new(value, "an account filter", example, ACCOUNT_FILTER_FIELDS)?;
    fields.check_reserved()?;
    Ok(AccountFilter {
        account_id: fields.uint("account_id")?,
        user_data_128: fields.uint("user_data_128")?,
        user_data_64: fields.uint("user_data_64")?,
        user_data_32: fields.uint("user_data_32")?,
        code: fields.uint("code")?,
        reserved: [0; 58],
        timestamp_min: fields.uint("timestamp_min")?,
        timestamp_max: fields.uint("timestamp_max")?,
        limit: fields.uint("limit")?,
        flags: fields.flags()?,
    })
}

/// Reads a query filter (the event of `query_accounts` and `query_transfers`). Missing fields
/// are 0.
pub fn query_filter_from_json(value: &Value) -> Result<QueryFilter, JsonError> {
    let example = r#"{"ledger": 1, "limit": 10}"#;
    let fields = Fields::new(value, "a query filter", example, QUERY_FILTER_FIELDS)?;
    fields.check_reserved()?;
    Ok(QueryFilter {
        user_data_128: fields.uint("user_data_128")?,
        user_data_64: fields.uint("user_data_64")?,
        user_data_32: fields.uint("user_data_32")?,
        ledger: fields.uint("ledger")?,
        code: fields.uint("code")?,
        reserved: [0; 6],
        timestamp_min: fields.uint("timestamp_min")?,
        timestamp_max: fields.uint("timestamp_max")?,
        limit: fields.uint("limit")?,
        flags: fields.flags()?,
    })
}

/// Reads an id (a `lookup_accounts` or `lookup_transfers` event): `{"id": "7"}`, or the bare
/// `"7"` or `7`. A missing `id` in the object form is 0, like every missing field.
pub fn id_from_json(value: &Value) -> Result<u128, JsonError> {
    if value.is_object() {
        let fields = Fields::new(value, "an id", r#"{"id": "1"}"#, ID_FIELDS)?;
        fields.uint("id")
    } else {
        read_uint("id", value)
    }
}

/// The fields of one input object, checked against the record's field names.
struct Fields<'a> {
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    fn new(
        value: &'a Value,
        record: &'static str,
        example: &'static str,
        names: &'static [&'static str],
    ) -> Result<Fields<'a>, JsonError> {
        let Value::Object(map) = value else {
            return Err(JsonError::NotAnObject { record, example, got: quote(value) });
        };
        if let Some(field) = map.keys().find(|field| !names.contains(&field.as_str())) {
            return Err(JsonError::UnknownField { record, field: truncate(field), fields: names });
        }
        Ok(Fields { map })
    }

    fn uint<T: Uint>(&self, field: &'static str) -> Result<T, JsonError> {
        match self.map.get(field) {
            None => Ok(T::default()),
            Some(value) => read_uint(field, value),
        }
    }

    fn flags<F: JsonFlags>(&self) -> Result<F, JsonError> {
        match self.map.get("flags") {
            None => Ok(F::default()),
            Some(value) => read_flags("flags", value),
        }
    }

    /// Reserved fields may be left out; if given they must be 0 (as a number or "0"). There is
    /// deliberately no way to write a non-zero reserved field.
    fn check_reserved(&self) -> Result<(), JsonError> {
        let field = "reserved";
        let Some(value) = self.map.get(field) else {
            return Ok(());
        };
        match read_uint::<u128>(field, value) {
            Ok(0) => Ok(()),
            _ => Err(JsonError::ReservedNotZero { field, got: quote(value) }),
        }
    }
}

/// An unsigned integer type of a record field.
trait Uint: Copy + Default + TryFrom<u128> {
    const NAME: &'static str;
    const MAX: u128;
}

macro_rules! uint {
    ($($int:ty),*) => {
        $(impl Uint for $int {
            const NAME: &'static str = stringify!($int);
            const MAX: u128 = <$int>::MAX as u128;
        })*
    };
}

uint!(u16, u32, u64, u128);

/// Reads an unsigned integer field: a JSON integer number, or a non-empty string of decimal
/// digits (needed for values above 2^64 − 1, which a JSON number cannot carry exactly).
fn read_uint<T: Uint>(field: &'static str, value: &Value) -> Result<T, JsonError> {
    let wide = match value {
        Value::Number(number) => {
            if let Some(integer) = number.as_u64() {
                u128::from(integer)
            } else {
                return Err(number_error::<T>(field, value, number));
            }
        }
        Value::String(text) if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) => {
            match text.parse::<u128>() {
                Ok(integer) => integer,
                // All digits, so the only way to fail is overflow.
                Err(_) => return Err(out_of_range::<u128>(field, value)),
            }
        }
        _ => return Err(JsonError::NotAnInteger { field, got: quote(value) }),
    };
    T::try_from(wide).map_err(|_| out_of_range::<T>(field, value))
}

/// The error for a JSON number that is not a `u64`: serde_json holds it as an `i64` (negative) or
/// an `f64` (a fraction, an exponent form, or an integer above `u64::MAX`).
fn number_error<T: Uint>(field: &'static str, value: &Value, number: &Number) -> JsonError {
    let huge = number.as_f64().is_some_and(|float| float.is_finite() && float >= TWO_POW_64);
    if !huge {
        JsonError::NotAnInteger { field, got: quote(value) }
    } else if T::MAX > u128::from(u64::MAX) {
        JsonError::InexactNumber { field, got: quote(value) }
    } else {
        out_of_range::<T>(field, value)
    }
}

fn out_of_range<T: Uint>(field: &'static str, value: &Value) -> JsonError {
    JsonError::OutOfRange { field, got: quote(value), kind: T::NAME, max: T::MAX }
}

/// A flag set with JSON names; implemented for the four flag types of `types`.
trait JsonFlags: Copy + Default + 'static {
    fn named() -> &'static [(Self, &'static str)];
    fn contains_all(self, other: Self) -> bool;
    fn union(self, other: Self) -> Self;
    fn reserved_bits(self) -> u32;
}

macro_rules! json_flags {
    ($($flags:ty),*) => {
        $(impl JsonFlags for $flags {
            fn named() -> &'static [(Self, &'static str)] {
                <$flags>::NAMED
            }
            fn contains_all(self, other: Self) -> bool {
                self.contains(other)
            }
            fn union(self, other: Self) -> Self {
                self.with(other)
            }
            fn reserved_bits(self) -> u32 {
                u32::from(self.0 & <$flags>::RESERVED)
            }
        })*
    };
}

json_flags!(AccountFlags, TransferFlags, AccountFilterFlags, QueryFilterFlags);

/// Reads a flags field: an array of flag names (a repeated name is harmless).
fn read_flags<F: JsonFlags>(field: &'static str, value: &Value) -> Result<F, JsonError> {
    let named = F::named();
    let not_a_list = || JsonError::NotAFlagList {
        field,
        example: named.first().map_or("", |(_, name)| name),
        got: quote(value),
    };
    let Value::Array(items) = value else {
        return Err(not_a_list());
    };
    let mut flags = F::default();
    for item in items {
        let Value::String(name) = item else {
            return Err(not_a_list());
        };
        let Some((flag, _)) = named.iter().find(|(_, known)| known == name) else {
            let expected: Vec<&str> = named.iter().map(|(_, known)| *known).collect();
            return Err(JsonError::UnknownFlag {
                field,
                name: truncate(name),
                expected: expected.join(", "),
            });
        };
        flags = flags.union(*flag);
    }
    Ok(flags)
}

/// The value as compact JSON, truncated for an error message.
fn quote(value: &Value) -> String {
    truncate(&value.to_string())
}

fn truncate(text: &str) -> String {
    match text.char_indices().nth(ERROR_VALUE_CHARS_MAX) {
        None => text.to_owned(),
        Some((end, _)) => format!("{}…", &text[..end]),
    }
}

#[cfg(test)]
mod tests {
    use core::fmt::Debug;

    use serde_json::json;

    use super::*;
    use crate::constants::TIMESTAMP_MAX;

    const U128_MAX: &str = "340282366920938463463374607431768211455";
    const U128_MAX_PLUS_1: &str = "340282366920938463463374607431768211456";

    fn all_flags<F: JsonFlags>() -> F {
        F::named().iter().fold(F::default(), |flags, (flag, _)| flags.union(*flag))
    }

    /// Asserts that the record survives record → value → record and record → value → text →
    /// value → record, and returns its JSON value.
    fn assert_round_trip<R: Copy + PartialEq + Debug>(
        record: R,
        to_json: fn(&R) -> Value,
        from_json: fn(&Value) -> Result<R, JsonError>,
    ) -> Value {
        let value = to_json(&record);
        assert_eq!(from_json(&value), Ok(record));
        let line = serde_json::to_string(&value).unwrap();
        assert!(!line.contains('\n'));
        let parsed = parse_line(&line).unwrap();
        assert_eq!(parsed, value);
        assert_eq!(from_json(&parsed), Ok(record));
        value
    }

    fn transfer_error(value: Value) -> JsonError {
        transfer_from_json(&value).unwrap_err()
    }

    fn not_an_integer(field: &'static str, got: &str) -> JsonError {
        JsonError::NotAnInteger { field, got: got.to_owned() }
    }

    fn out_of_range(field: &'static str, got: &str, kind: &'static str, max: u128) -> JsonError {
        JsonError::OutOfRange { field, got: got.to_owned(), kind, max }
    }

    fn inexact(field: &'static str, got: &str) -> JsonError {
        JsonError::InexactNumber { field, got: got.to_owned() }
    }

    #[test]
    fn account_with_extreme_values_round_trips() {
        let account = Account {
            id: u128::MAX,
            debits_pending: u128::MAX,
            debits_posted: u128::MAX - 1,
            credits_pending: u128::MAX,
            credits_posted: u128::MAX,
            user_data_128: u128::MAX,
            user_data_64: u64::MAX,
            user_data_32: u32::MAX,
            reserved: 0,
            ledger: u32::MAX,
            code: u16::MAX,
            flags: all_flags(),
            timestamp: TIMESTAMP_MAX,
        };
        assert_eq!(account.flags, AccountFlags(0x003F));
        let value = assert_round_trip(account, account_to_json, account_from_json);
        assert_eq!(
            value,
            json!({
                "id": U128_MAX,
                "debits_pending": U128_MAX,
                "debits_posted": "340282366920938463463374607431768211454",
                "credits_pending": U128_MAX,
                "credits_posted": U128_MAX,
                "user_data_128": U128_MAX,
                "user_data_64": 18_446_744_073_709_551_615_u64,
                "user_data_32": 4_294_967_295_u32,
                "ledger": 4_294_967_295_u32,
                "code": 65535,
                "flags": [
                    "linked",
                    "debits_must_not_exceed_credits",
                    "credits_must_not_exceed_debits",
                    "history",
                    "imported",
                    "closed"
                ],
                "timestamp": 9_223_372_036_854_775_807_u64,
            })
        );
        let line = serde_json::to_string(&value).unwrap();
        assert!(line.contains(r#""id":"340282366920938463463374607431768211455""#));
        assert!(line.contains(r#""timestamp":9223372036854775807"#));
    }

    #[test]
    fn zero_account_round_trips_and_omits_reserved() {
        let value = assert_round_trip(Account::default(), account_to_json, account_from_json);
        assert_eq!(
            value,
            json!({
                "id": "0", "debits_pending": "0", "debits_posted": "0", "credits_pending": "0",
                "credits_posted": "0", "user_data_128": "0", "user_data_64": 0, "user_data_32": 0,
                "ledger": 0, "code": 0, "flags": [], "timestamp": 0,
            })
        );
    }

    #[test]
    fn transfer_with_extreme_values_round_trips() {
        let transfer = Transfer {
            id: u128::MAX,
            debit_account_id: u128::MAX,
            credit_account_id: 1,
            amount: u128::MAX,
            pending_id: u128::MAX,
            user_data_128: u128::MAX,
            user_data_64: u64::MAX,
            user_data_32: u32::MAX,
            timeout: u32::MAX,
            ledger: u32::MAX,
            code: u16::MAX,
            flags: all_flags(),
            timestamp: TIMESTAMP_MAX,
        };
        assert_eq!(transfer.flags, TransferFlags(0x01FF));
        let value = assert_round_trip(transfer, transfer_to_json, transfer_from_json);
        assert_eq!(
            value,
            json!({
                "id": U128_MAX,
                "debit_account_id": U128_MAX,
                "credit_account_id": "1",
                "amount": U128_MAX,
                "pending_id": U128_MAX,
                "user_data_128": U128_MAX,
                "user_data_64": 18_446_744_073_709_551_615_u64,
                "user_data_32": 4_294_967_295_u32,
                "timeout": 4_294_967_295_u32,
                "ledger": 4_294_967_295_u32,
                "code": 65535,
                "flags": [
                    "linked",
                    "pending",
                    "post_pending_transfer",
                    "void_pending_transfer",
                    "balancing_debit",
                    "balancing_credit",
                    "closing_debit",
                    "closing_credit",
                    "imported"
                ],
                "timestamp": 9_223_372_036_854_775_807_u64,
            })
        );
        let transfer = Transfer { timestamp: u64::MAX, ..Transfer::default() };
        let value = assert_round_trip(transfer, transfer_to_json, transfer_from_json);
        assert_eq!(value["timestamp"], json!(18_446_744_073_709_551_615_u64));
    }

    #[test]
    fn account_balance_with_extreme_values_round_trips() {
        let balance = AccountBalance {
            debits_pending: u128::MAX,
            debits_posted: 0,
            credits_pending: 1,
            credits_posted: u128::MAX,
            timestamp: TIMESTAMP_MAX,
            reserved: [0; 56],
        };
        let value = assert_round_trip(balance, account_balance_to_json, account_balance_from_json);
        assert_eq!(
            value,
            json!({
                "debits_pending": U128_MAX,
                "debits_posted": "0",
                "credits_pending": "1",
                "credits_posted": U128_MAX,
                "timestamp": 9_223_372_036_854_775_807_u64,
            })
        );
    }

    #[test]
    fn account_filter_with_extreme_values_round_trips() {
        let filter = AccountFilter {
            account_id: u128::MAX,
            user_data_128: u128::MAX,
            user_data_64: u64::MAX,
            user_data_32: u32::MAX,
            code: u16::MAX,
            reserved: [0; 58],
            timestamp_min: TIMESTAMP_MAX,
            timestamp_max: u64::MAX,
            limit: u32::MAX,
            flags: all_flags(),
        };
        assert_eq!(filter.flags, AccountFilterFlags(0b111));
        let value = assert_round_trip(filter, account_filter_to_json, account_filter_from_json);
        assert_eq!(
            value,
            json!({
                "account_id": U128_MAX,
                "user_data_128": U128_MAX,
                "user_data_64": 18_446_744_073_709_551_615_u64,
                "user_data_32": 4_294_967_295_u32,
                "code": 65535,
                "timestamp_min": 9_223_372_036_854_775_807_u64,
                "timestamp_max": 18_446_744_073_709_551_615_u64,
                "limit": 4_294_967_295_u32,
                "flags": ["debits", "credits", "reversed"],
            })
        );
        assert_round_trip(AccountFilter::default(), account_filter_to_json, account_filter_from_json);
    }

    #[test]
    fn query_filter_with_extreme_values_round_trips() {
        let filter = QueryFilter {
            user_data_128: u128::MAX,
            user_data_64: u64::MAX,
            user_data_32: u32::MAX,
            ledger: u32::MAX,
            code: u16::MAX,
            reserved: [0; 6],
            timestamp_min: TIMESTAMP_MAX,
            timestamp_max: TIMESTAMP_MAX,
            limit: u32::MAX,
            flags: all_flags(),
        };
        assert_eq!(filter.flags, QueryFilterFlags::REVERSED);
        let value = assert_round_trip(filter, query_filter_to_json, query_filter_from_json);
        assert_eq!(
            value,
            json!({
                "user_data_128": U128_MAX,
                "user_data_64": 18_446_744_073_709_551_615_u64,
                "user_data_32": 4_294_967_295_u32,
                "ledger": 4_294_967_295_u32,
                "code": 65535,
                "timestamp_min": 9_223_372_036_854_775_807_u64,
                "timestamp_max": 9_223_372_036_854_775_807_u64,
                "limit": 4_294_967_295_u32,
                "flags": ["reversed"],
            })
        );
        assert_round_trip(QueryFilter::default(), query_filter_to_json, query_filter_from_json);
    }

    #[test]
    fn missing_fields_default_to_zero() {
        let account = account_from_json(&json!({"id": "7", "ledger": 1, "code": 2})).unwrap();
        assert_eq!(account, Account { id: 7, ledger: 1, code: 2, ..Account::default() });
        assert_eq!(transfer_from_json(&json!({})), Ok(Transfer::default()));
        assert_eq!(account_balance_from_json(&json!({})), Ok(AccountBalance::default()));
        assert_eq!(account_filter_from_json(&json!({})), Ok(AccountFilter::default()));
        assert_eq!(query_filter_from_json(&json!({})), Ok(QueryFilter::default()));
        assert_eq!(id_from_json(&json!({})), Ok(0));
        let filter = account_filter_from_json(&json!({"account_id": 9, "limit": 10})).unwrap();
        assert_eq!(filter, AccountFilter { account_id: 9, limit: 10, ..AccountFilter::default() });
    }

    #[test]
    fn integers_are_read_from_numbers_and_decimal_strings() {
        let from_number = transfer_from_json(&json!({
            "amount": 5, "user_data_64": 18_446_744_073_709_551_615_u64, "code": 65535,
            "timeout": 4_294_967_295_u32, "id": 18_446_744_073_709_551_615_u64,
        }));
        let from_string = transfer_from_json(&json!({
            "amount": "5", "user_data_64": "18446744073709551615", "code": "65535",
            "timeout": "4294967295", "id": "18446744073709551615",
        }));
        let expected = Transfer {
            id: u128::from(u64::MAX),
            amount: 5,
            user_data_64: u64::MAX,
            code: u16::MAX,
            timeout: u32::MAX,
            ..Transfer::default()
        };
        assert_eq!(from_number, Ok(expected));
        assert_eq!(from_string, Ok(expected));
        let amount = transfer_from_json(&json!({"amount": U128_MAX})).unwrap().amount;
        assert_eq!(amount, u128::MAX);
        // Leading zeros are unambiguous in a decimal string.
        assert_eq!(transfer_from_json(&json!({"amount": "000123"})).unwrap().amount, 123);
        assert_eq!(transfer_from_json(&json!({"ledger": 0})).unwrap().ledger, 0);
    }

    #[test]
    fn ids_are_read_from_objects_strings_and_numbers() {
        assert_eq!(id_from_json(&json!({"id": U128_MAX})), Ok(u128::MAX));
        assert_eq!(id_from_json(&json!({"id": 42})), Ok(42));
        assert_eq!(id_from_json(&json!("42")), Ok(42));
        assert_eq!(id_from_json(&json!(42)), Ok(42));
        assert_eq!(id_from_json(&parse_line(U128_MAX).unwrap()), Err(inexact("id", "3.402823669209385e+38")));
        assert_eq!(id_from_json(&json!(-1)), Err(not_an_integer("id", "-1")));
        assert_eq!(id_from_json(&json!(true)), Err(not_an_integer("id", "true")));
        assert_eq!(id_from_json(&json!([1])), Err(not_an_integer("id", "[1]")));
        assert_eq!(
            id_from_json(&json!({"id": "1", "ledger": 1})),
            Err(JsonError::UnknownField { record: "an id", field: "ledger".to_owned(), fields: &["id"] })
        );
        assert_eq!(
            id_from_json(&json!({"id": U128_MAX_PLUS_1})),
            Err(out_of_range("id", &format!("\"{U128_MAX_PLUS_1}\""), "u128", u128::MAX))
        );
    }

    #[test]
    fn flags_are_written_in_bit_order_and_read_in_any_order() {
        let flags = TransferFlags::PENDING.with(TransferFlags::LINKED);
        let transfer = Transfer { flags, ..Transfer::default() };
        assert_eq!(transfer_to_json(&transfer)["flags"], json!(["linked", "pending"]));
        let read = |names: Value| transfer_from_json(&json!({"flags": names})).map(|t| t.flags);
        assert_eq!(read(json!(["pending", "linked"])), Ok(flags));
        assert_eq!(read(json!(["linked", "pending", "linked"])), Ok(flags));
        assert_eq!(read(json!([])), Ok(TransferFlags::default()));
    }

    #[test]
    fn reserved_flag_bits_are_written_but_cannot_be_read() {
        let account = Account { flags: AccountFlags(0x0041), ..Account::default() };
        let value = account_to_json(&account);
        assert_eq!(value["flags"], json!(["linked", "reserved_bit_6"]));
        assert_eq!(
            account_from_json(&value),
            Err(JsonError::UnknownFlag {
                field: "flags",
                name: "reserved_bit_6".to_owned(),
                expected: "linked, debits_must_not_exceed_credits, \
                           credits_must_not_exceed_debits, history, imported, closed"
                    .to_owned(),
            })
        );
        let filter = QueryFilter { flags: QueryFilterFlags(0x8000_0003), ..QueryFilter::default() };
        assert_eq!(
            query_filter_to_json(&filter)["flags"],
            json!(["reversed", "reserved_bit_1", "reserved_bit_31"])
        );
    }

    #[test]
    fn unknown_field_is_rejected_with_the_field_list() {
        let error = transfer_error(json!({"id": "1", "amout": "10"}));
        assert_eq!(
            error,
            JsonError::UnknownField {
                record: "a transfer",
                field: "amout".to_owned(),
                fields: TRANSFER_FIELDS,
            }
        );
        assert_eq!(
            error.to_string(),
            "unknown field \"amout\" in a transfer; the fields are: id, debit_account_id, \
             credit_account_id, amount, pending_id, user_data_128, user_data_64, user_data_32, \
             timeout, ledger, code, flags, timestamp"
        );
        // Transfers have no reserved field; accounts have no amount.
        assert!(matches!(
            transfer_error(json!({"reserved": 0})),
            JsonError::UnknownField { field, .. } if field == "reserved"
        ));
        assert!(matches!(
            account_from_json(&json!({"amount": 1})),
            Err(JsonError::UnknownField { record: "an account", field, .. }) if field == "amount"
        ));
        assert!(matches!(
            query_filter_from_json(&json!({"account_id": 1})),
            Err(JsonError::UnknownField { record: "a query filter", field, .. }) if field == "account_id"
        ));
        assert!(matches!(
            account_filter_from_json(&json!({"ledger": 1})),
            Err(JsonError::UnknownField { record: "an account filter", field, .. }) if field == "ledger"
        ));
        assert!(matches!(
            account_balance_from_json(&json!({"id": 1})),
            Err(JsonError::UnknownField { record: "an account balance", field, .. }) if field == "id"
        ));
    }

    #[test]
    fn long_offending_values_are_truncated_in_errors() {
        let name = "x".repeat(100);
        let error = transfer_error(json!({ name.as_str(): 1 }));
        let JsonError::UnknownField { field, .. } = error else { panic!("{error:?}") };
        assert_eq!(field, format!("{}…", "x".repeat(64)));
        let digits = "9".repeat(100);
        let error = transfer_error(json!({"amount": digits}));
        assert_eq!(error, out_of_range("amount", &format!("\"{}…", "9".repeat(63)), "u128", u128::MAX));
    }

    #[test]
    fn bad_flag_names_and_shapes_are_rejected() {
        let error = transfer_error(json!({"flags": ["linked", "pendng"]}));
        assert_eq!(
            error.to_string(),
            "field \"flags\": unknown flag \"pendng\"; the flags are: linked, pending, \
             post_pending_transfer, void_pending_transfer, balancing_debit, balancing_credit, \
             closing_debit, closing_credit, imported"
        );
        // A transfer flag is not an account flag.
        assert!(matches!(
            account_from_json(&json!({"flags": ["pending"]})),
            Err(JsonError::UnknownFlag { name, .. }) if name == "pending"
        ));
        assert_eq!(
            account_filter_from_json(&json!({"flags": ["debit"]})),
            Err(JsonError::UnknownFlag {
                field: "flags",
                name: "debit".to_owned(),
                expected: "debits, credits, reversed".to_owned(),
            })
        );
        let not_a_list =
            |got: &str| JsonError::NotAFlagList { field: "flags", example: "linked", got: got.to_owned() };
        assert_eq!(transfer_error(json!({"flags": "linked"})), not_a_list("\"linked\""));
        assert_eq!(transfer_error(json!({"flags": 3})), not_a_list("3"));
        assert_eq!(transfer_error(json!({"flags": ["linked", 1]})), not_a_list("[\"linked\",1]"));
        assert_eq!(transfer_error(json!({"flags": null})), not_a_list("null"));
        assert_eq!(
            transfer_error(json!({"flags": 3})).to_string(),
            "field \"flags\": expected an array of flag names, e.g. [\"linked\"], got 3"
        );
        assert_eq!(
            query_filter_from_json(&json!({"flags": {}})),
            Err(JsonError::NotAFlagList { field: "flags", example: "reversed", got: "{}".to_owned() })
        );
    }

    #[test]
    fn negative_fractional_and_malformed_integers_are_rejected() {
        let error = transfer_error(json!({"amount": -5}));
        assert_eq!(error, not_an_integer("amount", "-5"));
        assert_eq!(
            error.to_string(),
            "field \"amount\": expected an unsigned integer (number or decimal string), got -5"
        );
        let cases: &[(&str, &str)] = &[
            (r#"{"amount": -5}"#, "-5"),
            (r#"{"amount": -0}"#, "-0.0"),
            (r#"{"amount": -1e30}"#, "-1e+30"),
            (r#"{"amount": 1.5}"#, "1.5"),
            (r#"{"amount": 5.0}"#, "5.0"),
            (r#"{"amount": 1e3}"#, "1000.0"),
            (r#"{"amount": "-5"}"#, r#""-5""#),
            (r#"{"amount": "1.5"}"#, r#""1.5""#),
            (r#"{"amount": "0x10"}"#, r#""0x10""#),
            (r#"{"amount": ""}"#, r#""""#),
            (r#"{"amount": "+5"}"#, r#""+5""#),
            (r#"{"amount": " 5"}"#, r#"" 5""#),
            (r#"{"amount": "5 "}"#, r#""5 ""#),
            (r#"{"amount": "1_000"}"#, r#""1_000""#),
            (r#"{"amount": "1e3"}"#, r#""1e3""#),
            (r#"{"amount": "٣"}"#, r#""٣""#),
            (r#"{"amount": null}"#, "null"),
            (r#"{"amount": true}"#, "true"),
            (r#"{"amount": [5]}"#, "[5]"),
            (r#"{"amount": {"value": 5}}"#, r#"{"value":5}"#),
        ];
        for (line, got) in cases {
            let value = parse_line(line).unwrap();
            assert_eq!(transfer_from_json(&value), Err(not_an_integer("amount", got)), "{line}");
        }
        assert_eq!(transfer_error(json!({"code": -1})), not_an_integer("code", "-1"));
        assert_eq!(account_filter_from_json(&json!({"limit": 0.5})), Err(not_an_integer("limit", "0.5")));
    }

    #[test]
    fn integers_too_large_for_their_field_are_rejected() {
        let cases: &[(&str, JsonError)] = &[
            (r#"{"code": 65536}"#, out_of_range("code", "65536", "u16", 65535)),
            (r#"{"code": "65536"}"#, out_of_range("code", r#""65536""#, "u16", 65535)),
            (
                r#"{"code": 18446744073709551616}"#,
                out_of_range("code", "1.8446744073709552e+19", "u16", 65535),
            ),
            (r#"{"ledger": 4294967296}"#, out_of_range("ledger", "4294967296", "u32", u32::MAX.into())),
            (
                r#"{"timeout": "4294967296"}"#,
                out_of_range("timeout", r#""4294967296""#, "u32", u32::MAX.into()),
            ),
            (
                r#"{"user_data_64": 18446744073709551616}"#,
                out_of_range("user_data_64", "1.8446744073709552e+19", "u64", u64::MAX.into()),
            ),
            (
                r#"{"timestamp": "18446744073709551616"}"#,
                out_of_range("timestamp", r#""18446744073709551616""#, "u64", u64::MAX.into()),
            ),
            (r#"{"timestamp": 1e300}"#, out_of_range("timestamp", "1e+300", "u64", u64::MAX.into())),
            (
                r#"{"amount": "340282366920938463463374607431768211456"}"#,
                out_of_range("amount", &format!("\"{U128_MAX_PLUS_1}\""), "u128", u128::MAX),
            ),
            (r#"{"amount": 18446744073709551616}"#, inexact("amount", "1.8446744073709552e+19")),
            (r#"{"amount": 1e40}"#, inexact("amount", "1e+40")),
        ];
        for (line, expected) in cases {
            let value = parse_line(line).unwrap();
            assert_eq!(transfer_from_json(&value).as_ref(), Err(expected), "{line}");
        }
        assert_eq!(
            transfer_error(json!({"code": 65536})).to_string(),
            "field \"code\": 65536 is out of range; a u16 field holds at most 65535"
        );
        assert_eq!(
            transfer_error(parse_line(r#"{"amount": 18446744073709551616}"#).unwrap()).to_string(),
            "field \"amount\": JSON numbers above 18446744073709551615 are not exact \
             (read as 1.8446744073709552e+19); write the value as a decimal string, \
             e.g. \"340282366920938463463374607431768211455\""
        );
    }

    #[test]
    fn non_objects_are_rejected() {
        let error = account_from_json(&json!([1]));
        assert_eq!(
            error,
            Err(JsonError::NotAnObject {
                record: "an account",
                example: r#"{"id": "1", "ledger": 1, "code": 1}"#,
                got: "[1]".to_owned(),
            })
        );
        assert_eq!(
            error.unwrap_err().to_string(),
            r#"expected an account as a JSON object, e.g. {"id": "1", "ledger": 1, "code": 1}, got [1]"#
        );
        assert!(matches!(
            transfer_from_json(&json!("1")),
            Err(JsonError::NotAnObject { record: "a transfer", got, .. }) if got == "\"1\""
        ));
        assert!(matches!(
            account_balance_from_json(&json!(null)),
            Err(JsonError::NotAnObject { record: "an account balance", got, .. }) if got == "null"
        ));
        assert!(matches!(
            account_filter_from_json(&json!(7)),
            Err(JsonError::NotAnObject { record: "an account filter", got, .. }) if got == "7"
        ));
        assert!(matches!(
            query_filter_from_json(&json!(true)),
            Err(JsonError::NotAnObject { record: "a query filter", got, .. }) if got == "true"
        ));
    }

    #[test]
    fn reserved_fields_may_be_zero_or_left_out() {
        let zero = [json!({"reserved": 0}), json!({"reserved": "0"}), json!({})];
        for value in &zero {
            assert_eq!(account_from_json(value), Ok(Account::default()));
            assert_eq!(account_balance_from_json(value), Ok(AccountBalance::default()));
            assert_eq!(account_filter_from_json(value), Ok(AccountFilter::default()));
            assert_eq!(query_filter_from_json(value), Ok(QueryFilter::default()));
        }
        let not_zero = |got: &str| JsonError::ReservedNotZero { field: "reserved", got: got.to_owned() };
        assert_eq!(account_from_json(&json!({"reserved": 1})), Err(not_zero("1")));
        assert_eq!(account_filter_from_json(&json!({"reserved": [0, 0]})), Err(not_zero("[0,0]")));
        assert_eq!(query_filter_from_json(&json!({"reserved": -1})), Err(not_zero("-1")));
        assert_eq!(account_balance_from_json(&json!({"reserved": "x"})), Err(not_zero("\"x\"")));
        assert_eq!(
            account_from_json(&json!({"reserved": 1})).unwrap_err().to_string(),
            "field \"reserved\": must be 0 or left out (reserved for future use), got 1"
        );
    }

    #[test]
    fn invalid_json_is_reported_with_serde_message() {
        let cases = [
            ("", "EOF while parsing a value at line 1 column 0"),
            (r#"{"id": "#, "EOF while parsing a value at line 1 column 7"),
            ("{} {}", "trailing characters at line 1 column 4"),
            ("{'id': 1}", "key must be a string at line 1 column 2"),
            ("[1,]", "trailing comma at line 1 column 4"),
        ];
        for (line, message) in cases {
            assert_eq!(parse_line(line), Err(JsonError::Syntax { message: message.to_owned() }));
        }
        assert_eq!(
            parse_line("{").unwrap_err().to_string(),
            "invalid JSON: EOF while parsing an object at line 1 column 1; \
             write one JSON value per line"
        );
        assert_eq!(parse_line(r#" {"id": "1"} "#), Ok(json!({"id": "1"})));
    }

    #[test]
    fn create_account_results_name_every_status() {
        for (index, status) in CreateAccountStatus::ALL.iter().enumerate() {
            let result = CreateResult::new(TIMESTAMP_MAX, *status as u32);
            assert_eq!(
                create_account_result_to_json(index, &result),
                json!({"index": index, "timestamp": TIMESTAMP_MAX, "status": status.name()})
            );
        }
        let created = CreateResult::new(1, CreateAccountStatus::Created as u32);
        assert_eq!(
            create_account_result_to_json(8188, &created),
            json!({"index": 8188, "timestamp": 1, "status": "created"})
        );
        let exists = CreateResult::new(2, 21);
        assert_eq!(create_account_result_to_json(0, &exists)["status"], json!("exists"));
        let line = serde_json::to_string(&create_account_result_to_json(0, &exists)).unwrap();
        assert_eq!(parse_line(&line), Ok(json!({"index": 0, "timestamp": 2, "status": "exists"})));
        for unknown in [27, 0xFFFF_FFFE] {
            assert_eq!(
                create_account_result_to_json(3, &CreateResult::new(5, unknown)),
                json!({"index": 3, "timestamp": 5, "status": unknown})
            );
        }
    }

    #[test]
    fn create_transfer_results_name_every_status() {
        for (index, status) in CreateTransferStatus::ALL.iter().enumerate() {
            let result = CreateResult::new(index as u64, *status as u32);
            assert_eq!(
                create_transfer_result_to_json(index, &result),
                json!({"index": index, "timestamp": index, "status": status.name()})
            );
        }
        let cases = [(0, "deprecated_ok"), (46, "exists"), (68, "id_already_failed")];
        for (code, name) in cases {
            let value = create_transfer_result_to_json(0, &CreateResult::new(0, code));
            assert_eq!(value["status"], json!(name));
        }
        let created = CreateResult::new(0, u32::MAX);
        assert_eq!(create_transfer_result_to_json(0, &created)["status"], json!("created"));
        for unknown in [69, 0xFFFF_FFFE] {
            assert_eq!(
                create_transfer_result_to_json(1, &CreateResult::new(TIMESTAMP_MAX, unknown)),
                json!({"index": 1, "timestamp": TIMESTAMP_MAX, "status": unknown})
            );
        }
    }
    /// `docs/json.md` quotes these messages and example lines; keep both in step.
    #[test]
    fn documented_examples_and_errors_are_exact() {
        let docs = include_str!("../docs/json.md");
        let errors = [
            parse_line(r#"{"id": "#).unwrap_err(),
            transfer_error(json!([1])),
            transfer_error(json!({"amout": "10"})),
            transfer_error(json!({"amount": -5})),
            transfer_error(json!({"code": 65536})),
            transfer_error(parse_line(r#"{"amount": 18446744073709551616}"#).unwrap()),
            transfer_error(json!({"flags": "linked"})),
            transfer_error(json!({"flags": ["pendng"]})),
            account_from_json(&json!({"reserved": 1})).unwrap_err(),
        ];
        for error in errors {
            let line = format!("\n{error}\n");
            assert!(docs.contains(&line), "docs/json.md lacks {line}");
        }
        let post = parse_line(
            r#"{"id": "102", "pending_id": "101", "amount": "340282366920938463463374607431768211455", "flags": ["post_pending_transfer"]}"#,
        );
        let post = transfer_from_json(&post.unwrap()).unwrap();
        assert_eq!(
            post,
            Transfer {
                id: 102,
                pending_id: 101,
                amount: u128::MAX,
                flags: TransferFlags::POST_PENDING_TRANSFER,
                ..Transfer::default()
            }
        );
        let account = Account {
            id: 1,
            debits_posted: 100,
            credits_posted: 250,
            ledger: 700,
            code: 10,
            flags: AccountFlags::DEBITS_MUST_NOT_EXCEED_CREDITS.with(AccountFlags::HISTORY),
            timestamp: 1_720_000_000_000_000_001,
            ..Account::default()
        };
        let line = serde_json::to_string(&account_to_json(&account)).unwrap();
        assert!(docs.contains(&format!("\n{line}\n")), "docs/json.md lacks {line}");
        let result = CreateResult::new(1_720_000_000_000_000_002, 67);
        let line = serde_json::to_string(&create_transfer_result_to_json(1, &result)).unwrap();
        assert!(docs.contains(&format!("\n{line}\n")), "docs/json.md lacks {line}");
    }
}
