//! The processes behind endpoints (`PID`, `COMM`): kept with the endpoint
//! until it closes, and unknown — never absent — where sockwatch may not
//! look.

use std::process::{Command, Stdio};

use crate::support::*;

/// A Python process named `comm` that listens on 127.0.0.1:`port`, says
/// `listening` on stdout, and exits when its stdin closes.
fn named_listener(comm: &str, port: u16) -> std::process::Child {
    let server = format!(
        r#"
import socket, sys
open("/proc/self/comm", "w").write("{comm}")
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

/// Ends a [`named_listener`] and waits for it.
fn stop(mut child: std::process::Child) {
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
