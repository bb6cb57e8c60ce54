//! `sockwatch watch`: the initial set, then appear and close in order;
//! closing pushed by the kernel; the ways it ends.

use std::io::{BufRead, BufReader, Read};
use std::process::Stdio;
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use crate::each_source;
use crate::support::*;

each_source!(
    prints_initial_then_appear_and_close_in_order,
    no_initial_prints_only_changes,
    reuseport_endpoint_closes_with_its_last_socket,
    sigint_sigterm_and_closed_stdout_end_with_zero,
    condition_filters_events,
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
    let ready = watch.stderr_line();
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

/// Closing is pushed by the kernel's destroy events: with a 10 s poll
/// interval, `socket-closed` still arrives at once.
#[test]
fn netlink_close_is_pushed_by_the_kernel() {
    let _ns = Netns::enter();
    let web = tcp("127.0.0.1:80");
    let dns = udp_with("[::1]:53", Some(true));
    let mut watch = Running::start("netlink", &["watch", "--interval", "10s"]);
    watch.lines(2);
    for (socket, line) in [
        (
            web,
            "socket-closed PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp",
        ),
        (
            dns,
            "socket-closed PROTO=inet6 PORT=53 ADDR=::1 TRANSPORT=udp V6ONLY=1",
        ),
    ] {
        let closed = Instant::now();
        drop(socket);
        assert_eq!(watch.line_within(Duration::from_secs(5)), line);
        let took = closed.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "pushed, not polled: {took:?}"
        );
    }
}

/// Neither dumps nor destroy events need privilege.
#[test]
fn netlink_works_as_an_ordinary_user() {
    use std::os::unix::process::CommandExt;
    let _ns = Netns::enter();
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        // Already unprivileged: every other test shows it.
        return;
    }
    let web = tcp("127.0.0.1:80");
    let mut list = command("netlink", &["list"]);
    list.uid(65534).gid(65534);
    let out = finish(list, PROMPTLY);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &["socket PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp"],
    );
    let mut watch = command("netlink", &["watch", "--interval", "10s", "--json"]);
    watch.uid(65534).gid(65534);
    let mut watch = Running::spawn(watch);
    let line = watch.line();
    assert!(
        line.contains(r#""uid":0"#),
        "root's socket, seen by nobody: {line}"
    );
    drop(web);
    let line = watch.line_within(Duration::from_secs(5));
    assert!(
        line.contains(r#""event":"socket-closed""#),
        "pushed to an ordinary user: {line}"
    );
}
