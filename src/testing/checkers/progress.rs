//! Checker (e): a run that committed nothing fails. A simulator whose workload never reaches
//! the replica passes every other checker vacuously.

use super::Failure;

/// Fails if `commits` (ops committed by replicas over the whole run) is zero.
pub fn check(commits: u64) -> Result<(), Failure> {
    if commits == 0 {
        return Err(Failure::new(
            "progress",
            "the run committed no op: a vacuous run is not a pass".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_run_without_commits_fails() {
        assert!(super::check(0).is_err());
        assert_eq!(super::check(1), Ok(()));
    }
}
