//! `sockwatch run`, `--processes` and `watch --exec`, with real processes:
//! services are small Python programs (python3 is part of the machine the
//! tests run on; `.ci/run` checks for it) that listen, fork or exit as told.

use std::fs;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::*;

/// A fresh directory for one test's files.
fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("sockwatch-{test}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

/// Makes `fd` the child's descriptor 3, open across exec, as a supervisor
/// hands down its notification descriptor. `fd` may itself be 3 (the test
/// harness's threads open and close files meanwhile): dup2 onto itself would
/// leave close-on-exec set, so that case clears the flag instead.
fn hand_down_as_3(command: &mut Command, fd: RawFd) {
    // SAFETY: dup2 and fcntl are async-signal-safe, and the closure
    // allocates nothing.
    unsafe {
        command.pre_exec(move || {
            let rc = if fd == 3 {
                libc::fcntl(3, libc::F_SETFD, 0)
            } else {
                libc::dup2(fd, 3)
            };
            if rc < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// A Python service: after `delay` seconds it listens on TCP `port` of
/// 127.0.0.1, creates `marker` (so the test knows it listened before
/// readiness was announced), then sleeps until SIGTERM, on which it exits
/// with `term_code`, or exits with `exit_code` after `life` seconds.
fn service(
    delay: f64,
    port: u16,
    marker: &Path,
    life: f64,
    exit_code: i32,
    term_code: i32,
) -> Vec<String> {
    let code = format!(
        r#"
import signal, socket, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit({term_code}))
time.sleep({delay})
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen()
open("{marker}", "w").close()
time.sleep({life})
sys.exit({exit_code})
"#,
        marker = marker.display()
    );
    vec!["python3".into(), "-c".into(), code]
}

/// `sockwatch run ARGS -- SERVICE` with `NOTIFY_SOCKET` set as given.
fn run_command(args: &[&str], service: &[String], notify_socket: Option<&str>) -> Command {
    let mut command = Command::new(BIN);
    command.arg("run").args(args).arg("--").args(service);
    command.env_remove("NOTIFY_SOCKET");
    if let Some(socket) = notify_socket {
        command.env("NOTIFY_SOCKET", socket);
    }
    command
}

/// Receives one sd_notify datagram within the deadline.
fn receive(socket: &UnixDatagram) -> String {
    socket.set_read_timeout(Some(PROMPTLY)).unwrap();
    let mut buf = [0u8; 1024];
    let n = socket.recv(&mut buf).expect("no notification");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn ready_through_a_notify_socket_path_once_the_service_listens() {
    let _ns = Netns::enter();
    let dir = scratch("notify-path");
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let marker = dir.join("listening");
    let service = service(0.3, 8080, &marker, 30.0, 0, 0);
    let mut run = Running::spawn(run_command(
        &["--ready-on", "socket PORT=8080", "--interval", "20ms"],
        &service,
        Some(path.to_str().unwrap()),
    ));
    let message = receive(&socket);
    assert!(marker.exists(), "READY came before the service listened");
    assert_eq!(message, "READY=1\nSTATUS=listening on tcp 127.0.0.1:8080\n");
    // Once only.
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    assert!(socket.recv(&mut [0u8; 64]).is_err(), "READY is sent once");
    assert_eq!(
        run.signal(libc::SIGTERM).code(),
        Some(0),
        "forwarded; the service exits 0"
    );
}

#[test]
fn ready_through_an_abstract_notify_socket_without_a_condition() {
    let _ns = Netns::enter();
    let dir = scratch("notify-abstract");
    let name = format!("sockwatch-test-{}", std::process::id());
    let address = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let socket = UnixDatagram::bind_addr(&address).unwrap();
    let marker = dir.join("listening");
    let service = service(0.2, 9090, &marker, 30.0, 0, 0);
    let mut run = Running::spawn(run_command(
        &["--interval", "20ms"],
        &service,
        Some(&format!("@{name}")),
    ));
    let message = receive(&socket);
    assert!(marker.exists());
    assert_eq!(message, "READY=1\nSTATUS=listening on tcp 127.0.0.1:9090\n");
    run.signal(libc::SIGTERM);
}

#[test]
fn the_service_does_not_see_notify_socket_unless_passed() {
    let _ns = Netns::enter();
    let script = "import os; print(os.environ.get('NOTIFY_SOCKET', 'unset'))";
    let service = vec!["python3".to_string(), "-c".to_string(), script.to_string()];
    let out = finish(
        run_command(&["--notify", "none"], &service, Some("/nonexistent")),
        PROMPTLY,
    );
    assert_eq!(out.stdout.trim(), "unset", "{out}");
    let out = finish(
        run_command(
            &["--notify", "none", "--pass-notify"],
            &service,
            Some("/nonexistent"),
        ),
        PROMPTLY,
    );
    assert_eq!(out.stdout.trim(), "/nonexistent", "{out}");
}

#[test]
fn a_foreign_listener_does_not_make_the_service_ready() {
    let _ns = Netns::enter();
    let dir = scratch("foreign");
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    // Someone else already listens on the port the service is waited for.
    let _foreign = tcp("127.0.0.1:8080");
    let service = service(0.1, 8081, &dir.join("listening"), 30.0, 0, 0);
    let out = finish(
        run_command(
            &[
                "--ready-on",
                "socket PORT=8080",
                // Long enough for python3 to start and listen on 8081 even
                // on a loaded machine.
                "--timeout",
                "4s",
                "--interval",
                "20ms",
            ],
            &service,
            Some(path.to_str().unwrap()),
        ),
        PROMPTLY,
    );
    assert_eq!(out.code(), 124, "{out}");
    // The message names the condition, what the service listened on, and
    // who holds the port instead: this test process.
    let me = std::process::id();
    let comm = fs::read_to_string("/proc/self/comm").unwrap();
    let expected = format!(
        "sockwatch: 'python3' not ready after 4s: 'socket PORT=8080' does not hold over its \
         own sockets (it listens on tcp 127.0.0.1:8081); tcp 127.0.0.1:8080 is held by \
         another process (pid {me}, {}); stopping it",
        comm.trim_end()
    );
    assert_eq!(out.stderr.trim_end(), expected, "{out}");
    socket.set_nonblocking(true).unwrap();
    assert!(
        socket.recv(&mut [0u8; 64]).is_err(),
        "no READY for a foreign socket"
    );
}

#[test]
fn a_double_forking_daemon_is_followed_to_its_socket() {
    let _ns = Netns::enter();
    let dir = scratch("daemon");
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let pidfile = dir.join("pid");
    let daemon = format!(
        r#"
import os, signal, socket, sys, time
if os.fork(): sys.exit(0)
os.setsid()
if os.fork(): sys.exit(0)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
s = socket.socket(); s.bind(("127.0.0.1", 631)); s.listen()
open("{pidfile}", "w").write(str(os.getpid()))
time.sleep(60)
"#,
        pidfile = pidfile.display()
    );
    let service = vec!["python3".to_string(), "-c".to_string(), daemon];
    let mut run = Running::spawn(run_command(
        &["--ready-on", "socket PORT=631", "--interval", "20ms", "-v"],
        &service,
        Some(path.to_str().unwrap()),
    ));
    let message = receive(&socket);
    assert_eq!(message, "READY=1\nSTATUS=listening on tcp 127.0.0.1:631\n");
    assert!(
        run.child.try_wait().unwrap().is_none(),
        "the direct child's exit 0 is not the end"
    );
    let daemon_pid: u32 = fs::read_to_string(&pidfile).unwrap().parse().unwrap();
    let parent = || -> u32 {
        let stat = fs::read_to_string(format!("/proc/{daemon_pid}/stat")).unwrap();
        let fields = &stat[stat.rfind(')').unwrap() + 2..];
        fields.split(' ').nth(1).unwrap().parse().unwrap()
    };
    // The first two processes exit right after forking; until the first
    // has, it is still the main process and the signal would be its.
    let sockwatch = run.child.id();
    let children = || {
        fs::read_to_string(format!("/proc/{sockwatch}/task/{sockwatch}/children"))
            .unwrap_or_default()
    };
    let deadline = std::time::Instant::now() + PROMPTLY;
    while children().trim() != daemon_pid.to_string() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        children().trim(),
        daemon_pid.to_string(),
        "only the daemon is left"
    );
    assert_eq!(
        parent(),
        sockwatch,
        "the daemon was reparented to sockwatch (subreaper)"
    );
    let status = run.signal(libc::SIGTERM);
    let (_, stderr) = run.finish();
    assert_eq!(
        status.code(),
        Some(3),
        "SIGTERM reached the daemon, whose status is ours\n{stderr}"
    );
}

#[test]
fn a_stop_request_reaches_the_daemon_even_while_its_launcher_exits() {
    let _ns = Netns::enter();
    let dir = scratch("daemon-stop");
    let path = dir.join("notify");
    let socket = UnixDatagram::bind(&path).unwrap();
    let daemon = r#"
import os, signal, socket, sys, time
if os.fork():
    time.sleep(1)  # a slow launcher: still alive when the stop comes
    sys.exit(0)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(3))
s = socket.socket(); s.bind(("127.0.0.1", 632)); s.listen()
time.sleep(60)
"#;
    let service = vec!["python3".to_string(), "-c".to_string(), daemon.to_string()];
    let mut run = Running::spawn(run_command(
        &["--ready-on", "socket PORT=632", "--interval", "20ms"],
        &service,
        Some(path.to_str().unwrap()),
    ));
    receive(&socket);
    // The launcher is still the main process: it gets SIGTERM and dies of
    // it; the daemon, elected next, gets it too, and its status is ours.
    let status = run.signal(libc::SIGTERM);
    assert_eq!(status.code(), Some(3), "{status}");
}

#[test]
fn fd_notification_writes_a_newline_and_closes() {
    let _ns = Netns::enter();
    let dir = scratch("fd");
    let marker = dir.join("listening");
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: both descriptors were just made and are owned here.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let service = service(0.2, 7000, &marker, 30.0, 0, 0);
    let mut command = run_command(&["--notify", "fd:3", "--interval", "20ms"], &service, None);
    hand_down_as_3(&mut command, write_end.as_raw_fd());
    let mut run = Running::spawn(command);
    drop(write_end);
    let mut pipe = fs::File::from(read_end);
    let mut got = Vec::new();
    pipe.read_to_end(&mut got).unwrap(); // ends when sockwatch closes fd 3
    assert_eq!(got, b"\n");
    assert!(marker.exists(), "notified after the service listened");
    run.signal(libc::SIGTERM);
}

#[test]
fn exit_statuses() {
    let _ns = Netns::enter();
    let dir = scratch("status");
    let marker = dir.join("listening");
    // Ready, then exits 7 on its own: 7.
    let out = finish(
        run_command(
            &["--notify", "none", "--interval", "20ms"],
            &service(0.0, 7001, &marker, 0.3, 7, 0),
            None,
        ),
        PROMPTLY,
    );
    assert_eq!(out.code(), 7, "{out}");
    // Killed by a signal before it was ready: sockwatch dies of the same
    // signal, and says which by name.
    let killed = vec![
        "python3".into(),
        "-c".into(),
        "import os; os.kill(os.getpid(), 9)".into(),
    ];
    let out = finish(run_command(&["--notify", "none"], &killed, None), PROMPTLY);
    assert_eq!(out.status.signal(), Some(libc::SIGKILL), "{out}");
    assert!(
        out.stderr
            .contains("'python3' was killed by SIGKILL before it was ready"),
        "{out}"
    );
    // Exits before it is ready: its status, and one line saying so.
    let early = vec![
        "python3".into(),
        "-c".into(),
        "import sys; sys.exit(5)".into(),
    ];
    let out = finish(run_command(&["--notify", "none"], &early, None), PROMPTLY);
    assert_eq!(out.code(), 5, "{out}");
    assert_eq!(out.stderr.lines().count(), 1, "{out}");
    assert!(
        out.stderr
            .contains("exited with status 5 before it was ready"),
        "{out}"
    );
    // Never ready within --timeout: stopped, 124.
    let sleeper = vec!["sleep".into(), "30".into()];
    let out = finish(
        run_command(&["--notify", "none", "--timeout", "300ms"], &sleeper, None),
        PROMPTLY,
    );
    assert_eq!(out.code(), 124, "{out}");
    assert_eq!(
        out.stderr.trim_end(),
        "sockwatch: 'sleep' not ready after 300ms: it listens on nothing; stopping it",
        "{out}"
    );
    // Cannot be started.
    let out = finish(
        run_command(&[], &["/nonexistent/daemon".into()], None),
        PROMPTLY,
    );
    assert_eq!(out.code(), 127, "{out}");
    assert!(out.stderr.contains("not found"), "{out}");
    let not_executable = dir.join("script");
    fs::write(&not_executable, "#!/bin/sh\n").unwrap();
    let out = finish(
        run_command(&[], &[not_executable.display().to_string()], None),
        PROMPTLY,
    );
    assert_eq!(out.code(), 126, "{out}");
    // A usage error: exit 2.
    let out = finish(
        run_command(&["--notify", "upstart"], &sleeper, None),
        PROMPTLY,
    );
    assert_eq!(out.code(), 2, "{out}");
}

#[test]
fn a_timeout_kills_a_service_that_ignores_sigterm() {
    let _ns = Netns::enter();
    // Ignored signals stay ignored across exec: sleep ignores it too.
    let stubborn = vec![
        "sh".to_string(),
        "-c".to_string(),
        "trap '' TERM; sleep 60".to_string(),
    ];
    let started = std::time::Instant::now();
    let out = finish(
        run_command(&["--notify", "none", "--timeout", "300ms"], &stubborn, None),
        Duration::from_secs(20),
    );
    assert_eq!(out.code(), 124, "{out}");
    let took = started.elapsed();
    assert!(
        took >= Duration::from_secs(5),
        "SIGKILL comes after the 5 s grace: {took:?}\n{out}"
    );
}

#[test]
fn processes_names_our_own_process() {
    let _ns = Netns::enter();
    let _web = tcp("127.0.0.1:8080");
    let comm = fs::read_to_string("/proc/thread-self/comm").unwrap();
    let comm = comm.trim_end();
    let me = std::process::id();
    let out = run("netlink", &["list", "--processes"]);
    assert_eq!(out.code(), 0, "{out}");
    let expected =
        format!("socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp PID={me} COMM=");
    assert!(out.stdout.starts_with(&expected), "{out}");
    let out = run("netlink", &["list", "--processes", "--json"]);
    let event: serde_json::Value = serde_json::from_str(out.lines()[0]).unwrap();
    assert_eq!(event["pid"], me);
    let process_comm = fs::read_to_string("/proc/self/comm").unwrap();
    assert_eq!(
        event["comm"],
        process_comm.trim_end(),
        "{out} (thread comm {comm})"
    );
    // An ordinary user cannot look into root's fd tables: no PID, and one
    // line saying what it cannot see and why.
    let mut list = command("netlink", &["list", "--processes"]);
    as_ordinary_user(&mut list);
    let out = finish(list, PROMPTLY);
    assert_eq!(out.code(), 0, "{out}");
    assert_lines(
        &out.lines(),
        &["socket PROTO=inet PORT=8080 ADDR=127.0.0.1 TRANSPORT=tcp"],
    );
    assert!(
        out.stderr
            .contains("cannot see which process holds 1 endpoint(s)")
            && out.stderr.contains("run as root or as their owner"),
        "{out}"
    );
    // Conditions on PID and COMM turn the lookup on.
    let out = run(
        "netlink",
        &[
            "wait",
            "--timeout",
            "5s",
            &format!("socket PORT=8080 PID={me}"),
        ],
    );
    assert_eq!(out.code(), 0, "{out}");
    let out = run(
        "netlink",
        &["wait", "--timeout", "300ms", "socket PORT=8080 COMM=nginx"],
    );
    assert_eq!(out.code(), 124, "{out}");
}

#[test]
fn hooks_get_the_event_in_their_environment_in_order_and_verbatim() {
    let _ns = Netns::enter();
    let dir = scratch("hooks");
    let log = dir.join("log");
    let hook = dir.join("hook.sh");
    fs::write(
        &hook,
        format!(
            "#!/bin/sh\nprintf '%s|%s|%s|%s|%s|%s|%s|%s\\n' \"$EVENT\" \"$PROTO\" \"$PORT\" \"$ADDR\" \"$TRANSPORT\" \"$COMM\" \"$1\" \"$2\" >> {}\n",
            log.display()
        ),
    )
    .unwrap();
    fs::set_permissions(&hook, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let hostile = r#"a b"c$(x)"#; // at most 15 bytes: a comm
    let marker = dir.join("listening");
    let server = format!(
        r#"
import socket, sys, time
open("/proc/self/comm", "w").write('{hostile}')
s = socket.socket(); s.bind(("127.0.0.1", 5000)); s.listen()
open("{marker}", "w").close()
sys.stdin.read()
"#,
        marker = marker.display()
    );
    let mut watch = Running::start(
        "netlink",
        &[
            "-v",
            "watch",
            "--no-initial",
            "--processes",
            "--interval",
            "20ms",
            "socket PORT=5000",
            "--exec",
            hook.to_str().unwrap(),
            "--arg",
            "$(rm -rf /)",
        ],
    );
    watch.stderr_until("sockwatch: watching");
    let mut service = Command::new("python3")
        .args(["-c", &server])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    watch.line();
    drop(service.stdin.take()); // ends the service: its socket closes
    service.wait().unwrap();
    watch.line();
    let expected = [
        format!(r#"socket|inet|5000|127.0.0.1|tcp|{hostile}|--arg|$(rm -rf /)"#),
        format!(r#"socket-closed|inet|5000|127.0.0.1|tcp|{hostile}|--arg|$(rm -rf /)"#),
    ];
    // The hook runs after the line is printed: wait for both entries.
    let deadline = std::time::Instant::now() + PROMPTLY;
    let lines = loop {
        let text = fs::read_to_string(&log).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_owned).collect();
        if lines.len() >= 2 || std::time::Instant::now() > deadline {
            break lines;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(lines, expected);
}

/// A Python service that listens on 127.0.0.1:`port`, writes its pid to
/// `marker`, then runs `then` (with SIGTERM's default action: it dies of
/// it).
fn listening_then(port: u16, marker: &Path, then: &str) -> Vec<String> {
    let code = format!(
        r#"
import os, resource, signal, socket, sys, time
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", {port})); s.listen()
open("{marker}", "w").write(str(os.getpid()))
{then}
"#,
        marker = marker.display()
    );
    vec!["python3".into(), "-c".into(), code]
}

/// Waits until `marker` holds the service's pid.
fn service_pid(marker: &Path) -> libc::pid_t {
    let until = std::time::Instant::now() + PROMPTLY;
    loop {
        if let Ok(pid) = fs::read_to_string(marker).unwrap_or_default().parse() {
            return pid;
        }
        assert!(
            std::time::Instant::now() < until,
            "the service did not start"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_service_that_dies_of_a_signal_takes_sockwatch_with_it() {
    let _ns = Netns::enter();
    let dir = scratch("die-by-signal");
    let marker = dir.join("pid");
    // As systemd stops a unit: SIGTERM to sockwatch, forwarded; the service
    // dies of it, and so does sockwatch (not exit 143, which systemd would
    // count as a failure).
    let service = listening_then(8080, &marker, "time.sleep(60)");
    let mut run = Running::spawn(run_command(&["--notify", "none"], &service, None));
    service_pid(&marker);
    let status = run.signal(libc::SIGTERM);
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    assert!(!status.core_dumped(), "{status}");

    // Killed from outside by SIGKILL: sockwatch dies of SIGKILL.
    fs::remove_file(&marker).unwrap();
    let run = Running::spawn(run_command(&["--notify", "none"], &service, None));
    let pid = service_pid(&marker);
    // SAFETY: kill has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0);
    let (status, stderr) = run.finish();
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}\n{stderr}");

    // A core-dumping signal: the service's death is passed on, but
    // sockwatch writes no core of its own, even where cores are allowed.
    fs::remove_file(&marker).unwrap();
    let quits = listening_then(
        8080,
        &marker,
        "resource.setrlimit(resource.RLIMIT_CORE, (0, 0)); os.kill(os.getpid(), signal.SIGQUIT)",
    );
    let mut command = run_command(&["--notify", "none"], &quits, None);
    command.current_dir(&dir);
    // SAFETY: getrlimit and setrlimit are async-signal-safe; `limit` lives
    // on this closure's stack for both calls.
    unsafe {
        command.pre_exec(|| {
            let mut limit: libc::rlimit = std::mem::zeroed();
            libc::getrlimit(libc::RLIMIT_CORE, &mut limit);
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_CORE, &limit);
            Ok(())
        });
    }
    let out = finish(command, PROMPTLY);
    assert_eq!(out.status.signal(), Some(libc::SIGQUIT), "{out}");
    assert!(!out.status.core_dumped(), "{out}");
    let cores: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("core"))
        .collect();
    assert!(cores.is_empty(), "sockwatch dumped core: {cores:?}");

    // An exit code is passed through as it is.
    fs::remove_file(&marker).unwrap();
    let exits = listening_then(8080, &marker, "time.sleep(0.2); sys.exit(3)");
    let out = finish(run_command(&["--notify", "none"], &exits, None), PROMPTLY);
    assert_eq!(out.code(), 3, "{out}");
    assert!(out.stderr.is_empty(), "{out}");
}

/// `sockwatch run --notify fd:N -- python3 -c 'create MARKER'`, with
/// `file` (if any) handed down as descriptor 3.
fn run_with_notify_fd(n: &str, file: Option<&fs::File>, marker: &Path) -> Output {
    let creates = vec![
        "python3".to_string(),
        "-c".to_string(),
        format!("open('{}', 'w').close()", marker.display()),
    ];
    let mut command = run_command(&["--notify", &format!("fd:{n}")], &creates, None);
    if let Some(file) = file {
        hand_down_as_3(&mut command, file.as_raw_fd());
    }
    finish(command, PROMPTLY)
}

#[test]
fn a_notify_fd_that_was_not_handed_down_is_refused_before_the_service_starts() {
    let _ns = Netns::enter();
    let dir = scratch("notify-fd-refused");
    let marker = dir.join("started");
    // Not open: sockwatch's own sockets would take the number (3 is the
    // first it opens) and get the newline, or be closed under it.
    for n in ["3", "9"] {
        let out = run_with_notify_fd(n, None, &marker);
        assert_eq!(out.code(), 2, "{out}");
        assert_eq!(
            out.stderr.trim_end(),
            format!("sockwatch: --notify fd:{n}: descriptor {n} is not open"),
            "{out}"
        );
        assert!(!marker.exists(), "the service was started\n{out}");
    }
    // Standard output is not a notification descriptor.
    let out = run_with_notify_fd("1", None, &marker);
    assert_eq!(out.code(), 2, "{out}");
    assert!(
        out.stderr
            .contains("--notify fd:1: descriptor 1 is standard")
    );
    assert!(!marker.exists(), "the service was started\n{out}");
    // A regular file handed down as 3: not a pipe, socket or FIFO.
    let log = fs::File::create(dir.join("log")).unwrap();
    let out = run_with_notify_fd("3", Some(&log), &marker);
    assert_eq!(out.code(), 2, "{out}");
    assert_eq!(
        out.stderr.trim_end(),
        "sockwatch: --notify fd:3: descriptor 3 is a regular file, not a pipe, socket or FIFO",
        "{out}"
    );
    assert!(!marker.exists(), "the service was started\n{out}");
    assert_eq!(fs::read(dir.join("log")).unwrap(), b"", "nothing written");
}

#[test]
fn an_empty_notify_socket_is_treated_as_unset() {
    let _ns = Netns::enter();
    let dir = scratch("notify-empty");
    let marker = dir.join("pid");
    let service = listening_then(7002, &marker, "time.sleep(0.3)");
    // Ready, no notification attempted, no complaint: exit 0 quietly.
    let out = finish(
        run_command(&["--interval", "20ms", "-v"], &service, Some("")),
        PROMPTLY,
    );
    assert_eq!(out.code(), 0, "{out}");
    assert!(
        out.stderr
            .contains("sockwatch: ready: listening on tcp 127.0.0.1:7002"),
        "{out}"
    );
    assert!(!out.stderr.contains("notify"), "{out}");
    // Asking for systemd with an empty NOTIFY_SOCKET is a usage error.
    let out = finish(
        run_command(&["--notify", "systemd"], &service, Some("")),
        PROMPTLY,
    );
    assert_eq!(out.code(), 2, "{out}");
    assert!(out.stderr.contains("needs NOTIFY_SOCKET"), "{out}");
}

#[test]
fn a_failed_notification_names_the_socket() {
    let _ns = Netns::enter();
    let dir = scratch("notify-failed");
    let marker = dir.join("pid");
    let service = listening_then(7003, &marker, "time.sleep(0.3)");
    // A socket file nobody listens on any more.
    let stale = dir.join("stale");
    drop(UnixDatagram::bind(&stale).unwrap());
    let cases = [
        (
            dir.join("missing").join("notify"),
            "No such file or directory",
        ),
        (stale, "Connection refused"),
    ];
    for (path, why) in cases {
        let _ = fs::remove_file(&marker);
        let out = finish(
            run_command(&["--interval", "20ms"], &service, path.to_str()),
            PROMPTLY,
        );
        assert_eq!(out.code(), 0, "the service runs on: {out}");
        let expected = format!(
            "sockwatch: failed to notify readiness to {}: {why}",
            path.display()
        );
        assert!(out.stderr.starts_with(&expected), "{out}");
    }
}
