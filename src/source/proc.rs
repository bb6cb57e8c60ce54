//! The /proc source: an adapter over the `proc-fallback` crate.
//!
//! Used where sock_diag is unavailable. It answers the same question with
//! less: no socket cookie (so closing is seen by polling, not pushed), no
//! per-socket `IPV6_V6ONLY` (the watcher assumes `net.ipv6.bindv6only`), and
//! no way to tell an auto-bound UDP client from a server.
//!
//! Unix sockets come from `/proc/net/unix`, which prints names raw: a name
//! holding a newline forges rows (see `proc_fallback::unix`). A unix row is
//! trusted only when its inode appears once in the file and a process we
//! can see holds that socket; the others are listed, but satisfy no
//! condition. Their files' identity is not printed either, so a path that
//! is a socket file is taken to lead to the listener (see `unix_path`).

use std::collections::{HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};
use std::time::Instant;

use proc_fallback::unix::{UnixKind, UnixListener, UnixReader};
use proc_fallback::{Error, Listener, Reader};

use super::{Source, SourceError};
use crate::endpoint::{Endpoint, Family, Socket, SourceKind, Table, Transport, UnixName};

/// Reads `<root>/net/{tcp,tcp6,udp,udp6,unix}`.
pub struct Proc {
    reader: Reader,
    unix: UnixReader,
    unix_rows: Vec<UnixListener>,
    /// Whether a visible process holds each unix socket inode seen, as
    /// last checked: `None` for held (looked up once), or when it was first
    /// and last found held by none. A descriptor may be passed to another
    /// process later, and a scan can miss a process that is busy with its
    /// descriptors: "held by none" is looked up again, at most every
    /// [`UNHELD_RECHECK`].
    held: HashMap<u64, Option<(Instant, Instant)>>,
    /// Where the processes are: `/proc` (also for `/proc/<pid>` roots).
    processes: PathBuf,
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
        let processes = match root.file_name().and_then(|n| n.to_str()) {
            Some(name) if name.parse::<u32>().is_ok() => {
                root.parent().unwrap_or(root).to_path_buf()
            }
            _ => root.to_path_buf(),
        };
        Proc {
            reader: Reader::new(root),
            unix: UnixReader::new(root),
            unix_rows: Vec::new(),
            held: HashMap::new(),
            processes,
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

/// The file of an inet table; `None` for the unix tables.
fn file_table(table: Table) -> Option<proc_fallback::Table> {
    Some(match (table.transport, table.family) {
        (Transport::Tcp, Family::Inet) => proc_fallback::Table::Tcp,
        (Transport::Tcp, Family::Inet6) => proc_fallback::Table::Tcp6,
        (Transport::Udp, Family::Inet) => proc_fallback::Table::Udp,
        (Transport::Udp, Family::Inet6) => proc_fallback::Table::Udp6,
        _ => return None,
    })
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
        let unix: Vec<Table> = tables
            .iter()
            .copied()
            .filter(|t| t.family == Family::Unix)
            .collect();
        if !unix.is_empty() {
            if let Err(e) = self.dump_unix(&unix, out) {
                for &table in &unix[1..] {
                    failed.push((table, e.again()));
                }
                failed.push((unix[0], e));
            }
        }
        for &table in tables.iter().filter(|t| t.family != Family::Unix) {
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
                if table.family == Family::Unix {
                    self.dump_unix(&[table], &mut seen)?;
                } else {
                    self.dump(table, &mut seen)?;
                }
                missing.retain(|e| {
                    let found = seen.iter().any(|s| s.endpoint == *e);
                    if found {
                        present.push(e.clone());
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
                self.suspects.insert(endpoint.clone(), self.reads);
                present.push(endpoint);
            }
        }
        Ok(())
    }

    fn unsettled(&self) -> bool {
        // An absence to confirm, or a unix listener found held by nobody a
        // moment ago: read again soon rather than at the safety net.
        !self.suspects.is_empty()
            || self
                .held
                .values()
                .any(|held| held.is_some_and(|(first, _)| first.elapsed() < UNHELD_FOLLOW_UP))
    }

    fn skipped(&self) -> u64 {
        self.skipped
    }
}

/// How often a unix socket found held by no visible process is looked up
/// again.
const UNHELD_RECHECK: std::time::Duration = std::time::Duration::from_secs(1);

/// How long a unix listener found held by no visible process keeps its
/// table read again soon (within the read budget), in case the next look
/// finds its holder.
const UNHELD_FOLLOW_UP: std::time::Duration = std::time::Duration::from_secs(5);

/// How many more reads of /proc confirm that an endpoint missing from one
/// read is gone.
const CONFIRM_READS: usize = 5;

impl Proc {
    /// Appends the listening sockets of the unix `tables` to `out`, each
    /// trusted only when verified (see the module's doc).
    fn dump_unix(&mut self, tables: &[Table], out: &mut Vec<Socket>) -> Result<(), SourceError> {
        self.unix_rows.clear();
        match self.unix.read(&mut self.unix_rows) {
            Ok(skipped) => self.skipped += skipped as u64,
            // A kernel without unix sockets has no file, and no sockets.
            Err(Error::Open { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Ok(());
            }
            Err(e) => return Err(proc_error(e)),
        }
        let unchecked: HashSet<u64> = self
            .unix_rows
            .iter()
            .filter(|row| {
                row.rows_with_inode == 1
                    && match self.held.get(&row.inode) {
                        None => true,
                        Some(None) => false,
                        Some(Some((_, checked))) => checked.elapsed() >= UNHELD_RECHECK,
                    }
            })
            .map(|row| row.inode)
            .collect();
        if !unchecked.is_empty() {
            let pids = crate::process::pids(&self.processes);
            let scan = crate::process::owners(&self.processes, &pids, &unchecked);
            for inode in unchecked {
                let now = Instant::now();
                let unheld = match self.held.get(&inode) {
                    Some(Some((first, _))) => (*first, now),
                    _ => (now, now),
                };
                let held = scan.found.contains_key(&inode);
                self.held.insert(inode, (!held).then_some(unheld));
            }
        }
        let rows = &self.unix_rows;
        self.held
            .retain(|inode, _| rows.iter().any(|r| r.inode == *inode));
        for row in &self.unix_rows {
            let transport = match row.kind {
                UnixKind::Stream => Transport::Stream,
                UnixKind::Seqpacket => Transport::Seqpacket,
                UnixKind::Dgram => Transport::Dgram,
            };
            if !tables.contains(&Table::new(transport, Family::Unix)) {
                continue;
            }
            let name = match row.name.strip_prefix(b"@") {
                Some(rest) => UnixName::abstract_name(rest),
                None => UnixName::path(&row.name),
            };
            let trusted = row.rows_with_inode == 1 && self.held.get(&row.inode) == Some(&None);
            out.push(Socket {
                endpoint: Endpoint::unix(transport, name),
                inode: row.inode,
                uid: None,
                cookie: None,
                v6only: None,
                source: SourceKind::Proc,
                vfs: None,
                trusted,
            });
        }
        Ok(())
    }

    /// Appends the listening sockets of one table to `out`.
    fn dump(&mut self, table: Table, out: &mut Vec<Socket>) -> Result<(), SourceError> {
        self.listeners.clear();
        let Some(file) = file_table(table) else {
            return self.dump_unix(&[table], out);
        };
        match self.reader.read(file, &mut self.listeners) {
            Ok(stats) => self.skipped += stats.skipped as u64,
            // A kernel without IPv6 has no tcp6/udp6 files, and no IPv6
            // sockets either.
            Err(Error::Open { source, .. })
                if table.family == Family::Inet6 && source.kind() == io::ErrorKind::NotFound =>
            {
                return Ok(());
            }
            Err(e) => return Err(proc_error(e)),
        }
        out.extend(self.listeners.iter().map(|l| Socket {
            endpoint: Endpoint::inet(table.transport, l.addr, l.port),
            inode: l.inode,
            uid: Some(l.uid),
            cookie: None,
            v6only: None,
            source: SourceKind::Proc,
            vfs: None,
            trusted: true,
        }));
        Ok(())
    }
}

/// What a failed read of a /proc table means for the source.
fn proc_error(error: Error) -> SourceError {
    match error {
        Error::Open { path, source } => SourceError::Unavailable {
            what: format!("failed to open {}", path.display()),
            cause: source,
        },
        Error::Read { path, source } => SourceError::Transient {
            what: format!("failed to read {}", path.display()),
            cause: source,
        },
        // Never readable: a FIFO could block, a device never ends.
        Error::NotAFile { path, kind } => SourceError::Unavailable {
            what: format!("refusing {}", path.display()),
            cause: io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("it is {kind}, not a regular file"),
            ),
        },
        // Not a table the kernel prints; it may be next time, as a file
        // being replaced might.
        Error::TooLarge { path, limit } => SourceError::Transient {
            what: format!("stopped reading {} after {limit} bytes", path.display()),
            cause: io::Error::new(
                io::ErrorKind::FileTooLarge,
                "no kernel socket table is that large",
            ),
        },
        Error::Malformed { path, reason } => SourceError::Transient {
            what: format!("{} is not a socket table", path.display()),
            cause: io::Error::new(io::ErrorKind::InvalidData, reason),
        },
    }
}
