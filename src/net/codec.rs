//! Message framing for both ends of a connection (`docs/protocol.md`, "Framing and validation"):
//! a fixed-capacity, 16-byte aligned [`MessageBuffer`], an incremental [`Decoder`] that turns
//! received bytes into complete, validated messages, and the headers of the messages a client
//! and a replica send each other ([`request_header`], [`reply_header`], [`eviction_header`]).
//!
//! The decoder owns one buffer of `MESSAGE_SIZE_MAX` bytes, allocated once: bytes are received
//! straight into it ([`Decoder::spare`] and [`Decoder::advance`], or copied with
//! [`Decoder::feed`]), and a complete message is handed out as a borrowed [`Message`]. Nothing is
//! allocated per message. A message is only ever handed out after every check passed, in the
//! order the protocol gives: header checksum first (no other field is trusted before it), then
//! cluster, release, command, reserved bytes, size, and finally the body checksum.

use crate::constants::{HEADER_SIZE, MESSAGE_SIZE_MAX};
use crate::operation::Operation;
use crate::vsr::header::{Command, EvictionReason, Header, ReplyStatus, RELEASE};

/// The number of 16-byte words of a [`MessageBuffer`].
const MESSAGE_WORDS: usize = MESSAGE_SIZE_MAX / size_of::<u128>();

const _: () = assert!(MESSAGE_SIZE_MAX.is_multiple_of(size_of::<u128>()));
const _: () = assert!(HEADER_SIZE.is_multiple_of(align_of::<Header>())); // Bodies stay aligned.
const _: () = assert!(align_of::<Header>() <= align_of::<u128>());

/// Why received bytes are not a valid message. Any of these closes the connection: nothing of
/// the message is used (but see [`Decoder::foreign_header`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    /// The header checksum does not verify: the header is corrupt or not a header at all.
    #[error("header checksum does not verify (corrupt header, or not a ledger peer)")]
    Checksum,
    /// The message belongs to another cluster.
    #[error("message is for cluster {cluster:#x}, not {expected:#x}")]
    Cluster {
        /// The cluster the receiver belongs to.
        expected: u128,
        /// The cluster in the header.
        cluster: u128,
    },
    /// The sender speaks another release of the protocol.
    #[error("message has release {release}; this build speaks release {RELEASE}")]
    Release {
        /// The release in the header.
        release: u32,
    },
    /// The command code is not one of the protocol's commands.
    #[error("unknown command {command}")]
    Command {
        /// The command code in the header.
        command: u8,
    },
    /// A reserved header byte is not zero.
    #[error("reserved header byte at offset {offset} is {value:#04x}, not zero")]
    Reserved {
        /// The byte's offset in the header.
        offset: usize,
        /// The byte's value.
        value: u8,
    },
    /// The size is smaller than a header or larger than the largest message.
    #[error("message size {size} is outside {HEADER_SIZE}..={MESSAGE_SIZE_MAX}")]
    Size {
        /// The size in the header.
        size: u32,
    },
    /// The body does not match the header's body checksum.
    #[error("body checksum does not verify (corrupt body)")]
    ChecksumBody,
}

/// Checks a received header as `docs/protocol.md` prescribes, in its order: checksum, cluster,
/// release, command, reserved bytes, size. The body is checked separately by [`validate_body`].
pub fn validate_header(header: &Header, cluster: u128) -> Result<(), FrameError> {
    if !header.valid_checksum() {
        return Err(FrameError::Checksum);
    }
    if header.cluster != cluster {
        return Err(FrameError::Cluster { expected: cluster, cluster: header.cluster });
    }
    if header.release != RELEASE {
        return Err(FrameError::Release { release: header.release });
    }
    // A zeroed header's command (`reserved`) is never sent.
    match header.command() {
        None | Some(Command::Reserved) => return Err(FrameError::Command { command: header.command }),
        Some(_) => {}
    }
    if let Some(index) = header.reserved.iter().position(|byte| *byte != 0) {
        let offset = core::mem::offset_of!(Header, reserved) + index;
        return Err(FrameError::Reserved { offset, value: header.reserved[index] });
    }
    let size = header.size as usize;
    if !(HEADER_SIZE..=MESSAGE_SIZE_MAX).contains(&size) {
        return Err(FrameError::Size { size: header.size });
    }
    Ok(())
}

/// Checks `body` against a header that passed [`validate_header`].
pub fn validate_body(header: &Header, body: &[u8]) -> Result<(), FrameError> {
    if header.valid_checksum_body(body) {
        Ok(())
    } else {
        Err(FrameError::ChecksumBody)
    }
}

/// One message's worth of memory: `MESSAGE_SIZE_MAX` bytes, 16-byte aligned, so the header and
/// the 16-byte aligned records of the body are read in place.
pub struct MessageBuffer {
    words: Box<[u128]>,
}

impl Default for MessageBuffer {
    fn default() -> Self {
        MessageBuffer::new()
    }
}

impl std::fmt::Debug for MessageBuffer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageBuffer").field("header", self.header()).finish_non_exhaustive()
    }
}

impl MessageBuffer {
    /// A zeroed buffer. This allocates `MESSAGE_SIZE_MAX` bytes: make buffers once, at start-up.
    pub fn new() -> MessageBuffer {
        MessageBuffer { words: vec![0u128; MESSAGE_WORDS].into_boxed_slice() }
    }

    /// The whole buffer, `MESSAGE_SIZE_MAX` bytes.
    pub fn as_bytes(&self) -> &[u8] {
        bytemuck::cast_slice(&self.words)
    }

    /// The whole buffer, `MESSAGE_SIZE_MAX` bytes.
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        bytemuck::cast_slice_mut(&mut self.words)
    }

    /// The header at the start of the buffer (whatever it holds: not necessarily valid).
    pub fn header(&self) -> &Header {
        bytemuck::from_bytes(&self.as_bytes()[..HEADER_SIZE])
    }

    /// The space for a body: everything after the header. Write the body here, then
    /// [`MessageBuffer::seal`].
    pub fn body_mut(&mut self) -> &mut [u8] {
        &mut self.as_bytes_mut()[HEADER_SIZE..]
    }

    /// Completes a message whose body is the first `body_size` bytes of
    /// [`MessageBuffer::body_mut`]: writes `header` with its `size` and both checksums set.
    pub fn seal(&mut self, mut header: Header, body_size: usize) {
        assert!(body_size <= MESSAGE_SIZE_MAX - HEADER_SIZE);
        header.set_body(&self.as_bytes()[HEADER_SIZE..HEADER_SIZE + body_size]);
        header.set_checksum();
        self.as_bytes_mut()[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
    }

    /// Copies `body` behind the header and seals the message (see [`MessageBuffer::seal`]).
    pub fn seal_with_body(&mut self, header: Header, body: &[u8]) {
        self.body_mut()[..body.len()].copy_from_slice(body);
        self.seal(header, body.len());
    }

    /// Seals a request (see [`request_header`]) whose body is the first `body_size` bytes of
    /// [`MessageBuffer::body_mut`].
    pub fn seal_request(
        &mut self,
        cluster: u128,
        client: u128,
        session: u64,
        request: u32,
        operation: Operation,
        body_size: usize,
    ) {
        self.seal(request_header(cluster, client, session, request, operation), body_size);
    }

    /// Seals the reply to `request` (see [`reply_header`]) whose body is the first `body_size`
    /// bytes of [`MessageBuffer::body_mut`].
    pub fn seal_reply(
        &mut self,
        request: &Header,
        op: u64,
        timestamp: u64,
        status: ReplyStatus,
        body_size: usize,
    ) {
        self.seal(reply_header(request, op, timestamp, status), body_size);
    }

    /// Seals an eviction answering `request` (see [`eviction_header`]); its body is empty.
    pub fn seal_eviction(&mut self, request: &Header, reason: EvictionReason) {
        self.seal(eviction_header(request, reason), 0);
    }

    /// The sealed message: header and body, `header().size` bytes.
    pub fn message(&self) -> Message<'_> {
        let size = self.header().size as usize;
        assert!((HEADER_SIZE..=MESSAGE_SIZE_MAX).contains(&size), "message buffer is not sealed");
        Message { bytes: &self.as_bytes()[..size] }
    }
}

/// A complete message: a header and its body, borrowed from the buffer that holds it.
#[derive(Clone, Copy, Debug)]
pub struct Message<'a> {
    bytes: &'a [u8],
}

impl<'a> Message<'a> {
    /// The header.
    pub fn header(&self) -> &'a Header {
        bytemuck::from_bytes(&self.bytes[..HEADER_SIZE])
    }

    /// The body, `header().size − 256` bytes; 16-byte aligned.
    pub fn body(&self) -> &'a [u8] {
        &self.bytes[HEADER_SIZE..]
    }

    /// The whole message as it travels on the wire.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Turns a stream of received bytes into complete, validated messages.
///
/// Receive into [`Decoder::spare`] and report the count with [`Decoder::advance`] (or copy with
/// [`Decoder::feed`]), then call [`Decoder::next_message`] until it returns `Ok(None)` before receiving
/// more. A [`FrameError`] is final for the connection: `next_message` keeps returning it until
/// [`Decoder::reset`], which a new connection calls.
pub struct Decoder {
    cluster: u128,
    buffer: MessageBuffer,
    /// Bytes received and not yet consumed start at 0 and end here.
    filled: usize,
    /// The size of the message last handed out, which starts at 0: dropped by the next call.
    consumed: usize,
    /// Whether the header at the start of the buffer passed [`validate_header`] (so its checksum
    /// is computed once per message, not once per received chunk).
    header_valid: bool,
    /// Whether the header at the start of the buffer is of another cluster but passed every
    /// other check: its body is awaited before the [`FrameError::Cluster`] is returned.
    header_foreign: bool,
    /// After a [`FrameError::Cluster`]: the message's header, if both of its checksums verified.
    foreign_header: Option<Header>,
    error: Option<FrameError>,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("cluster", &self.cluster)
            .field("filled", &self.filled)
            .field("consumed", &self.consumed)
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder for messages of `cluster`. Allocates its one [`MessageBuffer`].
    pub fn new(cluster: u128) -> Decoder {
        Decoder {
            cluster,
            buffer: MessageBuffer::new(),
            filled: 0,
            consumed: 0,
            header_valid: false,
            header_foreign: false,
            foreign_header: None,
            error: None,
        }
    }

    /// The cluster whose messages this decoder accepts.
    pub fn cluster(&self) -> u128 {
        self.cluster
    }

    /// Forgets every received byte and any error: for a new connection.
    pub fn reset(&mut self) {
        self.filled = 0;
        self.consumed = 0;
        self.header_valid = false;
        self.header_foreign = false;
        self.foreign_header = None;
        self.error = None;
    }

    /// After [`next_message`](Decoder::next_message) returned [`FrameError::Cluster`]: the
    /// rejected message's header if the message is intact — both checksums verify and every
    /// other check passes — so it comes from a peer configured with another cluster, not from
    /// noise. Its body is not kept. The receiver may use it to explain the rejection
    /// (`docs/protocol.md`, `wrong_cluster`), never as a message of its own cluster.
    pub fn foreign_header(&self) -> Option<&Header> {
        self.foreign_header.as_ref()
    }

    /// True while bytes of a message that is not complete yet are held (the protocol closes a
    /// connection that leaves a partial message for too long).
    pub fn has_partial(&self) -> bool {
        self.filled > self.consumed
    }

    /// Where the next received bytes go. Empty only while a complete message is held that
    /// [`Decoder::next_message`] has not handed out yet.
    pub fn spare(&mut self) -> &mut [u8] {
        self.compact();
        let filled = self.filled;
        &mut self.buffer.as_bytes_mut()[filled..]
    }

    /// Records that `count` bytes were received into the start of [`Decoder::spare`].
    pub fn advance(&mut self, count: usize) {
        assert_eq!(self.consumed, 0, "advance without spare");
        assert!(count <= MESSAGE_SIZE_MAX - self.filled);
        self.filled += count;
    }

    /// Copies as many of `bytes` as fit into the buffer; returns how many were taken.
    pub fn feed(&mut self, bytes: &[u8]) -> usize {
        let spare = self.spare();
        let count = bytes.len().min(spare.len());
        spare[..count].copy_from_slice(&bytes[..count]);
        self.advance(count);
        count
    }

    /// The next complete, valid message, if all of its bytes have been received.
    pub fn next_message(&mut self) -> Result<Option<Message<'_>>, FrameError> {
        if let Some(error) = self.error {
            return Err(error);
        }
        self.compact();
        if self.filled < HEADER_SIZE {
            return Ok(None);
        }
        if !self.header_valid {
            let header = self.buffer.header();
            match validate_header(header, self.cluster) {
                Ok(()) => {}
                // Wait for the body: only a whole intact message shows a misconfigured peer.
                Err(FrameError::Cluster { .. }) if validate_header(header, header.cluster).is_ok() => {
                    self.header_foreign = true;
                }
                Err(error) => {
                    self.error = Some(error);
                    return Err(error);
                }
            }
            self.header_valid = true;
        }
        let size = self.buffer.header().size as usize;
        if self.filled < size {
            return Ok(None);
        }
        let bytes = &self.buffer.as_bytes()[..size];
        let body_valid = validate_body(self.buffer.header(), &bytes[HEADER_SIZE..]);
        if self.header_foreign {
            // The cluster is still the first check that failed, whatever the body.
            let header = *self.buffer.header();
            let error = FrameError::Cluster { expected: self.cluster, cluster: header.cluster };
            self.foreign_header = body_valid.is_ok().then_some(header);
            self.error = Some(error);
            return Err(error);
        }
        if let Err(error) = body_valid {
            self.error = Some(error);
            return Err(error);
        }
        self.consumed = size;
        self.header_valid = false;
        Ok(Some(Message { bytes: &self.buffer.as_bytes()[..size] }))
    }

    /// Drops the message handed out last, moving the bytes received after it to the front.
    fn compact(&mut self) {
        if self.consumed == 0 {
            return;
        }
        assert!(self.consumed <= self.filled);
        let (consumed, filled) = (self.consumed, self.filled);
        self.buffer.as_bytes_mut().copy_within(consumed..filled, 0);
        self.filled -= consumed;
        self.consumed = 0;
    }
}

/// The header of a client's request (`docs/protocol.md`, `request`): `context` is the session
/// (0 for `register`); seal it with [`MessageBuffer::seal`].
pub fn request_header(
    cluster: u128,
    client: u128,
    session: u64,
    request: u32,
    operation: Operation,
) -> Header {
    assert_ne!(client, 0);
    assert!(operation != Operation::Pulse);
    assert_eq!(operation == Operation::Register, request == 0);
    let mut header = Header::new(Command::Request, cluster);
    header.client = client;
    header.context = u128::from(session);
    header.request = request;
    header.operation = operation as u8;
    header
}

/// The header of the reply to `request` (`docs/protocol.md`, `reply`): `op` is the op at which
/// the request committed (the session number for `register`).
pub fn reply_header(request: &Header, op: u64, timestamp: u64, status: ReplyStatus) -> Header {
    assert_eq!(request.command, Command::Request as u8);
    let mut header = Header::new(Command::Reply, request.cluster);
    header.client = request.client;
    header.request = request.request;
    header.operation = request.operation;
    header.context = request.checksum;
    header.op = op;
    header.timestamp = timestamp;
    header.status = status as u8;
    header
}

/// The header of an eviction answering `request` (`docs/protocol.md`, `eviction`); its body is
/// empty.
pub fn eviction_header(request: &Header, reason: EvictionReason) -> Header {
    let mut header = Header::new(Command::Eviction, request.cluster);
    header.client = request.client;
    header.request = request.request;
    header.status = reason as u8;
    header
}

/// The eviction a replica of `cluster` sends before it closes a connection that sent an intact
/// `request` of another cluster ([`Decoder::foreign_header`]): unlike every other eviction, it
/// carries the replica's cluster, so the client can name both (`docs/protocol.md`).
pub fn wrong_cluster_eviction_header(request: &Header, cluster: u128) -> Header {
    assert_eq!(request.command, Command::Request as u8);
    assert_ne!(request.cluster, cluster);
    Header { cluster, ..eviction_header(request, EvictionReason::WrongCluster) }
}

/// The body of the reply to `register` (defined with the header, where the replica builds it).
pub use crate::vsr::header::RegisterResult;

#[cfg(test)]
mod tests {
    use super::*;

    const CLUSTER: u128 = 0xC1;

    fn request(body: &[u8]) -> MessageBuffer {
        let mut buffer = MessageBuffer::new();
        let header = request_header(CLUSTER, 7, 3, 1, Operation::LookupAccounts);
        buffer.seal_with_body(header, body);
        buffer
    }

    /// A header with `edit` applied and the checksum recomputed, so that the check after the
    /// checksum is the one that fails.
    fn resealed(edit: impl FnOnce(&mut Header)) -> Vec<u8> {
        let buffer = request(&[1; 32]);
        let mut bytes = buffer.message().bytes().to_vec();
        let mut header: Header = bytemuck::pod_read_unaligned(&bytes[..HEADER_SIZE]);
        edit(&mut header);
        header.set_checksum();
        bytes[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        bytes
    }

    fn decode_all(bytes: &[u8]) -> Result<Vec<Vec<u8>>, FrameError> {
        let mut decoder = Decoder::new(CLUSTER);
        let mut messages = Vec::new();
        let mut offset = 0;
        loop {
            offset += decoder.feed(&bytes[offset..]);
            match decoder.next_message()? {
                Some(message) => messages.push(message.bytes().to_vec()),
                None if offset == bytes.len() => return Ok(messages),
                None => {}
            }
        }
    }

    #[test]
    fn a_sealed_request_decodes_with_its_fields() {
        let buffer = request(&[9; 48]);
        let message = buffer.message();
        assert_eq!(message.bytes().len(), HEADER_SIZE + 48);
        let messages = decode_all(message.bytes()).unwrap();
        assert_eq!(messages, vec![message.bytes().to_vec()]);
        let header = message.header();
        assert_eq!((header.client, header.context, header.request), (7, 3, 1));
        assert_eq!(header.operation, Operation::LookupAccounts as u8);
        assert_eq!(header.command(), Some(Command::Request));
        assert_eq!((header.parent, header.op, header.view, header.replica, header.status), (0, 0, 0, 0, 0));
    }

    #[test]
    fn each_header_check_names_its_reason() {
        let mut corrupt = request(&[]).message().bytes().to_vec();
        corrupt[100] ^= 1;
        assert_eq!(decode_all(&corrupt), Err(FrameError::Checksum));
        let cases: Vec<(Vec<u8>, FrameError)> = vec![
            (resealed(|h| h.cluster = 2), FrameError::Cluster { expected: CLUSTER, cluster: 2 }),
            (resealed(|h| h.release = 2), FrameError::Release { release: 2 }),
            (resealed(|h| h.command = 0), FrameError::Command { command: 0 }),
            (resealed(|h| h.command = 21), FrameError::Command { command: 21 }),
            (resealed(|h| h.reserved[5] = 0x80), FrameError::Reserved { offset: 145, value: 0x80 }),
            (resealed(|h| h.size = 255), FrameError::Size { size: 255 }),
            (resealed(|h| h.size = 1024 * 1024 + 1), FrameError::Size { size: 1024 * 1024 + 1 }),
            (resealed(|h| h.checksum_body ^= 1), FrameError::ChecksumBody),
        ];
        for (bytes, expected) in cases {
            assert_eq!(decode_all(&bytes), Err(expected));
        }
        // The status byte is not reserved: replies and evictions carry one.
        assert!(decode_all(&resealed(|h| h.status = 4)).is_ok());
    }

    #[test]
    fn a_message_at_the_size_limit_decodes() {
        let body = vec![0xA5; MESSAGE_SIZE_MAX - HEADER_SIZE];
        let buffer = request(&body);
        assert_eq!(buffer.message().bytes().len(), MESSAGE_SIZE_MAX);
        let twice = [buffer.message().bytes(), buffer.message().bytes()].concat();
        assert_eq!(decode_all(&twice).unwrap().len(), 2);
    }

    #[test]
    fn an_error_is_sticky_until_reset() {
        let mut decoder = Decoder::new(CLUSTER);
        decoder.feed(&[0; HEADER_SIZE]);
        assert_eq!(decoder.next_message().unwrap_err(), FrameError::Checksum);
        assert_eq!(decoder.next_message().unwrap_err(), FrameError::Checksum);
        decoder.reset();
        assert!(!decoder.has_partial());
        let buffer = request(&[]);
        decoder.feed(buffer.message().bytes());
        assert!(decoder.next_message().unwrap().is_some());
        assert!(decoder.next_message().unwrap().is_none());
    }

    #[test]
    fn an_intact_message_of_another_cluster_is_rejected_with_its_header_once_whole() {
        let foreign = resealed(|h| h.cluster = 2);
        let mut decoder = Decoder::new(CLUSTER);
        // The header alone: the body is awaited before the error.
        decoder.feed(&foreign[..HEADER_SIZE]);
        assert!(decoder.next_message().unwrap().is_none());
        decoder.feed(&foreign[HEADER_SIZE..]);
        let expected = FrameError::Cluster { expected: CLUSTER, cluster: 2 };
        assert_eq!(decoder.next_message().unwrap_err(), expected);
        let header = decoder.foreign_header().expect("an intact message");
        assert_eq!((header.cluster, header.client), (2, 7));
        decoder.reset();
        assert!(decoder.foreign_header().is_none());
        // A corrupt body, or another failed check, gives no header to trust.
        let mut corrupt = foreign.clone();
        corrupt[HEADER_SIZE] ^= 1;
        decoder.feed(&corrupt);
        assert_eq!(decoder.next_message().unwrap_err(), expected);
        assert!(decoder.foreign_header().is_none());
        decoder.reset();
        decoder.feed(&resealed(|h| (h.cluster, h.release) = (2, 9)));
        assert_eq!(decoder.next_message().unwrap_err(), expected);
        assert!(decoder.foreign_header().is_none());
    }

    #[test]
    fn the_wrong_cluster_eviction_carries_the_replicas_cluster() {
        let buffer = resealed(|h| h.cluster = 2);
        let request: Header = bytemuck::pod_read_unaligned(&buffer[..HEADER_SIZE]);
        let eviction = wrong_cluster_eviction_header(&request, CLUSTER);
        assert_eq!((eviction.cluster, eviction.client, eviction.request), (CLUSTER, 7, 1));
        assert_eq!(eviction.status, EvictionReason::WrongCluster as u8);
        assert_eq!(eviction.command(), Some(Command::Eviction));
    }

    #[test]
    fn reply_and_eviction_copy_the_request_fields() {
        let buffer = request(&[]);
        let request = buffer.message().header();
        let reply = reply_header(request, 11, 12, ReplyStatus::TransfersFull);
        assert_eq!((reply.client, reply.request, reply.operation), (7, 1, request.operation));
        assert_eq!((reply.context, reply.op, reply.timestamp, reply.status), (request.checksum, 11, 12, 2));
        let eviction = eviction_header(request, EvictionReason::SessionTooLow);
        assert_eq!((eviction.client, eviction.request, eviction.status), (7, 1, 7));
        assert_eq!(eviction.command(), Some(Command::Eviction));
    }
}
