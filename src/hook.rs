//! `watch --exec`: run a program for each event.
//!
//! Hooks are how events reach other systems (`initctl emit`, a logger, a
//! deploy script). They run one at a time, in event order, on a worker
//! thread, so a slow hook never stalls the watcher loop. Fields reach the
//! hook in its environment (`EVENT`, `PROTO`, `PORT`, `ADDR`, `TRANSPORT`,
//! and `V6ONLY`, `PID`, `COMM` when known) and the program is run directly,
//! never through a shell, so no value can inject a command.
//!
//! - Falling behind: up to [`QUEUE`] runs wait as the events came; beyond
//!   that, events are coalesced per endpoint ([`pending`]), so the hook still
//!   ends up told every endpoint's latest state. One line says when that
//!   starts and one when the queue has drained, with what it saved.
//! - Output: a hook's stdout goes to sockwatch's stderr. Stdout is the event
//!   stream; a hook's words in it would corrupt it (`--json` readers).
//! - Stopping: each hook leads a process group of its own, so that a stop
//!   reaches whatever it started (`sh -c 'sleep 1000'`). On a stop, the
//!   running hook's group gets SIGTERM at once and SIGKILL after [`GRACE`],
//!   runs still waiting are dropped, and one line says so: sockwatch ends
//!   within a second, neither waiting for hooks nor leaving them behind
//!   unsaid.

mod pending;

use std::ffi::OsString;
use std::io;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

pub use self::pending::{Coalesced, Pending, Run};
use crate::event::Event;
use crate::field::Field;
use crate::quote;
use crate::sys;

/// How many runs wait as the events came, before coalescing starts.
pub const QUEUE: usize = 1024;

/// How long the running hook has, after SIGTERM on a stop, before SIGKILL:
/// short enough that sockwatch still ends within a second.
pub const GRACE: Duration = Duration::from_millis(500);

/// How long a stop waits for the worker once the hook is killed: it only
/// has to reap it.
const REAP: Duration = Duration::from_millis(200);

/// The environment of one hook run: each variable set, or removed.
type HookEnv = Vec<(&'static str, Option<OsString>)>;

/// The hook runner.
pub struct Hooks {
    shared: Arc<Shared>,
    worker: Option<JoinHandle<()>>,
    /// PROGRAM, quoted for messages.
    name: String,
}

struct Shared {
    state: Mutex<State>,
    /// A run was queued, a hook ended, a stop began, or the worker ended.
    changed: Condvar,
}

struct State {
    pending: Pending<HookEnv>,
    /// The running hook's pid, which is also its process group's id.
    running: Option<u32>,
    /// No more runs: the worker ends after the one it waits for.
    stopping: bool,
    /// The worker has returned.
    worker_done: bool,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every change under the lock is a single step: a panic elsewhere
        // cannot leave the state half-made.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn wait_until<'a>(
        &self,
        state: MutexGuard<'a, State>,
        until: Instant,
    ) -> MutexGuard<'a, State> {
        let timeout = until.saturating_duration_since(Instant::now());
        self.changed
            .wait_timeout(state, timeout)
            .unwrap_or_else(|e| e.into_inner())
            .0
    }
}

impl Hooks {
    /// Starts the worker for `command` (PROGRAM and ARGS), with `capacity`
    /// runs waiting as they came before coalescing starts.
    pub fn start(command: Vec<OsString>, capacity: usize) -> io::Result<Hooks> {
        let program = command.first().expect("clap requires PROGRAM");
        let name = quote::quote(&quote::text_from_bytes(program.as_bytes())).into_owned();
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                pending: Pending::new(capacity),
                running: None,
                stopping: false,
                worker_done: false,
            }),
            changed: Condvar::new(),
        });
        let worker = {
            let (shared, name) = (Arc::clone(&shared), name.clone());
            thread::Builder::new().name("hooks".into()).spawn(move || {
                run_hooks(&shared, &command, &name);
                shared.lock().worker_done = true;
                shared.changed.notify_all();
            })?
        };
        Ok(Hooks {
            shared,
            worker: Some(worker),
            name,
        })
    }

    /// Queues the hook run for `event`, without waiting.
    pub fn submit(&mut self, event: &Event) {
        let filled = {
            let mut state = self.shared.lock();
            if state.stopping {
                return;
            }
            let filled = state.pending.push(Run {
                endpoint: event.endpoint.clone(),
                kind: event.kind,
                payload: environment(event),
            });
            self.shared.changed.notify_all();
            filled
        };
        if filled {
            eprintln!(
                "sockwatch: {QUEUE} hook runs are waiting: coalescing further events per \
                 endpoint until the queue drains"
            );
        }
    }

    /// Stops: the running hook's process group gets SIGTERM, then SIGKILL
    /// after [`GRACE`]; waiting runs are dropped. Returns within `GRACE` +
    /// 200 ms whatever the hook does.
    pub fn stop(&mut self) {
        let Some(worker) = self.worker.take() else {
            return;
        };
        let deadline = Instant::now() + GRACE;
        let (running, dropped) = {
            let mut state = self.shared.lock();
            state.stopping = true;
            let dropped = state.pending.clear();
            self.shared.changed.notify_all();
            // Sent under the lock: the worker cannot start another hook
            // meanwhile, nor has it reaped this one (it clears `running`
            // under the lock after reaping), so the group is still this
            // hook's.
            let running = state.running;
            if let Some(pgid) = running
                && let Err(e) = sys::kill_group(pgid, libc::SIGTERM)
                && e.raw_os_error() != Some(libc::ESRCH)
            {
                eprintln!(
                    "sockwatch: could not stop hook {} (pid {pgid}): {e}",
                    self.name
                );
            }
            (running, dropped)
        };
        let waiting = match dropped {
            0 => String::new(),
            n => format!("{n} waiting hook run(s) dropped"),
        };
        match running {
            Some(pid) => eprintln!(
                "sockwatch: stopping: sent SIGTERM to hook {} (pid {pid}) and its process group{}{waiting}",
                self.name,
                if waiting.is_empty() { "" } else { "; " },
            ),
            None if !waiting.is_empty() => eprintln!("sockwatch: stopping: {waiting}"),
            None => {}
        }
        let mut until = Instant::now() + REAP;
        if let Some(pgid) = running
            && !self.wait_for_group(pgid, deadline)
        {
            let _ = sys::kill_group(pgid, libc::SIGKILL);
            eprintln!(
                "sockwatch: hook {} (pid {pgid}) did not end within {} of SIGTERM; \
                 killed its process group",
                self.name,
                humantime::format_duration(GRACE)
            );
            until = Instant::now() + REAP;
            self.wait_for_group(pgid, until);
        }
        // The worker ends as soon as it has reaped the hook. One that cannot
        // even be killed (stuck in the kernel) is left to end with us.
        let mut state = self.shared.lock();
        while !state.worker_done && Instant::now() < until {
            state = self.shared.wait_until(state, until);
        }
        let done = state.worker_done;
        drop(state);
        if done {
            let _ = worker.join();
        }
    }

    /// Waits until hook `pgid` is reaped and its process group has no
    /// member left (a child that outlived it), or `until`. True when gone.
    fn wait_for_group(&self, pgid: u32, until: Instant) -> bool {
        let mut state = self.shared.lock();
        loop {
            if state.running != Some(pgid) && !sys::group_exists(pgid) {
                return true;
            }
            let now = Instant::now();
            if now >= until {
                return false;
            }
            // Woken when the hook is reaped; its children, which nobody
            // here can wait for, are looked for again every 10 ms.
            state = self
                .shared
                .wait_until(state, until.min(now + Duration::from_millis(10)));
        }
    }

    /// Waits until no run waits and none runs, or `until`. True when idle.
    #[cfg(test)]
    fn wait_idle(&self, until: Instant) -> bool {
        let mut state = self.shared.lock();
        loop {
            if state.pending.is_empty() && state.running.is_none() {
                return true;
            }
            if Instant::now() >= until {
                return false;
            }
            state = self.shared.wait_until(state, until);
        }
    }
}

impl Drop for Hooks {
    /// Whatever ends the watch (a stop, a closed stdout, an error), hooks
    /// are stopped the same way, never waited for.
    fn drop(&mut self) {
        self.stop();
    }
}

/// The variables a hook sees: `EVENT`, and every field of the table, set
/// when the event has a value for it, removed from the hook's environment
/// when it has not (a stale `PID` inherited by sockwatch must not look like
/// the event's).
pub fn environment(event: &Event) -> HookEnv {
    let mut env = vec![("EVENT", Some(OsString::from(event.kind.as_str())))];
    env.extend(
        Field::ALL
            .into_iter()
            .map(|field| (field.name(), event.value(field).map(|v| v.env()))),
    );
    env
}

/// The worker: runs the waiting hooks one at a time until stopped.
fn run_hooks(shared: &Shared, command: &[OsString], name: &str) {
    let (program, args) = command.split_first().expect("clap requires PROGRAM");
    loop {
        let mut state = shared.lock();
        let run = loop {
            if state.stopping {
                return;
            }
            if let Some(run) = state.pending.pop() {
                break run;
            }
            if let Some(saved) = state.pending.drained() {
                drop(state);
                eprintln!("{}", drained_message(&saved));
                state = shared.lock();
                continue;
            }
            state = shared
                .changed
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        };
        let env = run.payload;
        let mut hook = Command::new(program);
        hook.args(args).stdin(Stdio::null()).process_group(0);
        // Stdout is the event stream: the hook's output goes to stderr.
        match io::stderr().as_fd().try_clone_to_owned() {
            Ok(stderr) => hook.stdout(stderr),
            Err(_) => hook.stdout(Stdio::null()),
        };
        for (name, value) in &env {
            match value {
                Some(value) => hook.env(name, value),
                None => hook.env_remove(name),
            };
        }
        // Started under the lock, so that a stop either comes first (and
        // nothing starts) or finds the hook in `running`.
        let mut child = match hook.spawn() {
            Ok(child) => child,
            Err(e) => {
                drop(state);
                eprintln!(
                    "sockwatch: hook {name} could not run for {}: {e}",
                    fields(&env)
                );
                continue;
            }
        };
        state.running = Some(child.id());
        drop(state);
        let status = child.wait();
        let mut state = shared.lock();
        state.running = None;
        let stopped = state.stopping;
        shared.changed.notify_all();
        drop(state);
        match status {
            Ok(status) if status.success() => {}
            // Ended by our own stop, which has said so already.
            Ok(_) if stopped => {}
            Ok(status) => eprintln!("sockwatch: hook {name} {status} for {}", fields(&env)),
            Err(e) => eprintln!("sockwatch: hook {name} could not be waited for: {e}"),
        }
    }
}

/// `EVENT=socket PROTO=inet ...`, each value quoted by the one rule: a
/// process name with a newline or ESC cannot forge a line of its own.
fn fields(env: &HookEnv) -> String {
    let fields: Vec<String> = env
        .iter()
        .filter_map(|(k, v)| {
            let v = quote::text_from_bytes(v.as_ref()?.as_bytes());
            Some(format!("{k}={}", quote::quote(&v)))
        })
        .collect();
    fields.join(" ")
}

fn drained_message(saved: &Coalesced) -> String {
    format!(
        "sockwatch: hook queue drained; while it was full, {} event(s) had no run of their \
         own: {} appear/close pair(s) cancelled out, {} superseded by a later event",
        saved.events(),
        saved.cancelled,
        saved.superseded
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Listener;
    use crate::endpoint::{Endpoint, Socket, SourceKind, Transport};
    use crate::event::EventKind;
    use std::collections::HashMap;
    use std::time::SystemTime;

    fn event(kind: EventKind, port: u16) -> Event {
        let endpoint = Endpoint::inet(Transport::Tcp, "127.0.0.1".parse().unwrap(), port);
        let socket = Socket {
            endpoint: endpoint.clone(),
            inode: u64::from(port),
            uid: Some(0),
            cookie: None,
            v6only: None,
            source: SourceKind::Proc,
            vfs: None,
            trusted: true,
        };
        Event {
            kind,
            endpoint,
            listener: Listener::from_sockets(vec![socket]),
            time: SystemTime::now(),
        }
    }

    fn scratch(name: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("sockwatch-{name}-{}", std::process::id()));
        let _ = std::fs::remove_file(&path);
        path
    }

    /// `sh -c SCRIPT PATH`: the script sees PATH as `$0`.
    fn shell(script: &str, path: &std::path::Path) -> Vec<OsString> {
        vec![
            "sh".into(),
            "-c".into(),
            script.into(),
            path.as_os_str().to_owned(),
        ]
    }

    #[test]
    fn a_hook_that_falls_behind_still_ends_told_each_endpoints_latest_state() {
        let log = scratch("hook-behind");
        let script = r#"echo "$EVENT $PORT" >> "$0"; sleep 0.02"#;
        let mut hooks = Hooks::start(shell(script, &log), 4).unwrap();
        let mut listening: HashMap<u16, bool> = HashMap::new();
        let started = Instant::now();
        let mut events = 0;
        for round in 0..20u16 {
            for port in 1..=10u16 {
                // Every port flips each round; odd ports flip once more.
                let flips = if port % 2 == 1 && round % 3 == 0 {
                    2
                } else {
                    1
                };
                for _ in 0..flips {
                    let state = listening.entry(port).or_default();
                    *state = !*state;
                    let kind = if *state {
                        EventKind::Socket
                    } else {
                        EventKind::SocketClosed
                    };
                    hooks.submit(&event(kind, port));
                    events += 1;
                }
            }
        }
        assert!(
            started.elapsed() < Duration::from_millis(500),
            "submitting never waits for a hook"
        );
        assert!(hooks.wait_idle(Instant::now() + Duration::from_secs(60)));
        let text = std::fs::read_to_string(&log).unwrap();
        let _ = std::fs::remove_file(&log);
        let mut told: HashMap<u16, String> = HashMap::new();
        let mut runs = 0;
        for line in text.lines() {
            let (kind, port) = line.split_once(' ').unwrap();
            let port: u16 = port.parse().unwrap();
            let previous = told.insert(port, kind.to_owned());
            assert_ne!(
                previous.as_deref(),
                Some(kind),
                "port {port} alternates:\n{text}"
            );
            runs += 1;
        }
        for (port, state) in &listening {
            let last = told.get(port).map_or("socket-closed", String::as_str);
            assert_eq!(
                last == "socket",
                *state,
                "port {port} ends in its latest state"
            );
        }
        assert!(runs < events, "{runs} runs for {events} events: coalesced");
        hooks.stop();
    }

    #[test]
    fn a_stop_terminates_then_kills_the_running_hook_and_its_children() {
        let marker = scratch("hook-stop");
        // Ignores SIGTERM, as does its child (an ignored signal stays so
        // across fork and exec): only SIGKILL ends them.
        let script = r#"trap '' TERM; sleep 1000 & echo "$$ $!" > "$0"; wait"#;
        let mut hooks = Hooks::start(shell(script, &marker), 4).unwrap();
        hooks.submit(&event(EventKind::Socket, 80));
        hooks.submit(&event(EventKind::Socket, 81));
        let until = Instant::now() + Duration::from_secs(10);
        let pids = loop {
            let text = std::fs::read_to_string(&marker).unwrap_or_default();
            if text.ends_with('\n') {
                break text;
            }
            assert!(Instant::now() < until, "the hook never started");
            thread::sleep(Duration::from_millis(5));
        };
        let _ = std::fs::remove_file(&marker);
        let started = Instant::now();
        hooks.stop();
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "stopped in {:?}",
            started.elapsed()
        );
        for pid in pids.split_whitespace() {
            // Gone, or a zombie its (dead) parent left for init to reap.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let state = stat.rsplit_once(") ").map(|(_, rest)| &rest[..1]);
            assert!(
                state.is_none() || state == Some("Z"),
                "pid {pid} still runs: {stat}"
            );
        }
        assert!(
            hooks.shared.lock().pending.is_empty(),
            "the waiting run is dropped"
        );
    }

    #[test]
    fn a_stop_with_nothing_running_returns_at_once() {
        let mut hooks = Hooks::start(vec!["true".into()], 4).unwrap();
        let started = Instant::now();
        hooks.stop();
        hooks.stop();
        assert!(started.elapsed() < Duration::from_millis(200));
    }
}
