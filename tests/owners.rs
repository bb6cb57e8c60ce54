//! The processes behind endpoints (`PID`, `COMM`): kept with the endpoint
//! until it closes, and unknown — never absent — where sockwatch may not
//! look.

use std::process::{Command, Stdio};

use crate::support::*;

/// A Python process named `comm` that listens on 127.0.0.1:`port`, says
/// `listening` on stdout, and exits when its stdin closes.
fn named_listener(comm: &str, port: u16) -> std::process::Child {
    raw_named_listener(comm.as_bytes(), port)
}

/// Ends a [`named_listener`] and waits for it.
pub fn stop(mut child: std::process::Child) {
    drop(child.stdin.take());
    child.wait().unwrap();
}

#[test]
fn a_comm_filtered_watch_reports_the_close() {
    let _ns = Netns::enter();
    let mut watch = Running::start_watching(
        "netlink",
        &[
            "watch",
            "--no-initial",
            "--interval",
            "20ms",
            "socket COMM=sw-owned",
        ],
    );
    let other = named_listener("sw-other", 5001);
    let owned = named_listener("sw-owned", 5000);
    let line = watch.line();
    assert!(
        line.starts_with("socket PROTO=inet PORT=5000 ADDR=127.0.0.1 TRANSPORT=tcp PID="),
        "{line}"
    );
    assert!(line.ends_with(" COMM=sw-owned"), "{line}");
    stop(owned);
    let line = watch.line();
    assert!(
        line.starts_with("socket-closed PROTO=inet PORT=5000 ADDR=127.0.0.1 TRANSPORT=tcp PID="),
        "the close of a filtered endpoint is reported: {line}"
    );
    assert!(line.ends_with(" COMM=sw-owned"), "{line}");
    stop(other);
    watch.no_line_for(std::time::Duration::from_millis(200));
}
#[test]
fn an_owner_that_cannot_be_read_is_unknown_not_absent() {
    let _ns = Netns::enter();
    // Held by this (privileged) test process: an ordinary user may not
    // look into its descriptors.
    let _web = tcp("127.0.0.1:8080");
    let as_user = |args: &[&str]| {
        let mut command = command("netlink", args);
        as_ordinary_user(&mut command);
        finish(command, PROMPTLY)
    };
    for (condition, gone) in [
        ("socket PORT=8080 COMM=python3", true),
        ("socket PORT=8080 COMM=python3", false),
        ("socket PORT=8080 COMM!=python3", false),
        ("socket PORT=8080 COMM!=python3", true),
    ] {
        let mut args = vec!["wait", "--timeout", "500ms"];
        if gone {
            args.push("--gone");
        }
        args.push(condition);
        let out = as_user(&args);
        assert_eq!(
            out.code(),
            124,
            "neither holds nor fails on an owner it cannot see: {args:?}\n{out}"
        );
        assert!(
            out.stderr
                .contains("cannot see which process holds 1 endpoint(s)"),
            "{out}"
        );
        assert_eq!(
            out.stderr.matches("cannot see").count(),
            1,
            "said once: {out}"
        );
    }
    // A condition that does not depend on the owner is answered.
    let out = as_user(&["wait", "--timeout", "5s", "socket PORT=8080"]);
    assert_eq!(out.code(), 0, "{out}");
    // What can be seen still decides: our own process is readable to us.
    let out = run(
        "netlink",
        &[
            "wait",
            "--timeout",
            "500ms",
            "--gone",
            "socket PORT=8080 COMM=python3",
        ],
    );
    assert_eq!(out.code(), 0, "root sees the owner is not python3: {out}");
}

/// A Python process whose command name is the raw `comm` bytes, listening
/// on 127.0.0.1:`port` until its stdin closes.
pub fn raw_named_listener(comm: &[u8], port: u16) -> std::process::Child {
    let hex: String = comm.iter().map(|b| format!("{b:02x}")).collect();
    let server = format!(
        r#"
import socket, sys
open("/proc/self/comm", "wb").write(bytes.fromhex("{hex}"))
s = socket.socket(); s.bind(("127.0.0.1", {port})); s.listen()
print("listening", flush=True)
sys.stdin.read()
"#
    );
    let mut child = Command::new("python3")
        .args(["-c", &server])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "listening");
    child
}

#[test]
fn names_print_in_the_form_conditions_read_back() {
    let _ns = Netns::enter();
    for (comm, printed) in [
        (&b"\xff\xfeabc"[..], r#""\xff\xfeabc""#),
        (&b"a\nb"[..], r#""a\nb""#),
        (&b"say \"hi\""[..], r#""say \"hi\"""#),
        (&b"\x1b[31mred"[..], r#""\x1b[31mred""#),
    ] {
        let server = raw_named_listener(comm, 6000);
        let out = run("netlink", &["list", "--processes", "socket PORT=6000"]);
        assert_eq!(out.code(), 0, "{out}");
        let line = out.lines()[0].to_owned();
        assert!(
            line.ends_with(&format!(" COMM={printed}")),
            "{comm:?} prints as {printed}: {line}"
        );
        // What was printed reads back as a condition that holds.
        let condition = format!("socket PORT=6000 COMM={printed}");
        let out = run("netlink", &["wait", "--timeout", "5s", &condition]);
        assert_eq!(out.code(), 0, "{condition}: {out}");
        stop(server);
    }
}

#[test]
fn json_has_every_field_and_null_for_the_unknown() {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:8080");
    let out = run("netlink", &["list", "--json"]);
    let event: serde_json::Value = serde_json::from_str(out.lines()[0]).unwrap();
    let keys: Vec<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    for key in [
        "event",
        "proto",
        "port",
        "addr",
        "transport",
        "v6only",
        "pid",
        "comm",
        "uid",
        "inodes",
        "source",
        "time",
    ] {
        assert!(keys.contains(&key), "{key} is never absent: {event}");
    }
    assert_eq!(event["v6only"], serde_json::Value::Null, "IPv4");
    assert_eq!(event["pid"], serde_json::Value::Null, "not looked up");
    assert_eq!(event["comm"], serde_json::Value::Null, "not looked up");
}

#[test]
fn a_daemon_that_renames_itself_after_binding_satisfies_its_new_name() {
    let _ns = Netns::enter();
    let server = r#"
import socket, sys
open("/proc/self/comm", "w").write("sw-before")
s = socket.socket(); s.bind(("127.0.0.1", 7000)); s.listen()
print("listening", flush=True)
sys.stdin.readline()
open("/proc/self/comm", "w").write("sw-after")
print("renamed", flush=True)
sys.stdin.read()
"#;
    let mut child = Command::new("python3")
        .args(["-c", server])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3");
    let mut stdout = std::io::BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    let mut wait = Running::start_watching(
        "netlink",
        &[
            "wait",
            "--timeout",
            "10s",
            "--interval",
            "20ms",
            "socket PORT=7000 COMM=sw-after",
        ],
    );
    wait.still_running_after(std::time::Duration::from_millis(200));
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"go\n").unwrap();
    line.clear();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line.trim(), "renamed");
    let (status, stderr) = wait.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    drop(child.stdin.take());
    child.wait().unwrap();
}

#[test]
fn proc_says_once_that_v6only_is_assumed_when_the_answer_depends_on_it() {
    let _ns = Netns::enter();
    let said = "/proc does not tell IPV6_V6ONLY";
    let out = run(
        "proc",
        &["wait", "--timeout", "300ms", "socket PROTO=inet PORT=1"],
    );
    assert_eq!(out.code(), 124, "{out}");
    assert_eq!(out.stderr.matches(said).count(), 1, "{out}");
    assert!(out.stderr.contains("net.ipv6.bindv6only"), "{out}");
    for (source, condition) in [
        ("netlink", "socket PROTO=inet PORT=1"),
        ("proc", "socket PROTO=inet6 PORT=1"),
        ("proc", "socket PORT=1"),
    ] {
        let out = run(source, &["wait", "--timeout", "300ms", condition]);
        assert_eq!(out.code(), 124, "{out}");
        assert!(!out.stderr.contains(said), "{source} {condition}: {out}");
    }
}
