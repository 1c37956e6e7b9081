//! Viewstamped replication and the durable log: message headers, the superblock, the journal
//! (WAL), checkpoints in the grid, and recovery.

pub mod admission;
pub mod checkpoint;
pub mod client_table;
pub mod clock;
pub mod data_file;
pub mod header;
pub mod inspect;
pub mod journal;
pub mod marzullo;
pub mod message_pool;
pub mod outbox;
pub mod quorums;
pub mod replica;
pub mod replica_state;
pub mod reply_writes;
pub mod superblock;
pub mod time;
pub mod write_stage;
