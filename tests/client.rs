//! The client library against a fake replica (`tests/fake_replica`): coalescing, routing,
//! retries with identical bytes, timeouts, evictions and limits.

mod fake_replica;

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use fake_replica::{Action, FakeReplica};
use ledger::client::{Client, ClientError, ClientOptions, Table};
use ledger::constants::BATCH_EVENTS_MAX;
use ledger::multi_batch::MultiBatch;
use ledger::operation::Operation;
use ledger::types::{
    Account, AccountFilter, CreateAccountStatus, CreateTransferStatus, QueryFilter, Transfer, TransferFlags,
};
use ledger::vsr::header::{EvictionReason, ReplyStatus};

const CLUSTER: u128 = 0xC0FFEE;
const TIMEOUT: Duration = Duration::from_secs(20);

/// Options that make retries fast enough for tests.
fn fast() -> ClientOptions {
    ClientOptions {
        retry_interval_min: Duration::from_millis(100),
        rotation_interval: Duration::from_millis(100),
        retry_interval_max: Duration::from_millis(400),
        connect_timeout: Duration::from_millis(500),
    }
}

fn client(replica: &FakeReplica) -> Client {
    Client::with_options(CLUSTER, &[replica.address], fast()).unwrap()
}

fn accounts(ids: impl IntoIterator<Item = u128>) -> Vec<Account> {
    ids.into_iter().map(|id| Account { id, ledger: 1, code: 1, ..Account::default() }).collect()
}

/// An address where nothing listens.
fn dead_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

#[test]
fn every_operation_round_trips_through_one_session() {
    let replica = FakeReplica::start(CLUSTER);
    let client = client(&replica);
    let results = client.create_accounts(&accounts([5, 6]), TIMEOUT).unwrap();
    assert_eq!(results.len(), 2);
    assert_eq!(results[1].timestamp, 6);
    assert_eq!(CreateAccountStatus::from_u32(results[0].status), Some(CreateAccountStatus::Created));
    let transfer = Transfer { id: 9, ..Transfer::default() };
    let results = client.create_transfers(&[transfer], TIMEOUT).unwrap();
    assert_eq!(CreateTransferStatus::from_u32(results[0].status), Some(CreateTransferStatus::Created));
    let found = client.lookup_accounts(&[1, 0, 3], TIMEOUT).unwrap();
    assert_eq!(found.iter().map(|account| account.id).collect::<Vec<_>>(), vec![1, 3]);
    assert_eq!(client.lookup_transfers(&[4], TIMEOUT).unwrap()[0].id, 4);
    let filter = AccountFilter { account_id: 77, limit: 10, ..AccountFilter::default() };
    let transfers = client.get_account_transfers(filter, TIMEOUT).unwrap();
    assert_eq!(transfers.len(), 3);
    assert!(transfers.iter().all(|transfer| transfer.debit_account_id == 77));
    let balances = client.get_account_balances(AccountFilter { limit: 2, ..filter }, TIMEOUT).unwrap();
    assert_eq!(balances.len(), 2);
    assert_eq!(balances[0].debits_posted, 77);
    let query = QueryFilter { user_data_128: 12, limit: 1, ..QueryFilter::default() };
    assert_eq!(client.query_accounts(query, TIMEOUT).unwrap()[0].user_data_128, 12);
    assert_eq!(client.query_transfers(query, TIMEOUT).unwrap()[0].user_data_128, 12);
    assert!(client.create_accounts(&[], TIMEOUT).unwrap().is_empty());

    let log = replica.log();
    assert_eq!(log[0].header.request, 0, "the client registers first");
    assert_eq!(log[0].header.operation, Operation::Register as u8);
    let session = replica.log()[1].header.context;
    assert_ne!(session, 0);
    for (index, received) in log[1..].iter().enumerate() {
        assert_eq!(received.header.request, index as u32 + 1, "requests are numbered 1, 2, 3, ...");
        assert_eq!(received.header.context, session);
        assert_eq!(received.header.client, client.id());
    }
    assert_eq!(log.len(), 9, "an empty call sends nothing");
    assert!(replica.invalid_requests().is_empty());
}

#[test]
fn concurrent_calls_from_many_threads_are_coalesced_and_routed_to_their_callers() {
    let replica = FakeReplica::start(CLUSTER);
    // Slow replies let calls pile up while a request is in flight.
    replica.script(|_| Action::AnswerAfter(Duration::from_millis(20)));
    let client = Arc::new(client(&replica));
    let threads: Vec<_> = (0..16u128)
        .map(|thread| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                for call in 0..25u128 {
                    let first = thread << 48 | call << 16;
                    let count = 1 + (thread + call) % 40;
                    let events = accounts(first..first + count);
                    let results = client.create_accounts(&events, TIMEOUT).unwrap();
                    assert_eq!(results.len(), events.len());
                    for (event, result) in events.iter().zip(&results) {
                        assert_eq!(result.timestamp, event.id as u64, "a result went to the wrong caller");
                    }
                    let ids = [first + 1, first + 2];
                    let found = client.lookup_accounts(&ids, TIMEOUT).unwrap();
                    assert_eq!(found.iter().map(|account| account.id).collect::<Vec<_>>(), ids);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let requests = replica.requests();
    let batch_count: usize = requests.iter().map(|request| request.batch_count()).sum();
    assert_eq!(batch_count, 16 * 25 * 2, "every call is one batch");
    assert!(requests.len() < 16 * 25 * 2, "no call shared a request with another");
    assert!(requests.iter().any(|request| request.batch_count() > 4));
    for request in &requests {
        let operation = request.operation().unwrap();
        assert!(operation == Operation::CreateAccounts || operation == Operation::LookupAccounts);
    }
    assert!(replica.invalid_requests().is_empty(), "{:?}", replica.invalid_requests());
}

#[test]
fn coalesced_requests_stay_within_a_small_cluster_limit() {
    let limit = 32 * 1024 - 256;
    let replica = FakeReplica::with_limit(CLUSTER, limit);
    replica.script(|_| Action::AnswerAfter(Duration::from_millis(10)));
    let client = Arc::new(client(&replica));
    assert_eq!(client.event_max(Operation::CreateTransfers, TIMEOUT).unwrap(), 253);
    assert_eq!(client.event_max(Operation::LookupAccounts, TIMEOUT).unwrap(), 2031);
    let error = client.create_accounts(&accounts(1..=254), TIMEOUT).unwrap_err();
    assert!(matches!(error, ClientError::InvalidBatch { count: 254, max: 253, .. }), "{error}");
    assert_eq!(client.create_accounts(&accounts(1..=253), TIMEOUT).unwrap().len(), 253);
    let threads: Vec<_> = (0..8u128)
        .map(|thread| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                for call in 0..10u128 {
                    let first = 1000 * (thread * 10 + call) + 1;
                    let results = client.create_accounts(&accounts(first..first + 100), TIMEOUT).unwrap();
                    assert_eq!(results[99].timestamp as u128, first + 99);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert!(replica.invalid_requests().is_empty(), "{:?}", replica.invalid_requests());
    assert!(replica.requests().iter().all(|request| request.bytes.len() - 256 <= limit));
}

#[test]
fn a_dropped_connection_is_retried_with_the_same_request_number_and_bytes() {
    let replica = FakeReplica::start(CLUSTER);
    let dropped = AtomicUsize::new(0);
    replica.script(move |received| {
        if received.header.request == 1 && dropped.fetch_add(1, Ordering::SeqCst) < 2 {
            Action::Close
        } else {
            Action::Answer
        }
    });
    let client = client(&replica);
    let results = client.create_accounts(&accounts([42]), TIMEOUT).unwrap();
    assert_eq!(results[0].timestamp, 42);
    let attempts: Vec<_> = replica.requests();
    assert_eq!(attempts.len(), 3);
    for attempt in &attempts {
        assert_eq!(attempt.header.request, 1);
        assert_eq!(attempt.bytes, attempts[0].bytes, "a retry must resend the identical bytes");
    }
    let connections: Vec<usize> = attempts.iter().map(|attempt| attempt.connection).collect();
    assert_eq!(connections, vec![0, 1, 2]);
    assert_eq!(replica.executed().len(), 1);
    // The session goes on with the next number.
    client.create_accounts(&accounts([43]), TIMEOUT).unwrap();
    assert_eq!(replica.requests().last().unwrap().header.request, 2);
}

#[test]
fn an_unanswered_request_is_resent_after_the_retry_interval() {
    let replica = FakeReplica::start(CLUSTER);
    let ignored = AtomicUsize::new(0);
    replica.script(move |received| {
        if received.header.request == 1 && ignored.fetch_add(1, Ordering::SeqCst) == 0 {
            Action::Ignore
        } else {
            Action::Answer
        }
    });
    let client = client(&replica);
    let started = Instant::now();
    client.create_accounts(&accounts([1]), TIMEOUT).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(100), "resent before the retry interval");
    let attempts = replica.requests();
    assert_eq!(attempts.len(), 2);
    assert_eq!(attempts[0].bytes, attempts[1].bytes);
    assert_ne!(attempts[0].connection, attempts[1].connection, "the retry goes over a new connection");
}

#[test]
fn a_lost_reply_is_answered_from_the_stored_reply_without_executing_twice() {
    let replica = FakeReplica::start(CLUSTER);
    let lost = AtomicUsize::new(0);
    replica.script(move |received| {
        if received.header.request == 1 && lost.fetch_add(1, Ordering::SeqCst) == 0 {
            Action::ExecuteSilently
        } else {
            Action::Answer
        }
    });
    let client = client(&replica);
    let results = client.create_accounts(&accounts([7, 8]), TIMEOUT).unwrap();
    assert_eq!(results.iter().map(|result| result.timestamp).collect::<Vec<_>>(), vec![7, 8]);
    assert_eq!(replica.requests().len(), 2);
    assert_eq!(replica.executed(), vec![(client.id(), 1)]);
}

#[test]
fn a_call_times_out_and_the_session_continues_once_the_cluster_answers() {
    let replica = FakeReplica::start(CLUSTER);
    replica.script(|received| if received.header.request == 1 { Action::Ignore } else { Action::Answer });
    let client = client(&replica);
    let started = Instant::now();
    let error = client.create_accounts(&accounts([1]), Duration::from_millis(300)).unwrap_err();
    let elapsed = started.elapsed();
    assert!(matches!(error, ClientError::Timeout { operation: Operation::CreateAccounts, .. }), "{error}");
    assert!(elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3), "{elapsed:?}");
    // The client keeps resending request 1 (its callers are gone) until it is answered; the
    // next call is request 2 of the same session.
    replica.script(|_| Action::Answer);
    let results = client.create_accounts(&accounts([2]), TIMEOUT).unwrap();
    assert_eq!(results[0].timestamp, 2);
    let requests = replica.requests();
    assert!(requests.iter().filter(|request| request.header.request == 1).count() >= 2);
    assert_eq!(requests.last().unwrap().header.request, 2);
    assert_eq!(replica.log().iter().filter(|received| received.header.request == 0).count(), 1);
}

#[test]
fn a_timeout_while_no_replica_accepts_names_the_connection_error() {
    let client = Client::with_options(CLUSTER, &[dead_address()], fast()).unwrap();
    let error = client.lookup_accounts(&[1], Duration::from_millis(300)).unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert!(error.to_string().contains("connecting to 127.0.0.1:"), "{error}");
}

#[test]
fn the_client_tries_the_addresses_in_turn() {
    let replica = FakeReplica::start(CLUSTER);
    let addresses = [dead_address(), dead_address(), replica.address];
    let client = Client::with_options(CLUSTER, &addresses, fast()).unwrap();
    assert_eq!(client.lookup_accounts(&[5], TIMEOUT).unwrap()[0].id, 5);
}

#[test]
fn an_eviction_fails_the_calls_and_the_client_registers_a_new_session() {
    let replica = FakeReplica::start(CLUSTER);
    replica.script(|received| {
        if received.header.request == 1 && received.connection == 0 {
            Action::Evict(EvictionReason::NoSession)
        } else {
            Action::Answer
        }
    });
    let client = client(&replica);
    let error = client.create_accounts(&accounts([1]), TIMEOUT).unwrap_err();
    assert!(
        matches!(error, ClientError::Evicted { reason: Some(EvictionReason::NoSession), code: 1 }),
        "{error}"
    );
    // Request 1 was not executed; the next call registers again and is request 1 of the new
    // session. (On connection 0 still, so the script evicts it again: one more eviction.)
    let error = client.create_accounts(&accounts([2]), TIMEOUT).unwrap_err();
    assert!(matches!(error, ClientError::Evicted { .. }));
    replica.script(|_| Action::Answer);
    assert_eq!(client.create_accounts(&accounts([3]), TIMEOUT).unwrap()[0].timestamp, 3);
    let registers = replica.log().iter().filter(|received| received.header.request == 0).count();
    assert_eq!(registers, 3);
    assert_eq!(replica.executed().len(), 1);
}

#[test]
fn an_eviction_of_the_registration_fails_every_waiting_call() {
    let replica = FakeReplica::start(CLUSTER);
    replica.script(|_| Action::Evict(EvictionReason::ClientReleaseTooLow));
    let client = client(&replica);
    let error = client.lookup_accounts(&[1], TIMEOUT).unwrap_err();
    assert!(matches!(error, ClientError::Evicted { reason: Some(EvictionReason::ClientReleaseTooLow), .. }));
    assert!(replica.requests().is_empty());
}

#[test]
fn a_batch_over_the_event_limit_is_rejected_before_anything_is_sent() {
    let replica = FakeReplica::start(CLUSTER);
    let client = client(&replica);
    let events = accounts(1..=BATCH_EVENTS_MAX as u128 + 1);
    let error = client.create_accounts(&events, TIMEOUT).unwrap_err();
    assert!(matches!(error, ClientError::InvalidBatch { count: 8190, max: 8189, .. }), "{error}");
    let ids = vec![1u128; BATCH_EVENTS_MAX + 1];
    let error = client.lookup_transfers(&ids, TIMEOUT).unwrap_err();
    assert!(matches!(error, ClientError::InvalidBatch { count: 8190, max: 8189, .. }), "{error}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(replica.connection_count(), 0, "nothing may be sent for an invalid batch");
    // Exactly at the limit is fine.
    let results = client.create_accounts(&events[..BATCH_EVENTS_MAX], TIMEOUT).unwrap();
    assert_eq!(results.len(), BATCH_EVENTS_MAX);
    assert!(replica.invalid_requests().is_empty());
}

#[test]
fn a_full_table_fails_the_call() {
    let replica = FakeReplica::start(CLUSTER);
    replica.script(|received| {
        if received.header.request == 0 {
            Action::Answer
        } else {
            Action::Status(ReplyStatus::TransfersFull)
        }
    });
    let client = client(&replica);
    let error = client.create_transfers(&[Transfer { id: 1, ..Transfer::default() }], TIMEOUT).unwrap_err();
    assert!(
        matches!(
            error,
            ClientError::TableFull { operation: Operation::CreateTransfers, which: Table::Transfers }
        ),
        "{error}"
    );
}

#[test]
fn closing_the_client_fails_waiting_and_later_calls() {
    let replica = FakeReplica::start(CLUSTER);
    replica.script(|received| if received.header.request == 0 { Action::Answer } else { Action::Ignore });
    let client = Arc::new(client(&replica));
    let waiting = {
        let client = Arc::clone(&client);
        std::thread::spawn(move || client.lookup_accounts(&[1], TIMEOUT))
    };
    while replica.requests().is_empty() {
        std::thread::sleep(Duration::from_millis(5));
    }
    let started = Instant::now();
    client.close();
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(waiting.join().unwrap(), Err(ClientError::ShuttingDown)));
    assert!(matches!(client.lookup_accounts(&[1], TIMEOUT), Err(ClientError::ShuttingDown)));
}

/// The transfers of one call: a linked chain of `count` events whose ids say which call, how many
/// events and which position each one has.
fn chain(thread: u128, call: u128, count: u128) -> Vec<Transfer> {
    assert!(count > 0 && count < 256);
    (0..count)
        .map(|index| Transfer {
            id: thread << 32 | call << 16 | count << 8 | index,
            flags: if index + 1 < count { TransferFlags::LINKED } else { TransferFlags::default() },
            ..Transfer::default()
        })
        .collect()
}

#[test]
fn coalescing_never_splits_a_call_and_refuses_one_too_large_for_a_request() {
    let limit = 32 * 1024 - 256;
    let replica = FakeReplica::with_limit(CLUSTER, limit);
    replica.script(|_| Action::AnswerAfter(Duration::from_millis(5)));
    let client = Arc::new(client(&replica));
    let event_max = client.event_max(Operation::CreateTransfers, TIMEOUT).unwrap();
    assert_eq!(event_max, 253);
    // Calls of every size up to a whole request, from many threads, so that a request is often
    // nearly full when the next call does not fit.
    let threads: Vec<_> = (0..8u128)
        .map(|thread| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || {
                for call in 0..12u128 {
                    let count = 1 + (thread * 31 + call * 57) % event_max as u128;
                    let events = chain(thread, call, count);
                    let results = client.create_transfers(&events, TIMEOUT).unwrap();
                    let timestamps: Vec<u64> = results.iter().map(|result| result.timestamp).collect();
                    let ids: Vec<u64> = events.iter().map(|event| event.id as u64).collect();
                    assert_eq!(timestamps, ids, "a call's results are its own, whole and in order");
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // Every batch of every request is one whole call: the chain from its first event to its last.
    let mut calls = Vec::new();
    for request in replica.requests() {
        let batches = MultiBatch::decode(&request.bytes[256..], size_of::<Transfer>()).unwrap();
        batches.for_each(|_, bytes| {
            let events: &[Transfer] = bytemuck::cast_slice(bytes);
            let count = (events[0].id >> 8 & 0xFF) as usize;
            assert_eq!(events.len(), count, "a call was split across batches");
            for (index, event) in events.iter().enumerate() {
                assert_eq!((event.id & 0xFF) as usize, index);
                assert_eq!(event.id >> 8, events[0].id >> 8, "two calls share a batch");
                assert_eq!(event.flags.contains(TransferFlags::LINKED), index + 1 < count);
            }
            calls.push(events[0].id >> 16);
        });
    }
    calls.sort_unstable();
    calls.dedup();
    assert_eq!(calls.len(), 8 * 12, "every call was sent exactly once, as one batch");
    assert!(replica.requests().iter().any(|request| request.batch_count() > 1), "nothing was coalesced");

    // One event more than a request holds: refused with a typed error, nothing sent.
    let sent = replica.log().len();
    let error = client.create_transfers(&chain(9, 0, event_max as u128 + 1), TIMEOUT).unwrap_err();
    assert!(matches!(error, ClientError::InvalidBatch { count: 254, max: 253, .. }), "{error}");
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(replica.log().len(), sent, "nothing may be sent for a call too large for a request");
    assert!(replica.invalid_requests().is_empty(), "{:?}", replica.invalid_requests());
}

#[test]
fn a_client_of_another_cluster_fails_every_call_at_once_without_retrying() {
    let replica = FakeReplica::start(CLUSTER);
    let wrong = CLUSTER + 1;
    let client = Arc::new(Client::with_options(wrong, &[replica.address], fast()).unwrap());
    let started = Instant::now();
    // Calls waiting at the same time all fail, with the same typed error.
    let waiting: Vec<_> = (0..4u128)
        .map(|thread| {
            let client = Arc::clone(&client);
            std::thread::spawn(move || client.lookup_accounts(&[thread + 1], TIMEOUT))
        })
        .collect();
    for thread in waiting {
        let error = thread.join().unwrap().unwrap_err();
        let expected =
            ClientError::WrongCluster { address: replica.address, expected: wrong, found: CLUSTER };
        assert_eq!(error.to_string(), expected.to_string());
        assert!(
            matches!(error, ClientError::WrongCluster { expected, found, .. } if expected == wrong && found == CLUSTER)
        );
    }
    let message =
        format!("the replica at {} belongs to cluster {CLUSTER}, not cluster {wrong}", replica.address);
    // A later call fails at once too.
    let error = client.create_accounts(&accounts([1]), TIMEOUT).unwrap_err();
    assert!(error.to_string().starts_with(&message), "{error}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
    // No retry: one connection, one request (the register), nothing more.
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!((replica.connection_count(), replica.foreign_count()), (1, 1));
    assert!(replica.log().is_empty(), "the fake logs only requests of its own cluster");
}

#[test]
fn the_client_follows_a_newer_view_to_its_primary() {
    // Three addresses of one fake replica that always agrees with itself: a cluster of three
    // whose replicas share every session.
    let replica = FakeReplica::start(CLUSTER);
    let (one, two) = (replica.sibling(), replica.sibling());
    let client = Client::with_options(CLUSTER, &[replica.address, one.address, two.address], fast()).unwrap();
    assert_eq!(client.lookup_accounts(&[5], TIMEOUT).unwrap()[0].id, 5);
    // View 0: its primary is replica 0, where the client stays.
    assert!(replica.log().iter().all(|received| received.listener == 0));
    // A reply of view 4 (primary: replica 4 mod 3 = 1) moves the client there.
    replica.set_view(4);
    assert_eq!(client.lookup_accounts(&[6], TIMEOUT).unwrap()[0].id, 6);
    assert_eq!(client.lookup_accounts(&[7], TIMEOUT).unwrap()[0].id, 7);
    let last = replica.requests().last().cloned().expect("requests");
    assert_eq!(last.listener, 1, "the request after the newer view went to its primary");
    // The same view again moves nothing; view 5 moves it to replica 2.
    assert_eq!(client.lookup_accounts(&[8], TIMEOUT).unwrap()[0].id, 8);
    assert_eq!(replica.requests().last().map(|received| received.listener), Some(1));
    replica.set_view(5);
    client.lookup_accounts(&[9], TIMEOUT).unwrap();
    client.lookup_accounts(&[10], TIMEOUT).unwrap();
    assert_eq!(replica.requests().last().map(|received| received.listener), Some(2));
}
