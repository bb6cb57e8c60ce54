//! Exit codes: the one table of them, kept in step with the README's.
//!
//! They are a contract with scripts and service managers, so each has a name
//! and a reason. `124` follows timeout(1), wait-for-it and wait4x, so that
//! sockwatch can replace them without changing the scripts that call them.

/// The command did what was asked (a `wait` condition holds, `watch` ended by
/// SIGINT, SIGTERM or a closed stdout).
pub const SUCCESS: u8 = 0;
/// A runtime error: no source of socket information is usable, or I/O failed.
pub const RUNTIME: u8 = 1;
/// The command line or a condition is malformed.
pub const USAGE: u8 = 2;
/// `wait` (or `run --timeout`) gave up before the condition held.
pub const TIMEOUT: u8 = 124;
/// `run`: PROGRAM exists but cannot be executed.
pub const NOT_EXECUTABLE: u8 = 126;
/// `run`: PROGRAM was not found.
pub const NOT_FOUND: u8 = 127;
