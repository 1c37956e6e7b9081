//! Client sessions: for each registered client, its session number, its latest request number
//! and its latest reply — so a retried request gets the identical reply and is never executed
//! twice, even across a restart (spec §7 of the VSR summary, §13 of the data model).
//!
//! The table is derived from the log: committing a prepare updates it, so replaying the WAL after
//! a checkpoint rebuilds it exactly. The table itself is part of every checkpoint; the reply
//! bodies live in the data file's client-replies zone, one slot per table entry, checked against
//! the checksum the table keeps.

use bytemuck::{Pod, Zeroable};

use super::header::Header;
use crate::constants::HEADER_SIZE;
use crate::storage::AlignedBuffer;

/// One session, as persisted in checkpoints (64 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ClientSession {
    /// The client id; 0 marks a free entry.
    pub client: u128,
    /// The checksum of the latest reply's header.
    pub reply_checksum: u128,
    /// The session number: the op at which the client registered.
    pub session: u64,
    /// The op of the latest committed request (the least recent is evicted first).
    pub op: u64,
    /// The latest committed request number.
    pub request: u32,
    /// The latest reply's size (header + body).
    pub reply_size: u32,
    /// Must be zero.
    pub reserved: u64,
}

impl ClientSession {
    /// True if `reply` (at least `reply_size` bytes, as read from the session's reply slot) is
    /// the session's latest reply: intact, and the one whose checksum the session keeps.
    pub(crate) fn reply_intact(&self, reply: &[u8]) -> bool {
        let size = self.reply_size as usize;
        if size < HEADER_SIZE || size > reply.len() {
            return false;
        }
        let header: Header = bytemuck::pod_read_unaligned(&reply[..HEADER_SIZE]);
        header.valid_checksum()
            && header.checksum == self.reply_checksum
            && header.valid_checksum_body(&reply[HEADER_SIZE..size])
    }
}

/// The size of a persisted session record.
pub const CLIENT_SESSION_SIZE: usize = core::mem::size_of::<ClientSession>();
const _: () = assert!(CLIENT_SESSION_SIZE == 64);

/// The sessions of one replica, with each session's latest reply in memory.
pub struct ClientTable {
    sessions: Vec<ClientSession>,
    replies: Vec<AlignedBuffer>,
    /// Per slot: the session's latest reply is not held (recovery found its slot on disk
    /// damaged, or holding a later reply of ops not yet executed again): a cluster's replica
    /// keeps the session — its peers keep theirs — and repairs the reply from a peer. Not
    /// persisted: recovery finds it again.
    reply_lost: Vec<bool>,
}

/// What committing a request did to the table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionUpdate {
    /// The entry (and reply slot) of the client.
    pub slot: usize,
    /// A client whose session was evicted to make room, if any.
    pub evicted: Option<u128>,
}

impl ClientTable {
    /// An empty table of `clients_max` entries with reply buffers of `reply_size_max` bytes.
    pub fn new(clients_max: usize, reply_size_max: usize) -> ClientTable {
        assert!(clients_max >= 1);
        ClientTable {
            sessions: vec![ClientSession::default(); clients_max],
            replies: (0..clients_max).map(|_| AlignedBuffer::new(reply_size_max)).collect(),
            reply_lost: vec![false; clients_max],
        }
    }

    /// Restores the sessions of a checkpoint (their replies are loaded separately).
    pub fn restore(&mut self, sessions: &[ClientSession]) {
        assert_eq!(sessions.len(), self.sessions.len());
        self.sessions.copy_from_slice(sessions);
    }

    /// The sessions as persisted in checkpoints.
    pub fn persisted(&self) -> &[u8] {
        bytemuck::cast_slice(&self.sessions)
    }

    /// The entry of `client`, if it has a session.
    pub fn get(&self, client: u128) -> Option<(usize, &ClientSession)> {
        if client == 0 {
            return None;
        }
        self.sessions.iter().enumerate().find(|(_, session)| session.client == client)
    }

    /// The latest reply of the session in `slot` (header and body).
    pub fn reply(&self, slot: usize) -> &[u8] {
        &self.replies[slot][..self.sessions[slot].reply_size as usize]
    }

    /// The whole reply buffer of `slot` (sector-padded), for writing it to disk.
    pub fn reply_buffer(&self, slot: usize) -> &AlignedBuffer {
        &self.replies[slot]
    }

    /// The reply buffer of `slot`, for loading it from disk.
    pub fn reply_buffer_mut(&mut self, slot: usize) -> &mut AlignedBuffer {
        &mut self.replies[slot]
    }

    /// Every session, by slot.
    pub fn sessions(&self) -> &[ClientSession] {
        &self.sessions
    }

    /// Forgets the session in `slot` (its stored reply was found damaged, in a replica alone).
    pub fn evict_slot(&mut self, slot: usize) {
        self.sessions[slot] = ClientSession::default();
        self.reply_lost[slot] = false;
    }

    /// Keeps the session in `slot` without its latest reply (found damaged or overwritten at
    /// recovery), until [`ClientTable::reply_restore`] or a newer commit of the session.
    pub fn reply_lose(&mut self, slot: usize) {
        assert_ne!(self.sessions[slot].client, 0);
        self.reply_lost[slot] = true;
    }

    /// True if the latest reply of the session in `slot` is not held.
    pub fn reply_lost(&self, slot: usize) -> bool {
        self.reply_lost[slot]
    }

    /// The first slot whose session's latest reply is not held, if any.
    pub fn reply_lost_first(&self) -> Option<usize> {
        self.reply_lost.iter().position(|lost| *lost)
    }

    /// Restores the lost latest reply of `client`'s session from a peer's copy (`header` and
    /// `body`), if it is that very reply: intact, of the checksum the session keeps. Returns
    /// the slot restored.
    pub fn reply_restore(&mut self, client: u128, header: &Header, body: &[u8]) -> Option<usize> {
        let (slot, session) = self.get(client)?;
        let session = *session;
        let size = HEADER_SIZE + body.len();
        let intact = header.valid_checksum()
            && header.checksum == session.reply_checksum
            && header.size as usize == size
            && header.valid_checksum_body(body);
        if !self.reply_lost[slot] || size != session.reply_size as usize || !intact {
            return None;
        }
        let buffer = &mut self.replies[slot];
        buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(header));
        buffer[HEADER_SIZE..size].copy_from_slice(body);
        self.reply_lost[slot] = false;
        Some(slot)
    }

    /// Records a committed request of `client` at `op` and its reply (header + body). A
    /// `register` creates the session (evicting the least recently active one when full);
    /// returns `None` if the client has no session (it was evicted after the request was
    /// prepared: the request executed, but there is no session to remember it in).
    pub fn commit(
        &mut self,
        client: u128,
        register: bool,
        op: u64,
        request: u32,
        reply: &[u8],
        reply_checksum: u128,
    ) -> Option<SessionUpdate> {
        assert!(client != 0);
        let mut evicted = None;
        let slot = match self.get(client) {
            Some((slot, _)) => slot,
            None if register => {
                let slot = match self.sessions.iter().position(|session| session.client == 0) {
                    Some(free) => free,
                    None => {
                        let (oldest, _) = self
                            .sessions
                            .iter()
                            .enumerate()
                            .min_by_key(|(_, session)| session.op)
                            .expect("the table has entries");
                        evicted = Some(self.sessions[oldest].client);
                        oldest
                    }
                };
                self.sessions[slot] = ClientSession { client, session: op, ..ClientSession::default() };
                slot
            }
            None => return None,
        };
        let session = &mut self.sessions[slot];
        if register {
            session.session = op;
        }
        session.op = op;
        session.request = request;
        session.reply_size = reply.len() as u32;
        session.reply_checksum = reply_checksum;
        self.replies[slot][..reply.len()].copy_from_slice(reply);
        self.reply_lost[slot] = false;
        Some(SessionUpdate { slot, evicted })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registering_beyond_capacity_evicts_the_least_recently_committed_session() {
        let mut table = ClientTable::new(2, 4096);
        assert_eq!(table.commit(10, true, 1, 0, b"r1", 1), Some(SessionUpdate { slot: 0, evicted: None }));
        assert_eq!(table.commit(20, true, 2, 0, b"r2", 2), Some(SessionUpdate { slot: 1, evicted: None }));
        assert_eq!(table.commit(10, false, 3, 1, b"r3", 3), Some(SessionUpdate { slot: 0, evicted: None }));
        // Client 20's latest commit (op 2) is older than client 10's (op 3).
        assert_eq!(
            table.commit(30, true, 4, 0, b"r4", 4),
            Some(SessionUpdate { slot: 1, evicted: Some(20) })
        );
        assert!(table.get(20).is_none());
        assert_eq!(table.get(30).map(|(_, session)| session.session), Some(4));
        assert_eq!(table.reply(0), b"r3");
        assert_eq!(table.get(10).map(|(_, session)| session.request), Some(1));
        // A request of an evicted client is not remembered.
        assert_eq!(table.commit(20, false, 5, 1, b"r5", 5), None);
    }
}
