//! Checker: liveness. Faults stop for the quiet phase at the end of a run (no crashes, no
//! partitions), and for its second half clients start no new requests: by the end, every
//! client's request in flight has been answered — the cluster elected a primary that serves,
//! and the clients found it.

use super::Failure;

/// Fails if any client of `in_flight` (client id, request number in flight if any) still
/// waits for a reply.
pub fn check(in_flight: &[(u128, Option<u32>)]) -> Result<(), Failure> {
    match in_flight.iter().find(|(_, request)| request.is_some()) {
        Some((client, Some(request))) => Err(Failure::new(
            "liveness",
            format!("client {client:#x} still waits for a reply to request {request} at the end of the quiet phase"),
        )),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_unanswered_at_the_end_fires() {
        assert!(super::check(&[(1, None), (2, None)]).is_ok());
        assert!(super::check(&[(1, None), (2, Some(7))]).unwrap_err().message.contains("request 7"));
    }
}
