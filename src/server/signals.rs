//! The signals `ledger start` handles. SIGTERM and SIGINT stop the replica cleanly (after the
//! write in flight); SIGHUP — sent when a terminal closes, or by tools expecting a reload — is
//! logged and otherwise ignored, rather than killing the process without a word as its default
//! action would. The handlers only set atomics; the server's loop, which wakes at least every
//! pulse interval, acts on them.

use std::sync::atomic::{AtomicBool, Ordering};

static STOP: AtomicBool = AtomicBool::new(false);
static HANGUP: AtomicBool = AtomicBool::new(false);

/// Installs the handlers; returns the flag that SIGTERM and SIGINT set.
pub fn stop_on_signals() -> &'static AtomicBool {
    extern "C" fn stop(_: libc::c_int) {
        STOP.store(true, Ordering::Relaxed);
    }
    extern "C" fn hangup(_: libc::c_int) {
        HANGUP.store(true, Ordering::Relaxed);
    }
    // SAFETY: the handlers only store to atomics, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGHUP, hangup as *const () as libc::sighandler_t);
    }
    &STOP
}

/// True once for each SIGHUP received since the last call.
pub fn hangup_received() -> bool {
    HANGUP.swap(false, Ordering::Relaxed)
}
