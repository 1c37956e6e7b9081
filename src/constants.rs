//! Every limit of the system in one place, with the relations between them checked at compile
//! time. A limit that is not here is a bug: each queue, table and buffer is bounded by a named
//! constant or by a value of the runtime configuration derived from these.

/// The size of one disk sector: the unit of every direct-I/O read and write.
pub const SECTOR_SIZE: usize = 4096;

/// The largest message (header + body) on the wire and in a WAL slot.
pub const MESSAGE_SIZE_MAX: usize = 1024 * 1024;

/// The size of every message header (network, WAL entry, reply).
pub const HEADER_SIZE: usize = 256;

/// The largest message body.
pub const MESSAGE_BODY_SIZE_MAX: usize = MESSAGE_SIZE_MAX - HEADER_SIZE;

/// The size of `Account`, `Transfer`, `AccountBalance` and `AccountFilter` records.
pub const RECORD_SIZE: usize = 128;

/// The size of a `QueryFilter`.
pub const QUERY_FILTER_SIZE: usize = 64;

/// The size of one create result (`{timestamp, status, reserved}`).
pub const CREATE_RESULT_SIZE: usize = 16;

/// The most events of one create or lookup request with the default request limit: the body
/// holds 8,190 records of 128 bytes, and the multi-batch trailer takes one of them.
pub const BATCH_EVENTS_MAX: usize = 8189;

/// The most results one query filter returns (its `limit` is capped to this).
pub const QUERY_RESULTS_MAX: usize = 8189;

/// The most pending transfers one `pulse` operation expires; each consumes one timestamp slot.
pub const PULSE_EXPIRIES_MAX: usize = 8190;

/// The most batches one multi-batch request may carry (the count is a u16 and 0xFFFF is padding).
pub const MULTI_BATCH_COUNT_MAX: usize = 65534;

/// The largest valid timestamp: the top bit of a u64 timestamp is reserved (tombstone marker).
pub const TIMESTAMP_MAX: u64 = (1 << 63) - 1;

/// Nanoseconds per second, for `timeout` (seconds) → `expires_at` (nanoseconds).
pub const NS_PER_S: u64 = 1_000_000_000;

/// The most prepares in flight at once: prepared (written to the WAL) but not yet committed.
/// Today they are also the most made durable together with one group of `fdatasync`s.
pub const PIPELINE_PREPARE_MAX: usize = 8;

/// The most replicas of a cluster (the quorum table of `vsr::quorums` is defined up to it).
pub const REPLICAS_MAX: u8 = 6;

/// The most messages the replica hands the loop from one call (its outbox): a pipeline of
/// prepares to every other replica (a prepare or its resend) with a heartbeat and a clock ping
/// to each, or a pipeline of commits, each a reply and perhaps the eviction of the session it
/// replaced. The loop empties the outbox after every call.
pub const OUTBOX_MESSAGES_MAX: usize = (PIPELINE_PREPARE_MAX + 2) * REPLICAS_MAX as usize;

/// The most messages of one outbox that are copies in messages of the replica's pool (replies
/// and evictions of a pipeline of commits; prepares go out as references to the pipeline's
/// messages, small messages as bare headers).
pub const OUTBOX_COPIES_MAX: usize = 2 * PIPELINE_PREPARE_MAX;

/// How often the primary sends the backups its commit point (a `commit` message), so that a
/// backup learns of commits that no later prepare carries, and that it lives: four of them fit
/// in a backup's silence timeout, so that a few lost in a row do not depose a live primary.
pub const COMMIT_HEARTBEAT_NS: u64 = 50_000_000;

/// How long a prepare waits for a backup's `prepare_ok` before the primary sends it again.
pub const PREPARE_RESEND_NS: u64 = 50_000_000;

/// How often a backup that lacks ops asks for them again (`request_prepare`).
pub const REPAIR_INTERVAL_NS: u64 = 20_000_000;

/// How often a replica of a cluster re-reads one block of its durable checkpoint to find
/// latent sector errors (the scrubber; a damaged block is repaired from a peer), and asks a
/// peer again for a damaged one: a grid of 10,000 blocks is read through in about 17 minutes.
pub const SCRUB_INTERVAL_NS: u64 = 100_000_000;

/// How often a syncing replica asks its peers for their durable checkpoints (state sync):
/// until one offers a checkpoint new enough, and again while its blocks stop coming.
pub const SYNC_CHECKPOINT_INTERVAL_NS: u64 = 200_000_000;

/// How long a syncing replica's block fetch may make no progress before it takes a newer
/// checkpoint a peer offers (its peers may have freed the blocks it asks for).
pub const SYNC_STALL_NS: u64 = 1_000_000_000;

/// How often a syncing replica asks again for a block it still lacks (another peer each time).
pub const SYNC_BLOCK_RETRY_NS: u64 = 50_000_000;

/// Blocks a syncing replica reads back and verifies per tick (its copy may already be intact:
/// checkpoints are byte-identical, and unchanged pages keep their addresses).
pub const SYNC_VERIFY_BLOCKS_PER_TICK: usize = 128;

/// Blocks a syncing replica asks for per tick: at most this many block messages come back
/// per tick from all its peers (2 MiB of 64 KiB blocks per 10 ms tick, shared among them: well
/// within a peer's send buffers).
pub const SYNC_BLOCK_REQUESTS_PER_TICK: usize = 32;

/// How long a backup hears nothing from its primary (no prepare, no heartbeat) before it
/// starts a view change: the failover's detection. A replica `d` places after the next view's
/// primary (in replica order, wrapping) waits `d` × [`VIEW_CHANGE_STAGGER_NS`] longer, so that
/// timeouts spread and the replica that would lead the next view starts its change first.
pub const VIEW_CHANGE_TIMEOUT_NS: u64 = 200_000_000;

/// How long a view change may take before the replica starts the next one (staggered as
/// [`VIEW_CHANGE_TIMEOUT_NS`]). Longer than the silence that starts one: a view change is a few
/// round trips and a superblock write, and one abandoned too early drags every peer into the
/// next (on a slow network, view after view).
pub const VIEW_CHANGE_STATUS_TIMEOUT_NS: u64 = 2 * VIEW_CHANGE_TIMEOUT_NS;

// A backup gives up on its primary only after missing four heartbeats in a row.
const _: () = assert!(VIEW_CHANGE_TIMEOUT_NS >= 4 * COMMIT_HEARTBEAT_NS);

/// See [`VIEW_CHANGE_TIMEOUT_NS`].
pub const VIEW_CHANGE_STAGGER_NS: u64 = 30_000_000;

/// How long the primary goes with an uncommitted op and no commit before it abdicates (starts
/// a view change): it may reach its backups while they cannot reach it.
pub const PRIMARY_ABDICATE_NS: u64 = 2 * VIEW_CHANGE_TIMEOUT_NS;

/// How often a replica in a view change sends its messages again (`start_view_change`,
/// `do_view_change`, `request_start_view`, repair).
pub const VIEW_CHANGE_RESEND_NS: u64 = 50_000_000;

/// The most prepare headers a `do_view_change`, `start_view` or `headers` message carries:
/// the sender's log back from its head (more than a pipeline, so that they reach below every
/// op that may be uncommitted).
pub const VIEW_HEADERS_MAX: usize = 64;

const _: () = assert!(VIEW_HEADERS_MAX > 2 * PIPELINE_PREPARE_MAX);
const _: () = assert!(HEADER_SIZE * (1 + VIEW_HEADERS_MAX) <= MESSAGE_SIZE_MAX);

/// The WAL slots of a production data file: one prepare of up to `MESSAGE_SIZE_MAX` each.
pub const JOURNAL_SLOT_COUNT: u64 = 1024;

/// The WAL slots of a `--development` data file.
pub const JOURNAL_SLOT_COUNT_DEVELOPMENT: u64 = 64;

/// Client sessions (and client-reply slots) of a data file.
pub const CLIENTS_MAX: u64 = 64;

/// The grid block size of a data file: the unit of checkpoint pages.
pub const BLOCK_SIZE: u64 = 64 * 1024;

/// The largest grid block size a data file may have: a block travels to a peer whole, in one
/// message (`block`, for repair and state sync), so a block and a header fit in one.
pub const BLOCK_SIZE_MAX: u64 = 512 * 1024;

/// The largest reply (header + body), and so the size of one client-reply slot. Replies are
/// not limited by the request size limit (a lookup of 8,189 ids returns 8,189 records).
pub const REPLY_SIZE_MAX: u64 = MESSAGE_SIZE_MAX as u64;

/// The most manifest blocks one checkpoint may have (their references live in the superblock).
pub const MANIFEST_BLOCKS_MAX: usize = 96;

/// The fewest checkpoint pages written per commit while a checkpoint is in progress.
pub const CHECKPOINT_PAGES_PER_COMMIT_MIN: usize = 8;

/// The most grid blocks one write stage carries (the grid's staging area): a checkpoint that a
/// commit waits for is written this many at a time.
pub const GRID_STAGE_BLOCKS_MAX: usize = 32;

/// The most grid blocks of a paced write stage. Small, because a stage's writes queue at the
/// disk ahead of the journal's next stage, which clients wait for: on a disk that is the
/// bottleneck, 32 blocks of 64 KiB per stage cost ~15 % of throughput against 8 (measured,
/// docs/BENCHMARKS.md, 2026-12-02).
pub const GRID_STAGE_BLOCKS_PACED: usize = 8;

/// How often the replica checks for pending transfers to expire (and the server's tick).
pub const PULSE_INTERVAL_NS: u64 = 100_000_000;

const _: () = assert!(MESSAGE_SIZE_MAX.is_multiple_of(SECTOR_SIZE)); // A WAL slot is whole sectors.
const _: () = assert!(HEADER_SIZE.is_multiple_of(16)); // Records after a header stay aligned.
const _: () = assert!(MESSAGE_BODY_SIZE_MAX / RECORD_SIZE == BATCH_EVENTS_MAX + 1);
const _: () = assert!(BATCH_EVENTS_MAX * CREATE_RESULT_SIZE < MESSAGE_BODY_SIZE_MAX);
const _: () = assert!(QUERY_RESULTS_MAX * RECORD_SIZE < MESSAGE_BODY_SIZE_MAX);
const _: () = assert!(PULSE_EXPIRIES_MAX == BATCH_EVENTS_MAX + 1);
const _: () = assert!(BATCH_EVENTS_MAX < u16::MAX as usize); // Batch counts are u16 on the wire.

/// A wall-clock step larger than this between two readings (beyond what the monotonic clock
/// measured) is logged as a clock jump. NTP slews at most 0.05 % and steps only offsets above
/// 128 ms, so anything above this is a step of the clock, not drift.
pub const CLOCK_JUMP_TOLERANCE_NS: u64 = 100_000_000;

/// How often a replica of a cluster pings every peer for its wall clock (`ping` / `pong`).
pub const CLOCK_PING_INTERVAL_NS: u64 = 100_000_000;

/// How far a replica's wall clock may be from the cluster's for the two still to agree: each
/// clock source's interval is widened by this much either way before Marzullo's algorithm
/// looks for agreement, so the synchronized time is within this of a quorum of clocks.
pub const CLOCK_OFFSET_TOLERANCE_NS: u64 = 10 * NS_PER_S;

/// The shortest window of clock samples the cluster time is computed from: long enough for
/// several round trips to every peer, of which the fastest is kept.
pub const CLOCK_WINDOW_MIN_NS: u64 = 2 * NS_PER_S;

/// The longest window: one without a quorum of agreeing clocks by then is dropped and sampling
/// starts over.
pub const CLOCK_WINDOW_MAX_NS: u64 = 20 * NS_PER_S;

/// How long a synchronized interval is trusted without a newer one: clocks drift apart.
pub const CLOCK_EPOCH_MAX_NS: u64 = 60 * NS_PER_S;

const _: () = assert!(CLOCK_PING_INTERVAL_NS * 4 <= CLOCK_WINDOW_MIN_NS); // Several samples a window.
const _: () = assert!(CLOCK_WINDOW_MIN_NS < CLOCK_WINDOW_MAX_NS);
const _: () = assert!(CLOCK_WINDOW_MAX_NS < CLOCK_EPOCH_MAX_NS); // A new epoch before the old expires.
const _: () = assert!(CLOCK_OFFSET_TOLERANCE_NS < i64::MAX as u64 / 4);

/// The tick of a replica of a cluster: its timeouts (heartbeats every 100 ms, resends every
/// 50 ms, repair every 20 ms) are checked at each. A cluster of one ticks at
/// [`PULSE_INTERVAL_NS`].
pub const CLUSTER_TICK_NS: u64 = 10_000_000;

/// The first wait before connecting again to a peer replica that could not be reached; it
/// doubles at each failure up to [`PEER_RECONNECT_NS_MAX`].
pub const PEER_RECONNECT_NS_MIN: u64 = 50_000_000;

/// See [`PEER_RECONNECT_NS_MIN`]: a peer that comes back is reconnected within this.
pub const PEER_RECONNECT_NS_MAX: u64 = NS_PER_S;

/// Messages a peer's send buffer holds at their largest: a pipeline of prepares and a few
/// header-only messages (each of the peer's two buffers holds this many).
pub const PEER_SEND_BUFFER_MESSAGES: usize = PIPELINE_PREPARE_MAX + 2;

const _: () = assert!(CLUSTER_TICK_NS <= REPAIR_INTERVAL_NS);
const _: () = assert!(PEER_RECONNECT_NS_MIN < PEER_RECONNECT_NS_MAX);

/// The most client connections one replica serves: each holds two message buffers (2 MiB), and
/// the io_uring ring has room for a receive and a send of every connection (at most 32,768
/// entries).
pub const CONNECTIONS_MAX: usize = 4096;

/// File descriptors a replica needs besides its connections: the data file, the listener, the
/// io_uring rings, standard streams, and room for what the runtime opens.
pub const FILE_DESCRIPTORS_RESERVED: usize = 64;

/// A recurring server warning (accept failures, full tables, a clock out of range) is logged at
/// most once per this interval, with the count of occurrences since the last line.
pub const WARNING_INTERVAL_NS: u64 = 10 * NS_PER_S;

const _: () = assert!((CONNECTIONS_MAX * 2 + 2).next_power_of_two() <= 32768);

// Two checkpoint intervals and a pipeline fit in the WAL (the fixed checkpoint schedule).
const _: () = assert!(JOURNAL_SLOT_COUNT_DEVELOPMENT >= 2 * PIPELINE_PREPARE_MAX as u64 + 2);
const _: () = assert!(JOURNAL_SLOT_COUNT > JOURNAL_SLOT_COUNT_DEVELOPMENT);
const _: () = assert!(BLOCK_SIZE.is_multiple_of(SECTOR_SIZE as u64) && BLOCK_SIZE <= BLOCK_SIZE_MAX);
const _: () = assert!(REPLY_SIZE_MAX.is_multiple_of(SECTOR_SIZE as u64));
const _: () = assert!(HEADER_SIZE as u64 + BLOCK_SIZE_MAX <= MESSAGE_SIZE_MAX as u64);
