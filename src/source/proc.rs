//! The /proc source: an adapter over the `proc-fallback` crate.
//!
//! Used where sock_diag is unavailable. It answers the same question with
//! less: no socket cookie (so closing is seen by polling, not pushed), no
//! per-socket `IPV6_V6ONLY` (the watcher assumes `net.ipv6.bindv6only`), and
//! no way to tell an auto-bound UDP client from a server.

use std::collections::HashMap;
use std::io;
use std::path::Path;

use proc_fallback::{Error, Listener, Reader};

use super::{Source, SourceError};
use crate::endpoint::{Endpoint, Family, Socket, SourceKind, Table, Transport};

/// Reads `<root>/net/{tcp,tcp6,udp,udp6}`.
pub struct Proc {
    reader: Reader,
    listeners: Vec<Listener>,
    skipped: u64,
    /// How many times [`Source::read`] has been called: the number of the
    /// current read.
    reads: u64,
    /// Endpoints that no read found, with the number of the read that
    /// first missed them: they close if the next read misses them too.
    suspects: HashMap<Endpoint, u64>,
}

impl Proc {
    /// A source over `<root>/net`: `/proc` for our own network namespace,
    /// `/proc/<pid>` for another process's.
    pub fn new(root: &Path) -> Proc {
        Proc {
            reader: Reader::new(root),
            listeners: Vec::new(),
            reads: 0,
            suspects: HashMap::new(),
            skipped: 0,
        }
    }

    /// `net.ipv6.bindv6only` as seen from `root`; Linux's default (off)
    /// where it cannot be read, and why not when there is a file that is
    /// not what the kernel writes (a kernel without IPv6 has none).
    pub fn bindv6only(root: &Path) -> (bool, Option<Error>) {
        match proc_fallback::bindv6only(root) {
            Ok(on) => (on, None),
            Err(Error::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                (false, None)
            }
            Err(e) => (false, Some(e)),
        }
    }
}

fn file_table(table: Table) -> proc_fallback::Table {
    match (table.transport, table.family) {
        (Transport::Tcp, Family::Inet) => proc_fallback::Table::Tcp,
        (Transport::Tcp, Family::Inet6) => proc_fallback::Table::Tcp6,
        (Transport::Udp, Family::Inet) => proc_fallback::Table::Udp,
        (Transport::Udp, Family::Inet6) => proc_fallback::Table::Udp6,
    }
}

impl Source for Proc {
    fn kind(&self) -> SourceKind {
        SourceKind::Proc
    }

    fn read(
        &mut self,
        tables: &[Table],
        out: &mut Vec<Socket>,
        failed: &mut Vec<(Table, SourceError)>,
    ) {
        self.reads += 1;
        for &table in tables {
            if let Err(e) = self.dump(table, out) {
                failed.push((table, e));
            }
        }
    }

    /// /proc has no lookup of one socket: read the tables again, up to
    /// [`CONFIRM_READS`] times, until every endpoint is found. What none of
    /// those reads shows is a suspect, still taken as listening; it closes
    /// when the next poll misses it too. Reads in quick succession miss the
    /// same rows more often than chance (page boundaries fall at the same
    /// places while the churn keeps its pace), so the second look comes a
    /// poll later. A living socket hidden from every one of them would still
    /// be reported closed: the /proc source is weaker here than netlink, and
    /// its closes come a poll later.
    fn confirm(
        &mut self,
        absent: &[Endpoint],
        present: &mut Vec<Endpoint>,
    ) -> Result<(), SourceError> {
        let mut missing: Vec<Endpoint> = absent.to_vec();
        let mut tables: Vec<Table> = missing.iter().map(Endpoint::table).collect();
        tables.sort();
        tables.dedup();
        let mut seen = Vec::new();
        for _ in 0..CONFIRM_READS {
            if missing.is_empty() {
                break;
            }
            for &table in &tables {
                seen.clear();
                self.dump(table, &mut seen)?;
                missing.retain(|e| {
                    let found = seen.iter().any(|s| s.endpoint == *e);
                    if found {
                        present.push(*e);
                    }
                    !found
                });
            }
        }
        self.suspects.retain(|e, _| absent.contains(e));
        for endpoint in missing {
            let missed_before = self.suspects.get(&endpoint) == Some(&(self.reads - 1));
            if missed_before {
                self.suspects.remove(&endpoint);
            } else {
                self.suspects.insert(endpoint, self.reads);
                present.push(endpoint);
            }
        }
        Ok(())
    }

    fn unsettled(&self) -> bool {
        !self.suspects.is_empty()
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// How many more reads of /proc confirm that an endpoint missing from one
/// read is gone.
const CONFIRM_READS: usize = 5;

impl Proc {
    /// Appends the listening sockets of one table to `out`.
    fn dump(&mut self, table: Table, out: &mut Vec<Socket>) -> Result<(), SourceError> {
        self.listeners.clear();
        match self.reader.read(file_table(table), &mut self.listeners) {
            Ok(stats) => self.skipped += stats.skipped as u64,
            // A kernel without IPv6 has no tcp6/udp6 files, and no IPv6
            // sockets either.
            Err(Error::Open { source, .. })
                if table.family == Family::Inet6 && source.kind() == io::ErrorKind::NotFound =>
            {
                return Ok(());
            }
            Err(Error::Open { path, source }) => {
                return Err(SourceError::Unavailable {
                    what: format!("failed to open {}", path.display()),
                    cause: source,
                });
            }
            Err(Error::Read { path, source }) => {
                return Err(SourceError::Transient {
                    what: format!("failed to read {}", path.display()),
                    cause: source,
                });
            }
            // Never readable: a FIFO could block, a device never ends.
            Err(Error::NotAFile { path, kind }) => {
                return Err(SourceError::Unavailable {
                    what: format!("refusing {}", path.display()),
                    cause: io::Error::new(
                        io::ErrorKind::InvalidInput,
                        format!("it is {kind}, not a regular file"),
                    ),
                });
            }
            // Not a table the kernel prints; it may be next time, as a
            // file being replaced might.
            Err(Error::TooLarge { path, limit }) => {
                return Err(SourceError::Transient {
                    what: format!("stopped reading {} after {limit} bytes", path.display()),
                    cause: io::Error::new(
                        io::ErrorKind::FileTooLarge,
                        "no kernel socket table is that large",
                    ),
                });
            }
            Err(Error::Malformed { path, reason }) => {
                return Err(SourceError::Transient {
                    what: format!("{} is not a socket table", path.display()),
                    cause: io::Error::new(io::ErrorKind::InvalidData, reason),
                });
            }
        }
        out.extend(self.listeners.iter().map(|l| Socket {
            endpoint: Endpoint {
                transport: table.transport,
                addr: l.addr,
                port: l.port,
            },
            inode: l.inode,
            uid: l.uid,
            cookie: None,
            v6only: None,
            source: SourceKind::Proc,
        }));
        Ok(())
    }
}
