//! Admission of client requests (spec §7, docs/protocol.md "Sessions"): what the replica does
//! with a request whose framing and checksums are valid, decided from the client table alone.
//! The loop around the replica only carries the decision out (queue, reply, evict, close); the
//! rules live here, beside the sessions they read, so that every replica of a cluster applies
//! the same ones.

use super::client_table::ClientTable;
use super::header::{Command, EvictionReason, Header};
use crate::constants::HEADER_SIZE;
use crate::operation::Operation;
use crate::state_machine::{InvalidRequest, StateMachine};

/// What to do with one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// A new request of the client's session: prepare it.
    Prepare(Operation),
    /// A retry of the request the session last committed: resend the stored reply of session
    /// slot `slot`, byte for byte (it was executed once; it is never executed again).
    Reply(usize),
    /// Nothing to do: an older request, one skipping ahead, or a retry whose bytes differ from
    /// the request that committed (a client bug); the client's next retry decides.
    Drop,
    /// The request can never execute: tell the client its session is gone.
    Evict(EvictionReason),
    /// The sender does not follow the protocol at all: close its connection.
    Close(&'static str),
}

/// Decides what to do with `header` (a request whose both checksums verified) and its `body`,
/// given the sessions in `clients` and the request size limit.
pub fn admit(clients: &ClientTable, header: &Header, body: &[u8], batch_size_limit: usize) -> Admission {
    assert_eq!(header.command(), Some(Command::Request));
    assert_eq!(header.size as usize, HEADER_SIZE + body.len());
    if header.client == 0 {
        return Admission::Close("request from client 0");
    }
    // Fields a request does not use must be 0: a client that sets them is broken or speaks
    // another protocol, and nothing it sends can be trusted to mean what it says.
    let unused = [
        ("request field `parent` must be 0", header.parent != 0),
        ("request field `op` must be 0", header.op != 0),
        ("request field `commit` must be 0", header.commit != 0),
        ("request field `timestamp` must be 0", header.timestamp != 0),
        ("request field `view` must be 0", header.view != 0),
        ("request field `replica` must be 0", header.replica != 0),
        ("request field `status` must be 0", header.status != 0),
    ];
    if let Some((reason, _)) = unused.iter().find(|(_, set)| *set) {
        return Admission::Close(reason);
    }
    let operation = match Operation::from_u8(header.operation) {
        // The pulse is the replica's own request; no client may send it.
        Some(Operation::Pulse) | None => return Admission::Evict(EvictionReason::InvalidRequestOperation),
        Some(operation) => operation,
    };
    let session = clients.get(header.client).map(|(slot, session)| (slot, *session));
    if operation == Operation::Register {
        if let Some((slot, session)) = session {
            if header.request == 0 && session.request == 0 {
                // A retried register; its reply, unless recovery lost it (repaired from a peer).
                return if clients.reply_lost(slot) { Admission::Drop } else { Admission::Reply(slot) };
            }
        }
        if !body.is_empty() {
            return Admission::Evict(EvictionReason::InvalidRequestBody);
        }
        return Admission::Prepare(operation);
    }
    let Some((slot, session)) = session else { return Admission::Evict(EvictionReason::NoSession) };
    if header.context != u128::from(session.session) {
        return Admission::Evict(if header.context < u128::from(session.session) {
            EvictionReason::SessionTooLow
        } else {
            EvictionReason::NoSession
        });
    }
    if header.request == session.request {
        if clients.reply_lost(slot) {
            // Recovery lost the stored reply: the retry waits until a peer's copy restores it.
            return Admission::Drop;
        }
        // A retry: the stored reply, byte for byte, if it answers this very request.
        let reply: Header = bytemuck::pod_read_unaligned(&clients.reply(slot)[..HEADER_SIZE]);
        return if reply.context == header.checksum { Admission::Reply(slot) } else { Admission::Drop };
    }
    if header.request != session.request.wrapping_add(1) {
        return Admission::Drop; // Older than the latest, or skipping ahead: nothing to execute.
    }
    match StateMachine::input_valid(operation, body, batch_size_limit) {
        Ok(()) => Admission::Prepare(operation),
        Err(error) => Admission::Evict(match error {
            InvalidRequest::BodySize { .. } => EvictionReason::InvalidRequestBodySize,
            InvalidRequest::Operation(_) => EvictionReason::InvalidRequestOperation,
            _ => EvictionReason::InvalidRequestBody,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::MESSAGE_BODY_SIZE_MAX;
    use crate::multi_batch::encode_single;
    use crate::net::codec::{request_header, MessageBuffer};

    const CLUSTER: u128 = 5;
    const CLIENT: u128 = 77;
    const LIMIT: usize = MESSAGE_BODY_SIZE_MAX;

    /// A sealed request header with `body`.
    fn sealed(mut header: Header, body: &[u8]) -> Header {
        let mut message = MessageBuffer::new();
        header.set_body(body);
        message.seal_with_body(header, body);
        bytemuck::pod_read_unaligned(&message.as_bytes()[..HEADER_SIZE])
    }

    /// The body of a lookup of account `id`.
    fn lookup_body(id: u128) -> Vec<u8> {
        let mut body = vec![0u8; 4096];
        body[..16].copy_from_slice(&id.to_le_bytes());
        let size = encode_single(&mut body, 16, 1);
        body.truncate(size);
        body
    }

    /// A table where `CLIENT` registered at op 3 (session 3) and committed request 1, whose
    /// header checksum was `checksum`.
    fn table(checksum: u128) -> ClientTable {
        let mut clients = ClientTable::new(4, 4096);
        let mut reply = Header { context: 0, ..Header::new(Command::Reply, CLUSTER) };
        reply.set_checksum();
        clients.commit(CLIENT, true, 3, 0, bytemuck::bytes_of(&reply), reply.checksum);
        let mut reply = Header { context: checksum, request: 1, ..Header::new(Command::Reply, CLUSTER) };
        reply.set_checksum();
        clients.commit(CLIENT, false, 4, 1, bytemuck::bytes_of(&reply), reply.checksum);
        clients
    }

    #[test]
    fn each_session_rule_of_the_protocol() {
        let body = lookup_body(1);
        let request = |number: u32, session: u64| {
            sealed(request_header(CLUSTER, CLIENT, session, number, Operation::LookupAccounts), &body)
        };
        let committed = request(1, 3);
        let clients = table(committed.checksum);
        let admit = |header: &Header, body: &[u8]| admit(&clients, header, body, LIMIT);
        assert_eq!(
            admit(&request(2, 3), &body),
            Admission::Prepare(Operation::LookupAccounts),
            "the next request"
        );
        assert_eq!(admit(&committed, &body), Admission::Reply(0), "a retry gets the stored reply");
        let other = lookup_body(2);
        let different = sealed(request_header(CLUSTER, CLIENT, 3, 1, Operation::LookupAccounts), &other);
        assert_eq!(admit(&different, &other), Admission::Drop, "same number, other bytes");
        assert_eq!(admit(&request(3, 3), &body), Admission::Drop, "skipping ahead");
        let older =
            sealed(Header { request: 0, operation: Operation::LookupAccounts as u8, ..committed }, &body);
        assert_eq!(admit(&older, &body), Admission::Drop, "older than the latest");
        assert_eq!(admit(&request(2, 2), &body), Admission::Evict(EvictionReason::SessionTooLow));
        assert_eq!(admit(&request(2, 9), &body), Admission::Evict(EvictionReason::NoSession));
        let stranger = sealed(request_header(CLUSTER, CLIENT + 1, 3, 1, Operation::LookupAccounts), &body);
        assert_eq!(admit(&stranger, &body), Admission::Evict(EvictionReason::NoSession));
    }

    #[test]
    fn register_and_invalid_requests() {
        let clients = table(0);
        let admit = |header: &Header, body: &[u8]| admit(&clients, header, body, LIMIT);
        let register = |client| sealed(request_header(CLUSTER, client, 0, 0, Operation::Register), &[]);
        assert_eq!(admit(&register(CLIENT + 1), &[]), Admission::Prepare(Operation::Register));
        // The session's latest request is 1, so a register from it is a new session.
        assert_eq!(admit(&register(CLIENT), &[]), Admission::Prepare(Operation::Register));
        let with_body = sealed(request_header(CLUSTER, CLIENT + 1, 0, 0, Operation::Register), &[0; 16]);
        assert_eq!(admit(&with_body, &[0; 16]), Admission::Evict(EvictionReason::InvalidRequestBody));
        let mut pulse = request_header(CLUSTER, CLIENT, 3, 2, Operation::LookupAccounts);
        pulse.operation = Operation::Pulse as u8;
        assert_eq!(
            admit(&sealed(pulse, &[]), &[]),
            Admission::Evict(EvictionReason::InvalidRequestOperation)
        );
        let mut unknown = pulse;
        unknown.operation = 200;
        assert_eq!(
            admit(&sealed(unknown, &[]), &[]),
            Admission::Evict(EvictionReason::InvalidRequestOperation)
        );
        let garbage = [1u8; 48];
        let bad_body = sealed(request_header(CLUSTER, CLIENT, 3, 2, Operation::LookupAccounts), &garbage);
        assert_eq!(admit(&bad_body, &garbage), Admission::Evict(EvictionReason::InvalidRequestBody));
        let body = lookup_body(1);
        let request = sealed(request_header(CLUSTER, CLIENT, 3, 2, Operation::LookupAccounts), &body);
        assert_eq!(
            super::admit(&clients, &request, &body, body.len() - 16),
            Admission::Evict(EvictionReason::InvalidRequestBodySize)
        );
    }

    #[test]
    fn protocol_violations_close_the_connection() {
        let clients = table(0);
        let mut client_0 = request_header(CLUSTER, CLIENT, 0, 0, Operation::Register);
        client_0.client = 0;
        assert_eq!(
            admit(&clients, &sealed(client_0, &[]), &[], LIMIT),
            Admission::Close("request from client 0")
        );
        type Set = fn(&mut Header);
        let fields: [(&str, Set); 7] = [
            ("parent", |h| h.parent = 1),
            ("op", |h| h.op = 1),
            ("commit", |h| h.commit = 1),
            ("timestamp", |h| h.timestamp = 1),
            ("view", |h| h.view = 1),
            ("replica", |h| h.replica = 1),
            ("status", |h| h.status = 1),
        ];
        for (field, set) in fields {
            let mut header = request_header(CLUSTER, CLIENT, 0, 0, Operation::Register);
            set(&mut header);
            match admit(&clients, &sealed(header, &[]), &[], LIMIT) {
                Admission::Close(reason) => assert!(reason.contains(&format!("`{field}`")), "{reason}"),
                other => panic!("{field}: {other:?}"),
            }
        }
    }
}
