//! `watch --exec`: run a program for each event.
//!
//! Hooks are how events reach other systems (`initctl emit`, a logger, a
//! deploy script). They run one at a time, in event order, on a worker
//! thread fed by a bounded queue, so a slow hook never stalls the watcher
//! loop; when the queue is full, events are dropped and counted, and a
//! warning says how many. Fields reach the hook in its environment
//! (`EVENT`, `PROTO`, `PORT`, `ADDR`, `TRANSPORT`, and `V6ONLY`, `PID`,
//! `COMM` when known) and the program is run directly, never through a
//! shell, so no value can inject a command.

use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};

use crate::event::Event;
use crate::field::Field;
use crate::quote;

/// How many events may wait for their hook.
pub const QUEUE: usize = 1024;

/// The environment of one hook run: each variable set, or removed.
type HookEnv = Vec<(&'static str, Option<OsString>)>;

/// The hook runner.
pub struct Hooks {
    queue: Option<SyncSender<HookEnv>>,
    worker: Option<JoinHandle<()>>,
    dropped: u64,
}

impl Hooks {
    /// Starts the worker for `command` (PROGRAM and ARGS).
    pub fn start(command: Vec<OsString>, capacity: usize) -> Hooks {
        let (queue, events) = mpsc::sync_channel(capacity);
        let worker = thread::Builder::new()
            .name("hooks".into())
            .spawn(move || run_hooks(&command, events))
            .expect("failed to start the hook thread");
        Hooks {
            queue: Some(queue),
            worker: Some(worker),
            dropped: 0,
        }
    }

    /// Queues the hook run for `event`, without waiting.
    pub fn submit(&mut self, event: &Event) {
        let Some(queue) = &self.queue else { return };
        match queue.try_send(environment(event)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped += 1;
                eprintln!(
                    "sockwatch: hook queue full ({QUEUE} events waiting); {} event(s) dropped so far",
                    self.dropped
                );
            }
            Err(TrySendError::Disconnected(_)) => {}
        }
    }

    /// Events dropped so far because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// Lets the queued hooks run, then stops the worker.
    pub fn finish(mut self) {
        self.queue = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
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

fn run_hooks(command: &[OsString], events: Receiver<HookEnv>) {
    let (program, args) = command.split_first().expect("clap requires PROGRAM");
    let name = quote::quote(&quote::text_from_bytes(program.as_bytes())).into_owned();
    for env in events {
        let mut hook = Command::new(program);
        hook.args(args).stdin(Stdio::null());
        for (name, value) in &env {
            match value {
                Some(value) => hook.env(name, value),
                None => hook.env_remove(name),
            };
        }
        let status = hook.status();
        let what = || {
            let fields: Vec<String> = env
                .iter()
                .filter_map(|(k, v)| {
                    let v = quote::text_from_bytes(v.as_ref()?.as_bytes());
                    Some(format!("{k}={}", quote::quote(&v)))
                })
                .collect();
            fields.join(" ")
        };
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("sockwatch: hook {name} {status} for {}", what()),
            Err(e) => eprintln!("sockwatch: hook {name} could not run for {}: {e}", what()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::Listener;
    use crate::endpoint::{Endpoint, Socket, SourceKind, Transport};
    use crate::event::EventKind;
    use std::time::SystemTime;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let endpoint = Endpoint::inet(Transport::Tcp, "127.0.0.1".parse().unwrap(), 80);
        let socket = Socket {
            endpoint: endpoint.clone(),
            inode: 1,
            uid: Some(0),
            cookie: None,
            v6only: None,
            source: SourceKind::Proc,
            vfs: None,
            trusted: true,
        };
        let event = Event {
            kind: EventKind::Socket,
            endpoint,
            listener: Listener::from_sockets(vec![socket]),
            time: SystemTime::now(),
        };
        let mut hooks = Hooks::start(vec!["sleep".into(), "0.3".into()], 1);
        let started = std::time::Instant::now();
        for _ in 0..5 {
            hooks.submit(&event);
        }
        assert!(
            started.elapsed() < std::time::Duration::from_millis(200),
            "never blocks"
        );
        // One runs, one waits in the queue; the rest are dropped.
        assert!(hooks.dropped() >= 3, "dropped {}", hooks.dropped());
        hooks.finish();
    }
}
