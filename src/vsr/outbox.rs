//! What the replica has to send: pooled messages, each addressed to a destination, in the
//! order they were made. The loop around the replica (the server, the simulator) empties it
//! after every call that fills it and carries each message to its destination; the outbox is
//! bounded, so a message can never be dropped for want of room, only refused by an assertion.

use std::collections::VecDeque;

use super::message_pool::Message;

/// Where a message goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A client, by id: the loop routes it to that client's newest connection, if any.
    Client(u128),
}

/// A message and where it goes.
#[derive(Debug)]
pub struct Envelope {
    /// Where it goes.
    pub to: Destination,
    /// The message: its header's `size` bytes are what is sent.
    pub message: Message,
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
        let mut outbox = Outbox::new(2);
        let (first, second) = (pool.acquire().expect("free"), pool.acquire().expect("free"));
        let first_ref = pool.reference(&first);
        outbox.push(Envelope { to: Destination::Client(1), message: first });
        outbox.push(Envelope { to: Destination::Client(2), message: second });
        assert_eq!(outbox.len(), 2);
        let envelope = outbox.pop().expect("first");
        assert_eq!(envelope.to, Destination::Client(1));
        assert_eq!(envelope.message, first_ref);
        pool.release(envelope.message);
        pool.release(first_ref);
        pool.release(outbox.pop().expect("second").message);
        assert!(outbox.is_empty() && outbox.pop().is_none());
        assert_eq!(pool.available(), 2);
    }

    #[test]
    #[should_panic(expected = "the outbox is full")]
    fn an_outbox_never_grows_past_its_bound() {
        let mut pool = MessagePool::new(2, 4096);
        let mut outbox = Outbox::new(1);
        outbox.push(Envelope { to: Destination::Client(1), message: pool.acquire().expect("free") });
        outbox.push(Envelope { to: Destination::Client(1), message: pool.acquire().expect("free") });
    }
}
