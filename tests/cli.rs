//! The front door: where options may go, durations the clock cannot hold,
//! checks made before anything starts, and what `-v` says. Each mistake a
//! user can type gets a clear usage error (exit 2), never a panic, a hang
//! or a silent wrong answer.

use std::fs;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::each_source;
use crate::support::*;

each_source!(
    list_takes_options_after_the_condition,
    wait_takes_gone_after_the_condition,
    watch_ends_when_its_reader_goes_away_on_a_quiet_system,
    verbose_list_says_which_source_read_which_table,
);

fn list_takes_options_after_the_condition(source: &str) {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:80");
    let _other = tcp("127.0.0.1:81");
    let out = run(source, &["list", "socket", "inet", "80", "--json"]);
    assert_eq!(out.code(), 0, "{out}");
    let lines = out.lines();
    assert_eq!(lines.len(), 1, "one listener selected: {out}");
    let object: serde_json::Value =
        serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"));
    assert_eq!(object["port"], 80, "{out}");
    assert_eq!(object["addr"], "127.0.0.1", "{out}");
    // Between condition words too, and after `--` everything is condition.
    let out = run(source, &["list", "socket", "--json", "PORT=80"]);
    assert_eq!(out.code(), 0, "{out}");
    assert!(out.stdout.starts_with('{'), "{out}");
    let out = run(source, &["list", "--", "socket", "PORT=81"]);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &["socket PROTO=inet PORT=81 ADDR=127.0.0.1 TRANSPORT=tcp"],
    );
}

fn wait_takes_gone_after_the_condition(source: &str) {
    let _ns = Netns::enter();
    let web = tcp("127.0.0.1:80");
    let mut wait = Running::start_watching(
        source,
        &["wait", "socket", "inet", "80", "--gone", "--timeout", "20s"],
    );
    // It waits for the listener to go, not (as a condition word) for it to
    // hold, which it already does.
    wait.still_running_after(Duration::from_millis(300));
    drop(web);
    let (status, stderr) = wait.finish();
    assert_eq!(status.code(), Some(0), "{stderr}");
    // And `--` still ends the options.
    let _web = tcp("127.0.0.1:80");
    let out = run(
        source,
        &["wait", "--timeout", "5s", "--", "socket", "PORT=80"],
    );
    assert_eq!(out.code(), 0, "{out}");
}

#[test]
fn a_mistyped_option_gets_a_suggestion_not_a_condition_error() {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:80");
    for (args, suggested) in [
        (&["list", "--jsn"][..], "--json"),
        (&["list", "socket", "PORT=80", "--jsn"], "--json"),
        (&["wait", "socket", "PORT=80", "--gnoe"], "--gone"),
        (
            &["watch", "socket", "PORT=80", "--no-inital"],
            "--no-initial",
        ),
    ] {
        let out = run("netlink", args);
        assert_eq!(out.code(), 2, "{args:?}: {out}");
        assert!(
            out.stderr
                .contains(&format!("unexpected argument '{}'", args.last().unwrap()))
                && out.stderr.contains(&format!("'{suggested}'")),
            "{args:?}: {out}"
        );
        assert!(!out.stderr.contains("condition"), "{args:?}: {out}");
        assert!(out.stdout.is_empty(), "{args:?}: {out}");
    }
}

#[test]
fn durations_beyond_the_limit_are_usage_errors() {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:80");
    for args in [
        &["wait", "--timeout", "1e30", "socket", "PORT=80"][..],
        &["wait", "--timeout", "1e19", "socket", "PORT=80"],
        &[
            "wait",
            "--timeout",
            "500000000000years",
            "socket",
            "PORT=80",
        ],
        &["wait", "--timeout", "NaN", "socket", "PORT=80"],
        &["wait", "--timeout", "inf", "socket", "PORT=80"],
        &["wait", "--interval", "1e19", "socket", "PORT=80"],
        &["watch", "--interval", "1e19"],
        &["run", "--interval", "1e19", "--", "true"],
    ] {
        let out = run("netlink", args);
        assert_eq!(out.code(), 2, "{args:?}: {out}");
        assert!(
            out.stderr.contains("10 years"),
            "names the limit: {args:?}: {out}"
        );
        assert!(!out.stderr.contains("panicked"), "{args:?}: {out}");
        assert!(out.stdout.is_empty(), "{args:?}: {out}");
    }
    for args in [
        &["wait", "--timeout", "-1", "socket", "PORT=80"][..],
        &["wait", "--timeout", "-5s", "socket", "PORT=80"],
    ] {
        let out = run("netlink", args);
        assert_eq!(out.code(), 2, "{args:?}: {out}");
        assert!(
            out.stderr.contains("negative durations are not allowed"),
            "{args:?}: {out}"
        );
    }
    // The limit itself is allowed.
    let out = run(
        "netlink",
        &["wait", "--timeout", "10years", "socket", "PORT=80"],
    );
    assert_eq!(out.code(), 0, "{out}");
}

#[test]
fn run_refuses_a_timeout_beyond_the_limit_before_starting_the_program() {
    let _ns = Netns::enter();
    // Had the program started, its line would reach our pipe: the reader
    // reads until every writer, the program included, has closed it.
    let out = run(
        "netlink",
        &["run", "--timeout", "1e19", "--", "sh", "-c", "echo started"],
    );
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("10 years"), "names the limit: {out}");
    assert!(!out.stderr.contains("panicked"), "{out}");
    assert!(!out.stdout.contains("started"), "the program ran: {out}");
}

fn watch_ends_when_its_reader_goes_away_on_a_quiet_system(source: &str) {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:80");
    // As `sockwatch watch | head -1`: one line read, then the reader leaves,
    // and nothing listens or closes afterwards.
    let mut watch = command(source, &["watch"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut reader = BufReader::new(watch.stdout.take().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("socket PROTO=inet PORT=80"), "{line}");
    let left = Instant::now();
    drop(reader);
    let status = wait_deadline(&mut watch, Duration::from_secs(2));
    let took = left.elapsed();
    let mut stderr = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status}\n{stderr}");
    assert!(
        took < Duration::from_secs(1),
        "ended {took:?} after the reader left"
    );
    assert!(stderr.is_empty(), "quietly: {stderr}");
}

fn verbose_list_says_which_source_read_which_table(source: &str) {
    let _ns = Netns::enter();
    let _sockets = [tcp("127.0.0.1:80"), udp("127.0.0.1:53")];
    let out = run(source, &["-v", "list"]);
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "sockwatch: read tcp, tcp6, udp, udp6, unix stream, unix seqpacket, unix dgram via \
             {source}; 2 endpoint(s)"
        )),
        "{out}"
    );
    // A condition narrows the tables read.
    let out = run(source, &["-v", "list", "socket", "TRANSPORT=tcp"]);
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stderr.contains(&format!(
            "sockwatch: read tcp, tcp6 via {source}; 1 endpoint(s)"
        )),
        "{out}"
    );
    // Without -v, nothing.
    let out = run(source, &["list"]);
    assert!(out.stderr.is_empty(), "{out}");
}

#[test]
fn watch_exec_checks_the_program_before_printing_anything() {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:80");
    let dir = std::env::temp_dir().join(format!("sockwatch-exec-check-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let script = dir.join("hook");
    fs::write(&script, "#!/bin/sh\n").unwrap();
    fs::set_permissions(&script, fs::Permissions::from_mode(0o644)).unwrap();
    let script = script.display().to_string();
    let directory = dir.display().to_string();
    for (program, why) in [
        ("/nonexistent/hook", "'/nonexistent/hook' does not exist"),
        (
            "sockwatch-no-such-hook",
            "'sockwatch-no-such-hook' is not found in PATH",
        ),
        (&directory, "is a directory"),
        (&script, "is not executable"),
    ] {
        let out = run("netlink", &["watch", "--exec", program, "arg"]);
        assert_eq!(out.code(), 2, "{program}: {out}");
        assert!(out.stderr.contains(program), "names it: {out}");
        assert!(out.stderr.contains(why), "{out}");
        assert!(out.stdout.is_empty(), "printed before the check: {out}");
    }
    // Found in PATH and executable: the watch starts.
    let mut watch = Running::start("netlink", &["watch", "--exec", "true"]);
    assert!(watch.line().starts_with("socket PROTO=inet PORT=80"));
    let _ = fs::remove_dir_all(&dir);
}
