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
//! SIGINT/SIGTERM through [`StopSignals`]. No async runtime.

use std::collections::HashSet;
use std::ops::ControlFlow;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};

use crate::condition::Truth;
use crate::detect::{Detect, NETLINK_SAFETY, PROC_SAFETY};
use crate::endpoint::{Endpoint, Family, Socket, Table};
use crate::event::{Event, EventKind};
use crate::process::{self, Ownership};
pub use crate::snapshot::{Listener, Snapshot};
use crate::source::Pushed;
pub use crate::source::sources::{NETLINK_INTERVAL, PROC_INTERVAL, SourceChoice};
use crate::source::sources::{Plan, Sources};
use crate::stop::StopSignals;

mod detection;
mod namespaces;

pub use detection::CHECK_SPACING;
use detection::{Detection, Due, Gates, Kernel, open_trigger};
pub use namespaces::SCAN_INTERVAL;
use namespaces::{Namespaces, Scope, Watched};

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
    /// How new listeners are noticed (`--detect`).
    pub detect: Detect,
    /// A condition depends on PID or COMM: keep them current (a daemon may
    /// rename itself, exec, or hand its socket to a child after binding).
    pub refresh_owners: bool,
    /// A condition's answer may depend on IPV6_V6ONLY: say once when /proc,
    /// which cannot tell it, serves an IPv6 table.
    pub v6only_matters: bool,
    /// The network namespaces named by `--netns` (none: the one of
    /// `proc_root`).
    pub netns: Vec<crate::netns::Target>,
    /// Every network namespace of the host (`--all-netns`), as they come
    /// and go.
    pub all_netns: bool,
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

/// How many more reads [`Watcher::settle`] may take.
const SETTLE_READS: usize = 12;
/// How many reads in a row must add nothing for [`Watcher::settle`] to stop,
/// when every table comes from netlink. Under heavy same-slot churn a dump
/// misses about 1 % of a slot's rows, independently enough from one dump to
/// the next that the union of four misses none of 3,000 (benches/churn).
const SETTLE_QUIET: usize = 3;
/// The same when /proc serves a table: its reads miss about twice as many
/// rows, in runs at page boundaries.
const SETTLE_QUIET_PROC: usize = 5;

const SIGNALS: Token = Token(0);
/// The kernel trigger's descriptor (below the output's, above every source's).
const TRIGGER: Token = Token(usize::MAX - 1);
/// Pushed descriptors are registered as `Token(FIRST_SOURCE + source index)`.
const FIRST_SOURCE: usize = 1;

/// Sources, the current snapshot, and the loop that keeps it current.
pub struct Watcher {
    sources: Sources,
    snapshot: Snapshot,
    /// Reused buffer of one read's sockets.
    scratch: Vec<Socket>,
    /// Reused buffer of pushed cookies.
    closed: Vec<u64>,
    /// Where to look for processes, when owners are wanted.
    processes: Option<PathBuf>,
    verbose: bool,
    /// Malformed messages already reported, to report only new ones.
    skipped_reported: u64,
    /// Whether the user has been told that some owners cannot be seen.
    hidden_reported: bool,
    /// Keep owners current (see [`Options::refresh_owners`]).
    refresh_owners: bool,
    /// When owners not found were last looked for again.
    last_rescan: Option<Instant>,
    /// An owner changed without an endpoint changing: conditions on PID or
    /// COMM must be evaluated again.
    owners_changed: bool,
    /// Say once that V6ONLY is assumed (see [`Options::v6only_matters`]).
    v6only_matters: bool,
    /// When to read the tables for new listeners.
    detection: Detection,
    /// Reads of the tables so far.
    reads: u64,
    /// Checks of the socket counters so far.
    checks: u64,
    /// Reads until the first answer (the first read and its settling).
    reads_at_first_answer: u64,
    /// Which namespaces are watched, and how they come and go.
    namespaces: Namespaces,
}

impl Watcher {
    /// Opens the sources for `options.tables` (see [`Sources::open`]).
    pub fn open(options: &Options) -> anyhow::Result<Watcher> {
        // auto takes kernel triggers where they work, and says under -v why
        // not otherwise. A one-shot read (`list`; `run`, which polls by
        // itself) has no loop for them to wake.
        let trigger = match options.detect {
            Detect::Kernel => Some(open_trigger(options).map_err(|why| {
                anyhow::anyhow!(
                    "--detect kernel: kernel triggers cannot be used here: {why}; use \
                     --detect changes (socket counters) or poll"
                )
            })?),
            Detect::Auto if options.pushed => open_trigger(options)
                .map_err(|why| {
                    if options.verbose {
                        eprintln!("sockwatch: not using kernel triggers: {why}");
                    }
                })
                .ok(),
            _ => None,
        };
        // Opened with triggers too: whether they are needed beside them is
        // known once the sources are (see below).
        let counters =
            trigger.is_some() || matches!(options.detect, Detect::Auto | Detect::Changes);
        let (scope, targets) = if options.all_netns {
            (Scope::All, vec![crate::netns::own_target()?])
        } else if options.netns.is_empty() {
            (Scope::Own, Vec::new())
        } else {
            (Scope::Named, options.netns.clone())
        };
        let tagged = scope == Scope::All || crate::netns::tagged(&targets);
        let (sources, opened) = Sources::open(&Plan {
            choice: options.source,
            tables: &options.tables,
            pushed: options.pushed,
            proc_root: &options.proc_root,
            announce: options.announce,
            verbose: options.verbose,
            netns: &targets,
            tagged,
            counters,
        })?;
        let mut watcher = Watcher::with_sources(sources, options.verbose);
        if options.processes {
            watcher.processes = Some(PathBuf::from("/proc"));
        }
        watcher.refresh_owners = options.refresh_owners;
        watcher.v6only_matters = options.v6only_matters;
        watcher.namespaces = Namespaces {
            scope,
            next_id: targets.len() as u32 + 1,
            tagged,
            ..Namespaces::default()
        };
        let safety = if watcher.sources.reads_proc() {
            PROC_SAFETY
        } else {
            NETLINK_SAFETY
        };
        // With triggers, the counters stand in for what no tracepoint
        // announces: a unix listener, a close read from /proc (which pushes
        // none); and, tracepoints being global, they say which of several
        // namespaces a trigger concerns, so that it reads those and not
        // every one. Where they are not needed, their files close below.
        let unix = options.tables.iter().any(|t| t.family == Family::Unix);
        let several = scope == Scope::All || targets.len() > 1;
        let counters = match trigger {
            Some(_) => unix || several || watcher.sources.reads_proc(),
            None => counters,
        };
        let gates = counters.then(|| Gates {
            list: Vec::new(),
            safety,
        });
        watcher.detection = match (trigger, gates) {
            (Some(trigger), gates) => Detection::Kernel(Box::new(Kernel {
                trigger,
                gates,
                tick: Duration::ZERO,
                rescanned: Instant::now(),
            })),
            (None, Some(gates)) => Detection::Changes(gates),
            (None, None) => Detection::Poll,
        };
        for (i, (id, opened)) in opened.into_iter().enumerate() {
            let cookie = opened.cookie;
            let target = targets.get(i);
            let what = match target {
                Some(target) => format!("the network namespace {}", target.label),
                None => format!("{}/net/sockstat", options.proc_root.display()),
            };
            watcher.count(id, opened, &what);
            if let Some(target) = target {
                watcher.namespaces.watched.push(Watched {
                    id,
                    target: target.clone(),
                    cookie,
                });
            }
        }
        if scope == Scope::Own
            && watcher
                .gates_ref()
                .is_some_and(|gates| gates.list.iter().all(|g| g.sockstat.is_none()))
        {
            // The one namespace's counters cannot be read: polling is
            // cheaper than reading every tick through a blind gate, and
            // triggers that need them beside them cannot stand alone.
            if let Detection::Kernel(_) = watcher.detection {
                let why = "unix tables are watched or /proc is read, and the socket counters \
                           that stand in for a trigger there cannot be read";
                if options.detect == Detect::Kernel {
                    anyhow::bail!(
                        "--detect kernel: kernel triggers cannot be used here: {why}; use \
                         --detect poll"
                    );
                }
                if options.verbose {
                    eprintln!("sockwatch: not using kernel triggers: {why}");
                }
            }
            watcher.detection = Detection::Poll;
        }
        if scope == Scope::All {
            watcher.rescan(None, &mut Vec::new())?;
        }
        watcher.stagger();
        Ok(watcher)
    }

    /// A watcher over given sources.
    pub fn with_sources(sources: Sources, verbose: bool) -> Watcher {
        Watcher {
            snapshot: Snapshot::new(sources.bindv6only()),
            sources,
            scratch: Vec::new(),
            closed: Vec::new(),
            processes: None,
            verbose,
            skipped_reported: 0,
            hidden_reported: false,
            refresh_owners: false,
            last_rescan: None,
            owners_changed: false,
            v6only_matters: false,
            detection: Detection::Poll,
            reads: 0,
            checks: 0,
            reads_at_first_answer: 0,
            namespaces: Namespaces::default(),
        }
    }

    /// Whether every watched table has been read at least once, so that the
    /// snapshot is the whole truth (later failures keep what was read).
    pub fn complete(&self) -> bool {
        self.sources.complete()
    }

    /// Why the snapshot is not complete yet.
    pub fn last_failure(&self) -> Option<&str> {
        self.sources.last_failure()
    }

    /// The current endpoints.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Reads every watched table and appends what changed to `events`.
    ///
    /// A table whose read fails transiently keeps what was known of it. A
    /// table whose source is unavailable moves to the fallback source, if
    /// there is one, and is read again at once; what was known carries
    /// over, so endpoints that did not change cause no events.
    pub fn poll(&mut self, events: &mut Vec<Event>) -> anyhow::Result<()> {
        self.poll_netns(events, None)
    }

    /// [`Watcher::poll`], of the namespaces `only` (every one: `None`): the
    /// one call that reads "now", whoever decides it is due.
    pub fn poll_netns(
        &mut self,
        events: &mut Vec<Event>,
        only: Option<&[u32]>,
    ) -> anyhow::Result<()> {
        let first_new = events.len();
        let now = SystemTime::now();
        let started = Instant::now();
        let cpu_before = crate::sys::thread_cpu_time();
        // What this read accounts for: the counters as they are before it.
        let mut counters_before = Vec::new();
        if let Some(gates) = self.gates() {
            for counted in gates
                .list
                .iter_mut()
                .filter(|c| only.is_none_or(|ids| ids.contains(&c.id)))
            {
                let counters = counted.sockstat.as_mut().and_then(|s| s.read().ok());
                counters_before.push((counted.id, counters));
            }
        }
        self.reads += 1;
        self.scratch.clear();
        let read = self.sources.read_netns(&mut self.scratch, only)?;

        for table in read {
            let sockets = self
                .scratch
                .iter()
                .filter(|s| s.endpoint.table() == table)
                .cloned();
            let sources = &mut self.sources;
            self.snapshot.apply_table(
                table,
                sockets,
                |absent| sources.confirm(table, absent),
                now,
                events,
            );
        }
        self.attach_owners(&mut events[first_new..]);
        if self.verbose {
            say_unchecked_paths(&events[first_new..]);
        }
        if self.refresh_owners {
            self.refresh_owners();
        }
        self.report_skipped();
        self.say_v6only_assumed();
        let unsettled = self.sources.unsettled();
        if let Some(gates) = self.gates() {
            // The cost in CPU time, not wall time: on a loaded machine a
            // read takes longer without costing more. Shared by the
            // namespaces read.
            let cost =
                (crate::sys::thread_cpu_time() - cpu_before) / counters_before.len().max(1) as u32;
            for (id, before) in counters_before {
                let Some(counted) = gates.list.iter_mut().find(|c| c.id == id) else {
                    continue;
                };
                counted.gate.note_read(started, cost, before);
                if unsettled {
                    // An absence waits for the next read to confirm it.
                    counted.gate.force();
                }
            }
        }
        Ok(())
    }

    /// Reads again until [`SETTLE_QUIET`] reads in a row (with /proc:
    /// [`SETTLE_QUIET_PROC`]) find no endpoint
    /// that the earlier ones missed (at most [`SETTLE_READS`] more reads). A
    /// read can skip rows when sockets in the same hash slot come and go,
    /// and the rows at risk move with the churn, so a one-shot answer
    /// (`list`, the first answer of `watch` and `wait`) rests on the union of
    /// reads that have stopped adding anything. Stops at `deadline` too: a
    /// `wait --timeout` keeps its word.
    pub fn settle(
        &mut self,
        events: &mut Vec<Event>,
        deadline: Option<Instant>,
    ) -> anyhow::Result<()> {
        let needed = if self.sources.reads_proc() {
            SETTLE_QUIET_PROC
        } else {
            SETTLE_QUIET
        };
        let mut quiet = 0;
        for _ in 0..SETTLE_READS {
            if deadline.is_some_and(|d| Instant::now() >= d) {
                break;
            }
            let before = events.len();
            self.poll(events)?;
            if events[before..].iter().any(|e| e.kind == EventKind::Socket) {
                quiet = 0;
            } else {
                quiet += 1;
                if quiet == needed {
                    break;
                }
            }
        }
        Ok(())
    }

    /// The endpoints listening now, as `socket` events in listing order:
    /// every table read (a table that cannot be read after a few tries is an
    /// error, not "nothing listens"), and settled.
    pub fn list(&mut self) -> anyhow::Result<Vec<Event>> {
        let mut events = Vec::new();
        for attempt in 0..3 {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(20));
                // A namespace that could not be read may have gone since it
                // was found: then it is no longer asked for.
                if self.rescan(None, &mut events)?.none_left {
                    anyhow::bail!("every network namespace watched is gone");
                }
            }
            self.poll(&mut events)?;
            if self.complete() {
                break;
            }
        }
        if !self.complete() {
            anyhow::bail!(
                "could not read every socket table: {}",
                self.last_failure().unwrap_or("unknown error")
            );
        }
        self.settle(&mut events, None)?;
        let now = SystemTime::now();
        Ok(self
            .snapshot
            .iter()
            .map(|(endpoint, listener)| {
                Event::new(EventKind::Socket, endpoint.clone(), listener.clone(), now)
            })
            .collect())
    }

    /// With owners wanted: finds the processes behind new endpoints (one
    /// scan of /proc for all of them, only when some appeared) and records
    /// them in the snapshot and in their events. Says once when some cannot
    /// be seen.
    fn attach_owners(&mut self, events: &mut [Event]) {
        let Some(proc_root) = &self.processes else {
            return;
        };
        let wanted: HashSet<u64> = events
            .iter()
            .filter(|e| e.kind == EventKind::Socket)
            .flat_map(|e| e.listener.inodes())
            .collect();
        if wanted.is_empty() {
            return;
        }
        let scan = process::owners(proc_root, &process::pids(proc_root), &wanted);
        let mut hidden = 0;
        for event in events.iter_mut().filter(|e| e.kind == EventKind::Socket) {
            let ownership = scan.ownership(event.listener.inodes());
            hidden += usize::from(ownership == Ownership::Hidden);
            self.snapshot
                .set_ownership(&event.endpoint, ownership.clone());
            event.listener.set_ownership(ownership);
        }
        if hidden > 0 && !self.hidden_reported {
            self.hidden_reported = true;
            eprintln!("{}", hidden_owners_message(hidden, scan.unreadable));
        }
    }

    /// Keeps the owners a condition depends on current: re-reads the name
    /// of each known owner (a daemon that renamed itself or exec'd after
    /// binding), and looks again, at most once a second, for the holders of
    /// endpoints whose owner exited (a daemon that handed its socket to a
    /// child) or was never found.
    fn refresh_owners(&mut self) {
        let Some(proc_root) = self.processes.clone() else {
            return;
        };
        let mut lost = Vec::new();
        let mut renamed = Vec::new();
        for (endpoint, listener) in self.snapshot.iter() {
            match listener.ownership() {
                Some(Ownership::Found(owner)) => match process::comm(&proc_root, owner.pid) {
                    Some(comm) if comm == owner.comm => {}
                    Some(comm) => renamed.push((endpoint.clone(), owner.pid, comm)),
                    None => lost.push(endpoint.clone()),
                },
                Some(Ownership::Nobody) => lost.push(endpoint.clone()),
                // Hidden stays hidden for this user; None is looked up
                // when the endpoint appears.
                Some(Ownership::Hidden) | None => {}
            }
        }
        self.owners_changed |= !renamed.is_empty();
        for (endpoint, pid, comm) in renamed {
            self.snapshot
                .set_ownership(&endpoint, Ownership::Found(process::Owner { pid, comm }));
        }
        let due = self
            .last_rescan
            .is_none_or(|at| at.elapsed() >= Duration::from_secs(1));
        if lost.is_empty() || !due {
            return;
        }
        self.last_rescan = Some(Instant::now());
        let wanted: HashSet<u64> = lost
            .iter()
            .filter_map(|e| self.snapshot.get(e))
            .flat_map(|l| l.inodes())
            .collect();
        let scan = process::owners(&proc_root, &process::pids(&proc_root), &wanted);
        for endpoint in lost {
            let Some(listener) = self.snapshot.get(&endpoint) else {
                continue;
            };
            let ownership = scan.ownership(listener.inodes());
            if listener.ownership() != Some(&ownership) {
                self.owners_changed = true;
                self.snapshot.set_ownership(&endpoint, ownership);
            }
        }
    }

    /// Says once, when a condition's answer may depend on IPV6_V6ONLY and
    /// /proc (which cannot tell it) serves an IPv6 table, what is assumed.
    fn say_v6only_assumed(&mut self) {
        if !self.v6only_matters || !self.sources.v6only_unknown() {
            return;
        }
        self.v6only_matters = false;
        let setting = u8::from(self.sources.bindv6only());
        eprintln!(
            "sockwatch: /proc does not tell IPV6_V6ONLY: IPv6 listeners are taken to follow \
             net.ipv6.bindv6only ({setting}){}",
            if setting == 0 {
                ", so a `::` listener counts as reachable over IPv4"
            } else {
                ", so a `::` listener counts as IPv6 only"
            }
        );
    }

    /// Reads what `source` pushed and appends the resulting closes to
    /// `events`; lost events force a full poll.
    pub fn read_pushed(&mut self, source: usize, events: &mut Vec<Event>) -> anyhow::Result<()> {
        self.closed.clear();
        let pushed = self.sources.read_pushed(source, &mut self.closed);
        match pushed {
            Ok(Pushed::Complete) => {}
            Ok(Pushed::Lost) => {
                if self.verbose {
                    eprintln!("sockwatch: close events were lost; dumping again");
                }
                return match self.sources.netns_of(source) {
                    Some(id) => self.poll_netns(events, Some(&[id])),
                    None => self.poll(events),
                };
            }
            Err(e) => {
                if self.verbose {
                    eprintln!("sockwatch: {e}; closing is seen at the next poll");
                }
                return Ok(());
            }
        }
        // Closes only: no new endpoint to look up owners for.
        let sources = &mut self.sources;
        let reread = self.snapshot.close_cookies(
            self.closed.drain(..),
            |emptied| confirm_each_table(sources, emptied),
            SystemTime::now(),
            events,
        );
        if reread {
            // A worker the last read skipped outlived the sockets we knew.
            return self.poll(events);
        }
        if !events.is_empty() {
            // A listener closed: another may have opened in its place in the
            // same instant, which the counters would not show.
            let id = self.sources.netns_of(source);
            if let Some(gates) = self.gates() {
                for counted in gates.list.iter_mut().filter(|c| Some(c.id) == id) {
                    counted.gate.force();
                }
            }
        }
        Ok(())
    }

    /// Which source serves which table: `tcp, tcp6 via netlink; udp via proc`.
    pub fn describe_routes(&self) -> String {
        self.sources.describe_routes()
    }

    /// The counts of table reads, kept current as the watcher reads on,
    /// for another thread to report (see [`Sources::reads`]).
    pub fn reads(&self) -> std::sync::Arc<crate::source::reads::Reads> {
        self.sources.reads()
    }

    fn report_skipped(&mut self) {
        let skipped = self.sources.skipped();
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
        on_change: impl FnMut(&[Event], &Snapshot) -> anyhow::Result<ControlFlow<()>>,
    ) -> anyhow::Result<Stop> {
        let stop = StopSignals::catch().context("failed to handle signals")?;
        self.run_until_stopped(&stop, interval, deadline, output, on_change)
    }

    /// [`Watcher::run`], with SIGINT and SIGTERM caught by the caller (who
    /// may have other waits that must yield to them, and catches them before
    /// anything else so that none is missed).
    pub fn run_until_stopped(
        &mut self,
        stop: &StopSignals,
        interval: Duration,
        deadline: Option<Instant>,
        output: Option<BorrowedFd<'_>>,
        on_change: impl FnMut(&[Event], &Snapshot) -> anyhow::Result<ControlFlow<()>>,
    ) -> anyhow::Result<Stop> {
        let result = self.run_loop(stop, interval, deadline, output, on_change);
        if self.verbose {
            let woken = match &self.detection {
                Detection::Kernel(kernel) => {
                    let stats = kernel.trigger.stats();
                    format!(
                        "; woken by the kernel {} time(s) ({} record(s), {} read(s) asked, {} \
                         pause(s), {} record(s) lost, {} listener(s) not found)",
                        stats.wakeups,
                        stats.records,
                        stats.reads,
                        stats.pauses,
                        stats.lost,
                        stats.gave_up
                    )
                }
                _ => String::new(),
            };
            eprintln!(
                "sockwatch: read the tables {} time(s), {} since the first answer; checked \
                 the socket counters {} time(s){woken}",
                self.reads,
                self.reads - self.reads_at_first_answer,
                self.checks
            );
        }
        result
    }

    fn run_loop(
        &mut self,
        stop: &StopSignals,
        interval: Duration,
        deadline: Option<Instant>,
        output: Option<BorrowedFd<'_>>,
        mut on_change: impl FnMut(&[Event], &Snapshot) -> anyhow::Result<ControlFlow<()>>,
    ) -> anyhow::Result<Stop> {
        /// The output descriptor's token: above every source's.
        const OUTPUT: Token = Token(usize::MAX);
        let mut poll = Poll::new().context("failed to create the event loop")?;
        poll.registry().register(
            &mut SourceFd(&stop.fd().as_raw_fd()),
            SIGNALS,
            Interest::READABLE,
        )?;
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
        if let Some(fd) = self.trigger_fd() {
            poll.registry()
                .register(&mut SourceFd(&fd), TRIGGER, Interest::READABLE)
                .context("failed to wait for kernel triggers")?;
        }
        if let Detection::Kernel(kernel) = &mut self.detection {
            kernel.tick = interval;
        }
        let pushed: Vec<(usize, RawFd)> = self.sources.pushed_fds();
        for &(i, fd) in &pushed {
            poll.registry().register(
                &mut SourceFd(&fd),
                Token(FIRST_SOURCE + i),
                Interest::READABLE,
            )?;
        }

        let mut changes = Vec::new();
        self.poll(&mut changes)?;
        let mut reported = self.complete();
        self.namespaces.next_scan = (self.namespaces.scope != Scope::Own)
            .then(|| Instant::now().checked_add(SCAN_INTERVAL))
            .flatten();
        if reported {
            self.settle(&mut changes, deadline)?;
            if deadline.is_some_and(|d| Instant::now() >= d) {
                // Not settled: no answer rests on it.
                return Ok(Stop::TimedOut);
            }
        }
        if self.verbose {
            if self.namespaces.scope != Scope::Own {
                eprintln!(
                    "sockwatch: network namespaces: {}",
                    self.describe_namespaces()
                );
            }
            eprintln!(
                "sockwatch: watching {}, {}; {} endpoint(s) listening",
                self.describe_routes(),
                self.describe_detection(),
                self.snapshot.len()
            );
        }
        self.reads_at_first_answer = self.reads;
        if reported && on_change(&changes, &self.snapshot)?.is_break() {
            return Ok(Stop::Done);
        }
        // None: beyond what the clock can hold, so never (checked, not `+`,
        // which panics there).
        let mut next_poll = Instant::now().checked_add(self.tick(interval));
        let mut ready = Events::with_capacity(16);
        loop {
            // Also seen here, not only as the descriptor's readiness: a wait
            // outside this loop (for room in a full stdout) may have taken
            // the edge.
            if let Some(signal) = stop.received() {
                return Ok(Stop::Signal(signal));
            }
            let now = Instant::now();
            if deadline.is_some_and(|d| now >= d) {
                return Ok(Stop::TimedOut);
            }
            let wake = deadline
                .into_iter()
                .chain(next_poll)
                .chain(self.namespaces.next_scan)
                .chain(self.trigger_deadline())
                .min();
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
                        if let Some(signal) = stop.received() {
                            return Ok(Stop::Signal(signal));
                        }
                    }
                    OUTPUT => {
                        if event.is_error() || event.is_write_closed() {
                            return Ok(Stop::Done);
                        }
                    }
                    TRIGGER => self.kernel_read(true, &mut changes)?,
                    Token(t) => self.read_pushed(t - FIRST_SOURCE, &mut changes)?,
                }
            }
            if self.trigger_deadline().is_some_and(|t| Instant::now() >= t) {
                self.kernel_read(false, &mut changes)?;
            }
            let mut none_left = false;
            if self
                .namespaces
                .next_scan
                .is_some_and(|t| Instant::now() >= t)
            {
                let rescanned = self.rescan(Some(poll.registry()), &mut changes)?;
                if !rescanned.new.is_empty() {
                    self.poll_netns(&mut changes, Some(&rescanned.new))?;
                }
                none_left = rescanned.none_left;
                self.namespaces.next_scan = Instant::now().checked_add(SCAN_INTERVAL);
            }
            if next_poll.is_some_and(|t| Instant::now() >= t) {
                match self.read_due() {
                    Due::All => self.poll(&mut changes)?,
                    Due::Netns(ids) => self.poll_netns(&mut changes, Some(&ids))?,
                    Due::Nothing if self.refresh_owners => {
                        // A rename or an exec moves no socket counter: a
                        // condition on PID or COMM is kept current every
                        // tick.
                        self.refresh_owners();
                    }
                    Due::Nothing => {}
                }
                next_poll = Instant::now().checked_add(self.tick(interval));
            }
            if !reported {
                // Still waiting for a first complete snapshot.
                if !self.complete() {
                    continue;
                }
                reported = true;
                self.settle(&mut changes, deadline)?;
                self.reads_at_first_answer = self.reads;
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(Stop::TimedOut);
                }
                if on_change(&changes, &self.snapshot)?.is_break() {
                    return Ok(Stop::Done);
                }
            } else if (!changes.is_empty() || std::mem::take(&mut self.owners_changed))
                && on_change(&changes, &self.snapshot)?.is_break()
            {
                return Ok(Stop::Done);
            }
            if none_left {
                // Its closes were said above: nothing more can happen.
                anyhow::bail!("every network namespace watched is gone");
            }
        }
    }
}

/// Says, under `-v`, how many new unix listeners could not be verified
/// (/proc), and which ones' paths cannot be checked (a relative name, a
/// directory we may not search): a condition is neither true nor false on
/// them.
fn say_unchecked_paths(events: &[Event]) {
    let unverified = events
        .iter()
        .filter(|e| e.kind == EventKind::Socket && !e.listener.trusted())
        .count();
    if unverified > 0 {
        eprintln!(
            "sockwatch: {unverified} unix listener(s) read from /proc/net/unix could not be \
             verified (no process sockwatch can see holds the socket, or its row is repeated: \
             names are printed raw there, so rows can be forged); they satisfy no condition"
        );
    }
    for event in events.iter().filter(|e| e.kind == EventKind::Socket) {
        let Some(name) = event.endpoint.unix_name() else {
            continue;
        };
        if crate::unix_path::leads_to(&event.endpoint, &event.listener) == Truth::Unknown {
            eprintln!(
                "sockwatch: cannot check that {} still leads to its listener (a relative \
                 name, or a directory sockwatch may not search); SOCKET_PATH conditions on it \
                 are unknown",
                crate::quote::quote(name.text())
            );
        }
    }
}

/// Which of `endpoints` still listen, each asked of its table's source.
fn confirm_each_table(sources: &mut Sources, endpoints: &[Endpoint]) -> Vec<Endpoint> {
    let mut tables: Vec<Table> = endpoints.iter().map(Endpoint::table).collect();
    tables.sort();
    tables.dedup();
    let mut present = Vec::new();
    for table in tables {
        let of_table: Vec<Endpoint> = endpoints
            .iter()
            .filter(|e| e.table() == table)
            .cloned()
            .collect();
        present.extend(sources.confirm(table, &of_table));
    }
    present
}

/// What sockwatch cannot see of the processes behind endpoints, why, and
/// how to see it.
fn hidden_owners_message(endpoints: usize, unreadable: usize) -> String {
    let uid = crate::sys::effective_uid();
    format!(
        "sockwatch: cannot see which process holds {endpoints} endpoint(s): {unreadable} \
         process(es) of other users are not readable as uid {uid}; their PID and COMM are \
         unknown, and conditions on them neither hold nor fail (run as root or as their \
         owner to see them)"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Family, SourceKind, Transport};
    use crate::source::{Source, SourceError};
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
        fn read(
            &mut self,
            tables: &[Table],
            out: &mut Vec<Socket>,
            failed: &mut Vec<(Table, SourceError)>,
        ) {
            for &table in tables {
                match self.answers.pop_front().expect("an answer per table read") {
                    Ok(sockets) => out.extend(sockets),
                    Err(e) => failed.push((table, e)),
                }
            }
        }
        fn confirm(&mut self, _: &[Endpoint], _: &mut Vec<Endpoint>) -> Result<(), SourceError> {
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
            endpoint: Endpoint::inet(Transport::Tcp, "127.0.0.1".parse().unwrap(), port),
            inode,
            uid: Some(0),
            cookie: (source == SourceKind::Netlink).then_some(inode + 1000),
            v6only: None,
            source,
            vfs: None,
            trusted: true,
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

    /// A watcher of the TCP4 table, served by the first source.
    fn watcher(sources: Vec<Box<dyn Source>>, fallback: Option<usize>) -> Watcher {
        Watcher::with_sources(
            Sources::new(sources, vec![(TCP4, 0)], fallback, false),
            false,
        )
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
            .map(|e| format!("{} {}", e.kind.as_str(), e.endpoint.port().unwrap()))
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
        let mut watcher = watcher(vec![source], None);
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
        let mut watcher = watcher(vec![source], None);
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
    fn lost_pushes_force_a_dump() {
        let netlink = SourceKind::Netlink;
        let source = scripted(
            netlink,
            vec![Ok(vec![socket(80, 1, netlink)]), Ok(vec![])],
            vec![(vec![], Pushed::Lost)],
        );
        let mut watcher = watcher(vec![source], None);
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
        let mut watcher = watcher(vec![primary, fallback], Some(1));
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
        let mut watcher = watcher(vec![source], None);
        let mut events = Vec::new();
        let message = format!("{:#}", watcher.poll(&mut events).unwrap_err());
        assert!(
            message.contains("no source of socket information is usable"),
            "{message}"
        );
    }
}
