//! `sockwatch run`: start a service, and tell its manager it is ready when
//! the service's own sockets listen.
//!
//! sockwatch becomes a child subreaper, so a daemon that double-forks stays
//! in its tree: the **service tree** is every descendant. The service is
//! **ready** when the condition holds over the endpoints that the tree owns
//! (an endpoint is owned when one of the tree's processes holds one of its
//! sockets), or, without a condition, as soon as the tree listens at all — no
//! port list to keep in step with the service's configuration. A foreign
//! process already listening on the port does not count.
//!
//! Finding the owners costs a scan of the tree's fd tables, so it is done
//! only when the condition already holds over *all* endpoints: until some
//! endpoint could make the service ready, one dump per tick is all it costs.
//!
//! The **main process** is the direct child while it lives; after it exited
//! (a daemon that forked), the remaining process whose parent is sockwatch,
//! preferring, among several, the oldest that owns a ready socket. Signals
//! are forwarded to it, and its status is sockwatch's once the whole tree is
//! gone: its exit code as it is, or, when it died of a signal, death by the
//! same signal (an [`Outcome`] the caller acts on last, after everything is
//! flushed), so that a supervisor reads the end as the service's own.
//!
//! The service goes through explicit phases: starting (looking for
//! readiness until `--timeout`), ready, or stopping (given up on, SIGKILL
//! due after the grace period). System calls are in [`crate::sys`].

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::net::IpAddr;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

use crate::condition::{Condition, Facts};
use crate::descendants::Descendants;
use crate::endpoint::Listener;
use crate::endpoint::{Addr, Endpoint};
use crate::exit;
use crate::notify::Notify;
use crate::process::{self, Ownership};
use crate::sys::{self, Reaped};
use crate::watcher::Watcher;

/// What `run` was asked to do.
#[derive(Debug)]
pub struct RunOptions {
    /// Ready when this holds over the tree's endpoints; `None`: when the
    /// tree listens on anything.
    pub ready_on: Option<Condition>,
    /// How readiness is announced.
    pub notify: Notify,
    /// Give up (and stop the tree) if not ready by then.
    pub timeout: Option<Duration>,
    /// How often to look for new listeners.
    pub interval: Duration,
    /// How long the tree has after SIGTERM before SIGKILL.
    pub grace: Duration,
    /// Leave `$NOTIFY_SOCKET` in the service's environment.
    pub pass_notify: bool,
    /// The program and its arguments.
    pub command: Vec<OsString>,
    /// Say what happens on stderr.
    pub verbose: bool,
}

/// How `run` ends: what sockwatch itself must do last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit with this code.
    Exit(u8),
    /// Die of this signal, as the service's main process did (see
    /// [`sys::die_by_signal`]).
    Signal(i32),
}

impl Outcome {
    /// The service's own end, passed on.
    fn of(status: Option<ExitStatus>) -> Outcome {
        match status.map(|s| (s.code(), s.signal())) {
            Some((Some(code), _)) => Outcome::Exit(code as u8),
            Some((None, Some(signal))) => Outcome::Signal(signal),
            _ => Outcome::Exit(exit::RUNTIME),
        }
    }
}

/// A status as people say it: "exited with status 5", "was killed by
/// SIGKILL".
fn describe_status(status: Option<ExitStatus>) -> String {
    match status.map(|s| (s.code(), s.signal())) {
        Some((Some(code), _)) => format!("exited with status {code}"),
        Some((None, Some(signal))) => format!("was killed by {}", sys::signal_name(signal)),
        _ => "ended with an unknown status".to_owned(),
    }
}

/// Signals forwarded to the main process.
const FORWARDED: [i32; 6] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];
const SIGNALS: Token = Token(0);

/// The supervised tree and what is known of it.
struct Tree {
    proc_root: &'static Path,
    me: u32,
    /// Every descendant of sockwatch, found from the top down.
    descendants: Descendants,
    /// The main process, while one lives.
    main: Option<u32>,
    /// How the last main process that ended did.
    status: Option<ExitStatus>,
    /// A stop request (SIGTERM, SIGINT, SIGQUIT) already forwarded: it is
    /// forwarded again to every newly elected main process, so that asking
    /// a service to stop while its launcher is still on its way out reaches
    /// the daemon too.
    stopping: Option<i32>,
    /// The tree's sockets on the endpoints that made it ready: the
    /// process holding one is preferred as the next main process.
    ready_inodes: HashSet<u64>,
}

impl Tree {
    /// Every descendant of sockwatch, found from its own children (see
    /// [`Descendants`]): what this costs does not grow with the processes
    /// outside the tree.
    fn members(&mut self) -> Vec<u32> {
        self.descendants
            .members()
            .into_iter()
            .map(|(pid, _)| pid)
            .collect()
    }

    /// The socket inodes the tree holds.
    fn owned_inodes(&mut self) -> HashSet<u64> {
        self.members()
            .into_iter()
            .flat_map(|pid| process::socket_inodes(self.proc_root, pid))
            .collect()
    }

    /// Chooses the main process after the previous one exited: among the
    /// direct children left, the oldest holding one of the ready sockets,
    /// else the oldest.
    fn elect_main(&mut self) {
        let mut children: Vec<(u64, u32)> = self
            .descendants
            .members()
            .into_iter()
            .filter(|&(_, parent)| parent == self.me)
            .map(|(pid, _)| {
                (
                    process::start_time(self.proc_root, pid).unwrap_or(u64::MAX),
                    pid,
                )
            })
            .collect();
        children.sort_unstable();
        let owning = children.iter().find(|(_, pid)| {
            process::socket_inodes(self.proc_root, *pid)
                .iter()
                .any(|inode| self.ready_inodes.contains(inode))
        });
        self.main = owning.or(children.first()).map(|&(_, pid)| pid);
        if let (Some(main), Some(signal)) = (self.main, self.stopping) {
            // Gone already: nothing left to stop.
            let _ = sys::kill(main, signal);
        }
    }

    /// Sends `signal` to every member (those gone meanwhile need none).
    fn signal_all(&mut self, signal: i32) {
        for pid in self.members() {
            let _ = sys::kill(pid, signal);
        }
    }

    /// Reaps every ended descendant, keeping the main process's status.
    /// Returns `true` once no child is left.
    fn reap(&mut self) -> anyhow::Result<bool> {
        loop {
            match sys::reap_any().context("failed to wait for the service")? {
                Reaped::Running => return Ok(false),
                Reaped::NoChildren => return Ok(true),
                Reaped::Child { pid, status } => {
                    if self.main == Some(pid) {
                        self.status = Some(status);
                        self.main = None;
                    }
                    // A daemon's middle process may still be on its way out
                    // when the first child exits: elect again until one
                    // stays.
                    if self.main.is_none() {
                        self.elect_main();
                    }
                }
            }
        }
    }
}

/// An endpoint as messages name it: `tcp 127.0.0.1:80`, `tcp6 [::]:80`,
/// `unix stream /run/app.sock` (the name quoted by the one rule).
fn endpoint_text(e: &Endpoint) -> String {
    match &e.addr {
        Addr::Inet {
            ip: IpAddr::V4(a),
            port,
        } => format!("{} {a}:{port}", e.table()),
        Addr::Inet {
            ip: IpAddr::V6(a),
            port,
        } => format!("{} [{a}]:{port}", e.table()),
        Addr::Unix(name) => format!("{} {}", e.table(), crate::quote::quote(name.text())),
    }
}

/// Endpoints as a list for messages, or `nothing`.
fn endpoints_text<'a>(endpoints: impl IntoIterator<Item = &'a Endpoint>) -> String {
    let list: Vec<String> = endpoints.into_iter().map(endpoint_text).collect();
    if list.is_empty() {
        "nothing".to_owned()
    } else {
        list.join(", ")
    }
}

/// Whether one of the listener's sockets is among `owned`.
fn held_by(listener: &Listener, owned: &HashSet<u64>) -> bool {
    listener.inodes().any(|i| owned.contains(&i))
}

/// The service just became ready.
struct Readiness {
    /// The `STATUS=` text: the tree's endpoints that made it ready.
    status: String,
    /// The tree's sockets on those endpoints.
    inodes: HashSet<u64>,
}

/// Where the service is in its life, as sockwatch sees it.
enum Phase {
    /// Started, not ready yet: readiness is checked at `next_check`, and
    /// given up on at `deadline` (`--timeout`). Holds the notification,
    /// which readiness consumes.
    Starting {
        notify: Notify,
        next_check: Instant,
        deadline: Option<Instant>,
    },
    /// Announced ready (or not announced: the notification failed, and
    /// said so); the rest is forwarding signals and reaping.
    Ready,
    /// Not ready by `--timeout`: the tree had SIGTERM, and SIGKILL is due
    /// at `kill_at` (`None` once sent). Ends with exit 124.
    Stopping { kill_at: Option<Instant> },
}

impl Phase {
    /// When the loop must wake up next, whatever happens meanwhile.
    fn wake(&self) -> Option<Instant> {
        match self {
            Phase::Starting {
                next_check,
                deadline,
                ..
            } => Some(deadline.map_or(*next_check, |d| d.min(*next_check))),
            Phase::Ready => None,
            Phase::Stopping { kill_at } => *kill_at,
        }
    }
}

/// The service and what `run` was asked to do with it.
struct Supervisor {
    watcher: Watcher,
    tree: Tree,
    ready_on: Option<Condition>,
    interval: Duration,
    grace: Duration,
    timeout: Option<Duration>,
    program: String,
    verbose: bool,
}

impl Supervisor {
    /// Moves the phase on as time tells: readiness checks, the deadline,
    /// the SIGKILL after the grace period.
    fn advance(&mut self, phase: Phase) -> anyhow::Result<Phase> {
        let now = Instant::now();
        Ok(match phase {
            Phase::Starting {
                notify,
                next_check,
                deadline,
            } => {
                let due = deadline.is_some_and(|d| now >= d);
                if now < next_check && !due {
                    return Ok(Phase::Starting {
                        notify,
                        next_check,
                        deadline,
                    });
                }
                if let Some(readiness) = self.check_ready()? {
                    self.become_ready(notify, readiness);
                    Phase::Ready
                } else if due {
                    self.give_up()
                } else {
                    Phase::Starting {
                        notify,
                        next_check: Instant::now() + self.interval,
                        deadline,
                    }
                }
            }
            Phase::Stopping { kill_at: Some(at) } if now >= at => {
                self.tree.signal_all(SIGKILL);
                Phase::Stopping { kill_at: None }
            }
            phase => phase,
        })
    }

    /// Checks readiness: the condition (or, without one, any endpoint)
    /// over the endpoints the tree holds.
    fn check_ready(&mut self) -> anyhow::Result<Option<Readiness>> {
        let mut events = Vec::new();
        self.watcher.poll(&mut events)?;
        if !self.watcher.complete() {
            return Ok(None);
        }
        let ready_on = self.ready_on.as_ref();
        let snapshot = self.watcher.snapshot();
        let all = snapshot.all_facts();
        let could_hold = match ready_on {
            Some(condition) => condition.holds(&all),
            None => !all.is_empty(),
        };
        if !could_hold {
            return Ok(None);
        }
        let owned = self.tree.owned_inodes();
        let mine: Vec<Facts<'_>> = snapshot
            .iter()
            .filter(|(_, listener)| held_by(listener, &owned))
            .map(|(endpoint, listener)| snapshot.facts(endpoint, listener))
            .collect();
        let holds = match ready_on {
            Some(condition) => condition.holds(&mine),
            None => !mine.is_empty(),
        };
        if !holds {
            return Ok(None);
        }
        let shown: Vec<Facts<'_>> = match ready_on {
            Some(condition) => mine.into_iter().filter(|f| condition.selects(f)).collect(),
            None => mine,
        };
        let inodes = snapshot
            .iter()
            .filter(|(e, _)| shown.iter().any(|f| f.endpoint == *e))
            .flat_map(|(_, l)| l.inodes())
            .filter(|i| owned.contains(i))
            .collect();
        let status = format!(
            "listening on {}",
            endpoints_text(shown.iter().map(|f| f.endpoint))
        );
        Ok(Some(Readiness { status, inodes }))
    }

    /// Announces readiness, once.
    fn become_ready(&mut self, notify: Notify, readiness: Readiness) {
        self.tree.ready_inodes = readiness.inodes;
        if self.verbose {
            eprintln!("sockwatch: ready: {}", readiness.status);
        }
        if let Err(e) = notify.ready(&readiness.status) {
            eprintln!("sockwatch: {e}");
        }
    }

    /// `--timeout` ran out before readiness: says why, stops the tree.
    fn give_up(&mut self) -> Phase {
        let why = self.why_not_ready();
        eprintln!(
            "sockwatch: '{}' not ready after {}: {why}; stopping it",
            self.program,
            humantime::format_duration(self.timeout.unwrap_or_default()),
        );
        self.tree.signal_all(SIGTERM);
        Phase::Stopping {
            kill_at: Some(Instant::now() + self.grace),
        }
    }

    /// What the service listens on, measured against what was asked, and
    /// who holds the endpoints it was waited for when it does not.
    fn why_not_ready(&mut self) -> String {
        if !self.watcher.complete() {
            return format!(
                "the socket tables could not all be read ({})",
                self.watcher.last_failure().unwrap_or("unknown error")
            );
        }
        let snapshot = self.watcher.snapshot();
        let owned = self.tree.owned_inodes();
        let (mine, foreign): (Vec<_>, Vec<_>) =
            snapshot.iter().partition(|(_, l)| held_by(l, &owned));
        let listens = endpoints_text(mine.iter().map(|(e, _)| *e));
        let Some(condition) = &self.ready_on else {
            return format!("it listens on {listens}");
        };
        let mut why = format!(
            "'{}' does not hold over its own sockets (it listens on {listens})",
            condition.text()
        );
        let held: Vec<_> = foreign
            .into_iter()
            .filter(|(e, l)| condition.selects(&snapshot.facts(e, l)))
            .collect();
        if held.is_empty() {
            return why;
        }
        let wanted: HashSet<u64> = held.iter().flat_map(|(_, l)| l.inodes()).collect();
        let proc_root = self.tree.proc_root;
        let owners = process::owners(proc_root, &process::pids(proc_root), &wanted);
        const SHOWN: usize = 3;
        for (endpoint, listener) in held.iter().take(SHOWN) {
            // Another user's process, or one this namespace cannot see:
            // "another process" is all that is known.
            let who = match owners.ownership(listener.inodes()) {
                Ownership::Found(owner) if owner.comm.is_empty() => {
                    format!(" (pid {})", owner.pid)
                }
                Ownership::Found(owner) => {
                    format!(" (pid {}, {})", owner.pid, crate::quote::quote(&owner.comm))
                }
                Ownership::Hidden | Ownership::Nobody => String::new(),
            };
            why.push_str(&format!(
                "; {} is held by another process{who}",
                endpoint_text(endpoint)
            ));
        }
        if held.len() > SHOWN {
            why.push_str(&format!(
                "; {} more endpoints are held by other processes",
                held.len() - SHOWN
            ));
        }
        why
    }

    /// Passes a signal sockwatch received on to the main process.
    fn forward(&mut self, signal: i32) {
        if self.tree.main.is_none() {
            self.tree.elect_main();
        }
        if matches!(signal, SIGTERM | SIGINT | SIGQUIT) {
            self.tree.stopping = Some(signal);
        }
        if let Some(main) = self.tree.main {
            if self.verbose {
                eprintln!(
                    "sockwatch: forwarding {} to {main}",
                    sys::signal_name(signal)
                );
            }
            // Gone meanwhile: its end is about to be reaped.
            let _ = sys::kill(main, signal);
        }
    }

    /// How `run` ends once the whole tree is gone, in `phase`.
    fn end(&self, phase: &Phase) -> Outcome {
        match phase {
            Phase::Stopping { .. } => Outcome::Exit(exit::TIMEOUT),
            Phase::Starting { .. } => {
                eprintln!(
                    "sockwatch: '{}' {} before it was ready",
                    self.program,
                    describe_status(self.tree.status)
                );
                Outcome::of(self.tree.status)
            }
            Phase::Ready => Outcome::of(self.tree.status),
        }
    }
}

/// Starts the service; 126 or 127 when it cannot be started, as shells say.
fn spawn(options: &RunOptions) -> Result<u32, (u8, String)> {
    let (program, args) = options
        .command
        .split_first()
        .expect("clap requires PROGRAM");
    let mut command = Command::new(program);
    command.args(args);
    if !options.pass_notify {
        command.env_remove("NOTIFY_SOCKET");
    }
    // The service starts with default signal dispositions and mask, not
    // with the handlers sockwatch installed.
    sys::reset_signal_mask_on_exec(&mut command);
    let name = program.to_string_lossy();
    match command.spawn() {
        Ok(child) => Ok(child.id()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err((exit::NOT_FOUND, format!("cannot run '{name}': not found")))
        }
        Err(e) => Err((exit::NOT_EXECUTABLE, format!("cannot run '{name}': {e}"))),
    }
}

/// Runs the service until its tree is gone; returns how sockwatch must end.
pub fn run_service(options: RunOptions, watcher: Watcher) -> anyhow::Result<Outcome> {
    sys::set_child_subreaper().context("failed to become a child subreaper")?;
    let mut poll = Poll::new().context("failed to create the event loop")?;
    let mut signals = Signals::new(FORWARDED.iter().copied().chain([SIGCHLD]))
        .context("failed to handle signals")?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;

    let child = match spawn(&options) {
        Ok(pid) => pid,
        Err((code, message)) => {
            eprintln!("sockwatch: {message}");
            return Ok(Outcome::Exit(code));
        }
    };
    let started = Instant::now();
    let mut supervisor = Supervisor {
        watcher,
        tree: Tree {
            proc_root: Path::new("/proc"),
            me: std::process::id(),
            descendants: Descendants::new(Path::new("/proc"), std::process::id()),
            main: Some(child),
            status: None,
            stopping: None,
            ready_inodes: HashSet::new(),
        },
        program: options.command[0].to_string_lossy().into_owned(),
        ready_on: options.ready_on,
        interval: options.interval,
        grace: options.grace,
        timeout: options.timeout,
        verbose: options.verbose,
    };
    let mut phase = Phase::Starting {
        notify: options.notify,
        next_check: started,
        deadline: options.timeout.map(|t| started + t),
    };
    let mut events = Events::with_capacity(8);

    loop {
        phase = supervisor.advance(phase)?;
        let timeout = phase
            .wake()
            .map(|w| w.saturating_duration_since(Instant::now()));
        match poll.poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e).context("event loop failed"),
        }
        let mut child_exited = false;
        for signal in signals.pending() {
            if signal == SIGCHLD {
                child_exited = true;
            } else {
                supervisor.forward(signal);
            }
        }
        if child_exited && supervisor.tree.reap()? {
            return Ok(supervisor.end(&phase));
        }
    }
}
