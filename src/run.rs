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
//! gone.

use std::collections::HashSet;
use std::ffi::OsString;
use std::io;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::{Duration, Instant};

use anyhow::Context;
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGCHLD, SIGHUP, SIGINT, SIGKILL, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

use crate::condition::{Condition, Facts};
use crate::exit;
use crate::notify::Notify;
use crate::process;
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

/// Signals forwarded to the main process.
const FORWARDED: [i32; 6] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];
const SIGNALS: Token = Token(0);

/// A status as a shell reports it: the exit code, or 128 + the signal.
fn status_code(status: libc::c_int) -> u8 {
    if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status) as u8
    } else if libc::WIFSIGNALED(status) {
        128u8.wrapping_add(libc::WTERMSIG(status) as u8)
    } else {
        exit::RUNTIME
    }
}

/// The supervised tree and what is known of it.
struct Tree {
    proc_root: &'static Path,
    me: u32,
    /// The main process, while one lives.
    main: Option<u32>,
    /// The status of the last main process that exited.
    status: Option<u8>,
    /// A stop request (SIGTERM, SIGINT, SIGQUIT) already forwarded: it is
    /// forwarded again to every newly elected main process, so that asking
    /// a service to stop while its launcher is still on its way out reaches
    /// the daemon too.
    stopping: Option<i32>,
}

impl Tree {
    /// Every descendant of sockwatch, found through the parent links of
    /// all processes (the tree is small, the scan is only done when needed).
    fn members(&self) -> Vec<u32> {
        let parents: Vec<(u32, u32)> = process::pids(self.proc_root)
            .into_iter()
            .filter_map(|pid| Some((pid, process::parent(self.proc_root, pid)?)))
            .collect();
        let mut members = vec![self.me];
        let mut i = 0;
        while i < members.len() {
            let parent = members[i];
            members.extend(
                parents
                    .iter()
                    .filter(|(_, p)| *p == parent)
                    .map(|(c, _)| *c),
            );
            i += 1;
        }
        members.remove(0);
        members
    }

    /// The socket inodes the tree holds.
    fn owned_inodes(&self) -> HashSet<u64> {
        self.members()
            .into_iter()
            .flat_map(|pid| process::socket_inodes(self.proc_root, pid))
            .collect()
    }

    /// Chooses the main process after the previous one exited: among the
    /// direct children left, the oldest holding one of `ready_inodes`, else
    /// the oldest.
    fn elect_main(&mut self, ready_inodes: &HashSet<u64>) {
        let mut children: Vec<(u64, u32)> = process::pids(self.proc_root)
            .into_iter()
            .filter(|&pid| process::parent(self.proc_root, pid) == Some(self.me))
            .map(|pid| {
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
                .any(|inode| ready_inodes.contains(inode))
        });
        self.main = owning.or(children.first()).map(|&(_, pid)| pid);
        if let (Some(main), Some(signal)) = (self.main, self.stopping) {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(main as libc::pid_t, signal) };
        }
    }

    /// Sends `signal` to every member.
    fn signal_all(&self, signal: i32) {
        for pid in self.members() {
            // SAFETY: kill(2) has no memory-safety preconditions.
            unsafe { libc::kill(pid as libc::pid_t, signal) };
        }
    }
}

/// Reaps every exited descendant. Returns `true` once no child is left.
fn reap(tree: &mut Tree, ready_inodes: &HashSet<u64>) -> bool {
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid place for waitpid to write to.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        match pid {
            0 => return false,
            -1 => return io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD),
            pid => {
                if tree.main == Some(pid as u32) {
                    tree.status = Some(status_code(status));
                    tree.main = None;
                }
                // A daemon's middle process may still be on its way out
                // when the first child exits: elect again until one stays.
                if tree.main.is_none() {
                    tree.elect_main(ready_inodes);
                }
            }
        }
    }
}

/// The `STATUS=` text: the tree's endpoints that made it ready.
fn describe(facts: &[Facts<'_>]) -> String {
    let endpoints: Vec<String> = facts
        .iter()
        .map(|f| {
            let e = f.endpoint;
            match e.addr {
                std::net::IpAddr::V4(a) => format!("{} {}:{}", e.table(), a, e.port),
                std::net::IpAddr::V6(a) => format!("{} [{}]:{}", e.table(), a, e.port),
            }
        })
        .collect();
    format!("listening on {}", endpoints.join(", "))
}

/// Checks readiness; returns the `STATUS=` text once ready.
fn check_ready(
    watcher: &mut Watcher,
    tree: &Tree,
    ready_on: Option<&Condition>,
) -> anyhow::Result<Option<(String, HashSet<u64>)>> {
    let mut events = Vec::new();
    watcher.poll(&mut events)?;
    if !watcher.complete() {
        return Ok(None);
    }
    let snapshot = watcher.snapshot();
    let all = snapshot.all_facts();
    let could_hold = match ready_on {
        Some(condition) => condition.holds(&all),
        None => !all.is_empty(),
    };
    if !could_hold {
        return Ok(None);
    }
    let owned = tree.owned_inodes();
    let mine: Vec<Facts<'_>> = snapshot
        .iter()
        .filter(|(_, listener)| listener.inodes().any(|i| owned.contains(&i)))
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
    let ready_inodes = snapshot
        .iter()
        .filter(|(e, _)| shown.iter().any(|f| f.endpoint == *e))
        .flat_map(|(_, l)| l.inodes())
        .filter(|i| owned.contains(i))
        .collect();
    Ok(Some((describe(&shown), ready_inodes)))
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
    // SAFETY: only async-signal-safe calls (sigemptyset, sigprocmask) run
    // between fork and exec.
    unsafe {
        command.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
    let name = program.to_string_lossy();
    match command.spawn() {
        Ok(child) => Ok(child.id()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            Err((exit::NOT_FOUND, format!("cannot run '{name}': not found")))
        }
        Err(e) => Err((exit::NOT_EXECUTABLE, format!("cannot run '{name}': {e}"))),
    }
}

/// Runs the service until its tree is gone; returns the exit code.
pub fn run_service(mut options: RunOptions, mut watcher: Watcher) -> anyhow::Result<ExitCode> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error()).context("failed to become a child subreaper");
    }
    let mut poll = Poll::new().context("failed to create the event loop")?;
    let mut signals = Signals::new(FORWARDED.iter().copied().chain([SIGCHLD]))
        .context("failed to handle signals")?;
    poll.registry()
        .register(&mut signals, SIGNALS, Interest::READABLE)?;

    let child = match spawn(&options) {
        Ok(pid) => pid,
        Err((code, message)) => {
            eprintln!("sockwatch: {message}");
            return Ok(ExitCode::from(code));
        }
    };
    let mut tree = Tree {
        proc_root: Path::new("/proc"),
        me: std::process::id(),
        main: Some(child),
        status: None,
        stopping: None,
    };
    let program = options.command[0].to_string_lossy().into_owned();
    let started = Instant::now();
    let deadline = options.timeout.map(|t| started + t);
    let mut ready_inodes = HashSet::new();
    let mut ready = false;
    // After --timeout ran out: the tree has had SIGTERM, and SIGKILL is due
    // at `kill_at` (None once sent).
    let mut timed_out = false;
    let mut kill_at: Option<Instant> = None;
    let mut events = Events::with_capacity(8);
    let mut next_check = started;

    loop {
        let looking = !ready && !timed_out;
        if looking && Instant::now() >= next_check {
            if let Some((status, inodes)) =
                check_ready(&mut watcher, &tree, options.ready_on.as_ref())?
            {
                ready = true;
                ready_inodes = inodes;
                if options.verbose {
                    eprintln!("sockwatch: ready: {status}");
                }
                let notify = std::mem::replace(&mut options.notify, Notify::None);
                if let Err(e) = notify.ready(&status) {
                    eprintln!("sockwatch: {e}");
                }
            }
            next_check = Instant::now() + options.interval;
        }
        if !ready && !timed_out && deadline.is_some_and(|d| Instant::now() >= d) {
            eprintln!(
                "sockwatch: '{program}' not ready after {}; stopping it",
                humantime::format_duration(options.timeout.unwrap_or_default())
            );
            tree.signal_all(SIGTERM);
            timed_out = true;
            kill_at = Some(Instant::now() + options.grace);
        }
        if kill_at.is_some_and(|at| Instant::now() >= at) {
            tree.signal_all(SIGKILL);
            kill_at = None;
        }

        let looking = !ready && !timed_out;
        let wake = [
            looking.then_some(next_check),
            kill_at,
            deadline.filter(|_| looking),
        ]
        .into_iter()
        .flatten()
        .min();
        let timeout = wake.map(|w| w.saturating_duration_since(Instant::now()));
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
                if tree.main.is_none() {
                    tree.elect_main(&ready_inodes);
                }
                if matches!(signal, SIGTERM | SIGINT | SIGQUIT) {
                    tree.stopping = Some(signal);
                }
                if let Some(main) = tree.main {
                    if options.verbose {
                        eprintln!("sockwatch: forwarding signal {signal} to {main}");
                    }
                    // SAFETY: kill(2) has no memory-safety preconditions.
                    unsafe { libc::kill(main as libc::pid_t, signal) };
                }
            }
        }
        if child_exited && reap(&mut tree, &ready_inodes) {
            let status = tree.status.unwrap_or(exit::RUNTIME);
            if timed_out {
                return Ok(ExitCode::from(exit::TIMEOUT));
            }
            if !ready {
                eprintln!("sockwatch: '{program}' exited with status {status} before it was ready");
            }
            return Ok(ExitCode::from(status));
        }
    }
}
