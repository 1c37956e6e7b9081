//! Test machinery that lives in the library so that the integration tests, the simulator binary
//! and later cluster tests share it: the reference model of the state machine and the
//! deterministic simulator (`docs/simulator.md`). Nothing here is used by the server.

pub mod checkers;
pub mod client;
pub mod cluster;
pub mod disk;
pub mod model;
pub mod network;
pub mod node;
pub mod options;
pub mod oracle;
pub mod requests;
pub mod time;
pub mod trace;
pub mod wal;

pub use cluster::{run_seed, RunReport, RunStats};
