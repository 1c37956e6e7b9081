//! The replica's part in the cluster's time (spec §8, `vsr::clock`): it pings every peer at a
//! fixed interval, answers pings with its wall clock, and feeds the answers to its [`Clock`].
//! A primary stamps prepares with the synchronized time only: without it, it refuses requests
//! (their clients retry), and if it stays without it after sampling a whole window in vain, it
//! abdicates so that a replica that knows the cluster's time can serve.
//!
//! [`Clock`]: crate::vsr::clock::Clock

use super::normal::{peers, PeerMessage};
use super::{Payload, Replica};
use crate::constants::{CLOCK_PING_INTERVAL_NS, PRIMARY_ABDICATE_NS};
use crate::storage::Storage;
use crate::vsr::header::{Command, Header};
use crate::vsr::outbox::Destination;
use crate::vsr::time::Time;

/// When the replica pings next, and since when its primary has refused requests for want of
/// the cluster's time (monotonic ns; 0: not set).
#[derive(Clone, Copy, Debug, Default)]
pub struct ClockSync {
    ping: u64,
    refused_since: u64,
    /// A request was refused since the last tick.
    pub(super) refused: bool,
}

impl<S: Storage> Replica<S> {
    /// The clock's tick: its windows and epochs advance, and pings go out when due.
    pub(super) fn clock_tick(&mut self, time: &impl Time) {
        if self.replica_count == 1 {
            return;
        }
        self.clock.tick(time);
        if !self.is_primary() {
            self.clock_sync = ClockSync { ping: self.clock_sync.ping, ..ClockSync::default() };
        }
        let now = time.monotonic();
        if now < self.clock_sync.ping {
            return;
        }
        self.clock_sync.ping = now + CLOCK_PING_INTERVAL_NS;
        // The fingerprint of this data file's format rides along: replicas formatted otherwise
        // are found (and told of) as soon as they talk.
        let fingerprint = self.state.data_file().superblock().format_fingerprint();
        let ping = self.header(Command::Ping, now, 0, u128::from(fingerprint));
        for peer in peers(self.replica, self.replica_count) {
            self.send(Destination::Replica(peer), Payload::Header(ping));
        }
    }

    /// The cluster's time now, for a timestamp or a pulse; None if the replica does not know it.
    pub(super) fn realtime_synchronized(&self, time: &impl Time) -> Option<u64> {
        if self.clock_ignored {
            return Some(time.realtime());
        }
        self.clock.realtime_synchronized(time)
    }

    /// True if the primary may take a request now: it knows the cluster's time. A refusal is
    /// remembered for the abdication timeout.
    pub(super) fn clock_accepts_requests(&mut self) -> bool {
        let synchronized = self.clock_ignored || self.clock.synchronized();
        self.clock_sync.refused |= !synchronized;
        synchronized
    }

    /// True if the primary is to abdicate (start a view change): it has refused requests for
    /// [`PRIMARY_ABDICATE_NS`] without knowing the cluster's time, and has sampled at least one
    /// whole window in vain (a fresh cluster waits for its first window instead).
    pub(super) fn clock_abdicates(&mut self, now: u64) -> bool {
        assert!(self.is_primary());
        let refused = std::mem::take(&mut self.clock_sync.refused);
        if self.clock_ignored || self.clock.synchronized() {
            self.clock_sync.refused_since = 0;
            return false;
        }
        if refused && self.clock_sync.refused_since == 0 {
            self.clock_sync.refused_since = now;
        }
        let since = self.clock_sync.refused_since;
        since != 0 && now >= since + PRIMARY_ABDICATE_NS && self.clock.windows_failed() > 0
    }

    /// Any replica answers a peer's ping with its wall clock.
    pub(super) fn on_ping(&mut self, header: &Header, time: &impl Time) -> PeerMessage {
        let fingerprint = self.state.data_file().superblock().format_fingerprint();
        if header.context != u128::from(fingerprint) {
            self.format_mismatch = Some(header.replica);
            return PeerMessage::Ignored("a ping of a replica formatted with other options");
        }
        let mut pong = self.header(Command::Pong, header.op, 0, 0);
        pong.timestamp = time.realtime();
        pong.set_checksum();
        self.send(Destination::Replica(header.replica), Payload::Header(pong));
        PeerMessage::Handled
    }

    /// A peer's answer to a ping of this replica: a sample of its clock.
    pub(super) fn on_pong(&mut self, header: &Header, time: &impl Time) -> PeerMessage {
        if self.clock.learn(header.replica, header.op, header.timestamp, time) {
            PeerMessage::Handled
        } else {
            PeerMessage::Ignored("a pong of an earlier window or with readings no clock gives")
        }
    }
}
