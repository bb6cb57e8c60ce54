//! The sources a watcher reads, and which one serves which table.
//!
//! [`Sources`] owns the backends and the routing: it opens sock_diag (in
//! another network namespace where `--proc-root /proc/<pid>` says so),
//! falls back to /proc where sock_diag is unavailable — for every table
//! when the socket cannot be opened, for one table when its dumps are
//! refused — and hands each source all the tables it serves in one call,
//! so that a source may answer several with one request (one walk of the
//! TCP listening hash for both families).
//!
//! What it returns is per table: the complete list of a table's listening
//! sockets, or nothing for that table. A partial answer never leaves here,
//! because the snapshot reads a missing socket as a closed one.

use std::os::fd::RawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;

use super::netlink::Netlink;
use super::proc::Proc;
use super::reads::Reads;
use super::{Pushed, Source, SourceError};
use crate::endpoint::{Endpoint, NetnsTag, Socket, SourceKind, Table};
use crate::netns::Target;

/// Which source the user asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SourceChoice {
    /// sock_diag netlink, falling back per table where it is unavailable.
    Auto,
    /// sock_diag netlink only; an error where it is unavailable.
    Netlink,
    /// /proc/net only.
    Proc,
}

/// What to open.
#[derive(Debug, Clone)]
pub struct Plan<'a> {
    /// Which source.
    pub choice: SourceChoice,
    /// The tables to read.
    pub tables: &'a [Table],
    /// Subscribe to pushed closes (not needed for a one-shot `list`).
    pub pushed: bool,
    /// `/proc`, or `/proc/<pid>` for that process's network namespace.
    pub proc_root: &'a Path,
    /// Say on stderr why a source is not used.
    pub announce: bool,
    /// Say on stderr what is decided and skipped.
    pub verbose: bool,
    /// The namespaces named by `--netns` (none: the one of `proc_root`).
    pub netns: &'a [Target],
}

/// Where one namespace's tables are read.
struct Place {
    /// The namespace file netlink enters (`None`: ours).
    enter: Option<PathBuf>,
    /// `/proc/<pid>` of a process in it, for the /proc source.
    proc_root: Option<PathBuf>,
    /// What its endpoints carry.
    tag: Option<NetnsTag>,
}

/// The poll interval unless `--interval` says otherwise: `wait` must
/// notice a new listener within 100 ms, and a sock_diag poll of the four
/// tables costs about 0.1 ms (benches/RESULTS.md).
pub const NETLINK_INTERVAL: Duration = Duration::from_millis(50);
/// The interval of a long-running `watch` that reads /proc: there every
/// poll costs milliseconds, since the kernel walks its whole connection
/// hash to find the end of the file (benches/RESULTS.md).
pub const PROC_INTERVAL: Duration = Duration::from_millis(500);

/// The backends and the routing of tables to them.
pub struct Sources {
    sources: Vec<Box<dyn Source>>,
    /// Each table and the index of the source serving it.
    routes: Vec<(Table, usize)>,
    /// For each source, the source that takes over its tables when it is
    /// unavailable.
    fallbacks: Vec<Option<usize>>,
    /// For each source, the namespace its sockets are in, as events say
    /// it (`None`: the only one watched, and ours).
    tags: Vec<Option<NetnsTag>>,
    /// For each source, the index of its namespace ([`Table::netns`]).
    netns_index: Vec<u16>,
    /// Whether each route's table has been read once: until all have, what
    /// is known is partial and must not be taken for the truth (a `wait
    /// --gone` would see sockets "gone" that were never read).
    read_once: Vec<bool>,
    /// Whether each route's table has failed to read and that has been
    /// said without `-v`: once per table, so that a table that cannot be
    /// read is never a silent empty answer, nor a flood.
    said: Vec<bool>,
    /// The last transient failure, to explain a partial answer.
    last_failure: Option<String>,
    /// `net.ipv6.bindv6only` where the sources read it.
    bindv6only: bool,
    announce: bool,
    verbose: bool,
    /// Reused per-source list of tables to read.
    asked: Vec<Table>,
    /// Reused list of this read's failures.
    failed: Vec<(Table, SourceError)>,
    /// Counts of reads, for reports from other threads.
    reads: Arc<Reads>,
}

impl Sources {
    /// Opens the sources for `plan.tables`, in each namespace of
    /// `plan.netns` (none: the one of `plan.proc_root`). With `auto`, a
    /// netlink socket that cannot be opened means /proc for every table of
    /// its namespace, and a table whose dumps turn out to be refused moves
    /// to /proc at its first read. A namespace named by `--netns` that no
    /// source can read is an error naming it.
    pub fn open(plan: &Plan<'_>) -> anyhow::Result<Sources> {
        let places: Vec<Place> = if plan.netns.is_empty() {
            vec![Place {
                enter: netns_of(plan.proc_root),
                proc_root: Some(plan.proc_root.to_path_buf()),
                tag: None,
            }]
        } else {
            let own = crate::netns::own_inode();
            let tagged = crate::netns::tagged(plan.netns);
            (0u16..)
                .zip(plan.netns)
                .map(|(index, target)| Place {
                    enter: (target.inode.is_none() || target.inode != own)
                        .then(|| target.file.clone()),
                    proc_root: target.proc_root.clone(),
                    tag: tagged.then(|| NetnsTag {
                        index,
                        label: Arc::clone(&target.label),
                    }),
                })
                .collect()
        };
        let mut sources: Vec<Box<dyn Source>> = Vec::new();
        let mut fallbacks = Vec::new();
        let mut tags = Vec::new();
        let mut routes = Vec::new();
        for (index, place) in (0u16..).zip(&places) {
            let named = |what: &str| match (&place.tag, plan.netns.get(usize::from(index))) {
                (_, Some(target)) => {
                    format!("cannot read the network namespace {}{what}", target.label)
                }
                _ => "no source of socket information is usable".to_owned(),
            };
            let netlink = match plan.choice {
                SourceChoice::Proc => None,
                SourceChoice::Auto | SourceChoice::Netlink => {
                    // Both sockets are made in the watched namespace: destroy
                    // events come from the namespace of the socket that joined.
                    let destroy = plan.pushed.then_some(plan.tables);
                    match Netlink::open_in(place.enter.as_deref(), destroy) {
                        Ok((netlink, unsubscribed)) => {
                            if let (Some(e), true) = (unsubscribed, plan.verbose) {
                                // Closing is still seen, by polling; only later.
                                eprintln!("sockwatch: {e}; closing is seen by polling only");
                            }
                            Some(netlink)
                        }
                        Err(e) if plan.choice == SourceChoice::Netlink => {
                            return Err(e).context(named(""));
                        }
                        Err(e) => match &place.proc_root {
                            Some(proc_root) => {
                                if plan.announce || plan.verbose {
                                    eprintln!(
                                        "sockwatch: sock_diag is unavailable ({e}); reading {}/net \
                                         instead",
                                        proc_root.display()
                                    );
                                }
                                None
                            }
                            // A namespace with no process known in it: only
                            // netlink can read it.
                            None => anyhow::bail!(
                                "{}: {} (no process in it is known whose /proc could be read \
                                 instead)",
                                named(""),
                                e.to_string()
                                    .replace("; --source proc reads it without", "")
                            ),
                        },
                    }
                }
            };
            let first = sources.len();
            match (netlink, &place.proc_root) {
                (Some(netlink), Some(proc_root)) if plan.choice == SourceChoice::Auto => {
                    sources.push(Box::new(netlink));
                    sources.push(Box::new(Proc::new(proc_root)));
                    fallbacks.extend([Some(first + 1), None]);
                    tags.extend([place.tag.clone(), place.tag.clone()]);
                }
                (Some(netlink), _) => {
                    sources.push(Box::new(netlink));
                    fallbacks.push(None);
                    tags.push(place.tag.clone());
                }
                (None, Some(proc_root)) => {
                    sources.push(Box::new(Proc::new(proc_root)));
                    fallbacks.push(None);
                    tags.push(place.tag.clone());
                }
                (None, None) => anyhow::bail!(
                    "{}: no process in it is known whose /proc could be read (name it by \
                     /proc/PID/ns/net, or let sock_diag read it)",
                    named(" from /proc")
                ),
            }
            routes.extend(plan.tables.iter().map(|&t| (t.in_netns(index), first)));
        }
        let mut sources = Sources::new(sources, routes, None, plan.verbose);
        sources.fallbacks = fallbacks;
        sources.netns_index = tags
            .iter()
            .map(|t: &Option<NetnsTag>| t.as_ref().map_or(0, |t| t.index))
            .collect();
        sources.tags = tags;
        sources.announce = plan.announce || plan.verbose;
        // One namespace's setting stands for all: /proc of the first that
        // has a process (Linux's default where none has).
        if let Some(proc_root) = places.iter().find_map(|p| p.proc_root.as_deref()) {
            let (bindv6only, unreadable) = Proc::bindv6only(proc_root);
            if let Some(e) = unreadable {
                eprintln!("sockwatch: {e}; taking net.ipv6.bindv6only as 0 (Linux's default)");
            }
            sources.bindv6only = bindv6only;
        }
        Ok(sources)
    }

    /// Given sources: `routes` says which source serves each table,
    /// `fallback` which one takes over a table whose source turns out to be
    /// unavailable.
    pub fn new(
        sources: Vec<Box<dyn Source>>,
        routes: Vec<(Table, usize)>,
        fallback: Option<usize>,
        verbose: bool,
    ) -> Sources {
        let count = sources.len();
        Sources {
            fallbacks: vec![fallback; count],
            tags: vec![None; count],
            netns_index: vec![0; count],
            read_once: vec![false; routes.len()],
            said: vec![false; routes.len()],
            last_failure: None,
            sources,
            routes,
            bindv6only: false,
            announce: verbose,
            verbose,
            asked: Vec::new(),
            failed: Vec::new(),
            reads: Reads::new(),
        }
    }

    /// `net.ipv6.bindv6only` of the namespace read (false where unknown,
    /// Linux's default).
    pub fn bindv6only(&self) -> bool {
        self.bindv6only
    }

    /// Reads every table, each from the source that serves it, appending
    /// the sockets of the tables read completely to `out` and returning
    /// those tables. A table whose read fails transiently is left out (what
    /// was known of it stands); one whose source is unavailable moves to the
    /// fallback source and is read again at once.
    pub fn read(&mut self, out: &mut Vec<Socket>) -> anyhow::Result<Vec<Table>> {
        let mut read = Vec::with_capacity(self.routes.len());
        let mut pending: Vec<usize> = (0..self.sources.len()).collect();
        while let Some(source) = pending.pop() {
            self.asked.clear();
            // A source reads its own namespace and knows nothing of the
            // others: it is asked for tables, and answers, untagged.
            let netns = self.netns_index[source];
            self.asked.extend(
                self.routes
                    .iter()
                    .filter(|&&(_, s)| s == source)
                    .map(|&(t, _)| t.in_netns(0)),
            );
            if self.asked.is_empty() {
                continue;
            }
            let start = out.len();
            self.failed.clear();
            let began = Instant::now();
            self.sources[source].read(&self.asked, out, &mut self.failed);
            let took = began.elapsed();
            if let Some(tag) = &self.tags[source] {
                for socket in &mut out[start..] {
                    socket.endpoint.netns = Some(tag.clone());
                }
            }
            let failed: Vec<(Table, SourceError)> = self
                .failed
                .drain(..)
                .map(|(t, e)| (t.in_netns(netns), e))
                .collect();
            if !failed.is_empty() {
                // Sockets of a table that failed are never part of an answer.
                let tail = out.split_off(start);
                out.extend(
                    tail.into_iter()
                        .filter(|s| !failed.iter().any(|(t, _)| *t == s.endpoint.table())),
                );
            }
            let first_read = read.len();
            for i in 0..self.asked.len() {
                let table = self.asked[i].in_netns(netns);
                if !failed.iter().any(|(t, _)| *t == table) {
                    self.mark_read(table);
                    read.push(table);
                }
            }
            self.reads.record(
                self.sources[source].kind(),
                &read[first_read..],
                failed.iter().map(|(t, _)| *t),
                took,
            );
            for (table, error) in failed {
                match error {
                    SourceError::Unavailable { .. } => {
                        let fallback = self.fall_back(table, source, error)?;
                        if !pending.contains(&fallback) {
                            pending.push(fallback);
                        }
                    }
                    SourceError::Transient { .. } => {
                        self.say_unread(table, &error);
                        self.last_failure = Some(error.to_string());
                    }
                }
            }
        }
        self.reads.set_routes(
            self.routes
                .iter()
                .map(|&(table, source)| (table, self.sources[source].kind())),
        );
        read.sort();
        Ok(read)
    }

    /// The counts of reads so far, kept current as reads go on.
    pub fn reads(&self) -> Arc<Reads> {
        Arc::clone(&self.reads)
    }

    /// Which of `absent` (endpoints of `table` missing from its last read)
    /// still listen, asked of the source that serves the table. When that
    /// fails, every one of them is taken as still listening: a failed check
    /// is never read as sockets closing.
    pub fn confirm(&mut self, table: Table, absent: &[Endpoint]) -> Vec<Endpoint> {
        let Some(&(_, source)) = self.routes.iter().find(|(t, _)| *t == table) else {
            return absent.to_vec();
        };
        let mut present = Vec::new();
        let untagged: Vec<Endpoint> = absent
            .iter()
            .map(|e| Endpoint {
                netns: None,
                ..e.clone()
            })
            .collect();
        match self.sources[source].confirm(&untagged, &mut present) {
            Ok(()) => {
                if let Some(tag) = &self.tags[source] {
                    for endpoint in &mut present {
                        endpoint.netns = Some(tag.clone());
                    }
                }
                present
            }
            Err(e) => {
                if self.verbose {
                    eprintln!("sockwatch: {e}; keeping what was known of {table}");
                }
                self.last_failure = Some(e.to_string());
                absent.to_vec()
            }
        }
    }

    /// Says that `table` could not be read: every time with `-v`, else once
    /// per table where the user is told what sockwatch decides (`watch`).
    fn say_unread(&mut self, table: Table, error: &SourceError) {
        let Some(i) = self.routes.iter().position(|&(t, _)| t == table) else {
            return;
        };
        if !(self.verbose || (self.announce && !self.said[i])) {
            return;
        }
        self.said[i] = true;
        if self.read_once[i] {
            eprintln!("sockwatch: {error}; keeping what was known of {table}");
        } else {
            eprintln!("sockwatch: {error}; nothing is reported until {table} can be read");
        }
    }

    fn mark_read(&mut self, table: Table) {
        if let Some(i) = self.routes.iter().position(|&(t, _)| t == table) {
            self.read_once[i] = true;
        }
    }

    /// Moves `table` from `source` to the fallback source; an error when
    /// there is none to move to.
    fn fall_back(
        &mut self,
        table: Table,
        source: usize,
        error: SourceError,
    ) -> anyhow::Result<usize> {
        match self.fallbacks[source] {
            Some(fallback) if fallback != source => {
                if self.announce {
                    eprintln!(
                        "sockwatch: {} is unavailable for {table} ({error}); using {} instead",
                        self.sources[source].kind(),
                        self.sources[fallback].kind()
                    );
                }
                for route in self.routes.iter_mut().filter(|(t, _)| *t == table) {
                    route.1 = fallback;
                }
                Ok(fallback)
            }
            _ => Err(error).context("no source of socket information is usable"),
        }
    }

    /// Whether every table has been read at least once, so that what is
    /// known is the whole truth (later failures keep what was read).
    pub fn complete(&self) -> bool {
        self.read_once.iter().all(|&read| read)
    }

    /// Whether /proc serves any table.
    pub fn reads_proc(&self) -> bool {
        self.routes
            .iter()
            .any(|&(_, source)| self.sources[source].kind() == SourceKind::Proc)
    }

    /// Whether /proc, which cannot tell IPV6_V6ONLY, serves an IPv6 table.
    pub fn v6only_unknown(&self) -> bool {
        self.routes.iter().any(|&(table, source)| {
            table.family == crate::endpoint::Family::Inet6
                && self.sources[source].kind() == SourceKind::Proc
        })
    }

    /// Why the answer is not complete yet.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// The interval to poll at when the user did not choose one. A
    /// long-running watch that reads any table from /proc polls less often;
    /// a `wait` or `run` stays quick, since it ends once the answer is in.
    pub fn default_interval(&self, long_running: bool) -> Duration {
        if long_running && self.reads_proc() {
            PROC_INTERVAL
        } else {
            NETLINK_INTERVAL
        }
    }

    /// Which source serves which table: `tcp, tcp6 via netlink; udp via proc`.
    pub fn describe_routes(&self) -> String {
        let mut parts: Vec<(SourceKind, Vec<String>)> = Vec::new();
        for (table, source) in &self.routes {
            let kind = self.sources[*source].kind();
            match parts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, tables)) => tables.push(table.to_string()),
                None => parts.push((kind, vec![table.to_string()])),
            }
        }
        let parts: Vec<String> = parts
            .into_iter()
            .map(|(kind, tables)| format!("{} via {kind}", tables.join(", ")))
            .collect();
        parts.join("; ")
    }

    /// The descriptors that become readable when a source pushes news, with
    /// the index to pass to [`Sources::read_pushed`].
    pub fn pushed_fds(&self) -> Vec<(usize, RawFd)> {
        self.sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.pushed_fd().map(|fd| (i, fd)))
            .collect()
    }

    /// Reads what source `source` pushed, appending the cookies of freed
    /// sockets to `closed`.
    pub fn read_pushed(
        &mut self,
        source: usize,
        closed: &mut Vec<u64>,
    ) -> Result<Pushed, SourceError> {
        self.sources[source].read_pushed(closed)
    }

    /// Whether a source waits for another read to confirm an absence.
    pub fn unsettled(&self) -> bool {
        self.sources.iter().any(|s| s.unsettled())
    }

    /// Malformed messages or lines skipped so far, by every source.
    pub fn skipped(&self) -> u64 {
        self.sources.iter().map(|s| s.skipped()).sum()
    }
}

/// The network namespace behind a `--proc-root` other than `/proc`
/// (`/proc/<pid>/ns/net`), which netlink must enter to see the same sockets.
fn netns_of(proc_root: &Path) -> Option<PathBuf> {
    (proc_root != Path::new("/proc")).then(|| proc_root.join("ns/net"))
}
