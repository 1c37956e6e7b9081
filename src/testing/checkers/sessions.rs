//! Checker: at the end of a run, every running replica holds every session's latest reply,
//! intact — a reply its recovery lost (its slot on disk damaged, or holding a later reply
//! of ops not yet executed again) was restored from a peer, or replaced by a newer commit —
//! so that a retry of the latest request is answered wherever it lands.

use super::Failure;
use crate::vsr::client_table::ClientTable;

const NAME: &str = "sessions intact";

/// Checks the client table of replica `replica`.
pub fn check(replica: u8, clients: &ClientTable) -> Result<(), Failure> {
    for (slot, session) in clients.sessions().iter().enumerate() {
        if session.client == 0 {
            continue;
        }
        if clients.reply_lost(slot) {
            return Err(Failure::new(
                NAME,
                format!(
                    "replica {replica}: the latest reply of session slot {slot} is still lost at the end"
                ),
            ));
        }
        if !session.reply_intact(clients.reply(slot)) {
            return Err(Failure::new(
                NAME,
                format!(
                    "replica {replica}: the reply held for session slot {slot} is not the session's latest"
                ),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vsr::header::{Command, Header};

    #[test]
    fn held_replies_pass_and_a_lost_or_wrong_one_fires() {
        let mut clients = ClientTable::new(2, 4096);
        let mut reply = Header { client: 9, op: 3, ..Header::new(Command::Reply, 1) };
        reply.set_body(&[]);
        reply.set_checksum();
        assert!(clients.commit(9, true, 3, 0, bytemuck::bytes_of(&reply), reply.checksum).is_some());
        assert!(check(0, &clients).is_ok());
        clients.reply_lose(0);
        assert!(check(0, &clients).unwrap_err().message.contains("still lost"));
        assert_eq!(clients.reply_restore(9, &reply, &[]), Some(0));
        assert!(check(0, &clients).is_ok());
        let mut other = reply;
        other.op = 4;
        other.set_checksum();
        assert!(clients.commit(9, false, 4, 1, bytemuck::bytes_of(&other), reply.checksum).is_some());
        assert!(check(0, &clients).unwrap_err().message.contains("not the session's latest"));
    }
}
