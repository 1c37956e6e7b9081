//! ledger: a distributed financial ledger database. Accounts and double-entry transfers are
//! executed in large batches by a deterministic state machine; see `docs/ARCHITECTURE.md`.

#![forbid(unsafe_op_in_unsafe_fn)]
#![warn(missing_docs)]

pub mod benchmark;
pub mod cli_client;
pub mod client;
pub mod constants;
pub mod io;
pub mod json;
pub mod multi_batch;
pub mod net;
pub mod operation;
pub mod prng;
pub mod server;
pub mod state_machine;
pub mod storage;
pub mod testing;
pub mod types;
pub mod vsr;
pub mod workload;
