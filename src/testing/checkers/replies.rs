//! Checker (b): every reply a client receives is the one the model gives for its op, and no
//! request executes twice. Only a request a client sent as its next request may execute (stale,
//! skipping or altered copies must not), once per time it was sent as next (a client that
//! registers again after an eviction sends the same bytes again); its retries are answered from
//! the session. The one exception is `register`: a retry that arrives after its session was
//! evicted registers again (nothing remembers the first), which changes no ledger state.
//!
//! A reply may arrive before the checkers know its op: the replica sent it, then crashed before
//! the harness read the log, and the op is read back after recovery. Such a reply waits for its
//! op; one still waiting at the end of the run answered an op that never committed.

use std::collections::BTreeMap;

use xxhash_rust::xxh3::xxh3_128;

use super::Failure;
use crate::operation::Operation;
use crate::testing::oracle::ExpectedReply;
use crate::vsr::header::{Command, Header};

const NAME: &str = "replies";

/// What the reply to one committed op must be.
#[derive(Clone, Copy, Debug)]
struct Expected {
    client: u128,
    request: u32,
    /// The request's checksum, which the reply's `context` echoes.
    context: u128,
    operation: u8,
    timestamp: u64,
    status: u8,
    body_hash: u128,
}

/// The expected reply of every committed op, and the requests that may execute.
#[derive(Default)]
pub struct RepliesChecker {
    expected: BTreeMap<u64, Expected>,
    /// Each request a client sent as its next request, by checksum: how many more times it may
    /// execute (once per time it was sent so, less the times it executed) and its body's hash.
    executions_allowed: BTreeMap<u128, (u32, u128)>,
    /// Replies received for ops not committed yet, by op: (client, header, body hash).
    waiting: BTreeMap<u64, Vec<(u128, Header, u128)>>,
    replies_checked: u64,
}

impl RepliesChecker {
    /// A checker that has seen nothing.
    pub fn new() -> RepliesChecker {
        RepliesChecker::default()
    }

    /// Records that a client sent the request with checksum `checksum` and `body` as its next
    /// request.
    pub fn sent(&mut self, checksum: u128, body: &[u8]) {
        self.executions_allowed.entry(checksum).or_insert((0, xxh3_128(body))).0 += 1;
    }

    /// How many replies have been checked.
    pub fn replies_checked(&self) -> u64 {
        self.replies_checked
    }

    /// Records that `prepare` with `body` (as logged) committed, with the reply the model gives
    /// for it.
    pub fn committed(
        &mut self,
        prepare: &Header,
        body: &[u8],
        expected: Option<ExpectedReply>,
    ) -> Result<(), Failure> {
        let op = prepare.op;
        if prepare.client == 0 {
            // The replica's own pulse: nothing to answer.
            assert!(expected.is_none());
            if prepare.operation != Operation::Pulse as u8 {
                return Err(Failure::new(
                    NAME,
                    format!("op {op}: operation {} without a client", prepare.operation),
                ));
            }
            return Ok(());
        }
        let register = prepare.operation == Operation::Register as u8;
        let Some((allowed, body_hash)) = self.executions_allowed.get_mut(&prepare.context) else {
            return Err(Failure::new(
                NAME,
                format!(
                    "op {op} executed request {} of client {:#x}, which it never sent as its next request",
                    prepare.request, prepare.client
                ),
            ));
        };
        if *body_hash != xxh3_128(body) {
            return Err(Failure::new(
                NAME,
                format!("op {op}: the logged body is not the one client {:#x} sent", prepare.client),
            ));
        }
        // A register retried after its session was evicted starts a new session (the table no
        // longer knows it): it changes no ledger state, and the protocol allows it.
        if !register {
            if *allowed == 0 {
                return Err(Failure::new(
                    NAME,
                    format!(
                        "op {op} executed request {} of client {:#x} a second time",
                        prepare.request, prepare.client
                    ),
                ));
            }
            *allowed -= 1;
        }
        let expected = expected.expect("a client's op has a reply");
        let record = Expected {
            client: prepare.client,
            request: prepare.request,
            context: prepare.context,
            operation: prepare.operation,
            timestamp: prepare.timestamp,
            status: expected.status as u8,
            body_hash: xxh3_128(&expected.body),
        };
        if self.expected.insert(op, record).is_some() {
            return Err(Failure::new(NAME, format!("op {op} committed twice")));
        }
        for (client, header, body_hash) in self.waiting.remove(&op).unwrap_or_default() {
            self.compare(client, &header, body_hash)?;
        }
        Ok(())
    }

    /// Fails if a reply still waits for its op: at the end of a run, that op never committed.
    pub fn finish(&self) -> Result<(), Failure> {
        match self.waiting.first_key_value() {
            Some((op, replies)) => Err(Failure::new(
                NAME,
                format!("client {:#x} got a reply for op {op}, which never committed", replies[0].0),
            )),
            None => Ok(()),
        }
    }

    /// Checks a reply (`header`, `body`) that client `client` received.
    pub fn received(&mut self, client: u128, header: &Header, body: &[u8]) -> Result<(), Failure> {
        assert_eq!(header.command(), Some(Command::Reply));
        let op = header.op;
        if !header.valid_checksum() || !header.valid_checksum_body(body) {
            return Err(Failure::new(
                NAME,
                format!("client {client:#x}: the reply for op {op} fails its checksums"),
            ));
        }
        let body_hash = xxh3_128(body);
        if !self.expected.contains_key(&op) {
            self.waiting.entry(op).or_default().push((client, *header, body_hash));
            return Ok(());
        }
        self.compare(client, header, body_hash)
    }

    /// Compares a reply with the model's for its op (which has committed).
    fn compare(&mut self, client: u128, header: &Header, body_hash: u128) -> Result<(), Failure> {
        let op = header.op;
        let expected = self.expected[&op];
        let actual = (
            header.client,
            header.request,
            header.context,
            header.operation,
            header.timestamp,
            header.status,
        );
        let wanted = (
            client,
            expected.request,
            expected.context,
            expected.operation,
            expected.timestamp,
            expected.status,
        );
        if actual != wanted || expected.client != client {
            return Err(Failure::new(
                NAME,
                format!(
                    "op {op}: reply (client, request, context, operation, timestamp, status) {actual:x?}, model {wanted:x?}"
                ),
            ));
        }
        if body_hash != expected.body_hash {
            return Err(Failure::new(
                NAME,
                format!(
                    "op {op} (client {client:#x}, request {}): the reply body differs from the model's",
                    header.request
                ),
            ));
        }
        self.replies_checked += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vsr::header::ReplyStatus;

    const CLIENT: u128 = 9;

    fn prepare(op: u64, context: u128) -> Header {
        Header {
            op,
            client: CLIENT,
            request: 1,
            context,
            timestamp: 100 + op,
            operation: Operation::LookupAccounts as u8,
            ..Header::new(Command::Prepare, 1)
        }
    }

    fn reply(prepare: &Header, body: &[u8]) -> Header {
        let mut header = Header {
            op: prepare.op,
            client: prepare.client,
            request: prepare.request,
            context: prepare.context,
            timestamp: prepare.timestamp,
            operation: prepare.operation,
            ..Header::new(Command::Reply, 1)
        };
        header.set_body(body);
        header.set_checksum();
        header
    }

    fn expected(body: &[u8]) -> Option<ExpectedReply> {
        Some(ExpectedReply { status: ReplyStatus::Ok, body: body.to_vec() })
    }

    #[test]
    fn a_wrong_reply_an_unsent_request_or_a_second_execution_fails() {
        let mut checker = RepliesChecker::new();
        let first = prepare(1, 0xAA);
        let unsent = checker.committed(&first, &[], expected(&[1])).expect_err("never sent");
        assert!(unsent.message.contains("never sent"), "{unsent}");
        checker.sent(0xAA, &[]);
        assert_eq!(checker.committed(&first, &[], expected(&[1])), Ok(()));
        assert_eq!(checker.received(CLIENT, &reply(&first, &[1]), &[1]), Ok(()));
        assert_eq!(checker.received(CLIENT, &reply(&first, &[1]), &[1]), Ok(()), "a resent reply");
        let body = checker.received(CLIENT, &reply(&first, &[2]), &[2]).expect_err("other body");
        assert!(body.message.contains("body differs"), "{body}");
        let mut late = reply(&first, &[1]);
        late.timestamp += 1;
        late.set_checksum();
        assert!(checker.received(CLIENT, &late, &[1]).is_err(), "other timestamp");
        assert!(checker.received(CLIENT + 1, &reply(&first, &[1]), &[1]).is_err(), "another client's reply");
        checker.sent(0xEE, &[1]);
        let altered = checker.committed(&prepare(9, 0xEE), &[2], expected(&[])).expect_err("other body");
        assert!(altered.message.contains("not the one"), "{altered}");
        let twice = checker.committed(&prepare(2, 0xAA), &[], expected(&[1])).expect_err("twice");
        assert!(twice.message.contains("second time"), "{twice}");
        assert_eq!(checker.finish(), Ok(()));
        // A reply that arrives before its op is read back waits for it, and is checked then.
        let early = prepare(3, 0xCC);
        assert_eq!(checker.received(CLIENT, &reply(&early, &[5]), &[5]), Ok(()));
        assert!(checker.finish().expect_err("op 3 not committed").message.contains("never committed"));
        checker.sent(0xCC, &[]);
        let differs = checker.committed(&early, &[], expected(&[6])).expect_err("the waiting reply differs");
        assert!(differs.message.contains("body differs"), "{differs}");
        assert_eq!(checker.finish(), Ok(()));
        // A request sent twice as next (a register again after an eviction) may execute twice.
        checker.sent(0xDD, &[]);
        checker.sent(0xDD, &[]);
        assert_eq!(checker.committed(&prepare(4, 0xDD), &[], expected(&[])), Ok(()));
        assert_eq!(checker.committed(&prepare(5, 0xDD), &[], expected(&[])), Ok(()));
        assert!(checker.committed(&prepare(6, 0xDD), &[], expected(&[])).is_err(), "but not three times");
        assert_eq!(checker.replies_checked(), 2);
    }
}
