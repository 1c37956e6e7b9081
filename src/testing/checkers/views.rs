//! Checker: a replica's view never goes back, neither while it runs nor across a restart
//! (`view` and `log_view` reach the superblock before the replica acts on them), and its log
//! view is never beyond its view.

use super::Failure;

const NAME: &str = "views";

/// What the checker remembers of one replica.
#[derive(Clone, Copy, Debug, Default)]
pub struct ViewsChecker {
    /// The newest view and log view seen while the replica ran or before it crashed.
    view: u32,
    log_view: u32,
}

impl ViewsChecker {
    /// Checks the views of a replica now (running, or just recovered).
    pub fn check(&mut self, view: u32, log_view: u32) -> Result<(), Failure> {
        if log_view > view {
            return Err(Failure::new(NAME, format!("log view {log_view} is beyond view {view}")));
        }
        if view < self.view || log_view < self.log_view {
            return Err(Failure::new(
                NAME,
                format!(
                    "went back from view {} (log view {}) to view {view} (log view {log_view})",
                    self.view, self.log_view
                ),
            ));
        }
        (self.view, self.log_view) = (view, log_view);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_view_or_log_view_going_back_fires() {
        let mut checker = ViewsChecker::default();
        assert_eq!(checker.check(3, 2), Ok(()));
        assert_eq!(checker.check(3, 3), Ok(()));
        assert!(checker.check(2, 2).unwrap_err().message.contains("went back"));
        let mut checker = ViewsChecker::default();
        assert_eq!(checker.check(4, 4), Ok(()));
        assert!(checker.check(5, 3).unwrap_err().message.contains("went back"));
        assert!(ViewsChecker::default().check(1, 2).unwrap_err().message.contains("beyond"));
    }
}
