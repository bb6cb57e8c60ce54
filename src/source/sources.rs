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
use crate::detect::Sockstat;
use crate::endpoint::{Endpoint, Family, NetnsTag, Socket, SourceKind, Table};
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
    /// The namespaces to watch (none: the one of `proc_root`).
    pub netns: &'a [Target],
    /// Whether events name the namespace (`NETNS=`).
    pub tagged: bool,
    /// Open each namespace's socket counters too, for change detection.
    pub counters: bool,
}

/// Where one namespace's tables are read.
struct Place {
    /// The namespace file netlink enters (`None`: ours).
    enter: Option<PathBuf>,
    /// `/proc/<pid>` of a process in it, for the /proc source.
    proc_root: Option<PathBuf>,
    /// What its endpoints carry.
    tag: Option<NetnsTag>,
    /// Its id ([`Table::netns`]).
    id: u32,
}

/// What opening a namespace's sources gave besides them.
#[derive(Debug, Default)]
pub struct Opened {
    /// The namespace's socket counters, where asked for: opened inside it
    /// when it was entered (the open file keeps reading that namespace),
    /// else through `/proc/<pid>/net`; or why they could not be.
    pub counters: Option<std::io::Result<Sockstat>>,
    /// The namespace's cookie (`SO_NETNS_COOKIE` of our socket in it),
    /// where the kernel tells it: its identity, never reused, unlike its
    /// inode number.
    pub cookie: Option<u64>,
}

/// The poll interval unless `--interval` says otherwise: `wait` must
/// notice a new listener within 100 ms, and a sock_diag poll of the four
/// tables costs about 0.1 ms (benches/RESULTS.md).
pub const NETLINK_INTERVAL: Duration = Duration::from_millis(50);
/// The interval of a long-running `watch` that reads /proc: there every
/// poll costs milliseconds, since the kernel walks its whole connection
/// hash to find the end of the file (benches/RESULTS.md).
pub const PROC_INTERVAL: Duration = Duration::from_millis(500);

/// A source slot whose namespace went: it holds nothing, serves no table,
/// and is reused by the next namespace that comes.
struct Released;

impl Source for Released {
    fn kind(&self) -> SourceKind {
        SourceKind::Netlink
    }
    fn read(&mut self, _: &[Table], _: &mut Vec<Socket>, _: &mut Vec<(Table, SourceError)>) {}
    fn confirm(&mut self, _: &[Endpoint], _: &mut Vec<Endpoint>) -> Result<(), SourceError> {
        Ok(())
    }
    fn skipped(&self) -> u64 {
        0
    }
}

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
    /// For each source, the id of its namespace ([`Table::netns`]).
    netns_of: Vec<u32>,
    /// Slots of released sources, to reuse.
    free: Vec<usize>,
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
    /// What every namespace opened later opens (see [`Plan`]).
    choice: SourceChoice,
    tables: Vec<Table>,
    pushed: bool,
    counters: bool,
    /// Reused per-source list of tables to read.
    asked: Vec<Table>,
    /// Reused list of this read's failures.
    failed: Vec<(Table, SourceError)>,
    /// Counts of reads, for reports from other threads.
    reads: Arc<Reads>,
}

/// Runs `make` in the network namespace at `file`, on a thread of its own
/// that lives only for it, so that no other work ever runs in a namespace
/// it did not choose.
fn inside<T: Send>(file: &Path, make: impl FnOnce() -> T + Send) -> Result<T, SourceError> {
    std::thread::scope(
        |scope| match scope.spawn(|| Netlink::inside(file, make)).join() {
            Ok(made) => made,
            Err(panic) => std::panic::resume_unwind(panic),
        },
    )
}

impl Sources {
    /// Opens the sources for `plan.tables`, in each namespace of
    /// `plan.netns` (none: the one of `plan.proc_root`), with ids 1, 2, ...
    /// in order (0 without `plan.netns`, or when events do not name the
    /// namespace). With `auto`, a netlink socket that
    /// cannot be opened means /proc for every table of its namespace, and a
    /// table whose dumps turn out to be refused moves to /proc at its first
    /// read. A namespace that no source can read is an error naming it.
    /// Returns, per namespace id, what opening it gave besides its sources.
    pub fn open(plan: &Plan<'_>) -> anyhow::Result<(Sources, Vec<(u32, Opened)>)> {
        let mut sources = Sources::new(Vec::new(), Vec::new(), None, plan.verbose);
        sources.announce = plan.announce || plan.verbose;
        sources.choice = plan.choice;
        sources.tables = plan.tables.to_vec();
        sources.pushed = plan.pushed;
        sources.counters = plan.counters;
        let mut opened = Vec::new();
        if plan.netns.is_empty() {
            let place = Place {
                enter: netns_of(plan.proc_root),
                proc_root: Some(plan.proc_root.to_path_buf()),
                tag: None,
                id: 0,
            };
            opened.push((0, sources.add_place(&place, None)?));
        } else {
            // Untagged (one namespace, ours): its endpoints carry no
            // namespace, so its tables are those of id 0.
            let first = u32::from(plan.tagged);
            for (id, target) in (first..).zip(plan.netns) {
                opened.push((id, sources.add(id, target, plan.tagged)?));
            }
        }
        // One namespace's setting stands for all: /proc of the first that
        // has a process (Linux's default where none has).
        let first_root = match plan.netns {
            [] => Some(plan.proc_root),
            targets => targets.iter().find_map(|t| t.proc_root.as_deref()),
        };
        if let Some(proc_root) = first_root {
            let (bindv6only, unreadable) = Proc::bindv6only(proc_root);
            if let Some(e) = unreadable {
                eprintln!("sockwatch: {e}; taking net.ipv6.bindv6only as 0 (Linux's default)");
            }
            sources.bindv6only = bindv6only;
        }
        Ok((sources, opened))
    }

    /// Opens the sources of the namespace `target` under `id`, its tables
    /// routed to them, as [`Sources::open`] does. An error naming it when
    /// no source can read it (nothing is left open then).
    pub fn add(&mut self, id: u32, target: &Target, tagged: bool) -> anyhow::Result<Opened> {
        let own = crate::netns::own_inode();
        let place = Place {
            enter: (target.inode.is_none() || target.inode != own).then(|| target.file.clone()),
            proc_root: target.proc_root.clone(),
            tag: tagged.then(|| NetnsTag {
                id,
                info: Arc::new(target.info()),
            }),
            id,
        };
        self.add_place(&place, Some(target))
    }

    fn add_place(&mut self, place: &Place, target: Option<&Target>) -> anyhow::Result<Opened> {
        let named = |what: &str| match target {
            Some(target) => {
                format!("cannot read the network namespace {}{what}", target.label)
            }
            None => "no source of socket information is usable".to_owned(),
        };
        let unix = self.tables.iter().any(|t| t.family == Family::Unix);
        let mut opened = Opened::default();
        let netlink = match self.choice {
            SourceChoice::Proc => None,
            SourceChoice::Auto | SourceChoice::Netlink => {
                // Both sockets are made in the watched namespace: destroy
                // events come from the namespace of the socket that joined.
                // So are its counters, when it is entered: the file keeps
                // reading the namespace it was opened in.
                let destroy = self.pushed.then_some(self.tables.as_slice());
                let counters = self.counters && place.enter.is_some();
                let made = match place.enter.as_deref() {
                    Some(file) => inside(file, || {
                        let netlink = Netlink::open_in(None, destroy);
                        let sockstat =
                            counters.then(|| Sockstat::open(Path::new("/proc/thread-self"), unix));
                        (netlink, sockstat)
                    })
                    .and_then(|(netlink, sockstat)| Ok((netlink?, sockstat))),
                    None => Netlink::open_in(None, destroy).map(|n| (n, None)),
                };
                match made {
                    Ok(((netlink, unsubscribed), sockstat)) => {
                        if let (Some(e), true) = (unsubscribed, self.verbose) {
                            // Closing is still seen, by polling; only later.
                            eprintln!("sockwatch: {e}; closing is seen by polling only");
                        }
                        opened.counters = sockstat;
                        opened.cookie = netlink.netns_cookie();
                        Some(netlink)
                    }
                    Err(e) if self.choice == SourceChoice::Netlink => {
                        return Err(e).context(named(""));
                    }
                    Err(e) => match &place.proc_root {
                        Some(proc_root) => {
                            if self.announce {
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
        if self.counters && opened.counters.is_none() {
            opened.counters = place
                .proc_root
                .as_deref()
                .map(|root| Sockstat::open(root, unix));
        }
        // The cookie is known once a socket is made in the namespace.
        let tag = place.tag.as_ref().map(|tag| NetnsTag {
            id: tag.id,
            info: Arc::new(crate::endpoint::NetnsInfo {
                cookie: opened.cookie,
                ..(*tag.info).clone()
            }),
        });
        let mut made: Vec<(Box<dyn Source>, bool)> = Vec::new();
        match (netlink, &place.proc_root) {
            (Some(netlink), Some(proc_root)) if self.choice == SourceChoice::Auto => {
                made.push((Box::new(netlink), true));
                made.push((Box::new(Proc::new(proc_root)), false));
            }
            (Some(netlink), _) => made.push((Box::new(netlink), false)),
            (None, Some(proc_root)) => made.push((Box::new(Proc::new(proc_root)), false)),
            (None, None) => anyhow::bail!(
                "{}: no process in it is known whose /proc could be read (name it by \
                 /proc/PID/ns/net, or let sock_diag read it)",
                named(" from /proc")
            ),
        }
        let mut slots = Vec::new();
        for (source, _) in made.iter_mut() {
            let source = std::mem::replace(source, Box::new(Released));
            let slot = match self.free.pop() {
                Some(slot) => {
                    self.sources[slot] = source;
                    slot
                }
                None => {
                    self.sources.push(source);
                    self.fallbacks.push(None);
                    self.tags.push(None);
                    self.netns_of.push(0);
                    self.sources.len() - 1
                }
            };
            self.tags[slot] = tag.clone();
            self.netns_of[slot] = place.id;
            self.fallbacks[slot] = None;
            slots.push(slot);
        }
        if made.first().is_some_and(|(_, falls_back)| *falls_back) {
            self.fallbacks[slots[0]] = Some(slots[1]);
        }
        for &table in &self.tables {
            self.routes.push((table.in_netns(place.id), slots[0]));
            self.read_once.push(false);
            self.said.push(false);
        }
        Ok(opened)
    }

    /// Closes the sources of namespace `id` at once (our sockets in it keep
    /// it alive) and forgets its tables. Deregister their pushed
    /// descriptors first ([`Sources::pushed_fds_of`]).
    pub fn remove(&mut self, id: u32) {
        for i in (0..self.routes.len()).rev() {
            if self.routes[i].0.netns == id {
                self.routes.remove(i);
                self.read_once.remove(i);
                self.said.remove(i);
            }
        }
        for slot in 0..self.sources.len() {
            if self.netns_of[slot] == id && !self.free.contains(&slot) {
                self.sources[slot] = Box::new(Released);
                self.tags[slot] = None;
                self.fallbacks[slot] = None;
                self.netns_of[slot] = u32::MAX;
                self.free.push(slot);
            }
        }
    }

    /// Reads namespace `id`'s tables from /proc of another process from now
    /// on (the one used has exited; the namespace has not).
    pub fn move_proc_root(&mut self, id: u32, proc_root: &Path) {
        for slot in 0..self.sources.len() {
            if self.netns_of[slot] == id && self.sources[slot].kind() == SourceKind::Proc {
                self.sources[slot] = Box::new(Proc::new(proc_root));
            }
        }
    }

    /// The pushed descriptors of namespace `id`'s sources, with their
    /// indices (as [`Sources::pushed_fds`]).
    pub fn pushed_fds_of(&self, id: u32) -> Vec<(usize, RawFd)> {
        self.pushed_fds()
            .into_iter()
            .filter(|&(i, _)| self.netns_of[i] == id)
            .collect()
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
            netns_of: vec![0; count],
            free: Vec::new(),
            choice: SourceChoice::Auto,
            tables: Vec::new(),
            pushed: false,
            counters: false,
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
        self.read_netns(out, None)
    }

    /// [`Sources::read`], of the namespaces `only` (every one: `None`).
    pub fn read_netns(
        &mut self,
        out: &mut Vec<Socket>,
        only: Option<&[u32]>,
    ) -> anyhow::Result<Vec<Table>> {
        let mut read = Vec::with_capacity(self.routes.len());
        let mut pending: Vec<usize> = (0..self.sources.len())
            .filter(|&i| only.is_none_or(|ids| ids.contains(&self.netns_of[i])))
            .collect();
        while let Some(source) = pending.pop() {
            self.asked.clear();
            // A source reads its own namespace and knows nothing of the
            // others: it is asked for tables, and answers, untagged.
            let netns = self.netns_of[source];
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
                    // Another namespace, read through a process that may
                    // have exited since: whether the namespace went, or is
                    // to be read through another process, is for the next
                    // look at the namespaces to tell, not a reason to stop.
                    SourceError::Unavailable { .. }
                        if netns != 0 && self.fallbacks[source].is_none() =>
                    {
                        self.say_unread(table, &error);
                        self.last_failure = Some(error.to_string());
                    }
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
            // Each namespace has the same tables: named once.
            let name = table.to_string();
            match parts.iter_mut().find(|(k, _)| *k == kind) {
                Some((_, tables)) if tables.contains(&name) => {}
                Some((_, tables)) => tables.push(name),
                None => parts.push((kind, vec![name])),
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
        match self.sources.get_mut(source) {
            Some(source) => source.read_pushed(closed),
            // Released in the same turn of the loop that saw it ready.
            None => Ok(Pushed::Complete),
        }
    }

    /// The namespace of source `source`.
    pub fn netns_of(&self, source: usize) -> Option<u32> {
        self.netns_of.get(source).copied()
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
