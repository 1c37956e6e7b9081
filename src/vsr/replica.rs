//! The replica: takes client requests (admission, spec §7), queues them, schedules its own
//! pulses, and has its durable state ([`ReplicaState`]) prepare and commit them, a pipeline's worth per
//! WAL write. It never touches a socket or a clock: the loop around it (the server, the
//! simulator) hands it requests, a [`Time`] to read, and the completions of the write stages
//! it handed out, and carries out what it reports — replies and evictions addressed to client
//! ids, which the loop routes to connections.

use super::admission::{admit, Admission};
use super::header::{Command, Header};
use super::replica_state::{PendingRequest, ReplicaState, ReplicaStateError};
use super::time::{ClockWatch, Time};
use super::write_stage::{Stage, Stream, STREAMS};
use crate::constants::HEADER_SIZE;
use crate::operation::Operation;
use crate::state_machine::{ExecuteError, Table};
use crate::storage::{Storage, Write};

/// What committing a request reports to the loop.
#[derive(Debug)]
pub enum Event<'a> {
    /// Send `message`, the reply to its request, to client `client`.
    Reply {
        /// The client.
        client: u128,
        /// The reply message (header and body).
        message: &'a [u8],
    },
    /// Client `client`'s session was evicted to make room for a new one: tell it, if connected.
    Evicted {
        /// The evicted client.
        client: u128,
    },
    /// A request was rejected whole, because `table` is full (its reply says so too).
    TableFull {
        /// The full table.
        table: Table,
    },
}

/// One replica: its durable core and the requests waiting for it.
pub struct Replica<S: Storage> {
    state: ReplicaState<S>,
    /// Requests in arrival order, each in a message of the state's pool until it is prepared:
    /// at most one per message (one per client session, each with at most one request in
    /// flight, plus the pulse).
    queue: Vec<PendingRequest>,
    /// The clocks' readings at the last tick, to notice a step of the wall clock.
    clock_watch: ClockWatch,
    /// How many of the queue's first requests are prepared (they leave it once committed).
    prepared: usize,
    pulse_queued: bool,
}

impl<S: Storage> Replica<S> {
    /// A replica serving `state`; allocates its request queue.
    pub fn new(state: ReplicaState<S>) -> Replica<S> {
        assert_eq!(state.pool().available(), state.pool().capacity(), "a new replica holds no message");
        let queue_max = state.pool().capacity();
        Replica {
            state,
            queue: Vec::with_capacity(queue_max),
            clock_watch: ClockWatch::default(),
            prepared: 0,
            pulse_queued: false,
        }
    }

    /// The most requests queued at once.
    pub fn queue_max(&self) -> usize {
        self.queue.capacity()
    }

    /// The durable core.
    pub fn state(&self) -> &ReplicaState<S> {
        &self.state
    }

    /// The durable core, mutably (to flush at a clean stop).
    pub fn state_mut(&mut self) -> &mut ReplicaState<S> {
        &mut self.state
    }

    /// Stops the replica, returning its durable core.
    pub fn into_state(self) -> ReplicaState<S> {
        self.state
    }

    /// True if requests wait to be committed.
    pub fn has_queued(&self) -> bool {
        !self.queue.is_empty()
    }

    /// Takes a request whose framing and checksums are valid: decides what to do with it
    /// ([`admit`]) and queues it if it is to be prepared. The loop carries out the rest of the
    /// decision (resend a stored reply, evict, close); `Prepare` needs nothing from it.
    pub fn on_request(&mut self, header: &Header, body: &[u8]) -> Admission {
        // Already queued: the reply will come. (Checked first: its session has not committed
        // it yet, so admission would take it for a new request.)
        if header.client != 0 && self.queue.iter().any(|queued| queued.header.client == header.client) {
            return Admission::Drop;
        }
        let admission = admit(self.state.clients(), header, body, self.state.batch_size_limit());
        if let Admission::Prepare(_) = admission {
            // A free message exists unless more clients than sessions are talking: this one
            // then waits for its retry.
            let pool = self.state.pool_mut();
            let Some(message) = pool.acquire() else { return Admission::Drop };
            let buffer = pool.bytes_mut(&message);
            assert_eq!(header.size as usize, HEADER_SIZE + body.len());
            buffer[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(header));
            buffer[HEADER_SIZE..HEADER_SIZE + body.len()].copy_from_slice(body);
            self.queue.push(PendingRequest { header: *header, message: Some(message) });
        }
        admission
    }

    /// The loop's tick: queues a pulse if a pending transfer is due to expire (on the wall
    /// clock of `time`) and none is queued yet. Returns by how much the wall clock stepped since
    /// the last tick, if beyond the tolerance (the loop tells the operator: timestamps stay
    /// monotonic, but expiry is measured on that clock).
    pub fn on_tick(&mut self, time: &impl Time) -> Option<i128> {
        let jump = self.clock_watch.jump(time);
        self.pulse_queue(time.realtime());
        jump
    }

    /// Queues a pulse if a pending transfer is due at `realtime` and none is queued yet.
    fn pulse_queue(&mut self, realtime: u64) {
        let due = self.state.state_machine().expiry_next().is_some_and(|expires_at| expires_at <= realtime);
        if !due || self.pulse_queued {
            return;
        }
        let cluster = self.state.data_file().superblock().cluster;
        let pool = self.state.pool_mut();
        let Some(message) = pool.acquire() else { return };
        let mut header =
            Header { operation: Operation::Pulse as u8, ..Header::new(Command::Request, cluster) };
        // The replica's own request: no client, so no request checksum to echo (context 0).
        header.set_body(&[]);
        pool.bytes_mut(&message)[..HEADER_SIZE].copy_from_slice(bytemuck::bytes_of(&header));
        self.queue.push(PendingRequest { header, message: Some(message) });
        self.pulse_queued = true;
    }

    /// Prepares the queued requests not yet prepared, as many as the pipeline has room for, at
    /// the wall clock of `time`. With a clock beyond the timestamp range nothing is
    /// prepared: those requests are dropped (their clients retry) and
    /// [`ReplicaStateError::ClockOutOfRange`] is returned; the replica can go on.
    pub fn prepare_queued(&mut self, time: &impl Time) -> Result<(), ReplicaStateError> {
        let realtime = time.realtime();
        let count = (self.queue.len() - self.prepared).min(self.state.pipeline_room());
        if count == 0 {
            return Ok(());
        }
        match self.state.prepare(&mut self.queue[self.prepared..self.prepared + count], realtime) {
            Ok(()) => {
                self.prepared += count;
                Ok(())
            }
            Err(error) => {
                for queued in self.queue.drain(self.prepared..) {
                    if queued.header.client == 0 {
                        self.pulse_queued = false;
                    }
                    let message = queued.message.expect("an unprepared request's message");
                    self.state.pool_mut().release(message);
                }
                Err(error)
            }
        }
    }

    /// Begins the next write stage of `stream` ([`ReplicaState::stage_begin`]).
    pub fn stage_begin<'a>(
        &'a mut self,
        stream: Stream,
        writes: &mut [Write<'a>],
    ) -> Result<Option<Stage>, ReplicaStateError> {
        self.state.stage_begin(stream, writes)
    }

    /// Ends the write stage of `stream` in flight ([`ReplicaState::stage_end`]).
    pub fn stage_end(&mut self, stream: Stream) {
        self.state.stage_end(stream);
    }

    /// True if a stage of `stream` is in flight.
    pub fn stage_in_flight(&self, stream: Stream) -> bool {
        self.state.stage_in_flight(stream)
    }

    /// Commits every durable prepared request, reporting each reply, eviction and full table
    /// to `event` (the reply's bytes are only valid during the call). An error is fatal.
    pub fn commit(&mut self, mut event: impl FnMut(Event<'_>)) -> Result<(), ReplicaStateError> {
        let mut committed_count = 0;
        // Replies go straight from the state's reply buffer to the loop: nothing is allocated
        // per request.
        let result = self.state.commit(|committed, reply| {
            committed_count += 1;
            if let Err(ExecuteError::TableFull { table }) = committed.result {
                event(Event::TableFull { table });
            }
            if committed.client != 0 {
                event(Event::Reply { client: committed.client, message: reply });
            }
            if let Some(client) = committed.evicted {
                event(Event::Evicted { client });
            }
        });
        // Committed requests leave the queue in order: they were prepared in queue order.
        assert!(committed_count <= self.prepared);
        for queued in self.queue.drain(..committed_count) {
            if queued.header.client == 0 {
                self.pulse_queued = false;
            }
            assert!(queued.message.is_none(), "a committed request's message is its prepare's");
        }
        self.prepared -= committed_count;
        result
    }

    /// Prepares and commits every queued request, a pipeline's worth per group, waiting for
    /// the disk (the composition of [`Replica::prepare_queued`], the stages of every stream
    /// carried out on the replica's storage, and [`Replica::commit`]). Errors as those.
    pub fn commit_queued(
        &mut self,
        time: &impl Time,
        mut event: impl FnMut(Event<'_>),
    ) -> Result<(), ReplicaStateError> {
        assert!(STREAMS.iter().all(|stream| !self.state.stage_in_flight(*stream)));
        while self.prepared < self.queue.len() || self.state.commit_min() < self.state.op() {
            self.prepare_queued(time)?;
            self.state.journal_sync()?;
            loop {
                self.commit(&mut event)?;
                self.state.storage_run()?;
                if self.state.commit_min() == self.state.commit_max() {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::constants::{NS_PER_S, TIMESTAMP_MAX};
    use crate::multi_batch::encode_single;
    use crate::net::codec::{request_header, MessageBuffer};
    use crate::state_machine::Config;
    use crate::storage::{SimFaults, SimStorage};
    use crate::types::{Account, Transfer, TransferFlags};
    use crate::vsr::data_file::{DataFile, FormatOptions};
    use crate::vsr::header::RegisterResult;

    const CLUSTER: u128 = 3;

    /// A wall clock fixed at its value (the monotonic clock stands still).
    struct Wall(u64);

    impl Time for Wall {
        fn monotonic(&self) -> u64 {
            0
        }
        fn realtime(&self) -> u64 {
            self.0
        }
    }
    const CLIENT: u128 = 41;

    fn replica() -> Replica<SimStorage> {
        let options = FormatOptions {
            cluster: CLUSTER,
            replica: 0,
            replica_count: 1,
            journal_slot_count: 32,
            message_size_max: 64 * 1024,
            clients_max: 2,
            block_size: 4096,
            config: Config { accounts_max: 16, transfers_max: 64, expiries_max: 16, history_max: 16 },
        };
        let storage = SimStorage::new(options.layout().file_size(), 1, SimFaults::default());
        let storage = DataFile::format(storage, &options).expect("format").into_storage();
        Replica::new(ReplicaState::open(storage, Some(CLUSTER)).expect("open"))
    }

    /// A sealed request of `CLIENT` and its body.
    fn request<T: bytemuck::Pod>(
        session: u64,
        number: u32,
        operation: Operation,
        events: &[T],
    ) -> (Header, Vec<u8>) {
        let mut body = vec![0u8; 64 * 1024];
        let size = if operation == Operation::Register {
            0
        } else {
            body[..std::mem::size_of_val(events)].copy_from_slice(bytemuck::cast_slice(events));
            encode_single(&mut body, std::mem::size_of::<T>(), events.len())
        };
        body.truncate(size);
        let mut message = MessageBuffer::new();
        message.seal_with_body(request_header(CLUSTER, CLIENT, session, number, operation), &body);
        (bytemuck::pod_read_unaligned(&message.as_bytes()[..256]), body)
    }

    /// Commits what is queued; returns the replies to `CLIENT` (headers) and the other events.
    fn commit(replica: &mut Replica<SimStorage>, realtime: u64) -> (Vec<Header>, usize) {
        let (mut replies, mut others) = (Vec::new(), 0);
        replica
            .commit_queued(&Wall(realtime), |event| match event {
                Event::Reply { client, message } => {
                    assert_eq!(client, CLIENT);
                    replies.push(bytemuck::pod_read_unaligned(&message[..256]));
                }
                _ => others += 1,
            })
            .expect("commit");
        (replies, others)
    }

    #[test]
    fn a_request_is_queued_committed_once_and_its_retry_answered_from_the_session() {
        let mut replica = replica();
        let (register, _) = request::<u8>(0, 0, Operation::Register, &[]);
        assert_eq!(replica.on_request(&register, &[]), Admission::Prepare(Operation::Register));
        assert_eq!(replica.on_request(&register, &[]), Admission::Drop, "already queued");
        let (replies, _) = commit(&mut replica, NS_PER_S);
        assert_eq!(replies.len(), 1);
        let session = replies[0].op;
        assert!(!replica.has_queued());
        assert_eq!(replica.on_request(&register, &[]), Admission::Reply(0), "a retried register");
        let stored: Header = bytemuck::pod_read_unaligned(&replica.state().clients().reply(0)[..256]);
        assert_eq!(stored.checksum, replies[0].checksum, "the stored reply is the one sent");
        assert_eq!(stored.size as usize, 256 + std::mem::size_of::<RegisterResult>());

        let accounts = [Account { id: 1, ledger: 1, code: 1, ..Account::default() }];
        let (create, body) = request(session, 1, Operation::CreateAccounts, &accounts);
        assert_eq!(replica.on_request(&create, &body), Admission::Prepare(Operation::CreateAccounts));
        let (replies, _) = commit(&mut replica, 2 * NS_PER_S);
        assert_eq!(replies[0].context, create.checksum, "the reply answers the request");
        assert_eq!(
            replica.on_request(&create, &body),
            Admission::Reply(0),
            "the retry is not executed again"
        );
        assert_eq!(replica.state().state_machine().accounts().len(), 1);
    }

    #[test]
    fn a_pulse_is_queued_when_a_pending_transfer_is_due_and_a_bad_clock_prepares_nothing() {
        let mut replica = replica();
        let (register, _) = request::<u8>(0, 0, Operation::Register, &[]);
        replica.on_request(&register, &[]);
        let session = commit(&mut replica, NS_PER_S).0[0].op;
        let accounts: Vec<Account> =
            (1..=2).map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect();
        let (create, body) = request(session, 1, Operation::CreateAccounts, &accounts);
        replica.on_request(&create, &body);
        commit(&mut replica, 2 * NS_PER_S);
        let pending = Transfer {
            id: 9,
            debit_account_id: 1,
            credit_account_id: 2,
            amount: 5,
            ledger: 1,
            code: 1,
            timeout: 1,
            flags: TransferFlags::PENDING,
            ..Transfer::default()
        };
        let (transfer, body) = request(session, 2, Operation::CreateTransfers, &[pending]);
        replica.on_request(&transfer, &body);
        commit(&mut replica, 3 * NS_PER_S);
        replica.on_tick(&Wall(3 * NS_PER_S));
        assert!(!replica.has_queued(), "not due yet");
        // A clock past the timestamp range: the pulse is queued, then dropped unprepared.
        replica.on_tick(&Wall(TIMESTAMP_MAX + 1));
        assert!(replica.has_queued());
        let op = replica.state().commit_min();
        let error =
            replica.commit_queued(&Wall(TIMESTAMP_MAX + 1), |_| panic!("nothing commits")).unwrap_err();
        assert!(matches!(error, ReplicaStateError::ClockOutOfRange { .. }));
        assert!(!replica.has_queued());
        assert_eq!(replica.state().commit_min(), op);
        // With the clock right again, the pulse expires the transfer.
        replica.on_tick(&Wall(5 * NS_PER_S));
        assert!(replica.has_queued());
        let (replies, _) = commit(&mut replica, 5 * NS_PER_S);
        assert!(replies.is_empty(), "a pulse has no client");
        assert_eq!(replica.state().commit_min(), op + 1);
        assert_eq!(replica.state().state_machine().accounts()[0].debits_pending, 0, "expired");
    }
}
