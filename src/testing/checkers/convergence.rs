//! Checker: at the end of the quiet phase (no crashes for a while, and for its second half no
//! new requests), every replica is up and has committed at least as far as the cluster had when
//! clients stopped starting requests: a backup that missed prepares or crashed caught up by
//! itself.

use super::Failure;

/// Checks `commit_mins`, each replica's `commit_min` (`None`: down), against `op_max`, the
/// newest op any replica had committed when the run began to drain.
pub fn check(commit_mins: &[Option<u64>], op_max: u64) -> Result<(), Failure> {
    for (replica, commit_min) in commit_mins.iter().enumerate() {
        match commit_min {
            None => return Err(Failure::new("convergence", format!("replica {replica} is down at the end"))),
            Some(commit_min) if *commit_min < op_max => {
                return Err(Failure::new(
                    "convergence",
                    format!(
                        "replica {replica} committed up to op {commit_min}, the cluster up to op {op_max}"
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replica_behind_or_down_fires() {
        assert!(check(&[Some(5), Some(5)], 5).is_ok());
        assert!(check(&[Some(5), Some(4)], 5)
            .unwrap_err()
            .message
            .contains("replica 1 committed up to op 4"));
        assert!(check(&[None, Some(5)], 5).unwrap_err().message.contains("replica 0 is down"));
    }
}
