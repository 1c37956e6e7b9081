//! Fuzzing the message decoder (`ledger::net::codec`): it never panics, never hands out a message
//! whose checksums do not verify, and accepts every valid message however the stream is split.
//!
//! The property tests generate arbitrary bytes, valid message streams, and valid streams with
//! bytes flipped, inserted or removed, each fed in arbitrary chunks. `tests/corpus/codec/` keeps
//! interesting inputs that every `cargo test` replays; `expected.txt` there gives the outcome of
//! those whose outcome is known (add a failing fuzz input as a new `.bin` file, with its line).

use std::path::{Path, PathBuf};

use ledger::constants::{HEADER_SIZE, MESSAGE_SIZE_MAX};
use ledger::net::codec::{eviction_header, reply_header, request_header, Decoder, FrameError, MessageBuffer};
use ledger::operation::Operation;
use ledger::vsr::header::{Command, EvictionReason, Header, ReplyStatus};
use proptest::prelude::*;

/// The cluster of every generated message and corpus file.
const CLUSTER: u128 = 0x1ed9e5;

/// What decoding a stream produced: the messages accepted, then the error that stopped it.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    messages: Vec<Vec<u8>>,
    error: Option<FrameError>,
}

/// Feeds `bytes` in chunks of the given sizes (cycled; 0 means 1), draining every message after
/// each chunk, and checks that every accepted message verifies.
fn decode(bytes: &[u8], chunk_sizes: &[usize]) -> Outcome {
    let mut decoder = Decoder::new(CLUSTER);
    let mut messages = Vec::new();
    let mut offset = 0;
    let mut chunk_index = 0;
    loop {
        let chunk = chunk_sizes.get(chunk_index % chunk_sizes.len().max(1)).copied().unwrap_or(usize::MAX);
        chunk_index += 1;
        let end = offset + chunk.max(1).min(bytes.len() - offset);
        let mut fed = offset;
        while fed < end {
            let count = decoder.feed(&bytes[fed..end]);
            fed += count;
            loop {
                match decoder.next_message() {
                    Ok(Some(message)) => {
                        let header = message.header();
                        assert!(header.valid_checksum(), "accepted a header whose checksum fails");
                        assert!(header.valid_checksum_body(message.body()), "accepted a corrupt body");
                        assert_eq!(header.cluster, CLUSTER);
                        assert_eq!(message.bytes().len(), header.size as usize);
                        messages.push(message.bytes().to_vec());
                    }
                    Ok(None) => break,
                    Err(error) => {
                        assert_eq!(decoder.next_message().unwrap_err(), error, "errors are sticky");
                        return Outcome { messages, error: Some(error) };
                    }
                }
            }
            // The buffer always has room once every complete message was drained.
            assert!(count > 0 || fed == end);
        }
        offset = end;
        if offset == bytes.len() {
            return Outcome { messages, error: None };
        }
    }
}

fn command_strategy() -> impl Strategy<Value = Command> {
    prop_oneof![
        Just(Command::Request),
        Just(Command::Prepare),
        Just(Command::PrepareOk),
        Just(Command::Reply),
        Just(Command::Commit),
        Just(Command::Eviction),
    ]
}

/// One valid message: any command, random fields, a body of up to 1 KiB.
fn message_strategy() -> impl Strategy<Value = Vec<u8>> {
    (
        command_strategy(),
        any::<u128>(),
        any::<u64>(),
        any::<u32>(),
        any::<u8>(),
        prop::collection::vec(any::<u8>(), 0..1024),
    )
        .prop_map(|(command, client, op, request, status, body)| {
            let mut header = Header::new(command, CLUSTER);
            header.client = client;
            header.op = op;
            header.request = request;
            header.status = status;
            let mut buffer = MessageBuffer::new();
            buffer.seal_with_body(header, &body);
            buffer.message().bytes().to_vec()
        })
}

fn chunks_strategy() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(prop_oneof![1..8usize, 1..300usize, 1..5000usize], 1..16)
}

#[derive(Clone, Debug)]
enum Mutation {
    Flip { position: usize, mask: u8 },
    Insert { position: usize, byte: u8 },
    Remove { position: usize },
    Truncate { position: usize },
}

fn mutation_strategy() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 1..=255u8).prop_map(|(position, mask)| Mutation::Flip { position, mask }),
        (any::<usize>(), any::<u8>()).prop_map(|(position, byte)| Mutation::Insert { position, byte }),
        any::<usize>().prop_map(|position| Mutation::Remove { position }),
        any::<usize>().prop_map(|position| Mutation::Truncate { position }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_yield_an_unverified_message(
        bytes in prop::collection::vec(any::<u8>(), 0..4096),
        chunks in chunks_strategy(),
    ) {
        let outcome = decode(&bytes, &chunks);
        // 128-bit checksums: random bytes never verify.
        prop_assert!(outcome.messages.is_empty());
    }

    #[test]
    fn valid_messages_are_all_accepted_however_the_stream_is_split(
        messages in prop::collection::vec(message_strategy(), 1..5),
        chunks in chunks_strategy(),
    ) {
        let stream = messages.concat();
        let outcome = decode(&stream, &chunks);
        prop_assert_eq!(outcome, Outcome { messages, error: None });
    }

    #[test]
    fn a_flipped_byte_rejects_its_message_and_keeps_the_ones_before(
        messages in prop::collection::vec(message_strategy(), 1..4),
        position in any::<usize>(),
        mask in 1..=255u8,
        chunks in chunks_strategy(),
    ) {
        let mut stream = messages.concat();
        let position = position % stream.len();
        stream[position] ^= mask;
        let outcome = decode(&stream, &chunks);
        let mut start = 0;
        let damaged = messages.iter().position(|message| {
            start += message.len();
            position < start
        }).unwrap();
        prop_assert_eq!(&outcome.messages[..], &messages[..damaged]);
        prop_assert!(outcome.error.is_some());
    }

    #[test]
    fn mutated_streams_only_yield_messages_that_were_sent(
        messages in prop::collection::vec(message_strategy(), 1..4),
        mutations in prop::collection::vec(mutation_strategy(), 1..4),
        chunks in chunks_strategy(),
    ) {
        let mut stream = messages.concat();
        for mutation in mutations {
            if stream.is_empty() {
                break;
            }
            match mutation {
                Mutation::Flip { position, mask } => {
                    let position = position % stream.len();
                    stream[position] ^= mask;
                }
                Mutation::Insert { position, byte } => stream.insert(position % (stream.len() + 1), byte),
                Mutation::Remove { position } => { stream.remove(position % stream.len()); }
                Mutation::Truncate { position } => stream.truncate(position % stream.len()),
            }
        }
        let outcome = decode(&stream, &chunks);
        for message in &outcome.messages {
            prop_assert!(messages.contains(message), "accepted a message that was never sent");
        }
    }
}

#[test]
fn a_stream_split_at_every_byte_boundary_yields_every_message() {
    let mut request = MessageBuffer::new();
    request.seal_with_body(request_header(CLUSTER, 5, 9, 3, Operation::LookupAccounts), &[7; 48]);
    let mut reply = MessageBuffer::new();
    reply.seal_with_body(reply_header(request.message().header(), 10, 11, ReplyStatus::Ok), &[8; 160]);
    let mut eviction = MessageBuffer::new();
    eviction.seal(eviction_header(request.message().header(), EvictionReason::NoSession), 0);
    let messages = vec![
        request.message().bytes().to_vec(),
        reply.message().bytes().to_vec(),
        eviction.message().bytes().to_vec(),
    ];
    let stream = messages.concat();
    for split in 0..=stream.len() {
        let outcome = decode(&stream, &[split, stream.len()]);
        assert_eq!(outcome, Outcome { messages: messages.clone(), error: None }, "split at {split}");
    }
    assert_eq!(decode(&stream, &[1]), Outcome { messages, error: None });
}

#[test]
fn a_stream_of_the_largest_messages_decodes() {
    let mut buffer = MessageBuffer::new();
    let body = vec![0x5A; MESSAGE_SIZE_MAX - HEADER_SIZE];
    buffer.seal_with_body(Header::new(Command::Prepare, CLUSTER), &body);
    let message = buffer.message().bytes().to_vec();
    let stream = [&message[..], &message[..], &message[..]].concat();
    let outcome = decode(&stream, &[4096, 65536, 1 << 20, 100]);
    assert_eq!(outcome, Outcome { messages: vec![message.clone(), message.clone(), message], error: None });
}

// ---------------------------------------------------------------------------------------------
// The regression corpus.

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/codec")
}

fn error_name(error: Option<FrameError>) -> &'static str {
    match error {
        None => "none",
        Some(FrameError::Checksum) => "checksum",
        Some(FrameError::Cluster { .. }) => "cluster",
        Some(FrameError::Release { .. }) => "release",
        Some(FrameError::Command { .. }) => "command",
        Some(FrameError::Reserved { .. }) => "reserved",
        Some(FrameError::Size { .. }) => "size",
        Some(FrameError::ChecksumBody) => "checksum_body",
    }
}

/// `expected.txt`: lines `<file> <messages accepted> <error name or none>`; `#` starts a comment.
fn corpus_expectations() -> Vec<(String, usize, String)> {
    let text =
        std::fs::read_to_string(corpus_dir().join("expected.txt")).expect("tests/corpus/codec/expected.txt");
    text.lines()
        .filter(|line| !line.trim().is_empty() && !line.starts_with('#'))
        .map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(fields.len(), 3, "expected.txt: {line:?}");
            (fields[0].to_owned(), fields[1].parse().expect("a message count"), fields[2].to_owned())
        })
        .collect()
}

#[test]
fn the_regression_corpus_decodes_as_recorded() {
    let expectations = corpus_expectations();
    let mut files: Vec<PathBuf> = std::fs::read_dir(corpus_dir())
        .expect("tests/corpus/codec")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "bin"))
        .collect();
    files.sort();
    assert!(files.len() >= expectations.len() && !files.is_empty());
    for path in &files {
        let bytes = std::fs::read(path).expect("a corpus file");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let whole = decode(&bytes, &[]);
        for chunks in [&[1usize][..], &[3, 250, 7], &[256], &[4096]] {
            assert_eq!(decode(&bytes, chunks), whole, "{name}: the split changed the outcome");
        }
        if let Some((_, count, error)) = expectations.iter().find(|(file, ..)| *file == name) {
            assert_eq!(whole.messages.len(), *count, "{name}");
            assert_eq!(error_name(whole.error), error, "{name}");
        }
    }
    for (file, ..) in &expectations {
        assert!(files.iter().any(|path| path.ends_with(file)), "corpus file {file} is missing");
    }
}

/// Writes the hand-made part of the corpus. Run with `cargo test --test codec -- --ignored` after
/// changing the message format, and review the diff.
#[test]
#[ignore]
fn regenerate_the_corpus() {
    let request = |body: &[u8]| {
        let mut buffer = MessageBuffer::new();
        buffer.seal_with_body(request_header(CLUSTER, 0xC11E47, 1, 1, Operation::CreateTransfers), body);
        buffer.message().bytes().to_vec()
    };
    let resealed = |edit: &dyn Fn(&mut Header)| {
        let mut bytes = request(&[1; 128]);
        let mut header: Header = bytemuck::pod_read_unaligned(&bytes[..HEADER_SIZE]);
        edit(&mut header);
        header.set_checksum();
        bytes[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        bytes
    };
    let mut register = MessageBuffer::new();
    register.seal(request_header(CLUSTER, 0xC11E47, 0, 0, Operation::Register), 0);
    let register = register.message().bytes().to_vec();
    let mut reply = MessageBuffer::new();
    let request_header = *bytemuck::from_bytes::<Header>(&request(&[2; 128])[..HEADER_SIZE]);
    reply.seal_with_body(reply_header(&request_header, 7, 8, ReplyStatus::Ok), &[3; 32]);
    let mut eviction = MessageBuffer::new();
    eviction.seal(eviction_header(&request_header, EvictionReason::SessionTooLow), 0);
    let mut body_corrupt = request(&[4; 128]);
    body_corrupt[HEADER_SIZE + 5] ^= 0x10;
    let mut http = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".to_vec();
    http.resize(HEADER_SIZE + 40, b' ');
    let mut garbage_after = request(&[]);
    garbage_after.extend((0..300u32).map(|i| (i * 37 % 251) as u8));
    let files: Vec<(&str, Vec<u8>, usize, &str)> = vec![
        ("register.bin", register.clone(), 1, "none"),
        (
            "reply_then_eviction.bin",
            [reply.message().bytes(), eviction.message().bytes()].concat(),
            2,
            "none",
        ),
        ("zero_header.bin", vec![0; HEADER_SIZE], 0, "checksum"),
        ("http_request.bin", http, 0, "checksum"),
        ("other_cluster.bin", resealed(&|h| h.cluster = CLUSTER + 1), 0, "cluster"),
        ("release_2.bin", resealed(&|h| h.release = 2), 0, "release"),
        ("command_reserved.bin", resealed(&|h| h.command = 0), 0, "command"),
        ("command_unknown.bin", resealed(&|h| h.command = 200), 0, "command"),
        ("reserved_byte.bin", resealed(&|h| h.reserved[115] = 1), 0, "reserved"),
        ("size_below_header.bin", resealed(&|h| h.size = 0), 0, "size"),
        ("size_above_max.bin", resealed(&|h| h.size = u32::MAX), 0, "size"),
        ("size_longer_than_sent.bin", resealed(&|h| h.size += 16), 0, "none"),
        ("status_in_request.bin", resealed(&|h| h.status = 9), 1, "none"),
        ("body_corrupt.bin", body_corrupt, 0, "checksum_body"),
        ("header_truncated.bin", register[..100].to_vec(), 0, "none"),
        ("valid_then_garbage.bin", garbage_after, 1, "checksum"),
        ("two_registers_then_torn.bin", [&register[..], &register[..], &register[..200]].concat(), 2, "none"),
    ];
    let dir = corpus_dir();
    std::fs::create_dir_all(&dir).unwrap();
    let mut expected = String::from(
        "# <file> <messages accepted> <error: none, checksum, cluster, release, command, reserved, size,\n\
         # checksum_body>. The cluster of every file is 0x1ed9e5. Files without a line here are only\n\
         # checked for the decoder's invariants.\n",
    );
    for (name, bytes, count, error) in files {
        std::fs::write(dir.join(name), bytes).unwrap();
        expected.push_str(&format!("{name} {count} {error}\n"));
    }
    std::fs::write(dir.join("expected.txt"), expected).unwrap();
}
