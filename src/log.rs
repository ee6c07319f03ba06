//! Diagnostics to stderr, one line per call, with a UTC timestamp [L].
//!
//! `env: development` turns on `debug!` (connections, routing, the pool); `production`
//! keeps warnings and errors only. The access log is a different thing and lives in
//! `access_log.rs`. No logging crate: this file is all of it.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

static DEBUG: AtomicBool = AtomicBool::new(false);

/// Set once from the config's `env` (and again on reload).
pub fn set_debug(on: bool) {
    DEBUG.store(on, Ordering::Relaxed);
}

pub fn debug_enabled() -> bool {
    DEBUG.load(Ordering::Relaxed)
}

/// Writes one whole line with a single `write_all`, so lines from different threads
/// never interleave. Errors writing to stderr are ignored: there is nowhere else to say so.
pub fn write_line(level: &str, args: std::fmt::Arguments<'_>) {
    let now = crate::httpdate::iso8601(std::time::SystemTime::now());
    let line = format!("{now} {level} {args}\n");
    let _ = std::io::stderr().lock().write_all(line.as_bytes());
}

#[macro_export]
macro_rules! debug {
    ($($arg:tt)*) => {
        if $crate::log::debug_enabled() {
            $crate::log::write_line("debug", format_args!($($arg)*));
        }
    };
}

#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::log::write_line("warn", format_args!($($arg)*)) };
}

#[macro_export]
macro_rules! error {
    ($($arg:tt)*) => { $crate::log::write_line("error", format_args!($($arg)*)) };
}
