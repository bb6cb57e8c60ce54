//! `sockwatch watch`: the initial set, then appear and close in order;
//! closing pushed by the kernel; the ways it ends.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::each_source;
use crate::support::*;

each_source!(
    prints_initial_then_appear_and_close_in_order,
    no_initial_prints_only_changes,
    reuseport_endpoint_closes_with_its_last_socket,
    sigint_sigterm_and_closed_stdout_end_with_zero,
    condition_filters_events,
    works_as_an_ordinary_user,
);

fn prints_initial_then_appear_and_close_in_order(source: &str) {
    let _ns = Netns::enter();
    let early = tcp("127.0.0.1:22");
    let mut watch = Running::start(source, &["watch", "--interval", "20ms"]);
    assert_eq!(
        watch.line(),
        "socket PROTO=inet PORT=22 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
    let web = tcp("0.0.0.0:80");
    assert_eq!(
        watch.line(),
        "socket PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp"
    );
    let dns = udp("127.0.0.1:53");
    assert_eq!(
        watch.line(),
        "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp"
    );
    drop(web);
    assert_eq!(
        watch.line(),
        "socket-closed PROTO=inet PORT=80 ADDR=0.0.0.0 TRANSPORT=tcp"
    );
    drop(dns);
    assert_eq!(
        watch.line(),
        "socket-closed PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp"
    );
    drop(early);
    assert_eq!(
        watch.line(),
        "socket-closed PROTO=inet PORT=22 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
}

fn no_initial_prints_only_changes(source: &str) {
    let _ns = Netns::enter();
    let _early = tcp("127.0.0.1:22");
    let mut watch = Running::start(
        source,
        &[
            "-v",
            "watch",
            "--no-initial",
            "--interval",
            "20ms",
            "--json",
        ],
    );
    // (Before it, -v may say why kernel triggers are not used.)
    let ready = watch.stderr_until("sockwatch: watching");
    assert!(ready.contains("1 endpoint(s) listening"), "{ready}");
    let _web = tcp_with("[::]:80", Some(true), false);
    let line = watch.line();
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(event["event"], "socket", "{line}");
    assert_eq!(
        event["port"], 80,
        "the first line is the new endpoint: {line}"
    );
    assert_eq!(event["proto"], "inet6");
}

fn reuseport_endpoint_closes_with_its_last_socket(source: &str) {
    let _ns = Netns::enter();
    let first = tcp_with("127.0.0.1:9000", None, true);
    let second = tcp_with("127.0.0.1:9000", None, true);
    let mut watch = Running::start(source, &["watch", "--interval", "20ms"]);
    assert_eq!(
        watch.line(),
        "socket PROTO=inet PORT=9000 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
    drop(first);
    watch.no_line_for(Duration::from_millis(300));
    drop(second);
    assert_eq!(
        watch.line(),
        "socket-closed PROTO=inet PORT=9000 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
}

fn sigint_sigterm_and_closed_stdout_end_with_zero(source: &str) {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:80");
    for signal in [libc::SIGINT, libc::SIGTERM] {
        let mut watch = Running::start(source, &["watch"]);
        watch.line();
        let status = watch.signal(signal);
        assert_eq!(status.code(), Some(0), "after signal {signal}: {status}");
    }
    // A reader that takes one line and goes away.
    let mut watch = command(source, &["watch", "--interval", "20ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = watch.stdout.take().unwrap();
    let (send, first) = mpsc::channel();
    thread::spawn(move || {
        let mut reader = BufReader::new(stdout);
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        drop(reader); // the pipe has no reader any more
        let _ = send.send(line);
    });
    let line = first.recv_timeout(PROMPTLY).unwrap();
    assert!(line.starts_with("socket PROTO=inet PORT=80"), "{line}");
    let _next = tcp("127.0.0.1:81");
    let status = wait_deadline(&mut watch, PROMPTLY);
    let mut stderr = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "closed stdout: {status}\n{stderr}");
    assert!(stderr.is_empty(), "quietly: {stderr}");
}

fn condition_filters_events(source: &str) {
    let _ns = Netns::enter();
    let mut watch = Running::start(
        source,
        &["watch", "--interval", "20ms", "socket", "TRANSPORT=udp"],
    );
    let _tcp = tcp("127.0.0.1:80");
    let _udp = udp("127.0.0.1:53");
    assert_eq!(
        watch.line(),
        "socket PROTO=inet PORT=53 ADDR=127.0.0.1 TRANSPORT=udp"
    );
}

/// How soon a pushed `socket-closed` must arrive. The tests that use it
/// poll every 10 s, so a close seen by polling would take five times
/// longer.
const PUSHED: Duration = Duration::from_secs(2);

/// Closing is pushed by the kernel's destroy events: with a 10 s poll
/// interval, `socket-closed` still arrives at once, for TCP and UDP, IPv4
/// and IPv6, and for an SO_REUSEPORT endpoint only with its last socket.
#[test]
fn netlink_close_is_pushed_by_the_kernel() {
    let _ns = Netns::enter();
    let web = tcp("127.0.0.1:80");
    let dns = udp_with("[::1]:53", Some(true));
    let node = tcp_with("[::]:3000", Some(false), false);
    let syslog = udp("0.0.0.0:514");
    let first = tcp_with("127.0.0.1:9000", None, true);
    let second = tcp_with("127.0.0.1:9000", None, true);
    let mut watch = Running::start("netlink", &["watch", "--interval", "10s"]);
    let initial = watch.lines(5);
    let initial: Vec<&str> = initial.iter().map(String::as_str).collect();
    assert_lines(
        &initial,
        &[
            "socket PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp",
            "socket PROTO=inet PORT=9000 ADDR=127.0.0.1 TRANSPORT=tcp",
            "socket PROTO=inet6 PORT=3000 ADDR=:: TRANSPORT=tcp V6ONLY=0",
            "socket PROTO=inet PORT=514 ADDR=0.0.0.0 TRANSPORT=udp",
            "socket PROTO=inet6 PORT=53 ADDR=::1 TRANSPORT=udp V6ONLY=1",
        ],
    );
    let closes = [
        (
            web,
            "socket-closed PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp",
        ),
        (
            dns,
            "socket-closed PROTO=inet6 PORT=53 ADDR=::1 TRANSPORT=udp V6ONLY=1",
        ),
        (
            node,
            "socket-closed PROTO=inet6 PORT=3000 ADDR=:: TRANSPORT=tcp V6ONLY=0",
        ),
        (
            syslog,
            "socket-closed PROTO=inet PORT=514 ADDR=0.0.0.0 TRANSPORT=udp",
        ),
    ];
    for (socket, expected) in closes {
        let closed = Instant::now();
        drop(socket);
        assert_eq!(watch.line_within(PUSHED), expected);
        eprintln!("{expected}: after {:?}", closed.elapsed());
    }
    // One worker of two goes: the endpoint still listens.
    drop(first);
    watch.no_line_for(Duration::from_millis(500));
    drop(second);
    assert_eq!(
        watch.line_within(PUSHED),
        "socket-closed PROTO=inet PORT=9000 ADDR=127.0.0.1 TRANSPORT=tcp"
    );
}

/// Neither reading the tables nor (for netlink) destroy events need
/// privilege: an ordinary user sees root's listeners, and their closing,
/// pushed where the source pushes.
fn works_as_an_ordinary_user(source: &str) {
    let _ns = Netns::enter();
    let web = tcp("127.0.0.1:80");
    let _dns = udp_with("[::1]:53", Some(true));
    let mut list = command(source, &["list"]);
    as_ordinary_user(&mut list);
    let out = finish(list, PROMPTLY);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &[
            "socket PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp",
            &v6(
                source,
                "socket PROTO=inet6 PORT=53 ADDR=::1 TRANSPORT=udp",
                true,
            ),
        ],
    );
    // netlink: a 10 s poll, so only a pushed close is prompt.
    let (interval, promptly) = match source {
        "netlink" => ("10s", PUSHED),
        _ => ("20ms", PROMPTLY),
    };
    let mut watch = command(source, &["watch", "--interval", interval, "--json"]);
    as_ordinary_user(&mut watch);
    let mut watch = Running::spawn(watch);
    let line = watch.line();
    assert_unprivileged(watch.child.id());
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&event["event"], &event["port"], &event["uid"]),
        (&json!("socket"), &json!(80), &json!(0)),
        "root's socket, seen by an ordinary user: {line}"
    );
    watch.line();
    drop(web);
    let line = watch.line_within(promptly);
    let event: serde_json::Value = serde_json::from_str(&line).unwrap();
    assert_eq!(
        (&event["event"], &event["port"]),
        (&json!("socket-closed"), &json!(80)),
        "seen by an ordinary user: {line}"
    );
}
