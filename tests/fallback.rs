//! Automatic fallback, tested the way restricted containers fail: a
//! seccomp filter makes `socket(AF_NETLINK, *, NETLINK_SOCK_DIAG)` fail
//! with EPERM (Docker-style profiles) or EAFNOSUPPORT (gVisor, WSL1), and
//! everything still works, from /proc.

use std::collections::BTreeMap;
use std::os::unix::process::CommandExt;
use std::process::Command;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule,
};

use crate::support::*;

/// A filter that fails sock_diag sockets with `errno` and allows the rest.
fn deny_sock_diag(errno: i32) -> BpfProgram {
    let arg = |index, value| {
        SeccompCondition::new(index, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, value).unwrap()
    };
    let rule = SeccompRule::new(vec![
        arg(0, libc::AF_NETLINK as u64),
        arg(2, libc::NETLINK_SOCK_DIAG as u64),
    ])
    .unwrap();
    let filter = SeccompFilter::new(
        BTreeMap::from([(libc::SYS_socket, vec![rule])]),
        SeccompAction::Allow,
        SeccompAction::Errno(errno as u32),
        std::env::consts::ARCH.try_into().unwrap(),
    )
    .unwrap();
    filter.try_into().unwrap()
}

/// `sockwatch ARGS...` with sock_diag denied by `errno`.
fn denied(errno: i32, args: &[&str]) -> Command {
    let filter = deny_sock_diag(errno);
    let mut command = Command::new(BIN);
    command.args(args);
    // SAFETY: between fork and exec the closure only makes the prctl and
    // seccomp system calls; the program was compiled before the fork.
    unsafe {
        command.pre_exec(move || seccompiler::apply_filter(&filter).map_err(std::io::Error::other));
    }
    command
}

const REFUSALS: [(i32, &str); 2] = [(libc::EPERM, "EPERM"), (libc::EAFNOSUPPORT, "EAFNOSUPPORT")];

#[test]
fn list_falls_back_to_proc_and_says_why_when_asked() {
    let _ns = Netns::enter();
    let _web = tcp("0.0.0.0:80");
    let _dns = udp("127.0.0.1:53");
    for (errno, name) in REFUSALS {
        let out = finish(denied(errno, &["list", "--json"]), PROMPTLY);
        assert_eq!(out.code(), 0, "{name}: {out}");
        let events: Vec<serde_json::Value> = out.json();
        let ports: Vec<u64> = events.iter().map(|e| e["port"].as_u64().unwrap()).collect();
        assert_eq!(ports, [80, 53], "{name}: {out}");
        assert!(
            events.iter().all(|e| e["source"] == "proc"),
            "{name}: {out}"
        );
        assert!(out.stderr.is_empty(), "list is quiet without -v: {out}");

        let out = finish(denied(errno, &["-v", "list"]), PROMPTLY);
        assert!(
            out.stderr.contains("sock_diag is unavailable"),
            "{name}: {out}"
        );
        assert!(
            out.stderr.contains("reading /proc/net instead"),
            "{name}: {out}"
        );
    }
}

#[test]
fn wait_falls_back_to_proc() {
    let _ns = Netns::enter();
    for (errno, name) in REFUSALS {
        let wait = Running::spawn(denied(
            errno,
            &[
                "wait",
                "--timeout",
                "20s",
                "--interval",
                "20ms",
                "socket PORT=8080",
            ],
        ));
        let web = tcp("127.0.0.1:8080");
        let (status, stderr) = wait.finish();
        assert_eq!(status.code(), Some(0), "{name}: {stderr}");
        drop(web);
        let out = finish(
            denied(errno, &["wait", "--timeout", "300ms", "socket PORT=8080"]),
            PROMPTLY,
        );
        assert_eq!(out.code(), 124, "{name}: {out}");
    }
}

#[test]
fn watch_falls_back_to_proc_and_sees_appear_and_close() {
    let _ns = Netns::enter();
    for (errno, name) in REFUSALS {
        let mut watch = Running::spawn(denied(errno, &["watch", "--interval", "20ms", "--json"]));
        let announced = watch.stderr_line();
        assert!(
            announced.contains("sock_diag is unavailable"),
            "{name}: watch says why: {announced}"
        );
        let web = tcp_with("[::]:3000", Some(false), false);
        let line = watch.line();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (
                event["event"].as_str(),
                event["port"].as_u64(),
                event["source"].as_str()
            ),
            (Some("socket"), Some(3000), Some("proc")),
            "{name}: {line}"
        );
        assert!(event["v6only"].is_null(), "/proc cannot tell: {line}");
        drop(web);
        let line = watch.line();
        let event: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(event["event"], "socket-closed", "{name}: {line}");
        assert_eq!(event["port"], 3000, "{name}: {line}");
    }
}

#[test]
fn forced_netlink_is_an_error_where_it_is_denied() {
    let _ns = Netns::enter();
    let out = finish(
        denied(libc::EPERM, &["--source", "netlink", "list"]),
        PROMPTLY,
    );
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr
            .contains("no source of socket information is usable"),
        "{out}"
    );
    assert!(out.stderr.contains("sock_diag"), "{out}");
}

#[test]
fn proc_root_reads_another_process_namespace() {
    // This thread gets a namespace with a listener; the test's main
    // thread (the thread group leader) stays in the one it started in.
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:7070");
    let me = format!("/proc/{}", unsafe { libc::gettid() });
    for source in ["proc", "auto"] {
        let out = run(source, &["--proc-root", &me, "list", "socket PORT=7070"]);
        assert_eq!(out.code(), 0, "{out}");
        assert_lines(
            &out.lines(),
            &["socket PROTO=inet PORT=7070 ADDR=127.0.0.1 TRANSPORT=tcp"],
        );
    }
}
