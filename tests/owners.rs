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
