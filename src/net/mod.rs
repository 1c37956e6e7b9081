//! Networking shared by the replica and the client: message framing and validation
//! ([`codec`]), as `docs/protocol.md` describes it.

pub mod codec;
