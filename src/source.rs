//! Where socket facts come from: one small trait, chosen at run time.
//!
//! Every backend must provide:
//! - [`Source::read`]: the listening sockets of each [`Table`] asked for,
//!   complete or not at all. A partial answer is an error, never a shorter
//!   list, because the snapshot reads a missing socket as a closed one.
//! - [`Source::confirm`]: whether endpoints missing from a read still listen:
//!   an absence from one read is a hint, not a fact.
//! - [`Source::pushed_fd`] and [`Source::read_pushed`]: optionally, a file
//!   descriptor that becomes readable when the kernel pushes news (netlink's
//!   destroy events), so closing is seen without waiting for the next poll.
//!
//! The choice is made at run time, per table, by [`sources::Sources`],
//! because falling back is a runtime decision: a container may allow
//! sock_diag for TCP and lack the UDP diag module. Nothing outside this
//! module knows a netlink message exists.

pub mod netlink;
pub mod proc;
pub mod reads;
pub mod sources;
pub mod unix_diag;

use std::io;
use std::os::fd::RawFd;

use crate::endpoint::{Endpoint, Socket, SourceKind, Table};

/// Why a source could not answer.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// The source cannot serve this table at all here (no permission, no
    /// kernel support, a diag module missing). `--source auto` falls back to
    /// another source for the table.
    #[error("{what}: {cause}")]
    Unavailable {
        /// What was being done, e.g. "failed to open sock_diag socket".
        what: String,
        /// The operating system's reason.
        cause: io::Error,
    },
    /// This poll failed, but the source may work next time. The watcher keeps
    /// what it knew: a failed poll never reads as sockets closing.
    #[error("{what}: {cause}")]
    Transient {
        /// What was being done.
        what: String,
        /// The reason.
        cause: io::Error,
    },
}

impl SourceError {
    /// An error that means the source can't serve here, for an errno that
    /// says so; any other errno is transient.
    pub fn classify(what: impl Into<String>, cause: io::Error) -> SourceError {
        let what = what.into();
        match cause.raw_os_error() {
            Some(
                libc::EPERM
                | libc::EACCES
                | libc::EAFNOSUPPORT
                | libc::EPROTONOSUPPORT
                | libc::ENOENT
                | libc::EOPNOTSUPP
                | libc::EINVAL,
            ) => SourceError::Unavailable { what, cause },
            _ => SourceError::Transient { what, cause },
        }
    }

    /// The same error again, for another table that one failed request was
    /// to answer too.
    pub fn again(&self) -> SourceError {
        let copy = |cause: &io::Error| match cause.raw_os_error() {
            Some(errno) => io::Error::from_raw_os_error(errno),
            None => io::Error::new(cause.kind(), cause.to_string()),
        };
        match self {
            SourceError::Unavailable { what, cause } => SourceError::Unavailable {
                what: what.clone(),
                cause: copy(cause),
            },
            SourceError::Transient { what, cause } => SourceError::Transient {
                what: what.clone(),
                cause: copy(cause),
            },
        }
    }

    /// Whether falling back to another source is the right answer.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, SourceError::Unavailable { .. })
    }
}

/// What a source's pushed events said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pushed {
    /// Every event was read; the cookies of freed sockets were appended.
    Complete,
    /// The kernel dropped events (`ENOBUFS`): only a full dump can tell what
    /// closed meanwhile.
    Lost,
}

/// A backend that reports listening sockets.
pub trait Source {
    /// Which backend this is, for events and messages.
    fn kind(&self) -> SourceKind;

    /// Reads `tables`: for each, either appends every listening socket of it
    /// to `out`, or pushes why it could not to `failed` (the caller then
    /// discards whatever of that table reached `out`). One call for several
    /// tables lets a source answer them with one request.
    fn read(
        &mut self,
        tables: &[Table],
        out: &mut Vec<Socket>,
        failed: &mut Vec<(Table, SourceError)>,
    );

    /// Which of `absent` — endpoints missing from this source's last read of
    /// their table — still listen, appended to `present`. A read may skip
    /// rows (the kernel resumes a dump by position in a hash slot, and
    /// sockets leaving the slot shift it), so an absence is only a hint until
    /// this confirms it: netlink asks the kernel for each endpoint, /proc
    /// reads again.
    fn confirm(
        &mut self,
        absent: &[Endpoint],
        present: &mut Vec<Endpoint>,
    ) -> Result<(), SourceError>;

    /// Whether an absence awaits confirmation by the next read (the /proc
    /// source's suspects): the caller should read again soon even if
    /// nothing else says so.
    fn unsettled(&self) -> bool {
        false
    }

    /// A descriptor that becomes readable when [`Source::read_pushed`] has
    /// something to read.
    fn pushed_fd(&self) -> Option<RawFd> {
        None
    }

    /// Reads pushed events without blocking, appending the cookies of freed
    /// sockets to `closed`.
    fn read_pushed(&mut self, closed: &mut Vec<u64>) -> Result<Pushed, SourceError> {
        let _ = closed;
        Ok(Pushed::Complete)
    }

    /// Messages or lines that were malformed and skipped since the start.
    fn skipped(&self) -> u64;
}
