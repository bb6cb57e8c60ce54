//! Exit codes: the one table of them, kept in step with the README's.
//!
//! They are a contract with scripts and service managers, so each has a name
//! and a reason. `124` follows timeout(1), wait-for-it and wait4x, so that
//! sockwatch can replace them without changing the scripts that call them.

/// The command did what was asked (a `wait` condition holds, `watch` ended by
/// SIGINT, SIGTERM or a closed stdout, `export` by SIGINT or SIGTERM).
pub const SUCCESS: u8 = 0;
/// A runtime error: no source of socket information is usable, or I/O failed
/// (`export` cannot listen on its address).
pub const RUNTIME: u8 = 1;
/// The command line or a condition is malformed.
pub const USAGE: u8 = 2;
/// `wait` (or `run --timeout`) gave up before the condition held.
pub const TIMEOUT: u8 = 124;
/// `run`: PROGRAM exists but cannot be executed.
pub const NOT_EXECUTABLE: u8 = 126;
/// `run`: PROGRAM was not found.
pub const NOT_FOUND: u8 = 127;

/// The exit status a row of [`TABLE`] stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// One of the codes above.
    Code(u8),
    /// 128 plus the number of the signal that ended `wait`, as shells report it.
    Signal,
    /// Whatever the service of `run` exited with.
    Service,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Code(code) => write!(f, "{code}"),
            Status::Signal => f.write_str("128+N"),
            Status::Service => f.write_str("other"),
        }
    }
}

/// Every exit status and what it means, in words for people: the table
/// that `sockwatch man` prints under EXIT STATUS and the README holds under
/// "Exit codes" (a test keeps the two equal). Names of commands and options
/// are in `backticks`, as Markdown writes them.
pub const TABLE: [(Status, &str); 8] = [
    (
        Status::Code(SUCCESS),
        "success: `list` printed, `wait`'s condition holds, `watch` ended by SIGINT, SIGTERM or a closed stdout, `export` by SIGINT or SIGTERM",
    ),
    (
        Status::Code(RUNTIME),
        "runtime error: no source of socket information is usable, or I/O failed (`export`: its address cannot be bound, its textfile's directory is missing)",
    ),
    (Status::Code(USAGE), "usage error or malformed condition"),
    (
        Status::Code(TIMEOUT),
        "`wait --timeout` or `run --timeout` ran out (as timeout(1), wait-for-it and wait4x)",
    ),
    (
        Status::Code(NOT_EXECUTABLE),
        "`run`: PROGRAM cannot be executed",
    ),
    (Status::Code(NOT_FOUND), "`run`: PROGRAM was not found"),
    (
        Status::Signal,
        "`wait` was ended by signal N (SIGINT gives 130)",
    ),
    (Status::Service, "`run`: the service's own exit status"),
];

/// A mistake in what the user typed: exit code [`USAGE`], wherever it is
/// found (the command line, a condition, a file named on the command line).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

#[cfg(test)]
mod tests {
    use super::*;

    /// The rows of the README's "Exit codes" table, as `(code, meaning)`.
    fn readme_rows() -> Vec<(String, String)> {
        let readme = include_str!("../README.md");
        let (_, section) = readme
            .split_once("\n## Exit codes\n")
            .expect("README has an \"Exit codes\" section");
        section
            .lines()
            .skip_while(|line| !line.starts_with('|'))
            .take_while(|line| line.starts_with('|'))
            // The header and the rule under it.
            .skip(2)
            .map(|line| {
                let cells: Vec<&str> = line.trim_matches('|').split('|').map(str::trim).collect();
                assert_eq!(cells.len(), 2, "a row of two cells: {line}");
                (cells[0].to_owned(), cells[1].to_owned())
            })
            .collect()
    }

    #[test]
    fn the_readme_table_is_this_table() {
        let ours: Vec<(String, String)> = TABLE
            .iter()
            .map(|(status, meaning)| (status.to_string(), (*meaning).to_owned()))
            .collect();
        assert_eq!(readme_rows(), ours);
    }

    #[test]
    fn every_code_is_in_the_table() {
        for code in [SUCCESS, RUNTIME, USAGE, TIMEOUT, NOT_EXECUTABLE, NOT_FOUND] {
            assert!(
                TABLE
                    .iter()
                    .any(|(status, _)| *status == Status::Code(code)),
                "{code} is not in the table"
            );
        }
    }
}
