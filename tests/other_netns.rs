//! `--proc-root /proc/<pid>` of a process in another network namespace:
//! with the privilege to enter it, netlink watches it, and closes there are
//! pushed by the kernel (the destroy subscription is made inside that
//! namespace, as the dump socket is); without, `auto` reads its /proc and
//! `--source netlink` says why it cannot.

use std::time::Duration;

use crate::support::*;

/// The watch's `--interval`: a close seen well before it was pushed.
const INTERVAL: &str = "10s";
/// How soon a pushed close must arrive.
const PUSHED: Duration = Duration::from_secs(2);

#[test]
fn closes_in_the_watched_namespace_are_pushed() {
    // sockwatch runs in this namespace; the listener is in another.
    let _ns = Netns::enter();
    let mut elsewhere = Inside::listen(None, "127.0.0.1:7171");
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
    let elsewhere = Inside::listen(None, "127.0.0.1:7272");
    let root = elsewhere.proc_root();

    let mut auto = command("auto", &["--proc-root", &root, "list", "--json"]);
    as_ordinary_user(&mut auto);
    let out = finish(auto, PROMPTLY);
    assert_eq!(out.code(), 0, "{out}");
    let events: Vec<serde_json::Value> = out.json();
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
