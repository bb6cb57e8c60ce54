//! What conditions answer about real listeners: what a client addressing
//! them would find, `KEY!=VALUE` as exactly the negation of `KEY=VALUE`,
//! and an owner sockwatch cannot read as unknown, never absent.

use crate::each_source;
use crate::support::*;

each_source!(
    mapped_address_in_a_condition_is_ipv4,
    mapped_wildcard_listener_reaches_ipv4_addresses,
    negation_includes_reachability,
    dual_stack_listener_is_not_not_inet,
    ports_compare_as_numbers,
    globs_match_the_address_as_written,
    list_filters_with_the_same_rule,
    unknown_owner_is_neither_ready_nor_gone,
);

/// Exits 0 at once when `condition` holds.
#[track_caller]
fn holds(source: &str, condition: &str) {
    let out = run(source, &["wait", "--timeout", "2s", condition]);
    assert_eq!(out.code(), 0, "{condition}: {out}");
}

/// Times out (124) when `condition` does not hold.
#[track_caller]
fn does_not_hold(source: &str, condition: &str) {
    let out = run(source, &["wait", "--timeout", "300ms", condition]);
    assert_eq!(out.code(), 124, "{condition}: {out}");
}

fn mapped_address_in_a_condition_is_ipv4(source: &str) {
    let _ns = Netns::enter();
    let _any = tcp("0.0.0.0:80");
    let _lo = tcp("127.0.0.1:81");
    holds(source, "socket ADDR=::ffff:127.0.0.1 PORT=80");
    holds(source, "socket ADDR=::ffff:127.0.0.1 PORT=81");
    holds(source, "socket ADDR=::ffff:127.0.0.0/104 PORT=81");
    does_not_hold(source, "socket ADDR=::ffff:127.0.0.2 PORT=81");
}

fn mapped_wildcard_listener_reaches_ipv4_addresses(source: &str) {
    let _ns = Netns::enter();
    let _mapped = tcp_with("[::ffff:0.0.0.0]:7000", Some(false), false);
    holds(source, "socket ADDR=127.0.0.1 PORT=7000");
    holds(source, "socket ADDR=0.0.0.0 PORT=7000");
    holds(source, "socket PROTO=inet PORT=7000");
    does_not_hold(source, "socket ADDR!=127.0.0.1 PORT=7000");
    does_not_hold(source, "socket ADDR=::1 PORT=7000");
}

fn negation_includes_reachability(source: &str) {
    let _ns = Netns::enter();
    let _any = tcp("0.0.0.0:80");
    holds(source, "socket ADDR=127.0.0.1");
    does_not_hold(source, "socket ADDR!=127.0.0.1");
    holds(source, "socket ADDR!=::1");
    // --gone waits for the negation's opposite: already true here.
    let out = run(
        source,
        &[
            "wait",
            "--gone",
            "--timeout",
            "2s",
            "socket ADDR!=127.0.0.1",
        ],
    );
    assert_eq!(out.code(), 0, "{out}");
}

fn dual_stack_listener_is_not_not_inet(source: &str) {
    let _ns = Netns::enter();
    // /proc cannot tell v6only: it assumes net.ipv6.bindv6only, which is 0
    // in a new namespace, as this socket is.
    let _dual = tcp_with("[::]:3000", Some(false), false);
    holds(source, "socket PROTO=inet PORT=3000");
    does_not_hold(source, "socket PROTO!=inet PORT=3000");
    does_not_hold(source, "socket PROTO!=inet6 PORT=3000");
}

fn ports_compare_as_numbers(source: &str) {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:80");
    holds(source, "socket PORT=080");
    holds(source, "socket PORT=0080-0080");
    holds(source, "socket inet 00080");
    does_not_hold(source, "socket PORT!=080");
}

fn globs_match_the_address_as_written(source: &str) {
    let _ns = Netns::enter();
    let _any = tcp("0.0.0.0:80");
    // A glob describes text: `127.*` is not how 0.0.0.0 is written. An
    // address or a block asks what a client would reach.
    does_not_hold(source, "socket ADDR=127.*");
    holds(source, "socket ADDR=0.*");
    holds(source, "socket ADDR=127.0.0.0/8");
}

fn list_filters_with_the_same_rule(source: &str) {
    let _ns = Netns::enter();
    let _any = tcp("0.0.0.0:80");
    let _other = tcp("127.0.0.2:81");
    let out = run(source, &["list", "socket ADDR!=127.0.0.1"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &["socket PROTO=inet PORT=81 ADDR=127.0.0.2 TRANSPORT=tcp"],
    );
}

/// A Python listener on 127.0.0.1:`port` that makes itself non-dumpable:
/// its fd table is then closed to other processes that lack
/// CAP_SYS_PTRACE, so an ordinary `sockwatch` cannot tell who holds the
/// socket. Killed when dropped.
fn hidden_listener(port: u16) -> Running {
    let server = format!(
        r#"
import ctypes, signal, socket
PR_SET_DUMPABLE = 4
assert ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0
s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen()
print("listening", flush=True)
signal.pause()
"#
    );
    let mut python = std::process::Command::new("python3");
    python.args(["-c", &server]);
    let mut server = Running::spawn(python);
    assert_eq!(server.line(), "listening");
    server
}

/// `wait` as an ordinary user.
fn wait_unprivileged(source: &str, args: &[&str]) -> Output {
    let mut args_with = vec!["wait"];
    args_with.extend_from_slice(args);
    let mut wait = command(source, &args_with);
    as_ordinary_user(&mut wait);
    finish(wait, PROMPTLY)
}

/// An owner sockwatch cannot read is unknown, not absent: a condition that
/// rests on it is neither ready nor gone (it was "gone" at once).
fn unknown_owner_is_neither_ready_nor_gone(source: &str) {
    let _ns = Netns::enter();
    let _server = hidden_listener(80);
    let condition = "socket PORT=80 COMM=python3";
    let out = wait_unprivileged(source, &["--gone", "--timeout", "500ms", condition]);
    assert_eq!(out.code(), 124, "not known to be gone: {out}");
    let out = wait_unprivileged(source, &["--timeout", "500ms", condition]);
    assert_eq!(out.code(), 124, "not known to hold: {out}");
    // What is known decides where it can.
    let out = wait_unprivileged(
        source,
        &["--gone", "--timeout", "2s", "socket PORT=81 COMM=python3"],
    );
    assert_eq!(out.code(), 0, "no endpoint on 81: {out}");
    let out = wait_unprivileged(
        source,
        &["--timeout", "2s", "socket PORT=80 or socket COMM=python3"],
    );
    assert_eq!(out.code(), 0, "80 listens: {out}");
}
