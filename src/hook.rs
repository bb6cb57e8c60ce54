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
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::{self, JoinHandle};

use crate::event::Event;

/// How many events may wait for their hook.
pub const QUEUE: usize = 1024;

/// The environment of one hook run.
type HookEnv = Vec<(&'static str, String)>;

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

/// The variables a hook sees.
pub fn environment(event: &Event) -> HookEnv {
    let endpoint = &event.endpoint;
    let mut env = vec![
        ("EVENT", event.kind.as_str().to_owned()),
        ("PROTO", endpoint.family().to_string()),
        ("PORT", endpoint.port.to_string()),
        ("ADDR", endpoint.addr.to_string()),
        ("TRANSPORT", endpoint.transport.to_string()),
    ];
    if let Some(v6only) = event.listener.v6only() {
        env.push(("V6ONLY", u8::from(v6only).to_string()));
    }
    if let Some(owner) = event.listener.owner() {
        env.push(("PID", owner.pid.to_string()));
        env.push(("COMM", owner.comm.clone()));
    }
    env
}

fn run_hooks(command: &[OsString], events: Receiver<HookEnv>) {
    let (program, args) = command.split_first().expect("clap requires PROGRAM");
    let name = program.to_string_lossy();
    for env in events {
        let status = Command::new(program)
            .args(args)
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .status();
        let what = || {
            let fields: Vec<String> = env.iter().map(|(k, v)| format!("{k}={v}")).collect();
            fields.join(" ")
        };
        match status {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("sockwatch: hook '{name}' {status} for {}", what()),
            Err(e) => eprintln!("sockwatch: hook '{name}' could not run for {}: {e}", what()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::{Endpoint, Socket, SourceKind, Transport};
    use crate::event::EventKind;
    use crate::snapshot::Listener;
    use std::time::SystemTime;

    #[test]
    fn a_full_queue_drops_and_counts_instead_of_blocking() {
        let endpoint = Endpoint {
            transport: Transport::Tcp,
            addr: "127.0.0.1".parse().unwrap(),
            port: 80,
        };
        let socket = Socket {
            endpoint,
            inode: 1,
            uid: 0,
            cookie: None,
            v6only: None,
            source: SourceKind::Proc,
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
