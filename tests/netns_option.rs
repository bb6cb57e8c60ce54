//! `--netns NAME|PATH`: other network namespaces, by their `ip netns` name
//! or by a namespace file, one or several at once, each endpoint carrying
//! `NETNS=`; and what an ordinary user can and cannot read of them.

use std::os::unix::fs::MetadataExt;
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use crate::support::*;

/// A namespace made by `ip netns add` under a name of this test run's own,
/// deleted when dropped.
pub struct Named {
    pub name: String,
}

impl Named {
    /// A new named namespace; `None` where this user may not make one
    /// (`ip netns add` mounts under /run/netns: real root only).
    pub fn try_add() -> Option<Named> {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let name = format!(
            "sockwatch-test-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .stderr(std::process::Stdio::null())
            .status()
            .expect("ip netns add");
        if !status.success() {
            assert!(
                !really_root(),
                "ip netns add {name} failed for real root: {status}"
            );
            return None;
        }
        Some(Named { name })
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }
}

impl Drop for Named {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.name])
            .status();
    }
}

/// Whether this process is root of the host, not only of a user namespace
/// of its own (where the suite runs for an ordinary user).
fn really_root() -> bool {
    let map = std::fs::read_to_string("/proc/self/uid_map").unwrap_or_default();
    map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

/// What an ordinary user's suite asserts where a named namespace cannot be
/// made: names are looked up under /run/netns, and one that is not there
/// is an error naming it.
fn names_are_looked_up_under_run_netns() {
    let out = run("auto", &["--netns", "sockwatch-test-none", "list"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains("/run/netns/sockwatch-test-none"),
        "{out}"
    );
}

#[test]
fn a_namespace_is_watched_by_its_name() {
    let _ns = Netns::enter();
    let Some(named) = Named::try_add() else {
        return names_are_looked_up_under_run_netns();
    };
    let _there = Inside::listen(Some(named.path()), "127.0.0.1:80");
    let _here = tcp("127.0.0.1:81");
    let out = run("auto", &["--netns", &named.name, "list"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &[&format!(
            "socket PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp NETNS={}",
            named.name
        )],
    );
    let out = run("auto", &["--netns", &named.name, "list", "--json"]);
    let event: serde_json::Value = serde_json::from_str(out.lines()[0]).unwrap();
    // JSON gives the name events give it, and its inode.
    let inode = std::fs::metadata(named.path()).unwrap().ino();
    assert_eq!(
        (
            event["netns"]["name"].as_str(),
            event["netns"]["inode"].as_u64()
        ),
        (Some(named.name.as_str()), Some(inode)),
        "{out}"
    );
}

#[test]
fn a_namespace_is_watched_by_its_file() {
    let _ns = Netns::enter();
    let there = Inside::listen(None, "127.0.0.1:80");
    let path = there.ns_path();
    let inode = std::fs::metadata(&path).unwrap().ino();
    let out = run("auto", &["--netns", &path, "list"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &[&format!(
            "socket PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp NETNS=net:[{inode}]"
        )],
    );
}

#[test]
fn the_same_endpoint_in_two_namespaces_is_two_endpoints() {
    let _ns = Netns::enter();
    let mut in_a = Inside::listen(None, "127.0.0.1:80");
    let in_b = Inside::listen(None, "127.0.0.1:80");
    let (a, b) = (in_a.ns_path(), in_b.ns_path());
    let name = |path: &str| format!("net:[{}]", std::fs::metadata(path).unwrap().ino());
    let (name_a, name_b) = (name(&a), name(&b));
    let mut watch = Running::start("auto", &["--netns", &a, "--netns", &b, "watch"]);
    let mut first = watch.lines(2);
    first.sort();
    let line = |kind: &str, name: &str| {
        format!("{kind} PROTO=inet PORT=80 ADDR=127.0.0.1 TRANSPORT=tcp NETNS={name}")
    };
    let mut expected = vec![line("socket", &name_a), line("socket", &name_b)];
    expected.sort();
    assert_eq!(first, expected);
    in_a.close();
    assert_eq!(watch.line(), line("socket-closed", &name_a));
    watch.no_line_for(Duration::from_millis(300));
}

#[test]
fn wait_takes_a_namespace_in_its_condition() {
    let _ns = Netns::enter();
    let in_a = Inside::listen(None, "127.0.0.1:80");
    let in_b = Inside::listen(None, "127.0.0.1:81");
    let (a, b) = (in_a.ns_path(), in_b.ns_path());
    let inode = |path: &str| std::fs::metadata(path).unwrap().ino();
    // `[` is a glob character in conditions: match the inode inside.
    let args = |path: &str| {
        [
            "--netns".to_owned(),
            a.clone(),
            "--netns".to_owned(),
            b.clone(),
            "wait".to_owned(),
            "--timeout".to_owned(),
            "1s".to_owned(),
            format!("socket NETNS=net:?{}? PORT=80", inode(path)),
        ]
    };
    let held = args(&a);
    let held: Vec<&str> = held.iter().map(String::as_str).collect();
    let out = run("auto", &held);
    assert_eq!(out.code(), 0, "{out}");
    let not = args(&b);
    let not: Vec<&str> = not.iter().map(String::as_str).collect();
    let out = run("auto", &not);
    assert_eq!(out.code(), 124, "nothing listens on 80 in {b}: {out}");
}

#[test]
fn a_missing_name_exits_1_naming_it() {
    let _ns = Netns::enter();
    let out = run("auto", &["--netns", "sockwatch-test-none", "list"]);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains(
            "sockwatch: no network namespace named sockwatch-test-none \
             (/run/netns/sockwatch-test-none): No such file or directory"
        ),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}

#[test]
fn run_refuses_netns() {
    let _ns = Netns::enter();
    let out = run("auto", &["--netns", "x", "run", "--", "true"]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr.contains("--netns does not apply to run"),
        "{out}"
    );
}

#[test]
fn an_empty_netns_is_a_usage_error() {
    let _ns = Netns::enter();
    let out = run("auto", &["--netns", "", "list"]);
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr
            .contains("--netns: expected a name under /run/netns or a namespace file"),
        "{out}"
    );
}

#[test]
fn without_privilege_a_namespace_file_of_a_process_is_read_from_proc() {
    let _ns = Netns::enter();
    let there = Inside::listen(None, "127.0.0.1:80");
    let path = there.ns_path();
    let mut list = command("auto", &["--netns", &path, "list", "--json"]);
    as_ordinary_user(&mut list);
    let out = finish(list, PROMPTLY);
    assert_eq!(out.code(), 0, "{out}");
    let events: Vec<serde_json::Value> = out.json();
    assert_eq!(events.len(), 1, "{out}");
    assert_eq!(
        (events[0]["port"].as_u64(), events[0]["source"].as_str()),
        (Some(80), Some("proc")),
        "{out}"
    );
    // Its namespace file cannot be looked at: it is named by the path.
    assert_eq!(
        (
            events[0]["netns"]["name"].as_str(),
            &events[0]["netns"]["inode"]
        ),
        (Some(path.as_str()), &serde_json::Value::Null),
        "{out}"
    );
}

#[test]
fn without_privilege_a_named_namespace_cannot_be_read() {
    let _ns = Netns::enter();
    let Some(named) = Named::try_add() else {
        return names_are_looked_up_under_run_netns();
    };
    let mut list = command("auto", &["--netns", &named.name, "list"]);
    as_ordinary_user(&mut list);
    let out = finish(list, PROMPTLY);
    assert_eq!(out.code(), 1, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "sockwatch: cannot read the network namespace {}: failed to enter the network \
             namespace {} (that needs CAP_SYS_ADMIN)",
            named.name,
            named.path()
        )),
        "{out}"
    );
    assert!(
        out.stderr
            .contains("(no process in it is known whose /proc could be read instead)"),
        "{out}"
    );
    assert!(out.stdout.is_empty(), "{out}");
}
