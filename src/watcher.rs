//! The watcher: sources in, endpoint changes out.
//!
//! It keeps the current [`Snapshot`] of listening endpoints, polls each
//! kernel table through the source that serves it, diffs the answer against
//! what it knew, and turns the difference into [`Event`]s. Closing may also be
//! pushed by a source (netlink destroy events); those are matched by socket
//! cookie against the known listeners.
//!
//! Two rules keep it honest:
//! - a table whose dump failed keeps its old entries: a failed poll is never
//!   read as sockets closing;
//! - an endpoint is the unit of events: it appears with its first socket and
//!   closes with its last (SO_REUSEPORT workers share one endpoint).
//!
//! The event loop is mio: a poll timer, the sources' pushed descriptors and
//! SIGINT/SIGTERM through signal-hook-mio. No async runtime.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::condition::Facts;
use crate::endpoint::{Endpoint, Family, Socket, SourceKind, Table};
use crate::event::{Event, EventKind};
use crate::process::{self, Owner};
use crate::source::netlink::Netlink;
use crate::source::proc::Proc;
use crate::source::{Pushed, Source, SourceError};

/// The sockets listening on one endpoint: never empty, sorted by inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    sockets: Vec<Socket>,
}

impl Listener {
    /// A listener made of `sockets` (not empty), sorted by inode.
    pub fn from_sockets(mut sockets: Vec<Socket>) -> Listener {
        assert!(!sockets.is_empty(), "a listener has at least one socket");
        sockets.sort_by_key(|s| s.inode);
        Listener { sockets }
    }

    /// The sockets behind the endpoint.
    pub fn sockets(&self) -> &[Socket] {
        &self.sockets
    }

    /// Their inodes, ascending.
    pub fn inodes(&self) -> impl Iterator<Item = u64> + '_ {
        self.sockets.iter().map(|s| s.inode)
    }

    /// The owner's uid (the lowest, should workers differ).
    pub fn uid(&self) -> Option<u32> {
        self.sockets.iter().map(|s| s.uid).min()
    }

    /// `IPV6_V6ONLY` when the source knows it.
    pub fn v6only(&self) -> Option<bool> {
        self.sockets.iter().find_map(|s| s.v6only)
    }

    /// The source that reported it.
    pub fn source(&self) -> SourceKind {
        self.sockets[0].source
    }
}

/// The current set of listening endpoints.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    endpoints: BTreeMap<Endpoint, Listener>,
    /// `net.ipv6.bindv6only`: the v6only of IPv6 sockets whose source does
    /// not report it.
    bindv6only: bool,
    /// Who holds each endpoint's sockets, where asked and known.
    owners: HashMap<Endpoint, Owner>,
}

impl Snapshot {
    /// Endpoints in listing order (transport, family, port, address).
    pub fn iter(&self) -> impl Iterator<Item = (&Endpoint, &Listener)> {
        self.endpoints.iter()
    }

    /// How many endpoints listen.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// Whether nothing listens.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// What conditions are evaluated on: v6only resolved, falling back to the
    /// system default where the source cannot tell.
    pub fn facts<'a>(&'a self, endpoint: &'a Endpoint, listener: &Listener) -> Facts<'a> {
        let v6only = match endpoint.family() {
            Family::Inet => None,
            Family::Inet6 => Some(listener.v6only().unwrap_or(self.bindv6only)),
        };
        let owner = self.owners.get(endpoint);
        Facts {
            endpoint,
            v6only,
            pid: owner.map(|o| o.pid),
            comm: owner.map(|o| o.comm.as_str()),
        }
    }

    /// Facts for every endpoint.
    pub fn all_facts(&self) -> Vec<Facts<'_>> {
        self.endpoints
            .iter()
            .map(|(endpoint, listener)| self.facts(endpoint, listener))
            .collect()
    }
}

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

/// How to build a [`Watcher`].
#[derive(Debug, Clone)]
pub struct Options {
    /// Which source.
    pub source: SourceChoice,
    /// The tables to watch (a condition may need fewer than all four).
    pub tables: Vec<Table>,
    /// Subscribe to pushed close events (not needed for a one-shot `list`).
    pub pushed: bool,
    /// Find the process behind each new endpoint (`--processes`, or a
    /// condition that names `PID` or `COMM`).
    pub processes: bool,
    /// Where /proc is: `/proc`, or `/proc/<pid>` for that process's network
    /// namespace.
    pub proc_root: PathBuf,
    /// Say on stderr why a source is not used (`watch` always does).
    pub announce: bool,
    /// Say on stderr what the watcher decides and skips.
    pub verbose: bool,
}

/// Why [`Watcher::run`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    /// The caller's handler asked to stop.
    Done,
    /// SIGINT or SIGTERM arrived; the signal number.
    Signal(i32),
    /// The deadline passed.
    TimedOut,
}

/// The poll interval unless `--interval` says otherwise: `wait` must
/// notice a new listener within 100 ms, and a sock_diag poll of the four
/// tables costs about 0.1 ms (benches/RESULTS.md).
pub const NETLINK_INTERVAL: Duration = Duration::from_millis(50);
/// The interval of a long-running `watch` that reads /proc: there every
/// poll costs milliseconds, since the kernel walks its whole connection
/// hash to find the end of the file (benches/RESULTS.md).
pub const PROC_INTERVAL: Duration = Duration::from_millis(500);

const SIGNALS: Token = Token(0);
/// Pushed descriptors are registered as `Token(FIRST_SOURCE + source index)`.
const FIRST_SOURCE: usize = 1;

/// Sources, routes and the current snapshot.
pub struct Watcher {
    sources: Vec<Box<dyn Source>>,
    /// Each watched table and the index of the source serving it.
    routes: Vec<(Table, usize)>,
    /// The source that takes over tables whose source is unavailable.
    fallback: Option<usize>,
    /// Whether each route's table has been read once: until all have, the
    /// snapshot is partial and must not be taken for the truth (a `wait
    /// --gone` would see sockets "gone" that were never read).
    read_once: Vec<bool>,
    /// The last transient failure, to explain a partial snapshot.
    last_failure: Option<String>,
    snapshot: Snapshot,
    /// Socket cookie to endpoint, to match pushed close events.
    cookies: HashMap<u64, Endpoint>,
    /// Reused dump buffer.
    scratch: Vec<Socket>,
    /// Reused buffer of pushed cookies.
    closed: Vec<u64>,
    /// Where to look for processes, when owners are wanted.
    processes: Option<PathBuf>,
    /// Whether to say why a table moves to the fallback source.
    announce: bool,
    verbose: bool,
    /// Malformed messages already reported, to report only new ones.
    skipped_reported: u64,
}

impl Watcher {
    /// Opens the sources for `options.tables`. With `auto`, a netlink
    /// socket that cannot be opened means /proc for every table, and a table
    /// whose dumps turn out to be refused moves to /proc at its first poll.
    pub fn open(options: &Options) -> anyhow::Result<Watcher> {
        let proc = || Box::new(Proc::new(&options.proc_root)) as Box<dyn Source>;
        let netlink = match options.source {
            SourceChoice::Proc => None,
            SourceChoice::Auto | SourceChoice::Netlink => {
                match Netlink::open_in(netns_of(&options.proc_root).as_deref()) {
                    Ok(netlink) => Some(netlink),
                    Err(e) if options.source == SourceChoice::Netlink => {
                        return Err(e).context("no source of socket information is usable");
                    }
                    Err(e) => {
                        if options.announce || options.verbose {
                            eprintln!(
                                "sockwatch: sock_diag is unavailable ({e}); reading {}/net instead",
                                options.proc_root.display()
                            );
                        }
                        None
                    }
                }
            }
        };
        let (sources, fallback): (Vec<Box<dyn Source>>, _) = match netlink {
            Some(mut netlink) => {
                if options.pushed {
                    if let Err(e) = netlink.subscribe_destroy(&options.tables) {
                        // Closing is still seen, by polling; only later.
                        if options.verbose {
                            eprintln!("sockwatch: {e}; closing is seen by polling only");
                        }
                    }
                }
                match options.source {
                    SourceChoice::Auto => (vec![Box::new(netlink), proc()], Some(1)),
                    _ => (vec![Box::new(netlink)], None),
                }
            }
            None => (vec![proc()], None),
        };
        let routes = options.tables.iter().map(|&t| (t, 0)).collect();
        let mut watcher = Watcher::with_sources(
            sources,
            routes,
            fallback,
            Proc::bindv6only(&options.proc_root),
            options.verbose,
        );
        watcher.announce = options.announce || options.verbose;
        if options.processes {
            watcher.processes = Some(PathBuf::from("/proc"));
        }
        Ok(watcher)
    }

    /// A watcher over given sources: `routes` says which source serves each
    /// table, `fallback` which one takes over a table whose source turns out
    /// to be unavailable.
    pub fn with_sources(
        sources: Vec<Box<dyn Source>>,
        routes: Vec<(Table, usize)>,
        fallback: Option<usize>,
        bindv6only: bool,
        verbose: bool,
    ) -> Watcher {
        Watcher {
            read_once: vec![false; routes.len()],
            last_failure: None,
            sources,
            routes,
            fallback,
            snapshot: Snapshot {
                endpoints: BTreeMap::new(),
                bindv6only,
                owners: HashMap::new(),
            },
            cookies: HashMap::new(),
            scratch: Vec::new(),
            closed: Vec::new(),
            processes: None,
            announce: verbose,
            verbose,
            skipped_reported: 0,
        }
    }

    /// The interval to poll at when the user did not choose one. A
    /// long-running watch that reads any table from /proc polls less often;
    /// a `wait` or `run` stays quick, since it ends once the answer is in.
    pub fn default_interval(&self, long_running: bool) -> Duration {
        let reads_proc = self
            .routes
            .iter()
            .any(|&(_, source)| self.sources[source].kind() == SourceKind::Proc);
        if long_running && reads_proc {
            PROC_INTERVAL
        } else {
            NETLINK_INTERVAL
        }
    }

    /// Whether every watched table has been read at least once, so that the
    /// snapshot is the whole truth (later failures keep what was read).
    pub fn complete(&self) -> bool {
        self.read_once.iter().all(|&read| read)
    }

    /// Why the snapshot is not complete yet.
    pub fn last_failure(&self) -> Option<&str> {
        self.last_failure.as_deref()
    }

    /// The current endpoints.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Dumps every watched table and appends what changed to `events`.
    ///
    /// A table whose dump fails transiently keeps what was known of it. A
    /// table whose source is unavailable moves to the fallback source, if
    /// there is one, and is dumped again at once; what was known carries
    /// over, so endpoints that did not change cause no events.
    pub fn poll(&mut self, events: &mut Vec<Event>) -> anyhow::Result<()> {
        let first_new = events.len();
        let mut changed = false;
        let now = SystemTime::now();
        for source in &mut self.sources {
            source.begin_poll();
        }
        let mut i = 0;
        while i < self.routes.len() {
            let (table, source) = self.routes[i];
            self.scratch.clear();
            match self.sources[source].dump(table, &mut self.scratch) {
                Ok(()) => {
                    self.read_once[i] = true;
                    changed |= self.apply_table(table, now, events);
                }
                Err(e @ SourceError::Unavailable { .. }) => match self.fallback {
                    Some(fallback) if fallback != source => {
                        if self.announce {
                            eprintln!(
                                "sockwatch: {} is unavailable for {table} ({e}); using {} instead",
                                self.sources[source].kind(),
                                self.sources[fallback].kind()
                            );
                        }
                        self.routes[i].1 = fallback;
                        continue;
                    }
                    _ => return Err(e).context("no source of socket information is usable"),
                },
                Err(e @ SourceError::Transient { .. }) => {
                    if self.verbose {
                        eprintln!("sockwatch: {e}; keeping what was known of {table}");
                    }
                    self.last_failure = Some(e.to_string());
                }
            }
            i += 1;
        }
        if changed {
            self.index_cookies();
        }
        self.attach_owners(&mut events[first_new..]);
        self.report_skipped();
        Ok(())
    }

    /// With owners wanted: finds the processes behind new endpoints (one
    /// scan of /proc for all of them, only when some appeared), and hands
    /// closed endpoints the owner they had.
    fn attach_owners(&mut self, events: &mut [Event]) {
        let Some(proc_root) = &self.processes else {
            return;
        };
        let owners = &mut self.snapshot.owners;
        let wanted: HashSet<u64> = events
            .iter()
            .filter(|e| e.kind == EventKind::Socket)
            .flat_map(|e| e.listener.inodes())
            .collect();
        let found = if wanted.is_empty() {
            HashMap::new()
        } else {
            process::owners(proc_root, &process::pids(proc_root), &wanted)
        };
        for event in events {
            event.owner = match event.kind {
                EventKind::Socket => event.listener.inodes().find_map(|i| found.get(&i).cloned()),
                EventKind::SocketClosed => owners.remove(&event.endpoint),
            };
            if let (EventKind::Socket, Some(owner)) = (event.kind, &event.owner) {
                owners.insert(event.endpoint, owner.clone());
            }
        }
    }

    /// Replaces what is known of `table` by the sockets in `self.scratch`.
    /// Returns whether anything about the table changed.
    fn apply_table(&mut self, table: Table, now: SystemTime, events: &mut Vec<Event>) -> bool {
        let mut fresh: BTreeMap<Endpoint, Listener> = BTreeMap::new();
        for socket in self.scratch.drain(..) {
            fresh
                .entry(socket.endpoint)
                .or_insert_with(|| Listener {
                    sockets: Vec::new(),
                })
                .sockets
                .push(socket);
        }
        for listener in fresh.values_mut() {
            listener.sockets.sort_by_key(|s| s.inode);
        }
        let mut changed = false;
        let endpoints = &mut self.snapshot.endpoints;
        endpoints.retain(|endpoint, listener| {
            if endpoint.table() != table || fresh.contains_key(endpoint) {
                return true;
            }
            changed = true;
            events.push(Event {
                kind: EventKind::SocketClosed,
                endpoint: *endpoint,
                listener: listener.clone(),
                time: now,
                owner: None,
            });
            false
        });
        for (endpoint, listener) in fresh {
            match endpoints.get_mut(&endpoint) {
                Some(known) if *known == listener => {}
                Some(known) => {
                    *known = listener;
                    changed = true;
                }
                None => {
                    changed = true;
                    events.push(Event {
                        kind: EventKind::Socket,
                        endpoint,
                        listener: listener.clone(),
                        time: now,
                        owner: None,
                    });
                    endpoints.insert(endpoint, listener);
                }
            }
        }
        changed
    }

    fn index_cookies(&mut self) {
        self.cookies.clear();
        for (endpoint, listener) in &self.snapshot.endpoints {
            for cookie in listener.sockets.iter().filter_map(|s| s.cookie) {
                self.cookies.insert(cookie, *endpoint);
            }
        }
    }

    /// Reads what `source` pushed and appends the resulting closes to
    /// `events`; lost events force a full poll.
    pub fn read_pushed(&mut self, source: usize, events: &mut Vec<Event>) -> anyhow::Result<()> {
        let first_new = events.len();
        self.closed.clear();
        let pushed = self.sources[source].read_pushed(&mut self.closed);
        match pushed {
            Ok(Pushed::Complete) => {}
            Ok(Pushed::Lost) => {
                if self.verbose {
                    eprintln!("sockwatch: close events were lost; dumping again");
                }
                return self.poll(events);
            }
            Err(e) => {
                if self.verbose {
                    eprintln!("sockwatch: {e}; closing is seen at the next poll");
                }
                return Ok(());
            }
        }
        let now = SystemTime::now();
        for cookie in self.closed.drain(..) {
            let Some(endpoint) = self.cookies.remove(&cookie) else {
                continue; // a socket that never listened
            };
            let Some(listener) = self.snapshot.endpoints.get_mut(&endpoint) else {
                continue;
            };
            let last = listener.clone();
            listener.sockets.retain(|s| s.cookie != Some(cookie));
            if listener.sockets.is_empty() {
                self.snapshot.endpoints.remove(&endpoint);
                events.push(Event {
                    kind: EventKind::SocketClosed,
                    endpoint,
                    listener: last,
                    time: now,
                    owner: None,
                });
            }
        }
        self.attach_owners(&mut events[first_new..]);
        Ok(())
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

    fn report_skipped(&mut self) {
        let skipped: u64 = self.sources.iter().map(|s| s.skipped()).sum();
        if skipped > self.skipped_reported {
            if self.verbose {
                eprintln!("sockwatch: skipped {} malformed message(s) so far", skipped);
            }
            self.skipped_reported = skipped;
        }
    }

    /// Polls every `interval` and reads pushed events until `on_change` breaks,
    /// a signal arrives or `deadline` passes; or, given `output`, as soon as
    /// that descriptor's reader goes away (a pipe whose read end closed), as
    /// [`Stop::Done`], even when nothing changes and so nothing is written.
    ///
    /// `on_change` is called once every table has been read (even with no
    /// events, so that a condition that already holds is seen at once; the
    /// events of the polls until then come together), then after every poll
    /// or push that changed something.
    pub fn run(
        &mut self,
        interval: Duration,
        deadline: Option<Instant>,
        output: Option<BorrowedFd<'_>>,
        mut on_change: impl FnMut(&[Event], &Snapshot) -> anyhow::Result<ControlFlow<()>>,
    ) -> anyhow::Result<Stop> {
        /// The output descriptor's token: above every source's.
        const OUTPUT: Token = Token(usize::MAX);
        let mut poll = Poll::new().context("failed to create the event loop")?;
        let mut signals = Signals::new([SIGINT, SIGTERM]).context("failed to handle signals")?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        if let Some(output) = output {
            // A pipe's write end never signals PRIORITY, but epoll always
            // reports EPOLLERR (its reader closed) and EPOLLHUP: so only those
            // wake us. epoll refuses regular files and /dev/null: nothing to
            // watch there, as no reader can go away.
            let _ = poll.registry().register(
                &mut SourceFd(&output.as_raw_fd()),
                OUTPUT,
                Interest::PRIORITY,
            );
        }
        let pushed: Vec<(usize, RawFd)> = self
            .sources
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.pushed_fd().map(|fd| (i, fd)))
            .collect();
        for &(i, fd) in &pushed {
            poll.registry().register(
                &mut SourceFd(&fd),
                Token(FIRST_SOURCE + i),
                Interest::READABLE,
            )?;
        }

        let mut changes = Vec::new();
        self.poll(&mut changes)?;
        if self.verbose {
            eprintln!(
                "sockwatch: watching {}; {} endpoint(s) listening",
                self.describe_routes(),
                self.snapshot.len()
            );
        }
        let mut reported = self.complete();
        if reported && on_change(&changes, &self.snapshot)?.is_break() {
            return Ok(Stop::Done);
        }
        // None: beyond what the clock can hold, so never (checked, not `+`,
        // which panics there).
        let mut next_poll = Instant::now().checked_add(interval);
        let mut ready = Events::with_capacity(16);
        loop {
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Stop::TimedOut);
            }
            let wake = deadline.into_iter().chain(next_poll).min();
            match poll.poll(&mut ready, wake.map(|w| w.saturating_duration_since(now))) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context("event loop failed"),
            }
            if reported {
                changes.clear();
            }
            for event in ready.iter() {
                match event.token() {
                    SIGNALS => {
                        if let Some(signal) = signals.pending().next() {
                            return Ok(Stop::Signal(signal));
                        }
                    }
                    OUTPUT => {
                        if event.is_error() || event.is_write_closed() {
                            return Ok(Stop::Done);
                        }
                    }
                    Token(t) => self.read_pushed(t - FIRST_SOURCE, &mut changes)?,
                }
            }
            if next_poll.is_some_and(|t| Instant::now() >= t) {
                self.poll(&mut changes)?;
                next_poll = Instant::now().checked_add(interval);
            }
            if !reported {
                // Still waiting for a first complete snapshot.
                if !self.complete() {
                    continue;
                }
                reported = true;
                if on_change(&changes, &self.snapshot)?.is_break() {
                    return Ok(Stop::Done);
                }
            } else if !changes.is_empty() && on_change(&changes, &self.snapshot)?.is_break() {
                return Ok(Stop::Done);
            }
        }
    }
}

/// The network namespace behind a `--proc-root` other than `/proc`
/// (`/proc/<pid>/ns/net`), which netlink must enter to see the same sockets.
fn netns_of(proc_root: &Path) -> Option<PathBuf> {
    (proc_root != Path::new("/proc")).then(|| proc_root.join("ns/net"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Family, Transport};
    use std::collections::VecDeque;
    use std::io;

    /// A source that answers from a script, one answer per dump.
    struct Scripted {
        kind: SourceKind,
        answers: VecDeque<Result<Vec<Socket>, SourceError>>,
        pushed: VecDeque<(Vec<u64>, Pushed)>,
    }

    impl Source for Scripted {
        fn kind(&self) -> SourceKind {
            self.kind
        }
        fn dump(&mut self, _: Table, out: &mut Vec<Socket>) -> Result<(), SourceError> {
            out.extend(self.answers.pop_front().expect("an answer per dump")?);
            Ok(())
        }
        fn read_pushed(&mut self, closed: &mut Vec<u64>) -> Result<Pushed, SourceError> {
            let (cookies, pushed) = self.pushed.pop_front().expect("scripted push");
            closed.extend(cookies);
            Ok(pushed)
        }
        fn skipped(&self) -> u64 {
            0
        }
    }

    const TCP4: Table = Table::new(Transport::Tcp, Family::Inet);

    fn socket(port: u16, inode: u64, source: SourceKind) -> Socket {
        Socket {
            endpoint: Endpoint {
                transport: Transport::Tcp,
                addr: "127.0.0.1".parse().unwrap(),
                port,
            },
            inode,
            uid: 0,
            cookie: (source == SourceKind::Netlink).then_some(inode + 1000),
            v6only: None,
            source,
        }
    }

    fn scripted(
        kind: SourceKind,
        answers: Vec<Result<Vec<Socket>, SourceError>>,
        pushed: Vec<(Vec<u64>, Pushed)>,
    ) -> Box<dyn Source> {
        Box::new(Scripted {
            kind,
            answers: answers.into(),
            pushed: pushed.into(),
        })
    }

    fn error(unavailable: bool) -> SourceError {
        let (what, cause) = (
            "dump".to_string(),
            io::Error::from_raw_os_error(libc::EPERM),
        );
        if unavailable {
            SourceError::Unavailable { what, cause }
        } else {
            SourceError::Transient { what, cause }
        }
    }

    /// `socket PORT=80`-style summaries of events.
    fn summary(events: &[Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| format!("{} {}", e.kind.as_str(), e.endpoint.port))
            .collect()
    }

    fn poll(watcher: &mut Watcher) -> Vec<String> {
        let mut events = Vec::new();
        watcher.poll(&mut events).unwrap();
        summary(&events)
    }

    #[test]
    fn a_failed_poll_closes_nothing() {
        let netlink = SourceKind::Netlink;
        let source = scripted(
            netlink,
            vec![
                Ok(vec![socket(80, 1, netlink)]),
                Err(error(false)),
                Ok(vec![]),
            ],
            vec![],
        );
        let mut watcher = Watcher::with_sources(vec![source], vec![(TCP4, 0)], None, false, false);
        assert_eq!(poll(&mut watcher), ["socket 80"]);
        assert_eq!(
            poll(&mut watcher),
            Vec::<String>::new(),
            "transient failure"
        );
        assert_eq!(watcher.snapshot().len(), 1);
        assert_eq!(poll(&mut watcher), ["socket-closed 80"], "a real answer");
    }

    #[test]
    fn a_table_never_read_leaves_the_snapshot_incomplete() {
        let netlink = SourceKind::Netlink;
        let source = scripted(
            netlink,
            vec![Err(error(false)), Ok(vec![socket(80, 1, netlink)])],
            vec![],
        );
        let mut watcher = Watcher::with_sources(vec![source], vec![(TCP4, 0)], None, false, false);
        assert_eq!(poll(&mut watcher), Vec::<String>::new());
        assert!(
            !watcher.complete(),
            "nothing read yet: not 'nothing listens'"
        );
        assert!(watcher.last_failure().unwrap().contains("dump"));
        assert_eq!(poll(&mut watcher), ["socket 80"]);
        assert!(watcher.complete());
    }

    #[test]
    fn reuseport_endpoint_closes_with_its_last_socket() {
        let netlink = SourceKind::Netlink;
        let source = scripted(
            netlink,
            vec![Ok(vec![socket(80, 1, netlink), socket(80, 2, netlink)])],
            vec![
                (vec![1001], Pushed::Complete),
                (vec![5555, 1002], Pushed::Complete),
            ],
        );
        let mut watcher = Watcher::with_sources(vec![source], vec![(TCP4, 0)], None, false, false);
        assert_eq!(poll(&mut watcher), ["socket 80"]);
        let mut events = Vec::new();
        watcher.read_pushed(0, &mut events).unwrap();
        assert!(events.is_empty(), "one of two sockets closed");
        watcher.read_pushed(0, &mut events).unwrap();
        assert_eq!(summary(&events), ["socket-closed 80"]);
        let inodes: Vec<u64> = events[0].listener.inodes().collect();
        assert_eq!(inodes, [2], "the last socket known");
    }

    #[test]
    fn lost_pushes_force_a_dump() {
        let netlink = SourceKind::Netlink;
        let source = scripted(
            netlink,
            vec![Ok(vec![socket(80, 1, netlink)]), Ok(vec![])],
            vec![(vec![], Pushed::Lost)],
        );
        let mut watcher = Watcher::with_sources(vec![source], vec![(TCP4, 0)], None, false, false);
        assert_eq!(poll(&mut watcher), ["socket 80"]);
        let mut events = Vec::new();
        watcher.read_pushed(0, &mut events).unwrap();
        assert_eq!(summary(&events), ["socket-closed 80"]);
    }

    #[test]
    fn falling_back_mid_watch_repeats_and_loses_nothing() {
        let (netlink, proc) = (SourceKind::Netlink, SourceKind::Proc);
        let primary = scripted(
            netlink,
            vec![Ok(vec![socket(80, 1, netlink)]), Err(error(true))],
            vec![],
        );
        let fallback = scripted(
            proc,
            vec![
                Ok(vec![socket(80, 1, proc), socket(81, 3, proc)]),
                Ok(vec![socket(81, 3, proc)]),
            ],
            vec![],
        );
        let mut watcher = Watcher::with_sources(
            vec![primary, fallback],
            vec![(TCP4, 0)],
            Some(1),
            false,
            false,
        );
        assert_eq!(poll(&mut watcher), ["socket 80"]);
        assert_eq!(
            poll(&mut watcher),
            ["socket 81"],
            "port 80 carried over, only the new endpoint is news"
        );
        let (_, listener) = watcher.snapshot().iter().next().unwrap();
        assert_eq!(listener.source(), proc);
        assert_eq!(poll(&mut watcher), ["socket-closed 80"]);
    }

    #[test]
    fn unavailable_without_fallback_is_an_error() {
        let source = scripted(SourceKind::Netlink, vec![Err(error(true))], vec![]);
        let mut watcher = Watcher::with_sources(vec![source], vec![(TCP4, 0)], None, false, false);
        let mut events = Vec::new();
        let message = format!("{:#}", watcher.poll(&mut events).unwrap_err());
        assert!(
            message.contains("no source of socket information is usable"),
            "{message}"
        );
    }
}
