//! `ledger start --metrics-address HOST:PORT`: the replica's numbers in the Prometheus text
//! format, served on the loop's own ring. One scrape at a time: the listener accepts the next
//! only when the current one is answered and closed, so a scraper can hold at most one
//! connection and the replica never waits for it — every operation is a completion on the ring,
//! and the answer is rendered into a buffer allocated at start.
//!
//! A scrape reads what arrives first (the request line; its path is not looked at), answers
//! `HTTP/1.0 200` with the metrics, and closes the connection.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use crate::io::{IoLoop, Operation as IoOperation, RingFull};

/// The largest answer: headers and every metric, with room to spare.
const RESPONSE_SIZE_MAX: usize = 16 * 1024;

/// The most of a request read (a request line and headers; the rest is ignored).
const REQUEST_SIZE_MAX: usize = 1024;

/// A scrape not answered and closed within this is cut off (a scraper that connects and never
/// asks, or never reads, would otherwise hold the one scrape forever).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(5);

/// The upper bounds of the latency histograms' buckets, in ms (the last bucket, `+Inf`, is
/// implicit).
const LATENCY_BUCKETS_MS: [u64; 12] = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000];

/// A latency histogram in fixed buckets (no allocation): counts per bucket, and the sum.
#[derive(Clone, Copy, Debug, Default)]
pub struct Histogram {
    /// Observations at or below each bound of `LATENCY_BUCKETS_MS` (not cumulative).
    buckets: [u64; LATENCY_BUCKETS_MS.len()],
    /// Observations above the largest bound.
    above: u64,
    sum_ns: u64,
}

impl Histogram {
    /// Records one latency.
    pub fn observe(&mut self, latency: Duration) {
        let ns = u64::try_from(latency.as_nanos()).unwrap_or(u64::MAX);
        self.sum_ns = self.sum_ns.saturating_add(ns);
        match LATENCY_BUCKETS_MS.iter().position(|bound| ns <= bound * 1_000_000) {
            Some(bucket) => self.buckets[bucket] += 1,
            None => self.above += 1,
        }
    }

    /// Observations recorded.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum::<u64>() + self.above
    }

    /// Appends the histogram `ledger_{name}_seconds` in the Prometheus text format.
    fn render(&self, body: &mut Vec<u8>, name: &str, help: &str) {
        let _ = write!(body, "# HELP ledger_{name}_seconds {help}\n# TYPE ledger_{name}_seconds histogram\n");
        let mut cumulative = 0;
        for (bound, count) in LATENCY_BUCKETS_MS.iter().zip(self.buckets) {
            cumulative += count;
            let _ = writeln!(
                body,
                "ledger_{name}_seconds_bucket{{le=\"{}\"}} {cumulative}",
                *bound as f64 / 1000.0
            );
        }
        let _ = writeln!(body, "ledger_{name}_seconds_bucket{{le=\"+Inf\"}} {}", self.count());
        let _ = writeln!(body, "ledger_{name}_seconds_sum {}", self.sum_ns as f64 / 1e9);
        let _ = writeln!(body, "ledger_{name}_seconds_count {}", self.count());
    }
}

/// The replica's numbers at one moment, as the server gathers them for a scrape.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sample {
    /// This replica's index and the cluster's size.
    pub replica: u8,
    /// Replicas in the cluster.
    pub replica_count: u8,
    /// The view, and the latest view in which the log was normal.
    pub view: u32,
    /// See `view`.
    pub log_view: u32,
    /// Normal status (else changing views).
    pub normal: bool,
    /// The normal primary of its view.
    pub primary: bool,
    /// The newest op of the log, the newest executed, and the newest known committed.
    pub op: u64,
    /// See `op`.
    pub commit_min: u64,
    /// See `op`.
    pub commit_max: u64,
    /// Ops committed (executed) since start.
    pub ops_committed: u64,
    /// Messages received from clients and peers since start.
    pub messages_received: u64,
    /// Peer connections up (this replica's sending side).
    pub peers_connected: u64,
    /// Messages to peers dropped for want of a connection or room, since start.
    pub peer_messages_dropped: u64,
    /// The replica knows the cluster's time.
    pub clock_synchronized: bool,
    /// The replica found its WAL damaged and is recovering its log from its peers.
    pub recovering_head: bool,
    /// The replica is syncing its state from a peer's checkpoint.
    pub syncing: bool,
    /// Sessions' latest replies its recovery lost and peers restored, since start.
    pub replies_restored: u64,
    /// From a request's arrival to its reply's being queued on the client's connection.
    pub request_latency: Histogram,
    /// The journal's stages: from their writes' submission to the last one's completion.
    pub journal_write_latency: Histogram,
    /// The journal's stages: from their `fdatasync`'s submission to its completion.
    pub journal_sync_latency: Histogram,
}

/// Where the current scrape is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    /// Waiting for a connection (an accept in flight).
    Accepting,
    /// Reading the request.
    Receiving,
    /// Sending the answer, up to `sent`.
    Sending { sent: usize },
}

/// The metrics listener and its one scrape.
pub struct Metrics {
    listener: TcpListener,
    state: State,
    fd: RawFd,
    /// When the current scrape was accepted.
    accepted_at: Instant,
    request: Box<[u8; REQUEST_SIZE_MAX]>,
    response: Vec<u8>,
    body: Vec<u8>,
    /// Scrapes answered since start.
    pub scrapes: u64,
}

impl Metrics {
    /// Listens on `address`; allocates the buffers.
    pub fn bind(address: SocketAddr) -> std::io::Result<Metrics> {
        Ok(Metrics {
            listener: TcpListener::bind(address)?,
            state: State::Accepting,
            fd: -1,
            accepted_at: Instant::now(),
            request: Box::new([0; REQUEST_SIZE_MAX]),
            response: Vec::with_capacity(RESPONSE_SIZE_MAX),
            body: Vec::with_capacity(RESPONSE_SIZE_MAX),
            scrapes: 0,
        })
    }

    /// The address it listens on.
    pub fn local_address(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Queues the accept of the next scrape.
    pub fn queue_accept(&mut self, ring: &mut IoLoop, tag: u64) -> Result<(), RingFull> {
        assert_eq!(self.state, State::Accepting);
        let fd = self.listener.as_raw_fd();
        // SAFETY: the listener lives as long as the server that owns this and the ring.
        unsafe { ring.queue(tag, IoOperation::Accept { fd }) }
    }

    /// An accept completed with `result` (a socket, or an error: accepted again next).
    pub fn on_accept(&mut self, result: i32, ring: &mut IoLoop, tags: Tags) -> Result<(), RingFull> {
        if result < 0 {
            return self.queue_accept(ring, tags.accept);
        }
        self.fd = result;
        self.state = State::Receiving;
        self.accepted_at = Instant::now();
        let operation = IoOperation::Recv {
            fd: self.fd,
            buffer: self.request.as_mut_ptr(),
            size: REQUEST_SIZE_MAX as u32,
        };
        // SAFETY: the request buffer is owned by this and untouched until the completion.
        unsafe { ring.queue(tags.recv, operation) }
    }

    /// The request arrived (or the connection failed): the answer is rendered from `sample`
    /// and sent.
    pub fn on_recv(
        &mut self,
        result: i32,
        sample: &Sample,
        ring: &mut IoLoop,
        tags: Tags,
    ) -> Result<(), RingFull> {
        assert_eq!(self.state, State::Receiving);
        if result <= 0 {
            return self.close(ring, tags);
        }
        self.render(sample);
        self.state = State::Sending { sent: 0 };
        self.queue_send(ring, tags)
    }

    /// Part of the answer was sent (or the connection failed).
    pub fn on_send(&mut self, result: i32, ring: &mut IoLoop, tags: Tags) -> Result<(), RingFull> {
        let State::Sending { sent } = self.state else { unreachable!("a send completed while not sending") };
        if result <= 0 {
            return self.close(ring, tags);
        }
        let sent = sent + result as usize;
        assert!(sent <= self.response.len());
        if sent == self.response.len() {
            self.scrapes += 1;
            return self.close(ring, tags);
        }
        self.state = State::Sending { sent };
        self.queue_send(ring, tags)
    }

    fn queue_send(&mut self, ring: &mut IoLoop, tags: Tags) -> Result<(), RingFull> {
        let State::Sending { sent } = self.state else { unreachable!("sending") };
        let rest = &self.response[sent..];
        let operation = IoOperation::Send { fd: self.fd, buffer: rest.as_ptr(), size: rest.len() as u32 };
        // SAFETY: the response is not written until its send completes.
        unsafe { ring.queue(tags.send, operation) }
    }

    fn close(&mut self, ring: &mut IoLoop, tags: Tags) -> Result<(), RingFull> {
        // SAFETY: no operation is in flight on `fd`; it is closed exactly once.
        unsafe { libc::close(self.fd) };
        self.fd = -1;
        self.state = State::Accepting;
        self.queue_accept(ring, tags.accept)
    }

    /// Cuts off a scrape older than the timeout: its socket is shut down, so the receive or
    /// send in flight completes with an error and the scrape is closed.
    pub fn tick(&mut self, now: Instant) {
        if self.state != State::Accepting && now.duration_since(self.accepted_at) > SCRAPE_TIMEOUT {
            // SAFETY: `fd` is the scrape's open socket; shutting it down ends what is in flight.
            unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        }
    }

    /// Closes the scrape's socket at shutdown (the ring is gone).
    pub fn force_close(&mut self) {
        if self.fd >= 0 {
            // SAFETY: nothing is in flight any more; closed exactly once.
            unsafe { libc::close(self.fd) };
            self.fd = -1;
        }
    }

    /// Renders the answer to `sample` into the response buffer, without allocating (the body
    /// is far below the buffers' capacity; writes beyond it would fail, not grow them).
    fn render(&mut self, sample: &Sample) {
        self.body.clear();
        let body = &mut self.body;
        let gauge = |body: &mut Vec<u8>, name: &str, help: &str, value: u64| {
            let _ = write!(
                body,
                "# HELP ledger_{name} {help}\n# TYPE ledger_{name} gauge\nledger_{name} {value}\n"
            );
        };
        let counter = |body: &mut Vec<u8>, name: &str, help: &str, value: u64| {
            let _ = write!(
                body,
                "# HELP ledger_{name} {help}\n# TYPE ledger_{name} counter\nledger_{name} {value}\n"
            );
        };
        gauge(body, "replica", "This replica's index in the cluster.", u64::from(sample.replica));
        gauge(body, "replica_count", "Replicas in the cluster.", u64::from(sample.replica_count));
        gauge(body, "view", "The view this replica is in.", u64::from(sample.view));
        gauge(
            body,
            "log_view",
            "The latest view in which this replica's log was normal.",
            u64::from(sample.log_view),
        );
        gauge(body, "status_normal", "1 in normal status, 0 while changing views.", u64::from(sample.normal));
        gauge(body, "primary", "1 if this replica is its view's normal primary.", u64::from(sample.primary));
        gauge(body, "op", "The newest op in this replica's log.", sample.op);
        gauge(body, "commit_min", "The newest op executed here.", sample.commit_min);
        gauge(body, "commit_max", "The newest op known committed in the cluster.", sample.commit_max);
        gauge(
            body,
            "pipeline_depth",
            "Ops in the log not yet executed here.",
            sample.op.saturating_sub(sample.commit_min),
        );
        counter(body, "ops_committed_total", "Ops executed since start.", sample.ops_committed);
        counter(
            body,
            "messages_received_total",
            "Messages received from clients and peers since start.",
            sample.messages_received,
        );
        gauge(body, "peers_connected", "Peers this replica's connection to is up.", sample.peers_connected);
        counter(
            body,
            "peer_messages_dropped_total",
            "Messages to peers dropped for want of a connection or of buffer room since start.",
            sample.peer_messages_dropped,
        );
        gauge(
            body,
            "clock_synchronized",
            "1 if this replica knows the cluster's time.",
            u64::from(sample.clock_synchronized),
        );
        gauge(
            body,
            "recovering_head",
            "1 while this replica, its WAL found damaged, recovers its log from its peers (it takes no part in view changes).",
            u64::from(sample.recovering_head),
        );
        gauge(
            body,
            "syncing",
            "1 while this replica installs a peer's checkpoint (state sync: it fell further behind than its peers' WALs reach, or its checkpoint is damaged); it takes no part in the cluster meanwhile.",
            u64::from(sample.syncing),
        );
        counter(
            body,
            "replies_restored_total",
            "Client sessions' latest replies found damaged at recovery and restored from peers since start.",
            sample.replies_restored,
        );
        sample.request_latency.render(
            body,
            "request_latency",
            "From a client request's arrival to its reply (requests this replica prepared as primary).",
        );
        sample.journal_write_latency.render(
            body,
            "journal_write_latency",
            "From a journal stage's writes (prepares and redundant headers) being submitted to the last one's completion.",
        );
        sample.journal_sync_latency.render(
            body,
            "journal_sync_latency",
            "From a journal stage's fdatasync being submitted to its completion.",
        );
        self.response.clear();
        let _ = write!(
            self.response,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            self.body.len()
        );
        assert!(
            self.response.len() + self.body.len() <= self.response.capacity(),
            "the metrics fit their buffer"
        );
        self.response.extend_from_slice(&self.body);
    }
}

/// The ring tags of the scrape's operations.
#[derive(Clone, Copy, Debug)]
pub struct Tags {
    /// The accept.
    pub accept: u64,
    /// The request's receive.
    pub recv: u64,
    /// The answer's sends.
    pub send: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_answer_is_http_with_every_metric_in_the_prometheus_text_format() {
        let mut metrics = Metrics::bind("127.0.0.1:0".parse().expect("address")).expect("bind");
        let mut sample = Sample {
            replica: 1,
            replica_count: 3,
            view: 7,
            op: 42,
            commit_min: 40,
            primary: true,
            normal: true,
            ..Sample::default()
        };
        sample.request_latency.observe(Duration::from_millis(3));
        sample.request_latency.observe(Duration::from_secs(60));
        sample.journal_sync_latency.observe(Duration::from_micros(1500));
        metrics.render(&sample);
        let text = String::from_utf8(metrics.response.clone()).expect("text");
        let (head, body) = text.split_once("\r\n\r\n").expect("headers");
        assert!(head.starts_with("HTTP/1.0 200 OK"));
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
        for line in [
            "ledger_view 7",
            "ledger_op 42",
            "ledger_pipeline_depth 2",
            "ledger_primary 1",
            "ledger_replica_count 3",
            "ledger_request_latency_seconds_bucket{le=\"0.001\"} 0",
            "ledger_request_latency_seconds_bucket{le=\"0.01\"} 1",
            "ledger_request_latency_seconds_bucket{le=\"+Inf\"} 2",
            "ledger_request_latency_seconds_count 2",
            "ledger_journal_sync_latency_seconds_bucket{le=\"0.002\"} 1",
            "ledger_journal_sync_latency_seconds_count 1",
            "ledger_journal_write_latency_seconds_count 0",
            "ledger_recovering_head 0",
            "ledger_syncing 0",
            "ledger_replies_restored_total 0",
        ] {
            assert!(body.lines().any(|found| found == line), "{line} in {body}");
        }
        // Every metric has its HELP and TYPE.
        let names: std::collections::BTreeSet<&str> = body
            .lines()
            .filter(|line| !line.starts_with('#'))
            .map(|line| line.split(['{', ' ']).next().expect("a name"))
            .map(|name| name.trim_end_matches("_bucket").trim_end_matches("_sum").trim_end_matches("_count"))
            .collect();
        for name in names {
            assert!(body.contains(&format!("# TYPE {name} ")), "{name}");
        }
    }
}
