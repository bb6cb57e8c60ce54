//! `--proc-root /proc/<pid>` of a process in another network namespace:
//! with the privilege to enter it, netlink watches it, and closes there are
//! pushed by the kernel (the destroy subscription is made inside that
//! namespace, as the dump socket is); without, `auto` reads its /proc and
//! `--source netlink` says why it cannot.

use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use crate::support::*;

/// A thread in a network namespace of its own, listening on one address
/// until told to close, and living until dropped (so `/proc/<tid>` stays).
struct Elsewhere {
    tid: i32,
    close: Option<mpsc::Sender<()>>,
    closed: mpsc::Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Elsewhere {
    fn listen(address: &'static str) -> Elsewhere {
        let (tid_tx, tid_rx) = mpsc::channel();
        let (close_tx, close_rx) = mpsc::channel::<()>();
        let (closed_tx, closed_rx) = mpsc::channel();
        let thread = thread::spawn(move || {
            let _ns = Netns::enter();
            let listener = tcp(address);
            // SAFETY: gettid has no preconditions.
            tid_tx.send(unsafe { libc::gettid() }).unwrap();
            // Told to close: close, and live on until the test ends.
            if close_rx.recv().is_ok() {
                drop(listener);
                let _ = closed_tx.send(());
                let _ = close_rx.recv();
            }
        });
        Elsewhere {
            tid: tid_rx.recv_timeout(PROMPTLY).expect("the thread listens"),
            close: Some(close_tx),
            closed: closed_rx,
            thread: Some(thread),
        }
    }

    fn proc_root(&self) -> String {
        format!("/proc/{}", self.tid)
    }

    /// Closes the listener, and returns once it is closed.
    fn close(&mut self) {
        self.close.as_ref().unwrap().send(()).unwrap();
        self.closed.recv_timeout(PROMPTLY).expect("closed");
    }
}

impl Drop for Elsewhere {
    fn drop(&mut self) {
        drop(self.close.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// The watch's `--interval`: a close seen well before it was pushed.
const INTERVAL: &str = "10s";
/// How soon a pushed close must arrive.
const PUSHED: Duration = Duration::from_secs(2);

#[test]
fn closes_in_the_watched_namespace_are_pushed() {
    // sockwatch runs in this namespace; the listener is in another.
    let _ns = Netns::enter();
    let mut elsewhere = Elsewhere::listen("127.0.0.1:7171");
    let root = elsewhere.proc_root();
    let mut watch = Running::start(
        "netlink",
        &["--proc-root", &root, "watch", "--interval", INTERVAL],
    );
    assert_eq!(
        watch.line(),
        "socket PROTO=inet PORT=7171 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
    // A close in our own namespace is none of its business.
    drop(tcp("127.0.0.1:7171"));
    elsewhere.close();
    assert_eq!(
        watch.line_within(PUSHED),
        "socket-closed PROTO=inet PORT=7171 ADDR=127.0.0.1 TRANSPORT=tcp",
        "pushed, not seen at the next poll {INTERVAL} later"
    );
    watch.no_line_for(Duration::from_millis(200));
}

#[test]
fn without_privilege_another_namespace_is_read_from_proc() {
    let _ns = Netns::enter();
    let elsewhere = Elsewhere::listen("127.0.0.1:7272");
    let root = elsewhere.proc_root();

    let mut auto = command("auto", &["--proc-root", &root, "list", "--json"]);
    as_ordinary_user(&mut auto);
    let out = finish(auto, PROMPTLY);
    assert_eq!(out.code(), 0, "{out}");
    let events: Vec<serde_json::Value> = out
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(
        (events[0]["port"].as_u64(), events[0]["source"].as_str()),
        (Some(7272), Some("proc")),
        "{out}"
    );

    let mut netlink = command("netlink", &["--proc-root", &root, "list"]);
    as_ordinary_user(&mut netlink);
    let out = finish(netlink, PROMPTLY);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "no source of socket information is usable: failed to enter the network \
             namespace {root}/ns/net (that needs CAP_SYS_ADMIN; --source proc reads it without)"
        )),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}
