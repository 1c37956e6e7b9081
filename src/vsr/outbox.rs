//! What the replica has to send: pooled messages and bare headers (messages without a body),
//! each addressed to a destination, in the order they were made. The loop around the replica (the server, the simulator) empties it
//! after every call that fills it and carries each message to its destination; the outbox is
//! bounded, so a message can never be dropped for want of room, only refused by an assertion.

use std::collections::VecDeque;

use super::header::Header;
use super::message_pool::Message;

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A client, by id: the loop routes it to that client's newest connection, if any.
    Client(u128),
    /// Another replica of the cluster, by index.
    Replica(u8),
}

/// What an envelope carries.
// The header is kept inline on purpose: the outbox is allocated once, and a small message then
// takes no 1 MiB buffer of the pool.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub enum Payload {
    /// A pooled message (a prepare, a reply): its header's `size` bytes are what is sent.
    Message(Message),
    /// A sealed header with no body (`prepare_ok`, `commit`, `request_prepare`): kept inline,
    /// so that small messages take no buffer of the pool.
    Header(Header),
}

/// A message and where it goes.
#[derive(Debug)]
pub struct Envelope {
    /// Where it goes.
    pub to: Destination,
    /// The message.
    pub payload: Payload,
}

/// A bounded queue of envelopes, allocated at start.
#[derive(Debug)]
pub struct Outbox {
    envelopes: VecDeque<Envelope>,
    capacity: usize,
}

impl Outbox {
    /// An empty outbox for at most `capacity` envelopes.
    pub fn new(capacity: usize) -> Outbox {
        assert!(capacity > 0);
        Outbox { envelopes: VecDeque::with_capacity(capacity), capacity }
    }

    /// Adds `envelope`; the caller's bound guarantees room.
    pub fn push(&mut self, envelope: Envelope) {
        assert!(self.envelopes.len() < self.capacity, "the outbox is full: the loop did not empty it");
        self.envelopes.push_back(envelope);
    }

    /// Takes the oldest envelope.
    pub fn pop(&mut self) -> Option<Envelope> {
        self.envelopes.pop_front()
    }

    /// True if nothing waits to be sent.
    pub fn is_empty(&self) -> bool {
        self.envelopes.is_empty()
    }

    /// How many envelopes wait.
    pub fn len(&self) -> usize {
        self.envelopes.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vsr::message_pool::MessagePool;

    #[test]
    fn envelopes_leave_in_the_order_they_came() {
        let mut pool = MessagePool::new(2, 4096);
        let (first, second) = (pool.acquire().expect("free"), pool.acquire().expect("free"));
        let first_ref = pool.reference(&first);
        let mut outbox = Outbox::new(3);
        outbox.push(Envelope { to: Destination::Client(1), payload: Payload::Message(first) });
        outbox.push(Envelope { to: Destination::Replica(2), payload: Payload::Message(second) });
        let header = Header::new(crate::vsr::header::Command::PrepareOk, 1);
        outbox.push(Envelope { to: Destination::Replica(1), payload: Payload::Header(header) });
        assert_eq!(outbox.len(), 3);
        let envelope = outbox.pop().expect("first");
        assert_eq!(envelope.to, Destination::Client(1));
        let Payload::Message(message) = envelope.payload else { panic!("a message") };
        assert_eq!(message, first_ref);
        pool.release(message);
        pool.release(first_ref);
        let second = outbox.pop().expect("second");
        assert_eq!(second.to, Destination::Replica(2));
        let Payload::Message(message) = second.payload else { panic!("a message") };
        pool.release(message);
        let third = outbox.pop().expect("third");
        assert!(matches!(third.payload, Payload::Header(sent) if sent == header));
        assert!(outbox.is_empty() && outbox.pop().is_none());
        assert_eq!(pool.available(), 2);
    }

    #[test]
    #[should_panic(expected = "the outbox is full")]
    fn an_outbox_never_grows_past_its_bound() {
        let mut outbox = Outbox::new(1);
        let header = Header::new(crate::vsr::header::Command::Commit, 1);
        outbox.push(Envelope { to: Destination::Replica(1), payload: Payload::Header(header) });
        outbox.push(Envelope { to: Destination::Replica(2), payload: Payload::Header(header) });
    }
}
