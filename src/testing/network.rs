//! The simulated network between clients and replicas: a queue of packets, each delivered a
//! seeded number of ticks after it was sent. Paths with a client are in order and lossless, as
//! one TCP connection delivers them (a client's duplicate of a request never overtakes its next
//! one). Paths between replicas are what VSR must survive: a packet may be lost, duplicated,
//! or overtaken by a later one, at seeded rates. Packets of different paths interleave freely.

use std::collections::BTreeMap;

use crate::prng::Prng;

/// Where a packet goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Address {
    /// Replica `index` of the cluster.
    Replica(u8),
    /// The client with this id.
    Client(u128),
}

/// One message in flight.
#[derive(Clone, Debug)]
pub struct Packet {
    /// The sender.
    pub from: Address,
    /// The receiver.
    pub to: Address,
    /// The whole message: header and body.
    pub message: Vec<u8>,
}

/// The delays and faults of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NetworkOptions {
    /// The shortest one-way delay, in ticks.
    pub delay_ticks_min: u64,
    /// The longest one-way delay, in ticks.
    pub delay_ticks_max: u64,
    /// Percent of packets between replicas lost.
    pub loss_percent: u64,
    /// Percent of packets between replicas delivered twice (each copy with its own delay).
    pub duplicate_percent: u64,
    /// Whether packets between replicas may overtake each other (else in order per path).
    pub reorder: bool,
}

impl NetworkOptions {
    /// One-tick delays and no faults (tests start from it).
    pub fn lossless() -> NetworkOptions {
        NetworkOptions {
            delay_ticks_min: 1,
            delay_ticks_max: 1,
            loss_percent: 0,
            duplicate_percent: 0,
            reorder: false,
        }
    }
}

/// The most packets in flight at once: every client has one request and a few retries and
/// noise messages out, and each gets at most a reply or an eviction back; replicas have a
/// pipeline of prepares, their acknowledgements, resends and repairs out; more is a harness
/// bug.
pub const PACKETS_IN_FLIGHT_MAX: usize = 16384;

/// Packets in flight, in delivery order.
pub struct Network {
    options: NetworkOptions,
    prng: Prng,
    /// Keyed by (delivery tick, send sequence): delivery order is a function of the seed alone.
    in_flight: BTreeMap<(u64, u64), Packet>,
    sequence: u64,
    /// The latest delivery tick of each path, which a later packet of the path may not precede.
    path_tick_last: BTreeMap<(Address, Address), u64>,
    /// Bit `to` of `cut[from]`: packets from replica `from` to replica `to` are dropped (a
    /// partition; one-way for an asymmetric one).
    cut: [u8; 8],
}

impl Network {
    /// An empty network; delays are drawn from `seed`.
    pub fn new(options: NetworkOptions, seed: u64) -> Network {
        assert!(options.delay_ticks_min >= 1, "a packet arrives on a later tick than it was sent");
        assert!(options.delay_ticks_min <= options.delay_ticks_max);
        Network {
            options,
            prng: Prng::new(seed),
            in_flight: BTreeMap::new(),
            sequence: 0,
            path_tick_last: BTreeMap::new(),
            cut: [0; 8],
        }
    }

    /// Partitions the replicas: packets from `from` to `to` are dropped for every pair that
    /// `cut(from, to)` names, until the next call. Client paths are never cut (a client
    /// reaches every replica).
    pub fn partition(&mut self, replica_count: u8, cut: impl Fn(u8, u8) -> bool) {
        self.cut = [0; 8];
        for from in 0..replica_count {
            for to in 0..replica_count {
                if from != to && cut(from, to) {
                    self.cut[from as usize] |= 1 << to;
                }
            }
        }
    }

    /// Heals every partition.
    pub fn heal(&mut self) {
        self.cut = [0; 8];
    }

    /// Sends `packet` at tick `now`. Returns how many copies are on their way (0: lost).
    pub fn send(&mut self, now: u64, packet: Packet) -> usize {
        if self.in_flight.len() >= PACKETS_IN_FLIGHT_MAX {
            let mut counts = std::collections::BTreeMap::new();
            for packet in self.in_flight.values() {
                let header: crate::vsr::header::Header = bytemuck::pod_read_unaligned(&packet.message[..256]);
                *counts.entry((header.command, packet.from, packet.to)).or_insert(0u64) += 1;
            }
            let mut top: Vec<_> = counts.into_iter().collect();
            top.sort_by_key(|(_, count)| std::cmp::Reverse(*count));
            top.truncate(5);
            panic!("{PACKETS_IN_FLIGHT_MAX} packets in flight: most (command, from, to): {top:?}");
        }
        let between_replicas = matches!((packet.from, packet.to), (Address::Replica(_), Address::Replica(_)));
        if let (Address::Replica(from), Address::Replica(to)) = (packet.from, packet.to) {
            if self.cut[from as usize] & (1 << to) != 0 {
                return 0;
            }
        }
        if between_replicas && self.prng.chance(self.options.loss_percent, 100) {
            return 0;
        }
        let copies =
            if between_replicas && self.prng.chance(self.options.duplicate_percent, 100) { 2 } else { 1 };
        for _ in 0..copies {
            let delay = self.prng.range_inclusive(self.options.delay_ticks_min, self.options.delay_ticks_max);
            let mut tick = now + delay;
            if !(between_replicas && self.options.reorder) {
                let path_tick = self.path_tick_last.entry((packet.from, packet.to)).or_insert(0);
                // Same tick as the path's previous packet at the earliest: the sequence orders
                // them.
                tick = tick.max(*path_tick);
                *path_tick = tick;
            }
            self.sequence += 1;
            self.in_flight.insert((tick, self.sequence), packet.clone());
        }
        copies
    }

    /// The next packet due at or before tick `now`, if any.
    pub fn deliver(&mut self, now: u64) -> Option<Packet> {
        let (&key, _) = self.in_flight.first_key_value()?;
        if key.0 > now {
            return None;
        }
        self.in_flight.remove(&key)
    }

    /// Drops every packet addressed to `to` (its process crashed: its sockets are gone).
    pub fn drop_to(&mut self, to: Address) {
        self.in_flight.retain(|_, packet| packet.to != to);
    }

    /// How many packets are in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packet(to: Address, tag: u8) -> Packet {
        Packet { from: Address::Replica(0), to, message: vec![tag] }
    }

    #[test]
    fn packets_arrive_after_a_seeded_delay_in_a_reproducible_order() {
        let options = NetworkOptions { delay_ticks_min: 1, delay_ticks_max: 5, ..NetworkOptions::lossless() };
        let run = |seed| {
            let mut network = Network::new(options, seed);
            for tag in 0..20 {
                network.send(10, packet(Address::Client(1), tag));
            }
            assert!(network.deliver(10).is_none(), "nothing arrives on the tick it was sent");
            let mut order = Vec::new();
            for now in 11..=15 {
                while let Some(packet) = network.deliver(now) {
                    order.push((now, packet.message[0]));
                }
            }
            assert_eq!(network.in_flight(), 0, "every packet arrives within the longest delay");
            order
        };
        assert_eq!(run(1), run(1));
        let tags: Vec<u8> = run(1).iter().map(|(_, tag)| *tag).collect();
        assert_eq!(tags, (0..20).collect::<Vec<u8>>(), "one path delivers in order");
        let ticks: Vec<u64> = run(1).iter().map(|(tick, _)| *tick).collect();
        assert_ne!(ticks, run(2).iter().map(|(tick, _)| *tick).collect::<Vec<u64>>(), "delays are seeded");
    }

    #[test]
    fn packets_between_replicas_are_lost_duplicated_and_reordered_and_client_paths_are_not() {
        let options = NetworkOptions {
            delay_ticks_min: 1,
            delay_ticks_max: 8,
            loss_percent: 20,
            duplicate_percent: 20,
            reorder: true,
        };
        let mut network = Network::new(options, 7);
        let (mut sent, mut client_sent) = (0, 0);
        for tag in 0..200u8 {
            let to_replica =
                Packet { from: Address::Replica(1), to: Address::Replica(0), message: vec![tag] };
            sent += network.send(0, to_replica);
            client_sent += network.send(0, packet(Address::Client(1), tag));
        }
        assert!(sent < 200 + 200 / 4 && sent != 200, "some lost, some duplicated: {sent}");
        assert_eq!(client_sent, 200, "a client's path is lossless and never duplicates");
        let (mut replica_tags, mut client_tags) = (Vec::new(), Vec::new());
        for now in 1..=8 {
            while let Some(packet) = network.deliver(now) {
                match packet.to {
                    Address::Replica(_) => replica_tags.push(packet.message[0]),
                    Address::Client(_) => client_tags.push(packet.message[0]),
                }
            }
        }
        assert_eq!(replica_tags.len(), sent);
        assert!(replica_tags.windows(2).any(|pair| pair[0] > pair[1]), "reordered");
        assert_eq!(client_tags, (0..200).collect::<Vec<u8>>(), "a client's path stays in order");
    }

    #[test]
    fn a_partition_cuts_the_paths_it_names_one_way_and_heals() {
        let mut network = Network::new(NetworkOptions::lossless(), 3);
        let between =
            |from, to| Packet { from: Address::Replica(from), to: Address::Replica(to), message: vec![0] };
        // Asymmetric: 0 cannot reach 1, 1 still reaches 0.
        network.partition(3, |from, to| from == 0 && to == 1);
        assert_eq!(network.send(0, between(0, 1)), 0);
        assert_eq!(network.send(0, between(1, 0)), 1);
        assert_eq!(network.send(0, between(0, 2)), 1);
        assert_eq!(network.send(0, packet(Address::Client(1), 1)), 1, "clients reach everyone");
        network.heal();
        assert_eq!(network.send(0, between(0, 1)), 1);
    }

    #[test]
    fn a_crashed_receiver_loses_its_packets() {
        let options = NetworkOptions { delay_ticks_min: 1, delay_ticks_max: 1, ..NetworkOptions::lossless() };
        let mut network = Network::new(options, 1);
        network.send(0, packet(Address::Client(1), 1));
        network.send(0, packet(Address::Replica(0), 2));
        network.drop_to(Address::Replica(0));
        assert_eq!(network.deliver(1).map(|packet| packet.to), Some(Address::Client(1)));
        assert!(network.deliver(1).is_none());
    }
}
