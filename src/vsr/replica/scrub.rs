//! The grid scrubber (spec §5): a replica of a cluster re-reads its durable checkpoint's blocks
//! one at a time, slowly, to find latent sector errors before a restart needs the block; a
//! damaged one is fetched from a peer by address and checksum (`request_block`, answered with
//! `block`) and written back. Checkpoints are byte-identical across replicas at the same op
//! (`Grid::begin`), so a peer at the same checkpoint holds the very block at the same address;
//! any peer whose block at that address has that checksum will do.

use super::normal::{peers, PeerMessage};
use super::{message_sealed, Replica};
use crate::constants::HEADER_SIZE;
use crate::storage::{AlignedBuffer, Storage};
use crate::vsr::header::{Command, Header};
use crate::vsr::outbox::{Destination, Payload};
use crate::vsr::replica_state::ReplicaStateError;
use crate::vsr::superblock::BlockReference;

/// The scrubber's state.
pub struct Scrub {
    /// The next block of the durable checkpoint to read.
    cursor: usize,
    /// A damaged block being repaired, if any.
    damaged: Option<BlockReference>,
    /// Requests sent for it (which peer is next).
    round: u64,
    /// Blocks repaired since start (a statistic).
    pub(super) repaired: u64,
    /// Blocks found damaged since start (a statistic).
    pub(super) found: u64,
    /// One block, sector-aligned: what is read or written back.
    block: AlignedBuffer,
}

impl Scrub {
    /// A scrubber for blocks of `block_size` bytes, at the first block.
    pub fn new(block_size: usize) -> Scrub {
        Scrub {
            cursor: 0,
            damaged: None,
            round: 0,
            repaired: 0,
            found: 0,
            block: AlignedBuffer::new(block_size),
        }
    }
}

impl<S: Storage> Replica<S> {
    /// One step of the scrubber: asks a peer again for the damaged block (while the durable
    /// checkpoint still references it), or reads and verifies the next block.
    pub(super) fn scrub_step(&mut self) -> Result<(), ReplicaStateError> {
        if let Some(damaged) = self.scrub.damaged {
            if !self.state.data_file().grid().durable_holds(&damaged) {
                // A newer checkpoint no longer needs it.
                self.scrub.damaged = None;
                return Ok(());
            }
            self.scrub.round += 1;
            let round = self.scrub.round as usize % (usize::from(self.replica_count) - 1);
            let peer = peers(self.replica, self.replica_count)
                .nth(round)
                .expect("a peer of a cluster of two or more");
            let request = self.header(Command::RequestBlock, damaged.address, 0, damaged.checksum);
            self.send(Destination::Replica(peer), Payload::Header(request));
            return Ok(());
        }
        let count = self.state.data_file().grid().durable_block_count();
        if count == 0 {
            return Ok(());
        }
        self.scrub.cursor %= count;
        let reference =
            self.state.data_file().grid().durable_block(self.scrub.cursor).expect("within the count");
        self.scrub.cursor += 1;
        let intact = self.state.data_file_mut().block_read(&reference, &mut self.scrub.block)?;
        if !intact {
            self.scrub.found += 1;
            self.scrub.damaged = Some(reference);
        }
        Ok(())
    }

    /// Any replica answers a peer's request for a block, if its own block at that address has
    /// the checksum asked for (read back and verified here).
    pub(super) fn on_request_block(&mut self, header: &Header) -> Result<PeerMessage, ReplicaStateError> {
        let block_size = self.scrub.block.len();
        // A block fits in a message of the pool (`BLOCK_SIZE_MAX`, and a pooled message holds a
        // reply of `REPLY_SIZE_MAX`).
        assert!(HEADER_SIZE + block_size <= self.state.pool().message_size());
        let reference = BlockReference { checksum: header.context, address: header.op, reserved: 0 };
        if !self.state.data_file_mut().block_read(&reference, &mut self.scrub.block)? {
            return Ok(PeerMessage::Ignored("a block this replica does not hold intact"));
        }
        let cluster = self.state.data_file().superblock().cluster;
        let answer = Header {
            op: reference.address,
            context: reference.checksum,
            view: self.view,
            replica: self.replica,
            ..Header::new(Command::Block, cluster)
        };
        let Some(message) = message_sealed(self.state.pool_mut(), answer, &self.scrub.block) else {
            return Ok(PeerMessage::Ignored("no free message"));
        };
        self.send(Destination::Replica(header.replica), Payload::Message(message));
        Ok(PeerMessage::Handled)
    }

    /// A replica takes a peer's copy of its damaged block: written back if it is that block.
    pub(super) fn on_block(
        &mut self,
        header: &Header,
        body: &[u8],
    ) -> Result<PeerMessage, ReplicaStateError> {
        let Some(damaged) = self.scrub.damaged else { return Ok(PeerMessage::Ignored("no block damaged")) };
        if header.op != damaged.address
            || header.context != damaged.checksum
            || body.len() != self.scrub.block.len()
        {
            return Ok(PeerMessage::Ignored("another block"));
        }
        self.scrub.block.copy_from_slice(body);
        if !self.state.data_file_mut().block_repair(&damaged, &self.scrub.block)? {
            return Ok(PeerMessage::Ignored("a block that is not the damaged one, or no longer needed"));
        }
        self.scrub.damaged = None;
        self.scrub.repaired += 1;
        Ok(PeerMessage::Handled)
    }
}
