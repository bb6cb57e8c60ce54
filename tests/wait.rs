//! `sockwatch wait`: already true, becomes true, times out, `--gone`, and
//! reachability as users meet it.

use std::time::{Duration, Instant};

use crate::each_source;
use crate::support::*;

/// How soon `wait` must notice a change ("a couple of seconds"; it polls
/// every 50 ms and is pushed closes).
const SOON: Duration = Duration::from_secs(2);

each_source!(
    returns_at_once_when_already_true,
    returns_when_a_listener_appears,
    times_out_with_124_naming_the_condition,
    gone_returns_when_the_listener_closes,
    dual_stack_listener_satisfies_an_inet_wait,
    v6only_listener_does_not_satisfy_an_inet_wait,
    wildcard_listener_satisfies_a_concrete_address,
    and_waits_for_both,
    v4_mapped_listener_satisfies_inet_terms,
);

fn returns_at_once_when_already_true(source: &str) {
    let _ns = Netns::enter();
    let _web = tcp("0.0.0.0:80");
    let out = run(
        source,
        &["wait", "--timeout", "5s", "socket", "PROTO=inet", "PORT=80"],
    );
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.is_empty(), "wait prints nothing: {out}");
    let out = run(source, &["wait", "socket inet 80"]);
    assert_eq!(out.code(), 0, "one quoted argument: {out}");
}

fn returns_when_a_listener_appears(source: &str) {
    let _ns = Netns::enter();
    let mut wait =
        Running::start_watching(source, &["wait", "--timeout", "20s", "socket", "PORT=8080"]);
    // Near misses do not end it.
    let _decoy = tcp("127.0.0.1:8081");
    let _decoy_connected = udp_connected("127.0.0.1:8080", "127.0.0.1:8081");
    wait.still_running_after(Duration::from_millis(300));
    let listening = Instant::now();
    let _web = tcp("127.0.0.1:8080");
    let (status, stderr) = wait.finish();
    let took = listening.elapsed();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(took < SOON, "noticed after {took:?}");
}

fn times_out_with_124_naming_the_condition(source: &str) {
    let _ns = Netns::enter();
    let _other = tcp("127.0.0.1:80");
    let out = run(source, &["wait", "--timeout", "300ms", "socket", "PORT=81"]);
    assert_eq!(out.code(), 124, "{out}");
    let lines: Vec<&str> = out.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {out}");
    assert!(
        lines[0].contains("socket PORT=81"),
        "names the condition: {out}"
    );
    assert!(lines[0].contains("timed out"), "{out}");
}

fn gone_returns_when_the_listener_closes(source: &str) {
    let _ns = Netns::enter();
    let out = run(source, &["wait", "--gone", "socket", "PORT=80"]);
    assert_eq!(out.code(), 0, "already gone: {out}");
    let web = tcp("127.0.0.1:80");
    let out = run(
        source,
        &["wait", "--gone", "--timeout", "300ms", "socket", "PORT=80"],
    );
    assert_eq!(out.code(), 124, "still there: {out}");
    assert!(out.stderr.contains("socket PORT=80"), "{out}");
    let mut wait = Running::start_watching(
        source,
        &["wait", "--gone", "--timeout", "20s", "socket", "PORT=80"],
    );
    wait.still_running_after(Duration::from_millis(200));
    let closed = Instant::now();
    drop(web);
    let (status, stderr) = wait.finish();
    let took = closed.elapsed();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(took < SOON, "noticed after {took:?}");
}

fn dual_stack_listener_satisfies_an_inet_wait(source: &str) {
    let _ns = Netns::enter();
    // Node.js's default: `::` with IPV6_V6ONLY off takes IPv4 too.
    let _node = tcp_with("[::]:3000", Some(false), false);
    let out = run(
        source,
        &["wait", "--timeout", "5s", "socket PROTO=inet PORT=3000"],
    );
    assert_eq!(out.code(), 0, "{out}");
    let out = run(
        source,
        &["wait", "--timeout", "5s", "socket inet 3000 127.0.0.1"],
    );
    assert_eq!(out.code(), 0, "{out}");
}

/// Java (and anything else on an AF_INET6 socket) binding 127.0.0.1 gets
/// `::ffff:127.0.0.1`: an IPv6 socket that only IPv4 clients reach.
fn v4_mapped_listener_satisfies_inet_terms(source: &str) {
    let _ns = Netns::enter();
    let _java = tcp_with("[::ffff:127.0.0.1]:7000", Some(false), false);
    let out = run(source, &["list"]);
    assert_lines(
        &out.lines(),
        &[&v6(
            source,
            "socket PROTO=inet6 PORT=7000 ADDR=::ffff:127.0.0.1 TRANSPORT=tcp",
            false,
        )],
    );
    let codes: Vec<(&str, i32)> = [
        "socket PROTO=inet PORT=7000",
        "socket ADDR=127.0.0.1 PORT=7000",
        "socket inet 7000 127.0.0.0/8",
    ]
    .into_iter()
    .map(|c| (c, run(source, &["wait", "--timeout", "1s", c]).code()))
    .collect();
    assert!(codes.iter().all(|&(_, code)| code == 0), "{codes:?}");
}

fn v6only_listener_does_not_satisfy_an_inet_wait(source: &str) {
    let _ns = Netns::enter();
    let _six = tcp_with("[::]:3000", Some(true), false);
    let out = run(
        source,
        &["wait", "--timeout", "300ms", "socket PROTO=inet PORT=3000"],
    );
    if source == "netlink" {
        assert_eq!(out.code(), 124, "v6only is known: {out}");
    }
    let out = run(
        source,
        &["wait", "--timeout", "5s", "socket PROTO=inet6 PORT=3000"],
    );
    assert_eq!(out.code(), 0, "{out}");
}

fn wildcard_listener_satisfies_a_concrete_address(source: &str) {
    let _ns = Netns::enter();
    let _any = tcp("0.0.0.0:5432");
    let out = run(
        source,
        &["wait", "--timeout", "5s", "socket ADDR=127.0.0.1 PORT=5432"],
    );
    assert_eq!(out.code(), 0, "{out}");
    let out = run(
        source,
        &[
            "wait",
            "--timeout",
            "5s",
            "socket ADDR=127.0.0.0/8 PORT=5432",
        ],
    );
    assert_eq!(out.code(), 0, "{out}");
    let out = run(
        source,
        &["wait", "--timeout", "300ms", "socket ADDR=::1 PORT=5432"],
    );
    assert_eq!(out.code(), 124, "another family: {out}");
}

fn and_waits_for_both(source: &str) {
    let _ns = Netns::enter();
    let _web = tcp("0.0.0.0:80");
    let mut wait = Running::start_watching(
        source,
        &[
            "wait",
            "--timeout",
            "20s",
            "socket PORT=80 and\n(socket TRANSPORT=udp PORT=53)",
        ],
    );
    let _tls = tcp("0.0.0.0:443");
    let _dns_tcp = tcp("127.0.0.1:53");
    // udp 53 is not there yet.
    wait.still_running_after(Duration::from_millis(300));
    let _dns = udp("127.0.0.1:53");
    let (status, stderr) = wait.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
}

/// `wait --gone` is pushed too: with a 10 s poll it still ends at once.
#[test]
fn netlink_gone_is_pushed_by_the_kernel() {
    let _ns = Netns::enter();
    let web = tcp("127.0.0.1:80");
    let mut wait = Running::start_watching(
        "netlink",
        &["wait", "--gone", "--interval", "10s", "socket", "PORT=80"],
    );
    wait.still_running_after(Duration::from_millis(200));
    let closed = Instant::now();
    drop(web);
    let (status, stderr) = wait.finish();
    let took = closed.elapsed();
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(took < SOON, "pushed, not polled: {took:?}");
}
