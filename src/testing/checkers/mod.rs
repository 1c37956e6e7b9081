//! The simulator's checkers, one invariant each. A checker is plain data fed by the harness; it
//! returns a [`Failure`] naming itself and what it saw, and never panics on what the replica did
//! (a panic is kept for the harness's own invariants).

pub mod checkpoints;
pub mod clocks;
pub mod commits;
pub mod convergence;
pub mod grid;
pub mod hash_chain;
pub mod liveness;
pub mod op_numbers;
pub mod progress;
pub mod replies;
pub mod sessions;
pub mod state;
pub mod views;
pub mod wal;

/// A checker that fired.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// The checker's name.
    pub checker: &'static str,
    /// What it saw.
    pub message: String,
}

impl Failure {
    /// A failure of `checker`.
    pub fn new(checker: &'static str, message: String) -> Failure {
        Failure { checker, message }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.checker, self.message)
    }
}
