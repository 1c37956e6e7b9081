//! The trace hash: a hash of every event of a run (deliveries, commits, crashes, recoveries),
//! so that two runs of one seed can be compared bit for bit by one number.

use xxhash_rust::xxh3::Xxh3;

/// What kind of event is recorded (hashed as its code, so that two kinds never collide).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum TraceEvent {
    /// A packet was delivered: tick, receiver, message checksum.
    Delivered = 1,
    /// An op was committed: op, prepare checksum, timestamp.
    Committed = 2,
    /// A replica crashed: tick, replica, op.
    Crashed = 3,
    /// A replica recovered: tick, replica, commit_min.
    Recovered = 4,
    /// A client sent a message: tick, client, message checksum.
    Sent = 5,
    /// A replica entered normal status in a newer view: tick, replica, view.
    ViewNormal = 6,
    /// The replicas were partitioned: tick, the group cut off.
    Partitioned = 7,
    /// A down replica's WAL was damaged: tick, replica, file offset of the sector.
    Damaged = 8,
    /// A replica finished a state sync: tick, replica, the checkpoint op it runs from.
    Synced = 9,
}

/// The running hash of a run's events.
pub struct Trace {
    hasher: Xxh3,
    events: u64,
}

impl Default for Trace {
    fn default() -> Self {
        Trace::new()
    }
}

impl Trace {
    /// An empty trace.
    pub fn new() -> Trace {
        Trace { hasher: Xxh3::new(), events: 0 }
    }

    /// Records one event with its values.
    pub fn record(&mut self, event: TraceEvent, values: &[u128]) {
        self.hasher.update(&[event as u8]);
        for value in values {
            self.hasher.update(&value.to_le_bytes());
        }
        self.events += 1;
    }

    /// The hash of every event so far.
    pub fn hash(&self) -> u64 {
        self.hasher.digest()
    }

    /// How many events were recorded.
    pub fn events(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_depends_on_every_event_and_its_order() {
        let hash = |events: &[(TraceEvent, u128)]| {
            let mut trace = Trace::new();
            for (event, value) in events {
                trace.record(*event, &[*value]);
            }
            trace.hash()
        };
        let a = hash(&[(TraceEvent::Committed, 1), (TraceEvent::Crashed, 2)]);
        assert_eq!(a, hash(&[(TraceEvent::Committed, 1), (TraceEvent::Crashed, 2)]));
        assert_ne!(a, hash(&[(TraceEvent::Crashed, 2), (TraceEvent::Committed, 1)]));
        assert_ne!(a, hash(&[(TraceEvent::Committed, 1), (TraceEvent::Crashed, 3)]));
        assert_ne!(a, hash(&[(TraceEvent::Committed, 1), (TraceEvent::Recovered, 2)]));
    }
}
