//! The 256-byte header that starts every message on the wire and every WAL entry: checksums of
//! itself and of the body (xxh3-128), the cluster, the command, and the command's fields.
//! `docs/protocol.md` and `docs/data-file.md` give the byte layout.

use bytemuck::{Pod, Zeroable};
use xxhash_rust::xxh3::xxh3_128;

use crate::constants::{HEADER_SIZE, MESSAGE_SIZE_MAX};

/// The protocol and data-file format version carried in every header.
pub const RELEASE: u32 = 1;

/// What a message is.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Never valid: a zeroed header has this command.
    Reserved = 0,
    /// A client's request.
    Request = 1,
    /// A request ordered by the primary: one WAL entry.
    Prepare = 2,
    /// A backup's acknowledgement that a prepare and its redundant header are durable: `op`,
    /// and the prepare's checksum in `context`.
    PrepareOk = 3,
    /// The result of a committed request.
    Reply = 4,
    /// The primary's heartbeat: its commit point in `commit` and its newest op in `op`.
    Commit = 5,
    /// Tells a client that its session was evicted.
    Eviction = 6,
    /// A replica's request for the prepare of one op (repair): `op`, and the prepare's
    /// checksum in `context` if known (0 if not).
    RequestPrepare = 7,
    /// A replica's vote to leave its view for `view` (header only).
    StartViewChange = 8,
    /// A replica's log, to the primary of the new `view`: its head in `op`, its `commit_max`
    /// in `commit`, its log view in `request`, and the headers of its newest ops as the body
    /// (newest first, consecutive, at most `VIEW_HEADERS_MAX`).
    DoViewChange = 9,
    /// The new primary's log, to every backup of `view`: head in `op`, `commit_max` in
    /// `commit`, the headers of its newest ops as the body (as `DoViewChange`).
    StartView = 10,
    /// A replica that saw a message of `view` asks its primary for the `start_view` (header
    /// only).
    RequestStartView = 11,
    /// A request for the prepare headers of ops `commit..=op` (repair of a log's chain).
    RequestHeaders = 12,
    /// The prepare headers a replica holds of a requested range, newest first, as the body.
    Headers = 13,
    /// A replica's request for another's wall clock: the sender's monotonic clock in `op`, the
    /// fingerprint of its data file's format options in `context` (header only).
    Ping = 14,
    /// The answer to a `ping`: its `op` echoed, and the answering replica's wall clock (ns
    /// since the Unix epoch) in `timestamp` (header only).
    Pong = 15,
    /// A replica's request for the latest reply of `client`'s session, which recovery lost:
    /// the reply's checksum in `context` (header only). A peer that holds that very reply
    /// answers with it (a `Reply` message, addressed to the replica).
    RequestReply = 16,
    /// A replica's request for a grid block its scrubber found damaged: its address in `op`,
    /// its checksum in `context` (header only).
    RequestBlock = 17,
    /// A grid block a peer asked for: its address in `op`, its checksum in `context`, the
    /// block as the body.
    Block = 18,
    /// A syncing replica's request for a peer's durable checkpoint, if its op is at least `op`
    /// (header only).
    RequestSyncCheckpoint = 19,
    /// A replica's durable checkpoint (the superblock's `Checkpoint` as the body): its op in
    /// `op`, its id in `context`, and in `commit` the fingerprint of the options its data file
    /// was formatted with (`SuperBlock::format_fingerprint`).
    SyncCheckpoint = 20,
}

impl Command {
    /// The command with this code, if there is one.
    pub fn from_u8(code: u8) -> Option<Command> {
        Some(match code {
            0 => Command::Reserved,
            1 => Command::Request,
            2 => Command::Prepare,
            3 => Command::PrepareOk,
            4 => Command::Reply,
            5 => Command::Commit,
            6 => Command::Eviction,
            7 => Command::RequestPrepare,
            8 => Command::StartViewChange,
            9 => Command::DoViewChange,
            10 => Command::StartView,
            11 => Command::RequestStartView,
            12 => Command::RequestHeaders,
            13 => Command::Headers,
            14 => Command::Ping,
            15 => Command::Pong,
            16 => Command::RequestReply,
            17 => Command::RequestBlock,
            18 => Command::Block,
            19 => Command::RequestSyncCheckpoint,
            20 => Command::SyncCheckpoint,
            _ => return None,
        })
    }
}

/// A message header. `checksum` covers bytes 16..256 of the header; `checksum_body` covers the
/// `size − 256` body bytes that follow it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct Header {
    /// xxh3-128 of header bytes 16..256.
    pub checksum: u128,
    /// xxh3-128 of the body.
    pub checksum_body: u128,
    /// Prepare: the checksum of the previous prepare's header (the hash chain). Request: the
    /// checksum of the client's previous reply.
    pub parent: u128,
    /// The client id (0 for the primary's own requests, such as `pulse`).
    pub client: u128,
    /// Command-specific: a reply carries the checksum of its request.
    pub context: u128,
    /// The cluster id: messages and data files of other clusters are rejected.
    pub cluster: u128,
    /// Prepare/reply: the op number (position in the log).
    pub op: u64,
    /// Prepare: the commit number of the primary when it prepared this op.
    pub commit: u64,
    /// Prepare: the op timestamp (ns) assigned by the primary.
    pub timestamp: u64,
    /// The client's request number.
    pub request: u32,
    /// The view in which this message was sent.
    pub view: u32,
    /// The size of header and body in bytes.
    pub size: u32,
    /// The protocol version ([`RELEASE`]).
    pub release: u32,
    /// A [`Command`].
    pub command: u8,
    /// An [`crate::operation::Operation`] code, or a VSR operation below 128.
    pub operation: u8,
    /// The replica that sent or prepared this message.
    pub replica: u8,
    /// Reply: a [`ReplyStatus`]. Eviction: an [`EvictionReason`]. Otherwise zero.
    pub status: u8,
    /// Must be zero.
    pub reserved: [u8; 116],
}

/// The body of the reply to `register`: `{batch_size_limit: u32, reserved: [u8; 12]}`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
pub struct RegisterResult {
    /// The largest request body the cluster accepts, in bytes.
    pub batch_size_limit: u32,
    /// Must be zero.
    pub reserved: [u8; 12],
}

const _: () = assert!(core::mem::size_of::<RegisterResult>() == 16);

impl RegisterResult {
    /// A result announcing `batch_size_limit`.
    pub fn new(batch_size_limit: u32) -> RegisterResult {
        RegisterResult { batch_size_limit, ..RegisterResult::zeroed() }
    }
}

/// Whether a committed request produced results (`Reply.status`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplyStatus {
    /// The body holds the results.
    Ok = 0,
    /// The request was rejected as a whole: the accounts table is full.
    AccountsFull = 1,
    /// The request was rejected as a whole: the transfers table is full.
    TransfersFull = 2,
    /// The request was rejected as a whole: the expiry queue is full.
    ExpiriesFull = 3,
    /// The request was rejected as a whole: the history table is full.
    HistoryFull = 4,
}

impl ReplyStatus {
    /// The status with this code, if there is one.
    pub fn from_u8(code: u8) -> Option<ReplyStatus> {
        Some(match code {
            0 => ReplyStatus::Ok,
            1 => ReplyStatus::AccountsFull,
            2 => ReplyStatus::TransfersFull,
            3 => ReplyStatus::ExpiriesFull,
            4 => ReplyStatus::HistoryFull,
            _ => return None,
        })
    }
}

/// Why a client's session was evicted (spec §13; `Eviction.status`).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EvictionReason {
    /// The client has no session (never registered, or evicted earlier).
    NoSession = 1,
    /// The client's release is too old.
    ClientReleaseTooLow = 2,
    /// The client's release is too new.
    ClientReleaseTooHigh = 3,
    /// The request's operation is unknown.
    InvalidRequestOperation = 4,
    /// The request's body is malformed for its operation.
    InvalidRequestBody = 5,
    /// The request's body is larger than the limit.
    InvalidRequestBodySize = 6,
    /// The session is older than the client's latest (a newer session replaced it).
    SessionTooLow = 7,
    /// The client changed release mid-session.
    SessionReleaseMismatch = 8,
    /// The request was for another cluster. Unlike every other eviction, its header carries the
    /// replica's cluster, not the request's, so that the client can say which cluster it reached;
    /// the replica closes the connection after sending it.
    WrongCluster = 9,
}

impl EvictionReason {
    /// The reason with this code, if there is one.
    pub fn from_u8(code: u8) -> Option<EvictionReason> {
        Some(match code {
            1 => EvictionReason::NoSession,
            2 => EvictionReason::ClientReleaseTooLow,
            3 => EvictionReason::ClientReleaseTooHigh,
            4 => EvictionReason::InvalidRequestOperation,
            5 => EvictionReason::InvalidRequestBody,
            6 => EvictionReason::InvalidRequestBodySize,
            7 => EvictionReason::SessionTooLow,
            8 => EvictionReason::SessionReleaseMismatch,
            9 => EvictionReason::WrongCluster,
            _ => return None,
        })
    }
}

const _: () = assert!(core::mem::size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(core::mem::offset_of!(Header, command) == 136);
const _: () = assert!(core::mem::offset_of!(Header, status) == 139);

impl Header {
    /// A zeroed header with the given command and cluster.
    pub fn new(command: Command, cluster: u128) -> Header {
        Header {
            command: command as u8,
            cluster,
            release: RELEASE,
            size: HEADER_SIZE as u32,
            ..Zeroable::zeroed()
        }
    }

    fn checksum_compute(&self) -> u128 {
        xxh3_128(&bytemuck::bytes_of(self)[16..])
    }

    /// Sets `checksum_body` from `body` and `size` from its length.
    pub fn set_body(&mut self, body: &[u8]) {
        assert!(HEADER_SIZE + body.len() <= MESSAGE_SIZE_MAX);
        self.size = (HEADER_SIZE + body.len()) as u32;
        self.checksum_body = xxh3_128(body);
    }

    /// Seals the header: sets `checksum`. Call after every other field is final.
    pub fn set_checksum(&mut self) {
        self.checksum = self.checksum_compute();
    }

    /// True if the header is intact.
    pub fn valid_checksum(&self) -> bool {
        self.checksum == self.checksum_compute()
    }

    /// True if `body` is the body this header describes.
    pub fn valid_checksum_body(&self, body: &[u8]) -> bool {
        body.len() + HEADER_SIZE == self.size as usize && xxh3_128(body) == self.checksum_body
    }

    /// The command, if the code is known.
    pub fn command(&self) -> Option<Command> {
        Command::from_u8(self.command)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_header_verifies_and_any_bit_flip_is_detected() {
        let mut header = Header::new(Command::Prepare, 7);
        header.op = 42;
        header.set_body(b"body bytes");
        header.set_checksum();
        assert!(header.valid_checksum());
        assert!(header.valid_checksum_body(b"body bytes"));
        assert!(!header.valid_checksum_body(b"body bytez"));
        let bytes = bytemuck::bytes_of(&header).to_vec();
        for bit in 0..HEADER_SIZE * 8 {
            let mut flipped = bytes.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            let header: Header = bytemuck::pod_read_unaligned(&flipped);
            assert!(!header.valid_checksum(), "bit {bit} flip undetected");
        }
    }

    #[test]
    fn a_zeroed_header_is_invalid() {
        let header = Header::zeroed();
        assert!(!header.valid_checksum());
        assert_eq!(header.command(), Some(Command::Reserved));
    }
}
