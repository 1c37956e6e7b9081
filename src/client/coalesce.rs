//! Which calls share a request. Each call becomes one batch of the multi-batch encoding; calls
//! are added while the request body stays within the cluster's `batch_size_limit` and the reply
//! that the cluster will write stays within a message — the same rules the replica checks
//! (`StateMachine::input_valid`), so a packed request is never rejected for its size.

use crate::constants::{
    HEADER_SIZE, MESSAGE_BODY_SIZE_MAX, MULTI_BATCH_COUNT_MAX, QUERY_RESULTS_MAX, RECORD_SIZE,
};
use crate::operation::{trailer_size, Operation};

/// The smallest `batch_size_limit` a register reply may announce: one event of the largest
/// event size and its trailer, so every operation can send at least one event.
pub(crate) const BATCH_SIZE_LIMIT_MIN: usize = RECORD_SIZE + RECORD_SIZE;

const _: () = assert!(BATCH_SIZE_LIMIT_MIN == HEADER_SIZE);
const _: () = assert!(BATCH_SIZE_LIMIT_MIN <= MESSAGE_BODY_SIZE_MAX);

/// The most results a call of `operation` with `event_count` events (or, for a query, the
/// filter's `limit`) can produce: what the replica reserves in the reply for its batch.
pub(crate) fn result_count_max(operation: Operation, event_count: usize, query_limit: u32) -> usize {
    let expected = if operation.is_query() {
        assert_eq!(event_count, 1);
        (query_limit as usize).min(QUERY_RESULTS_MAX)
    } else {
        event_count
    };
    expected.min(operation.result_max())
}

/// Accumulates the batches of one request of one operation.
#[derive(Debug)]
pub(crate) struct Packer {
    operation: Operation,
    batch_size_limit: usize,
    batch_count: usize,
    /// The bytes of the request's events so far (without the trailer).
    request_payload_size: usize,
    /// The bytes of the reply's results so far, at most (without the trailer).
    reply_payload_size: usize,
}

impl Packer {
    /// An empty request of `operation` for a cluster that accepts bodies of `batch_size_limit`.
    pub(crate) fn new(operation: Operation, batch_size_limit: usize) -> Packer {
        assert!(operation != Operation::Register && operation != Operation::Pulse);
        assert!((BATCH_SIZE_LIMIT_MIN..=MESSAGE_BODY_SIZE_MAX).contains(&batch_size_limit));
        Packer { operation, batch_size_limit, batch_count: 0, request_payload_size: 0, reply_payload_size: 0 }
    }

    /// The most events one call of `operation` may carry in a request of `batch_size_limit`.
    pub(crate) fn event_max(operation: Operation, batch_size_limit: usize) -> usize {
        operation.event_max(batch_size_limit)
    }

    /// True if a call with these counts can be sent at all: alone in a request.
    pub(crate) fn fits_alone(&self, event_count: usize, result_count_max: usize) -> bool {
        let empty = Packer::new(self.operation, self.batch_size_limit);
        empty.fits(event_count, result_count_max)
    }

    /// Adds a call's batch if it fits; returns whether it was added.
    pub(crate) fn add(&mut self, event_count: usize, result_count_max: usize) -> bool {
        if !self.fits(event_count, result_count_max) {
            return false;
        }
        self.batch_count += 1;
        self.request_payload_size += event_count * self.operation.event_size();
        self.reply_payload_size += result_count_max * self.operation.result_size();
        true
    }

    /// The number of batches added.
    pub(crate) fn batch_count(&self) -> usize {
        self.batch_count
    }

    fn fits(&self, event_count: usize, result_count_max: usize) -> bool {
        let operation = self.operation;
        let batch_count = self.batch_count + 1;
        if batch_count > MULTI_BATCH_COUNT_MAX {
            return false;
        }
        let events_valid = if operation.is_query() {
            event_count == 1
        } else {
            event_count <= Self::event_max(operation, self.batch_size_limit)
        };
        if !events_valid || result_count_max > operation.result_max() {
            return false;
        }
        let request_size = self.request_payload_size
            + event_count * operation.event_size()
            + trailer_size(operation.event_size(), batch_count);
        let reply_size = self.reply_payload_size
            + result_count_max * operation.result_size()
            + trailer_size(operation.result_size(), batch_count);
        request_size <= self.batch_size_limit && reply_size <= MESSAGE_BODY_SIZE_MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::BATCH_EVENTS_MAX;
    use crate::multi_batch::MultiBatchEncoder;
    use crate::prng::Prng;
    use crate::state_machine::StateMachine;
    use crate::types::{AccountFilter, QueryFilter};

    /// Packs calls with the given event counts (or query limits) and encodes the request body.
    fn pack(operation: Operation, limit: usize, sizes: &[usize]) -> (usize, Vec<u8>) {
        let mut packer = Packer::new(operation, limit);
        let mut taken = Vec::new();
        for size in sizes {
            let (events, query_limit) = if operation.is_query() { (1, *size as u32) } else { (*size, 0) };
            let results = result_count_max(operation, events, query_limit);
            if !packer.fits_alone(events, results) {
                continue;
            }
            if !packer.add(events, results) {
                break;
            }
            taken.push((events, query_limit));
        }
        if taken.is_empty() {
            return (0, Vec::new());
        }
        let mut body = vec![0u8; MESSAGE_BODY_SIZE_MAX];
        let mut encoder = MultiBatchEncoder::new(&mut body, operation.event_size(), taken.len());
        for (events, query_limit) in &taken {
            let bytes = encoder.writable();
            match operation {
                Operation::GetAccountTransfers | Operation::GetAccountBalances => {
                    let filter = AccountFilter { limit: *query_limit, ..AccountFilter::default() };
                    bytes[..RECORD_SIZE].copy_from_slice(bytemuck::bytes_of(&filter));
                }
                Operation::QueryAccounts | Operation::QueryTransfers => {
                    let filter = QueryFilter { limit: *query_limit, ..QueryFilter::default() };
                    bytes[..size_of::<QueryFilter>()].copy_from_slice(bytemuck::bytes_of(&filter));
                }
                _ => {}
            }
            encoder.push(*events);
        }
        let size = encoder.finish();
        body.truncate(size);
        (taken.len(), body)
    }

    #[test]
    fn creates_and_lookups_share_a_request_up_to_the_event_limit() {
        let limit = MESSAGE_BODY_SIZE_MAX;
        for operation in [Operation::CreateAccounts, Operation::CreateTransfers, Operation::LookupAccounts] {
            let (count, body) = pack(operation, limit, &[4000, 4000, 189, 1]);
            assert_eq!(count, 3, "{operation:?}");
            assert!(StateMachine::input_valid(operation, &body, limit).is_ok());
            let (count, _) = pack(operation, limit, &[BATCH_EVENTS_MAX, 1]);
            assert_eq!(count, 1, "{operation:?}");
            let (count, _) = pack(operation, limit, &[BATCH_EVENTS_MAX + 1]);
            assert_eq!(count, 0, "{operation:?}: over the limit alone");
        }
    }

    #[test]
    fn queries_share_a_request_while_their_limits_fit_the_reply() {
        let limit = MESSAGE_BODY_SIZE_MAX;
        let (count, body) = pack(Operation::QueryTransfers, limit, &[4000, 4000, 190, 1]);
        assert_eq!(count, 2);
        assert!(StateMachine::input_valid(Operation::QueryTransfers, &body, limit).is_ok());
        // A limit above QUERY_RESULTS_MAX is capped, so such a query always fits alone.
        let (count, body) = pack(Operation::GetAccountBalances, limit, &[u32::MAX as usize, 1]);
        assert_eq!(count, 1);
        assert!(StateMachine::input_valid(Operation::GetAccountBalances, &body, limit).is_ok());
        let many = vec![1; 10_000];
        let (count, body) = pack(Operation::QueryAccounts, limit, &many);
        assert!(count > 1000);
        assert!(StateMachine::input_valid(Operation::QueryAccounts, &body, limit).is_ok());
    }

    #[test]
    fn every_packed_request_passes_the_replicas_input_check() {
        let mut prng = Prng::new(42);
        for _ in 0..200 {
            let operation = *prng.pick(&Operation::CLIENT);
            let limit = if prng.chance(1, 2) {
                MESSAGE_BODY_SIZE_MAX
            } else {
                BATCH_SIZE_LIMIT_MIN
                    + prng.below((MESSAGE_BODY_SIZE_MAX - BATCH_SIZE_LIMIT_MIN) as u64) as usize
            };
            let limit = limit / 16 * 16;
            let sizes: Vec<usize> = (0..1 + prng.below(40)).map(|_| prng.below(3000) as usize).collect();
            let (count, body) = pack(operation, limit.max(BATCH_SIZE_LIMIT_MIN), &sizes);
            if count > 0 {
                let result = StateMachine::input_valid(operation, &body, limit.max(BATCH_SIZE_LIMIT_MIN));
                assert!(result.is_ok(), "{operation:?} limit {limit} sizes {sizes:?}: {result:?}");
            }
        }
    }
}
