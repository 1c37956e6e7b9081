//! State sync (spec §6): a replica that cannot go on from its own checkpoint installs a peer's.
//!
//! Two things start it. A backup fell further behind than its peers' WALs reach (the ops it
//! lacks are overwritten everywhere, so repair cannot catch it up): it needs a checkpoint newer
//! than what it executed. Or the replica's own checkpoint has a damaged block it found at start
//! (`DataFile::checkpoint_damage`): it needs that checkpoint's blocks, or a newer checkpoint.
//!
//! The syncing replica takes no part in the cluster: it votes for nothing, answers nothing and
//! commits nothing, like a replica that is down. It asks every peer for its durable checkpoint
//! (`request_sync_checkpoint`, answered with `sync_checkpoint`: the superblock's checkpoint, a
//! few KiB), and installs the first one new enough: the superblock names it before any of its
//! blocks is fetched, so a crash from then on comes back syncing to it (its blocks are missing
//! until fetched). Every checkpoint covers only committed ops, and checkpoints at the same op
//! are byte-identical on every replica, blocks and addresses included (`Grid::begin`): so the
//! replica reads back each block the checkpoint references, keeps what is already intact at
//! its address (unchanged pages usually are), and fetches the rest by address and checksum
//! (`request_block`/`block`, as the scrubber does), manifest first, then the pages it names.
//! When every block is intact, the loop opens the data file again ([`Replica::synced`]): the
//! state loads from the checkpoint, the WAL after it replays as at any start (its older ops
//! are not on the checkpoint's chain and are cut), and the replica catches up from there by
//! repair, like a restarted one. Its log view and view head are untouched: it never claims a
//! log it does not hold.

use super::normal::{peers, PeerMessage};
use super::{message_sealed, Replica};
use crate::constants::{
    SYNC_BLOCK_REQUESTS_PER_TICK, SYNC_BLOCK_RETRY_NS, SYNC_CHECKPOINT_INTERVAL_NS, SYNC_STALL_NS,
    SYNC_VERIFY_BLOCKS_PER_TICK,
};
use crate::storage::{AlignedBuffer, Storage};
use crate::vsr::header::{Command, Header};
use crate::vsr::outbox::{Destination, Payload};
use crate::vsr::replica_state::ReplicaStateError;
use crate::vsr::superblock::{BlockReference, Checkpoint};
use crate::vsr::write_stage::STREAMS;

/// The state sync in progress.
pub struct Sync {
    /// The lowest checkpoint op that will do: above the op the replica executed (it fell
    /// behind), or its own checkpoint's (whose blocks it lacks).
    floor: u64,
    /// The checkpoint being installed, once a peer offered one (or the replica's own).
    target: Option<Checkpoint>,
    /// The superblock names `target`.
    installed: bool,
    /// The blocks of `target` to verify: its manifest's, then (once those are intact) the
    /// pages the manifest names.
    blocks: Vec<BlockReference>,
    /// `blocks` holds the pages.
    pages: bool,
    /// The next block of `blocks` to read back and verify.
    cursor: usize,
    /// Blocks not intact here, each with when it was last asked for (0: never).
    missing: Vec<(BlockReference, u64)>,
    /// Which peer is asked next.
    round: u64,
    /// When peers were last asked for their checkpoints (0: never).
    asked: u64,
    /// When the sync last made progress (a checkpoint installed, a block fetched).
    progressed: u64,
    /// Every block of the installed checkpoint is intact here.
    done: bool,
    /// Blocks fetched from peers, and blocks found intact here (statistics).
    fetched: u64,
    intact: u64,
    /// One block, sector-aligned.
    block: AlignedBuffer,
}

impl Sync {
    /// A sync that wants a checkpoint at op `floor` or above, starting from `target` if this
    /// replica's superblock names it already (its own checkpoint, damaged).
    fn new(floor: u64, target: Option<Checkpoint>, block_size: usize, now: u64) -> Sync {
        let mut sync = Sync {
            floor,
            target: None,
            installed: false,
            blocks: Vec::new(),
            pages: false,
            cursor: 0,
            missing: Vec::new(),
            round: 0,
            asked: 0,
            progressed: now,
            done: false,
            fetched: 0,
            intact: 0,
            block: AlignedBuffer::new(block_size),
        };
        if let Some(target) = target {
            sync.target_installed(target, now);
        }
        sync
    }

    /// The superblock names `target` now: its manifest blocks are verified first.
    fn target_installed(&mut self, target: Checkpoint, now: u64) {
        self.blocks = target.manifest[..target.manifest_block_count as usize].to_vec();
        self.target = Some(target);
        self.installed = true;
        self.pages = false;
        self.cursor = 0;
        self.missing.clear();
        self.progressed = now;
    }

    /// No block came for a while: the peers may no longer hold the target's blocks.
    fn stalled(&self, now: u64) -> bool {
        now >= self.progressed + SYNC_STALL_NS
    }
}

impl<S: Storage> Replica<S> {
    /// True while the replica is syncing its state from its peers ([`Sync`]).
    pub fn syncing(&self) -> bool {
        self.sync.is_some()
    }

    /// True once a state sync has every block of the checkpoint it installed: the loop must
    /// open the data file again (the replica's state is not the checkpoint's until then), with
    /// no write stage in flight.
    pub fn synced(&self) -> bool {
        self.sync.as_ref().is_some_and(|sync| sync.done)
    }

    /// The state sync in progress: the op of the checkpoint it installs (once it has one),
    /// the blocks it fetched from peers, and those it found intact here (statistics).
    pub fn sync_progress(&self) -> Option<(Option<u64>, u64, u64)> {
        let sync = self.sync.as_ref()?;
        Some((sync.target.map(|target| target.op), sync.fetched, sync.intact))
    }

    /// Starts a state sync for a checkpoint at op `floor` or above (see [`Sync`]): the
    /// replica leaves its view's work (its queued requests are dropped; their clients retry).
    pub(super) fn sync_begin(&mut self, floor: u64, now: u64) {
        assert!(self.replica_count > 1, "a replica alone has no peer to sync from");
        assert!(self.sync.is_none());
        self.queue_release();
        self.pulse_queued = false;
        self.status = super::Status::ViewChange;
        let superblock = self.state.data_file().superblock();
        let own = self.state.data_file().checkpoint_damage().is_some().then_some(superblock.checkpoint);
        self.sync = Some(Sync::new(floor, own, superblock.block_size as usize, now));
    }

    /// One tick of the sync: install the target once no stage is in flight, verify the next
    /// blocks, ask for the missing ones, and ask for checkpoints while there is no target or
    /// the fetch stalls.
    pub(super) fn sync_tick(&mut self, now: u64) -> Result<(), ReplicaStateError> {
        if STREAMS.iter().any(|stream| self.state.stage_in_flight(*stream)) {
            return Ok(()); // Their buffers and superblock go first.
        }
        let sync = self.sync.as_mut().expect("syncing");
        if sync.done {
            return Ok(());
        }
        if sync.progressed == 0 {
            sync.progressed = now; // Begun at start (its own checkpoint damaged): from its first tick.
        }
        if let (Some(target), false) = (sync.target, sync.installed) {
            if target.op <= self.state.data_file().checkpoint_op() {
                // A checkpoint in flight when the sync began became durable meanwhile, as new
                // as the target: another is asked for.
                sync.floor = sync.floor.max(self.state.data_file().checkpoint_op() + 1);
                sync.target = None;
            } else {
                self.state.data_file_mut().sync_install(&target)?;
                self.sync.as_mut().expect("syncing").target_installed(target, now);
            }
        }
        let sync = self.sync.as_mut().expect("syncing");
        if (sync.target.is_none() || sync.stalled(now)) && now >= sync.asked + SYNC_CHECKPOINT_INTERVAL_NS {
            sync.asked = now;
            let floor = sync.target.map_or(sync.floor, |target| target.op + 1);
            let request = self.header(Command::RequestSyncCheckpoint, floor, 0, 0);
            for peer in peers(self.replica, self.replica_count) {
                self.send(Destination::Replica(peer), Payload::Header(request));
            }
        }
        if self.sync.as_ref().is_some_and(|sync| sync.installed) {
            self.sync_verify()?;
            self.sync_request(now);
        }
        Ok(())
    }

    /// Reads back and verifies the next blocks of the target; once all are intact, lists the
    /// pages (after the manifest) or is done.
    fn sync_verify(&mut self) -> Result<(), ReplicaStateError> {
        let Replica { sync, state, .. } = self;
        let sync = sync.as_mut().expect("syncing");
        for _ in 0..SYNC_VERIFY_BLOCKS_PER_TICK {
            let Some(reference) = sync.blocks.get(sync.cursor).copied() else { break };
            sync.cursor += 1;
            if state.data_file_mut().block_read(&reference, &mut sync.block)? {
                sync.intact += 1;
            } else {
                sync.missing.push((reference, 0));
            }
        }
        if sync.cursor < sync.blocks.len() || !sync.missing.is_empty() {
            return Ok(());
        }
        if sync.pages {
            // Every block is here: durable before the data file opens on them.
            state.data_file_mut().sync_blocks_durable()?;
            sync.done = true;
            return Ok(());
        }
        match state.data_file_mut().checkpoint_pages(&mut sync.block)? {
            Some(pages) => {
                sync.blocks = pages;
                sync.pages = true;
                sync.cursor = 0;
            }
            // Intact manifest blocks that name too few pages: a faulty build's checkpoint.
            // Another checkpoint (a newer one) is needed; peers are asked again.
            None => {
                sync.floor = sync.target.map_or(sync.floor, |target| target.op + 1);
                sync.target = None;
                sync.installed = false;
                sync.blocks.clear();
            }
        }
        Ok(())
    }

    /// Asks a peer (another at each round) for each missing block not asked for lately.
    fn sync_request(&mut self, now: u64) {
        let mut requests = [BlockReference::default(); SYNC_BLOCK_REQUESTS_PER_TICK];
        let mut count = 0;
        let sync = self.sync.as_mut().expect("syncing");
        for (reference, asked) in sync.missing.iter_mut() {
            if count == requests.len() {
                break;
            }
            if *asked == 0 || now >= *asked + SYNC_BLOCK_RETRY_NS {
                *asked = now;
                requests[count] = *reference;
                count += 1;
            }
        }
        for reference in &requests[..count] {
            let sync = self.sync.as_mut().expect("syncing");
            sync.round += 1;
            let round = sync.round as usize % (usize::from(self.replica_count) - 1);
            let peer = peers(self.replica, self.replica_count).nth(round).expect("a peer of a cluster");
            let request = self.header(Command::RequestBlock, reference.address, 0, reference.checksum);
            self.send(Destination::Replica(peer), Payload::Header(request));
        }
    }

    /// A peer's durable checkpoint: the target, if new enough (and no better one is being
    /// fetched), once it proves consistent with this data file.
    pub(super) fn on_sync_checkpoint(&mut self, header: &Header, body: &[u8], now: u64) -> PeerMessage {
        let Some(sync) = self.sync.as_ref() else { return PeerMessage::Ignored("not syncing") };
        if sync.done {
            return PeerMessage::Ignored("synced: the data file opens on the installed checkpoint");
        }
        if body.len() != core::mem::size_of::<Checkpoint>() {
            return PeerMessage::Ignored("a checkpoint of the wrong size");
        }
        let mut checkpoint: Checkpoint = bytemuck::pod_read_unaligned(body);
        if checkpoint.op != header.op || checkpoint.id() != header.context {
            return PeerMessage::Ignored("a checkpoint that is not the one its header names");
        }
        checkpoint.op += u64::from(self.sync_off_by_one);
        if header.commit != self.state.data_file().superblock().format_fingerprint() {
            self.format_mismatch = Some(header.replica);
            return PeerMessage::Ignored("a checkpoint of a data file formatted with other options");
        }
        if checkpoint.op < sync.floor {
            return PeerMessage::Ignored("a checkpoint too old to sync to");
        }
        if let Some(target) = sync.target {
            if checkpoint.op <= target.op || !sync.stalled(now) {
                return PeerMessage::Ignored("a sync to another checkpoint is in progress");
            }
        }
        let superblock = self.state.data_file().superblock();
        if checkpoint.op <= superblock.checkpoint.op {
            return PeerMessage::Ignored("a checkpoint not newer than this replica's");
        }
        let mut candidate = *superblock;
        candidate.checkpoint = checkpoint;
        if candidate.check(self.state.data_file().storage().size()).is_err() {
            return PeerMessage::Ignored("a checkpoint inconsistent with this data file");
        }
        let sync = self.sync.as_mut().expect("syncing");
        sync.target = Some(checkpoint);
        sync.installed = false;
        sync.blocks.clear();
        sync.missing.clear();
        PeerMessage::Handled
    }

    /// Any replica not itself syncing answers with its durable checkpoint, if at least as new
    /// as asked.
    pub(super) fn on_request_sync_checkpoint(&mut self, header: &Header) -> PeerMessage {
        if self.sync.is_some() {
            return PeerMessage::Ignored("syncing itself");
        }
        let checkpoint = self.state.data_file().superblock().checkpoint;
        if checkpoint.op < header.op || checkpoint.op == 0 {
            return PeerMessage::Ignored("no checkpoint that new");
        }
        let fingerprint = self.state.data_file().superblock().format_fingerprint();
        let answer = self.header(Command::SyncCheckpoint, checkpoint.op, fingerprint, checkpoint.id());
        let body = bytemuck::bytes_of(&checkpoint);
        let Some(message) = message_sealed(self.state.pool_mut(), answer, body) else {
            return PeerMessage::Ignored("no free message");
        };
        self.send(Destination::Replica(header.replica), Payload::Message(message));
        PeerMessage::Handled
    }

    /// A block a syncing replica asked for: written at its address if it is one still missing.
    pub(super) fn sync_on_block(
        &mut self,
        header: &Header,
        body: &[u8],
        now: u64,
    ) -> Result<PeerMessage, ReplicaStateError> {
        let Replica { sync, state, .. } = self;
        let sync = sync.as_mut().expect("syncing");
        let reference = BlockReference { checksum: header.context, address: header.op, reserved: 0 };
        let Some(index) = sync.missing.iter().position(|(missing, _)| *missing == reference) else {
            return Ok(PeerMessage::Ignored("a block this sync does not lack"));
        };
        if body.len() != sync.block.len() {
            return Ok(PeerMessage::Ignored("a block of the wrong size"));
        }
        sync.block.copy_from_slice(body);
        if !state.data_file_mut().block_install(&reference, &sync.block)? {
            return Ok(PeerMessage::Ignored("a block that is not the one it names"));
        }
        sync.missing.swap_remove(index);
        sync.fetched += 1;
        sync.progressed = now;
        Ok(PeerMessage::Handled)
    }
}
